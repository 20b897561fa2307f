//! `examples/trading.toml`: seed 001's input rules through the running gateway, one violation
//! per rule, each refused before the demo upstream with its code and the argument's path.

mod support;

use serde_json::{json, Value};
use support::hub::*;
use support::*;

fn example() -> String {
    let text = std::fs::read_to_string(format!(
        "{}/examples/trading.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    // `Gateway::start` sets the data dir and listen address itself.
    text.lines()
        .filter(|l| !l.starts_with("listen"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// An RFC 3339 UTC date-time `days` from now.
fn days_from_now(days: i64) -> String {
    let t = unix_now() as i64 + days * 86_400;
    let (z, secs) = (t.div_euclid(86_400) + 719_468, t.rem_euclid(86_400));
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

async fn call(c: &mut Client, tool: &str, args: Value) -> Value {
    c.request("tools/call", json!({"name": tool, "arguments": args}))
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_001_rules_one_by_one() {
    let mut gw = Gateway::start("finance", &example());
    let mut c = Client::connect(gw.url("/mcp/trading"), None).await;
    let order = |extra: Value| {
        let mut a = json!({"symbol": "EURUSD", "side": "buy", "quantity": 1});
        a.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        a
    };
    let history = |extra: Value| {
        let mut a = json!({"symbol": "SPY", "interval": "1h", "since": days_from_now(-1)});
        a.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        a
    };
    // Within every rule: accepted (the demo answers).
    for (tool, args) in [
        (
            "place_order",
            order(json!({"quantity": 0.12345678, "price": 1.123456})),
        ),
        ("place_order", order(json!({"quantity": 1e12}))),
        ("get_history", history(json!({"interval": "1H"}))),
        (
            "get_history",
            history(json!({"since": days_from_now(-729)})),
        ),
        ("get_quote", json!({"symbol": "BTC/USD"})),
        ("echo", json!({"text": "x".repeat(280)})),
    ] {
        let r = call(&mut c, tool, args.clone()).await;
        assert!(r["result"]["content"].is_array(), "{tool} {args}: {r}");
    }
    let cases = [
        (
            "place_order",
            order(json!({"quantity": 0.123456789})),
            "MCP-001",
            "/quantity",
        ),
        (
            "place_order",
            order(json!({"quantity": 1.5e-9})),
            "MCP-001",
            "/quantity",
        ),
        (
            "place_order",
            order(json!({"price": 1.1234567})),
            "MCP-001",
            "/price",
        ),
        (
            "place_order",
            order(json!({"quantity": 1000000000001u64})),
            "MCP-001",
            "/quantity",
        ),
        (
            "place_order",
            order(json!({"price": 1e10})),
            "MCP-001",
            "/price",
        ),
        (
            "place_order",
            order(json!({"symbol": "XYZ"})),
            "MCP-015",
            "/symbol",
        ),
        (
            "place_order",
            order(json!({"symbol": "AB"})),
            "MCP-015",
            "/symbol",
        ),
        ("get_quote", json!({"symbol": "GME"}), "MCP-015", "/symbol"),
        (
            "get_history",
            history(json!({"interval": "2h"})),
            "MCP-001",
            "/interval",
        ),
        (
            "get_history",
            history(json!({"since": days_from_now(-731)})),
            "MCP-001",
            "/since",
        ),
        (
            "get_history",
            history(json!({"since": days_from_now(2)})),
            "MCP-001",
            "/since",
        ),
        (
            "get_history",
            history(json!({"since": "2026-01-01T00:00:00"})),
            "MCP-001",
            "/since",
        ),
        ("echo", json!({"text": "x".repeat(281)}), "MCP-001", "/text"),
    ];
    for (tool, args, code, path) in &cases {
        let r = call(&mut c, tool, args.clone()).await;
        assert_eq!(r["error"]["code"], -32602, "{tool} {args}: {r}");
        assert_eq!(r["error"]["data"]["code"], *code, "{tool} {args}: {r}");
        assert_eq!(r["error"]["data"]["path"], *path, "{tool} {args}: {r}");
    }
    gw.stop();
    let rows = gw.audit_rows();
    let refused: Vec<&str> = rows
        .iter()
        .filter(|r| r.1 == "deny" && r.2 == "validate")
        .map(|r| r.3.as_str())
        .collect();
    assert_eq!(refused.len(), cases.len(), "{rows:?}");
    for reason in [
        "arg_precision",
        "arg_range",
        "symbol_not_allowed",
        "symbol_format",
        "arg_enum",
        "arg_date_window",
        "arg_not_datetime",
        "arg_length",
    ] {
        assert!(refused.contains(&reason), "{reason}: {refused:?}");
    }
}

/// Content patterns are off unless configured, per argument: markup in a field meant for
/// plain text is refused where the operator asked for it, and passes elsewhere.
#[tokio::test(flavor = "multi_thread")]
async fn content_patterns_refuse_markup_only_where_configured() {
    let (up, addr) = Scripted::start().await;
    let cfg = format!(
        "[[upstream]]\nname = \"s\"\nurl = \"http://{addr}/mcp\"\nhub = false\n\
         [[upstream.tools]]\nname = \"place_order\"\n\
         [upstream.tools.args.note]\ndeny_patterns = [\"<[a-zA-Z/!]\", \"(?i)javascript:\"]\n"
    );
    let mut gw = Gateway::start("finance-content", &cfg);
    let mut c = Client::connect(gw.url("/mcp/s"), None).await;
    let before = up.count();
    for note in [
        "<script>alert(1)</script>",
        "see <img src=x onerror=alert(1)>",
        "JavaScript:alert(1)",
    ] {
        let r = call(
            &mut c,
            "place_order",
            json!({"symbol": "AAPL", "note": note}),
        )
        .await;
        assert_eq!(r["error"]["data"]["code"], "MCP-001", "{note}: {r}");
        assert_eq!(r["error"]["data"]["path"], "/note", "{r}");
    }
    assert_eq!(up.count(), before, "a refused call reached the upstream");
    // Ordinary text with comparison signs, and the same markup in an unconfigured argument
    // or tool, pass.
    let r = call(
        &mut c,
        "place_order",
        json!({"symbol": "AAPL", "note": "buy if price < 10 & > 5"}),
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
    let r = call(
        &mut c,
        "place_order",
        json!({"symbol": "AAPL", "memo": "<b>bold</b>"}),
    )
    .await;
    assert!(r.get("error").is_none(), "{r}");
    let r = call(&mut c, "cancel_order", json!({"note": "<b>bold</b>"})).await;
    assert!(r.get("error").is_none(), "{r}");
    gw.stop();
    let rows: Vec<_> = gw
        .audit_rows()
        .into_iter()
        .filter(|r| r.3 == "arg_content_pattern")
        .collect();
    assert_eq!(rows.len(), 3, "{rows:#?}");
    assert!(rows.iter().all(|r| r.1 == "deny" && r.2 == "validate"));
}
