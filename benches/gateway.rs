//! Gateway cost benchmark: `cargo bench --bench gateway`.
//!
//! In one run it drives `tools/call echo` against the demo upstream three ways — directly,
//! through a bare hyper pass-through forwarder (no controls: the floor any gateway pays on this
//! machine), and through Palisade — at 1 and 32 concurrent sessions, and prints throughput,
//! p50/p99 latency, each proxy's own CPU time per call (from /proc accounting) and the ratios.
//! Every process is separate, so CPU time is attributed correctly.
//!
//! The same run measures authentication end to end, as the extra CPU per call over the
//! unauthenticated route with the same body, at a fixed rate (open loop): a JWT (RS256 and
//! EdDSA) served from the verified-token cache, the same JWTs verified on every call (a second
//! gateway whose cache is off), and HMAC v2 over a 1 KB body with a fresh nonce per call,
//! without and with an `Idempotency-Key` (whose answer the gateway then stores).
//!
//! Environment knobs: `BENCH_SECS` (measured seconds per cell, default 5), `BENCH_RUNS`
//! (default 3; medians are reported), `BENCH_ONLY` (comma-separated name prefixes of the
//! targets to run, e.g. `palisade,hmac`), `BENCH_CONCURRENCY` (default `1,32`),
//! `BENCH_AUTH_RATE` (calls/s of the authentication table, default 4000; 0 skips it),
//! `BENCH_EQUAL_RATE` (the rate of the equal-rate tables as a fraction of Palisade's closed-loop
//! throughput, default 0.7; 0 skips them), `BENCH_PALISADE_BIN`
//! (another gateway binary, for A/B comparisons). For profiling, `gateway --load URL
//! CONCURRENCY SECS [PID]` drives one running target alone (e.g. while `perf record -p PID`
//! watches it) and prints the same figures.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use palisade::config::Canonical;
use palisade::controls::authn::{sign, SignFields};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"0"}}}"#;
const CALL: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello from the benchmark"}}}"#;
const CALL_HUB: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"demo__echo","arguments":{"text":"hello from the benchmark"}}}"#;

const HMAC_SECRET: &str = "bench-hmac-secret-0123456789abcdef0123";

/// How a request authenticates.
#[derive(Clone)]
enum Auth {
    None,
    /// `Authorization: Bearer` with this token.
    Bearer(Arc<str>),
    /// HMAC v2 signature over each request, fresh nonce; with an `Idempotency-Key` or not.
    Hmac {
        path: &'static str,
        idempotency: bool,
    },
}

static NONCE: AtomicU64 = AtomicU64::new(0);

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn jwt(kid: &str, pem: &str, alg: Algorithm) -> Arc<str> {
    let pem = std::fs::read(fixture(pem)).unwrap();
    let key = match alg {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .unwrap();
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    let claims = serde_json::json!({
        "iss": "https://idp.bench", "aud": "https://gw.bench/mcp/jwt", "sub": "agent",
        "exp": unix_now() + 3600, "roles": ["trader"], "scope": "mcp:tools",
    });
    Arc::from(encode(&h, &claims, &key).unwrap())
}

/// A call whose `echo` text makes the whole body 1 KB.
fn call_1k() -> &'static str {
    let head = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":""#;
    let tail = r#""}}}"#;
    let pad = "x".repeat(1024 - head.len() - tail.len());
    Box::leak(format!("{head}{pad}{tail}").into_boxed_str())
}

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &mut Command) -> (Proc, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().unwrap().unwrap();
    std::thread::spawn(move || for _ in lines {});
    (
        Proc(child),
        line.trim_start_matches("listening on http://").to_owned(),
    )
}

/// utime + stime of a process, in microseconds.
fn cpu_us(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    let hz = 100; // USER_HZ on Linux
    ticks * 1_000_000 / hz
}

// ---- the bare forwarder (run as a child: `gateway --forwarder UPSTREAM_URL`) ----

async fn forward(
    client: HttpClient,
    upstream: Arc<http::Uri>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let mut out = Request::builder()
        .method(parts.method)
        .uri(upstream.as_ref().clone());
    for (k, v) in &parts.headers {
        if k != "host" && k != "connection" {
            out = out.header(k, v);
        }
    }
    let resp = match client.request(out.body(Full::new(body)).unwrap()).await {
        Ok(r) => r,
        Err(_) => {
            return Response::builder()
                .status(502)
                .body(Full::new(Bytes::new()))
                .unwrap()
        }
    };
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let mut r = Response::builder().status(parts.status);
    for (k, v) in &parts.headers {
        if k != "connection" && k != "transfer-encoding" {
            r = r.header(k, v);
        }
    }
    r.body(Full::new(body)).unwrap()
}

fn run_forwarder(upstream: String) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("listening on http://{}", listener.local_addr().unwrap());
        let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
        let upstream = Arc::new(upstream.parse::<http::Uri>().unwrap());
        loop {
            let (s, _) = listener.accept().await.unwrap();
            let _ = s.set_nodelay(true);
            let (client, upstream) = (client.clone(), upstream.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let (client, upstream) = (client.clone(), upstream.clone());
                    async move {
                        Ok::<_, std::convert::Infallible>(forward(client, upstream, req).await)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
}

// ---- the load generator ----

async fn post(
    client: &HttpClient,
    url: &str,
    session: Option<&str>,
    body: &'static str,
    auth: &Auth,
) -> (u16, Option<String>) {
    let mut b = Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    match auth {
        Auth::None => {}
        Auth::Bearer(t) => b = b.header("authorization", format!("Bearer {t}")),
        Auth::Hmac { path, idempotency } => {
            let nonce = format!("n{}", NONCE.fetch_add(1, Ordering::Relaxed));
            let ts = unix_now().to_string();
            let idem = if *idempotency { nonce.as_str() } else { "" };
            let fields = SignFields {
                method: "POST",
                path,
                timestamp: &ts,
                nonce: &nonce,
                idempotency_key: idem,
                api_version: "1.0.0",
                key_id: "bench",
                ..Default::default()
            };
            let sig = sign(
                HMAC_SECRET.as_bytes(),
                Canonical::V2,
                &fields,
                body.as_bytes(),
            );
            b = b
                .header("x-signature", sig)
                .header("x-timestamp", &ts)
                .header("x-nonce", &nonce)
                .header("x-api-version", "1.0.0")
                .header("x-key-id", "bench");
            if *idempotency {
                b = b.header("idempotency-key", &nonce);
            }
        }
    }
    if let Some(s) = session {
        b = b
            .header("mcp-session-id", s)
            .header("mcp-protocol-version", "2025-11-25");
    }
    let resp = client
        .request(
            b.body(Full::new(Bytes::from_static(body.as_bytes())))
                .unwrap(),
        )
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let sid = resp
        .headers()
        .get("mcp-session-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let _ = resp.into_body().collect().await;
    (status, sid)
}

struct Cell {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    cpu_us_per_call: Option<f64>,
}

async fn measure(
    url: &str,
    call: &'static str,
    auth: &Auth,
    concurrency: usize,
    rate: Option<f64>,
    secs: u64,
    proxy_pid: Option<u32>,
) -> Cell {
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency * 2)
        .build_http();
    let mut sessions = Vec::new();
    for _ in 0..concurrency {
        let (status, sid) = post(&client, url, None, INIT, auth).await;
        assert_eq!(status, 200, "initialize via {url}");
        sessions.push(sid.expect("session id"));
    }
    // Warm-up.
    let warm = Instant::now() + Duration::from_millis(500);
    let run = |deadline: Instant, collect: bool| {
        let handles: Vec<_> = sessions
            .iter()
            .cloned()
            .map(|sid| {
                let client = client.clone();
                let url = url.to_owned();
                let auth = auth.clone();
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    // Open loop at a fixed rate (each session its share), or closed loop.
                    let mut pace = rate.map(|r| {
                        let mut i =
                            tokio::time::interval(Duration::from_secs_f64(concurrency as f64 / r));
                        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        i
                    });
                    while Instant::now() < deadline {
                        if let Some(p) = &mut pace {
                            p.tick().await;
                        }
                        let t = Instant::now();
                        let (status, _) = post(&client, &url, Some(&sid), call, &auth).await;
                        assert_eq!(status, 200);
                        if collect {
                            lat.push(t.elapsed().as_micros() as u64);
                        }
                    }
                    lat
                })
            })
            .collect();
        handles
    };
    for h in run(warm, false) {
        h.await.unwrap();
    }
    let cpu0 = proxy_pid.map(cpu_us);
    let t0 = Instant::now();
    let mut lat = Vec::new();
    for h in run(t0 + Duration::from_secs(secs), true) {
        lat.extend(h.await.unwrap());
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = proxy_pid.map(|p| (cpu_us(p) - cpu0.unwrap()) as f64);
    lat.sort_unstable();
    let n = lat.len();
    Cell {
        rps: n as f64 / elapsed,
        p50_us: lat[n / 2] as f64,
        p99_us: lat[(n * 99 / 100).min(n - 1)] as f64,
        cpu_us_per_call: cpu.map(|c| c / n as f64),
    }
}

/// A benchmark target: name, URL, body, authentication, the proxy's pid (for its CPU time).
type Target = (&'static str, String, &'static str, Auth, Option<u32>);

/// The cells of one table: every run of every target.
struct Table<'a> {
    targets: &'a [Target],
    results: Vec<Vec<Cell>>,
}

impl Table<'_> {
    /// The median of one figure of the named target (NaN when it was not run).
    fn get(&self, name: &str, f: &dyn Fn(&Cell) -> Option<f64>) -> f64 {
        let Some(i) = self.targets.iter().position(|t| t.0 == name) else {
            return f64::NAN;
        };
        let v: Vec<f64> = self.results[i].iter().filter_map(f).collect();
        if v.is_empty() {
            f64::NAN
        } else {
            median(v)
        }
    }

    fn cpu(&self, name: &str) -> f64 {
        self.get(name, &|c| c.cpu_us_per_call)
    }
}

/// Runs every target `runs` times (interleaved, so drift hits all alike) and prints the medians.
fn table<'a>(
    rt: &tokio::runtime::Runtime,
    targets: &'a [Target],
    c: usize,
    rate: Option<f64>,
    runs: usize,
    secs: u64,
) -> Table<'a> {
    let mut results: Vec<Vec<Cell>> = (0..targets.len()).map(|_| Vec::new()).collect();
    for _ in 0..runs {
        for (i, (_, url, call, auth, pid)) in targets.iter().enumerate() {
            results[i].push(rt.block_on(measure(url, call, auth, c, rate, secs, *pid)));
        }
    }
    let t = Table { targets, results };
    println!(
        "{:<20} {:>10} {:>10} {:>10} {:>14}",
        "target", "calls/s", "p50 µs", "p99 µs", "proxy CPU µs/call"
    );
    for (name, ..) in targets {
        println!(
            "{:<20} {:>10.0} {:>10.0} {:>10.0} {:>14.1}",
            name,
            t.get(name, &|c| Some(c.rps)),
            t.get(name, &|c| Some(c.p50_us)),
            t.get(name, &|c| Some(c.p99_us)),
            t.cpu(name)
        );
    }
    t
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--forwarder") {
        return run_forwarder(args[i + 1].clone());
    }
    if let Some(i) = args.iter().position(|a| a == "--load") {
        // `gateway --load URL CONCURRENCY SECS [PID]`: drive one target only (for profiling).
        let url = args[i + 1].clone();
        let c: usize = args[i + 2].parse().expect("concurrency");
        let secs: u64 = args[i + 3].parse().expect("seconds");
        let pid = args.get(i + 4).map(|p| p.parse().expect("pid"));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let call = if url.ends_with("/mcp") {
            CALL_HUB
        } else {
            CALL
        };
        let cell = rt.block_on(measure(&url, call, &Auth::None, c, None, secs, pid));
        println!(
            "{:.0} calls/s, p50 {:.0} µs, p99 {:.0} µs, proxy CPU {:.1} µs/call",
            cell.rps,
            cell.p50_us,
            cell.p99_us,
            cell.cpu_us_per_call.unwrap_or(f64::NAN)
        );
        return;
    }
    if args.iter().any(|a| a == "--list") {
        println!("gateway: benchmark");
        return;
    }
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    // `BENCH_PALISADE_BIN` runs another build of the gateway (for A/B comparisons).
    let bin = std::env::var("BENCH_PALISADE_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_palisade").to_owned());
    let bin = bin.as_str();
    let dir = std::env::temp_dir().join(format!("palisade-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let (_demo, demo) = spawn(Command::new(bin).args(["demo-upstream", "--listen", "127.0.0.1:0"]));
    let direct = format!("http://{demo}");
    let (fwd, fwd_addr) =
        spawn(Command::new(std::env::current_exe().unwrap()).args(["--forwarder", &direct]));
    // One gateway with the verified-JWT cache on (the default), one with it off: the same
    // config otherwise. `demo` is unauthenticated; `jwt` and `hmac` reach the same upstream.
    let config = |name: &str, jwt_cache: u64| {
        let path = dir.join(name);
        let data = dir.join(format!("{name}.data"));
        std::fs::write(
            &path,
            format!(
                "data_dir = {:?}\n\
                 [auth]\nmethods = [\"none\"]\n\
                 [auth.hmac]\nrequire_idempotency_key = false\nreplay_capacity = 10000000\n\
                 [idempotency]\ncapacity = 10000000\n\
                 [[auth.hmac.clients]]\nid = \"bench\"\nkey_id = \"bench\"\nsecret = \"{HMAC_SECRET}\"\n\
                 [auth.jwt]\nissuer = [\"https://idp.bench\"]\naudience = [\"https://gw.bench/mcp/jwt\"]\ncache_capacity = {jwt_cache}\n\
                 [[auth.jwt.keys]]\nkid = \"rs\"\nalg = \"RS256\"\npem_file = {:?}\n\
                 [[auth.jwt.keys]]\nkid = \"ed\"\nalg = \"EdDSA\"\npem_file = {:?}\n\
                 [[upstream]]\nname = \"demo\"\nurl = \"{direct}\"\n\
                 [[upstream]]\nname = \"jwt\"\nurl = \"{direct}\"\nauth = [\"jwt\"]\nhub = false\n\
                 [[upstream]]\nname = \"hmac\"\nurl = \"{direct}\"\nauth = [\"hmac\"]\nhub = false\n\
                 [authz]\ndefault_role = \"any\"\nanonymous_role = \"any\"\n[authz.roles.any]\npermissions = [\"*\"]\n[authz.roles.trader]\ninherits = [\"any\"]\n",
                data.display().to_string(),
                fixture("rsa.pub"),
                fixture("ed.pub"),
            ),
        )
        .unwrap();
        spawn(
            Command::new(bin)
                .args(["serve", "--config"])
                .arg(&path)
                .args(["--listen", "127.0.0.1:0"])
                .env("RUST_LOG", "error"),
        )
    };
    let (gw, gw_addr) = config("bench.toml", 10_000);
    let (gw_nc, gw_nc_addr) = config("bench-nocache.toml", 0);
    let (gw_pid, gw_nc_pid) = (Some(gw.0.id()), Some(gw_nc.0.id()));
    let rs = Auth::Bearer(jwt("rs", "rsa.key", Algorithm::RS256));
    let ed = Auth::Bearer(jwt("ed", "ed.key", Algorithm::EdDSA));
    let hmac = |idempotency| Auth::Hmac {
        path: "/mcp/hmac",
        idempotency,
    };
    let call_1k = call_1k();
    let jwt_url = format!("http://{gw_addr}/mcp/jwt");
    let jwt_nc_url = format!("http://{gw_nc_addr}/mcp/jwt");
    let hmac_url = format!("http://{gw_addr}/mcp/hmac");
    let demo_url = format!("http://{gw_addr}/mcp/demo");
    let targets: Vec<Target> = vec![
        ("direct", direct.clone(), CALL, Auth::None, None),
        (
            "bare forwarder",
            format!("http://{fwd_addr}/"),
            CALL,
            Auth::None,
            Some(fwd.0.id()),
        ),
        ("palisade", demo_url.clone(), CALL, Auth::None, gw_pid),
        (
            "palisade hub",
            format!("http://{gw_addr}/mcp"),
            CALL_HUB,
            Auth::None,
            gw_pid,
        ),
    ];
    let auth_targets: Vec<Target> = vec![
        ("palisade", demo_url.clone(), CALL, Auth::None, gw_pid),
        (
            "jwt RS256 cached",
            jwt_url.clone(),
            CALL,
            rs.clone(),
            gw_pid,
        ),
        ("jwt EdDSA cached", jwt_url, CALL, ed.clone(), gw_pid),
        (
            "palisade (cache off)",
            format!("http://{gw_nc_addr}/mcp/demo"),
            CALL,
            Auth::None,
            gw_nc_pid,
        ),
        (
            "jwt RS256 verified",
            jwt_nc_url.clone(),
            CALL,
            rs,
            gw_nc_pid,
        ),
        ("jwt EdDSA verified", jwt_nc_url, CALL, ed, gw_nc_pid),
        ("palisade 1 KB", demo_url, call_1k, Auth::None, gw_pid),
        ("hmac 1 KB", hmac_url.clone(), call_1k, hmac(false), gw_pid),
        ("hmac 1 KB + idem", hmac_url, call_1k, hmac(true), gw_pid),
    ];
    // `BENCH_ONLY=palisade,hmac` keeps the targets whose names start with one of the words.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let keep = |t: &Target| only.is_empty() || only.split(',').any(|w| t.0.starts_with(w.trim()));
    let targets: Vec<Target> = targets.into_iter().filter(keep).collect();
    let auth_targets: Vec<Target> = auth_targets.into_iter().filter(keep).collect();
    let concurrency: Vec<usize> = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .map(|v| {
            v.split(',')
                .map(|c| c.trim().parse().expect("BENCH_CONCURRENCY"))
                .collect()
        })
        .unwrap_or_else(|| vec![1, 32]);
    let auth_rate: f64 = std::env::var("BENCH_AUTH_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000.0);
    // The fixed rate of the equal-rate tables, as a fraction of Palisade's closed-loop
    // throughput in the same run (0 skips them).
    let equal_rate: f64 = std::env::var("BENCH_EQUAL_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.7);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "tools/call echo, {secs} s per cell, {runs} runs, medians; machine: {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    for &c in &concurrency {
        if targets.is_empty() {
            break;
        }
        println!("\nconcurrency {c}, closed loop");
        let t = table(&rt, &targets, c, None, runs, secs);
        println!(
            "palisade/bare CPU per call: {:.2}x (target <= 1.25x)",
            t.cpu("palisade") / t.cpu("bare forwarder")
        );
        println!(
            "hub (/mcp) / direct route (/mcp/demo) CPU per call: {:.2}x (target <= 1.20x)",
            t.cpu("palisade hub") / t.cpu("palisade")
        );
        println!(
            "p50 added vs direct: bare {:.0} µs, palisade {:.0} µs (target <= 100 µs at c=1)",
            t.get("bare forwarder", &|c| Some(c.p50_us)) - t.get("direct", &|c| Some(c.p50_us)),
            t.get("palisade", &|c| Some(c.p50_us)) - t.get("direct", &|c| Some(c.p50_us))
        );
        println!(
            "throughput palisade/direct: {:.2}",
            t.get("palisade", &|c| Some(c.rps)) / t.get("direct", &|c| Some(c.rps))
        );
        // The closed loop runs each proxy as fast as it goes, and a faster process batches
        // more work per wake-up, so its CPU per call drops: the closed-loop ratio compounds
        // the difference in work per call with a difference in regime. The same targets at
        // one fixed rate that every proxy sustains compare the work alone.
        let rate = equal_rate * t.get("palisade", &|c| Some(c.rps));
        if rate > 0.0 {
            let proxies: Vec<Target> = targets.iter().filter(|t| t.4.is_some()).cloned().collect();
            println!(
                "\nconcurrency {c}, open loop at {rate:.0} calls/s (every proxy the same rate)"
            );
            let e = table(&rt, &proxies, c, Some(rate), runs, secs);
            println!(
                "palisade/bare CPU per call at an equal rate: {:.2}x",
                e.cpu("palisade") / e.cpu("bare forwarder")
            );
        }
    }
    if !auth_targets.is_empty() && auth_rate > 0.0 {
        // At a fixed rate, so that every route runs in the same regime: closed-loop CPU per
        // call depends on throughput (a slower route batches less), which would blur the few
        // microseconds measured here. The load generator's own signing does not count either.
        println!("\nauthentication: concurrency 8, open loop at {auth_rate:.0} calls/s");
        let t = table(&rt, &auth_targets, 8, Some(auth_rate), runs, secs);
        println!(
            "CPU µs per call added over the unauthenticated route of the same gateway: \
             cached JWT RS256 {:+.1} / EdDSA {:+.1} (target <= 5); \
             verified JWT RS256 {:+.1} / EdDSA {:+.1}; \
             HMAC v2 1 KB {:+.1} (target <= 10), with Idempotency-Key {:+.1}",
            t.cpu("jwt RS256 cached") - t.cpu("palisade"),
            t.cpu("jwt EdDSA cached") - t.cpu("palisade"),
            t.cpu("jwt RS256 verified") - t.cpu("palisade (cache off)"),
            t.cpu("jwt EdDSA verified") - t.cpu("palisade (cache off)"),
            t.cpu("hmac 1 KB") - t.cpu("palisade 1 KB"),
            t.cpu("hmac 1 KB + idem") - t.cpu("palisade 1 KB"),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
