//! Remembering nonces and signatures for the HMAC replay window.
//!
//! Behind a trait so a shared backend (Redis, for several replicas) can replace the in-memory one
//! without touching the HMAC control. The operation is one atomic "insert if absent" per key,
//! which maps onto Redis `SET key 1 NX EXAT until`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt::Debug;
use std::hash::BuildHasher;
use std::sync::Mutex;

/// The store is full for this scope: refuse rather than forget unexpired entries (forgetting
/// would let those requests be replayed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("replay store full")]
pub struct StoreFull;

/// Remembers keys until a deadline.
pub trait ReplayStore: Send + Sync + Debug {
    /// Remembers `key` in `scope` until `until` (Unix seconds). Returns `Ok(false)` if it was
    /// already remembered and has not expired at `now`. Atomic per (scope, key).
    fn remember(&self, scope: &str, key: &[u8], until: u64, now: u64) -> Result<bool, StoreFull>;
}

/// A remembered key, as a 128-bit keyed hash of its bytes: fixed size, so remembering allocates
/// nothing per key, and keyed with a per-process secret, so nobody can choose two keys that
/// collide. (A collision, at odds of about n²/2¹²⁹, could only refuse a fresh request as a
/// replay: it fails closed.)
type Fingerprint = u128;

#[derive(Debug, Default)]
struct Scope {
    until: HashMap<Fingerprint, u64>,
    expiry: BinaryHeap<Reverse<(u64, Fingerprint)>>,
}

impl Scope {
    fn purge(&mut self, now: u64) {
        while let Some(Reverse((t, _))) = self.expiry.peek() {
            if *t >= now {
                break;
            }
            let Some(Reverse((t, k))) = self.expiry.pop() else {
                break;
            };
            if self.until.get(&k) == Some(&t) {
                self.until.remove(&k);
            }
        }
    }
}

type Shard = Mutex<HashMap<Box<str>, Scope>>;

/// In-memory store: sharded by scope, bounded per scope, expired entries dropped as new ones
/// arrive.
#[derive(Debug)]
pub struct MemoryReplayStore {
    shards: Box<[Shard]>,
    per_scope: usize,
    hasher: std::collections::hash_map::RandomState,
    /// Two independently keyed SipHash instances make the 128-bit fingerprint.
    fingerprint: [std::collections::hash_map::RandomState; 2],
}

impl MemoryReplayStore {
    /// A store keeping at most `per_scope` live entries per scope (client).
    pub fn new(per_scope: usize) -> Self {
        MemoryReplayStore {
            shards: (0..16).map(|_| Mutex::new(HashMap::new())).collect(),
            per_scope,
            hasher: Default::default(),
            fingerprint: Default::default(),
        }
    }
}

impl ReplayStore for MemoryReplayStore {
    fn remember(&self, scope: &str, key: &[u8], until: u64, now: u64) -> Result<bool, StoreFull> {
        let [a, b] = &self.fingerprint;
        let key = (u128::from(a.hash_one(key)) << 64) | u128::from(b.hash_one(key));
        let shard = &self.shards[self.hasher.hash_one(scope) as usize % self.shards.len()];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        // Look up before inserting: the scope's name is allocated once, not per request.
        let s = match map.get_mut(scope) {
            Some(s) => s,
            None => map.entry(Box::from(scope)).or_default(),
        };
        s.purge(now);
        if s.until.get(&key).is_some_and(|t| *t >= now) {
            return Ok(false);
        }
        if s.until.len() >= self.per_scope {
            return Err(StoreFull);
        }
        s.until.insert(key, until);
        s.expiry.push(Reverse((until, key)));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_accepted_once_until_it_expires() {
        let s = MemoryReplayStore::new(10);
        assert_eq!(s.remember("a", b"n1", 100, 50), Ok(true));
        assert_eq!(s.remember("a", b"n1", 100, 99), Ok(false));
        assert_eq!(s.remember("a", b"n1", 100, 100), Ok(false));
        // Another client may use the same nonce.
        assert_eq!(s.remember("b", b"n1", 100, 60), Ok(true));
        // After expiry it is forgotten.
        assert_eq!(s.remember("a", b"n1", 200, 101), Ok(true));
    }

    #[test]
    fn full_scope_refuses_instead_of_forgetting() {
        let s = MemoryReplayStore::new(2);
        assert_eq!(s.remember("a", b"1", 100, 0), Ok(true));
        assert_eq!(s.remember("a", b"2", 100, 0), Ok(true));
        assert_eq!(s.remember("a", b"3", 100, 0), Err(StoreFull));
        // A replay is still recognised as one when full.
        assert_eq!(s.remember("a", b"1", 100, 0), Ok(false));
        // Other scopes are unaffected, and expiry frees room.
        assert_eq!(s.remember("b", b"1", 100, 0), Ok(true));
        assert_eq!(s.remember("a", b"3", 300, 101), Ok(true));
    }
}
