//! Shared test helpers.

use std::time::Duration;

use afk_adapters::github::{GitHubSettings, GitHubTracker};
use afk_adapters::http::{Http, HttpSettings, RetryPolicy, Secret};
use afk_core::Timestamp;

/// An HTTP client with millisecond backoff, so retry tests run fast.
pub fn fast_http() -> Http {
    Http::new(&HttpSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_retries: 3,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            max_wait: Duration::from_secs(2),
        },
        deadline: None,
    })
    .unwrap()
}

pub fn ts(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

/// A GitHub tracker at `api_url` (no trusted bots), for wire tests.
pub fn github(
    api_url: &str,
    token: &str,
    owner: Option<&str>,
    own_login: Option<&str>,
) -> GitHubTracker {
    GitHubTracker::new(
        fast_http(),
        GitHubSettings {
            api_url: api_url.to_owned(),
            token: Secret::Value(token.to_owned()),
            app: None,
            default_owner: owner.map(str::to_owned),
            trusted_bots: vec![],
            own_login: own_login.map(str::to_owned),
            web_url: Some("https://github.com".into()),
            ci_link_hosts: vec![],
            ready_label: "ready-for-agent".into(),
            in_progress_label: "agent-in-progress".into(),
        },
    )
}
