//! OPA Rego policies (seed 003), evaluated in-process with `regorus`, after the roles have
//! allowed a request: both must allow.
//!
//! Each `[[authz.policy]]` file is one package. A request whose `input.action` the policy
//! decides (its `actions`, default all) is allowed by it when `data.{package}.allow` is exactly
//! `true` and `data.{package}.deny` is undefined, `false` or empty. Anything else denies: an
//! undefined `allow`, an evaluation error, a time-out. The input document:
//!
//! ```json
//! { "user":    { "id": "alice", "roles": ["user"], "permissions": ["tool:execute"],
//!                "auth_method": "jwt" },
//!   "action":  "execute",
//!   "tool":    { "name": "place_order", "upstream": "orders", "security_level": 3,
//!                "annotations": { "destructiveHint": true } },
//!   "resource": "tool:orders:place_order",
//!   "request": { "ip": "127.0.0.1", "transport": "https", "method": "tools/call",
//!                "upstream": "orders" } }
//! ```
//!
//! `tool` is present for `tools/call` only. `permissions` are the roles' granted permissions
//! and the token's `permissions` claim. The action of each method is [`action`].

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use regorus::{Engine, Value};

use crate::config::PolicyConfig;

/// Why a policy refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// `allow` was not `true`, or `deny` held.
    #[error("policy {package} denies ({why})")]
    Denied {
        /// The package that refused.
        package: String,
        /// `allow` undefined, or what `deny` said.
        why: String,
    },
    /// The policy could not be evaluated; failing closed.
    #[error("policy {package} failed to evaluate: {error}")]
    Failed {
        /// The package.
        package: String,
        /// The engine's message.
        error: String,
    },
}

/// What `input.action` is for an MCP method (seed 003's words: `execute` a tool, `read` lists
/// and contents, `admin` for what changes the server's own behaviour).
pub fn action(method: &str) -> &'static str {
    match method {
        "tools/call" => "execute",
        "resources/subscribe" | "resources/unsubscribe" => "subscribe",
        "completion/complete" => "complete",
        "logging/setLevel" => "admin",
        m if m.starts_with("tasks/") => "task",
        _ => "read",
    }
}

/// The tool a `tools/call` names.
#[derive(Debug, Clone, Copy)]
pub struct ToolFacts<'a> {
    /// The upstream's name for it.
    pub name: &'a str,
    /// Configured `security_level` (0 unset).
    pub security_level: u8,
    /// `annotations` from the upstream's definition, if any.
    pub annotations: Option<&'a serde_json::Value>,
}

/// One request, as policies see it.
#[derive(Debug)]
pub struct Input<'a> {
    /// Principal id.
    pub user: &'a str,
    /// Its roles (the default or anonymous role included).
    pub roles: Vec<&'a str>,
    /// Granted permissions.
    pub permissions: Vec<&'a str>,
    /// How it authenticated.
    pub auth_method: &'a str,
    /// The JSON-RPC method.
    pub method: &'a str,
    /// The upstream, when known.
    pub upstream: Option<&'a str>,
    /// The tool of a `tools/call`.
    pub tool: Option<ToolFacts<'a>>,
    /// `tool:{upstream}:{name}`, `prompt:…`, `resource:…`, `server:{upstream}` or `mcp`.
    pub resource: String,
    /// Client address.
    pub ip: Option<IpAddr>,
    /// `http` or `https`.
    pub transport: &'a str,
}

impl Input<'_> {
    fn to_value(&self) -> Value {
        fn obj<const N: usize>(pairs: [(&str, Value); N]) -> Value {
            Value::from(
                pairs
                    .into_iter()
                    .map(|(k, v)| (Value::from(k), v))
                    .collect::<std::collections::BTreeMap<_, _>>(),
            )
        }
        fn strs(v: &[&str]) -> Value {
            Value::from(v.iter().map(|s| Value::from(*s)).collect::<Vec<_>>())
        }
        let opt = |s: Option<&str>| s.map_or(Value::Null, Value::from);
        let tool = self.tool.map(|t| {
            obj([
                ("name", Value::from(t.name)),
                ("upstream", opt(self.upstream)),
                ("security_level", Value::from(u32::from(t.security_level))),
                (
                    "annotations",
                    t.annotations
                        .map_or_else(Value::new_object, |a| Value::from(a.clone())),
                ),
            ])
        });
        let mut root = obj([
            (
                "user",
                obj([
                    ("id", Value::from(self.user)),
                    ("roles", strs(&self.roles)),
                    ("permissions", strs(&self.permissions)),
                    ("auth_method", Value::from(self.auth_method)),
                ]),
            ),
            ("action", Value::from(action(self.method))),
            ("resource", Value::from(self.resource.as_str())),
            (
                "request",
                obj([
                    (
                        "ip",
                        self.ip
                            .map_or(Value::Null, |ip| Value::from(ip.to_string())),
                    ),
                    ("transport", Value::from(self.transport)),
                    ("method", Value::from(self.method)),
                    ("upstream", opt(self.upstream)),
                ]),
            ),
        ]);
        if let (Some(t), Ok(m)) = (tool, root.as_object_mut()) {
            m.insert(Value::from("tool"), t);
        }
        root
    }
}

#[derive(Debug)]
struct Loaded {
    package: String,
    allow: String,
    deny: Option<String>,
    actions: Option<Vec<String>>,
}

/// The loaded policies, ready to decide.
#[derive(Debug, Default)]
pub struct Policies {
    loaded: Vec<Loaded>,
    template: Engine,
    /// Engines are not shareable while evaluating (`&mut`), and cloning one per request costs
    /// more than the decision: evaluations borrow one from here, or clone the template.
    idle: Mutex<Vec<Engine>>,
}

/// One evaluation may take this long before it is abandoned (and denies).
const EVAL_LIMIT: Duration = Duration::from_millis(50);

impl Policies {
    /// Builds one engine holding every policy. Config validation compiled each already, so an
    /// error here is unexpected; it is returned, and the gateway does not start.
    pub fn new(config: &[PolicyConfig]) -> Result<Policies, String> {
        if config.is_empty() {
            return Ok(Policies::default());
        }
        let mut engine = Engine::new();
        engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
            limit: EVAL_LIMIT,
            check_interval: std::num::NonZeroU32::new(64).expect("non-zero"),
        });
        let mut loaded = Vec::with_capacity(config.len());
        for p in config {
            let package = crate::config::compile_policy(&mut engine, &p.file, &p.text, p.rego_v1)?;
            // A package with a `deny` rule must have it evaluated; deciding that from the text
            // as well as the engine fails closed if either sees one.
            let deny = format!("data.{package}.deny");
            engine.set_input(Value::new_object());
            let has_deny = declares(&p.text, "deny") || engine.eval_rule(deny.clone()).is_ok();
            loaded.push(Loaded {
                allow: format!("data.{package}.allow"),
                deny: has_deny.then_some(deny),
                package,
                actions: p.actions.clone(),
            });
        }
        Ok(Policies {
            loaded,
            template: engine,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Whether any policy is loaded.
    pub fn is_empty(&self) -> bool {
        self.loaded.is_empty()
    }

    /// Puts the request to every policy that decides its action; the first refusal wins.
    pub fn decide(&self, input: &Input<'_>) -> Result<(), PolicyError> {
        let act = action(input.method);
        let mut applicable = self
            .loaded
            .iter()
            .filter(|p| {
                p.actions
                    .as_ref()
                    .is_none_or(|a| a.iter().any(|x| x == act))
            })
            .peekable();
        if applicable.peek().is_none() {
            return Ok(());
        }
        let mut engine = self.engine();
        engine.set_input(input.to_value());
        let verdict = applicable.try_for_each(|p| decide_one(&mut engine, p));
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(engine);
        }
        verdict
    }

    /// Every policy's verdict on a whole input document, for `palisade policy eval`.
    pub fn explain(&self, input: Value) -> Vec<(String, Result<(), PolicyError>)> {
        let act = match &input["action"] {
            Value::String(s) => s.to_string(),
            _ => String::new(),
        };
        let mut engine = self.engine();
        engine.set_input(input);
        self.loaded
            .iter()
            .filter(|p| p.actions.as_ref().is_none_or(|a| a.contains(&act)))
            .map(|p| (p.package.clone(), decide_one(&mut engine, p)))
            .collect()
    }

    fn engine(&self) -> Engine {
        let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
        idle.unwrap_or_else(|| self.template.clone())
    }
}

fn decide_one(engine: &mut Engine, p: &Loaded) -> Result<(), PolicyError> {
    let failed = |e: anyhow::Error| PolicyError::Failed {
        package: p.package.clone(),
        error: e.to_string(),
    };
    let denied = |why: String| PolicyError::Denied {
        package: p.package.clone(),
        why,
    };
    if let Some(deny) = &p.deny {
        match engine.eval_rule(deny.clone()).map_err(failed)? {
            Value::Undefined | Value::Bool(false) => {}
            Value::Set(s) if s.is_empty() => {}
            Value::Array(a) if a.is_empty() => {}
            Value::Bool(true) => return Err(denied("deny".into())),
            other => return Err(denied(format!("deny: {other}"))),
        }
    }
    match engine.eval_rule(p.allow.clone()).map_err(failed)? {
        Value::Bool(true) => Ok(()),
        Value::Undefined => Err(denied("allow undefined".into())),
        other => Err(denied(format!("allow is {other}"))),
    }
}

/// Whether the source has a rule head named `name` (a line starting with it, or with
/// `default name`).
fn declares(text: &str, name: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim_start();
        let l = l.strip_prefix("default ").map_or(l, str::trim_start);
        l.strip_prefix(name)
            .is_some_and(|rest| !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_'))
    })
}

#[cfg(test)]
mod tests;
