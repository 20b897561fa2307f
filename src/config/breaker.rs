//! `[circuit_breaker]` (defaults for every upstream) and `[upstream.circuit_breaker]` (one
//! upstream's), in seed 004's terms; see `upstream::breaker`.

use schemars::JsonSchema;
use serde::Deserialize;

use super::validated::Errors;

/// `[circuit_breaker]` / `[upstream.circuit_breaker]`: unset keys of an upstream's table
/// come from the top-level one, then from the defaults.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    /// Breakers on (default true).
    pub enabled: Option<bool>,
    /// Weighted consecutive failures that open the breaker (default 5).
    pub failure_threshold: Option<u32>,
    /// How long it stays open before probing (default 30 000 ms).
    pub reset_timeout_ms: Option<u64>,
    /// Probes let through while half-open; that many successes close it (default 3).
    pub half_open_max_calls: Option<u32>,
    /// Severity per error class.
    #[serde(default)]
    pub error_classification: RawClassification,
}

/// Seed 004 `errorClassification`: how much each class of upstream failure counts.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawClassification {
    /// No answer within the timeout (default `high`).
    pub timeout: Option<Severity>,
    /// Cannot connect (default `critical`).
    pub connection: Option<Severity>,
    /// The exchange broke after connecting (default `high`).
    pub network: Option<Severity>,
    /// HTTP 5xx (default `high`).
    pub server: Option<Severity>,
    /// HTTP 401/403, or the gateway's own upstream credential unavailable (default `low`).
    pub auth: Option<Severity>,
    /// HTTP 400/404/422: the request's fault, not the upstream's (default `low`).
    pub validation: Option<Severity>,
}

/// How much a failure counts towards `failure_threshold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Not at all.
    Low,
    /// 1.
    Medium,
    /// 2.
    High,
    /// The whole threshold: opens the breaker at once.
    Critical,
}

/// A breaker's settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerConfig {
    /// On.
    pub enabled: bool,
    /// Threshold.
    pub failure_threshold: u32,
    /// Open time.
    pub reset_timeout_ms: u64,
    /// Half-open probes.
    pub half_open_max_calls: u32,
    /// Severities: timeout, connection, network, server, auth, validation.
    pub severity: [Severity; 6],
}

impl Default for BreakerConfig {
    fn default() -> Self {
        breaker(
            "circuit_breaker",
            &RawBreaker::default(),
            &RawBreaker::default(),
            &mut Errors::default(),
        )
    }
}

/// `own` over `base` over the defaults.
pub(super) fn breaker(
    key: &str,
    own: &RawBreaker,
    base: &RawBreaker,
    e: &mut Errors,
) -> BreakerConfig {
    let c = &own.error_classification;
    let b = &base.error_classification;
    let pick = |o: Option<Severity>, b: Option<Severity>, d| o.or(b).unwrap_or(d);
    BreakerConfig {
        enabled: own.enabled.or(base.enabled).unwrap_or(true),
        failure_threshold: e.range(
            &format!("{key}.failure_threshold"),
            own.failure_threshold
                .or(base.failure_threshold)
                .map(u64::from),
            5,
            1,
            10_000,
        ) as u32,
        reset_timeout_ms: e.range(
            &format!("{key}.reset_timeout_ms"),
            own.reset_timeout_ms.or(base.reset_timeout_ms),
            30_000,
            100,
            86_400_000,
        ),
        half_open_max_calls: e.range(
            &format!("{key}.half_open_max_calls"),
            own.half_open_max_calls
                .or(base.half_open_max_calls)
                .map(u64::from),
            3,
            1,
            1_000,
        ) as u32,
        severity: [
            pick(c.timeout, b.timeout, Severity::High),
            pick(c.connection, b.connection, Severity::Critical),
            pick(c.network, b.network, Severity::High),
            pick(c.server, b.server, Severity::High),
            pick(c.auth, b.auth, Severity::Low),
            pick(c.validation, b.validation, Severity::Low),
        ],
    }
}
