//! Tests against real MCP peers from the registries: the official Python SDK as a client and the
//! reference server `@modelcontextprotocol/server-everything` as an upstream. `scripts/test.sh`
//! installs them; with `PALISADE_REQUIRE_PEERS=1` (CI) a missing peer fails the test.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use support::*;

#[test]
fn python_sdk_lists_and_calls_demo_tools_through_the_gateway() {
    let Some(python) = peer("PALISADE_PYTHON") else {
        return;
    };
    let peers = std::env::var("PALISADE_PEERS_DIR").unwrap();
    let mut gw = Gateway::start(
        "python",
        "[[upstream]]\nname = \"demo\"\nbuiltin = \"demo\"\n",
    );
    let out = Command::new(python)
        .arg(format!("{peers}/python_client.py"))
        .arg(gw.url("/mcp/demo"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["tools"],
        serde_json::json!([
            "echo",
            "get_quote",
            "place_order",
            "get_history",
            "fetch_url"
        ])
    );
    assert_eq!(v["echo"], "through palisade");
    assert_eq!(v["quote"]["symbol"], "EURUSD");
    assert_eq!(v["order"]["status"], "accepted");
    gw.stop();
    // The SDK's session ended with DELETE; every call was audited as allowed.
    let rows = gw.audit_rows();
    let calls = rows
        .iter()
        .filter(|r| r.0.as_deref() == Some("tools/call") && r.1 == "allow")
        .count();
    assert_eq!(calls, 3, "{rows:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_everything_progress_streams_incrementally_through_the_gateway() {
    let Some(_) = peer("PALISADE_PYTHON") else {
        return;
    };
    let peers = std::env::var("PALISADE_PEERS_DIR").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("node")
        .arg(format!(
            "{peers}/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
        ))
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .env(
            "NODE_OPTIONS",
            format!("--require {peers}/bind-localhost.cjs"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _everything = Proc(child);
    for line in BufReader::new(stderr).lines() {
        if line.unwrap().contains("listening on port") {
            break;
        }
    }
    let gw = Gateway::start(
        "everything",
        &format!("[[upstream]]\nname = \"everything\"\nurl = \"http://127.0.0.1:{port}/mcp\"\n"),
    );
    let url = gw.url("/mcp/everything");
    let init = post(&url, &[], INIT).await;
    assert_eq!(init.status, 200, "{:?}", init.body);
    let sid = init.session().unwrap();
    let h = [
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    post(
        &url,
        &h,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    let call = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"trigger-long-running-operation","arguments":{"duration":2,"steps":4},"_meta":{"progressToken":"tok"}}}"#;
    let client = palisade::upstream::client(Duration::from_secs(2));
    let req = Request::post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-11-25")
        .body(Full::new(Bytes::from(call)))
        .unwrap();
    let started = Instant::now();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["x-accel-buffering"], "no");
    assert!(resp.headers().get("content-encoding").is_none());
    let mut body = resp.into_body();
    let mut arrivals = Vec::new();
    let mut text = String::new();
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame.unwrap().into_data() {
            let chunk = String::from_utf8_lossy(&d).to_string();
            for _ in 0..chunk.matches("notifications/progress").count() {
                arrivals.push(("progress", started.elapsed()));
            }
            if chunk.contains("\"result\"") {
                arrivals.push(("result", started.elapsed()));
            }
            text.push_str(&chunk);
        }
    }
    let progress: Vec<_> = arrivals
        .iter()
        .filter(|a| a.0 == "progress")
        .map(|a| a.1)
        .collect();
    let result = arrivals
        .iter()
        .find(|a| a.0 == "result")
        .map(|a| a.1)
        .expect("a result arrived");
    assert_eq!(progress.len(), 4, "{text}");
    // Incremental: the first progress event reached the client long before the result did.
    assert!(
        result - progress[0] >= Duration::from_millis(1000),
        "progress {progress:?}, result {result:?}"
    );
    assert_eq!(text.matches("\"id\":3").count(), 1);
}

#[test]
fn python_sdk_authenticates_with_a_bearer_token_and_with_hmac_signing() {
    let Some(python) = peer("PALISADE_PYTHON") else {
        return;
    };
    let peers = std::env::var("PALISADE_PEERS_DIR").unwrap();
    let (token, hash) = palisade::controls::authn::generate_token();
    let v1 = "python-seed-secret-0123456789abcdef";
    let v2 = "python-v2-secret-0123456789abcdef0";
    let mut gw = Gateway::start(
        "python-auth",
        &format!(
            "[auth]\nmethods = [\"bearer\", \"hmac\"]\n\
             [[auth.bearer]]\nid = \"py-bearer\"\nsha256 = \"{hash}\"\n\
             [[auth.hmac.clients]]\nid = \"py-seed\"\nkey_id = \"seed\"\nsecret = \"{v1}\"\ncanonical = \"v1\"\n\
             [[auth.hmac.clients]]\nid = \"py-v2\"\nkey_id = \"v2\"\nsecret = \"{v2}\"\n\
             [[upstream]]\nname = \"demo\"\nbuiltin = \"demo\"\n"
        ),
    );
    let url = gw.url("/mcp/demo");
    let run = |args: &[&str]| {
        let out = Command::new(&python)
            .arg(format!("{peers}/python_auth_client.py"))
            .arg(&url)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "python client {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["tools"][0], "echo");
        v["echo"].as_str().unwrap().to_owned()
    };
    assert_eq!(run(&["bearer", &token]), "signed by bearer");
    assert_eq!(run(&["hmac", "seed", v1, "v1"]), "signed by hmac");
    assert_eq!(run(&["hmac", "v2", v2, "v2"]), "signed by hmac");
    // Without a credential the SDK gets nowhere.
    let out = Command::new(&python)
        .arg(format!("{peers}/python_client.py"))
        .arg(&url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    gw.stop();
    let rows = gw.principal_rows();
    for who in ["py-bearer", "py-seed", "py-v2"] {
        let calls = rows.iter().filter(|r| r.0 == who && r.2 == "allow").count();
        assert!(calls >= 3, "{who}: {rows:#?}");
    }
    assert!(rows.iter().any(|r| r.3 == "missing_credential"));
}
