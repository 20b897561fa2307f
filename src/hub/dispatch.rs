//! What the hub does with each message a client sends: answer it itself (`initialize`,
//! `server/discover`, `ping`, the merged lists), route it to the upstream that owns it (calls,
//! reads, completions), or deliver it to the upstream waiting for it (answers to relayed
//! requests, cancellations). A routed call is carried through in [`super::calls`].

use crate::upstream::breaker::Class;
use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::conn::{Conn, ListKind};
use super::relay::Guards;
use super::session::{HubSession, Waiter};
use super::wire;
use super::{era, mrtr, names, pages, Hub, HubError, View};
use crate::controls::authz::{Access, Item};
use crate::controls::output::{Check, Verdict};

use crate::proto::{codes, Envelope, Id, Kind};

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
        access: &Access<'_>,
    ) -> Result<Reply, HubError> {
        match env.kind() {
            Kind::Response => self.answer(env, s).await,
            Kind::Notification => {
                self.notification(view, env, s).await;
                Ok(Reply::Accepted)
            }
            Kind::Request => {
                self.request(view, env, s, request_id, headers, access)
                    .await
            }
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
        access: &Access<'_>,
    ) -> Result<Reply, HubError> {
        let id = env.id().ok_or(HubError::InvalidParams("id"))?;
        let method = env.method().unwrap_or_default();
        let modern = s.is_modern();
        let result = |r: &[u8]| {
            Ok(Reply::Json(wire::response(
                id,
                "result",
                &era::fit_result(r, method, modern, false),
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
                access.check(method, None, None)?;
                for (_, c) in self.connect_all(view, s).await {
                    // 2026-07-28 has no `logging/setLevel` (log level is asked per request).
                    if c.offers("logging") && !c.is_modern() {
                        let _ = c.call(method, env.params()).await;
                    }
                }
                result(b"{}")
            }
            m => {
                if let Some(kind) = list_kind(m) {
                    let cursor = env.params().and_then(|p| wire::member(p, "cursor"));
                    let merged = self.merged(view, kind, s, access).await?;
                    return result(&pages::page(kind.member(), merged, cursor, self.page_size)?);
                }
                let (u, edits) = self.route(view, m, env, s).await?;
                // The target is known: authorize it, then check a call's arguments against
                // the tool's own schema, before anything reaches the upstream.
                let named = target_name(m, env, edits.as_deref());
                access.check(m, Some(u), named.as_ref().map(|(k, n)| k.item(n)))?;
                let mut guards = Guards::default();
                if m == "tools/call" {
                    let name = named.as_ref().map_or("", |(_, n)| n);
                    let conn = self.conn(u, s).await?;
                    let tools = conn.list(ListKind::Tools).await?;
                    let call = self
                        .prepare_call(u, &conn, &tools, name, env, access, request_id)
                        .await?;
                    if modern {
                        // 2026-07-28: the `Mcp-Param-*` headers must say what the arguments
                        // say, for those the tool's schema annotates with `x-mcp-header`.
                        let schema = call.tool.get("inputSchema").unwrap_or(&Value::Null);
                        crate::controls::mirror::check_params(headers, Some(&call.args), schema)?;
                    }
                    guards = call.guards;
                }
                if modern && mrtr::may_ask(m) {
                    if let Some(state) = env.params().and_then(|p| wire::member(p, "requestState"))
                    {
                        return self
                            .resume(u, env, id, edits, state, s, request_id, guards)
                            .await;
                    }
                }
                self.call(u, env, env.params(), 0, id, edits, s, request_id, guards)
                    .await
            }
        }
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

    /// The merged list of `kind`, namespaced on `/mcp`, with each item's key (its name or URI).
    /// Only upstreams the caller may list, and only items it may see, are in it; a caller who
    /// may list none of them is refused.
    async fn merged(
        &self,
        view: View,
        kind: ListKind,
        s: &Arc<HubSession>,
        access: &Access<'_>,
    ) -> Result<Vec<(String, Value)>, HubError> {
        let mut refused = None;
        let conns: Vec<_> = self
            .connect_all(view, s)
            .await
            .into_iter()
            .filter(|(u, _)| match access.check(kind.method(), Some(*u), None) {
                Ok(()) => true,
                Err(e) => {
                    refused.get_or_insert(e);
                    false
                }
            })
            .collect();
        if let (Some(e), true) = (refused, conns.is_empty()) {
            return Err(e.into());
        }
        let lists = futures_util::future::join_all(conns.iter().map(|(_, c)| c.list(kind))).await;
        let mut items = Vec::new();
        let mut seen = HashSet::new();
        for ((u, conn), list) in conns.iter().zip(lists) {
            let up = &self.ups[*u].name;
            let list = match list {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(target: "palisade::hub", upstream = %up, error = %e, "{} left out", kind.method());
                    continue;
                }
            };
            // Tools withheld by pinning are not shown (calls to them are refused too).
            let pins = match kind {
                ListKind::Tools => {
                    self.pins
                        .verdicts(*u, &list, super::prepare::instructions(conn))
                }
                _ => None,
            };
            let pinned = |i: &Value| {
                pins.as_ref().is_none_or(|v| {
                    let name = i.get("name").and_then(Value::as_str).unwrap_or_default();
                    v.get(name) == Some(&crate::controls::pinning::Verdict::Pass)
                })
            };
            for item in list
                .iter()
                .filter(|i| pinned(i) && visible(access, *u, kind, i))
            {
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
                items.push((key, item));
            }
        }
        Ok(items)
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

    /// A client's answer to a request the hub relayed: to the upstream that asked, once.
    async fn answer(&self, env: &Envelope, s: &Arc<HubSession>) -> Result<Reply, HubError> {
        let id = env.id().ok_or(HubError::UnknownAnswer)?;
        let waiter = s.answered(id).ok_or(HubError::UnknownAnswer)?;
        let (ok, value) = match (env.result(), env_error(env)) {
            (Some(r), _) => (true, r),
            (None, Some(e)) => (false, e),
            (None, None) => return Err(HubError::InvalidParams("answer")),
        };
        match waiter {
            Waiter::Upstream(conn, up_id) => {
                let conn = conn.upgrade().ok_or(HubError::UnknownAnswer)?;
                let member = if ok { "result" } else { "error" };
                conn.post(wire::response_raw_id(&up_id, member, value))
                    .await?;
            }
            Waiter::Hub(tx) => {
                let _ = tx.send((ok, Bytes::copy_from_slice(value)));
            }
        }
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
                    // A 2026-07-28 upstream takes no notifications: it asks for the roots
                    // whenever it needs them.
                    if !c.is_modern() {
                        let _ = c
                            .post(wire::notification("notifications/roots/list_changed", None))
                            .await;
                    }
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
pub(super) struct CancelOnDrop(pub(super) Option<(Arc<Conn>, i64)>);

impl CancelOnDrop {
    pub(super) fn defuse(mut self) {
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
pub(super) fn downstream_response(
    up: &Envelope,
    id: &Id,
    method: &str,
    modern: bool,
    from_modern: bool,
    check: Option<&Check>,
) -> Bytes {
    match (up.result(), env_error(up)) {
        (Some(r), _) => {
            let replaced;
            let r = match check.map(|c| c.result(r)) {
                None | Some(Verdict::Pass) => r,
                Some(Verdict::Replace(new)) => {
                    replaced = new;
                    &replaced
                }
                Some(Verdict::Refuse(_)) => {
                    return check.map(|c| c.refused(id)).unwrap_or_default()
                }
            };
            wire::response(
                id,
                "result",
                &era::fit_result(r, method, modern, from_modern),
            )
        }
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

/// What a routed request names, by its upstream's own name for it.
pub enum Named {
    /// A tool.
    Tool,
    /// A prompt.
    Prompt,
    /// A resource.
    Resource,
}

impl Named {
    /// The item to authorize.
    pub fn item<'a>(&self, name: &'a str) -> Item<'a> {
        match self {
            Named::Tool => Item::Tool(name),
            Named::Prompt => Item::Prompt(name),
            Named::Resource => Item::Resource(name),
        }
    }
}

/// The tool, prompt or resource a request names (`original`: the name without the hub's
/// namespace, when it had one).
pub fn target_name<'a>(
    method: &str,
    env: &'a Envelope,
    original: Option<&'a str>,
) -> Option<(Named, std::borrow::Cow<'a, str>)> {
    let kind = match method {
        "tools/call" => Named::Tool,
        "prompts/get" => Named::Prompt,
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            return env.param_str("uri").map(|u| (Named::Resource, u))
        }
        _ => return None,
    };
    match original {
        Some(o) => Some((kind, std::borrow::Cow::Borrowed(o))),
        None => env.param_str("name").map(|n| (kind, n)),
    }
}

impl Hub {
    /// A stdio upstream's answer never came: its breaker counts it.
    pub(super) fn stdio_failed(&self, u: usize, class: Class) {
        if matches!(self.ups[u].via, super::Via::Stdio(_)) {
            self.ups[u].route.breaker.failed(class);
        }
    }
}

/// How a stdio upstream's failure counts for its breaker (refusals of the request itself,
/// like an unknown method, do not).
pub(super) fn stdio_failure(e: &HubError) -> Option<Class> {
    match e {
        HubError::Timeout => Some(Class::Timeout),
        HubError::Unavailable(_) => Some(Class::Connection),
        HubError::NoResponse | HubError::Upstream(_) => Some(Class::Network),
        _ => None,
    }
}

/// Whether a listed item is shown to the caller.
fn visible(access: &Access<'_>, u: usize, kind: ListKind, item: &Value) -> bool {
    let text = |k| item.get(k).and_then(Value::as_str).unwrap_or_default();
    let it = match kind {
        ListKind::Tools => Item::Tool(text("name")),
        ListKind::Prompts => Item::Prompt(text("name")),
        ListKind::Resources => Item::Resource(text("uri")),
        ListKind::Templates => Item::Resource(text("uriTemplate")),
    };
    access.visible(u, it)
}

pub(super) fn capability_for(method: &str) -> Option<&'static str> {
    Some(match method {
        "sampling/createMessage" => "sampling",
        "elicitation/create" => "elicitation",
        "roots/list" => "roots",
        _ => return None,
    })
}

pub(super) fn raw_id(env: &Envelope) -> Option<Bytes> {
    let mut s = String::new();
    env.id()?.write_json(&mut s);
    Some(Bytes::from(s))
}
