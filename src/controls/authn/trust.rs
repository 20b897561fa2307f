//! What the JWT verifier trusts besides its configuration, updated while the gateway runs: the
//! built-in issuer's verification keys (after `palisade keys rotate`) and the revoked token ids
//! (after `palisade token revoke`). Readers take a snapshot (`Arc`) under a short read lock.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::config::JwtKey;

/// A set of verification keys that can be replaced as a whole, with a generation that changes
/// on every replacement (so that what was verified with an older set can be verified again).
#[derive(Debug, Default)]
pub struct KeySet {
    keys: RwLock<Arc<Vec<JwtKey>>>,
    generation: AtomicU64,
}

impl KeySet {
    /// The current keys.
    pub fn get(&self) -> Arc<Vec<JwtKey>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the keys.
    pub fn replace(&self, keys: Vec<JwtKey>) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// How many times the keys were replaced.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// Revoked `jti` values.
#[derive(Debug, Default)]
pub struct Revoked(RwLock<Arc<HashSet<Box<str>>>>);

impl Revoked {
    /// Whether `jti` is revoked.
    pub fn contains(&self, jti: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(jti)
    }

    /// Replaces the set.
    pub fn replace(&self, set: HashSet<Box<str>>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
    }
}

/// The live trust the authenticator consults.
#[derive(Debug, Default, Clone)]
pub struct Trust {
    /// The built-in issuer's keys.
    pub issuer_keys: Arc<KeySet>,
    /// Revoked token ids.
    pub revoked: Arc<Revoked>,
}
