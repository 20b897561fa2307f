//! `[auth]`, validated: which methods each route accepts, the static tokens and the HMAC
//! clients. Secrets are held in [`Secret`], which never prints.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::jwt::JwtConfig;
use super::raw::{RawAuth, RawHmacClient};
use super::validated::{expand, Errors};

/// One authentication method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// No credential (loopback development only).
    None,
    /// A static API token.
    Bearer,
    /// An HMAC-signed request.
    Hmac,
    /// A JSON Web Token.
    Jwt,
    /// A client certificate (mTLS).
    Mtls,
}

impl Method {
    const ALL: [Method; 5] = [
        Method::None,
        Method::Bearer,
        Method::Hmac,
        Method::Jwt,
        Method::Mtls,
    ];

    /// Name in configuration and in the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::None => "none",
            Method::Bearer => "bearer",
            Method::Hmac => "hmac",
            Method::Jwt => "jwt",
            Method::Mtls => "mtls",
        }
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of methods that must all pass for one principal (`bearer+hmac`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Combo(u8);

impl Combo {
    /// Whether `m` is part of the combination.
    pub fn has(self, m: Method) -> bool {
        self.0 & m.bit() != 0
    }

    /// The methods, in a fixed order.
    pub fn methods(self) -> impl Iterator<Item = Method> {
        Method::ALL.into_iter().filter(move |m| self.has(*m))
    }

    /// A stable label for the audit trail (`none`, `bearer`, `hmac`, `jwt`, `bearer+hmac`,
    /// `jwt+hmac`).
    pub fn label(self) -> &'static str {
        // Bits: none 1, bearer 2, hmac 4, jwt 8, mtls 16.
        match self.0 {
            1 => "none",
            2 => "bearer",
            4 => "hmac",
            8 => "jwt",
            16 => "mtls",
            6 => "bearer+hmac",
            12 => "jwt+hmac",
            18 => "mtls+bearer",
            20 => "mtls+hmac",
            24 => "mtls+jwt",
            22 => "mtls+bearer+hmac",
            28 => "mtls+jwt+hmac",
            _ => "invalid",
        }
    }

    fn parse(s: &str) -> Result<Combo, String> {
        let mut bits = 0u8;
        for part in s.split('+') {
            let m = Method::ALL
                .into_iter()
                .find(|m| m.as_str() == part.trim())
                .ok_or_else(|| {
                    format!(
                        "unknown method {part:?}; known: \"none\", \"bearer\", \"hmac\", \"jwt\", \"mtls\""
                    )
                })?;
            if bits & m.bit() != 0 {
                return Err(format!("{part:?} appears twice"));
            }
            bits |= m.bit();
        }
        if bits & Method::None.bit() != 0 && bits != Method::None.bit() {
            return Err("\"none\" cannot be combined with another method".into());
        }
        if bits & Method::Bearer.bit() != 0 && bits & Method::Jwt.bit() != 0 {
            return Err("\"bearer\" and \"jwt\" share the Authorization header; combine either with \"hmac\"".into());
        }
        Ok(Combo(bits))
    }
}

/// A secret value (an HMAC key). Never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    /// Wraps a secret read from configuration.
    pub(crate) fn from_text(s: String) -> Secret {
        Secret(Arc::from(s.into_bytes()))
    }

    /// The bytes, for the code that must use them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
impl Combo {
    /// Parses a combination in unit tests.
    pub(crate) fn parse_for_tests(s: &str) -> Combo {
        Combo::parse(s).expect("valid combination")
    }
}

#[cfg(test)]
impl Secret {
    /// A secret for unit tests.
    pub(crate) fn for_tests(b: &[u8]) -> Secret {
        Secret(Arc::from(b))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

/// What a credential grants: identity, roles and scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Principal id.
    pub id: Arc<str>,
    /// Roles.
    pub roles: Arc<[Arc<str>]>,
    /// Scopes.
    pub scopes: Arc<[Arc<str>]>,
    /// Permissions (from a token's permissions claim).
    pub permissions: Arc<[Arc<str>]>,
}

/// `[[auth.bearer]]`, validated.
#[derive(Debug, Clone)]
pub struct BearerToken {
    /// SHA-256 of the token.
    pub sha256: [u8; 32],
    /// What it grants.
    pub grant: Grant,
}

/// Which string an HMAC client signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canonical {
    /// The seed's `METHOD|path|timestamp|body` (nonce, idempotency key and query not covered).
    V1,
    /// Palisade's form, covering every header that matters; see `controls::authn::hmac`.
    V2,
}

/// `[[auth.hmac.clients]]`, validated.
#[derive(Debug, Clone)]
pub struct HmacClient {
    /// `X-Key-Id` naming this client, if any.
    pub key_id: Option<String>,
    /// Shared secret.
    pub secret: Secret,
    /// Signed form.
    pub canonical: Canonical,
    /// What it grants.
    pub grant: Grant,
}

/// `[auth.hmac]`, validated.
#[derive(Debug, Clone)]
pub struct HmacConfig {
    /// Largest accepted clock difference.
    pub max_skew: Duration,
    /// Accepted `X-API-Version` values.
    pub api_versions: Vec<String>,
    /// Replay-store entries per client.
    pub replay_capacity: usize,
    /// `Idempotency-Key` required on POST.
    pub require_idempotency_key: bool,
    /// Clients.
    pub clients: Vec<HmacClient>,
}

/// `[auth]`, validated.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Default accepted combinations, in order of preference.
    pub methods: Vec<Combo>,
    /// Static tokens.
    pub bearer: Vec<BearerToken>,
    /// HMAC signing.
    pub hmac: HmacConfig,
    /// JSON Web Tokens.
    pub jwt: Option<JwtConfig>,
    /// OAuth 2.1 resource-server settings.
    pub oauth: Option<OAuthConfig>,
    /// Roles per client-certificate identity.
    pub mtls_roles: std::collections::BTreeMap<String, Vec<String>>,
}

/// `[auth.oauth]`, validated.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    /// Public base URL, without trailing slash.
    pub resource_base: String,
    /// Authorization servers for the metadata.
    pub authorization_servers: Vec<String>,
    /// Default required scopes.
    pub required_scopes: Vec<String>,
    /// `scopes_supported` (None: derived from the routes).
    pub scopes_supported: Option<Vec<String>>,
}

impl OAuthConfig {
    /// The resource identifier of route `name` (the audience its tokens must carry).
    pub fn resource(&self, name: &str) -> String {
        format!("{}/mcp/{name}", self.resource_base)
    }

    /// The hub's (`/mcp`) resource identifier.
    pub fn hub_resource(&self) -> String {
        format!("{}/mcp", self.resource_base)
    }

    /// Where the hub's Protected Resource Metadata is served.
    pub fn hub_metadata_url(&self) -> String {
        format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            self.resource_base
        )
    }

    /// Where the Protected Resource Metadata of route `name` is served.
    pub fn metadata_url(&self, name: &str) -> String {
        format!(
            "{}/.well-known/oauth-protected-resource/mcp/{name}",
            self.resource_base
        )
    }
}

impl AuthConfig {
    /// Whether any of `combos` lets a request in without a credential.
    pub fn allows_none(combos: &[Combo]) -> bool {
        combos.iter().any(|c| c.has(Method::None))
    }
}

/// Parses a list of combinations (`auth.methods` or a route's `auth`).
pub(super) fn combos(key: &str, list: &[String], e: &mut Errors) -> Vec<Combo> {
    if list.is_empty() {
        e.push(key, "must list at least one method");
    }
    let mut out = Vec::new();
    for (i, s) in list.iter().enumerate() {
        match Combo::parse(s) {
            Ok(c) if out.contains(&c) => e.push(format!("{key}[{i}]"), "listed twice"),
            Ok(c) => out.push(c),
            Err(w) => e.push(format!("{key}[{i}]"), w),
        }
    }
    out
}

/// Checks that every method used somewhere has what it needs.
pub(super) fn check_usable(key: &str, combos: &[Combo], auth: &AuthConfig, e: &mut Errors) {
    for c in combos {
        if c.has(Method::Bearer) && auth.bearer.is_empty() {
            e.push(
                key,
                "uses \"bearer\" but no [[auth.bearer]] token is configured",
            );
        }
        if c.has(Method::Jwt) && auth.jwt.is_none() {
            e.push(key, "uses \"jwt\" but [auth.jwt] is not configured");
        }
        if c.has(Method::Hmac) && auth.hmac.clients.is_empty() {
            e.push(
                key,
                "uses \"hmac\" but no [[auth.hmac.clients]] is configured",
            );
        }
    }
}

fn principal_id(key: &str, id: Option<&str>, e: &mut Errors) -> Arc<str> {
    match id {
        Some(id)
            if !id.is_empty()
                && id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.@:".contains(&b)) =>
        {
            Arc::from(id)
        }
        _ => {
            e.push(key, "required: 1-128 characters of A-Z a-z 0-9 _ - . @ :");
            Arc::from("")
        }
    }
}

fn names(list: &[String]) -> Arc<[Arc<str>]> {
    list.iter().map(|s| Arc::from(s.as_str())).collect()
}

/// Validates `[auth]`. `methods` is the parsed `auth.methods` (or the default).
pub(super) fn auth(
    raw: RawAuth,
    issuer: Option<&super::IssuerConfig>,
    env: &dyn Fn(&str) -> Option<String>,
    e: &mut Errors,
) -> AuthConfig {
    let has_credentials = !raw.bearer.is_empty()
        || !raw.hmac.clients.is_empty()
        || raw.jwt.is_some()
        || raw.mtls.is_some();
    let methods = match &raw.methods {
        Some(list) => combos("auth.methods", list, e),
        None if has_credentials => {
            // Tokens configured but no method named: do not silently run open.
            e.push(
                "auth.methods",
                "credentials are configured but auth.methods is not set; name the methods to accept",
            );
            Vec::new()
        }
        None => vec![Combo(Method::None.bit())],
    };
    let mut bearer = Vec::new();
    for (i, t) in raw.bearer.iter().enumerate() {
        let p = format!("auth.bearer[{i}]");
        let id = principal_id(&format!("{p}.id"), t.id.as_deref(), e);
        let hash = t
            .sha256
            .as_deref()
            .and_then(|h| expand(h, env).ok())
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| <[u8; 32]>::try_from(b).ok());
        let Some(sha256) = hash else {
            e.push(
                format!("{p}.sha256"),
                "required: 64 hex digits (palisade token generate prints it)",
            );
            continue;
        };
        if bearer.iter().any(|b: &BearerToken| b.sha256 == sha256) {
            e.push(format!("{p}.sha256"), "the same token is configured twice");
        }
        bearer.push(BearerToken {
            sha256,
            grant: Grant {
                id,
                roles: names(&t.roles),
                scopes: names(&t.scopes),
                permissions: Arc::from([]),
            },
        });
    }
    let h = raw.hmac;
    let clients_n = h.clients.len();
    let mut clients = Vec::new();
    for (i, c) in h.clients.into_iter().enumerate() {
        if let Some(c) = hmac_client(i, c, clients_n, env, e) {
            if c.key_id.is_some() && clients.iter().any(|o: &HmacClient| o.key_id == c.key_id) {
                e.push(
                    format!("auth.hmac.clients[{i}].key_id"),
                    "key_id used twice",
                );
            }
            clients.push(c);
        }
    }
    let api_versions = h.api_versions.unwrap_or_else(|| vec!["1.0.0".to_owned()]);
    if api_versions.is_empty() {
        e.push("auth.hmac.api_versions", "must list at least one version");
    }
    let hmac = HmacConfig {
        max_skew: Duration::from_secs(e.range(
            "auth.hmac.max_skew_secs",
            h.max_skew_secs,
            30,
            1,
            900,
        )),
        api_versions,
        replay_capacity: e.range(
            "auth.hmac.replay_capacity",
            h.replay_capacity,
            100_000,
            16,
            10_000_000,
        ) as usize,
        require_idempotency_key: h.require_idempotency_key.unwrap_or(true),
        clients,
    };
    let oauth = raw.oauth.map(|o| oauth(o, e));
    let mut jwt = raw.jwt.map(|j| {
        super::jwt::jwt(
            j,
            oauth.is_some() || issuer.is_some(),
            issuer.is_some(),
            env,
            e,
        )
    });
    // The built-in issuer's tokens are verified like any other JWT: its `iss` and default
    // audiences are accepted (its keys are added by the authenticator).
    if let Some(i) = issuer {
        let j = jwt.get_or_insert_with(super::jwt::JwtConfig::for_issuer);
        if !j.issuers.contains(&i.issuer) {
            j.issuers.push(i.issuer.clone());
        }
        for a in &i.audience {
            if !j.audiences.contains(a) {
                j.audiences.push(a.clone());
            }
        }
    }
    if oauth.is_some() && jwt.is_none() {
        e.push(
            "auth.oauth",
            "needs [auth.jwt] (or [issuer]) to verify the access tokens",
        );
    }
    let cfg = AuthConfig {
        methods,
        bearer,
        hmac,
        jwt,
        oauth,
        mtls_roles: raw.mtls.map(|m| m.roles).unwrap_or_default(),
    };
    check_usable("auth.methods", &cfg.methods, &cfg, e);
    cfg
}

fn hmac_client(
    i: usize,
    c: RawHmacClient,
    total: usize,
    env: &dyn Fn(&str) -> Option<String>,
    e: &mut Errors,
) -> Option<HmacClient> {
    let p = format!("auth.hmac.clients[{i}]");
    let before = e.0.len();
    let id = principal_id(&format!("{p}.id"), c.id.as_deref(), e);
    if total > 1 && c.key_id.is_none() {
        e.push(
            format!("{p}.key_id"),
            "required when several HMAC clients are configured",
        );
    }
    let secret = match c.secret.as_deref().map(|s| expand(s, env)) {
        Some(Ok(s)) if s.len() >= 32 => Some(Secret(Arc::from(s.into_bytes()))),
        Some(Ok(_)) => {
            e.push(format!("{p}.secret"), "must be at least 32 bytes");
            None
        }
        Some(Err(w)) => {
            e.push(format!("{p}.secret"), w);
            None
        }
        None => {
            e.push(format!("{p}.secret"), "required (use ${VAR})");
            None
        }
    };
    let canonical = match c.canonical.as_deref() {
        None | Some("v2") => Canonical::V2,
        Some("v1") => Canonical::V1,
        Some(other) => {
            e.push(
                format!("{p}.canonical"),
                format!("must be \"v1\" or \"v2\", got {other:?}"),
            );
            Canonical::V2
        }
    };
    if e.0.len() != before {
        return None;
    }
    Some(HmacClient {
        key_id: c.key_id,
        secret: secret?,
        canonical,
        grant: Grant {
            id,
            roles: names(&c.roles),
            scopes: names(&c.scopes),
            permissions: Arc::from([]),
        },
    })
}

fn oauth(o: super::raw::RawOAuth, e: &mut Errors) -> OAuthConfig {
    let url_ok = |u: &str| {
        u.parse::<http::Uri>().is_ok_and(|x| {
            matches!(x.scheme_str(), Some("http" | "https"))
                && x.host().is_some()
                && x.query().is_none()
                && !u.contains('#')
        })
    };
    let base = o.resource_base.unwrap_or_default();
    let base = base.trim_end_matches('/').to_owned();
    if !url_ok(&base) {
        e.push(
            "auth.oauth.resource_base",
            "required: the gateway's public URL, e.g. https://gateway.example.com",
        );
    }
    if o.authorization_servers.is_empty() {
        e.push(
            "auth.oauth.authorization_servers",
            "must list at least one authorization server",
        );
    }
    for (i, a) in o.authorization_servers.iter().enumerate() {
        if !url_ok(a) {
            e.push(
                format!("auth.oauth.authorization_servers[{i}]"),
                "must be an http(s) URL",
            );
        }
    }
    // RFC 6749 scope-token characters; they are quoted into WWW-Authenticate headers.
    let scope_ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
    };
    for (i, s) in o
        .required_scopes
        .iter()
        .chain(o.scopes_supported.iter().flatten())
        .enumerate()
    {
        if !scope_ok(s) {
            e.push(
                "auth.oauth",
                format!("scope #{i} {s:?} has characters not allowed in an OAuth scope"),
            );
        }
    }
    OAuthConfig {
        resource_base: base,
        authorization_servers: o.authorization_servers,
        required_scopes: o.required_scopes,
        scopes_supported: o.scopes_supported,
    }
}
