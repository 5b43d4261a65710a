//! The HTTP surface: the router, bearer auth and audit, health, and serving
//! with a drain. The shared state is `state`.
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

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use afk_edge::listen::Connection;

use crate::openai;
use crate::routes::{self, error};
use crate::settings::Settings;
pub use crate::state::{App, StartupError};

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
