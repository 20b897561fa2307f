//! The two protocol eras, downstream: legacy (`initialize`, sessions; 2025-03-26 to 2025-11-25)
//! and modern (2026-07-28: stateless, `_meta` on every request, `server/discover`). Upstream the
//! hub always speaks legacy ([`super::conn::UPSTREAM_VERSIONS`]), so a modern client reaches a
//! legacy-only server through the hub; this module makes the results each side sees fit its era.

use std::borrow::Cow;

use serde_json::{json, Map, Value};

use super::conn::Conn;
use super::wire;

/// The modern version.
pub const MODERN: &str = "2026-07-28";

/// Legacy versions a client may `initialize` with, newest first.
pub const LEGACY: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];

/// `_meta` key of the protocol version on modern requests.
pub const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// The `_meta` key of a 2026-07-28 client's capabilities.
pub const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// The `_meta` key of a 2026-07-28 client's name and version.
pub const META_CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";

/// The version to answer `initialize` with: the client's if supported, else the newest.
pub fn negotiate(requested: Option<&str>) -> &'static str {
    requested
        .and_then(|r| LEGACY.iter().find(|v| **v == r))
        .copied()
        .unwrap_or(LEGACY[0])
}

/// Whether `v` is a version this hub serves statelessly.
pub fn is_modern_supported(v: &str) -> bool {
    v == MODERN
}

/// The capabilities of the merged server: what at least one upstream offers. List changes are
/// always announced: the hub notifies them whenever an upstream does.
pub fn capabilities(conns: &[&Conn]) -> Value {
    let mut caps = Map::new();
    let any = |k: &str| conns.iter().any(|c| c.offers(k));
    if any("tools") {
        caps.insert("tools".into(), json!({ "listChanged": true }));
    }
    if any("prompts") {
        caps.insert("prompts".into(), json!({ "listChanged": true }));
    }
    if any("resources") {
        let subscribe = conns.iter().any(|c| {
            c.init
                .pointer("/capabilities/resources/subscribe")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        });
        caps.insert(
            "resources".into(),
            json!({ "listChanged": true, "subscribe": subscribe }),
        );
    }
    if any("completions") {
        caps.insert("completions".into(), json!({}));
    }
    if any("logging") {
        caps.insert("logging".into(), json!({}));
    }
    Value::Object(caps)
}

fn server_info() -> Value {
    json!({ "name": "palisade", "version": env!("CARGO_PKG_VERSION") })
}

/// The `InitializeResult` of the hub.
pub fn initialize_result(version: &str, capabilities: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "protocolVersion": version,
        "capabilities": capabilities,
        "serverInfo": server_info(),
        "instructions": "Palisade MCP gateway: tools and prompts of each upstream are named {upstream}__{name}.",
    }))
    .unwrap_or_default()
}

/// The `server/discover` result (2026-07-28).
pub fn discover_result(capabilities: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "resultType": "complete",
        "supportedVersions": [MODERN],
        "capabilities": capabilities,
        "ttlMs": 0,
        "cacheScope": "private",
        "_meta": { "io.modelcontextprotocol/serverInfo": server_info() },
    }))
    .unwrap_or_default()
}

/// The 2026-07-28 `UnsupportedProtocolVersion` error body (HTTP 400), naming what is supported.
pub fn unsupported_version_body(
    id: Option<&crate::proto::Id>,
    requested: &str,
    request_id: &str,
) -> String {
    let id = match id {
        Some(crate::proto::Id::Num(n)) => json!(n),
        Some(crate::proto::Id::Str(s)) => json!(s),
        None => Value::Null,
    };
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": crate::proto::codes::rpc::UNSUPPORTED_VERSION,
            "message": "Unsupported protocol version",
            "data": {
                "supported": [MODERN],
                "requested": requested,
                "code": "MCP-001",
                "request_id": request_id,
            },
        },
    })
    .to_string()
}

/// Whether a modern result of `method` must say how long it may be cached.
fn cacheable(method: &str) -> bool {
    matches!(
        method,
        "tools/list"
            | "prompts/list"
            | "resources/list"
            | "resources/templates/list"
            | "resources/read"
            | "server/discover"
    )
}

/// A result as a client of the request's era expects it: modern results carry `resultType`
/// (and, for lists and reads, `ttlMs` and `cacheScope`); a legacy upstream sends none. Added
/// only when absent, everything else kept byte for byte. A legacy client gets none of them
/// from a 2026-07-28 upstream (`from_modern`).
pub fn fit_result<'a>(
    result: &'a [u8],
    method: &str,
    modern: bool,
    from_modern: bool,
) -> Cow<'a, [u8]> {
    if result.first() != Some(&b'{') {
        return Cow::Borrowed(result);
    }
    if !modern {
        if !from_modern {
            return Cow::Borrowed(result);
        }
        let mut out = Cow::Borrowed(result);
        for k in ["resultType", "ttlMs", "cacheScope"] {
            if wire::member(&out, k).is_some() {
                out = Cow::Owned(wire::set_member(&out, k, None));
            }
        }
        return out;
    }
    let mut out = Cow::Borrowed(result);
    if wire::member(&out, "resultType").is_none() {
        out = Cow::Owned(wire::set_member(&out, "resultType", Some(b"\"complete\"")));
    }
    if cacheable(method) {
        if wire::member(&out, "ttlMs").is_none() {
            out = Cow::Owned(wire::set_member(&out, "ttlMs", Some(b"0")));
        }
        if wire::member(&out, "cacheScope").is_none() {
            out = Cow::Owned(wire::set_member(&out, "cacheScope", Some(b"\"private\"")));
        }
    }
    out
}

/// The client capabilities the hub may declare upstream for a legacy client: the ones it can
/// relay (`sampling`, `elicitation`, `roots`), taken from `initialize`.
pub fn relayable_capabilities(params: Option<&[u8]>) -> Vec<u8> {
    only_relayable(params.and_then(|p| wire::member(p, "capabilities")))
}

/// The same for a 2026-07-28 request, whose capabilities are in its `_meta`.
pub fn modern_capabilities(params: Option<&[u8]>) -> Vec<u8> {
    only_relayable(
        params
            .and_then(|p| wire::member(p, "_meta"))
            .and_then(|m| wire::member(m, META_CAPABILITIES)),
    )
}

fn only_relayable(caps: Option<&[u8]>) -> Vec<u8> {
    let mut out = b"{}".to_vec();
    if let Some(c) = caps {
        for k in ["sampling", "elicitation", "roots"] {
            if let Some(v) = wire::member(c, k) {
                out = wire::set_member(&out, k, Some(v));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modern_results_get_their_required_members_once() {
        let r = fit_result(br#"{"tools":[]}"#, "tools/list", true, false);
        let v: Value = serde_json::from_slice(&r).unwrap();
        assert_eq!(
            v,
            json!({"tools":[],"resultType":"complete","ttlMs":0,"cacheScope":"private"})
        );
        let r = fit_result(
            br#"{"content":[],"resultType":"complete"}"#,
            "tools/call",
            true,
            true,
        );
        assert_eq!(&*r, br#"{"content":[],"resultType":"complete"}"#);
        let legacy = fit_result(br#"{"tools":[]}"#, "tools/list", false, false);
        assert_eq!(&*legacy, br#"{"tools":[]}"#);
        // A 2026-07-28 upstream's members never reach a legacy client.
        let down = fit_result(
            br#"{"content":[],"resultType":"complete","ttlMs":5,"cacheScope":"public"}"#,
            "resources/read",
            false,
            true,
        );
        assert_eq!(&*down, br#"{"content":[]}"#);
    }

    #[test]
    fn versions_negotiate_down_to_what_is_supported() {
        assert_eq!(negotiate(Some("2025-06-18")), "2025-06-18");
        assert_eq!(negotiate(Some("2099-01-01")), "2025-11-25");
        assert_eq!(negotiate(None), "2025-11-25");
        assert!(is_modern_supported("2026-07-28"));
        assert!(!is_modern_supported("2025-11-25"));
    }

    #[test]
    fn only_relayable_capabilities_are_declared_upstream() {
        let p = br#"{"capabilities":{"sampling":{},"roots":{"listChanged":true},"experimental":{"x":1}}}"#;
        let c: Value = serde_json::from_slice(&relayable_capabilities(Some(p))).unwrap();
        assert_eq!(c, json!({"sampling":{},"roots":{"listChanged":true}}));
        assert_eq!(relayable_capabilities(None), b"{}");
    }
}
