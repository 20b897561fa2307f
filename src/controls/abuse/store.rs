//! Strikes and holds (blocks, quarantines), behind a trait so a shared backend (Redis) can
//! replace the in-memory one. Each operation is atomic per offender.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::{Hold, Offender};

/// Strikes and holds.
pub trait AbuseStore: Send + Sync + Debug {
    /// Counts a strike against `who` in a window of `window_ms` (fixed, starting at its
    /// first strike). Returns true, and starts over, when this strike is the `max`th.
    fn strike(&self, who: &Offender, now_ms: u64, window_ms: u64, max: u32) -> bool;
    /// Places a hold; returns false if an equal or longer one was already in place.
    fn hold(&self, hold: Hold) -> bool;
    /// The hold on `who` at `now_ms`, if any.
    fn held(&self, who: &Offender, now_ms: u64) -> Option<Hold>;
    /// Every hold in force at `now_ms`.
    fn list(&self, now_ms: u64) -> Vec<Hold>;
    /// Lifts the holds on `who` of the given kind (`quarantine` or not); returns whether any
    /// was lifted.
    fn release(&self, who: &Offender, quarantine: bool) -> bool;
    /// Forgets expired holds and strike windows.
    fn sweep(&self, now_ms: u64);
}

#[derive(Debug, Clone, Copy)]
struct Strikes {
    since_ms: u64,
    count: u32,
}

/// In-memory store. Strike counters are bounded: past `max_tracked` offenders, the oldest
/// windows are dropped first (a missed block, never a wrong one).
#[derive(Debug)]
pub struct MemoryAbuseStore {
    strikes: Mutex<HashMap<Offender, Strikes>>,
    holds: Mutex<HashMap<Offender, Hold>>,
    /// Holds in place, read without the lock: most requests find none.
    live: AtomicUsize,
    max_tracked: usize,
}

impl MemoryAbuseStore {
    /// A store counting strikes for at most `max_tracked` offenders at once.
    pub fn new(max_tracked: usize) -> Self {
        MemoryAbuseStore {
            strikes: Mutex::default(),
            holds: Mutex::default(),
            live: AtomicUsize::new(0),
            max_tracked,
        }
    }
}

fn in_force(h: &Hold, now_ms: u64) -> bool {
    h.until_ms.is_none_or(|u| u > now_ms)
}

impl AbuseStore for MemoryAbuseStore {
    fn strike(&self, who: &Offender, now_ms: u64, window_ms: u64, max: u32) -> bool {
        let mut map = self.strikes.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.max_tracked && !map.contains_key(who) {
            map.retain(|_, s| s.since_ms + window_ms > now_ms);
            if map.len() >= self.max_tracked {
                if let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, s)| s.since_ms)
                    .map(|(k, _)| k.clone())
                {
                    map.remove(&oldest);
                }
            }
        }
        let s = map.entry(who.clone()).or_insert(Strikes {
            since_ms: now_ms,
            count: 0,
        });
        if s.since_ms + window_ms <= now_ms {
            *s = Strikes {
                since_ms: now_ms,
                count: 0,
            };
        }
        s.count += 1;
        if s.count >= max {
            map.remove(who);
            return true;
        }
        false
    }

    fn hold(&self, hold: Hold) -> bool {
        let mut map = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        let longer = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(a), Some(b)) => a >= b,
        };
        if let Some(old) = map.get(&hold.who) {
            if old.quarantine >= hold.quarantine && longer(old.until_ms, hold.until_ms) {
                return false;
            }
        }
        if map.insert(hold.who.clone(), hold).is_none() {
            self.live.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    fn held(&self, who: &Offender, now_ms: u64) -> Option<Hold> {
        if self.live.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let map = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        map.get(who).filter(|h| in_force(h, now_ms)).cloned()
    }

    fn list(&self, now_ms: u64) -> Vec<Hold> {
        let map = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<Hold> = map
            .values()
            .filter(|h| in_force(h, now_ms))
            .cloned()
            .collect();
        v.sort_by_key(|h| h.since_ms);
        v
    }

    fn release(&self, who: &Offender, quarantine: bool) -> bool {
        let mut map = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(who).is_some_and(|h| h.quarantine == quarantine) {
            map.remove(who);
            self.live.fetch_sub(1, Ordering::Relaxed);
            return true;
        }
        false
    }

    fn sweep(&self, now_ms: u64) {
        let mut map = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        let before = map.len();
        map.retain(|_, h| in_force(h, now_ms));
        self.live.fetch_sub(before - map.len(), Ordering::Relaxed);
    }
}
