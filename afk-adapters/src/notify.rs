//! Doorbells: Slack incoming webhooks, ntfy, and the log (facts in
//! `docs/contracts/ci-and-notifications.md`, Slack and ntfy).
//!
//! A doorbell is not retried within a tick: Slack has no idempotency key, so
//! a retry after a timeout could ring twice. A doorbell that failed on every
//! notifier is not recorded as rung, and the next tick rings it again.
//!
//! The Slack webhook URL is itself the credential: it is read like a token
//! (env or file, on every use) and never appears in an error.

use afk_core::doorbell::{Doorbell, Loudness, Message};
use afk_core::ports::{PortError, PortResult};
use afk_loop::ports::Notifier;
use async_trait::async_trait;
use serde_json::{Value, json};

use crate::http::{Http, Secret, body_excerpt, now_unix, parse_retry_after};

/// Slack incoming webhook.
#[derive(Debug, Clone)]
pub struct SlackNotifier {
    http: Http,
    webhook: Secret,
}

impl SlackNotifier {
    /// A notifier posting to the webhook URL held in `webhook`.
    pub fn new(http: Http, webhook: Secret) -> Self {
        SlackNotifier { http, webhook }
    }
}

#[async_trait]
impl Notifier for SlackNotifier {
    fn name(&self) -> &str {
        "slack"
    }

    async fn deliver(&self, message: &Message) -> PortResult<()> {
        let url = self.webhook.read()?.ok_or_else(|| PortError::Auth {
            message:
                "no Slack webhook configured (AFK_SLACK_WEBHOOK_URL or AFK_SLACK_WEBHOOK_URL_FILE)"
                    .into(),
        })?;
        let emoji = match message.loudness {
            Loudness::Quiet => ":white_check_mark:",
            Loudness::Loud => ":rotating_light:",
        };
        let text = format!("{emoji} *{}*\n{}", message.title, message.body);
        let request = self.http.client().post(url).json(&json!({ "text": text }));
        let response = self.http.send(request).await?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, now_unix()));
        let html = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.contains("text/html"));
        let body = body_excerpt(response, 200).await;
        match status {
            // Success is a plain-text `ok`, not JSON.
            200 if body == "ok" => Ok(()),
            200 => Err(PortError::ContractViolation {
                message: format!("Slack answered 200 without `ok`: {body}"),
            }),
            429 => Err(PortError::RateLimited { retry_after }),
            _ if html => Err(PortError::Permanent {
                message: format!(
                    "Slack answered HTTP {status} with an HTML page (a proxy or a revoked webhook?)"
                ),
            }),
            400..=499 => Err(PortError::Permanent {
                message: format!("Slack refused the doorbell (HTTP {status} {body})"),
            }),
            _ => Err(PortError::Transient {
                message: format!("Slack failed (HTTP {status} {body})"),
            }),
        }
    }
}

/// ntfy, with the JSON publish form (titles may hold non-ASCII text, which
/// headers cannot carry without RFC 2047 encoding).
#[derive(Debug, Clone)]
pub struct NtfyNotifier {
    http: Http,
    server: String,
    topic: Secret,
    token: Secret,
}

impl NtfyNotifier {
    /// A notifier publishing to `topic` on `server`. On public servers the
    /// topic is effectively a password, so it is held like one.
    pub fn new(http: Http, server: String, topic: Secret, token: Secret) -> Self {
        NtfyNotifier {
            http,
            server,
            topic,
            token,
        }
    }
}

#[async_trait]
impl Notifier for NtfyNotifier {
    fn name(&self) -> &str {
        "ntfy"
    }

    async fn deliver(&self, message: &Message) -> PortResult<()> {
        let topic = self.topic.read()?.ok_or_else(|| PortError::Auth {
            message: "no ntfy topic configured (AFK_NTFY_TOPIC)".into(),
        })?;
        let priority = match message.loudness {
            Loudness::Quiet => 3,
            Loudness::Loud => 5,
        };
        let mut body = json!({
            "topic": topic,
            "title": message.title,
            "message": message.body,
            "tags": message.tags,
            "priority": priority,
        });
        // ntfy opens `click` as a URL; a thread shown as a command or a
        // path (Kubernetes, local) stays in the message only.
        if let Some(link) = message
            .link
            .as_ref()
            .filter(|l| l.starts_with("https://") || l.starts_with("http://"))
        {
            body["click"] = Value::String(link.clone());
        }
        let mut request = self
            .http
            .client()
            .post(format!("{}/", self.server.trim_end_matches('/')))
            .json(&body);
        if let Some(token) = self.token.read()? {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let response = self.http.send(request).await?;
        let status = response.status().as_u16();
        if status == 200 {
            return Ok(());
        }
        let text = body_excerpt(response, 300).await;
        let error: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let what = error["error"].as_str().unwrap_or(&text).to_owned();
        let code = error["code"].as_u64().unwrap_or(0);
        Err(match status {
            429 => PortError::RateLimited { retry_after: None },
            401 | 403 => PortError::Auth {
                message: format!("ntfy refused the doorbell ({status}, code {code}: {what})"),
            },
            400..=499 => PortError::Permanent {
                message: format!("ntfy refused the doorbell ({status}, code {code}: {what})"),
            },
            _ => PortError::Transient {
                message: format!("ntfy failed ({status}: {what})"),
            },
        })
    }
}

/// Writes the doorbell to the log: the default when no other notifier is
/// configured, so a terminal outcome is never silent.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    fn name(&self) -> &str {
        "log"
    }

    async fn deliver(&self, message: &Message) -> PortResult<()> {
        if message.loudness == Loudness::Loud {
            tracing::warn!(target: "afk::doorbell", title = %message.title, body = %message.body, "doorbell");
        } else {
            tracing::info!(target: "afk::doorbell", title = %message.title, body = %message.body, "doorbell");
        }
        Ok(())
    }

    async fn ring(&self, bell: &Doorbell) -> PortResult<()> {
        let loud = bell.loudness() == Loudness::Loud;
        let link = bell.thread_link.as_deref().unwrap_or("");
        if loud {
            tracing::warn!(target: "afk::doorbell", kind = bell.kind.as_str(), repo = %bell.repo, issue = bell.issue,
                title = %bell.title(), reason = %bell.reason, thread = link, "doorbell");
        } else {
            tracing::info!(target: "afk::doorbell", kind = bell.kind.as_str(), repo = %bell.repo, issue = bell.issue,
                title = %bell.title(), reason = %bell.reason, thread = link, "doorbell");
        }
        Ok(())
    }
}
