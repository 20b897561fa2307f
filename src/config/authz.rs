//! Authorization (`[authz]`) and per-tool metadata (`[[upstream.tools]]`): raw keys and their
//! validated forms. The decisions themselves are in `controls::authz`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::validated::Errors;
use crate::controls::authz::grammar;

/// `[authz]`: roles and their permissions.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAuthz {
    /// The role of authenticated principals whose credential names no role (seed 004
    /// `defaultRole`).
    pub default_role: Option<String>,
    /// The role of the anonymous principal of no-auth (loopback development) routes; without it
    /// the anonymous principal may do nothing once `[authz]` exists.
    pub anonymous_role: Option<String>,
    /// Tools whose `security_level` is above this need the `system:admin` permission
    /// (default 2, as seed 003's policy).
    pub admin_above_level: Option<u8>,
    /// Roles by name.
    #[serde(default)]
    pub roles: BTreeMap<String, RawRole>,
    /// OPA Rego policies, consulted after the roles allow a request (both must allow).
    #[serde(default)]
    pub policy: Vec<super::policy::RawPolicy>,
}

/// `[authz.roles.NAME]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRole {
    /// Permissions granted: `resource:action[:scope[:item]]`, `*` for a whole segment or at the
    /// end of one (`get_*`); fewer segments cover everything below them.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Permissions refused even when another role grants them (deny wins).
    #[serde(default)]
    pub deny: Vec<String>,
    /// Roles whose permissions and denials this one includes.
    #[serde(default)]
    pub inherits: Vec<String>,
}

/// `[[upstream.tools]]`: what the gateway knows about one tool beyond its definition.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTool {
    /// The tool's name as the upstream lists it.
    pub name: Option<String>,
    /// Only principals holding one of these roles see and call it (seed 000: orders only for
    /// `position_manager`).
    pub roles: Option<Vec<String>>,
    /// Seed 003's security level (0-10); above `authz.admin_above_level` it needs
    /// `system:admin`.
    pub security_level: Option<u8>,
    /// Calls must also carry a valid HMAC signature (seed 000), whatever else authenticated them.
    pub sensitive: Option<bool>,
    /// Seconds a call may take (1-300); default the upstream's `timeout_secs`.
    pub timeout_secs: Option<u64>,
    /// Finance rules per argument (seed 001), checked after the tool's JSON Schema.
    #[serde(default)]
    pub args: BTreeMap<String, RawArgRule>,
    /// Secret kinds this tool may return unredacted (`jwt`, `card`, … or `*`); see `[output]`.
    #[serde(default)]
    pub allow_secrets: Vec<String>,
    /// Top-level arguments holding URLs, checked by `[ssrf]` (besides those whose schema says
    /// `format: uri`).
    #[serde(default)]
    pub url_args: Vec<String>,
}

/// `[upstream.tools.args.NAME]`: rules for one top-level argument.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawArgRule {
    /// The argument must be present.
    pub required: Option<bool>,
    /// A decimal (JSON number, or string holding one) even without other decimal rules.
    pub decimal: Option<bool>,
    /// Most fractional digits, counted on the number's own text (`1.50` has 2).
    pub max_scale: Option<u32>,
    /// Exclusive lower bound, a decimal string (`"0"`).
    pub gt: Option<String>,
    /// Inclusive lower bound.
    pub ge: Option<String>,
    /// Exclusive upper bound.
    pub lt: Option<String>,
    /// Inclusive upper bound (`"1e12"`).
    pub le: Option<String>,
    /// Allowed values (exact match).
    #[serde(rename = "enum", default)]
    pub one_of: Vec<String>,
    /// Compare `enum` ignoring case and surrounding blanks (seed 001's normalisation); the
    /// value is forwarded as sent.
    pub case_insensitive: Option<bool>,
    /// Regular expression the whole value must match (a symbol's format); failure is MCP-015.
    pub pattern: Option<String>,
    /// Allowed values, e.g. the symbol allow list; failure is MCP-015.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Content patterns (regular expressions, unanchored) the value must not contain, e.g.
    /// markup in a field meant to hold a symbol: `["<", "(?i)javascript:"]`. None by default:
    /// blanket filters break legitimate data, so they are set per argument.
    #[serde(default)]
    pub deny_patterns: Vec<String>,
    /// An RFC 3339 date-time with a zone, at most this many days before now.
    pub max_days_past: Option<i64>,
    /// At most this many days after now.
    pub max_days_future: Option<i64>,
    /// Fewest characters.
    pub min_length: Option<usize>,
    /// Most characters.
    pub max_length: Option<usize>,
}

/// `[upstream.tools.args.NAME]`, validated.
#[derive(Debug, Clone, Default)]
pub struct ArgRule {
    /// Must be present.
    pub required: bool,
    /// Checked as a decimal.
    pub decimal: bool,
    /// Most fractional digits.
    pub max_scale: Option<u32>,
    /// Bounds.
    pub gt: Option<rust_decimal::Decimal>,
    /// Bounds.
    pub ge: Option<rust_decimal::Decimal>,
    /// Bounds.
    pub lt: Option<rust_decimal::Decimal>,
    /// Bounds.
    pub le: Option<rust_decimal::Decimal>,
    /// Allowed values.
    pub one_of: Vec<String>,
    /// `enum` ignoring case.
    pub case_insensitive: bool,
    /// The pattern, anchored and compiled once at load.
    pub pattern: Option<regex::Regex>,
    /// Allow list.
    pub allow: Vec<String>,
    /// Content patterns the value must not contain.
    pub deny_patterns: Option<regex::RegexSet>,
    /// Date window.
    pub max_days_past: Option<i64>,
    /// Date window.
    pub max_days_future: Option<i64>,
    /// Lengths.
    pub min_length: Option<usize>,
    /// Lengths.
    pub max_length: Option<usize>,
}

impl ArgRule {
    /// Whether the value is checked as a decimal number.
    pub fn is_decimal(&self) -> bool {
        self.decimal
            || self.max_scale.is_some()
            || self.gt.is_some()
            || self.ge.is_some()
            || self.lt.is_some()
            || self.le.is_some()
    }
}

fn arg_rule(key: &str, r: RawArgRule, e: &mut Errors) -> ArgRule {
    let mut bound = |k: &str, v: Option<String>| {
        v.and_then(|v| match crate::controls::validate::decimal(&v) {
            Some((d, _)) => Some(d),
            None => {
                e.push(
                    format!("{key}.{k}"),
                    format!("{v:?} is not a decimal number"),
                );
                None
            }
        })
    };
    let (gt, ge, lt, le) = (
        bound("gt", r.gt),
        bound("ge", r.ge),
        bound("lt", r.lt),
        bound("le", r.le),
    );
    // Anchored, so a pattern written for the whole value cannot match a substring.
    let pattern = r
        .pattern
        .and_then(|p| match regex::Regex::new(&format!("^(?:{p})$")) {
            Ok(re) => Some(re),
            Err(why) => {
                e.push(format!("{key}.pattern"), why.to_string());
                None
            }
        });
    let deny_patterns = if r.deny_patterns.is_empty() {
        None
    } else {
        match regex::RegexSet::new(&r.deny_patterns) {
            Ok(set) => Some(set),
            Err(why) => {
                e.push(format!("{key}.deny_patterns"), why.to_string());
                None
            }
        }
    };
    ArgRule {
        required: r.required.unwrap_or(false),
        decimal: r.decimal.unwrap_or(false),
        max_scale: r.max_scale,
        gt,
        ge,
        lt,
        le,
        one_of: r.one_of,
        case_insensitive: r.case_insensitive.unwrap_or(false),
        pattern,
        allow: r.allow,
        deny_patterns,
        max_days_past: r.max_days_past,
        max_days_future: r.max_days_future,
        min_length: r.min_length,
        max_length: r.max_length,
    }
}

/// `[authz]`, validated: every role flattened (its inherited permissions included).
#[derive(Debug, Clone, Default)]
pub struct AuthzConfig {
    /// False when the file has no `[authz]` (only allowed when no route authenticates).
    pub configured: bool,
    /// Role → (granted, denied) permissions, inheritance resolved.
    pub roles: HashMap<String, RoleGrants>,
    /// `default_role`.
    pub default_role: Option<String>,
    /// `anonymous_role`.
    pub anonymous_role: Option<String>,
    /// `admin_above_level`.
    pub admin_above_level: u8,
    /// `[[authz.policy]]`, read and compiled.
    pub policies: Vec<super::PolicyConfig>,
}

/// One role's permissions, inheritance resolved.
#[derive(Debug, Clone, Default)]
pub struct RoleGrants {
    /// Granted.
    pub allow: Vec<String>,
    /// Refused.
    pub deny: Vec<String>,
}

/// `[[upstream.tools]]`, validated.
#[derive(Debug, Clone, Default)]
pub struct ToolMeta {
    /// Tool name.
    pub name: String,
    /// Roles allowed to see and call it (`None`: no restriction beyond permissions).
    pub roles: Option<Vec<String>>,
    /// Security level (0 when unset).
    pub security_level: u8,
    /// Needs an HMAC signature.
    pub sensitive: bool,
    /// Call timeout.
    pub timeout: Option<Duration>,
    /// Finance rules by argument name.
    pub args: Vec<(String, ArgRule)>,
    /// Secret kinds allowed in its results (bits of `controls::output::secrets::Kind`).
    pub allow_secrets: u16,
    /// URL-valued arguments named in config.
    pub url_args: Vec<String>,
}

pub(super) fn authz(raw: Option<RawAuthz>, e: &mut Errors) -> AuthzConfig {
    let Some(raw) = raw else {
        return AuthzConfig {
            admin_above_level: 2,
            ..AuthzConfig::default()
        };
    };
    for (name, r) in &raw.roles {
        for (list, perms) in [("permissions", &r.permissions), ("deny", &r.deny)] {
            for (i, p) in perms.iter().enumerate() {
                if let Err(why) = grammar::check(p) {
                    e.push(format!("authz.roles.{name}.{list}[{i}]"), why);
                }
            }
        }
        for (i, parent) in r.inherits.iter().enumerate() {
            if !raw.roles.contains_key(parent) {
                e.push(
                    format!("authz.roles.{name}.inherits[{i}]"),
                    format!("no role {parent:?} in [authz.roles]"),
                );
            }
        }
    }
    for (key, role) in [
        ("authz.default_role", &raw.default_role),
        ("authz.anonymous_role", &raw.anonymous_role),
    ] {
        if let Some(r) = role {
            if !raw.roles.contains_key(r) {
                e.push(key, format!("no role {r:?} in [authz.roles]"));
            }
        }
    }
    let roles = raw
        .roles
        .keys()
        .map(|name| (name.clone(), flatten(name, &raw.roles)))
        .collect();
    AuthzConfig {
        configured: true,
        roles,
        default_role: raw.default_role,
        anonymous_role: raw.anonymous_role,
        admin_above_level: raw.admin_above_level.unwrap_or(2),
        policies: super::policy::policies(raw.policy, e),
    }
}

/// A role's own permissions and every inherited one's (cycles stop at the first repeat).
fn flatten(name: &str, all: &BTreeMap<String, RawRole>) -> RoleGrants {
    let mut out = RoleGrants::default();
    let mut seen = vec![name];
    let mut todo = vec![name];
    while let Some(n) = todo.pop() {
        let Some(r) = all.get(n) else { continue };
        out.allow.extend(r.permissions.iter().cloned());
        out.deny.extend(r.deny.iter().cloned());
        for p in &r.inherits {
            if !seen.contains(&p.as_str()) {
                seen.push(p);
                todo.push(p);
            }
        }
    }
    out
}

pub(super) fn tools(p: &str, raw: Vec<RawTool>, e: &mut Errors) -> Vec<ToolMeta> {
    let mut out: Vec<ToolMeta> = Vec::with_capacity(raw.len());
    for (i, t) in raw.into_iter().enumerate() {
        let key = format!("{p}.tools[{i}]");
        let Some(name) = t.name.filter(|n| !n.is_empty()) else {
            e.push(format!("{key}.name"), "required");
            continue;
        };
        if out.iter().any(|o| o.name == name) {
            e.push(format!("{key}.name"), format!("duplicate tool {name:?}"));
            continue;
        }
        let security_level = t.security_level.unwrap_or(0);
        if security_level > 10 {
            e.push(format!("{key}.security_level"), "must be 0-10");
        }
        let timeout = t.timeout_secs.map(|s| {
            if !(1..=300).contains(&s) {
                e.push(format!("{key}.timeout_secs"), "must be 1-300");
            }
            Duration::from_secs(s)
        });
        let args = t
            .args
            .into_iter()
            .map(|(a, r)| {
                let rule = arg_rule(&format!("{key}.args.{a}"), r, e);
                (a, rule)
            })
            .collect();
        let mut allow_secrets = 0u16;
        for (j, k) in t.allow_secrets.iter().enumerate() {
            use crate::controls::output::secrets::{Kind, ALL};
            match (k.as_str(), Kind::parse(k)) {
                ("*", _) => allow_secrets = ALL.iter().fold(0, |a, k| a | k.bit()),
                (_, Some(kind)) => allow_secrets |= kind.bit(),
                (_, None) => e.push(
                    format!("{key}.allow_secrets[{j}]"),
                    format!(
                        "unknown kind {k:?}; one of *, {}",
                        ALL.map(Kind::name).join(", ")
                    ),
                ),
            }
        }
        out.push(ToolMeta {
            allow_secrets,
            url_args: t.url_args,
            name,
            roles: t.roles,
            security_level,
            sensitive: t.sensitive.unwrap_or(false),
            timeout,
            args,
        });
    }
    out
}
