//! End-to-end tests against the real `palisade` binary and real upstream processes.

mod support;

use http::{Method, StatusCode};
use support::*;

fn scripted_config(addr: std::net::SocketAddr) -> String {
    format!(
        "[[upstream]]\nname = \"s\"\nurl = \"http://{addr}/mcp\"\n[upstream.headers]\nAuthorization = \"Bearer upstream-credential\"\n\
         [[upstream]]\nname = \"other\"\nurl = \"http://{addr}/mcp\"\n"
    )
}

async fn init(gw: &Gateway, route: &str) -> String {
    let r = post(&gw.url(route), &[], INIT).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.session().expect("gateway minted a session")
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_upstream_process_through_gateway_and_audit_verifies() {
    let (_demo, demo_addr) = spawn_listening(std::process::Command::new(BIN).args([
        "demo-upstream",
        "--listen",
        "127.0.0.1:0",
    ]));
    let mut gw = Gateway::start(
        "demo",
        &format!("[[upstream]]\nname = \"demo\"\nurl = \"http://{demo_addr}\"\n"),
    );
    let sid = init(&gw, "/mcp/demo").await;
    let h = [
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let r = post(
        &gw.url("/mcp/demo"),
        &h,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = post(
        &gw.url("/mcp/demo"),
        &h,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    )
    .await;
    let names: Vec<_> = r.json()["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "echo",
            "get_quote",
            "place_order",
            "get_history",
            "fetch_url"
        ]
    );
    let call = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"héllo"}}}"#;
    let r = post(&gw.url("/mcp/demo"), &h, call).await;
    assert_eq!(r.json()["result"]["content"][0]["text"], "héllo");
    // DELETE ends the session; the id then answers 404.
    let r = send(Method::DELETE, &gw.url("/mcp/demo"), &h, "").await;
    assert_eq!(r.status, StatusCode::OK);
    let r = post(&gw.url("/mcp/demo"), &h, call).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    gw.stop();
    let rows = gw.audit_rows();
    assert_eq!(rows.len(), 6, "{rows:#?}");
    assert_eq!(
        rows[3],
        (
            Some("tools/call".into()),
            "allow".into(),
            "upstream".into(),
            "ok".into(),
            200,
            None
        )
    );
    assert_eq!(rows[5].1, "deny");
    let conn = rusqlite::Connection::open(gw.db()).unwrap();
    let (tool, hash): (String, String) = conn
        .query_row(
            "SELECT tool, input_hash FROM audit WHERE seq = 4",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(tool, "echo");
    assert_eq!(hash.len(), 64);
    let out = std::process::Command::new(BIN)
        .args(["audit", "verify", "--db"])
        .arg(gw.db())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Editing a record (its tool, the tenth value, in the batch that holds it) is caught and
    // named by the CLI.
    let edited = conn
        .execute(
            "UPDATE audit_segment SET records = json_set(records, '$[' || (4 - first_seq) || '][9]', 'place_order')
             WHERE first_seq <= 4 AND first_seq + json_array_length(records) > 4",
            [],
        )
        .unwrap();
    assert_eq!(edited, 1);
    let tool: String = conn
        .query_row("SELECT tool FROM audit WHERE seq = 4", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tool, "place_order");
    let out = std::process::Command::new(BIN)
        .args(["audit", "verify", "--db"])
        .arg(gw.db())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("record 4"));
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarding_is_byte_faithful_and_credentials_are_swapped() {
    let (up, addr) = Scripted::start().await;
    let gw = Gateway::start("faithful", &scripted_config(addr));
    let sid = init(&gw, "/mcp/s").await;
    assert_ne!(
        sid, "upstream-secret-session",
        "the upstream's session id is never exposed"
    );
    let body = "{ \"jsonrpc\" : \"2.0\", \"id\":\"x\",\"method\":\"tools/call\",\"params\":{\"name\":\"headers\",\"unknown\":{\"future\":[1e3]}}, \"ext\":1 }";
    let r = post(
        &gw.url("/mcp/s"),
        &[
            ("mcp-session-id", &sid),
            ("authorization", "Bearer client-token"),
            ("cookie", "c=1"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "headers"),
            ("mcp-param-region", "eu"),
            ("last-event-id", "e1"),
            ("mcp-protocol-version", "2025-11-25"),
        ],
        body,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let (headers, bytes) = up.bodies.lock().unwrap().last().cloned().unwrap();
    assert_eq!(bytes, body.as_bytes(), "original bytes forwarded unchanged");
    assert_eq!(headers["authorization"], "Bearer upstream-credential");
    assert!(headers.get("cookie").is_none());
    assert_eq!(headers["mcp-session-id"], "upstream-secret-session");
    for h in [
        "mcp-method",
        "mcp-name",
        "mcp-param-region",
        "last-event-id",
        "mcp-protocol-version",
    ] {
        assert!(headers.contains_key(h), "{h} forwarded");
    }
}

/// A body over the limit is refused on its declared length before any of it is read, and the
/// gateway then reads the rest (bounded) so that a client still writing it gets the 413 instead
/// of a connection reset under its feet; a body far past that bound is cut off.
#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_body_gets_its_413_whether_or_not_it_is_sent() {
    let (up, addr) = Scripted::start().await;
    let gw = Gateway::start("oversized", &scripted_config(addr));
    let sid = init(&gw, "/mcp/s").await;
    let before = up.count();
    let u = gw.url("/mcp/s");
    let headers = [
        ("content-type", "application/json"),
        ("mcp-session-id", sid.as_str()),
    ];
    let body = |n: usize| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"p":"{}"}}}}"#,
            "a".repeat(n)
        )
    };
    // Declared, never sent: the answer comes without waiting for a byte of it.
    let r = send_declared_only(&u, &headers, (1 << 20) + 1).await;
    assert_eq!((r.status.as_u16(), r.code().as_str()), (413, "MCP-017"));
    // Written in full by a client that reads the answer only afterwards.
    for _ in 0..3 {
        let r = send(Method::POST, &u, &headers, body(1 << 20).into_bytes()).await;
        assert_eq!((r.status.as_u16(), r.code().as_str()), (413, "MCP-017"));
    }
    // The gateway reads the rest of what it refused: a client that gets the 413 with its body
    // half sent can finish sending it, and the same connection then serves the next request.
    let big = body(1 << 20);
    let mut conn = RawConn::connect(&u).await;
    conn.head(&headers, big.len()).await;
    conn.write(&big.as_bytes()[..1000]).await.unwrap();
    let r = conn.reply().await;
    assert_eq!((r.status.as_u16(), r.code().as_str()), (413, "MCP-017"));
    conn.write(&big.as_bytes()[1000..]).await.unwrap();
    let ping = r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#;
    conn.head(&headers, ping.len()).await;
    conn.write(ping.as_bytes()).await.unwrap();
    assert_eq!(conn.reply().await.status, StatusCode::OK);
    // Far past what the gateway reads of a refused body: refused, the connection cut off at
    // some point; the gateway serves the next request as before.
    let _ = support::try_send(Method::POST, &u, &headers, body(8 << 20).into_bytes()).await;
    let ok = r#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#;
    let r = send(Method::POST, &u, &headers, ok.as_bytes().to_vec()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        up.count(),
        before + 2,
        "only the two pings reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rejection_is_refused_audited_and_never_reaches_the_upstream() {
    let (up, addr) = Scripted::start().await;
    let mut gw = Gateway::start("negatives", &scripted_config(addr));
    let sid = init(&gw, "/mcp/s").await;
    let before = up.count();
    let u = gw.url("/mcp/s");
    let s = sid.as_str();
    let ok_call = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"x"}}"#;
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"p":"{}"}}}}"#,
        "a".repeat(1 << 20)
    );
    let deep = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"a":{}1{}}}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    struct Case<'a> {
        name: &'a str,
        headers: Vec<(&'a str, &'a str)>,
        body: Vec<u8>,
        status: u16,
        code: &'a str,
        reason: &'a str,
    }
    let c =
        |name, headers: Vec<(&'static str, &'static str)>, body: &[u8], status, code, reason| {
            Case {
                name,
                headers,
                body: body.to_vec(),
                status,
                code,
                reason,
            }
        };
    let with_sid = |mut h: Vec<(&'static str, &'static str)>| {
        h.push(("mcp-session-id", Box::leak(s.to_owned().into_boxed_str())));
        h
    };
    let cases = vec![
        c(
            "1 MB + 1",
            with_sid(vec![]),
            big.as_bytes(),
            413,
            "MCP-017",
            "too_large",
        ),
        c(
            "depth 10 000",
            with_sid(vec![]),
            deep.as_bytes(),
            400,
            "MCP-001",
            "too_deep",
        ),
        c(
            "batch",
            with_sid(vec![]),
            format!("[{ok_call}]").as_bytes(),
            400,
            "MCP-001",
            "batch",
        ),
        c(
            "duplicate keys",
            with_sid(vec![]),
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call"}"#,
            400,
            "MCP-001",
            "duplicate_key",
        ),
        c(
            "case-variant keys",
            with_sid(vec![]),
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","Name":"b"}}"#,
            400,
            "MCP-001",
            "case_variant_key",
        ),
        c(
            "invalid UTF-8",
            with_sid(vec![]),
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}",
            400,
            "MCP-001",
            "invalid_utf8",
        ),
        c(
            "text/plain body still inspected",
            with_sid(vec![("content-type", "text/plain")]),
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"id\":2}",
            400,
            "MCP-001",
            "duplicate_key",
        ),
        c(
            "odd Content-Type spelling",
            with_sid(vec![("content-type", "Application/JSON; charset=UTF-8")]),
            b"{\"jsonrpc\":",
            400,
            "MCP-001",
            "invalid_json",
        ),
        c(
            "gzip body",
            with_sid(vec![("content-encoding", "gzip")]),
            b"\x1f\x8b",
            415,
            "MCP-001",
            "content_encoding",
        ),
        c(
            "foreign Origin",
            with_sid(vec![("origin", "http://evil.example")]),
            ok_call.as_bytes(),
            403,
            "MCP-002",
            "foreign_origin",
        ),
        c(
            "null Origin",
            with_sid(vec![("origin", "null")]),
            ok_call.as_bytes(),
            403,
            "MCP-002",
            "null_origin",
        ),
        c(
            "non-loopback Host",
            with_sid(vec![("host", "evil.example:80")]),
            ok_call.as_bytes(),
            403,
            "MCP-002",
            "foreign_host",
        ),
        c(
            "unknown session",
            vec![("mcp-session-id", "0123456789abcdef0123456789abcdef")],
            ok_call.as_bytes(),
            404,
            "MCP-002",
            "unknown",
        ),
        c(
            "missing session",
            vec![],
            ok_call.as_bytes(),
            400,
            "MCP-001",
            "missing",
        ),
        c(
            "jsonrpc 1.0",
            with_sid(vec![]),
            br#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
            400,
            "MCP-001",
            "jsonrpc_version",
        ),
        c(
            "null id",
            with_sid(vec![]),
            br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            400,
            "MCP-001",
            "bad_id",
        ),
        c(
            "modern: Mcp-Name differs from the body",
            vec![
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "get_quote"),
            ],
            br#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"place_order"}}"#,
            400,
            "MCP-001",
            "header_mismatch",
        ),
        c(
            "modern: Mcp-Method missing",
            vec![("mcp-protocol-version", "2026-07-28")],
            br#"{"jsonrpc":"2.0","id":9,"method":"tools/list"}"#,
            400,
            "MCP-001",
            "header_missing",
        ),
        c(
            "token in query",
            with_sid(vec![]),
            ok_call.as_bytes(),
            400,
            "MCP-002",
            "credential_in_query",
        ),
    ];
    for case in &cases {
        let mut headers: Vec<(&str, &str)> = case.headers.clone();
        if !headers.iter().any(|(k, _)| *k == "content-type") {
            headers.push(("content-type", "application/json"));
        }
        let url = if case.name == "token in query" {
            format!("{u}?access_token=abc")
        } else {
            u.clone()
        };
        let r = send(Method::POST, &url, &headers, case.body.clone()).await;
        assert_eq!(
            r.status.as_u16(),
            case.status,
            "{}: {:?}",
            case.name,
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.code(), case.code, "{}", case.name);
        if case.reason.starts_with("header_") {
            assert_eq!(r.json()["error"]["code"], -32020, "{}", case.name);
        }
        assert!(
            r.json()["error"]["data"]["request_id"]
                .as_str()
                .is_some_and(|s| s.len() == 36),
            "{}",
            case.name
        );
    }
    // Duplicate Origin headers.
    let r = send(
        Method::POST,
        &u,
        &[
            ("content-type", "application/json"),
            ("mcp-session-id", s),
            ("origin", "http://localhost"),
            ("origin", "http://evil"),
        ],
        ok_call,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Another route's session: replaying it on /mcp/other is refused.
    let r = post(&gw.url("/mcp/other"), &[("mcp-session-id", s)], ok_call).await;
    assert_eq!((r.status.as_u16(), r.code().as_str()), (404, "MCP-002"));
    assert_eq!(
        up.count(),
        before,
        "no rejected request reached the upstream"
    );
    // A deleted session answers 404 afterwards.
    let r = send(Method::DELETE, &u, &[("mcp-session-id", s)], "").await;
    assert!(r.status.is_client_error() || r.status.is_success());
    let after_delete = up.count();
    let r = post(&u, &[("mcp-session-id", s)], ok_call).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(up.count(), after_delete);
    gw.stop();
    let rows = gw.audit_rows();
    let denies: Vec<_> = rows
        .iter()
        .filter(|r| r.1 == "deny")
        .map(|r| r.3.clone())
        .collect();
    for case in &cases {
        assert!(
            denies.contains(&case.reason.to_owned()),
            "audit has a deny record for {} ({})",
            case.name,
            case.reason
        );
    }
    assert!(
        denies.contains(&"other_route".to_owned())
            && denies.contains(&"duplicate_origin".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lying_content_length_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (up, addr) = Scripted::start().await;
    let gw = Gateway::start("lying", &scripted_config(addr));
    let sid = init(&gw, "/mcp/s").await;
    let before = up.count();
    // Claims 20 bytes, sends a whole call: the gateway reads 20 bytes, which are not a message.
    let body = r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"x"}}"#;
    let mut s = tokio::net::TcpStream::connect(&gw.addr).await.unwrap();
    let req = format!("POST /mcp/s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nMcp-Session-Id: {sid}\r\nContent-Length: 20\r\n\r\n{body}");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    // Claims more than the limit: refused before reading.
    let r = post(
        &gw.url("/mcp/s"),
        &[("mcp-session-id", &sid), ("content-length", "2000000")],
        "{}",
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(up.count(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn exactly_one_response_per_request_whatever_the_upstream_does() {
    let (_up, addr) = Scripted::start().await;
    let mut gw = Gateway::start("onereply", &scripted_config(addr));
    let sid = init(&gw, "/mcp/s").await;
    let call = |tool: &str| {
        format!(r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"{tool}"}}}}"#)
    };
    let h = [("mcp-session-id", sid.as_str())];
    // Answers twice on SSE: the first response is delivered, the second never is; priming and retry kept.
    let r = post(&gw.url("/mcp/s"), &h, &call("twice")).await;
    let text = String::from_utf8_lossy(&r.body).to_string();
    assert_eq!(r.headers["content-type"], "text/event-stream");
    assert_eq!(r.headers["x-accel-buffering"], "no");
    assert!(
        text.starts_with("id: p1\ndata:\n\nretry: 1000\n\n"),
        "{text}"
    );
    assert_eq!(text.matches("\"id\":7").count(), 1, "{text}");
    assert!(text.contains("{\"n\":1}") && !text.contains("{\"n\":2}"));
    // Both result and error, as JSON and on SSE: replaced by one protocol error, HTTP 200.
    for tool in ["both", "both_sse", "wrong_id"] {
        let r = post(&gw.url("/mcp/s"), &h, &call(tool)).await;
        assert_eq!(r.status, StatusCode::OK, "{tool}");
        let text = String::from_utf8_lossy(&r.body).to_string();
        let json_text = text
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap_or(&text)
            .to_owned();
        let v: serde_json::Value = serde_json::from_str(&json_text).unwrap();
        assert_eq!(v["id"], 7, "{tool}");
        assert_eq!(v["error"]["data"]["code"], "MCP-003", "{tool}");
        assert!(v.get("result").is_none());
    }
    // The upstream stream ends without a response: the client still gets exactly one (an error).
    let r = post(&gw.url("/mcp/s"), &h, &call("die")).await;
    let text = String::from_utf8_lossy(&r.body).to_string();
    assert!(text.contains("notifications/progress"));
    assert_eq!(text.matches("MCP-003").count(), 1, "{text}");
    // Upstream 4xx bodies pass through intact (dual-era clients read them to fall back).
    let r = post(&gw.url("/mcp/s"), &h, &call("http400")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body,
        r#"{"error":{"code":-32000,"message":"Bad Request: Server not initialized"},"id":null,"jsonrpc":"2.0"}"#
    );
    gw.stop();
    let reasons: Vec<_> = gw.audit_rows().into_iter().map(|r| r.3).collect();
    assert!(reasons.contains(&"protocol_error".to_owned()));
    assert!(reasons.contains(&"upstream_failed_mid_stream".to_owned()));
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_upstream_is_mcp_003_in_band() {
    let gw = Gateway::start(
        "unreachable",
        "[[upstream]]\nname = \"gone\"\nurl = \"http://127.0.0.1:9/mcp\"\n",
    );
    let r = post(&gw.url("/mcp/gone"), &[], INIT).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.code(), "MCP-003");
    assert_eq!(r.json()["id"], 1);
    let r = send(Method::GET, &gw.url("/readyz"), &[], "").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[test]
fn config_check_reports_every_error_and_refuses_open_listeners() {
    let dir = tmpdir("check");
    let f = dir.join("bad.toml");
    std::fs::write(
        &f,
        "listen = \"0.0.0.0:8700\"\nlisen = 1\n[[upstream]]\nname = \"x\"\nurll = \"y\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["config", "check"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("lisen: unknown key") && err.contains("upstream[0].urll: unknown key"),
        "{err}"
    );
    std::fs::write(
        &f,
        "listen = \"0.0.0.0:8700\"\n[[upstream]]\nname = \"x\"\nurl = \"http://h/\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loopback address"));
    let schema = std::process::Command::new(BIN)
        .args(["config", "schema"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&schema.stdout).unwrap();
    assert_eq!(v["additionalProperties"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn default_serve_mounts_the_demo_and_sessions_stay_capped() {
    let dir = tmpdir("default");
    let (_p, addr) = spawn_listening(
        std::process::Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .current_dir(&dir)
            .env("RUST_LOG", "warn"),
    );
    let url = format!("http://{addr}/mcp/demo");
    let sid = post(&url, &[], INIT).await.session().unwrap();
    let r = post(&url, &[("mcp-session-id", &sid)], r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"get_quote","arguments":{"symbol":"BTC/USD"}}}"#).await;
    assert_eq!(r.json()["result"]["structuredContent"]["symbol"], "BTC/USD");
    // Two refusals: a broken body (no method known) and a call without its session.
    let bad = post(&url, &[("mcp-session-id", &sid)], "{").await;
    assert_eq!(bad.status, 400);
    let bad = post(
        &url,
        &[],
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#,
    )
    .await;
    assert_eq!(bad.status, 400);
    let m = send(Method::GET, &format!("http://{addr}/metrics"), &[], "").await;
    let text = String::from_utf8_lossy(&m.body);
    // Each (method, decision, status) has its own series, counted once per request.
    for series in [
        r#"{upstream="demo",method="initialize",decision="allow",status="200"} 1"#,
        r#"{upstream="demo",method="tools/call",decision="allow",status="200"} 1"#,
        r#"{upstream="demo",method="other",decision="deny",status="400"} 1"#,
        r#"{upstream="demo",method="tools/list",decision="deny",status="400"} 1"#,
    ] {
        assert!(
            text.contains(&format!("palisade_requests_total{series}")),
            "{series}\n{text}"
        );
    }
    assert!(text.contains("palisade_audit_queue_depth"));
    assert!(dir.join("palisade-data/audit.db").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn many_initialize_calls_without_delete_keep_sessions_capped() {
    let (_demo, demo_addr) = spawn_listening(std::process::Command::new(BIN).args([
        "demo-upstream",
        "--listen",
        "127.0.0.1:0",
    ]));
    let gw = Gateway::start(
        "cap",
        &format!(
            "[sessions]\nmax = 50\n[[upstream]]\nname = \"demo\"\nurl = \"http://{demo_addr}\"\n"
        ),
    );
    for _ in 0..400 {
        let r = post(&gw.url("/mcp/demo"), &[], INIT).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let m = send(Method::GET, &gw.url("/metrics"), &[], "").await;
    let text = String::from_utf8_lossy(&m.body).to_string();
    let live: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("palisade_sessions "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(live <= 50.0, "{live} live sessions");
}
