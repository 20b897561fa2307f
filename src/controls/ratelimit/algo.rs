//! The two counting algorithms, as pure functions of a key's state and the time.
//!
//! - **Sliding window** (seeds 001, 004): at most `max` requests in ANY interval of `window`.
//!   The window is kept as 17 sub-slots of `window / 16` each, and all 17 are counted, so the
//!   counted span always covers the last `window` (and up to one slot more). It therefore never
//!   admits more than `max` in a window; the price is that a spent allowance comes back up to
//!   one slot (1/16 of the window) late. A log of timestamps would be exact both ways but costs
//!   4 bytes × `max` per key; the weighted two-window estimate many limiters use is cheaper
//!   still but can admit up to twice `max` in a window.
//! - **Token bucket** (seed 003's burst; seed 000's outbound policy), as GCRA: one timestamp per
//!   key (the "theoretical arrival time"); `burst` requests at once, refilled at `max` per
//!   `window`. Exact.
//!
//! Times are Unix milliseconds; state is plain data so a shared store (Redis) can run the same
//! arithmetic in a script, atomically per key.

/// Sub-slots counted by the sliding window (`SPAN` of width `window / (SPAN - 1)`).
pub const SPAN: usize = 17;

/// How a rule counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spec {
    /// At most `max` in any `window_ms`.
    Window {
        /// Window length.
        window_ms: u64,
        /// Requests allowed in it.
        max: u32,
    },
    /// Up to `burst` at once, refilled at one per `interval_us` (µs: rates above 1 000/s).
    Bucket {
        /// Time to earn one request, in microseconds.
        interval_us: u64,
        /// Capacity.
        burst: u32,
    },
}

impl Spec {
    /// A token bucket of `burst` refilled at `max` per `window_ms`.
    pub fn bucket(window_ms: u64, max: u32, burst: u32) -> Spec {
        Spec::Bucket {
            interval_us: (window_ms.saturating_mul(1000) / u64::from(max.max(1))).max(1),
            burst: burst.max(1),
        }
    }

    /// The advertised limit (`X-RateLimit-Limit`).
    pub fn limit(&self) -> u32 {
        match *self {
            Spec::Window { max, .. } => max,
            Spec::Bucket { burst, .. } => burst,
        }
    }

    fn slot_ms(window_ms: u64) -> u64 {
        window_ms.div_ceil(SPAN as u64 - 1).max(1)
    }

    /// A fresh state for this spec.
    pub fn fresh(&self) -> State {
        match self {
            Spec::Window { .. } => State::Window {
                head: 0,
                slots: [0; SPAN],
            },
            Spec::Bucket { .. } => State::Bucket { tat_us: 0 },
        }
    }
}

/// One key's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Sliding window: counts per sub-slot; `head` is the absolute index of the newest slot.
    Window {
        /// Absolute slot index (`now / slot_ms`) of the newest slot written.
        head: u64,
        /// Ring of counts, indexed by absolute slot index modulo `SPAN`.
        slots: [u32; SPAN],
    },
    /// Token bucket: the theoretical arrival time, in Unix microseconds.
    Bucket {
        /// When the bucket is full again.
        tat_us: u64,
    },
}

/// The outcome of one request against one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Take {
    /// Admitted (and counted).
    pub admitted: bool,
    /// Requests left right now after this one.
    pub remaining: u32,
    /// When the allowance is whole again (Unix ms).
    pub reset_ms: u64,
    /// When refused: how long until one more request would be admitted.
    pub retry_after_ms: u64,
}

/// Counts one request at `now_ms` against `state`.
pub fn take(spec: &Spec, state: &mut State, now_ms: u64) -> Take {
    match (*spec, state) {
        (Spec::Window { window_ms, max }, State::Window { head, slots }) => {
            let w = Spec::slot_ms(window_ms);
            let idx = now_ms / w;
            advance(head, slots, idx);
            let count: u64 = slots.iter().map(|&c| u64::from(c)).sum();
            if count < u64::from(max) {
                slots[(idx % SPAN as u64) as usize] += 1;
                return Take {
                    admitted: true,
                    remaining: (u64::from(max) - count - 1) as u32,
                    // Everything counted now has left the span once the newest slot (this
                    // one) has.
                    reset_ms: (idx + SPAN as u64) * w,
                    retry_after_ms: 0,
                };
            }
            let newest = (0..SPAN as u64)
                .map(|k| idx - k.min(idx))
                .find(|i| slots[(*i % SPAN as u64) as usize] > 0);
            // Refused: the oldest slots leave the span one by one; find the first moment
            // enough have left.
            let oldest = idx.saturating_sub(SPAN as u64 - 1);
            let mut left = count;
            let mut at = idx + 1;
            for i in oldest..=idx {
                left -= u64::from(slots[(i % SPAN as u64) as usize]);
                at = i + SPAN as u64;
                if left < u64::from(max) {
                    break;
                }
            }
            Take {
                admitted: false,
                remaining: 0,
                reset_ms: newest.map_or(now_ms, |n| (n + SPAN as u64) * w),
                retry_after_ms: (at * w).saturating_sub(now_ms),
            }
        }
        (Spec::Bucket { interval_us, burst }, State::Bucket { tat_us }) => {
            let now = now_ms.saturating_mul(1000);
            let tolerance = interval_us * u64::from(burst - 1);
            let tat = (*tat_us).max(now);
            if tat - tolerance.min(tat) > now {
                return Take {
                    admitted: false,
                    remaining: 0,
                    reset_ms: tat.div_ceil(1000),
                    retry_after_ms: (tat - tolerance - now).div_ceil(1000),
                };
            }
            let next = tat + interval_us;
            *tat_us = next;
            let room = (now + tolerance).saturating_sub(next);
            Take {
                admitted: true,
                remaining: if now + tolerance >= next {
                    (room / interval_us + 1).min(u64::from(burst)) as u32
                } else {
                    0
                },
                reset_ms: next.div_ceil(1000),
                retry_after_ms: 0,
            }
        }
        // A key's state always matches its rule's spec (keys include the rule); a mismatch
        // would be a bug: start the key over in the right shape, counting this request.
        (spec, state) => {
            *state = spec.fresh();
            take(&spec, state, now_ms)
        }
    }
}

/// Takes back one request admitted by [`take`] at the same `now_ms` (another rule refused
/// the request, so it does not count).
pub fn refund(spec: &Spec, state: &mut State, now_ms: u64) {
    match (*spec, state) {
        (Spec::Window { window_ms, .. }, State::Window { head, slots }) => {
            let idx = now_ms / Spec::slot_ms(window_ms);
            if idx <= *head && *head - idx < SPAN as u64 {
                let c = &mut slots[(idx % SPAN as u64) as usize];
                *c = c.saturating_sub(1);
            }
        }
        (Spec::Bucket { interval_us, .. }, State::Bucket { tat_us }) => {
            *tat_us = tat_us
                .saturating_sub(interval_us)
                .max(now_ms.saturating_mul(1000));
        }
        _ => {}
    }
}

/// Drops slots that have left the span when the newest slot moves to `idx`.
fn advance(head: &mut u64, slots: &mut [u32; SPAN], idx: u64) {
    if idx <= *head {
        return;
    }
    let gap = idx - *head;
    if gap >= SPAN as u64 {
        *slots = [0; SPAN];
    } else {
        for i in (*head + 1)..=idx {
            slots[(i % SPAN as u64) as usize] = 0;
        }
    }
    *head = idx;
}
