//! Output checks through the running gateway: secrets in tool results are redacted (JSON and
//! SSE answers on a proxied route, stdio results through the hub), only reported in audit mode,
//! left alone where a tool allows them; a result that breaks the tool's `outputSchema` never
//! reaches the client (MCP-009). Each finding is an audit event.

mod support;

use serde_json::{json, Value};
use support::hub::*;
use support::*;

const REDACTED: &str = "aws [REDACTED:aws_access_key]; key [REDACTED:private_key]; jwt [REDACTED:jwt]; card [REDACTED:card]; gh [REDACTED:github_token]; ts 1732300000000000000; order 12345678901234; almost 4111 1111 1111 1112";

fn config(scripted: &str, mode: &str) -> String {
    format!(
        r#"
[output]
secrets = "{mode}"

[[upstream]]
name = "scripted"
url = "http://{scripted}/mcp"
hub = false
[[upstream.tools]]
name = "leak_sse"
allow_secrets = ["jwt"]
"#
    )
}

fn call(tool: &str, args: Value) -> String {
    json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": tool, "arguments": args}})
    .to_string()
}

/// (reason, decision) of every `output` audit event, after the gateway stopped.
fn output_events(gw: &Gateway) -> Vec<(String, String)> {
    let mut v: Vec<_> = gw
        .audit_rows()
        .into_iter()
        .filter(|r| r.2 == "output")
        .map(|r| (r.3, r.1))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_in_results_are_redacted_and_audited() {
    let (_up, addr) = Scripted::start().await;
    let mut gw = Gateway::start("output-redact", &config(&addr.to_string(), "redact"));
    let c = Client::connect(gw.url("/mcp/scripted"), None).await;

    // A JSON answer.
    let r = c.raw(&call("leak", json!({}))).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["result"]["content"][0]["text"], REDACTED, "{v}");
    assert_eq!(v["result"]["structuredContent"]["card"], "[REDACTED:card]");
    assert_eq!(
        v["result"]["structuredContent"]["ts"], 1732300000000000000u64,
        "a timestamp is not a card"
    );
    assert!(!String::from_utf8_lossy(&r.body).contains("AKIAIOSFODNN7EXAMPLE"));

    // An SSE answer: the progress event passes, the result is redacted, except the JWT, which
    // this tool is allowed to return.
    let r = c.raw(&call("leak_sse", json!({}))).await;
    assert_eq!(r.status, 200);
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert!(body.contains("notifications/progress"), "{body}");
    let last = last_message(&r);
    let text = last["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("[REDACTED:aws_access_key]"), "{text}");
    assert!(
        text.contains("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9"),
        "{text}"
    );
    assert!(!body.contains("AKIAIOSFODNN7EXAMPLE"), "{body}");
    gw.stop();
    let kinds = [
        "aws_access_key",
        "card",
        "github_token",
        "jwt",
        "private_key",
    ];
    let mut expected: Vec<(String, String)> = kinds
        .iter()
        .map(|k| (format!("redacted_{k}"), "allow".to_owned()))
        .chain(
            kinds
                .iter()
                .filter(|k| **k != "jwt")
                .map(|k| (format!("redacted_{k}"), "allow".to_owned())),
        )
        .collect();
    expected.sort();
    assert_eq!(output_events(&gw), expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_mode_reports_without_changing_the_result() {
    let (_up, addr) = Scripted::start().await;
    let mut gw = Gateway::start("output-audit", &config(&addr.to_string(), "audit"));
    let c = Client::connect(gw.url("/mcp/scripted"), None).await;
    let r = c.raw(&call("leak", json!({}))).await;
    assert_eq!(r.json()["result"]["content"][0]["text"], LEAK_TEXT);
    gw.stop();
    let events = output_events(&gw);
    assert_eq!(events.len(), 5, "{events:?}");
    assert!(events
        .iter()
        .all(|(r, d)| r.starts_with("detected_") && d == "allow"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_result_breaking_the_output_schema_is_withheld() {
    let (_up, addr) = Scripted::start().await;
    let mut gw = Gateway::start("output-schema", &config(&addr.to_string(), "redact"));
    let c = Client::connect(gw.url("/mcp/scripted"), None).await;
    let r = c.raw(&call("typed", json!({"price": 12.5}))).await;
    assert_eq!(r.json()["result"]["structuredContent"]["price"], 12.5);
    let r = c.raw(&call("typed", json!({"price": "12.5"}))).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["error"]["code"], -32603, "{v}");
    assert_eq!(v["error"]["data"]["code"], "MCP-009", "{v}");
    assert!(!String::from_utf8_lossy(&r.body).contains("12.5"));
    gw.stop();
    assert_eq!(
        output_events(&gw),
        [("output_schema".to_owned(), "deny".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hub_redacts_what_a_stdio_upstream_returns() {
    let Some(python) = peer("PALISADE_PYTHON") else {
        return;
    };
    let cfg = fixture("fx", &python, "");
    let mut gw = Gateway::start("output-hub", &cfg);
    let mut c = Client::connect(gw.url("/mcp"), None).await;
    let secret = "token ghp_abcdefghijklmnopqrstuvwxyz0123456789 ok";
    c.call("fx__remember", json!({"key": "k", "value": secret}))
        .await;
    assert_eq!(
        c.call("fx__recall", json!({"key": "k"})).await,
        "token [REDACTED:github_token] ok"
    );
    gw.stop();
    assert_eq!(
        output_events(&gw),
        [("redacted_github_token".to_owned(), "allow".to_owned())]
    );
}
