//! Downstream sessions: the gateway mints its own ids and binds each to a principal and a route.
//!
//! Threats: session hijacking (guessing or stealing an id), replaying a session on a more
//! permissive route, learning an upstream's session id, and memory exhaustion through endless
//! `initialize` calls. Ids are 128 bits from the OS CSPRNG, written as 32 hex characters (visible
//! ASCII). A lookup must match the id, the principal that created it and the route; anything else
//! is refused as if the session did not exist. Sessions are capped in number (the least recently
//! used are evicted beyond it) and reaped when idle. Time is passed in, never read here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::HeaderValue;
use rand::RngCore;

use super::authn::Principal;
use crate::config::SessionConfig;

/// The gateway's own session id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; 16]);

impl SessionId {
    fn random() -> Self {
        let mut b = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut b);
        SessionId(b)
    }

    /// Parses the header form; anything but 32 lowercase hex characters is not one of ours.
    pub fn parse(v: &[u8]) -> Option<Self> {
        if v.len() != 32 {
            return None;
        }
        let mut b = [0u8; 16];
        for (i, pair) in v.chunks(2).enumerate() {
            let hi = hex_val(pair[0])?;
            let lo = hex_val(pair[1])?;
            b[i] = hi << 4 | lo;
        }
        Some(SessionId(b))
    }

    /// The header form.
    pub fn to_header(self) -> HeaderValue {
        // Sent on every response of the session: the audit's hex writer keeps it off the heap.
        // 32 hex characters are always a valid header value.
        HeaderValue::from_bytes(crate::audit::hex_lower(&self.0).bytes())
            .unwrap_or(HeaderValue::from_static("invalid"))
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Why a session lookup was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// A non-initialize request without a session id (HTTP 400 per the specification).
    #[error("session id required")]
    Missing,
    /// Not an id we minted, or expired, reaped or deleted (HTTP 404).
    #[error("unknown or expired session")]
    Unknown,
    /// The id belongs to another principal.
    #[error("session belongs to another principal")]
    OtherPrincipal,
    /// The id was minted on another route.
    #[error("session belongs to another route")]
    OtherRoute,
    /// `initialize` sent with a session id.
    #[error("initialize inside a session")]
    InitializeInSession,
}

/// What a live session maps to.
#[derive(Debug, Clone)]
pub struct Binding {
    /// Our id.
    pub id: SessionId,
    /// The upstream's session id, if the upstream uses sessions.
    pub upstream_id: Option<HeaderValue>,
}

#[derive(Debug)]
struct Entry {
    route: usize,
    principal: Arc<str>,
    upstream_id: Option<HeaderValue>,
    last_seen: Instant,
}

const SHARDS: usize = 16;

/// All live sessions. Each shard's lock is held only for a map operation, never across an await.
#[derive(Debug)]
pub struct SessionStore {
    shards: Vec<Mutex<HashMap<SessionId, Entry>>>,
    count: AtomicUsize,
    max: usize,
    idle: Duration,
}

/// A session evicted or reaped, so the caller can end it upstream too.
#[derive(Debug)]
pub struct Ended {
    /// Our id.
    pub id: SessionId,
    /// Route index.
    pub route: usize,
    /// The upstream's session id.
    pub upstream_id: Option<HeaderValue>,
}

impl SessionStore {
    /// An empty store.
    pub fn new(cfg: &SessionConfig) -> Self {
        SessionStore {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            count: AtomicUsize::new(0),
            max: cfg.max,
            idle: cfg.idle_timeout,
        }
    }

    fn shard(&self, id: &SessionId) -> std::sync::MutexGuard<'_, HashMap<SessionId, Entry>> {
        // A poisoned shard only means another thread panicked mid-insert; the map is still sound.
        self.shards[id.0[0] as usize % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// True when no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Finds the session named by `header` for this principal and route.
    pub fn lookup(
        &self,
        header: &HeaderValue,
        principal: &Principal,
        route: usize,
        now: Instant,
    ) -> Result<Binding, SessionError> {
        let id = SessionId::parse(header.as_bytes()).ok_or(SessionError::Unknown)?;
        let mut shard = self.shard(&id);
        let e = shard.get_mut(&id).ok_or(SessionError::Unknown)?;
        if now.saturating_duration_since(e.last_seen) > self.idle {
            return Err(SessionError::Unknown);
        }
        if e.principal != *principal.id() {
            return Err(SessionError::OtherPrincipal);
        }
        if e.route != route {
            return Err(SessionError::OtherRoute);
        }
        e.last_seen = now;
        Ok(Binding {
            id,
            upstream_id: e.upstream_id.clone(),
        })
    }

    /// Mints a session after a successful upstream `initialize`. Returns the new binding and the
    /// sessions evicted to stay under the cap.
    pub fn create(
        &self,
        principal: &Principal,
        route: usize,
        upstream_id: Option<HeaderValue>,
        now: Instant,
    ) -> (SessionId, Vec<Ended>) {
        let mut ended = Vec::new();
        if self.len() >= self.max {
            ended = self.reap(now);
            if self.len() >= self.max {
                ended.extend(self.evict_oldest(now, self.max / 16 + 1));
            }
        }
        let id = SessionId::random();
        let entry = Entry {
            route,
            principal: principal.id().clone(),
            upstream_id,
            last_seen: now,
        };
        if self.shard(&id).insert(id, entry).is_none() {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        (id, ended)
    }

    /// Ends a session (DELETE). Only its owner on its route may end it.
    pub fn remove(
        &self,
        header: &HeaderValue,
        principal: &Principal,
        route: usize,
        now: Instant,
    ) -> Result<Binding, SessionError> {
        let binding = self.lookup(header, principal, route, now)?;
        if self.shard(&binding.id).remove(&binding.id).is_some() {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(binding)
    }

    /// Removes every session idle for longer than the idle timeout.
    pub fn reap(&self, now: Instant) -> Vec<Ended> {
        let mut ended = Vec::new();
        for shard in &self.shards {
            let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|id, e| {
                let keep = now.saturating_duration_since(e.last_seen) <= self.idle;
                if !keep {
                    ended.push(Ended {
                        id: *id,
                        route: e.route,
                        upstream_id: e.upstream_id.take(),
                    });
                }
                keep
            });
        }
        self.count.fetch_sub(ended.len(), Ordering::Relaxed);
        ended
    }

    /// Evicts the `n` least recently used sessions (one scan, amortised over `n` creations).
    fn evict_oldest(&self, now: Instant, n: usize) -> Vec<Ended> {
        let mut ages: Vec<Duration> = Vec::with_capacity(self.len());
        for shard in &self.shards {
            let map = shard.lock().unwrap_or_else(|p| p.into_inner());
            ages.extend(
                map.values()
                    .map(|e| now.saturating_duration_since(e.last_seen)),
            );
        }
        if ages.is_empty() {
            return Vec::new();
        }
        let k = n.min(ages.len()) - 1;
        let ages_len = ages.len();
        let (_, cutoff, _) = ages.select_nth_unstable_by(ages_len - 1 - k, |a, b| a.cmp(b));
        let cutoff = *cutoff;
        let mut ended = Vec::new();
        for shard in &self.shards {
            let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|id, e| {
                let keep = ended.len() >= n || now.saturating_duration_since(e.last_seen) < cutoff;
                if !keep {
                    ended.push(Ended {
                        id: *id,
                        route: e.route,
                        upstream_id: e.upstream_id.take(),
                    });
                }
                keep
            });
        }
        self.count.fetch_sub(ended.len(), Ordering::Relaxed);
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controls::authn::Authenticator;

    fn store(max: usize) -> SessionStore {
        SessionStore::new(&SessionConfig {
            max,
            idle_timeout: Duration::from_secs(60),
            sse_keepalive: None,
        })
    }

    #[test]
    fn ids_are_random_visible_ascii_and_round_trip() {
        let a = SessionId::random();
        let b = SessionId::random();
        assert_ne!(a, b);
        let h = a.to_header();
        assert!(h.as_bytes().iter().all(|c| (0x21..=0x7e).contains(c)));
        assert_eq!(SessionId::parse(h.as_bytes()), Some(a));
        assert_eq!(SessionId::parse(b"ABCDEF0123456789abcdef0123456789"), None);
    }

    #[test]
    fn bound_to_principal_and_route() {
        let s = store(10);
        let t0 = Instant::now();
        let alice = Authenticator::test_principal("alice");
        let bob = Authenticator::test_principal("bob");
        let (id, _) = s.create(&alice, 0, Some(HeaderValue::from_static("up-1")), t0);
        let h = id.to_header();
        assert_eq!(
            s.lookup(&h, &alice, 0, t0).unwrap().upstream_id.unwrap(),
            "up-1"
        );
        assert_eq!(
            s.lookup(&h, &bob, 0, t0).unwrap_err(),
            SessionError::OtherPrincipal
        );
        assert_eq!(
            s.lookup(&h, &alice, 1, t0).unwrap_err(),
            SessionError::OtherRoute
        );
        assert_eq!(
            s.remove(&h, &bob, 0, t0).unwrap_err(),
            SessionError::OtherPrincipal
        );
        s.remove(&h, &alice, 0, t0).unwrap();
        assert_eq!(
            s.lookup(&h, &alice, 0, t0).unwrap_err(),
            SessionError::Unknown
        );
        assert_eq!(
            s.lookup(&HeaderValue::from_static("nope"), &alice, 0, t0)
                .unwrap_err(),
            SessionError::Unknown
        );
    }

    #[test]
    fn idle_sessions_expire_and_are_reaped() {
        let s = store(10);
        let t0 = Instant::now();
        let p = Authenticator::test_principal("p");
        let (id, _) = s.create(&p, 0, None, t0);
        let (id2, _) = s.create(&p, 0, None, t0);
        assert!(s
            .lookup(&id.to_header(), &p, 0, t0 + Duration::from_secs(59))
            .is_ok());
        assert_eq!(
            s.lookup(&id2.to_header(), &p, 0, t0 + Duration::from_secs(61))
                .unwrap_err(),
            SessionError::Unknown
        );
        let ended = s.reap(t0 + Duration::from_secs(61));
        assert_eq!(ended.len(), 1, "only the untouched session is reaped");
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn cap_holds_under_endless_initialize() {
        let s = store(100);
        let t0 = Instant::now();
        let p = Authenticator::test_principal("p");
        let mut evicted = 0;
        let mut last = None;
        for i in 0..10_000u64 {
            let (id, ended) = s.create(&p, 0, None, t0 + Duration::from_millis(i));
            evicted += ended.len();
            last = Some(id);
        }
        assert!(s.len() <= 100);
        assert_eq!(evicted + s.len(), 10_000);
        // The newest session survives eviction.
        assert!(s
            .lookup(
                &last.unwrap().to_header(),
                &p,
                0,
                t0 + Duration::from_secs(10)
            )
            .is_ok());
    }
}
