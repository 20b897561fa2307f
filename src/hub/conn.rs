//! One MCP client session with one upstream: the `initialize` handshake, requests with the
//! hub's own ids, and the upstream's catalogue (tools, prompts, resources, templates), kept
//! until the upstream says it changed.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

use super::link::{Answer, Link};
use super::session::HubSession;
use super::{wire, HubError};
use crate::proto::{Envelope, Kind};

/// Protocol versions the hub offers and accepts upstream (the legacy, `initialize` era).
pub const UPSTREAM_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// The four lists an upstream may offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// `tools/list`
    Tools,
    /// `prompts/list`
    Prompts,
    /// `resources/list`
    Resources,
    /// `resources/templates/list`
    Templates,
}

impl ListKind {
    /// The list method.
    pub fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
            ListKind::Templates => "resources/templates/list",
        }
    }

    /// The member of the result holding the items.
    pub fn member(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::Templates => "resourceTemplates",
        }
    }

    /// The server capability that announces it.
    pub fn capability(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources | ListKind::Templates => "resources",
        }
    }

    const ALL: [ListKind; 4] = [
        ListKind::Tools,
        ListKind::Prompts,
        ListKind::Resources,
        ListKind::Templates,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// Most pages read from one upstream list.
const MAX_PAGES: usize = 100;

/// A live session with an upstream.
#[derive(Debug)]
pub struct Conn {
    /// Upstream index.
    pub up: usize,
    /// Upstream name.
    pub name: Arc<str>,
    link: Link,
    next_id: AtomicI64,
    /// Protocol version agreed with the upstream.
    pub version: String,
    /// The upstream's `InitializeResult`.
    pub init: Value,
    lists: Mutex<[Option<Arc<Vec<Value>>>; 4]>,
    /// Downstream sessions that used this one (for list-change notices and server requests
    /// outside a call).
    pub watchers: Mutex<Vec<Weak<HubSession>>>,
    last_used: AtomicU64,
    epoch: Instant,
    closed: AtomicBool,
    /// Unique for the process's life (identifies it without holding it).
    pub serial: u64,
}

static SERIAL: AtomicU64 = AtomicU64::new(1);

impl Conn {
    /// Runs the `initialize` handshake over `link`. `capabilities` are the client capabilities
    /// declared upstream (raw JSON).
    pub async fn open(
        up: usize,
        name: Arc<str>,
        mut link: Link,
        capabilities: &[u8],
        timeout: Duration,
    ) -> Result<Conn, HubError> {
        let mut params = Vec::with_capacity(160 + capabilities.len());
        params.extend_from_slice(b"{\"protocolVersion\":\"");
        params.extend_from_slice(UPSTREAM_VERSIONS[0].as_bytes());
        params.extend_from_slice(b"\",\"capabilities\":");
        params.extend_from_slice(capabilities);
        params.extend_from_slice(b",\"clientInfo\":{\"name\":\"palisade\",\"version\":\"");
        params.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
        params.extend_from_slice(b"\"}}");
        let body = wire::request(0, "initialize", Some(&params));
        let first = async {
            let (mut answer, sid) = match &link {
                Link::Http(h) => h.request(body).await?,
                Link::Stdio(s) => (s.request(body, 0).await?, None),
            };
            let env = final_response(&mut answer, None).await?;
            Ok::<_, HubError>((env, sid))
        };
        let (env, sid) = tokio::time::timeout(timeout, first)
            .await
            .map_err(|_| HubError::Timeout)??;
        let init: Value = match env.result() {
            Some(r) => serde_json::from_slice(r)
                .map_err(|_| HubError::Upstream("invalid InitializeResult".into()))?,
            None => return Err(HubError::Upstream("initialize refused".into())),
        };
        let version = init
            .get("protocolVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if !UPSTREAM_VERSIONS.contains(&version.as_str()) {
            return Err(HubError::Upstream(format!(
                "upstream answered protocol version {version:?}"
            )));
        }
        if let Link::Http(h) = &mut link {
            h.settle(sid, &version);
        }
        link.post(wire::notification("notifications/initialized", None))
            .await?;
        Ok(Conn {
            up,
            name,
            link,
            next_id: AtomicI64::new(1),
            version,
            init,
            lists: Mutex::default(),
            watchers: Mutex::default(),
            last_used: AtomicU64::new(0),
            epoch: Instant::now(),
            closed: AtomicBool::new(false),
            serial: SERIAL.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// The transport.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// Whether it can still be used.
    pub fn is_alive(&self) -> bool {
        !self.closed.load(Ordering::SeqCst) && self.link.is_alive()
    }

    /// Marks it unusable (its upstream session expired).
    pub fn retire(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// How long it had been unused at `now`.
    pub fn idle_at(&self, now: Instant) -> Duration {
        let now = now.saturating_duration_since(self.epoch).as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_used.load(Ordering::Relaxed)))
    }

    fn touch(&self) {
        self.last_used
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// The next request id on this session.
    pub fn next_id(&self) -> i64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends request `id` (already written into `body`) and returns the upstream's messages
    /// about it.
    pub async fn send_request(&self, body: Bytes, id: i64) -> Result<Answer, HubError> {
        self.touch();
        let r = self.link.request(body, id).await;
        if matches!(r, Err(HubError::SessionGone)) {
            self.retire();
        }
        r
    }

    /// Sends a notification or a response.
    pub async fn post(&self, body: Bytes) -> Result<(), HubError> {
        self.touch();
        let r = self.link.post(body).await;
        if matches!(r, Err(HubError::SessionGone)) {
            self.retire();
        }
        r
    }

    /// A request whose intermediate messages are not relayed (the hub's own list requests):
    /// server requests in between are refused.
    pub async fn call(&self, method: &str, params: Option<&[u8]>) -> Result<Envelope, HubError> {
        let id = self.next_id();
        let mut answer = self
            .send_request(wire::request(id, method, params), id)
            .await?;
        final_response(&mut answer, Some(self)).await
    }

    /// Whether the upstream announced `capability` (`tools`, `prompts`, `resources`, ...).
    pub fn offers(&self, capability: &str) -> bool {
        self.init
            .get("capabilities")
            .and_then(|c| c.get(capability))
            .is_some_and(|v| !v.is_null())
    }

    /// The upstream's full list of `kind` (all pages), cached until it announces a change.
    pub async fn list(&self, kind: ListKind) -> Result<Arc<Vec<Value>>, HubError> {
        if let Some(l) = &lock(&self.lists)[kind.index()] {
            return Ok(l.clone());
        }
        if !self.offers(kind.capability()) {
            return Ok(Arc::new(Vec::new()));
        }
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let params = cursor
                .as_ref()
                .map(|c| serde_json::json!({ "cursor": c }).to_string());
            let env = self
                .call(kind.method(), params.as_deref().map(str::as_bytes))
                .await?;
            let Some(result) = env.result() else {
                // An upstream that offers the capability but fails the list: nothing from it.
                return Err(HubError::Upstream(format!("{} failed", kind.method())));
            };
            let mut page: Value = serde_json::from_slice(result)
                .map_err(|_| HubError::Upstream(format!("invalid {} result", kind.method())))?;
            if let Some(Value::Array(a)) = page.get_mut(kind.member()).map(Value::take) {
                items.extend(a);
            }
            cursor = page
                .get("nextCursor")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        let list = Arc::new(items);
        lock(&self.lists)[kind.index()] = Some(list.clone());
        Ok(list)
    }

    /// Forgets cached lists after `notifications/*/list_changed`; returns which.
    pub fn invalidate(&self, method: &str) -> Option<ListKind> {
        let kind = match method {
            "notifications/tools/list_changed" => ListKind::Tools,
            "notifications/prompts/list_changed" => ListKind::Prompts,
            "notifications/resources/list_changed" => ListKind::Resources,
            _ => return None,
        };
        let mut l = lock(&self.lists);
        l[kind.index()] = None;
        if kind == ListKind::Resources {
            l[ListKind::Templates.index()] = None;
        }
        Some(kind)
    }

    /// Adds a downstream session to notify.
    pub fn watch(&self, s: &Arc<HubSession>) {
        if !s.note_watching(self.serial) {
            return; // already watching: the common case, without touching the shared list
        }
        let mut w = lock(&self.watchers);
        w.retain(|x| x.strong_count() > 0);
        if !w.iter().any(|x| x.as_ptr() == Arc::as_ptr(s)) {
            w.push(Arc::downgrade(s));
        }
    }

    /// The live sessions watching, most recent first.
    pub fn watching(&self) -> Vec<Arc<HubSession>> {
        lock(&self.watchers)
            .iter()
            .rev()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Ends the upstream session (HTTP DELETE; a stdio child is stopped when dropped).
    pub async fn close(&self) {
        self.retire();
        if let Link::Http(h) = &self.link {
            h.close().await;
        }
    }

    /// Whether every list kind is known (used by tests and `/readyz`).
    pub fn lists_cached(&self) -> usize {
        let l = lock(&self.lists);
        ListKind::ALL
            .iter()
            .filter(|k| l[k.index()].is_some())
            .count()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads messages until the response. Server requests in between are refused (when `conn` is
/// given) so the upstream is never left waiting; notifications are dropped.
async fn final_response(answer: &mut Answer, conn: Option<&Conn>) -> Result<Envelope, HubError> {
    while let Some(env) = answer.next().await {
        match env.kind() {
            Kind::Response => return Ok(env),
            Kind::Request => {
                if let (Some(c), Some(id)) = (conn, env.id()) {
                    let mut idj = String::new();
                    id.write_json(&mut idj);
                    let err = wire::error_object(
                        crate::proto::codes::rpc::METHOD_NOT_FOUND,
                        "not available during this request",
                    );
                    let _ = c
                        .post(wire::response_raw_id(idj.as_bytes(), "error", &err))
                        .await;
                }
            }
            Kind::Notification => {}
        }
    }
    Err(HubError::NoResponse)
}
