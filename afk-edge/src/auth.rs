//! The bearer token: `Authorization: Bearer <token>`, compared in constant
//! time with the configured one.
//!
//! An unconfigured token (none, or only whitespace) accepts nobody: a server
//! that forgot its secret refuses everything rather than serving everyone.
//! The token never appears in `Debug` output, logs or errors.
//!
//! It does not decide what a server does without a token (breakglass
//! refuses to start, the gateway refuses every request); identity headers
//! from an SSO proxy are breakglass's own business.

use std::fmt;

use axum::http::{HeaderMap, header};

/// The configured bearer token, if any.
#[derive(Clone, Default)]
pub struct Bearer {
    token: Option<Vec<u8>>,
}

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bearer")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Compares `given` with `secret` in time that depends only on the
/// secret's length, never on where they differ.
pub fn constant_time_eq(given: &[u8], secret: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != secret.len());
    for (i, s) in secret.iter().enumerate() {
        diff |= given.get(i).copied().unwrap_or(0) ^ s;
    }
    diff == 0
}

impl Bearer {
    /// The token, trimmed; `None`, empty or whitespace means none (nobody
    /// is accepted).
    pub fn new(token: Option<&str>) -> Bearer {
        Bearer {
            token: token
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| t.as_bytes().to_vec()),
        }
    }

    /// Whether a token is configured.
    pub fn is_configured(&self) -> bool {
        self.token.is_some()
    }

    /// Whether `value` is the token (compared in constant time; never, without
    /// one).
    pub fn is(&self, value: &str) -> bool {
        self.token
            .as_ref()
            .is_some_and(|secret| constant_time_eq(value.as_bytes(), secret))
    }

    /// `text` with every occurrence of the token replaced by `<redacted>`.
    pub fn redact(&self, text: &str) -> String {
        match self
            .token
            .as_deref()
            .and_then(|t| std::str::from_utf8(t).ok())
        {
            Some(token) if text.contains(token) => text.replace(token, "<redacted>"),
            _ => text.to_owned(),
        }
    }

    /// Whether `headers` carry `Authorization: Bearer <the token>` (always
    /// `false` without a configured token).
    pub fn accepts(&self, headers: &HeaderMap) -> bool {
        let Some(secret) = &self.token else {
            return false;
        };
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .is_some_and(|given| constant_time_eq(given, secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn check(bearer: &Bearer, authorization: Option<&str>, want: bool) {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static("x")),
            );
        }
        assert_eq!(bearer.accepts(&headers), want, "{authorization:?}");
    }

    #[test]
    fn only_the_exact_token_is_accepted() {
        let bearer = Bearer::new(Some(" s3cret-token\n"));
        assert!(bearer.is_configured());
        for (authorization, want) in [
            (Some("Bearer s3cret-token"), true),
            (Some("Bearer s3cret-tokeN"), false),
            (Some("Bearer s3cret-token-longer"), false),
            (Some("Bearer s3cret"), false),
            (Some("Bearer "), false),
            (Some("bearer s3cret-token"), false),
            (Some("s3cret-token"), false),
            (Some("Basic czNjcmV0LXRva2Vu"), false),
            (None, false),
        ] {
            check(&bearer, authorization, want);
        }
    }

    #[test]
    fn no_token_accepts_nobody_and_the_token_is_never_shown() {
        for unset in [None, Some(""), Some("  \n")] {
            let bearer = Bearer::new(unset);
            assert!(!bearer.is_configured());
            check(&bearer, Some("Bearer "), false);
            check(&bearer, Some("Bearer"), false);
            check(&bearer, None, false);
        }
        let shown = format!("{:?}", Bearer::new(Some("s3cret-token")));
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(!Bearer::new(None).is(""));
        assert_eq!(Bearer::new(None).redact("a b"), "a b");
    }

    #[test]
    fn the_token_is_recognised_and_blotted_out_wherever_it_appears() {
        let bearer = Bearer::new(Some("s3cret-token"));
        assert!(bearer.is("s3cret-token"));
        assert!(!bearer.is("s3cret-toke"));
        assert_eq!(
            bearer.redact("key s3cret-token, again s3cret-token."),
            "key <redacted>, again <redacted>."
        );
        assert_eq!(bearer.redact("nothing here"), "nothing here");
    }

    #[test]
    fn constant_time_comparison_is_still_a_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abd", b"abc"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"abc\0", b"abc"));
        assert!(!constant_time_eq(b"", b"abc"));
    }
}
