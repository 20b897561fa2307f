//! One `[[upstream]]`, validated: where it lives (URL or stdio command), what the gateway sends
//! it, and the per-upstream controls (tools, breaker, outbound policy).

use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};

use super::auth::{self, AuthConfig, Combo};
use super::raw::RawUpstream;
use super::validated::{expand, valid_route_name, Errors};

/// Where an upstream lives.
#[derive(Debug, Clone)]
pub enum UpstreamTarget {
    /// A Streamable-HTTP endpoint.
    Url(Uri),
    /// The bundled demo server, started in-process on a loopback port.
    BuiltinDemo,
    /// A stdio server the gateway starts and supervises.
    Stdio(super::StdioTarget),
}

/// One upstream, validated.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Route name (`/mcp/{name}`).
    pub name: String,
    /// Where it is.
    pub target: UpstreamTarget,
    /// Headers injected on every upstream request.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Time to response headers.
    pub timeout: Duration,
    /// Accepted authentication, in order of preference (the route's own or `auth.methods`).
    pub auth: Vec<Combo>,
    /// The route's own `auth`, if it set one (it wins over a listener's `methods`).
    pub auth_own: Option<Vec<Combo>>,
    /// OAuth scopes a token must carry here (the route's own or `auth.oauth.required_scopes`).
    pub required_scopes: Vec<String>,
    /// The gateway's own OAuth credential for the upstream.
    pub oauth: Option<UpstreamOAuth>,
    /// Who shares one upstream session or child.
    pub isolation: super::Isolation,
    /// Aggregated at `/mcp`.
    pub in_hub: bool,
    /// The era the hub speaks to it.
    pub protocol: super::UpstreamProtocol,
    /// Roles allowed to use it (`None`: no restriction beyond permissions).
    pub roles: Option<Vec<String>>,
    /// Per-tool metadata.
    pub tools: Vec<super::ToolMeta>,
    /// Its circuit breaker.
    pub breaker: super::BreakerConfig,
    /// The gateway's manners towards it.
    pub outbound: super::OutboundConfig,
}

/// `[upstream.oauth]`, validated.
#[derive(Debug, Clone)]
pub struct UpstreamOAuth {
    /// Token endpoint.
    pub token_url: Uri,
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: super::Secret,
    /// Scopes to request.
    pub scope: Option<String>,
    /// Resource to request.
    pub resource: Option<String>,
    /// Refresh margin.
    pub refresh_before: Duration,
    /// RFC 8693 token exchange of the caller's JWT instead of client_credentials.
    pub token_exchange: bool,
}

pub(super) fn upstream(
    i: usize,
    mut u: RawUpstream,
    env: &dyn Fn(&str) -> Option<String>,
    auth: &AuthConfig,
    breakers: &super::breaker::RawBreaker,
    e: &mut Errors,
) -> Option<UpstreamConfig> {
    let p = format!("upstream[{i}]");
    let before = e.0.len();
    let breaker = super::breaker::breaker(
        &format!("{p}.circuit_breaker"),
        u.circuit_breaker.as_ref().unwrap_or(&Default::default()),
        breakers,
        e,
    );
    let outbound = super::traffic::outbound(&format!("{p}.outbound"), u.outbound.take(), e);
    let name = u.name.unwrap_or_default();
    if !valid_route_name(&name) {
        e.push(
            format!("{p}.name"),
            "required: 1-64 characters of a-z, 0-9 and -",
        );
    }
    let isolation = super::hub::isolation(&p, u.isolation.as_deref(), e);
    let protocol = super::hub::upstream_protocol(&p, u.protocol.as_deref(), e);
    let stdio = u.command.map(|command| super::hub::RawStdioUpstream {
        command,
        args: u.args,
        env: u.env,
        start: u.start,
        sandbox: u.sandbox,
    });
    let target = match (u.url, u.builtin.as_deref()) {
        _ if stdio.is_some() && (u.builtin.is_some()) => {
            e.push(&p, "set one of url, builtin or command");
            None
        }
        (Some(_), None) if stdio.is_some() => {
            e.push(&p, "set one of url, builtin or command");
            None
        }
        (None, None) if stdio.is_some() => stdio
            .and_then(|s| super::hub::stdio_target(&p, s, env, e))
            .map(UpstreamTarget::Stdio),
        (Some(url), None) => match expand(&url, env)
            .and_then(|s| s.parse::<Uri>().map_err(|x| x.to_string()))
        {
            Ok(uri)
                if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() =>
            {
                Some(UpstreamTarget::Url(uri))
            }
            Ok(_) => {
                e.push(format!("{p}.url"), "must be an http:// or https:// URL");
                None
            }
            Err(w) => {
                e.push(format!("{p}.url"), w);
                None
            }
        },
        (None, Some("demo")) => Some(UpstreamTarget::BuiltinDemo),
        (None, Some(other)) => {
            e.push(
                format!("{p}.builtin"),
                format!("unknown builtin {other:?}; known: \"demo\""),
            );
            None
        }
        (Some(_), Some(_)) => {
            e.push(&p, "set either url or builtin, not both");
            None
        }
        (None, None) => {
            e.push(&p, "url (or builtin, or command) is required");
            None
        }
    };
    let mut headers = Vec::new();
    for (k, v) in u.headers {
        let key = format!("{p}.headers.{k}");
        let name = match HeaderName::from_bytes(k.as_bytes()) {
            Ok(n) => n,
            Err(_) => {
                e.push(key, "not a valid header name");
                continue;
            }
        };
        match expand(&v, env) {
            Ok(val) => match HeaderValue::from_str(&val) {
                Ok(mut hv) => {
                    hv.set_sensitive(true);
                    headers.push((name, hv));
                }
                Err(_) => e.push(key, "value is not a valid header value"),
            },
            Err(w) => e.push(key, w),
        }
    }
    let connect_timeout = Duration::from_millis(e.range(
        &format!("{p}.connect_timeout_ms"),
        u.connect_timeout_ms,
        2000,
        1,
        60_000,
    ));
    let timeout =
        Duration::from_secs(e.range(&format!("{p}.timeout_secs"), u.timeout_secs, 60, 1, 3600));
    let auth_own = u.auth.as_ref().map(|list| {
        let key = format!("{p}.auth");
        let c = auth::combos(&key, list, e);
        auth::check_usable(&key, &c, auth, e);
        c
    });
    let methods = auth_own.clone().unwrap_or_else(|| auth.methods.clone());
    let oauth = u.oauth.and_then(|o| {
        let k = |f: &str| format!("{p}.oauth.{f}");
        let token_url = match o.token_url.as_deref().map(|t| expand(t, env)) {
            Some(Ok(t)) => match t.parse::<Uri>() {
                Ok(uri)
                    if matches!(uri.scheme_str(), Some("http" | "https"))
                        && uri.host().is_some() =>
                {
                    Some(uri)
                }
                _ => {
                    e.push(k("token_url"), "must be an http(s) URL");
                    None
                }
            },
            Some(Err(w)) => {
                e.push(k("token_url"), w);
                None
            }
            None => {
                e.push(k("token_url"), "required");
                None
            }
        };
        let client_id = o.client_id.filter(|c| !c.is_empty());
        if client_id.is_none() {
            e.push(k("client_id"), "required");
        }
        let secret = match o.client_secret.as_deref().map(|t| expand(t, env)) {
            Some(Ok(t)) if !t.is_empty() => Some(super::Secret::from_text(t)),
            Some(Ok(_)) | None => {
                e.push(k("client_secret"), "required (use ${VAR})");
                None
            }
            Some(Err(w)) => {
                e.push(k("client_secret"), w);
                None
            }
        };
        let refresh_before = Duration::from_secs(e.range(
            &k("refresh_before_secs"),
            o.refresh_before_secs,
            60,
            0,
            86_400,
        ));
        let token_exchange = match o.grant.as_deref() {
            None | Some("client_credentials") => false,
            Some("token_exchange") => true,
            Some(other) => {
                e.push(
                    k("grant"),
                    format!("must be \"client_credentials\" or \"token_exchange\", got {other:?}"),
                );
                false
            }
        };
        Some(UpstreamOAuth {
            token_url: token_url?,
            client_id: client_id?,
            client_secret: secret?,
            scope: o.scope,
            resource: o.resource,
            refresh_before,
            token_exchange,
        })
    });
    let required_scopes = match (u.required_scopes, &auth.oauth) {
        (Some(s), Some(_)) => {
            if s.iter()
                .any(|x| x.is_empty() || x.contains([' ', '"', '\\']))
            {
                e.push(
                    format!("{p}.required_scopes"),
                    "scopes cannot contain spaces, quotes or backslashes",
                );
            }
            s
        }
        (Some(_), None) => {
            e.push(
                format!("{p}.required_scopes"),
                "needs [auth.oauth] (scopes come from OAuth access tokens)",
            );
            Vec::new()
        }
        (None, Some(o)) => o.required_scopes.clone(),
        (None, None) => Vec::new(),
    };
    let tools = super::authz::tools(&p, u.tools, e);
    if e.0.len() != before {
        return None;
    }
    Some(UpstreamConfig {
        name,
        target: target?,
        headers,
        connect_timeout,
        timeout,
        auth: methods,
        auth_own,
        required_scopes,
        oauth,
        isolation,
        in_hub: u.hub.unwrap_or(true),
        protocol,
        roles: u.roles,
        tools,
        breaker,
        outbound,
    })
}
