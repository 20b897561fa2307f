//! Rate limits: `[[rate_limit]]` rules, each counting the messages it matches per key.
//!
//! A request is checked against every rule that matches it, in two stages:
//! - **before authentication**, rules keyed by `ip` or `global` with no method, tool or
//!   upstream filter, so a flood of bad credentials is limited before any token is verified;
//! - **after the message is parsed**, every other rule (principal and tool keys, filters).
//!
//! The first rule that refuses stops the request (HTTP 429, MCP-006, `Retry-After`), and the
//! rules that had admitted it take it back: a refused request counts against no rule, so
//! hammering one tool's limit does not spend the caller's allowance for others. Every response carries `X-RateLimit-*` for the tightest
//! rule that matched (fewest requests left).
//!
//! Keys are keyed 64-bit hashes of the rule and what it counts by (IPv6 clients by /64,
//! since one host usually holds the whole /64), so the store keeps no strings and nobody can
//! aim two keys at one counter.

pub mod algo;
pub mod store;
#[cfg(test)]
mod tests;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

pub use algo::{Spec, Take};
pub use store::{LimitStore, MemoryLimitStore, StoreFull};

use crate::config::{Algorithm, KeyBy, RateLimitRule};

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// A rule's allowance is spent.
    #[error("rate limit {rule:?} exceeded; retry in {retry_after_ms} ms")]
    Exceeded {
        /// The rule.
        rule: Arc<str>,
        /// The rule's quota now.
        quota: Quota,
        /// Until one more request would be admitted.
        retry_after_ms: u64,
    },
    /// The store cannot track another key.
    #[error(transparent)]
    Full(#[from] StoreFull),
}

impl LimitError {
    /// Seconds for `Retry-After` (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            LimitError::Exceeded { retry_after_ms, .. } => retry_after_ms.div_ceil(1000).max(1),
            LimitError::Full(_) => 1,
        }
    }
}

/// A rule's allowance as the client is told it (`X-RateLimit-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// `X-RateLimit-Limit`.
    pub limit: u32,
    /// `X-RateLimit-Remaining`.
    pub remaining: u32,
    /// `X-RateLimit-Reset`, Unix seconds.
    pub reset_secs: u64,
}

impl Quota {
    /// The tighter of two quotas (fewer left; then the smaller limit).
    pub fn tighter(a: Option<Quota>, b: Quota) -> Quota {
        match a {
            Some(a) if (a.remaining, a.limit) <= (b.remaining, b.limit) => a,
            _ => b,
        }
    }
}

/// Where in the pipeline rules are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before authentication: address-only rules.
    Connection,
    /// After the message is parsed and its sender known.
    Message,
}

/// What a request is, for matching and keying rules.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// Client address.
    pub ip: IpAddr,
    /// Authenticated principal id, if any.
    pub principal: Option<&'a str>,
    /// JSON-RPC method.
    pub method: Option<&'a str>,
    /// The upstream the message goes to, if known.
    pub upstream: Option<&'a str>,
    /// The tool a `tools/call` names (the upstream's own name).
    pub tool: Option<&'a str>,
}

#[derive(Debug)]
struct Rule {
    name: Arc<str>,
    spec: Spec,
    key: KeyBy,
    methods: Box<[Box<str>]>,
    tools: Box<[Box<str>]>,
    upstreams: Box<[Box<str>]>,
    stage: Stage,
}

impl Rule {
    fn matches(&self, s: &Subject<'_>) -> bool {
        let any = |globs: &[Box<str>], v: Option<&str>| {
            globs.is_empty() || v.is_some_and(|v| globs.iter().any(|g| glob(g, v)))
        };
        let needs_tool =
            !self.tools.is_empty() || matches!(self.key, KeyBy::Tool | KeyBy::PrincipalTool);
        any(&self.methods, s.method)
            && any(&self.upstreams, s.upstream)
            && any(&self.tools, s.tool)
            && (!needs_tool || s.tool.is_some())
    }
}

/// The rate-limit control.
#[derive(Debug)]
pub struct RateLimiter {
    rules: Box<[Rule]>,
    store: Arc<dyn LimitStore>,
    keying: RandomState,
}

impl RateLimiter {
    /// Compiles the rules over a store.
    pub fn new(rules: &[RateLimitRule], store: Arc<dyn LimitStore>) -> Self {
        let rules = rules
            .iter()
            .map(|r| {
                let unfiltered =
                    r.methods.is_empty() && r.tools.is_empty() && r.upstreams.is_empty();
                Rule {
                    name: Arc::from(r.name.as_str()),
                    spec: match r.algorithm {
                        Algorithm::SlidingWindow => Spec::Window {
                            window_ms: r.window_ms,
                            max: r.max,
                        },
                        Algorithm::TokenBucket => Spec::bucket(r.window_ms, r.max, r.burst),
                    },
                    key: r.key,
                    methods: r.methods.iter().map(|s| s.as_str().into()).collect(),
                    tools: r.tools.iter().map(|s| s.as_str().into()).collect(),
                    upstreams: r.upstreams.iter().map(|s| s.as_str().into()).collect(),
                    stage: match r.key {
                        KeyBy::Global | KeyBy::Ip if unfiltered => Stage::Connection,
                        _ => Stage::Message,
                    },
                }
            })
            .collect();
        RateLimiter {
            rules,
            store,
            keying: Default::default(),
        }
    }

    /// Whether any rule exists (most deployments without rules skip the work entirely).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Counts the request against the rules of `stage` that match it. `Ok` carries the
    /// tightest quota among them (none if no rule matched).
    pub fn admit(
        &self,
        stage: Stage,
        s: &Subject<'_>,
        now_ms: u64,
    ) -> Result<Option<Quota>, LimitError> {
        let mut tightest: Option<Quota> = None;
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.stage != stage || !rule.matches(s) {
                continue;
            }
            let t = match self
                .store
                .take(self.key(i, rule.key, s), &rule.spec, now_ms)
            {
                Ok(t) => t,
                Err(e) => {
                    self.refund(stage, s, i, now_ms);
                    return Err(e.into());
                }
            };
            let quota = Quota {
                limit: rule.spec.limit(),
                remaining: t.remaining,
                reset_secs: t.reset_ms.div_ceil(1000),
            };
            if !t.admitted {
                metrics::counter!("palisade_rate_limited_total", "rule" => rule.name.clone())
                    .increment(1);
                self.refund(stage, s, i, now_ms);
                return Err(LimitError::Exceeded {
                    rule: rule.name.clone(),
                    quota,
                    retry_after_ms: t.retry_after_ms,
                });
            }
            tightest = Some(Quota::tighter(tightest, quota));
        }
        Ok(tightest)
    }

    /// Takes the request back from the rules before `upto` that admitted it: a refused
    /// request counts against no rule.
    fn refund(&self, stage: Stage, s: &Subject<'_>, upto: usize, now_ms: u64) {
        for (i, rule) in self.rules[..upto].iter().enumerate() {
            if rule.stage == stage && rule.matches(s) {
                self.store
                    .refund(self.key(i, rule.key, s), &rule.spec, now_ms);
            }
        }
    }

    /// Forgets idle counters; returns how many are tracked.
    pub fn sweep(&self, now_ms: u64) -> usize {
        self.store.sweep(now_ms)
    }

    /// The counter for rule `i` and this subject.
    fn key(&self, i: usize, by: KeyBy, s: &Subject<'_>) -> store::Key {
        let mut h = self.keying.build_hasher();
        h.write_u32(i as u32);
        let who = |h: &mut dyn Hasher| match s.principal {
            Some(p) => {
                h.write_u8(b'p');
                h.write(p.as_bytes());
                h.write_u8(0xff);
            }
            None => ip_key(s.ip, h),
        };
        let tool = |h: &mut dyn Hasher| {
            h.write_u8(b't');
            h.write(s.upstream.unwrap_or_default().as_bytes());
            h.write_u8(0xff);
            h.write(s.tool.unwrap_or_default().as_bytes());
            h.write_u8(0xff);
        };
        match by {
            KeyBy::Global => {}
            KeyBy::Ip => ip_key(s.ip, &mut h),
            KeyBy::Principal => who(&mut h),
            KeyBy::Tool => tool(&mut h),
            KeyBy::PrincipalTool => {
                who(&mut h);
                tool(&mut h);
            }
        }
        h.finish()
    }
}

/// An address as a key: IPv4 whole, IPv6 by its /64.
fn ip_key(ip: IpAddr, h: &mut dyn Hasher) {
    match super::network::host_key(ip) {
        IpAddr::V4(v4) => {
            h.write_u8(b'4');
            h.write(&v4.octets());
        }
        IpAddr::V6(v6) => {
            h.write_u8(b'6');
            h.write(&v6.octets()[..8]);
        }
    }
}

/// `*` matches any run of characters (including none); everything else is literal.
pub fn glob(pattern: &str, text: &str) -> bool {
    let Some((head, tail)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(mut rest) = text.strip_prefix(head) else {
        return false;
    };
    // `tail` is `middle*...*last`: middles in order, greedily leftmost, then `last` at the end.
    let (middles, last) = tail.rsplit_once('*').unwrap_or(("", tail));
    for m in middles.split('*').filter(|m| !m.is_empty()) {
        match rest.find(m) {
            Some(at) => rest = &rest[at + m.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}
