//! The bearer token: `Authorization: Bearer <token>`, compared in constant
//! time with the configured one.
//!
//! An unconfigured token (none, or only whitespace) accepts nobody: a server
//! that forgot its secret refuses everything rather than serving everyone.
//! A token is one line of printable characters: surrounding whitespace (a
//! token file's final newline) is trimmed, and a line break or another
//! control character inside it is [`BadToken`], because no request could
//! ever send it in a header. The token never appears in `Debug` output,
//! logs or errors.
//!
//! It does not decide what a server does without a token (breakglass
//! refuses to start, the gateway refuses every request), nor name the
//! setting a bad token came from (the caller knows its keys); identity
//! headers from an SSO proxy are breakglass's own business.

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

/// A configured token that can never match: a line break or another
/// control character inside it. It says nothing of the token itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadToken;

impl fmt::Display for BadToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "the token has a line break or another control character inside it (a token is one line of printable characters)",
        )
    }
}

impl std::error::Error for BadToken {}

impl Bearer {
    /// The token, trimmed; `None`, empty or whitespace means none (nobody
    /// is accepted).
    ///
    /// # Errors
    /// [`BadToken`] when a control character (a line break, a tab, …) is
    /// left inside it after trimming.
    pub fn parse(token: Option<&str>) -> Result<Bearer, BadToken> {
        let token = token.map(str::trim).filter(|t| !t.is_empty());
        if token.is_some_and(|t| t.chars().any(char::is_control)) {
            return Err(BadToken);
        }
        Ok(Bearer {
            token: token.map(|t| t.as_bytes().to_vec()),
        })
    }

    /// [`Bearer::parse`] for a caller that does not report a bad token: one
    /// accepts nobody, like no token at all. A server reading its settings
    /// calls `parse` instead, to refuse to start and name the setting.
    pub fn new(token: Option<&str>) -> Bearer {
        Bearer::parse(token).unwrap_or_default()
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

    /// A token is one line of printable characters: one with a line break
    /// or another control character inside can never be sent in a header,
    /// so it is a configuration error (never shown), and a server that
    /// builds its token without asking accepts nobody with it. Surrounding
    /// whitespace (a token file's final newline) is not part of it.
    #[test]
    fn a_token_with_a_control_character_inside_is_refused_and_never_shown() {
        for bad in [
            "first-half\nsecond-half",
            "first-half\r\nsecond-half\n",
            "first-half\tsecond-half",
            "first-half\u{0}second-half",
            "first-half\u{7f}second-half",
            "first-half\u{85}second-half",
        ] {
            let refused = Bearer::parse(Some(bad));
            let shown = format!(
                "{refused:?} {}",
                refused
                    .as_ref()
                    .err()
                    .map_or(String::new(), ToString::to_string)
            );
            assert!(refused.is_err(), "{bad:?} was accepted");
            assert!(
                !shown.contains("first-half") && !shown.contains("second-half"),
                "{shown}"
            );
            assert!(
                !Bearer::new(Some(bad)).is_configured(),
                "{bad:?} is a token"
            );
        }
        for (good, sent) in [
            ("s3cret-token", "Bearer s3cret-token"),
            ("s3cret-token\n", "Bearer s3cret-token"),
            ("  s3cret-token\r\n", "Bearer s3cret-token"),
        ] {
            let bearer = Bearer::parse(Some(good)).unwrap_or_else(|e| panic!("{good:?}: {e}"));
            check(&bearer, Some(sent), true);
        }
        for unset in [None, Some(""), Some(" \n")] {
            assert!(Bearer::parse(unset).is_ok_and(|b| !b.is_configured()));
        }
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
