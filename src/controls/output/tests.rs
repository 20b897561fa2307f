use super::secrets::{self, is_card, redact, Kind};
use super::*;

#[test]
fn each_kind_is_found_and_replaced() {
    let cases = [
        ("AKIAIOSFODNN7EXAMPLE", Kind::AwsAccessKey),
        (
            "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----",
            Kind::PrivateKey,
        ),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA (cut off)",
            Kind::PrivateKey,
        ),
        ("AIzaSyA1234567890abcdefghijklmnopqrstuv", Kind::GcpApiKey),
        (
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            Kind::GithubToken,
        ),
        (
            "github_pat_11ABCDEFG0123456789_abcdefghijkl",
            Kind::GithubToken,
        ),
        ("xoxb-123456789012-abcdefghij", Kind::SlackToken),
        ("sk_live_abcdefghijklmnopqrstuvwx", Kind::StripeKey),
        ("sk-ant-abcdefghijklmnopqrstuvwxyz0123456789", Kind::ApiKey),
        (
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz",
            Kind::Jwt,
        ),
        ("4111-1111-1111-1111", Kind::Card),
        ("378282246310005", Kind::Card),
        ("5555555555554444", Kind::Card),
    ];
    for (secret, kind) in cases {
        let text = format!("before {secret} after");
        assert!(secrets::maybe(text.as_bytes()), "{secret}");
        let (out, found) = redact(&text, 0).unwrap_or_else(|| panic!("{secret} not found"));
        assert_eq!(found, kind.bit(), "{secret}");
        assert!(out.starts_with("before [REDACTED:"), "{out}");
        assert!(out.contains(kind.name()), "{out}");
        assert!(!out.contains(&secret[4..12]), "{out}");
        // Allowed kinds are left alone.
        assert_eq!(redact(&text, kind.bit()), None, "{secret}");
    }
}

#[test]
fn lookalikes_are_not_secrets() {
    for text in [
        "timestamp 1732300000000000000",
        "order 12345678901234",
        "almost a card 4111 1111 1111 1112",
        "phone +1 415 555 0100",
        "AKIA is a prefix, AKIAshort",
        "eyJ alone, or eyJhbGciOi.short",
        "sk-short",
        "uuid 0190d3a2-7b1c-7cc0-8000-000000000000",
        "a price 1234.5678",
    ] {
        assert_eq!(redact(text, 0), None, "{text}");
    }
    assert!(!secrets::maybe(
        b"{\"content\":[{\"type\":\"text\",\"text\":\"hello\"}]}"
    ));
}

#[test]
fn cards_need_a_network_prefix_length_and_luhn() {
    assert!(is_card("4111111111111111"));
    assert!(is_card("4012888888881881"));
    assert!(is_card("6011111111111117"));
    assert!(is_card("3530111333300000"));
    assert!(is_card("2223003122003222"));
    assert!(!is_card("4111111111111112"), "Luhn");
    assert!(!is_card("41111111111111"), "length");
    assert!(!is_card("9111111111111111"), "no network");
    assert!(!is_card("1732300000000000000"), "a timestamp");
}

fn context() -> (Context, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let (audit, rx) = crate::audit::AuditHandle::for_tests();
    (
        Context {
            audit,
            request_id: Text::copy("req-1"),
            principal: Text::copy("alice"),
            upstream: Text::copy("up"),
        },
        rx,
    )
}

fn schema() -> Arc<Validator> {
    Arc::new(
        jsonschema::validator_for(&serde_json::json!({"type": "object",
            "properties": {"price": {"type": "number"}}, "required": ["price"]}))
        .unwrap(),
    )
}

#[tokio::test]
async fn a_result_is_checked_against_the_output_schema() {
    let (cx, _rx) = context();
    let c = Check::new("t", Some(schema()), SecretMode::Off, 0, cx);
    assert_eq!(
        c.result(br#"{"structuredContent":{"price":1.5}}"#),
        Verdict::Pass
    );
    let bad = c.result(br#"{"structuredContent":{"price":"1.5"}}"#);
    assert!(
        matches!(&bad, Verdict::Refuse(OutputError::Schema { path, .. }) if path == "/price"),
        "{bad:?}"
    );
    assert!(matches!(c.result(br#"{"content":[]}"#), Verdict::Refuse(_)));
    // An error result has nothing structured to check.
    assert_eq!(c.result(br#"{"isError":true,"content":[]}"#), Verdict::Pass);
}

#[tokio::test]
async fn secrets_are_redacted_or_only_reported() {
    let raw = br#"{"content":[{"type":"text","text":"key AKIAIOSFODNN7EXAMPLE"}],"structuredContent":{"card":4111111111111111,"n":42}}"#;
    let (cx, events) = context();
    let c = Check::new("t", None, SecretMode::Redact, 0, cx.clone());
    let Verdict::Replace(out) = c.result(raw) else {
        panic!("not redacted")
    };
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["content"][0]["text"], "key [REDACTED:aws_access_key]");
    assert_eq!(v["structuredContent"]["card"], "[REDACTED:card]");
    assert_eq!(v["structuredContent"]["n"], 42);
    let audit_only = Check::new("t", None, SecretMode::Audit, 0, cx.clone());
    assert_eq!(audit_only.result(raw), Verdict::Pass);
    let allowed = Kind::AwsAccessKey.bit() | Kind::Card.bit();
    let c = Check::new("t", None, SecretMode::Redact, allowed, cx.clone());
    assert_eq!(c.result(raw), Verdict::Pass);
    let off = Check::new("t", None, SecretMode::Off, 0, cx);
    assert!(!off.is_active());
    assert_eq!(off.result(raw), Verdict::Pass);
    // One audit event per kind found, redacted (2) or only reported (2); none when allowed.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(events.load(std::sync::atomic::Ordering::SeqCst), 4);
}

#[tokio::test]
async fn escaped_secrets_are_found_too() {
    // `\u0041KIA…` decodes to `AKIA…`.
    let raw = br#"{"content":[{"type":"text","text":"\u0041KIAIOSFODNN7EXAMPLE"}]}"#;
    let (cx, _rx) = context();
    let c = Check::new("t", None, SecretMode::Redact, 0, cx);
    assert!(matches!(c.result(raw), Verdict::Replace(_)));
}
