//! SSRF guard (seed 001, MCP-016): URLs in tool arguments must not point the upstream at the
//! gateway's own network.
//!
//! A URL is parsed by the WHATWG parser of the `url` crate, which normalises every IPv4 spelling
//! browsers accept (decimal `2130706433`, octal `0177.0.0.1`, hex `0x7f.1`, short `127.1`) and
//! IPv6 literals; IPv4-mapped, IPv4-compatible and NAT64 IPv6 addresses are checked as the IPv4
//! address they carry. `data:` URLs fetch nothing and pass. Then: scheme `http`/`https` only, port on the allow list, host not on
//! the deny list (and on the allow list when there is one), and every address the name
//! resolves to outside the blocked ranges (loopback, private, link-local and cloud metadata,
//! CGNAT, multicast, unspecified, broadcast, reserved, unique-local). A name that does not
//! resolve is refused.
//!
//! Residual risk: the upstream resolves the name again when it fetches; a name whose records
//! change between the two lookups (DNS rebinding) can still reach an internal address. Only
//! IP-literal URLs, or domain allow lists, close that gap for arguments.

pub mod fetch;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde_json::Value;

use crate::config::SsrfConfig;

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SsrfError {
    /// Not a URL, or not `http`/`https`.
    #[error("{path}: scheme or syntax not allowed ({detail})")]
    Scheme {
        /// Argument path.
        path: String,
        /// What was wrong.
        detail: String,
    },
    /// The port is not on the allow list.
    #[error("{path}: port {port} not allowed")]
    Port {
        /// Argument path.
        path: String,
        /// The port.
        port: u16,
    },
    /// The host is denied, or not on the allow list.
    #[error("{path}: host {host} not allowed")]
    Domain {
        /// Argument path.
        path: String,
        /// The host.
        host: String,
    },
    /// The host is, or resolves to, a blocked address.
    #[error("{path}: {host} is a blocked address ({addr})")]
    Address {
        /// Argument path.
        path: String,
        /// The host.
        host: String,
        /// The blocked address.
        addr: IpAddr,
    },
    /// The name did not resolve.
    #[error("{path}: {host} does not resolve")]
    Unresolvable {
        /// Argument path.
        path: String,
        /// The host.
        host: String,
    },
}

impl SsrfError {
    /// Audit reason.
    pub fn reason(&self) -> &'static str {
        match self {
            SsrfError::Scheme { .. } => "ssrf_scheme",
            SsrfError::Port { .. } => "ssrf_port",
            SsrfError::Domain { .. } => "ssrf_domain",
            SsrfError::Address { .. } => "ssrf_address",
            SsrfError::Unresolvable { .. } => "ssrf_unresolvable",
        }
    }

    /// The argument's JSON pointer.
    pub fn path(&self) -> &str {
        match self {
            SsrfError::Scheme { path, .. }
            | SsrfError::Port { path, .. }
            | SsrfError::Domain { path, .. }
            | SsrfError::Address { path, .. }
            | SsrfError::Unresolvable { path, .. } => path,
        }
    }
}

/// The URL-valued top-level arguments of a tool: those its `inputSchema` gives
/// `format: uri` (or `url`, `iri`), and those config names.
pub fn url_args<'a>(tool: &'a Value, configured: &'a [String]) -> Vec<&'a str> {
    let mut out: Vec<&str> = configured.iter().map(String::as_str).collect();
    if let Some(props) = tool
        .get("inputSchema")
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
    {
        for (name, p) in props {
            let format = p.get("format").and_then(Value::as_str);
            if matches!(format, Some("uri" | "url" | "iri")) && !out.contains(&name.as_str()) {
                out.push(name);
            }
        }
    }
    out
}

/// Checks every URL-valued argument of a call (strings, or arrays of strings).
pub async fn check_args(
    config: &SsrfConfig,
    names: &[&str],
    args: &Value,
) -> Result<(), SsrfError> {
    if !config.enabled {
        return Ok(());
    }
    for name in names {
        let path = format!("/{name}");
        match args.get(*name) {
            Some(Value::String(s)) => check_url(config, s, &path).await?,
            Some(Value::Array(a)) => {
                for (i, v) in a.iter().enumerate() {
                    if let Value::String(s) = v {
                        check_url(config, s, &format!("{path}/{i}")).await?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks one URL; `path` names it in errors.
pub async fn check_url(config: &SsrfConfig, text: &str, path: &str) -> Result<(), SsrfError> {
    // `data:` URLs carry their content; nothing is fetched (server-everything's
    // `gzip-file-as-resource` takes one).
    if text
        .trim_start()
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("data:"))
    {
        return Ok(());
    }
    let (host, port) = parse(config, text, path)?;
    let addrs: Vec<IpAddr> = match host {
        url::Host::Ipv4(ip) => vec![IpAddr::V4(ip)],
        url::Host::Ipv6(ip) => vec![IpAddr::V6(ip)],
        url::Host::Domain(name) => {
            // A lookup that does not answer in time counts as unresolvable.
            let looked = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                tokio::net::lookup_host(format!("{name}:{port}")),
            )
            .await;
            let addrs: Vec<IpAddr> = match looked {
                Ok(Ok(a)) => a.map(|s| s.ip()).collect(),
                _ => Vec::new(),
            };
            if addrs.is_empty() {
                return Err(SsrfError::Unresolvable {
                    path: path.to_owned(),
                    host: name,
                });
            }
            addrs
        }
    };
    let host = host_text(text);
    for addr in addrs {
        if blocked(config, addr) {
            return Err(SsrfError::Address {
                path: path.to_owned(),
                host,
                addr,
            });
        }
    }
    Ok(())
}

/// Scheme, port and domain rules: everything decided without resolving.
fn parse(config: &SsrfConfig, text: &str, path: &str) -> Result<(url::Host, u16), SsrfError> {
    let scheme = |detail: String| SsrfError::Scheme {
        path: path.to_owned(),
        detail,
    };
    let u = url::Url::parse(text.trim()).map_err(|e| scheme(e.to_string()))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(scheme(format!("scheme {}", u.scheme())));
    }
    let host = u.host().ok_or_else(|| scheme("no host".into()))?.to_owned();
    let port = u.port_or_known_default().unwrap_or(0);
    if !config.allow_ports.contains(&port) {
        return Err(SsrfError::Port {
            path: path.to_owned(),
            port,
        });
    }
    if let url::Host::Domain(name) = &host {
        let name = name.trim_end_matches('.');
        let listed = |list: &[String]| {
            list.iter().any(|d| {
                let d = d.trim_start_matches("*.");
                name == d || name.strip_suffix(d).is_some_and(|p| p.ends_with('.'))
            })
        };
        if listed(&config.deny_domains)
            || (!config.allow_domains.is_empty() && !listed(&config.allow_domains))
        {
            return Err(SsrfError::Domain {
                path: path.to_owned(),
                host: name.to_owned(),
            });
        }
    }
    Ok((host, port))
}

fn host_text(text: &str) -> String {
    url::Url::parse(text.trim())
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Whether an address is in a blocked range (and not in `allow_cidrs`).
pub fn blocked(config: &SsrfConfig, addr: IpAddr) -> bool {
    let addr = canonical(addr);
    if config.allow_cidrs.iter().any(|n: &IpNet| n.contains(&addr)) {
        return false;
    }
    match addr {
        IpAddr::V4(ip) => blocked_v4(ip),
        IpAddr::V6(ip) => blocked_v6(ip),
    }
}

/// An IPv6 address that carries an IPv4 one (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`,
/// NAT64 `64:ff9b::a.b.c.d`) as that IPv4 address.
fn canonical(addr: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = addr else {
        return addr;
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let s = v6.segments();
    let embedded = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified() {
        return IpAddr::V4(embedded);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return IpAddr::V4(embedded);
    }
    addr
}

fn blocked_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_unspecified()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (64..128).contains(&o[1])) // CGNAT 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (o[1] == 18 || o[1] == 19)) // benchmarking
        || o[0] >= 240 // reserved
}

fn blocked_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
        || s[0] == 0x2001 && s[1] == 0x0db8 // documentation
        || s[0] == 0x2002 // 6to4: carries an IPv4 address of any kind
}

#[cfg(test)]
mod tests;
