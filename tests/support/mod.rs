//! Test support: the real `palisade` binary in a temp dir, a scripted upstream, an HTTP client.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

pub mod hub;

pub const BIN: &str = env!("CARGO_BIN_EXE_palisade");

fn fresh_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("palisade-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A test's scratch directory, `$TMPDIR/palisade-it-<name>-<pid>`: removed when dropped by a
/// passing test, kept by a failing one for the post-mortem.
pub struct Scratch(PathBuf);

pub fn tmpdir(name: &str) -> Scratch {
    Scratch(fresh_dir(name))
}

impl std::ops::Deref for Scratch {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl AsRef<std::path::Path> for Scratch {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for Scratch {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A file in a [`Scratch`] directory, which goes with it.
pub struct ScratchFile {
    path: PathBuf,
    _dir: Scratch,
}

impl AsRef<std::path::Path> for ScratchFile {
    fn as_ref(&self) -> &std::path::Path {
        &self.path
    }
}

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a command that prints `listening on http://ADDR...` on stdout; returns it and ADDR.
pub fn spawn_listening(cmd: &mut Command) -> (Proc, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = lines.next().expect("process printed nothing").unwrap();
    let addr = line
        .strip_prefix("listening on http://")
        .or_else(|| line.strip_prefix("listening on https://"))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Proc(child), addr)
}

/// The gateway started with `config` (TOML text, without `listen`), in its own data dir.
pub struct Gateway {
    pub proc: Proc,
    pub addr: String,
    pub dir: PathBuf,
}

/// Authorization for tests about something else (authentication, transport, the hub): every
/// role those tests' credentials carry, and principals without roles, may do everything.
/// Authorization itself is tested with real rules (`tests/authz.rs`).
pub const ALLOW_ALL: &str = "\n[authz]\ndefault_role = \"any\"\n\
    [authz.roles.any]\npermissions = [\"*\"]\n\
    [authz.roles.trader]\ninherits = [\"any\"]\n\
    [authz.roles.admin]\ninherits = [\"any\"]\n\
    [authz.roles.user]\ninherits = [\"any\"]\n\
    [authz.roles.position_manager]\ninherits = [\"any\"]\n";

/// The SSRF guard refuses the gateway's own fetches from loopback: tests whose identity
/// provider or token endpoint runs on 127.0.0.1 allow it, as an operator with an internal IdP
/// allows its network.
pub const LOCAL_IDP: &str = "[ssrf]\nallow_cidrs = [\"127.0.0.1/32\"]\n";

/// `config` with [`ALLOW_ALL`] appended when it authenticates and has no `[authz]` of its own.
pub fn with_authz(config: &str) -> String {
    if config.contains("[auth") && !config.contains("[authz") {
        format!("{config}{ALLOW_ALL}")
    } else {
        config.to_owned()
    }
}

/// Auto-block is tested in `tests/abuse.rs`. Tests that perform many attacks on other
/// controls from 127.0.0.1 would otherwise block their own address halfway through, so
/// [`Gateway::start`] turns it off for configs without an `[abuse]` table of their own.
pub const NO_AUTO_BLOCK: &str = "\n[abuse]\nauto_block = false\n";

impl Gateway {
    pub fn start(name: &str, config: &str) -> Gateway {
        let config = &if config.contains("[abuse]") {
            config.to_owned()
        } else {
            format!("{config}{NO_AUTO_BLOCK}")
        };
        let dir = fresh_dir(name);
        let path = dir.join("palisade.toml");
        std::fs::write(
            &path,
            format!(
                "data_dir = {:?}\n{}",
                dir.join("data").display().to_string(),
                with_authz(config)
            ),
        )
        .unwrap();
        let (proc, addr) = spawn_listening(
            Command::new(BIN)
                .args(["serve", "--config"])
                .arg(&path)
                .args(["--listen", "127.0.0.1:0"])
                .env("RUST_LOG", "warn"),
        );
        Gateway { proc, addr, dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops the gateway with SIGTERM and waits, so the audit trail is flushed.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.proc.0.id().to_string()])
            .status();
        let _ = self.proc.0.wait();
    }

    pub fn db(&self) -> PathBuf {
        self.dir.join("data").join("audit.db")
    }

    /// Audit rows as (rpc_method, decision, control, reason, status, error_code), in order.
    pub fn audit_rows(&self) -> Vec<AuditRow> {
        let conn = rusqlite::Connection::open(self.db()).unwrap();
        let mut stmt = conn.prepare("SELECT rpc_method, decision, control, reason, status, error_code FROM audit ORDER BY seq").unwrap();
        stmt.query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }
}

impl Drop for Gateway {
    /// A passing test leaves nothing behind in the temporary directory; a failing one keeps its
    /// data dir (config, audit trail, pin files) for the post-mortem.
    fn drop(&mut self) {
        let _ = self.proc.0.kill();
        let _ = self.proc.0.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// (rpc_method, decision, control, reason, status, error_code) of one audit record.
pub type AuditRow = (Option<String>, String, String, String, u16, Option<String>);

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn code(&self) -> String {
        self.json()["error"]["data"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    pub fn session(&self) -> Option<String> {
        self.headers
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_owned())
    }
}

/// One HTTP/1.1 connection driven by hand: a test decides when each byte is written and when
/// the answer is read (e.g. part of a body, then the answer, then the rest of the body).
pub struct RawConn {
    stream: tokio::net::TcpStream,
    authority: String,
    path: String,
    buf: Vec<u8>,
}

impl RawConn {
    pub async fn connect(url: &str) -> RawConn {
        let uri: http::Uri = url.parse().unwrap();
        let authority = uri.authority().unwrap().as_str().to_owned();
        RawConn {
            stream: tokio::net::TcpStream::connect(&authority).await.unwrap(),
            path: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
            authority,
            buf: Vec::new(),
        }
    }

    /// Writes a POST head declaring `declared` body bytes (and an MCP `Accept` unless given).
    pub async fn head(&mut self, headers: &[(&str, &str)], declared: usize) {
        let mut head = format!(
            "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-length: {declared}\r\n",
            self.path, self.authority
        );
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("accept"))
        {
            head.push_str("accept: application/json, text/event-stream\r\n");
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        self.write(head.as_bytes()).await.unwrap();
    }

    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await
    }

    /// Reads one answer (a head, then as many body bytes as it announces).
    pub async fn reply(&mut self) -> Reply {
        let end = loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            read_more(&mut self.stream, &mut self.buf, "answer").await;
        };
        let text = std::str::from_utf8(&self.buf[..end]).unwrap();
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap();
        let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut headers = HeaderMap::new();
        for line in lines {
            let (k, v) = line.split_once(':').unwrap();
            headers.append(
                http::header::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
                v.trim().parse().unwrap(),
            );
        }
        let status = StatusCode::from_u16(status).unwrap();
        let body_at = end + 4;
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("an answer with a content-length");
        while self.buf.len() < body_at + length {
            read_more(&mut self.stream, &mut self.buf, "body").await;
        }
        let body = Bytes::copy_from_slice(&self.buf[body_at..body_at + length]);
        self.buf.drain(..body_at + length);
        Reply {
            status,
            headers,
            body,
        }
    }
}

/// A POST that declares a `Content-Length` of `declared` bytes in its head and sends none of
/// them, then reads the answer: for a refusal on the declared length alone.
pub async fn send_declared_only(url: &str, headers: &[(&str, &str)], declared: usize) -> Reply {
    let mut conn = RawConn::connect(url).await;
    conn.head(headers, declared).await;
    conn.reply().await
}

/// Appends what `stream` sends next to `buf`; panics on a close or a 10 s silence.
async fn read_more(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>, waiting_for: &str) {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
        .await
        .unwrap_or_else(|_| panic!("no {waiting_for} within 10 s"))
        .expect("read failed");
    assert!(n > 0, "connection closed before the {waiting_for}");
    buf.extend_from_slice(&chunk[..n]);
}

pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    try_send(method, url, headers, body)
        .await
        .expect("request failed")
}

/// [`send`], for a request whose connection may fail.
pub async fn try_send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Reply, String> {
    let client = palisade::upstream::client(Duration::from_secs(2));
    let mut b = Request::builder().method(method).uri(url);
    let mut has_accept = false;
    for (k, v) in headers {
        has_accept |= k.eq_ignore_ascii_case("accept");
        b = b.header(*k, *v);
    }
    if !has_accept {
        b = b.header("accept", "application/json, text/event-stream");
    }
    let resp = client
        .request(b.body(Full::new(body.into())).unwrap())
        .await
        .map_err(|e| e.to_string())?;
    let (parts, body) = resp.into_parts();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.map_err(|e| e.to_string())?.to_bytes(),
    })
}

pub async fn post(url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut h = vec![("content-type", "application/json")];
    h.extend_from_slice(headers);
    send(Method::POST, url, &h, body.to_owned()).await
}

const CATALOGUE: &str = "gateway-catalogue-session";

/// The scripted upstream's `tools/list` answer: any arguments, except `echo` (a string `text`;
/// its description is whatever the test last set) and `broken` (a schema that does not
/// compile).
fn scripted_tools(id: &serde_json::Value, echo_description: &str) -> serde_json::Value {
    let tools: Vec<_> = SCRIPTED_TOOLS
        .iter()
        .map(|n| match *n {
            "echo" if !echo_description.is_empty() => serde_json::json!({"name": n,
                "description": echo_description, "inputSchema": {"type": "object",
                "properties": {"text": {"type": "string"}}, "required": ["text"]}}),
            "echo" => serde_json::json!({"name": n, "inputSchema": {"type": "object",
                "properties": {"text": {"type": "string"}}, "required": ["text"]}}),
            "broken" => serde_json::json!({"name": n, "inputSchema": {"type": 12}}),
            "fetch" => serde_json::json!({"name": n, "inputSchema": {"type": "object",
                "properties": {"url": {"type": "string", "format": "uri"}}}}),
            "typed" => serde_json::json!({"name": n, "inputSchema": {"type": "object"},
                "outputSchema": {"type": "object", "properties": {"price": {"type": "number"}},
                    "required": ["price"]}}),
            _ => serde_json::json!({"name": n, "inputSchema": {"type": "object"}}),
        })
        .collect();
    serde_json::json!({"jsonrpc":"2.0","id":id,"result":{"tools":tools}})
}

/// Every tool name the scripted upstream reacts to, as it lists them (any arguments).
const SCRIPTED_TOOLS: &[&str] = &[
    "twice",
    "both",
    "both_sse",
    "die",
    "wrong_id",
    "http400",
    "headers",
    "echo",
    "slow",
    "x",
    "a",
    "place_order",
    "cancel_order",
    "get_quote",
    "broken",
    "leak",
    "leak_sse",
    "typed",
    "fetch",
    "hang",
];

/// What the scripted `leak` tools answer: one secret of each kind, and lookalikes that are not
/// secrets (a nanosecond timestamp, an order number, a number failing Luhn).
pub const LEAK_TEXT: &str = "aws AKIAIOSFODNN7EXAMPLE; key -----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----; jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz; card 4111 1111 1111 1111; gh ghp_abcdefghijklmnopqrstuvwxyz0123456789; ts 1732300000000000000; order 12345678901234; almost 4111 1111 1111 1112";

/// The `leak` tools' result.
pub fn leak_result() -> serde_json::Value {
    serde_json::json!({"content": [{"type": "text", "text": LEAK_TEXT}],
        "structuredContent": {"card": 4111111111111111u64, "ts": 1732300000000000000u64}})
}

pub const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"it","version":"0"}}}"#;

/// A scripted upstream: counts every request it sees and misbehaves on demand, by tool name.
#[derive(Clone, Default)]
pub struct Scripted {
    pub seen: Arc<AtomicUsize>,
    pub bodies: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    /// The description `echo` is listed with (a test changes it to play a rug pull).
    pub echo_description: Arc<Mutex<String>>,
    /// When non-zero, every client request is answered with this HTTP status (an upstream
    /// that is down behind its own proxy, or overloaded).
    pub fail_status: Arc<std::sync::atomic::AtomicU16>,
}

impl Scripted {
    pub async fn start() -> (Scripted, SocketAddr) {
        let s = Scripted::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let st = s.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let st = st.clone();
                        async move { Ok::<_, std::convert::Infallible>(st.handle(req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (s, addr)
    }

    pub fn count(&self) -> usize {
        self.seen.load(Ordering::SeqCst)
    }

    fn catalogue(&self, parts: &http::request::Parts, body: &[u8]) -> Response<Full<Bytes>> {
        let msg: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let reply = |v: serde_json::Value| {
            Response::builder()
                .header("content-type", "application/json")
                .header("mcp-session-id", CATALOGUE)
                .body(Full::new(Bytes::from(v.to_string())))
                .unwrap()
        };
        let id = msg["id"].clone();
        match msg["method"].as_str() {
            _ if parts.method != Method::POST => Response::builder()
                .status(405)
                .body(Full::new(Bytes::new()))
                .unwrap(),
            Some("initialize") => reply(
                serde_json::json!({"jsonrpc":"2.0","id":id,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"scripted","version":"0"}}}),
            ),
            Some("tools/list") => {
                reply(scripted_tools(&id, &self.echo_description.lock().unwrap()))
            }
            _ => Response::builder()
                .status(202)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        }
    }

    async fn handle(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        // The gateway's own session (it lists the tools to validate calls on a proxied route)
        // gets its own id and is not counted: `count` is what clients' requests caused.
        let catalogue = parts
            .headers
            .get("mcp-session-id")
            .is_some_and(|v| v == CATALOGUE)
            || serde_json::from_slice::<serde_json::Value>(&body)
                .is_ok_and(|m| m["params"]["clientInfo"]["name"] == "palisade");
        if catalogue {
            return self.catalogue(&parts, &body);
        }
        self.seen.fetch_add(1, Ordering::SeqCst);
        self.bodies
            .lock()
            .unwrap()
            .push((parts.headers.clone(), body.clone()));
        let msg: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let id = msg["id"].clone();
        let json = |status: u16, v: serde_json::Value, sid: Option<&str>| {
            let mut r = Response::builder()
                .status(status)
                .header("content-type", "application/json");
            if let Some(s) = sid {
                r = r.header("mcp-session-id", s);
            }
            r.body(Full::new(Bytes::from(v.to_string()))).unwrap()
        };
        let sse = |events: String| {
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Full::new(Bytes::from(events)))
                .unwrap()
        };
        let failing = self.fail_status.load(Ordering::SeqCst);
        if failing != 0 {
            return Response::builder()
                .status(failing)
                .header("retry-after", "7")
                .body(Full::new(Bytes::from_static(b"unavailable")))
                .unwrap();
        }
        if parts.method != Method::POST {
            return Response::builder()
                .status(405)
                .body(Full::new(Bytes::new()))
                .unwrap();
        }
        match (msg["method"].as_str(), msg["params"]["name"].as_str()) {
            (Some("initialize"), _) => json(
                200,
                serde_json::json!({"jsonrpc":"2.0","id":id,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"scripted","version":"0"}}}),
                Some("upstream-secret-session"),
            ),
            (None, _) | (Some(_), _) if msg.get("id").is_none() => Response::builder().status(202).body(Full::new(Bytes::new())).unwrap(),
            (Some("tools/list"), _) => json(200, scripted_tools(&id, &self.echo_description.lock().unwrap().clone()), None),
            (Some("tools/call"), Some("twice")) => sse(format!(
                "id: p1\ndata:\n\nretry: 1000\n\nevent: message\ndata: {{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"n\":1}}}}\n\nevent: message\ndata: {{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"n\":2}}}}\n\n"
            )),
            (Some("tools/call"), Some("both")) => json(200, serde_json::json!({"jsonrpc":"2.0","id":id,"result":{},"error":{"code":1,"message":"x"}}), None),
            (Some("tools/call"), Some("both_sse")) => sse(format!(
                "event: message\ndata: {{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{}},\"error\":{{\"code\":1,\"message\":\"x\"}}}}\n\n"
            )),
            (Some("tools/call"), Some("die")) => sse("event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":1}}\n\n".into()),
            (Some("tools/call"), Some("wrong_id")) => json(200, serde_json::json!({"jsonrpc":"2.0","id":"other","result":{}}), None),
            (Some("tools/call"), Some("http400")) => json(400, serde_json::json!({"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"Bad Request: Server not initialized"}}), None),
            (Some("tools/call"), Some("hang")) => {
                std::future::pending::<()>().await;
                unreachable!()
            }
            (Some("tools/call"), Some("leak")) => json(200, serde_json::json!({"jsonrpc":"2.0","id":id,"result":leak_result()}), None),
            (Some("tools/call"), Some("leak_sse")) => sse(format!(
                "event: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progressToken\":1,\"progress\":1}}}}\n\nevent: message\ndata: {}\n\n",
                serde_json::json!({"jsonrpc":"2.0","id":id,"result":leak_result()})
            )),
            (Some("tools/call"), Some("typed")) => json(200, serde_json::json!({"jsonrpc":"2.0","id":id,"result":{"content":[],"structuredContent":{"price":msg["params"]["arguments"]["price"]}}}), None),
            (Some("tools/call"), Some("headers")) => {
                let seen: serde_json::Map<_, _> = parts.headers.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(v.to_str().unwrap_or("?")))).collect();
                json(200, serde_json::json!({"jsonrpc":"2.0","id":id,"result":{"headers":seen}}), None)
            }
            _ => json(200, serde_json::json!({"jsonrpc":"2.0","id":id,"result":{"ok":true}}), None),
        }
    }
}

impl Gateway {
    /// Audit rows as (principal, auth_method, decision, reason), in order.
    pub fn principal_rows(&self) -> Vec<(String, String, String, String)> {
        let conn = rusqlite::Connection::open(self.db()).unwrap();
        let mut stmt = conn
            .prepare("SELECT principal, auth_method, decision, reason FROM audit ORDER BY seq")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A peer installed by `scripts/test.sh`, named by an environment variable. Absent: the test
/// is skipped, unless `PALISADE_REQUIRE_PEERS` is set (CI), where it fails.
pub fn peer(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) => Some(v),
        Err(_) if std::env::var("PALISADE_REQUIRE_PEERS").is_ok() => panic!("{var} is not set"),
        Err(_) => {
            eprintln!("skipping: {var} not set (run scripts/test.sh)");
            None
        }
    }
}

/// Serves `handler` on a free loopback port in the background; returns the address.
pub async fn http_server<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let f = handler(req);
                    async move { Ok::<_, std::convert::Infallible>(f.await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

/// A gateway served in this process on `clock` (so tests move time instead of sleeping):
/// its MCP URL for route `s`, its audit database (its directory removed with it), and a sender
/// that stops it.
pub async fn in_process(
    name: &str,
    toml: &str,
    clock: &palisade::clock::ManualClock,
) -> (
    String,
    ScratchFile,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let dir = tmpdir(name);
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n{toml}",
        dir.join("data").display().to_string()
    );
    let cfg = palisade::config::parse(&text, name, &|_| None).unwrap();
    let running = palisade::run::start_with_clock(cfg, None, std::sync::Arc::new(clock.clone()))
        .await
        .unwrap();
    let url = format!("http://{}/mcp/s", running.addr);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(running.serve(async {
        let _ = stopped.await;
    }));
    let db = ScratchFile {
        path: dir.join("data").join("audit.db"),
        _dir: dir,
    };
    (url, db, stop, task)
}
