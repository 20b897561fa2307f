//! `[network]` (client addresses, IP lists) and `[[rate_limit]]` (see `controls::network` and
//! `controls::ratelimit`).

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::Deserialize;

use super::validated::Errors;

/// `[network]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawNetwork {
    /// Proxies (addresses or CIDRs) whose forwarding header is believed. From any other peer
    /// the header is ignored and the peer's own address is the client's (default: none).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The header trusted proxies write: `x-forwarded-for` (default) or `forwarded`
    /// (RFC 7239). Only one is read: a proxy that appends to one passes the other through
    /// from the client untouched.
    pub forwarded_header: Option<ForwardedHeader>,
    /// If set, only clients in these ranges are served (seed 004 `allowedIPs`).
    #[serde(default)]
    pub allowed_ips: Vec<String>,
    /// Clients in these ranges are refused (seed 004 `blockedIPs`). An address in both lists
    /// follows the longer (more specific) prefix; on a tie it is refused.
    #[serde(default)]
    pub blocked_ips: Vec<String>,
}

/// Which forwarding header carries the client's address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

/// `[network]`, validated.
#[derive(Debug, Clone, Default)]
pub struct NetworkConfig {
    /// Trusted proxies.
    pub trusted_proxies: Vec<IpNet>,
    /// The header they write.
    pub forwarded_header: ForwardedHeader,
    /// Allowed client ranges (empty: all).
    pub allowed_ips: Vec<IpNet>,
    /// Refused client ranges.
    pub blocked_ips: Vec<IpNet>,
}

/// Parses `a.b.c.d/n`, or a bare address as a single-address range.
pub(super) fn cidrs(key: &str, list: &[String], e: &mut Errors) -> Vec<IpNet> {
    list.iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let parsed = c
                .parse::<IpNet>()
                .or_else(|_| c.parse::<IpAddr>().map(IpNet::from));
            match parsed {
                Ok(n) => Some(n.trunc()),
                Err(_) => {
                    e.push(
                        format!("{key}[{i}]"),
                        format!("{c:?} is not an address or CIDR range"),
                    );
                    None
                }
            }
        })
        .collect()
}

pub(super) fn network(raw: RawNetwork, e: &mut Errors) -> NetworkConfig {
    NetworkConfig {
        trusted_proxies: cidrs("network.trusted_proxies", &raw.trusted_proxies, e),
        forwarded_header: raw.forwarded_header.unwrap_or_default(),
        allowed_ips: cidrs("network.allowed_ips", &raw.allowed_ips, e),
        blocked_ips: cidrs("network.blocked_ips", &raw.blocked_ips, e),
    }
}

/// `[[rate_limit]]`: one rule.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// Unique name (shown in logs and the audit trail).
    pub name: String,
    /// `sliding_window` (default: at most `max` in any `window_ms`) or `token_bucket` (up to
    /// `burst` at once, refilled at `max` per `window_ms`).
    pub algorithm: Option<Algorithm>,
    /// Window length in milliseconds (1 to 86 400 000).
    pub window_ms: u64,
    /// Requests per window.
    pub max: u32,
    /// Token bucket only: capacity (default `max`).
    pub burst: Option<u32>,
    /// What is counted separately: `global`, `ip`, `principal` (the authenticated identity;
    /// the client address when unauthenticated: seed 001's API key, then token, then IP),
    /// `tool` or `principal+tool` (only messages naming a tool). Default `principal`.
    pub key: Option<KeyBy>,
    /// Only messages whose JSON-RPC method matches one of these globs (`*` matches any run
    /// of characters), e.g. `["tools/call"]`.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Only `tools/call` for tools matching one of these globs (the upstream's own tool name,
    /// as on `/mcp/{name}`; on `/mcp` the namespace prefix is removed first).
    #[serde(default)]
    pub tools: Vec<String>,
    /// Only messages to these upstreams (globs over upstream names).
    #[serde(default)]
    pub upstreams: Vec<String>,
}

/// Counting algorithm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// At most `max` in any window.
    #[default]
    SlidingWindow,
    /// GCRA token bucket with `burst`.
    TokenBucket,
}

/// What a rule counts by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum KeyBy {
    /// One counter for everyone.
    #[serde(rename = "global")]
    Global,
    /// Per client address (IPv6 per /64).
    #[serde(rename = "ip")]
    Ip,
    /// Per authenticated principal, else per client address.
    #[default]
    #[serde(rename = "principal")]
    Principal,
    /// Per tool.
    #[serde(rename = "tool")]
    Tool,
    /// Per principal and tool.
    #[serde(rename = "principal+tool")]
    PrincipalTool,
}

/// A rule, validated.
#[derive(Debug, Clone)]
pub struct RateLimitRule {
    /// Name.
    pub name: String,
    /// Algorithm.
    pub algorithm: Algorithm,
    /// Window.
    pub window_ms: u64,
    /// Requests per window.
    pub max: u32,
    /// Bucket capacity (token bucket).
    pub burst: u32,
    /// Key.
    pub key: KeyBy,
    /// Method globs (empty: any).
    pub methods: Vec<String>,
    /// Tool globs (empty: any).
    pub tools: Vec<String>,
    /// Upstream globs (empty: any).
    pub upstreams: Vec<String>,
}

pub(super) fn rate_limits(raw: Vec<RawRateLimit>, e: &mut Errors) -> Vec<RateLimitRule> {
    let mut names = HashSet::new();
    raw.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let k = |f: &str| format!("rate_limit[{i}].{f}");
            if r.name.trim().is_empty() {
                e.push(k("name"), "must not be empty");
            } else if !names.insert(r.name.clone()) {
                e.push(k("name"), format!("{:?} is used by another rule", r.name));
            }
            if !(1..=86_400_000).contains(&r.window_ms) {
                e.push(
                    k("window_ms"),
                    format!("must be between 1 and 86400000, got {}", r.window_ms),
                );
            }
            if r.max == 0 {
                e.push(k("max"), "must be at least 1");
            }
            let algorithm = r.algorithm.unwrap_or_default();
            let burst = match (algorithm, r.burst) {
                (Algorithm::SlidingWindow, Some(_)) => {
                    e.push(k("burst"), "only a token_bucket has a burst");
                    r.max
                }
                (Algorithm::TokenBucket, Some(0)) => {
                    e.push(k("burst"), "must be at least 1");
                    r.max
                }
                (_, b) => b.unwrap_or(r.max),
            };
            for (field, globs) in [
                ("methods", &r.methods),
                ("tools", &r.tools),
                ("upstreams", &r.upstreams),
            ] {
                for (j, g) in globs.iter().enumerate() {
                    if g.is_empty() {
                        e.push(
                            k(&format!("{field}[{j}]")),
                            "an empty pattern matches nothing",
                        );
                    }
                }
            }
            RateLimitRule {
                name: r.name,
                algorithm,
                window_ms: r.window_ms,
                max: r.max,
                burst,
                key: r.key.unwrap_or_default(),
                methods: r.methods,
                tools: r.tools,
                upstreams: r.upstreams,
            }
        })
        .collect()
}

/// `[upstream.outbound]`: the gateway's own manners towards this upstream (seed 000).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOutbound {
    /// Calls sent per minute at most (token bucket; default: no limit).
    pub max_calls_per_minute: Option<u32>,
    /// Calls in flight at once at most, from all clients (default: no limit); a call beyond
    /// it waits up to `concurrency.max_wait_ms`.
    pub concurrent_calls: Option<u32>,
    /// Longest backoff after the upstream's 429s (default 60 000 ms).
    pub backoff_max_ms: Option<u64>,
}

/// `[upstream.outbound]`, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundConfig {
    /// Calls per minute.
    pub max_calls_per_minute: Option<u32>,
    /// Calls in flight.
    pub concurrent_calls: Option<u32>,
    /// Backoff cap.
    pub backoff_max_ms: u64,
}

pub(super) fn outbound(key: &str, raw: Option<RawOutbound>, e: &mut Errors) -> OutboundConfig {
    let raw = raw.unwrap_or_default();
    for (k, v) in [
        ("max_calls_per_minute", raw.max_calls_per_minute),
        ("concurrent_calls", raw.concurrent_calls),
    ] {
        if v == Some(0) {
            e.push(
                format!("{key}.{k}"),
                "must be at least 1 (leave it out for no limit)",
            );
        }
    }
    OutboundConfig {
        max_calls_per_minute: raw.max_calls_per_minute.filter(|n| *n > 0),
        concurrent_calls: raw.concurrent_calls.filter(|n| *n > 0),
        backoff_max_ms: e.range(
            &format!("{key}.backoff_max_ms"),
            raw.backoff_max_ms,
            60_000,
            1_000,
            3_600_000,
        ),
    }
}

/// `[concurrency]`: calls (`tools/call`) in flight at once (seed 000: 2 per agent).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConcurrency {
    /// Per principal (unauthenticated: per client address); default no limit.
    pub per_principal: Option<u32>,
    /// Per tool, across clients; default no limit.
    pub per_tool: Option<u32>,
    /// How long a call beyond a limit waits for a slot before MCP-006 (default 1 000 ms).
    pub max_wait_ms: Option<u64>,
}

/// `[concurrency]`, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConcurrencyConfig {
    /// Per principal.
    pub per_principal: Option<u32>,
    /// Per tool.
    pub per_tool: Option<u32>,
    /// Longest wait for a slot.
    pub max_wait_ms: u64,
}

pub(super) fn concurrency(raw: RawConcurrency, e: &mut Errors) -> ConcurrencyConfig {
    for (k, v) in [
        ("per_principal", raw.per_principal),
        ("per_tool", raw.per_tool),
    ] {
        if v == Some(0) {
            e.push(
                format!("concurrency.{k}"),
                "must be at least 1 (leave it out for no limit)",
            );
        }
    }
    ConcurrencyConfig {
        per_principal: raw.per_principal.filter(|n| *n > 0),
        per_tool: raw.per_tool.filter(|n| *n > 0),
        max_wait_ms: e.range(
            "concurrency.max_wait_ms",
            raw.max_wait_ms,
            1_000,
            0,
            300_000,
        ),
    }
}

/// `[connections]` (seed 002): what one listener and one client address may hold open, and
/// how slowly they may talk.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConnections {
    /// Connections open at once per listener (seed 002 `WS_MAX_CONNECTIONS` /
    /// `TCP_MAX_CONNECTIONS`; default 10 000). Past it, new ones are closed at once.
    pub max_per_listener: Option<u32>,
    /// Connections open at once per client address (IPv6 per /64; default 256).
    pub max_per_ip: Option<u32>,
    /// Time to send a request's headers, and to start the next request on a kept-alive
    /// HTTP/1.1 connection (default 10 000 ms).
    pub header_timeout_ms: Option<u64>,
    /// A connection with no request being handled and no byte moving for this long is
    /// closed, HTTP/1.1 and HTTP/2 alike (default 120 000 ms).
    pub idle_timeout_ms: Option<u64>,
    /// A body must arrive at this many bytes per second on average (default 1 024)...
    pub min_body_rate: Option<u64>,
    /// ...after this grace period (default 5 000 ms).
    pub body_grace_ms: Option<u64>,
}

/// `[connections]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionsConfig {
    /// Per listener.
    pub max_per_listener: u32,
    /// Per client address.
    pub max_per_ip: u32,
    /// Header timeout.
    pub header_timeout_ms: u64,
    /// Idle timeout.
    pub idle_timeout_ms: u64,
    /// Minimum body rate.
    pub min_body_rate: u64,
    /// Grace before it applies.
    pub body_grace_ms: u64,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        connections(RawConnections::default(), &mut Errors::default())
    }
}

pub(super) fn connections(raw: RawConnections, e: &mut Errors) -> ConnectionsConfig {
    ConnectionsConfig {
        max_per_listener: e.range(
            "connections.max_per_listener",
            raw.max_per_listener.map(u64::from),
            10_000,
            1,
            1_000_000,
        ) as u32,
        max_per_ip: e.range(
            "connections.max_per_ip",
            raw.max_per_ip.map(u64::from),
            256,
            1,
            1_000_000,
        ) as u32,
        header_timeout_ms: e.range(
            "connections.header_timeout_ms",
            raw.header_timeout_ms,
            10_000,
            100,
            600_000,
        ),
        idle_timeout_ms: e.range(
            "connections.idle_timeout_ms",
            raw.idle_timeout_ms,
            120_000,
            100,
            86_400_000,
        ),
        min_body_rate: e.range(
            "connections.min_body_rate",
            raw.min_body_rate,
            1024,
            1,
            1 << 30,
        ),
        body_grace_ms: e.range(
            "connections.body_grace_ms",
            raw.body_grace_ms,
            5_000,
            100,
            600_000,
        ),
    }
}
