//! The issuer's signing keys: Ed25519 (EdDSA, default) or RSA 2048 (RS256), each with a `kid`, kept in `<data_dir>/issuer-keys.json`
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
    /// `EdDSA` or `RS256` (absent in files written before RS256 existed: EdDSA).
    #[serde(default = "eddsa")]
    alg: String,
    pkcs8_pem: String,
}

fn eddsa() -> String {
    "EdDSA".into()
}

/// The signing algorithm for new keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    /// Ed25519.
    EdDSA,
    /// RSA 2048 with SHA-256.
    RS256,
}

impl KeyAlg {
    fn name(self) -> &'static str {
        match self {
            KeyAlg::EdDSA => "EdDSA",
            KeyAlg::RS256 => "RS256",
        }
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
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

fn new_key(now: u64, alg: KeyAlg) -> std::io::Result<Stored> {
    let mut tag = [0u8; 4];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut tag);
    let kid = format!("{now}-{}", hex::encode(tag));
    let pkcs8_pem = match alg {
        KeyAlg::EdDSA => SigningKey::generate(&mut rand::rngs::OsRng)
            .to_pkcs8_pem(Default::default())
            .map_err(|e| std::io::Error::other(e.to_string()))?
            .to_string(),
        KeyAlg::RS256 => {
            use aws_lc_rs::encoding::AsDer;
            let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| std::io::Error::other("RSA key generation failed"))?;
            let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> = key
                .as_der()
                .map_err(|_| std::io::Error::other("RSA key encoding failed"))?;
            pem("PRIVATE KEY", der.as_ref())
        }
    };
    Ok(Stored {
        kid,
        created: now,
        retired: None,
        alg: alg.name().into(),
        pkcs8_pem,
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
    pub fn load_or_create(data_dir: &Path, now: u64, alg: KeyAlg) -> std::io::Result<Keyring> {
        let p = path(data_dir);
        match std::fs::read_to_string(&p) {
            Ok(text) => Keyring::parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(data_dir)?;
                let ring = Keyring {
                    keys: vec![new_key(now, alg)?],
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
            if encoding_key(k).is_none() {
                return Err(std::io::Error::other(format!(
                    "key {} does not parse",
                    k.kid
                )));
            }
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
    pub fn rotate(
        data_dir: &Path,
        now: u64,
        keep_secs: u64,
        alg: KeyAlg,
    ) -> std::io::Result<String> {
        let mut ring = Keyring::load_or_create(data_dir, now, alg)?;
        for k in &mut ring.keys {
            k.retired.get_or_insert(now);
        }
        ring.keys
            .retain(|k| k.retired.is_none_or(|r| r + keep_secs >= now));
        let fresh = new_key(now, alg)?;
        let kid = fresh.kid.clone();
        ring.keys.push(fresh);
        ring.save(data_dir)?;
        Ok(kid)
    }

    /// The active key: its kid, algorithm and signing key.
    pub fn signer(&self) -> Option<(String, Algorithm, EncodingKey)> {
        let k = self.keys.iter().rev().find(|k| k.retired.is_none())?;
        let (alg, key) = encoding_key(k)?;
        Some((k.kid.clone(), alg, key))
    }

    fn jwk(k: &Stored) -> Option<jsonwebtoken::jwk::Jwk> {
        let (alg, key) = encoding_key(k)?;
        let mut jwk = match alg {
            Algorithm::EdDSA => {
                let public = SigningKey::from_pkcs8_pem(&k.pkcs8_pem)
                    .ok()?
                    .verifying_key();
                let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public.to_bytes());
                serde_json::from_value(serde_json::json!({
                    "kty": "OKP", "crv": "Ed25519", "x": x, "alg": "EdDSA"
                }))
                .ok()?
            }
            _ => jsonwebtoken::jwk::Jwk::from_encoding_key(&key, alg).ok()?,
        };
        jwk.common.key_id = Some(k.kid.clone());
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        Some(jwk)
    }

    /// Every key that may still verify a live token, pinned to its algorithm.
    pub fn verification_keys(&self) -> Vec<JwtKey> {
        self.keys
            .iter()
            .filter_map(|k| {
                let (alg, _) = encoding_key(k)?;
                Some(JwtKey {
                    kid: Some(k.kid.clone()),
                    alg,
                    key: DecodingKey::from_jwk(&Self::jwk(k)?).ok()?,
                })
            })
            .collect()
    }

    /// The JWKS document (public keys only).
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<jsonwebtoken::jwk::Jwk> = self.keys.iter().filter_map(Self::jwk).collect();
        serde_json::json!({ "keys": keys })
    }
}

/// The signing key of a stored entry.
fn encoding_key(k: &Stored) -> Option<(Algorithm, EncodingKey)> {
    match k.alg.as_str() {
        "EdDSA" => {
            let der = SigningKey::from_pkcs8_pem(&k.pkcs8_pem)
                .ok()?
                .to_pkcs8_der()
                .ok()?;
            Some((Algorithm::EdDSA, EncodingKey::from_ed_der(der.as_bytes())))
        }
        "RS256" => Some((
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(k.pkcs8_pem.as_bytes()).ok()?,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_signs_with_the_new_key_and_keeps_the_old_one_verifying() {
        let dir = std::env::temp_dir().join(format!("palisade-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ring = Keyring::load_or_create(&dir, 1000, KeyAlg::EdDSA).unwrap();
        let (old, _, _) = ring.signer().unwrap();
        let new = Keyring::rotate(&dir, 2000, 1800, KeyAlg::RS256).unwrap();
        let ring = Keyring::load_or_create(&dir, 2000, KeyAlg::EdDSA).unwrap();
        let (kid, alg, _) = ring.signer().unwrap();
        assert_eq!((kid, alg), (new.clone(), Algorithm::RS256));
        let kids: Vec<_> = ring
            .verification_keys()
            .into_iter()
            .map(|k| k.kid.unwrap())
            .collect();
        assert_eq!(kids, vec![old.clone(), new.clone()]);
        // A second rotation long after: the first key is dropped.
        Keyring::rotate(&dir, 10_000, 1800, KeyAlg::EdDSA).unwrap();
        let ring = Keyring::load_or_create(&dir, 10_000, KeyAlg::EdDSA).unwrap();
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
        assert!(
            jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .all(|k| k.get("d").is_none()),
            "no private parts"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
