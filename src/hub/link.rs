//! The hub's side of an upstream: how one MCP message gets there and how its answers come back,
//! over Streamable HTTP or a stdio child ([`super::stdio`]).

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::mpsc;

use super::stdio::StdioLink;
use super::HubError;
use crate::proto::{sse, Envelope, Kind};
use crate::upstream::{self, Upstream};

const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");

/// The messages an upstream sends about one request: notifications and server-to-client
/// requests first, then the response.
#[derive(Debug)]
pub enum Answer {
    /// A single JSON response.
    One(Option<Envelope>),
    /// A stream of messages (SSE, or stdio lines routed to this request).
    Stream(mpsc::Receiver<Envelope>),
}

impl Answer {
    /// The next message; `None` when the upstream has nothing more (after the response, or
    /// because it failed).
    pub async fn next(&mut self) -> Option<Envelope> {
        match self {
            Answer::One(e) => e.take(),
            Answer::Stream(rx) => rx.recv().await,
        }
    }
}

/// One transport to an upstream.
#[derive(Debug)]
pub enum Link {
    /// Streamable HTTP.
    Http(HttpLink),
    /// A stdio child.
    Stdio(StdioLink),
}

/// Limits applied to what an upstream sends.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Largest message.
    pub max_bytes: usize,
    /// Deepest nesting.
    pub max_depth: usize,
}

/// A Streamable-HTTP session with an upstream.
#[derive(Debug)]
pub struct HttpLink {
    up: Arc<Upstream>,
    session: Option<HeaderValue>,
    version: Option<HeaderValue>,
    bounds: Bounds,
}

impl HttpLink {
    /// A link before `initialize`.
    pub fn new(up: Arc<Upstream>, bounds: Bounds) -> Self {
        HttpLink {
            up,
            session: None,
            version: None,
            bounds,
        }
    }

    /// Records what `initialize` settled: the upstream's session id and protocol version.
    pub fn settle(&mut self, session: Option<HeaderValue>, version: &str) {
        self.session = session;
        self.version = HeaderValue::from_str(version).ok();
    }

    fn headers(&self, accept_json: bool, extra: Option<HeaderMap>) -> HeaderMap {
        let mut h = extra.unwrap_or_default();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static(if accept_json {
                "application/json, text/event-stream"
            } else {
                "text/event-stream"
            }),
        );
        if let Some(v) = &self.version {
            h.insert(MCP_PROTOCOL_VERSION, v.clone());
        }
        h
    }

    /// One HTTP exchange on this session, with the upstream's own credentials.
    async fn send(
        &self,
        method: Method,
        accept_json: bool,
        body: Bytes,
        extra: Option<HeaderMap>,
    ) -> Result<Response<Incoming>, HubError> {
        Ok(self
            .up
            .send(
                method,
                &self.headers(accept_json, extra),
                self.session.as_ref(),
                body,
            )
            .await?)
    }

    /// Sends a request (with `extra` headers: a 2026-07-28 request's mirrored ones); returns its
    /// answer and, for `initialize`, the response headers' session id.
    pub async fn request(
        &self,
        body: Bytes,
        extra: Option<HeaderMap>,
    ) -> Result<(Answer, Option<HeaderValue>), HubError> {
        let resp = self.send(Method::POST, true, body, extra).await?;
        let status = resp.status();
        let sid = resp.headers().get(MCP_SESSION_ID).cloned();
        if status == StatusCode::NOT_FOUND && self.session.is_some() {
            return Err(HubError::SessionGone);
        }
        let sse = is_sse(resp.headers());
        if status.is_success() && sse {
            return Ok((Answer::Stream(read_sse(resp.into_body(), self.bounds)), sid));
        }
        let bytes = upstream::collect(resp.into_body(), self.bounds.max_bytes).await?;
        // server-everything (the TypeScript SDK) answers a forgotten session with 400, not 404.
        if status == StatusCode::BAD_REQUEST
            && self.session.is_some()
            && bytes.windows(16).any(|w| w == b"valid session ID")
        {
            return Err(HubError::SessionGone);
        }
        // A JSON-RPC error in a 4xx body is still an answer to the request.
        match Envelope::parse(bytes, self.bounds.max_depth) {
            Ok(env)
                if env.kind() == Kind::Response
                    && (status.is_success() || env.is_error_response()) =>
            {
                Ok((Answer::One(Some(env)), sid))
            }
            _ => Err(HubError::Upstream(format!(
                "HTTP {status} without a JSON-RPC response"
            ))),
        }
    }

    /// Sends a notification or a response (the upstream answers 202).
    pub async fn post(&self, body: Bytes) -> Result<(), HubError> {
        let resp = self.send(Method::POST, true, body, None).await?;
        let status = resp.status();
        // Read (bounded) so the connection can be reused; the body itself says nothing we use.
        let _ = upstream::collect(resp.into_body(), self.bounds.max_bytes).await;
        if status == StatusCode::NOT_FOUND && self.session.is_some() {
            return Err(HubError::SessionGone);
        }
        if status.is_success() {
            Ok(())
        } else {
            Err(HubError::Upstream(format!(
                "HTTP {status} to a notification"
            )))
        }
    }

    /// Opens the session's listen stream (GET): what the upstream sends outside any request.
    /// `None` when the upstream offers none (405).
    pub async fn listen(&self) -> Option<mpsc::Receiver<Envelope>> {
        let resp = self
            .send(Method::GET, false, Bytes::new(), None)
            .await
            .ok()?;
        (resp.status().is_success() && is_sse(resp.headers()))
            .then(|| read_sse(resp.into_body(), self.bounds))
    }

    /// Ends the upstream session (DELETE), best effort.
    pub async fn close(&self) {
        if self.session.is_some() {
            let _ = self.send(Method::DELETE, true, Bytes::new(), None).await;
        }
    }
}

fn is_sse(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("text/event-stream"))
}

/// Reads an SSE body into messages, in order, until it ends or the receiver goes away. The
/// body is dropped as soon as the receiver is, which closes the upstream connection: for a
/// 2026-07-28 upstream, that is how a request is cancelled. Invalid events are dropped (and
/// logged): nothing uninspected reaches a client.
fn read_sse(mut body: Incoming, bounds: Bounds) -> mpsc::Receiver<Envelope> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut split = sse::Splitter::default();
        loop {
            let frame = tokio::select! {
                f = body.frame() => f,
                () = tx.closed() => return,
            };
            let Some(frame) = frame else { break };
            let Ok(frame) = frame else { break };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            split.push(&data);
            while let Some(event) = split.next_event() {
                let Some(d) = sse::data(&event) else { continue };
                if d.iter().all(u8::is_ascii_whitespace) {
                    continue; // priming event or keep-alive
                }
                match Envelope::parse(Bytes::copy_from_slice(&d), bounds.max_depth) {
                    Ok(env) => {
                        if tx.send(env).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(target: "palisade::hub", error = %e, "dropped an invalid upstream SSE event");
                    }
                }
            }
            if split.pending_len() > bounds.max_bytes {
                tracing::warn!(target: "palisade::hub", "upstream SSE event too large");
                return;
            }
        }
    });
    rx
}

impl Link {
    /// Sends a request (HTTP: with `extra` headers) and returns its answer.
    pub async fn request(
        &self,
        body: Bytes,
        id: i64,
        extra: Option<HeaderMap>,
    ) -> Result<Answer, HubError> {
        match self {
            Link::Http(h) => h.request(body, extra).await.map(|(a, _)| a),
            Link::Stdio(s) => s.request(body, id).await,
        }
    }

    /// Sends a notification or a response.
    pub async fn post(&self, body: Bytes) -> Result<(), HubError> {
        match self {
            Link::Http(h) => h.post(body).await,
            Link::Stdio(s) => s.send(body).await,
        }
    }

    /// Whether the transport can still carry messages.
    pub fn is_alive(&self) -> bool {
        match self {
            Link::Http(_) => true,
            Link::Stdio(s) => s.is_alive(),
        }
    }
}
