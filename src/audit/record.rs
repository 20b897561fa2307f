//! The audit record and its canonical bytes.

use serde::{Deserialize, Serialize};

/// Whether the request was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Forwarded upstream.
    Allow,
    /// Refused by a control.
    Deny,
}

impl Decision {
    /// Stable text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

/// One request, as the audit trail keeps it. Field names are fixed: tools and dashboards rely on
/// them. The hash chain is computed over [`AuditRecord::canonical`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Milliseconds since the Unix epoch when the request arrived.
    pub ts_ms: i64,
    /// UUIDv7 of the request, also sent to the client in errors.
    pub request_id: String,
    /// Principal id (`anonymous` in no-auth mode).
    pub principal: String,
    /// How the principal authenticated.
    pub auth_method: String,
    /// Client IP address.
    pub client_ip: String,
    /// Front-door transport (`http`).
    pub transport: String,
    /// Route / upstream name, if resolved.
    pub upstream: Option<String>,
    /// HTTP method.
    pub http_method: String,
    /// JSON-RPC method, if parsed.
    pub rpc_method: Option<String>,
    /// Tool name for `tools/call`.
    pub tool: Option<String>,
    /// SHA-256 (hex) of the raw `params` bytes.
    pub input_hash: Option<String>,
    /// allow / deny.
    pub decision: Decision,
    /// The control that decided (`origin`, `envelope`, `session`, `upstream`, …).
    pub control: String,
    /// Its reason code (`foreign_origin`, `ok`, …).
    pub reason: String,
    /// HTTP status returned to the client.
    pub status: u16,
    /// Stable error code returned to the client, if any.
    pub error_code: Option<String>,
    /// Microseconds from arrival to the end of the response.
    pub duration_us: i64,
    /// Request body bytes.
    pub input_bytes: i64,
    /// Response body bytes sent to the client.
    pub output_bytes: i64,
}

impl AuditRecord {
    /// The bytes the hash chain covers: the record as JSON with fields in declaration order.
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}
