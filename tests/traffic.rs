//! Traffic control through the running gateway: rate-limit rules per principal and per
//! address with their headers, exactness under 64 concurrent clients, forwarding headers
//! believed only from trusted proxies, and IP allow/deny lists.

mod support;

use std::collections::BTreeMap;

use http::{Method, StatusCode};
use palisade::controls::authn::generate_token;
use support::hub::*;
use support::*;

const CALL: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#;

fn header(r: &Reply, name: &str) -> Option<u64> {
    r.headers
        .get(name)
        .map(|v| v.to_str().unwrap().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_principal_limit_refuses_past_max_with_headers() {
    let (up, addr) = Scripted::start().await;
    let (alice, ha) = generate_token();
    let (bob, hb) = generate_token();
    let cfg = format!(
        "[auth]\nmethods = [\"bearer\"]\n\
         [[auth.bearer]]\nid = \"alice\"\nsha256 = \"{ha}\"\n\
         [[auth.bearer]]\nid = \"bob\"\nsha256 = \"{hb}\"\n\
         [[upstream]]\nname = \"s\"\nurl = \"http://{addr}/mcp\"\nhub = false\n\
         [[rate_limit]]\nname = \"calls\"\nwindow_ms = 60000\nmax = 3\nmethods = [\"tools/call\"]\n"
    );
    let mut gw = Gateway::start("rl-principal", &cfg);
    let a = Client::connect(gw.url("/mcp/s"), Some(&alice)).await;
    let b = Client::connect(gw.url("/mcp/s"), Some(&bob)).await;

    for left in [2, 1, 0] {
        let r = a.raw(CALL).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(header(&r, "x-ratelimit-limit"), Some(3));
        assert_eq!(header(&r, "x-ratelimit-remaining"), Some(left));
        let reset = header(&r, "x-ratelimit-reset").unwrap();
        let now = unix_now();
        assert!(reset > now && reset <= now + 65, "reset {reset}, now {now}");
    }
    let before = up.count();
    let r = a.raw(CALL).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.code(), "MCP-006");
    assert_eq!(r.json()["id"], 7);
    assert_eq!(header(&r, "x-ratelimit-remaining"), Some(0));
    let retry = header(&r, "retry-after").unwrap();
    assert!((1..=65).contains(&retry), "Retry-After {retry}");
    assert_eq!(up.count(), before, "a refused call reached the upstream");

    // Bob has his own allowance; messages the rule does not match carry no quota.
    let r = b.raw(CALL).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(header(&r, "x-ratelimit-remaining"), Some(2));
    let r = a
        .raw(r#"{"jsonrpc":"2.0","id":8,"method":"tools/list"}"#)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(header(&r, "x-ratelimit-limit"), None);

    gw.stop();
    let rows = gw.audit_rows();
    let refused = rows
        .iter()
        .filter(|r| r.2 == "ratelimit")
        .collect::<Vec<_>>();
    assert_eq!(
        refused,
        vec![&(
            Some("tools/call".to_owned()),
            "deny".to_owned(),
            "ratelimit".to_owned(),
            "rate_limited".to_owned(),
            429,
            Some("MCP-006".to_owned())
        )],
        "{rows:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sixty_four_concurrent_clients_never_get_more_than_the_limit() {
    let cfg = "[[upstream]]\nname = \"demo\"\nbuiltin = \"demo\"\nhub = false\n\
               [[rate_limit]]\nname = \"all-calls\"\nkey = \"global\"\nwindow_ms = 600000\n\
               max = 50\nmethods = [\"tools/call\"]\n";
    let gw = Gateway::start("rl-concurrent", cfg);
    let url = gw.url("/mcp/demo");
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let c = Client::connect(url, None).await;
                let mut statuses = Vec::new();
                for _ in 0..2 {
                    statuses.push(c.raw(CALL).await.status);
                }
                statuses
            })
        })
        .collect();
    let mut seen: BTreeMap<u16, usize> = BTreeMap::new();
    for t in tasks {
        for s in t.await.unwrap() {
            *seen.entry(s.as_u16()).or_default() += 1;
        }
    }
    assert_eq!(seen, BTreeMap::from([(200, 50), (429, 78)]));
}

/// Five `initialize` requests, each claiming another address in `X-Forwarded-For`.
async fn rotate(gw: &Gateway, xff: impl Fn(usize) -> String) -> Vec<u16> {
    let mut out = Vec::new();
    for i in 0..5 {
        let x = xff(i);
        let r = post(&gw.url("/mcp/demo"), &[("x-forwarded-for", &x)], INIT).await;
        out.push(r.status.as_u16());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let rule = "[[upstream]]\nname = \"demo\"\nbuiltin = \"demo\"\nhub = false\n\
                [[rate_limit]]\nname = \"per-ip\"\nkey = \"ip\"\nwindow_ms = 600000\nmax = 2\n";
    // From an untrusted peer, rotating the header buys nothing.
    let gw = Gateway::start("rl-xff-untrusted", rule);
    let got = rotate(&gw, |i| format!("198.51.100.{i}")).await;
    assert_eq!(got, [200, 200, 429, 429, 429]);

    // Behind a trusted proxy, each forwarded client has its own allowance...
    let cfg = format!("{rule}[network]\ntrusted_proxies = [\"127.0.0.1\"]\n");
    let gw = Gateway::start("rl-xff-trusted", &cfg);
    let got = rotate(&gw, |i| format!("198.51.100.{i}")).await;
    assert_eq!(got, [200; 5]);
    // ...and a client cannot escape it by prepending addresses the proxy did not write.
    let got = rotate(&gw, |i| format!("10.9.9.{i}, 203.0.113.7")).await;
    assert_eq!(got, [200, 200, 429, 429, 429]);
}

#[tokio::test(flavor = "multi_thread")]
async fn ip_lists_refuse_before_anything_else() {
    let (up, addr) = Scripted::start().await;
    let cfg = format!(
        "[[upstream]]\nname = \"s\"\nurl = \"http://{addr}/mcp\"\nhub = false\n\
         [network]\ntrusted_proxies = [\"127.0.0.1\"]\nblocked_ips = [\"203.0.113.0/24\"]\n"
    );
    let mut gw = Gateway::start("ip-lists", &cfg);
    let before = up.count();
    let r = post(
        &gw.url("/mcp/s"),
        &[("x-forwarded-for", "203.0.113.5")],
        INIT,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "MCP-002");
    assert_eq!(up.count(), before);
    // Operational endpoints too.
    let r = send(
        Method::GET,
        &gw.url("/metrics"),
        &[("x-forwarded-for", "203.0.113.5")],
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = post(
        &gw.url("/mcp/s"),
        &[("x-forwarded-for", "198.51.100.1")],
        INIT,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    gw.stop();
    let rows = gw.audit_rows();
    let blocked = rows
        .iter()
        .filter(|r| r.2 == "network" && r.3 == "ip_blocked" && r.1 == "deny" && r.4 == 403)
        .count();
    assert_eq!(blocked, 2, "{rows:#?}");

    // An allow list refuses every address it does not name.
    let cfg = format!(
        "[[upstream]]\nname = \"s\"\nurl = \"http://{addr}/mcp\"\nhub = false\n\
         [network]\nallowed_ips = [\"10.0.0.0/8\"]\n"
    );
    let gw = Gateway::start("ip-allow", &cfg);
    let r = post(&gw.url("/mcp/s"), &[], INIT).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_calls_per_agent_in_flight_then_a_bounded_wait() {
    let (up, addr) = Scripted::start().await;
    let (alice, ha) = generate_token();
    let (bob, hb) = generate_token();
    let cfg = format!(
        "[auth]\nmethods = [\"bearer\"]\n\
         [[auth.bearer]]\nid = \"alice\"\nsha256 = \"{ha}\"\n\
         [[auth.bearer]]\nid = \"bob\"\nsha256 = \"{hb}\"\n\
         [concurrency]\nper_principal = 2\nmax_wait_ms = 200\n\
         [[upstream]]\nname = \"s\"\nurl = \"http://{addr}/mcp\"\nhub = false\n\
         [[upstream.tools]]\nname = \"hang\"\ntimeout_secs = 1\n"
    );
    let mut gw = Gateway::start("concurrency", &cfg);
    let a = std::sync::Arc::new(Client::connect(gw.url("/mcp/s"), Some(&alice)).await);
    let b = Client::connect(gw.url("/mcp/s"), Some(&bob)).await;
    let hang =
        r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"hang","arguments":{}}}"#;
    let before = up.count();
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let a = a.clone();
            tokio::spawn(async move { a.raw(hang).await.code() })
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while up.count() < before + 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the calls never arrived"
        );
        tokio::task::yield_now().await;
    }
    // Alice's third call waits its bound, then is refused; Bob is not affected.
    let r = a.raw(CALL).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.code(), "MCP-006");
    assert_eq!(up.count(), before + 2);
    assert_eq!(b.raw(CALL).await.status, StatusCode::OK);
    // Once her calls end (their tool's 1 s limit), she has her slots back.
    for s in slow {
        assert_eq!(s.await.unwrap(), "MCP-004");
    }
    assert_eq!(a.raw(CALL).await.status, StatusCode::OK);
    gw.stop();
    let rows = gw.audit_rows();
    assert!(
        rows.iter()
            .any(|r| r.2 == "concurrency" && r.3 == "busy_principal" && r.4 == 429),
        "{rows:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_cut_off_while_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    let cfg = "[[upstream]]\nname = \"demo\"\nbuiltin = \"demo\"\nhub = false\n\
               [connections]\nheader_timeout_ms = 300\nidle_timeout_ms = 300\nbody_grace_ms = 300\n\
               min_body_rate = 1000\nmax_per_ip = 4\n";
    let mut gw = Gateway::start("slowloris", cfg);
    let until_closed = |mut s: TcpStream| async move {
        let mut buf = Vec::new();
        tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut buf))
            .await
            .expect("the slow connection was left open")
            .ok();
        String::from_utf8_lossy(&buf).to_string()
    };

    // Headers that never finish.
    let mut slow = TcpStream::connect(&gw.addr).await.unwrap();
    slow.write_all(b"POST /mcp/demo HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    // A body that trickles: 10 of 1000 bytes, then nothing.
    let mut trickle = TcpStream::connect(&gw.addr).await.unwrap();
    trickle
        .write_all(
            b"POST /mcp/demo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
              Accept: application/json, text/event-stream\r\nContent-Length: 1000\r\n\r\n{\"jsonrpc\"",
        )
        .await
        .unwrap();
    // Meanwhile, a normal client is served.
    assert_eq!(
        post(&gw.url("/mcp/demo"), &[], INIT).await.status,
        StatusCode::OK
    );
    until_closed(slow).await;
    let answer = until_closed(trickle).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("MCP-004"), "{answer}");

    // A kept-alive connection idle after its request is closed by the same timer.
    let mut idle = TcpStream::connect(&gw.addr).await.unwrap();
    let req = format!(
        "POST /mcp/demo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n{INIT}",
        INIT.len()
    );
    idle.write_all(req.as_bytes()).await.unwrap();
    let answer = until_closed(idle).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // An HTTP/2 connection (prior knowledge) that says hello and then nothing is closed too.
    let mut h2 = TcpStream::connect(&gw.addr).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let frames = until_closed(h2).await;
    assert!(!frames.is_empty(), "the server's SETTINGS came first");

    // Four connections from one address; a fifth is closed at once.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(&gw.addr).await.unwrap());
    }
    let fifth = TcpStream::connect(&gw.addr).await.unwrap();
    assert_eq!(until_closed(fifth).await, "");
    drop(held);

    gw.stop();
    let rows = gw.audit_rows();
    assert!(
        rows.iter()
            .any(|r| r.2 == "connections" && r.3 == "body_too_slow" && r.4 == 408),
        "{rows:#?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.2 == "connections" && r.3 == "too_many_connections_per_ip"),
        "{rows:#?}"
    );
}
