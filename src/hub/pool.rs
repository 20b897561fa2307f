//! Upstream sessions (and stdio children) by owner, per the upstream's isolation: one per
//! downstream session, one per principal, or one shared. Concurrent first uses share one
//! start; a failed or dead one is replaced after a growing delay.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use super::conn::Conn;
use super::HubError;
use crate::config::Isolation;
use crate::controls::session::SessionId;

/// Who an upstream session belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Owner {
    /// Everybody (`isolation = "shared"`).
    Shared,
    /// One principal.
    Principal(Arc<str>),
    /// One downstream session.
    Session(SessionId),
}

impl Owner {
    /// The owner of an upstream session used by `principal` in downstream session `session`.
    pub fn of(isolation: Isolation, principal: &Arc<str>, session: Option<SessionId>) -> Owner {
        match (isolation, session) {
            (Isolation::Shared, _) => Owner::Shared,
            (Isolation::PerSession, Some(s)) => Owner::Session(s),
            // A stateless (2026-07-28) request has no session: it gets its principal's.
            (Isolation::PerSession | Isolation::PerPrincipal, _) => {
                Owner::Principal(principal.clone())
            }
        }
    }

    /// For logs and the audit trail.
    pub fn label(&self) -> String {
        match self {
            Owner::Shared => "shared".into(),
            Owner::Principal(p) => p.to_string(),
            Owner::Session(_) => "session".into(),
        }
    }
}

type Key = (usize, Owner);

#[derive(Debug, Default)]
struct Slot {
    cell: OnceCell<Arc<Conn>>,
}

#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    next: Instant,
}

/// The pool.
#[derive(Debug)]
pub struct Pool {
    slots: Mutex<HashMap<Key, Arc<Slot>>>,
    backoff: Mutex<HashMap<Key, Backoff>>,
    base: Duration,
    max: Duration,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pool {
    /// An empty pool; restarts wait `base`, doubled per consecutive failure up to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Pool {
            slots: Mutex::default(),
            backoff: Mutex::default(),
            base,
            max,
        }
    }

    /// The live session for `key`, or a new one from `open`. A start within the restart delay
    /// of a failure waits for it, unless that is longer than `patience` (then: unavailable).
    pub async fn get<F, Fut>(
        &self,
        key: Key,
        patience: Duration,
        open: F,
    ) -> Result<Arc<Conn>, HubError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Arc<Conn>, HubError>>,
    {
        let slot = {
            let mut slots = lock(&self.slots);
            let s = slots.entry(key.clone()).or_default();
            match s.cell.get() {
                Some(c) if c.is_alive() => return Ok(c.clone()),
                // Dead (child exited, session expired): start again in a fresh slot.
                Some(_) => {
                    *s = Arc::default();
                    s.clone()
                }
                None => s.clone(),
            }
        };
        let wait = lock(&self.backoff)
            .get(&key)
            .map(|b| b.next.saturating_duration_since(Instant::now()))
            .unwrap_or_default();
        if wait > patience {
            return Err(HubError::Unavailable("restarting after failures"));
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let r = slot.cell.get_or_try_init(open).await.cloned();
        match &r {
            Ok(_) => {
                lock(&self.backoff).remove(&key);
            }
            Err(_) => {
                self.failed(&key);
                let mut slots = lock(&self.slots);
                if slots.get(&key).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                    slots.remove(&key);
                }
            }
        }
        r
    }

    /// Records a failure (a start that failed, a child that died): the next start waits.
    pub fn failed(&self, key: &Key) {
        let mut b = lock(&self.backoff);
        let e = b.entry(key.clone()).or_insert(Backoff {
            failures: 0,
            next: Instant::now(),
        });
        e.failures = e.failures.saturating_add(1);
        let delay = self
            .base
            .saturating_mul(1u32 << (e.failures - 1).min(16))
            .min(self.max);
        e.next = Instant::now() + delay;
    }

    /// Removes and returns every session matching `f` (session end, idle reaping).
    pub fn take(&self, mut f: impl FnMut(&Key, &Conn) -> bool) -> Vec<Arc<Conn>> {
        let mut out = Vec::new();
        lock(&self.slots).retain(|k, s| match s.cell.get() {
            Some(c) if f(k, c) => {
                out.push(c.clone());
                false
            }
            _ => true,
        });
        out
    }

    /// Whether some owner's start of upstream `u` waits for its restart delay.
    pub fn backing_off(&self, u: usize) -> bool {
        let now = Instant::now();
        lock(&self.backoff)
            .iter()
            .any(|((up, _), b)| *up == u && b.next > now)
    }

    /// Every live session (for `/readyz` and list-change fan-out).
    pub fn live(&self) -> Vec<Arc<Conn>> {
        lock(&self.slots)
            .values()
            .filter_map(|s| s.cell.get().cloned())
            .filter(|c| c.is_alive())
            .collect()
    }
}
