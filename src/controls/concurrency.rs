//! Calls in flight at once: per principal and per tool (`[concurrency]`), per upstream
//! (`[upstream.outbound] concurrent_calls`). Seed 000: two concurrent calls per agent.
//!
//! A `tools/call` takes one slot of each limit that applies, in that order, before it is
//! routed, and holds them until its answer has been delivered (a streamed answer: until the
//! stream ends). A call that finds a limit full waits up to `max_wait_ms` in all, then is
//! refused (MCP-006). Slots are keyed by keyed hashes (no strings kept), and a key's semaphore
//! is dropped once nothing holds or waits for it, so idle keys cost nothing.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ratelimit::Subject;
use crate::config::Config;

/// A limit was full for longer than the wait allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} concurrency limit full")]
pub struct Busy(pub &'static str);

type Slots = Arc<Mutex<HashMap<u64, Arc<Semaphore>>>>;

/// Slots held by one call; released when dropped.
#[derive(Debug, Default)]
pub struct Held(Vec<Slot>);

#[derive(Debug)]
struct Slot {
    key: u64,
    sem: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
    slots: Slots,
}

impl Drop for Slot {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut map = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map and this slot know the semaphore, and nothing is taken: forget it.
        if Arc::strong_count(&self.sem) == 2 {
            map.remove(&self.key);
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
    slots: Slots,
    keying: RandomState,
}

impl Concurrency {
    /// From `[concurrency]` and each upstream's `outbound.concurrent_calls`.
    pub fn new(cfg: &Config) -> Self {
        Concurrency {
            per_principal: cfg.concurrency.per_principal,
            per_tool: cfg.concurrency.per_tool,
            per_upstream: cfg
                .upstreams
                .iter()
                .filter_map(|u| Some((u.name.as_str().into(), u.outbound.concurrent_calls?)))
                .collect(),
            wait: Duration::from_millis(cfg.concurrency.max_wait_ms),
            slots: Arc::default(),
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
        let mut held = Held(Vec::new());
        let deadline = tokio::time::Instant::now() + self.wait;
        for (key, n, what) in wanted.into_iter().flatten() {
            let sem = {
                let mut map = self.slots.lock().unwrap_or_else(|p| p.into_inner());
                map.entry(key)
                    .or_insert_with(|| Arc::new(Semaphore::new(n as usize)))
                    .clone()
            };
            let mut slot = Slot {
                key,
                sem: sem.clone(),
                permit: None,
                slots: self.slots.clone(),
            };
            match tokio::time::timeout_at(deadline, sem.acquire_owned()).await {
                Ok(Ok(p)) => slot.permit = Some(p),
                _ => {
                    metrics::counter!("palisade_concurrency_refused_total", "limit" => what)
                        .increment(1);
                    return Err(Busy(what));
                }
            }
            held.0.push(slot);
        }
        Ok(held)
    }

    /// Keys with a live semaphore (tests, metrics).
    pub fn tracked(&self) -> usize {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).len()
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
        Concurrency::new(&cfg)
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
        assert_eq!(c.tracked(), 0, "idle keys are forgotten");
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
