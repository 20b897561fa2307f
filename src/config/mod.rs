//! Configuration: raw serde structs (every one `deny_unknown_fields`) are read once, checked
//! against the schema for unknown keys, then converted into validated types. Every error found is
//! reported together, with its key and why; nothing else in the gateway reads configuration.

mod abuse;
mod auth;
mod authz;
mod breaker;
mod hub;
mod issuer;
mod jwt;
mod output;
mod pinning;
mod policy;
mod raw;
mod ssrf;
mod tls;
mod traffic;
mod upstream;
mod validated;

pub use abuse::{AbuseConfig, AdminConfig};
pub use auth::{
    AuthConfig, BearerToken, Canonical, Combo, Grant, HmacClient, HmacConfig, Method, OAuthConfig,
    Secret,
};
pub use authz::{ArgRule, AuthzConfig, RoleGrants, ToolMeta};
pub use breaker::{BreakerConfig, Severity};
pub use hub::{
    HubConfig, Isolation, Landlock, RawSandbox, SandboxConfig, StdioLimits, StdioTarget,
    UpstreamProtocol,
};
pub use issuer::{IssuerClient, IssuerConfig, IssuerUser};
pub use jwt::{JwtConfig, JwtKey};
pub use output::{OutputConfig, SecretMode};
pub use pinning::{PinMode, PinningConfig, Suspicious, DEFAULT_MARKERS};
pub use policy::{
    compile as compile_policy, read as read_policy, PolicyConfig, ACTIONS as POLICY_ACTIONS,
};
pub use ssrf::SsrfConfig;
pub use tls::{read_certs, read_key, TlsConfig};
pub use traffic::{
    Algorithm, ConcurrencyConfig, ConnectionsConfig, ForwardedHeader, KeyBy, NetworkConfig,
    OutboundConfig, RateLimitRule,
};

pub use raw::RawConfig;
pub use upstream::{UpstreamConfig, UpstreamOAuth, UpstreamTarget};
pub use validated::{
    AuditConfig, Config, IdempotencyConfig, LimitsConfig, ListenerConfig, LogFormat, OriginConfig,
    SessionConfig,
};

use std::fmt;
use std::path::Path;

/// The configuration used when `palisade serve` is given no file: loopback only, no
/// authentication, the bundled demo upstream at `/mcp/demo`.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the offending key (`upstream[0].url`), or empty for the file as a whole.
    pub key: String,
    /// What is wrong with it.
    pub why: String,
}

/// Every problem found in one configuration source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    /// Where the configuration came from (a path, or `<embedded>`).
    pub source_name: String,
    /// The problems, in the order found.
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} error(s) in {}:", self.errors.len(), self.source_name)?;
        for e in &self.errors {
            if e.key.is_empty() {
                writeln!(f, "  {}: {}", self.source_name, e.why)?;
            } else {
                writeln!(f, "  {}: {}: {}", self.source_name, e.key, e.why)?;
            }
        }
        Ok(())
    }
}

/// Values given on the command line or as `PALISADE_*` environment variables; they replace the
/// file's before validation, so every rule (e.g. loopback-only without authentication) applies.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen` / `PALISADE_LISTEN`.
    pub listen: Option<String>,
    /// `--data-dir` / `PALISADE_DATA_DIR`.
    pub data_dir: Option<String>,
    /// `--log-format` / `PALISADE_LOG_FORMAT`.
    pub log_format: Option<String>,
}

/// Reads and validates a configuration file.
pub fn load_file(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    o: &Overrides,
) -> Result<Config, ConfigErrors> {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse_with(&text, &name, env, o),
        Err(e) => Err(ConfigErrors {
            source_name: name,
            errors: vec![ConfigError {
                key: String::new(),
                why: format!("cannot read: {e}"),
            }],
        }),
    }
}

/// Parses and validates configuration text. `env` resolves `${VAR}` references.
pub fn parse(
    text: &str,
    source_name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    parse_with(text, source_name, env, &Overrides::default())
}

/// [`parse`] with command-line/environment overrides applied before validation.
pub fn parse_with(
    text: &str,
    source_name: &str,
    env: &dyn Fn(&str) -> Option<String>,
    o: &Overrides,
) -> Result<Config, ConfigErrors> {
    let fail = |errors| ConfigErrors {
        source_name: source_name.to_owned(),
        errors,
    };
    let value: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        fail(vec![ConfigError {
            key: String::new(),
            why: e.message().to_owned(),
        }])
    })?;
    let mut errors = raw::unknown_keys(&value);
    if !errors.is_empty() {
        return Err(fail(errors));
    }
    let mut raw: RawConfig = match RawConfig::deserialize_table(value) {
        Ok(r) => r,
        Err(e) => {
            // The table has no positions; parsing the text again finds where the bad value is.
            let at = toml::from_str::<RawConfig>(text)
                .err()
                .and_then(|e| e.span())
                .map(|span| {
                    let before = &text[..span.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                    format!(" (line {line}, column {col})")
                })
                .unwrap_or_default();
            errors.push(ConfigError {
                key: String::new(),
                why: format!("{}{at}", e.message()),
            });
            return Err(fail(errors));
        }
    };
    if o.listen.is_some() {
        raw.listen = o.listen.clone();
    }
    if o.data_dir.is_some() {
        raw.data_dir = o.data_dir.clone();
    }
    if o.log_format.is_some() {
        raw.log_format = o.log_format.clone();
    }
    Config::try_from_raw(raw, env).map_err(fail)
}

/// The JSON Schema of the configuration file, for editors.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(RawConfig);
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}

#[cfg(test)]
mod tests;
