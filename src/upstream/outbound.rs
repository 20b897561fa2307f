//! The gateway's own manners towards one upstream (seed 000's per-agent policy towards its
//! LLM, applied to upstreams): a call rate (token bucket), and backing off after a 429.
//!
//! - **Rate**: `max_calls_per_minute`, as a token bucket with a burst of the same size; a
//!   call beyond it is not sent (MCP-006, `Retry-After`).
//! - **Backoff**: after an upstream 429, nothing more is sent to it until the backoff ends:
//!   exponential (1 s, 2 s, 4 s … up to `backoff_max_ms`, 60 s by default) with full jitter
//!   over its upper half, and never shorter than the upstream's `Retry-After` (delta seconds)
//!   up to the same cap. Calls meanwhile are answered MCP-006 with `Retry-After` at once. Any
//!   other answer resets the exponent.
//! - **Nothing is retried**: the 429 itself reaches the client as the upstream sent it, so a
//!   `tools/call` is never sent twice by the gateway. (The concurrency cap of
//!   `concurrent_calls` is held for the whole call by `controls::concurrency`.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use http::{HeaderValue, StatusCode};

use crate::clock::SharedClock;
use crate::config::OutboundConfig;
use crate::controls::ratelimit::algo::{self, Spec, State};

/// The call was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Throttled {
    /// Backing off after the upstream's 429.
    #[error("backing off after a 429 for {retry_after_ms} ms")]
    Backoff {
        /// Until the backoff ends.
        retry_after_ms: u64,
    },
    /// `max_calls_per_minute` spent.
    #[error("outbound rate spent for {retry_after_ms} ms")]
    Rate {
        /// Until one more call may go.
        retry_after_ms: u64,
    },
}

impl Throttled {
    /// Seconds for `Retry-After` (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        let (Throttled::Backoff { retry_after_ms } | Throttled::Rate { retry_after_ms }) = self;
        retry_after_ms.div_ceil(1000).max(1)
    }
}

#[derive(Debug, Default)]
struct Backoff {
    until_ms: u64,
    streak: u32,
}

/// One upstream's outbound policy.
#[derive(Debug)]
pub struct Outbound {
    rate: Option<(Spec, Mutex<State>)>,
    backoff: Mutex<Backoff>,
    /// Whether a 429 was ever seen: until then (the common case) a call takes no lock and
    /// reads no clock for the backoff.
    backed_off: AtomicBool,
    max_ms: u64,
    clock: SharedClock,
}

/// The first backoff step.
const BASE_MS: u64 = 1000;

impl Outbound {
    /// From `[upstream.outbound]`.
    pub fn new(cfg: &OutboundConfig, clock: SharedClock) -> Self {
        Outbound {
            rate: cfg.max_calls_per_minute.map(|n| {
                let spec = Spec::bucket(60_000, n, n);
                (spec, Mutex::new(spec.fresh()))
            }),
            backoff: Mutex::default(),
            backed_off: AtomicBool::new(false),
            max_ms: cfg.backoff_max_ms,
            clock,
        }
    }

    /// Whether a call may be sent now (counting it against the rate if so).
    pub fn admit(&self) -> Result<(), Throttled> {
        if self.rate.is_none() && !self.backed_off.load(Ordering::Relaxed) {
            return Ok(());
        }
        let now = self.clock.now_ms();
        {
            let b = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
            if b.until_ms > now {
                return Err(Throttled::Backoff {
                    retry_after_ms: b.until_ms - now,
                });
            }
        }
        if let Some((spec, state)) = &self.rate {
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            let t = algo::take(spec, &mut st, now);
            if !t.admitted {
                return Err(Throttled::Rate {
                    retry_after_ms: t.retry_after_ms,
                });
            }
        }
        Ok(())
    }

    /// Learns from an answer: a 429 starts (or lengthens) a backoff.
    pub fn answered(&self, status: StatusCode, retry_after: Option<&HeaderValue>) {
        let backing_off = status == StatusCode::TOO_MANY_REQUESTS;
        if !backing_off && !self.backed_off.load(Ordering::Relaxed) {
            return;
        }
        let mut b = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        if !backing_off {
            b.streak = 0;
            return;
        }
        self.backed_off.store(true, Ordering::Relaxed);
        let ceiling = BASE_MS
            .saturating_mul(1u64 << b.streak.min(20))
            .min(self.max_ms);
        // Full jitter over the upper half: many gateways backing off from one upstream do not
        // come back in step.
        let jittered = ceiling / 2 + rand::random::<u64>() % (ceiling / 2 + 1);
        let asked = retry_after
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map_or(0, |s| s.saturating_mul(1000));
        let delay = jittered.max(asked).min(self.max_ms);
        b.until_ms = b.until_ms.max(self.clock.now_ms() + delay);
        b.streak = b.streak.saturating_add(1);
        tracing::warn!(target: "palisade::outbound", delay_ms = delay, streak = b.streak, "upstream answered 429: backing off");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    fn outbound(clock: &ManualClock, rate: Option<u32>) -> Outbound {
        Outbound::new(
            &OutboundConfig {
                max_calls_per_minute: rate,
                concurrent_calls: None,
                backoff_max_ms: 60_000,
            },
            Arc::new(clock.clone()),
        )
    }

    #[test]
    fn a_429_backs_off_exponentially_honouring_retry_after_up_to_the_cap() {
        let clock = ManualClock::at(1_000_000);
        let o = outbound(&clock, None);
        assert_eq!(o.admit(), Ok(()));
        // Retry-After: 7 is longer than the first step (at most 1 s): it wins.
        o.answered(
            StatusCode::TOO_MANY_REQUESTS,
            Some(&HeaderValue::from_static("7")),
        );
        assert_eq!(
            o.admit(),
            Err(Throttled::Backoff {
                retry_after_ms: 7000
            })
        );
        clock.advance(7000);
        assert_eq!(o.admit(), Ok(()));
        // Without Retry-After the steps double (with jitter in their upper half)...
        let mut last = 0;
        for step in 1..=8u32 {
            o.answered(StatusCode::TOO_MANY_REQUESTS, None);
            let Err(Throttled::Backoff { retry_after_ms }) = o.admit() else {
                panic!("not backing off");
            };
            let ceiling = (1000u64 << step).min(60_000);
            assert!(
                (ceiling / 2..=ceiling).contains(&retry_after_ms),
                "step {step}: {retry_after_ms}"
            );
            assert!(retry_after_ms >= last / 2);
            last = retry_after_ms;
            clock.advance(retry_after_ms);
        }
        // ...never past 60 s, even when the upstream asks for more.
        o.answered(
            StatusCode::TOO_MANY_REQUESTS,
            Some(&HeaderValue::from_static("3600")),
        );
        assert_eq!(
            o.admit(),
            Err(Throttled::Backoff {
                retry_after_ms: 60_000
            })
        );
        // Any other answer resets the exponent.
        clock.advance(60_000);
        o.answered(StatusCode::OK, None);
        o.answered(StatusCode::TOO_MANY_REQUESTS, None);
        let Err(Throttled::Backoff { retry_after_ms }) = o.admit() else {
            panic!("not backing off");
        };
        assert!(retry_after_ms <= 1000, "{retry_after_ms}");
    }

    #[test]
    fn the_call_rate_is_a_bucket_of_a_minute() {
        let clock = ManualClock::at(1_000_000);
        let o = outbound(&clock, Some(60));
        for _ in 0..60 {
            assert_eq!(o.admit(), Ok(()));
        }
        assert_eq!(
            o.admit(),
            Err(Throttled::Rate {
                retry_after_ms: 1000
            })
        );
        clock.advance(1000);
        assert_eq!(o.admit(), Ok(()));
        assert!(o.admit().is_err());
    }
}
