//! The upstream side: a pooled HTTP client per gateway, one [`Upstream`] per configured server.
//!
//! The client's credentials never travel upstream: `Authorization`, `Cookie`, `Proxy-*` and
//! hop-by-hop headers are stripped and the upstream's own configured headers injected. The
//! request body is the client's original bytes.

pub mod breaker;
mod credential;
pub mod outbound;
mod relay;

pub use relay::{
    check_response, collect, collect_sse, relay_json, relay_sse, RelayEnd, RelaySummary,
    ResponseError,
};

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::config::UpstreamConfig;

/// Why an upstream call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// Connecting or sending failed.
    #[error("upstream unreachable: {0}")]
    Unreachable(String),
    /// No response headers within the configured timeout.
    #[error("upstream timed out")]
    Timeout,
    /// The gateway could not obtain its own access token for the upstream.
    #[error("upstream credential unavailable: {0}")]
    Credential(String),
    /// The upstream's circuit breaker is open: the request was not sent.
    #[error("upstream circuit open")]
    CircuitOpen,
    /// The gateway is backing off from the upstream, or over its call rate: not sent.
    #[error(transparent)]
    Throttled(#[from] outbound::Throttled),
}

/// The shared, pooled client (HTTP/1.1 and HTTP/2, `http` and `https` with rustls and the
/// WebPKI roots; no OpenSSL).
pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Builds the pooled client.
pub fn client(connect_timeout: Duration) -> HttpClient {
    pooled(
        HttpConnector::new(),
        connect_timeout,
        Duration::from_secs(90),
    )
}

/// A pooled client over `http` (any resolver): `http` and `https` (rustls, WebPKI roots),
/// HTTP/1.1 and HTTP/2, no Nagle delay. The upstream client and the gateway's own fetches
/// (`Fetcher`, whose resolver checks every address) differ only in the connector's resolver.
pub(crate) fn pooled<R>(
    mut http: HttpConnector<R>,
    connect_timeout: Duration,
    idle: Duration,
) -> Client<hyper_rustls::HttpsConnector<HttpConnector<R>>, Full<Bytes>>
where
    R: tower_service::Service<hyper_util::client::legacy::connect::dns::Name>
        + Clone
        + Send
        + Sync
        + 'static,
    R::Response: Iterator<Item = std::net::SocketAddr>,
    R::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    R::Future: Send,
{
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(idle)
        .build(https)
}

/// One configured upstream.
#[derive(Debug)]
pub struct Upstream {
    /// Route name.
    pub name: String,
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    client: HttpClient,
    credential: Option<credential::Credential>,
    /// Its circuit breaker.
    pub breaker: breaker::Breaker,
    /// Its call rate and 429 backoff.
    pub outbound: outbound::Outbound,
}

/// Headers never forwarded from client to upstream (credentials, hop-by-hop, and the ones the
/// gateway sets itself).
fn stripped_request_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "authorization"
            | "cookie"
            | "proxy-authorization"
            | "proxy-connection"
            | "connection"
            | "keep-alive"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
            | "mcp-session-id"
            | "x-api-key"
            | "accept-encoding"
    )
}

/// Headers never passed from upstream back to the client.
pub(crate) fn stripped_response_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
            | "mcp-session-id"
            | "set-cookie"
    )
}

/// How an exchange failed, finely enough for the breaker.
enum Failure {
    Timeout,
    Connect(String),
    Broken(String),
    Credential(String),
}

impl Upstream {
    /// Creates the upstream at `uri` (already resolved for builtins); `fetcher` gets its OAuth
    /// tokens, when it needs them.
    pub fn new(
        cfg: &UpstreamConfig,
        uri: Uri,
        client: HttpClient,
        fetcher: &crate::controls::ssrf::fetch::Fetcher,
        clock: crate::clock::SharedClock,
        audit: Option<crate::audit::AuditHandle>,
    ) -> Self {
        Upstream {
            outbound: outbound::Outbound::new(&cfg.outbound, clock.clone()),
            breaker: breaker::Breaker::new(&cfg.name, cfg.breaker.clone(), clock, audit),
            name: cfg.name.clone(),
            headers: cfg.headers.clone(),
            timeout: cfg.timeout,
            credential: cfg
                .oauth
                .clone()
                .map(|o| credential::Credential::new(o, &uri, fetcher.clone())),
            uri,
            client,
        }
    }

    /// The endpoint URL.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// Sends one request upstream. `session` is the upstream's session id, if any.
    pub async fn send(
        &self,
        method: Method,
        client_headers: &HeaderMap,
        session: Option<&HeaderValue>,
        body: Bytes,
    ) -> Result<Response<Incoming>, UpstreamError> {
        self.send_within(method, client_headers, session, body, None)
            .await
    }

    /// [`Upstream::send`] with its own time limit for the answer's headers (a tool's
    /// `timeout_secs`), instead of the upstream's.
    pub async fn send_within(
        &self,
        method: Method,
        client_headers: &HeaderMap,
        session: Option<&HeaderValue>,
        body: Bytes,
        timeout: Option<Duration>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        // An open breaker answers at once; otherwise the outcome (as far as the answer's
        // headers tell) is reported to it.
        let permit = self
            .breaker
            .admit()
            .map_err(|_| UpstreamError::CircuitOpen)?;
        // Backing off after a 429, or over the call rate: not sent.
        self.outbound.admit().map_err(UpstreamError::Throttled)?;
        let result = self
            .exchange(method, client_headers, session, body, timeout)
            .await;
        if let Ok(resp) = &result {
            self.outbound
                .answered(resp.status(), resp.headers().get(header::RETRY_AFTER));
        }
        permit.done(match &result {
            Ok(resp) => breaker::classify_status(resp.status()),
            Err(Failure::Timeout) => Some(breaker::Class::Timeout),
            Err(Failure::Connect(_)) => Some(breaker::Class::Connection),
            Err(Failure::Broken(_)) => Some(breaker::Class::Network),
            Err(Failure::Credential(_)) => Some(breaker::Class::Auth),
        });
        result.map_err(|f| match f {
            Failure::Timeout => UpstreamError::Timeout,
            Failure::Connect(e) | Failure::Broken(e) => UpstreamError::Unreachable(e),
            Failure::Credential(e) => UpstreamError::Credential(e),
        })
    }

    async fn exchange(
        &self,
        method: Method,
        client_headers: &HeaderMap,
        session: Option<&HeaderValue>,
        body: Bytes,
        timeout: Option<Duration>,
    ) -> Result<Response<Incoming>, Failure> {
        let mut req = Request::builder().method(method).uri(self.uri.clone());
        let h = req.headers_mut().expect("builder has no error yet");
        for (name, value) in client_headers {
            if !stripped_request_header(name) {
                h.append(name, value.clone());
            }
        }
        if let Some(s) = session {
            h.insert(HeaderName::from_static("mcp-session-id"), s.clone());
        }
        for (name, value) in &self.headers {
            h.insert(name, value.clone());
        }
        if let Some(c) = &self.credential {
            let v = c
                .header(client_headers)
                .await
                .map_err(Failure::Credential)?;
            h.insert(header::AUTHORIZATION, v);
        }
        if !body.is_empty() {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| Failure::Broken(e.to_string()))?;
        let limit = timeout.unwrap_or(self.timeout);
        match tokio::time::timeout(limit, self.client.request(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) if e.is_connect() => Err(Failure::Connect(error_chain(&e))),
            Ok(Err(e)) => Err(Failure::Broken(error_chain(&e))),
            Err(_) => Err(Failure::Timeout),
        }
    }

    /// Readiness probe: can we open a connection and get any HTTP answer?
    pub async fn probe(&self) -> bool {
        let req = Request::builder()
            .method(Method::GET)
            .uri(self.uri.clone())
            .body(Full::new(Bytes::new()));
        let Ok(req) = req else { return false };
        matches!(
            tokio::time::timeout(Duration::from_secs(2), self.client.request(req)).await,
            Ok(Ok(_))
        )
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
