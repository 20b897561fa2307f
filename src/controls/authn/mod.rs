//! Authentication: turns a request into a [`Principal`], or refuses it.
//!
//! Each route accepts a list of method combinations in order of preference (`auth.methods`, or
//! the route's own `auth`): `none`, `bearer`, `jwt`, `hmac`, or several joined by `+` that must
//! all pass for the same principal (`jwt+hmac`). The first combination whose credentials are present
//! is the one verified; if it fails the request is refused — there is no falling through to a
//! weaker combination. A request with no credential for any combination is refused.
//!
//! It runs in two stages because HMAC signs the body: [`Authenticator::begin`] checks everything
//! in the headers before the body is read (so an unauthenticated client cannot make the gateway
//! buffer bodies), and [`Pending::finish`] verifies the signature over the body. Only `finish`
//! makes a [`Principal`], so every later step that takes a `&Principal` runs after
//! authentication by construction.
//!
//! Credentials are never accepted in the URL or in a cookie (they end up in logs and are sent by
//! browsers on their own), whatever the mode.

mod bearer;
mod hmac;
mod jwt;
mod replay;
mod trust;

pub use bearer::{generate as generate_token, BearerError};
pub use hmac::{sign, HmacError, SignFields};
pub use jwt::JwtError;
pub use replay::{MemoryReplayStore, ReplayStore, StoreFull};
pub use trust::{KeySet, Revoked, Trust};

use std::net::IpAddr;
use std::sync::Arc;

use http::{header, request::Parts};

use crate::config::{AuthConfig, Combo, Grant, ListenerConfig, Method, UpstreamConfig};

/// Who is calling. Only this module can make one.
#[derive(Debug, Clone)]
pub struct Principal {
    grant: Grant,
    client_ip: IpAddr,
    method: &'static str,
}

impl Principal {
    /// Stable identity (the key sessions are bound to).
    pub fn id(&self) -> &Arc<str> {
        &self.grant.id
    }

    /// Roles granted by the credential(s).
    pub fn roles(&self) -> &[Arc<str>] {
        &self.grant.roles
    }

    /// Scopes granted by the credential(s).
    pub fn scopes(&self) -> &[Arc<str>] {
        &self.grant.scopes
    }

    /// Permissions granted by the credential(s) (a token's permissions claim).
    pub fn permissions(&self) -> &[Arc<str>] {
        &self.grant.permissions
    }

    /// The client's address.
    pub fn client_ip(&self) -> IpAddr {
        self.client_ip
    }

    /// How it authenticated (`none`, `bearer`, `hmac`, `bearer+hmac`).
    pub fn method(&self) -> &'static str {
        self.method
    }
}

/// Why authentication failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthnError {
    /// A credential was presented in the query string.
    #[error("credential in query string")]
    CredentialInQuery,
    /// A credential was presented in a cookie.
    #[error("credential in cookie")]
    CredentialInCookie,
    /// No credential for any accepted method.
    #[error("no credential")]
    Missing,
    /// The static token was refused.
    #[error(transparent)]
    Bearer(#[from] BearerError),
    /// The HMAC signature was refused.
    #[error(transparent)]
    Hmac(#[from] HmacError),
    /// The JWT was refused.
    #[error(transparent)]
    Jwt(#[from] JwtError),
    /// The methods of a combination named different principals.
    #[error("credentials name different principals")]
    IdentityMismatch,
    /// The token lacks a scope the route requires (OAuth: 403 `insufficient_scope`).
    #[error("insufficient scope")]
    InsufficientScope,
}

/// The authenticator, built once from configuration.
#[derive(Debug)]
pub struct Authenticator {
    anonymous: Grant,
    /// Per listener, per route: the accepted combinations (`None`: not served there).
    listeners: Vec<Vec<Option<Vec<Combo>>>>,
    /// `auth.methods`: what the admin API accepts.
    admin: Vec<Combo>,
    oauth: Option<OAuth>,
    tokens: bearer::Tokens,
    hmac: hmac::Verifier,
    jwt: Option<jwt::Verifier>,
    mtls_roles: std::collections::BTreeMap<String, Arc<[Arc<str>]>>,
}

/// Per-route OAuth resource-server facts.
#[derive(Debug)]
struct OAuth {
    /// Each route's resource identifier (its tokens' audience).
    resources: Vec<String>,
    /// Each route's `WWW-Authenticate` parameters: metadata URL and required scopes.
    metadata: Vec<String>,
    required: Vec<Vec<String>>,
}

/// Headers verified; the body-dependent part (HMAC) is still to come.
#[derive(Debug)]
pub struct Pending<'a> {
    route: usize,
    authn: &'a Authenticator,
    combo: Combo,
    client_ip: IpAddr,
    bearer: Option<Grant>,
    hmac: Option<hmac::Claimed<'a>>,
    anonymous: &'a Grant,
}

impl Authenticator {
    /// Builds the authenticator; `routes` gives each route's accepted combinations by index;
    /// `fetcher` fetches JWKS and discovery documents (through the SSRF guard).
    pub fn new(
        cfg: &AuthConfig,
        routes: &[UpstreamConfig],
        hub: &crate::config::HubConfig,
        listeners: &[ListenerConfig],
        fetcher: crate::controls::ssrf::fetch::Fetcher,
        trust: Trust,
    ) -> Self {
        let store = Arc::new(MemoryReplayStore::new(cfg.hmac.replay_capacity));
        Authenticator {
            anonymous: Grant {
                id: Arc::from("anonymous"),
                roles: Arc::from([]),
                scopes: Arc::from([]),
                permissions: Arc::from([]),
            },
            listeners: listeners.iter().map(|l| l.routes.clone()).collect(),
            admin: cfg.methods.clone(),
            oauth: cfg.oauth.as_ref().map(|o| OAuth {
                // The hub (`/mcp`) is the route after the upstreams.
                resources: routes
                    .iter()
                    .map(|r| o.resource(&r.name))
                    .chain([o.hub_resource()])
                    .collect(),
                metadata: routes
                    .iter()
                    .map(|r| o.metadata_url(&r.name))
                    .chain([o.hub_metadata_url()])
                    .collect(),
                required: routes
                    .iter()
                    .map(|r| r.required_scopes.clone())
                    .chain([hub.required_scopes.clone()])
                    .collect(),
            }),
            tokens: bearer::Tokens::new(&cfg.bearer),
            hmac: hmac::Verifier::new(cfg.hmac.clone(), store),
            jwt: cfg
                .jwt
                .clone()
                .map(|j| jwt::Verifier::new(j, fetcher, trust)),
            mtls_roles: cfg
                .mtls_roles
                .iter()
                .map(|(k, v)| (k.clone(), v.iter().map(|r| Arc::from(r.as_str())).collect()))
                .collect(),
        }
    }

    /// Start-up work: fetches the JWKS once (a failure is logged; tokens then fail closed).
    pub async fn prefetch(&self) {
        if let Some(j) = &self.jwt {
            j.prefetch().await;
        }
    }

    /// Header stage for a request on `route`. `client_cert` is the identity of a verified TLS
    /// client certificate, if the connection has one. `now` is Unix seconds.
    pub async fn begin<'a>(
        &'a self,
        listener: usize,
        route: usize,
        parts: &'a Parts,
        client_ip: IpAddr,
        client_cert: Option<&Arc<str>>,
        now: u64,
    ) -> Result<Pending<'a>, AuthnError> {
        // A route not served on this listener has no combination: refused.
        let combos = self
            .listeners
            .get(listener)
            .and_then(|l| l.get(route))
            .and_then(Option::as_deref)
            .unwrap_or(&[]);
        self.begin_with(combos, route, parts, client_ip, client_cert, now)
            .await
    }

    /// Header stage for the admin API: the combinations of `auth.methods` (no route, so no
    /// OAuth audience of a route).
    pub async fn begin_admin<'a>(
        &'a self,
        parts: &'a Parts,
        client_ip: IpAddr,
        now: u64,
    ) -> Result<Pending<'a>, AuthnError> {
        self.begin_with(&self.admin, usize::MAX, parts, client_ip, None, now)
            .await
    }

    async fn begin_with<'a>(
        &'a self,
        combos: &[Combo],
        route: usize,
        parts: &'a Parts,
        client_ip: IpAddr,
        client_cert: Option<&Arc<str>>,
        now: u64,
    ) -> Result<Pending<'a>, AuthnError> {
        refuse_credentials_in_url_or_cookie(parts)?;
        let headers = &parts.headers;
        let mut auth = headers.get_all(header::AUTHORIZATION).iter();
        let authorization = auth.next();
        if auth.next().is_some() {
            return Err(BearerError::Repeated.into());
        }
        let signed = hmac::present(headers);
        // Static tokens and JWTs share the header: where a route accepts both, a value with
        // three dot-separated parts is a JWT.
        let jwt_shaped = authorization.is_some_and(|v| jwt::shaped(v.as_bytes()));
        let route_has_jwt = combos.iter().any(|c| c.has(Method::Jwt));
        let route_has_bearer = combos.iter().any(|c| c.has(Method::Bearer));
        // The first combination whose credentials are all present.
        let combo = combos
            .iter()
            .copied()
            .find(|c| {
                c.methods().all(|m| match m {
                    Method::None => true,
                    Method::Bearer => authorization.is_some() && !(route_has_jwt && jwt_shaped),
                    Method::Jwt => authorization.is_some() && (jwt_shaped || !route_has_bearer),
                    Method::Hmac => signed,
                    Method::Mtls => client_cert.is_some(),
                })
            })
            .ok_or(AuthnError::Missing)?;
        let bearer = match (
            combo.has(Method::Bearer),
            combo.has(Method::Jwt),
            authorization,
        ) {
            (true, _, Some(v)) => Some(self.tokens.verify(bearer::token(v.as_bytes())?)?.clone()),
            (_, true, Some(v)) => {
                let token = bearer::token(v.as_bytes())?;
                let verifier = self.jwt.as_ref().ok_or(AuthnError::Missing)?;
                let resource = self
                    .oauth
                    .as_ref()
                    .and_then(|o| o.resources.get(route))
                    .map(String::as_str);
                Some(verifier.verify(token, now, resource).await?)
            }
            _ => None,
        };
        // A client certificate's identity, with the roles configured for it.
        let bearer = match (combo.has(Method::Mtls), client_cert) {
            (true, Some(id)) => {
                let cert = Grant {
                    id: id.clone(),
                    roles: self
                        .mtls_roles
                        .get(&**id)
                        .cloned()
                        .unwrap_or_else(|| Arc::from([])),
                    scopes: Arc::from([]),
                    permissions: Arc::from([]),
                };
                match bearer {
                    None => Some(cert),
                    Some(g) if g.id == cert.id => Some(merge(&g, &cert)),
                    Some(_) => return Err(AuthnError::IdentityMismatch),
                }
            }
            _ => bearer,
        };
        let hmac = match combo.has(Method::Hmac) {
            true => Some(
                self.hmac
                    .claim(headers, parts.method == http::Method::POST, now)?,
            ),
            false => None,
        };
        Ok(Pending {
            route,
            authn: self,
            combo,
            client_ip,
            bearer,
            hmac,
            anonymous: &self.anonymous,
        })
    }
}

impl Pending<'_> {
    /// The identity a token or client certificate already proved, before the body stage
    /// (an HMAC signature that then fails was sent with that identity's valid credential).
    pub fn verified(&self) -> Option<&Arc<str>> {
        self.bearer.as_ref().map(|g| &g.id)
    }

    /// Body stage: verifies what needs the body and makes the principal.
    pub fn finish(self, parts: &Parts, body: &[u8], now: u64) -> Result<Principal, AuthnError> {
        let mut grant: Option<Grant> = self.bearer;
        if let Some(claim) = self.hmac {
            let client = claim.client();
            claim.verify(
                parts.method.as_str(),
                parts.uri.path(),
                parts.uri.query().unwrap_or(""),
                body,
                now,
            )?;
            grant = Some(match grant {
                None => client.grant.clone(),
                Some(g) if g.id == client.grant.id => merge(&g, &client.grant),
                Some(_) => return Err(AuthnError::IdentityMismatch),
            });
        }
        let grant = grant.unwrap_or_else(|| self.anonymous.clone());
        if let Some(o) = &self.authn.oauth {
            let required = o.required.get(self.route).map(Vec::as_slice).unwrap_or(&[]);
            if !required.iter().all(|r| has_scope(&grant.scopes, r)) {
                return Err(AuthnError::InsufficientScope);
            }
        }
        Ok(Principal {
            grant,
            client_ip: self.client_ip,
            method: self.combo.label(),
        })
    }
}

/// Scopes form a hierarchy by `:`: `mcp:tools` grants `mcp:tools:call`.
fn has_scope(granted: &[Arc<str>], required: &str) -> bool {
    granted.iter().any(|g| {
        required == &**g
            || required
                .strip_prefix(&**g)
                .is_some_and(|rest| rest.starts_with(':'))
    })
}

impl Authenticator {
    /// The `WWW-Authenticate` challenge for a refusal on `route` (RFC 6750 / RFC 9728): where
    /// the Protected Resource Metadata is and which scopes are needed.
    pub fn challenge(&self, route: Option<usize>, err: Option<&AuthnError>) -> String {
        let Some((o, r)) = self.oauth.as_ref().zip(route) else {
            return "Bearer realm=\"palisade\"".to_owned();
        };
        let mut h = String::from("Bearer");
        match err {
            Some(AuthnError::InsufficientScope) => h.push_str(" error=\"insufficient_scope\","),
            Some(AuthnError::Missing) | None => {}
            Some(_) => h.push_str(" error=\"invalid_token\","),
        }
        if let Some(m) = o.metadata.get(r) {
            h.push_str(&format!(" resource_metadata=\"{m}\""));
        }
        if let Some(req) = o.required.get(r).filter(|s| !s.is_empty()) {
            h.push_str(&format!(", scope=\"{}\"", req.join(" ")));
        }
        h
    }
}

/// The same principal proven two ways holds what each credential grants.
fn merge(a: &Grant, b: &Grant) -> Grant {
    let union = |x: &[Arc<str>], y: &[Arc<str>]| -> Arc<[Arc<str>]> {
        let mut v: Vec<Arc<str>> = x.to_vec();
        v.extend(y.iter().filter(|s| !x.contains(s)).cloned());
        v.into()
    };
    Grant {
        id: a.id.clone(),
        roles: union(&a.roles, &b.roles),
        scopes: union(&a.scopes, &b.scopes),
        permissions: union(&a.permissions, &b.permissions),
    }
}

/// Query parameters and cookie names that carry credentials by common convention.
const CREDENTIAL_NAMES: &[&str] = &[
    "access_token",
    "api_key",
    "apikey",
    "token",
    "auth_token",
    "id_token",
    "jwt",
    "authorization",
];

fn refuse_credentials_in_url_or_cookie(parts: &Parts) -> Result<(), AuthnError> {
    let named = |k: &str| {
        CREDENTIAL_NAMES
            .iter()
            .any(|n| k.trim().eq_ignore_ascii_case(n))
    };
    if let Some(q) = parts.uri.query() {
        if q.split('&')
            .any(|kv| named(kv.split('=').next().unwrap_or("")))
        {
            return Err(AuthnError::CredentialInQuery);
        }
    }
    for c in parts.headers.get_all(header::COOKIE) {
        let text = String::from_utf8_lossy(c.as_bytes());
        if text
            .split(';')
            .any(|kv| named(kv.split('=').next().unwrap_or("")))
        {
            return Err(AuthnError::CredentialInCookie);
        }
    }
    Ok(())
}

impl Authenticator {
    /// An authenticated principal (`method`, e.g. `bearer` or `bearer+hmac`) with these roles
    /// and `permissions` claim, as if a credential had said so: for tests and benchmarks of
    /// what comes after authentication, never for the request path.
    #[doc(hidden)]
    pub fn test_principal_as(
        id: &str,
        method: &'static str,
        roles: &[&str],
        permissions: &[&str],
    ) -> Principal {
        let arcs = |v: &[&str]| v.iter().map(|r| Arc::from(*r)).collect::<Vec<_>>().into();
        Principal {
            grant: Grant {
                id: Arc::from(id),
                roles: arcs(roles),
                scopes: Arc::from([]),
                permissions: arcs(permissions),
            },
            client_ip: IpAddr::from([127, 0, 0, 1]),
            method,
        }
    }
}

#[cfg(test)]
impl Authenticator {
    /// A principal for tests of later controls.
    pub(crate) fn test_principal(id: &str) -> Principal {
        Principal {
            grant: Grant {
                id: Arc::from(id),
                roles: Arc::from([]),
                scopes: Arc::from([]),
                permissions: Arc::from([]),
            },
            client_ip: IpAddr::from([127, 0, 0, 1]),
            method: "none",
        }
    }
}

#[cfg(test)]
mod tests;
