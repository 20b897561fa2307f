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
    /// Forgets expired holds and strike windows that have ended.
    fn sweep(&self, now_ms: u64);
}

#[derive(Debug, Clone, Copy)]
struct Strikes {
    since_ms: u64,
    /// When this window ends (and the entry can be forgotten).
    until_ms: u64,
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
            map.retain(|_, s| s.until_ms > now_ms);
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
        let fresh = Strikes {
            since_ms: now_ms,
            until_ms: now_ms + window_ms,
            count: 0,
        };
        let s = map.entry(who.clone()).or_insert(fresh);
        if s.until_ms <= now_ms {
            *s = fresh;
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
        drop(map);
        self.strikes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, s| s.until_ms > now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ip(s: &str) -> Offender {
        Offender::ip(s.parse().unwrap())
    }

    #[test]
    fn strikes_count_within_their_window_only() {
        let s = MemoryAbuseStore::new(10);
        let who = ip("192.0.2.1");
        assert!(!s.strike(&who, 1_000, 60_000, 3));
        assert!(!s.strike(&who, 2_000, 60_000, 3));
        // The window (from the first strike) has passed: counting starts over.
        assert!(!s.strike(&who, 61_000, 60_000, 3));
        assert!(!s.strike(&who, 62_000, 60_000, 3));
        assert!(s.strike(&who, 63_000, 60_000, 3));
        // And again from zero after a block is earned.
        assert!(!s.strike(&who, 63_001, 60_000, 3));
        // Ended windows are swept away.
        assert_eq!(s.strikes.lock().unwrap().len(), 1);
        s.sweep(123_001);
        assert_eq!(s.strikes.lock().unwrap().len(), 0);
    }

    #[test]
    fn blocks_expire_quarantines_do_not() {
        let s = MemoryAbuseStore::new(10);
        let block = Hold {
            who: ip("192.0.2.1"),
            quarantine: false,
            reason: "blocked_auth_failures",
            since_ms: 1_000,
            until_ms: Some(901_000),
        };
        let q = Hold {
            who: Offender::Principal(Arc::from("agent")),
            quarantine: true,
            reason: "quarantined_hmac_mismatch",
            since_ms: 1_000,
            until_ms: None,
        };
        assert!(s.hold(block.clone()));
        assert!(s.hold(q.clone()));
        assert_eq!(s.held(&block.who, 900_999), Some(block.clone()));
        assert_eq!(s.held(&block.who, 901_000), None);
        assert_eq!(s.held(&q.who, u64::MAX - 1), Some(q.clone()));
        assert_eq!(s.list(901_000), vec![q.clone()]);
        s.sweep(901_000);
        // A shorter block does not replace a longer one; a quarantine replaces a block.
        assert!(s.hold(block.clone()));
        assert!(!s.hold(Hold {
            until_ms: Some(2_000),
            ..block.clone()
        }));
        assert!(s.hold(Hold {
            quarantine: true,
            until_ms: None,
            ..block.clone()
        }));
        // Releasing needs the right kind.
        assert!(!s.release(&block.who, false));
        assert!(s.release(&block.who, true));
        assert!(s.release(&q.who, true));
        assert!(s.list(0).is_empty());
    }

    #[test]
    fn an_ipv6_host_is_held_by_its_64() {
        assert_eq!(ip("2001:db8:1:2::1"), ip("2001:db8:1:2:ffff::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:192.0.2.1"), ip("192.0.2.1"));
        assert_eq!(
            Offender::parse("ip:2001:db8:1:2::77"),
            Some(ip("2001:db8:1:2::"))
        );
        assert_eq!(
            Offender::parse("principal:a:b"),
            Some(Offender::Principal(Arc::from("a:b")))
        );
        assert_eq!(Offender::parse("principal:"), None);
        assert_eq!(Offender::parse("bogus"), None);
    }
}
