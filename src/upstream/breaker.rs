//! A circuit breaker per upstream (seeds 002, 004): closed → open → half-open → closed.
//!
//! - **Closed**: calls pass. Each failure adds its class's weight (low 0, medium 1, high 2,
//!   critical = the whole threshold); a success resets the count. At `failure_threshold` the
//!   breaker opens.
//! - **Open**: calls are refused at once (MCP-003) for `reset_timeout_ms`.
//! - **Half-open**: up to `half_open_max_calls` probes at a time pass; that many successes in a
//!   row close the breaker, any counted failure opens it again.
//!
//! The outcome of a call is known when the upstream's answer headers arrive (or do not), so
//! a streamed answer that breaks later is not counted. Transitions are logged, audited
//! (control `breaker`) and exported as `palisade_circuit_breaker_state{upstream}` (0 closed,
//! 1 open, 2 half-open).

use std::sync::Mutex;

use crate::audit::{AuditHandle, AuditRecord, Decision, Text};
use crate::clock::SharedClock;
use crate::config::{BreakerConfig, Severity};

/// What went wrong with a call, for weighing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// No answer in time.
    Timeout,
    /// Could not connect.
    Connection,
    /// The exchange broke after connecting.
    Network,
    /// HTTP 5xx.
    Server,
    /// HTTP 401/403, or no credential for the upstream.
    Auth,
    /// HTTP 400/404/422.
    Validation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { weight: u32 },
    Open { until_ms: u64 },
    HalfOpen { in_flight: u32, successes: u32 },
}

impl State {
    fn gauge(self) -> f64 {
        match self {
            State::Closed { .. } => 0.0,
            State::Open { .. } => 1.0,
            State::HalfOpen { .. } => 2.0,
        }
    }

    fn name(self) -> &'static str {
        match self {
            State::Closed { .. } => "closed",
            State::Open { .. } => "open",
            State::HalfOpen { .. } => "half_open",
        }
    }
}

/// The breaker is open: the call was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit open")]
pub struct Open;

/// One upstream's breaker.
#[derive(Debug)]
pub struct Breaker {
    upstream: String,
    cfg: BreakerConfig,
    state: Mutex<State>,
    clock: SharedClock,
    audit: Option<AuditHandle>,
}

/// A call the breaker let through; report how it went with [`Permit::done`]. Dropped without
/// a report (the caller went away), it frees its probe slot without counting.
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: Option<&'a Breaker>,
    probe: bool,
}

impl Breaker {
    /// A closed breaker for `upstream`; transitions are audited through `audit` when given.
    pub fn new(
        upstream: &str,
        cfg: BreakerConfig,
        clock: SharedClock,
        audit: Option<AuditHandle>,
    ) -> Self {
        metrics::gauge!("palisade_circuit_breaker_state", "upstream" => upstream.to_owned())
            .set(0.0);
        Breaker {
            upstream: upstream.to_owned(),
            cfg,
            state: Mutex::new(State::Closed { weight: 0 }),
            clock,
            audit,
        }
    }

    /// Lets a call through, or refuses it while open.
    pub fn admit(&self) -> Result<Permit<'_>, Open> {
        if !self.cfg.enabled {
            return Ok(Permit {
                breaker: None,
                probe: false,
            });
        }
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let State::Open { until_ms } = *s {
            // The clock is read only here: a closed breaker costs a lock and nothing else.
            if self.clock.now_ms() < until_ms {
                return Err(Open);
            }
            self.go(
                &mut s,
                State::HalfOpen {
                    in_flight: 0,
                    successes: 0,
                },
            );
        }
        match &mut *s {
            State::HalfOpen { in_flight, .. } => {
                if *in_flight >= self.cfg.half_open_max_calls {
                    return Err(Open);
                }
                *in_flight += 1;
                Ok(Permit {
                    breaker: Some(self),
                    probe: true,
                })
            }
            _ => Ok(Permit {
                breaker: Some(self),
                probe: false,
            }),
        }
    }

    fn weight(&self, class: Class) -> u32 {
        let i = match class {
            Class::Timeout => 0,
            Class::Connection => 1,
            Class::Network => 2,
            Class::Server => 3,
            Class::Auth => 4,
            Class::Validation => 5,
        };
        match self.cfg.severity[i] {
            Severity::Low => 0,
            Severity::Medium => 1,
            Severity::High => 2,
            Severity::Critical => self.cfg.failure_threshold,
        }
    }

    fn report(&self, probe: bool, failure: Option<Class>) {
        let weight = failure.map_or(0, |c| self.weight(c));
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let open = || State::Open {
            until_ms: self.clock.now_ms() + self.cfg.reset_timeout_ms,
        };
        match *s {
            State::Closed { weight: w } if failure.is_none() => {
                if w != 0 {
                    *s = State::Closed { weight: 0 };
                }
            }
            State::Closed { weight: w } => {
                let w = w.saturating_add(weight);
                if w >= self.cfg.failure_threshold {
                    self.go(&mut s, open());
                } else {
                    *s = State::Closed { weight: w };
                }
            }
            State::HalfOpen {
                in_flight,
                successes,
            } if probe => {
                let in_flight = in_flight.saturating_sub(1);
                if weight > 0 {
                    self.go(&mut s, open());
                } else if failure.is_none() && successes + 1 >= self.cfg.half_open_max_calls {
                    self.go(&mut s, State::Closed { weight: 0 });
                } else {
                    *s = State::HalfOpen {
                        in_flight,
                        successes: successes + u32::from(failure.is_none()),
                    };
                }
            }
            // A call admitted before the breaker opened (or a half-open round began): its
            // outcome is old news.
            State::HalfOpen { .. } | State::Open { .. } => {}
        }
    }

    fn go(&self, s: &mut State, to: State) {
        let from = *s;
        *s = to;
        metrics::gauge!("palisade_circuit_breaker_state", "upstream" => self.upstream.clone())
            .set(to.gauge());
        tracing::warn!(target: "palisade::breaker", upstream = %self.upstream, from = from.name(), to = to.name(), "circuit breaker");
        if let Some(a) = &self.audit {
            let decision = match to {
                State::Open { .. } => Decision::Deny,
                _ => Decision::Allow,
            };
            let mut r = AuditRecord::event("gateway", "breaker", to.name(), decision);
            r.upstream = Some(Text::copy(&self.upstream));
            a.write_later(r);
        }
    }

    /// A failure noticed after the call's permit was reported (a stdio call whose answer
    /// never came): counted while closed; while half-open it ends the trial (opens again).
    pub fn failed(&self, class: Class) {
        let weight = self.weight(class);
        if !self.cfg.enabled || weight == 0 {
            return;
        }
        let until_ms = self.clock.now_ms() + self.cfg.reset_timeout_ms;
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *s {
            State::Closed { weight: w } => {
                let w = w.saturating_add(weight);
                if w >= self.cfg.failure_threshold {
                    self.go(&mut s, State::Open { until_ms });
                } else {
                    *s = State::Closed { weight: w };
                }
            }
            State::HalfOpen { .. } => self.go(&mut s, State::Open { until_ms }),
            State::Open { .. } => {}
        }
    }

    /// The state now: `closed`, `open` or `half_open`.
    pub fn state(&self) -> &'static str {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).name()
    }
}

impl Permit<'_> {
    /// Reports the call's outcome: `None` for a success.
    pub fn done(mut self, failure: Option<Class>) {
        if let Some(b) = self.breaker.take() {
            b.report(self.probe, failure);
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let (Some(b), true) = (self.breaker, self.probe) {
            let mut s = b.state.lock().unwrap_or_else(|p| p.into_inner());
            if let State::HalfOpen { in_flight, .. } = &mut *s {
                *in_flight = in_flight.saturating_sub(1);
            }
        }
    }
}

/// How an answer's HTTP status counts: 5xx, 401/403 and 400/404/422 are failures of their
/// class; anything else (429 included: outbound backoff handles it) is a success.
pub fn classify_status(status: http::StatusCode) -> Option<Class> {
    match status.as_u16() {
        500..=599 => Some(Class::Server),
        401 | 403 => Some(Class::Auth),
        400 | 404 | 422 => Some(Class::Validation),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    fn breaker(clock: &ManualClock, cfg: BreakerConfig) -> Breaker {
        Breaker::new("u", cfg, Arc::new(clock.clone()), None)
    }

    fn fail(b: &Breaker, c: Class) {
        b.admit().unwrap().done(Some(c));
    }

    #[test]
    fn failures_open_it_by_weight_and_a_success_resets_the_count() {
        let clock = ManualClock::at(1_000_000);
        let b = breaker(&clock, BreakerConfig::default());
        // Threshold 5: two server errors (2 each) stay closed, a success resets.
        fail(&b, Class::Server);
        fail(&b, Class::Server);
        b.admit().unwrap().done(None);
        fail(&b, Class::Server);
        fail(&b, Class::Server);
        assert_eq!(b.state(), "closed");
        // Low-severity failures (the request's own fault) never count.
        for _ in 0..20 {
            fail(&b, Class::Validation);
            fail(&b, Class::Auth);
        }
        assert_eq!(b.state(), "closed");
        fail(&b, Class::Timeout);
        assert_eq!(b.state(), "open");
        assert_eq!(b.admit().unwrap_err(), Open);
        // A connection failure is critical: opens at once.
        let b = breaker(&clock, BreakerConfig::default());
        fail(&b, Class::Connection);
        assert_eq!(b.state(), "open");
    }

    #[test]
    fn it_probes_after_the_reset_timeout_and_closes_after_enough_successes() {
        let clock = ManualClock::at(1_000_000);
        let b = breaker(&clock, BreakerConfig::default());
        fail(&b, Class::Connection);
        clock.advance(29_999);
        assert!(b.admit().is_err());
        clock.advance(1);
        // Half-open: three probes at a time, the fourth refused.
        let p: Vec<_> = (0..3).map(|_| b.admit().unwrap()).collect();
        assert_eq!(b.state(), "half_open");
        assert!(b.admit().is_err());
        // A probe dropped without an outcome frees its slot.
        let mut p = p.into_iter();
        drop(p.next());
        let extra = b.admit().unwrap();
        for permit in p {
            permit.done(None);
        }
        assert_eq!(b.state(), "half_open");
        extra.done(None);
        assert_eq!(b.state(), "closed");
    }

    #[test]
    fn a_failed_probe_opens_it_again() {
        let clock = ManualClock::at(1_000_000);
        let b = breaker(&clock, BreakerConfig::default());
        fail(&b, Class::Connection);
        clock.advance(30_000);
        let probe = b.admit().unwrap();
        probe.done(Some(Class::Timeout));
        assert_eq!(b.state(), "open");
        clock.advance(29_000);
        assert!(b.admit().is_err());
    }

    #[test]
    fn a_disabled_breaker_never_opens() {
        let clock = ManualClock::at(0);
        let cfg = BreakerConfig {
            enabled: false,
            ..BreakerConfig::default()
        };
        let b = breaker(&clock, cfg);
        for _ in 0..10 {
            fail(&b, Class::Connection);
        }
        assert!(b.admit().is_ok());
    }
}
