//! Authorization and input validation through the running gateway: seed 000's trading agents
//! (orders only for `position_manager`, and only signed), a `readonly` role that lists but does
//! not call, hidden tools that answer as unknown ones, and every input check refusing before
//! the upstream sees anything. Proxied routes use the scripted upstream (it counts what reaches
//! it); the hub uses the bundled demo.

mod support;

use std::process::Command;

use palisade::config::Canonical;
use palisade::controls::authn::{generate_token, sign, SignFields};
use serde_json::{json, Value};
use support::hub::*;
use support::*;

const PM_HMAC: &str = "position-manager-signing-key-0123456789";

struct Tokens {
    signal: String,
    pm: String,
    viewer: String,
    nobody: String,
}

fn config(scripted: &str) -> (String, Tokens) {
    let (signal, hs) = generate_token();
    let (pm, hp) = generate_token();
    let (viewer, hv) = generate_token();
    let (nobody, hn) = generate_token();
    let cfg = format!(
        r#"
[auth]
methods = ["bearer+hmac", "bearer"]
[[auth.bearer]]
id = "signal"
sha256 = "{hs}"
roles = ["signal_agent"]
[[auth.bearer]]
id = "pm"
sha256 = "{hp}"
roles = ["position_manager"]
[[auth.bearer]]
id = "viewer"
sha256 = "{hv}"
roles = ["readonly"]
[[auth.bearer]]
id = "nobody"
sha256 = "{hn}"
[[auth.hmac.clients]]
id = "pm"
key_id = "pm"
secret = "{PM_HMAC}"
canonical = "v2"

[authz]
default_role = "readonly"
[authz.roles.readonly]
permissions = ["mcp:tools:list", "mcp:prompts:list", "mcp:resources:list"]
[authz.roles.agent]
permissions = ["mcp:tools", "mcp:prompts", "mcp:resources"]
[authz.roles.signal_agent]
inherits = ["agent"]
[authz.roles.position_manager]
inherits = ["agent"]

[[upstream]]
name = "demo"
builtin = "demo"
[[upstream.tools]]
name = "place_order"
roles = ["position_manager"]
sensitive = true

[[upstream]]
name = "scripted"
url = "http://{scripted}/mcp"
hub = false
[[upstream.tools]]
name = "place_order"
roles = ["position_manager"]
"#
    );
    (
        cfg,
        Tokens {
            signal,
            pm,
            viewer,
            nobody,
        },
    )
}

/// The last audit row's (decision, control, reason).
fn last_audit(gw: &Gateway, method: &str) -> (String, String, String) {
    let rows = gw.audit_rows();
    let r = rows
        .iter()
        .rev()
        .find(|r| r.0.as_deref() == Some(method))
        .unwrap_or_else(|| panic!("no {method} row in {rows:?}"));
    (r.1.clone(), r.2.clone(), r.3.clone())
}

fn error_of(v: &Value) -> (i64, String) {
    (
        v["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("no error in {v}")),
        v["error"]["data"]["code"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn signal_agent_neither_sees_nor_places_orders_and_the_upstream_hears_nothing() {
    let (up, addr) = Scripted::start().await;
    let (cfg, t) = config(&addr.to_string());
    let mut gw = Gateway::start("authz-signal", &cfg);
    for path in ["/mcp/scripted", "/mcp/demo"] {
        let mut c = Client::connect(gw.url(path), Some(&t.signal)).await;
        let names = c.tool_names().await;
        assert!(names.iter().any(|n| n == "echo"), "{names:?}");
        assert!(
            !names.iter().any(|n| n == "place_order"),
            "{path}: {names:?}"
        );
        let before = up.count();
        let hidden = c
            .request(
                "tools/call",
                json!({"name": "place_order", "arguments": {}}),
            )
            .await;
        let unknown = c
            .request(
                "tools/call",
                json!({"name": "no_such_tool", "arguments": {}}),
            )
            .await;
        // A hidden tool answers exactly as one that does not exist.
        assert_eq!(error_of(&hidden), (-32602, "MCP-007".into()), "{hidden}");
        assert_eq!(hidden["error"]["message"], unknown["error"]["message"]);
        assert_eq!(error_of(&unknown), (-32602, "MCP-007".into()));
        // Sent as a notification (no id), it is no less a call: refused the same way.
        let r = c
            .raw(r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"place_order","arguments":{}}}"#)
            .await;
        assert_eq!(r.status, 400, "{path}: {:?}", r.body);
        assert_eq!(r.code(), "MCP-007");
        assert_eq!(
            up.count(),
            before,
            "{path}: the upstream saw none of the calls"
        );
    }
    // Through the hub too: the merged list leaves it out, a call is refused the same way.
    let mut hub = Client::connect(gw.url("/mcp"), Some(&t.signal)).await;
    let names = hub.tool_names().await;
    assert!(names.iter().any(|n| n == "demo__echo"), "{names:?}");
    assert!(
        !names.iter().any(|n| n.contains("place_order")),
        "{names:?}"
    );
    let r = hub
        .request(
            "tools/call",
            json!({"name": "demo__place_order", "arguments": {}}),
        )
        .await;
    assert_eq!(error_of(&r), (-32602, "MCP-007".into()));
    gw.stop();
    let rows = gw.audit_rows();
    let hidden: Vec<_> = rows.iter().filter(|r| r.3 == "hidden_tool_role").collect();
    assert_eq!(hidden.len(), 5, "{rows:?}");
    assert!(hidden.iter().all(|r| r.1 == "deny" && r.2 == "authz"));
}

#[tokio::test(flavor = "multi_thread")]
async fn position_manager_places_orders_only_with_a_signature() {
    let (_up, addr) = Scripted::start().await;
    let (cfg, t) = config(&addr.to_string());
    let mut gw = Gateway::start("authz-pm", &cfg);
    let mut c = Client::connect(gw.url("/mcp/demo"), Some(&t.pm)).await;
    assert!(c.tool_names().await.iter().any(|n| n == "place_order"));
    let order = json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"place_order",
        "arguments":{"symbol":"EURUSD","side":"buy","quantity":1}}})
    .to_string();
    let r = c.raw(&order).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(r.code(), "MCP-002");
    // Signed by the same principal: placed.
    let ts = unix_now().to_string();
    let sig = sign(
        PM_HMAC.as_bytes(),
        Canonical::V2,
        &SignFields {
            method: "POST",
            path: "/mcp/demo",
            timestamp: &ts,
            nonce: "order-nonce-1",
            idempotency_key: "order-1",
            api_version: "1.0.0",
            key_id: "pm",
            ..Default::default()
        },
        order.as_bytes(),
    );
    let auth = format!("Bearer {}", t.pm);
    let r = post(
        &gw.url("/mcp/demo"),
        &[
            ("authorization", &auth),
            ("mcp-session-id", &c.sid),
            ("mcp-protocol-version", "2025-11-25"),
            ("x-signature", &sig),
            ("x-timestamp", &ts),
            ("x-nonce", "order-nonce-1"),
            ("idempotency-key", "order-1"),
            ("x-api-version", "1.0.0"),
            ("x-key-id", "pm"),
        ],
        &order,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let v = last_message(&r);
    assert!(v["result"].is_object(), "{v}");
    gw.stop();
    let rows = gw.audit_rows();
    assert!(rows
        .iter()
        .any(|r| r.2 == "authz" && r.3 == "needs_signature" && r.1 == "deny"));
}

#[tokio::test(flavor = "multi_thread")]
async fn readonly_lists_but_calls_nothing() {
    let (up, addr) = Scripted::start().await;
    let (cfg, t) = config(&addr.to_string());
    let mut gw = Gateway::start("authz-readonly", &cfg);
    for token in [&t.viewer, &t.nobody] {
        let mut c = Client::connect(gw.url("/mcp/scripted"), Some(token)).await;
        let names = c.tool_names().await;
        assert!(names.iter().any(|n| n == "echo"), "{names:?}");
        assert!(!names.iter().any(|n| n == "place_order"), "{names:?}");
        let before = up.count();
        let r = c
            .raw(r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}"#)
            .await;
        assert_eq!(r.status, 403, "{:?}", r.body);
        assert_eq!(r.code(), "MCP-002");
        assert_eq!(up.count(), before);
    }
    gw.stop();
    assert_eq!(
        last_audit(&gw, "tools/call"),
        ("deny".into(), "authz".into(), "no_permission".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn input_checks_refuse_before_the_upstream() {
    let (up, addr) = Scripted::start().await;
    let (cfg, t) = config(&addr.to_string());
    let mut gw = Gateway::start("authz-validate", &cfg);
    let mut c = Client::connect(gw.url("/mcp/scripted"), Some(&t.signal)).await;
    // A valid call passes (and primes the gateway's view of the tools).
    let ok = c
        .request(
            "tools/call",
            json!({"name":"echo","arguments":{"text":"hi"}}),
        )
        .await;
    assert_eq!(ok["result"]["ok"], true, "{ok}");
    let before = up.count();
    let long = "a".repeat(101);
    let cases: Vec<(String, &str, &str)> = vec![
        // Arguments against the tool's inputSchema, with the failing path.
        (
            r#"{"name":"echo","arguments":{"text":5}}"#.into(),
            "MCP-001",
            "schema_violation",
        ),
        (
            r#"{"name":"echo","arguments":{}}"#.into(),
            "MCP-001",
            "schema_violation",
        ),
        (
            r#"{"name":"echo","arguments":[1]}"#.into(),
            "MCP-001",
            "arguments_not_object",
        ),
        // Prototype pollution, plain, escaped and nested.
        (
            r#"{"name":"echo","arguments":{"text":"a","__proto__":{"admin":true}}}"#.into(),
            "MCP-001",
            "prototype_key",
        ),
        (
            r#"{"name":"echo","arguments":{"text":"a","\u005f_proto__":{}}}"#.into(),
            "MCP-001",
            "prototype_key",
        ),
        (
            r#"{"name":"echo","arguments":{"text":"a","o":[{"constructor":{"prototype":{}}}]}}"#
                .into(),
            "MCP-001",
            "prototype_key",
        ),
        // Tool names: length and characters.
        (
            format!(r#"{{"name":"{long}","arguments":{{}}}}"#),
            "MCP-001",
            "bad_tool_name",
        ),
        (
            r#"{"name":"echo<script>","arguments":{}}"#.into(),
            "MCP-001",
            "bad_tool_name",
        ),
        (
            r#"{"name":"ec ho","arguments":{}}"#.into(),
            "MCP-001",
            "bad_tool_name",
        ),
        // A tool the upstream does not list, and one whose schema does not compile.
        (
            r#"{"name":"ghost","arguments":{}}"#.into(),
            "MCP-007",
            "unknown_tool",
        ),
        (
            r#"{"name":"broken","arguments":{}}"#.into(),
            "MCP-001",
            "schema_uncompilable",
        ),
    ];
    for (params, code, reason) in &cases {
        let body = format!(r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{params}}}"#);
        let r = c.raw(&body).await;
        assert_eq!(r.status, 200, "{params}: {:?}", r.body);
        let v = r.json();
        assert_eq!(v["id"], 3);
        assert_eq!(error_of(&v), (-32602, code.to_string()), "{params}: {v}");
        if *reason == "schema_violation" {
            let want = if params.contains("\"text\":5") {
                "/text"
            } else {
                ""
            };
            assert_eq!(v["error"]["data"]["path"], want, "{v}");
        }
    }
    assert_eq!(up.count(), before, "no refused call reached the upstream");
    // Pollution is refused on any method, not only calls.
    let r = c
        .raw(r#"{"jsonrpc":"2.0","id":4,"method":"tools/list","params":{"cursor":"x","prototype":1}}"#)
        .await;
    assert_eq!(r.json()["error"]["data"]["code"], "MCP-001");
    gw.stop();
    let rows = gw.audit_rows();
    for (params, _, reason) in &cases {
        assert!(
            rows.iter()
                .any(|r| r.3 == *reason && r.1 == "deny" && r.2 == "validate"),
            "{params}: no {reason} row in {rows:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hub_validates_arguments_against_each_upstreams_schema() {
    let (_up, addr) = Scripted::start().await;
    let (cfg, t) = config(&addr.to_string());
    let mut gw = Gateway::start("authz-hub", &cfg);
    let mut c = Client::connect(gw.url("/mcp"), Some(&t.signal)).await;
    assert_eq!(c.call("demo__echo", json!({"text": "hi"})).await, "hi");
    let r = c
        .request(
            "tools/call",
            json!({"name": "demo__get_quote", "arguments": {"symbol": ["EURUSD"]}}),
        )
        .await;
    assert_eq!(error_of(&r), (-32602, "MCP-001".into()), "{r}");
    assert_eq!(r["error"]["data"]["path"], "/symbol");
    gw.stop();
    assert_eq!(
        last_audit(&gw, "tools/call"),
        ("deny".into(), "validate".into(), "schema_violation".into())
    );
}

#[test]
fn authentication_without_authz_is_a_config_error() {
    let dir = tmpdir("authz-missing");
    let path = dir.join("p.toml");
    std::fs::write(
        &path,
        "[auth]\nmethods = [\"bearer\"]\n[[auth.bearer]]\nid = \"a\"\nsha256 = \"00000000000000000000000000000000000000000000000000000000000000aa\"\n\
         [authz]\ndefault_role = \"nope\"\n[authz.roles.r]\npermissions = [\"mcp::call\"]\ninherits = [\"ghost\"]\n\
         [[upstream]]\nname = \"d\"\nbuiltin = \"demo\"\n[[upstream.tools]]\nname = \"t\"\ntimeout_secs = 900\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for want in [
        "authz.default_role",
        "authz.roles.r.permissions[0]",
        "authz.roles.r.inherits[0]",
        "upstream[0].tools[0].timeout_secs",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    // And no [authz] at all, with authentication on: refused, saying why.
    std::fs::write(
        &path,
        "[auth]\nmethods = [\"bearer\"]\n[[auth.bearer]]\nid = \"a\"\nsha256 = \"00000000000000000000000000000000000000000000000000000000000000aa\"\n\
         [[upstream]]\nname = \"d\"\nbuiltin = \"demo\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("no [authz]"), "{text}");
}
