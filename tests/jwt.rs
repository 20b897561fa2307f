//! JWT end to end: the real binary verifying tokens against a JWKS endpoint served by the test,
//! a key rotation at the issuer picked up without restarting the gateway, and refusals audited.

mod support;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use support::*;

fn signer(name: &str) -> EncodingKey {
    let pem = std::fs::read(format!(
        "{}/tests/fixtures/jwt/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    EncodingKey::from_rsa_pem(&pem).unwrap()
}

fn jwks(keys: &[(&str, &str)]) -> String {
    let keys = keys
        .iter()
        .map(|(kid, file)| {
            let mut k = Jwk::from_encoding_key(&signer(file), Algorithm::RS256).unwrap();
            k.common.key_id = Some((*kid).into());
            k
        })
        .collect();
    serde_json::to_string(&JwkSet { keys }).unwrap()
}

/// Serves whatever JWKS document `doc` holds, counting fetches.
async fn jwks_server(doc: Arc<Mutex<String>>, fetches: Arc<Mutex<u32>>) -> std::net::SocketAddr {
    http_server(move |_req| {
        *fetches.lock().unwrap() += 1;
        let body = doc.lock().unwrap().clone();
        async move {
            Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .unwrap()
        }
    })
    .await
}

fn token(kid: &str, key: &str, claims: serde_json::Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    encode(&h, &claims, &signer(key)).unwrap()
}

fn claims(sub: &str) -> serde_json::Value {
    json!({"iss": "https://idp.test", "aud": "https://gateway.test/mcp/s", "sub": sub,
           "exp": unix_now() + 600, "roles": ["trader"]})
}

#[tokio::test(flavor = "multi_thread")]
async fn jwks_rotation_is_picked_up_without_restart_and_refusals_are_audited() {
    let doc = Arc::new(Mutex::new(jwks(&[("k1", "rsa.key")])));
    let fetches = Arc::new(Mutex::new(0));
    let idp = jwks_server(doc.clone(), fetches.clone()).await;
    let (up, addr) = Scripted::start().await;
    let mut gw = Gateway::start(
        "jwt-jwks",
        &format!(
            "{LOCAL_IDP}[auth]\nmethods = [\"jwt\"]\n[auth.jwt]\nissuer = [\"https://idp.test\"]\n\
             audience = [\"https://gateway.test/mcp/s\"]\njwks_url = \"http://{idp}/jwks.json\"\n\
             [[upstream]]\nname = \"s\"\nurl = \"http://{addr}/mcp\"\n"
        ),
    );
    let u = gw.url("/mcp/s");
    let bearer = |t: &str| format!("Bearer {t}");
    let ok = |t: String| {
        let u = u.clone();
        async move { post(&u, &[("authorization", &bearer(&t))], INIT).await }
    };
    assert_eq!(*fetches.lock().unwrap(), 1, "fetched once at start");
    assert_eq!(
        ok(token("k1", "rsa.key", claims("agent-1"))).await.status,
        StatusCode::OK
    );
    // The issuer rotates to a new key: the first token naming it makes the gateway fetch again.
    *doc.lock().unwrap() = jwks(&[("k2", "rsa2.key")]);
    let r = ok(token("k2", "rsa2.key", claims("agent-2"))).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(*fetches.lock().unwrap(), 2);
    // A flood of unknown kids does not turn into a flood of fetches (bounded refresh rate).
    for i in 0..20 {
        let r = ok(token(&format!("bogus-{i}"), "rsa.key", claims("x"))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(*fetches.lock().unwrap(), 2);
    let seen = up.count();
    // Refusals.
    let mut expired = claims("agent-1");
    expired["exp"] = json!(unix_now() - 3600);
    let mut wrong_aud = claims("agent-1");
    wrong_aud["aud"] = json!("https://gateway.test/mcp/other");
    let cases = [
        ("expired", token("k2", "rsa2.key", expired), "jwt_expired"),
        (
            "wrong audience",
            token("k2", "rsa2.key", wrong_aud),
            "jwt_wrong_audience",
        ),
        (
            "rotated-out key",
            token("k1", "rsa.key", claims("agent-3")),
            "jwt_unknown_kid",
        ),
        (
            "signed by another key",
            token("k2", "rsa.key", claims("agent-1")),
            "jwt_bad_signature",
        ),
    ];
    for (name, t, _) in &cases {
        let r = ok(t.clone()).await;
        assert_eq!(
            (r.status.as_u16(), r.code().as_str()),
            (401, "MCP-002"),
            "{name}"
        );
    }
    assert_eq!(up.count(), seen);
    gw.stop();
    let rows = gw.principal_rows();
    for (name, _, reason) in &cases {
        assert!(
            rows.iter().any(|r| r.2 == "deny" && r.3 == *reason),
            "{name}: {rows:#?}"
        );
    }
    assert!(rows
        .iter()
        .any(|r| r.0 == "agent-2" && r.1 == "jwt" && r.2 == "allow"));
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth_resource_server_metadata_challenges_audience_and_scopes() {
    let doc = Arc::new(Mutex::new(jwks(&[("k1", "rsa.key")])));
    let idp = jwks_server(doc, Arc::new(Mutex::new(0))).await;
    let (up, addr) = Scripted::start().await;
    let mut gw = Gateway::start(
        "jwt-oauth",
        &format!(
            "{LOCAL_IDP}[auth]\nmethods = [\"jwt\"]\n[auth.jwt]\nissuer = [\"https://idp.test\"]\n\
             jwks_url = \"http://{idp}/jwks.json\"\n\
             [auth.oauth]\nresource_base = \"https://gateway.test\"\nauthorization_servers = [\"https://idp.test\"]\n\
             required_scopes = [\"mcp:tools\"]\n\
             [[upstream]]\nname = \"s\"\nurl = \"http://{addr}/mcp\"\n\
             [[upstream]]\nname = \"admin\"\nurl = \"http://{addr}/mcp\"\nrequired_scopes = [\"mcp:admin\"]\n"
        ),
    );
    // Protected Resource Metadata, path-inserted per route.
    let r = send(
        http::Method::GET,
        &gw.url("/.well-known/oauth-protected-resource/mcp/s"),
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let m = r.json();
    assert_eq!(m["resource"], "https://gateway.test/mcp/s");
    assert_eq!(m["authorization_servers"], json!(["https://idp.test"]));
    assert_eq!(m["scopes_supported"], json!(["mcp:tools"]));
    let r = send(
        http::Method::GET,
        &gw.url("/.well-known/oauth-protected-resource/mcp/nope"),
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // No token: 401 pointing at the metadata, with the scopes needed.
    let r = post(&gw.url("/mcp/s"), &[], INIT).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers["www-authenticate"],
        "Bearer resource_metadata=\"https://gateway.test/.well-known/oauth-protected-resource/mcp/s\", scope=\"mcp:tools\""
    );
    let tok = |aud: &str, scope: &str| {
        let mut c = claims("agent");
        c["aud"] = json!(aud);
        c["scope"] = json!(scope);
        token("k1", "rsa.key", c)
    };
    let call = |route: &'static str, t: String| {
        let u = gw.url(route);
        async move { post(&u, &[("authorization", &format!("Bearer {t}"))], INIT).await }
    };
    // A token for this route's resource, with the scope: in.
    assert_eq!(
        call("/mcp/s", tok("https://gateway.test/mcp/s", "mcp:tools"))
            .await
            .status,
        StatusCode::OK
    );
    // A broader scope covers a narrower one.
    assert_eq!(
        call("/mcp/s", tok("https://gateway.test/mcp/s", "mcp"))
            .await
            .status,
        StatusCode::OK
    );
    let seen = up.count();
    // The same token on another route: its audience is not that route (RFC 8707).
    let r = call("/mcp/admin", tok("https://gateway.test/mcp/s", "mcp:admin")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer error=\"invalid_token\", resource_metadata="));
    // The right audience without the scope: 403 insufficient_scope naming what is needed.
    let r = call(
        "/mcp/admin",
        tok("https://gateway.test/mcp/admin", "mcp:tools"),
    )
    .await;
    assert_eq!((r.status.as_u16(), r.code().as_str()), (403, "MCP-002"));
    assert_eq!(
        r.headers["www-authenticate"],
        "Bearer error=\"insufficient_scope\", resource_metadata=\"https://gateway.test/.well-known/oauth-protected-resource/mcp/admin\", scope=\"mcp:admin\""
    );
    // The upstream's own URL is never an acceptable audience.
    let r = call("/mcp/s", tok(&format!("http://{addr}/mcp"), "mcp:tools")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(up.count(), seen);
    gw.stop();
    let rows = gw.principal_rows();
    assert!(rows.iter().any(|r| r.3 == "insufficient_scope"));
    assert_eq!(
        rows.iter().filter(|r| r.3 == "jwt_wrong_audience").count(),
        2
    );
}
