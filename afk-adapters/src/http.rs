//! Shared HTTP plumbing for every adapter.
//!
//! - one [`reqwest::Client`] per process (connection reuse), with a connect
//!   timeout and a request timeout;
//! - [`Secret`]s read from their source on every request (an env var, or a
//!   mounted file that may be rotated), never printed: their `Debug` names the
//!   source only, and no error carries a value;
//! - [`Http::retrying`]: jittered exponential backoff that honours the wait a
//!   service asked for, only for errors that are safe to repeat, and never
//!   past the tick's deadline;
//! - a request counter for the tick summary.
//!
//! It decides nothing about any particular service: classifying a response
//! (is this 403 a rate limit?) is the adapter's job.
//!
//! This file is long because it is the one HTTP layer of every adapter (client, secrets, retries, caps) with its unit tests.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use afk_core::ports::{PortError, PortResult};
use backon::{ExponentialBuilder, Retryable};

/// Where a credential comes from. Read on every use, so a rotated file is
/// picked up without a restart.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// No credential configured.
    None,
    /// An environment variable, by name.
    Env(String),
    /// A file (e.g. a mounted Secret); surrounding whitespace is trimmed.
    File(PathBuf),
    /// A value held in memory (tests, or a value the caller already read).
    Value(String),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::None => f.write_str("Secret(none)"),
            Secret::Env(name) => write!(f, "Secret(env {name})"),
            Secret::File(path) => write!(f, "Secret(file {})", path.display()),
            Secret::Value(_) => f.write_str("Secret(value, redacted)"),
        }
    }
}

impl Secret {
    /// The usual pair of settings: `<NAME>_FILE` (a path) wins over `<NAME>`
    /// (the value), read through `lookup` (the process env, or a map in
    /// tests). Only the source is remembered, not the value.
    pub fn from_settings(name: &str, lookup: impl Fn(&str) -> Option<String>) -> Secret {
        let file_key = format!("{name}_FILE");
        if let Some(path) = lookup(&file_key).filter(|p| !p.trim().is_empty()) {
            return Secret::File(PathBuf::from(path.trim()));
        }
        if lookup(name).is_some_and(|v| !v.trim().is_empty()) {
            return Secret::Env(name.to_owned());
        }
        Secret::None
    }

    /// Whether a source is configured (not whether it can be read).
    pub fn is_configured(&self) -> bool {
        !matches!(self, Secret::None)
    }

    /// Reads the current value. `Ok(None)` when no source is configured.
    ///
    /// # Errors
    /// `Auth` naming the source (never the value) when it cannot be read or
    /// is empty.
    pub fn read(&self) -> PortResult<Option<String>> {
        let value = match self {
            Secret::None => return Ok(None),
            Secret::Env(name) => std::env::var(name).map_err(|_| PortError::Auth {
                message: format!("the credential in env var {name} is not set"),
            })?,
            Secret::File(path) => std::fs::read_to_string(path).map_err(|e| PortError::Auth {
                message: format!(
                    "cannot read the credential file {}: {}",
                    path.display(),
                    e.kind()
                ),
            })?,
            Secret::Value(v) => v.clone(),
        };
        let value = value.trim().to_owned();
        if value.is_empty() {
            return Err(PortError::Auth {
                message: format!("the credential from {self:?} is empty"),
            });
        }
        if value.chars().any(char::is_control) {
            // A line break inside a token would split the header it is sent
            // in (or end it early): never sent. The value is not shown.
            return Err(PortError::Auth {
                message: format!(
                    "the credential from {self:?} holds a line break or another control character inside it; fix the secret"
                ),
            });
        }
        Ok(Some(value))
    }

    /// Whether the credential's current value is malformed (a line break
    /// or another control character inside it), for the settings check at
    /// start: `Err` naming the source, never the value. A source that is
    /// missing or unreadable now is not an error here (a mounted secret may
    /// appear later; every use reads it again and says so).
    ///
    /// # Errors
    /// The message naming the source.
    pub fn check_format(&self) -> Result<(), String> {
        match self.read() {
            Err(PortError::Auth { message }) if message.contains("control character") => {
                Err(message)
            }
            _ => Ok(()),
        }
    }
}

/// How hard to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first try.
    pub max_retries: usize,
    /// First backoff delay.
    pub min_delay: Duration,
    /// Largest backoff delay.
    pub max_delay: Duration,
    /// The longest wait a service may ask for (`Retry-After`) that we honour;
    /// a longer one fails the call so the tick can move on.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
            max_wait: Duration::from_secs(60),
        }
    }
}

/// Settings of the shared client.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// TCP connect timeout (default 5 s).
    pub connect_timeout: Duration,
    /// Whole-request timeout (default 30 s).
    pub request_timeout: Duration,
    /// Retry policy for safe requests.
    pub retry: RetryPolicy,
    /// The tick's deadline: no request is sent, no request outlasts it, and
    /// no retry wait ends after it.
    pub deadline: Option<Instant>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            deadline: None,
        }
    }
}

/// The shared client, cheap to clone (clones share the connection pool and
/// the request counter).
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
    calls: Arc<AtomicU64>,
    retry: RetryPolicy,
    deadline: Option<Instant>,
    request_timeout: Duration,
}

impl Http {
    /// Builds the client.
    ///
    /// # Errors
    /// `Permanent` when the TLS stack cannot be initialised.
    pub fn new(settings: &HttpSettings) -> PortResult<Http> {
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .user_agent(concat!("afk/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PortError::Permanent {
                message: format!("cannot build the HTTP client: {}", e.without_url()),
            })?;
        Ok(Http {
            client,
            calls: Arc::new(AtomicU64::new(0)),
            retry: settings.retry,
            deadline: settings.deadline,
            request_timeout: settings.request_timeout,
        })
    }

    /// The underlying client, for building requests.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Requests sent so far by every clone of this client.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Sends one request, counting it. A transport failure (connect, timeout,
    /// broken body) is `Transient`; its message never contains the URL, which
    /// for some services (Slack webhooks) is itself the credential.
    ///
    /// The tick's deadline holds for every request: none is sent after it,
    /// and none may take longer than the time left before it.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> PortResult<reqwest::Response> {
        self.send_within(request, None).await
    }

    /// [`Http::send`] with a shorter timeout of its own (a batched read
    /// keeps time to ask again in halves).
    pub async fn send_within(
        &self,
        request: reqwest::RequestBuilder,
        timeout: Option<Duration>,
    ) -> PortResult<reqwest::Response> {
        let mut limit = timeout.map_or(self.request_timeout, |t| t.min(self.request_timeout));
        if let Some(left) = self.time_left() {
            if left.is_zero() {
                return Err(PortError::Transient {
                    message: "the tick deadline passed before this request was sent".into(),
                });
            }
            limit = limit.min(left);
        }
        let request = request.timeout(limit);
        self.calls.fetch_add(1, Ordering::Relaxed);
        request.send().await.map_err(|e| transport_error(&e))
    }

    /// Whether the tick's deadline has passed.
    pub fn past_deadline(&self) -> bool {
        self.time_left().is_some_and(|l| l.is_zero())
    }

    /// The time left before the tick's deadline, when there is one.
    pub fn time_left(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Runs `op` and repeats it while it fails with a retryable error
    /// (`Transient`, `RateLimited`), with jittered exponential backoff. A
    /// service-requested wait replaces the backoff delay; a wait longer than
    /// the policy's `max_wait`, or one that would end past the deadline, ends
    /// the retries and returns the error.
    ///
    /// Use it only for requests that are safe to repeat: reads, and writes
    /// that are idempotent by construction.
    pub async fn retrying<T, F, Fut>(&self, op: F) -> PortResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = PortResult<T>>,
    {
        let policy = self.retry;
        let deadline = self.deadline;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(policy.min_delay)
            .with_max_delay(policy.max_delay)
            .with_max_times(policy.max_retries)
            .with_jitter();
        op.retry(backoff)
            .sleep(tokio::time::sleep)
            .when(PortError::is_retryable)
            .adjust(move |error: &PortError, delay: Option<Duration>| {
                // `None` means the backoff's attempts are spent: stop, even
                // when the service named a wait.
                let backoff = delay?;
                let wait = match error.retry_after() {
                    Some(asked) if asked > policy.max_wait => return None,
                    Some(asked) => asked,
                    None => backoff,
                };
                match deadline {
                    Some(d) if Instant::now() + wait > d => None,
                    _ => Some(wait),
                }
            })
            .notify(|error: &PortError, wait: Duration| {
                tracing::debug!(error = %error, wait_ms = wait.as_millis() as u64, "retrying");
            })
            .await
    }
}

/// `base` + path `segments` (each percent-encoded, so a label name with a
/// space or a slash stays one segment) + `query`. `setting` names the
/// setting `base` came from, for the error.
pub fn join_url(
    base: &str,
    segments: &[&str],
    query: &[(&str, &str)],
    setting: &str,
) -> PortResult<reqwest::Url> {
    // A dot segment would change the path it is put in (`labels/..` is the
    // route that removes every label): never sent, whatever names it.
    if let Some(dot) = segments.iter().find(|s| matches!(**s, "." | "..")) {
        return Err(PortError::Permanent {
            message: format!("refusing to put the path segment {dot:?} in a URL"),
        });
    }
    let mut url =
        reqwest::Url::parse(base.trim_end_matches('/')).map_err(|e| PortError::Permanent {
            message: format!("{setting} is not a URL: {e}"),
        })?;
    url.path_segments_mut()
        .map_err(|()| PortError::Permanent {
            message: format!("{setting} cannot take a path"),
        })?
        .pop_if_empty()
        .extend(segments);
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    Ok(url)
}

/// Maps a transport-level failure to a port error, without the URL.
pub fn transport_error(error: &reqwest::Error) -> PortError {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "broken response body"
    } else {
        "request failed"
    };
    PortError::Transient {
        message: format!("{kind}: {}", without_url_text(error)),
    }
}

fn without_url_text(error: &reqwest::Error) -> String {
    // `without_url` consumes the error; rebuild the text from the source chain
    // instead, which never holds the URL.
    let mut text = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&s.to_string());
        source = s.source();
    }
    if text.is_empty() {
        text.push_str("no further detail");
    }
    text
}

/// Reads a `Retry-After` header value: delta-seconds, or an HTTP date
/// relative to `now_unix` (seconds). `None` when absent or unreadable.
pub fn parse_retry_after(value: &str, now_unix: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let delta = date.unix_timestamp().saturating_sub(now_unix);
    Some(Duration::from_secs(u64::try_from(delta).unwrap_or(0)))
}

/// The current Unix time in seconds (adapters may read the clock; the core
/// may not).
pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Reads at most `limit` bytes of a response body as text, for error
/// messages (a service's error page can be large).
pub async fn body_excerpt(mut response: reqwest::Response, limit: usize) -> String {
    // Only the start is read: an error page can be any size.
    let mut bytes = Vec::new();
    while bytes.len() <= limit.saturating_mul(4) {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut cut = text.trim().to_owned();
    if cut.len() > limit {
        let mut end = limit;
        while !cut.is_char_boundary(end) {
            end -= 1;
        }
        cut.truncate(end);
        cut.push('…');
    }
    cut
}

/// A response body of at most `cap` bytes. A longer one is an error that
/// names the cap, and no more of it is read: a body is held in memory whole,
/// and a CronJob has 128 MiB.
///
/// # Errors
/// `Permanent` over the cap; `Transient` when the body breaks off.
pub async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
    what: &str,
) -> PortResult<Vec<u8>> {
    let too_big = || PortError::Permanent {
        message: format!(
            "{what} is larger than the {} MiB afk reads at most; refusing to read on",
            cap / (1024 * 1024)
        ),
    };
    if response
        .content_length()
        .is_some_and(|n| n > u64::try_from(cap).unwrap_or(u64::MAX))
    {
        return Err(too_big());
    }
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| transport_error(&e))? {
        if out.len() + chunk.len() > cap {
            return Err(too_big());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dot_segment_is_never_put_in_a_url() {
        for dot in [".", ".."] {
            let err = join_url(
                "https://api.example",
                &["repos", "o", "r", "issues", "7", "labels", dot],
                &[],
                "AFK_GITHUB_API_URL",
            )
            .unwrap_err();
            assert!(err.to_string().contains("path segment"), "{err}");
        }
        let url = join_url("https://api.example/", &["labels", "a/b", "..."], &[], "X").unwrap();
        assert_eq!(url.as_str(), "https://api.example/labels/a%2Fb/...");
    }

    #[test]
    fn secrets_never_show_their_value() {
        let secret = Secret::Value("ghp_supersecret".into());
        assert_eq!(format!("{secret:?}"), "Secret(value, redacted)");
        assert!(!format!("{:?}", Secret::Env("AFK_GITHUB_TOKEN".into())).contains("ghp_"));
        assert_eq!(secret.read().unwrap().as_deref(), Some("ghp_supersecret"));
        assert_eq!(Secret::None.read().unwrap(), None);
        let empty = Secret::Value("  ".into()).read().unwrap_err();
        assert!(!empty.to_string().contains("  "));
    }

    #[test]
    fn a_file_source_wins_and_is_re_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let lookup = |k: &str| match k {
            "T_FILE" => Some(path.display().to_string()),
            "T" => Some("ignored".to_owned()),
            _ => None,
        };
        let secret = Secret::from_settings("T", lookup);
        assert_eq!(secret, Secret::File(path.clone()));
        assert_eq!(secret.read().unwrap().as_deref(), Some("first"));
        std::fs::write(&path, "rotated").unwrap();
        assert_eq!(secret.read().unwrap().as_deref(), Some("rotated"));
        std::fs::remove_file(&path).unwrap();
        let err = secret.read().unwrap_err().to_string();
        assert!(err.contains("cannot read the credential file"), "{err}");
        assert!(!err.contains("rotated"));
        assert_eq!(Secret::from_settings("T", |_| None), Secret::None);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("30", 0), Some(Duration::from_secs(30)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_767),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784_111_800),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", 0), None);
        assert_eq!(parse_retry_after("-5", 0), None);
    }

    fn fast() -> Http {
        Http::new(&HttpSettings {
            retry: RetryPolicy {
                max_retries: 3,
                min_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(5),
                max_wait: Duration::from_millis(50),
            },
            ..HttpSettings::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn retries_only_retryable_errors() {
        let http = fast();
        let tries = AtomicU64::new(0);
        let result: PortResult<()> = http
            .retrying(|| async {
                tries.fetch_add(1, Ordering::Relaxed);
                Err(PortError::Permanent {
                    message: "no".into(),
                })
            })
            .await;
        assert!(matches!(result, Err(PortError::Permanent { .. })));
        assert_eq!(tries.load(Ordering::Relaxed), 1);

        let tries = AtomicU64::new(0);
        let result = http
            .retrying(|| async {
                let n = tries.fetch_add(1, Ordering::Relaxed);
                if n < 2 {
                    Err(PortError::Transient {
                        message: "blip".into(),
                    })
                } else {
                    Ok(n)
                }
            })
            .await;
        assert_eq!(result, Ok(2));
    }

    #[tokio::test]
    async fn a_wait_longer_than_allowed_ends_the_retries() {
        let http = fast();
        let tries = AtomicU64::new(0);
        let result: PortResult<()> = http
            .retrying(|| async {
                tries.fetch_add(1, Ordering::Relaxed);
                Err(PortError::RateLimited {
                    retry_after: Some(Duration::from_secs(3600)),
                })
            })
            .await;
        assert!(matches!(result, Err(PortError::RateLimited { .. })));
        assert_eq!(tries.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn service_requested_waits_do_not_extend_the_attempts() {
        let http = fast();
        let tries = AtomicU64::new(0);
        let result: PortResult<()> = http
            .retrying(|| async {
                tries.fetch_add(1, Ordering::Relaxed);
                Err(PortError::RateLimited {
                    retry_after: Some(Duration::ZERO),
                })
            })
            .await;
        assert!(matches!(result, Err(PortError::RateLimited { .. })));
        assert_eq!(
            tries.load(Ordering::Relaxed),
            4,
            "one try and three retries"
        );
    }

    #[tokio::test]
    async fn no_retry_wait_ends_past_the_deadline() {
        let mut http = fast();
        http.deadline = Some(Instant::now());
        let tries = AtomicU64::new(0);
        let result: PortResult<()> = http
            .retrying(|| async {
                tries.fetch_add(1, Ordering::Relaxed);
                Err(PortError::Transient {
                    message: "blip".into(),
                })
            })
            .await;
        assert!(result.is_err());
        assert_eq!(tries.load(Ordering::Relaxed), 1);
    }
}
