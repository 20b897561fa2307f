//! `[auth.jwt]`, validated: issuers, audiences, claim mapping and keys, each key pinned to one
//! algorithm and loaded (and so checked) at start-up.

use std::time::Duration;

use http::Uri;
use jsonwebtoken::{Algorithm, DecodingKey};

use super::raw::{RawJwt, RawJwtKey};
use super::validated::{expand, Errors};

/// One verification key.
#[derive(Debug, Clone)]
pub struct JwtKey {
    /// `kid` selecting it.
    pub kid: Option<String>,
    /// The only algorithm it verifies.
    pub alg: Algorithm,
    /// The key.
    pub key: DecodingKey,
}

/// `[auth.jwt]`, validated.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// Accepted issuers.
    pub issuers: Vec<String>,
    /// Accepted audiences.
    pub audiences: Vec<String>,
    /// Clock tolerance.
    pub leeway: Duration,
    /// Extra claims that must be present.
    pub required_claims: Vec<String>,
    /// Required `typ` header (lowercase, without `application/`).
    pub required_typ: Option<String>,
    /// Claim naming the principal.
    pub subject_claim: String,
    /// Roles claim.
    pub roles_claim: String,
    /// Scope claims.
    pub scope_claims: Vec<String>,
    /// Permissions claim.
    pub permissions_claim: String,
    /// Longest token.
    pub max_token_bytes: usize,
    /// Verified-token cache size (0: off).
    pub cache_capacity: usize,
    /// JWKS endpoint.
    pub jwks_url: Option<Uri>,
    /// Least time between JWKS fetches.
    pub jwks_refresh_min: Duration,
    /// OIDC issuer whose discovery document names the JWKS.
    pub oidc_issuer: Option<String>,
    /// Static keys.
    pub keys: Vec<JwtKey>,
}

impl JwtConfig {
    /// Defaults for verifying only the built-in issuer's tokens.
    pub(super) fn for_issuer() -> JwtConfig {
        JwtConfig {
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway: Duration::from_secs(60),
            required_claims: Vec::new(),
            required_typ: None,
            subject_claim: "sub".into(),
            roles_claim: "roles".into(),
            scope_claims: vec!["scope".into(), "scp".into()],
            permissions_claim: "permissions".into(),
            max_token_bytes: 8192,
            cache_capacity: 10_000,
            jwks_url: None,
            jwks_refresh_min: Duration::from_secs(30),
            oidc_issuer: None,
            keys: Vec::new(),
        }
    }
}

fn key(
    i: usize,
    k: RawJwtKey,
    env: &dyn Fn(&str) -> Option<String>,
    e: &mut Errors,
) -> Option<JwtKey> {
    let p = format!("auth.jwt.keys[{i}]");
    let alg = match k.alg.as_deref().map(str::parse::<Algorithm>) {
        Some(Ok(a)) => a,
        _ => {
            e.push(
                format!("{p}.alg"),
                "required: HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA",
            );
            return None;
        }
    };
    let hs = matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
    let key = match (hs, k.secret, k.pem_file) {
        (true, Some(secret), None) => match expand(&secret, env) {
            Ok(s) if s.len() >= 32 => DecodingKey::from_secret(s.as_bytes()),
            Ok(_) => {
                e.push(format!("{p}.secret"), "must be at least 32 bytes");
                return None;
            }
            Err(w) => {
                e.push(format!("{p}.secret"), w);
                return None;
            }
        },
        (false, None, Some(file)) => {
            let file = match expand(&file, env) {
                Ok(f) => f,
                Err(w) => {
                    e.push(format!("{p}.pem_file"), w);
                    return None;
                }
            };
            let pem = match std::fs::read(&file) {
                Ok(b) => b,
                Err(err) => {
                    e.push(
                        format!("{p}.pem_file"),
                        format!("cannot read {file}: {err}"),
                    );
                    return None;
                }
            };
            let parsed = match alg {
                Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
                Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
                _ => DecodingKey::from_rsa_pem(&pem),
            };
            match parsed {
                Ok(k) => k,
                Err(err) => {
                    e.push(
                        format!("{p}.pem_file"),
                        format!("{file} is not a {alg:?} public key: {err}"),
                    );
                    return None;
                }
            }
        }
        (true, _, _) => {
            e.push(&p, format!("{alg:?} needs `secret` (and no pem_file)"));
            return None;
        }
        (false, _, _) => {
            e.push(&p, format!("{alg:?} needs `pem_file` (and no secret)"));
            return None;
        }
    };
    Some(JwtKey {
        kid: k.kid,
        alg,
        key,
    })
}

/// Validates `[auth.jwt]`.
pub(super) fn jwt(
    raw: RawJwt,
    audience_optional: bool,
    keys_elsewhere: bool,
    env: &dyn Fn(&str) -> Option<String>,
    e: &mut Errors,
) -> JwtConfig {
    let mut issuers = raw.issuer;
    let oidc_issuer = raw.oidc_issuer.and_then(|i| match expand(&i, env) {
        Ok(i) => Some(i.trim_end_matches('/').to_owned()),
        Err(w) => {
            e.push("auth.jwt.oidc_issuer", w);
            None
        }
    });
    if let Some(i) = &oidc_issuer {
        if !i
            .parse::<Uri>()
            .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
        {
            e.push("auth.jwt.oidc_issuer", "must be an http(s) URL");
        }
        if raw.jwks_url.is_some() {
            e.push(
                "auth.jwt.oidc_issuer",
                "set either oidc_issuer or jwks_url, not both",
            );
        }
        if !issuers.contains(i) {
            issuers.push(i.clone());
        }
    }
    if issuers.is_empty() {
        e.push("auth.jwt.issuer", "required: the accepted `iss` values");
    }
    if raw.audience.is_empty() && !audience_optional {
        e.push(
            "auth.jwt.audience",
            "required: the accepted `aud` values (this gateway's own identifier)",
        );
    }
    let jwks_url =
        raw.jwks_url
            .as_deref()
            .and_then(|u| match expand(u, env).map(|s| s.parse::<Uri>()) {
                Ok(Ok(uri))
                    if matches!(uri.scheme_str(), Some("http" | "https"))
                        && uri.host().is_some() =>
                {
                    Some(uri)
                }
                Ok(_) => {
                    e.push("auth.jwt.jwks_url", "must be an http:// or https:// URL");
                    None
                }
                Err(w) => {
                    e.push("auth.jwt.jwks_url", w);
                    None
                }
            });
    let mut keys: Vec<JwtKey> = Vec::new();
    for (i, k) in raw.keys.into_iter().enumerate() {
        if let Some(k) = key(i, k, env, e) {
            if k.kid.is_some() && keys.iter().any(|o| o.kid == k.kid) {
                e.push(format!("auth.jwt.keys[{i}].kid"), "kid used twice");
            }
            keys.push(k);
        }
    }
    if keys.len() > 1 && keys.iter().any(|k| k.kid.is_none()) {
        e.push(
            "auth.jwt.keys",
            "every key needs a kid when there are several",
        );
    }
    if keys.is_empty() && jwks_url.is_none() && oidc_issuer.is_none() && !keys_elsewhere {
        e.push(
            "auth.jwt",
            "needs [[auth.jwt.keys]], jwks_url or oidc_issuer",
        );
    }
    JwtConfig {
        issuers,
        audiences: raw.audience,
        leeway: Duration::from_secs(e.range("auth.jwt.leeway_secs", raw.leeway_secs, 60, 0, 600)),
        required_claims: raw.required_claims,
        required_typ: raw.required_typ.map(|t| {
            let t = t.to_ascii_lowercase();
            t.strip_prefix("application/")
                .map(str::to_owned)
                .unwrap_or(t)
        }),
        subject_claim: raw.subject_claim.unwrap_or_else(|| "sub".into()),
        roles_claim: raw.roles_claim.unwrap_or_else(|| "roles".into()),
        scope_claims: raw
            .scope_claims
            .unwrap_or_else(|| vec!["scope".into(), "scp".into()]),
        permissions_claim: raw
            .permissions_claim
            .unwrap_or_else(|| "permissions".into()),
        max_token_bytes: e.range(
            "auth.jwt.max_token_bytes",
            raw.max_token_bytes,
            8192,
            256,
            65536,
        ) as usize,
        cache_capacity: e.range(
            "auth.jwt.cache_capacity",
            raw.cache_capacity,
            10_000,
            0,
            1_000_000,
        ) as usize,
        jwks_url,
        jwks_refresh_min: Duration::from_secs(e.range(
            "auth.jwt.jwks_refresh_min_secs",
            raw.jwks_refresh_min_secs,
            30,
            1,
            86_400,
        )),
        oidc_issuer,
        keys,
    }
}
