//! Input validation of client requests, on by default: tool names, prototype-changing keys,
//! and a call's arguments against the tool's own `inputSchema` (compiled once per definition).
//! Each refusal names what failed for the audit; the client gets -32602 with the failing path.

mod finance;
mod schema;

pub use finance::{decimal, rfc3339, Rules};
pub use schema::Schemas;

use serde_json::Value;

use crate::proto::{Envelope, McpCode};

/// Longest tool name accepted (seed 001).
pub const MAX_TOOL_NAME: usize = 100;

/// Why a request's input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidateError {
    /// The tool name is too long or has characters outside `A-Za-z0-9_.-/`.
    #[error("tool name {0:?} is too long or has characters outside A-Za-z0-9_.-/")]
    ToolName(String),
    /// A `__proto__`, `constructor` or `prototype` key at this byte offset.
    #[error("prototype-changing key at byte {0}")]
    PrototypeKey(usize),
    /// The tool is not in its upstream's list.
    #[error("no tool {0:?} upstream")]
    UnknownTool(String),
    /// The arguments break the tool's input schema at `path` (a JSON pointer).
    #[error("arguments invalid at {path:?}: {detail}")]
    Arguments {
        /// JSON pointer into the arguments.
        path: String,
        /// The validator's message (audit and log only).
        detail: String,
    },
    /// The arguments are not a JSON object.
    #[error("arguments are not an object")]
    NotAnObject,
    /// A finance rule (seed 001) failed for the argument at `path`.
    #[error("argument {path} broke rule {reason}")]
    Rule {
        /// JSON pointer of the argument.
        path: String,
        /// Which rule.
        reason: &'static str,
    },
    /// A symbol is malformed or not on the allow list (MCP-015).
    #[error("symbol at {path}: {reason}")]
    Symbol {
        /// JSON pointer of the argument.
        path: String,
        /// Which check.
        reason: &'static str,
    },
    /// A URL argument names a place the upstream must not be sent (MCP-016).
    #[error(transparent)]
    Ssrf(#[from] crate::controls::ssrf::SsrfError),
    /// The tool's definition is withheld by tool pinning (changed since approval, not yet
    /// approved, or flagged): it answers as an unknown tool.
    #[error("tool {tool:?} is withheld: {reason}")]
    Withheld {
        /// Tool name.
        tool: String,
        /// `tool_changed`, `tool_unapproved` or `tool_suspicious`.
        reason: &'static str,
    },
    /// The tool's schema does not compile: calls to it are refused.
    #[error("tool {tool:?} has a schema that does not compile: {why}")]
    BrokenSchema {
        /// Tool name.
        tool: String,
        /// Compiler message.
        why: String,
    },
}

impl ValidateError {
    /// The stable code and the audit reason.
    pub fn code_and_reason(&self) -> (McpCode, &'static str) {
        match self {
            ValidateError::ToolName(_) => (McpCode::InvalidArgs, "bad_tool_name"),
            ValidateError::PrototypeKey(_) => (McpCode::InvalidArgs, "prototype_key"),
            ValidateError::UnknownTool(_) => (McpCode::UnknownTool, "unknown_tool"),
            ValidateError::Withheld { reason, .. } => (McpCode::UnknownTool, reason),
            ValidateError::Arguments { .. } => (McpCode::InvalidArgs, "schema_violation"),
            ValidateError::NotAnObject => (McpCode::InvalidArgs, "arguments_not_object"),
            ValidateError::BrokenSchema { .. } => (McpCode::InvalidArgs, "schema_uncompilable"),
            ValidateError::Rule { reason, .. } => (McpCode::InvalidArgs, reason),
            ValidateError::Symbol { reason, .. } => (McpCode::InvalidSymbol, reason),
            ValidateError::Ssrf(e) => (McpCode::SsrfBlocked, e.reason()),
        }
    }

    /// The generic text the client sees.
    pub fn client_message(&self) -> &'static str {
        match self {
            ValidateError::UnknownTool(_) | ValidateError::Withheld { .. } => {
                "Unknown tool, prompt or resource"
            }
            ValidateError::PrototypeKey(_) => "Invalid params: forbidden key",
            ValidateError::ToolName(_) => "Invalid params: tool name",
            ValidateError::Symbol { .. } => "Invalid symbol",
            ValidateError::Ssrf(_) => "URL not allowed",
            _ => "Invalid params",
        }
    }

    /// The failing path the client may see (its own arguments' JSON pointer).
    pub fn path(&self) -> Option<&str> {
        match self {
            ValidateError::Arguments { path, .. }
            | ValidateError::Rule { path, .. }
            | ValidateError::Symbol { path, .. } => Some(path),
            ValidateError::Ssrf(e) => Some(e.path()),
            _ => None,
        }
    }
}

/// Checks a tool name's length and characters.
pub fn tool_name(name: &str) -> Result<(), ValidateError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TOOL_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/'));
    if ok {
        Ok(())
    } else {
        Err(ValidateError::ToolName(
            name.chars().take(MAX_TOOL_NAME + 1).collect(),
        ))
    }
}

/// What the gateway checks on every client message, whatever its route: no prototype-changing
/// key anywhere (the envelope scan noted it), and a well-formed tool name on `tools/call`.
pub fn message(env: &Envelope) -> Result<(), ValidateError> {
    if let Some(at) = env.prototype_key() {
        return Err(ValidateError::PrototypeKey(at));
    }
    if env.method() == Some("tools/call") {
        if let Some(name) = env.param_str("name") {
            tool_name(&name)?;
        }
    }
    Ok(())
}

/// The definition of `name` in an upstream's tool list.
pub fn find_tool<'a>(tools: &'a [Value], name: &str) -> Option<&'a Value> {
    tools
        .iter()
        .find(|t| t.get("name").and_then(Value::as_str) == Some(name))
}

#[cfg(test)]
mod tests;
