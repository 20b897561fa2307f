//! The operator API, on its own listener (loopback by default): blocks and quarantines.
//!
//! ```text
//! GET  /admin/holds                 every block and quarantine in force (JSON)
//! POST /admin/blocks/release        {"who": "ip:203.0.113.9"}      lifts a block
//! POST /admin/quarantine/release    {"who": "principal:agent-7"}   releases a quarantine
//! ```
//! Every request authenticates with `auth.methods` (a bearer token or JWT) and needs the
//! permission `admin:blocks:read|write` or `admin:quarantine:read|write`; every request is
//! audited (transport `admin`). The listener's address is written to `<data_dir>/admin.addr`
//! for `palisade blocks` and `palisade quarantine`.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use super::body::{self, Body};
use super::Shared;
use crate::audit::{AuditRecord, Decision, Text};
use crate::controls::abuse::{HoldView, Offender};

/// The file the admin listener's address is written to.
pub fn addr_file(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("admin.addr")
}

/// Serves the admin API on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, gw: Shared) {
    let builder = Arc::new(hyper_util::server::conn::auto::Builder::new(
        TokioExecutor::new(),
    ));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, say: do not spin.
                tracing::warn!(target: "palisade::admin", error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let gw = gw.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let gw = gw.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(gw, req, peer).await) }
            });
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

/// What an admin request asks for.
enum Op {
    List,
    Release { quarantine: bool },
}

async fn handle(gw: Shared, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let ip = crate::controls::network::canonical(peer.ip());
    let op = match (req.method(), req.uri().path()) {
        (&Method::GET, "/admin/holds") => Op::List,
        (&Method::POST, "/admin/blocks/release") => Op::Release { quarantine: false },
        (&Method::POST, "/admin/quarantine/release") => Op::Release { quarantine: true },
        _ => return reply(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#.into()),
    };
    // DNS rebinding: a browser page must not drive the operator API.
    if req.headers().contains_key(header::ORIGIN) {
        audit(&gw, ip, "", "origin_refused", Decision::Deny);
        return reply(StatusCode::FORBIDDEN, r#"{"error":"forbidden"}"#.into());
    }
    let now_ms = gw.clock.now_ms();
    let (parts, body) = req.into_parts();
    let principal = match gw.authn.begin_admin(&parts, ip, now_ms / 1000).await {
        Ok(p) => p.finish(&parts, &[], now_ms / 1000),
        Err(e) => Err(e),
    };
    let principal = match principal {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(target: "palisade::admin", %ip, error = %e, "admin request refused");
            audit(&gw, ip, "", "unauthenticated", Decision::Deny);
            return reply(
                StatusCode::UNAUTHORIZED,
                r#"{"error":"authentication required"}"#.into(),
            );
        }
    };
    let who = principal.id().clone();
    let (resource, verb) = match op {
        Op::List => ("blocks", "read"),
        Op::Release { quarantine: false } => ("blocks", "write"),
        Op::Release { quarantine: true } => ("quarantine", "write"),
    };
    let allowed = gw.authz.permits(&principal, &["admin", resource, verb])
        // Listing shows quarantines too: either read permission will do.
        || (matches!(op, Op::List) && gw.authz.permits(&principal, &["admin", "quarantine", "read"]));
    if !allowed {
        audit(&gw, ip, &who, "no_permission", Decision::Deny);
        return reply(StatusCode::FORBIDDEN, r#"{"error":"forbidden"}"#.into());
    }
    match op {
        Op::List => {
            let holds: Vec<HoldView> = gw.abuse.list(now_ms).iter().map(HoldView::from).collect();
            audit(&gw, ip, &who, "listed", Decision::Allow);
            let text = serde_json::json!({ "holds": holds }).to_string();
            reply(StatusCode::OK, text)
        }
        Op::Release { quarantine } => {
            let target = crate::controls::body::read(&parts.headers, body, 4096)
                .await
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v.get("who")?.as_str().and_then(Offender::parse));
            let Some(target) = target else {
                audit(&gw, ip, &who, "bad_request", Decision::Deny);
                return reply(
                    StatusCode::BAD_REQUEST,
                    r#"{"error":"expected {\"who\": \"ip:ADDR\" or \"principal:ID\"}"}"#.into(),
                );
            };
            if gw.abuse.release(&target, quarantine, &who) {
                reply(
                    StatusCode::OK,
                    serde_json::json!({ "released": target.to_string() }).to_string(),
                )
            } else {
                audit(&gw, ip, &who, "no_such_hold", Decision::Deny);
                reply(StatusCode::NOT_FOUND, r#"{"error":"no such hold"}"#.into())
            }
        }
    }
}

fn audit(gw: &Shared, ip: IpAddr, who: &str, reason: &'static str, decision: Decision) {
    let mut r = AuditRecord::event("admin", "admin", reason, decision);
    r.client_ip = Text::from(ip.to_string());
    r.principal = Text::copy(who);
    gw.audit.write_later(r);
}

fn reply(status: StatusCode, text: String) -> Response<Body> {
    let mut resp = Response::new(body::full(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// The CLI side: one request to a running gateway's admin API. `base` is `http://ADDR`.
pub async fn call(
    base: &str,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> Result<(StatusCode, serde_json::Value), String> {
    let client = crate::upstream::client(std::time::Duration::from_secs(5));
    let mut b = Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = b
        .body(Full::new(Bytes::from(
            body.map(|v| v.to_string()).unwrap_or_default(),
        )))
        .map_err(|e| e.to_string())?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| format!("cannot reach the admin API at {base}: {e}"))?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Ok((status, v))
}
