use std::time::Duration;

use http::HeaderValue;

use super::*;
use crate::config::{Grant, Secret};
use crate::controls::authn::MemoryReplayStore;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const NOW: u64 = 1_800_000_000;
const BODY: &[u8] =
    br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"place_order"}}"#;

fn client(key_id: &str, canonical: Canonical) -> HmacClient {
    HmacClient {
        key_id: Some(key_id.to_owned()),
        secret: Secret::for_tests(SECRET),
        canonical,
        grant: Grant {
            id: Arc::from(key_id),
            roles: Arc::from([]),
            scopes: Arc::from([]),
            permissions: Arc::from([]),
        },
    }
}

fn verifier() -> Verifier {
    let cfg = HmacConfig {
        max_skew: Duration::from_secs(30),
        api_versions: vec!["1.0.0".into()],
        replay_capacity: 1000,
        require_idempotency_key: true,
        clients: vec![client("k1", Canonical::V1), client("k2", Canonical::V2)],
    };
    Verifier::new(cfg, Arc::new(MemoryReplayStore::new(1000)))
}

struct Req {
    key: &'static str,
    canonical: Canonical,
    method: &'static str,
    path: &'static str,
    query: &'static str,
    ts: String,
    nonce: String,
    body: Vec<u8>,
}

impl Req {
    fn new(key: &'static str, canonical: Canonical) -> Req {
        Req {
            key,
            canonical,
            method: "POST",
            path: "/mcp/demo",
            query: "",
            ts: NOW.to_string(),
            nonce: "n-1".into(),
            body: BODY.to_vec(),
        }
    }

    fn headers(&self) -> HeaderMap {
        let sig = sign(
            SECRET,
            self.canonical,
            &SignFields {
                method: self.method,
                path: self.path,
                query: self.query,
                timestamp: &self.ts,
                nonce: &self.nonce,
                idempotency_key: "idem-1",
                api_version: "1.0.0",
                key_id: self.key,
            },
            &self.body,
        );
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("x-signature", sig.as_str()),
            ("x-timestamp", &self.ts),
            ("x-nonce", &self.nonce),
            ("x-api-version", "1.0.0"),
            ("idempotency-key", "idem-1"),
            ("x-key-id", self.key),
        ] {
            h.insert(k, HeaderValue::from_str(v).unwrap());
        }
        h
    }
}

fn check(v: &Verifier, h: &HeaderMap, r: &Req, now: u64) -> Result<(), HmacError> {
    v.claim(h, r.method == "POST", now)?
        .verify(r.method, r.path, r.query, &r.body, now)
}

#[test]
fn both_forms_verify() {
    let v = verifier();
    for (key, c) in [("k1", Canonical::V1), ("k2", Canonical::V2)] {
        let r = Req::new(key, c);
        assert_eq!(check(&v, &r.headers(), &r, NOW), Ok(()), "{key}");
    }
}

#[test]
fn v1_matches_the_seed_snippet() {
    // hmac.new(secret, f"{method}|{path}|{timestamp}|{body}".encode(), sha256).hexdigest()
    let sig = sign(
        b"secret",
        Canonical::V1,
        &SignFields {
            method: "POST",
            path: "/mcp",
            timestamp: "1700000000",
            ..Default::default()
        },
        b"{}",
    );
    let mut mac = HmacSha256::new_from_slice(b"secret").unwrap();
    mac.update(b"POST|/mcp|1700000000|{}");
    assert_eq!(sig, hex::encode(mac.finalize().into_bytes()));
}

#[test]
fn replayed_nonce_is_refused() {
    let v = verifier();
    let r = Req::new("k2", Canonical::V2);
    assert_eq!(check(&v, &r.headers(), &r, NOW), Ok(()));
    assert_eq!(
        check(&v, &r.headers(), &r, NOW + 1),
        Err(HmacError::ReplayedNonce)
    );
}

#[test]
fn v1_capture_resent_with_a_fresh_nonce_is_refused() {
    let v = verifier();
    let r = Req::new("k1", Canonical::V1);
    let captured = r.headers();
    assert_eq!(check(&v, &captured, &r, NOW), Ok(()));
    let mut replay = captured.clone();
    replay.insert("x-nonce", HeaderValue::from_static("attacker-fresh"));
    assert_eq!(
        check(&v, &replay, &r, NOW + 2),
        Err(HmacError::ReplayedSignature)
    );
}

#[test]
fn v2_covers_nonce_and_query() {
    let v = verifier();
    let r = Req::new("k2", Canonical::V2);
    let mut h = r.headers();
    h.insert("x-nonce", HeaderValue::from_static("other"));
    assert_eq!(check(&v, &h, &r, NOW), Err(HmacError::BadSignature));
    let mut q = Req::new("k2", Canonical::V2);
    q.query = "x=1";
    let h = Req::new("k2", Canonical::V2).headers();
    assert_eq!(check(&v, &h, &q, NOW), Err(HmacError::BadSignature));
}

#[test]
fn tampering_with_body_path_or_method_breaks_the_signature() {
    for c in [Canonical::V1, Canonical::V2] {
        let key = if c == Canonical::V1 { "k1" } else { "k2" };
        let v = verifier();
        let signed = Req::new(key, c);
        let h = signed.headers();
        let mut body = Req::new(key, c);
        body.body =
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#.to_vec();
        let mut path = Req::new(key, c);
        path.path = "/mcp/other";
        let mut method = Req::new(key, c);
        method.method = "DELETE";
        for tampered in [body, path, method] {
            assert_eq!(
                check(&v, &h, &tampered, NOW),
                Err(HmacError::BadSignature),
                "{c:?} {}",
                tampered.path
            );
        }
    }
}

#[test]
fn timestamps_outside_the_window_are_refused() {
    let v = verifier();
    let r = Req::new("k2", Canonical::V2);
    let h = r.headers();
    assert_eq!(check(&v, &h, &r, NOW + 31), Err(HmacError::Stale));
    assert_eq!(check(&v, &h, &r, NOW - 31), Err(HmacError::Future));
    // The edges are inside.
    let mut edge = Req::new("k2", Canonical::V2);
    edge.nonce = "edge".into();
    assert_eq!(check(&v, &edge.headers(), &edge, NOW + 30), Ok(()));
    for bad in ["12a", "-5", "1.5", " 17", "9999999999999"] {
        let mut b = Req::new("k2", Canonical::V2);
        b.ts = bad.into();
        let h = match HeaderValue::from_str(bad) {
            Ok(_) => b.headers(),
            Err(_) => continue,
        };
        assert!(
            matches!(
                check(&v, &h, &b, NOW),
                Err(HmacError::BadTimestamp | HmacError::MalformedHeader(_))
            ),
            "{bad}"
        );
    }
}

#[test]
fn every_required_header_is_required() {
    let v = verifier();
    let r = Req::new("k2", Canonical::V2);
    for (name, label) in [
        ("x-timestamp", "X-Timestamp"),
        ("x-nonce", "X-Nonce"),
        ("x-api-version", "X-API-Version"),
        ("idempotency-key", "Idempotency-Key"),
        ("x-signature", "X-Signature"),
        ("x-key-id", "X-Key-Id"),
    ] {
        let mut h = r.headers();
        h.remove(name);
        assert_eq!(
            check(&v, &h, &r, NOW),
            Err(HmacError::MissingHeader(label)),
            "{name}"
        );
    }
    // Idempotency-Key is not required on GET.
    let mut g = Req::new("k2", Canonical::V2);
    g.method = "GET";
    g.body.clear();
    let mut h = g.headers();
    h.remove("idempotency-key");
    // (the signature covered the key, so it no longer verifies — but it got past the header stage)
    assert_eq!(check(&v, &h, &g, NOW), Err(HmacError::BadSignature));
}

#[test]
fn unknown_key_version_and_malformed_signature() {
    let v = verifier();
    let r = Req::new("k2", Canonical::V2);
    let mut h = r.headers();
    h.insert("x-key-id", HeaderValue::from_static("../../etc/passwd"));
    assert_eq!(check(&v, &h, &r, NOW), Err(HmacError::UnknownKey));
    let mut h = r.headers();
    h.insert("x-api-version", HeaderValue::from_static("0.9"));
    assert_eq!(check(&v, &h, &r, NOW), Err(HmacError::UnsupportedVersion));
    let mut h = r.headers();
    h.insert("x-signature", HeaderValue::from_static("zz"));
    assert_eq!(
        check(&v, &h, &r, NOW),
        Err(HmacError::MalformedHeader("X-Signature"))
    );
    let mut h = r.headers();
    h.append("x-nonce", HeaderValue::from_static("second"));
    assert_eq!(
        check(&v, &h, &r, NOW),
        Err(HmacError::MalformedHeader("X-Nonce"))
    );
}

#[test]
fn forged_requests_do_not_burn_a_clients_nonces() {
    let v = verifier();
    let good = Req::new("k2", Canonical::V2);
    // An attacker who saw the nonce (but not the secret) sends it first, many times.
    for i in 0..100 {
        let mut h = good.headers();
        h.insert(
            "x-signature",
            HeaderValue::from_str(&format!("{i:064x}")).unwrap(),
        );
        assert_eq!(check(&v, &h, &good, NOW), Err(HmacError::BadSignature));
    }
    assert_eq!(check(&v, &good.headers(), &good, NOW), Ok(()));
}
