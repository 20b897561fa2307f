//! Multi round-trip requests (2026-07-28, "MRTR") bridged to legacy upstreams.
//!
//! A legacy upstream asks its client something in the middle of a call (`sampling/createMessage`,
//! `elicitation/create`, `roots/list`), but a 2026-07-28 client has no channel for requests from
//! the server: it expects the call to end with an `input_required` result naming what is needed,
//! and retries the same request (new id) with `inputResponses` and the `requestState` it was
//! given. The hub therefore parks the upstream call (its upstream session, its request id and the
//! stream its answer arrives on), answers the client with `input_required`, and when the retry
//! comes, answers the upstream's waiting request with the client's response and goes on relaying
//! the same upstream call.
//!
//! `requestState` is only a handle, `ph1.` and 128 bits from the operating system's CSPRNG in
//! hex, naming a parked call in this process. Nothing in it is trusted: the parked call records
//! the principal that may resume it, what it was (method, name, a digest of its arguments) and
//! until when; a handle is used once. A retry that fails any check gets -32602 "Invalid or
//! expired requestState" (HTTP 400), as the Python SDK answers; the call it named is cancelled
//! unless the caller was another principal (who cannot cancel what is not theirs).
//!
//! The same parking keeps the 2026-07-28 upstreams' own `input_required` results for a
//! 2026-07-28 client ([`super::rounds`]): there the client's handle stands for the upstream's
//! `requestState`, which the client never sees.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::conn::Conn;
use super::link::Answer;
use super::{lock, wire};
use crate::proto::Envelope;

/// Prefix of the hub's `requestState` handles (a version, should the format change).
const PREFIX: &str = "ph1.";

/// Requests that may end with `input_required` (the spec's list).
pub fn may_ask(method: &str) -> bool {
    matches!(method, "tools/call" | "prompts/get" | "resources/read")
}

/// What a parked call was, as the client named it: a retry must name the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    method: String,
    name: String,
    arguments: [u8; 32],
}

impl Origin {
    /// The origin of a request that may end with `input_required`.
    pub fn of(env: &Envelope) -> Option<Origin> {
        let method = env.method()?;
        if !may_ask(method) {
            return None;
        }
        let name = env
            .param_str(if method == "resources/read" {
                "uri"
            } else {
                "name"
            })?
            .into_owned();
        // Arguments compared as JSON values (a client may serialise them differently on the
        // retry), digested in serde_json's canonical map order.
        let args = env
            .params()
            .and_then(|p| wire::member(p, "arguments"))
            .and_then(|a| serde_json::from_slice::<serde_json::Value>(a).ok())
            .unwrap_or(serde_json::Value::Null);
        let arguments = Sha256::digest(serde_json::to_vec(&args).unwrap_or_default()).into();
        Some(Origin {
            method: method.to_owned(),
            name,
            arguments,
        })
    }
}

/// One question the upstream asked, as the client sees it and as the upstream awaits it.
#[derive(Debug)]
pub struct Asked {
    /// The key in `inputRequests` / `inputResponses`.
    key: String,
    /// The upstream's id for the request (raw JSON).
    upstream_id: Bytes,
    /// `{"method":…,"params":…}`, the `inputRequests` entry.
    request: Vec<u8>,
}

impl Asked {
    /// The upstream's request `env` (with raw id `upstream_id`) as question number `n`.
    pub fn new(env: &Envelope, upstream_id: Bytes, n: usize) -> Option<Asked> {
        let method = env.method()?;
        let mut request = Vec::with_capacity(64);
        request.extend_from_slice(b"{\"method\":");
        request.extend_from_slice(&serde_json::to_vec(method).ok()?);
        if let Some(p) = env.params() {
            request.extend_from_slice(b",\"params\":");
            request.extend_from_slice(p);
        }
        request.push(b'}');
        Some(Asked {
            key: format!("palisade-{n}"),
            upstream_id,
            request,
        })
    }
}

/// A call waiting for the client's retry.
#[derive(Debug)]
pub struct Parked {
    /// Who may resume it.
    pub principal: Arc<str>,
    /// What it was.
    pub origin: Origin,
    /// The upstream (index).
    pub u: usize,
    /// What is kept of the upstream call.
    pub held: Held,
    /// How many questions the call asked so far.
    pub rounds: usize,
    /// When it is given up.
    pub expires: Instant,
}

/// What a parked call keeps of its upstream call.
#[derive(Debug)]
pub enum Held {
    /// A legacy upstream's call, still running, waiting for the answers to its requests.
    Live(Live),
    /// A 2026-07-28 upstream's call, which ended `input_required`: the retry is a new request
    /// carrying the upstream's own `requestState` (raw JSON, when it gave one).
    Ended(Option<Bytes>),
}

/// A legacy upstream's call waiting for answers.
#[derive(Debug)]
pub struct Live {
    /// Its session the call runs on.
    pub conn: Arc<Conn>,
    /// The hub's id for the call there.
    pub up_id: i64,
    /// The stream its answer arrives on.
    pub answer: Answer,
    /// The questions still open.
    pub asked: Vec<Asked>,
}

impl Live {
    /// The `input_required` result for the open questions, with `state`.
    pub fn input_required(&self, state: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(b"{\"resultType\":\"input_required\",\"inputRequests\":{");
        for (i, a) in self.asked.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&serde_json::to_vec(&a.key).unwrap_or_default());
            out.push(b':');
            out.extend_from_slice(&a.request);
        }
        out.extend_from_slice(b"},\"requestState\":");
        out.extend_from_slice(&serde_json::to_vec(state).unwrap_or_default());
        out.push(b'}');
        out
    }

    /// Sends the client's responses to the upstream's waiting requests. Returns whether every
    /// open question was answered; the unanswered ones stay open.
    pub async fn deliver(
        &mut self,
        responses: &HashMap<String, Box<serde_json::value::RawValue>>,
    ) -> bool {
        let mut open = Vec::new();
        for a in self.asked.drain(..) {
            match responses.get(&a.key) {
                Some(v) => {
                    let _ = self
                        .conn
                        .post(wire::response_raw_id(
                            &a.upstream_id,
                            "result",
                            v.get().as_bytes(),
                        ))
                        .await;
                }
                None => open.push(a),
            }
        }
        self.asked = open;
        self.asked.is_empty()
    }
}

impl Parked {
    /// The `input_required` result of a live call's open questions, under `state` (for
    /// [`Parking::park`]; an ended call's result is the upstream's own, [`super::rounds`]).
    pub fn live_result(&self, state: &str) -> Vec<u8> {
        match &self.held {
            Held::Live(l) => l.input_required(state),
            Held::Ended(_) => Vec::new(),
        }
    }

    /// Gives up: a live call's waiting upstream requests get an error, and the call is
    /// cancelled. (An ended call has nothing left upstream.)
    pub async fn abandon(self) {
        let Held::Live(live) = self.held else { return };
        for a in &live.asked {
            let err = wire::error_object(
                crate::proto::codes::rpc::INTERNAL_ERROR,
                "The client did not answer",
            );
            let _ = live
                .conn
                .post(wire::response_raw_id(&a.upstream_id, "error", &err))
                .await;
        }
        super::dispatch::cancel(&live.conn, live.up_id).await;
    }
}

/// Why a retry's `requestState` was refused (each is audited; the client sees one message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Not a handle of ours.
    #[error("malformed requestState")]
    Malformed,
    /// No parked call by that handle (never issued, used, expired, or another replica's).
    #[error("unknown or expired requestState")]
    Unknown,
    /// Issued to another principal.
    #[error("requestState of another principal")]
    OtherPrincipal,
    /// The retry is not the request the call was parked for.
    #[error("requestState of another request")]
    OtherRequest,
}

/// The parked calls of this process, bounded.
#[derive(Debug)]
pub struct Parking {
    calls: Mutex<HashMap<u128, Box<Parked>>>,
    capacity: usize,
}

impl Parking {
    /// Room for `capacity` parked calls.
    pub fn new(capacity: usize) -> Self {
        Parking {
            calls: Mutex::default(),
            capacity,
        }
    }

    /// Parks `p`; returns the `input_required` result naming its new handle (written by
    /// `result`), or gives `p` back when there is no room.
    pub fn park(
        &self,
        p: Box<Parked>,
        result: impl FnOnce(&Parked, &str) -> Vec<u8>,
    ) -> Result<Vec<u8>, Box<Parked>> {
        let mut calls = lock(&self.calls);
        if calls.len() >= self.capacity {
            return Err(p);
        }
        let mut b = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut b);
        let handle = u128::from_be_bytes(b);
        let state = format!("{PREFIX}{handle:032x}");
        let body = result(&p, &state);
        calls.insert(handle, p);
        Ok(body)
    }

    /// Takes the call `state` names for a retry by `principal` of `origin`, once. A wrong
    /// principal leaves the call parked; a wrong request ends it (returned in the error, for
    /// the caller to abandon).
    pub fn take(
        &self,
        state: &str,
        principal: &str,
        origin: &Origin,
        now: Instant,
    ) -> Result<Box<Parked>, (StateError, Option<Box<Parked>>)> {
        let handle = state
            .strip_prefix(PREFIX)
            .filter(|h| h.len() == 32 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .and_then(|h| u128::from_str_radix(h, 16).ok())
            .ok_or((StateError::Malformed, None))?;
        let mut calls = lock(&self.calls);
        match calls.get(&handle) {
            None => return Err((StateError::Unknown, None)),
            Some(p) if &*p.principal != principal => {
                return Err((StateError::OtherPrincipal, None))
            }
            Some(_) => {}
        }
        let p = calls.remove(&handle).ok_or((StateError::Unknown, None))?;
        if p.expires <= now {
            return Err((StateError::Unknown, Some(p)));
        }
        if &p.origin != origin {
            return Err((StateError::OtherRequest, Some(p)));
        }
        Ok(p)
    }

    /// Removes the calls whose time is up at `now`.
    pub fn expired(&self, now: Instant) -> Vec<Box<Parked>> {
        let mut calls = lock(&self.calls);
        let gone: Vec<u128> = calls
            .iter()
            .filter(|(_, p)| p.expires <= now)
            .map(|(k, _)| *k)
            .collect();
        gone.into_iter().filter_map(|k| calls.remove(&k)).collect()
    }

    /// How many calls are parked.
    pub fn count(&self) -> usize {
        lock(&self.calls).len()
    }
}
