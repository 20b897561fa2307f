//! The conformance upstream: an MCP server offering the test tools, resources and prompts that
//! the server scenarios of the official conformance suite (`@modelcontextprotocol/conformance`)
//! call (`test_simple_text`, `test://static-text`, `test_simple_prompt`, ...). It runs with
//! `palisade demo-upstream --conformance`, so the suite can be scored against it directly and
//! through the gateway (`tests/conformance.rs`).
//!
//! Streamable HTTP at `/mcp`, legacy (stateful) era: `initialize` mints a session and `DELETE`
//! ends it. Tools that talk to the client while they run (progress, logging, sampling,
//! elicitation) answer their `tools/call` POST with an SSE stream carrying those messages and
//! then the result; the client answers a server→client request with a POST on the same session,
//! which is routed back to the waiting call by its id. It serves localhost only: a request whose
//! `Host` or `Origin` is not a loopback name is refused (DNS-rebinding protection).

mod content;
mod tools;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use rand::RngCore;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use super::{rpc_error, VERSIONS};
use crate::app::body::{self, Body};

const MAX_SESSIONS: usize = 1000;
const MAX_BODY: usize = 4 << 20;
/// Log levels in increasing severity (`logging/setLevel`, `notifications/message`).
const LEVELS: &[&str] = &[
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// A JSON-RPC error: code, message and optional `data`.
#[derive(Debug)]
struct RpcError(i64, String, Option<Value>);

type RpcResult = Result<Value, RpcError>;

fn invalid_params(why: impl Into<String>) -> RpcError {
    RpcError(-32602, format!("Invalid params: {}", why.into()), None)
}

/// The JSON-RPC response to request `id`.
fn reply(id: &Value, r: RpcResult) -> Value {
    match r {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(RpcError(code, message, data)) => {
            let mut v = rpc_error(id, code, &message);
            if let Some(d) = data {
                v["error"]["data"] = d;
            }
            v
        }
    }
}

/// One client session.
#[derive(Debug)]
struct Session {
    /// The capabilities the client declared in `initialize`.
    client_caps: Value,
    /// Index into [`LEVELS`]: `notifications/message` below it are not sent.
    log_level: AtomicUsize,
    /// Id of the next server→client request.
    next_id: AtomicI64,
    /// Server→client requests waiting for the client's answer, by id.
    pending: Mutex<HashMap<i64, oneshot::Sender<Value>>>,
    /// Subscribed resource URIs.
    subscriptions: Mutex<HashSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Session {
    /// Routes a response the client POSTed to the call waiting for it; unknown ids are ignored.
    fn answer(&self, msg: Value) {
        let waiting = msg
            .get("id")
            .and_then(Value::as_i64)
            .and_then(|id| lock(&self.pending).remove(&id));
        if let Some(tx) = waiting {
            let _ = tx.send(msg);
        }
    }

    fn set_level(&self, params: &Value) -> RpcResult {
        let level = params.get("level").and_then(Value::as_str).unwrap_or("");
        let i = LEVELS
            .iter()
            .position(|l| *l == level)
            .ok_or_else(|| invalid_params(format!("unknown log level {level:?}")))?;
        self.log_level.store(i, Ordering::Relaxed);
        Ok(json!({}))
    }

    fn subscribe(&self, params: &Value, on: bool) -> RpcResult {
        let uri = params
            .get("uri")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid_params("uri is required"))?;
        let mut subs = lock(&self.subscriptions);
        if on {
            subs.insert(uri.to_owned());
        } else {
            subs.remove(uri);
        }
        Ok(json!({}))
    }
}

/// Live sessions by id, and their ids oldest first (the oldest is evicted at the cap).
#[derive(Debug, Default)]
struct Sessions {
    live: HashMap<String, Arc<Session>>,
    order: VecDeque<String>,
}

#[derive(Debug, Default)]
struct Server {
    sessions: Mutex<Sessions>,
}

/// Serves the conformance MCP server at `/mcp` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) {
    let server = Arc::new(Server::default());
    super::accept(listener, move |req| {
        let server = server.clone();
        async move { server.handle(req).await }
    })
    .await
}

fn respond(status: StatusCode, msg: Option<Value>) -> Response<Body> {
    let mut r = Response::new(match &msg {
        Some(v) => body::full(v.to_string()),
        None => body::empty(),
    });
    *r.status_mut() = status;
    if msg.is_some() {
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    r
}

/// An HTTP-level refusal, with a JSON-RPC error without id (the message was not processed).
fn refuse(status: StatusCode, code: i64, message: &str) -> Response<Body> {
    respond(status, Some(rpc_error(&Value::Null, code, message)))
}

/// An SSE response fed from `rx` (each item one complete event).
fn sse(rx: mpsc::Receiver<Bytes>) -> Response<Body> {
    let mut r = Response::new(body::from_channel(rx));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// The host part of `host[:port]` or `[v6][:port]`.
fn host_of(authority: &str) -> &str {
    match authority.strip_prefix('[') {
        Some(rest) => rest
            .find(']')
            .map_or(authority, |end| &authority[..end + 2]),
        None => authority.split(':').next().unwrap_or(authority),
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host == "127.0.0.1" || host == "[::1]"
}

/// DNS-rebinding guard: `Host` (or the HTTP/2 authority) and any `Origin` must name localhost.
fn local_request<B>(req: &Request<B>) -> bool {
    let host = match req.headers().get(header::HOST) {
        Some(h) => h.to_str().ok(),
        None => req.uri().authority().map(|a| a.as_str()),
    };
    let origin_ok = match req.headers().get(header::ORIGIN) {
        None => true,
        Some(o) => o
            .to_str()
            .ok()
            .and_then(|o| o.strip_prefix("http://").or(o.strip_prefix("https://")))
            .is_some_and(|rest| !rest.contains('/') && is_loopback(host_of(rest))),
    };
    host.is_some_and(|h| is_loopback(host_of(h))) && origin_ok
}

fn session_header(h: &HeaderMap) -> Option<&str> {
    h.get("mcp-session-id").and_then(|v| v.to_str().ok())
}

impl Server {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        if req.uri().path() != "/mcp" {
            return respond(StatusCode::NOT_FOUND, None);
        }
        if !local_request(&req) {
            return refuse(
                StatusCode::FORBIDDEN,
                -32000,
                "Forbidden: Host or Origin is not local",
            );
        }
        match *req.method() {
            Method::POST => self.post(req).await,
            Method::DELETE => {
                let ended = session_header(req.headers()).is_some_and(|s| self.end(s));
                let status = if ended {
                    StatusCode::OK
                } else {
                    StatusCode::NOT_FOUND
                };
                respond(status, None)
            }
            // No standalone listen stream: every server→client message rides a POST's stream.
            _ => {
                let mut r = respond(StatusCode::METHOD_NOT_ALLOWED, None);
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("POST, DELETE"));
                r
            }
        }
    }

    async fn post(&self, req: Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let bytes = match Limited::new(body, MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return respond(StatusCode::PAYLOAD_TOO_LARGE, None),
        };
        let msg = match serde_json::from_slice::<Value>(&bytes) {
            Ok(m) if m.is_object() => m,
            Ok(_) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    -32600,
                    "Invalid Request: one message per POST",
                )
            }
            Err(_) => return refuse(StatusCode::BAD_REQUEST, -32700, "Parse error"),
        };
        let method = msg.get("method").and_then(Value::as_str);
        let id = msg.get("id").cloned();
        if method == Some("initialize") {
            return self.initialize(id.unwrap_or(Value::Null), &msg);
        }
        let session = match session_header(&parts.headers) {
            None => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    -32000,
                    "Bad Request: no session id",
                )
            }
            Some(sid) => match lock(&self.sessions).live.get(sid) {
                Some(s) => s.clone(),
                None => return refuse(StatusCode::NOT_FOUND, -32001, "Session not found"),
            },
        };
        let version = parts.headers.get("mcp-protocol-version");
        if version.is_some_and(|v| !VERSIONS.iter().any(|s| v.as_bytes() == s.as_bytes())) {
            return refuse(
                StatusCode::BAD_REQUEST,
                -32000,
                "Bad Request: unsupported protocol version",
            );
        }
        let (method, id) = match (method, id) {
            (Some(m), Some(id)) => (m, id),
            // A notification: nothing to answer.
            (Some(_), None) => return respond(StatusCode::ACCEPTED, None),
            // The client's answer to one of our requests.
            (None, Some(_)) if msg.get("result").is_some() || msg.get("error").is_some() => {
                session.answer(msg);
                return respond(StatusCode::ACCEPTED, None);
            }
            (None, _) => return refuse(StatusCode::BAD_REQUEST, -32600, "Invalid Request"),
        };
        let params = msg.get("params").cloned().unwrap_or_else(|| json!({}));
        if method == "tools/call" {
            return tools::call(session, id, &params);
        }
        let result = match method {
            "ping" => Ok(json!({})),
            "logging/setLevel" => session.set_level(&params),
            "tools/list" => Ok(json!({"tools": tools::list()})),
            "resources/list" => Ok(json!({"resources": content::resources()})),
            "resources/templates/list" => {
                Ok(json!({"resourceTemplates": content::resource_templates()}))
            }
            "resources/read" => content::read(&params),
            "resources/subscribe" => session.subscribe(&params, true),
            "resources/unsubscribe" => session.subscribe(&params, false),
            "prompts/list" => Ok(json!({"prompts": content::prompts()})),
            "prompts/get" => content::prompt(&params),
            "completion/complete" => content::complete(&params),
            _ => Err(RpcError(-32601, "Method not found".into(), None)),
        };
        respond(StatusCode::OK, Some(reply(&id, result)))
    }

    fn initialize(&self, id: Value, msg: &Value) -> Response<Body> {
        let asked = msg
            .pointer("/params/protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let version = VERSIONS
            .iter()
            .find(|v| **v == asked)
            .copied()
            .unwrap_or(VERSIONS[0]);
        let session = Session {
            client_caps: msg
                .pointer("/params/capabilities")
                .cloned()
                .unwrap_or_else(|| json!({})),
            log_level: AtomicUsize::new(1), // info
            next_id: AtomicI64::new(0),
            pending: Mutex::default(),
            subscriptions: Mutex::default(),
        };
        let sid = self.start(session);
        let result = json!({
            "protocolVersion": version,
            "capabilities": {
                "tools": {"listChanged": false},
                "resources": {"subscribe": true, "listChanged": false},
                "prompts": {"listChanged": false},
                "logging": {},
                "completions": {}
            },
            "serverInfo": {"name": "palisade-conformance", "version": env!("CARGO_PKG_VERSION")},
            "instructions": "Test tools, resources and prompts for the MCP conformance suite."
        });
        let mut r = respond(StatusCode::OK, Some(reply(&id, Ok(result))));
        if let Ok(v) = HeaderValue::from_str(&sid) {
            r.headers_mut().insert("mcp-session-id", v);
        }
        r
    }

    /// Registers a session and returns its id (128 random bits, hex: visible ASCII).
    fn start(&self, session: Session) -> String {
        let mut b = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut b);
        let sid = hex::encode(b);
        let mut s = lock(&self.sessions);
        if s.order.len() >= MAX_SESSIONS {
            if let Some(old) = s.order.pop_front() {
                s.live.remove(&old);
            }
        }
        s.live.insert(sid.clone(), Arc::new(session));
        s.order.push_back(sid.clone());
        sid
    }

    /// Ends a session; its waiting calls see their requests fail.
    fn end(&self, sid: &str) -> bool {
        let mut s = lock(&self.sessions);
        let Some(session) = s.live.remove(sid) else {
            return false;
        };
        s.order.retain(|x| x != sid);
        lock(&session.pending).clear();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(host: Option<&str>, origin: Option<&str>) -> Request<()> {
        let mut b = Request::builder().uri("/mcp");
        if let Some(h) = host {
            b = b.header(header::HOST, h);
        }
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn only_local_hosts_and_origins_are_served() {
        assert!(local_request(&req(Some("127.0.0.1:8701"), None)));
        assert!(local_request(&req(
            Some("localhost"),
            Some("http://localhost:3000")
        )));
        assert!(local_request(&req(Some("[::1]:80"), Some("https://[::1]"))));
        assert!(!local_request(&req(Some("evil.example.com"), None)));
        assert!(!local_request(&req(
            Some("127.0.0.1:1"),
            Some("http://evil.example.com")
        )));
        assert!(!local_request(&req(
            Some("127.0.0.1:1"),
            Some("http://127.0.0.1.evil.com")
        )));
        assert!(!local_request(&req(Some("127.0.0.1"), Some("null"))));
        assert!(!local_request(&req(None, None)));
    }

    #[test]
    fn errors_carry_their_data() {
        let v = reply(
            &json!(7),
            Err(RpcError(-32002, "x".into(), Some(json!({"uri": "u"})))),
        );
        assert_eq!(v["id"], 7);
        assert_eq!(v["error"]["code"], -32002);
        assert_eq!(v["error"]["data"]["uri"], "u");
    }
}
