//! The stable error codes clients see in `error.data.code` (the seed's MCP-001 … MCP-017, MCP-999),
//! and the JSON-RPC error body that carries them.

use std::fmt::Write as _;

use super::Id;

/// A stable, documented error code. The numbering follows the security seed so that clients of
/// the servers it describes keep working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum McpCode {
    /// Invalid arguments or an invalid message.
    InvalidArgs,
    /// Not authenticated or not allowed.
    Unauthorized,
    /// The upstream is unreachable or misbehaved.
    BackendUnavailable,
    /// The upstream did not answer in time.
    Timeout,
    /// An idempotency key was reused with a different body.
    IdempotencyConflict,
    /// A rate or concurrency limit was exceeded.
    RateLimitExceeded,
    /// The tool (or route) does not exist for this caller.
    UnknownTool,
    /// No handler for the method.
    NoHandler,
    /// A tool result violated its declared output schema.
    OutputSchemaViolation,
    /// A symbol is not allowed.
    InvalidSymbol,
    /// An outbound URL was refused by the SSRF guard.
    SsrfBlocked,
    /// The request body exceeds the size limit.
    PayloadTooLarge,
    /// Anything else: an internal error.
    Internal,
}

impl McpCode {
    /// The code as clients see it, e.g. `MCP-017`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArgs => "MCP-001",
            Self::Unauthorized => "MCP-002",
            Self::BackendUnavailable => "MCP-003",
            Self::Timeout => "MCP-004",
            Self::IdempotencyConflict => "MCP-005",
            Self::RateLimitExceeded => "MCP-006",
            Self::UnknownTool => "MCP-007",
            Self::NoHandler => "MCP-008",
            Self::OutputSchemaViolation => "MCP-009",
            Self::InvalidSymbol => "MCP-015",
            Self::SsrfBlocked => "MCP-016",
            Self::PayloadTooLarge => "MCP-017",
            Self::Internal => "MCP-999",
        }
    }
}

/// JSON-RPC 2.0 error codes used by the gateway.
pub mod rpc {
    /// Invalid JSON was received.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON is not a valid request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method does not exist.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Invalid method parameters.
    pub const INVALID_PARAMS: i64 = -32602;
    /// Internal JSON-RPC error.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// Implementation-defined server error (used for transport-level refusals).
    pub const SERVER_ERROR: i64 = -32000;
    /// 2026-07-28 `HeaderMismatch`: a mirrored header (`Mcp-Method`, `Mcp-Name`) is missing or
    /// disagrees with the body.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// 2026-07-28 `UnsupportedProtocolVersion`: `data` names the supported and requested ones.
    pub const UNSUPPORTED_VERSION: i64 = -32022;
}

/// Builds the JSON-RPC error body: `{"jsonrpc":"2.0","id":…,"error":{"code":…,"message":…,
/// "data":{"code":"MCP-…","request_id":"…"}}}`. `message` must be a fixed, generic text.
pub fn error_body(
    id: Option<&Id>,
    rpc_code: i64,
    message: &str,
    code: McpCode,
    request_id: &str,
) -> String {
    error_body_at(id, rpc_code, message, code, request_id, None)
}

/// [`error_body`] with `data.path`: the JSON pointer, in the client's own arguments, of what
/// failed validation.
pub fn error_body_at(
    id: Option<&Id>,
    rpc_code: i64,
    message: &str,
    code: McpCode,
    request_id: &str,
    path: Option<&str>,
) -> String {
    let mut s = String::with_capacity(160);
    s.push_str("{\"jsonrpc\":\"2.0\",\"id\":");
    match id {
        Some(id) => id.write_json(&mut s),
        None => s.push_str("null"),
    }
    let _ = write!(s, ",\"error\":{{\"code\":{rpc_code},\"message\":");
    push_json_str(&mut s, message);
    let _ = write!(
        s,
        ",\"data\":{{\"code\":\"{}\",\"request_id\":",
        code.as_str()
    );
    push_json_str(&mut s, request_id);
    if let Some(p) = path {
        s.push_str(",\"path\":");
        push_json_str(&mut s, p);
    }
    s.push_str("}}}");
    s
}

/// Appends `v` as a JSON string literal.
pub fn push_json_str(out: &mut String, v: &str) {
    // serde_json's escaping is correct and fast; a String is always valid UTF-8 JSON output.
    out.push_str(&serde_json::to_string(v).unwrap_or_else(|_| "\"\"".to_owned()));
}
