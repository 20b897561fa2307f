//! The hub in front of 2026-07-28 upstreams: a modern-only server written from the
//! specification (`tests/peers/modern_fixture.py`, over HTTP and stdio) and the Python SDK's
//! server spoken to in the modern era, with legacy and modern clients.

mod support;

use std::process::Command;

use serde_json::{json, Value};
use support::hub::*;
use support::*;

fn modern_fixture_http(python: &str) -> (Proc, String) {
    let peers = std::env::var("PALISADE_PEERS_DIR").unwrap();
    spawn_listening(Command::new(python).args([&format!("{peers}/modern_fixture.py"), "--http"]))
}

fn modern_fixture_stdio(name: &str, python: &str) -> String {
    python_upstream(name, python, &["modern_fixture.py", "--stdio"], "")
}

/// Runs a tool that asks for input on a legacy session: the question arrives on the call's
/// stream as `elicitation/create`, is answered with `name`, and the call's result follows.
async fn answer_on_the_stream(c: &mut Client, tool: &str, name: &str) -> Value {
    let mut body = c
        .stream(
            "tools/call",
            json!({"name": tool, "arguments": {"question": "Your name?"}}),
        )
        .await;
    let text = read_until(&mut body, "elicitation/create").await;
    let ask = events(&text)
        .into_iter()
        .find(|m| m["method"] == "elicitation/create")
        .unwrap();
    assert_eq!(ask["params"]["message"], "Your name?", "{ask}");
    let reply = json!({"jsonrpc":"2.0","id":ask["id"],
                       "result":{"action":"accept","content":{"name":name}}});
    assert_eq!(c.raw(&reply.to_string()).await.status, 202);
    let rest = http_body_util::BodyExt::collect(body)
        .await
        .unwrap()
        .to_bytes();
    let all = events(&format!("{text}{}", String::from_utf8_lossy(&rest)));
    all.last().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_modern_only_upstream_serves_legacy_clients_through_the_hub() {
    let Some(python) = peer("PALISADE_PYTHON") else {
        return;
    };
    let (_up, addr) = modern_fixture_http(&python);
    let gw = Gateway::start(
        "hub-modern-only",
        &format!(
            "[[upstream]]\nname = \"modern\"\nurl = \"http://{addr}/mcp\"\n{}",
            modern_fixture_stdio("mstdio", &python)
        ),
    );
    let mut c = Client::connect_with(gw.url("/mcp"), None, INIT_ELICIT).await;

    // The hub fell back from `initialize` to 2026-07-28 for both, over HTTP and stdio.
    let names = c.tool_names().await;
    for n in [
        "modern__echo",
        "modern__order",
        "modern__ask",
        "mstdio__echo",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
    }
    assert_eq!(c.call("modern__echo", json!({"text": "hi"})).await, "hi");
    assert_eq!(c.call("mstdio__echo", json!({"text": "hey"})).await, "hey");

    // Every request carried the protocol `_meta` (the fixture refuses any without) and the
    // hub's client info, with the capabilities this client declared.
    let who: Value = serde_json::from_str(&c.call("modern__whoami", json!({})).await).unwrap();
    assert_eq!(who["clientInfo"]["name"], "palisade", "{who}");
    assert_eq!(
        who["clientCapabilities"],
        json!({"elicitation": {}}),
        "{who}"
    );

    // The mirrored headers, computed by the hub (the fixture refuses any that disagree),
    // base64-wrapped where the value is not header-safe.
    let seen: Value = serde_json::from_str(
        &c.call("modern__order", json!({"symbol": "AAPL", "qty": 3}))
            .await,
    )
    .unwrap();
    assert_eq!(
        seen,
        json!({"Mcp-Method": "tools/call", "Mcp-Name": "order", "Mcp-Param-Symbol": "AAPL",
               "MCP-Protocol-Version": "2026-07-28"})
    );
    let seen: Value =
        serde_json::from_str(&c.call("modern__order", json!({"symbol": "Zürich"})).await).unwrap();
    assert_eq!(seen["Mcp-Param-Symbol"], "=?base64?WsO8cmljaA==?=");

    // Results reach a legacy client without the modern era's members.
    let r = c
        .request(
            "tools/call",
            json!({"name": "modern__echo", "arguments": {"text": "x"}}),
        )
        .await;
    assert!(r["result"].get("resultType").is_none(), "{r}");
    let read = c
        .request("resources/read", json!({"uri": "modern://greeting"}))
        .await;
    assert_eq!(read["result"]["contents"][0]["text"], "hello from 2026");
    for k in ["resultType", "ttlMs", "cacheScope"] {
        assert!(read["result"].get(k).is_none(), "{read}");
    }
    let prompt = c
        .request(
            "prompts/get",
            json!({"name": "modern__hello", "arguments": {"who": "Bo"}}),
        )
        .await;
    assert_eq!(
        prompt["result"]["messages"][0]["content"]["text"],
        "Say hello to Bo"
    );

    // The upstream's `input_required` becomes a question on the call's stream; the hub sends
    // the retry with the answer and the upstream's own state, and the client sees one call.
    let last = answer_on_the_stream(&mut c, "modern__ask", "Ada").await;
    assert_eq!(last["result"]["content"][0]["text"], "hello Ada", "{last}");
    assert!(last["result"].get("resultType").is_none(), "{last}");

    // A client that cannot answer (no elicitation capability) gets a clean error, not a hang.
    let plain = Client::connect(gw.url("/mcp"), None).await;
    let r = plain
        .raw(r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"modern__ask","arguments":{}}}"#)
        .await;
    let v = last_message(&r);
    assert_eq!(v["error"]["data"]["code"], "MCP-003", "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn modern_clients_get_the_upstreams_questions_under_a_hub_handle() {
    let Some(python) = peer("PALISADE_PYTHON") else {
        return;
    };
    let (_up, addr) = modern_fixture_http(&python);
    let (ta, ha) = palisade::controls::authn::generate_token();
    let (tb, hb) = palisade::controls::authn::generate_token();
    let gw = Gateway::start(
        "hub-modern-mrtr",
        &format!(
            "[auth]\nmethods = [\"bearer\"]\n[[auth.bearer]]\nid = \"alice\"\nsha256 = {ha:?}\n\
             [[auth.bearer]]\nid = \"bob\"\nsha256 = {hb:?}\n\
             [[upstream]]\nname = \"modern\"\nurl = \"http://{addr}/mcp\"\n"
        ),
    );
    let url = gw.url("/mcp");
    let (alice, bob) = (format!("Bearer {ta}"), format!("Bearer {tb}"));
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}});
    let call = |id: u64, extra: Value| ask_call(id, "modern__ask", "Who?", &meta, extra);
    let r = modern(&url, call(1, json!({})), &[("authorization", &alice)]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let q = last_message(&r)["result"].clone();
    assert_eq!(q["resultType"], "input_required", "{q}");
    assert_eq!(q["inputRequests"]["name"]["method"], "elicitation/create");
    assert_eq!(q["inputRequests"]["name"]["params"]["message"], "Who?");
    // The client holds the hub's handle; the upstream's state never leaves the gateway.
    let state = q["requestState"].as_str().unwrap().to_owned();
    assert!(state.starts_with("ph1."), "{state}");
    let answer = json!({"name": {"action": "accept", "content": {"name": "Eve"}}});
    let retry = call(2, json!({"inputResponses": answer, "requestState": state}));

    // Not bob's to use (and his attempt does not spend alice's handle).
    let r = modern(&url, retry.clone(), &[("authorization", &bob)]).await;
    assert_eq!(
        (r.status.as_u16(), r.json()["error"]["code"].as_i64()),
        (400, Some(-32602))
    );
    // Nor the upstream's own state, passed off as the hub's.
    let forged = call(3, json!({"inputResponses": answer, "requestState": "st-1"}));
    let r = modern(&url, forged, &[("authorization", &alice)]).await;
    assert_eq!(r.status, 400, "{:?}", r.body);

    let r = modern(&url, retry.clone(), &[("authorization", &alice)]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let v = last_message(&r);
    assert_eq!(v["id"], 2);
    assert_eq!(v["result"]["content"][0]["text"], "hello Eve", "{v}");
    assert_eq!(v["result"]["resultType"], "complete");
    // Once only.
    let r = modern(&url, retry, &[("authorization", &alice)]).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_server_is_spoken_to_in_the_era_configured() {
    let Some(python) = peer("PALISADE_PYTHON") else {
        return;
    };
    let gw = Gateway::start(
        "hub-modern-sdk",
        &format!(
            "{}{}",
            fixture("new", &python, "protocol = \"modern\""),
            fixture("old", &python, "")
        ),
    );
    let mut c = Client::connect_with(gw.url("/mcp"), None, INIT_ELICIT).await;
    // A dual-era server: `auto` keeps the legacy handshake; `modern` speaks 2026-07-28.
    assert_eq!(c.call("old__era", json!({})).await, "2025-11-25");
    assert_eq!(c.call("new__era", json!({})).await, "2026-07-28");
    // Stateless requests still reach the same child (per principal).
    assert_eq!(
        c.call("new__remember", json!({"key": "k", "value": "v"}))
            .await,
        "ok"
    );
    assert_eq!(c.call("new__recall", json!({"key": "k"})).await, "v");
    // The SDK's own `input_required` (its Resolve API), bridged to this legacy session; the
    // same tool on the legacy upstream asks in the middle of the call.
    for tool in ["new__ask_resolved", "old__ask_resolved"] {
        let last = answer_on_the_stream(&mut c, tool, "Ann").await;
        assert_eq!(
            last["result"]["content"][0]["text"], "hello Ann",
            "{tool}: {last}"
        );
    }
    // And to a 2026-07-28 client, as `input_required` with the hub's handle.
    let url = gw.url("/mcp");
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}});
    let body = |id: u64, extra: Value| ask_call(id, "new__ask_resolved", "Name?", &meta, extra);
    let q = last_message(&modern(&url, body(1, json!({})), &[]).await)["result"].clone();
    assert_eq!(q["resultType"], "input_required", "{q}");
    let state = q["requestState"].as_str().unwrap().to_owned();
    assert!(state.starts_with("ph1."), "{state}");
    let (key, _) = q["inputRequests"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    let answers = json!({key: {"action": "accept", "content": {"name": "Zoe"}}});
    let v = last_message(
        &modern(
            &url,
            body(2, json!({"inputResponses": answers, "requestState": state})),
            &[],
        )
        .await,
    );
    assert_eq!(v["result"]["content"][0]["text"], "hello Zoe", "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_held_to_the_wrong_era_is_left_out() {
    let Some(python) = peer("PALISADE_PYTHON") else {
        return;
    };
    let (_up, addr) = modern_fixture_http(&python);
    let gw = Gateway::start(
        "hub-modern-legacy-only",
        &format!(
            "[[upstream]]\nname = \"modern\"\nurl = \"http://{addr}/mcp\"\nprotocol = \"legacy\"\n\
             [[upstream]]\nname = \"demo\"\nbuiltin = \"demo\"\n"
        ),
    );
    let mut c = Client::connect(gw.url("/mcp"), None).await;
    let tools = c.request("tools/list", json!({})).await.to_string();
    assert!(!tools.contains("modern__"), "{tools}");
    assert!(tools.contains("demo__echo"), "{tools}");
    assert_eq!(
        c.call("modern__echo", json!({"text": "x"})).await,
        "error:MCP-003"
    );
}
