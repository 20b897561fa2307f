//! `[ssrf]`: which URLs tool arguments may name (see `controls::ssrf`).

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::Deserialize;

use super::validated::Errors;

/// `[ssrf]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSsrf {
    /// Check URL arguments (default true).
    pub enabled: Option<bool>,
    /// Ports a URL may name (default 80 and 443).
    pub allow_ports: Option<Vec<u16>>,
    /// When set, only these hosts (and their subdomains) may be named.
    #[serde(default)]
    pub allow_domains: Vec<String>,
    /// Hosts (and their subdomains) that may never be named.
    #[serde(default)]
    pub deny_domains: Vec<String>,
    /// Networks exempt from the blocked ranges (an internal service a tool must reach).
    #[serde(default)]
    pub allow_cidrs: Vec<String>,
}

/// `[ssrf]`, validated.
#[derive(Debug, Clone)]
pub struct SsrfConfig {
    /// On.
    pub enabled: bool,
    /// Allowed ports.
    pub allow_ports: Vec<u16>,
    /// Allowed hosts (empty: any not denied).
    pub allow_domains: Vec<String>,
    /// Denied hosts.
    pub deny_domains: Vec<String>,
    /// Exempt networks.
    pub allow_cidrs: Vec<IpNet>,
}

impl Default for SsrfConfig {
    fn default() -> Self {
        SsrfConfig {
            enabled: true,
            allow_ports: vec![80, 443],
            allow_domains: Vec::new(),
            deny_domains: Vec::new(),
            allow_cidrs: Vec::new(),
        }
    }
}

pub(super) fn ssrf(raw: RawSsrf, e: &mut Errors) -> SsrfConfig {
    let allow_cidrs = raw
        .allow_cidrs
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match c.parse::<IpNet>() {
            Ok(n) => Some(n),
            Err(why) => {
                e.push(format!("ssrf.allow_cidrs[{i}]"), format!("{c:?}: {why}"));
                None
            }
        })
        .collect();
    let lower = |v: Vec<String>| v.into_iter().map(|d| d.to_ascii_lowercase()).collect();
    SsrfConfig {
        enabled: raw.enabled.unwrap_or(true),
        allow_ports: raw.allow_ports.unwrap_or_else(|| vec![80, 443]),
        allow_domains: lower(raw.allow_domains),
        deny_domains: lower(raw.deny_domains),
        allow_cidrs,
    }
}
