//! `afk-gateway`: the conversational gateway (see `afk-gateway --help`).
//!
//! Exit codes: 0 stopped by SIGTERM or Ctrl-C (running turns drained), 1
//! could not listen or start, 2 bad settings.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// afk-gateway — a no-tools conversational agent (the claude CLI, one run per
/// turn) behind OpenAI's chat completions (`POST /v1/chat/completions`) and
/// multi-turn conversations (`POST /v1/conversational`).
///
/// Every setting is read from its environment variable or its flag (a flag
/// wins). Prefer AFK_GATEWAY_TOKEN_FILE (a mounted secret); without a token
/// every request is refused. The agent CLI inherits this environment (its
/// model credentials and base URL) less the gateway's own token.
#[derive(clap::Parser)]
#[command(name = "afk-gateway", version = bins::VERSION, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "AFK_GATEWAY_LISTEN", default_value = "127.0.0.1:8090")]
    listen: String,
    /// The bearer token clients must send (prefer --token-file: flags show in the process list).
    #[arg(long, env = "AFK_GATEWAY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A file holding the bearer token (read at start).
    #[arg(long, env = "AFK_GATEWAY_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// The agent program.
    #[arg(long, env = "AFK_GATEWAY_AGENT_BIN", default_value = "claude")]
    agent_bin: String,
    /// The conversational agent's instructions (short, plain spoken text in the user's language).
    #[arg(long, env = "AFK_GATEWAY_INSTRUCTIONS_FILE")]
    instructions_file: Option<PathBuf>,
    /// The supported models, comma-separated; the first is the default.
    #[arg(long, env = "AFK_GATEWAY_MODELS", default_value = "sonnet")]
    models: String,
    /// A turn running longer is stopped.
    #[arg(long, env = "AFK_GATEWAY_TURN_TIMEOUT_SECONDS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600))]
    turn_timeout_seconds: u64,
    /// Turns at once.
    #[arg(long, env = "AFK_GATEWAY_MAX_TURNS", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1000))]
    max_turns: u64,
    /// Requests waiting for a turn at most (past it: 429).
    #[arg(long, env = "AFK_GATEWAY_MAX_QUEUE", default_value_t = 16, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    max_queue: u64,
    /// How long a request waits for a turn (past it: 503).
    #[arg(long, env = "AFK_GATEWAY_QUEUE_WAIT_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=600))]
    queue_wait_seconds: u64,
    /// How long a conversation's second turn waits for its first (past it: 409).
    #[arg(long, env = "AFK_GATEWAY_CONVERSATION_WAIT_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=3600))]
    conversation_wait_seconds: u64,
    /// Conversations remembered at most.
    #[arg(long, env = "AFK_GATEWAY_MAX_CONVERSATIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_conversations: u64,
    /// The largest request body.
    #[arg(long, env = "AFK_GATEWAY_MAX_BODY_BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1024..=64 << 20))]
    max_body_bytes: u64,
    /// CLI processes kept waiting per model and kind of turn (0: none).
    #[arg(long, env = "AFK_GATEWAY_WARM_PER_MODEL", default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=8))]
    warm_per_model: u64,
    /// Conversations that keep a resumed CLI waiting (0: none).
    #[arg(long, env = "AFK_GATEWAY_WARM_CONVERSATIONS", default_value_t = 4, value_parser = clap::value_parser!(u64).range(0..=256))]
    warm_conversations: u64,
    /// A waiting CLI older than this is replaced.
    #[arg(long, env = "AFK_GATEWAY_WARM_MAX_AGE_SECONDS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    warm_max_age_seconds: u64,
    /// Open connections at most.
    #[arg(long, env = "AFK_GATEWAY_MAX_CONNECTIONS", default_value_t = 256, value_parser = clap::value_parser!(u64).range(8..=100_000))]
    max_connections: u64,
    /// After SIGTERM, running turns may finish for this long.
    #[arg(long, env = "AFK_GATEWAY_DRAIN_SECONDS", default_value_t = 25, value_parser = clap::value_parser!(u64).range(0..=3600))]
    drain_seconds: u64,
    /// Where the gateway makes its run's directory for turns' empty directories (default: <tmp>/afk-gateway); only that is removed at stop.
    #[arg(long, env = "AFK_GATEWAY_WORK_DIR")]
    work_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let a = Args::parse();
    afk_adapters::services::init_logs("json");
    let raw = afk_gateway::settings::Raw {
        listen: a.listen,
        token: a.token,
        token_file: a.token_file,
        agent_bin: a.agent_bin,
        instructions_file: a.instructions_file,
        models: a.models,
        turn_timeout_seconds: a.turn_timeout_seconds,
        max_turns: a.max_turns,
        max_queue: a.max_queue,
        queue_wait_seconds: a.queue_wait_seconds,
        conversation_wait_seconds: a.conversation_wait_seconds,
        max_conversations: a.max_conversations,
        max_body_bytes: a.max_body_bytes,
        warm_per_model: a.warm_per_model,
        warm_conversations: a.warm_conversations,
        warm_max_age_seconds: a.warm_max_age_seconds,
        max_connections: a.max_connections,
        drain_seconds: a.drain_seconds,
        work_dir: a.work_dir,
    };
    let (listen, settings) = match afk_gateway::settings::read(&raw) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "bad settings; not starting");
            return ExitCode::from(bins::exit::BAD_INPUT);
        }
    };
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    else {
        tracing::error!("cannot start the async runtime");
        return ExitCode::from(bins::exit::PARTIAL);
    };
    ExitCode::from(runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, %listen, "cannot listen");
                return bins::exit::PARTIAL;
            }
        };
        let address = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        if !settings.token.is_configured() {
            tracing::warn!("no token is configured (AFK_GATEWAY_TOKEN or AFK_GATEWAY_TOKEN_FILE): every request is refused");
        }
        tracing::info!(
            address = %address,
            agent = %settings.agent_bin,
            models = %settings.models.list().join(","),
            max_turns = settings.max_turns,
            "listening"
        );
        match afk_gateway::server::run(listener, settings, bins::stop_signal()).await {
            Ok(()) => bins::exit::OK,
            Err(e) => {
                tracing::error!(error = %e, "the gateway failed");
                bins::exit::PARTIAL
            }
        }
    }))
}
