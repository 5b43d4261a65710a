//! Who may use the console.
//!
//! Either `Authorization: Bearer <token>`, compared in constant time with
//! the configured token, or — only when the operator enables it because the
//! server sits behind an SSO proxy that sets it — a non-empty trusted
//! identity header (e.g. `X-authentik-username`). With neither configured
//! the server refuses to start. The token never appears in `Debug` output,
//! logs or errors.

use std::fmt;

use axum::http::{HeaderMap, HeaderName, header};

/// Why auth cannot be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token and no identity header.
    #[error(
        "no credentials are configured: set BREAKGLASS_TOKEN (or BREAKGLASS_TOKEN_FILE), or BREAKGLASS_IDENTITY_HEADER behind an SSO proxy"
    )]
    NothingConfigured,
    /// The identity header is not a valid header name.
    #[error("BREAKGLASS_IDENTITY_HEADER {0:?} is not a valid header name")]
    BadHeader(String),
}

/// The configured credentials.
#[derive(Clone)]
pub struct Auth {
    token: Option<Vec<u8>>,
    identity_header: Option<HeaderName>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("identity_header", &self.identity_header)
            .finish()
    }
}

/// Compares `given` with `secret` in time that depends only on the
/// secret's length, never on where they differ.
fn constant_time_eq(given: &[u8], secret: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != secret.len());
    for (i, s) in secret.iter().enumerate() {
        diff |= given.get(i).copied().unwrap_or(0) ^ s;
    }
    diff == 0
}

impl Auth {
    /// Credentials from a token (empty means none) and an identity header
    /// name (empty means off).
    pub fn new(token: Option<&str>, identity_header: Option<&str>) -> Result<Auth, AuthError> {
        let token = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| t.as_bytes().to_vec());
        let identity_header = match identity_header.map(str::trim).filter(|h| !h.is_empty()) {
            None => None,
            Some(h) => Some(
                HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| AuthError::BadHeader(h.to_owned()))?,
            ),
        };
        if token.is_none() && identity_header.is_none() {
            return Err(AuthError::NothingConfigured);
        }
        Ok(Auth {
            token,
            identity_header,
        })
    }

    /// Whether the request's headers carry valid credentials.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        if let Some(name) = &self.identity_header
            && headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| !v.trim().is_empty())
        {
            return true;
        }
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

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap_or(header::FROM),
                HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("x")),
            );
        }
        h
    }

    #[test]
    fn bearer_and_identity_header() {
        let token = Auth::new(Some("s3cret-token"), None).unwrap_or_else(|e| panic!("{e}"));
        for (h, want) in [
            (vec![("authorization", "Bearer s3cret-token")], true),
            (vec![("authorization", "Bearer s3cret-tokeN")], false),
            (vec![("authorization", "Bearer s3cret-token-longer")], false),
            (vec![("authorization", "Bearer s3cret")], false),
            (vec![("authorization", "Bearer ")], false),
            (vec![("authorization", "bearer s3cret-token")], false),
            (vec![("authorization", "s3cret-token")], false),
            (vec![("x-authentik-username", "alice")], false),
            (vec![], false),
        ] {
            assert_eq!(token.allows(&headers(&h)), want, "{h:?}");
        }
        let sso = Auth::new(None, Some("X-authentik-username")).unwrap_or_else(|e| panic!("{e}"));
        assert!(sso.allows(&headers(&[("x-authentik-username", "alice")])));
        assert!(!sso.allows(&headers(&[("x-authentik-username", "  ")])));
        assert!(!sso.allows(&headers(&[("authorization", "Bearer anything")])));
    }

    #[test]
    fn refuses_to_run_open_and_never_shows_the_token() {
        assert_eq!(
            Auth::new(None, None).unwrap_err(),
            AuthError::NothingConfigured
        );
        assert_eq!(
            Auth::new(Some("  "), Some("")).unwrap_err(),
            AuthError::NothingConfigured
        );
        assert!(matches!(
            Auth::new(None, Some("bad header")),
            Err(AuthError::BadHeader(_))
        ));
        let auth = Auth::new(Some("s3cret-token"), None).unwrap_or_else(|e| panic!("{e}"));
        assert!(!format!("{auth:?}").contains("s3cret"));
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
