//! One upstream call relayed to its client as an SSE stream: notifications (progress tokens
//! mapped back), the upstream's requests (to a legacy client's session, or parked for a
//! 2026-07-28 client's `input_required` retry, [`super::mrtr`]), the questions of a 2026-07-28
//! upstream ([`super::rounds`]), then the response.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::conn::Conn;
use super::dispatch::{cancel, capability_for, downstream_response, raw_id, refuse_request};
use super::link::Answer;
use super::session::HubSession;
use super::{mrtr, rounds, wire, HubError, StreamEnd};
use crate::proto::{codes, sse, Envelope, Id, Kind, McpCode};

/// An upstream call: the upstream, its session, the hub's id for it, how many times it
/// already asked the client something, and (2026-07-28 upstream) the params it was sent
/// with, for the retries.
pub(super) struct Call {
    pub u: usize,
    pub conn: Arc<Conn>,
    pub up_id: i64,
    pub rounds: usize,
    pub sent: Option<Vec<u8>>,
    /// Checks on a tool call's result.
    pub check: Option<crate::controls::output::Check>,
    /// The tool's own `timeout_secs`, when configured.
    pub timeout: Option<Duration>,
}

/// What a tool call carries besides its message: the checks on its result and its own time
/// limit.
#[derive(Debug, Default)]
pub struct Guards {
    /// Checks on the result.
    pub output: Option<crate::controls::output::Check>,
    /// The tool's own time limit.
    pub timeout: Option<Duration>,
}

/// What parking a 2026-07-28 client's call needs.
pub(super) struct ParkSpot {
    pub parking: Arc<mrtr::Parking>,
    /// The client's request (a cheap copy: shared bytes and offsets).
    pub request: Envelope,
    pub u: usize,
    pub ttl: Duration,
    pub rounds: usize,
}

/// Most `input_required` rounds of one call (the Python SDK's client gives up after 10).
pub(super) const MAX_ROUNDS: usize = 10;

impl ParkSpot {
    /// Parks a 2026-07-28 upstream's `input_required` `result` for the client `s`; returns the
    /// result the client gets, naming the hub's handle.
    pub(super) fn park_ended(&self, s: &HubSession, result: &[u8]) -> Result<Vec<u8>, HubError> {
        let origin = mrtr::Origin::of(&self.request).ok_or(HubError::InvalidParams("name"))?;
        if self.rounds >= MAX_ROUNDS {
            return Err(HubError::Upstream("too many input_required rounds".into()));
        }
        let parked = Box::new(mrtr::Parked {
            principal: s.principal.clone(),
            origin,
            u: self.u,
            held: mrtr::Held::Ended(rounds::request_state(result)),
            rounds: self.rounds + 1,
            expires: Instant::now() + self.ttl,
        });
        self.parking
            .park(parked, |_, handle| rounds::for_client(result, handle))
            .map_err(|_| HubError::Unavailable("too many calls waiting for input"))
    }
}

/// Streams one request's upstream messages to the client as SSE.
pub(super) struct Relay {
    pub conn: Arc<Conn>,
    pub session: Arc<HubSession>,
    pub id: Id,
    pub method: String,
    pub client_token: Option<Bytes>,
    pub request_id: String,
    pub tx: mpsc::Sender<Bytes>,
    pub up_id: i64,
    pub attributable_only: bool,
    /// Where a 2026-07-28 client's call is parked when the upstream asks it something.
    pub park: Option<ParkSpot>,
    /// A legacy client's call to a 2026-07-28 upstream: what to send again with the client's
    /// answers, and how many rounds it took so far.
    pub retry: Option<(Vec<u8>, usize)>,
    /// Checks on a tool call's result.
    pub check: Option<crate::controls::output::Check>,
}

impl Relay {
    async fn send(&self, msg: &[u8]) -> bool {
        self.tx.send(sse::message_event_bytes(msg)).await.is_ok()
    }

    pub(super) async fn run(
        &mut self,
        first: Envelope,
        mut answer: Answer,
        idle: Duration,
    ) -> StreamEnd {
        let mut next = Some(first);
        loop {
            let env = match next.take() {
                Some(e) => e,
                None => tokio::select! {
                    next = tokio::time::timeout(idle, answer.next()) => match next {
                        Ok(Some(e)) => e,
                        Ok(None) => return self.fail(McpCode::BackendUnavailable).await,
                        Err(_) => {
                            cancel(&self.conn, self.up_id).await;
                            return self.fail(McpCode::Timeout).await;
                        }
                    },
                    // The client's stream is gone (noticed without waiting for the upstream's
                    // next message).
                    () = self.tx.closed() => return StreamEnd::ClientGone,
                },
            };
            let delivered = match env.kind() {
                Kind::Response => {
                    if let Some(result) = self.asks(&env) {
                        match self.input_required(result, idle).await {
                            Ok(retried) => {
                                answer = retried;
                                continue;
                            }
                            Err(end) => return end,
                        }
                    }
                    let out = downstream_response(
                        &env,
                        &self.id,
                        &self.method,
                        self.session.is_modern(),
                        self.conn.is_modern(),
                        self.check.as_ref(),
                    );
                    return if self.send(&out).await {
                        StreamEnd::Complete
                    } else {
                        StreamEnd::ClientGone
                    };
                }
                Kind::Notification
                    if self.attributable_only && env.method() != Some("notifications/progress") =>
                {
                    true
                }
                Kind::Notification => {
                    let msg = match (env.method(), &self.client_token, env.params()) {
                        (Some("notifications/progress"), Some(t), Some(p)) => {
                            let p = wire::set_member(p, "progressToken", Some(t));
                            wire::notification("notifications/progress", Some(&p))
                        }
                        _ => env.bytes().clone(),
                    };
                    self.send(&msg).await
                }
                Kind::Request if self.session.is_modern() && !self.attributable_only => {
                    // A 2026-07-28 client cannot take requests: the call is parked and the
                    // client asked with `input_required` (MRTR), or, where that cannot be
                    // done, the upstream gets an error.
                    match self.park(&env, answer) {
                        Ok(body) => {
                            let out = wire::response(&self.id, "result", &body);
                            return if self.send(&out).await {
                                StreamEnd::InputRequired
                            } else {
                                StreamEnd::ClientGone
                            };
                        }
                        Err(back) => {
                            answer = back;
                            refuse_request(&self.conn, &env).await;
                            true
                        }
                    }
                }
                Kind::Request => {
                    if self.session.is_modern() || self.attributable_only {
                        refuse_request(&self.conn, &env).await;
                        true
                    } else if let Some(msg) = self.relayed(&env) {
                        self.send(&msg).await
                    } else {
                        refuse_request(&self.conn, &env).await;
                        true
                    }
                }
            };
            if !delivered {
                return StreamEnd::ClientGone;
            }
        }
    }

    /// The `input_required` result of a 2026-07-28 upstream's response to a call that may ask.
    fn asks<'e>(&self, env: &'e Envelope) -> Option<&'e [u8]> {
        if !self.conn.is_modern() || !mrtr::may_ask(&self.method) {
            return None;
        }
        env.result().filter(|r| rounds::is_input_required(r))
    }

    /// A 2026-07-28 upstream asks for input: a 2026-07-28 client gets the question (its call
    /// parked); a legacy client is asked on this stream and the upstream gets the retry,
    /// whose answer is returned to relay on.
    async fn input_required(&mut self, result: &[u8], idle: Duration) -> Result<Answer, StreamEnd> {
        if self.session.is_modern() {
            let parked = match &self.park {
                Some(spot) => spot.park_ended(&self.session, result),
                None => Err(HubError::Upstream("not a call that may ask".into())),
            };
            return Err(match parked {
                Ok(body) => {
                    if self.send(&wire::response(&self.id, "result", &body)).await {
                        StreamEnd::InputRequired
                    } else {
                        StreamEnd::ClientGone
                    }
                }
                Err(e) => {
                    tracing::warn!(target: "palisade::hub", upstream = %self.conn.name, error = %e, "input_required not passed on");
                    self.fail(McpCode::BackendUnavailable).await
                }
            });
        }
        match self.ask_client(result, idle).await {
            Ok(a) => Ok(a),
            Err(Some(why)) => {
                tracing::warn!(target: "palisade::hub", upstream = %self.conn.name, reason = why, "input_required not answered");
                Err(self.fail(McpCode::BackendUnavailable).await)
            }
            Err(None) => Err(StreamEnd::ClientGone),
        }
    }

    /// Asks a legacy client the upstream's questions, waits for every answer, and sends the
    /// upstream the retry. `Err(None)`: the client went away; `Err(Some(why))`: the call fails.
    async fn ask_client(
        &mut self,
        result: &[u8],
        idle: Duration,
    ) -> Result<Answer, Option<&'static str>> {
        let Some((sent, rounds)) = &mut self.retry else {
            return Err(Some("not a call that may ask"));
        };
        *rounds += 1;
        if *rounds > MAX_ROUNDS {
            return Err(Some("too many rounds"));
        }
        let questions = rounds::questions(result).ok_or("malformed inputRequests")?;
        let mut waiting = Vec::with_capacity(questions.len());
        for q in questions {
            let declared = capability_for(&q.method).is_some_and(|c| self.session.declared(c));
            if !declared {
                return Err(Some("the client did not declare the capability asked for"));
            }
            let (hid, rx) = self.session.ask().ok_or("too many requests pending")?;
            let msg = wire::request(hid, &q.method, q.params.as_deref());
            if self.tx.send(sse::message_event_bytes(&msg)).await.is_err() {
                return Err(None);
            }
            waiting.push((q.key, rx));
        }
        let mut answers = Vec::with_capacity(waiting.len());
        for (key, rx) in waiting {
            let got = tokio::select! {
                got = tokio::time::timeout(idle, rx) => got,
                () = self.tx.closed() => return Err(None),
            };
            match got {
                Ok(Ok((true, value))) => answers.push((key, value)),
                Ok(Ok((false, _))) => return Err(Some("the client answered with an error")),
                _ => return Err(Some("the client did not answer")),
            }
        }
        let params = rounds::retry_params(sent, &answers, rounds::request_state(result).as_deref());
        let up_id = self.conn.next_id();
        self.session.begin(&self.id, &self.conn, up_id);
        self.up_id = up_id;
        self.conn
            .send(up_id, &self.method, Some(&params))
            .await
            .map_err(|_| Some("the retry failed"))
    }

    /// Parks the call for the upstream's request `env`; returns the `input_required` result, or
    /// the answer stream back when the call cannot be parked (not a request that may ask, a
    /// capability the client did not declare, too many rounds, no room).
    #[allow(clippy::result_large_err)] // once per question asked, not per message
    fn park(&self, env: &Envelope, answer: Answer) -> Result<Vec<u8>, Answer> {
        let Some(spot) = &self.park else {
            return Err(answer);
        };
        let declared = env
            .method()
            .and_then(capability_for)
            .is_some_and(|cap| self.session.declared(cap));
        let asked = raw_id(env).and_then(|up| mrtr::Asked::new(env, up, spot.rounds + 1));
        let origin = mrtr::Origin::of(&spot.request);
        let (true, Some(asked), Some(origin), true) =
            (declared, asked, origin, spot.rounds < MAX_ROUNDS)
        else {
            return Err(answer);
        };
        let parked = Box::new(mrtr::Parked {
            principal: self.session.principal.clone(),
            origin,
            u: spot.u,
            held: mrtr::Held::Live(mrtr::Live {
                conn: self.conn.clone(),
                up_id: self.up_id,
                answer,
                asked: vec![asked],
            }),
            rounds: spot.rounds + 1,
            expires: Instant::now() + spot.ttl,
        });
        match spot.parking.park(parked, mrtr::Parked::live_result) {
            Ok(body) => Ok(body),
            Err(p) => match p.held {
                mrtr::Held::Live(l) => Err(l.answer),
                mrtr::Held::Ended(_) => Err(Answer::One(None)), // not what was parked
            },
        }
    }

    /// The upstream's request with an id of this session, recorded for the answer.
    fn relayed(&self, env: &Envelope) -> Option<Vec<u8>> {
        let cap = capability_for(env.method()?)?;
        if !self.session.declared(cap) {
            return None;
        }
        let hid = self.session.relay(&self.conn, raw_id(env)?)?;
        Some(wire::set_member(
            env.bytes(),
            "id",
            Some(hid.to_string().as_bytes()),
        ))
    }

    async fn fail(&self, code: McpCode) -> StreamEnd {
        let msg = codes::error_body(
            Some(&self.id),
            codes::rpc::INTERNAL_ERROR,
            "Upstream error",
            code,
            &self.request_id,
        );
        if self.send(msg.as_bytes()).await {
            StreamEnd::UpstreamFailed
        } else {
            StreamEnd::ClientGone
        }
    }
}
