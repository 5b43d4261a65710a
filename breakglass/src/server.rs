//! The HTTP surface: every route of the spec, with its status codes.
//!
//! | route | auth | answer |
//! | --- | --- | --- |
//! | `GET /health` | none | `{"status":"ok","service":"breakglass"}` |
//! | `GET /` | none | the console page (embedded) |
//! | `POST /api/session` | yes | `{"session_id"}` |
//! | `GET /api/session/{id}/stream` | yes | SSE attach; 404 unknown |
//! | `POST /api/session/{id}/prompt` | yes | `{"status":"started"}`; 400 bad JSON, 404, 409 busy, 422 empty prompt |
//! | `POST /api/session/{id}/cancel` | yes | `{"cancelled": bool}`; 404 |
//! | `GET /api/pve/verbs` | yes | `{"verbs", "mutating"}` |
//! | `POST /api/pve/{verb}` | yes | 200 exit 0, 502 non-zero or no run, 400 not a verb |
//!
//! Missing or wrong credentials are 401 with `WWW-Authenticate: Bearer`.
//! Error bodies are `{"error": "…"}`.
//!
//! Every mutating request (`POST`) must be JSON (`Content-Type:
//! application/json`, else 415) and same-origin (`Sec-Fetch-Site` of
//! `same-origin` or `none` when sent, an `Origin` naming this host when sent;
//! else 403), so a cross-site page cannot drive the console through a logged-in
//! browser or an SSO proxy. Each one writes an audit line (`audit` target):
//! who (the proxy's identity, or `token`), from where, what, and the status.
//! One power verb runs at a time (409 while one runs); sessions are capped
//! (idle ones are evicted, else 429).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::auth::Auth;
use crate::power::{self, PowerSettings};
use crate::session::{AgentSettings, Sessions, StartError};
use crate::sse;
use afk_edge::listen::{Connection, Limits};

/// The page, embedded so the binary serves it with no build step.
pub const INDEX_HTML: &str = include_str!("../web/index.html");

/// Everything the server needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Who may use it.
    pub auth: Auth,
    /// How turns run.
    pub agent: AgentSettings,
    /// The keepalive interval of attach streams.
    pub keepalive: Duration,
    /// How power verbs run.
    pub power: PowerSettings,
    /// What clients may hold: connections, deadlines, shutdown grace.
    pub limits: Limits,
    /// Sessions at most (idle ones are evicted to make room).
    pub max_sessions: usize,
}

/// The server's shared state.
#[derive(Debug)]
pub struct App {
    /// Settings.
    pub settings: Settings,
    /// Every session.
    pub sessions: Sessions,
    shutdown: watch::Sender<bool>,
    /// The power verb running now, if any (one at a time per host).
    verb_running: std::sync::Mutex<Option<String>>,
}

impl App {
    /// A server with no sessions.
    pub fn new(settings: Settings) -> Arc<App> {
        let (shutdown, _) = watch::channel(false);
        Arc::new(App {
            sessions: Sessions::spilling_to(&settings.agent.sessions_dir),
            settings,
            shutdown,
            verb_running: std::sync::Mutex::new(None),
        })
    }

    /// Ends every attach stream and kills every running turn and power verb
    /// (each turn still appends its `cancelled` and `turn_end`). Returns how
    /// many turns ran.
    pub async fn shut_down(&self) -> usize {
        let _ = self.shutdown.send(true);
        self.sessions.cancel_all(Duration::from_secs(10)).await
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"error": message}))).into_response()
}

/// Who made an authenticated request (for the audit line).
#[derive(Debug, Clone)]
struct Who(String);

async fn require_auth(State(app): State<Arc<App>>, mut request: Request, next: Next) -> Response {
    let connection = request.extensions().get::<Connection>().cloned();
    let peer = connection.as_ref().map(|c| c.peer.ip());
    if let Some(who) = app.settings.auth.who(request.headers(), peer) {
        // An authenticated connection keeps its place under the connection
        // limit: unauthenticated ones make room first.
        if let Some(c) = &connection {
            c.authenticated();
        }
        request.extensions_mut().insert(Who(who));
        return next.run(request).await;
    }
    // A refused attempt is audited too: who tried (unknown), from where,
    // at what. The credentials themselves are never written.
    let from = connection
        .as_ref()
        .map_or_else(|| "unknown".to_owned(), |c| c.peer.to_string());
    afk_edge::audit::line(
        "unauthenticated",
        &from,
        &format!("{} {}", request.method(), request.uri().path()),
        StatusCode::UNAUTHORIZED.as_u16(),
    );
    let mut response = error(StatusCode::UNAUTHORIZED, "missing or wrong credentials");
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Why a mutating request is refused before it runs, if it is.
fn refuse_mutation(headers: &HeaderMap) -> Option<Response> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Some(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a mutating request must be JSON (Content-Type: application/json)",
        ));
    }
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site.is_some_and(|s| !matches!(s, "same-origin" | "none")) {
        return Some(error(
            StatusCode::FORBIDDEN,
            "cross-site requests are refused (Sec-Fetch-Site)",
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let origin_host = origin
            .split_once("://")
            .map_or("", |(_, rest)| rest.trim_end_matches('/'));
        if origin == "null" || !origin_host.eq_ignore_ascii_case(host) {
            return Some(error(
                StatusCode::FORBIDDEN,
                "cross-origin requests are refused (Origin is not this host)",
            ));
        }
    }
    None
}

/// Mutating requests: JSON and same-origin only, and one audit line each.
async fn guard_and_audit(request: Request, next: Next) -> Response {
    if request.method() != axum::http::Method::POST {
        return next.run(request).await;
    }
    let who = request
        .extensions()
        .get::<Who>()
        .map_or_else(|| "unknown".to_owned(), |w| w.0.clone());
    let from = request
        .extensions()
        .get::<Connection>()
        .map_or_else(|| "unknown".to_owned(), |c| c.peer.to_string());
    let what = request.uri().path().to_owned();
    let response = match refuse_mutation(request.headers()) {
        Some(refused) => refused,
        None => next.run(request).await,
    };
    afk_edge::audit::line(&who, &from, &what, response.status().as_u16());
    response
}

async fn health() -> Response {
    axum::Json(json!({"status": "ok", "service": "breakglass"})).into_response()
}

async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        INDEX_HTML,
    )
        .into_response()
}

async fn create(State(app): State<Arc<App>>) -> Response {
    let Some(session) = app.sessions.create(app.settings.max_sessions) else {
        return error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many sessions, and every one is in use (a turn runs or a client is attached); try again later",
        );
    };
    tracing::info!(session = %session.id, "session created");
    axum::Json(json!({"session_id": session.id.to_string()})).into_response()
}

async fn stream(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(session) = app.sessions.get(&id) else {
        return error(StatusCode::NOT_FOUND, "no such session");
    };
    let after = sse::last_event_id(headers.get("last-event-id").and_then(|v| v.to_str().ok()));
    let body = Body::from_stream(sse::stream(
        session,
        after,
        app.settings.keepalive,
        app.shutdown.subscribe(),
    ));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response()
}

async fn prompt(State(app): State<Arc<App>>, Path(id): Path<String>, body: Bytes) -> Response {
    let Some(session) = app.sessions.get(&id) else {
        return error(StatusCode::NOT_FOUND, "no such session");
    };
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("the body is not JSON: {e}"),
            );
        }
    };
    let Some(text) = value
        .get("prompt")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|p| !p.is_empty())
    else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "\"prompt\" must be a non-empty string",
        );
    };
    let model = match value.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) if !m.trim().is_empty() => Some(m.trim()),
        Some(_) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "\"model\" must be a non-empty string",
            );
        }
    };
    match session.start_turn(text, model, &app.settings.agent) {
        Ok(()) => {
            tracing::info!(session = %session.id, "turn started");
            axum::Json(json!({"status": "started"})).into_response()
        }
        Err(StartError::Busy) => error(
            StatusCode::CONFLICT,
            "a turn is already running; cancel it or wait for turn_end",
        ),
    }
}

async fn cancel(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let Some(session) = app.sessions.get(&id) else {
        return error(StatusCode::NOT_FOUND, "no such session");
    };
    let cancelled = session.cancel(Duration::from_secs(10)).await;
    tracing::info!(session = %session.id, cancelled, "cancel");
    axum::Json(json!({"cancelled": cancelled})).into_response()
}

async fn verbs() -> Response {
    axum::Json(json!({"verbs": power::VERBS, "mutating": power::MUTATING})).into_response()
}

/// Releases the power-verb slot when the verb ends, however it ends.
struct VerbSlot(Arc<App>);

impl Drop for VerbSlot {
    fn drop(&mut self) {
        *self
            .0
            .verb_running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

/// Runs a power verb. The verb runs in a task of its own, holding the
/// one-verb slot until it ends: a client that hangs up mid-verb neither
/// stops a reset half-way nor frees the slot early, and the verb is still
/// audited when it ends (by the task, since the request's own audit line
/// went with the request).
async fn verb(
    State(app): State<Arc<App>>,
    Path(verb): Path<String>,
    who: Option<axum::Extension<Who>>,
    connection: Option<axum::Extension<Connection>>,
) -> Response {
    if power::parse_verb(&verb).is_some() {
        let mut running = app
            .verb_running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(other) = running.as_deref() {
            return error(
                StatusCode::CONFLICT,
                &format!("the power verb {other:?} is running; wait for it to end"),
            );
        }
        *running = Some(verb.clone());
    }
    let slot = power::parse_verb(&verb).map(|_| VerbSlot(app.clone()));
    let who = who.map_or_else(|| "unknown".to_owned(), |w| w.0.0.clone());
    let from = connection.map_or_else(|| "unknown".to_owned(), |c| c.0.peer.to_string());
    let (answer, answered) = tokio::sync::oneshot::channel();
    let task_app = app.clone();
    let path = format!("/api/pve/{verb}");
    tokio::spawn(async move {
        let _slot = slot;
        let outcome = power::run_verb(
            &task_app.settings.power,
            &verb,
            Some(task_app.shutdown.subscribe()),
        )
        .await;
        let status = if outcome.rejected {
            StatusCode::BAD_REQUEST
        } else if outcome.exit_code == Some(0) {
            StatusCode::OK
        } else {
            StatusCode::BAD_GATEWAY
        };
        if !outcome.rejected {
            tracing::info!(verb = %outcome.verb, exit_code = ?outcome.exit_code, "power verb");
        }
        if let Err((status, _)) = answer.send((status, outcome)) {
            // Nobody waits for the answer any more: audit the verb here.
            afk_edge::audit::line(
                &who,
                &from,
                &format!("{path} (client gone)"),
                status.as_u16(),
            );
        }
    });
    match answered.await {
        Ok((status, outcome)) => (status, axum::Json(outcome.to_json())).into_response(),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the power verb's task ended without an answer",
        ),
    }
}

/// The router with every route.
pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/api/session", post(create))
        .route("/api/session/{id}/stream", get(stream))
        .route("/api/session/{id}/prompt", post(prompt))
        .route("/api/session/{id}/cancel", post(cancel))
        .route("/api/pve/verbs", get(verbs))
        .route("/api/pve/{verb}", post(verb))
        .route_layer(middleware::from_fn(guard_and_audit))
        .route_layer(middleware::from_fn_with_state(app.clone(), require_auth));
    Router::new()
        .route("/health", get(health))
        .route("/", get(index))
        .merge(api)
        .with_state(app)
}

/// Serves `app` on `listener` until `stop` resolves, within the settings'
/// [`Limits`] (see [`afk_edge::listen`]), then ends every attach stream and
/// kills every running turn and verb.
///
/// # Errors
/// Only a failure of the listener itself.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = app.settings.limits;
    let stopping = app.clone();
    afk_edge::listen::serve(listener, router(app), limits, stop, || async move {
        let turns = stopping.shut_down().await;
        tracing::info!(turns_stopped = turns, "running turns stopped");
    })
    .await
}
