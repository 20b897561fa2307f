//! JSON Web Tokens: `Authorization: Bearer <jwt>`, verified with `jsonwebtoken` (aws-lc-rs).
//!
//! Every key is pinned to one algorithm, and the token's `alg` must be exactly that: no `none`
//! (in any spelling), no HS256 token verified with an RSA public key used as an HMAC secret.
//! Keys come only from configuration or the configured JWKS URL; a token's own `jku`, `x5u`,
//! `x5c` or embedded `jwk` is refused, never followed. `kid` is only ever a map key. Time claims
//! are checked here against an injected clock (`exp` required, `nbf` honoured, both with the
//! configured leeway); `iss` and `aud` must be among the configured values. A verified token is
//! remembered until it expires, keyed by its SHA-256 (never the token itself), so a repeat costs a
//! hash and a map lookup instead of a signature check.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use http_body_util::{BodyExt, Full, Limited};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::{Grant, JwtConfig, JwtKey};

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// Longer than `max_token_bytes`.
    #[error("token too long")]
    TooLong,
    /// Not a well-formed JWS.
    #[error("malformed token")]
    Malformed,
    /// `alg: none`, in any spelling.
    #[error("unsigned token (alg none)")]
    AlgNone,
    /// An algorithm the gateway does not verify.
    #[error("unsupported algorithm")]
    UnsupportedAlg,
    /// The header carries `jku`, `x5u`, `x5c` or `jwk`: a key the token chose itself.
    #[error("token names its own key")]
    EmbeddedKey,
    /// The header has `crit` extensions the gateway does not understand.
    #[error("critical header extension")]
    Crit,
    /// No configured key matches the `kid`.
    #[error("unknown key id")]
    UnknownKid,
    /// The token's `alg` is not the one its key is pinned to.
    #[error("algorithm does not match the key")]
    AlgMismatch,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// `exp` is past (beyond the leeway).
    #[error("expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("not yet valid")]
    NotYetValid,
    /// A required claim is absent or has the wrong type.
    #[error("required claim missing")]
    MissingClaim,
    /// `iss` is not accepted.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` names none of the accepted audiences.
    #[error("wrong audience")]
    WrongAudience,
    /// The `typ` header is not the required one (e.g. an ID token where an access token is due).
    #[error("wrong token type")]
    WrongType,
    /// The token's `jti` was revoked.
    #[error("revoked")]
    Revoked,
}

/// The JWT verifier: static keys, JWKS keys refreshed on demand, and the verified-token cache.
#[derive(Debug)]
pub(super) struct Verifier {
    cfg: JwtConfig,
    /// Keys from the JWKS URL or OIDC discovery, replaced on each successful fetch.
    jwks: super::trust::KeySet,
    /// When the JWKS was last fetched; also the single-flight lock for fetching.
    fetched: tokio::sync::Mutex<Option<Instant>>,
    fetcher: crate::controls::ssrf::fetch::Fetcher,
    cache: Mutex<HashMap<[u8; 32], Verified>>,
    trust: super::Trust,
}

/// A verified token as cached: what it grants, until when, and for which audiences (checked on
/// every use, since routes differ in the audience they require). `keys` is the generation of the
/// key sets it was verified against: once a key set changes (a JWKS refresh, `palisade keys
/// rotate`), the token is verified again, so a key rotated out also stops its cached tokens.
#[derive(Debug, Clone)]
struct Verified {
    keys: u64,
    grant: Grant,
    exp: u64,
    audiences: Arc<[Box<str>]>,
    jti: Option<Box<str>>,
}

/// Whether an `Authorization` value looks like a JWT (three dot-separated parts).
pub(super) fn shaped(value: &[u8]) -> bool {
    value.len() > 7 && value[7..].iter().filter(|b| **b == b'.').count() == 2
}

impl Verifier {
    pub(super) fn new(
        cfg: JwtConfig,
        fetcher: crate::controls::ssrf::fetch::Fetcher,
        trust: super::Trust,
    ) -> Self {
        Verifier {
            cfg,
            jwks: super::trust::KeySet::default(),
            fetched: tokio::sync::Mutex::new(None),
            fetcher,
            cache: Mutex::new(HashMap::new()),
            trust,
        }
    }

    /// Verifies `token` at `now` (Unix seconds) for a route whose own resource identifier is
    /// `resource` (RFC 8707: with OAuth, the token's `aud` must name it or a configured
    /// audience), and returns what it grants.
    pub(super) async fn verify(
        &self,
        token: &[u8],
        now: u64,
        resource: Option<&str>,
    ) -> Result<Grant, JwtError> {
        if token.len() > self.cfg.max_token_bytes {
            return Err(JwtError::TooLong);
        }
        let digest: [u8; 32] = Sha256::digest(token).into();
        // Read before the key lookup: a set replaced meanwhile makes this entry stale, never
        // the other way round.
        let keys = self.keys_generation();
        if let Some(v) = self.cached(&digest, now, keys) {
            self.still_good(&v, resource)?;
            return Ok(v.grant);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| classify(token))?;
        if header.jku.is_some()
            || header.x5u.is_some()
            || header.x5c.is_some()
            || header.jwk.is_some()
        {
            return Err(JwtError::EmbeddedKey);
        }
        if header.crit.is_some() {
            return Err(JwtError::Crit);
        }
        if let Some(want) = &self.cfg.required_typ {
            let typ = header.typ.as_deref().unwrap_or("").to_ascii_lowercase();
            if typ.strip_prefix("application/").unwrap_or(&typ) != want {
                return Err(JwtError::WrongType);
            }
        }
        if header.kid.as_ref().is_some_and(|k| k.len() > 256) {
            return Err(JwtError::Malformed);
        }
        let key = self.key(header.kid.as_deref()).await?;
        if key.alg != header.alg {
            return Err(JwtError::AlgMismatch);
        }
        let mut v = Validation::new(key.alg);
        // Time, issuer and audience are checked below against the injected clock, with our
        // own error reasons; the library checks structure and signature.
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &v).map_err(|e| match e
                .kind()
            {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => JwtError::BadSignature,
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => JwtError::AlgMismatch,
                _ => JwtError::Malformed,
            })?;
        let v = self.claims(&data.claims, now, keys)?;
        self.still_good(&v, resource)?;
        let grant = v.grant.clone();
        self.remember(digest, v, now);
        Ok(grant)
    }

    /// Checks made on every use, cached or not: revocation and the route's audience.
    fn still_good(&self, v: &Verified, resource: Option<&str>) -> Result<(), JwtError> {
        if v.jti
            .as_deref()
            .is_some_and(|j| self.trust.revoked.contains(j))
        {
            return Err(JwtError::Revoked);
        }
        self.audience_ok(&v.audiences, resource)
    }

    fn audience_ok(&self, aud: &[Box<str>], resource: Option<&str>) -> Result<(), JwtError> {
        let ok = aud.iter().any(|a| {
            self.cfg.audiences.iter().any(|x| x == &**a) || resource.is_some_and(|r| r == &**a)
        });
        ok.then_some(()).ok_or(JwtError::WrongAudience)
    }

    fn claims(&self, c: &Map<String, Value>, now: u64, keys: u64) -> Result<Verified, JwtError> {
        let leeway = self.cfg.leeway.as_secs();
        let time = |name: &str| -> Result<Option<u64>, JwtError> {
            match c.get(name) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                    .map(Some)
                    .ok_or(JwtError::MissingClaim),
            }
        };
        let exp = time("exp")?.ok_or(JwtError::MissingClaim)?;
        if now > exp.saturating_add(leeway) {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = time("nbf")? {
            if nbf > now.saturating_add(leeway) {
                return Err(JwtError::NotYetValid);
            }
        }
        let iss = c
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(JwtError::MissingClaim)?;
        if !self.cfg.issuers.iter().any(|i| i == iss) {
            return Err(JwtError::WrongIssuer);
        }
        let audiences: Arc<[Box<str>]> = strings(c.get("aud").ok_or(JwtError::MissingClaim)?)
            .into_iter()
            .map(Box::from)
            .collect();
        for name in &self.cfg.required_claims {
            if !c.contains_key(name) {
                return Err(JwtError::MissingClaim);
            }
        }
        let sub = c
            .get(&self.cfg.subject_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .ok_or(JwtError::MissingClaim)?;
        let list = |name: &str| -> Arc<[Arc<str>]> {
            c.get(name)
                .map(strings)
                .unwrap_or_default()
                .into_iter()
                .map(Arc::from)
                .collect()
        };
        let mut scopes: Vec<Arc<str>> = Vec::new();
        for name in &self.cfg.scope_claims {
            for s in list(name).iter() {
                if !scopes.contains(s) {
                    scopes.push(s.clone());
                }
            }
        }
        let grant = Grant {
            id: Arc::from(sub),
            roles: list(&self.cfg.roles_claim),
            scopes: scopes.into(),
            permissions: list(&self.cfg.permissions_claim),
        };
        Ok(Verified {
            keys,
            grant,
            exp,
            audiences,
            jti: c.get("jti").and_then(Value::as_str).map(Box::from),
        })
    }

    /// The generation of every key set a token may be verified with (the configured keys never
    /// change): a sum of counters that only grow, so it changes whenever either set does.
    fn keys_generation(&self) -> u64 {
        self.jwks.generation() + self.trust.issuer_keys.generation()
    }

    fn cached(&self, digest: &[u8; 32], now: u64, keys: u64) -> Option<Verified> {
        let leeway = self.cfg.leeway.as_secs();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        match cache.get(digest) {
            Some(v) if now <= v.exp.saturating_add(leeway) && v.keys == keys => Some(v.clone()),
            Some(_) => {
                cache.remove(digest);
                None
            }
            None => None,
        }
    }

    fn remember(&self, digest: [u8; 32], v: Verified, now: u64) {
        if self.cfg.cache_capacity == 0 {
            return;
        }
        let leeway = self.cfg.leeway.as_secs();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= self.cfg.cache_capacity {
            cache.retain(|_, c| now <= c.exp.saturating_add(leeway) && c.keys == v.keys);
        }
        if cache.len() < self.cfg.cache_capacity {
            cache.insert(digest, v);
        }
    }

    /// The key for `kid`: configured keys first, then the JWKS (fetched again, at a bounded
    /// rate, when the kid is unknown — that is how a rotation at the issuer is picked up).
    async fn key(&self, kid: Option<&str>) -> Result<JwtKey, JwtError> {
        if let Some(k) = self.lookup(kid) {
            return Ok(k);
        }
        if self.cfg.jwks_url.is_none() && self.cfg.oidc_issuer.is_none() {
            return Err(JwtError::UnknownKid);
        }
        // Boxed: fetching is rare, and inline its state would make every verification's
        // future (and its callers') a kilobyte larger, copied on every request.
        Box::pin(self.refresh_for(kid)).await
    }

    /// Fetches the key set again for an unknown `kid` (at most once per `jwks_refresh_min`).
    async fn refresh_for(&self, kid: Option<&str>) -> Result<JwtKey, JwtError> {
        {
            let mut last = self.fetched.lock().await;
            // Another request may have fetched while we waited.
            if let Some(k) = self.lookup(kid) {
                return Ok(k);
            }
            if last.is_some_and(|t| t.elapsed() < self.cfg.jwks_refresh_min) {
                return Err(JwtError::UnknownKid);
            }
            *last = Some(Instant::now());
            match self.fetch().await {
                Ok(keys) => self.jwks.replace(keys),
                Err(e) => {
                    tracing::warn!(target: "palisade::authn", error = %e, "JWKS fetch failed; keeping the previous keys");
                }
            }
        }
        self.lookup(kid).ok_or(JwtError::UnknownKid)
    }

    fn lookup(&self, kid: Option<&str>) -> Option<JwtKey> {
        let jwks = self.jwks.get();
        let own = self.trust.issuer_keys.get();
        let keys = self.cfg.keys.iter().chain(own.iter()).chain(jwks.iter());
        match kid {
            Some(kid) => keys
                .into_iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .cloned(),
            None => {
                let all: Vec<&JwtKey> = keys.collect();
                match all.as_slice() {
                    [only] => Some((*only).clone()),
                    _ => None,
                }
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<JwtKey>, String> {
        let url = match (&self.cfg.jwks_url, &self.cfg.oidc_issuer) {
            (Some(u), _) => u.clone(),
            (None, Some(issuer)) => self.discover(issuer).await?,
            (None, None) => return Ok(Vec::new()),
        };
        let set: JwkSet =
            serde_json::from_slice(&self.get(url).await?).map_err(|e| e.to_string())?;
        Ok(set.keys.iter().filter_map(from_jwk).collect())
    }

    /// OpenID Connect discovery: the issuer's configuration names its JWKS. The document must
    /// name the same issuer (OIDC Discovery §4.3), or it is not trusted.
    async fn discover(&self, issuer: &str) -> Result<http::Uri, String> {
        let url = format!("{issuer}/.well-known/openid-configuration")
            .parse::<http::Uri>()
            .map_err(|e| e.to_string())?;
        let doc: Value =
            serde_json::from_slice(&self.get(url).await?).map_err(|e| e.to_string())?;
        let named = doc
            .get("issuer")
            .and_then(Value::as_str)
            .map(|s| s.trim_end_matches('/'));
        if named != Some(issuer) {
            return Err(format!(
                "discovery document names issuer {named:?}, expected {issuer:?}"
            ));
        }
        doc.get("jwks_uri")
            .and_then(Value::as_str)
            .and_then(|u| u.parse::<http::Uri>().ok())
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")))
            .ok_or_else(|| "discovery document has no usable jwks_uri".to_owned())
    }

    async fn get(&self, url: http::Uri) -> Result<bytes::Bytes, String> {
        let req = http::Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(bytes::Bytes::new()))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(5), self.fetcher.send(req))
            .await
            .map_err(|_| "timeout".to_owned())?
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status()));
        }
        Ok(Limited::new(resp.into_body(), 1 << 20)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes())
    }

    /// Fetches the JWKS once at start-up (failures are logged; verification fails closed).
    /// It does not count against the refresh interval, so the first rotation seen afterwards
    /// is picked up at once.
    pub(super) async fn prefetch(&self) {
        if self.cfg.jwks_url.is_none() && self.cfg.oidc_issuer.is_none() {
            return;
        }
        let _guard = self.fetched.lock().await;
        match self.fetch().await {
            Ok(keys) => self.jwks.replace(keys),
            Err(e) => {
                tracing::warn!(target: "palisade::authn", error = %e, "JWKS fetch failed at start; JWTs are refused until it succeeds")
            }
        }
    }
}

/// A JWKS entry as a pinned key: its `alg`, or the one its type implies. Symmetric (`oct`) and
/// encryption keys are never used for verification.
fn from_jwk(jwk: &jsonwebtoken::jwk::Jwk) -> Option<JwtKey> {
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        return None;
    }
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
        // Symmetric keys from a URL, and key types this crate may add later: never used.
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        None => implied,
        Some(a) => {
            let a: Algorithm = match a {
                KeyAlgorithm::RS256 => Algorithm::RS256,
                KeyAlgorithm::RS384 => Algorithm::RS384,
                KeyAlgorithm::RS512 => Algorithm::RS512,
                KeyAlgorithm::PS256 => Algorithm::PS256,
                KeyAlgorithm::PS384 => Algorithm::PS384,
                KeyAlgorithm::PS512 => Algorithm::PS512,
                KeyAlgorithm::ES256 => Algorithm::ES256,
                KeyAlgorithm::ES384 => Algorithm::ES384,
                KeyAlgorithm::EdDSA => Algorithm::EdDSA,
                _ => return None,
            };
            if a.family() != implied.family() {
                return None;
            }
            a
        }
    };
    Some(JwtKey {
        kid: jwk.common.key_id.clone(),
        alg,
        key: DecodingKey::from_jwk(jwk).ok()?,
    })
}

/// A claim as a list of strings: an array of strings, or one space-separated string.
fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => s.split(' ').filter(|s| !s.is_empty()).collect(),
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Why a header did not parse: `alg: none` (any spelling) gets its own reason.
fn classify(token: &[u8]) -> JwtError {
    let head = token.split(|b| *b == b'.').next().unwrap_or_default();
    let alg = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| {
            v.get("alg")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
        });
    match alg.as_deref() {
        Some("none") => JwtError::AlgNone,
        // A well-formed header naming an algorithm the library does not implement (ES512, the
        // RFC 9864 `Ed25519` name, …): refused, and said so.
        Some(_) => JwtError::UnsupportedAlg,
        None => JwtError::Malformed,
    }
}

#[cfg(test)]
mod tests;
