//! `[issuer]`, validated: the built-in token issuer's clients and users.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::PasswordHash;

use super::raw::RawIssuer;
use super::validated::{expand, Errors};

/// A client_credentials client.
#[derive(Debug, Clone)]
pub struct IssuerClient {
    /// `client_id`.
    pub client_id: Arc<str>,
    /// SHA-256 of the secret.
    pub secret_sha256: [u8; 32],
    /// Roles.
    pub roles: Vec<String>,
    /// Allowed scopes.
    pub scopes: Vec<String>,
}

/// A login user.
#[derive(Debug, Clone)]
pub struct IssuerUser {
    /// Login name.
    pub username: Arc<str>,
    /// Argon2id PHC string.
    pub password: String,
    /// Roles.
    pub roles: Vec<String>,
    /// Allowed scopes.
    pub scopes: Vec<String>,
}

/// `[issuer]`, validated.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// `iss`.
    pub issuer: String,
    /// Default audiences.
    pub audience: Vec<String>,
    /// Token lifetime.
    pub lifetime: Duration,
    /// New keys are RSA (RS256) rather than Ed25519 (EdDSA).
    pub rs256: bool,
    /// Failed logins allowed per window.
    pub login_max_failures: u32,
    /// Failed-login window.
    pub login_window: Duration,
    /// Clients.
    pub clients: Vec<IssuerClient>,
    /// Users.
    pub users: Vec<IssuerUser>,
}

pub(super) fn issuer(
    raw: RawIssuer,
    env: &dyn Fn(&str) -> Option<String>,
    e: &mut Errors,
) -> IssuerConfig {
    let url_ok = |u: &str| {
        u.parse::<http::Uri>()
            .is_ok_and(|x| matches!(x.scheme_str(), Some("http" | "https")) && x.host().is_some())
    };
    let issuer = raw
        .issuer
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_owned();
    if !url_ok(&issuer) {
        e.push(
            "issuer.issuer",
            "required: this gateway's public URL, e.g. https://gateway.example.com",
        );
    }
    let mut clients: Vec<IssuerClient> = Vec::new();
    for (i, c) in raw.clients.into_iter().enumerate() {
        let p = format!("issuer.clients[{i}]");
        let id = c.client_id.unwrap_or_default();
        if id.is_empty()
            || id.len() > 128
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        {
            e.push(
                format!("{p}.client_id"),
                "required: 1-128 characters of A-Z a-z 0-9 _ - .",
            );
            continue;
        }
        if clients.iter().any(|o| *o.client_id == *id) {
            e.push(format!("{p}.client_id"), "client_id used twice");
        }
        let Some(hash) = c
            .secret_sha256
            .and_then(|h| expand(&h, env).ok())
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
        else {
            e.push(
                format!("{p}.secret_sha256"),
                "required: 64 hex digits (palisade token generate prints it)",
            );
            continue;
        };
        clients.push(IssuerClient {
            client_id: Arc::from(id),
            secret_sha256: hash,
            roles: c.roles,
            scopes: c.scopes,
        });
    }
    let mut users: Vec<IssuerUser> = Vec::new();
    for (i, u) in raw.users.into_iter().enumerate() {
        let p = format!("issuer.users[{i}]");
        let name = u.username.unwrap_or_default();
        if name.is_empty() || name.len() > 128 || name.contains(char::is_whitespace) {
            e.push(
                format!("{p}.username"),
                "required: 1-128 characters, no spaces",
            );
            continue;
        }
        let hash = match u.password_argon2id.map(|h| expand(&h, env)) {
            Some(Ok(h)) => h,
            Some(Err(w)) => {
                e.push(format!("{p}.password_argon2id"), w);
                continue;
            }
            None => String::new(),
        };
        match PasswordHash::new(&hash) {
            Ok(h) if h.algorithm.as_str() == "argon2id" => {}
            _ => {
                e.push(
                    format!("{p}.password_argon2id"),
                    "required: an argon2id PHC string (palisade passwd hash)",
                );
                continue;
            }
        }
        if users.iter().any(|o| *o.username == *name) {
            e.push(format!("{p}.username"), "username used twice");
        }
        users.push(IssuerUser {
            username: Arc::from(name),
            password: hash,
            roles: u.roles,
            scopes: u.scopes,
        });
    }
    let rs256 = match raw.algorithm.as_deref() {
        None | Some("EdDSA") => false,
        Some("RS256") => true,
        Some(other) => {
            e.push(
                "issuer.algorithm",
                format!("must be \"EdDSA\" or \"RS256\", got {other:?}"),
            );
            false
        }
    };
    IssuerConfig {
        rs256,
        audience: raw.audience.unwrap_or_else(|| vec![issuer.clone()]),
        issuer,
        lifetime: Duration::from_secs(e.range(
            "issuer.lifetime_secs",
            raw.lifetime_secs,
            1800,
            60,
            86_400,
        )),
        login_max_failures: e.range(
            "issuer.login_max_failures",
            raw.login_max_failures,
            5,
            1,
            1000,
        ) as u32,
        login_window: Duration::from_secs(e.range(
            "issuer.login_window_secs",
            raw.login_window_secs,
            300,
            1,
            86_400,
        )),
        clients,
        users,
    }
}
