//! Authorization: who may do what, decided once per message from the principal's roles, the
//! request's method and target, and the per-upstream and per-tool rules. Pure: no I/O, no clock.
//!
//! A request is allowed when no denial of the principal's roles covers one of its names and a
//! permission (of a role, or of the token's `permissions` claim) covers one of them. Its names:
//!
//! | name                                  | example                               |
//! |---------------------------------------|---------------------------------------|
//! | `mcp:{feature}:{verb}`                | `mcp:tools:call`, `mcp:resources:read` |
//! | `server:{upstream}:{feature}:{verb}`  | `server:filesystem:tools:call`        |
//! | `tool:{execute or read}:{upstream}:{tool}` | `tool:execute:orders:place_order` |
//! | `prompt:{verb}:{upstream}:{name}`, `resource:{verb}:{upstream}:{uri}` | |
//!
//! (`prompts/get` is also `mcp:prompts:generate`, seed 004's word.) Protocol plumbing
//! (`initialize`, `ping`, `server/discover`, notifications, answers to the server's requests)
//! needs no permission. On top of permissions, an upstream may be limited to some roles
//! (`[[upstream]] roles`), and a tool to some roles, to `system:admin` above a security level,
//! or to HMAC-signed calls (`[[upstream.tools]]`). A tool the principal may not use is hidden:
//! left out of lists, and a call to it answers exactly as a call to a tool that does not exist.

pub mod grammar;

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{Config, RoleGrants, ToolMeta};
use crate::controls::authn::Principal;
use crate::controls::policy::{self, Policies, PolicyError};

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthzError {
    /// No permission covers the request, or a denial covers its method.
    #[error("no permission for {0}")]
    Forbidden(String),
    /// The target is hidden from this principal; it answers as if it did not exist.
    #[error("{what} hidden from the caller ({why})")]
    Hidden {
        /// The target's name.
        what: String,
        /// Which rule hid it.
        why: Hidden,
    },
    /// A sensitive tool was called without an HMAC signature.
    #[error("tool {0} needs an HMAC-signed request")]
    NeedsSignature(String),
    /// A Rego policy refused, or could not decide.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// The rule that hid a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hidden {
    /// The upstream is limited to roles the principal does not hold.
    UpstreamRole,
    /// The tool is limited to roles the principal does not hold.
    ToolRole,
    /// The tool's security level needs `system:admin`.
    SecurityLevel,
    /// A denial covers it.
    Denied,
}

impl Hidden {
    /// Audit reason.
    pub fn reason(self) -> &'static str {
        match self {
            Hidden::UpstreamRole => "hidden_upstream_role",
            Hidden::ToolRole => "hidden_tool_role",
            Hidden::SecurityLevel => "hidden_security_level",
            Hidden::Denied => "hidden_denied",
        }
    }
}

impl std::fmt::Display for Hidden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// What a request is about, when it names one thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// A tool, by its upstream's name for it.
    Tool(&'a str),
    /// A prompt.
    Prompt(&'a str),
    /// A resource URI.
    Resource(&'a str),
}

impl<'a> Item<'a> {
    fn parts(self) -> (&'static str, &'a str) {
        match self {
            Item::Tool(n) => ("tool", n),
            Item::Prompt(n) => ("prompt", n),
            Item::Resource(n) => ("resource", n),
        }
    }
}

#[derive(Debug)]
struct UpRules {
    name: Arc<str>,
    roles: Option<Vec<String>>,
    tools: HashMap<String, ToolMeta>,
}

/// One principal's view of the rules: what the pipeline hands to the hub.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    /// The rules.
    pub authz: &'a Authz,
    /// Who asks.
    pub who: &'a Principal,
    /// Where from.
    pub facts: Facts,
}

/// What policies know of the connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts {
    /// Client address.
    pub ip: Option<std::net::IpAddr>,
    /// `http` or `https`.
    pub transport: &'static str,
}

impl Access<'_> {
    /// [`Authz::check`] for this principal, then the policies, except for `tools/call`, whose
    /// policy decision waits for the tool's definition ([`Access::check_call`]).
    pub fn check(
        &self,
        method: &str,
        u: Option<usize>,
        item: Option<Item<'_>>,
    ) -> Result<(), AuthzError> {
        self.authz.check(self.who, method, u, item)?;
        if method != "tools/call" && operation(method).is_some() {
            self.authz
                .policy(self.who, self.facts, method, u, item, None)?;
        }
        Ok(())
    }

    /// The policies' decision on a call to upstream `u`'s tool `name`, whose definition is
    /// `def`. Every route calls it once the tool is found, before the arguments are checked.
    pub fn check_call(
        &self,
        u: usize,
        name: &str,
        def: &serde_json::Value,
    ) -> Result<(), AuthzError> {
        let annotations = def.get("annotations");
        self.authz.policy(
            self.who,
            self.facts,
            "tools/call",
            Some(u),
            Some(Item::Tool(name)),
            Some(annotations),
        )
    }

    /// [`Authz::visible`] for this principal.
    pub fn visible(&self, u: usize, item: Item<'_>) -> bool {
        self.authz.visible(self.who, u, item)
    }
}

/// The compiled authorization rules.
#[derive(Debug)]
pub struct Authz {
    configured: bool,
    roles: HashMap<String, RoleGrants>,
    default_role: Option<String>,
    anonymous_role: Option<String>,
    admin_above: u8,
    ups: Vec<UpRules>,
    policies: Policies,
}

/// The method's feature and verb (`tools/call` → `tools`, `call`), or `None` for protocol
/// plumbing that needs no permission.
pub fn operation(method: &str) -> Option<(&str, &str)> {
    match method {
        "initialize" | "ping" | "server/discover" => None,
        m if m.starts_with("notifications/") => None,
        m => {
            let (feature, rest) = m.split_once('/').unwrap_or((m, ""));
            let verb = rest.rsplit('/').next().unwrap_or(rest);
            Some((feature, verb))
        }
    }
}

/// Up to five names of four segments, on the stack.
struct Names<'a> {
    list: [[&'a str; 4]; 5],
    lens: [usize; 5],
    n: usize,
    /// Index of the item's own name, when the request names an item on a known upstream.
    item: Option<usize>,
}

impl Authz {
    /// Compiles the configuration's rules; an error (a policy that does not load) stops the
    /// gateway from starting.
    pub fn new(config: &Config) -> Result<Authz, String> {
        let a = &config.authz;
        Ok(Authz {
            policies: Policies::new(&a.policies)?,
            configured: a.configured,
            roles: a.roles.clone(),
            default_role: a.default_role.clone(),
            anonymous_role: a.anonymous_role.clone(),
            admin_above: a.admin_above_level,
            ups: config
                .upstreams
                .iter()
                .map(|u| UpRules {
                    name: Arc::from(u.name.as_str()),
                    roles: u.roles.clone(),
                    tools: u
                        .tools
                        .iter()
                        .map(|t| (t.name.clone(), t.clone()))
                        .collect(),
                })
                .collect(),
        })
    }

    /// The policies' decision (nothing to decide without `[[authz.policy]]`). `tool` is the
    /// called tool's annotations, for `tools/call`.
    fn policy(
        &self,
        who: &Principal,
        facts: Facts,
        method: &str,
        u: Option<usize>,
        item: Option<Item<'_>>,
        tool: Option<Option<&serde_json::Value>>,
    ) -> Result<(), AuthzError> {
        if self.policies.is_empty() {
            return Ok(());
        }
        let up = u.and_then(|u| self.ups.get(u)).map(|r| &*r.name);
        let resource = match (up, item) {
            (Some(up), Some(i)) => format!("{}:{up}:{}", i.parts().0, i.parts().1),
            (Some(up), None) => format!("server:{up}"),
            (None, _) => "mcp".to_owned(),
        };
        let tool = match (tool, item) {
            (Some(annotations), Some(Item::Tool(name))) => Some(policy::ToolFacts {
                name,
                security_level: u
                    .and_then(|u| self.tool_meta(u, name))
                    .map_or(0, |m| m.security_level),
                annotations,
            }),
            _ => None,
        };
        let anonymous = is_anonymous(who);
        let claims: &[Arc<str>] = if anonymous { &[] } else { who.permissions() };
        let input = policy::Input {
            user: who.id(),
            roles: self.role_names(who).collect(),
            permissions: self
                .grants(who)
                .flat_map(|g| g.allow.iter().map(String::as_str))
                .chain(claims.iter().map(|p| &**p))
                .collect(),
            auth_method: who.method(),
            method,
            upstream: up,
            tool,
            resource,
            ip: facts.ip,
            transport: facts.transport,
        };
        Ok(self.policies.decide(&input)?)
    }

    /// The per-tool metadata of upstream `u`'s tool `name`, if configured.
    pub fn tool_meta(&self, u: usize, name: &str) -> Option<&ToolMeta> {
        self.ups.get(u)?.tools.get(name)
    }

    /// Decides one request: `method` on upstream `u` (when known) about `item` (when it names
    /// one).
    pub fn check(
        &self,
        who: &Principal,
        method: &str,
        u: Option<usize>,
        item: Option<Item<'_>>,
    ) -> Result<(), AuthzError> {
        if !self.configured {
            // Only possible when no route authenticates (config): local development.
            return Ok(());
        }
        let Some((feature, verb)) = operation(method) else {
            return Ok(());
        };
        let hidden = |why| match item {
            Some(i) => AuthzError::Hidden {
                what: i.parts().1.to_owned(),
                why,
            },
            None => AuthzError::Forbidden(format!("{method} ({why})")),
        };
        if let Some(u) = u {
            if let Some(why) = self.hidden_by_rules(who, u, item) {
                return Err(hidden(why));
            }
        }
        let up = u.and_then(|u| self.ups.get(u)).map(|r| &*r.name);
        let names = Names::of(feature, verb, up, item);
        let item_name = names.item_name();
        let mut granted = false;
        for g in self.grants(who) {
            for d in &g.deny {
                if let Some(n) = item_name {
                    if grammar::covers(d, n) {
                        return Err(hidden(Hidden::Denied));
                    }
                }
                if names.iter().any(|n| grammar::covers(d, n)) {
                    return Err(AuthzError::Forbidden(format!("{method} (denied by {d})")));
                }
            }
            granted = granted
                || g.allow
                    .iter()
                    .any(|p| names.iter().any(|n| grammar::covers(p, n)));
        }
        let by_claim = || {
            !is_anonymous(who)
                && who.permissions().iter().any(|p| {
                    grammar::check(p).is_ok() && names.iter().any(|n| grammar::covers(p, n))
                })
        };
        if !granted && !by_claim() {
            return Err(AuthzError::Forbidden(method.to_owned()));
        }
        if let (Some(u), Some(Item::Tool(t))) = (u, item) {
            if self.tool_meta(u, t).is_some_and(|m| m.sensitive) && !who.method().contains("hmac") {
                return Err(AuthzError::NeedsSignature(t.to_owned()));
            }
        }
        Ok(())
    }

    /// Whether a list of upstream `u` shows `item` to `who`: the upstream's and the item's
    /// rules, and no denial of using it. (Permission to call it is not needed to see it: a
    /// `readonly` role lists tools it cannot call.)
    pub fn visible(&self, who: &Principal, u: usize, item: Item<'_>) -> bool {
        if !self.configured {
            return true;
        }
        if self.hidden_by_rules(who, u, Some(item)).is_some() {
            return false;
        }
        let up = self.ups.get(u).map(|r| &*r.name);
        let (feature, verb) = match item {
            Item::Tool(_) => ("tools", "call"),
            Item::Prompt(_) => ("prompts", "get"),
            Item::Resource(_) => ("resources", "read"),
        };
        let names = Names::of(feature, verb, up, Some(item));
        let Some(name) = names.item_name() else {
            return true;
        };
        !self
            .grants(who)
            .any(|g| g.deny.iter().any(|d| grammar::covers(d, name)))
    }

    /// The upstream's role limit, then the tool's roles and security level.
    fn hidden_by_rules(&self, who: &Principal, u: usize, item: Option<Item<'_>>) -> Option<Hidden> {
        let rules = self.ups.get(u)?;
        if let Some(roles) = &rules.roles {
            if !self.holds_any(who, roles) {
                return Some(Hidden::UpstreamRole);
            }
        }
        let Some(Item::Tool(t)) = item else {
            return None;
        };
        let meta = rules.tools.get(t)?;
        if let Some(roles) = &meta.roles {
            if !self.holds_any(who, roles) {
                return Some(Hidden::ToolRole);
            }
        }
        if meta.security_level > self.admin_above && !self.is_admin(who) {
            return Some(Hidden::SecurityLevel);
        }
        None
    }

    fn is_admin(&self, who: &Principal) -> bool {
        let name: [&str; 2] = ["system", "admin"];
        self.grants(who)
            .any(|g| g.allow.iter().any(|p| grammar::covers(p, &name)))
    }

    /// The principal's roles as authorization sees them: the anonymous role for the
    /// unauthenticated, the default role for the authenticated without roles.
    fn role_names<'a>(&'a self, who: &'a Principal) -> impl Iterator<Item = &'a str> + 'a {
        let fallback = if is_anonymous(who) {
            self.anonymous_role.as_deref()
        } else if who.roles().is_empty() {
            self.default_role.as_deref()
        } else {
            None
        };
        let own: &[Arc<str>] = if is_anonymous(who) { &[] } else { who.roles() };
        own.iter().map(|r| &**r).chain(fallback)
    }

    fn holds_any(&self, who: &Principal, roles: &[String]) -> bool {
        self.role_names(who).any(|r| roles.iter().any(|x| x == r))
    }

    /// Whether `who` holds the permission `name` (e.g. `["admin", "blocks", "write"]`):
    /// granted by a role or the token's permissions claim, and denied by none. Without
    /// `[authz]` (only possible when nothing authenticates: local development), yes.
    pub fn permits(&self, who: &Principal, name: &[&str]) -> bool {
        if !self.configured {
            return true;
        }
        let mut granted = false;
        for g in self.grants(who) {
            if g.deny.iter().any(|d| grammar::covers(d, name)) {
                return false;
            }
            granted = granted || g.allow.iter().any(|p| grammar::covers(p, name));
        }
        granted
            || (!is_anonymous(who)
                && who
                    .permissions()
                    .iter()
                    .any(|p| grammar::check(p).is_ok() && grammar::covers(p, name)))
    }

    fn grants<'a>(&'a self, who: &'a Principal) -> impl Iterator<Item = &'a RoleGrants> + 'a {
        self.role_names(who).filter_map(|r| self.roles.get(r))
    }
}

fn is_anonymous(who: &Principal) -> bool {
    who.method() == "none"
}

impl<'a> Names<'a> {
    fn of(feature: &'a str, verb: &'a str, up: Option<&'a str>, item: Option<Item<'a>>) -> Self {
        let mut n = Names {
            list: [[""; 4]; 5],
            lens: [0; 5],
            n: 0,
            item: None,
        };
        n.push(&["mcp", feature, verb]);
        if feature == "prompts" && verb == "get" {
            n.push(&["mcp", "prompts", "generate"]);
        }
        if let Some(up) = up {
            n.push(&["server", up, feature, verb]);
        }
        // The item name goes last (see `item_name`).
        let (kind, action) = match feature {
            "tools" if verb == "call" => ("tool", "execute"),
            "tools" => ("tool", "read"),
            "prompts" => ("prompt", verb),
            "resources" => ("resource", verb),
            _ => return n,
        };
        match (up, item) {
            (Some(up), Some(i)) => {
                n.item = Some(n.n);
                n.push(&[kind, action, up, i.parts().1]);
            }
            (Some(up), None) => n.push(&[kind, action, up]),
            (None, _) => n.push(&[kind, action]),
        }
        n
    }

    fn push(&mut self, name: &[&'a str]) {
        self.list[self.n][..name.len()].copy_from_slice(name);
        self.lens[self.n] = name.len();
        self.n += 1;
    }

    fn iter(&self) -> impl Iterator<Item = &[&'a str]> + '_ {
        (0..self.n).map(|i| &self.list[i][..self.lens[i]])
    }

    /// The item's own name (`tool:execute:orders:place_order`), when there is one.
    fn item_name(&self) -> Option<&[&'a str]> {
        self.item.map(|i| &self.list[i][..self.lens[i]])
    }
}

#[cfg(test)]
mod tests;
