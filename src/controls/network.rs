//! Who the client is at the network level, and whether that address may be served at all.
//!
//! - **Client address.** The TCP peer, unless the peer is a configured trusted proxy: then the
//!   configured forwarding header is read from the right, skipping trusted proxies, and the
//!   first other address is the client. A header from any other peer is ignored, so a client
//!   cannot choose the address its limits and blocks are keyed on. An unreadable entry stops
//!   the walk at the proxy that wrote it (its address is used: a shared, stricter key).
//! - **IP lists** (seed 004 `allowedIPs` / `blockedIPs`): the most specific matching range
//!   decides; a tie refuses; with an allow list, an address matching nothing is refused.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

use crate::config::{ForwardedHeader, NetworkConfig};

/// The client address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// In `blocked_ips` (more specifically than in `allowed_ips`).
    #[error("client address {0} is in blocked_ips")]
    Blocked(IpAddr),
    /// Not in `allowed_ips`.
    #[error("client address {0} is not in allowed_ips")]
    NotAllowed(IpAddr),
}

/// The network control.
#[derive(Debug, Clone, Default)]
pub struct Network {
    cfg: NetworkConfig,
}

impl Network {
    /// From `[network]`.
    pub fn new(cfg: NetworkConfig) -> Self {
        Network { cfg }
    }

    /// The client's address for a request from `peer`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusted(peer) {
            return peer;
        }
        let name = match self.cfg.forwarded_header {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        };
        // Several header lines are one list, in order.
        let mut hops: Vec<&str> = Vec::new();
        for v in headers.get_all(name) {
            let Ok(v) = v.to_str() else {
                return peer;
            };
            hops.extend(v.split(','));
        }
        let mut client = peer;
        for hop in hops.iter().rev() {
            let parsed = match self.cfg.forwarded_header {
                ForwardedHeader::XForwardedFor => parse_xff(hop),
                ForwardedHeader::Forwarded => parse_forwarded(hop),
            };
            let Some(ip) = parsed.map(canonical) else {
                return client;
            };
            client = ip;
            if !self.trusted(ip) {
                return ip;
            }
        }
        client
    }

    /// Refuses an address the lists exclude.
    pub fn check(&self, ip: IpAddr) -> Result<(), NetworkError> {
        let longest = |list: &[IpNet]| {
            list.iter()
                .filter(|n| n.contains(&ip))
                .map(IpNet::prefix_len)
                .max()
        };
        let allowed = longest(&self.cfg.allowed_ips);
        match (allowed, longest(&self.cfg.blocked_ips)) {
            (Some(a), Some(b)) if a > b => Ok(()),
            (_, Some(_)) => Err(NetworkError::Blocked(ip)),
            (None, None) if !self.cfg.allowed_ips.is_empty() => Err(NetworkError::NotAllowed(ip)),
            _ => Ok(()),
        }
    }

    /// Whether `ip` is a configured trusted proxy.
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.trusted(canonical(ip))
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.cfg.trusted_proxies.iter().any(|n| n.contains(&ip))
    }
}

/// IPv4-mapped IPv6 addresses are the IPv4 address (one client, one key).
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The address as one client: IPv4 whole, IPv6 by its /64 (one host usually holds the whole
/// /64, so rotating within it must not make a new client).
pub fn host_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::from(o)
        }
        v4 => v4,
    }
}

/// One `X-Forwarded-For` entry: an address, possibly bracketed or with a port.
fn parse_xff(hop: &str) -> Option<IpAddr> {
    parse_node(hop.trim())
}

/// One `Forwarded` element: its `for=` parameter (RFC 7239 §4, §6).
fn parse_forwarded(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        parse_node(v.trim().trim_matches('"'))
    })
}

/// `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:80`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, _) = rest.split_once(']')?;
        return inner.parse().ok();
    }
    let (host, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(trusted: &[&str], header: ForwardedHeader) -> Network {
        Network::new(NetworkConfig {
            trusted_proxies: trusted.iter().map(|s| s.parse().unwrap()).collect(),
            forwarded_header: header,
            ..NetworkConfig::default()
        })
    }

    fn headers(name: &str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_cannot_choose_its_address() {
        let n = net(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let h = headers("x-forwarded-for", &["1.1.1.1"]);
        assert_eq!(n.client(ip("203.0.113.9"), &h), ip("203.0.113.9"));
        // Nothing trusted at all: the header never counts.
        let n = net(&[], ForwardedHeader::XForwardedFor);
        assert_eq!(n.client(ip("10.1.1.1"), &h), ip("10.1.1.1"));
    }

    #[test]
    fn a_trusted_proxy_chain_is_walked_from_the_right() {
        let n = net(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        // The client prepended a lie; the proxies appended the truth.
        let h = headers("x-forwarded-for", &["6.6.6.6, 198.51.100.7", "10.0.0.2"]);
        assert_eq!(n.client(ip("10.0.0.1"), &h), ip("198.51.100.7"));
        // Only proxies: the leftmost proxy is as far as anyone knows.
        let h = headers("x-forwarded-for", &["10.0.0.3, 10.0.0.2"]);
        assert_eq!(n.client(ip("10.0.0.1"), &h), ip("10.0.0.3"));
        // No header: the proxy itself.
        assert_eq!(n.client(ip("10.0.0.1"), &HeaderMap::new()), ip("10.0.0.1"));
        // Garbage where the client should be: stop at the proxy that wrote it.
        let h = headers("x-forwarded-for", &["junk, 10.0.0.2"]);
        assert_eq!(n.client(ip("10.0.0.1"), &h), ip("10.0.0.2"));
        // Ports and brackets are read; mapped IPv6 is IPv4.
        let h = headers("x-forwarded-for", &["[2001:db8::5]:443"]);
        assert_eq!(n.client(ip("10.0.0.1"), &h), ip("2001:db8::5"));
        let h = headers("x-forwarded-for", &["198.51.100.7:5000"]);
        assert_eq!(n.client(ip("::ffff:10.0.0.1"), &h), ip("198.51.100.7"));
    }

    #[test]
    fn only_the_configured_header_is_read() {
        let n = net(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
        let mut h = headers(
            "forwarded",
            &["for=192.0.2.60;proto=http, for=\"[2001:db8:cafe::17]:4711\";by=10.0.0.1"],
        );
        assert_eq!(n.client(ip("10.0.0.1"), &h), ip("2001:db8:cafe::17"));
        h.insert("x-forwarded-for", "6.6.6.6".parse().unwrap());
        assert_eq!(n.client(ip("10.0.0.1"), &h), ip("2001:db8:cafe::17"));
        let h = headers("x-forwarded-for", &["6.6.6.6"]);
        assert_eq!(n.client(ip("10.0.0.1"), &h), ip("10.0.0.1"));
    }

    #[test]
    fn lists_follow_the_most_specific_range() {
        let list = |a: &[&str], b: &[&str]| {
            Network::new(NetworkConfig {
                allowed_ips: a.iter().map(|s| s.parse().unwrap()).collect(),
                blocked_ips: b.iter().map(|s| s.parse().unwrap()).collect(),
                ..NetworkConfig::default()
            })
        };
        // Seed 004: allow two private ranges, block everything else.
        let n = list(&["192.168.1.0/24", "10.0.0.0/8"], &["0.0.0.0/0"]);
        assert_eq!(n.check(ip("192.168.1.20")), Ok(()));
        assert_eq!(n.check(ip("10.9.9.9")), Ok(()));
        assert!(matches!(
            n.check(ip("192.168.2.1")),
            Err(NetworkError::Blocked(_))
        ));
        // An allow list alone refuses what it does not name (IPv6 included).
        let n = list(&["10.0.0.0/8"], &[]);
        assert!(matches!(
            n.check(ip("2001:db8::1")),
            Err(NetworkError::NotAllowed(_))
        ));
        // A block inside an allowed range wins; a tie refuses.
        let n = list(&["10.0.0.0/8", "10.1.0.0/16"], &["10.1.0.0/16"]);
        assert!(n.check(ip("10.1.2.3")).is_err());
        assert_eq!(n.check(ip("10.2.2.3")), Ok(()));
        // No lists: everyone.
        assert_eq!(list(&[], &[]).check(ip("8.8.8.8")), Ok(()));
    }
}
