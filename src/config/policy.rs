//! `[[authz.policy]]`: OPA Rego policy files, read and compiled once at start-up so a policy
//! that does not parse is a config error, reported with every other one. The decisions are in
//! `controls::policy`.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use super::validated::Errors;

/// The actions a policy can be limited to: what `input.action` says for each MCP method.
pub const ACTIONS: &[&str] = &["execute", "read", "subscribe", "complete", "admin", "task"];

/// `[[authz.policy]]`
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// The `.rego` file (relative to the working directory).
    pub file: Option<PathBuf>,
    /// Only requests with one of these `input.action` values are put to this policy (default:
    /// all). Seed 003's `tool_access.rego` decides `execute`, its `admin_access.rego` `admin`.
    pub actions: Option<Vec<String>>,
    /// The file uses Rego v1 syntax (`if`, `contains`); default false: pre-1.0 syntax, as the
    /// seed's policies are written.
    pub rego_v1: Option<bool>,
}

/// One policy, read and checked.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Where it came from (for messages).
    pub file: PathBuf,
    /// Its `package`, without `data.`.
    pub package: String,
    /// The source text.
    pub text: String,
    /// Rego v1 syntax.
    pub rego_v1: bool,
    /// The actions it decides; `None`: all.
    pub actions: Option<Vec<String>>,
}

/// A fresh engine holding one policy; the package name or why it does not load.
pub fn compile(
    engine: &mut regorus::Engine,
    file: &std::path::Path,
    text: &str,
    rego_v1: bool,
) -> Result<String, String> {
    engine.set_rego_v0(!rego_v1);
    let package = engine
        .add_policy(file.display().to_string(), text.to_owned())
        .map_err(|e| e.to_string())?;
    let package = package.strip_prefix("data.").unwrap_or(&package).to_owned();
    // The decision is `allow` (and `deny`); a package without `allow` would deny everything,
    // which is a mistake worth saying at start-up.
    engine.set_input(regorus::Value::new_object());
    engine
        .eval_rule(format!("data.{package}.allow"))
        .map_err(|e| format!("no usable `allow` rule in package {package}: {e}"))?;
    Ok(package)
}

/// Reads and compiles one policy file.
pub fn read(
    file: &std::path::Path,
    rego_v1: bool,
    actions: Option<Vec<String>>,
) -> Result<PolicyConfig, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|why| format!("cannot read {}: {why}", file.display()))?;
    let package = compile(&mut regorus::Engine::new(), file, &text, rego_v1)
        .map_err(|why| format!("{}: {why}", file.display()))?;
    Ok(PolicyConfig {
        file: file.to_owned(),
        package,
        text,
        rego_v1,
        actions,
    })
}

pub(super) fn policies(raw: Vec<RawPolicy>, e: &mut Errors) -> Vec<PolicyConfig> {
    let mut out: Vec<PolicyConfig> = Vec::with_capacity(raw.len());
    for (i, p) in raw.into_iter().enumerate() {
        let key = format!("authz.policy[{i}]");
        let Some(file) = p.file else {
            e.push(format!("{key}.file"), "required");
            continue;
        };
        if let Some(a) = &p.actions {
            for (j, a) in a.iter().enumerate() {
                if !ACTIONS.contains(&a.as_str()) {
                    e.push(
                        format!("{key}.actions[{j}]"),
                        format!("unknown action {a:?}; one of {}", ACTIONS.join(", ")),
                    );
                }
            }
        }
        match read(&file, p.rego_v1.unwrap_or(false), p.actions) {
            Ok(policy) => {
                if out.iter().any(|o| o.package == policy.package) {
                    e.push(
                        format!("{key}.file"),
                        format!(
                            "package {} is already loaded from another file",
                            policy.package
                        ),
                    );
                    continue;
                }
                out.push(policy);
            }
            Err(why) => e.push(format!("{key}.file"), why),
        }
    }
    out
}
