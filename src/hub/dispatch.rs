//! What the hub does with each message a client sends: answer it itself (`initialize`,
//! `server/discover`, `ping`, the merged lists), route it to the upstream that owns it (calls,
//! reads, completions), or deliver it to the upstream waiting for it (answers to relayed
//! requests, cancellations).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::conn::{Conn, ListKind};
use super::link::Answer;
use super::session::HubSession;
use super::wire::{self, ParamEdits};
use super::{era, mrtr, names, Hub, HubError, View};
use crate::proto::{codes, sse, Envelope, Id, Kind, McpCode};

/// The hub's answer to one POST.
#[derive(Debug)]
pub enum Reply {
    /// A JSON-RPC response (HTTP 200, `application/json`).
    Json(Bytes),
    /// Accepted (HTTP 202, no body): notifications and answers.
    Accepted,
    /// An SSE stream: the upstream's messages about the request, then its response.
    Stream(mpsc::Receiver<Bytes>, oneshot::Receiver<StreamEnd>),
}

/// How a streamed answer ended, for the audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The response was delivered.
    Complete,
    /// The upstream failed before responding; an error response was sent instead.
    UpstreamFailed,
    /// The client went away.
    ClientGone,
    /// The upstream asked the client something: the call is parked and the client got an
    /// `input_required` result (2026-07-28).
    InputRequired,
}

/// Methods answered or routed by the hub. Anything else gets -32601.
fn list_kind(method: &str) -> Option<ListKind> {
    Some(match method {
        "tools/list" => ListKind::Tools,
        "prompts/list" => ListKind::Prompts,
        "resources/list" => ListKind::Resources,
        "resources/templates/list" => ListKind::Templates,
        _ => return None,
    })
}

impl Hub {
    /// Serves one message of session `s` on `view`. `request_id` goes into errors sent on
    /// streams.
    pub async fn post(
        &self,
        view: View,
        env: &Envelope,
        s: &Arc<HubSession>,
        request_id: &str,
        headers: &http::HeaderMap,
    ) -> Result<Reply, HubError> {
        match env.kind() {
            Kind::Response => self.answer(env, s).await,
            Kind::Notification => {
                self.notification(view, env, s).await;
                Ok(Reply::Accepted)
            }
            Kind::Request => self.request(view, env, s, request_id, headers).await,
        }
    }

    /// `initialize`: the hub's own answer, after starting (or reusing) the caller's upstream
    /// sessions so that the capabilities are what they offer.
    pub async fn initialize(&self, view: View, s: &Arc<HubSession>) -> Bytes {
        let conns = self.connect_all(view, s).await;
        let refs: Vec<&Conn> = conns.iter().map(|(_, c)| &**c).collect();
        Bytes::from(era::initialize_result(&s.version, era::capabilities(&refs)))
    }

    async fn request(
        &self,
        view: View,
        env: &Envelope,
        s: &Arc<HubSession>,
        request_id: &str,
        headers: &http::HeaderMap,
    ) -> Result<Reply, HubError> {
        let id = env.id().ok_or(HubError::InvalidParams("id"))?;
        let method = env.method().unwrap_or_default();
        let modern = s.is_modern();
        let result = |r: &[u8]| {
            Ok(Reply::Json(wire::response(
                id,
                "result",
                &era::fit_result(r, method, modern),
            )))
        };
        match method {
            "ping" if !modern => result(b"{}"),
            "server/discover" if modern => {
                let conns = self.connect_all(view, s).await;
                let refs: Vec<&Conn> = conns.iter().map(|(_, c)| &**c).collect();
                result(&era::discover_result(era::capabilities(&refs)))
            }
            "logging/setLevel" if !modern => {
                for (_, c) in self.connect_all(view, s).await {
                    if c.offers("logging") {
                        let _ = c.call(method, env.params()).await;
                    }
                }
                result(b"{}")
            }
            m => {
                if let Some(kind) = list_kind(m) {
                    if env
                        .params()
                        .and_then(|p| wire::member(p, "cursor"))
                        .is_some()
                    {
                        // The hub answers with whole lists and never hands out a cursor.
                        return Err(HubError::InvalidParams("unknown cursor"));
                    }
                    let merged = self.merged(view, kind, s).await;
                    return result(&merged);
                }
                let (u, edits) = self.route(view, m, env, s).await?;
                if modern && m == "tools/call" {
                    self.check_param_headers(u, edits.as_deref(), env, s, headers)
                        .await?;
                }
                if modern && mrtr::may_ask(m) {
                    if let Some(state) = env.params().and_then(|p| wire::member(p, "requestState"))
                    {
                        return self.resume(u, env, id, state, s, request_id).await;
                    }
                }
                self.call(u, env, id, edits, s, request_id).await
            }
        }
    }

    /// 2026-07-28: the `Mcp-Param-*` headers of a call must say what its arguments say, for the
    /// parameters the tool's schema annotates with `x-mcp-header`.
    async fn check_param_headers(
        &self,
        u: usize,
        original: Option<&str>,
        env: &Envelope,
        s: &Arc<HubSession>,
        headers: &http::HeaderMap,
    ) -> Result<(), HubError> {
        let name = match original {
            Some(n) => std::borrow::Cow::Borrowed(n),
            None => env
                .param_str("name")
                .ok_or(HubError::InvalidParams("name"))?,
        };
        let tools = self.conn(u, s).await?.list(ListKind::Tools).await?;
        let Some(schema) = tools
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some(&*name))
            .and_then(|t| t.get("inputSchema"))
        else {
            return Ok(()); // an unknown tool is the upstream's to refuse
        };
        let args: Option<Value> = env
            .params()
            .and_then(|p| wire::member(p, "arguments"))
            .and_then(|a| serde_json::from_slice(a).ok());
        crate::controls::mirror::check_params(headers, args.as_ref(), schema)?;
        Ok(())
    }

    /// Every upstream session of the view for this caller; failures are logged and skipped
    /// (a down upstream must not break the others).
    async fn connect_all(&self, view: View, s: &Arc<HubSession>) -> Vec<(usize, Arc<Conn>)> {
        let members = self.members(view);
        let all = futures_util::future::join_all(members.iter().map(|u| self.conn(*u, s))).await;
        let mut out = Vec::with_capacity(all.len());
        for (u, r) in members.into_iter().zip(all) {
            match r {
                Ok(c) => out.push((u, c)),
                Err(e) => {
                    tracing::warn!(target: "palisade::hub", upstream = %self.ups[u].name, error = %e, "upstream left out")
                }
            }
        }
        out
    }

    /// The merged list of `kind` (result object), namespaced on `/mcp`.
    async fn merged(&self, view: View, kind: ListKind, s: &Arc<HubSession>) -> Vec<u8> {
        let conns = self.connect_all(view, s).await;
        let lists = futures_util::future::join_all(conns.iter().map(|(_, c)| c.list(kind))).await;
        let mut items = Vec::new();
        let mut seen = HashSet::new();
        for ((u, _), list) in conns.iter().zip(lists) {
            let up = &self.ups[*u].name;
            let list = match list {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(target: "palisade::hub", upstream = %up, error = %e, "{} left out", kind.method());
                    continue;
                }
            };
            for item in list.iter() {
                let mut item = item.clone();
                let key = match kind {
                    ListKind::Tools | ListKind::Prompts => {
                        let Some(name) = item.get("name").and_then(Value::as_str) else {
                            continue;
                        };
                        if view == View::All {
                            match names::join(up, name) {
                                Ok(n) => item["name"] = Value::String(n),
                                Err(e) => {
                                    tracing::error!(target: "palisade::hub", upstream = %up, error = %e, "{} left out of the merged list", kind.member());
                                    continue;
                                }
                            }
                        }
                        item["name"].as_str().unwrap_or_default().to_owned()
                    }
                    ListKind::Resources => item
                        .get("uri")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    ListKind::Templates => item
                        .get("uriTemplate")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                };
                // Two upstreams offering the same resource URI, or one upstream listing a name
                // twice: reported, and the first one wins for routing too.
                if !seen.insert(key.clone()) {
                    tracing::error!(target: "palisade::hub", upstream = %up, name = %key, "collision in the merged {} list: later entry left out", kind.member());
                    continue;
                }
                items.push(item);
            }
        }
        let mut out = serde_json::Map::new();
        out.insert(kind.member().into(), Value::Array(items));
        serde_json::to_vec(&out).unwrap_or_default()
    }

    /// Which upstream a request goes to, and how its params change on the way.
    async fn route(
        &self,
        view: View,
        method: &str,
        env: &Envelope,
        s: &Arc<HubSession>,
    ) -> Result<(usize, Option<String>), HubError> {
        let params = env.params().unwrap_or(b"{}");
        match method {
            "tools/call" | "prompts/get" => {
                let what = if method == "tools/call" {
                    "tool"
                } else {
                    "prompt"
                };
                let name = env
                    .param_str("name")
                    .ok_or(HubError::InvalidParams("name"))?;
                self.by_name(view, &name, what)
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                let uri = env.param_str("uri").ok_or(HubError::InvalidParams("uri"))?;
                Ok((self.by_uri(view, &uri, s).await?, None))
            }
            "completion/complete" => {
                let r = wire::member(params, "ref").ok_or(HubError::InvalidParams("ref"))?;
                let text =
                    |k| wire::member(r, k).and_then(|v| serde_json::from_slice::<String>(v).ok());
                match text("type").as_deref() {
                    Some("ref/prompt") => {
                        let name = text("name").ok_or(HubError::InvalidParams("ref.name"))?;
                        self.by_name(view, &name, "prompt")
                    }
                    Some("ref/resource") => {
                        let uri = text("uri").ok_or(HubError::InvalidParams("ref.uri"))?;
                        Ok((self.by_uri(view, &uri, s).await?, None))
                    }
                    _ => Err(HubError::InvalidParams("ref.type")),
                }
            }
            _ => Err(HubError::MethodNotFound {
                modern: s.is_modern(),
            }),
        }
    }

    /// The upstream of a (namespaced on `/mcp`) tool or prompt name, and the original name.
    fn by_name(
        &self,
        view: View,
        name: &str,
        what: &'static str,
    ) -> Result<(usize, Option<String>), HubError> {
        match view {
            View::One(u) => Ok((u, None)),
            View::All => {
                let (up, orig) = names::split(name).ok_or(HubError::Unknown(what))?;
                let u = self
                    .ups
                    .iter()
                    .position(|x| x.in_hub && &*x.name == up)
                    .ok_or(HubError::Unknown(what))?;
                Ok((u, Some(orig.to_owned())))
            }
        }
    }

    /// The upstream serving `uri`: the one listing it, else the one whose template's fixed
    /// prefix matches (only one may).
    async fn by_uri(&self, view: View, uri: &str, s: &Arc<HubSession>) -> Result<usize, HubError> {
        if let View::One(u) = view {
            return Ok(u);
        }
        let conns = self.connect_all(view, s).await;
        for (u, c) in &conns {
            if let Ok(l) = c.list(ListKind::Resources).await {
                if l.iter()
                    .any(|r| r.get("uri").and_then(Value::as_str) == Some(uri))
                {
                    return Ok(*u);
                }
            }
        }
        let mut found = None;
        for (u, c) in &conns {
            let Ok(l) = c.list(ListKind::Templates).await else {
                continue;
            };
            let hit = l.iter().any(|t| {
                let tpl = t
                    .get("uriTemplate")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let prefix = tpl.split('{').next().unwrap_or_default();
                !prefix.is_empty() && uri.starts_with(prefix)
            });
            if hit {
                if found.is_some_and(|f| f != *u) {
                    return Err(HubError::Unknown("resource (ambiguous)"));
                }
                found = Some(*u);
            }
        }
        found.ok_or(HubError::Unknown("resource"))
    }

    /// Calls upstream `u` with the request (renamed, its progress token and era-specific
    /// `_meta` adapted) and answers with its response, relaying what comes before it.
    async fn call(
        &self,
        u: usize,
        env: &Envelope,
        id: &Id,
        name: Option<String>,
        s: &Arc<HubSession>,
        request_id: &str,
    ) -> Result<Reply, HubError> {
        let method = env.method().unwrap_or_default();
        let params = env.params();
        let client_token = params
            .and_then(wire::progress_token)
            .map(Bytes::copy_from_slice);
        // Up to two attempts: an upstream session that expired is replaced once (the upstream
        // refused the request, so it did not run).
        let mut attempt = 0;
        let (conn, up_id, answer) = loop {
            attempt += 1;
            let conn = self.conn(u, s).await?;
            let up_id = conn.next_id();
            let token = client_token.as_ref().map(|_| up_id.to_string());
            let body = match params {
                Some(p) => {
                    let edited = wire::edit_params(
                        p,
                        &ParamEdits {
                            name: name.as_deref(),
                            progress_token: token.as_deref().map(str::as_bytes),
                            strip_modern_meta: s.is_modern(),
                        },
                    );
                    wire::request(up_id, method, Some(&edited))
                }
                None => wire::request(up_id, method, None),
            };
            match conn.send_request(body, up_id).await {
                Ok(a) => break (conn, up_id, a),
                Err(HubError::SessionGone) if attempt < 2 => continue,
                Err(e) => return Err(e),
            }
        };
        let call = Call {
            u,
            conn,
            up_id,
            rounds: 0,
        };
        self.follow(call, answer, env, id, client_token, s, request_id)
            .await
    }

    /// Relays the upstream call `call` to the client: its first message decides between a plain
    /// JSON response and a stream. A 2026-07-28 client's call may end parked, waiting for the
    /// client's `input_required` retry.
    #[allow(clippy::too_many_arguments)]
    async fn follow(
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
        } = call;
        let method = env.method().unwrap_or_default();
        s.begin(id, &conn, up_id);
        let idle = self.ups[u].timeout;
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
                return Err(HubError::NoResponse);
            }
            Err(_) => {
                s.end(id);
                cancel(&conn, up_id).await;
                return Err(HubError::Timeout);
            }
        };
        if first.kind() == Kind::Response {
            s.end(id);
            return Ok(Reply::Json(downstream_response(
                &first,
                id,
                method,
                s.is_modern(),
            )));
        }
        // Anything before the response: stream it.
        let (tx, rx) = mpsc::channel(16);
        let (end_tx, end_rx) = oneshot::channel();
        // What a parked call must be retried as is worked out only if the upstream asks.
        let park = (s.is_modern() && mrtr::may_ask(method)).then(|| ParkSpot {
            parking: self.parking.clone(),
            request: env.clone(),
            u,
            ttl: idle,
            rounds,
        });
        let relay = Relay {
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
            park,
        };
        tokio::spawn(async move {
            let end = relay.run(first, answer, idle).await;
            if end == StreamEnd::ClientGone && relay.session.is_modern() {
                cancel(&relay.conn, relay.up_id).await;
            }
            relay.session.end(&relay.id);
            let _ = end_tx.send(end);
        });
        Ok(Reply::Stream(rx, end_rx))
    }

    /// A 2026-07-28 client's retry of a call that ended `input_required`: its `inputResponses`
    /// go to the upstream requests waiting for them, and the same upstream call is followed on.
    async fn resume(
        &self,
        u: usize,
        env: &Envelope,
        id: &Id,
        state: &[u8],
        s: &Arc<HubSession>,
        request_id: &str,
    ) -> Result<Reply, HubError> {
        let state: String =
            serde_json::from_slice(state).map_err(|_| mrtr::StateError::Malformed)?;
        let origin = mrtr::Origin::of(env).ok_or(HubError::InvalidParams("name"))?;
        let now = std::time::Instant::now();
        let mut p = match self.parking.take(&state, &s.principal, &origin, now) {
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
        let responses: HashMap<String, Box<serde_json::value::RawValue>> =
            match wire::member(params, "inputResponses").map(serde_json::from_slice) {
                None => HashMap::new(),
                Some(Ok(r)) => r,
                Some(Err(_)) => {
                    tokio::spawn(p.abandon());
                    return Err(HubError::InvalidParams("inputResponses"));
                }
            };
        if !p.deliver(&responses).await {
            // Some questions are still open: ask them again (the spec's advice to a server
            // that is missing input), under a new handle.
            p.expires = now + self.ups[u].timeout;
            return match self.parking.park(p) {
                Ok((_, body)) => Ok(Reply::Json(wire::response(id, "result", &body))),
                Err(p) => {
                    tokio::spawn(p.abandon());
                    Err(HubError::Unavailable("too many calls waiting for input"))
                }
            };
        }
        let client_token = wire::progress_token(params).map(Bytes::copy_from_slice);
        let call = Call {
            u,
            conn: p.conn,
            up_id: p.up_id,
            rounds: p.rounds,
        };
        self.follow(call, p.answer, env, id, client_token, s, request_id)
            .await
    }

    /// A client's answer to a request the hub relayed: to the upstream that asked, once.
    async fn answer(&self, env: &Envelope, s: &Arc<HubSession>) -> Result<Reply, HubError> {
        let id = env.id().ok_or(HubError::UnknownAnswer)?;
        let (conn, up_id) = s.answered(id).ok_or(HubError::UnknownAnswer)?;
        let (member, value) = match (env.result(), env_error(env)) {
            (Some(r), _) => ("result", r),
            (None, Some(e)) => ("error", e),
            (None, None) => return Err(HubError::InvalidParams("answer")),
        };
        conn.post(wire::response_raw_id(&up_id, member, value))
            .await?;
        Ok(Reply::Accepted)
    }

    async fn notification(&self, view: View, env: &Envelope, s: &Arc<HubSession>) {
        match env.method().unwrap_or_default() {
            "notifications/cancelled" => {
                let Some(rid) = env
                    .params()
                    .and_then(|p| wire::member(p, "requestId"))
                    .and_then(Id::parse)
                else {
                    return;
                };
                if let Some((conn, up_id)) = s.inflight(&rid) {
                    cancel(&conn, up_id).await;
                }
            }
            "notifications/roots/list_changed" => {
                for (_, c) in self.connect_all(view, s).await {
                    let _ = c
                        .post(wire::notification("notifications/roots/list_changed", None))
                        .await;
                }
            }
            // `notifications/initialized` and anything else: nothing to pass on.
            _ => {}
        }
    }
}

fn env_error(env: &Envelope) -> Option<&[u8]> {
    if !env.is_error_response() {
        return None;
    }
    wire::member(env.bytes(), "error")
}

pub(super) async fn cancel(conn: &Conn, up_id: i64) {
    let params = format!("{{\"requestId\":{up_id}}}");
    let _ = conn
        .post(wire::notification(
            "notifications/cancelled",
            Some(params.as_bytes()),
        ))
        .await;
}

/// Cancels an upstream call when dropped, unless defused.
struct CancelOnDrop(Option<(Arc<Conn>, i64)>);

impl CancelOnDrop {
    fn defuse(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some((conn, up_id)) = self.0.take() {
            tokio::spawn(async move { cancel(&conn, up_id).await });
        }
    }
}

/// The upstream's response as the client's: its id, and a result fit for the client's era.
fn downstream_response(up: &Envelope, id: &Id, method: &str, modern: bool) -> Bytes {
    match (up.result(), env_error(up)) {
        (Some(r), _) => wire::response(id, "result", &era::fit_result(r, method, modern)),
        (None, Some(e)) => wire::response(id, "error", e),
        (None, None) => wire::response(
            id,
            "error",
            &wire::error_object(codes::rpc::INTERNAL_ERROR, "Upstream error"),
        ),
    }
}

/// Relays an upstream's server-to-client request to the first of `sessions` that declared the
/// capability it needs and has a listen stream. Returns whether one took it.
pub(super) fn relay_request(
    conn: &Arc<Conn>,
    env: &Envelope,
    sessions: &[Arc<HubSession>],
) -> bool {
    let Some(cap) = capability_for(env.method().unwrap_or_default()) else {
        return false;
    };
    let Some(up_id) = raw_id(env) else {
        return false;
    };
    for s in sessions
        .iter()
        .filter(|s| !s.is_modern() && s.declared(cap))
    {
        let Some(hid) = s.relay(conn, up_id.clone()) else {
            continue;
        };
        let msg = wire::set_member(env.bytes(), "id", Some(hid.to_string().as_bytes()));
        if s.push(&msg) {
            return true;
        }
        let _ = s.answered(&Id::Num(hid));
    }
    false
}

/// Answers an upstream's request that no client can take with an error, so it does not wait.
pub(super) async fn refuse_request(conn: &Conn, env: &Envelope) {
    if let Some(id) = raw_id(env) {
        let err = wire::error_object(
            codes::rpc::METHOD_NOT_FOUND,
            "No client can answer this request",
        );
        let _ = conn.post(wire::response_raw_id(&id, "error", &err)).await;
    }
}

fn capability_for(method: &str) -> Option<&'static str> {
    Some(match method {
        "sampling/createMessage" => "sampling",
        "elicitation/create" => "elicitation",
        "roots/list" => "roots",
        _ => return None,
    })
}

fn raw_id(env: &Envelope) -> Option<Bytes> {
    let mut s = String::new();
    env.id()?.write_json(&mut s);
    Some(Bytes::from(s))
}

/// Streams one request's upstream messages to the client as SSE.
struct Relay {
    conn: Arc<Conn>,
    session: Arc<HubSession>,
    id: Id,
    method: String,
    client_token: Option<Bytes>,
    request_id: String,
    tx: mpsc::Sender<Bytes>,
    up_id: i64,
    attributable_only: bool,
    /// Where a 2026-07-28 client's call is parked when the upstream asks it something.
    park: Option<ParkSpot>,
}

/// An upstream call: the upstream, its session, the hub's id for it, and how many times it
/// already asked the client something.
struct Call {
    u: usize,
    conn: Arc<Conn>,
    up_id: i64,
    rounds: usize,
}

/// What parking a call needs.
struct ParkSpot {
    parking: Arc<mrtr::Parking>,
    /// The client's request (a cheap copy: shared bytes and offsets).
    request: Envelope,
    u: usize,
    ttl: std::time::Duration,
    rounds: usize,
}

/// Most `input_required` rounds of one call (the Python SDK's client gives up after 10).
const MAX_ROUNDS: usize = 10;

impl Relay {
    async fn send(&self, msg: &[u8]) -> bool {
        self.tx.send(sse::message_event_bytes(msg)).await.is_ok()
    }

    async fn run(
        &self,
        first: Envelope,
        mut answer: Answer,
        idle: std::time::Duration,
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
                    let out =
                        downstream_response(&env, &self.id, &self.method, self.session.is_modern());
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
            conn: self.conn.clone(),
            up_id: self.up_id,
            answer,
            asked: vec![asked],
            rounds: spot.rounds + 1,
            expires: std::time::Instant::now() + spot.ttl,
        });
        match spot.parking.park(parked) {
            Ok((_, body)) => Ok(body),
            Err(p) => Err(p.answer),
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
