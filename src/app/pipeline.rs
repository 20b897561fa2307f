//! The request pipeline, in order, in one place.
//!
//! ```text
//! request ─▶ audit slot ─▶ route ─▶ origin/host ─▶ authenticate ─▶ body+envelope ─▶ mirror
//!         ─▶ session ─▶ validate (keys, tool name) ─▶ authorize + validate arguments
//!         ─▶ [admit: later issue] ─▶ idempotency ─▶ upstream ─▶ response checks ─▶ audit
//! ```
//! Validation of the message's shape runs before authorization because it is cheaper and
//! needs no target; authorization and argument validation need the target, which a proxied
//! route knows here and the hub knows once it has resolved a namespaced name or a URI (it then
//! applies the same rules through [`Access`]). Idempotency runs after both, so a stored answer
//! is never replayed to a caller who may no longer make the request.
//! Each step takes what the previous one produced (`Principal`, `Envelope`, `SessionCtx`), so
//! the order is enforced by the types. Every rejection is a control's own error, mapped once in
//! [`super::error`], and every request — allowed or denied — ends in exactly one audit record.
//! The answer itself (checked response, replayed answer, error body) is built in
//! [`super::respond`].

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::body::{self, Body};
use super::error::Rejection;
use super::respond::{
    filter_response_headers, forget_if_gone, is_sse, passthrough, post_response, reject, remember,
    replay,
};
use super::trace::Trace;
use super::{lists, ops, wellknown, Conn, Shared};
use crate::audit::Decision;
use crate::controls::authn::Principal;
use crate::controls::authz::{Access, Facts};
use crate::controls::output::Check;
use crate::controls::ratelimit::{LimitError, Quota, Stage, Subject};
use crate::controls::session::{Binding, SessionError};
use crate::controls::{body as request_body, mirror, session, validate};
use crate::hub::Guards;
use crate::hub::StreamEnd;
use crate::issuer::Endpoint;
use crate::proto::{Envelope, Id, Kind};
use crate::upstream::{self, RelayEnd};
use tokio::sync::{mpsc, oneshot};

pub(super) const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// What the MCP pipeline produced.
pub(super) enum Outcome {
    /// A complete response and its body size.
    Done(Response<Body>, u64),
    /// A stored answer to a repeated `Idempotency-Key`; the upstream was not called.
    Replayed(Response<Body>, u64),
    /// An upstream SSE stream to relay; the audit record is written when it ends.
    Stream {
        parts: http::response::Parts,
        upstream: Incoming,
        id: Option<Id>,
        /// Checks on a tool call's result (boxed: most streams have none).
        check: Option<Box<Check>>,
    },
    /// SSE written by the hub (a routed call's messages, or a session's listen stream); the
    /// audit record is written when it ends.
    Events {
        parts: http::response::Parts,
        events: mpsc::Receiver<Bytes>,
        end: Option<oneshot::Receiver<StreamEnd>>,
    },
}

/// What the pipeline learnt before it stopped, for the error response.
#[derive(Debug, Default)]
struct Seen {
    /// The JSON-RPC id, once parsed.
    id: Option<Id>,
    /// The route, once resolved.
    route: Option<usize>,
    /// The tightest rate-limit quota that counted the request.
    quota: Option<Quota>,
    /// Who sent it, once a credential proved it.
    principal: Option<std::sync::Arc<str>>,
}

/// The session situation of a POST.
pub(super) enum SessionCtx {
    /// A live session of this principal on this route.
    Bound(Binding),
    /// `initialize` without a session: one is minted when the upstream accepts it.
    New,
    /// A 2026-07-28 (stateless) request: no session at all.
    Stateless,
}

pub(super) use SessionCtx as Session;

impl SessionCtx {
    fn upstream_id(&self) -> Option<&HeaderValue> {
        match self {
            SessionCtx::Bound(b) => b.upstream_id.as_ref(),
            SessionCtx::New | SessionCtx::Stateless => None,
        }
    }
}

/// Serves one HTTP request.
pub async fn handle(
    gw: Shared,
    req: Request<Incoming>,
    peer: SocketAddr,
    conn: Conn,
) -> Response<Body> {
    // 0. Network: the client's address (a forwarding header only from a trusted proxy), and
    //    the IP allow/deny lists, before anything else (operational endpoints included).
    let client = gw.network.client(peer.ip(), req.headers());
    if let Err(e) = gw.network.check(client) {
        return refuse_early(&gw, Rejection::Network(e), req.method().as_str(), client).await;
    }
    // A blocked address is refused here too, whatever credentials it brings.
    if let Err(e) = gw.abuse.check_ip(client, gw.clock.now_ms()) {
        return refuse_early(&gw, Rejection::Abuse(e), req.method().as_str(), client).await;
    }
    // Operational endpoints (/healthz, /readyz, /metrics; primary listener only) and OAuth
    // metadata are not MCP traffic.
    if conn.listener == 0 {
        if let Some(resp) = ops::serve(&gw, &req).await {
            return resp;
        }
    }
    if let Some(resp) = wellknown::serve(&gw, &req) {
        return resp;
    }
    let request_id = super::trace::new_request_id();
    let mut trace = Trace::new(&request_id, req.method().as_str(), client);
    // 0. Audit slot first: when the trail cannot keep up, wait (bounded) before doing any work,
    //    and refuse rather than serve a request that could not be recorded.
    let slot = match gw.audit.reserve().await {
        Ok(slot) => slot,
        Err(e) => {
            tracing::error!(target: "palisade::audit", request_id, "audit queue full: request refused unrecorded");
            return reject(&Rejection::Audit(e), None, &request_id).0;
        }
    };
    // The built-in token issuer: not MCP traffic, but audited like it.
    if let Some(ep) = gw
        .issuer
        .as_ref()
        .and_then(|_| Endpoint::at(req.uri().path()))
    {
        return issue(
            &gw,
            ep,
            req,
            client,
            conn.listener,
            &request_id,
            trace,
            slot,
        )
        .await;
    }
    let mut seen = Seen::default();
    let result = mcp(&gw, req, client, &conn, &request_id, &mut trace, &mut seen).await;
    let mut resp = match result {
        Ok(Outcome::Done(resp, n)) => {
            slot.write(trace.finish(
                Decision::Allow,
                "upstream",
                "ok",
                resp.status().as_u16(),
                None,
                n,
            ));
            resp
        }
        Ok(Outcome::Replayed(resp, n)) => {
            slot.write(trace.finish(
                Decision::Allow,
                "idempotency",
                "replayed",
                resp.status().as_u16(),
                None,
                n,
            ));
            resp
        }
        Ok(Outcome::Stream {
            mut parts,
            upstream,
            id,
            check,
        }) => {
            parts.headers.insert(
                HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            );
            let status = parts.status.as_u16();
            let limits = &gw.config.limits;
            let body = upstream::relay_sse(
                upstream,
                id,
                request_id,
                gw.config.sessions.sse_keepalive,
                limits.max_response_bytes,
                limits.max_json_depth,
                check.map(|c| *c),
                move |s| {
                    let (reason, code) = match s.end {
                        RelayEnd::Complete => ("ok", None),
                        RelayEnd::ClientGone => ("client_gone", None),
                        RelayEnd::UpstreamFailed => ("upstream_failed_mid_stream", Some("MCP-003")),
                        RelayEnd::ProtocolError => ("protocol_error", Some("MCP-003")),
                    };
                    slot.write(trace.finish(
                        Decision::Allow,
                        "upstream",
                        reason,
                        status,
                        code,
                        s.bytes_out,
                    ));
                },
            );
            Response::from_parts(parts, body)
        }
        Ok(Outcome::Events {
            mut parts,
            events,
            end,
        }) => {
            parts.headers.insert(
                HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            );
            let status = parts.status.as_u16();
            let body = super::hubroute::stream(
                events,
                end,
                gw.config.sessions.sse_keepalive,
                move |end, n| {
                    let (reason, code) = match end {
                        StreamEnd::Complete => ("ok", None),
                        StreamEnd::ClientGone => ("client_gone", None),
                        StreamEnd::InputRequired => ("input_required", None),
                        StreamEnd::UpstreamFailed => {
                            ("upstream_failed_mid_stream", Some("MCP-003"))
                        }
                    };
                    slot.write(trace.finish(Decision::Allow, "hub", reason, status, code, n));
                },
            );
            Response::from_parts(parts, body)
        }
        Err(rej) => {
            let (mut resp, n) = reject(&rej, seen.id.as_ref(), &request_id);
            if let Rejection::Authn(e) = &rej {
                // RFC 6750 / RFC 9728: say how to authenticate (and, with OAuth, where the
                // metadata is and which scopes are needed).
                if matches!(
                    resp.status(),
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                ) {
                    if let Ok(v) = HeaderValue::from_str(&gw.authn.challenge(seen.route, Some(e))) {
                        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                    }
                }
            }
            // Authentication failures, limit violations and suspicious refusals are strikes
            // towards a block or a quarantine.
            if let Some(strike) = rej.strike() {
                let who = seen.principal.as_ref();
                gw.abuse.strike(strike, client, who, gw.clock.now_ms());
            }
            if let Some(s) = rej.retry_after_secs(gw.clock.now_ms()) {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(s));
            }
            if let Rejection::Limit(LimitError::Exceeded { quota, .. }) = &rej {
                seen.quota = Some(*quota);
            }
            let m = rej.mapping();
            // Details go to the log and the audit record, never to the client.
            tracing::info!(target: "palisade::deny", request_id, control = m.control, reason = m.reason, detail = %rej, "request refused");
            let decision = if m.deny {
                Decision::Deny
            } else {
                Decision::Allow
            };
            slot.write(trace.finish(
                decision,
                m.control,
                m.reason,
                resp.status().as_u16(),
                Some(m.code.as_str()),
                n,
            ));
            resp
        }
    };
    // The tightest rate limit that counted this request, on every answer.
    if let Some(q) = seen.quota {
        let h = resp.headers_mut();
        h.insert(X_RATELIMIT_LIMIT, HeaderValue::from(q.limit));
        h.insert(X_RATELIMIT_REMAINING, HeaderValue::from(q.remaining));
        h.insert(X_RATELIMIT_RESET, HeaderValue::from(q.reset_secs));
    }
    resp
}

/// A refusal before the request is routed (the client's address): audited, nothing else done.
async fn refuse_early(gw: &Shared, rej: Rejection, method: &str, client: IpAddr) -> Response<Body> {
    let request_id = super::trace::new_request_id();
    let trace = Trace::new(&request_id, method, client);
    let (mut resp, n) = reject(&rej, None, &request_id);
    if let Some(s) = rej.retry_after_secs(gw.clock.now_ms()) {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    let m = rej.mapping();
    tracing::info!(target: "palisade::deny", request_id, control = m.control, reason = m.reason, detail = %rej, "request refused");
    if let Ok(slot) = gw.audit.reserve().await {
        slot.write(refusal(trace, &rej, resp.status().as_u16(), n));
    }
    resp
}

/// The audit record of a refusal.
fn refusal(trace: Trace, rej: &Rejection, status: u16, n: u64) -> crate::audit::AuditRecord {
    let m = rej.mapping();
    trace.finish(
        Decision::Deny,
        m.control,
        m.reason,
        status,
        Some(m.code.as_str()),
        n,
    )
}

/// An issuer endpoint: Host/Origin guard, bounded body, then the issuer; one audit record.
// The request, where it came from, and the audit record it must end in.
#[allow(clippy::too_many_arguments)]
async fn issue(
    gw: &Shared,
    ep: Endpoint,
    req: Request<Incoming>,
    client: IpAddr,
    listener: usize,
    request_id: &str,
    mut trace: Trace,
    slot: crate::audit::AuditSlot,
) -> Response<Body> {
    let Some(issuer) = gw.issuer.as_ref() else {
        return reject(&Rejection::NoRoute, None, "").0;
    };
    let refuse = |rej: Rejection, trace: Trace, slot: crate::audit::AuditSlot| {
        let (resp, n) = reject(&rej, None, request_id);
        slot.write(refusal(trace, &rej, resp.status().as_u16(), n));
        resp
    };
    if let Err(e) = gw.origins[listener].check(req.headers(), req.uri()) {
        return refuse(e.into(), trace, slot);
    }
    let (parts, body) = req.into_parts();
    let bytes = match request_body::read(&parts.headers, body, 16 * 1024).await {
        Ok(b) => b,
        Err(e) => return refuse(e.into(), trace, slot),
    };
    trace.input_bytes(bytes.len());
    let served = issuer
        .serve(ep, &parts.method, &parts.headers, bytes, client)
        .await;
    if let Some(s) = &served.subject {
        trace.subject(s, "issuer");
    }
    let status = served.response.status().as_u16();
    let n = http_body::Body::size_hint(served.response.body())
        .exact()
        .unwrap_or(0);
    let decision = if served.allowed {
        Decision::Allow
    } else {
        Decision::Deny
    };
    slot.write(trace.finish(decision, "issuer", served.reason, status, None, n));
    served.response
}

/// The MCP pipeline proper. Read top to bottom: this is the order every request goes through.
async fn mcp(
    gw: &Shared,
    req: Request<Incoming>,
    client: IpAddr,
    conn: &Conn,
    request_id: &str,
    trace: &mut Trace,
    seen: &mut Seen,
) -> Result<Outcome, Rejection> {
    // 1. Route: which upstream, if served on this listener. Unknown paths are refused before
    //    anything else is looked at.
    let route = gw
        .route(conn.listener, req.uri().path())
        .ok_or(Rejection::NoRoute)?;
    seen.route = Some(route);
    // The hub's route has no single upstream (`*`); a proxied route has its own.
    let upstream = gw.routes.get(route);
    trace.upstream(upstream.map_or("*", |u| &u.name));
    let upstream = || gw.routes.get(route).ok_or(Rejection::NoRoute);
    // 2. Transport guard: Host and Origin (DNS rebinding). Header-only, so it runs before any
    //    body is read.
    gw.origins[conn.listener].check(req.headers(), req.uri())?;
    // 3. Authenticate, header stage: client certificate, token or JWT, HMAC headers and
    //    timestamp window. Before
    //    the body is read, so an unauthenticated client cannot make the gateway buffer bodies.
    let now_ms = gw.clock.now_ms();
    let now = now_ms / 1000;
    // 2b. Rate limits on the address alone (`ip` and `global` rules without filters): before
    //     any credential is looked at, so bad credentials are limited too.
    let by_address = Subject {
        ip: client,
        principal: None,
        method: None,
        upstream: None,
        tool: None,
    };
    seen.admit(gw, Stage::Connection, &by_address, now_ms)?;
    let (parts, body) = req.into_parts();
    let pending = gw
        .authn
        .begin(
            conn.listener,
            route,
            &parts,
            client,
            conn.client_cert.as_ref(),
            now,
        )
        .await?;
    match parts.method {
        Method::POST => {
            // 4. Body: bounded read while streaming, never trusting Content-Length.
            let limits = &gw.config.limits;
            let c = &gw.config.connections;
            let pace = request_body::Pace {
                grace: std::time::Duration::from_millis(c.body_grace_ms),
                min_rate: c.min_body_rate,
            };
            let bytes =
                request_body::read_request(&parts.headers, body, limits.max_body_bytes, pace)
                    .await?;
            trace.input_bytes(bytes.len());
            // 5. Authenticate, body stage: the HMAC signature covers the body; only a verified
            //    request consumes its nonce. → Principal.
            let principal = seen.authenticate(gw, pending, &parts, &bytes, now_ms)?;
            trace.principal(&principal);
            // 6. Envelope: ONE strict parse over the bytes, kept as a view of them.
            let env = Envelope::parse(bytes, limits.max_json_depth)?;
            trace.message(&env);
            seen.id = env.id().cloned();
            // 7. Modern requests mirror method and name in headers; intermediaries may act on
            //    those, so they must say what the body says.
            let modern = is_modern(&parts.headers);
            if modern {
                mirror::check(&parts.headers, &env)?;
            }
            // 8. Session: the caller's own session on this route, or a new one on initialize.
            let session = post_session(gw, &parts.headers, &env, &principal, route, modern)?;
            // 9. Validate and authorize. Every message: no prototype-changing key anywhere, a
            //    well-formed tool name. A proxied route knows its upstream, so its method and
            //    target are authorized here (roles, then Rego policies; a call's policy once its
            //    definition is found) and a call's arguments checked against the tool's
            //    schema; a hub route resolves the target first (namespaced names, resource
            //    URIs) and decides in the hub with the same rules (`Access`).
            //    [admit (rate limits, concurrency) slots in here.]
            validate::message(&env)?;
            // 9b. Admit: rate limits on the sender, the method and the target. The message as
            //     traffic control sees it is worked out once, and only when a limit needs it.
            let limited = !gw.limiter.is_empty();
            let slotted = env.method() == Some("tools/call") && !gw.concurrency.is_empty();
            let tool_name = match env.method() {
                Some("tools/call") if limited || slotted => env.param_str("name"),
                _ => None,
            };
            let sender = (principal.method() != "none").then(|| &**principal.id());
            let subject = target_subject(gw, &env, route, client, sender, tool_name.as_deref());
            if limited {
                seen.admit(gw, Stage::Message, &subject, now_ms)?;
            }
            let access = Access {
                authz: &gw.authz,
                who: &principal,
                facts: Facts {
                    ip: Some(client),
                    transport: gw.transport(conn.listener),
                },
            };
            // Notifications too: a `tools/call` sent without an id is still a call to the
            // upstream, which may act on it. (The hub acts only on the notifications it knows.)
            // A call's result is checked on its way back (output schema, secrets), and waited
            // for no longer than the tool's own limit: `guards`.
            let mut guards = Guards::default();
            if gw.hub.view(route).is_none() && env.kind() != Kind::Response {
                guards = authorize_proxied(gw, &access, route, &env, request_id).await?;
            }
            let Guards {
                output: check,
                timeout: limit,
            } = guards;
            // 10. Idempotency: a repeated key answers from the store, never calling the upstream
            //     twice; the same key with another request is refused.
            let keyed = parts.headers.contains_key("idempotency-key");
            let claim = match env.kind() {
                Kind::Request if keyed => {
                    let scope = format!("{}\n{route}", principal.id());
                    let path = parts.uri.path();
                    match gw.idempotency.begin(
                        &parts.headers,
                        &scope,
                        "POST",
                        path,
                        env.bytes(),
                        now,
                    )? {
                        Some(Err(stored)) => return Ok(replay(stored)),
                        Some(Ok(claim)) => Some(claim),
                        None => None,
                    }
                }
                Kind::Request | Kind::Notification | Kind::Response => None,
            };
            // 10b. Concurrency: a call takes a slot per principal, tool and upstream, waiting
            //      (bounded) for one, and holds them until its answer is delivered.
            if slotted {
                trace.hold(gw.concurrency.acquire(&subject).await?);
            }
            // 11. Route. The hub (`/mcp`, stdio upstreams) terminates MCP: it answers or routes
            //     the message to the upstream that owns it, under the upstream's credentials.
            // The hub route and the list filter are boxed: inline, their state would double
            // the size of every request's future (one allocation per hub or list call instead).
            let outcome = if let Some(view) = gw.hub.view(route) {
                Box::pin(super::hubroute::post(
                    gw,
                    view,
                    &env,
                    session,
                    &access,
                    route,
                    request_id,
                    modern,
                    &parts.headers,
                ))
                .await?
            } else {
                // Otherwise the original bytes go to the route's upstream, with the upstream's
                // credentials, never the client's.
                // A tool's own `timeout_secs` bounds the wait for the answer (`limit`).
                let resp = upstream()?
                    .send_within(
                        Method::POST,
                        &parts.headers,
                        session.upstream_id(),
                        env.bytes().clone(),
                        limit,
                    )
                    .await?;
                // 12. Response checks: exactly one response per id; our session id replaces
                //     theirs; lists show only what the caller may see.
                let out = post_response(gw, resp, &env, session, &principal, route, check).await?;
                match env.method().and_then(lists::member_of) {
                    Some(member) => {
                        Box::pin(lists::filter(gw, out, member, &access, route)).await?
                    }
                    None => out,
                }
            };
            match claim {
                Some(claim) => remember(gw, claim, outcome, request_id, now).await,
                None => Ok(outcome),
            }
        }
        Method::GET => {
            // The listen stream of a session (legacy era only). No body: authentication
            // completes over the empty body.
            let principal = seen.authenticate(gw, pending, &parts, &[], now_ms)?;
            trace.principal(&principal);
            if gw.hub.view(route).is_some() {
                if is_modern(&parts.headers) {
                    return Err(Rejection::MethodNotAllowed);
                }
                let binding = lookup(gw, &parts.headers, &principal, route)?;
                return super::hubroute::listen(gw, binding);
            }
            let binding = lookup(gw, &parts.headers, &principal, route)?;
            let resp = upstream()?
                .send(
                    Method::GET,
                    &parts.headers,
                    binding.upstream_id.as_ref(),
                    Bytes::new(),
                )
                .await?;
            forget_if_gone(gw, &resp, &parts.headers, &principal, route);
            let (mut rparts, rbody) = resp.into_parts();
            filter_response_headers(&mut rparts.headers, Some(binding.id.to_header()));
            if rparts.status.is_success() && is_sse(&rparts.headers) {
                return Ok(Outcome::Stream {
                    parts: rparts,
                    upstream: rbody,
                    id: None,
                    check: None,
                });
            }
            passthrough(gw, rparts, rbody).await
        }
        Method::DELETE => {
            let principal = seen.authenticate(gw, pending, &parts, &[], now_ms)?;
            trace.principal(&principal);
            let header = parts
                .headers
                .get(MCP_SESSION_ID)
                .ok_or(SessionError::Missing)?;
            let binding = gw
                .sessions
                .remove(header, &principal, route, Instant::now())?;
            if gw.hub.view(route).is_some() {
                gw.hub.end_session(binding.id);
                return Ok(Outcome::Done(Response::new(body::empty()), 0));
            }
            let resp = upstream()?
                .send(
                    Method::DELETE,
                    &parts.headers,
                    binding.upstream_id.as_ref(),
                    Bytes::new(),
                )
                .await?;
            let (mut rparts, rbody) = resp.into_parts();
            filter_response_headers(&mut rparts.headers, None);
            passthrough(gw, rparts, rbody).await
        }
        _ => Err(Rejection::MethodNotAllowed),
    }
}

/// Step 9 on a proxied route: the method and its target, then a call's arguments.
async fn authorize_proxied(
    gw: &Shared,
    access: &Access<'_>,
    route: usize,
    env: &Envelope,
    request_id: &str,
) -> Result<Guards, Rejection> {
    let method = env.method().unwrap_or_default();
    let named = crate::hub::target_name(method, env, None);
    if method == "tools/call" && named.is_none() {
        return Err(validate::ValidateError::ToolName(String::new()).into());
    }
    access.check(method, Some(route), named.as_ref().map(|(k, n)| k.item(n)))?;
    match (&named, method) {
        (Some((_, name)), "tools/call") => Ok(gw
            .hub
            .prepare_proxied_call(route, name, env, access, request_id)
            .await?),
        _ => Ok(Guards::default()),
    }
}

impl Seen {
    /// Completes authentication over the body, remembering who the request is from (for
    /// abuse response: a principal whose valid token came with a bad signature is that
    /// principal), and refuses a blocked or quarantined principal.
    fn authenticate(
        &mut self,
        gw: &Shared,
        pending: crate::controls::authn::Pending<'_>,
        parts: &http::request::Parts,
        body: &[u8],
        now_ms: u64,
    ) -> Result<Principal, Rejection> {
        self.principal = pending.verified().cloned();
        let principal = pending.finish(parts, body, now_ms / 1000)?;
        if principal.method() != "none" {
            self.principal = Some(principal.id().clone());
            gw.abuse.check_principal(principal.id(), now_ms)?;
        }
        Ok(principal)
    }

    /// Counts the request against the rate limits of `stage`, keeping the tightest quota.
    fn admit(
        &mut self,
        gw: &Shared,
        stage: Stage,
        s: &Subject<'_>,
        now_ms: u64,
    ) -> Result<(), Rejection> {
        if let Some(q) = gw.limiter.admit(stage, s, now_ms)? {
            self.quota = Some(Quota::tighter(self.quota, q));
        }
        Ok(())
    }
}

/// The message as traffic control sees it: its upstream, and for a `tools/call` (whose `name`
/// is given) the tool by the upstream's own name (on `/mcp`, the namespace prefix names the
/// upstream).
fn target_subject<'a>(
    gw: &'a Shared,
    env: &'a Envelope,
    route: usize,
    ip: IpAddr,
    principal: Option<&'a str>,
    name: Option<&'a str>,
) -> Subject<'a> {
    let (upstream, tool) = match (gw.routes.get(route), name) {
        (Some(u), tool) => (Some(&*u.name), tool),
        (None, Some(n)) => match crate::hub::names::split(n) {
            Some((u, t)) => (Some(u), Some(t)),
            None => (None, Some(n)),
        },
        (None, None) => (None, None),
    };
    Subject {
        ip,
        principal,
        method: env.method(),
        upstream,
        tool,
    }
}

fn lookup(
    gw: &Shared,
    headers: &HeaderMap,
    principal: &Principal,
    route: usize,
) -> Result<Binding, SessionError> {
    let header = headers.get(MCP_SESSION_ID).ok_or(SessionError::Missing)?;
    gw.sessions.lookup(header, principal, route, Instant::now())
}

/// True for a 2026-07-28 (stateless era) request, which never has a session.
fn is_modern(headers: &HeaderMap) -> bool {
    headers
        .get(MCP_PROTOCOL_VERSION)
        .is_some_and(|v| v.as_bytes() >= b"2026-07-28".as_slice())
}

fn post_session(
    gw: &Shared,
    headers: &HeaderMap,
    env: &Envelope,
    principal: &Principal,
    route: usize,
    modern: bool,
) -> Result<SessionCtx, SessionError> {
    let initialize = env.method() == Some("initialize");
    match headers.get(MCP_SESSION_ID) {
        Some(_) if initialize => Err(SessionError::InitializeInSession),
        Some(_) => lookup(gw, headers, principal, route).map(SessionCtx::Bound),
        None if initialize => Ok(SessionCtx::New),
        None if modern => Ok(SessionCtx::Stateless),
        None => Err(SessionError::Missing),
    }
}

/// Ends sessions upstream that the gateway evicted or reaped, off the request path.
pub(crate) fn end_upstream_sessions(gw: &Shared, ended: Vec<session::Ended>) {
    for e in ended {
        if gw.hub.view(e.route).is_some() {
            gw.hub.end_session(e.id);
            continue;
        }
        let Some(sid) = e.upstream_id else { continue };
        let gw = gw.clone();
        tokio::spawn(async move {
            let _ = gw.routes[e.route]
                .send(Method::DELETE, &HeaderMap::new(), Some(&sid), Bytes::new())
                .await;
        });
    }
}
