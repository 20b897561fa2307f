//! The configurations in `examples/` (one per seed scenario that needs authentication) are
//! valid, and seed 000's trading-agents setup behaves as its comments say.

mod support;

use std::process::Command;

use http::{Method, StatusCode};
use palisade::config::Canonical;
use palisade::controls::authn::{generate_token, sign, SignFields};
use support::*;

const PM_HMAC: &str = "position-manager-hmac-secret-0123456789";

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// (name, value) pairs.
type Pairs = Vec<(&'static str, String)>;

/// Environment for the examples' `${VAR}`s, and the secrets behind the hashes.
fn env() -> (Pairs, Pairs) {
    let mut vars = Vec::new();
    let mut secrets = Vec::new();
    for (var, who) in [
        ("SIGNAL_SECRET_SHA256", "signal_agent"),
        ("RISK_SECRET_SHA256", "risk_agent"),
        ("PM_SECRET_SHA256", "position_manager"),
        ("QUOTES_TOKEN_SHA256", "quotes"),
        ("WS_AUTH_TOKEN_SHA256", "ws-client"),
    ] {
        let (secret, hash) = generate_token();
        vars.push((var, hash));
        secrets.push((who, secret));
    }
    let argon = palisade::issuer::argon2_hash("example-password").unwrap();
    for var in [
        "ADMIN_PASSWORD_ARGON2ID",
        "ANALYST_PASSWORD_ARGON2ID",
        "HATAGO_USER_ARGON2ID",
    ] {
        vars.push((var, argon.clone()));
    }
    vars.push(("PM_HMAC_SECRET", PM_HMAC.to_owned()));
    vars.push((
        "API_KEY_HMAC_SECRET",
        "seed-one-hmac-secret-0123456789abcdef".to_owned(),
    ));
    vars.push((
        "HATAGO_AUTH_SECRET",
        "hatago-hs256-secret-0123456789abcdef".to_owned(),
    ));
    vars.push(("OIDC_ISSUER", "https://accounts.example.com".to_owned()));
    vars.push((
        "JWT_SECRET",
        "docker-agents-jwt-secret-0123456789ab".to_owned(),
    ));
    vars.push((
        "HATAGO_AUTH_PUBLIC_KEY_PATH",
        format!("{}/tests/fixtures/jwt/rsa.pub", env!("CARGO_MANIFEST_DIR")),
    ));
    (vars, secrets)
}

#[test]
fn every_example_passes_config_check() {
    let (vars, _) = env();
    let dir = std::fs::read_dir(format!("{}/examples", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut checked = 0;
    for f in dir {
        let path = f.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let out = Command::new(BIN)
            .args(["config", "check"])
            .arg(&path)
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}{}",
            path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert_eq!(checked, 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn seed000_orders_need_the_agents_token_and_its_signature() {
    let (vars, secrets) = env();
    let secret = |who: &str| secrets.iter().find(|(w, _)| *w == who).unwrap().1.clone();
    let data = tmpdir("example-seed000");
    let (_proc, addr) = spawn_listening(
        Command::new(BIN)
            .args(["serve", "--config", &example("seed000-trading-agents.toml")])
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "warn"),
    );
    let url = |p: &str| format!("http://{addr}{p}");
    let token = |who: &str, scope: &str, resource: &str| {
        let body = format!(
            "grant_type=client_credentials&client_id={who}&client_secret={}&scope={scope}&resource={resource}",
            secret(who)
        );
        let u = url("/oauth/token");
        async move {
            let r = send(
                Method::POST,
                &u,
                &[("content-type", "application/x-www-form-urlencoded")],
                body,
            )
            .await;
            assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
            r.json()["access_token"].as_str().unwrap().to_owned()
        }
    };
    let market = "https%3A%2F%2Fgateway.example.com%2Fmcp%2Fmarket";
    let orders = "https%3A%2F%2Fgateway.example.com%2Fmcp%2Forders";
    // The signal agent reads the market.
    let t = token("signal_agent", "market:read", market).await;
    let r = post(
        &url("/mcp/market"),
        &[("authorization", &format!("Bearer {t}"))],
        INIT,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // position_manager's token alone does not open the order route: a signature is required.
    let t = token("position_manager", "market:read%20orders:place", orders).await;
    let auth = format!("Bearer {t}");
    let r = post(&url("/mcp/orders"), &[("authorization", &auth)], INIT).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // Token and signature together: in.
    let ts = unix_now().to_string();
    let sig = sign(
        PM_HMAC.as_bytes(),
        Canonical::V2,
        &SignFields {
            method: "POST",
            path: "/mcp/orders",
            timestamp: &ts,
            nonce: "n-1",
            idempotency_key: "order-1",
            api_version: "1.0.0",
            key_id: "pm",
            ..Default::default()
        },
        INIT.as_bytes(),
    );
    let signed = [
        ("authorization", auth.as_str()),
        ("x-signature", sig.as_str()),
        ("x-timestamp", ts.as_str()),
        ("x-nonce", "n-1"),
        ("idempotency-key", "order-1"),
        ("x-api-version", "1.0.0"),
        ("x-key-id", "pm"),
    ];
    let r = post(&url("/mcp/orders"), &signed, INIT).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // The signal agent cannot obtain the order scope at all.
    let r = send(
        Method::POST,
        &url("/oauth/token"),
        &[("content-type", "application/x-www-form-urlencoded")],
        format!("grant_type=client_credentials&client_id=signal_agent&client_secret={}&scope=orders:place", secret("signal_agent")),
    )
    .await;
    assert_eq!(r.json()["error"], "invalid_scope");
    // And its market token is no good on the order route (audience and signature).
    let t = token("signal_agent", "market:read", market).await;
    let r = post(
        &url("/mcp/orders"),
        &[("authorization", &format!("Bearer {t}"))],
        INIT,
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

/// Serves an example with the test environment; returns the process with its data directory
/// (the process is stopped before the directory goes), and its address.
fn serve_example(name: &str, vars: &Pairs) -> ((Proc, Scratch), String) {
    let data = tmpdir(&format!("example-{name}"));
    let (proc, addr) = spawn_listening(
        Command::new(BIN)
            .args(["serve", "--config", &example(name)])
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "warn"),
    );
    ((proc, data), addr)
}

#[tokio::test(flavor = "multi_thread")]
async fn seed002_limits_each_client_and_blocks_repeated_failures() {
    let (vars, secrets) = env();
    let token = &secrets.iter().find(|(w, _)| *w == "ws-client").unwrap().1;
    let auth = format!("Bearer {token}");

    // RATE_LIMIT_MAX_REQUESTS = 60 per minute per address.
    let (_p, addr) = serve_example("seed002-docker-agents.toml", &vars);
    let url = format!("http://{addr}/mcp/agents");
    for left in (0..60).rev() {
        let r = post(&url, &[("authorization", &auth)], INIT).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.headers["x-ratelimit-remaining"],
            left.to_string().as_str()
        );
    }
    let r = post(&url, &[("authorization", &auth)], INIT).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.code(), "MCP-006");

    // MAX_FAILED_ATTEMPTS = 5: then even the right token is refused (for BLOCK_DURATION).
    let (_p, addr) = serve_example("seed002-docker-agents.toml", &vars);
    let url = format!("http://{addr}/mcp/agents");
    for i in 0..5 {
        let bad = format!("Bearer not-the-token-{i}");
        let r = post(&url, &[("authorization", &bad)], INIT).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = post(&url, &[("authorization", &auth)], INIT).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.headers["retry-after"], "900");
}

#[tokio::test(flavor = "multi_thread")]
async fn seed004_limits_tool_calls_per_user_with_the_tightest_rule_in_the_headers() {
    let (vars, _) = env();
    let (_p, addr) = serve_example("seed004-hatago.toml", &vars);
    let url = format!("http://{addr}/mcp/hub");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("hs".into());
    let claims = serde_json::json!({
        "iss": "hatago-hub", "aud": "mcp-clients", "sub": "alice",
        "exp": unix_now() + 600, "roles": ["user"],
    });
    let key = jsonwebtoken::EncodingKey::from_secret(b"hatago-hs256-secret-0123456789abcdef");
    let jwt = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    let auth = format!("Bearer {jwt}");
    let r = post(&url, &[("authorization", &auth)], INIT).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // Not a tool call: the per-user rule (100) is the tightest that counted it.
    assert_eq!(r.headers["x-ratelimit-limit"], "100");
    let sid = r.session().unwrap();
    let h = [
        ("authorization", auth.as_str()),
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#;
    for left in (0..50).rev() {
        let r = post(&url, &h, call).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.headers["x-ratelimit-limit"], "50");
        assert_eq!(
            r.headers["x-ratelimit-remaining"],
            left.to_string().as_str()
        );
    }
    let r = post(&url, &h, call).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // Other methods still pass under the per-user rule.
    let list = r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#;
    assert_eq!(post(&url, &h, list).await.status, StatusCode::OK);
}
