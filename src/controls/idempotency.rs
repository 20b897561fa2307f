//! `Idempotency-Key`: a repeated request gets the first answer, and is not executed twice.
//!
//! Threat: an agent that retries `place_order` after a timeout places two orders. With an
//! `Idempotency-Key`, the first request with a key runs; a repeat with the same key and the same
//! request (method, path, body) gets the stored response and the upstream is not called again; a
//! repeat with the same key and a *different* request is refused (MCP-005), as is a repeat that
//! arrives while the first is still running. Keys are scoped to the principal and the route, so
//! one client cannot read another's stored answers by guessing its keys.
//!
//! Only complete answers are stored (including JSON-RPC errors from the upstream: they are the
//! answer). When the upstream could not be reached or the gateway refused the answer, the key is
//! released so the client can retry. Behind a trait so a shared (Redis) store can replace the
//! in-memory one; the operations are atomic per key.

use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use sha2::{Digest, Sha256};

use crate::config::IdempotencyConfig;

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Why a keyed request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdempotencyError {
    /// The key was used for a different request.
    #[error("idempotency key reused for a different request")]
    Conflict,
    /// The first request with this key is still running.
    #[error("a request with this idempotency key is in progress")]
    InFlight,
    /// The header is repeated, empty, not visible ASCII or longer than 256 bytes.
    #[error("malformed Idempotency-Key")]
    Malformed,
}

/// A stored answer.
#[derive(Debug, Clone)]
pub struct Stored {
    /// HTTP status.
    pub status: StatusCode,
    /// Response headers worth replaying (content type, session id).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body, exactly as first sent.
    pub body: Bytes,
}

/// What `begin` found.
#[derive(Debug)]
pub enum Begin {
    /// First use: run the request, then `complete` (or `release`) the key.
    Fresh,
    /// Seen before with the same request: answer with this.
    Replay(Stored),
}

/// Stored answers by (scope, key).
pub trait IdempotencyStore: Send + Sync + Debug {
    /// Claims `key` for a request with `fingerprint`, or returns the stored answer.
    fn begin(
        &self,
        scope: &str,
        key: &str,
        fingerprint: [u8; 32],
        now: u64,
    ) -> Result<Begin, IdempotencyError>;
    /// Stores the answer for a claimed key.
    fn complete(&self, scope: &str, key: &str, answer: Stored, now: u64);
    /// Releases a claimed key without an answer (the request failed before one existed).
    fn release(&self, scope: &str, key: &str);
}

#[derive(Debug)]
enum State {
    Running,
    Done(Stored),
}

#[derive(Debug)]
struct Entry {
    fingerprint: [u8; 32],
    state: State,
    expires: u64,
    /// Insertion number; the age queue may hold stale numbers for re-inserted keys.
    seq: u64,
}

type Key = (Box<str>, Box<str>);

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<Key, Entry>,
    /// Keys in insertion order with their insertion number.
    order: VecDeque<(Key, u64)>,
    next: u64,
}

/// In-memory store, bounded: at capacity the oldest entries are dropped (a dropped entry only
/// means a very old key can be used again; it never lets a different request through under a
/// live key).
#[derive(Debug)]
pub struct MemoryIdempotencyStore {
    inner: Mutex<Inner>,
    ttl: u64,
    capacity: usize,
}

impl MemoryIdempotencyStore {
    /// A store keeping answers `ttl_secs` seconds, at most `capacity` of them.
    pub fn new(ttl_secs: u64, capacity: usize) -> Self {
        MemoryIdempotencyStore {
            inner: Mutex::new(Inner::default()),
            ttl: ttl_secs,
            capacity,
        }
    }
}

impl IdempotencyStore for MemoryIdempotencyStore {
    fn begin(
        &self,
        scope: &str,
        key: &str,
        fingerprint: [u8; 32],
        now: u64,
    ) -> Result<Begin, IdempotencyError> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let Inner { map, order, next } = &mut *g;
        let k: Key = (Box::from(scope), Box::from(key));
        if let Some(e) = map.get(&k) {
            if e.expires > now {
                if e.fingerprint != fingerprint {
                    return Err(IdempotencyError::Conflict);
                }
                return match &e.state {
                    State::Running => Err(IdempotencyError::InFlight),
                    State::Done(s) => Ok(Begin::Replay(s.clone())),
                };
            }
            map.remove(&k);
        }
        while map.len() >= self.capacity {
            let Some((old, seq)) = order.pop_front() else {
                break;
            };
            if map.get(&old).is_some_and(|e| e.seq == seq) {
                map.remove(&old);
            }
        }
        *next += 1;
        order.push_back((k.clone(), *next));
        map.insert(
            k,
            Entry {
                fingerprint,
                state: State::Running,
                expires: now + self.ttl,
                seq: *next,
            },
        );
        Ok(Begin::Fresh)
    }

    fn complete(&self, scope: &str, key: &str, answer: Stored, now: u64) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = g.map.get_mut(&(Box::from(scope), Box::from(key))) {
            e.state = State::Done(answer);
            e.expires = now + self.ttl;
        }
    }

    fn release(&self, scope: &str, key: &str) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let k: Key = (Box::from(scope), Box::from(key));
        if matches!(
            g.map.get(&k),
            Some(Entry {
                state: State::Running,
                ..
            })
        ) {
            g.map.remove(&k);
        }
    }
}

/// The control: reads the header and keys the store.
#[derive(Debug)]
pub struct Idempotency {
    store: Arc<dyn IdempotencyStore>,
    max_response_bytes: usize,
}

/// A claimed key. Dropping it without [`Claim::complete`] releases the key, so every early
/// return of the pipeline (upstream down, answer refused) lets the client retry.
#[derive(Debug)]
pub struct Claim {
    store: Arc<dyn IdempotencyStore>,
    scope: String,
    key: String,
    max_response_bytes: usize,
    done: bool,
}

impl Idempotency {
    /// Builds the control with the in-memory store.
    pub fn new(cfg: &IdempotencyConfig) -> Self {
        Idempotency {
            store: Arc::new(MemoryIdempotencyStore::new(cfg.ttl.as_secs(), cfg.capacity)),
            max_response_bytes: cfg.max_response_bytes,
        }
    }

    /// For a request carrying `Idempotency-Key`: claims the key or returns the stored answer.
    /// `None` when the request has no key. `scope` identifies the principal and route.
    pub fn begin(
        &self,
        headers: &HeaderMap,
        scope: &str,
        method: &str,
        path: &str,
        body: &[u8],
        now: u64,
    ) -> Result<Option<Result<Claim, Stored>>, IdempotencyError> {
        let mut all = headers.get_all(IDEMPOTENCY_KEY).iter();
        let key = match (all.next(), all.next()) {
            (None, _) => return Ok(None),
            (Some(v), None) => v.as_bytes(),
            (Some(_), Some(_)) => return Err(IdempotencyError::Malformed),
        };
        if key.is_empty() || key.len() > 256 || !key.iter().all(|c| (0x21..=0x7e).contains(c)) {
            return Err(IdempotencyError::Malformed);
        }
        let key = String::from_utf8_lossy(key).into_owned();
        let mut h = Sha256::new();
        for part in [method.as_bytes(), b"\n", path.as_bytes(), b"\n", body] {
            h.update(part);
        }
        match self.store.begin(scope, &key, h.finalize().into(), now)? {
            Begin::Replay(s) => Ok(Some(Err(s))),
            Begin::Fresh => Ok(Some(Ok(Claim {
                store: self.store.clone(),
                scope: scope.to_owned(),
                key,
                max_response_bytes: self.max_response_bytes,
                done: false,
            }))),
        }
    }
}

impl Claim {
    /// Largest answer worth storing.
    pub fn max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }

    /// Stores the answer.
    pub fn complete(mut self, answer: Stored, now: u64) {
        self.store.complete(&self.scope, &self.key, answer, now);
        self.done = true;
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.done {
            self.store.release(&self.scope, &self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn control(ttl: u64, capacity: usize) -> Idempotency {
        Idempotency::new(&IdempotencyConfig {
            ttl: Duration::from_secs(ttl),
            capacity,
            max_response_bytes: 1 << 20,
        })
    }

    fn keyed(k: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(IDEMPOTENCY_KEY, HeaderValue::from_str(k).unwrap());
        h
    }

    fn answer(b: &'static str) -> Stored {
        Stored {
            status: StatusCode::OK,
            headers: vec![],
            body: Bytes::from_static(b.as_bytes()),
        }
    }

    #[test]
    fn same_key_same_request_replays_the_stored_answer() {
        let c = control(60, 10);
        let h = keyed("k1");
        let claim = c
            .begin(&h, "alice", "POST", "/mcp/a", b"{1}", 0)
            .unwrap()
            .unwrap()
            .unwrap();
        claim.complete(answer("first"), 1);
        let again = c
            .begin(&h, "alice", "POST", "/mcp/a", b"{1}", 2)
            .unwrap()
            .unwrap();
        assert_eq!(again.unwrap_err().body, "first");
    }

    #[test]
    fn same_key_other_request_is_a_conflict() {
        let c = control(60, 10);
        let h = keyed("k1");
        c.begin(&h, "alice", "POST", "/mcp/a", b"{1}", 0)
            .unwrap()
            .unwrap()
            .unwrap()
            .complete(answer("x"), 0);
        for (path, body) in [("/mcp/a", &b"{2}"[..]), ("/mcp/b", b"{1}")] {
            assert_eq!(
                c.begin(&h, "alice", "POST", path, body, 1).unwrap_err(),
                IdempotencyError::Conflict
            );
        }
        // Another principal's identical key is its own.
        assert!(c
            .begin(&h, "bob", "POST", "/mcp/a", b"{2}", 1)
            .unwrap()
            .unwrap()
            .is_ok());
    }

    #[test]
    fn in_flight_repeat_is_refused_and_a_failed_first_attempt_releases_the_key() {
        let c = control(60, 10);
        let h = keyed("k1");
        let claim = c
            .begin(&h, "alice", "POST", "/p", b"b", 0)
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            c.begin(&h, "alice", "POST", "/p", b"b", 0).unwrap_err(),
            IdempotencyError::InFlight
        );
        drop(claim); // upstream unreachable: no answer stored
        assert!(c
            .begin(&h, "alice", "POST", "/p", b"b", 0)
            .unwrap()
            .unwrap()
            .is_ok());
    }

    #[test]
    fn answers_expire() {
        let c = control(60, 10);
        let h = keyed("k1");
        c.begin(&h, "a", "POST", "/p", b"b", 0)
            .unwrap()
            .unwrap()
            .unwrap()
            .complete(answer("x"), 0);
        assert!(c
            .begin(&h, "a", "POST", "/p", b"b", 59)
            .unwrap()
            .unwrap()
            .is_err());
        assert!(c
            .begin(&h, "a", "POST", "/p", b"other", 61)
            .unwrap()
            .unwrap()
            .is_ok());
    }

    #[test]
    fn no_key_no_control_and_malformed_keys_refused() {
        let c = control(60, 10);
        assert!(c
            .begin(&HeaderMap::new(), "a", "POST", "/p", b"", 0)
            .unwrap()
            .is_none());
        let mut h = keyed("k");
        h.append(IDEMPOTENCY_KEY, HeaderValue::from_static("k2"));
        assert_eq!(
            c.begin(&h, "a", "POST", "/p", b"", 0).unwrap_err(),
            IdempotencyError::Malformed
        );
        let long = keyed(&"k".repeat(257));
        assert_eq!(
            c.begin(&long, "a", "POST", "/p", b"", 0).unwrap_err(),
            IdempotencyError::Malformed
        );
    }

    #[test]
    fn capacity_drops_the_oldest() {
        let c = control(60, 2);
        for k in ["a", "b", "c"] {
            c.begin(&keyed(k), "s", "POST", "/p", k.as_bytes(), 0)
                .unwrap()
                .unwrap()
                .unwrap()
                .complete(answer("x"), 0);
        }
        // "a" was dropped: it runs again; "c" is still stored.
        assert!(c
            .begin(&keyed("a"), "s", "POST", "/p", b"a", 1)
            .unwrap()
            .unwrap()
            .is_ok());
        assert!(c
            .begin(&keyed("c"), "s", "POST", "/p", b"c", 1)
            .unwrap()
            .unwrap()
            .is_err());
    }
}
