//! Where counters live.
//!
//! Behind a trait so a shared backend (Redis, for several replicas) can replace the in-memory
//! one. The one operation, [`LimitStore::take`], is atomic per key: read the state, run the
//! algorithm, write it back (in Redis, one script per key).

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::algo::{self, Spec, State, Take};

/// A counter's key: a keyed 64-bit hash (SipHash-1-3 with a per-process random key) of the
/// rule and what the rule counts by (see `RateLimiter::key`). Fixed size, so tracking a key
/// allocates nothing beyond its map slot. Nobody can aim two keys at one counter without the
/// process's key; an accidental collision (odds about n²/2⁶⁵: 3 in 10¹⁰ at 100 000 keys) would
/// make two clients share a counter, which errs towards refusing.
pub type Key = u64;

/// The store is tracking as many keys as it may: refuse rather than forget live counters
/// (forgetting would hand out fresh allowances).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate-limit store full")]
pub struct StoreFull;

/// Counters, atomic per key.
pub trait LimitStore: Send + Sync + Debug {
    /// Counts one request for `key` under `spec` at `now_ms`.
    fn take(&self, key: Key, spec: &Spec, now_ms: u64) -> Result<Take, StoreFull>;
    /// Takes back a request counted by `take` at the same `now_ms`.
    fn refund(&self, key: Key, spec: &Spec, now_ms: u64);
    /// Forgets keys with nothing left to remember at `now_ms`; returns how many are left.
    fn sweep(&self, now_ms: u64) -> usize;
}

/// The keys are already keyed hashes: hashing them again would only cost time.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else in rather than ignore it.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A key's state and when it can be forgotten.
#[derive(Debug, Clone, Copy)]
struct Entry {
    state: State,
    expires_ms: u64,
}

type Shard = Mutex<HashMap<Key, Entry, BuildHasherDefault<Prehashed>>>;

/// Shards: requests for different keys rarely wait for each other.
const SHARDS: usize = 64;

/// In-memory store: sharded, bounded, idle keys dropped by [`LimitStore::sweep`] and whenever a
/// full shard needs room.
#[derive(Debug)]
pub struct MemoryLimitStore {
    shards: Box<[Shard]>,
    per_shard: usize,
    live: AtomicUsize,
}

impl MemoryLimitStore {
    /// A store tracking at most about `max_keys` keys.
    pub fn new(max_keys: usize) -> Self {
        MemoryLimitStore {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            per_shard: max_keys.div_ceil(SHARDS).max(1),
            live: AtomicUsize::new(0),
        }
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Memory per tracked key, for the README: the entry plus the map's control byte, at the
/// map's maximum load factor (7/8).
pub const BYTES_PER_KEY: usize = (std::mem::size_of::<(Key, Entry)>() + 1) * 8 / 7;

impl LimitStore for MemoryLimitStore {
    fn take(&self, key: Key, spec: &Spec, now_ms: u64) -> Result<Take, StoreFull> {
        let shard = &self.shards[(key >> 58) as usize % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(&key) && map.len() >= self.per_shard {
            let before = map.len();
            map.retain(|_, e| e.expires_ms > now_ms);
            self.live.fetch_sub(before - map.len(), Ordering::Relaxed);
            if map.len() >= self.per_shard {
                return Err(StoreFull);
            }
        }
        let entry = map.entry(key).or_insert_with(|| {
            self.live.fetch_add(1, Ordering::Relaxed);
            Entry {
                state: spec.fresh(),
                expires_ms: 0,
            }
        });
        let t = algo::take(spec, &mut entry.state, now_ms);
        entry.expires_ms = entry.expires_ms.max(t.reset_ms);
        Ok(t)
    }

    fn refund(&self, key: Key, spec: &Spec, now_ms: u64) {
        let shard = &self.shards[(key >> 58) as usize % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get_mut(&key) {
            algo::refund(spec, &mut e.state, now_ms);
        }
    }

    fn sweep(&self, now_ms: u64) -> usize {
        for shard in self.shards.iter() {
            let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
            let before = map.len();
            map.retain(|_, e| e.expires_ms > now_ms);
            self.live.fetch_sub(before - map.len(), Ordering::Relaxed);
        }
        self.len()
    }
}
