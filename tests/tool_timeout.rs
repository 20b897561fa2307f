//! A tool's own `timeout_secs` (seed 003, 1-300 s) bounds its calls, on a proxied route and
//! through the hub, below the upstream's limit: the client gets MCP-004.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::hub::*;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_tool_timeout_ends_a_hanging_call_on_a_proxied_route() {
    let (_up, addr) = Scripted::start().await;
    let cfg = format!(
        "[[upstream]]\nname = \"scripted\"\nurl = \"http://{addr}/mcp\"\nhub = false\n\
         timeout_secs = 120\n[[upstream.tools]]\nname = \"hang\"\ntimeout_secs = 1\n"
    );
    let mut gw = Gateway::start("tool-timeout-proxied", &cfg);
    let c = Client::connect(gw.url("/mcp/scripted"), None).await;
    let started = Instant::now();
    let r = c
        .raw(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"hang","arguments":{}}}"#)
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the tool's limit, not the upstream's"
    );
    assert_eq!(r.code(), "MCP-004", "{:?}", r.body);
    gw.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tool_timeout_ends_a_slow_call_through_the_hub() {
    let Some(python) = peer("PALISADE_PYTHON") else {
        return;
    };
    let cfg = fixture(
        "fx",
        &python,
        "timeout_secs = 120\n[[upstream.tools]]\nname = \"sleep\"\ntimeout_secs = 1\n",
    );
    let mut gw = Gateway::start("tool-timeout-hub", &cfg);
    let mut c = Client::connect(gw.url("/mcp"), None).await;
    let started = Instant::now();
    let r = c.call("fx__sleep", json!({"seconds": 100})).await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the tool's limit, not the upstream's"
    );
    assert_eq!(r, "error:MCP-004");
    // Other tools keep the upstream's limit.
    c.call("fx__remember", json!({"key": "a", "value": "b"}))
        .await;
    assert_eq!(c.call("fx__recall", json!({"key": "a"})).await, "b");
    gw.stop();
}
