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
    // Each definition is judged as an entry of the list it came in (the cache recognises a
    // call from the same list without comparing schemas).
    let listed = |v: &serde_json::Value| std::sync::Arc::new(vec![v.clone()]);
    let v1 = json!({"name": "t", "inputSchema": {"type": "object", "properties": {"n": {"type": "integer"}}}});
    let l1 = listed(&v1);
    assert!(s.check(0, &l1, &l1[0], Some(br#"{"n":1}"#)).is_ok());
    let err = s.check(0, &l1, &l1[0], Some(br#"{"n":"x"}"#)).unwrap_err();
    assert_eq!(err.path(), Some("/n"));
    // The upstream changed the tool: the new schema applies.
    let v2 = json!({"name": "t", "inputSchema": {"type": "object", "properties": {"n": {"type": "string"}}}});
    let l2 = listed(&v2);
    assert!(s.check(0, &l2, &l2[0], Some(br#"{"n":"x"}"#)).is_ok());
    assert!(s.check(0, &l2, &l2[0], Some(br#"{"n":1}"#)).is_err());
    // The same definition in a list fetched again, then the older list (still held by a
    // caller): each call gets the schema of the definition it is judged against.
    let l2b = listed(&v2);
    assert!(s.check(0, &l2b, &l2b[0], Some(br#"{"n":1}"#)).is_err());
    assert!(s.check(0, &l2b, &l2b[0], Some(br#"{"n":"x"}"#)).is_ok());
    assert!(s.check(0, &l1, &l1[0], Some(br#"{"n":1}"#)).is_ok());
    assert!(s.check(0, &l1, &l1[0], Some(br#"{"n":"x"}"#)).is_err());
    assert!(s.check(0, &l2b, &l2b[0], Some(br#"{"n":1}"#)).is_err());
    // Absent arguments are an empty object; a missing schema refuses.
    let req = listed(&json!({"name": "r", "inputSchema": {"type": "object", "required": ["a"]}}));
    assert!(s.check(0, &req, &req[0], None).is_err());
    let none = listed(&json!({"name": "n"}));
    assert!(matches!(
        s.check(0, &none, &none[0], None),
        Err(ValidateError::BrokenSchema { .. })
    ));
    // Remote references are not fetched: the schema does not compile.
    let remote = listed(
        &json!({"name": "x", "inputSchema": {"$ref": "http://169.254.169.254/schema.json"}}),
    );
    assert!(matches!(
        s.check(0, &remote, &remote[0], None),
        Err(ValidateError::BrokenSchema { .. })
    ));
}
