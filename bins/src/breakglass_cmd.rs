//! The `breakglass` binary's settings and its run: env and flags into
//! validated [`breakglass::server::Settings`], JSON logs, serve until SIGTERM
//! or Ctrl-C, then kill every running turn.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use afk_edge::listen::Limits;
use breakglass::auth::{Auth, Proxies};
use breakglass::power::PowerSettings;
use breakglass::server::{App, Settings};
use breakglass::session::AgentSettings;

/// breakglass — the emergency console: chat with a repair agent that runs on
/// the cluster, or power-cycle the VM with no AI in the path.
///
/// Every setting is read from its environment variable or its flag (a flag
/// wins). Prefer BREAKGLASS_TOKEN_FILE (a mounted secret) over a token in the
/// environment, and never pass --token on a shared machine: flags are visible
/// in the process list.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "breakglass", version, about)]
pub struct BreakglassArgs {
    /// Address to listen on.
    #[arg(long, env = "BREAKGLASS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// The bearer token clients must send.
    #[arg(long, env = "BREAKGLASS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the bearer token (read at start).
    #[arg(long, env = "BREAKGLASS_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Trust this identity header (set by an SSO proxy in front), e.g. X-authentik-username. Off unless set.
    #[arg(long, env = "BREAKGLASS_IDENTITY_HEADER")]
    pub identity_header: Option<String>,
    /// The proxy addresses the identity header is trusted from (10.0.0.5, 10.42.0.0/16, …); required with it.
    #[arg(long, env = "BREAKGLASS_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,
    /// Open connections at most (unauthenticated ones make room for new ones).
    #[arg(long, env = "BREAKGLASS_MAX_CONNECTIONS", default_value_t = 256, value_parser = clap::value_parser!(u64).range(8..=100_000))]
    pub max_connections: u64,
    /// Sessions at most (idle ones are evicted to make room, else 429).
    #[arg(long, env = "BREAKGLASS_MAX_SESSIONS", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub max_sessions: u64,
    /// The agent program.
    #[arg(long, env = "BREAKGLASS_AGENT_BIN", default_value = "claude")]
    pub agent_bin: String,
    /// The model passed to the agent (unless a prompt names one).
    #[arg(long, env = "BREAKGLASS_MODEL")]
    pub model: Option<String>,
    /// Each session works in <dir>/<session id>/ (default: <tmp>/breakglass-sessions).
    #[arg(long, env = "BREAKGLASS_SESSIONS_DIR")]
    pub sessions_dir: Option<PathBuf>,
    /// A turn running longer is killed.
    #[arg(long, env = "BREAKGLASS_TURN_TIMEOUT_SECONDS", default_value_t = 1800, value_parser = clap::value_parser!(u64).range(1..))]
    pub turn_timeout_seconds: u64,
    /// A quiet attach stream gets a keepalive comment this often.
    #[arg(long, env = "BREAKGLASS_SSE_KEEPALIVE_SECONDS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub sse_keepalive_seconds: u64,
    /// The ssh program for power verbs.
    #[arg(long, env = "BREAKGLASS_SSH_BIN", default_value = "ssh")]
    pub ssh_bin: String,
    /// The host power verbs run on (`ssh <host> <verb>`); verbs answer 502 without it.
    #[arg(long, env = "BREAKGLASS_SSH_HOST")]
    pub ssh_host: Option<String>,
    /// A power verb running longer is killed.
    #[arg(long, env = "BREAKGLASS_VERB_TIMEOUT_SECONDS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub verb_timeout_seconds: u64,
}

/// The validated settings and the listen address.
pub fn settings(args: &BreakglassArgs) -> Result<(SocketAddr, Settings), String> {
    let listen: SocketAddr = args.listen.parse().map_err(|_| {
        format!(
            "BREAKGLASS_LISTEN {:?} is not an address like 0.0.0.0:8080",
            args.listen
        )
    })?;
    let file_token =
        match &args.token_file {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                format!("cannot read BREAKGLASS_TOKEN_FILE {}: {e}", path.display())
            })?),
            None => None,
        };
    let given = args.token.as_deref().filter(|t| !t.trim().is_empty());
    let token = given.or(file_token.as_deref());
    if let Err(e) = afk_edge::auth::Bearer::parse(token) {
        let key = match given {
            Some(_) => "BREAKGLASS_TOKEN",
            None => "BREAKGLASS_TOKEN_FILE",
        };
        return Err(format!("{key}: {e}"));
    }
    let proxies = Proxies::parse(&args.trusted_proxies).map_err(|e| e.to_string())?;
    let auth =
        Auth::new(token, args.identity_header.as_deref(), proxies).map_err(|e| e.to_string())?;
    let sessions_dir = args
        .sessions_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("breakglass-sessions"));
    Ok((
        listen,
        Settings {
            auth,
            agent: AgentSettings {
                bin: args.agent_bin.clone(),
                model: args.model.clone().filter(|m| !m.trim().is_empty()),
                sessions_dir,
                turn_timeout: Duration::from_secs(args.turn_timeout_seconds),
            },
            keepalive: Duration::from_secs(args.sse_keepalive_seconds),
            power: PowerSettings {
                ssh_bin: args.ssh_bin.clone(),
                host: args.ssh_host.clone().filter(|h| !h.trim().is_empty()),
                timeout: Duration::from_secs(args.verb_timeout_seconds),
            },
            limits: Limits {
                max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
                ..Limits::default()
            },
            max_sessions: usize::try_from(args.max_sessions).unwrap_or(usize::MAX),
        },
    ))
}

/// Runs the server until a stop signal: exit 0, or 2 for bad settings, 1
/// when it cannot listen.
pub fn main(args: &BreakglassArgs) -> u8 {
    afk_adapters::services::init_logs("json");
    let (listen, settings) = match settings(args) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "bad settings; not starting");
            return crate::exit::BAD_INPUT;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return crate::exit::PARTIAL;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, %listen, "cannot listen");
                return crate::exit::PARTIAL;
            }
        };
        let address = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tracing::info!(
            address = %address,
            agent = %settings.agent.bin,
            sessions_dir = %settings.agent.sessions_dir.display(),
            power_host = settings.power.host.as_deref().unwrap_or("-"),
            "listening"
        );
        let app = App::new(settings);
        match breakglass::server::serve(listener, app, crate::stop_signal()).await {
            Ok(()) => {
                tracing::info!("stopped");
                crate::exit::OK
            }
            Err(e) => {
                tracing::error!(error = %e, "the server failed");
                crate::exit::PARTIAL
            }
        }
    })
}
