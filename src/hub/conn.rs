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
use super::{era, wire, HubError};
use crate::config::UpstreamProtocol;
use crate::controls::mirror;
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

/// The protocol era spoken with one upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// `initialize` and an upstream session.
    Legacy,
    /// 2026-07-28: stateless requests, each carrying the protocol `_meta`.
    Modern,
}

/// A cached list and, for a 2026-07-28 upstream, until when it is fresh (its `ttlMs`).
#[derive(Debug, Clone)]
struct Listed {
    items: Arc<Vec<Value>>,
    until: Option<Instant>,
}

/// Shortest time a 2026-07-28 upstream's list is cached, whatever its `ttlMs` (0 would mean
/// fetching every list on every request).
const MIN_LIST_TTL: Duration = Duration::from_secs(1);

/// A live session with an upstream.
#[derive(Debug)]
pub struct Conn {
    /// Upstream index.
    pub up: usize,
    /// Upstream name.
    pub name: Arc<str>,
    link: Link,
    next_id: AtomicI64,
    /// The era spoken with it.
    pub era: Era,
    /// Protocol version agreed with the upstream.
    pub version: String,
    /// The upstream's `InitializeResult` (or, 2026-07-28, its `server/discover` result).
    pub init: Value,
    /// 2026-07-28: the `_meta` members every request carries (raw, without braces).
    meta: Vec<u8>,
    lists: Mutex<[Option<Listed>; 4]>,
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

/// What the opening exchange settled.
struct Opened {
    era: Era,
    version: String,
    init: Value,
}

impl Conn {
    /// Opens a session over `link` in the era `protocol` asks for: the `initialize` handshake,
    /// or a `server/discover` for 2026-07-28 (`Auto`: the handshake first, discovery when the
    /// upstream refuses it). `capabilities` are the client capabilities declared upstream (raw
    /// JSON).
    pub async fn open(
        up: usize,
        name: Arc<str>,
        mut link: Link,
        capabilities: &[u8],
        timeout: Duration,
        protocol: UpstreamProtocol,
    ) -> Result<Conn, HubError> {
        let meta = modern_meta(capabilities);
        let opening = async {
            match protocol {
                UpstreamProtocol::Legacy => initialize(&mut link, capabilities).await,
                UpstreamProtocol::Modern => discover(&mut link, &meta).await,
                UpstreamProtocol::Auto => match initialize(&mut link, capabilities).await {
                    Err(HubError::InitializeRefused(why)) => {
                        tracing::info!(target: "palisade::hub", upstream = %name, refused = %why, "initialize refused: trying 2026-07-28");
                        discover(&mut link, &meta).await
                    }
                    other => other,
                },
            }
        };
        let opened = tokio::time::timeout(timeout, opening)
            .await
            .map_err(|_| HubError::Timeout)??;
        Ok(Conn {
            up,
            name,
            link,
            next_id: AtomicI64::new(1),
            era: opened.era,
            version: opened.version,
            init: opened.init,
            meta,
            lists: Mutex::default(),
            watchers: Mutex::default(),
            last_used: AtomicU64::new(0),
            epoch: Instant::now(),
            closed: AtomicBool::new(false),
            serial: SERIAL.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Whether the upstream is spoken to in the 2026-07-28 era.
    pub fn is_modern(&self) -> bool {
        self.era == Era::Modern
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

    /// Sends request `id`: `method` with `params` (already edited for the upstream), plus, in
    /// the 2026-07-28 era, the hub's protocol `_meta` and the mirrored headers. Returns the
    /// upstream's messages about it.
    pub async fn send(
        &self,
        id: i64,
        method: &str,
        params: Option<&[u8]>,
    ) -> Result<Answer, HubError> {
        self.touch();
        let r = match self.era {
            Era::Legacy => {
                self.link
                    .request(wire::request(id, method, params), id, None)
                    .await
            }
            Era::Modern => {
                let params = wire::with_meta(params.unwrap_or(b"{}"), &self.meta);
                let headers = match self.link {
                    Link::Http(_) => Some(self.mirrored(method, &params)),
                    Link::Stdio(_) => None,
                };
                self.link
                    .request(wire::request(id, method, Some(&params)), id, headers)
                    .await
            }
        };
        if matches!(r, Err(HubError::SessionGone)) {
            self.retire();
        }
        r
    }

    /// The headers a 2026-07-28 request mirrors from its body: `Mcp-Method`, `Mcp-Name`, and
    /// the `Mcp-Param-*` of a tool's annotated arguments (from the cached tool list).
    fn mirrored(&self, method: &str, params: &[u8]) -> http::HeaderMap {
        let text =
            |k| wire::member(params, k).and_then(|v| serde_json::from_slice::<String>(v).ok());
        let name = match method {
            "tools/call" | "prompts/get" => text("name"),
            "resources/read" => text("uri"),
            _ => None,
        };
        let mut h = mirror::routing_headers(method, name.as_deref());
        if let (Some(name), true) = (&name, method == "tools/call") {
            let tools = self.cached(ListKind::Tools);
            let schema = tools.iter().flat_map(|l| l.iter()).find_map(|t| {
                (t.get("name").and_then(Value::as_str) == Some(name))
                    .then(|| t.get("inputSchema"))?
            });
            if let Some(schema) = schema {
                let args: Option<Value> =
                    wire::member(params, "arguments").and_then(|a| serde_json::from_slice(a).ok());
                mirror::param_headers(&mut h, args.as_ref(), schema);
            }
        }
        h
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
        let mut answer = self.send(id, method, params).await?;
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
        let now = Instant::now();
        if let Some(l) = &lock(&self.lists)[kind.index()] {
            if l.until.is_none_or(|u| now < u) {
                return Ok(l.items.clone());
            }
        }
        if !self.offers(kind.capability()) {
            return Ok(Arc::new(Vec::new()));
        }
        // Boxed: fetching is rare (the list is cached), and inline its state would make every
        // caller's future kilobytes larger, copied on every call.
        Box::pin(self.fetch(kind, now)).await
    }

    /// Asks the upstream for its whole list of `kind` and caches it (fetched at `now`).
    async fn fetch(&self, kind: ListKind, now: Instant) -> Result<Arc<Vec<Value>>, HubError> {
        let mut items = Vec::new();
        let mut ttl = None;
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
            if self.is_modern() && ttl.is_none() {
                let ms = page.get("ttlMs").and_then(Value::as_u64).unwrap_or(0);
                ttl = Some(Duration::from_millis(ms).max(MIN_LIST_TTL));
            }
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
        lock(&self.lists)[kind.index()] = Some(Listed {
            items: list.clone(),
            until: ttl.map(|t| now + t),
        });
        Ok(list)
    }

    /// The cached list of `kind`, fresh or not, without asking the upstream.
    fn cached(&self, kind: ListKind) -> Option<Arc<Vec<Value>>> {
        lock(&self.lists)[kind.index()]
            .as_ref()
            .map(|l| l.items.clone())
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

/// The legacy handshake: `initialize`, then `notifications/initialized`. An error response
/// is [`HubError::InitializeRefused`] (the upstream may speak only 2026-07-28).
async fn initialize(link: &mut Link, capabilities: &[u8]) -> Result<Opened, HubError> {
    let mut params = Vec::with_capacity(160 + capabilities.len());
    params.extend_from_slice(b"{\"protocolVersion\":\"");
    params.extend_from_slice(UPSTREAM_VERSIONS[0].as_bytes());
    params.extend_from_slice(b"\",\"capabilities\":");
    params.extend_from_slice(capabilities);
    params.extend_from_slice(b",\"clientInfo\":");
    params.extend_from_slice(CLIENT_INFO.as_bytes());
    params.push(b'}');
    let body = wire::request(0, "initialize", Some(&params));
    let (mut answer, sid) = match &*link {
        Link::Http(h) => h.request(body, None).await?,
        Link::Stdio(s) => (s.request(body, 0).await?, None),
    };
    let env = final_response(&mut answer, None).await?;
    let init: Value = match env.result() {
        Some(r) => serde_json::from_slice(r)
            .map_err(|_| HubError::Upstream("invalid InitializeResult".into()))?,
        None => return Err(HubError::InitializeRefused(error_text(&env))),
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
    if let Link::Http(h) = link {
        h.settle(sid, &version);
    }
    link.post(wire::notification("notifications/initialized", None))
        .await?;
    Ok(Opened {
        era: Era::Legacy,
        version,
        init,
    })
}

/// The 2026-07-28 opening: `server/discover`, which must list that version.
async fn discover(link: &mut Link, meta: &[u8]) -> Result<Opened, HubError> {
    if let Link::Http(h) = link {
        h.settle(None, era::MODERN);
    }
    let params = wire::with_meta(b"{}", meta);
    let body = wire::request(0, "server/discover", Some(&params));
    let mut answer = link
        .request(
            body,
            0,
            Some(mirror::routing_headers("server/discover", None)),
        )
        .await?;
    let env = final_response(&mut answer, None).await?;
    let Some(r) = env.result() else {
        return Err(HubError::Upstream(format!(
            "server/discover refused: {}",
            error_text(&env)
        )));
    };
    let init: Value = serde_json::from_slice(r)
        .map_err(|_| HubError::Upstream("invalid DiscoverResult".into()))?;
    let speaks = init
        .get("supportedVersions")
        .and_then(Value::as_array)
        .is_some_and(|v| v.iter().any(|v| v.as_str() == Some(era::MODERN)));
    if !speaks {
        return Err(HubError::Upstream(
            "the upstream speaks neither an initialize version nor 2026-07-28".into(),
        ));
    }
    Ok(Opened {
        era: Era::Modern,
        version: era::MODERN.to_owned(),
        init,
    })
}

/// How the hub names itself to upstreams.
const CLIENT_INFO: &str = concat!(
    "{\"name\":\"palisade\",\"version\":\"",
    env!("CARGO_PKG_VERSION"),
    "\"}"
);

/// The `_meta` members of the hub's 2026-07-28 requests to an upstream (raw, no braces).
fn modern_meta(capabilities: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(160 + capabilities.len());
    m.extend_from_slice(b"\"");
    m.extend_from_slice(era::META_VERSION.as_bytes());
    m.extend_from_slice(b"\":\"");
    m.extend_from_slice(era::MODERN.as_bytes());
    m.extend_from_slice(b"\",\"");
    m.extend_from_slice(era::META_CAPABILITIES.as_bytes());
    m.extend_from_slice(b"\":");
    m.extend_from_slice(capabilities);
    m.extend_from_slice(b",\"");
    m.extend_from_slice(era::META_CLIENT_INFO.as_bytes());
    m.extend_from_slice(b"\":");
    m.extend_from_slice(CLIENT_INFO.as_bytes());
    m
}

/// The code and message of an error response, for logs.
fn error_text(env: &Envelope) -> String {
    let e = wire::member(env.bytes(), "error").unwrap_or_default();
    String::from_utf8_lossy(&e[..e.len().min(200)]).into_owned()
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
