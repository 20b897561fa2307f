use super::*;

fn env(name: &str) -> Option<String> {
    (name == "TOKEN").then(|| "Bearer s3cret".to_owned())
}

fn errors(text: &str) -> Vec<String> {
    parse(text, "t.toml", &env)
        .unwrap_err()
        .errors
        .into_iter()
        .map(|e| format!("{}: {}", e.key, e.why))
        .collect()
}

#[test]
fn embedded_default_is_valid() {
    let c = parse(DEFAULT_TOML, "<embedded>", &|_| None).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8700");
    assert_eq!(c.upstreams[0].name, "demo");
    assert!(matches!(c.upstreams[0].target, UpstreamTarget::BuiltinDemo));
}

#[test]
fn issue_example_with_env_header() {
    let c = parse(
        "listen = \"127.0.0.1:8700\"\n[[upstream]]\nname = \"everything\"\nurl = \"http://127.0.0.1:3001/mcp\"\n[upstream.headers]\nAuthorization = \"${TOKEN}\"\n",
        "t.toml",
        &env,
    )
    .unwrap();
    assert_eq!(c.upstreams[0].headers[0].1, "Bearer s3cret");
}

#[test]
fn every_unknown_key_is_reported_at_once() {
    let errs = errors("lisen = \"x\"\n[limits]\nmax_body = 1\n[[upstream]]\nname=\"a\"\nurl=\"http://h/\"\nrequireAuht = true\n");
    assert_eq!(
        errs,
        vec![
            "limits.max_body: unknown key",
            "lisen: unknown key",
            "upstream[0].requireAuht: unknown key"
        ]
    );
}

#[test]
fn semantic_errors_are_all_reported() {
    let errs = errors(
        "listen = \"0.0.0.0:80\"\n[limits]\nmax_json_depth = 100000\n[[upstream]]\nname = \"Bad Name\"\nurl = \"ftp://x\"\n[[upstream]]\nname = \"b\"\nurl = \"http://h/${MISSING}\"\n",
    );
    assert_eq!(errs.len(), 5, "{errs:#?}");
    assert!(errs[0].starts_with("limits.max_json_depth"));
    assert!(errs
        .iter()
        .any(|e| e.starts_with("listen: 0.0.0.0:80 is not a loopback address")));
    assert!(errs.iter().any(|e| e.starts_with("upstream[0].name")));
    assert!(errs.iter().any(|e| e.starts_with("upstream[0].url")));
    assert!(errs
        .iter()
        .any(|e| e == "upstream[1].url: environment variable MISSING is not set"));
}

#[test]
fn unset_header_variable_is_an_error_and_secret_never_echoed() {
    let errs = errors(
        "[[upstream]]\nname=\"a\"\nurl=\"http://h/\"\n[upstream.headers]\nX-Key = \"${NOPE}\"\n",
    );
    assert_eq!(
        errs,
        vec!["upstream[0].headers.X-Key: environment variable NOPE is not set"]
    );
}

#[test]
fn non_loopback_needs_the_dangerous_key() {
    let ok = parse(
        "listen = \"0.0.0.0:8700\"\n[dangerous]\nallow_unauthenticated_non_loopback = true\n[[upstream]]\nname=\"a\"\nurl=\"http://h/\"\n",
        "t",
        &env,
    );
    assert!(ok.is_ok());
}

#[test]
fn duplicate_names_and_missing_upstreams() {
    let errs = errors("[[upstream]]\nname=\"a\"\nurl=\"http://h/\"\n[[upstream]]\nname=\"a\"\nurl=\"http://h/\"\n");
    assert_eq!(
        errs,
        vec!["upstream[1].name: duplicate upstream name \"a\""]
    );
    assert_eq!(
        errors(""),
        vec!["upstream: at least one [[upstream]] is required"]
    );
}

#[test]
fn unsupported_auth_mode_fails_closed() {
    let errs = errors("[auth]\nmode = \"bearer\"\n[[upstream]]\nname=\"a\"\nurl=\"http://h/\"\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("auth.mode"));
}

#[test]
fn schema_is_closed() {
    let s: serde_json::Value = serde_json::from_str(&json_schema()).unwrap();
    assert_eq!(s["additionalProperties"], false);
    assert!(s["properties"]["upstream"].is_object());
}
