use serde_json::json;

use super::*;

#[test]
fn tool_names() {
    for ok in ["echo", "demo__place_order", "a.b-c/d_e", &"x".repeat(100)] {
        assert!(tool_name(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "ec ho",
        "echo<script>",
        "é",
        "a\u{200b}b",
        &"x".repeat(101),
    ] {
        assert!(tool_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn prototype_keys_are_noted_at_any_depth_and_escaped() {
    let parse = |s: &str| Envelope::parse(bytes::Bytes::from(s.to_owned()), 64).unwrap();
    for bad in [
        r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"__proto__":{}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":[{"b":{"constructor":1}}]}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"\u0070rototype":1}}"#,
    ] {
        assert!(
            matches!(message(&parse(bad)), Err(ValidateError::PrototypeKey(_))),
            "{bad}"
        );
    }
    // As values, or as other keys, they are fine.
    let ok = r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"text":"__proto__","Constructor":1,"proto":2}}"#;
    assert!(message(&parse(ok)).is_ok());
}

#[test]
fn schemas_compile_once_and_again_when_the_definition_changes() {
    let s = Schemas::new(1);
    let v1 = json!({"name": "t", "inputSchema": {"type": "object", "properties": {"n": {"type": "integer"}}}});
    assert!(s.check(0, &v1, Some(br#"{"n":1}"#)).is_ok());
    let err = s.check(0, &v1, Some(br#"{"n":"x"}"#)).unwrap_err();
    assert_eq!(err.path(), Some("/n"));
    // The upstream changed the tool: the new schema applies.
    let v2 = json!({"name": "t", "inputSchema": {"type": "object", "properties": {"n": {"type": "string"}}}});
    assert!(s.check(0, &v2, Some(br#"{"n":"x"}"#)).is_ok());
    assert!(s.check(0, &v2, Some(br#"{"n":1}"#)).is_err());
    // Absent arguments are an empty object; a missing schema refuses.
    let req = json!({"name": "r", "inputSchema": {"type": "object", "required": ["a"]}});
    assert!(s.check(0, &req, None).is_err());
    let none = json!({"name": "n"});
    assert!(matches!(
        s.check(0, &none, None),
        Err(ValidateError::BrokenSchema { .. })
    ));
    // Remote references are not fetched: the schema does not compile.
    let remote =
        json!({"name": "x", "inputSchema": {"$ref": "http://169.254.169.254/schema.json"}});
    assert!(matches!(
        s.check(0, &remote, None),
        Err(ValidateError::BrokenSchema { .. })
    ));
}
