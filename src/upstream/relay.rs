//! Response checks: exactly one response per request id, whatever the upstream does.
//!
//! JSON answers are read (bounded) and checked before they are sent on. SSE answers are relayed
//! event by event as they complete, with the upstream's bytes unchanged; the response to the
//! request ends the stream, a second response or a response to another id is dropped, a response
//! carrying both `result` and `error` is replaced by a protocol error, and a stream that ends
//! without a response gets one (MCP-003). Idle streams get comment keep-alives.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::mpsc;

use crate::app::body::{self, Body};
use crate::controls::output::Check;
use crate::proto::{codes, json::JsonError, sse, Envelope, EnvelopeError, Id, Kind, McpCode};

/// Why an upstream answer was not passed on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseError {
    /// The answer is not a single valid JSON-RPC response to the request.
    #[error("upstream protocol error: {0}")]
    Protocol(&'static str),
    /// The answer exceeds `limits.max_response_bytes`.
    #[error("upstream response too large")]
    TooLarge,
    /// The upstream connection failed while the answer was read.
    #[error("upstream failed mid-response: {0}")]
    Read(String),
}

/// Reads a whole (non-SSE) upstream body, bounded.
pub async fn collect(body: Incoming, limit: usize) -> Result<Bytes, ResponseError> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ResponseError::TooLarge),
        Err(e) => Err(ResponseError::Read(e.to_string())),
    }
}

/// Checks that `bytes` is exactly one JSON-RPC response to `id`.
pub fn check_response(bytes: Bytes, id: &Id, max_depth: usize) -> Result<Bytes, ResponseError> {
    check_response_env(bytes, id, max_depth).map(|env| env.bytes().clone())
}

/// [`check_response`], keeping the parsed message.
fn check_response_env(bytes: Bytes, id: &Id, max_depth: usize) -> Result<Envelope, ResponseError> {
    match Envelope::parse(bytes, max_depth) {
        Ok(env) if env.kind() == Kind::Response && env.id() == Some(id) => Ok(env),
        Ok(env) if env.kind() == Kind::Response => {
            Err(ResponseError::Protocol("response to another id"))
        }
        Ok(_) => Err(ResponseError::Protocol("not a response")),
        Err(EnvelopeError::ResultAndError) => Err(ResponseError::Protocol("both result and error")),
        Err(EnvelopeError::Json(JsonError::Array)) => {
            Err(ResponseError::Protocol("batch response"))
        }
        Err(_) => Err(ResponseError::Protocol("invalid JSON-RPC")),
    }
}

/// Reads and checks a JSON answer to request `id`, and a tool call's result (`check`).
pub async fn relay_json(
    body: Incoming,
    id: &Id,
    limit: usize,
    max_depth: usize,
    check: Option<&Check>,
) -> Result<Bytes, ResponseError> {
    let env = check_response_env(collect(body, limit).await?, id, max_depth)?;
    Ok(match check.and_then(|c| c.response(&env)) {
        Some(changed) => changed,
        None => env.bytes().clone(),
    })
}

/// How an SSE relay ended, for the audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEnd {
    /// The response to the request was delivered (or, for a listen stream, the upstream ended it).
    Complete,
    /// The upstream ended or failed before responding; a protocol error was sent instead.
    UpstreamFailed,
    /// The upstream answered with both result and error; a protocol error was sent instead.
    ProtocolError,
    /// The client went away.
    ClientGone,
}

/// What an SSE relay reports when it ends.
#[derive(Debug, Clone, Copy)]
pub struct RelaySummary {
    /// How it ended.
    pub end: RelayEnd,
    /// Bytes sent to the client.
    pub bytes_out: u64,
    /// Upstream responses dropped (duplicates or foreign ids).
    pub dropped: u32,
}

/// Relays an upstream SSE body. `id` is the request's id (`None` for a GET listen stream).
/// `on_end` runs once when the relay finishes, whichever way.
#[allow(clippy::too_many_arguments)]
pub fn relay_sse(
    upstream: Incoming,
    id: Option<Id>,
    request_id: String,
    keepalive: Option<Duration>,
    max_event: usize,
    max_depth: usize,
    check: Option<Check>,
    on_end: impl FnOnce(RelaySummary) + Send + 'static,
) -> Body {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let mut r = Relay {
            tx,
            check,
            id,
            request_id,
            bytes_out: 0,
            dropped: 0,
            max_depth,
        };
        let end = r.run(upstream, keepalive, max_event).await;
        on_end(RelaySummary {
            end,
            bytes_out: r.bytes_out,
            dropped: r.dropped,
        });
    });
    body::from_channel(rx)
}

/// Relays an upstream SSE body to its end, with the same checks and bytes as a live relay,
/// and returns what it would have sent and how it ended (for answers that must be whole
/// before they leave: stored replays, filtered lists).
pub async fn collect_sse(
    upstream: Incoming,
    id: Option<Id>,
    request_id: String,
    max_event: usize,
    max_depth: usize,
    check: Option<Check>,
) -> (Bytes, RelayEnd) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let relayed = relay_sse(
        upstream,
        id,
        request_id,
        None,
        max_event,
        max_depth,
        check,
        move |s| {
            let _ = tx.send(s.end);
        },
    );
    let bytes = http_body_util::BodyExt::collect(relayed)
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let end = rx.await.unwrap_or(RelayEnd::ProtocolError);
    (bytes, end)
}

struct Relay {
    tx: mpsc::Sender<Bytes>,
    check: Option<Check>,
    id: Option<Id>,
    request_id: String,
    bytes_out: u64,
    dropped: u32,
    max_depth: usize,
}

enum Step {
    Continue,
    Done(RelayEnd),
}

impl Relay {
    async fn send(&mut self, b: Bytes) -> bool {
        self.bytes_out += b.len() as u64;
        self.tx.send(b).await.is_ok()
    }

    async fn fail(&mut self, end: RelayEnd) -> RelayEnd {
        if let Some(id) = self.id.clone() {
            let msg = codes::error_body(
                Some(&id),
                codes::rpc::INTERNAL_ERROR,
                "Upstream error",
                McpCode::BackendUnavailable,
                &self.request_id,
            );
            if !self.send(sse::message_event(&msg)).await {
                return RelayEnd::ClientGone;
            }
        }
        end
    }

    async fn run(
        &mut self,
        mut upstream: Incoming,
        keepalive: Option<Duration>,
        max_event: usize,
    ) -> RelayEnd {
        let mut split = sse::Splitter::default();
        loop {
            let next = match keepalive {
                Some(k) => match tokio::time::timeout(k, upstream.frame()).await {
                    Ok(f) => f,
                    Err(_) => {
                        if !self.send(Bytes::from_static(b": keep-alive\n\n")).await {
                            return RelayEnd::ClientGone;
                        }
                        continue;
                    }
                },
                None => upstream.frame().await,
            };
            match next {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    split.push(&data);
                    while let Some(event) = split.next_event() {
                        match self.event(event).await {
                            Step::Continue => {}
                            Step::Done(end) => return end,
                        }
                    }
                    if split.pending_len() > max_event {
                        tracing::warn!(target: "palisade::upstream", "upstream SSE event too large");
                        return self.fail(RelayEnd::ProtocolError).await;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(target: "palisade::upstream", error = %e, "upstream stream failed");
                    return self.fail(RelayEnd::UpstreamFailed).await;
                }
                None => {
                    return match self.id {
                        Some(_) => self.fail(RelayEnd::UpstreamFailed).await,
                        None => RelayEnd::Complete,
                    }
                }
            }
        }
    }

    async fn event(&mut self, event: Bytes) -> Step {
        let data = match sse::data(&event) {
            None => None,
            Some(d) if d.iter().all(u8::is_ascii_whitespace) => None,
            Some(d) => Some(Bytes::copy_from_slice(&d)),
        };
        let Some(data) = data else {
            // Comments, `retry:`, priming events: passed on as they are.
            return if self.send(event).await {
                Step::Continue
            } else {
                Step::Done(RelayEnd::ClientGone)
            };
        };
        match Envelope::parse(data, self.max_depth) {
            Ok(env) if env.kind() == Kind::Response => match &self.id {
                Some(id) if env.id() == Some(id) => {
                    let event = match self.check.as_ref().and_then(|c| c.response(&env)) {
                        Some(changed) => sse::message_event_bytes(&changed),
                        None => event,
                    };
                    if !self.send(event).await {
                        return Step::Done(RelayEnd::ClientGone);
                    }
                    // Exactly one response: the stream for this request is over.
                    self.id = None;
                    Step::Done(RelayEnd::Complete)
                }
                Some(_) => {
                    self.dropped += 1;
                    tracing::warn!(target: "palisade::upstream", "dropped an upstream response to another id");
                    Step::Continue
                }
                // Listen streams may carry responses only when resuming; pass them on.
                None => {
                    if self.send(event).await {
                        Step::Continue
                    } else {
                        Step::Done(RelayEnd::ClientGone)
                    }
                }
            },
            Ok(_) => {
                if self.send(event).await {
                    Step::Continue
                } else {
                    Step::Done(RelayEnd::ClientGone)
                }
            }
            Err(EnvelopeError::ResultAndError) if self.id.is_some() => {
                Step::Done(self.fail(RelayEnd::ProtocolError).await)
            }
            Err(e) => {
                // Never pass on what could not be inspected.
                self.dropped += 1;
                tracing::warn!(target: "palisade::upstream", error = %e, "dropped an invalid upstream SSE event");
                Step::Continue
            }
        }
    }
}
