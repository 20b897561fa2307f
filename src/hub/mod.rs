//! The hub: one MCP server in front of many upstreams.
//!
//! At `/mcp` the gateway terminates MCP on both sides: it answers `initialize` and
//! `server/discover` itself, merges the upstreams' lists under namespaced names
//! ([`names`]), and routes each call to the upstream that owns it with the original name. The
//! same machinery serves a stdio upstream's own route `/mcp/{name}` (one upstream, names as
//! they are); HTTP upstreams' own routes stay byte-for-byte proxies (`app::pipeline`).
//!
//! Every message reaches the hub only after the whole pipeline (Host/Origin, authentication,
//! envelope, session) accepted it: the hub is the pipeline's last step, not a way around it.

mod calls;
pub mod conn;
mod dispatch;
pub mod era;
pub mod link;
pub mod mrtr;
pub mod names;
pub mod pages;
pub mod pool;
mod prepare;
mod relay;
pub mod rounds;
pub mod session;
pub mod stdio;
pub mod wire;

pub use dispatch::{target_name, Named, Reply, StreamEnd};
pub use relay::Guards;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::audit::{AuditHandle, AuditRecord, Decision, Text};
use crate::config::{Config, Isolation, StdioTarget, UpstreamTarget};
use crate::controls::session::SessionId;
use crate::proto::{Envelope, Kind};
use crate::upstream::{ResponseError, Upstream, UpstreamError};
use conn::Conn;
use link::{Bounds, HttpLink, Link};
use pool::{Owner, Pool};
use session::HubSession;

/// Why the hub could not serve a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The upstream failed or answered something unusable.
    #[error("upstream error: {0}")]
    Upstream(String),
    /// The upstream cannot be used right now.
    #[error("upstream unavailable: {0}")]
    Unavailable(&'static str),
    /// No answer in time.
    #[error("upstream timed out")]
    Timeout,
    /// The upstream ended without answering.
    #[error("upstream ended without a response")]
    NoResponse,
    /// The upstream answered `initialize` with an error (it may speak only 2026-07-28).
    #[error("initialize refused: {0}")]
    InitializeRefused(String),
    /// The upstream forgot its session.
    #[error("upstream session expired")]
    SessionGone,
    /// No tool, prompt or resource by that name for this caller.
    #[error("unknown {0}")]
    Unknown(&'static str),
    /// The method is not served (`modern`: the client speaks 2026-07-28, which answers 404).
    #[error("method not found")]
    MethodNotFound {
        /// The request is of the 2026-07-28 era.
        modern: bool,
    },
    /// Missing or malformed parameters.
    #[error("invalid params: {0}")]
    InvalidParams(&'static str),
    /// A modern request's `Mcp-Param-*` header disagrees with its arguments.
    #[error(transparent)]
    Mirror(#[from] crate::controls::mirror::MirrorError),
    /// A modern request without `_meta` protocol version.
    #[error("_meta protocol version missing")]
    MissingMetaVersion,
    /// A modern request of a version the hub does not serve.
    #[error("unsupported protocol version {0:?}")]
    UnsupportedVersion(String),
    /// The client answered a request nobody is waiting for.
    #[error("no pending request with that id")]
    UnknownAnswer,
    /// A 2026-07-28 retry's `requestState` names no call this client may resume.
    #[error(transparent)]
    RequestState(#[from] mrtr::StateError),
    /// The stdio child limit is reached.
    #[error("too many stdio children")]
    TooManyChildren,
    /// The sandbox the config demands could not be applied.
    #[error("sandbox: {0}")]
    Sandbox(String),
    /// Authorization refused the routed request.
    #[error(transparent)]
    Authz(#[from] crate::controls::authz::AuthzError),
    /// Input validation refused the routed request.
    #[error(transparent)]
    Validate(#[from] crate::controls::validate::ValidateError),
    /// The gateway is holding calls back from the upstream (429 backoff, outbound rate).
    #[error(transparent)]
    Throttled(crate::upstream::outbound::Throttled),
}

impl From<UpstreamError> for HubError {
    fn from(e: UpstreamError) -> Self {
        match e {
            UpstreamError::Timeout => HubError::Timeout,
            UpstreamError::Throttled(t) => HubError::Throttled(t),
            other => HubError::Upstream(other.to_string()),
        }
    }
}

impl From<ResponseError> for HubError {
    fn from(e: ResponseError) -> Self {
        HubError::Upstream(e.to_string())
    }
}

/// How the hub reaches one upstream.
#[derive(Debug)]
enum Via {
    Http(Arc<Upstream>),
    Stdio(Arc<StdioTarget>),
}

#[derive(Debug)]
struct Up {
    name: Arc<str>,
    via: Via,
    /// The route's upstream object: for a stdio upstream, only its circuit breaker is used
    /// (an HTTP upstream's breaker sits in its own `send`).
    route: Arc<Upstream>,
    isolation: Isolation,
    in_hub: bool,
    timeout: Duration,
    protocol: crate::config::UpstreamProtocol,
}

/// Which upstreams a route shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// `/mcp`: every aggregated upstream, names namespaced.
    All,
    /// `/mcp/{name}` of a stdio upstream: that one, names as they are.
    One(usize),
}

/// The hub's state.
#[derive(Debug)]
pub struct Hub {
    ups: Vec<Up>,
    pool: Arc<Pool>,
    /// Calls waiting for a 2026-07-28 client's `input_required` retry.
    parking: Arc<mrtr::Parking>,
    sessions: Mutex<HashMap<SessionId, Arc<HubSession>>>,
    audit: AuditHandle,
    children: Arc<AtomicUsize>,
    max_children: usize,
    stdio_idle: Duration,
    http_idle: Duration,
    bounds: Bounds,
    page_size: usize,
    /// Compiled tool input schemas, per upstream.
    schemas: crate::controls::validate::Schemas,
    /// Finance rules of configured tools' arguments.
    rules: crate::controls::validate::Rules,
    /// `[output] secrets`.
    secret_mode: crate::config::SecretMode,
    /// `[ssrf]`.
    ssrf: crate::config::SsrfConfig,
    /// Tool pinning.
    pins: Arc<crate::controls::pinning::Pins>,
    /// Route index of `/mcp`.
    pub route: usize,
}

/// Most calls parked for an `input_required` retry at once; beyond it, an upstream's question
/// to a 2026-07-28 client gets an error (as it did before MRTR was bridged).
const MAX_PARKED: usize = 1024;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hub {
    /// Builds the hub over the gateway's upstreams (`routes[i]` is upstream `i`'s HTTP client;
    /// unused for stdio ones).
    pub fn new(
        config: &Config,
        routes: &[Arc<Upstream>],
        audit: AuditHandle,
        pins: Arc<crate::controls::pinning::Pins>,
    ) -> Hub {
        let ups = config
            .upstreams
            .iter()
            .zip(routes)
            .map(|(u, r)| Up {
                name: Arc::from(u.name.as_str()),
                via: match &u.target {
                    UpstreamTarget::Stdio(t) => Via::Stdio(Arc::new(t.clone())),
                    UpstreamTarget::Url(_) | UpstreamTarget::BuiltinDemo => Via::Http(r.clone()),
                },
                route: r.clone(),
                isolation: u.isolation,
                in_hub: u.in_hub,
                timeout: u.timeout,
                protocol: u.protocol,
            })
            .collect();
        Hub {
            ups,
            pool: Arc::new(Pool::new(config.stdio.backoff, config.stdio.backoff_max)),
            parking: Arc::new(mrtr::Parking::new(MAX_PARKED)),
            sessions: Mutex::default(),
            audit,
            children: Arc::default(),
            max_children: config.stdio.max_children,
            stdio_idle: config.stdio.idle_timeout,
            http_idle: config.sessions.idle_timeout,
            bounds: Bounds {
                max_bytes: config.limits.max_response_bytes,
                max_depth: config.limits.max_json_depth,
            },
            page_size: config.hub.page_size,
            schemas: crate::controls::validate::Schemas::new(config.upstreams.len()),
            rules: crate::controls::validate::Rules::new(config),
            secret_mode: config.output.secrets,
            ssrf: config.ssrf.clone(),
            pins,
            route: config.upstreams.len(),
        }
    }

    /// The view a route shows through the hub, or `None` when the route is a plain proxy.
    pub fn view(&self, route: usize) -> Option<View> {
        if route == self.route {
            return Some(View::All);
        }
        matches!(self.ups.get(route)?.via, Via::Stdio(_)).then_some(View::One(route))
    }

    /// Upstreams a view shows, by index.
    fn members(&self, view: View) -> Vec<usize> {
        match view {
            View::All => (0..self.ups.len())
                .filter(|u| self.ups[*u].in_hub)
                .collect(),
            View::One(u) => vec![u],
        }
    }

    /// Starts the stdio children configured to start at boot (shared or per-principal ones
    /// start on first use, since their owner is not known before).
    pub async fn boot(&self) {
        for (i, u) in self.ups.iter().enumerate() {
            if let (Via::Stdio(t), Isolation::Shared) = (&u.via, u.isolation) {
                if t.at_boot {
                    if let Err(e) = self.conn_for(i, Owner::Shared, b"{}").await {
                        tracing::warn!(target: "palisade::hub", upstream = %u.name, error = %e, "could not start at boot");
                    }
                }
            }
        }
    }

    /// A new downstream session after `initialize`.
    pub fn open_session(&self, s: HubSession) -> Arc<HubSession> {
        let s = Arc::new(s);
        if let Some(id) = s.id {
            lock(&self.sessions).insert(id, s.clone());
        }
        s
    }

    /// The session `id`, if the hub knows it.
    pub fn session(&self, id: SessionId) -> Option<Arc<HubSession>> {
        lock(&self.sessions).get(&id).cloned()
    }

    /// Ends a downstream session: its per-session upstream sessions and children go with it.
    pub fn end_session(&self, id: SessionId) {
        lock(&self.sessions).remove(&id);
        let gone = self.pool.take(|(_, owner), _| *owner == Owner::Session(id));
        for c in gone {
            tokio::spawn(async move { c.close().await });
        }
    }

    /// Stops upstream sessions and children idle for longer than their limit.
    pub fn reap(&self) {
        self.reap_at(std::time::Instant::now());
    }

    /// [`Hub::reap`] as of `now` (tests pass a later instant instead of waiting).
    fn reap_at(&self, now: std::time::Instant) {
        let gone = self.pool.take(|(u, _), c| {
            let limit = match self.ups[*u].via {
                Via::Stdio(_) => self.stdio_idle,
                Via::Http(_) => self.http_idle,
            };
            c.idle_at(now) > limit || !c.is_alive()
        });
        for p in self.parking.expired(now) {
            tokio::spawn(p.abandon());
        }
        for c in gone {
            // Retired at once (a request still holding it gets a fresh one on retry); the
            // upstream DELETE or the child's stop happen in the background.
            c.retire();
            tokio::spawn(async move { c.close().await });
        }
    }

    /// Stops everything (shutdown).
    pub async fn shutdown(&self) {
        let all = self.pool.take(|_, _| true);
        for c in all {
            c.close().await;
        }
        // Children stop as their last handle goes; wait (bounded) until every exit is
        // recorded, so that the audit writer, stopped next, gets their last events.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.children.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Pins first seen and withheld definitions reach their files before the exit.
        self.pins.flush().await;
    }

    /// Each upstream's state for `/readyz`: `true` when it has a live session or answers.
    pub async fn readiness(&self) -> Vec<(Arc<str>, &'static str)> {
        let live = self.pool.live();
        let mut out = Vec::new();
        for (i, u) in self.ups.iter().enumerate() {
            let has_live = live.iter().any(|c| c.up == i);
            let state = match &u.via {
                _ if has_live => "ok",
                Via::Http(h) => {
                    if h.probe().await {
                        "ok"
                    } else {
                        "unreachable"
                    }
                }
                Via::Stdio(_) if self.pool.backing_off(i) => "restarting",
                Via::Stdio(_) => "idle",
            };
            out.push((u.name.clone(), state));
        }
        out
    }

    /// The upstream session of `u` for this downstream session, started if needed.
    async fn conn(&self, u: usize, s: &Arc<HubSession>) -> Result<Arc<Conn>, HubError> {
        let owner = Owner::of(self.ups[u].isolation, &s.principal, s.id);
        // A shared upstream session never gets a client's capabilities: nothing it asks could
        // be attributed to one client.
        let caps: &[u8] = if owner == Owner::Shared {
            b"{}"
        } else {
            &s.capabilities
        };
        let c = self.conn_for(u, owner, caps).await?;
        if s.id.is_some() {
            c.watch(s);
        }
        Ok(c)
    }

    async fn conn_for(&self, u: usize, owner: Owner, caps: &[u8]) -> Result<Arc<Conn>, HubError> {
        let up = &self.ups[u];
        let key = (u, owner.clone());
        // Boxed: connecting is rare (once per upstream session), and inline its state would
        // make every caller's future kilobytes larger, copied on every call.
        self.pool
            .get(key, up.timeout, || Box::pin(self.connect(u, owner, caps)))
            .await
    }

    async fn connect(&self, u: usize, owner: Owner, caps: &[u8]) -> Result<Arc<Conn>, HubError> {
        let up = &self.ups[u];
        let (tx, rx) = mpsc::channel(32);
        let link = match &up.via {
            Via::Http(h) => Link::Http(HttpLink::new(h.clone(), self.bounds)),
            Via::Stdio(t) => Link::Stdio(self.spawn(u, &owner, t, tx.clone())?),
        };
        let conn =
            Arc::new(Conn::open(u, up.name.clone(), link, caps, up.timeout, up.protocol).await?);
        // A 2026-07-28 upstream has no listen stream (nothing reaches the hub outside a request).
        if let (Link::Http(_), false) = (conn.link(), conn.is_modern()) {
            // The listen stream carries what the upstream sends outside requests (list
            // changes, `roots/list`); not every upstream offers one.
            let weak = Arc::downgrade(&conn);
            let tx = tx.clone();
            tokio::spawn(async move {
                let Some(c) = weak.upgrade() else { return };
                let Link::Http(h) = c.link() else { return };
                let Some(mut rx) = h.listen().await else {
                    return;
                };
                drop(c);
                while let Some(env) = rx.recv().await {
                    if tx.send(env).await.is_err() {
                        break;
                    }
                }
            });
        }
        tokio::spawn(unsolicited(
            Arc::downgrade(&conn),
            rx,
            owner == Owner::Shared,
        ));
        Ok(conn)
    }

    fn spawn(
        &self,
        u: usize,
        owner: &Owner,
        target: &StdioTarget,
        tx: mpsc::Sender<Envelope>,
    ) -> Result<stdio::StdioLink, HubError> {
        let name = self.ups[u].name.clone();
        if self.children.fetch_add(1, Ordering::SeqCst) >= self.max_children {
            self.children.fetch_sub(1, Ordering::SeqCst);
            self.event(
                &name,
                owner,
                "stdio_start",
                "too_many_children",
                Decision::Deny,
            );
            return Err(HubError::TooManyChildren);
        }
        let children = self.children.clone();
        let pool = Arc::downgrade(&self.pool);
        let audit = self.audit.clone();
        let key = (u, owner.clone());
        let label = owner.label();
        let upstream = name.clone();
        let started = std::time::Instant::now();
        let link = stdio::StdioLink::spawn(&name, target, self.bounds, tx, move |exit| {
            let reason = if exit.stopped { "stopped" } else { "crashed" };
            if !exit.stopped {
                if let Some(p) = Weak::upgrade(&pool) {
                    p.failed(&key);
                }
            }
            tracing::info!(target: "palisade::stdio", upstream = %upstream, status = %exit.status, after_ms = started.elapsed().as_millis() as u64, "child {reason}");
            // The child counts as running until its exit is in the audit queue, so that
            // shutdown, which waits for the count to reach zero, loses no exit event.
            let mut record = AuditRecord::event("stdio", "stdio_exit", reason, Decision::Allow);
            record.request_id = Text::copy(&crate::app::new_request_id());
            record.principal = Text::copy(&label);
            record.upstream = Some(Text::copy(&upstream));
            let (audit, children) = (audit.clone(), children.clone());
            tokio::spawn(async move {
                match audit.reserve().await {
                    Ok(slot) => slot.write(record),
                    Err(_) => {
                        tracing::error!(target: "palisade::audit", "audit queue full: stdio event lost")
                    }
                }
                children.fetch_sub(1, Ordering::SeqCst);
            });
        });
        match link {
            Ok(l) => {
                tracing::info!(target: "palisade::stdio", upstream = %name, pid = l.pid(), "child started");
                self.event(&name, owner, "stdio_start", "started", Decision::Allow);
                Ok(l)
            }
            Err(e) => {
                self.children.fetch_sub(1, Ordering::SeqCst);
                self.event(&name, owner, "stdio_start", "spawn_failed", Decision::Deny);
                Err(e)
            }
        }
    }

    fn event(
        &self,
        up: &str,
        owner: &Owner,
        control: &'static str,
        reason: &'static str,
        d: Decision,
    ) {
        write_event(&self.audit, up, &owner.label(), control, reason, d);
    }
}

/// An audit record for a stdio lifecycle event (not a request): transport `stdio`.
fn write_event(
    audit: &AuditHandle,
    upstream: &str,
    principal: &str,
    control: &'static str,
    reason: &'static str,
    decision: Decision,
) {
    let mut record = AuditRecord::event("stdio", control, reason, decision);
    record.request_id = Text::copy(&crate::app::new_request_id());
    record.principal = Text::copy(principal);
    record.upstream = Some(Text::copy(upstream));
    audit.write_later(record);
}

/// Handles what an upstream sends outside any request: list changes refresh the merged view
/// and are passed to the sessions using it; a server request goes to the most recent session
/// of the same owner that can answer it (never another principal's: sessions only watch
/// upstream sessions of their own owner), or is refused. A `shared` upstream session is
/// watched by everybody's sessions, so it may only announce list changes: its requests are
/// refused and its other notifications (logs) are not passed to anyone.
async fn unsolicited(conn: Weak<Conn>, mut rx: mpsc::Receiver<Envelope>, shared: bool) {
    while let Some(env) = rx.recv().await {
        let Some(c) = conn.upgrade() else { break };
        match env.kind() {
            Kind::Notification => {
                let m = env.method().unwrap_or_default();
                let changed = c.invalidate(m).is_some();
                if shared && !changed {
                    continue;
                }
                for s in c.watching() {
                    s.push(env.bytes());
                }
            }
            Kind::Request if shared => dispatch::refuse_request(&c, &env).await,
            Kind::Request => {
                let delivered = dispatch::relay_request(&c, &env, &c.watching());
                if !delivered {
                    dispatch::refuse_request(&c, &env).await;
                }
            }
            Kind::Response => {}
        }
    }
}

#[cfg(test)]
mod tests;
