//! The built-in token issuer: a small OAuth 2.1 authorization server for deployments without
//! their own identity provider (seed 000's "simple JWT issuer", seeds 003/004's login).
//!
//! - `POST /oauth/token`: the `client_credentials` grant, one `client_id` per service, secrets
//!   stored as SHA-256 hashes and compared in constant time; `scope` is intersected with what
//!   the client may have; `resource` (RFC 8707) sets the audience.
//! - `POST /auth/login`: username and password against argon2id hashes, JSON in and out in the
//!   seeds' shape (`{"token","expiresIn","tokenType":"Bearer"}`); failed attempts are limited per
//!   user and per client address.
//! - `/.well-known/oauth-authorization-server` (RFC 8414) and `/.well-known/jwks.json`.
//!
//! Tokens are EdDSA JWTs with a `kid` and a `jti`, verified by the gateway itself like any
//! other JWT; `palisade keys rotate` and `palisade token revoke` change the files the running
//! gateway watches. Every request here is audited (control `issuer`).

pub mod keys;
pub mod revoked;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use argon2::Argon2;
use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use jsonwebtoken::Header;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::app::body::{self, Body};
use crate::config::{IssuerConfig, OAuthConfig, UpstreamConfig};
use crate::controls::authn::Trust;
use keys::Keyring;

/// The issuer's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /oauth/token`.
    Token,
    /// `POST /auth/login`.
    Login,
    /// `GET /.well-known/oauth-authorization-server`.
    Metadata,
    /// `GET /.well-known/jwks.json`.
    Jwks,
}

impl Endpoint {
    /// The endpoint at `path`, if any.
    pub fn at(path: &str) -> Option<Endpoint> {
        Some(match path {
            "/oauth/token" => Endpoint::Token,
            "/auth/login" => Endpoint::Login,
            "/.well-known/oauth-authorization-server" => Endpoint::Metadata,
            "/.well-known/jwks.json" => Endpoint::Jwks,
            _ => return None,
        })
    }
}

/// What happened, for the audit record.
#[derive(Debug)]
pub struct Served {
    /// The response.
    pub response: Response<Body>,
    /// Who obtained a token, or who tried.
    pub subject: Option<String>,
    /// Whether a token was issued (or a public document served).
    pub allowed: bool,
    /// Audit reason.
    pub reason: &'static str,
}

/// Failed attempts per key within a window.
#[derive(Debug, Default)]
struct Failures(HashMap<String, (u32, u64)>);

impl Failures {
    fn blocked(&mut self, key: &str, max: u32, window: u64, now: u64) -> bool {
        match self.0.get(key) {
            Some((n, start)) if now < start + window => *n >= max,
            Some(_) => {
                self.0.remove(key);
                false
            }
            None => false,
        }
    }

    fn record(&mut self, key: &str, window: u64, now: u64) {
        if self.0.len() > 100_000 {
            self.0.retain(|_, (_, start)| now < *start + window);
        }
        let e = self.0.entry(key.to_owned()).or_insert((0, now));
        if now >= e.1 + window {
            *e = (0, now);
        }
        e.0 += 1;
    }
}

/// The issuer.
#[derive(Debug)]
pub struct Issuer {
    cfg: IssuerConfig,
    data_dir: PathBuf,
    ring: RwLock<Arc<Keyring>>,
    trust: Trust,
    /// Resources (audiences) a client may ask for besides the configured audiences.
    resources: Vec<String>,
    failures: Mutex<Failures>,
    /// A hash verified for unknown users, so their answer takes as long as a wrong password.
    dummy: String,
}

fn alg(cfg: &IssuerConfig) -> keys::KeyAlg {
    if cfg.rs256 {
        keys::KeyAlg::RS256
    } else {
        keys::KeyAlg::EdDSA
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn reply(status: StatusCode, doc: &Value) -> Response<Body> {
    let mut r = Response::new(body::full(doc.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn oauth_error(status: StatusCode, error: &str) -> Response<Body> {
    reply(status, &json!({ "error": error }))
}

/// A refused issuer request: the OAuth error for the client, the reason for the audit record.
fn fail(
    status: StatusCode,
    error: &'static str,
    reason: &'static str,
    subject: Option<String>,
) -> Served {
    Served {
        response: oauth_error(status, error),
        subject,
        allowed: false,
        reason,
    }
}

/// `30m`, `1h`, `90s`: the seeds' duration style for `expiresIn`.
fn duration_text(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

impl Issuer {
    /// Loads (or creates) the signing keys and publishes their public halves to `trust`.
    pub fn start(
        cfg: IssuerConfig,
        data_dir: PathBuf,
        routes: &[UpstreamConfig],
        oauth: Option<&OAuthConfig>,
        trust: Trust,
    ) -> std::io::Result<Issuer> {
        let ring = Keyring::load_or_create(&data_dir, now_secs(), alg(&cfg))?;
        if ring.signer().is_none() {
            return Err(std::io::Error::other(
                "issuer keyring has no usable signing key",
            ));
        }
        trust.issuer_keys.replace(ring.verification_keys());
        let dummy = argon2_hash("not-a-real-password")?;
        Ok(Issuer {
            resources: oauth
                .map(|o| routes.iter().map(|r| o.resource(&r.name)).collect())
                .unwrap_or_default(),
            cfg,
            data_dir,
            ring: RwLock::new(Arc::new(ring)),
            trust,
            failures: Mutex::new(Failures::default()),
            dummy,
        })
    }

    /// Reloads the keyring after `palisade keys rotate` (called when the file changed).
    pub fn reload(&self) {
        match Keyring::load_or_create(&self.data_dir, now_secs(), alg(&self.cfg)) {
            Ok(ring) if ring.signer().is_some() => {
                self.trust.issuer_keys.replace(ring.verification_keys());
                *self.ring.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ring);
                tracing::info!(target: "palisade::issuer", "signing keys reloaded");
            }
            Ok(_) => {
                tracing::error!(target: "palisade::issuer", "keyring has no active key; keeping the previous keys")
            }
            Err(e) => {
                tracing::error!(target: "palisade::issuer", error = %e, "keyring unreadable; keeping the previous keys")
            }
        }
    }

    fn ring(&self) -> Arc<Keyring> {
        self.ring.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Serves one request to an issuer endpoint.
    pub async fn serve(
        &self,
        ep: Endpoint,
        method: &Method,
        headers: &HeaderMap,
        body: Bytes,
        ip: IpAddr,
    ) -> Served {
        let public = |response| Served {
            response,
            subject: None,
            allowed: true,
            reason: "public_document",
        };
        match (ep, method) {
            (Endpoint::Metadata, &Method::GET) => public(reply(StatusCode::OK, &self.metadata())),
            (Endpoint::Jwks, &Method::GET) => public(reply(StatusCode::OK, &self.ring().jwks())),
            (Endpoint::Token, &Method::POST) => self.token(headers, &body, ip, now_secs()),
            (Endpoint::Login, &Method::POST) => self.login(&body, ip, now_secs()).await,
            _ => fail(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                "method_not_allowed",
                None,
            ),
        }
    }

    fn metadata(&self) -> Value {
        let i = &self.cfg.issuer;
        let mut scopes: Vec<&str> = Vec::new();
        for s in self
            .cfg
            .clients
            .iter()
            .flat_map(|c| &c.scopes)
            .chain(self.cfg.users.iter().flat_map(|u| &u.scopes))
        {
            if !scopes.contains(&s.as_str()) {
                scopes.push(s);
            }
        }
        json!({
            "issuer": i,
            "token_endpoint": format!("{i}/oauth/token"),
            "jwks_uri": format!("{i}/.well-known/jwks.json"),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "response_types_supported": [],
            "scopes_supported": scopes,
        })
    }

    fn limited(&self, keys: &[&str], now: u64) -> bool {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (max, window) = (self.cfg.login_max_failures, self.cfg.login_window.as_secs());
        keys.iter().any(|k| f.blocked(k, max, window, now))
    }

    fn failed(&self, keys: &[&str], now: u64) {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for k in keys {
            f.record(k, self.cfg.login_window.as_secs(), now);
        }
    }

    fn too_many(&self, subject: Option<String>) -> Served {
        let mut response = oauth_error(StatusCode::TOO_MANY_REQUESTS, "too_many_attempts");
        if let Ok(v) = HeaderValue::from_str(&self.cfg.login_window.as_secs().to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        Served {
            response,
            subject,
            allowed: false,
            reason: "rate_limited",
        }
    }

    /// `POST /oauth/token`, grant `client_credentials`.
    fn token(&self, headers: &HeaderMap, body: &[u8], ip: IpAddr, now: u64) -> Served {
        let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
        let one = |k: &str| -> Result<Option<&str>, ()> {
            let mut it = form.iter().filter(|(n, _)| n == k);
            match (it.next(), it.next()) {
                (Some((_, v)), None) => Ok(Some(v.as_str())),
                (None, _) => Ok(None),
                _ => Err(()),
            }
        };
        let ip_key = format!("token-ip:{ip}");
        if self.limited(&[&ip_key], now) {
            return self.too_many(None);
        }
        let (Ok(grant), Ok(scope), Ok(form_id), Ok(form_secret)) = (
            one("grant_type"),
            one("scope"),
            one("client_id"),
            one("client_secret"),
        ) else {
            return fail(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "repeated_parameter",
                None,
            );
        };
        if grant != Some("client_credentials") {
            return fail(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "unsupported_grant_type",
                None,
            );
        }
        let basic = basic_credentials(headers);
        let (id, secret) = match (basic, form_id, form_secret) {
            (Some(b), None, None) => b,
            (None, Some(i), Some(s)) => (i.to_owned(), s.to_owned()),
            _ => {
                let mut r = fail(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "no_client_credentials",
                    None,
                );
                r.response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"palisade\""),
                );
                return r;
            }
        };
        let presented: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let mut found = None;
        for c in &self.cfg.clients {
            let id_ok = c.client_id.as_bytes().ct_eq(id.as_bytes());
            let secret_ok = c.secret_sha256.ct_eq(&presented);
            if bool::from(id_ok & secret_ok) {
                found = Some(c);
            }
        }
        let Some(client) = found else {
            self.failed(&[&ip_key, &format!("client:{id}")], now);
            let mut r = fail(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "invalid_client",
                Some(id),
            );
            r.response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"palisade\""),
            );
            return r;
        };
        let sub = client.client_id.to_string();
        let Some(scopes) = grant_scopes(scope.map(|s| s.split(' ').collect()), &client.scopes)
        else {
            return fail(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "invalid_scope",
                Some(sub),
            );
        };
        let resources: Vec<&str> = form
            .iter()
            .filter(|(k, _)| k == "resource")
            .map(|(_, v)| v.as_str())
            .collect();
        let Some(aud) = self.audience(&resources) else {
            return fail(
                StatusCode::BAD_REQUEST,
                "invalid_target",
                "invalid_target",
                Some(sub),
            );
        };
        match self.mint(&sub, &client.roles, &scopes, aud, now, Some(&sub)) {
            Some(token) => Served {
                response: reply(
                    StatusCode::OK,
                    &json!({
                        "access_token": token,
                        "token_type": "Bearer",
                        "expires_in": self.cfg.lifetime.as_secs(),
                        "scope": scopes.join(" "),
                    }),
                ),
                subject: Some(sub),
                allowed: true,
                reason: "token_issued",
            },
            None => fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "signing_failed",
                Some(sub),
            ),
        }
    }

    /// `POST /auth/login`.
    async fn login(&self, body: &[u8], ip: IpAddr, now: u64) -> Served {
        let Ok(req) = serde_json::from_slice::<Value>(body) else {
            return fail(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "bad_login_body",
                None,
            );
        };
        let (Some(user), Some(password)) = (
            req.get("username").and_then(Value::as_str),
            req.get("password").and_then(Value::as_str),
        ) else {
            return fail(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "bad_login_body",
                None,
            );
        };
        if user.len() > 128 || password.len() > 1024 {
            return fail(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "bad_login_body",
                None,
            );
        }
        let (user_key, ip_key) = (format!("user:{user}"), format!("login-ip:{ip}"));
        if self.limited(&[&user_key, &ip_key], now) {
            return self.too_many(Some(user.to_owned()));
        }
        let account = self.cfg.users.iter().find(|u| &*u.username == user);
        let hash = account.map_or(self.dummy.clone(), |a| a.password.clone());
        let password = password.to_owned();
        // Argon2id is deliberately slow: keep it off the async workers.
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false);
        let Some(account) = account.filter(|_| ok) else {
            self.failed(&[&user_key, &ip_key], now);
            return fail(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "login_failed",
                Some(user.to_owned()),
            );
        };
        let requested: Option<Vec<&str>> = match req.get("scope") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.split(' ').collect()),
            Some(Value::Array(a)) => Some(a.iter().filter_map(Value::as_str).collect()),
            Some(_) => {
                return fail(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    "invalid_scope",
                    Some(user.to_owned()),
                )
            }
        };
        let Some(scopes) = grant_scopes(requested, &account.scopes) else {
            return fail(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "invalid_scope",
                Some(user.to_owned()),
            );
        };
        let aud = self.cfg.audience.clone();
        match self.mint(user, &account.roles, &scopes, aud, now, None) {
            Some(token) => Served {
                response: reply(
                    StatusCode::OK,
                    &json!({
                        "token": token,
                        "expiresIn": duration_text(self.cfg.lifetime),
                        "tokenType": "Bearer",
                        "scope": scopes,
                    }),
                ),
                subject: Some(user.to_owned()),
                allowed: true,
                reason: "token_issued",
            },
            None => fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "signing_failed",
                Some(user.to_owned()),
            ),
        }
    }

    /// The audience for the requested resources: each must be a route's resource or a
    /// configured audience. None requested: the configured audiences.
    fn audience(&self, resources: &[&str]) -> Option<Vec<String>> {
        if resources.is_empty() {
            return Some(self.cfg.audience.clone());
        }
        resources
            .iter()
            .map(|r| {
                let r = r.trim_end_matches('/');
                (self.resources.iter().any(|x| x == r) || self.cfg.audience.iter().any(|x| x == r))
                    .then(|| r.to_owned())
            })
            .collect()
    }

    fn mint(
        &self,
        sub: &str,
        roles: &[String],
        scopes: &[&str],
        aud: Vec<String>,
        now: u64,
        client_id: Option<&str>,
    ) -> Option<String> {
        let (kid, alg, key) = self.ring().signer()?;
        let mut h = Header::new(alg);
        h.kid = Some(kid);
        // RFC 9068: JWT access tokens say so.
        h.typ = Some("at+jwt".into());
        let mut jti = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut jti);
        let mut claims = json!({
            "iss": self.cfg.issuer,
            "sub": sub,
            "aud": if aud.len() == 1 { json!(aud[0]) } else { json!(aud) },
            "iat": now,
            "nbf": now,
            "exp": now + self.cfg.lifetime.as_secs(),
            "jti": hex::encode(jti),
            "roles": roles,
            "scope": scopes.join(" "),
        });
        if let Some(c) = client_id {
            claims["client_id"] = json!(c);
        }
        jsonwebtoken::encode(&h, &claims, &key).ok()
    }
}

/// Requested ∩ allowed; `None` asked → all allowed; a request none of which is allowed → None.
fn grant_scopes<'a>(
    requested: Option<Vec<&'a str>>,
    allowed: &'a [String],
) -> Option<Vec<&'a str>> {
    match requested {
        None => Some(allowed.iter().map(String::as_str).collect()),
        Some(req) => {
            let req: Vec<&str> = req.into_iter().filter(|s| !s.is_empty()).collect();
            let granted: Vec<&str> = req
                .iter()
                .copied()
                .filter(|s| allowed.iter().any(|a| a == s))
                .collect();
            (req.is_empty() || !granted.is_empty()).then_some(granted)
        }
    }
}

/// `Authorization: Basic` client credentials (form-urlencoded inside, RFC 6749 §2.3.1).
fn basic_credentials(h: &HeaderMap) -> Option<(String, String)> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    let dec = |s: &str| {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((dec(id)?, dec(secret)?))
}

/// An argon2id PHC string for `password` (for `palisade passwd hash`).
pub fn argon2_hash(password: &str) -> std::io::Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| std::io::Error::other(e.to_string()))
}

/// Watches the keyring and the revocation list, reloading them when they change. Runs until
/// the gateway stops.
pub async fn watch(issuer: Option<Arc<Issuer>>, data_dir: PathBuf, trust: Trust) {
    let mtime = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let (keys_path, revoked_path) = (keys::path(&data_dir), revoked::path(&data_dir));
    let (mut keys_seen, mut revoked_seen) = (mtime(&keys_path), None);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let r = mtime(&revoked_path);
        if r != revoked_seen {
            revoked_seen = r;
            match revoked::load(&data_dir, now_secs()) {
                Ok(set) => trust.revoked.replace(set),
                Err(e) => {
                    tracing::error!(target: "palisade::issuer", error = %e, "revocation list unreadable; keeping the previous one")
                }
            }
        }
        if let Some(i) = &issuer {
            let k = mtime(&keys_path);
            if k != keys_seen {
                keys_seen = k;
                i.reload();
            }
        }
    }
}

#[cfg(test)]
mod tests;
