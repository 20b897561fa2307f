use super::*;

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
