//! HMAC request signing (seed 001's headers, with anti-replay).
//!
//! Headers: `X-Signature` (hex HMAC-SHA256), `X-Timestamp` (Unix seconds), `X-Nonce`,
//! `X-API-Version`, `Idempotency-Key` (required on POST by default), optional `X-Key-Id`
//! selecting the client's secret. Two signed forms, chosen per client:
//!
//! - `v1`, the seed's, so its client snippet works unchanged: `METHOD|path|timestamp|body`.
//!   It does not cover the nonce, the idempotency key or the query, so a captured request could
//!   be re-sent with a fresh nonce; the gateway therefore also refuses any signature it has
//!   already accepted within the window.
//! - `v2`, recommended: the lines
//!   `PALISADE-HMAC-SHA256`, `v2`, METHOD, path, query, timestamp, nonce, idempotency key,
//!   API version, key id, hex SHA-256 of the body — joined by `\n` (absent values are empty).
//!   Header values cannot contain a newline, so the form is unambiguous.
//!
//! Order matters: cheap header checks and the timestamp window first (before the body is read),
//! then the signature, and only a verified request consumes its nonce, so a flood of forged
//! requests cannot burn a real client's nonces. Nonces and signatures are remembered only until
//! the timestamp leaves the window: after that the timestamp check refuses the request anyway.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName};
use sha2::{Digest, Sha256};

use super::replay::ReplayStore;
use crate::config::{Canonical, HmacClient, HmacConfig};

type HmacSha256 = Hmac<Sha256>;

const X_SIGNATURE: HeaderName = HeaderName::from_static("x-signature");
const X_TIMESTAMP: HeaderName = HeaderName::from_static("x-timestamp");
const X_NONCE: HeaderName = HeaderName::from_static("x-nonce");
const X_API_VERSION: HeaderName = HeaderName::from_static("x-api-version");
const X_KEY_ID: HeaderName = HeaderName::from_static("x-key-id");
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Why a signed request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HmacError {
    /// A required header is absent.
    #[error("{0} header missing")]
    MissingHeader(&'static str),
    /// A header appears twice, or is not visible ASCII, or is too long.
    #[error("{0} header malformed")]
    MalformedHeader(&'static str),
    /// `X-Timestamp` is not a plain number of seconds.
    #[error("timestamp not numeric")]
    BadTimestamp,
    /// The timestamp is older than the window.
    #[error("timestamp too old")]
    Stale,
    /// The timestamp is ahead of the gateway's clock by more than the window.
    #[error("timestamp in the future")]
    Future,
    /// `X-API-Version` is not in the accepted list.
    #[error("unsupported API version")]
    UnsupportedVersion,
    /// No client has this `X-Key-Id`.
    #[error("unknown key id")]
    UnknownKey,
    /// The signature does not verify.
    #[error("signature mismatch")]
    BadSignature,
    /// The nonce was already used within the window.
    #[error("nonce replayed")]
    ReplayedNonce,
    /// The same signature was already accepted within the window (a v1 capture re-sent with a
    /// fresh nonce).
    #[error("signature replayed")]
    ReplayedSignature,
    /// The client has more live nonces than the store keeps.
    #[error("replay store full for this client")]
    StoreFull,
}

/// The HMAC verifier.
#[derive(Debug)]
pub(super) struct Verifier {
    cfg: HmacConfig,
    store: Arc<dyn ReplayStore>,
}

/// A signed request whose headers passed; the signature is checked with the body.
#[derive(Debug)]
pub(super) struct Claimed<'a> {
    verifier: &'a Verifier,
    client: &'a HmacClient,
    signature: [u8; 32],
    timestamp: u64,
    ts_text: &'a str,
    nonce: &'a str,
    idempotency_key: &'a str,
    api_version: &'a str,
    key_id: &'a str,
}

/// The one value of a header, as visible ASCII of at most 256 bytes.
fn one<'h>(
    h: &'h HeaderMap,
    name: &HeaderName,
    label: &'static str,
) -> Result<Option<&'h str>, HmacError> {
    let mut all = h.get_all(name).iter();
    match (all.next(), all.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => {
            let b = v.as_bytes();
            if b.is_empty() || b.len() > 256 || !b.iter().all(|c| (0x21..=0x7e).contains(c)) {
                return Err(HmacError::MalformedHeader(label));
            }
            Ok(Some(
                v.to_str().map_err(|_| HmacError::MalformedHeader(label))?,
            ))
        }
        (Some(_), Some(_)) => Err(HmacError::MalformedHeader(label)),
    }
}

fn required<'h>(
    h: &'h HeaderMap,
    name: &HeaderName,
    label: &'static str,
) -> Result<&'h str, HmacError> {
    one(h, name, label)?.ok_or(HmacError::MissingHeader(label))
}

/// Whether the request carries a signature at all (selects this method).
pub(super) fn present(h: &HeaderMap) -> bool {
    h.contains_key(X_SIGNATURE)
}

impl Verifier {
    pub(super) fn new(cfg: HmacConfig, store: Arc<dyn ReplayStore>) -> Self {
        Verifier { cfg, store }
    }

    /// Header stage: everything that can be checked without the body. `now` is Unix seconds.
    pub(super) fn claim<'a>(
        &'a self,
        headers: &'a HeaderMap,
        post: bool,
        now: u64,
    ) -> Result<Claimed<'a>, HmacError> {
        let sig_hex = required(headers, &X_SIGNATURE, "X-Signature")?;
        let ts_text = required(headers, &X_TIMESTAMP, "X-Timestamp")?;
        let nonce = required(headers, &X_NONCE, "X-Nonce")?;
        let api_version = required(headers, &X_API_VERSION, "X-API-Version")?;
        let idempotency_key = match one(headers, &IDEMPOTENCY_KEY, "Idempotency-Key")? {
            Some(k) => k,
            None if post && self.cfg.require_idempotency_key => {
                return Err(HmacError::MissingHeader("Idempotency-Key"))
            }
            None => "",
        };
        let key_id = one(headers, &X_KEY_ID, "X-Key-Id")?;
        if ts_text.len() > 12 || !ts_text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HmacError::BadTimestamp);
        }
        let timestamp: u64 = ts_text.parse().map_err(|_| HmacError::BadTimestamp)?;
        let skew = self.cfg.max_skew.as_secs();
        if timestamp + skew < now {
            return Err(HmacError::Stale);
        }
        if timestamp > now + skew {
            return Err(HmacError::Future);
        }
        if !self.cfg.api_versions.iter().any(|v| v == api_version) {
            return Err(HmacError::UnsupportedVersion);
        }
        let client = match key_id {
            Some(k) => self
                .cfg
                .clients
                .iter()
                .find(|c| c.key_id.as_deref() == Some(k))
                .ok_or(HmacError::UnknownKey)?,
            None if self.cfg.clients.len() == 1 => &self.cfg.clients[0],
            None => return Err(HmacError::MissingHeader("X-Key-Id")),
        };
        let mut signature = [0u8; 32];
        hex::decode_to_slice(sig_hex, &mut signature)
            .map_err(|_| HmacError::MalformedHeader("X-Signature"))?;
        Ok(Claimed {
            verifier: self,
            client,
            signature,
            timestamp,
            ts_text,
            nonce,
            idempotency_key,
            api_version,
            key_id: key_id.unwrap_or(""),
        })
    }
}

impl<'a> Claimed<'a> {
    /// The client's configuration.
    pub(super) fn client(&self) -> &'a HmacClient {
        self.client
    }

    /// Body stage: verifies the signature, then consumes the nonce and the signature.
    pub(super) fn verify(
        self,
        method: &str,
        path: &str,
        query: &str,
        body: &[u8],
        now: u64,
    ) -> Result<(), HmacError> {
        let mut mac = HmacSha256::new_from_slice(self.client.secret.expose())
            .map_err(|_| HmacError::BadSignature)?;
        match self.client.canonical {
            Canonical::V1 => {
                for part in [method.as_bytes(), path.as_bytes(), self.ts_text.as_bytes()] {
                    mac.update(part);
                    mac.update(b"|");
                }
                mac.update(body);
            }
            Canonical::V2 => {
                let body_hash = hex::encode(Sha256::digest(body));
                let lines = [
                    "PALISADE-HMAC-SHA256",
                    "v2",
                    method,
                    path,
                    query,
                    self.ts_text,
                    self.nonce,
                    self.idempotency_key,
                    self.api_version,
                    self.key_id,
                ];
                for l in lines {
                    mac.update(l.as_bytes());
                    mac.update(b"\n");
                }
                mac.update(body_hash.as_bytes());
            }
        }
        // Constant-time comparison.
        mac.verify_slice(&self.signature)
            .map_err(|_| HmacError::BadSignature)?;
        let scope = &*self.client.grant.id;
        let until = self.timestamp + self.verifier.cfg.max_skew.as_secs();
        let store = &self.verifier.store;
        let mut key = Vec::with_capacity(2 + self.nonce.len());
        key.extend_from_slice(b"n:");
        key.extend_from_slice(self.nonce.as_bytes());
        if !store
            .remember(scope, &key, until, now)
            .map_err(|_| HmacError::StoreFull)?
        {
            return Err(HmacError::ReplayedNonce);
        }
        let mut key = [0u8; 34];
        key[..2].copy_from_slice(b"s:");
        key[2..].copy_from_slice(&self.signature);
        if !store
            .remember(scope, &key, until, now)
            .map_err(|_| HmacError::StoreFull)?
        {
            return Err(HmacError::ReplayedSignature);
        }
        Ok(())
    }
}

/// Signs a request as a client would (used by tests and documented as the reference).
pub fn sign(secret: &[u8], canonical: Canonical, fields: &SignFields<'_>, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("any key length");
    match canonical {
        Canonical::V1 => {
            mac.update(
                format!("{}|{}|{}|", fields.method, fields.path, fields.timestamp).as_bytes(),
            );
            mac.update(body);
        }
        Canonical::V2 => {
            let s = format!(
                "PALISADE-HMAC-SHA256\nv2\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
                fields.method,
                fields.path,
                fields.query,
                fields.timestamp,
                fields.nonce,
                fields.idempotency_key,
                fields.api_version,
                fields.key_id,
                hex::encode(Sha256::digest(body))
            );
            mac.update(s.as_bytes());
        }
    }
    hex::encode(mac.finalize().into_bytes())
}

/// What a client signs besides the body.
#[derive(Debug, Clone, Copy, Default)]
pub struct SignFields<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Request path.
    pub path: &'a str,
    /// Query string without `?` (v2 only).
    pub query: &'a str,
    /// `X-Timestamp`.
    pub timestamp: &'a str,
    /// `X-Nonce` (v2 only).
    pub nonce: &'a str,
    /// `Idempotency-Key` (v2 only).
    pub idempotency_key: &'a str,
    /// `X-API-Version` (v2 only).
    pub api_version: &'a str,
    /// `X-Key-Id` (v2 only).
    pub key_id: &'a str,
}

#[cfg(test)]
mod tests;
