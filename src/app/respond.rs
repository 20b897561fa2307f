//! What the client gets back: the upstream's answer after the response checks, a stored
//! answer replayed for a repeated `Idempotency-Key`, or the generic error of a rejection. The
//! pipeline ([`super::pipeline`]) decides which; this module builds it.

use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::body::{self, Body};
use super::error::Rejection;
use super::pipeline::{end_upstream_sessions, Outcome, SessionCtx, MCP_SESSION_ID};
use super::Shared;
use crate::controls::authn::Principal;
use crate::controls::idempotency::{Claim, Stored};
use crate::controls::output::Check;
use crate::hub::StreamEnd;
use crate::proto::{codes, Envelope, Id, Kind};
use crate::upstream::{self, RelayEnd};

/// The stored answer to a repeated `Idempotency-Key`.
pub(super) fn replay(stored: Stored) -> Outcome {
    let n = stored.body.len() as u64;
    let mut resp = Response::new(body::full(stored.body));
    *resp.status_mut() = stored.status;
    resp.headers_mut().extend(stored.headers);
    Outcome::Replayed(resp, n)
}

/// Stores the answer to a keyed request. A streamed answer is relayed in full first (the same
/// checks and bytes as a live stream, delivered at once), so it can be replayed identically.
/// Incomplete answers are not stored: dropping the claim releases the key for a retry.
pub(super) async fn remember(
    gw: &Shared,
    claim: Claim,
    outcome: Outcome,
    request_id: &str,
    now: u64,
) -> Result<Outcome, Rejection> {
    let max = claim.max_response_bytes();
    let (parts, bytes, complete) = match outcome {
        Outcome::Done(resp, _) | Outcome::Replayed(resp, _) => {
            let (parts, b) = resp.into_parts();
            let bytes = b.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
            (parts, bytes, true)
        }
        Outcome::Events {
            parts,
            mut events,
            end,
        } => {
            let mut all = Vec::new();
            while let Some(b) = events.recv().await {
                all.extend_from_slice(&b);
            }
            let complete = match end {
                Some(e) => matches!(e.await, Ok(StreamEnd::Complete)),
                None => false,
            };
            (parts, Bytes::from(all), complete)
        }
        Outcome::Stream {
            parts,
            upstream,
            id,
            check,
        } => {
            let limits = &gw.config.limits;
            let (bytes, end) = upstream::collect_sse(
                upstream,
                id,
                request_id.to_owned(),
                limits.max_response_bytes,
                limits.max_json_depth,
                check.map(|c| *c),
            )
            .await;
            let complete = matches!(end, RelayEnd::Complete);
            (parts, bytes, complete)
        }
    };
    if complete && bytes.len() <= max {
        let keep = [header::CONTENT_TYPE, MCP_SESSION_ID];
        claim.complete(
            Stored {
                status: parts.status,
                headers: keep
                    .iter()
                    .filter_map(|k| parts.headers.get(k).map(|v| (k.clone(), v.clone())))
                    .collect(),
                body: bytes.clone(),
            },
            now,
        );
    }
    let n = bytes.len() as u64;
    Ok(Outcome::Done(
        Response::from_parts(parts, body::full(bytes)),
        n,
    ))
}

/// An upstream 404 on a session means it forgot the session: forget ours too, so the client's
/// next request gets a 404 from us and re-initialises.
pub(super) fn forget_if_gone(
    gw: &Shared,
    resp: &Response<Incoming>,
    headers: &HeaderMap,
    principal: &Principal,
    route: usize,
) {
    if resp.status() == StatusCode::NOT_FOUND {
        if let Some(h) = headers.get(MCP_SESSION_ID) {
            let _ = gw.sessions.remove(h, principal, route, Instant::now());
        }
    }
}

pub(super) async fn post_response(
    gw: &Shared,
    resp: Response<Incoming>,
    env: &Envelope,
    session: SessionCtx,
    principal: &Principal,
    route: usize,
    check: Option<Check>,
) -> Result<Outcome, Rejection> {
    let (mut parts, body) = resp.into_parts();
    let ours = match session {
        SessionCtx::New if parts.status.is_success() => {
            let upstream_sid = parts.headers.get(MCP_SESSION_ID).cloned();
            let (sid, ended) = gw
                .sessions
                .create(principal, route, upstream_sid, Instant::now());
            end_upstream_sessions(gw, ended);
            Some(sid.to_header())
        }
        SessionCtx::Bound(b) => {
            if parts.status == StatusCode::NOT_FOUND {
                let _ = gw
                    .sessions
                    .remove(&b.id.to_header(), principal, route, Instant::now());
            }
            Some(b.id.to_header())
        }
        SessionCtx::New | SessionCtx::Stateless => None,
    };
    filter_response_headers(&mut parts.headers, ours);
    let limits = &gw.config.limits;
    match (env.kind(), env.id(), parts.status.is_success()) {
        (Kind::Request, Some(id), true) => {
            let media = media_type(&parts.headers);
            let (sse, json) = (
                media.is_some_and(|m| m.eq_ignore_ascii_case("text/event-stream")),
                media.is_some_and(|m| m.eq_ignore_ascii_case("application/json")),
            );
            if sse {
                return Ok(Outcome::Stream {
                    parts,
                    upstream: body,
                    id: Some(id.clone()),
                    check: check.map(Box::new),
                });
            }
            if parts.headers.contains_key(header::CONTENT_ENCODING) || !json {
                return Err(upstream::ResponseError::Protocol(
                    "unexpected content type or encoding",
                )
                .into());
            }
            let bytes = upstream::relay_json(
                body,
                id,
                limits.max_response_bytes,
                limits.max_json_depth,
                check.as_ref(),
            )
            .await?;
            let n = bytes.len() as u64;
            Ok(Outcome::Done(
                Response::from_parts(parts, body::full(bytes)),
                n,
            ))
        }
        // Errors (4xx bodies are what dual-era clients inspect to fall back), notifications and
        // responses (202) pass through intact.
        _ => passthrough(gw, parts, body).await,
    }
}

pub(super) async fn passthrough(
    gw: &Shared,
    parts: http::response::Parts,
    body: Incoming,
) -> Result<Outcome, Rejection> {
    let bytes = upstream::collect(body, gw.config.limits.max_response_bytes).await?;
    let n = bytes.len() as u64;
    Ok(Outcome::Done(
        Response::from_parts(parts, body::full(bytes)),
        n,
    ))
}

pub(super) fn filter_response_headers(h: &mut HeaderMap, session: Option<HeaderValue>) {
    // A response has a handful of headers, one or two of them stripped: rescanning is cheaper
    // than collecting their names.
    while let Some(n) = h
        .keys()
        .find(|n| upstream::stripped_response_header(n))
        .cloned()
    {
        h.remove(n);
    }
    if let Some(s) = session {
        h.insert(MCP_SESSION_ID, s);
    }
}

/// The media type of `Content-Type`, without parameters (compare it ignoring case).
fn media_type(h: &HeaderMap) -> Option<&str> {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
}

pub(super) fn is_sse(h: &HeaderMap) -> bool {
    media_type(h).is_some_and(|m| m.eq_ignore_ascii_case("text/event-stream"))
}

/// The client-facing response for a rejection, and its body size.
pub(crate) fn reject(rej: &Rejection, id: Option<&Id>, request_id: &str) -> (Response<Body>, u64) {
    let m = rej.mapping();
    let status = if m.in_band && id.is_some() {
        StatusCode::OK
    } else {
        m.status
    };
    let text = match rej {
        Rejection::Hub(crate::hub::HubError::UnsupportedVersion(v)) => {
            crate::hub::era::unsupported_version_body(id, v, request_id)
        }
        Rejection::Validate(e) | Rejection::Hub(crate::hub::HubError::Validate(e)) => {
            codes::error_body_at(id, m.rpc, m.message, m.code, request_id, e.path())
        }
        _ => codes::error_body(id, m.rpc, m.message, m.code, request_id),
    };
    let n = text.len() as u64;
    let mut resp = Response::new(body::full(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if status == StatusCode::METHOD_NOT_ALLOWED {
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
    }
    (resp, n)
}
