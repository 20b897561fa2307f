//! A client's session with the hub: what it negotiated, its listen stream, and the requests
//! relayed to it from upstreams (so an answer goes back to the upstream that asked, and only
//! this session can give it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::conn::Conn;
use crate::controls::session::SessionId;
use crate::proto::{sse, Id};

/// One downstream session (legacy era), or one stateless request (modern era).
#[derive(Debug)]
pub struct HubSession {
    /// Our session id (`None`: a stateless 2026-07-28 request).
    pub id: Option<SessionId>,
    /// The principal it is bound to.
    pub principal: Arc<str>,
    /// The protocol version agreed with the client.
    pub version: String,
    /// The client's capabilities that the hub may declare upstream on its behalf (`sampling`,
    /// `elicitation`, `roots`), as raw JSON.
    pub capabilities: Bytes,
    listen: Mutex<Option<mpsc::Sender<Bytes>>>,
    relayed: Mutex<HashMap<i64, Waiter>>,
    inflight: Mutex<HashMap<Id, (Weak<Conn>, i64)>>,
    next_id: AtomicI64,
    watching: Mutex<Vec<u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Who waits for the client's answer to a request sent to it.
#[derive(Debug)]
pub enum Waiter {
    /// The upstream that asked (its id for the request, raw JSON).
    Upstream(Weak<Conn>, Bytes),
    /// The hub itself, asking for a 2026-07-28 upstream ([`super::rounds`]).
    Hub(oneshot::Sender<ClientAnswer>),
}

/// A client's answer: `result` (true) or `error`, and the member's raw JSON.
pub type ClientAnswer = (bool, Bytes);

impl Waiter {
    fn waiting(&self) -> bool {
        match self {
            Waiter::Upstream(c, _) => c.strong_count() > 0,
            Waiter::Hub(tx) => !tx.is_closed(),
        }
    }
}

/// Most server-to-client requests awaiting this session's answer.
const MAX_RELAYED: usize = 256;

impl HubSession {
    /// A new session.
    pub fn new(
        id: Option<SessionId>,
        principal: Arc<str>,
        version: String,
        capabilities: Bytes,
    ) -> Self {
        HubSession {
            id,
            principal,
            version,
            capabilities,
            listen: Mutex::default(),
            relayed: Mutex::default(),
            inflight: Mutex::default(),
            next_id: AtomicI64::new(1),
            watching: Mutex::default(),
        }
    }

    /// Records that this session watches upstream session `serial`; false if it already did.
    pub fn note_watching(&self, serial: u64) -> bool {
        let mut w = lock(&self.watching);
        if w.contains(&serial) {
            return false;
        }
        w.push(serial);
        true
    }

    /// True for a stateless (2026-07-28) request: nothing can be sent to it outside its own
    /// response, and no server-to-client request can reach it.
    pub fn is_modern(&self) -> bool {
        self.id.is_none()
    }

    /// Whether the client declared `capability` (`sampling`, `elicitation`, `roots`).
    pub fn declared(&self, capability: &str) -> bool {
        super::wire::member(&self.capabilities, capability).is_some()
    }

    /// Opens the listen stream; a second GET replaces the first (the spec allows one stream
    /// per session to carry each message).
    pub fn open_listen(&self) -> mpsc::Receiver<Bytes> {
        let (tx, rx) = mpsc::channel(64);
        *lock(&self.listen) = Some(tx);
        rx
    }

    /// Sends a message on the listen stream; false when there is none (or it is full).
    pub fn push(&self, message: &[u8]) -> bool {
        let tx = lock(&self.listen).clone();
        match tx {
            Some(tx) => tx.try_send(sse::message_event_bytes(message)).is_ok(),
            None => false,
        }
    }

    /// Records an upstream's request relayed to this client; returns the id the client sees.
    pub fn relay(&self, conn: &Arc<Conn>, upstream_id: Bytes) -> Option<i64> {
        self.wait_for(Waiter::Upstream(Arc::downgrade(conn), upstream_id))
    }

    /// Records a request the hub itself sends this client; returns its id and where the
    /// answer will arrive.
    pub fn ask(&self) -> Option<(i64, oneshot::Receiver<ClientAnswer>)> {
        let (tx, rx) = oneshot::channel();
        Some((self.wait_for(Waiter::Hub(tx))?, rx))
    }

    fn wait_for(&self, w: Waiter) -> Option<i64> {
        let mut r = lock(&self.relayed);
        r.retain(|_, w| w.waiting());
        if r.len() >= MAX_RELAYED {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        r.insert(id, w);
        Some(id)
    }

    /// Who waits for the client's answer `id`, once.
    pub fn answered(&self, id: &Id) -> Option<Waiter> {
        let Id::Num(n) = id else { return None };
        lock(&self.relayed).remove(n)
    }

    /// Remembers which upstream request a client request became (for cancellation).
    pub fn begin(&self, id: &Id, conn: &Arc<Conn>, upstream_id: i64) {
        lock(&self.inflight).insert(id.clone(), (Arc::downgrade(conn), upstream_id));
    }

    /// Forgets it.
    pub fn end(&self, id: &Id) {
        lock(&self.inflight).remove(id);
    }

    /// The upstream request a client request id became, if still running.
    pub fn inflight(&self, id: &Id) -> Option<(Arc<Conn>, i64)> {
        let g = lock(&self.inflight);
        let (c, n) = g.get(id)?;
        Some((c.upgrade()?, *n))
    }
}
