//! The built-in issuer end to end: tokens from `/oauth/token` and `/auth/login` accepted by the
//! gateway itself, refusals audited, failed logins limited, `palisade token revoke` and
//! `palisade keys rotate` taking effect on the running gateway.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::{Method, StatusCode};
use palisade::controls::authn::generate_token;
use support::*;

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn header_kid(token: &str) -> String {
    let h = token.split('.').next().unwrap();
    let v: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(h)
            .unwrap(),
    )
    .unwrap();
    v["kid"].as_str().unwrap().to_owned()
}

fn claim(token: &str, name: &str) -> serde_json::Value {
    let p = token.split('.').nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .unwrap(),
    )
    .unwrap();
    v[name].clone()
}

/// Polls `cond` until it holds (the gateway reloads changed files once a second).
async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn issued_tokens_work_and_revocation_rotation_and_login_limits_apply() {
    let (up, addr) = Scripted::start().await;
    let (secret, secret_hash) = generate_token();
    let password_hash = palisade::issuer::argon2_hash("correct horse battery").unwrap();
    let mut gw = Gateway::start(
        "issuer",
        &format!(
            "[auth]\nmethods = [\"jwt\"]\n\
             [auth.oauth]\nresource_base = \"https://gateway.test\"\nauthorization_servers = [\"https://gateway.test\"]\n\
             [issuer]\nissuer = \"https://gateway.test\"\nlogin_max_failures = 3\n\
             [[issuer.clients]]\nclient_id = \"position_manager\"\nsecret_sha256 = \"{secret_hash}\"\nroles = [\"position_manager\"]\nscopes = [\"mcp:tools\", \"orders:place\"]\n\
             [[issuer.users]]\nusername = \"alice\"\npassword_argon2id = \"{password_hash}\"\nroles = [\"trader\"]\nscopes = [\"mcp:tools\"]\n\
             [[upstream]]\nname = \"s\"\nurl = \"http://{addr}/mcp\"\n"
        ),
    );
    // Authorization server metadata and keys.
    let m = send(
        Method::GET,
        &gw.url("/.well-known/oauth-authorization-server"),
        &[],
        "",
    )
    .await
    .json();
    assert_eq!(m["issuer"], "https://gateway.test");
    assert_eq!(m["token_endpoint"], "https://gateway.test/oauth/token");
    let jwks = send(Method::GET, &gw.url("/.well-known/jwks.json"), &[], "")
        .await
        .json();
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");

    let token_url = gw.url("/oauth/token");
    let ct = ("content-type", "application/x-www-form-urlencoded");
    let get_token = |extra: Vec<(&'static str, String)>| {
        let url = token_url.clone();
        let secret = secret.clone();
        async move {
            let mut pairs = vec![
                ("grant_type", "client_credentials".to_owned()),
                ("client_id", "position_manager".to_owned()),
                ("client_secret", secret),
                ("resource", "https://gateway.test/mcp/s".to_owned()),
            ];
            pairs.extend(extra);
            let body = form(
                &pairs
                    .iter()
                    .map(|(k, v)| (*k, v.as_str()))
                    .collect::<Vec<_>>(),
            );
            send(Method::POST, &url, &[ct], body).await
        }
    };
    let r = get_token(vec![("scope", "mcp:tools admin".into())]).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    let t = r.json();
    assert_eq!(
        (
            t["token_type"].as_str(),
            t["expires_in"].as_u64(),
            t["scope"].as_str()
        ),
        (Some("Bearer"), Some(1800), Some("mcp:tools"))
    );
    let token = t["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claim(&token, "aud"), "https://gateway.test/mcp/s");
    let use_token = |t: String| {
        let u = gw.url("/mcp/s");
        async move {
            post(&u, &[("authorization", &format!("Bearer {t}"))], INIT)
                .await
                .status
        }
    };
    assert_eq!(use_token(token.clone()).await, StatusCode::OK);

    // HTTP Basic client authentication works too.
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("position_manager:{secret}"));
    let r = send(
        Method::POST,
        &token_url,
        &[ct, ("authorization", &format!("Basic {basic}"))],
        form(&[("grant_type", "client_credentials")]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);

    // Refusals.
    let seen = up.count();
    let bad = |body: String| {
        let url = token_url.clone();
        async move { send(Method::POST, &url, &[ct], body).await }
    };
    let r = bad(form(&[
        ("grant_type", "client_credentials"),
        ("client_id", "position_manager"),
        ("client_secret", "pal_wrong"),
    ]))
    .await;
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    let r = bad(form(&[
        ("grant_type", "password"),
        ("client_id", "position_manager"),
        ("client_secret", &secret),
    ]))
    .await;
    assert_eq!(r.json()["error"], "unsupported_grant_type");
    let r = bad(form(&[
        ("grant_type", "client_credentials"),
        ("client_id", "position_manager"),
        ("client_secret", &secret),
        ("resource", "https://evil.test/mcp"),
    ]))
    .await;
    assert_eq!(r.json()["error"], "invalid_target");
    let r = bad(form(&[
        ("grant_type", "client_credentials"),
        ("client_id", "position_manager"),
        ("client_secret", &secret),
        ("scope", "admin"),
    ]))
    .await;
    assert_eq!(r.json()["error"], "invalid_scope");
    assert_eq!(up.count(), seen);

    // Login in the seeds' shape.
    let login = |user: &str, pw: &str| {
        let url = gw.url("/auth/login");
        let body =
            serde_json::json!({"username": user, "password": pw, "scope": ["mcp:tools", "admin"]})
                .to_string();
        async move { post(&url, &[], &body).await }
    };
    let r = login("alice", "correct horse battery").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let l = r.json();
    assert_eq!(
        (l["tokenType"].as_str(), l["expiresIn"].as_str()),
        (Some("Bearer"), Some("30m"))
    );
    assert_eq!(claim(l["token"].as_str().unwrap(), "scope"), "mcp:tools");
    assert_eq!(
        use_token(l["token"].as_str().unwrap().to_owned()).await,
        StatusCode::OK
    );
    let seen = up.count();
    // Failed logins are limited per user: after three, even the right password is refused.
    for _ in 0..3 {
        assert_eq!(
            login("alice", "wrong").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let r = login("alice", "correct horse battery").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(
        login("nobody", "x").await.status,
        StatusCode::TOO_MANY_REQUESTS,
        "same client address"
    );
    assert_eq!(up.count(), seen, "no issuer refusal reached the upstream");

    // Revocation by jti takes effect on the running gateway, cached token or not.
    let jti = claim(&token, "jti");
    let out = Command::new(BIN)
        .args([
            "token",
            "revoke",
            "--jti",
            jti.as_str().unwrap(),
            "--data-dir",
        ])
        .arg(gw.dir.join("data"))
        .output()
        .unwrap();
    assert!(out.status.success());
    eventually("the revocation", || {
        let t = token.clone();
        let f = use_token(t);
        async move { f.await == StatusCode::UNAUTHORIZED }
    })
    .await;

    // Key rotation: new tokens carry the new kid; tokens signed by the old key still verify.
    let before = get_token(vec![]).await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let old_kid = header_kid(&before);
    let out = Command::new(BIN)
        .args(["keys", "rotate", "--alg", "RS256", "--data-dir"])
        .arg(gw.dir.join("data"))
        .output()
        .unwrap();
    assert!(out.status.success());
    eventually("the new signing key", || {
        let f = get_token(vec![]);
        let old = old_kid.clone();
        async move { header_kid(f.await.json()["access_token"].as_str().unwrap()) != old }
    })
    .await;
    let after = get_token(vec![]).await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(use_token(after).await, StatusCode::OK);
    assert_eq!(
        use_token(before).await,
        StatusCode::OK,
        "old key verifies until its tokens expire"
    );

    gw.stop();
    let rows = gw.principal_rows();
    for reason in [
        "token_issued",
        "invalid_client",
        "unsupported_grant_type",
        "invalid_target",
        "invalid_scope",
        "login_failed",
        "rate_limited",
        "jwt_revoked",
    ] {
        assert!(
            rows.iter().any(|r| r.3 == reason),
            "audit has {reason}: {rows:#?}"
        );
    }
    assert!(rows
        .iter()
        .any(|r| r.0 == "position_manager" && r.1 == "jwt" && r.2 == "allow"));
    assert!(rows
        .iter()
        .any(|r| r.0 == "alice" && r.1 == "issuer" && r.3 == "login_failed"));
    // Secrets never reach the audit trail.
    let dump = format!("{rows:?}");
    assert!(!dump.contains(&secret) && !dump.contains("correct horse"));
}
