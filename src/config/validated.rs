//! Validated configuration: types that cannot hold an invalid state, built once at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::Uri;

use super::auth::{self, AuthConfig, Combo};
use super::raw::RawConfig;
use super::upstream::{upstream, UpstreamConfig};
use super::ConfigError;

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listener address.
    pub listen: SocketAddr,
    /// Data directory (audit database, signing key).
    pub data_dir: PathBuf,
    /// Log format.
    pub log_format: LogFormat,
    /// Message limits.
    pub limits: LimitsConfig,
    /// Sessions.
    pub sessions: SessionConfig,
    /// Origin/Host checks.
    pub origins: OriginConfig,
    /// Audit trail.
    pub audit: AuditConfig,
    /// TLS on the listener.
    pub tls: Option<super::TlsConfig>,
    /// Every listener, the primary (`listen`, `[tls]`) first.
    pub listeners: Vec<ListenerConfig>,
    /// Authentication.
    pub auth: AuthConfig,
    /// Idempotent replays.
    pub idempotency: IdempotencyConfig,
    /// `[output]`.
    pub output: super::OutputConfig,
    /// `[ssrf]`.
    pub ssrf: super::SsrfConfig,
    /// `[pinning]`.
    pub pinning: super::PinningConfig,
    /// `[network]`.
    pub network: super::NetworkConfig,
    /// `[[rate_limit]]`.
    pub rate_limits: Vec<super::RateLimitRule>,
    /// `[concurrency]`.
    pub concurrency: super::ConcurrencyConfig,
    /// `[connections]`.
    pub connections: super::ConnectionsConfig,
    /// `[abuse]`.
    pub abuse: super::AbuseConfig,
    /// `[admin]`.
    pub admin: super::AdminConfig,
    /// The built-in token issuer.
    pub issuer: Option<super::IssuerConfig>,
    /// `dangerous.allow_unauthenticated_non_loopback`.
    pub allow_unauthenticated_non_loopback: bool,
    /// Upstreams, in file order; names are unique.
    pub upstreams: Vec<UpstreamConfig>,
    /// The aggregated endpoint `/mcp`; its route index is `upstreams.len()`.
    pub hub: super::HubConfig,
    /// Limits of stdio children.
    pub stdio: super::StdioLimits,
    /// Roles and permissions.
    pub authz: super::AuthzConfig,
}

/// `[limits]`, validated.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Deepest JSON nesting.
    pub max_json_depth: usize,
    /// Largest inspected JSON response.
    pub max_response_bytes: usize,
    /// Longest wait for an audit queue slot.
    pub audit_wait: Duration,
    /// Most rate-limit counters tracked.
    pub max_rate_limit_keys: usize,
}

/// `[sessions]`, validated.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Most live sessions.
    pub max: usize,
    /// Idle time before reaping.
    pub idle_timeout: Duration,
    /// SSE keep-alive interval; `None` disables.
    pub sse_keepalive: Option<Duration>,
}

/// `[origins]`, validated.
#[derive(Debug, Clone, Default)]
pub struct OriginConfig {
    /// Extra allowed origins, lowercased `scheme://host[:port]`.
    pub allowed_origins: Vec<String>,
    /// Extra allowed host names, lowercased.
    pub allowed_hosts: Vec<String>,
}

/// `[audit]`, validated.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// SQLite file.
    pub path: PathBuf,
    /// Queue capacity.
    pub queue: usize,
    /// Records between checkpoints.
    pub checkpoint_every: u64,
    /// Time between checkpoints.
    pub checkpoint_interval: Duration,
}

/// One listener, validated.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Address.
    pub listen: SocketAddr,
    /// TLS.
    pub tls: Option<super::TlsConfig>,
    /// Per route (by index; the hub last, at `upstreams.len()`): the accepted authentication
    /// there, or `None` if the route is not served on this listener.
    pub routes: Vec<Option<Vec<Combo>>>,
}

/// `[idempotency]`, validated.
#[derive(Debug, Clone)]
pub struct IdempotencyConfig {
    /// How long a stored response answers a repeated key.
    pub ttl: Duration,
    /// Stored responses kept at most.
    pub capacity: usize,
    /// Largest response stored.
    pub max_response_bytes: usize,
}

#[derive(Default)]
pub(super) struct Errors(pub(super) Vec<ConfigError>);

impl Errors {
    pub(super) fn push(&mut self, key: impl Into<String>, why: impl Into<String>) {
        self.0.push(ConfigError {
            key: key.into(),
            why: why.into(),
        });
    }

    /// `Some(v)` if `v` is within `lo..=hi`, else records an error.
    pub(super) fn range(
        &mut self,
        key: &str,
        v: Option<u64>,
        default: u64,
        lo: u64,
        hi: u64,
    ) -> u64 {
        let v = v.unwrap_or(default);
        if !(lo..=hi).contains(&v) {
            self.push(key, format!("must be between {lo} and {hi}, got {v}"));
            return default;
        }
        v
    }
}

/// Route names appear in URLs and (later) in namespaced tool names: keep them plain.
pub(super) fn valid_route_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Replaces every `${VAR}` with the variable's value; an unset variable is an error.
pub(super) fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unterminated ${".to_owned())?;
        let var = &after[..end];
        if var.is_empty() || !var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("invalid variable name {var:?}"));
        }
        // The value is a secret: never echo it, only its name.
        out.push_str(&env(var).ok_or_else(|| format!("environment variable {var} is not set"))?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl Config {
    /// Converts raw configuration into validated types, reporting every problem.
    pub fn try_from_raw(
        raw: RawConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, Vec<ConfigError>> {
        let mut e = Errors(Vec::new());
        let listen = match raw
            .listen
            .as_deref()
            .unwrap_or("127.0.0.1:8700")
            .parse::<SocketAddr>()
        {
            Ok(a) => a,
            Err(_) => {
                e.push("listen", "not an IP:port address");
                SocketAddr::from(([127, 0, 0, 1], 8700))
            }
        };
        let log_format = match raw.log_format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                e.push(
                    "log_format",
                    format!("must be \"text\" or \"json\", got {other:?}"),
                );
                LogFormat::Text
            }
        };
        let data_dir = PathBuf::from(raw.data_dir.as_deref().unwrap_or("palisade-data"));
        let limits = LimitsConfig {
            max_body_bytes: e.range(
                "limits.max_body_bytes",
                raw.limits.max_body_bytes,
                1 << 20,
                256,
                64 << 20,
            ) as usize,
            max_json_depth: e.range(
                "limits.max_json_depth",
                raw.limits.max_json_depth,
                64,
                4,
                512,
            ) as usize,
            max_response_bytes: e.range(
                "limits.max_response_bytes",
                raw.limits.max_response_bytes,
                16 << 20,
                1024,
                1 << 30,
            ) as usize,
            audit_wait: Duration::from_secs(e.range(
                "limits.audit_wait_secs",
                raw.limits.audit_wait_secs,
                5,
                1,
                300,
            )),
            max_rate_limit_keys: e.range(
                "limits.max_rate_limit_keys",
                raw.limits.max_rate_limit_keys,
                1_000_000,
                64,
                100_000_000,
            ) as usize,
        };
        let keepalive = e.range(
            "sessions.sse_keepalive_secs",
            raw.sessions.sse_keepalive_secs,
            15,
            0,
            3600,
        );
        let sessions = SessionConfig {
            max: e.range("sessions.max", raw.sessions.max, 10_000, 1, 10_000_000) as usize,
            idle_timeout: Duration::from_secs(e.range(
                "sessions.idle_timeout_secs",
                raw.sessions.idle_timeout_secs,
                1800,
                1,
                7 * 86400,
            )),
            sse_keepalive: (keepalive > 0).then(|| Duration::from_secs(keepalive)),
        };
        let mut origins = OriginConfig::default();
        for (i, o) in raw.origins.allowed_origins.iter().enumerate() {
            match o.parse::<Uri>() {
                Ok(u)
                    if matches!(u.scheme_str(), Some("http" | "https"))
                        && u.host().is_some()
                        && u.path() == "/"
                        && !o.ends_with('/') =>
                {
                    origins.allowed_origins.push(o.to_ascii_lowercase())
                }
                _ => e.push(
                    format!("origins.allowed_origins[{i}]"),
                    "must be scheme://host[:port] with no path",
                ),
            }
        }
        for (i, h) in raw.origins.allowed_hosts.iter().enumerate() {
            if h.is_empty() || h.contains(['/', ':', ' ']) && !h.starts_with('[') {
                e.push(
                    format!("origins.allowed_hosts[{i}]"),
                    "must be a host name without port",
                );
            } else {
                origins.allowed_hosts.push(h.to_ascii_lowercase());
            }
        }
        let audit = AuditConfig {
            path: raw
                .audit
                .path
                .as_deref()
                .map(PathBuf::from)
                .unwrap_or_else(|| data_dir.join("audit.db")),
            queue: e.range("audit.queue", raw.audit.queue, 8192, 16, 1 << 20) as usize,
            checkpoint_every: e.range(
                "audit.checkpoint_every",
                raw.audit.checkpoint_every,
                1000,
                1,
                1 << 30,
            ),
            checkpoint_interval: Duration::from_secs(e.range(
                "audit.checkpoint_interval_secs",
                raw.audit.checkpoint_interval_secs,
                60,
                1,
                86400,
            )),
        };
        let tls = raw.tls.and_then(|t| super::tls::tls(t, &mut e));
        let issuer = raw.issuer.map(|i| super::issuer::issuer(i, env, &mut e));
        let auth = auth::auth(raw.auth, issuer.as_ref(), env, &mut e);
        let idempotency = IdempotencyConfig {
            ttl: Duration::from_secs(e.range(
                "idempotency.ttl_secs",
                raw.idempotency.ttl_secs,
                86_400,
                1,
                30 * 86_400,
            )),
            capacity: e.range(
                "idempotency.capacity",
                raw.idempotency.capacity,
                10_000,
                1,
                10_000_000,
            ) as usize,
            max_response_bytes: e.range(
                "idempotency.max_response_bytes",
                raw.idempotency.max_response_bytes,
                1 << 20,
                1024,
                64 << 20,
            ) as usize,
        };
        let allow_open = raw
            .dangerous
            .allow_unauthenticated_non_loopback
            .unwrap_or(false);
        let hub = super::hub::hub(raw.hub, &auth, &mut e);
        let stdio = super::hub::stdio_limits(raw.stdio, &mut e);
        let mut upstreams: Vec<UpstreamConfig> = Vec::new();
        for (i, u) in raw.upstream.into_iter().enumerate() {
            if let Some(up) = upstream(i, u, env, &auth, &raw.circuit_breaker, &mut e) {
                if upstreams.iter().any(|o| o.name == up.name) {
                    e.push(
                        format!("upstream[{i}].name"),
                        format!("duplicate upstream name {:?}", up.name),
                    );
                } else {
                    upstreams.push(up);
                }
            }
        }
        let mtls_ready = tls.as_ref().is_some_and(|t| t.client_ca_file.is_some());
        let mtls_used = auth
            .methods
            .iter()
            .chain(upstreams.iter().flat_map(|u| u.auth.iter()))
            .chain(hub.auth.iter())
            .any(|c| c.has(super::Method::Mtls));
        if mtls_used && !mtls_ready {
            e.push(
                "auth.methods",
                "uses \"mtls\" but [tls] has no client_ca_file to verify client certificates",
            );
        }
        let mut listeners = vec![ListenerConfig {
            listen,
            tls: tls.clone(),
            routes: upstreams
                .iter()
                .map(|u| Some(u.auth.clone()))
                .chain([hub.enabled.then(|| hub.auth.clone())])
                .collect(),
        }];
        for (i, l) in raw.listener.into_iter().enumerate() {
            let p = format!("listener[{i}]");
            let Some(addr) = l
                .listen
                .as_deref()
                .and_then(|a| a.parse::<SocketAddr>().ok())
            else {
                e.push(format!("{p}.listen"), "required: an IP:port address");
                continue;
            };
            if listeners
                .iter()
                .any(|o| o.listen == addr && addr.port() != 0)
            {
                e.push(format!("{p}.listen"), "address used by another listener");
            }
            let ltls = l.tls.and_then(|t| super::tls::tls(t, &mut e));
            let methods = l.methods.map(|m| {
                let c = auth::combos(&format!("{p}.methods"), &m, &mut e);
                auth::check_usable(&format!("{p}.methods"), &c, &auth, &mut e);
                c
            });
            if let Some(names) = &l.routes {
                for n in names {
                    if !upstreams.iter().any(|u| &u.name == n) {
                        e.push(format!("{p}.routes"), format!("no upstream named {n:?}"));
                    }
                }
            }
            let pick = |own: &Option<Vec<Combo>>| match (own, &methods) {
                (Some(own), _) => own.clone(),
                (None, Some(m)) => m.clone(),
                (None, None) => auth.methods.clone(),
            };
            let hub_here = hub.enabled && l.hub.unwrap_or(l.routes.is_none());
            let routes = upstreams
                .iter()
                .map(|u| {
                    let served = l.routes.as_ref().is_none_or(|r| r.contains(&u.name));
                    served.then(|| pick(&u.auth_own))
                })
                .chain([hub_here.then(|| pick(&hub.auth_own))])
                .collect();
            listeners.push(ListenerConfig {
                listen: addr,
                tls: ltls,
                routes,
            });
        }
        for (li, l) in listeners.iter().enumerate().skip(1) {
            let key = format!("listener[{}]", li - 1);
            let served = || {
                l.routes
                    .iter()
                    .zip(
                        upstreams
                            .iter()
                            .map(|u| u.name.as_str())
                            .chain(["/mcp (hub)"]),
                    )
                    .filter_map(|(c, u)| c.as_ref().map(|c| (c, u)))
            };
            let mtls_ready = l.tls.as_ref().is_some_and(|t| t.client_ca_file.is_some());
            if !mtls_ready && served().any(|(c, _)| c.iter().any(|c| c.has(super::Method::Mtls))) {
                e.push(
                    &key,
                    "a route here uses \"mtls\" but this listener's TLS has no client_ca_file",
                );
            }
            let open: Vec<&str> = served()
                .filter(|(c, _)| AuthConfig::allows_none(c))
                .map(|(_, u)| u)
                .collect();
            if !l.listen.ip().is_loopback() && !open.is_empty() && !allow_open {
                e.push(
                    &key,
                    format!(
                        "{} is not a loopback address and {} accept(s) method \"none\" there: anyone who can reach it could use them",
                        l.listen,
                        open.join(", ")
                    ),
                );
            }
        }
        let mut open: Vec<&str> = upstreams
            .iter()
            .filter(|u| AuthConfig::allows_none(&u.auth))
            .map(|u| u.name.as_str())
            .collect();
        if hub.enabled && AuthConfig::allows_none(&hub.auth) {
            open.push("/mcp (hub)");
        }
        if open.is_empty() && AuthConfig::allows_none(&auth.methods) {
            open.push("auth.methods");
        }
        if !listen.ip().is_loopback() && !open.is_empty() && !allow_open {
            e.push(
                "listen",
                format!(
                    "{listen} is not a loopback address and {} accept(s) method \"none\": anyone who can reach it \
                     could use them. Listen on 127.0.0.1, configure authentication, or set \
                     dangerous.allow_unauthenticated_non_loopback = true",
                    open.join(", ")
                ),
            );
        }
        let authz_given = raw.authz.is_some();
        let authz = super::authz::authz(raw.authz, &mut e);
        let authenticates = listeners
            .iter()
            .flat_map(|l| l.routes.iter().flatten().flatten())
            .any(|c| !c.has(super::Method::None));
        if authenticates && !authz_given {
            e.push(
                "authz",
                "routes authenticate but there is no [authz]: nobody would be allowed anything. \
                 Add [authz] with roles (see README, Authorization)",
            );
        }
        let ssrf = super::ssrf::ssrf(raw.ssrf, &mut e);
        let pinning = super::pinning::pinning(raw.pinning, &data_dir, &mut e);
        let network = super::traffic::network(raw.network, &mut e);
        let rate_limits = super::traffic::rate_limits(raw.rate_limit, &mut e);
        let concurrency = super::traffic::concurrency(raw.concurrency, &mut e);
        let connections = super::traffic::connections(raw.connections, &mut e);
        let abuse = super::abuse::abuse(raw.abuse, &mut e);
        let admin = super::abuse::admin(raw.admin, AuthConfig::allows_none(&auth.methods), &mut e);
        if upstreams.is_empty() && e.0.is_empty() {
            e.push("upstream", "at least one [[upstream]] is required");
        }
        if !e.0.is_empty() {
            return Err(e.0);
        }
        Ok(Config {
            listen,
            data_dir,
            log_format,
            limits,
            sessions,
            origins,
            audit,
            tls,
            listeners,
            auth,
            idempotency,
            output: super::output::output(raw.output),
            ssrf,
            pinning,
            network,
            rate_limits,
            concurrency,
            connections,
            abuse,
            admin,
            issuer,
            allow_unauthenticated_non_loopback: allow_open,
            upstreams,
            hub,
            stdio,
            authz,
        })
    }
}
impl Config {
    /// The URLs in the configuration the gateway itself fetches from (JWKS, OIDC discovery,
    /// upstream OAuth token endpoints): their ports are allowed to the SSRF guard of those
    /// fetches.
    pub fn fetched_urls(&self) -> Vec<Uri> {
        let jwt = self.auth.jwt.as_ref();
        let discovery = jwt
            .and_then(|j| j.oidc_issuer.as_deref())
            .and_then(|i| format!("{i}/.well-known/openid-configuration").parse().ok());
        jwt.and_then(|j| j.jwks_url.clone())
            .into_iter()
            .chain(discovery)
            .chain(
                self.upstreams
                    .iter()
                    .filter_map(|u| u.oauth.as_ref().map(|o| o.token_url.clone())),
            )
            .chain(self.abuse.alert_webhook.clone())
            .collect()
    }
}
