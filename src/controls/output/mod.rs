//! Output checks on a tool's result, before the client sees it (MCP spec: servers must
//! sanitise tool outputs; seed 001's MCP-009).
//!
//! - **Output schema**: when the tool's definition declares `outputSchema`, a successful
//!   result must carry `structuredContent` that validates against it; otherwise the client gets
//!   an error (MCP-009) instead of the result.
//! - **Secrets** ([`secrets`]): known-format secrets in any string of the result are replaced
//!   by `[REDACTED:kind]` (mode `redact`, the default), or only reported (`audit`), or left
//!   alone (`off`); a tool may allow some kinds (`[[upstream.tools]] allow_secrets`).
//!
//! Every finding writes an audit event (control `output`) with the request's id; the secret
//! itself is never logged. A result with nothing to report passes byte for byte.

pub mod secrets;

use std::sync::Arc;

use jsonschema::Validator;
use serde_json::Value;

use bytes::Bytes;

use crate::audit::{AuditHandle, AuditRecord, Decision, Text};
use crate::config::SecretMode;
use crate::proto::{codes, Envelope, Id, McpCode};

/// Why a result was withheld.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// `structuredContent` is missing or does not match the tool's `outputSchema`.
    #[error("tool {tool} output does not match its outputSchema at {path:?}: {detail}")]
    Schema {
        /// The tool.
        tool: String,
        /// JSON pointer in `structuredContent`.
        path: String,
        /// The validator's message.
        detail: String,
    },
}

/// What to do with one result.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send it as it is.
    Pass,
    /// Send this result instead (secrets redacted).
    Replace(Vec<u8>),
    /// Send an error instead.
    Refuse(OutputError),
}

/// Who asked: what the audit events of a result say.
#[derive(Debug, Clone)]
pub struct Context {
    /// The audit trail.
    pub audit: AuditHandle,
    /// The request's id (joins the event to the request's own record).
    pub request_id: Text,
    /// Principal id.
    pub principal: Text,
    /// Upstream name.
    pub upstream: Text,
}

/// The checks for one call's result: built when the call is authorized (the tool's definition
/// is at hand then), applied when the result arrives. Owned, so a stream relay can carry it.
#[derive(Debug, Clone)]
pub struct Check {
    tool: Arc<str>,
    schema: Option<Arc<Validator>>,
    mode: SecretMode,
    allowed: u16,
    cx: Context,
}

impl Check {
    /// The checks for `tool`: its compiled `outputSchema` (if it declares one), the secret
    /// mode and the kinds the tool may return.
    pub fn new(
        tool: &str,
        schema: Option<Arc<Validator>>,
        mode: SecretMode,
        allowed: u16,
        cx: Context,
    ) -> Check {
        Check {
            tool: Arc::from(tool),
            schema,
            mode,
            allowed,
            cx,
        }
    }

    /// The request id events carry (and error bodies quote).
    pub fn request_id(&self) -> &str {
        self.cx.request_id.as_str()
    }

    /// Applies the check to a whole JSON-RPC response to the call: the message to send
    /// instead, if it changes (errors from the upstream pass as they are).
    pub fn response(&self, env: &Envelope) -> Option<Bytes> {
        let id = env.id()?;
        match self.result(env.result()?) {
            Verdict::Pass => None,
            Verdict::Replace(new) => Some(crate::hub::wire::response(id, "result", &new)),
            Verdict::Refuse(_) => Some(self.refused(id)),
        }
    }

    /// The error a client gets instead of a result that failed the output schema.
    pub fn refused(&self, id: &Id) -> Bytes {
        Bytes::from(codes::error_body(
            Some(id),
            codes::rpc::INTERNAL_ERROR,
            "Tool output failed validation",
            McpCode::OutputSchemaViolation,
            self.request_id(),
        ))
    }

    /// Whether this check can change anything (else callers skip it).
    pub fn is_active(&self) -> bool {
        self.schema.is_some() || self.mode != SecretMode::Off
    }

    /// Decides on a raw `result` member, writing an audit event for each finding.
    pub fn result(&self, raw: &[u8]) -> Verdict {
        let scan = self.mode != SecretMode::Off && secrets::maybe(raw);
        if self.schema.is_none() && !scan {
            return Verdict::Pass;
        }
        let Ok(mut result) = serde_json::from_slice::<Value>(raw) else {
            // Not JSON: the response checks upstream of here refuse that already.
            return Verdict::Pass;
        };
        if let Some(schema) = &self.schema {
            if let Err(e) = self.conforms(schema, &result) {
                self.event(Decision::Deny, "output_schema");
                tracing::warn!(target: "palisade::output", request_id = %self.cx.request_id.as_str(), error = %e, "tool result withheld");
                return Verdict::Refuse(e);
            }
        }
        if !scan {
            return Verdict::Pass;
        }
        let found = redact_value(&mut result, self.allowed);
        if found == 0 {
            return Verdict::Pass;
        }
        let redacting = self.mode == SecretMode::Redact;
        for k in secrets::ALL.into_iter().filter(|k| found & k.bit() != 0) {
            let reason = if redacting {
                k.redacted()
            } else {
                k.detected()
            };
            self.event(Decision::Allow, reason);
        }
        tracing::warn!(target: "palisade::output", request_id = %self.cx.request_id.as_str(), tool = %self.tool, redacted = redacting, "secrets in a tool result");
        if !redacting {
            return Verdict::Pass;
        }
        match serde_json::to_vec(&result) {
            Ok(bytes) => Verdict::Replace(bytes),
            Err(_) => Verdict::Pass,
        }
    }

    fn conforms(&self, schema: &Validator, result: &Value) -> Result<(), OutputError> {
        // An error result reports a failure; it has no structured output to check.
        if result.get("isError") == Some(&Value::Bool(true)) {
            return Ok(());
        }
        let fail = |path: String, detail: String| OutputError::Schema {
            tool: self.tool.to_string(),
            path,
            detail,
        };
        let Some(structured) = result.get("structuredContent") else {
            return Err(fail(String::new(), "no structuredContent".into()));
        };
        schema
            .validate(structured)
            .map_err(|e| fail(e.instance_path().to_string(), e.to_string()))
    }

    fn event(&self, decision: Decision, reason: &'static str) {
        let mut record = AuditRecord::event("output", "output", reason, decision);
        record.request_id = self.cx.request_id.clone();
        record.principal = self.cx.principal.clone();
        record.upstream = Some(self.cx.upstream.clone());
        record.rpc_method = Some(Text::fixed("tools/call"));
        record.tool = Some(Text::copy(&self.tool));
        record.error_code = (decision == Decision::Deny).then(|| Text::fixed("MCP-009"));
        self.cx.audit.write_later(record);
    }
}

/// Redacts every string (and every integer that is a card number) in `v`; the kinds found.
fn redact_value(v: &mut Value, allowed: u16) -> u16 {
    match v {
        Value::String(s) => match secrets::redact(s, allowed) {
            Some((r, found)) => {
                *s = r;
                found
            }
            None => 0,
        },
        Value::Number(n) => {
            let card = secrets::Kind::Card;
            let digits = n.as_u64().map(|x| x.to_string()).unwrap_or_default();
            if card.bit() & allowed == 0 && secrets::is_card(&digits) {
                *v = Value::String(format!("[REDACTED:{}]", card.name()));
                card.bit()
            } else {
                0
            }
        }
        Value::Array(a) => a.iter_mut().fold(0, |f, x| f | redact_value(x, allowed)),
        Value::Object(o) => o
            .iter_mut()
            .fold(0, |f, (_, x)| f | redact_value(x, allowed)),
        Value::Null | Value::Bool(_) => 0,
    }
}

#[cfg(test)]
mod tests;
