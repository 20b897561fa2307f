//! Abuse response: automatic blocks and quarantine.
//!
//! - **Auto-block** (seed 002): authentication failures and rate-limit violations are
//!   strikes against the client address (and the principal, when known). `max_failed_attempts`
//!   strikes within `window` block the offender for `block_duration`. A blocked address is
//!   refused before anything else is looked at, even with valid credentials; a blocked
//!   principal right after it authenticates.
//! - **Quarantine** (seed 000's incident response): a principal is held, all its calls
//!   refused, until an operator releases it. Triggers: a request that carried the
//!   principal's VALID token with a WRONG HMAC signature (its token is out, its signing key
//!   is not, or the agent is broken), and, when configured, a count of suspicious refusals.
//!   A bad signature with no other valid credential does not quarantine: HMAC key ids are not
//!   secret, so that would let anyone lock any agent out; it is an authentication failure
//!   (a strike against the address) instead.
//!
//! Every hold is audited (control `abuse`), counted (`palisade_abuse_holds_total{kind}`) and,
//! for a quarantine, POSTed to the alert webhook through the SSRF guard.

pub mod store;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

pub use store::{AbuseStore, MemoryAbuseStore};

use crate::audit::{AuditHandle, AuditRecord, Decision, Text};
use crate::config::AbuseConfig;
use crate::controls::ssrf::fetch::Fetcher;

/// Who a strike or hold is against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Offender {
    /// A client address (IPv6 by its /64).
    Ip(IpAddr),
    /// A principal id.
    Principal(Arc<str>),
}

impl Offender {
    /// The address as held: IPv4 whole, IPv6 by its /64 (one host usually holds the /64).
    pub fn ip(ip: IpAddr) -> Offender {
        Offender::Ip(super::network::host_key(ip))
    }

    /// Parses `ip:ADDR` or `principal:ID` (what [`fmt::Display`] writes).
    pub fn parse(s: &str) -> Option<Offender> {
        if let Some(a) = s.strip_prefix("ip:") {
            return a.parse().ok().map(Offender::ip);
        }
        s.strip_prefix("principal:")
            .filter(|p| !p.is_empty())
            .map(|p| Offender::Principal(Arc::from(p)))
    }
}

impl fmt::Display for Offender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Offender::Ip(ip) => write!(f, "ip:{ip}"),
            Offender::Principal(p) => write!(f, "principal:{p}"),
        }
    }
}

/// A block or a quarantine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// On whom.
    pub who: Offender,
    /// A quarantine (until released) rather than a block.
    pub quarantine: bool,
    /// Why: `blocked_auth_failures`, `blocked_limit_violations`, `quarantined_hmac_mismatch`,
    /// `quarantined_suspicious_errors` (also the audit reason).
    pub reason: &'static str,
    /// Since when (Unix ms).
    pub since_ms: u64,
    /// Until when (Unix ms); `None`: until released.
    pub until_ms: Option<u64>,
}

/// A hold as the admin API shows it.
#[derive(Debug, Serialize)]
pub struct HoldView {
    /// `ip:ADDR` or `principal:ID`.
    pub who: String,
    /// `block` or `quarantine`.
    pub kind: &'static str,
    /// Reason code.
    pub reason: &'static str,
    /// Since (Unix ms).
    pub since_ms: u64,
    /// Until (Unix ms), absent for a quarantine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
}

impl From<&Hold> for HoldView {
    fn from(h: &Hold) -> Self {
        HoldView {
            who: h.who.to_string(),
            kind: if h.quarantine { "quarantine" } else { "block" },
            reason: h.reason,
            since_ms: h.since_ms,
            until_ms: h.until_ms,
        }
    }
}

/// The request comes from someone held.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AbuseError {
    /// Blocked until `until_ms`.
    #[error("{who} is blocked until {until_ms} ({reason})")]
    Blocked {
        /// Who.
        who: String,
        /// Why.
        reason: &'static str,
        /// Until (Unix ms).
        until_ms: u64,
    },
    /// Quarantined until released.
    #[error("{who} is quarantined ({reason})")]
    Quarantined {
        /// Who.
        who: String,
        /// Why.
        reason: &'static str,
    },
}

impl AbuseError {
    /// Seconds until a block ends (for `Retry-After`); none for a quarantine.
    pub fn retry_after_secs(&self, now_ms: u64) -> Option<u64> {
        match self {
            AbuseError::Blocked { until_ms, .. } => {
                Some(until_ms.saturating_sub(now_ms).div_ceil(1000).max(1))
            }
            AbuseError::Quarantined { .. } => None,
        }
    }
}

/// What went wrong, as far as abuse response is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strike {
    /// Authentication failed.
    AuthFailure,
    /// A rate limit refused the request.
    LimitViolation,
    /// A refusal a well-behaved client does not provoke (authorization, pollution, SSRF,
    /// content patterns, withheld tools).
    Suspicious,
    /// The principal's valid token with a wrong HMAC signature.
    HmacMismatch,
}

/// The abuse control.
#[derive(Debug)]
pub struct Abuse {
    cfg: AbuseConfig,
    store: Arc<dyn AbuseStore>,
    audit: AuditHandle,
    fetcher: Fetcher,
}

impl Abuse {
    /// From `[abuse]`, over a store; alerts are sent with `fetcher`.
    pub fn new(
        cfg: AbuseConfig,
        store: Arc<dyn AbuseStore>,
        audit: AuditHandle,
        fetcher: Fetcher,
    ) -> Self {
        Abuse {
            cfg,
            store,
            audit,
            fetcher,
        }
    }

    /// Refuses a held address.
    pub fn check_ip(&self, ip: IpAddr, now_ms: u64) -> Result<(), AbuseError> {
        self.check(&Offender::ip(ip), now_ms)
    }

    /// Refuses a held principal.
    pub fn check_principal(&self, id: &Arc<str>, now_ms: u64) -> Result<(), AbuseError> {
        self.check(&Offender::Principal(id.clone()), now_ms)
    }

    fn check(&self, who: &Offender, now_ms: u64) -> Result<(), AbuseError> {
        match self.store.held(who, now_ms) {
            None => Ok(()),
            Some(h) if h.quarantine => Err(AbuseError::Quarantined {
                who: who.to_string(),
                reason: h.reason,
            }),
            Some(h) => Err(AbuseError::Blocked {
                who: who.to_string(),
                reason: h.reason,
                until_ms: h.until_ms.unwrap_or(u64::MAX),
            }),
        }
    }

    /// Records a strike from a refused request by `ip` (and `principal`, when it had
    /// authenticated or presented a valid token); places the holds it earns.
    pub fn strike(&self, s: Strike, ip: IpAddr, principal: Option<&Arc<str>>, now_ms: u64) {
        let window = self.cfg.window.as_millis() as u64;
        let block = |who: Offender, reason| {
            if self.cfg.auto_block
                && self
                    .store
                    .strike(&who, now_ms, window, self.cfg.max_failed_attempts)
            {
                self.place(Hold {
                    who,
                    quarantine: false,
                    reason,
                    since_ms: now_ms,
                    until_ms: Some(now_ms + self.cfg.block_duration.as_millis() as u64),
                });
            }
        };
        let quarantine = |who: &Arc<str>, reason| {
            self.place(Hold {
                who: Offender::Principal(who.clone()),
                quarantine: true,
                reason,
                since_ms: now_ms,
                until_ms: None,
            })
        };
        match s {
            Strike::AuthFailure => block(Offender::ip(ip), "blocked_auth_failures"),
            Strike::LimitViolation => {
                block(Offender::ip(ip), "blocked_limit_violations");
                if let Some(p) = principal {
                    block(Offender::Principal(p.clone()), "blocked_limit_violations");
                }
            }
            Strike::HmacMismatch => match principal {
                Some(p) if self.cfg.quarantine_on_hmac_mismatch => {
                    quarantine(p, "quarantined_hmac_mismatch")
                }
                _ => block(Offender::ip(ip), "blocked_auth_failures"),
            },
            Strike::Suspicious => {
                if let Some(p) = principal.filter(|_| self.cfg.suspicious_errors > 0) {
                    let who = Offender::Principal(p.clone());
                    if self
                        .store
                        .strike(&who, now_ms, window, self.cfg.suspicious_errors)
                    {
                        quarantine(p, "quarantined_suspicious_errors");
                    }
                }
            }
        }
    }

    /// Every hold in force.
    pub fn list(&self, now_ms: u64) -> Vec<Hold> {
        self.store.list(now_ms)
    }

    /// Lifts a block (`quarantine` false) or a quarantine, audited as the operator's act.
    pub fn release(&self, who: &Offender, quarantine: bool, operator: &str) -> bool {
        let done = self.store.release(who, quarantine);
        if done {
            let mut r = AuditRecord::event(
                "admin",
                "abuse",
                if quarantine { "released" } else { "unblocked" },
                Decision::Allow,
            );
            r.principal = Text::from(who.to_string());
            r.auth_method = Text::copy(operator);
            self.audit.write_later(r);
            tracing::warn!(target: "palisade::abuse", %who, operator, quarantine, "hold lifted by an operator");
        }
        done
    }

    /// Forgets expired holds.
    pub fn sweep(&self, now_ms: u64) {
        self.store.sweep(now_ms);
    }

    fn place(&self, h: Hold) {
        if !self.store.hold(h.clone()) {
            return;
        }
        let kind = if h.quarantine { "quarantine" } else { "block" };
        metrics::counter!("palisade_abuse_holds_total", "kind" => kind).increment(1);
        tracing::warn!(target: "palisade::abuse", who = %h.who, kind, reason = h.reason, until_ms = ?h.until_ms, "hold placed");
        let mut r = AuditRecord::event("gateway", "abuse", h.reason, Decision::Deny);
        match &h.who {
            Offender::Ip(ip) => r.client_ip = Text::from(ip.to_string()),
            Offender::Principal(p) => r.principal = Text::copy(p),
        }
        self.audit.write_later(r);
        if h.quarantine {
            if let Some(url) = self.cfg.alert_webhook.clone() {
                let body = serde_json::json!({
                    "event": "quarantine",
                    "hold": HoldView::from(&h),
                });
                tokio::spawn(alert(self.fetcher.clone(), url, body.to_string()));
            }
        }
    }
}

/// POSTs an alert; a failure is logged (the hold is in place either way).
async fn alert(fetcher: Fetcher, url: http::Uri, body: String) {
    let req = http::Request::post(url.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(http_body_util::Full::new(Bytes::from(body)));
    let Ok(req) = req else {
        return;
    };
    let sent = tokio::time::timeout(std::time::Duration::from_secs(10), fetcher.send(req)).await;
    match sent {
        Ok(Ok(resp)) if resp.status().is_success() => {}
        Ok(Ok(resp)) => {
            tracing::error!(target: "palisade::abuse", %url, status = %resp.status(), "alert webhook refused the alert")
        }
        Ok(Err(e)) => {
            tracing::error!(target: "palisade::abuse", %url, error = %e, "alert webhook failed")
        }
        Err(_) => tracing::error!(target: "palisade::abuse", %url, "alert webhook timed out"),
    }
}
