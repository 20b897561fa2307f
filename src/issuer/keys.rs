//! The issuer's signing keys: Ed25519, each with a `kid`, kept in `<data_dir>/issuer-keys.json`
//! (mode 0600). `palisade keys rotate` adds a new key that signs from then on and retires the
//! old one, which keeps verifying until the tokens it signed have expired. The running gateway
//! reloads the file when it changes.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::{Deserialize, Serialize};

use crate::config::JwtKey;

/// One key as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    kid: String,
    created: u64,
    retired: Option<u64>,
    pkcs8_pem: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct File {
    keys: Vec<Stored>,
}

/// The keys, loaded.
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: Vec<Stored>,
}

/// Path of the keyring in a data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("issuer-keys.json")
}

fn new_key(now: u64) -> std::io::Result<Stored> {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(Default::default())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let kid = format!(
        "{now}-{}",
        &hex::encode(key.verifying_key().to_bytes())[..8]
    );
    Ok(Stored {
        kid,
        created: now,
        retired: None,
        pkcs8_pem: pem.to_string(),
    })
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}

impl Keyring {
    /// Loads the keyring, creating it with one key if it does not exist.
    pub fn load_or_create(data_dir: &Path, now: u64) -> std::io::Result<Keyring> {
        let p = path(data_dir);
        match std::fs::read_to_string(&p) {
            Ok(text) => Keyring::parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(data_dir)?;
                let ring = Keyring {
                    keys: vec![new_key(now)?],
                };
                ring.save(data_dir)?;
                Ok(ring)
            }
            Err(e) => Err(e),
        }
    }

    fn parse(text: &str) -> std::io::Result<Keyring> {
        let f: File = serde_json::from_str(text).map_err(std::io::Error::other)?;
        if !f.keys.iter().any(|k| k.retired.is_none()) {
            return Err(std::io::Error::other("keyring has no active key"));
        }
        for k in &f.keys {
            SigningKey::from_pkcs8_pem(&k.pkcs8_pem)
                .map_err(|e| std::io::Error::other(format!("key {}: {e}", k.kid)))?;
        }
        Ok(Keyring { keys: f.keys })
    }

    fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(&File {
            keys: self.keys.clone(),
        })
        .map_err(std::io::Error::other)?;
        write_private(&path(data_dir), &text)
    }

    /// Adds a new signing key and retires the current one; keys retired more than `keep_secs`
    /// ago (the longest token lifetime) are dropped. Returns the new kid.
    pub fn rotate(data_dir: &Path, now: u64, keep_secs: u64) -> std::io::Result<String> {
        let mut ring = Keyring::load_or_create(data_dir, now)?;
        for k in &mut ring.keys {
            k.retired.get_or_insert(now);
        }
        ring.keys
            .retain(|k| k.retired.is_none_or(|r| r + keep_secs >= now));
        let fresh = new_key(now)?;
        let kid = fresh.kid.clone();
        ring.keys.push(fresh);
        ring.save(data_dir)?;
        Ok(kid)
    }

    /// The active key: its kid and its signing key.
    pub fn signer(&self) -> Option<(String, EncodingKey)> {
        let k = self.keys.iter().rev().find(|k| k.retired.is_none())?;
        let der = SigningKey::from_pkcs8_pem(&k.pkcs8_pem)
            .ok()?
            .to_pkcs8_der()
            .ok()?;
        Some((k.kid.clone(), EncodingKey::from_ed_der(der.as_bytes())))
    }

    fn public(k: &Stored) -> Option<[u8; 32]> {
        SigningKey::from_pkcs8_pem(&k.pkcs8_pem)
            .ok()
            .map(|s| s.verifying_key().to_bytes())
    }

    /// Every key that may still verify a live token, pinned to EdDSA.
    pub fn verification_keys(&self) -> Vec<JwtKey> {
        self.keys
            .iter()
            .filter_map(|k| {
                let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Self::public(k)?);
                Some(JwtKey {
                    kid: Some(k.kid.clone()),
                    alg: Algorithm::EdDSA,
                    key: DecodingKey::from_ed_components(&x).ok()?,
                })
            })
            .collect()
    }

    /// The JWKS document (public keys only).
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<serde_json::Value> = self
            .keys
            .iter()
            .filter_map(|k| {
                let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Self::public(k)?);
                Some(serde_json::json!({
                    "kty": "OKP", "crv": "Ed25519", "x": x, "kid": k.kid, "alg": "EdDSA", "use": "sig"
                }))
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_signs_with_the_new_key_and_keeps_the_old_one_verifying() {
        let dir = std::env::temp_dir().join(format!("palisade-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ring = Keyring::load_or_create(&dir, 1000).unwrap();
        let (old, _) = ring.signer().unwrap();
        let new = Keyring::rotate(&dir, 2000, 1800).unwrap();
        let ring = Keyring::load_or_create(&dir, 2000).unwrap();
        assert_eq!(ring.signer().unwrap().0, new);
        let kids: Vec<_> = ring
            .verification_keys()
            .into_iter()
            .map(|k| k.kid.unwrap())
            .collect();
        assert_eq!(kids, vec![old.clone(), new.clone()]);
        // A second rotation long after: the first key is dropped.
        Keyring::rotate(&dir, 10_000, 1800).unwrap();
        let ring = Keyring::load_or_create(&dir, 10_000).unwrap();
        let kids: Vec<_> = ring
            .verification_keys()
            .into_iter()
            .map(|k| k.kid.unwrap())
            .collect();
        assert!(!kids.contains(&old) && kids.contains(&new) && kids.len() == 2);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(path(&dir)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let jwks = ring.jwks();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
        assert!(jwks.to_string().find("PRIVATE").is_none());
    }
}
