//! Shared test helpers.

use std::time::Duration;

use afk_adapters::http::{Http, HttpSettings, RetryPolicy};
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
