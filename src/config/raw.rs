//! The configuration file as written: plain serde structs, unknown keys refused everywhere.

use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;

use super::ConfigError;

/// Top level of the configuration file.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Address of the gateway's listener, e.g. `127.0.0.1:8700`.
    pub listen: Option<String>,
    /// Directory for the audit database and the gateway's signing key.
    pub data_dir: Option<String>,
    /// `text` (default) or `json` logs.
    pub log_format: Option<String>,
    /// Message size and shape limits.
    #[serde(default)]
    pub limits: RawLimits,
    /// Downstream session handling.
    #[serde(default)]
    pub sessions: RawSessions,
    /// Origin and Host checks (DNS-rebinding protection).
    #[serde(default)]
    pub origins: RawOrigins,
    /// The audit trail.
    #[serde(default)]
    pub audit: RawAudit,
    /// TLS on the listener (rustls); mTLS with `client_ca_file`.
    pub tls: Option<RawTls>,
    /// Authentication of clients.
    #[serde(default)]
    pub auth: RawAuth,
    /// The built-in token issuer (`/oauth/token`, `/auth/login`).
    pub issuer: Option<RawIssuer>,
    /// Authorization: roles and their permissions. Required once any route authenticates.
    pub authz: Option<super::authz::RawAuthz>,
    /// Replaying stored responses for a repeated `Idempotency-Key`.
    #[serde(default)]
    pub idempotency: RawIdempotency,
    /// Checks on tool results: output schemas, secrets.
    #[serde(default)]
    pub output: super::output::RawOutput,
    /// Which URLs tool arguments may name.
    #[serde(default)]
    pub ssrf: super::ssrf::RawSsrf,
    /// Tool pinning: which tool definitions are trusted.
    #[serde(default)]
    pub pinning: super::pinning::RawPinning,
    /// Client addresses (trusted proxies) and IP allow/deny lists.
    #[serde(default)]
    pub network: super::traffic::RawNetwork,
    /// Rate-limit rules, all applied to every message they match.
    #[serde(default)]
    pub rate_limit: Vec<super::traffic::RawRateLimit>,
    /// Circuit breakers' defaults for every upstream.
    #[serde(default)]
    pub circuit_breaker: super::breaker::RawBreaker,
    /// Connection limits and slow-client timeouts.
    #[serde(default)]
    pub connections: super::traffic::RawConnections,
    /// Calls in flight per principal and per tool.
    #[serde(default)]
    pub concurrency: super::traffic::RawConcurrency,
    /// Automatic blocks, quarantine and alerts.
    #[serde(default)]
    pub abuse: super::abuse::RawAbuse,
    /// The operator API (blocks, quarantine).
    #[serde(default)]
    pub admin: super::abuse::RawAdmin,
    /// More listeners besides `listen` (e.g. a public TLS one), each with its own TLS,
    /// default authentication and set of routes.
    #[serde(default)]
    pub listener: Vec<RawListener>,
    /// Settings that weaken security; each one is logged loudly at start.
    #[serde(default)]
    pub dangerous: RawDangerous,
    /// The aggregated endpoint `/mcp` (every upstream behind one MCP server).
    #[serde(default)]
    pub hub: super::hub::RawHub,
    /// Limits shared by every stdio upstream.
    #[serde(default)]
    pub stdio: super::hub::RawStdio,
    /// The MCP servers behind the gateway.
    #[serde(default)]
    pub upstream: Vec<RawUpstream>,
}

/// `[limits]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Largest accepted request body in bytes (default 1 MiB).
    pub max_body_bytes: Option<u64>,
    /// Deepest accepted JSON nesting (default 64).
    pub max_json_depth: Option<u64>,
    /// Largest JSON (non-SSE) upstream response inspected, in bytes (default 16 MiB).
    pub max_response_bytes: Option<u64>,
    /// Seconds to wait for an audit queue slot before refusing a request (default 5).
    pub audit_wait_secs: Option<u64>,
    /// Most rate-limit counters tracked at once (default 1 000 000); past it, requests
    /// needing a new counter are refused (MCP-006) until idle ones expire.
    pub max_rate_limit_keys: Option<u64>,
}

/// `[sessions]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSessions {
    /// Most live sessions; the least recently used is evicted beyond it (default 10000).
    pub max: Option<u64>,
    /// Seconds of inactivity after which a session is reaped (default 1800).
    pub idle_timeout_secs: Option<u64>,
    /// Seconds between SSE keep-alive comments on idle streams (default 15; 0 disables).
    pub sse_keepalive_secs: Option<u64>,
}

/// `[origins]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOrigins {
    /// Origins allowed besides the loopback ones, e.g. `https://app.example.com`.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Host names (without port) allowed besides the loopback ones.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

/// `[audit]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// SQLite file (default `<data_dir>/audit.db`).
    pub path: Option<String>,
    /// Records buffered between requests and the writer (default 8192).
    pub queue: Option<u64>,
    /// Write a signed checkpoint every this many records (default 1000).
    pub checkpoint_every: Option<u64>,
    /// And at least every this many seconds when records were written (default 60).
    pub checkpoint_interval_secs: Option<u64>,
}

/// `[[listener]]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    /// Address, e.g. `0.0.0.0:8443`.
    pub listen: Option<String>,
    /// TLS for this listener (same keys as `[tls]`).
    pub tls: Option<RawTls>,
    /// Authentication for routes on this listener that set no `auth` of their own (default
    /// `auth.methods`).
    pub methods: Option<Vec<String>>,
    /// Routes served here (default: all).
    pub routes: Option<Vec<String>>,
    /// Serve the aggregated endpoint `/mcp` here (default: true when `routes` is not set).
    pub hub: Option<bool>,
}

/// `[tls]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain (reloaded when the file changes).
    pub cert_file: Option<String>,
    /// PEM private key (reloaded with the certificate).
    pub key_file: Option<String>,
    /// Oldest accepted version: `1.2` (default) or `1.3`.
    pub min_version: Option<String>,
    /// Allowed cipher suites by IANA name (e.g. `TLS13_AES_256_GCM_SHA384`); default: rustls's.
    pub cipher_suites: Option<Vec<String>>,
    /// PEM CA certificates for client certificates (mTLS). With it, clients must present a
    /// certificate it signed, unless `client_auth = "optional"`.
    pub client_ca_file: Option<String>,
    /// `required` (default with a CA) or `optional`.
    pub client_auth: Option<String>,
}

/// `[auth.mtls]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMtls {
    /// Roles per certificate identity (URI or DNS SAN, email, else CN).
    #[serde(default)]
    pub roles: BTreeMap<String, Vec<String>>,
}

/// `[auth]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// Accepted ways to authenticate, in order of preference. Each entry is one method (`none`,
    /// `bearer`, `hmac`) or several joined by `+` that must all pass for the same principal
    /// (`bearer+hmac`). Default `["none"]`, which is refused on non-loopback listeners.
    pub methods: Option<Vec<String>>,
    /// Static API tokens (`Authorization: Bearer …`), stored as SHA-256 hashes.
    #[serde(default)]
    pub bearer: Vec<RawBearerToken>,
    /// HMAC request signing.
    #[serde(default)]
    pub hmac: RawHmac,
    /// JSON Web Tokens (`Authorization: Bearer <jwt>`).
    pub jwt: Option<RawJwt>,
    /// MCP authorization: the gateway as an OAuth 2.1 resource server (needs `[auth.jwt]`).
    pub oauth: Option<RawOAuth>,
    /// Client certificates (`mtls`; needs `[tls] client_ca_file`).
    pub mtls: Option<RawMtls>,
}

/// `[auth.oauth]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth {
    /// The gateway's public base URL, e.g. `https://gateway.example.com`. Each route's resource
    /// identifier (the audience its tokens must carry) is `{resource_base}/mcp/{name}`.
    pub resource_base: Option<String>,
    /// Authorization servers listed in the Protected Resource Metadata (at least one).
    #[serde(default)]
    pub authorization_servers: Vec<String>,
    /// Scopes every route requires unless it sets its own `required_scopes`.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// `scopes_supported` in the metadata (default: the scopes the routes require).
    pub scopes_supported: Option<Vec<String>>,
}

/// `[auth.jwt]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    /// Accepted `iss` values (required).
    #[serde(default)]
    pub issuer: Vec<String>,
    /// Accepted `aud` values: the token must name at least one of them, or (with
    /// `[auth.oauth]`) the route's own resource URL. Required without `[auth.oauth]`.
    #[serde(default)]
    pub audience: Vec<String>,
    /// Clock tolerance for `exp` and `nbf`, in seconds (default 60).
    pub leeway_secs: Option<u64>,
    /// Claims that must be present besides `exp`, `iss`, `aud` and the subject.
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// Required JWT `typ` header, e.g. `at+jwt` (RFC 9068 access tokens; compared
    /// case-insensitively, `application/` prefix allowed). Default: not checked.
    pub required_typ: Option<String>,
    /// Claim naming the principal (default `sub`).
    pub subject_claim: Option<String>,
    /// Claim holding roles, an array or a space-separated string (default `roles`).
    pub roles_claim: Option<String>,
    /// Claims holding scopes (default `["scope", "scp"]`).
    pub scope_claims: Option<Vec<String>>,
    /// Claim holding permissions (default `permissions`).
    pub permissions_claim: Option<String>,
    /// Longest accepted token in bytes (default 8192).
    pub max_token_bytes: Option<u64>,
    /// Verified tokens remembered until they expire, keyed by their SHA-256 (default 10000;
    /// 0 disables the cache).
    pub cache_capacity: Option<u64>,
    /// A JWKS endpoint (`https://…/jwks.json`), fetched at start and again, at most every
    /// `jwks_refresh_min_secs`, when a token names an unknown `kid`.
    pub jwks_url: Option<String>,
    /// Least time between two JWKS fetches (default 30).
    pub jwks_refresh_min_secs: Option<u64>,
    /// An OpenID Connect issuer (e.g. `https://accounts.google.com`): its JWKS is found through
    /// `{issuer}/.well-known/openid-configuration`, and it is an accepted `iss`. Use instead of
    /// `jwks_url`.
    pub oidc_issuer: Option<String>,
    /// Verification keys given directly.
    #[serde(default)]
    pub keys: Vec<RawJwtKey>,
}

/// `[[auth.jwt.keys]]`: one key, pinned to one algorithm.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawJwtKey {
    /// The `kid` tokens name to select this key (optional when it is the only key).
    pub kid: Option<String>,
    /// HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA.
    pub alg: Option<String>,
    /// PEM file of the public key (RS*, PS*, ES*, EdDSA).
    pub pem_file: Option<String>,
    /// Shared secret (HS*); use `${VAR}`. At least 32 bytes.
    pub secret: Option<String>,
}

/// `[[auth.bearer]]`: one static token, made with `palisade token generate`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawBearerToken {
    /// The principal this token authenticates.
    pub id: Option<String>,
    /// Hex SHA-256 of the token (the token itself is never stored).
    pub sha256: Option<String>,
    /// Roles granted to the principal.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Scopes granted to the principal.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// `[auth.hmac]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHmac {
    /// Largest accepted difference between `X-Timestamp` and the gateway's clock, in seconds
    /// (default 30).
    pub max_skew_secs: Option<u64>,
    /// Accepted `X-API-Version` values (default `["1.0.0"]`).
    pub api_versions: Option<Vec<String>>,
    /// Nonces and signatures remembered per client within the window (default 100000); beyond
    /// it that client's requests are refused until entries expire.
    pub replay_capacity: Option<u64>,
    /// Require `Idempotency-Key` on every POST (default true, as the seed does).
    pub require_idempotency_key: Option<bool>,
    /// The signing clients.
    #[serde(default)]
    pub clients: Vec<RawHmacClient>,
}

/// `[[auth.hmac.clients]]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHmacClient {
    /// The principal this client authenticates as.
    pub id: Option<String>,
    /// The `X-Key-Id` that selects this client's secret; required when several clients exist.
    pub key_id: Option<String>,
    /// The shared secret; use `${VAR}` to read it from the environment.
    pub secret: Option<String>,
    /// `v2` (default, recommended: covers nonce, idempotency key, API version, key id and query)
    /// or `v1` (the seed's `METHOD|path|timestamp|body`, for existing clients).
    pub canonical: Option<String>,
    /// Roles granted to the principal.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Scopes granted to the principal.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// `[issuer]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    /// `iss` of issued tokens: this gateway's public URL (required).
    pub issuer: Option<String>,
    /// Default `aud` of issued tokens when the client names no `resource` (default: `issuer`).
    pub audience: Option<Vec<String>>,
    /// Token lifetime in seconds (default 1800).
    pub lifetime_secs: Option<u64>,
    /// Signing algorithm of new keys: `EdDSA` (default) or `RS256`.
    pub algorithm: Option<String>,
    /// Failed logins allowed per user and per client IP within `login_window_secs` (default 5).
    pub login_max_failures: Option<u64>,
    /// Window for counting failed logins, in seconds (default 300).
    pub login_window_secs: Option<u64>,
    /// Services using the client_credentials grant.
    #[serde(default)]
    pub clients: Vec<RawIssuerClient>,
    /// People using `/auth/login`.
    #[serde(default)]
    pub users: Vec<RawIssuerUser>,
}

/// `[[issuer.clients]]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIssuerClient {
    /// `client_id` (also the token's `sub`).
    pub client_id: Option<String>,
    /// Hex SHA-256 of the client secret (`palisade token generate` makes both).
    pub secret_sha256: Option<String>,
    /// Roles put in the token.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Scopes the client may obtain.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// `[[issuer.users]]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIssuerUser {
    /// Login name (also the token's `sub`).
    pub username: Option<String>,
    /// Argon2id PHC string (`palisade passwd hash` makes one).
    pub password_argon2id: Option<String>,
    /// Roles put in the token.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Scopes the user may obtain.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// `[idempotency]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIdempotency {
    /// Seconds a stored response answers a repeated `Idempotency-Key` (default 86400).
    pub ttl_secs: Option<u64>,
    /// Stored responses kept at most, over all principals (default 10000).
    pub capacity: Option<u64>,
    /// Largest response stored, in bytes (default 1 MiB); a larger one is not replayable.
    pub max_response_bytes: Option<u64>,
}

/// `[dangerous]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDangerous {
    /// Allow `auth.mode = "none"` on a non-loopback listener. Anyone who can reach it can use
    /// every upstream.
    pub allow_unauthenticated_non_loopback: Option<bool>,
}

/// `[[upstream]]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// Route name: the upstream is mounted at `/mcp/{name}`.
    pub name: Option<String>,
    /// Streamable-HTTP endpoint of the upstream (`http://` or `https://`).
    pub url: Option<String>,
    /// A server bundled with the gateway instead of `url`: `demo`.
    pub builtin: Option<String>,
    /// A stdio server the gateway starts instead of `url`: an absolute path or a program name
    /// found on the gateway's `PATH` at start-up.
    pub command: Option<String>,
    /// Arguments of `command`.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment of `command`'s child, besides a minimal base (`PATH`, `HOME`, `LANG`); no
    /// other variable of the gateway reaches it. `${VAR}` reads the gateway's environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `lazy` (default: on first use) or `boot`.
    pub start: Option<String>,
    /// What the stdio child may do.
    pub sandbox: Option<super::hub::RawSandbox>,
    /// Who shares one upstream session or child: `per-session`, `per-principal` (default) or
    /// `shared`.
    pub isolation: Option<String>,
    /// The protocol era the hub speaks to it: `auto` (default: `initialize`, then 2026-07-28
    /// when that is refused), `legacy` or `modern`.
    pub protocol: Option<String>,
    /// Aggregate this upstream at `/mcp` (default true).
    pub hub: Option<bool>,
    /// Headers the gateway sends upstream (its own credentials); `${VAR}` reads the environment.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Milliseconds to establish a connection (default 2000).
    pub connect_timeout_ms: Option<u64>,
    /// Seconds to wait for the upstream's response headers (default 60).
    pub timeout_secs: Option<u64>,
    /// Authentication methods for this route, replacing `auth.methods` (same syntax).
    pub auth: Option<Vec<String>>,
    /// OAuth scopes a token must carry for this route, replacing `auth.oauth.required_scopes`.
    pub required_scopes: Option<Vec<String>>,
    /// The gateway's own OAuth credential for this upstream (client_credentials grant).
    pub oauth: Option<RawUpstreamOAuth>,
    /// Only principals holding one of these roles may use this upstream (seed 004's
    /// server-specific rule); default: no restriction beyond permissions.
    pub roles: Option<Vec<String>>,
    /// Per-tool metadata: roles, security level, HMAC requirement, timeout.
    #[serde(default)]
    pub tools: Vec<super::authz::RawTool>,
    /// This upstream's circuit breaker (unset keys from `[circuit_breaker]`).
    pub circuit_breaker: Option<super::breaker::RawBreaker>,
    /// The gateway's call rate, concurrency and 429 backoff towards this upstream.
    pub outbound: Option<super::traffic::RawOutbound>,
}

/// `[upstream.oauth]`: the gateway obtains, caches and refreshes its own access token for the
/// upstream; the client's token is never forwarded.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamOAuth {
    /// The upstream authorization server's token endpoint.
    pub token_url: Option<String>,
    /// The gateway's client id there.
    pub client_id: Option<String>,
    /// Its secret; use `${VAR}`.
    pub client_secret: Option<String>,
    /// Scopes to request (space-separated).
    pub scope: Option<String>,
    /// RFC 8707 `resource` to request (default: the upstream URL).
    pub resource: Option<String>,
    /// Refresh this many seconds before the token expires (default 60).
    pub refresh_before_secs: Option<u64>,
    /// `client_credentials` (default: one token for the gateway) or `token_exchange` (RFC 8693:
    /// the caller's JWT is exchanged at the authorization server for a token for this upstream,
    /// so the upstream learns who calls without ever seeing the caller's token).
    pub grant: Option<String>,
}

impl RawConfig {
    /// Deserialises an already-parsed TOML table.
    pub fn deserialize_table(t: toml::Table) -> Result<Self, toml::de::Error> {
        toml::Value::Table(t).try_into()
    }
}

/// Every key of `value` that the schema does not know, so a file with three typos gets three
/// errors rather than one per run. Relies on `deny_unknown_fields`, which schemars turns into
/// `additionalProperties: false`.
pub(super) fn unknown_keys(value: &toml::Table) -> Vec<ConfigError> {
    let root = schemars::schema_for!(RawConfig);
    let schema = serde_json::to_value(&root).unwrap_or_default();
    let mut out = Vec::new();
    walk(
        &schema,
        &schema,
        &toml::Value::Table(value.clone()),
        String::new(),
        &mut out,
    );
    out
}

fn resolve<'s>(
    root: &'s serde_json::Value,
    mut node: &'s serde_json::Value,
) -> &'s serde_json::Value {
    // Follow `$ref` and single-branch wrappers (`allOf`, and `anyOf` with `null` for Options).
    for _ in 0..8 {
        if let Some(r) = node.get("$ref").and_then(|r| r.as_str()) {
            let name = r.rsplit('/').next().unwrap_or_default();
            node = &root["definitions"][name];
        } else if let Some(a) = node
            .get("allOf")
            .and_then(|a| a.as_array())
            .filter(|a| a.len() == 1)
        {
            node = &a[0];
        } else if let Some(a) = node.get("anyOf").and_then(|a| a.as_array()) {
            match a
                .iter()
                .find(|s| s.get("type").and_then(|t| t.as_str()) != Some("null"))
            {
                Some(s) => node = s,
                None => break,
            }
        } else {
            break;
        }
    }
    node
}

fn walk(
    root: &serde_json::Value,
    schema: &serde_json::Value,
    v: &toml::Value,
    path: String,
    out: &mut Vec<ConfigError>,
) {
    let schema = resolve(root, schema);
    match v {
        toml::Value::Table(t) => {
            let props = schema.get("properties");
            let closed =
                schema.get("additionalProperties") == Some(&serde_json::Value::Bool(false));
            let extra = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, child) in t {
                let key = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match props.and_then(|p| p.get(k)) {
                    Some(s) => walk(root, s, child, key, out),
                    None if closed => out.push(ConfigError {
                        key,
                        why: "unknown key".into(),
                    }),
                    None => {
                        if let Some(s) = extra {
                            walk(root, s, child, key, out);
                        }
                    }
                }
            }
        }
        toml::Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(root, s, item, format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}
