//! Origin and Host checks against DNS rebinding.
//!
//! Threat: a web page on `evil.example` makes the victim's browser send requests to a gateway on
//! localhost, either directly (a foreign `Origin`) or after rebinding its own name to 127.0.0.1
//! (a foreign `Host`). Default: only loopback origins and, on a loopback listener, only loopback
//! hosts are accepted; more can be allowed in `[origins]`. A present `Origin` that is not allowed
//! answers 403, as the MCP transport specification requires.

use http::{header, HeaderMap, Uri};

use crate::config::OriginConfig;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OriginError {
    /// The `Origin` header names an origin that is not allowed.
    #[error("origin not allowed")]
    Foreign,
    /// `Origin: null` (sandboxed frames, file: pages, some redirects).
    #[error("null origin")]
    Null,
    /// More than one `Origin` header.
    #[error("duplicate Origin header")]
    Duplicate,
    /// The `Host` names a host that is not allowed on this listener.
    #[error("host not allowed")]
    ForeignHost,
    /// No host at all, or more than one `Host` header.
    #[error("missing or duplicate Host")]
    BadHost,
}

/// The checks, compiled once at start-up.
#[derive(Debug, Clone)]
pub struct OriginGuard {
    loopback_listener: bool,
    cfg: OriginConfig,
}

impl OriginGuard {
    /// `loopback_listener`: whether the listener is bound to a loopback address.
    pub fn new(cfg: OriginConfig, loopback_listener: bool) -> Self {
        OriginGuard {
            loopback_listener,
            cfg,
        }
    }

    /// Checks `Host` and `Origin`.
    pub fn check(&self, headers: &HeaderMap, uri: &Uri) -> Result<(), OriginError> {
        let mut hosts = headers.get_all(header::HOST).iter();
        let host = match (hosts.next(), hosts.next()) {
            (Some(h), None) => h.to_str().map_err(|_| OriginError::BadHost)?,
            (None, None) => uri
                .authority()
                .map(|a| a.as_str())
                .ok_or(OriginError::BadHost)?,
            _ => return Err(OriginError::BadHost),
        };
        let name = host_name(host).ok_or(OriginError::BadHost)?;
        let host_ok = is_loopback_name(name)
            || self
                .cfg
                .allowed_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name))
            || (!self.loopback_listener && self.cfg.allowed_hosts.is_empty());
        if !host_ok {
            return Err(OriginError::ForeignHost);
        }
        let mut origins = headers.get_all(header::ORIGIN).iter();
        let origin = match (origins.next(), origins.next()) {
            (None, _) => return Ok(()),
            (Some(o), None) => o.to_str().map_err(|_| OriginError::Foreign)?,
            _ => return Err(OriginError::Duplicate),
        };
        if origin.eq_ignore_ascii_case("null") {
            return Err(OriginError::Null);
        }
        if self
            .cfg
            .allowed_origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
        {
            return Ok(());
        }
        let rest = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .ok_or(OriginError::Foreign)?;
        match host_name(rest) {
            Some(n) if is_loopback_name(n) && !rest.contains(['/', '@', '?', '#']) => Ok(()),
            _ => Err(OriginError::Foreign),
        }
    }
}

/// The host part of `host[:port]` or `[v6][:port]`.
fn host_name(authority: &str) -> Option<&str> {
    if authority.is_empty() {
        return None;
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        let after = &rest[end + 1..];
        if !(after.is_empty() || valid_port(after.strip_prefix(':')?)) {
            return None;
        }
        return Some(&authority[..end + 2]);
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if valid_port(p) && !h.is_empty() && !h.contains(':') => Some(h),
        Some(_) => None,
        None => Some(authority),
    }
}

fn valid_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

fn is_loopback_name(n: &str) -> bool {
    n.eq_ignore_ascii_case("localhost") || n == "127.0.0.1" || n == "[::1]"
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn check(g: &OriginGuard, host: &str, origins: &[&str]) -> Result<(), OriginError> {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        for o in origins {
            h.append(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        g.check(&h, &Uri::from_static("/mcp/demo"))
    }

    fn local() -> OriginGuard {
        OriginGuard::new(OriginConfig::default(), true)
    }

    #[test]
    fn loopback_hosts_and_origins_pass_with_any_port() {
        for host in [
            "localhost",
            "localhost:8700",
            "127.0.0.1:1",
            "[::1]:9",
            "LOCALHOST",
        ] {
            assert_eq!(check(&local(), host, &[]), Ok(()), "{host}");
        }
        for o in [
            "http://localhost:3000",
            "https://127.0.0.1",
            "http://[::1]:5173",
        ] {
            assert_eq!(check(&local(), "localhost", &[o]), Ok(()), "{o}");
        }
    }

    #[test]
    fn rebinding_attempts_are_refused() {
        assert_eq!(
            check(&local(), "evil.example", &[]),
            Err(OriginError::ForeignHost)
        );
        assert_eq!(
            check(&local(), "evil.example:8700", &["http://evil.example"]),
            Err(OriginError::ForeignHost)
        );
        assert_eq!(
            check(&local(), "localhost", &["http://evil.example"]),
            Err(OriginError::Foreign)
        );
        assert_eq!(
            check(&local(), "localhost", &["http://localhost.evil.example"]),
            Err(OriginError::Foreign)
        );
        assert_eq!(
            check(&local(), "localhost", &["http://localhost@evil.example"]),
            Err(OriginError::Foreign)
        );
        assert_eq!(
            check(&local(), "localhost", &["null"]),
            Err(OriginError::Null)
        );
        assert_eq!(
            check(&local(), "localhost", &["http://localhost", "http://evil"]),
            Err(OriginError::Duplicate)
        );
        assert_eq!(
            check(&local(), "localhost", &["file://localhost"]),
            Err(OriginError::Foreign)
        );
        assert_eq!(
            check(&local(), "local:host:1", &[]),
            Err(OriginError::BadHost)
        );
    }

    #[test]
    fn configured_origins_and_hosts() {
        let g = OriginGuard::new(
            OriginConfig {
                allowed_origins: vec!["https://app.example.com".into()],
                allowed_hosts: vec!["gw.example.com".into()],
            },
            true,
        );
        assert_eq!(
            check(&g, "gw.example.com:443", &["https://app.example.com"]),
            Ok(())
        );
        assert_eq!(
            check(&g, "gw.example.com", &["https://app.example.com:8443"]),
            Err(OriginError::Foreign)
        );
    }
}
