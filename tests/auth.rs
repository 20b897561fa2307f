//! Authentication end to end: the real binary, a scripted upstream that counts what reaches it,
//! and every attack performed. Each refusal asserts the status, the MCP code, the audit reason,
//! and that the upstream saw nothing.

mod support;

use http::{Method, StatusCode};
use palisade::config::Canonical;
use palisade::controls::authn::{generate_token, sign, SignFields};
use support::*;

const V1_SECRET: &str = "seed-one-secret-0123456789abcdef0123";
const V2_SECRET: &str = "palisade-v2-secret-0123456789abcdef";

struct Tokens {
    alice: String,
    bob: String,
}

fn config(addr: std::net::SocketAddr) -> (String, Tokens) {
    let (alice, ha) = generate_token();
    let (bob, hb) = generate_token();
    let cfg = format!(
        "[auth]\nmethods = [\"bearer\", \"hmac\"]\n\
         [[auth.bearer]]\nid = \"alice\"\nsha256 = \"{ha}\"\nroles = [\"trader\"]\n\
         [[auth.bearer]]\nid = \"bob\"\nsha256 = \"{hb}\"\n\
         [[auth.hmac.clients]]\nid = \"seed-client\"\nkey_id = \"seed\"\nsecret = \"{V1_SECRET}\"\ncanonical = \"v1\"\n\
         [[auth.hmac.clients]]\nid = \"bot\"\nkey_id = \"bot\"\nsecret = \"{V2_SECRET}\"\n\
         [[upstream]]\nname = \"s\"\nurl = \"http://{addr}/mcp\"\n\
         [[upstream]]\nname = \"open\"\nurl = \"http://{addr}/mcp\"\nauth = [\"none\"]\n"
    );
    (cfg, Tokens { alice, bob })
}

async fn init_as(gw: &Gateway, token: &str) -> String {
    let auth = format!("Bearer {token}");
    let r = post(&gw.url("/mcp/s"), &[("authorization", &auth)], INIT).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.session().expect("session minted")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_belongs_to_the_principal_that_created_it() {
    let (up, addr) = Scripted::start().await;
    let (cfg, t) = config(addr);
    let mut gw = Gateway::start("auth-sessions", &cfg);
    let sid = init_as(&gw, &t.alice).await;
    let alice = format!("Bearer {}", t.alice);
    let bob = format!("Bearer {}", t.bob);
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x"}}"#;
    let before = up.count();
    // Bob presents Alice's session id: refused as if it did not exist.
    let r = post(
        &gw.url("/mcp/s"),
        &[("authorization", &bob), ("mcp-session-id", &sid)],
        call,
    )
    .await;
    assert_eq!((r.status.as_u16(), r.code().as_str()), (404, "MCP-002"));
    // Bob cannot end it either.
    let r = send(
        Method::DELETE,
        &gw.url("/mcp/s"),
        &[("authorization", &bob), ("mcp-session-id", &sid)],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Nor listen on it.
    let r = send(
        Method::GET,
        &gw.url("/mcp/s"),
        &[
            ("authorization", &bob),
            ("mcp-session-id", &sid),
            ("accept", "text/event-stream"),
        ],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(up.count(), before, "nothing of Bob's reached the upstream");
    // Alice still can.
    let r = post(
        &gw.url("/mcp/s"),
        &[("authorization", &alice), ("mcp-session-id", &sid)],
        call,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(up.count(), before + 1);
    gw.stop();
    let rows = gw.principal_rows();
    assert!(
        rows.iter()
            .any(|r| r.0 == "bob" && r.1 == "bearer" && r.2 == "deny" && r.3 == "other_principal"),
        "{rows:#?}"
    );
    assert!(
        rows.iter().any(|r| r.0 == "alice" && r.2 == "allow"),
        "{rows:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_attacks_are_refused_and_audited() {
    let (up, addr) = Scripted::start().await;
    let (cfg, t) = config(addr);
    let mut gw = Gateway::start("auth-bearer", &cfg);
    let u = gw.url("/mcp/s");
    let valid = t.alice.as_str();
    let long = format!("Bearer {}", "a".repeat(9000));
    let wrong_prefix = format!("Token {valid}");
    let lower = format!("bearer{valid}");
    let in_query = format!("{u}?access_token={valid}");
    let in_cookie = format!("session=1; token={valid}");
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "no credential",
            u.clone(),
            vec![],
            401,
            "missing_credential",
        ),
        (
            "wrong prefix",
            u.clone(),
            vec![("authorization", &wrong_prefix)],
            401,
            "bearer_malformed",
        ),
        (
            "no space",
            u.clone(),
            vec![("authorization", &lower)],
            401,
            "bearer_malformed",
        ),
        (
            "empty",
            u.clone(),
            vec![("authorization", "Bearer")],
            401,
            "bearer_malformed",
        ),
        (
            "unknown",
            u.clone(),
            vec![("authorization", "Bearer pal_0000")],
            401,
            "bearer_unknown",
        ),
        (
            "oversize",
            u.clone(),
            vec![("authorization", &long)],
            401,
            "bearer_too_long",
        ),
        (
            "in query",
            in_query.clone(),
            vec![],
            400,
            "credential_in_query",
        ),
        (
            "in cookie",
            u.clone(),
            vec![("cookie", &in_cookie)],
            400,
            "credential_in_cookie",
        ),
    ];
    for (name, url, headers, status, _) in &cases {
        let r = post(url, headers, INIT).await;
        assert_eq!(r.status.as_u16(), *status, "{name}");
        assert_eq!(r.code(), "MCP-002", "{name}");
        if *status == 401 {
            assert_eq!(
                r.headers["www-authenticate"], "Bearer realm=\"palisade\"",
                "{name}"
            );
        }
    }
    assert_eq!(up.count(), 0, "no refused request reached the upstream");
    // The route configured for `none` is open, but still refuses credentials in the URL.
    let r = post(&gw.url("/mcp/open"), &[], INIT).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = post(&format!("{}?api_key=x", gw.url("/mcp/open")), &[], INIT).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    gw.stop();
    let rows = gw.principal_rows();
    for (name, _, _, _, reason) in &cases {
        assert!(
            rows.iter().any(|r| r.2 == "deny" && r.3 == *reason),
            "audit for {name}: {rows:#?}"
        );
    }
    // No token, not even a refused one, reaches the audit trail.
    let dump = format!("{rows:?}");
    assert!(!dump.contains(valid));
}

/// Signs a POST to `path` the way a client would (the nonce doubles as idempotency key).
fn signed(key: &str, nonce: &str, ts: u64, path: &str, body: &str) -> Vec<(String, String)> {
    signed_keyed(key, nonce, nonce, ts, path, body)
}

fn signed_keyed(
    key: &str,
    nonce: &str,
    idem: &str,
    ts: u64,
    path: &str,
    body: &str,
) -> Vec<(String, String)> {
    let (secret, canonical) = match key {
        "seed" => (V1_SECRET, Canonical::V1),
        _ => (V2_SECRET, Canonical::V2),
    };
    let ts = ts.to_string();
    let sig = sign(
        secret.as_bytes(),
        canonical,
        &SignFields {
            method: "POST",
            path,
            timestamp: &ts,
            nonce,
            idempotency_key: idem,
            api_version: "1.0.0",
            key_id: key,
            ..Default::default()
        },
        body.as_bytes(),
    );
    vec![
        ("x-signature".into(), sig),
        ("x-timestamp".into(), ts),
        ("x-nonce".into(), nonce.into()),
        ("idempotency-key".into(), idem.into()),
        ("x-api-version".into(), "1.0.0".into()),
        ("x-key-id".into(), key.into()),
    ]
}

fn with(h: &[(String, String)], name: &str, value: Option<&str>) -> Vec<(String, String)> {
    let mut h: Vec<_> = h.iter().filter(|(k, _)| k != name).cloned().collect();
    if let Some(v) = value {
        h.push((name.to_owned(), v.to_owned()));
    }
    h
}

async fn post_signed(url: &str, h: &[(String, String)], body: &str) -> Reply {
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    post(url, &h, body).await
}

#[tokio::test(flavor = "multi_thread")]
async fn hmac_attacks_are_refused_and_audited() {
    let (up, addr) = Scripted::start().await;
    let (cfg, _) = config(addr);
    let mut gw = Gateway::start("auth-hmac", &cfg);
    let u = gw.url("/mcp/s");
    let now = unix_now();
    // A good v2 request works, and its exact replay does not.
    let good = signed("bot", "n-good", now, "/mcp/s", INIT);
    let r = post_signed(&u, &good, INIT).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let seen = up.count();
    type Case<'a> = (&'a str, Vec<(String, String)>, String, &'a str);
    let mut cases: Vec<Case> = vec![
        (
            "replayed nonce",
            good.clone(),
            INIT.into(),
            "hmac_replayed_nonce",
        ),
        (
            "stale",
            signed("bot", "n-stale", now - 120, "/mcp/s", INIT),
            INIT.into(),
            "hmac_stale",
        ),
        (
            "future",
            signed("bot", "n-future", now + 120, "/mcp/s", INIT),
            INIT.into(),
            "hmac_future",
        ),
        (
            "tampered body",
            signed("bot", "n-body", now, "/mcp/s", INIT),
            INIT.replace("\"it\"", "\"evil\""),
            "hmac_bad_signature",
        ),
        (
            "tampered path",
            signed("bot", "n-path", now, "/mcp/open", INIT),
            INIT.into(),
            "hmac_bad_signature",
        ),
        (
            "non-numeric timestamp",
            with(
                &signed("bot", "n-ts", now, "/mcp/s", INIT),
                "x-timestamp",
                Some("yesterday"),
            ),
            INIT.into(),
            "hmac_bad_timestamp",
        ),
        (
            "unknown key id",
            with(
                &signed("bot", "n-kid", now, "/mcp/s", INIT),
                "x-key-id",
                Some("../../etc/passwd"),
            ),
            INIT.into(),
            "hmac_unknown_key",
        ),
        (
            "unsupported API version",
            with(
                &signed("bot", "n-ver", now, "/mcp/s", INIT),
                "x-api-version",
                Some("0.1"),
            ),
            INIT.into(),
            "hmac_unsupported_version",
        ),
    ];
    for (header, label) in [
        ("x-timestamp", "timestamp"),
        ("x-nonce", "nonce"),
        ("x-api-version", "version"),
        ("idempotency-key", "idempotency key"),
        ("x-key-id", "key id"),
    ] {
        let h = with(
            &signed("bot", &format!("n-miss-{label}"), now, "/mcp/s", INIT),
            header,
            None,
        );
        cases.push((
            Box::leak(format!("missing {label}").into_boxed_str()),
            h,
            INIT.into(),
            "hmac_missing_header",
        ));
    }
    for (name, h, body, _) in &cases {
        let r = post_signed(&u, h, body).await;
        assert_eq!(
            (r.status.as_u16(), r.code().as_str()),
            (401, "MCP-002"),
            "{name}: {:?}",
            r.body
        );
    }
    // Tampered method: a signed POST replayed as DELETE.
    let h: Vec<(String, String)> = signed("bot", "n-method", now, "/mcp/s", "");
    let hs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = send(Method::DELETE, &u, &hs, "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(up.count(), seen, "no refused request reached the upstream");

    // Seed 001's form does not sign the nonce: a captured request re-sent with a fresh nonce is
    // still refused, because its signature was already used.
    let captured = signed("seed", "n-seed", now, "/mcp/s", INIT);
    assert_eq!(
        post_signed(&u, &captured, INIT).await.status,
        StatusCode::OK
    );
    let replay = with(&captured, "x-nonce", Some("attacker-fresh-nonce"));
    let r = post_signed(&u, &replay, INIT).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // A burst of forged signatures carrying a client's next nonce does not burn it.
    let next = signed("bot", "n-next", now, "/mcp/s", INIT);
    for i in 0..50 {
        let forged = with(&next, "x-signature", Some(&format!("{i:064x}")));
        assert_eq!(
            post_signed(&u, &forged, INIT).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let r = post_signed(&u, &next, INIT).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the real client's request still goes through"
    );
    gw.stop();
    let rows = gw.principal_rows();
    for (name, _, _, reason) in &cases {
        assert!(
            rows.iter().any(|r| r.2 == "deny" && r.3 == *reason),
            "audit for {name}: {rows:#?}"
        );
    }
    assert!(rows.iter().any(|r| r.3 == "hmac_replayed_signature"));
    assert_eq!(
        rows.iter().filter(|r| r.3 == "hmac_bad_signature").count(),
        2 + 1 + 50
    );
    assert!(rows
        .iter()
        .any(|r| r.0 == "seed-client" && r.1 == "hmac" && r.2 == "allow"));
    assert!(rows
        .iter()
        .any(|r| r.0 == "bot" && r.1 == "hmac" && r.2 == "allow"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_idempotency_key_replays_the_answer_without_calling_the_upstream() {
    let (up, addr) = Scripted::start().await;
    let (cfg, _) = config(addr);
    let mut gw = Gateway::start("auth-idempotency", &cfg);
    let u = gw.url("/mcp/s");
    let now = unix_now();
    let r = post_signed(&u, &signed("bot", "init", now, "/mcp/s", INIT), INIT).await;
    let sid = r.session().unwrap();
    let call = |name: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"{name}","arguments":{{"qty":1}}}}}}"#
        )
    };
    let order = call("place_order");
    let send_keyed = |nonce: &'static str, idem: &'static str, body: String| {
        let mut h = signed_keyed("bot", nonce, idem, now, "/mcp/s", &body);
        h.push(("mcp-session-id".into(), sid.clone()));
        let u = u.clone();
        async move { post_signed(&u, &h, &body).await }
    };
    let first = send_keyed("n1", "order-1", order.clone()).await;
    assert_eq!(first.status, StatusCode::OK);
    let calls = up.count();
    // The agent retries (fresh nonce and signature, same key and body): same answer, no call.
    let retry = send_keyed("n2", "order-1", order.clone()).await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(retry.body, first.body);
    assert_eq!(retry.headers["content-type"], first.headers["content-type"]);
    assert_eq!(up.count(), calls, "the upstream was not called again");
    // Same key, different request: refused with MCP-005, nothing forwarded.
    let other = send_keyed("n3", "order-1", call("cancel_order")).await;
    assert_eq!(
        (other.status.as_u16(), other.code().as_str()),
        (422, "MCP-005")
    );
    assert_eq!(up.count(), calls);
    // A streamed answer is stored and replayed byte for byte too.
    let stream = send_keyed("n4", "stream-1", call("twice")).await;
    assert_eq!(stream.headers["content-type"], "text/event-stream");
    let calls = up.count();
    let again = send_keyed("n5", "stream-1", call("twice")).await;
    assert_eq!(again.body, stream.body);
    assert_eq!(up.count(), calls);
    gw.stop();
    let rows = gw.principal_rows();
    assert_eq!(
        rows.iter().filter(|r| r.3 == "replayed").count(),
        2,
        "{rows:#?}"
    );
    assert!(rows.iter().any(|r| r.2 == "deny" && r.3 == "conflict"));
}
