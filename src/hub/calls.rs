//! A routed call's life: sent to the upstream that owns the tool, its answer (and anything the
//! upstream sends before it) relayed to the client, and, for a 2026-07-28 client, a call parked
//! on `input_required` resumed by the client's retry. [`super::dispatch`] decides which message
//! is a call; this module carries it through.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::conn::ListKind;
use super::dispatch::{cancel, downstream_response, stdio_failure, CancelOnDrop, Reply, StreamEnd};
use super::link::Answer;
use super::relay::{Call, Guards, ParkSpot, Relay};
use super::session::HubSession;
use super::wire::{self, ParamEdits};
use super::{mrtr, rounds, Hub, HubError};
use crate::proto::{Envelope, Id, Kind};
use crate::upstream::breaker::Class;

impl Hub {
    /// Calls upstream `u` with the request (renamed, its progress token and era-specific
    /// `_meta` adapted) and answers with its response, relaying what comes before it.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn call(
        &self,
        u: usize,
        env: &Envelope,
        params: Option<&[u8]>,
        rounds: usize,
        id: &Id,
        name: Option<String>,
        s: &Arc<HubSession>,
        request_id: &str,
        guards: Guards,
    ) -> Result<Reply, HubError> {
        let method = env.method().unwrap_or_default();
        let client_token = params
            .and_then(wire::progress_token)
            .map(Bytes::copy_from_slice);
        // Up to two attempts: an upstream session that expired is replaced once (the upstream
        // refused the request, so it did not run).
        let mut attempt = 0;
        let (conn, up_id, answer, sent) = loop {
            attempt += 1;
            // A stdio upstream's breaker is kept here (an HTTP one's in its `send`): starting
            // the child and the exchange both count.
            let permit = match self.ups[u].via {
                super::Via::Stdio(_) => Some(
                    self.ups[u]
                        .route
                        .breaker
                        .admit()
                        .map_err(|_| HubError::Unavailable("circuit open"))?,
                ),
                super::Via::Http(_) => None,
            };
            let conn = match self.conn(u, s).await {
                Ok(c) => c,
                Err(e) => {
                    if let Some(p) = permit {
                        p.done(stdio_failure(&e));
                    }
                    return Err(e);
                }
            };
            if conn.is_modern() && method == "tools/call" {
                // Its schema says which arguments are mirrored into `Mcp-Param-*` headers.
                let _ = conn.list(ListKind::Tools).await;
            }
            let up_id = conn.next_id();
            let token = client_token.as_ref().map(|_| up_id.to_string());
            let edited = params.map(|p| {
                wire::edit_params(
                    p,
                    &ParamEdits {
                        name: name.as_deref(),
                        progress_token: token.as_deref().map(str::as_bytes),
                        strip_modern_meta: s.is_modern(),
                    },
                )
            });
            let sent = conn.send(up_id, method, edited.as_deref()).await;
            if let Some(p) = permit {
                p.done(sent.as_ref().err().and_then(stdio_failure));
            }
            match sent {
                Ok(a) => break (conn, up_id, a, edited),
                Err(HubError::SessionGone) if attempt < 2 => continue,
                Err(e) => return Err(e),
            }
        };
        // A 2026-07-28 upstream may end the call `input_required`: a legacy client's retries are
        // the hub's to send, with these params.
        let sent = (conn.is_modern() && !s.is_modern() && mrtr::may_ask(method))
            .then(|| sent.unwrap_or_else(|| b"{}".to_vec()));
        let call = Call {
            u,
            conn,
            up_id,
            rounds,
            sent,
            check: guards.output,
            timeout: guards.timeout,
        };
        self.follow(call, answer, env, id, client_token, s, request_id)
            .await
    }

    /// Relays the upstream call `call` to the client: its first message decides between a plain
    /// JSON response and a stream. A 2026-07-28 client's call may end parked, waiting for the
    /// client's `input_required` retry.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn follow(
        &self,
        call: Call,
        mut answer: Answer,
        env: &Envelope,
        id: &Id,
        client_token: Option<Bytes>,
        s: &Arc<HubSession>,
        request_id: &str,
    ) -> Result<Reply, HubError> {
        let Call {
            u,
            conn,
            up_id,
            rounds,
            sent,
            check,
            timeout,
        } = call;
        let method = env.method().unwrap_or_default();
        s.begin(id, &conn, up_id);
        // A tool's own `timeout_secs`, else the upstream's.
        let idle = timeout.unwrap_or(self.ups[u].timeout);
        // 2026-07-28: a client that goes away cancels its request ("Cancellation"). Should this
        // future be dropped while waiting (the client's connection closed), the guard tells
        // the upstream.
        let guard = CancelOnDrop(s.is_modern().then(|| (conn.clone(), up_id)));
        let first = tokio::time::timeout(idle, answer.next()).await;
        guard.defuse();
        let first = match first {
            Ok(Some(e)) => e,
            Ok(None) => {
                s.end(id);
                self.stdio_failed(u, Class::Network);
                return Err(HubError::NoResponse);
            }
            Err(_) => {
                s.end(id);
                cancel(&conn, up_id).await;
                self.stdio_failed(u, Class::Timeout);
                return Err(HubError::Timeout);
            }
        };
        // Where a 2026-07-28 client's call is parked, made only when there is something to park.
        let park = || {
            (s.is_modern() && mrtr::may_ask(method)).then(|| ParkSpot {
                parking: self.parking.clone(),
                request: env.clone(),
                u,
                ttl: idle,
                rounds,
            })
        };
        let asks = conn.is_modern()
            && mrtr::may_ask(method)
            && first.result().is_some_and(rounds::is_input_required);
        // A legacy client is asked the upstream's questions on a stream.
        let ask_on_stream = asks && !s.is_modern();
        if first.kind() == Kind::Response && !ask_on_stream {
            s.end(id);
            if let Some(spot) = park().filter(|_| asks) {
                let body = spot.park_ended(s, first.result().unwrap_or_default())?;
                return Ok(Reply::Json(wire::response(id, "result", &body)));
            }
            return Ok(Reply::Json(downstream_response(
                &first,
                id,
                method,
                s.is_modern(),
                conn.is_modern(),
                check.as_ref(),
            )));
        }
        // Anything before the response, or questions for a legacy client: stream it.
        let (tx, rx) = mpsc::channel(16);
        let (end_tx, end_rx) = oneshot::channel();
        let mut relay = Relay {
            // A shared stdio child's messages during a call are attributed to the most recent
            // call in flight, possibly another principal's: only what is exactly attributable
            // (progress, by token, and the response) is relayed then.
            attributable_only: self.ups[u].isolation == crate::config::Isolation::Shared
                && matches!(self.ups[u].via, super::Via::Stdio(_)),
            conn,
            session: s.clone(),
            id: id.clone(),
            method: method.to_owned(),
            client_token,
            request_id: request_id.to_owned(),
            tx,
            up_id,
            park: park(),
            retry: sent.map(|p| (p, rounds)),
            check,
        };
        tokio::spawn(async move {
            let end = relay.run(first, answer, idle).await;
            if end == StreamEnd::ClientGone && (relay.session.is_modern() || relay.retry.is_some())
            {
                cancel(&relay.conn, relay.up_id).await;
            }
            relay.session.end(&relay.id);
            let _ = end_tx.send(end);
        });
        Ok(Reply::Stream(rx, end_rx))
    }

    /// A 2026-07-28 client's retry of a call that ended `input_required`: its `inputResponses`
    /// go to the upstream requests waiting for them (a legacy upstream's call, followed on), or
    /// upstream in a new request with the upstream's own `requestState` (a 2026-07-28 one).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn resume(
        &self,
        u: usize,
        env: &Envelope,
        id: &Id,
        name: Option<String>,
        state: &[u8],
        s: &Arc<HubSession>,
        request_id: &str,
        guards: Guards,
    ) -> Result<Reply, HubError> {
        let state: String =
            serde_json::from_slice(state).map_err(|_| mrtr::StateError::Malformed)?;
        let origin = mrtr::Origin::of(env).ok_or(HubError::InvalidParams("name"))?;
        let now = std::time::Instant::now();
        let p = match self.parking.take(&state, &s.principal, &origin, now) {
            Ok(p) if p.u == u => p,
            Ok(p) => {
                tokio::spawn(p.abandon());
                return Err(mrtr::StateError::OtherRequest.into());
            }
            Err((e, stale)) => {
                if let Some(p) = stale {
                    tokio::spawn(p.abandon());
                }
                return Err(e.into());
            }
        };
        let params = env.params().unwrap_or(b"{}");
        let mut p = *p;
        let mut live = match p.held {
            mrtr::Held::Live(l) => l,
            mrtr::Held::Ended(upstream_state) => {
                let params = wire::set_member(params, "requestState", upstream_state.as_deref());
                return self
                    .call(
                        u,
                        env,
                        Some(&params),
                        p.rounds,
                        id,
                        name,
                        s,
                        request_id,
                        guards,
                    )
                    .await;
            }
        };
        let responses: HashMap<String, Box<serde_json::value::RawValue>> =
            match wire::member(params, "inputResponses").map(serde_json::from_slice) {
                None => HashMap::new(),
                Some(Ok(r)) => r,
                Some(Err(_)) => {
                    p.held = mrtr::Held::Live(live);
                    tokio::spawn(p.abandon());
                    return Err(HubError::InvalidParams("inputResponses"));
                }
            };
        if !live.deliver(&responses).await {
            // Some questions are still open: ask them again (the spec's advice to a server
            // that is missing input), under a new handle.
            p.expires = now + self.ups[u].timeout;
            p.held = mrtr::Held::Live(live);
            return match self.parking.park(Box::new(p), mrtr::Parked::live_result) {
                Ok(body) => Ok(Reply::Json(wire::response(id, "result", &body))),
                Err(p) => {
                    tokio::spawn(p.abandon());
                    Err(HubError::Unavailable("too many calls waiting for input"))
                }
            };
        }
        let client_token = wire::progress_token(params).map(Bytes::copy_from_slice);
        let call = Call {
            u,
            conn: live.conn,
            up_id: live.up_id,
            rounds: p.rounds,
            sent: None,
            check: guards.output,
            timeout: guards.timeout,
        };
        self.follow(call, live.answer, env, id, client_token, s, request_id)
            .await
    }
}
