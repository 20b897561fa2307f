//! The bundled demo upstream: a small, real MCP server (Streamable HTTP, legacy era:
//! 2025-03-26, 2025-06-18 and 2025-11-25) with trading-flavoured tools. It is what
//! `palisade serve` mounts at `/mcp/demo` out of the box and the fast upstream of the benchmark.
//!
//! It does no security of its own on purpose: it is what the gateway protects. `place_order`
//! only simulates an order; `fetch_url` really fetches.

pub mod conformance;
mod tools;

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rand::RngCore;
use serde_json::{json, Value};
use tokio::net::TcpListener;

const VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];
const MAX_SESSIONS: usize = 10_000;

/// Demo server state.
#[derive(Debug, Default)]
struct Demo {
    sessions: Mutex<(HashSet<String>, VecDeque<String>)>,
    fetcher: tools::Fetcher,
}

/// Serves the demo MCP server at `/mcp` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) {
    let demo = Arc::new(Demo::default());
    accept(listener, move |req| {
        let demo = demo.clone();
        async move { demo.handle(req).await }
    })
    .await
}

/// Accepts connections on `listener` and answers each request with `handle` (HTTP/1.1 and
/// HTTP/2), until the task is dropped. Shared by the demo and conformance servers.
async fn accept<H, Fut, B>(listener: TcpListener, handle: H)
where
    H: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<B>> + Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let handle = handle.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let reply = handle(req);
                async move { Ok::<_, std::convert::Infallible>(reply.await) }
            });
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

/// Binds `addr` and serves in the background; returns the bound address.
pub async fn spawn(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(serve(listener));
    Ok(local)
}

fn respond(
    status: StatusCode,
    body: Option<Value>,
    session: Option<&str>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(
        body.map(|b| Bytes::from(b.to_string())).unwrap_or_default(),
    ));
    *r.status_mut() = status;
    if http_body::Body::size_hint(r.body()).exact() != Some(0) {
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    if let Some(s) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
        r.headers_mut().insert("mcp-session-id", s);
    }
    r
}

fn rpc_error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

impl Demo {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.uri().path() != "/mcp" {
            return respond(StatusCode::NOT_FOUND, None, None);
        }
        let session = req
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match *req.method() {
            Method::POST => {}
            Method::DELETE => {
                let known = session.as_deref().is_some_and(|s| self.end(s));
                return respond(
                    if known {
                        StatusCode::OK
                    } else {
                        StatusCode::NOT_FOUND
                    },
                    None,
                    None,
                );
            }
            _ => return respond(StatusCode::METHOD_NOT_ALLOWED, None, None),
        }
        let body = match Limited::new(req.into_body(), 4 << 20).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return respond(StatusCode::PAYLOAD_TOO_LARGE, None, None),
        };
        let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
            return respond(
                StatusCode::BAD_REQUEST,
                Some(rpc_error(&Value::Null, -32700, "Parse error")),
                None,
            );
        };
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        let Some(method) = msg.get("method").and_then(Value::as_str) else {
            return respond(StatusCode::ACCEPTED, None, None); // a response from the client
        };
        if method == "initialize" {
            let asked = msg
                .pointer("/params/protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or("");
            let version = VERSIONS
                .iter()
                .find(|v| **v == asked)
                .copied()
                .unwrap_or(VERSIONS[0]);
            let sid = self.start();
            let result = json!({
                "protocolVersion": version,
                "capabilities": {"tools": {"listChanged": false}},
                "serverInfo": {"name": "palisade-demo", "version": env!("CARGO_PKG_VERSION")},
                "instructions": "Demo trading tools. place_order is simulated."
            });
            return respond(
                StatusCode::OK,
                Some(json!({"jsonrpc": "2.0", "id": id, "result": result})),
                Some(&sid),
            );
        }
        match session.as_deref() {
            None => {
                return respond(
                    StatusCode::BAD_REQUEST,
                    Some(rpc_error(
                        &Value::Null,
                        -32000,
                        "Bad Request: Server not initialized",
                    )),
                    None,
                )
            }
            Some(s) if !self.known(s) => {
                return respond(
                    StatusCode::NOT_FOUND,
                    Some(rpc_error(&Value::Null, -32001, "Session not found")),
                    None,
                )
            }
            Some(_) => {}
        }
        if msg.get("id").is_none() {
            return respond(StatusCode::ACCEPTED, None, None); // notification
        }
        let reply = match method {
            "ping" => json!({"jsonrpc": "2.0", "id": id, "result": {}}),
            "tools/list" => json!({"jsonrpc": "2.0", "id": id, "result": {"tools": tools::list()}}),
            "tools/call" => {
                let name = msg
                    .pointer("/params/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let args = msg
                    .pointer("/params/arguments")
                    .cloned()
                    .unwrap_or(json!({}));
                match tools::call(&self.fetcher, name, &args).await {
                    Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
                    Err((code, m)) => rpc_error(&id, code, &m),
                }
            }
            _ => rpc_error(&id, -32601, "Method not found"),
        };
        respond(StatusCode::OK, Some(reply), None)
    }

    fn start(&self) -> String {
        let mut b = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut b);
        let sid = hex::encode(b);
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if s.1.len() >= MAX_SESSIONS {
            if let Some(old) = s.1.pop_front() {
                s.0.remove(&old);
            }
        }
        s.0.insert(sid.clone());
        s.1.push_back(sid.clone());
        sid
    }

    fn known(&self, sid: &str) -> bool {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .contains(sid)
    }

    fn end(&self, sid: &str) -> bool {
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let known = s.0.remove(sid);
        s.1.retain(|x| x != sid);
        known
    }
}
