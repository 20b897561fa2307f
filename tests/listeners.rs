//! Several listeners: each serves its own routes with its own default authentication; a route
//! not served on a listener does not exist there, and operational endpoints stay on the primary.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use http::{Method, StatusCode};
use palisade::config::Canonical;
use palisade::controls::authn::{generate_token, sign, SignFields};
use support::*;

const SECRET: &str = "listener-test-hmac-secret-0123456789";

#[tokio::test(flavor = "multi_thread")]
async fn each_listener_serves_its_routes_with_its_own_authentication() {
    let (up, addr) = Scripted::start().await;
    let (token, hash) = generate_token();
    let dir = tmpdir("listeners");
    let cfg = dir.join("p.toml");
    std::fs::write(
        &cfg,
        support::with_authz(&format!(
            "data_dir = {:?}\n\
             [auth]\nmethods = [\"bearer\"]\n[[auth.bearer]]\nid = \"svc\"\nsha256 = \"{hash}\"\n\
             [[auth.hmac.clients]]\nid = \"signer\"\nsecret = \"{SECRET}\"\n\
             [[listener]]\nlisten = \"127.0.0.1:0\"\nmethods = [\"hmac\"]\nroutes = [\"orders\"]\n\
             [[upstream]]\nname = \"orders\"\nurl = \"http://{addr}/mcp\"\n\
             [[upstream]]\nname = \"local\"\nurl = \"http://{addr}/mcp\"\nauth = [\"none\"]\n",
            dir.join("data").display().to_string()
        )),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    let _proc = Proc(child);
    let primary = first
        .strip_prefix("listening on http://")
        .unwrap()
        .to_owned();
    let public = second
        .strip_prefix("also listening on http://")
        .unwrap()
        .to_owned();
    let bearer = format!("Bearer {token}");
    // Primary: both routes, bearer by default, `local` open by its own setting.
    let r = post(
        &format!("http://{primary}/mcp/orders"),
        &[("authorization", &bearer)],
        INIT,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        post(&format!("http://{primary}/mcp/local"), &[], INIT)
            .await
            .status,
        StatusCode::OK
    );
    let seen = up.count();
    // Second listener: only `orders`, and only with a signature.
    let r = post(&format!("http://{public}/mcp/local"), &[], INIT).await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "a route not served here does not exist here"
    );
    let r = post(
        &format!("http://{public}/mcp/orders"),
        &[("authorization", &bearer)],
        INIT,
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "the listener's methods apply"
    );
    let r = send(Method::GET, &format!("http://{public}/metrics"), &[], "").await;
    assert_eq!(
        r.status,
        StatusCode::NOT_FOUND,
        "operational endpoints only on the primary"
    );
    assert_eq!(up.count(), seen);
    let ts = unix_now().to_string();
    let sig = sign(
        SECRET.as_bytes(),
        Canonical::V2,
        &SignFields {
            method: "POST",
            path: "/mcp/orders",
            timestamp: &ts,
            nonce: "n1",
            idempotency_key: "k1",
            api_version: "1.0.0",
            ..Default::default()
        },
        INIT.as_bytes(),
    );
    let signed = [
        ("x-signature", sig.as_str()),
        ("x-timestamp", ts.as_str()),
        ("x-nonce", "n1"),
        ("idempotency-key", "k1"),
        ("x-api-version", "1.0.0"),
    ];
    let r = post(&format!("http://{public}/mcp/orders"), &signed, INIT).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(up.count(), seen + 1);
}

#[test]
fn an_open_route_on_a_public_listener_is_a_config_error() {
    let dir = tmpdir("listeners-config");
    let cfg = dir.join("p.toml");
    std::fs::write(
        &cfg,
        "[[listener]]\nlisten = \"0.0.0.0:0\"\n[[upstream]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/mcp\"\n\
         [[listener]]\nlisten = \"nonsense\"\nroutes = [\"nope\"]\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains(
            "listener[0]: 0.0.0.0:0 is not a loopback address and a, /mcp (hub) accept(s) method \"none\""
        ),
        "{text}"
    );
    assert!(text.contains("listener[1].listen: required"), "{text}");
}
