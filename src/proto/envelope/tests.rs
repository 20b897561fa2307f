use super::*;

fn parse(s: &str) -> Result<Envelope, EnvelopeError> {
    Envelope::parse(Bytes::copy_from_slice(s.as_bytes()), 64)
}

#[test]
fn request_keeps_params_raw() {
    let e = parse(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#).unwrap();
    assert_eq!(e.kind(), Kind::Request);
    assert_eq!(e.id(), Some(&Id::Num(7)));
    assert_eq!(e.method(), Some("tools/call"));
    assert_eq!(
        e.params().unwrap(),
        br#"{"name":"echo","arguments":{"text":"hi"}}"#
    );
    assert_eq!(e.param_str("name").as_deref(), Some("echo"));
}

#[test]
fn kinds() {
    assert_eq!(
        parse(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .unwrap()
            .kind(),
        Kind::Notification
    );
    assert_eq!(
        parse(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#)
            .unwrap()
            .kind(),
        Kind::Response
    );
    let e = parse(r#"{"jsonrpc":"2.0","id":"a","error":{"code":1,"message":"x"}}"#).unwrap();
    assert!(e.is_error_response());
    assert_eq!(e.id(), Some(&Id::Str("a".into())));
}

#[test]
fn refusals() {
    use EnvelopeError as E;
    let cases: &[(&str, E)] = &[
        (r#"{"id":1,"method":"ping"}"#, E::Version),
        (r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, E::Version),
        (r#"{"jsonrpc":2.0,"id":1,"method":"ping"}"#, E::Version),
        (r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#, E::BadId),
        (r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#, E::BadId),
        // Found by the fuzzer: serde reads -0 as the float -0.0, a different id.
        (r#"{"jsonrpc":"2.0","id":-0,"method":"ping"}"#, E::BadId),
        (r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#, E::BadId),
        (
            r#"{"jsonrpc":"2.0","id":99999999999999999999,"method":"ping"}"#,
            E::BadId,
        ),
        (r#"{"jsonrpc":"2.0","id":1,"method":3}"#, E::BadMethod),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":"s"}"#,
            E::BadParams,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#,
            E::ResultAndError,
        ),
        (r#"{"jsonrpc":"2.0","id":1}"#, E::ResultAndError),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"x","result":{}}"#,
            E::Unclassifiable,
        ),
        (r#"{"jsonrpc":"2.0"}"#, E::Unclassifiable),
        (
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
            E::Json(JsonError::Array),
        ),
    ];
    for (doc, want) in cases {
        assert_eq!(parse(doc).unwrap_err(), *want, "{doc}");
    }
    assert!(parse("{").unwrap_err().is_parse_error());
    assert!(!parse("[]").unwrap_err().is_parse_error());
}

#[test]
fn case_variant_method_is_refused() {
    // CVE-2026-27896: an upstream matching keys case-insensitively would run the second "method".
    let err = parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","Method":"tools/call"}"#)
        .unwrap_err();
    assert!(matches!(
        err,
        EnvelopeError::Json(JsonError::CaseVariantKey(_))
    ));
}

#[test]
fn unknown_members_are_kept() {
    let src = r#"{"jsonrpc":"2.0","id":1,"method":"future/thing","params":{"x":1},"ext":true}"#;
    let e = parse(src).unwrap();
    assert_eq!(e.bytes().as_ref(), src.as_bytes());
    assert_eq!(e.method(), Some("future/thing"));
}

#[test]
fn error_body_is_valid_json() {
    let body = super::super::codes::error_body(
        Some(&Id::Str("q\"x".into())),
        -32600,
        "Invalid request",
        super::super::McpCode::InvalidArgs,
        "rid",
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["id"], "q\"x");
    assert_eq!(v["error"]["data"]["code"], "MCP-001");
    assert_eq!(v["error"]["data"]["request_id"], "rid");
}
