//! Upstream resilience through a running gateway (in this process, on a manual clock so
//! timeouts pass without sleeping), in front of a real HTTP upstream that fails on demand:
//! failures open the circuit breaker, an open breaker answers MCP-003 without calling the
//! upstream, and after the reset timeout half-open probes close it again; an upstream's 429
//! makes the gateway back off (honouring `Retry-After`) without sending anything meanwhile.

mod support;

use std::sync::atomic::Ordering;

use palisade::clock::ManualClock;
use support::*;

const CALL: &str = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_upstream_opens_its_breaker_and_recovers_through_half_open() {
    let (up, addr) = Scripted::start().await;
    let clock = ManualClock::at(1_700_000_000_000);
    let cfg = format!(
        "[[upstream]]\nname = \"s\"\nurl = \"http://{addr}/mcp\"\nhub = false\n\
         [upstream.circuit_breaker]\nfailure_threshold = 5\nreset_timeout_ms = 30000\nhalf_open_max_calls = 2\n"
    );
    let (url, db, stop, task) = in_process("breaker", &cfg, &clock).await;
    let r = post(&url, &[], INIT).await;
    assert_eq!(r.status, 200);
    let sid = r.session().unwrap();
    let h = [
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    assert_eq!(post(&url, &h, CALL).await.status, 200);

    // The upstream fails: 5xx weighs 2, so the third failure reaches the threshold of 5.
    up.fail_status.store(502, Ordering::SeqCst);
    for _ in 0..3 {
        let r = post(&url, &h, CALL).await;
        assert_eq!(r.status, 502, "the upstream's own answer passes through");
    }
    let before = up.count();
    let r = post(&url, &h, CALL).await;
    assert_eq!(r.code(), "MCP-003");
    assert_eq!(
        up.count(),
        before,
        "an open breaker does not call the upstream"
    );

    // Recovered, but the breaker stays open until the reset timeout has passed.
    up.fail_status.store(0, Ordering::SeqCst);
    clock.advance(29_999);
    assert_eq!(post(&url, &h, CALL).await.code(), "MCP-003");
    assert_eq!(up.count(), before);
    clock.advance(1);
    // Half-open: two successful probes close it.
    for _ in 0..2 {
        assert_eq!(post(&url, &h, CALL).await.status, 200);
    }
    assert_eq!(up.count(), before + 2);
    for _ in 0..5 {
        assert_eq!(post(&url, &h, CALL).await.status, 200);
    }

    // A failed probe opens it again.
    up.fail_status.store(503, Ordering::SeqCst);
    for _ in 0..3 {
        post(&url, &h, CALL).await;
    }
    assert_eq!(post(&url, &h, CALL).await.code(), "MCP-003");
    clock.advance(30_000);
    assert_eq!(post(&url, &h, CALL).await.status, 503, "the probe");
    assert_eq!(post(&url, &h, CALL).await.code(), "MCP-003");

    let _ = stop.send(());
    task.await.unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut stmt = conn
        .prepare("SELECT reason FROM audit WHERE control = 'breaker' ORDER BY seq")
        .unwrap();
    let transitions: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        transitions,
        ["open", "half_open", "closed", "open", "half_open", "open"]
    );
    let refused: i64 = conn
        .query_row(
            "SELECT count(*) FROM audit WHERE reason = 'circuit_open' AND error_code = 'MCP-003'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(refused, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stdio_upstream_that_times_out_opens_its_breaker() {
    use support::hub::*;
    let Some(python) = peer("PALISADE_PYTHON") else {
        return;
    };
    let cfg = fixture(
        "fx",
        &python,
        "[[upstream.tools]]\nname = \"sleep\"\ntimeout_secs = 1\n\
         [upstream.circuit_breaker]\nfailure_threshold = 2\nreset_timeout_ms = 600000\n",
    );
    let mut gw = Gateway::start("breaker-stdio", &cfg);
    let mut c = Client::connect(gw.url("/mcp"), None).await;
    assert_eq!(
        c.call("fx__sleep", serde_json::json!({"seconds": 100}))
            .await,
        "error:MCP-004"
    );
    // Open: refused at once, the child is not asked.
    assert_eq!(
        c.call(
            "fx__remember",
            serde_json::json!({"key": "a", "value": "b"})
        )
        .await,
        "error:MCP-003"
    );
    // Exported for alerting (seed 004: `circuit_breaker_state == 1`).
    let m = send(http::Method::GET, &gw.url("/metrics"), &[], "").await;
    let text = String::from_utf8_lossy(&m.body).to_string();
    assert!(
        text.lines()
            .any(|l| l.starts_with("palisade_circuit_breaker_state{upstream=\"fx\"} 1")),
        "{text}"
    );
    gw.stop();
    let rows = gw.audit_rows();
    assert!(
        rows.iter().any(|r| r.2 == "breaker" && r.3 == "open"),
        "{rows:#?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.0.as_deref() == Some("tools/call") && r.5.as_deref() == Some("MCP-003")),
        "{rows:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_429_is_backed_off_without_resending() {
    let (up, addr) = Scripted::start().await;
    let clock = ManualClock::at(1_700_000_000_000);
    let cfg = format!(
        "[[upstream]]\nname = \"s\"\nurl = \"http://{addr}/mcp\"\nhub = false\n\
         [upstream.outbound]\nmax_calls_per_minute = 600\n"
    );
    let (url, db, stop, task) = in_process("backoff", &cfg, &clock).await;
    let r = post(&url, &[], INIT).await;
    let sid = r.session().unwrap();
    let h = [
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    assert_eq!(post(&url, &h, CALL).await.status, 200);

    // The upstream says 429, retry after 7 s: the client sees that answer, once.
    up.fail_status.store(429, Ordering::SeqCst);
    let r = post(&url, &h, CALL).await;
    assert_eq!(r.status, 429);
    assert_eq!(&r.body[..], b"unavailable", "the upstream's own answer");
    up.fail_status.store(0, Ordering::SeqCst);
    // Meanwhile nothing is sent: the gateway answers for it.
    let before = up.count();
    let r = post(&url, &h, CALL).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.code(), "MCP-006");
    assert_eq!(r.headers["retry-after"], "7");
    clock.advance(6_000);
    assert_eq!(post(&url, &h, CALL).await.headers["retry-after"], "1");
    assert_eq!(up.count(), before);
    clock.advance(1_000);
    assert_eq!(post(&url, &h, CALL).await.status, 200);
    assert_eq!(up.count(), before + 1);

    let _ = stop.send(());
    task.await.unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let held: i64 = conn
        .query_row(
            "SELECT count(*) FROM audit WHERE control = 'outbound' AND reason = 'upstream_backoff' AND status = 429",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(held, 2);
}
