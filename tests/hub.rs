//! The hub (`/mcp`) against real upstreams: the bundled demo over HTTP and a Python SDK server
//! over stdio (`tests/peers/stdio_fixture.py`), through the real binary.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::hub::*;
use support::*;

fn stdio_events(gw: &Gateway) -> Vec<(String, String, String)> {
    let conn = rusqlite::Connection::open(gw.db()).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT upstream, control, reason FROM audit WHERE transport = 'stdio' ORDER BY seq",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_endpoint_merges_and_routes_http_and_stdio_upstreams() {
    let Some(python) = peer("PALISADE_PYTHON") else {
        return;
    };
    let gw = Gateway::start(
        "hub-merge",
        &format!(
            "[[upstream]]\nname = \"demo\"\nbuiltin = \"demo\"\n{}",
            fixture("fix", &python, "")
        ),
    );
    let mut c = Client::connect(gw.url("/mcp"), None).await;
    let names = c.tool_names().await;
    for want in [
        "demo__echo",
        "demo__place_order",
        "fix__remember",
        "fix__read_file",
    ] {
        assert!(
            names.iter().any(|x| x == want),
            "{want} missing from {names:?}"
        );
    }
    // Each upstream gets the call under its own name.
    assert_eq!(
        c.call("demo__echo", json!({"text": "via hub"})).await,
        "via hub"
    );
    assert_eq!(
        c.call("fix__remember", json!({"key": "k", "value": "v"}))
            .await,
        "ok"
    );
    assert_eq!(c.call("fix__recall", json!({"key": "k"})).await, "v");
    let p = c
        .request(
            "prompts/get",
            json!({"name": "fix__greet", "arguments": {"name": "Ann"}}),
        )
        .await;
    assert_eq!(p["result"]["messages"][0]["content"]["text"], "Hello Ann");
    // Unknown names, and names of no upstream, are refused by the hub itself.
    for bad in ["nobody__echo", "echo", "demo_echo"] {
        let v = c
            .request("tools/call", json!({"name": bad, "arguments": {}}))
            .await;
        assert_eq!(v["error"]["data"]["code"], "MCP-007", "{bad}: {v}");
    }
    // /readyz reports each upstream; the stdio one has a live child now.
    let r = send(http::Method::GET, &gw.url("/readyz"), &[], "").await;
    let text = String::from_utf8_lossy(&r.body).to_string();
    assert!(
        text.contains("demo ok") && text.contains("fix ok"),
        "{text}"
    );
    // The per-upstream route of a stdio server works too, with its own names.
    let mut direct = Client::connect(gw.url("/mcp/fix"), None).await;
    assert_eq!(direct.call("recall", json!({"key": "k"})).await, "v");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_child_killed_mid_call_gives_one_clean_error_and_is_restarted() {
    let Some(python) = peer("PALISADE_PYTHON") else {
        return;
    };
    let mut gw = Gateway::start("hub-kill", &fixture("fix", &python, ""));
    let mut c = Client::connect(gw.url("/mcp"), None).await;
    let pid = c.call("fix__whoami", json!({})).await;
    // A slow call that reports progress first: once the progress event arrives, the call is
    // inside the child, which is then killed.
    let call = r#"{"jsonrpc":"2.0","id":77,"method":"tools/call","params":{"name":"fix__sleep","arguments":{"seconds":30},"_meta":{"progressToken":"p-1"}}}"#;
    let req = http::Request::post(gw.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &c.sid)
        .header("mcp-protocol-version", "2025-11-25")
        .body(http_body_util::Full::new(bytes::Bytes::from(call)))
        .unwrap();
    let resp = palisade::upstream::client(Duration::from_secs(2))
        .request(req)
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let text = read_until(&mut body, "notifications/progress").await;
    // The client's own token comes back, not the one the hub used upstream.
    assert!(text.contains(r#""progressToken":"p-1""#), "{text}");
    assert!(Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap()
        .success());
    let started = Instant::now();
    let rest = http_body_util::BodyExt::collect(body)
        .await
        .unwrap()
        .to_bytes();
    let rest = String::from_utf8_lossy(&rest);
    assert_eq!(rest.matches(r#""id":77"#).count(), 1, "{rest}");
    assert!(rest.contains("MCP-003"), "{rest}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The next call starts a new child.
    let again = c.call("fix__whoami", json!({})).await;
    assert_ne!(again, pid);
    assert!(again.parse::<u32>().is_ok(), "{again}");
    gw.stop();
    let events = stdio_events(&gw);
    let reasons: Vec<&str> = events.iter().map(|e| e.2.as_str()).collect();
    assert_eq!(
        reasons,
        ["started", "crashed", "started", "stopped"],
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn landlock_keeps_a_child_inside_its_paths() {
    let Some(python) = peer("PALISADE_PYTHON") else {
        return;
    };
    let dir = tmpdir("hub-landlock-files");
    let secret = dir.join("secret.txt");
    std::fs::write(&secret, "top secret").unwrap();
    let allowed = std::env::var("PALISADE_PEERS_DIR").unwrap() + "/package.json";
    let gw = Gateway::start("hub-landlock", &fixture("fix", &python, ""));
    let mut c = Client::connect(gw.url("/mcp"), None).await;
    let read = c.call("fix__read_file", json!({"path": allowed})).await;
    assert!(read.starts_with("content:"), "{read}");
    // EACCES from the kernel, although the gateway's own user can read the file.
    let denied = c.call("fix__read_file", json!({"path": secret})).await;
    assert_eq!(denied, "denied:13");
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "top secret");
}

#[tokio::test(flavor = "multi_thread")]
async fn principals_never_share_a_child_unless_shared_is_chosen() {
    let Some(python) = peer("PALISADE_PYTHON") else {
        return;
    };
    let (ta, ha) = palisade::controls::authn::generate_token();
    let (tb, hb) = palisade::controls::authn::generate_token();
    let auth = format!(
        "[auth]\nmethods = [\"bearer\"]\n[[auth.bearer]]\nid = \"alice\"\nsha256 = {ha:?}\n\
         [[auth.bearer]]\nid = \"bob\"\nsha256 = {hb:?}\n"
    );
    let gw = Gateway::start(
        "hub-isolation",
        &format!(
            "{auth}{}{}",
            fixture("own", &python, ""),
            fixture("common", &python, "isolation = \"shared\"")
        ),
    );
    let mut alice = Client::connect(gw.url("/mcp"), Some(&ta)).await;
    let mut bob = Client::connect(gw.url("/mcp"), Some(&tb)).await;
    assert_eq!(
        alice
            .call("own__remember", json!({"key": "plan", "value": "buy"}))
            .await,
        "ok"
    );
    assert_eq!(
        bob.call("own__recall", json!({"key": "plan"})).await,
        "(none)"
    );
    assert_eq!(
        alice.call("own__recall", json!({"key": "plan"})).await,
        "buy"
    );
    assert_ne!(
        alice.call("own__whoami", json!({})).await,
        bob.call("own__whoami", json!({})).await
    );
    // A second session of alice's reaches her child (per-principal, the default).
    let mut alice2 = Client::connect(gw.url("/mcp"), Some(&ta)).await;
    assert_eq!(
        alice2.call("own__recall", json!({"key": "plan"})).await,
        "buy"
    );
    // `shared` is one child for everybody: the opt-in is visible.
    assert_eq!(
        alice
            .call("common__remember", json!({"key": "k", "value": "x"}))
            .await,
        "ok"
    );
    assert_eq!(bob.call("common__recall", json!({"key": "k"})).await, "x");
    // Bob cannot use alice's session id.
    let stolen = Client {
        url: gw.url("/mcp"),
        auth: bob.auth.clone(),
        sid: alice.sid.clone(),
        next: 1,
    };
    let r = stolen
        .raw(r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"own__recall","arguments":{"key":"plan"}}}"#)
        .await;
    assert_eq!(r.status, 404);
}

/// Sends raw bytes and returns the response's status code.
async fn raw_status(addr: &str, bytes: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn modern_clients_reach_legacy_upstreams_and_bad_modern_requests_are_refused() {
    let gw = Gateway::start(
        "hub-modern",
        "[[upstream]]\nname = \"demo\"\nbuiltin = \"demo\"\n",
    );
    let url = gw.url("/mcp");
    let d = modern(
        &url,
        json!({"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta":meta()}}),
        &[],
    )
    .await;
    assert_eq!(d.status, 200, "{:?}", d.body);
    assert!(d.session().is_none(), "no session in the modern era");
    let v = d.json();
    assert_eq!(v["result"]["supportedVersions"], json!(["2026-07-28"]));
    assert_eq!(v["result"]["resultType"], "complete");
    let call = json!({"jsonrpc":"2.0","id":2,"method":"tools/call",
        "params":{"name":"demo__echo","arguments":{"text":"modern"},"_meta":meta()}});
    let r = modern(&url, call.clone(), &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let v = r.json();
    assert_eq!(v["result"]["content"][0]["text"], "modern");
    assert_eq!(v["result"]["resultType"], "complete");
    let list = modern(
        &url,
        json!({"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"_meta":meta()}}),
        &[],
    )
    .await;
    assert_eq!(list.json()["result"]["ttlMs"], 0);

    // Header and body disagree: 400 / -32020, never forwarded.
    for (h, v) in [
        ("mcp-method", "tools/list"),
        ("mcp-name", "demo__place_order"),
    ] {
        let r = modern(&url, call.clone(), &[(h, v)]).await;
        assert_eq!(r.status, 400, "{h}");
        assert_eq!(r.json()["error"]["code"], -32020, "{h}");
    }
    let r = modern(
        &url,
        call.clone(),
        &[("mcp-name", "=?base64?ZGVtb19fcGxhY2Vfb3JkZXI=?=")],
    )
    .await;
    assert_eq!(r.json()["error"]["code"], -32020);
    // place_order mirrors `symbol` into `Mcp-Param-Symbol` (its schema says `x-mcp-header`).
    let order = json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"demo__place_order",
        "arguments":{"symbol":"EURUSD","side":"buy","quantity":1},"_meta":meta()}});
    let r = modern(&url, order.clone(), &[("mcp-param-symbol", "EURUSD")]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.json()["result"]["structuredContent"]["status"],
        "accepted"
    );
    for bad in [&[("mcp-param-symbol", "BTC/USD")][..], &[]] {
        let r = modern(&url, order.clone(), bad).await;
        assert_eq!(r.status, 400, "{bad:?}");
        assert_eq!(r.json()["error"]["code"], -32020, "{bad:?}");
    }
    // A version the hub does not serve: 400 / -32022 with what it supports.
    let mut future = call.clone();
    future["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    let r = modern(&url, future, &[("mcp-protocol-version", "2099-01-01")]).await;
    assert_eq!(r.status, 400);
    let v = r.json();
    assert_eq!(v["error"]["code"], -32022);
    assert_eq!(v["error"]["data"]["supported"], json!(["2026-07-28"]));
    assert_eq!(v["error"]["data"]["requested"], "2099-01-01");
    // No `_meta` version on a modern request.
    let mut bare = call.clone();
    bare["params"].as_object_mut().unwrap().remove("_meta");
    let r = modern(&url, bare, &[]).await;
    assert_eq!(r.status, 400);
    // Header values with control characters (a bare CR splitting one header into two, DEL)
    // are refused before anything is parsed.
    let body = call.to_string();
    for bad in [
        "demo__echo\rMcp-Name: demo__place_order",
        "demo__echo\u{7f}",
    ] {
        let raw = format!(
            "POST /mcp HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\r\n\
             Mcp-Method: tools/call\r\nMcp-Name: {bad}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            gw.addr,
            body.len()
        );
        let status = raw_status(&gw.addr, raw.as_bytes()).await;
        assert_eq!(status, 400, "{bad:?}");
    }
    // No GET stream in the modern era.
    let g = send(
        http::Method::GET,
        &url,
        &[("mcp-protocol-version", "2026-07-28")],
        "",
    )
    .await;
    assert_eq!(g.status, 405);
    // ping was removed in 2026-07-28.
    let p = modern(
        &url,
        json!({"jsonrpc":"2.0","id":9,"method":"ping","params":{"_meta":meta()}}),
        &[],
    )
    .await;
    assert_eq!(p.status, 404);
    assert_eq!(p.json()["error"]["code"], -32601);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_dying_during_initialize_leaves_the_others_working() {
    // A "server" that reads the initialize line and exits.
    let gw = Gateway::start(
        "hub-dying",
        "[[upstream]]\nname = \"demo\"\nbuiltin = \"demo\"\n\
         [[upstream]]\nname = \"dies\"\ncommand = \"sh\"\nargs = [\"-c\", \"read line; exit 3\"]\n\
         [upstream.sandbox]\nlandlock = \"off\"\n",
    );
    let mut c = Client::connect(gw.url("/mcp"), None).await;
    let tools = c.request("tools/list", json!({})).await;
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"demo__echo"));
    assert!(!names.iter().any(|n| n.starts_with("dies__")));
    assert_eq!(
        c.call("demo__echo", json!({"text": "still"})).await,
        "still"
    );
    assert_eq!(c.call("dies__anything", json!({})).await, "error:MCP-003");
}

#[test]
fn the_gateway_dying_takes_its_children_along() {
    let Some(python) = peer("PALISADE_PYTHON") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut gw = Gateway::start("hub-orphans", &fixture("fix", &python, ""));
    let pid = rt.block_on(async {
        let mut c = Client::connect(gw.url("/mcp"), None).await;
        c.call("fix__whoami", json!({})).await
    });
    let proc_dir = format!("/proc/{pid}");
    assert!(std::path::Path::new(&proc_dir).exists());
    // SIGKILL: the gateway gets no chance to clean up.
    gw.proc.0.kill().unwrap();
    gw.proc.0.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&proc_dir).exists() && Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert!(
        !std::path::Path::new(&proc_dir).exists(),
        "child {pid} outlived the gateway"
    );
}

#[test]
fn upstream_names_that_could_collide_are_refused_at_load() {
    // With `__` as the separator and `_` forbidden in upstream names, `a` + `b_c` and `a_b` + `c`
    // cannot both exist: the second name is a configuration error.
    let dir = tmpdir("hub-names");
    let path = dir.join("c.toml");
    std::fs::write(
        &path,
        "[[upstream]]\nname = \"a\"\nbuiltin = \"demo\"\n[[upstream]]\nname = \"a_b\"\nbuiltin = \"demo\"\n\
         [[upstream]]\nname = \"t\"\ncommand = \"no-such-program-anywhere\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("upstream[1].name"), "{err}");
    assert!(err.contains("upstream[2].command"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn children_are_limited_confined_and_capped() {
    let Some(python) = peer("PALISADE_PYTHON") else {
        return;
    };
    let (ta, ha) = palisade::controls::authn::generate_token();
    let (tb, hb) = palisade::controls::authn::generate_token();
    let gw = Gateway::start(
        "hub-limits",
        &format!(
            "[stdio]\nmax_children = 1\n[auth]\nmethods = [\"bearer\"]\n\
             [[auth.bearer]]\nid = \"alice\"\nsha256 = {ha:?}\n[[auth.bearer]]\nid = \"bob\"\nsha256 = {hb:?}\n\
             {}memory_mb = 512\nmax_open_files = 256\n",
            fixture("fix", &python, "")
        ),
    );
    let mut alice = Client::connect(gw.url("/mcp"), Some(&ta)).await;
    let limits = alice
        .call("fix__read_file", json!({"path": "/proc/self/limits"}))
        .await;
    let line = |name: &str| {
        limits
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} not in {limits}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(line("Max open files")[3..5], ["256", "256"]);
    assert_eq!(line("Max data size")[3..5], ["536870912", "536870912"]);
    assert_eq!(line("Max core file size")[4..6], ["0", "0"]);
    let status = alice
        .call("fix__read_file", json!({"path": "/proc/self/status"}))
        .await;
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    // One child at most: bob's would be the second.
    let mut bob = Client::connect(gw.url("/mcp"), Some(&tb)).await;
    assert_eq!(bob.call("fix__whoami", json!({})).await, "error:MCP-003");
    let events = stdio_events(&gw);
    assert!(
        events
            .iter()
            .any(|e| e.1 == "stdio_start" && e.2 == "too_many_children"),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_upstream_session_is_reinitialised_transparently() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let demo = || spawn_listening(Command::new(BIN).args(["demo-upstream", "--listen", &listen]));
    let (first, _) = demo();
    let gw = Gateway::start(
        "hub-expired",
        &format!("[[upstream]]\nname = \"up\"\nurl = \"http://{listen}/mcp\"\n"),
    );
    let mut c = Client::connect(gw.url("/mcp"), None).await;
    assert_eq!(c.call("up__echo", json!({"text": "one"})).await, "one");
    // A new upstream process knows no session: it answers the hub's old one with 404.
    drop(first);
    let (_second, _) = demo();
    assert_eq!(c.call("up__echo", json!({"text": "two"})).await, "two");
}

/// The JSON-RPC message of a reply: the body, or an SSE stream's last `data:` line.
#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_upstreams_question_reaches_a_modern_client_as_input_required() {
    let Some(python) = peer("PALISADE_PYTHON") else {
        return;
    };
    let (ta, ha) = palisade::controls::authn::generate_token();
    let (tb, hb) = palisade::controls::authn::generate_token();
    let mut gw = Gateway::start(
        "hub-mrtr",
        &format!(
            "[auth]\nmethods = [\"bearer\"]\n[[auth.bearer]]\nid = \"alice\"\nsha256 = {ha:?}\n\
             [[auth.bearer]]\nid = \"bob\"\nsha256 = {hb:?}\n{}",
            fixture("fix", &python, "")
        ),
    );
    let url = gw.url("/mcp");
    let (alice, bob) = (format!("Bearer {ta}"), format!("Bearer {tb}"));
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}}});
    let call = |id: u64, extra: Value| ask_call(id, "fix__ask", "Your name?", &meta, extra);
    // Starts a call that parks on the fixture's question; returns the input_required result.
    let ask = |who: String, id: u64| {
        let (url, body) = (url.clone(), call(id, json!({})));
        async move {
            let r = modern(&url, body, &[("authorization", &who)]).await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            let v = last_message(&r);
            assert_eq!(v["id"], id, "{v}");
            assert!(v["result"].is_object(), "{v}");
            v["result"].clone()
        }
    };
    let answer = json!({"action": "accept", "content": {"name": "Ann"}});

    // The round trip: the question as an input request, the answer in the retry.
    let q = ask(alice.clone(), 1).await;
    assert_eq!(q["resultType"], "input_required", "{q}");
    let (key, req) = q["inputRequests"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    assert_eq!(req["method"], "elicitation/create");
    assert_eq!(req["params"]["message"], "Your name?");
    let state = q["requestState"].as_str().unwrap().to_owned();
    let retry = call(
        2,
        json!({"inputResponses": {key: answer}, "requestState": state}),
    );
    let r = modern(&url, retry.clone(), &[("authorization", &alice)]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let v = last_message(&r);
    assert_eq!(v["id"], 2);
    assert_eq!(v["result"]["content"][0]["text"], "hello Ann", "{v}");
    assert_eq!(v["result"]["resultType"], "complete");

    // A handle is good once.
    let r = modern(&url, retry, &[("authorization", &alice)]).await;
    assert_eq!(
        (r.status.as_u16(), r.json()["error"]["code"].as_i64()),
        (400, Some(-32602))
    );

    // Another principal cannot resume alice's call, and trying does not end it for her.
    let q = ask(alice.clone(), 3).await;
    let (key, _) = q["inputRequests"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    let state = q["requestState"].as_str().unwrap().to_owned();
    let by_bob = call(
        4,
        json!({"inputResponses": {key: answer}, "requestState": state}),
    );
    let r = modern(&url, by_bob.clone(), &[("authorization", &bob)]).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let r = modern(&url, by_bob, &[("authorization", &alice)]).await;
    assert_eq!(
        last_message(&r)["result"]["content"][0]["text"],
        "hello Ann"
    );

    // A handle presented with other arguments (another request) is refused, and the call it
    // named is over.
    let q = ask(alice.clone(), 5).await;
    let (key, _) = q["inputRequests"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    let state = q["requestState"].as_str().unwrap().to_owned();
    let mut other = call(
        6,
        json!({"inputResponses": {key: answer}, "requestState": state}),
    );
    other["params"]["arguments"]["question"] = json!("Something else?");
    let r = modern(&url, other.clone(), &[("authorization", &alice)]).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    other["params"]["arguments"]["question"] = json!("Your name?");
    let r = modern(&url, other, &[("authorization", &alice)]).await;
    assert_eq!(r.status, 400, "{:?}", r.body);

    // Forged and malformed handles.
    for forged in [
        "ph1.00000000000000000000000000000000",
        "ph1.zz",
        "eyJhbGciOiJub25lIn0",
    ] {
        let r = modern(
            &url,
            call(7, json!({"inputResponses": {}, "requestState": forged})),
            &[("authorization", &alice)],
        )
        .await;
        assert_eq!(r.status, 400, "{forged}: {:?}", r.body);
    }

    // A retry without the answer is asked again, under a new handle.
    let q = ask(alice.clone(), 8).await;
    let state = q["requestState"].as_str().unwrap().to_owned();
    let r = modern(
        &url,
        call(
            9,
            json!({"inputResponses": {}, "requestState": state.clone()}),
        ),
        &[("authorization", &alice)],
    )
    .await;
    let again = last_message(&r)["result"].clone();
    assert_eq!(again["resultType"], "input_required", "{again}");
    assert_ne!(again["requestState"], json!(state));
    let (key, _) = again["inputRequests"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    let r = modern(
        &url,
        call(
            10,
            json!({"inputResponses": {key: {"action": "decline"}},
                        "requestState": again["requestState"]}),
        ),
        &[("authorization", &alice)],
    )
    .await;
    assert_eq!(
        last_message(&r)["result"]["content"][0]["text"],
        "no name: decline"
    );

    // A client that did not declare elicitation is not asked: the upstream gets an error.
    let mut undeclared = call(11, json!({}));
    undeclared["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] = json!({});
    let r = modern(&url, undeclared, &[("authorization", &alice)]).await;
    let v = last_message(&r);
    assert!(v["result"]["resultType"] != "input_required", "{v}");

    // Each refusal is audited with its reason.
    gw.stop();
    let reasons: Vec<String> = gw
        .audit_rows()
        .into_iter()
        .filter(|r| r.1 == "deny")
        .map(|r| r.3)
        .collect();
    for want in [
        "request_state_unknown",
        "request_state_other_principal",
        "request_state_other_request",
        "request_state_malformed",
    ] {
        assert!(reasons.iter().any(|r| r == want), "{want}: {reasons:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_modern_client_that_goes_away_cancels_its_upstream_call() {
    let Some(python) = peer("PALISADE_PYTHON") else {
        return;
    };
    let gw = Gateway::start(
        "hub-modern-cancel",
        &format!(
            "[sessions]\nsse_keepalive_secs = 1\n{}",
            fixture("fix", &python, "")
        ),
    );
    let url = gw.url("/mcp");
    let call = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{
        "name":"fix__wait","arguments":{"seconds":60},
        "_meta":{"progressToken":"w-1","io.modelcontextprotocol/protocolVersion":"2026-07-28",
                 "io.modelcontextprotocol/clientCapabilities":{}}}});
    let req = http::Request::post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "fix__wait")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            call.to_string(),
        )))
        .unwrap();
    let client = palisade::upstream::client(Duration::from_secs(2));
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    read_until(&mut body, "notifications/progress").await;
    // The call is running inside the child. The client goes away.
    drop(body);
    drop(client);
    let recall = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{
        "name":"fix__recall","arguments":{"key":"cancelled"},"_meta":meta()}});
    let started = Instant::now();
    loop {
        let r = modern(&url, recall.clone(), &[]).await;
        let v = last_message(&r);
        if v["result"]["content"][0]["text"] == "yes" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the upstream call was not cancelled: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn merged_lists_are_paged_with_cursors_of_their_own() {
    let gw = Gateway::start(
        "hub-pages",
        "[hub]\npage_size = 2\n[[upstream]]\nname = \"demo\"\nbuiltin = \"demo\"\n",
    );
    // The demo's own list, whole, from its proxied route.
    let mut direct = Client::connect(gw.url("/mcp/demo"), None).await;
    let all = direct.request("tools/list", json!({})).await;
    let want: Vec<String> = all["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| format!("demo__{}", t["name"].as_str().unwrap()))
        .collect();
    assert!(want.len() > 2, "{all}");

    let mut c = Client::connect(gw.url("/mcp"), None).await;
    let mut got = Vec::new();
    let mut params = json!({});
    let mut cursors = Vec::new();
    loop {
        let page = c.request("tools/list", params.clone()).await;
        let tools = page["result"]["tools"].as_array().unwrap();
        assert!(tools.len() <= 2, "{page}");
        got.extend(tools.iter().map(|t| t["name"].as_str().unwrap().to_owned()));
        match page["result"]["nextCursor"].as_str() {
            Some(cur) => {
                cursors.push(cur.to_owned());
                params = json!({ "cursor": cur });
            }
            None => break,
        }
    }
    assert_eq!(got, want);
    assert!(!cursors.is_empty());
    // A cursor the hub did not cut is refused.
    for bad in ["hc1.1.0000000000000000", "nonsense"] {
        let r = c.request("tools/list", json!({ "cursor": bad })).await;
        assert_eq!(r["error"]["code"], -32602, "{r}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_outside_any_call_reaches_only_a_session_of_its_owner() {
    let Some(python) = peer("PALISADE_PYTHON") else {
        return;
    };
    let gw = Gateway::start(
        "hub-roots",
        &format!(
            "{}{}",
            fixture("own", &python, ""),
            fixture("shr", &python, "isolation = \"shared\"")
        ),
    );
    let init = INIT.replace(r#""capabilities":{}"#, r#""capabilities":{"roots":{}}"#);
    let mut c = Client::connect_with(gw.url("/mcp"), None, &init).await;
    let req = http::Request::get(gw.url("/mcp"))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &c.sid)
        .header("mcp-protocol-version", "2025-11-25")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let client = palisade::upstream::client(Duration::from_secs(2));
    let listen = client.request(req).await.unwrap();
    assert_eq!(listen.status(), 200);
    let mut listen = listen.into_body();

    // The child's own session (per principal) asks after its call was answered: the request
    // reaches this session's listen stream, and the answer goes back to the child.
    assert_eq!(c.call("own__roots_later", json!({})).await, "later");
    let text = read_until(&mut listen, "roots/list").await;
    let ask = events(&text)
        .into_iter()
        .find(|m| m["method"] == "roots/list")
        .unwrap();
    let answer = json!({"jsonrpc":"2.0","id":ask["id"],
                        "result":{"roots":[{"uri":"file:///work","name":"work"}]}});
    assert_eq!(c.raw(&answer.to_string()).await.status, 202);
    assert_eq!(c.call("own__roots_result", json!({})).await, "file:///work");

    // A shared child's question cannot be attributed to anybody: the hub answers it with an
    // error itself (had it reached a session, the child would still be waiting).
    assert_eq!(c.call("shr__roots_later", json!({})).await, "later");
    let r = c.call("shr__roots_result", json!({})).await;
    assert!(r.starts_with("refused"), "{r}");
}
