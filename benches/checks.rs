//! Authorization and input validation cost per `tools/call`: `cargo bench --bench checks`.
//!
//! Runs, on one thread, what the pipeline does once a call's tool definition is known, in the
//! same order (`hub::prepare`): the role check of the method and tool, the tool-pin verdict,
//! the policies (none, or seed 003's `tool_access.rego`), the arguments against the tool's
//! `inputSchema`, and `examples/trading.toml`'s finance rules. The tool definitions are the
//! demo upstream's own (`tools/list` from a running demo). The loop is CPU-bound on one thread,
//! so wall time per call is CPU time per call. Medians of `BENCH_RUNS` (default 5) runs of
//! `BENCH_CALLS` (default 200 000) calls.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use palisade::audit::{load_or_create_key, AuditWriter};
use palisade::controls::authn::Authenticator;
use palisade::controls::authz::{Access, Authz, Facts, Item};
use palisade::controls::pinning::Pins;
use palisade::controls::validate::{find_tool, Rules, Schemas};
use serde_json::Value;

const ROLES: &str = r#"
[auth]
methods = ["bearer"]
[[auth.bearer]]
id = "bench"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
[authz]
[authz.roles.user]
permissions = ["mcp:tools:call", "mcp:tools:list", "tool:execute"]
"#;

fn env(name: &str) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(match name {
            "BENCH_RUNS" => 5,
            _ => 200_000,
        })
}

async fn demo_tools() -> Vec<Value> {
    let addr = palisade::demo::spawn(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let client: Client<_, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let post = |body: &'static [u8], sid: Option<String>| {
        let mut r = http::Request::post(format!("http://{addr}/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25");
        if let Some(s) = sid {
            r = r.header("mcp-session-id", s);
        }
        client.request(r.body(Full::new(Bytes::from_static(body))).unwrap())
    };
    let init = post(
        br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}"#,
        None,
    )
    .await
    .unwrap();
    let sid = init
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = post(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#, sid)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    v["result"]["tools"].as_array().unwrap().clone()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (runs, calls) = (env("BENCH_RUNS"), env("BENCH_CALLS"));
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = std::env::temp_dir().join(format!("palisade-bench-checks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trading = std::fs::read_to_string(format!("{root}/examples/trading.toml")).unwrap();
    let trading: String = trading
        .lines()
        .filter(|l| !l.starts_with("listen"))
        .map(|l| format!("{l}\n"))
        .collect();
    let policy = format!(
        "[[authz.policy]]\nfile = \"{root}/examples/policies/tool_access.rego\"\nactions = [\"execute\"]\n"
    );
    let tools = Arc::new(demo_tools().await);
    let def = find_tool(&tools, "place_order").unwrap();
    let args = br#"{"symbol":"EURUSD","side":"buy","quantity":1.5,"price":1.0825}"#;

    println!("per tools/call place_order on the demo's definitions, {calls} calls x {runs} runs (median):");
    let mut base = None;
    for (label, extra) in [
        ("roles + pins + schema + finance", ""),
        ("the same + Rego tool_access.rego", policy.as_str()),
    ] {
        let toml = format!(
            "data_dir = {:?}\n{ROLES}{extra}{trading}",
            dir.display().to_string()
        );
        let cfg = palisade::config::parse(&toml, "bench", &|_| None).unwrap();
        let authz = Authz::new(&cfg).unwrap();
        let schemas = Schemas::new(1);
        let rules = Rules::new(&cfg);
        let key = load_or_create_key(&dir).unwrap();
        let (audit, _writer) = AuditWriter::start(
            &cfg.audit,
            key,
            Duration::from_secs(1),
            tokio::runtime::Handle::current(),
        )
        .unwrap();
        let pins = Pins::new(cfg.pinning.clone(), vec![Arc::from("trading")], audit).unwrap();
        let who = Authenticator::test_principal_as("bench", "bearer", &["user"], &[]);
        let access = Access {
            authz: &authz,
            who: &who,
            facts: Facts {
                ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                transport: "http",
            },
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let one = || {
            access
                .check("tools/call", Some(0), Some(Item::Tool("place_order")))
                .unwrap();
            let v = pins.verdicts(0, &tools, None).unwrap();
            assert!(v.get("place_order").is_some());
            access.check_call(0, "place_order", def).unwrap();
            schemas.check(0, &tools, def, Some(args)).unwrap();
            rules.check(0, "place_order", Some(args), now).unwrap();
        };
        // Warm-up: schemas compiled, pins judged, policy engines pooled.
        for _ in 0..1000 {
            one();
        }
        let mut per = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            for _ in 0..calls {
                one();
            }
            per.push(t.elapsed().as_nanos() as f64 / calls as f64);
        }
        let m = median(per.clone());
        let spread = per
            .iter()
            .map(|x| format!("{:.2}", x / 1000.0))
            .collect::<Vec<_>>()
            .join(" ");
        match base {
            None => {
                println!("  {label:<36} {:>7.2} µs   (runs: {spread})", m / 1000.0);
                base = Some(m);
            }
            Some(b) => println!(
                "  {label:<36} {:>7.2} µs   (runs: {spread}); the Rego decision: {:.2} µs",
                m / 1000.0,
                (m - b) / 1000.0
            ),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
