//! `[abuse]` (auto-block, quarantine, alerts) and `[admin]` (the operator API); see
//! `controls::abuse` and `app::admin`.

use std::net::SocketAddr;
use std::time::Duration;

use http::Uri;
use schemars::JsonSchema;
use serde::Deserialize;

use super::validated::Errors;

/// `[abuse]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAbuse {
    /// Block an address (and the principal, if known) after repeated authentication
    /// failures or rate-limit violations (seed 002 `AUTO_BLOCK_ENABLED`; default true).
    pub auto_block: Option<bool>,
    /// Failures within `window_ms` that trigger a block (seed 002 `MAX_FAILED_ATTEMPTS`;
    /// default 10).
    pub max_failed_attempts: Option<u32>,
    /// The window failures are counted in (default 60 000 ms).
    pub window_ms: Option<u64>,
    /// How long a block lasts (seed 002 `BLOCK_DURATION`; default 900 000 ms).
    pub block_duration_ms: Option<u64>,
    /// Quarantine a principal whose request carried its valid token but a wrong HMAC
    /// signature (seed 000; default true). Held until an operator releases it.
    pub quarantine_on_hmac_mismatch: Option<bool>,
    /// Quarantine a principal after this many suspicious refusals (authorization denials,
    /// prototype-pollution keys, SSRF, content patterns, withheld tools) within `window_ms`
    /// (default 0: off).
    pub suspicious_errors: Option<u32>,
    /// Where quarantine alerts are POSTed (JSON), through the SSRF guard.
    pub alert_webhook: Option<String>,
}

/// `[abuse]`, validated.
#[derive(Debug, Clone)]
pub struct AbuseConfig {
    /// Auto-block on.
    pub auto_block: bool,
    /// Failures that trigger a block.
    pub max_failed_attempts: u32,
    /// Counting window.
    pub window: Duration,
    /// Block length.
    pub block_duration: Duration,
    /// Quarantine on an HMAC mismatch.
    pub quarantine_on_hmac_mismatch: bool,
    /// Suspicious refusals that quarantine (0: off).
    pub suspicious_errors: u32,
    /// Alert webhook.
    pub alert_webhook: Option<Uri>,
}

impl Default for AbuseConfig {
    fn default() -> Self {
        abuse(RawAbuse::default(), &mut Errors::default())
    }
}

pub(super) fn abuse(raw: RawAbuse, e: &mut Errors) -> AbuseConfig {
    let alert_webhook = raw.alert_webhook.and_then(|u| match u.parse::<Uri>() {
        Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => {
            Some(uri)
        }
        _ => {
            e.push(
                "abuse.alert_webhook",
                format!("{u:?} is not an http(s) URL"),
            );
            None
        }
    });
    AbuseConfig {
        auto_block: raw.auto_block.unwrap_or(true),
        max_failed_attempts: e.range(
            "abuse.max_failed_attempts",
            raw.max_failed_attempts.map(u64::from),
            10,
            1,
            1_000_000,
        ) as u32,
        window: Duration::from_millis(e.range(
            "abuse.window_ms",
            raw.window_ms,
            60_000,
            1_000,
            86_400_000,
        )),
        block_duration: Duration::from_millis(e.range(
            "abuse.block_duration_ms",
            raw.block_duration_ms,
            900_000,
            1_000,
            30 * 86_400_000,
        )),
        quarantine_on_hmac_mismatch: raw.quarantine_on_hmac_mismatch.unwrap_or(true),
        suspicious_errors: e.range(
            "abuse.suspicious_errors",
            raw.suspicious_errors.map(u64::from),
            0,
            0,
            1_000_000,
        ) as u32,
        alert_webhook,
    }
}

/// `[admin]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Serve the operator API (default true).
    pub enabled: Option<bool>,
    /// Its address (default `127.0.0.1:0`: a free loopback port, written to
    /// `<data_dir>/admin.addr` for the `palisade blocks` / `quarantine` commands). A
    /// non-loopback address needs authentication on `auth.methods`.
    pub listen: Option<String>,
}

/// `[admin]`, validated.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Served at all.
    pub enabled: bool,
    /// Address.
    pub listen: SocketAddr,
}

pub(super) fn admin(raw: RawAdmin, open: bool, e: &mut Errors) -> AdminConfig {
    let listen = match raw.listen.as_deref().map(str::parse::<SocketAddr>) {
        None => SocketAddr::from(([127, 0, 0, 1], 0)),
        Some(Ok(a)) => a,
        Some(Err(_)) => {
            e.push("admin.listen", "not an address:port");
            SocketAddr::from(([127, 0, 0, 1], 0))
        }
    };
    if !listen.ip().is_loopback() && open {
        e.push(
            "admin.listen",
            format!(
                "{listen} is not a loopback address and auth.methods accepts \"none\": \
                 anyone who can reach it could release blocks"
            ),
        );
    }
    AdminConfig {
        enabled: raw.enabled.unwrap_or(true),
        listen,
    }
}
