//! JSON-RPC messages the hub writes, and the few edits it makes to messages it relays.
//!
//! Edits are splices over the original bytes (member spans from the strict scanner), never a
//! parse into a tree and back: unknown members and number spellings pass through intact.

use bytes::Bytes;

use crate::proto::{json, Id};

/// A request to an upstream, with the hub's own numeric id.
pub fn request(id: i64, method: &str, params: Option<&[u8]>) -> Bytes {
    message(Some(id), method, params)
}

/// A notification.
pub fn notification(method: &str, params: Option<&[u8]>) -> Bytes {
    message(None, method, params)
}

fn message(id: Option<i64>, method: &str, params: Option<&[u8]>) -> Bytes {
    let mut s = Vec::with_capacity(64 + params.map_or(0, <[u8]>::len));
    s.extend_from_slice(b"{\"jsonrpc\":\"2.0\",");
    if let Some(id) = id {
        s.extend_from_slice(b"\"id\":");
        s.extend_from_slice(id.to_string().as_bytes());
        s.push(b',');
    }
    s.extend_from_slice(b"\"method\":");
    push_str(&mut s, method);
    if let Some(p) = params {
        s.extend_from_slice(b",\"params\":");
        s.extend_from_slice(p);
    }
    s.push(b'}');
    s.into()
}

/// A response with a raw id (`result` or `error` member already written as `member`).
pub fn response_raw_id(id: &[u8], member: &str, value: &[u8]) -> Bytes {
    let mut s = Vec::with_capacity(40 + id.len() + value.len());
    s.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    s.extend_from_slice(id);
    s.extend_from_slice(b",\"");
    s.extend_from_slice(member.as_bytes());
    s.extend_from_slice(b"\":");
    s.extend_from_slice(value);
    s.push(b'}');
    s.into()
}

/// A response to a downstream request: `member` is `result` or `error`.
pub fn response(id: &Id, member: &str, value: &[u8]) -> Bytes {
    let mut idj = String::with_capacity(16);
    id.write_json(&mut idj);
    response_raw_id(idj.as_bytes(), member, value)
}

/// A JSON-RPC error object.
pub fn error_object(code: i64, message: &str) -> Vec<u8> {
    let mut s = Vec::with_capacity(48 + message.len());
    s.extend_from_slice(b"{\"code\":");
    s.extend_from_slice(code.to_string().as_bytes());
    s.extend_from_slice(b",\"message\":");
    push_str(&mut s, message);
    s.push(b'}');
    s
}

/// Appends `v` as a JSON string.
pub fn push_str(out: &mut Vec<u8>, v: &str) {
    // serde_json's escaping of a plain &str cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
}

/// The raw value of member `key` of the (already validated) object `obj`.
pub fn member<'a>(obj: &'a [u8], key: &str) -> Option<&'a [u8]> {
    crate::proto::envelope::member(obj, key).map(|r| &obj[r])
}

/// `obj` with member `key` set to the raw JSON `value` (added last when absent), or removed
/// when `value` is `None`. Every other member keeps its bytes.
pub fn set_member(obj: &[u8], key: &str, value: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(obj.len() + key.len() + value.map_or(0, <[u8]>::len) + 4);
    out.push(b'{');
    let mut first = true;
    let mut done = false;
    let _ = json::scan(obj, usize::MAX, |k, r| {
        let v = if k == key {
            done = true;
            match value {
                Some(v) => v,
                None => return Ok(()),
            }
        } else {
            &obj[r]
        };
        if !first {
            out.push(b',');
        }
        first = false;
        push_str(&mut out, k);
        out.push(b':');
        out.extend_from_slice(v);
        Ok(())
    });
    if let (false, Some(v)) = (done, value) {
        if !first {
            out.push(b',');
        }
        push_str(&mut out, key);
        out.push(b':');
        out.extend_from_slice(v);
    }
    out.push(b'}');
    out
}

/// Prefix of the `_meta` keys the 2026-07-28 era reserves for protocol data
/// (`io.modelcontextprotocol/protocolVersion`, `…/clientCapabilities`, `…/clientInfo`).
pub const MODERN_META_PREFIX: &str = "io.modelcontextprotocol/";

/// What to change in a request's `params` before it goes to an upstream.
#[derive(Debug, Default)]
pub struct ParamEdits<'a> {
    /// New value of `params.name` (the original, un-namespaced name).
    pub name: Option<&'a str>,
    /// New `_meta.progressToken` (raw JSON).
    pub progress_token: Option<&'a [u8]>,
    /// Drop the modern era's reserved `_meta` keys (the upstream speaks the legacy era).
    pub strip_modern_meta: bool,
}

/// `params` with the edits applied; untouched members keep their bytes.
pub fn edit_params(params: &[u8], edits: &ParamEdits<'_>) -> Vec<u8> {
    let mut out = match edits.name {
        Some(n) => {
            let mut v = Vec::with_capacity(n.len() + 2);
            push_str(&mut v, n);
            set_member(params, "name", Some(&v))
        }
        None => params.to_vec(),
    };
    if edits.progress_token.is_some() || edits.strip_modern_meta {
        if let Some(meta) = member(&out, "_meta").map(<[u8]>::to_vec) {
            let mut m = meta;
            if let Some(t) = edits.progress_token {
                m = set_member(&m, "progressToken", Some(t));
            }
            if edits.strip_modern_meta {
                m = without_prefixed(&m, MODERN_META_PREFIX);
            }
            out = if m == b"{}" {
                set_member(&out, "_meta", None)
            } else {
                set_member(&out, "_meta", Some(&m))
            };
        }
    }
    out
}

/// `obj` without the members whose key starts with `prefix`.
pub fn without_prefixed(obj: &[u8], prefix: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(obj.len());
    out.push(b'{');
    let mut first = true;
    let _ = json::scan(obj, usize::MAX, |k, r| {
        if k.starts_with(prefix) {
            return Ok(());
        }
        if !first {
            out.push(b',');
        }
        first = false;
        push_str(&mut out, k);
        out.push(b':');
        out.extend_from_slice(&obj[r]);
        Ok(())
    });
    out.push(b'}');
    out
}

/// `params` with `_meta` holding the raw `members` (the hub's 2026-07-28 protocol members) in
/// place of any the client sent under the reserved prefix; its other `_meta` members are kept.
pub fn with_meta(params: &[u8], members: &[u8]) -> Vec<u8> {
    let mut meta = match member(params, "_meta") {
        Some(m) if m.first() == Some(&b'{') => without_prefixed(m, MODERN_META_PREFIX),
        _ => b"{}".to_vec(),
    };
    meta.pop();
    if meta.len() > 1 {
        meta.push(b',');
    }
    meta.extend_from_slice(members);
    meta.push(b'}');
    set_member(params, "_meta", Some(&meta))
}

/// The raw `progressToken` of a `notifications/progress` notification's params.
pub fn progress_token_of_notification(params: &[u8]) -> Option<&[u8]> {
    member(params, "progressToken")
}

/// The raw `_meta.progressToken` of `params`, if any.
pub fn progress_token(params: &[u8]) -> Option<&[u8]> {
    member(params, "_meta").and_then(|m| member(m, "progressToken"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(b: &[u8]) -> serde_json::Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn name_is_replaced_and_everything_else_kept_verbatim() {
        let p = br#"{"name":"demo__echo","arguments":{"text":"1.10","n":1e2},"x-new":[1, 2]}"#;
        let out = edit_params(
            p,
            &ParamEdits {
                name: Some("echo"),
                ..Default::default()
            },
        );
        let s = std::str::from_utf8(&out).unwrap();
        assert_eq!(
            s,
            r#"{"name":"echo","arguments":{"text":"1.10","n":1e2},"x-new":[1, 2]}"#
        );
    }

    #[test]
    fn progress_token_is_swapped_and_modern_meta_dropped() {
        let p = br#"{"name":"t","_meta":{"progressToken":"client-1","io.modelcontextprotocol/protocolVersion":"2026-07-28","trace":"x"}}"#;
        let out = edit_params(
            p,
            &ParamEdits {
                name: None,
                progress_token: Some(b"17"),
                strip_modern_meta: true,
            },
        );
        assert_eq!(
            v(&out),
            serde_json::json!({"name":"t","_meta":{"progressToken":17,"trace":"x"}})
        );
        assert_eq!(progress_token(p), Some(&br#""client-1""#[..]));
    }

    #[test]
    fn modern_meta_replaces_the_clients_reserved_members_only() {
        let members = br#""io.modelcontextprotocol/protocolVersion":"2026-07-28""#;
        let p = br#"{"name":"t","_meta":{"progressToken":3,"io.modelcontextprotocol/protocolVersion":"2099-01-01"}}"#;
        assert_eq!(
            v(&with_meta(p, members)),
            serde_json::json!({"name":"t","_meta":{"progressToken":3,"io.modelcontextprotocol/protocolVersion":"2026-07-28"}})
        );
        assert_eq!(
            v(&with_meta(b"{}", members)),
            serde_json::json!({"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}})
        );
    }

    #[test]
    fn empty_meta_after_stripping_is_removed() {
        let p = br#"{"_meta":{"io.modelcontextprotocol/clientInfo":{"name":"c"}},"cursor":"a"}"#;
        let out = edit_params(
            p,
            &ParamEdits {
                strip_modern_meta: true,
                ..Default::default()
            },
        );
        assert_eq!(v(&out), serde_json::json!({"cursor":"a"}));
    }

    #[test]
    fn escaped_names_are_written_as_valid_json() {
        let out = set_member(br#"{"a":1}"#, "name", Some(br#""q\"x""#));
        assert_eq!(v(&out), serde_json::json!({"a":1,"name":"q\"x"}));
        let req = request(7, "tools/call", Some(&out));
        assert_eq!(
            v(&req),
            serde_json::json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"a":1,"name":"q\"x"}})
        );
        let r = response(&Id::parse(b"\"abc\"").unwrap(), "result", b"{}");
        assert_eq!(
            v(&r),
            serde_json::json!({"jsonrpc":"2.0","id":"abc","result":{}})
        );
    }
}
