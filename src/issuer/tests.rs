use super::*;

#[test]
fn scopes_are_intersected_with_what_is_allowed() {
    let allowed = vec!["mcp:tools".to_owned(), "mcp:read".to_owned()];
    assert_eq!(
        grant_scopes(None, &allowed),
        Some(vec!["mcp:tools", "mcp:read"])
    );
    assert_eq!(
        grant_scopes(Some(vec!["mcp:tools", "admin"]), &allowed),
        Some(vec!["mcp:tools"])
    );
    assert_eq!(grant_scopes(Some(vec!["admin"]), &allowed), None);
    assert_eq!(grant_scopes(Some(vec![""]), &allowed), Some(vec![]));
}

#[test]
fn failures_block_within_the_window_only() {
    let mut f = Failures::default();
    for t in 0..5 {
        assert!(!f.blocked("user:a", 5, 300, t));
        f.record("user:a", 300, t);
    }
    assert!(f.blocked("user:a", 5, 300, 10));
    assert!(!f.blocked("user:b", 5, 300, 10));
    assert!(!f.blocked("user:a", 5, 300, 301), "window over");
}

#[test]
fn expires_in_uses_the_seeds_duration_style() {
    assert_eq!(duration_text(Duration::from_secs(1800)), "30m");
    assert_eq!(duration_text(Duration::from_secs(86400)), "24h");
    assert_eq!(duration_text(Duration::from_secs(90)), "90s");
}

#[test]
fn basic_client_credentials_are_form_decoded() {
    let mut h = HeaderMap::new();
    let v = base64::engine::general_purpose::STANDARD.encode("svc%3Aa:s%2Bcret");
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Basic {v}")).unwrap(),
    );
    assert_eq!(
        basic_credentials(&h),
        Some(("svc:a".into(), "s+cret".into()))
    );
}

#[test]
fn argon2_hashes_verify() {
    let h = argon2_hash("correct horse").unwrap();
    assert!(h.starts_with("$argon2id$"));
    let parsed = PasswordHash::new(&h).unwrap();
    assert!(Argon2::default()
        .verify_password(b"correct horse", &parsed)
        .is_ok());
    assert!(Argon2::default()
        .verify_password(b"wrong", &parsed)
        .is_err());
}
