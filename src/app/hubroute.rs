//! The pipeline's route step for hub routes (`/mcp`, stdio upstreams' `/mcp/{name}`): sessions
//! and eras on the client side, then [`crate::hub::Hub::post`]. Everything before this (Host,
//! authentication, envelope, mirrored headers, session binding) already ran.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Response, StatusCode};
use tokio::sync::{mpsc, oneshot};

use super::body::{self, Body};
use super::error::Rejection;
use super::pipeline::{Outcome, Session};
use super::Shared;
use crate::controls::authz::Access;
use crate::controls::session::{Binding, SessionError};
use crate::hub::session::HubSession;
use crate::hub::{era, HubError, Reply, StreamEnd, View};
use crate::proto::{Envelope, Kind};

const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");

/// One POST on a hub route.
// The request's context, as the pipeline built it.
#[allow(clippy::too_many_arguments)]
pub(super) async fn post(
    gw: &Shared,
    view: View,
    env: &Envelope,
    session: Session,
    access: &Access<'_>,
    route: usize,
    request_id: &str,
    modern: bool,
    headers: &http::HeaderMap,
) -> Result<Outcome, Rejection> {
    let hub = &gw.hub;
    let principal = access.who;
    let (s, minted) = match session {
        Session::New => {
            // `initialize`: the hub answers it; the session is ours alone (no upstream id).
            // Sent as a notification it has nobody to answer: refused before anything starts.
            let id = env.id().ok_or(SessionError::Missing)?;
            let params = env.params();
            let version = era::negotiate(env.param_str("protocolVersion").as_deref());
            let (sid, ended) = gw.sessions.create(principal, route, None, Instant::now());
            super::pipeline::end_upstream_sessions(gw, ended);
            let s = hub.open_session(HubSession::new(
                Some(sid),
                principal.id().clone(),
                version.to_owned(),
                Bytes::from(era::relayable_capabilities(params)),
            ));
            let result = hub.initialize(view, &s).await;
            let body = crate::hub::wire::response(id, "result", &result);
            let mut resp = json(body.clone());
            resp.headers_mut().insert(MCP_SESSION_ID, sid.to_header());
            return Ok(Outcome::Done(resp, body.len() as u64));
        }
        Session::Bound(Binding { id, .. }) => {
            let s = hub.session(id).ok_or(SessionError::Unknown)?;
            (s, Some(id))
        }
        Session::Stateless => {
            // 2026-07-28: every request says its version in `_meta`, and it must be one served.
            let v = env
                .meta_str(era::META_VERSION)
                .ok_or(HubError::MissingMetaVersion)?;
            if !era::is_modern_supported(&v) || !modern {
                return Err(HubError::UnsupportedVersion(v.into_owned()).into());
            }
            let s = Arc::new(HubSession::new(
                None,
                principal.id().clone(),
                v.into_owned(),
                // What this request's client can be asked (MRTR), per its `_meta`.
                Bytes::from(era::modern_capabilities(env.params())),
            ));
            (s, None)
        }
    };
    let reply = hub.post(view, env, &s, request_id, headers, access).await?;
    let with_session = |mut resp: Response<Body>| {
        if let Some(id) = minted {
            resp.headers_mut().insert(MCP_SESSION_ID, id.to_header());
        }
        resp
    };
    Ok(match reply {
        Reply::Json(b) => {
            let n = b.len() as u64;
            Outcome::Done(with_session(json(b)), n)
        }
        Reply::Accepted => {
            let mut r = Response::new(body::empty());
            *r.status_mut() = StatusCode::ACCEPTED;
            debug_assert!(env.kind() != Kind::Request);
            Outcome::Done(with_session(r), 0)
        }
        Reply::Stream(events, end) => {
            let (parts, _) = with_session(sse_head()).into_parts();
            Outcome::Events {
                parts,
                events,
                end: Some(end),
            }
        }
    })
}

/// The listen stream (GET) of a hub session.
pub(super) fn listen(gw: &Shared, binding: Binding) -> Result<Outcome, Rejection> {
    let s = gw.hub.session(binding.id).ok_or(SessionError::Unknown)?;
    let events = s.open_listen();
    let mut head = sse_head();
    head.headers_mut()
        .insert(MCP_SESSION_ID, binding.id.to_header());
    let (parts, _) = head.into_parts();
    Ok(Outcome::Events {
        parts,
        events,
        end: None,
    })
}

fn json(b: Bytes) -> Response<Body> {
    let mut r = Response::new(body::full(b));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn sse_head() -> Response<Body> {
    let mut r = Response::new(body::empty());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// The SSE body of hub events, with keep-alive comments while idle. `on_end` runs once with how
/// it ended and the bytes sent.
pub(super) fn stream(
    mut events: mpsc::Receiver<Bytes>,
    end: Option<oneshot::Receiver<StreamEnd>>,
    keepalive: Option<Duration>,
    on_end: impl FnOnce(StreamEnd, u64) + Send + 'static,
) -> Body {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let mut n = 0u64;
        let gone = loop {
            let next = match keepalive {
                Some(k) => match tokio::time::timeout(k, events.recv()).await {
                    Ok(e) => e,
                    Err(_) => {
                        if tx
                            .send(Bytes::from_static(b": keep-alive\n\n"))
                            .await
                            .is_err()
                        {
                            break true;
                        }
                        continue;
                    }
                },
                None => events.recv().await,
            };
            let Some(b) = next else { break false };
            n += b.len() as u64;
            if tx.send(b).await.is_err() {
                break true;
            }
        };
        drop(events);
        let how = match end {
            _ if gone => StreamEnd::ClientGone,
            Some(e) => e.await.unwrap_or(StreamEnd::ClientGone),
            None => StreamEnd::Complete,
        };
        on_end(how, n);
    });
    body::from_channel(rx)
}
