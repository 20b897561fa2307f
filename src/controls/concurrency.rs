//! Calls in flight at once: per principal and per tool (`[concurrency]`), per upstream
//! (`[upstream.outbound] concurrent_calls`). Seed 000: two concurrent calls per agent.
//!
//! A `tools/call` takes one slot of each limit that applies, in that order, before it is
//! routed, and holds them until its answer has been delivered (a streamed answer: until the
//! stream ends). A call that finds a limit full waits up to `max_wait_ms` in all, then is
//! refused (MCP-006).
//!
//! The counts sit behind [`SlotStore`] (one atomic "take if below max" and "give back" per
//! key, a Redis `INCR`-and-check script later); a wait is woken when a slot is given back in
//! this process, and re-checks every 50 ms for slots another replica gives back. Keys are
//! keyed hashes (no strings kept), and a key whose count returns to zero is forgotten.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::ratelimit::Subject;
use crate::config::Config;

/// A limit was full for longer than the wait allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} concurrency limit full")]
pub struct Busy(pub &'static str);

/// Slots in use per key.
pub trait SlotStore: Send + Sync + Debug {
    /// Takes a slot of `key` if fewer than `max` are taken. Atomic per key.
    fn try_take(&self, key: u64, max: u32) -> bool;
    /// Gives a slot of `key` back.
    fn give_back(&self, key: u64);
}

/// In-memory slot counts, sharded; a key at zero is removed.
#[derive(Debug)]
pub struct MemorySlotStore {
    shards: Box<[Mutex<HashMap<u64, u32>>]>,
}

impl Default for MemorySlotStore {
    fn default() -> Self {
        MemorySlotStore {
            shards: (0..16).map(|_| Mutex::default()).collect(),
        }
    }
}

impl MemorySlotStore {
    fn shard(&self, key: u64) -> std::sync::MutexGuard<'_, HashMap<u64, u32>> {
        self.shards[(key >> 60) as usize % self.shards.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Keys with slots taken (tests, metrics).
    pub fn tracked(&self) -> usize {
        (0..self.shards.len())
            .map(|i| self.shard((i as u64) << 60).len())
            .sum()
    }
}

impl SlotStore for MemorySlotStore {
    fn try_take(&self, key: u64, max: u32) -> bool {
        let mut map = self.shard(key);
        let n = map.entry(key).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn give_back(&self, key: u64) {
        let mut map = self.shard(key);
        if let Some(n) = map.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&key);
            }
        }
    }
}

/// How often a wait re-checks on its own (slots given back by another replica wake nobody
/// here).
const RECHECK: Duration = Duration::from_millis(50);

/// Slots held by one call; given back when dropped.
#[derive(Debug, Default)]
pub struct Held {
    keys: Vec<u64>,
    back: Option<(Arc<dyn SlotStore>, Arc<Notify>)>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some((store, freed)) = &self.back {
            for k in self.keys.drain(..) {
                store.give_back(k);
            }
            freed.notify_waiters();
        }
    }
}

/// The concurrency control.
#[derive(Debug)]
pub struct Concurrency {
    per_principal: Option<u32>,
    per_tool: Option<u32>,
    per_upstream: HashMap<Box<str>, u32>,
    wait: Duration,
    store: Arc<dyn SlotStore>,
    freed: Arc<Notify>,
    keying: RandomState,
}

impl Concurrency {
    /// From `[concurrency]` and each upstream's `outbound.concurrent_calls`, over `store`.
    pub fn new(cfg: &Config, store: Arc<dyn SlotStore>) -> Self {
        Concurrency {
            per_principal: cfg.concurrency.per_principal,
            per_tool: cfg.concurrency.per_tool,
            per_upstream: cfg
                .upstreams
                .iter()
                .filter_map(|u| Some((u.name.as_str().into(), u.outbound.concurrent_calls?)))
                .collect(),
            wait: Duration::from_millis(cfg.concurrency.max_wait_ms),
            store,
            freed: Arc::new(Notify::new()),
            keying: RandomState::new(),
        }
    }

    /// Whether any limit is configured.
    pub fn is_empty(&self) -> bool {
        self.per_principal.is_none() && self.per_tool.is_none() && self.per_upstream.is_empty()
    }

    /// Takes a slot of each limit that applies to this call, waiting up to the bound.
    /// (The keys are worked out at once: the future borrows only the control.)
    pub fn acquire(
        &self,
        s: &Subject<'_>,
    ) -> impl std::future::Future<Output = Result<Held, Busy>> + '_ {
        let principal = self.per_principal.map(|n| {
            let key = match s.principal {
                Some(p) => self.keying.hash_one(("p", p)),
                None => self
                    .keying
                    .hash_one(("ip", super::network::canonical(s.ip))),
            };
            (key, n, "principal")
        });
        let tool = self
            .per_tool
            .zip(s.tool)
            .map(|(n, t)| (self.keying.hash_one(("t", s.upstream, t)), n, "tool"));
        let upstream = s.upstream.and_then(|u| {
            let n = *self.per_upstream.get(u)?;
            Some((self.keying.hash_one(("u", u)), n, "upstream"))
        });
        let wanted = [principal, tool, upstream];
        self.take(wanted)
    }

    async fn take(&self, wanted: [Option<(u64, u32, &'static str)>; 3]) -> Result<Held, Busy> {
        let mut held = Held {
            keys: Vec::with_capacity(3),
            back: Some((self.store.clone(), self.freed.clone())),
        };
        let deadline = tokio::time::Instant::now() + self.wait;
        for (key, max, what) in wanted.into_iter().flatten() {
            loop {
                // Registered before trying, so a slot given back in between is not missed.
                let freed = self.freed.notified();
                tokio::pin!(freed);
                freed.as_mut().enable();
                if self.store.try_take(key, max) {
                    held.keys.push(key);
                    break;
                }
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    metrics::counter!("palisade_concurrency_refused_total", "limit" => what)
                        .increment(1);
                    // `held` gives back what it took.
                    return Err(Busy(what));
                }
                let _ = tokio::time::timeout_at(deadline.min(now + RECHECK), freed).await;
            }
        }
        Ok(held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conc(text: &str) -> Concurrency {
        let cfg = crate::config::parse(
            &format!("{text}\n[[upstream]]\nname = \"demo\"\nbuiltin = \"demo\"\n"),
            "t",
            &|_| None,
        )
        .unwrap();
        Concurrency::new(&cfg, Arc::new(MemorySlotStore::default()))
    }

    fn who<'a>(p: &'a str, tool: &'a str) -> Subject<'a> {
        Subject {
            ip: "10.0.0.1".parse().unwrap(),
            principal: Some(p),
            method: Some("tools/call"),
            upstream: Some("demo"),
            tool: Some(tool),
        }
    }

    #[tokio::test]
    async fn two_calls_per_agent_then_a_bounded_wait() {
        let c = conc("[concurrency]\nper_principal = 2\nmax_wait_ms = 0");
        let a = c.acquire(&who("a", "x")).await.unwrap();
        let b = c.acquire(&who("a", "y")).await.unwrap();
        assert_eq!(
            c.acquire(&who("a", "z")).await.unwrap_err(),
            Busy("principal")
        );
        // Another agent is not affected.
        let other = c.acquire(&who("b", "x")).await.unwrap();
        drop(a);
        let again = c.acquire(&who("a", "z")).await.unwrap();
        drop((b, other, again));
        let store = MemorySlotStore::default();
        assert!(store.try_take(7, 1));
        assert!(!store.try_take(7, 1));
        store.give_back(7);
        assert_eq!(store.tracked(), 0, "a key back at zero is forgotten");
    }

    #[tokio::test]
    async fn a_waiting_call_gets_the_slot_when_one_is_freed() {
        let c = Arc::new(conc("[concurrency]\nper_tool = 1\nmax_wait_ms = 10000"));
        let first = c.acquire(&who("a", "x")).await.unwrap();
        let c2 = c.clone();
        let waiting = tokio::spawn(async move { c2.acquire(&who("b", "x")).await.map(|_| ()) });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(first);
        assert_eq!(waiting.await.unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn an_upstream_cap_counts_every_caller() {
        let c = conc(
            "[concurrency]\nmax_wait_ms = 0\n[[upstream]]\nname = \"slow\"\nurl = \"http://127.0.0.1:9/\"\n[upstream.outbound]\nconcurrent_calls = 1",
        );
        let mut s = who("a", "x");
        s.upstream = Some("slow");
        let _held = c.acquire(&s).await.unwrap();
        let mut t = who("b", "y");
        t.upstream = Some("slow");
        assert_eq!(c.acquire(&t).await.unwrap_err(), Busy("upstream"));
        // Other upstreams have no cap.
        assert!(c.acquire(&who("b", "y")).await.is_ok());
    }
}
