use super::*;
use proptest::strategy::Strategy;

fn members(doc: &str) -> Result<Vec<(String, String)>, JsonError> {
    let mut out = Vec::new();
    scan(doc.as_bytes(), 64, |k, r| {
        out.push((k.to_owned(), doc[r].to_owned()));
        Ok(())
    })?;
    Ok(out)
}

#[test]
fn reports_top_level_members_with_raw_values() {
    let m = members(r#" {"a": 1, "b" : {"x":[1,2]}, "c":"s\"t"} "#).unwrap();
    assert_eq!(
        m,
        vec![
            ("a".into(), "1".into()),
            ("b".into(), r#"{"x":[1,2]}"#.into()),
            ("c".into(), r#""s\"t""#.into())
        ]
    );
}

#[test]
fn rejects_duplicates_at_any_depth() {
    assert_eq!(members(r#"{"a":1,"a":2}"#), Err(JsonError::DuplicateKey(7)));
    assert!(matches!(
        members(r#"{"p":{"x":1,"x":2}}"#),
        Err(JsonError::DuplicateKey(_))
    ));
    // An escaped spelling of the same key is the same key.
    assert!(matches!(
        members(r#"{"name":1,"n\u0061me":2}"#),
        Err(JsonError::DuplicateKey(_))
    ));
}

#[test]
fn rejects_case_variant_keys() {
    assert!(matches!(
        members(r#"{"method":1,"Method":2}"#),
        Err(JsonError::CaseVariantKey(_))
    ));
    assert!(matches!(
        members(r#"{"p":{"arguments":{"Qty":1,"qty":2}}}"#),
        Err(JsonError::CaseVariantKey(_))
    ));
    assert!(matches!(
        members(r#"{"ÄB":1,"äb":2}"#),
        Err(JsonError::CaseVariantKey(_))
    ));
}

#[test]
fn same_key_in_sibling_objects_is_fine() {
    assert!(members(r#"{"a":{"k":1},"b":{"k":2},"c":[{"k":1},{"k":1}]}"#).is_ok());
}

#[test]
fn big_objects_use_the_set_path() {
    let mut doc = String::from("{");
    for i in 0..100 {
        doc.push_str(&format!("\"k{i}\":{i},"));
    }
    doc.push_str("\"K7\":0}");
    assert!(matches!(members(&doc), Err(JsonError::CaseVariantKey(_))));
    let ok = doc.replace("\"K7\":0", "\"k100\":0");
    assert!(members(&ok).is_ok());
    let dup = doc.replace("\"K7\":0", "\"k99\":0");
    assert!(matches!(members(&dup), Err(JsonError::DuplicateKey(_))));
}

#[test]
fn depth_is_limited_before_descending() {
    let deep = format!("{{\"a\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
    assert_eq!(members(&deep), Err(JsonError::TooDeep(64)));
    let ok = format!("{{\"a\":{}1{}}}", "[".repeat(63), "]".repeat(63));
    assert!(members(&ok).is_ok());
    let over = format!("{{\"a\":{}1{}}}", "[".repeat(64), "]".repeat(64));
    assert_eq!(members(&over), Err(JsonError::TooDeep(64)));
}

#[test]
fn grammar_errors() {
    for bad in [
        "",
        "{",
        "{}}",
        r#"{"a"}"#,
        r#"{"a":}"#,
        r#"{"a":01}"#,
        r#"{"a":1.}"#,
        r#"{"a":.1}"#,
        r#"{"a":-}"#,
        r#"{"a":1e}"#,
        r#"{"a":tru}"#,
        r#"{"a":"\x"}"#,
        r#"{"a":"\ud800"}"#,
        r#"{"a":"\udc00"}"#,
        "{\"a\":\"\u{1}\"}",
        r#"{"a":[1,]}"#,
        r#"{"a":1,}"#,
        r#"{a:1}"#,
        r#"{"a":1} x"#,
        r#"{"a":NaN}"#,
    ] {
        assert!(members(bad).is_err(), "accepted {bad:?}");
    }
    assert_eq!(members("[]"), Err(JsonError::Array));
    assert_eq!(members("1"), Err(JsonError::NotAnObject));
    assert_eq!(
        scan(b"{\"a\":\"\xff\"}", 64, |_, _| Ok(())),
        Err(JsonError::Utf8)
    );
}

#[test]
fn long_strings_are_checked_at_every_offset() {
    // The eight-at-a-time skip must stop at a special byte wherever it falls in a word.
    for len in 0..40 {
        for at in 0..len {
            let mut text = "x".repeat(len);
            text.replace_range(at..at + 1, "\u{1}");
            let doc = format!(r#"{{"a":"{text}"}}"#);
            // Refused exactly at the control byte (`{"a":"` is six bytes).
            assert_eq!(members(&doc), Err(JsonError::Syntax(6 + at)), "{len} {at}");
            // A closing quote earlier in the same word ends the string there: the control
            // byte after it is outside any string and breaks the grammar at its own offset.
            if at >= 1 {
                let mut text = "x".repeat(len);
                text.replace_range(at..at + 1, "\u{1}");
                text.replace_range(at - 1..at, "\"");
                let doc = format!(r#"{{"a":"{text}"}}"#);
                assert_eq!(members(&doc), Err(JsonError::Syntax(6 + at)), "{len} {at}");
            }
            let mut text = "é".repeat(len);
            text.push_str(r#"\"}"#);
            let doc = format!(r#"{{"a":"{text}","b":1}}"#);
            let m = members(&doc).unwrap();
            assert_eq!(m[0].1, format!(r#""{text}""#));
            let doc = format!(
                r#"{{"a":"{}\u00e9{}"}}"#,
                "y".repeat(at),
                "z".repeat(len - at)
            );
            assert_eq!(members(&doc).unwrap().len(), 1);
        }
    }
}

#[test]
fn valid_values() {
    for good in [
        r#"{"a":-0.5e+10,"b":[true,false,null],"c":"\ud83d\ude00\n","d":{},"e":[]}"#,
        "{ \"a\" : 0 , \"b\":\t1\r\n}",
    ] {
        assert!(members(good).is_ok(), "rejected {good:?}");
    }
}

#[test]
fn unescape_decodes() {
    assert_eq!(unescape(br#""plain""#), "plain");
    assert_eq!(
        unescape(br#""a\"b\\c\u0041\ud83d\ude00""#),
        "a\"b\\cA\u{1F600}"
    );
}

proptest::proptest! {
    /// Whatever the input, the scanner never panics, and anything it accepts serde_json accepts too
    /// (so the gateway never forwards a document that a standard parser would read differently).
    #[test]
    fn accepted_documents_parse_with_serde(input in ".{0,200}") {
        if scan(input.as_bytes(), 64, |_, _| Ok(())).is_ok() {
            let v: serde_json::Value = serde_json::from_str(&input).unwrap();
            proptest::prop_assert!(v.is_object());
        }
    }

    /// On any document the scanner accepted, the fast top-level lookup finds exactly the spans
    /// the scanner reported, for every key, and nothing for a key that is not there.
    #[test]
    fn member_agrees_with_the_scanner(
        value in proptest::collection::btree_map(
            "[a-zA-Z_\\\\\"{}\\[\\] ]{0,6}",
            proptest::prop_oneof![
                proptest::num::i64::ANY.prop_map(serde_json::Value::from),
                "[\\\\\"{}\\[\\],: a-z]{0,8}".prop_map(serde_json::Value::from),
                proptest::collection::vec("[\\\\\"{}\\[\\],:a]{0,4}", 0..3).prop_map(|v| serde_json::json!({ "n": v, "m": [v.clone(), {}] })),
                proptest::strategy::Just(serde_json::json!([true, null, -1.5e3, false])),
            ],
            0..8,
        ),
        pretty: bool,
    ) {
        let doc = if pretty { serde_json::to_string_pretty(&value) } else { serde_json::to_string(&value) }.unwrap();
        let mut seen = Vec::new();
        if scan(doc.as_bytes(), 64, |k, r| { seen.push((k.to_owned(), r)); Ok(()) }).is_ok() {
            for (k, r) in &seen {
                proptest::prop_assert_eq!(member(doc.as_bytes(), k), Some(r.clone()));
            }
            proptest::prop_assert_eq!(member(doc.as_bytes(), "absent key"), None);
        }
    }

    /// Whatever the input, the lookup never panics.
    #[test]
    fn member_never_panics(input in ".{0,120}", key in "[a-z]{0,3}") {
        let _ = member(input.as_bytes(), &key);
    }

    /// Any serde_json object without duplicate or case-variant keys is accepted, and the member
    /// spans reproduce each value.
    #[test]
    fn serde_objects_are_accepted(map in proptest::collection::btree_map("[a-z]{1,6}", proptest::num::i64::ANY, 0..20)) {
        let doc = serde_json::to_string(&map).unwrap();
        let mut seen = Vec::new();
        scan(doc.as_bytes(), 64, |k, r| { seen.push((k.to_owned(), doc[r].parse::<i64>().unwrap())); Ok(()) }).unwrap();
        let expect: Vec<_> = map.into_iter().collect();
        proptest::prop_assert_eq!(seen, expect);
    }
}

#[test]
fn member_finds_top_level_keys_only() {
    let doc =
        br#" { "args" : {"name":"inner"}, "s":"a\"}{[", "name" : "echo" , "n": -1.5e3, "t":true} "#;
    let at = |k| member(doc, k).map(|r| std::str::from_utf8(&doc[r]).unwrap().to_owned());
    assert_eq!(at("name").as_deref(), Some(r#""echo""#));
    assert_eq!(at("args").as_deref(), Some(r#"{"name":"inner"}"#));
    assert_eq!(at("s").as_deref(), Some(r#""a\"}{[""#));
    assert_eq!(at("n").as_deref(), Some("-1.5e3"));
    assert_eq!(at("t").as_deref(), Some("true"));
    assert_eq!(at("inner"), None);
    // An escaped key is the key it decodes to: the upstream will read it that way.
    assert_eq!(member(br#"{"\u006eame":"x"}"#, "name"), Some(13..16));
    for bad in [
        &b""[..],
        b"[]",
        b"{",
        b"{\"a\"",
        b"{\"a\":",
        b"{\"a\":}",
        b"\"s\"",
    ] {
        assert_eq!(member(bad, "a"), None, "{:?}", std::str::from_utf8(bad));
    }
}

#[test]
fn case_variants_across_scripts() {
    // KELVIN SIGN lowercases to ASCII `k`: still a case variant of `K`.
    assert!(matches!(
        members("{\"K\":1,\"\u{212a}\":2}"),
        Err(JsonError::CaseVariantKey(_))
    ));
    assert!(matches!(
        members(r#"{"inputSchema":1,"INPUTSCHEMA":2}"#),
        Err(JsonError::CaseVariantKey(_))
    ));
    assert!(members(r#"{"inputSchema":1,"inputSchemas":2,"ÄB":3,"äc":4}"#).is_ok());
    assert!(matches!(
        members(r#"{"Äb":1,"äB":2}"#),
        Err(JsonError::CaseVariantKey(_))
    ));
}

#[test]
fn numbers_beyond_a_double_are_refused() {
    // Found by the fuzzer: serde_json refuses these, JavaScript reads Infinity.
    for n in ["1e400", "-1E+309", "88888588.8555e55555555"] {
        let doc = format!(r#"{{"a":{n}}}"#);
        assert!(matches!(members(&doc), Err(JsonError::Syntax(_))), "{n}");
    }
    let huge = format!(r#"{{"a":{}}}"#, "9".repeat(400));
    assert!(members(&huge).is_err());
    for n in ["1e308", "-1.5e-400", &"9".repeat(300), "0.000001"] {
        let doc = format!(r#"{{"a":{n}}}"#);
        assert!(members(&doc).is_ok(), "{n}");
    }
}
