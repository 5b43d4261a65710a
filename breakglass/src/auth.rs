//! Who may use the console.
//!
//! Either `Authorization: Bearer <token>`, compared in constant time with
//! the configured token (`afk-edge`'s [`Bearer`]), or — only when the operator enables it because the
//! server sits behind an SSO proxy that sets it — a non-empty identity
//! header (e.g. `X-authentik-username`), trusted only on connections from the
//! configured proxy addresses ([`Proxies`]): anyone else who sends the header
//! is refused. With neither configured the server refuses to start; an
//! identity header without proxy addresses is refused too, and so is a
//! token with a line break or another control character inside it. The token never
//! appears in `Debug` output, logs or errors.

use std::fmt;
use std::net::IpAddr;

use afk_edge::auth::Bearer;
use axum::http::{HeaderMap, HeaderName};

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
    /// An identity header with no proxy allowed to set it.
    #[error(
        "BREAKGLASS_IDENTITY_HEADER needs BREAKGLASS_TRUSTED_PROXIES: the addresses of the SSO proxy that sets it (anyone else could send it)"
    )]
    NoProxies,
    /// The token has a line break or another control character inside it
    /// (never shown). `Auth::new` is given the token, not where it came
    /// from, so both keys are named.
    #[error("BREAKGLASS_TOKEN (or the file BREAKGLASS_TOKEN_FILE names): {0}")]
    BadToken(afk_edge::auth::BadToken),
    /// A proxy address that does not read.
    #[error(
        "BREAKGLASS_TRUSTED_PROXIES: {0:?} is not an address or network (e.g. 10.0.0.5, 10.42.0.0/16, ::1)"
    )]
    BadProxy(String),
}

/// The addresses an identity header is trusted from: single addresses and
/// CIDR networks, IPv4 or IPv6.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proxies(Vec<(IpAddr, u8)>);

impl Proxies {
    /// Reads `10.0.0.5, 10.42.0.0/16, ::1` (comma- or space-separated).
    ///
    /// # Errors
    /// `BadProxy` naming the first entry that does not read.
    pub fn parse(text: &str) -> Result<Proxies, AuthError> {
        let mut out = Vec::new();
        for item in text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|i| !i.is_empty())
        {
            let bad = || AuthError::BadProxy(item.to_owned());
            let (addr, bits) = match item.split_once('/') {
                Some((a, b)) => (a, Some(b)),
                None => (item, None),
            };
            let addr: IpAddr = addr.parse().map_err(|_| bad())?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(bad)?,
                None => max,
            };
            out.push((addr, bits));
        }
        Ok(Proxies(out))
    }

    /// Whether `peer` is one of them.
    pub fn contains(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|(net, bits)| match (net, peer) {
            (IpAddr::V4(n), IpAddr::V4(p)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(*bits)).unwrap_or(0);
                u32::from(*n) & mask == u32::from(p) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(p)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(*bits)).unwrap_or(0);
                u128::from(*n) & mask == u128::from(p) & mask
            }
            _ => false,
        })
    }

    /// Whether none is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The configured credentials.
#[derive(Clone)]
pub struct Auth {
    token: Bearer,
    identity_header: Option<HeaderName>,
    proxies: Proxies,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("token", &self.token)
            .field("identity_header", &self.identity_header)
            .field("proxies", &self.proxies)
            .finish()
    }
}

impl Auth {
    /// Credentials from a token (empty means none), an identity header name
    /// (empty means off) and the proxies that may set it.
    ///
    /// # Errors
    /// A token with a control character inside, nothing configured, a bad
    /// header name, or a header with no proxies.
    pub fn new(
        token: Option<&str>,
        identity_header: Option<&str>,
        proxies: Proxies,
    ) -> Result<Auth, AuthError> {
        let token = Bearer::parse(token).map_err(AuthError::BadToken)?;
        let identity_header = match identity_header.map(str::trim).filter(|h| !h.is_empty()) {
            None => None,
            Some(h) => Some(
                HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| AuthError::BadHeader(h.to_owned()))?,
            ),
        };
        if !token.is_configured() && identity_header.is_none() {
            return Err(AuthError::NothingConfigured);
        }
        if identity_header.is_some() && proxies.is_empty() {
            return Err(AuthError::NoProxies);
        }
        Ok(Auth {
            token,
            identity_header,
            proxies,
        })
    }

    /// Who the request is: the identity header's value (sent by a trusted
    /// proxy), or `token` for a valid bearer token; `None` when neither.
    /// `peer` is the connection's address (`None`: unknown, never a proxy).
    pub fn who(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<String> {
        if let Some(name) = &self.identity_header
            && peer.is_some_and(|p| self.proxies.contains(p))
            && let Some(identity) = headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        {
            return Some(identity.to_owned());
        }
        self.token.accepts(headers).then(|| "token".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, header};

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

    const LOCAL: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));

    #[test]
    fn bearer_and_identity_header() {
        let token = Auth::new(Some("s3cret-token"), None, Proxies::default())
            .unwrap_or_else(|e| panic!("{e}"));
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
            assert_eq!(token.who(&headers(&h), LOCAL).is_some(), want, "{h:?}");
        }
        let proxies = Proxies::parse("127.0.0.1, 10.42.0.0/16").unwrap_or_else(|e| panic!("{e}"));
        let sso = Auth::new(None, Some("X-authentik-username"), proxies)
            .unwrap_or_else(|e| panic!("{e}"));
        let alice = headers(&[("x-authentik-username", "alice")]);
        assert_eq!(sso.who(&alice, LOCAL).as_deref(), Some("alice"));
        assert_eq!(
            sso.who(
                &alice,
                Some("10.42.7.9".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])))
            )
            .as_deref(),
            Some("alice")
        );
        // The header from anyone but the proxy is not an identity.
        assert_eq!(sso.who(&alice, Some(IpAddr::from([192, 0, 2, 1]))), None);
        assert_eq!(sso.who(&alice, None), None);
        assert_eq!(
            sso.who(&headers(&[("x-authentik-username", "  ")]), LOCAL),
            None
        );
        assert_eq!(
            sso.who(&headers(&[("authorization", "Bearer anything")]), LOCAL),
            None
        );
    }

    #[test]
    fn proxy_addresses_read_as_addresses_and_networks() {
        let p = Proxies::parse("10.0.0.0/8 ::1,192.168.1.7").unwrap_or_else(|e| panic!("{e}"));
        for (addr, want) in [
            ("10.200.3.4", true),
            ("11.0.0.1", false),
            ("::1", true),
            ("::ffff:10.1.1.1", true),
            ("192.168.1.7", true),
            ("192.168.1.8", false),
        ] {
            let ip: IpAddr = addr.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
            assert_eq!(p.contains(ip), want, "{addr}");
        }
        assert!(
            Proxies::parse("0.0.0.0/0")
                .unwrap_or_default()
                .contains(IpAddr::from([8, 8, 8, 8]))
        );
        for bad in ["10.0.0.0/33", "proxy.local", "10.0.0.1/", "::1/129"] {
            assert_eq!(
                Proxies::parse(bad),
                Err(AuthError::BadProxy(bad.to_owned())),
                "{bad}"
            );
        }
    }

    #[test]
    fn refuses_to_run_open_and_never_shows_the_token() {
        let none = Proxies::default;
        assert_eq!(
            Auth::new(None, None, none()).unwrap_err(),
            AuthError::NothingConfigured
        );
        assert_eq!(
            Auth::new(Some("  "), Some(""), none()).unwrap_err(),
            AuthError::NothingConfigured
        );
        assert!(matches!(
            Auth::new(None, Some("bad header"), none()),
            Err(AuthError::BadHeader(_))
        ));
        assert_eq!(
            Auth::new(None, Some("X-User"), none()).unwrap_err(),
            AuthError::NoProxies
        );
        let auth = Auth::new(Some("s3cret-token"), None, none()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!format!("{auth:?}").contains("s3cret"));
        // A token with a line break inside, even beside an identity header.
        let bad = Auth::new(
            Some("s3cret\ntoken\n"),
            Some("X-User"),
            Proxies::parse("::1").unwrap_or_default(),
        )
        .unwrap_err();
        let said = bad.to_string();
        assert!(said.starts_with("BREAKGLASS_TOKEN"), "{said}");
        assert!(
            !said.contains("s3cret") && !format!("{bad:?}").contains("s3cret"),
            "{said}"
        );
    }
}
