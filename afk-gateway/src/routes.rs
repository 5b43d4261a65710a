//! The turns' routes: `POST /v1/chat/completions` and `POST
//! /v1/conversational`, from the request body to the answer, and the error
//! answers every route shares (their statuses are listed in `server`).
//!
//! A streaming answer's status waits for the turn's first event: a turn
//! that fails before any text gets its own status; one that fails later
//! ends its stream with a `data: {"error": …}` event and no `[DONE]`. A
//! client that goes away drops its turn, which kills the CLI's whole tree
//! at once. A conversation's turn holds the conversation until its process
//! is gone, so the next turn resumes a complete session.
//!
//! It does not parse wire formats (`request`, `openai`) or run processes
//! (`turn`, `pool`).

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::json;

use crate::admission::Refused;
use crate::cli::Session;
use crate::openai::{self, Answer};
use crate::pool::{Kind, Warmth};
use crate::request::{self, Invalid};
use crate::state::App;
use crate::turn::{self, Event, Failure, Finish, Reply, Turn};

/// An OpenAI error object with `status`.
pub(crate) fn error(status: StatusCode, message: &str, kind: &str, code: Option<&str>) -> Response {
    (status, axum::Json(openai::error(message, kind, None, code))).into_response()
}

pub(crate) fn retry_after(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn invalid(e: Invalid) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(openai::error(
            &e.message,
            "invalid_request_error",
            e.param.as_deref(),
            e.code,
        )),
    )
        .into_response()
}

fn refused(r: Refused) -> Response {
    let response = match r {
        Refused::QueueFull { .. } => error(
            StatusCode::TOO_MANY_REQUESTS,
            &r.to_string(),
            "rate_limit_error",
            Some("queue_full"),
        ),
        Refused::Waited(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            &r.to_string(),
            "server_error",
            Some("no_turn_free"),
        ),
    };
    retry_after(response)
}

fn shutting_down() -> Response {
    retry_after(error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the gateway is shutting down; try again shortly",
        "server_error",
        Some("shutting_down"),
    ))
}

/// The status, type and code of a failed turn.
fn failure_kind(f: &Failure) -> (StatusCode, &'static str, &'static str) {
    match f {
        Failure::Start(_) => (StatusCode::BAD_GATEWAY, "server_error", "agent_unavailable"),
        Failure::TimedOut(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout", "turn_timeout"),
        Failure::Agent(_) => (StatusCode::BAD_GATEWAY, "server_error", "agent_failed"),
        Failure::TooLong => (StatusCode::BAD_GATEWAY, "server_error", "reply_too_long"),
        Failure::ShuttingDown | Failure::ClientGone => (
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "shutting_down",
        ),
    }
}

fn failure(app: &App, f: &Failure) -> Response {
    let (status, kind, code) = failure_kind(f);
    let response = error(status, &app.redact(&f.to_string()), kind, Some(code));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        retry_after(response)
    } else {
        response
    }
}

/// The body, at most `max_body` bytes, arriving within `body_timeout`.
async fn read_body(app: &App, request: Request) -> Result<Bytes, Response> {
    let max = app.settings.max_body;
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("the request body is larger than {max} bytes (AFK_GATEWAY_MAX_BODY_BYTES)"),
            "invalid_request_error",
            Some("request_too_large"),
        )
    };
    let headers = request.headers();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase());
    if content_type.is_some_and(|t| t != "application/json" && !t.ends_with("+json")) {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the request body must be JSON (Content-Type: application/json)",
            "invalid_request_error",
            None,
        ));
    }
    let mut stream = request.into_body().into_data_stream();
    let reading = async {
        let mut body = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| {
                error(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read",
                    "invalid_request_error",
                    None,
                )
            })?;
            if body.len() + chunk.len() > max {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(body))
    };
    let deadline = app.settings.body_timeout;
    match tokio::time::timeout(deadline, reading).await {
        Ok(read) => read,
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            &format!(
                "the request body did not arrive within {} s",
                deadline.as_secs()
            ),
            "invalid_request_error",
            Some("body_timeout"),
        )),
    }
}

/// Logs a finished turn (never its text).
fn log_turn(
    app: &App,
    endpoint: &str,
    model: &str,
    warmth: Warmth,
    started: Instant,
    outcome: &Result<Reply, Failure>,
) {
    let took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match outcome {
        Ok(_) => tracing::info!(
            endpoint,
            model,
            process = warmth.as_str(),
            took_ms,
            "turn answered"
        ),
        Err(f) => tracing::warn!(
            endpoint,
            model,
            process = warmth.as_str(),
            took_ms,
            error = %app.redact(&f.to_string()),
            "turn failed"
        ),
    }
}

pub(crate) async fn chat(State(app): State<Arc<App>>, request: Request) -> Response {
    if app.draining() {
        return shutting_down();
    }
    let body = match read_body(&app, request).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let asked = match request::chat_request(&body, &app.settings.models) {
        Ok(r) => r,
        Err(e) => return invalid(e),
    };
    drop(body);
    let permit = match app.admission.enter().await {
        Ok(p) => p,
        Err(r) => return refused(r),
    };
    if app.draining() {
        return shutting_down();
    }
    let started = Instant::now();
    let (process, warmth) = match app.pool.fresh(&asked.model, Kind::Chat) {
        Ok(p) => p,
        Err(e) => return failure(&app, &Failure::Start(e.to_string())),
    };
    let finishing = app.clone();
    let model = asked.model.clone();
    let finish: Finish = Box::new(move |outcome| {
        drop(permit);
        log_turn(&finishing, "chat", &model, warmth, started, outcome);
        let app = finishing.clone();
        tokio::spawn(async move { app.pool.refill(&model, Kind::Chat).await });
    });
    let turn = turn::run(
        process,
        &asked.prompt,
        app.settings.turn_timeout,
        &app.registry,
        finish,
    );
    let answer = Answer::new(&asked.model);
    if asked.stream {
        stream(app, turn, answer, asked.include_usage).await
    } else {
        whole(&app, turn, &answer).await
    }
}

/// Waits for the turn's end and answers with one `chat.completion`.
async fn whole(app: &App, mut turn: Turn, answer: &Answer) -> Response {
    loop {
        match turn.next().await {
            Some(Event::Delta(_)) => {}
            Some(Event::Done(Ok(reply))) => {
                return axum::Json(answer.completion(&reply.text, reply.usage)).into_response();
            }
            Some(Event::Done(Err(f))) => return failure(app, &f),
            None => {
                return failure(
                    app,
                    &Failure::Agent("the turn ended without an answer".into()),
                );
            }
        }
    }
}

/// The frames that end a stream well.
fn closing(answer: &Answer, reply: &Reply, include_usage: bool) -> String {
    let mut out = openai::event(&answer.stop_chunk());
    if include_usage {
        out.push_str(&openai::event(&answer.usage_chunk(reply.usage)));
    }
    out.push_str(openai::DONE);
    out
}

/// The event that ends a stream badly.
fn error_event(app: &App, f: &Failure) -> String {
    let (_, kind, code) = failure_kind(f);
    openai::event(&openai::error(
        &app.redact(&f.to_string()),
        kind,
        None,
        Some(code),
    ))
}

fn sse(body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/event-stream; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response()
}

/// Answers with a stream of chunks once the turn's first event is in.
async fn stream(app: Arc<App>, mut turn: Turn, answer: Answer, include_usage: bool) -> Response {
    let mut head = openai::event(&answer.role_chunk());
    match turn.next().await {
        Some(Event::Delta(text)) => head.push_str(&openai::event(&answer.content_chunk(&text))),
        Some(Event::Done(Ok(reply))) => {
            // No delta came: the whole reply at once.
            if !reply.text.is_empty() {
                head.push_str(&openai::event(&answer.content_chunk(&reply.text)));
            }
            head.push_str(&closing(&answer, &reply, include_usage));
            return sse(Body::from(head));
        }
        Some(Event::Done(Err(f))) => return failure(&app, &f),
        None => {
            return failure(
                &app,
                &Failure::Agent("the turn ended without an answer".into()),
            );
        }
    }
    let rest = futures_util::stream::unfold(Some(turn), move |turn| {
        let app = app.clone();
        let answer = answer.clone();
        async move {
            let mut turn = turn?;
            let (frame, next) = match turn.next().await {
                Some(Event::Delta(text)) => {
                    (openai::event(&answer.content_chunk(&text)), Some(turn))
                }
                Some(Event::Done(Ok(reply))) => (closing(&answer, &reply, include_usage), None),
                Some(Event::Done(Err(f))) => (error_event(&app, &f), None),
                None => (
                    error_event(
                        &app,
                        &Failure::Agent("the turn ended without an answer".into()),
                    ),
                    None,
                ),
            };
            Some((Ok::<_, std::convert::Infallible>(Bytes::from(frame)), next))
        }
    });
    let body = futures_util::stream::iter([Ok(Bytes::from(head))]).chain(rest);
    sse(Body::from_stream(body))
}

/// 503 `{"error":"execution failed","detail"}`: a failed conversational turn.
fn execution_failed(app: &App, f: &Failure) -> Response {
    retry_after(
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"error": "execution failed", "detail": app.redact(&f.to_string())})),
        )
            .into_response(),
    )
}

pub(crate) async fn conversational(State(app): State<Arc<App>>, request: Request) -> Response {
    if app.draining() {
        return shutting_down();
    }
    let body = match read_body(&app, request).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let asked = match request::conversational_request(&body, &app.settings.models) {
        Ok(r) => r,
        Err(e) => return invalid(e),
    };
    drop(body);
    let (conversation, forgotten) = match app.conversations.get(&asked.session_id) {
        Ok(c) => c,
        Err(full) => {
            return retry_after(error(
                StatusCode::TOO_MANY_REQUESTS,
                &full.to_string(),
                "rate_limit_error",
                Some("too_many_conversations"),
            ));
        }
    };
    if let Some(session) = forgotten {
        app.pool.forget(session);
    }
    let wait = app.settings.conversation_wait;
    let Ok(state) = tokio::time::timeout(wait, conversation.state.clone().lock_owned()).await
    else {
        return error(
            StatusCode::CONFLICT,
            &format!(
                "a turn of this conversation is still running after {} s; one turn at a time per session_id",
                wait.as_secs()
            ),
            "invalid_request_error",
            Some("conversation_busy"),
        );
    };
    let permit = match app.admission.enter().await {
        Ok(p) => p,
        Err(r) => return refused(r),
    };
    if app.draining() {
        return shutting_down();
    }
    let started = Instant::now();
    let picked = match state.session {
        Some(id) => app.pool.resume(&asked.model, id),
        None => app.pool.fresh(&asked.model, Kind::Conversation),
    };
    let (process, warmth) = match picked {
        Ok(p) => p,
        Err(e) => return execution_failed(&app, &Failure::Start(e.to_string())),
    };
    let session = process.session;
    let finishing = app.clone();
    let model = asked.model.clone();
    let finish: Finish = Box::new(move |outcome| {
        drop(permit);
        let mut state = state;
        log_turn(
            &finishing,
            "conversational",
            &model,
            warmth,
            started,
            outcome,
        );
        if outcome.is_ok()
            && let Session::New(id) = session
        {
            state.session = Some(id);
        }
        // Started and primed in the background: the conversation's next
        // turn may start at once (it then starts its own process, and the
        // pool drops the one it was priming).
        let resume = state.session.filter(|_| outcome.is_ok());
        let fresh = matches!(session, Session::New(_));
        let app = finishing.clone();
        tokio::spawn(async move {
            if let Some(id) = resume {
                app.pool.keep_warm(&model, id).await;
            }
            if fresh {
                app.pool.refill(&model, Kind::Conversation).await;
            }
        });
        // The conversation's next turn may start now.
        drop(state);
    });
    let mut turn = turn::run(
        process,
        &asked.message,
        app.settings.turn_timeout,
        &app.registry,
        finish,
    );
    loop {
        match turn.next().await {
            Some(Event::Delta(_)) => {}
            Some(Event::Done(Ok(reply))) => {
                return axum::Json(json!({"session_id": asked.session_id, "reply": reply.text}))
                    .into_response();
            }
            Some(Event::Done(Err(f))) => return execution_failed(&app, &f),
            None => {
                return execution_failed(
                    &app,
                    &Failure::Agent("the turn ended without an answer".into()),
                );
            }
        }
    }
}
