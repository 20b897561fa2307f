use std::time::Duration;

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

use super::*;

const NOW: u64 = 1_800_000_000;
const HS_SECRET: &[u8] = b"hs-secret-0123456789abcdef0123456789";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/jwt/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn key(kid: &str, alg: Algorithm) -> JwtKey {
    let key = match alg {
        Algorithm::HS256 => DecodingKey::from_secret(HS_SECRET),
        Algorithm::RS256 | Algorithm::PS256 => {
            DecodingKey::from_rsa_pem(&fixture("rsa.pub")).unwrap()
        }
        Algorithm::ES256 => DecodingKey::from_ec_pem(&fixture("ec.pub")).unwrap(),
        Algorithm::EdDSA => DecodingKey::from_ed_pem(&fixture("ed.pub")).unwrap(),
        _ => unreachable!(),
    };
    JwtKey {
        kid: Some(kid.into()),
        alg,
        key,
    }
}

fn signer(alg: Algorithm) -> EncodingKey {
    match alg {
        Algorithm::HS256 => EncodingKey::from_secret(HS_SECRET),
        Algorithm::RS256 | Algorithm::PS256 => {
            EncodingKey::from_rsa_pem(&fixture("rsa.key")).unwrap()
        }
        Algorithm::ES256 => EncodingKey::from_ec_pem(&fixture("ec.key")).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&fixture("ed.key")).unwrap(),
        _ => unreachable!(),
    }
}

fn verifier() -> Verifier {
    let cfg = JwtConfig {
        issuers: vec!["https://issuer.test".into()],
        audiences: vec!["https://gateway.test/mcp".into()],
        leeway: Duration::from_secs(60),
        required_claims: vec![],
        required_typ: None,
        subject_claim: "sub".into(),
        roles_claim: "roles".into(),
        scope_claims: vec!["scope".into(), "scp".into()],
        permissions_claim: "permissions".into(),
        max_token_bytes: 4096,
        cache_capacity: 100,
        jwks_url: None,
        jwks_refresh_min: Duration::from_secs(30),
        oidc_issuer: None,
        keys: vec![
            key("hs", Algorithm::HS256),
            key("rs", Algorithm::RS256),
            key("ps", Algorithm::PS256),
            key("es", Algorithm::ES256),
            key("ed", Algorithm::EdDSA),
        ],
    };
    Verifier::new(
        cfg,
        crate::controls::ssrf::fetch::Fetcher::new(
            crate::config::SsrfConfig::default(),
            Duration::from_secs(1),
        ),
        super::super::Trust::default(),
    )
}

fn claims() -> Value {
    json!({
        "iss": "https://issuer.test",
        "aud": ["other", "https://gateway.test/mcp"],
        "sub": "risk_agent",
        "exp": NOW + 600,
        "iat": NOW,
        "roles": ["trader", "viewer"],
        "scope": "mcp:tools:call mcp:tools:list",
        "permissions": ["tool:execute"],
    })
}

fn token(kid: &str, alg: Algorithm, claims: &Value) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    encode(&h, claims, &signer(alg)).unwrap()
}

/// A token with a hand-written header (for headers the library will not produce).
fn raw_token(header: &Value, claims: &Value, sig: &str) -> String {
    let b = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.{sig}", b(header), b(claims))
}

fn check(v: &Verifier, t: &str, now: u64) -> Result<Grant, JwtError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(v.verify(t.as_bytes(), now, None))
}

#[test]
fn every_supported_algorithm_verifies_and_maps_claims() {
    let v = verifier();
    for (kid, alg) in [
        ("hs", Algorithm::HS256),
        ("rs", Algorithm::RS256),
        ("ps", Algorithm::PS256),
        ("es", Algorithm::ES256),
        ("ed", Algorithm::EdDSA),
    ] {
        let g =
            check(&v, &token(kid, alg, &claims()), NOW).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(&*g.id, "risk_agent");
        assert_eq!(g.roles.len(), 2);
        assert_eq!(&*g.scopes[0], "mcp:tools:call");
        assert_eq!(&*g.permissions[0], "tool:execute");
    }
}

#[test]
fn alg_none_in_every_spelling_is_refused() {
    let v = verifier();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let t = raw_token(
            &json!({"alg": alg, "typ": "JWT", "kid": "hs"}),
            &claims(),
            "",
        );
        assert_eq!(check(&v, &t, NOW).unwrap_err(), JwtError::AlgNone, "{alg}");
    }
}

#[test]
fn unsupported_algorithms_are_refused_by_name() {
    let v = verifier();
    for alg in ["ES512", "Ed25519", "HS1"] {
        let t = raw_token(
            &json!({"alg": alg, "typ": "JWT", "kid": "ed"}),
            &claims(),
            "AAAA",
        );
        assert_eq!(
            check(&v, &t, NOW).unwrap_err(),
            JwtError::UnsupportedAlg,
            "{alg}"
        );
    }
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused() {
    let v = verifier();
    // The classic confusion: the verifier's RSA public key used as an HMAC secret.
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("rs".into());
    let t = encode(
        &h,
        &claims(),
        &EncodingKey::from_secret(&fixture("rsa.pub")),
    )
    .unwrap();
    assert_eq!(check(&v, &t, NOW).unwrap_err(), JwtError::AlgMismatch);
    // Nor may an RS256 token select the HMAC key.
    let t = token("rs", Algorithm::RS256, &claims()).replacen(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"typ":"JWT","alg":"RS256","kid":"rs"}"#),
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"typ":"JWT","alg":"RS256","kid":"hs"}"#),
        1,
    );
    assert_eq!(check(&v, &t, NOW).unwrap_err(), JwtError::AlgMismatch);
}

#[test]
fn unknown_and_injected_kids_are_refused() {
    let v = verifier();
    for kid in ["nope", "../../../../etc/passwd", "' OR '1'='1", "/dev/null"] {
        assert_eq!(
            check(&v, &token(kid, Algorithm::HS256, &claims()), NOW).unwrap_err(),
            JwtError::UnknownKid,
            "{kid}"
        );
    }
    // No kid with several keys: refused rather than guessed.
    let t = encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &signer(Algorithm::HS256),
    )
    .unwrap();
    assert_eq!(check(&v, &t, NOW).unwrap_err(), JwtError::UnknownKid);
}

#[test]
fn keys_named_by_the_token_itself_are_refused() {
    let v = verifier();
    let jwk = json!({"kty": "oct", "k": "c2VjcmV0"});
    for (name, value) in [
        ("jku", json!("https://attacker.example/jwks.json")),
        ("x5u", json!("https://attacker.example/cert.pem")),
        ("jwk", jwk),
        ("x5c", json!(["MIIB"])),
    ] {
        let mut header = json!({"alg": "HS256", "typ": "JWT", "kid": "hs"});
        header[name] = value;
        let t = raw_token(&header, &claims(), "AAAA");
        assert_eq!(
            check(&v, &t, NOW).unwrap_err(),
            JwtError::EmbeddedKey,
            "{name}"
        );
    }
}

#[test]
fn time_claims_use_the_injected_clock_with_leeway() {
    let v = verifier();
    let mut c = claims();
    c["exp"] = json!(NOW - 59);
    assert!(
        check(&v, &token("hs", Algorithm::HS256, &c), NOW).is_ok(),
        "inside the leeway"
    );
    c["exp"] = json!(NOW - 61);
    assert_eq!(
        check(&v, &token("hs", Algorithm::HS256, &c), NOW).unwrap_err(),
        JwtError::Expired
    );
    let mut c = claims();
    c["nbf"] = json!(NOW + 61);
    assert_eq!(
        check(&v, &token("hs", Algorithm::HS256, &c), NOW).unwrap_err(),
        JwtError::NotYetValid
    );
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        check(&v, &token("hs", Algorithm::HS256, &c), NOW).unwrap_err(),
        JwtError::MissingClaim
    );
}

#[test]
fn issuer_audience_and_subject_are_enforced() {
    let v = verifier();
    let cases = [
        ("iss", json!("https://evil.test"), JwtError::WrongIssuer),
        (
            "aud",
            json!("https://other-gateway.test"),
            JwtError::WrongAudience,
        ),
        ("aud", json!([]), JwtError::WrongAudience),
        ("sub", json!(""), JwtError::MissingClaim),
        ("sub", json!(42), JwtError::MissingClaim),
    ];
    for (k, val, want) in cases {
        let mut c = claims();
        c[k] = val.clone();
        assert_eq!(
            check(&v, &token("es", Algorithm::ES256, &c), NOW).unwrap_err(),
            want,
            "{k}={val}"
        );
    }
}

#[test]
fn tampered_claims_and_oversize_tokens_are_refused() {
    let v = verifier();
    let t = token("ed", Algorithm::EdDSA, &claims());
    let parts: Vec<&str> = t.split('.').collect();
    let mut c = claims();
    c["roles"] = json!(["admin"]);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c.to_string()),
        parts[2]
    );
    assert_eq!(check(&v, &forged, NOW).unwrap_err(), JwtError::BadSignature);
    let mut big = claims();
    big["pad"] = json!("x".repeat(5000));
    assert_eq!(
        check(&v, &token("hs", Algorithm::HS256, &big), NOW).unwrap_err(),
        JwtError::TooLong
    );
    assert_eq!(check(&v, "a.b.c", NOW).unwrap_err(), JwtError::Malformed);
}

#[test]
fn a_cached_token_still_expires() {
    let v = verifier();
    let mut c = claims();
    c["exp"] = json!(NOW + 10);
    let t = token("rs", Algorithm::RS256, &c);
    assert!(check(&v, &t, NOW).is_ok());
    assert!(check(&v, &t, NOW + 5).is_ok(), "served from the cache");
    assert_eq!(check(&v, &t, NOW + 71).unwrap_err(), JwtError::Expired);
}

#[test]
fn a_required_typ_refuses_other_token_types() {
    let mut v = verifier();
    v.cfg.required_typ = Some("at+jwt".into());
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("hs".into());
    let id_token = encode(&h, &claims(), &signer(Algorithm::HS256)).unwrap();
    assert_eq!(check(&v, &id_token, NOW).unwrap_err(), JwtError::WrongType);
    for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
        h.typ = Some(typ.into());
        let at = encode(&h, &claims(), &signer(Algorithm::HS256)).unwrap();
        assert!(check(&v, &at, NOW).is_ok(), "{typ}");
    }
}
