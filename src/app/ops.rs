//! Operational endpoints and request metrics.
//!
//! `/healthz`: the process is up. `/readyz`: each upstream's state (HTTP ones must answer). `/metrics`: Prometheus
//! text. They pass the same Host/Origin check as MCP traffic but are not audited.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use http::{header, HeaderValue, Request, Response, StatusCode};
use metrics::{Counter, Histogram};

use super::body::{self, Body};
use super::Shared;
use crate::audit::{AuditRecord, Decision, Text};

/// JSON-RPC methods used as metric labels; anything else is `other`, so clients cannot create
/// unbounded label sets.
pub(crate) const METHOD_LABELS: &[&str] = &[
    "initialize",
    "notifications/initialized",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "server/discover",
];

/// Histogram buckets (seconds) for request latency.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The metric handles of one upstream label (`None`: the request matched no route).
struct UpstreamMetrics {
    upstream: Option<Text>,
    duration: Histogram,
    /// Request counters by (method label, decision), then by status: a slot per label pair and
    /// a short list of the statuses seen, searched in order (a few entries; no hashing).
    requests: Vec<Vec<(u16, Counter)>>,
}

/// Handles are registered once per label set and reused, so a request neither builds label
/// strings nor looks its series up in the registry. The label sets are bounded: configured
/// upstreams × [`METHOD_LABELS`] × decisions × statuses the gateway returns. (The recorder is
/// installed before the first request, so the handles are the recorder's.)
static HANDLES: OnceLock<Mutex<Vec<UpstreamMetrics>>> = OnceLock::new();

/// Records request metrics from a finished audit record.
pub(crate) fn observe(r: &AuditRecord, elapsed: Duration) {
    let label = r
        .rpc_method
        .as_deref()
        .and_then(|m| METHOD_LABELS.iter().position(|k| *k == m))
        .unwrap_or(METHOD_LABELS.len());
    let method = METHOD_LABELS.get(label).copied().unwrap_or("other");
    let mut all = HANDLES
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let i = match all.iter().position(|u| u.upstream == r.upstream) {
        Some(i) => i,
        None => {
            let label = r.upstream.as_deref().unwrap_or_default().to_owned();
            all.push(UpstreamMetrics {
                upstream: r.upstream.clone(),
                duration: metrics::histogram!("palisade_request_duration_seconds", "upstream" => label),
                requests: vec![Vec::new(); (METHOD_LABELS.len() + 1) * 2],
            });
            all.len() - 1
        }
    };
    let u = &mut all[i];
    let slot = &mut u.requests[label * 2 + usize::from(r.decision == Decision::Deny)];
    match slot.iter().find(|(status, _)| *status == r.status) {
        Some((_, c)) => c.increment(1),
        None => {
            let c = metrics::counter!("palisade_requests_total",
                "upstream" => r.upstream.as_deref().unwrap_or_default().to_owned(),
                "method" => method,
                "decision" => r.decision.as_str(),
                "status" => r.status.to_string());
            c.increment(1);
            slot.push((r.status, c));
        }
    }
    u.duration.record(elapsed.as_secs_f64());
}

fn text(
    status: StatusCode,
    content_type: &'static str,
    s: impl Into<bytes::Bytes>,
) -> Response<Body> {
    let mut r = Response::new(body::full(s));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Answers an operational endpoint, or `None` for anything else.
pub(crate) async fn serve<B>(gw: &Shared, req: &Request<B>) -> Option<Response<Body>> {
    let path = req.uri().path();
    if !matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return None;
    }
    if gw.origin.check(req.headers(), req.uri()).is_err() {
        return Some(text(StatusCode::FORBIDDEN, "text/plain", "forbidden\n"));
    }
    Some(match path {
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" => {
            // Each upstream's state, as the hub sees it: HTTP ones are probed, stdio ones are
            // `ok` (a live child), `idle` (none needed yet) or `restarting`.
            let mut lines = String::new();
            let mut ready = true;
            for (name, state) in gw.hub.readiness().await {
                ready &= state != "unreachable";
                lines.push_str(&format!("{name} {state}\n"));
            }
            text(
                if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                },
                "text/plain",
                lines,
            )
        }
        _ => {
            metrics::gauge!("palisade_audit_queue_depth").set(gw.audit.depth() as f64);
            metrics::gauge!("palisade_sessions").set(gw.sessions.len() as f64);
            let rendered = gw.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
            text(StatusCode::OK, "text/plain; version=0.0.4", rendered)
        }
    })
}
