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

const UP: &str = "[[upstream]]\nname=\"a\"\nurl=\"http://h/\"\n";
const TOKEN: &str =
    "[[auth.bearer]]\nid = \"alice\"\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n[authz]\n";

#[test]
fn auth_mistakes_fail_closed_and_are_reported_together() {
    let errs = errors(&format!(
        "[auth]\nmethods = [\"bearer\", \"none+hmac\", \"jwtt\", \"hmac\"]\n[[auth.bearer]]\nid = \"\"\nsha256 = \"abc\"\n\
         [[auth.hmac.clients]]\nid = \"bot\"\nsecret = \"short\"\ncanonical = \"v3\"\n{UP}"
    ));
    assert_eq!(
        errs,
        vec![
            "auth.methods[1]: \"none\" cannot be combined with another method",
            "auth.methods[2]: unknown method \"jwtt\"; known: \"none\", \"bearer\", \"hmac\", \"jwt\", \"mtls\"",
            "auth.bearer[0].id: required: 1-128 characters of A-Z a-z 0-9 _ - . @ :",
            "auth.bearer[0].sha256: required: 64 hex digits (palisade token generate prints it)",
            "auth.hmac.clients[0].secret: must be at least 32 bytes",
            "auth.hmac.clients[0].canonical: must be \"v1\" or \"v2\", got \"v3\"",
            "auth.methods: uses \"bearer\" but no [[auth.bearer]] token is configured",
            "auth.methods: uses \"hmac\" but no [[auth.hmac.clients]] is configured",
            "authz: routes authenticate but there is no [authz]: nobody would be allowed anything. \
             Add [authz] with roles (see README, Authorization)",
        ]
    );
}

#[test]
fn credentials_without_methods_do_not_run_open() {
    let errs = errors(&format!("{TOKEN}{UP}"));
    assert_eq!(
        errs,
        vec!["auth.methods: credentials are configured but auth.methods is not set; name the methods to accept"]
    );
}

#[test]
fn non_loopback_is_fine_with_authentication_but_not_with_an_open_route() {
    let authed = format!("listen = \"0.0.0.0:8700\"\n[auth]\nmethods = [\"bearer\"]\n{TOKEN}{UP}");
    assert!(parse(&authed, "t", &env).is_ok());
    let open_route = format!("{authed}auth = [\"none\"]\n");
    let errs = errors(&open_route);
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("listen: 0.0.0.0:8700 is not a loopback address and a accept(s)"));
    // The old single-mode key is an unknown key now.
    assert!(errors(&format!("[auth]\nmode = \"bearer\"\n{UP}"))[0].starts_with("auth.mode"));
}

#[test]
fn routes_inherit_or_replace_the_methods() {
    let c = parse(
        &format!("[auth]\nmethods = [\"bearer\"]\n{TOKEN}{UP}[[upstream]]\nname=\"b\"\nurl=\"http://h/\"\nauth = [\"none\"]\n"),
        "t",
        &env,
    )
    .unwrap();
    assert_eq!(c.upstreams[0].auth[0].label(), "bearer");
    assert_eq!(c.upstreams[1].auth[0].label(), "none");
}

#[test]
fn schema_is_closed() {
    let s: serde_json::Value = serde_json::from_str(&json_schema()).unwrap();
    assert_eq!(s["additionalProperties"], false);
    assert!(s["properties"]["upstream"].is_object());
}

#[test]
fn pinning_and_content_pattern_mistakes_are_reported() {
    let e = errors(
        "[pinning]\nmode = \"approve\"\nmarkers = [\"ignore\", \" \"]\n\
         [[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/mcp\"\n\
         [[upstream.tools]]\nname = \"t\"\n[upstream.tools.args.note]\ndeny_patterns = [\"<\", \"(\"]\n",
    );
    assert!(
        e.iter().any(|m| m.starts_with("pinning.markers[1]")),
        "{e:?}"
    );
    assert!(
        e.iter().any(|m| m.contains("args.note.deny_patterns")),
        "{e:?}"
    );
    assert!(errors("[pinning]\nmode = \"sometimes\"\n[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/mcp\"\n")
        .iter()
        .any(|m| m.contains("unknown variant `sometimes`")));
    let c = parse(DEFAULT_TOML, "<embedded>", &|_| None).unwrap();
    assert_eq!(c.pinning.mode, PinMode::Tofu);
    assert_eq!(c.pinning.file, c.data_dir.join("pins.json"));
}

#[test]
fn traffic_rules_are_checked_together() {
    let errs = errors(
        "[[upstream]]\nname = \"a\"\nurl = \"http://h/\"\n\
         [network]\ntrusted_proxies = [\"10.0.0.0/33\"]\nblocked_ips = [\"bogus\"]\n\
         [[rate_limit]]\nname = \"r\"\nwindow_ms = 0\nmax = 0\nburst = 5\n\
         [[rate_limit]]\nname = \"r\"\nwindow_ms = 1000\nmax = 1\nalgorithm = \"token_bucket\"\nburst = 0\nkey = \"user\"\n",
    );
    assert_eq!(
        errs,
        vec![
            ": unknown variant `user`, expected one of `global`, `ip`, `principal`, `tool`, `principal+tool` (line 18, column 7)",
        ],
        "a wrong variant is a parse error, reported on its own"
    );
    let errs = errors(
        "[[upstream]]\nname = \"a\"\nurl = \"http://h/\"\n\
         [network]\ntrusted_proxies = [\"10.0.0.0/33\"]\nblocked_ips = [\"bogus\"]\n\
         [[rate_limit]]\nname = \"r\"\nwindow_ms = 0\nmax = 0\nburst = 5\n\
         [[rate_limit]]\nname = \"r\"\nwindow_ms = 1000\nmax = 1\nalgorithm = \"token_bucket\"\nburst = 0\nmethods = [\"\"]\n",
    );
    assert_eq!(
        errs,
        vec![
            "network.trusted_proxies[0]: \"10.0.0.0/33\" is not an address or CIDR range",
            "network.blocked_ips[0]: \"bogus\" is not an address or CIDR range",
            "rate_limit[0].window_ms: must be between 1 and 86400000, got 0",
            "rate_limit[0].max: must be at least 1",
            "rate_limit[0].burst: only a token_bucket has a burst",
            "rate_limit[1].name: \"r\" is used by another rule",
            "rate_limit[1].burst: must be at least 1",
            "rate_limit[1].methods[0]: an empty pattern matches nothing",
        ]
    );
    let c = parse(
        "[[upstream]]\nname = \"a\"\nurl = \"http://h/\"\n\
         [network]\ntrusted_proxies = [\"10.1.2.3\", \"fd00::/8\"]\nforwarded_header = \"forwarded\"\n\
         [[rate_limit]]\nname = \"b\"\nwindow_ms = 60000\nmax = 100\nalgorithm = \"token_bucket\"\nburst = 10\nkey = \"principal+tool\"\n",
        "t.toml",
        &env,
    )
    .unwrap();
    assert_eq!(c.network.trusted_proxies[0].to_string(), "10.1.2.3/32");
    assert_eq!(c.network.forwarded_header, ForwardedHeader::Forwarded);
    assert_eq!(c.rate_limits[0].burst, 10);
    assert_eq!(c.rate_limits[0].key, KeyBy::PrincipalTool);
}
