//! Traffic-control cost per `tools/call`: `cargo bench --bench limits`.
//!
//! What the pipeline does for traffic control on every call, in its order: the client address
//! (a trusted proxy's `X-Forwarded-For`) and the IP lists, the block check, the rate limits of
//! both stages, with 10 rules (sliding windows and token buckets; keys ip, principal, tool,
//! principal+tool, global; method and tool filters) and about 100 000 tracked keys (20 000
//! principals, warmed up first; `BENCH_PRINCIPALS` changes it). Principals are drawn from the 100 000 in a fixed pseudo-random
//! order. One thread, CPU-bound: wall time per call is CPU time per call. Medians of
//! `BENCH_RUNS` (default 5) runs of `BENCH_CALLS` (default 1 000 000) calls. Also prints the
//! memory per tracked key.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use palisade::clock::{Clock, SystemClock};
use palisade::controls::abuse::{Abuse, MemoryAbuseStore};
use palisade::controls::network::Network;
use palisade::controls::ratelimit::store::BYTES_PER_KEY;
use palisade::controls::ratelimit::{MemoryLimitStore, RateLimiter, Stage, Subject};

const RULES: &str = r#"
[network]
trusted_proxies = ["10.0.0.0/8"]
blocked_ips = ["192.0.2.0/24"]
[[rate_limit]]
name = "global"
key = "global"
window_ms = 60000
max = 100000000
[[rate_limit]]
name = "per-ip"
key = "ip"
window_ms = 60000
max = 100000000
[[rate_limit]]
name = "per-user"
window_ms = 60000
max = 1000000
[[rate_limit]]
name = "per-user-burst"
algorithm = "token_bucket"
window_ms = 1000
max = 1000000
burst = 1000000
[[rate_limit]]
name = "calls"
window_ms = 60000
max = 1000000
methods = ["tools/call"]
[[rate_limit]]
name = "per-tool"
key = "tool"
window_ms = 60000
max = 100000000
[[rate_limit]]
name = "user-tool"
key = "principal+tool"
window_ms = 60000
max = 1000000
[[rate_limit]]
name = "orders"
key = "principal+tool"
window_ms = 60000
max = 1000000
tools = ["place_*"]
[[rate_limit]]
name = "lists"
window_ms = 60000
max = 1000000
methods = ["tools/list", "resources/list"]
[[rate_limit]]
name = "demo-only"
window_ms = 10000
max = 1000000
upstreams = ["demo"]
[[upstream]]
name = "demo"
builtin = "demo"
"#;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let cfg = palisade::config::parse(RULES, "bench", &|_| None).expect("bench config");
    assert_eq!(cfg.rate_limits.len(), 10);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let dir = std::env::temp_dir().join(format!("palisade-bench-limits-{}", std::process::id()));
    let key = palisade::audit::load_or_create_key(&dir).unwrap();
    let (audit, _writer) = palisade::audit::AuditWriter::start(
        &cfg.audit,
        key,
        cfg.limits.audit_wait,
        rt.handle().clone(),
    )
    .unwrap();
    let fetcher = palisade::controls::ssrf::fetch::Fetcher::new(
        cfg.ssrf.clone(),
        std::time::Duration::from_secs(1),
    );
    let network = Network::new(cfg.network.clone());
    let store = Arc::new(MemoryLimitStore::new(10_000_000));
    let limiter = RateLimiter::new(&cfg.rate_limits, store.clone());
    let abuse = Abuse::new(
        cfg.abuse.clone(),
        Arc::new(MemoryAbuseStore::new(100_000)),
        audit,
        fetcher,
    );
    let clock = SystemClock;
    // 20 000 principals, each tracked by five principal-keyed rules (per-user, per-user-burst,
    // calls, user-tool, demo-only) plus user-tool and orders for the tools it calls: about
    // 100 000 tracked keys once warm.
    let principals: Vec<String> = (0..env("BENCH_PRINCIPALS", 20_000))
        .map(|i| format!("agent-{i:06}"))
        .collect();
    let mut headers = http::HeaderMap::new();
    headers.insert("x-forwarded-for", "203.0.113.77".parse().unwrap());
    let peer: IpAddr = "10.1.2.3".parse().unwrap();

    let one = |i: usize| {
        let now = clock.now_ms();
        let ip = network.client(peer, &headers);
        network.check(ip).unwrap();
        abuse.check_ip(ip, now).unwrap();
        let by_address = Subject {
            ip,
            principal: None,
            method: None,
            upstream: None,
            tool: None,
        };
        limiter.admit(Stage::Connection, &by_address, now).unwrap();
        let s = Subject {
            ip,
            principal: Some(&principals[i]),
            method: Some("tools/call"),
            upstream: Some("demo"),
            tool: Some(if i.is_multiple_of(7) {
                "place_order"
            } else {
                "get_quote"
            }),
        };
        limiter.admit(Stage::Message, &s, now).unwrap();
    };
    // Warm up: every principal tracked.
    for i in 0..principals.len() {
        one(i);
    }
    let tracked = store.len();
    let calls = env("BENCH_CALLS", 1_000_000);
    let runs = env("BENCH_RUNS", 5);
    let mut per_call = Vec::new();
    let mut x: usize = 12345;
    for _ in 0..runs {
        let started = Instant::now();
        for _ in 0..calls {
            // xorshift: a fixed pseudo-random walk over the principals.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            one(x % principals.len());
        }
        per_call.push(started.elapsed().as_nanos() as f64 / calls as f64);
    }
    println!(
        "traffic control per call (address, lists, blocks, 10 rules): median {:.0} ns of {runs} runs {:?}",
        median(per_call.clone()),
        per_call.iter().map(|v| v.round()).collect::<Vec<_>>()
    );
    println!(
        "tracked keys: {tracked}; memory per tracked key: about {BYTES_PER_KEY} bytes ({:.1} MB for these)",
        (tracked * BYTES_PER_KEY) as f64 / 1e6
    );
    let _ = std::fs::remove_dir_all(&dir);
}
