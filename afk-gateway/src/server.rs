//! The HTTP surface and the gateway's shared state.
//!
//! | route | auth | answer |
//! | --- | --- | --- |
//! | `GET /health` | none | `{"status":"ok"}`; 503 `{"status":"draining"}` after SIGTERM |
//! | `POST /v1/chat/completions` | bearer | OpenAI's `chat.completion`, or with `stream: true` an SSE stream of `chat.completion.chunk`s ending in `data: [DONE]` |
//! | `POST /v1/conversational` | bearer | `{"session_id", "reply"}`; a failed or timed-out turn is 503 `{"error":"execution failed","detail"}` |
//! | `GET /v1/models` | bearer | OpenAI's model list |
//!
//! Every other refusal is OpenAI's error object (`{"error": {"message",
//! "type", "param", "code"}}`) with one line that names what is wrong and
//! never a secret (the token, and the values of the environment's keys,
//! tokens and passwords, are replaced by `<redacted>` in anything a client
//! or the log sees): 400 a bad request, 401 no or a wrong token (always,
//! when no token is configured), 404 and 405, 408 a body that does not
//! arrive in time, 409 a conversation whose turn is still running after
//! the wait, 413 a body over the cap, 415 a body that says it is not JSON,
//! 429 (with `Retry-After`) the queue full or too many conversations, 502
//! the agent CLI failed or could not start, 503 (with `Retry-After`) no
//! turn came free in time or the gateway is draining, 504 the turn timed
//! out. Every `/v1` request writes one audit line (`afk_edge::audit`).
//!
//! On SIGTERM ([`App::drain`]) the gateway stops accepting connections and
//! turns, kills its waiting processes, and lets running turns finish
//! within the edge's grace period; [`App::shut_down`] then stops what is
//! left and removes the directory this run made in the work directory
//! (never anything else there).
//!
//! The turns' routes themselves are `routes`. It does not parse wire formats
//! (`request`, `openai`) or run processes (`turn`, `pool`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use afk_edge::listen::Connection;

use crate::admission::Admission;
use crate::conversations::Conversations;
use crate::openai;
use crate::pool::{Kind, Pool};
use crate::routes::{self, error};
use crate::settings::{OWN_SECRETS, Settings};
use crate::turn::{Launch, Registry};

/// How often waiting processes are checked (dead or stale ones replaced).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Why the gateway cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The work directory cannot be made.
    #[error("cannot make the work directory {path} (AFK_GATEWAY_WORK_DIR): {source}")]
    WorkDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The gateway's shared state.
#[derive(Debug)]
pub struct App {
    pub(crate) settings: Settings,
    /// This run's own directory under the work directory: the only thing
    /// the gateway ever removes.
    run_dir: std::path::PathBuf,
    pub(crate) pool: Pool,
    pub(crate) conversations: Conversations,
    pub(crate) admission: Admission,
    pub(crate) registry: Arc<Registry>,
    draining: AtomicBool,
    /// Values never shown: the environment's keys, tokens and passwords.
    secrets: Vec<String>,
}

/// Whether an environment variable's name says it holds a secret.
fn secret_name(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    ["KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL"]
        .iter()
        .any(|w| name.contains(w))
}

impl App {
    /// Makes the work directory and the agents file, starts the default
    /// model's waiting processes, and the sweep of waiting processes.
    ///
    /// # Errors
    /// The work directory or the agents file cannot be made.
    pub fn start(settings: Settings) -> Result<Arc<App>, StartupError> {
        // A directory of this run's own inside the work directory: the
        // work directory may be shared (or `/tmp`), and is never emptied.
        let work = settings
            .work_dir
            .join(format!("run-{}", uuid::Uuid::new_v4().simple()));
        let made = (|| {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&settings.work_dir)?;
            std::fs::DirBuilder::new().mode(0o700).create(&work)?;
            std::fs::write(
                work.join("agents.json"),
                crate::cli::agents_file(&settings.instructions),
            )
        })();
        made.map_err(|source| StartupError::WorkDir {
            path: settings.work_dir.clone(),
            source,
        })?;
        let mut env_remove: Vec<String> = OWN_SECRETS.iter().map(|s| (*s).to_owned()).collect();
        let mut secrets = Vec::new();
        for (name, value) in std::env::vars_os() {
            let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
                continue;
            };
            // The token under any other name is not inherited either.
            if settings.token.is(value.trim()) && !env_remove.iter().any(|n| n == name) {
                env_remove.push(name.to_owned());
            }
            if secret_name(name) && value.trim().len() >= 8 {
                secrets.push(value.trim().to_owned());
            }
        }
        let launch = Arc::new(Launch {
            bin: settings.agent_bin.clone(),
            agents_file: work.join("agents.json"),
            work_dir: work.clone(),
            env_remove,
        });
        let app = Arc::new(App {
            pool: Pool::new(launch, settings.warm),
            conversations: Conversations::new(settings.max_conversations),
            admission: Admission::new(
                settings.max_turns,
                settings.max_waiting,
                settings.queue_wait,
            ),
            registry: Arc::new(Registry::default()),
            draining: AtomicBool::new(false),
            secrets,
            settings,
            run_dir: work,
        });
        let default = app.settings.models.default_model().to_owned();
        app.pool.want(&default, Kind::Chat);
        app.pool.want(&default, Kind::Conversation);
        tokio::spawn(sweep(Arc::downgrade(&app)));
        Ok(app)
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The waiting processes.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// How many turns run.
    pub fn running(&self) -> usize {
        self.registry.running()
    }

    /// How many requests wait for a turn.
    pub fn waiting(&self) -> usize {
        self.admission.waiting()
    }

    /// Whether it is draining.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Stops admitting turns and kills the waiting processes; running
    /// turns go on (the edge gives them its grace period).
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        let killed = self.pool.close();
        tracing::info!(
            running = self.registry.running(),
            waiting_killed = killed,
            "draining: no new turns"
        );
    }

    /// Drains, stops every turn still running and waits for them (at most
    /// `wait`), and removes this run's directory (nothing else of the work
    /// directory). Returns how many turns it stopped.
    pub async fn shut_down(&self, wait: Duration) -> usize {
        self.drain();
        let stopped = self.registry.stop_all();
        if !self.registry.idle(wait).await {
            tracing::warn!(
                running = self.registry.running(),
                "turns still running at exit"
            );
        }
        let _ = std::fs::remove_dir_all(&self.run_dir);
        stopped
    }

    /// `text` with every secret replaced, on one line.
    pub fn redact(&self, text: &str) -> String {
        let mut out = self.settings.token.redact(text);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "<redacted>");
            }
        }
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

async fn sweep(app: Weak<App>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(app) = app.upgrade() else { return };
        if app.draining() {
            return;
        }
        app.pool.sweep();
    }
}

/// The path, short and on one line, for an audit line.
fn shown_path(path: &str) -> String {
    let cut: String = path.chars().take(200).filter(|c| !c.is_control()).collect();
    cut
}

/// Bearer auth and the audit line for every `/v1` request.
async fn guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let connection = request.extensions().get::<Connection>().cloned();
    let from = connection
        .as_ref()
        .map_or_else(|| "unknown".to_owned(), |c| c.peer.to_string());
    let what = format!("{} {}", request.method(), shown_path(request.uri().path()));
    let (who, response) = if app.settings.token.accepts(request.headers()) {
        // An authenticated connection keeps its place under the
        // connection limit: unauthenticated ones make room first.
        if let Some(c) = &connection {
            c.authenticated();
        }
        ("token", next.run(request).await)
    } else {
        let message = if app.settings.token.is_configured() {
            "missing or wrong bearer token (Authorization: Bearer <token>)"
        } else {
            "this gateway has no token configured (AFK_GATEWAY_TOKEN or AFK_GATEWAY_TOKEN_FILE), so it refuses every request"
        };
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            message,
            "authentication_error",
            Some("invalid_api_key"),
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        ("refused", response)
    };
    afk_edge::audit::line(who, &from, &what, response.status().as_u16());
    response
}

async fn health(State(app): State<Arc<App>>) -> Response {
    if app.draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "draining", "service": "afk-gateway"})),
        )
            .into_response();
    }
    axum::Json(json!({"status": "ok", "service": "afk-gateway"})).into_response()
}

async fn models(State(app): State<Arc<App>>) -> Response {
    axum::Json(openai::models(&app.settings.models)).into_response()
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such route; this gateway serves POST /v1/chat/completions, POST /v1/conversational and GET /v1/models",
        "invalid_request_error",
        Some("unknown_url"),
    )
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "this method is not allowed on this route",
        "invalid_request_error",
        Some("method_not_allowed"),
    )
}

/// The router with every route.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(routes::chat))
        .route("/v1/conversational", post(routes::conversational))
        .route("/v1/models", get(models))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .route("/health", get(health))
        .with_state(app)
}

/// Serves `app` on `listener` until `stop` resolves; then drains (see the
/// module's documentation) within the settings' grace period. The caller
/// calls [`App::shut_down`] after.
///
/// # Errors
/// Only a failure of the listener itself.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = app.settings.limits;
    let draining = app.clone();
    afk_edge::listen::serve(listener, router(app), limits, stop, || async move {
        draining.drain();
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_known_by_their_names() {
        for (name, want) in [
            ("ANTHROPIC_API_KEY", true),
            ("CLAUDE_CODE_OAUTH_TOKEN", true),
            ("aws_secret_access_key", true),
            ("DB_PASSWORD", true),
            ("GOOGLE_APPLICATION_CREDENTIALS", true),
            ("ANTHROPIC_BASE_URL", false),
            ("HOME", false),
        ] {
            assert_eq!(secret_name(name), want, "{name}");
        }
    }
}

/// Starts the gateway, serves `listener` until `stop` resolves, drains,
/// and shuts down (every turn stopped, every waiting process killed, the
/// work directory removed).
///
/// # Errors
/// The gateway cannot start, or the listener fails.
pub async fn run(
    listener: tokio::net::TcpListener,
    settings: Settings,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let app = App::start(settings)?;
    let served = serve(listener, app.clone(), stop).await;
    let stopped = app.shut_down(Duration::from_secs(5)).await;
    tracing::info!(turns_stopped = stopped, "stopped");
    served.map_err(RunError::Listen)
}

/// Why [`run`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// It could not start.
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// The listener failed.
    #[error("the listener failed: {0}")]
    Listen(#[source] std::io::Error),
}
