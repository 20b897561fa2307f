//! Authentication cost per request: `cargo bench --bench auth`.
//!
//! Runs the public authenticator (header stage + body stage, exactly what the pipeline calls)
//! on one thread, for: a JWT verified from scratch (RS256 and EdDSA), a JWT served from the
//! verified-token cache, HMAC v2 and v1 over a 1 KB body (each request with a fresh nonce, so
//! the replay store is exercised too), and a static bearer token. The loop is CPU-bound on one
//! thread, so wall time per call is the CPU time per call. Medians of `BENCH_RUNS` (default 5).

use std::time::{Duration, Instant};

use http::Request;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use palisade::config::Canonical;
use palisade::controls::authn::{generate_token, sign, Authenticator, SignFields, Trust};

const NOW_OFFSET: u64 = 0;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + NOW_OFFSET
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
}

const SECRET: &str = "bench-hmac-secret-0123456789abcdef0123";

fn authenticator(cache: u64) -> (Authenticator, String) {
    let (token, hash) = generate_token();
    let toml = format!(
        "[auth]\nmethods = [\"jwt\", \"hmac\", \"bearer\"]\n\
         [[auth.bearer]]\nid = \"b\"\nsha256 = \"{hash}\"\n\
         [auth.hmac]\nreplay_capacity = 10000000\n\
         [[auth.hmac.clients]]\nid = \"v2\"\nkey_id = \"v2\"\nsecret = \"{SECRET}\"\n\
         [[auth.hmac.clients]]\nid = \"v1\"\nkey_id = \"v1\"\nsecret = \"{SECRET}\"\ncanonical = \"v1\"\n\
         [auth.jwt]\nissuer = [\"https://idp.bench\"]\naudience = [\"https://gw.bench/mcp/s\"]\ncache_capacity = {cache}\n\
         [[auth.jwt.keys]]\nkid = \"rs\"\nalg = \"RS256\"\npem_file = \"{}\"\n\
         [[auth.jwt.keys]]\nkid = \"ed\"\nalg = \"EdDSA\"\npem_file = \"{}\"\n\
         [[upstream]]\nname = \"s\"\nurl = \"http://127.0.0.1:9/mcp\"\n",
        fixture("rsa.pub"),
        fixture("ed.pub")
    );
    let cfg = palisade::config::parse(&toml, "bench", &|_| None).expect("bench config");
    let fetcher =
        palisade::controls::ssrf::fetch::Fetcher::new(cfg.ssrf.clone(), Duration::from_secs(1));
    (
        Authenticator::new(
            &cfg.auth,
            &cfg.upstreams,
            &cfg.hub,
            &cfg.listeners,
            fetcher,
            Trust::default(),
        ),
        token,
    )
}

fn jwt(kid: &str, key: &EncodingKey, alg: Algorithm, i: usize) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    let claims = serde_json::json!({
        "iss": "https://idp.bench", "aud": "https://gw.bench/mcp/s", "sub": "agent",
        "exp": now() + 3600, "jti": format!("j{i}"), "roles": ["trader"], "scope": "mcp:tools",
    });
    encode(&h, &claims, key).unwrap()
}

type Req = (http::request::Parts, Vec<u8>);

fn request(headers: &[(String, String)], body: &[u8]) -> Req {
    let mut b = Request::builder().method("POST").uri("/mcp/s");
    for (k, v) in headers {
        b = b.header(k.as_str(), v.as_str());
    }
    (b.body(()).unwrap().into_parts().0, body.to_vec())
}

/// Median nanoseconds per call of authenticating `reqs` in order.
fn measure(rt: &tokio::runtime::Runtime, a: &Authenticator, reqs: &[Req]) -> f64 {
    let ip = std::net::IpAddr::from([127, 0, 0, 1]);
    let t = now();
    let start = Instant::now();
    for (parts, body) in reqs {
        let p = rt
            .block_on(a.begin(0, 0, parts, ip, None, t))
            .and_then(|p| p.finish(parts, body, t));
        assert!(p.is_ok(), "{:?}", p.err());
    }
    start.elapsed().as_nanos() as f64 / reqs.len() as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let n = 2000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rs = EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa.key")).unwrap()).unwrap();
    let ed = EncodingKey::from_ed_pem(&std::fs::read(fixture("ed.key")).unwrap()).unwrap();
    let body = vec![b'x'; 1024];
    let bearer = |t: &str| vec![("authorization".to_owned(), format!("Bearer {t}"))];
    // v1 does not sign the nonce, so identical requests would be refused as replayed
    // signatures: each v1 request gets its own body.
    let body_for = |i: usize| {
        let mut b = body.clone();
        b[..12].copy_from_slice(format!("{i:012}").as_bytes());
        b
    };
    let hmac = |key: &str, c: Canonical, nonce: &str, ts: &str, body: &[u8]| {
        let sig = sign(
            SECRET.as_bytes(),
            c,
            &SignFields {
                method: "POST",
                path: "/mcp/s",
                timestamp: ts,
                nonce,
                idempotency_key: nonce,
                api_version: "1.0.0",
                key_id: key,
                ..Default::default()
            },
            body,
        );
        vec![
            ("x-signature".to_owned(), sig),
            ("x-timestamp".to_owned(), ts.to_owned()),
            ("x-nonce".to_owned(), nonce.to_owned()),
            ("idempotency-key".to_owned(), nonce.to_owned()),
            ("x-api-version".to_owned(), "1.0.0".to_owned()),
            ("x-key-id".to_owned(), key.to_owned()),
        ]
    };
    println!("authentication CPU per call, single thread, median of {runs} runs of {n} calls");
    println!("{:<34} {:>10}", "case", "µs/call");
    let row = |name: &str, make: &dyn Fn(usize, usize) -> Req, cache: u64| {
        let mut samples = Vec::new();
        for run in 0..runs {
            let (a, _) = authenticator(cache);
            let reqs: Vec<Req> = (0..n).map(|i| make(run, i)).collect();
            // Warm the cache (and the allocator) outside the measurement.
            if cache > 0 {
                let _ = measure(&rt, &a, &reqs[..1]);
            }
            samples.push(measure(&rt, &a, &reqs) / 1000.0);
        }
        println!("{name:<34} {:>10.2}", median(samples));
    };
    row(
        "jwt RS256, verified",
        &|r, i| request(&bearer(&jwt("rs", &rs, Algorithm::RS256, r * n + i)), b"{}"),
        0,
    );
    row(
        "jwt EdDSA, verified",
        &|r, i| request(&bearer(&jwt("ed", &ed, Algorithm::EdDSA, r * n + i)), b"{}"),
        0,
    );
    let cached_token = jwt("rs", &rs, Algorithm::RS256, 0);
    row(
        "jwt, cached",
        &|_, _| request(&bearer(&cached_token), b"{}"),
        10_000,
    );
    let ts = now().to_string();
    row(
        "hmac v2, 1 KB body",
        &|r, i| {
            request(
                &hmac("v2", Canonical::V2, &format!("n{r}-{i}"), &ts, &body),
                &body,
            )
        },
        0,
    );
    row(
        "hmac v1, 1 KB body",
        &|r, i| {
            let b = body_for(r * n + i);
            request(
                &hmac("v1", Canonical::V1, &format!("m{r}-{i}"), &ts, &b),
                &b,
            )
        },
        0,
    );
    // Static bearer: each run's authenticator has its own token.
    let mut samples = Vec::new();
    for _ in 0..runs {
        let (a, token) = authenticator(0);
        let reqs: Vec<Req> = (0..n).map(|_| request(&bearer(&token), b"{}")).collect();
        samples.push(measure(&rt, &a, &reqs) / 1000.0);
    }
    println!("{:<34} {:>10.2}", "bearer token", median(samples));
}
