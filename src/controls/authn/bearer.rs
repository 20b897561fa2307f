//! Static API tokens: `Authorization: Bearer <token>`.
//!
//! Only SHA-256 hashes of the tokens are configured, so a leaked config file leaks no credential.
//! Tokens are 256-bit random values (`palisade token generate`), so a fast hash is enough; slow
//! password hashes are for low-entropy secrets. The presented token's hash is compared with
//! every configured hash in constant time, without stopping at a match, so timing tells nothing
//! about which (or whether a) token matched.

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{BearerToken, Grant};

/// Why a bearer credential was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BearerError {
    /// The `Authorization` header is not `Bearer <token>` (other scheme, bad spacing, empty).
    #[error("malformed Authorization header")]
    Malformed,
    /// More than one `Authorization` header.
    #[error("repeated Authorization header")]
    Repeated,
    /// The token is longer than any token the gateway issues or accepts.
    #[error("token too long")]
    TooLong,
    /// No configured token matches.
    #[error("unknown token")]
    Unknown,
}

/// Longest token looked at; JWTs are checked by their own module.
const MAX_TOKEN: usize = 8 * 1024;

/// The token of an `Authorization` header value, if it uses the Bearer scheme. The scheme name is
/// case-insensitive (RFC 7235); exactly one space separates it from the token, and the token is
/// the RFC 6750 `b64token` alphabet.
pub(super) fn token(value: &[u8]) -> Result<&[u8], BearerError> {
    if value.len() < 7 || !value[..7].eq_ignore_ascii_case(b"bearer ") {
        return Err(BearerError::Malformed);
    }
    let t = &value[7..];
    if t.len() > MAX_TOKEN {
        return Err(BearerError::TooLong);
    }
    let b64token = |b: &u8| b.is_ascii_alphanumeric() || b"-._~+/".contains(b);
    let body = t.iter().rposition(|b| *b != b'=').map_or(0, |i| i + 1);
    if body == 0 || !t[..body].iter().all(b64token) {
        return Err(BearerError::Malformed);
    }
    Ok(t)
}

/// The configured tokens.
#[derive(Debug, Clone, Default)]
pub(super) struct Tokens(Vec<BearerToken>);

impl Tokens {
    pub(super) fn new(tokens: &[BearerToken]) -> Self {
        Tokens(tokens.to_vec())
    }

    /// The grant of the token, comparing against every configured hash in constant time.
    pub(super) fn verify(&self, token: &[u8]) -> Result<&Grant, BearerError> {
        let presented: [u8; 32] = Sha256::digest(token).into();
        let mut found = None;
        for t in &self.0 {
            if bool::from(t.sha256.ct_eq(&presented)) {
                found = Some(&t.grant);
            }
        }
        found.ok_or(BearerError::Unknown)
    }
}

/// A new random token (`pal_` + 43 base64url characters: 256 bits) and its hex SHA-256.
pub fn generate() -> (String, String) {
    use base64::Engine as _;
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    let token = format!(
        "pal_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    );
    let hash = hex::encode(Sha256::digest(token.as_bytes()));
    (token, hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn tokens() -> (Tokens, String) {
        let (t, h) = generate();
        let grant = Grant {
            id: Arc::from("alice"),
            roles: Arc::from([Arc::from("trader")]),
            scopes: Arc::from([]),
            permissions: Arc::from([]),
        };
        let sha256 = <[u8; 32]>::try_from(hex::decode(h).unwrap()).unwrap();
        (Tokens::new(&[BearerToken { sha256, grant }]), t)
    }

    #[test]
    fn generated_token_verifies_to_its_principal() {
        let (ts, t) = tokens();
        assert!(t.starts_with("pal_") && t.len() == 47);
        assert_eq!(&*ts.verify(t.as_bytes()).unwrap().id, "alice");
        assert_eq!(ts.verify(b"pal_wrong"), Err(BearerError::Unknown));
    }

    #[test]
    fn header_syntax() {
        assert_eq!(token(b"Bearer abc.def-_~+/=="), Ok(&b"abc.def-_~+/=="[..]));
        assert_eq!(token(b"bEaReR abc"), Ok(&b"abc"[..]));
        for bad in [
            &b"Basic YWxhZGRpbjpvcGVuc2VzYW1l"[..],
            b"Bearer",
            b"Bearer ",
            b"Bearer  abc",
            b"Bearerabc",
            b"Bearer a b",
            b"Bearer ===",
            b"Token abc",
        ] {
            assert_eq!(
                token(bad),
                Err(BearerError::Malformed),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("Bearer {}", "a".repeat(MAX_TOKEN + 1));
        assert_eq!(token(long.as_bytes()), Err(BearerError::TooLong));
    }
}
