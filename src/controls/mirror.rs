//! Mirrored request headers of the 2026-07-28 transport (`Mcp-Method`, `Mcp-Name`, and
//! `MCP-Protocol-Version` against `_meta`).
//!
//! Threat: a parser differential between header and body. Modern clients copy the JSON-RPC
//! `method` and the tool/prompt name or resource URI into headers so that intermediaries can
//! route without reading the body. If a load balancer, a WAF or an upstream trusts the headers
//! while the gateway authorises the body, a request saying `Mcp-Name: get_quote` with a body
//! calling `place_order` would be judged as one call and executed as another. The gateway
//! authorises from the body, and — as the specification requires of anything that processes the
//! body — refuses a modern request whose mirrored headers are missing or disagree with it
//! (HTTP 400, JSON-RPC -32020 `HeaderMismatch`).
//!
//! Legacy requests (no `MCP-Protocol-Version` ≥ 2026-07-28) are not checked: those clients do
//! not send the headers and legacy upstreams do not read them. `Mcp-Param-*` headers depend on
//! each tool's schema (`x-mcp-header`); they are forwarded untouched, as the specification asks
//! of intermediaries that do not recognise them.

use std::borrow::Cow;

use base64::Engine as _;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::proto::{Envelope, Kind};

const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");
const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");

/// Why the mirrored headers were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MirrorError {
    /// A required header is absent.
    #[error("{0} header missing")]
    Missing(&'static str),
    /// The header appears more than once.
    #[error("{0} header repeated")]
    Repeated(&'static str),
    /// The header is not valid text or not valid `=?base64?…?=`.
    #[error("{0} header malformed")]
    Malformed(&'static str),
    /// The header's value differs from the body's.
    #[error("{0} header does not match the body")]
    Mismatch(&'static str),
}

/// Checks `Mcp-Method` and `Mcp-Name` of a modern request against its body. Call it only for
/// requests in the 2026-07-28 era.
pub fn check(headers: &HeaderMap, env: &Envelope) -> Result<(), MirrorError> {
    let Some(method) = env.method() else {
        return Ok(()); // a response carries no method; modern clients send none anyway
    };
    // The version the body claims must be the version the header claims: the gateway picked
    // the era (stateless or session) from the header.
    if let Some(v) = env.meta_str("io.modelcontextprotocol/protocolVersion") {
        let header = single(headers, &MCP_PROTOCOL_VERSION, "MCP-Protocol-Version")?;
        if header.as_deref() != Some(&*v) {
            return Err(MirrorError::Mismatch("MCP-Protocol-Version"));
        }
    }
    let sent =
        single(headers, &MCP_METHOD, "Mcp-Method")?.ok_or(MirrorError::Missing("Mcp-Method"))?;
    if sent != method {
        return Err(MirrorError::Mismatch("Mcp-Method"));
    }
    let key = match (env.kind(), method) {
        (Kind::Request, "tools/call" | "prompts/get") => "name",
        (Kind::Request, "resources/read") => "uri",
        _ => return Ok(()),
    };
    let sent = single(headers, &MCP_NAME, "Mcp-Name")?.ok_or(MirrorError::Missing("Mcp-Name"))?;
    // A body without the parameter is the envelope's or the upstream's to refuse; the header
    // must still not claim a name the body does not have.
    match env.param_str(key) {
        Some(body) if body == sent => Ok(()),
        _ => Err(MirrorError::Mismatch("Mcp-Name")),
    }
}

/// Checks the `Mcp-Param-{Name}` headers of a modern `tools/call` against its `arguments`,
/// for each property the tool's `inputSchema` annotates with `x-mcp-header`. A header that is
/// repeated, not valid text, absent while the argument is present (or the reverse), or not equal
/// to the argument (numbers compared as numbers) is refused. Unannotated `Mcp-Param-*` headers
/// are not this gateway's to judge.
pub fn check_params(
    headers: &HeaderMap,
    arguments: Option<&serde_json::Value>,
    schema: &serde_json::Value,
) -> Result<(), MirrorError> {
    use serde_json::Value;
    const LABEL: &str = "Mcp-Param-*";
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Ok(());
    };
    for (prop, def) in props {
        let Some(h) = def.get("x-mcp-header").and_then(Value::as_str) else {
            continue;
        };
        let Ok(name) = HeaderName::from_bytes(format!("mcp-param-{h}").as_bytes()) else {
            continue; // not a header name: no client can have sent it
        };
        let sent = single(headers, &name, LABEL)?;
        let arg = arguments.and_then(|a| a.get(prop)).filter(|v| !v.is_null());
        let same = match (&sent, arg) {
            (None, None) => true,
            (Some(_), None) | (None, Some(_)) => false,
            (Some(s), Some(Value::String(v))) => s == v,
            (Some(s), Some(Value::Bool(b))) => *s == if *b { "true" } else { "false" },
            (Some(s), Some(Value::Number(n))) => s
                .parse::<f64>()
                .ok()
                .zip(n.as_f64())
                .is_some_and(|(a, b)| a == b),
            (Some(_), Some(_)) => false,
        };
        if !same {
            return Err(match sent {
                None => MirrorError::Missing(LABEL),
                Some(_) => MirrorError::Mismatch(LABEL),
            });
        }
    }
    Ok(())
}

/// The `Mcp-Method` and (given) `Mcp-Name` headers of a 2026-07-28 request the gateway sends.
pub fn routing_headers(method: &str, name: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(4);
    h.insert(MCP_METHOD, encode(method));
    if let Some(n) = name {
        h.insert(MCP_NAME, encode(n));
    }
    h
}

/// Adds the `Mcp-Param-{Name}` headers of a `tools/call` the gateway sends: one per property
/// the tool's `inputSchema` annotates with `x-mcp-header` whose argument is a string, a number
/// or a boolean (the inverse of [`check_params`]).
pub fn param_headers(
    h: &mut HeaderMap,
    arguments: Option<&serde_json::Value>,
    schema: &serde_json::Value,
) {
    use serde_json::Value;
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (prop, def) in props {
        let Some(token) = def.get("x-mcp-header").and_then(Value::as_str) else {
            continue;
        };
        let Ok(name) = HeaderName::from_bytes(format!("mcp-param-{token}").as_bytes()) else {
            continue;
        };
        let text = match arguments.and_then(|a| a.get(prop)) {
            Some(Value::String(s)) => Cow::Borrowed(s.as_str()),
            Some(Value::Bool(b)) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Some(Value::Number(n)) => Cow::Owned(n.to_string()),
            _ => continue,
        };
        h.insert(name, encode(&text));
    }
}

/// A header value carrying `text` exactly: as is when it is printable ASCII without surrounding
/// spaces (and does not itself look encoded), else as `=?base64?…?=`.
fn encode(text: &str) -> HeaderValue {
    let plain = text.bytes().all(|b| (0x20..0x7f).contains(&b))
        && text.trim() == text
        && !(text.starts_with("=?base64?") && text.ends_with("?="));
    if plain {
        if let Ok(v) = HeaderValue::from_str(text) {
            return v;
        }
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(text);
    HeaderValue::from_str(&format!("=?base64?{b64}?=")).unwrap_or(HeaderValue::from_static(""))
}

/// The one value of `name`, decoded: surrounding whitespace trimmed, and the `=?base64?…?=`
/// form (used for values that are not header-safe) decoded strictly, padding included.
fn single<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
    label: &'static str,
) -> Result<Option<Cow<'h, str>>, MirrorError> {
    let mut all = headers.get_all(name).iter();
    let (Some(v), None) = (all.next(), all.next()) else {
        return match headers.contains_key(name) {
            true => Err(MirrorError::Repeated(label)),
            false => Ok(None),
        };
    };
    let text = v
        .to_str()
        .map_err(|_| MirrorError::Malformed(label))?
        .trim();
    match text
        .strip_prefix("=?base64?")
        .and_then(|t| t.strip_suffix("?="))
    {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .map(|s| Some(Cow::Owned(s)))
            .ok_or(MirrorError::Malformed(label)),
        None => Ok(Some(Cow::Borrowed(text))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::HeaderValue;

    fn env(body: &str) -> Envelope {
        Envelope::parse(Bytes::from(body.to_owned()), 64).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"place_order","arguments":{}}}"#;

    #[test]
    fn annotated_parameters_must_match_their_headers() {
        let schema = serde_json::json!({"properties": {
            "symbol": {"type": "string", "x-mcp-header": "Symbol"},
            "qty": {"type": "number", "x-mcp-header": "Qty"},
            "note": {"type": "string"}}});
        let args = serde_json::json!({"symbol": "AAPL", "qty": 10, "note": "x"});
        let ok = headers(&[("mcp-param-symbol", "AAPL"), ("mcp-param-qty", "10.0")]);
        assert_eq!(check_params(&ok, Some(&args), &schema), Ok(()));
        let b64 = headers(&[
            ("mcp-param-symbol", "=?base64?QUFQTA==?="),
            ("mcp-param-qty", "10"),
        ]);
        assert_eq!(check_params(&b64, Some(&args), &schema), Ok(()));
        for bad in [
            headers(&[("mcp-param-symbol", "MSFT"), ("mcp-param-qty", "10")]),
            headers(&[("mcp-param-symbol", "AAPL"), ("mcp-param-qty", "11")]),
            headers(&[("mcp-param-qty", "10")]),
            headers(&[
                ("mcp-param-symbol", "AAPL"),
                ("mcp-param-symbol", "AAPL"),
                ("mcp-param-qty", "10"),
            ]),
            headers(&[
                ("mcp-param-symbol", "=?base64?not base64?="),
                ("mcp-param-qty", "10"),
            ]),
        ] {
            assert!(check_params(&bad, Some(&args), &schema).is_err(), "{bad:?}");
        }
        // A header for an argument that is absent is refused too.
        let none = serde_json::json!({"qty": 10});
        let extra = headers(&[("mcp-param-symbol", "AAPL"), ("mcp-param-qty", "10")]);
        assert!(check_params(&extra, Some(&none), &schema).is_err());
    }

    #[test]
    fn headers_the_gateway_writes_pass_its_own_check() {
        let schema = serde_json::json!({"properties": {
            "symbol": {"type": "string", "x-mcp-header": "Symbol"},
            "qty": {"type": "number", "x-mcp-header": "Qty"},
            "live": {"type": "boolean", "x-mcp-header": "Live"},
            "note": {"type": "string"},
        }});
        for args in [
            serde_json::json!({"symbol": "AAPL", "qty": 1.5, "live": true, "note": "x"}),
            serde_json::json!({"symbol": " Zürich\r\n", "qty": 10}),
            serde_json::json!({"symbol": "=?base64?QQ==?="}),
        ] {
            let mut h = routing_headers("tools/call", Some("place_order"));
            param_headers(&mut h, Some(&args), &schema);
            assert_eq!(check_params(&h, Some(&args), &schema), Ok(()), "{h:?}");
            assert!(!h.contains_key("mcp-param-note"));
        }
        let mut h = routing_headers("tools/call", Some("naïve tool"));
        param_headers(&mut h, Some(&serde_json::json!({"symbol": "é"})), &schema);
        assert_eq!(h["mcp-name"], "=?base64?bmHDr3ZlIHRvb2w=?=");
        assert_eq!(h["mcp-param-symbol"], "=?base64?w6k=?=");
        let body =
            env(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"naïve tool"}}"#);
        assert_eq!(check(&h, &body), Ok(()));
    }

    #[test]
    fn matching_headers_pass() {
        let h = headers(&[("mcp-method", "tools/call"), ("mcp-name", "place_order")]);
        assert_eq!(check(&h, &env(CALL)), Ok(()));
        let h = headers(&[("mcp-method", "tools/list")]);
        assert_eq!(
            check(
                &h,
                &env(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
            ),
            Ok(())
        );
    }

    #[test]
    fn whitespace_around_the_value_is_ignored() {
        let h = headers(&[
            ("mcp-method", " tools/call "),
            ("mcp-name", "  place_order  "),
        ]);
        assert_eq!(check(&h, &env(CALL)), Ok(()));
    }

    #[test]
    fn a_name_that_disagrees_with_the_body_is_refused() {
        let h = headers(&[("mcp-method", "tools/call"), ("mcp-name", "get_quote")]);
        assert_eq!(
            check(&h, &env(CALL)),
            Err(MirrorError::Mismatch("Mcp-Name"))
        );
    }

    #[test]
    fn method_must_match_exactly_including_case() {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        let h = headers(&[("mcp-method", "TOOLS/LIST")]);
        assert_eq!(
            check(&h, &env(body)),
            Err(MirrorError::Mismatch("Mcp-Method"))
        );
        let h = headers(&[("mcp-method", "tools/call")]);
        assert_eq!(
            check(&h, &env(body)),
            Err(MirrorError::Mismatch("Mcp-Method"))
        );
    }

    #[test]
    fn missing_headers_are_refused() {
        assert_eq!(
            check(&HeaderMap::new(), &env(CALL)),
            Err(MirrorError::Missing("Mcp-Method"))
        );
        let h = headers(&[("mcp-method", "tools/call")]);
        assert_eq!(check(&h, &env(CALL)), Err(MirrorError::Missing("Mcp-Name")));
    }

    #[test]
    fn repeated_headers_are_refused() {
        let h = headers(&[
            ("mcp-method", "tools/call"),
            ("mcp-name", "place_order"),
            ("mcp-name", "get_quote"),
        ]);
        assert_eq!(
            check(&h, &env(CALL)),
            Err(MirrorError::Repeated("Mcp-Name"))
        );
    }

    #[test]
    fn base64_values_are_decoded_strictly() {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///tmp/é"}}"#;
        let b64 = base64::engine::general_purpose::STANDARD.encode("file:///tmp/é");
        let h = headers(&[
            ("mcp-method", "resources/read"),
            ("mcp-name", &format!("=?base64?{b64}?=")),
        ]);
        assert_eq!(check(&h, &env(body)), Ok(()));
        for bad in ["=?base64?ZmlsZQ?=", "=?base64?Zm!!ZQ==?="] {
            let h = headers(&[("mcp-method", "resources/read"), ("mcp-name", bad)]);
            assert_eq!(
                check(&h, &env(body)),
                Err(MirrorError::Malformed("Mcp-Name"))
            );
        }
    }

    #[test]
    fn escaped_body_names_compare_unescaped() {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"place\u005forder"}}"#;
        let h = headers(&[("mcp-method", "tools/call"), ("mcp-name", "place_order")]);
        assert_eq!(check(&h, &env(body)), Ok(()));
    }

    #[test]
    fn body_protocol_version_must_match_the_header() {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"v999.0.0"}}}"#;
        let h = headers(&[
            ("mcp-method", "tools/list"),
            ("mcp-protocol-version", "2026-07-28"),
        ]);
        assert_eq!(
            check(&h, &env(body)),
            Err(MirrorError::Mismatch("MCP-Protocol-Version"))
        );
        let ok = body.replace("v999.0.0", "2026-07-28");
        assert_eq!(check(&h, &env(&ok)), Ok(()));
    }

    #[test]
    fn notifications_need_only_the_method() {
        let body =
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#;
        let h = headers(&[("mcp-method", "notifications/cancelled")]);
        assert_eq!(check(&h, &env(body)), Ok(()));
    }
}
