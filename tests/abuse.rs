//! Abuse response through the running gateway: an address blocked after repeated bad tokens
//! stays blocked for a good token until an operator lifts it with `palisade blocks unblock`;
//! a principal whose valid token comes with a wrong HMAC signature is quarantined, alerted
//! to a webhook, and released with `palisade quarantine release`. The operator commands need
//! an admin principal.

mod support;

use std::process::Command;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use palisade::controls::authn::generate_token;
use support::*;

const PM_HMAC: &str = "pm-hmac-secret-0123456789abcdef0123";
const CALL: &str = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#;

struct Tokens {
    ops: String,
    pm: String,
}

fn config(upstream: std::net::SocketAddr, extra: &str) -> (String, Tokens) {
    let (ops, ho) = generate_token();
    let (pm, hp) = generate_token();
    let cfg = format!(
        r#"
[auth]
methods = ["bearer+hmac", "bearer", "hmac"]
[[auth.bearer]]
id = "ops"
sha256 = "{ho}"
roles = ["ops"]
[[auth.bearer]]
id = "pm"
sha256 = "{hp}"
roles = ["agent"]
[[auth.hmac.clients]]
id = "pm"
key_id = "pm"
secret = "{PM_HMAC}"
canonical = "v2"
[authz]
[authz.roles.agent]
permissions = ["mcp:*"]
[authz.roles.ops]
permissions = ["admin:*:*"]
[abuse]
max_failed_attempts = 3
{extra}
[[upstream]]
name = "s"
url = "http://{upstream}/mcp"
hub = false
"#
    );
    (cfg, Tokens { ops, pm })
}

/// `palisade blocks|quarantine ARGS` against the gateway's data directory.
fn admin(gw: &Gateway, token: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(gw.dir.join("palisade.toml"))
        .env("PALISADE_ADMIN_TOKEN", token)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn call_as(gw: &Gateway, token: &str) -> Reply {
    let auth = format!("Bearer {token}");
    let r = post(&gw.url("/mcp/s"), &[("authorization", &auth)], INIT).await;
    if r.status != StatusCode::OK {
        return r;
    }
    let sid = r.session().unwrap();
    post(
        &gw.url("/mcp/s"),
        &[
            ("authorization", &auth),
            ("mcp-session-id", &sid),
            ("mcp-protocol-version", "2025-11-25"),
        ],
        CALL,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tokens_block_the_address_even_for_a_good_token_until_unblocked() {
    let (up, addr) = Scripted::start().await;
    let (cfg, t) = config(addr, "");
    let mut gw = Gateway::start("abuse-block", &cfg);
    assert_eq!(call_as(&gw, &t.pm).await.status, StatusCode::OK);

    for i in 0..3 {
        let r = call_as(&gw, &format!("wrong-token-{i}")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // Blocked now: a valid token from the same address is refused, before it is looked at.
    let before = up.count();
    let r = call_as(&gw, &t.pm).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "MCP-002");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((890..=900).contains(&retry), "Retry-After {retry}");
    assert_eq!(up.count(), before);

    // The operator sees who and why; an agent cannot lift it.
    let (ok, text) = admin(&gw, &t.ops, &["blocks", "list"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("ip:127.0.0.1\tblocked_auth_failures"),
        "{text}"
    );
    let (ok, text) = admin(&gw, &t.pm, &["blocks", "unblock", "ip:127.0.0.1"]);
    assert!(!ok && text.contains("403"), "{text}");
    let (ok, text) = admin(&gw, "not-a-token", &["blocks", "list"]);
    assert!(!ok && text.contains("401"), "{text}");
    let (ok, text) = admin(&gw, &t.ops, &["blocks", "unblock", "ip:127.0.0.1"]);
    assert!(ok && text.contains("released ip:127.0.0.1"), "{text}");
    assert_eq!(call_as(&gw, &t.pm).await.status, StatusCode::OK);
    let (_, text) = admin(&gw, &t.ops, &["blocks", "list"]);
    assert!(text.contains("no blocks in force"), "{text}");

    gw.stop();
    let rows = gw.audit_rows();
    let has = |control: &str, reason: &str| rows.iter().any(|r| r.2 == control && r.3 == reason);
    assert!(has("abuse", "blocked_auth_failures"), "{rows:#?}");
    assert!(has("abuse", "blocked"), "{rows:#?}");
    assert!(has("abuse", "unblocked"), "{rows:#?}");
    assert!(has("admin", "no_permission"), "{rows:#?}");
    assert!(has("admin", "unauthenticated"), "{rows:#?}");
}

/// Headers of a request signed as `pm` with `signature`.
fn signed(
    token: Option<&str>,
    sid: Option<&str>,
    signature: &str,
    nonce: &str,
) -> Vec<(String, String)> {
    let mut h = vec![
        ("x-signature".to_owned(), signature.to_owned()),
        ("x-timestamp".to_owned(), unix_now().to_string()),
        ("x-nonce".to_owned(), nonce.to_owned()),
        ("idempotency-key".to_owned(), nonce.to_owned()),
        ("x-api-version".to_owned(), "1.0.0".to_owned()),
        ("x-key-id".to_owned(), "pm".to_owned()),
        ("mcp-protocol-version".to_owned(), "2025-11-25".to_owned()),
    ];
    if let Some(t) = token {
        h.push(("authorization".to_owned(), format!("Bearer {t}")));
    }
    if let Some(s) = sid {
        h.push(("mcp-session-id".to_owned(), s.to_owned()));
    }
    h
}

#[tokio::test(flavor = "multi_thread")]
async fn an_hmac_mismatch_with_a_valid_token_quarantines_the_agent_until_released() {
    let alerts: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let seen = alerts.clone();
    let hook = http_server(move |req: http::Request<hyper::body::Incoming>| {
        let seen = seen.clone();
        async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            seen.lock()
                .unwrap()
                .push(serde_json::from_slice(&body).unwrap());
            http::Response::new(Full::new(Bytes::new()))
        }
    })
    .await;
    let (up, addr) = Scripted::start().await;
    let extra = format!("alert_webhook = \"http://{hook}/alerts\"\n{}", LOCAL_IDP);
    // `[ssrf]` is its own table: it goes after `[abuse]`'s keys.
    let (cfg, t) = config(addr, &extra);
    let mut gw = Gateway::start("abuse-quarantine", &cfg);
    let auth = format!("Bearer {}", t.pm);
    let r = post(&gw.url("/mcp/s"), &[("authorization", &auth)], INIT).await;
    let sid = r.session().unwrap();

    // HMAC alone with a bad signature names nobody it proved: an authentication failure
    // against the address, not a quarantine of `pm` (key ids are not secret).
    let forged = format!("{:064x}", 7);
    let h = signed(None, Some(&sid), &forged, "n-1");
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = post(&gw.url("/mcp/s"), &h, CALL).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(call_as(&gw, &t.pm).await.status, StatusCode::OK);

    // Pm's valid token with a wrong signature: quarantined.
    let h = signed(Some(&t.pm), Some(&sid), &forged, "n-2");
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = post(&gw.url("/mcp/s"), &h, CALL).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let before = up.count();
    let r = call_as(&gw, &t.pm).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    assert_eq!(r.code(), "MCP-002");
    assert!(
        r.headers.get("retry-after").is_none(),
        "held until released"
    );
    assert_eq!(up.count(), before);
    // Others are unaffected.
    let (ok, text) = admin(&gw, &t.ops, &["quarantine", "list"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("principal:pm\tquarantined_hmac_mismatch") && text.contains("until released"),
        "{text}"
    );

    // The alert reached the webhook.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while alerts.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let got = alerts.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["event"], "quarantine");
    assert_eq!(got[0]["hold"]["who"], "principal:pm");
    assert_eq!(got[0]["hold"]["reason"], "quarantined_hmac_mismatch");

    // A block release does not release a quarantine; a quarantine release does.
    let (ok, _) = admin(&gw, &t.ops, &["blocks", "unblock", "principal:pm"]);
    assert!(!ok);
    let (ok, text) = admin(&gw, &t.ops, &["quarantine", "release", "principal:pm"]);
    assert!(ok, "{text}");
    assert_eq!(call_as(&gw, &t.pm).await.status, StatusCode::OK);

    gw.stop();
    let rows = gw.audit_rows();
    let has = |control: &str, reason: &str| rows.iter().any(|r| r.2 == control && r.3 == reason);
    assert!(has("abuse", "quarantined_hmac_mismatch"), "{rows:#?}");
    assert!(has("abuse", "quarantined"), "{rows:#?}");
    assert!(has("abuse", "released"), "{rows:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_block_holds_until_it_expires_and_rotating_forwarded_addresses_does_not_dodge_it() {
    use palisade::clock::ManualClock;
    let (_up, addr) = Scripted::start().await;
    let clock = ManualClock::at(1_700_000_000_000);
    let (cfg, t) = config(addr, "block_duration_ms = 60000\n");
    let (url, _db, stop, task) = in_process("abuse-expiry", &cfg, &clock).await;
    // Bad tokens, each claiming another address: no proxy is trusted, so one client.
    for i in 0..3 {
        let bad = format!("Bearer bad-token-{i}");
        let xff = format!("198.51.100.{i}");
        let r = post(
            &url,
            &[("authorization", &bad), ("x-forwarded-for", &xff)],
            INIT,
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let good = format!("Bearer {}", t.pm);
    let h = [
        ("authorization", good.as_str()),
        ("x-forwarded-for", "203.0.113.99"),
    ];
    assert_eq!(post(&url, &h, INIT).await.status, StatusCode::FORBIDDEN);
    clock.advance(59_999);
    let r = post(&url, &h, INIT).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.headers["retry-after"], "1");
    clock.advance(1);
    assert_eq!(post(&url, &h, INIT).await.status, StatusCode::OK);
    let _ = stop.send(());
    task.await.unwrap();
}
