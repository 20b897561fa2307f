//! Rego policies through the running gateway: seed 003's `tool_access.rego` and
//! `admin_access.rego`, shipped in `examples/policies/`, allow and deny as their text says, on
//! a proxied route (the scripted upstream counts what reaches it) and on the hub; a policy that
//! does not load stops the gateway; `palisade policy eval` decides offline.

mod support;

use std::process::Command;

use palisade::controls::authn::generate_token;
use serde_json::{json, Value};
use support::hub::*;
use support::*;

fn policy_file(name: &str) -> String {
    format!("{}/examples/policies/{name}", env!("CARGO_MANIFEST_DIR"))
}

struct Tokens {
    alice: String,
    guest: String,
    root: String,
}

fn config(scripted: &str) -> (String, Tokens) {
    let (alice, ha) = generate_token();
    let (guest, hg) = generate_token();
    let (root, hr) = generate_token();
    let cfg = format!(
        r#"
[auth]
methods = ["bearer"]
[[auth.bearer]]
id = "alice"
sha256 = "{ha}"
roles = ["user"]
[[auth.bearer]]
id = "guest"
sha256 = "{hg}"
roles = ["guest"]
[[auth.bearer]]
id = "root"
sha256 = "{hr}"
roles = ["admin"]

# The roles let everyone do everything MCP; the policies decide execution and admin.
[authz]
admin_above_level = 10
[authz.roles.guest]
permissions = ["mcp", "server"]
[authz.roles.user]
inherits = ["guest"]
permissions = ["tool:execute"]
[authz.roles.admin]
inherits = ["guest"]
[[authz.policy]]
file = "{tool}"
actions = ["execute"]
[[authz.policy]]
file = "{admin}"
actions = ["admin"]

[[upstream]]
name = "scripted"
url = "http://{scripted}/mcp"
hub = false
[[upstream.tools]]
name = "place_order"
security_level = 3

[[upstream]]
name = "demo"
builtin = "demo"
[[upstream.tools]]
name = "place_order"
security_level = 3
"#,
        tool = policy_file("tool_access.rego"),
        admin = policy_file("admin_access.rego"),
    );
    (cfg, Tokens { alice, guest, root })
}

fn rpc(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}).to_string()
}

/// The methods of the audit rows written for policy denials, in order (after the gateway
/// stopped, so every record is written).
fn policy_denials(gw: &Gateway) -> Vec<String> {
    gw.audit_rows()
        .into_iter()
        .filter(|r| r.2 == "policy")
        .map(|r| {
            assert_eq!(
                (r.1.as_str(), r.3.as_str(), r.4),
                ("deny", "policy_denied", 403)
            );
            r.0.unwrap_or_default()
        })
        .collect()
}

fn assert_policy_denied(r: &Reply) {
    assert_eq!(r.status, 403, "{:?}", r.body);
    let v = r.json();
    assert_eq!(v["error"]["code"], -32000, "{v}");
    assert_eq!(v["error"]["data"]["code"], "MCP-002", "{v}");
    let body = String::from_utf8_lossy(&r.body);
    assert!(
        !body.contains("tool_access") && !body.contains("admin_access"),
        "the client is not told which policy refused: {body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_policies_decide_calls_and_admin_on_a_proxied_route() {
    let (up, addr) = Scripted::start().await;
    let (cfg, t) = config(&addr.to_string());
    let mut gw = Gateway::start("policy-proxied", &cfg);
    let url = gw.url("/mcp/scripted");
    let alice = Client::connect(url.clone(), Some(&t.alice)).await;
    let guest = Client::connect(url.clone(), Some(&t.guest)).await;
    let root = Client::connect(url.clone(), Some(&t.root)).await;
    let echo = rpc(
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "hi"}}),
    );
    let order = rpc(
        "tools/call",
        json!({"name": "place_order", "arguments": {}}),
    );
    let set_level = rpc("logging/setLevel", json!({"level": "debug"}));

    // A user holding `tool:execute` executes; a guest (no such role) does not.
    let before = up.count();
    let r = alice.raw(&echo).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["result"]["ok"], true);
    assert_eq!(up.count(), before + 1);
    let r = guest.raw(&echo).await;
    assert_policy_denied(&r);
    assert_eq!(up.count(), before + 1, "the upstream heard nothing");

    // Security level 3: the deny rule holds for the user, not for the admin.
    let r = alice.raw(&order).await;
    assert_policy_denied(&r);
    assert_eq!(up.count(), before + 1);
    let r = root.raw(&order).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(up.count(), before + 2);

    // `logging/setLevel` is an admin action: admin_access.rego decides it.
    let r = alice.raw(&set_level).await;
    assert_policy_denied(&r);
    assert_eq!(up.count(), before + 2);
    let r = root.raw(&set_level).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(up.count(), before + 3);

    // Neither policy decides reads: the guest lists tools.
    let r = guest.raw(&rpc("tools/list", json!({}))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.json()["result"]["tools"].as_array().is_some());
    gw.stop();
    assert_eq!(
        policy_denials(&gw),
        ["tools/call", "tools/call", "logging/setLevel"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_policies_decide_calls_on_the_hub() {
    let (_up, addr) = Scripted::start().await;
    let (cfg, t) = config(&addr.to_string());
    let mut gw = Gateway::start("policy-hub", &cfg);
    let mut alice = Client::connect(gw.url("/mcp"), Some(&t.alice)).await;
    let guest = Client::connect(gw.url("/mcp"), Some(&t.guest)).await;
    assert_eq!(
        alice.call("demo__echo", json!({"text": "hub"})).await,
        "hub"
    );
    let r = guest
        .raw(&rpc(
            "tools/call",
            json!({"name": "demo__echo", "arguments": {"text": "hub"}}),
        ))
        .await;
    assert_policy_denied(&r);
    // The hub passes the tool's level: the user may not place orders, even with no arguments.
    let r = alice
        .raw(&rpc(
            "tools/call",
            json!({"name": "demo__place_order", "arguments": {}}),
        ))
        .await;
    assert_policy_denied(&r);
    gw.stop();
    assert_eq!(policy_denials(&gw), ["tools/call", "tools/call"]);
}

#[test]
fn a_policy_that_does_not_load_stops_the_gateway() {
    let dir = tmpdir("policy-broken");
    let bad = dir.join("bad.rego");
    std::fs::write(&bad, "package bad\nallow {\n  input.user ==\n").unwrap();
    let noallow = dir.join("noallow.rego");
    std::fs::write(&noallow, "package noallow\ndeny { true }\n").unwrap();
    let cfg = dir.join("p.toml");
    std::fs::write(
        &cfg,
        format!(
            "[authz]\n[[authz.policy]]\nfile = {:?}\n[[authz.policy]]\nfile = {:?}\n\
             [[authz.policy]]\nfile = \"/nonexistent/x.rego\"\n\
             [[authz.policy]]\nfile = {:?}\nactions = [\"delete\"]\n",
            bad.display().to_string(),
            noallow.display().to_string(),
            policy_file("tool_access.rego"),
        ),
    )
    .unwrap();
    for args in [vec!["config", "check"], vec!["serve", "--config"]] {
        let out = Command::new(BIN)
            .args(&args)
            .arg(&cfg)
            .args(if args[0] == "serve" {
                vec!["--listen", "127.0.0.1:0"]
            } else {
                vec![]
            })
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        for expected in [
            "authz.policy[0].file",
            "bad.rego",
            "authz.policy[1].file",
            "no usable `allow` rule in package noallow",
            "authz.policy[2].file",
            "cannot read /nonexistent/x.rego",
            "authz.policy[3].actions[0]",
        ] {
            assert!(err.contains(expected), "{args:?}: {expected:?} in {err}");
        }
    }
}

#[test]
fn policy_eval_decides_offline_as_the_gateway_would() {
    let dir = tmpdir("policy-eval");
    let cfg = dir.join("p.toml");
    std::fs::write(
        &cfg,
        format!(
            "[authz]\n[[authz.policy]]\nfile = {:?}\nactions = [\"execute\"]\n\
             [[upstream]]\nname = \"demo\"\nbuiltin = \"demo\"\n",
            policy_file("tool_access.rego")
        ),
    )
    .unwrap();
    let eval = |input: Value| {
        let f = dir.join("input.json");
        std::fs::write(&f, input.to_string()).unwrap();
        let out = Command::new(BIN)
            .args(["policy", "eval", "--input"])
            .arg(&f)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let user = json!({"roles": ["user"], "permissions": ["tool:execute"]});
    let (code, out) =
        eval(json!({"action": "execute", "user": user, "tool": {"security_level": 1}}));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("tool_access: allow") && out.ends_with("decision: allow\n"));
    let (code, out) =
        eval(json!({"action": "execute", "user": user, "tool": {"security_level": 5}}));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("tool_access: DENY") && out.ends_with("decision: deny\n"));
    let (code, out) = eval(json!({"action": "read", "user": user}));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("no policy decides this action"), "{out}");
}
