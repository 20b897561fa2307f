//! The SSRF guard on what the gateway itself fetches: JWKS, OIDC discovery documents, OAuth
//! token endpoints (and later alert webhooks).
//!
//! - Each target URL is checked as a tool argument's would be (scheme, port, domain lists,
//!   IP-literal ranges) before anything is sent. Ports a URL written in the config names are
//!   allowed for it ([`fetch_policy`]): the operator chose them; a discovery document or a
//!   redirect cannot add one.
//! - A name is resolved by [`Guarded`], the connector's own resolver: every address it
//!   returns is checked, and the connection goes to exactly those addresses. The address is
//!   thereby pinned for the connection: there is no second lookup a short-TTL record could
//!   answer differently (DNS rebinding).
//! - Redirects of a GET are followed by hand (at most [`MAX_REDIRECTS`]), each target checked
//!   again; other methods never follow one (a token request carries a client secret).
//!
//! A refused target is an error the caller logs; a verifier without keys refuses tokens
//! (fail closed).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

use super::{blocked, parse};
use crate::config::SsrfConfig;

/// Most redirects followed for one GET.
pub const MAX_REDIRECTS: usize = 3;

/// Longest wait for a name to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The policy for the gateway's own fetches: `[ssrf]`, with the ports of `configured` URLs
/// allowed too.
pub fn fetch_policy<'a>(
    ssrf: &SsrfConfig,
    configured: impl Iterator<Item = &'a Uri>,
) -> SsrfConfig {
    let mut p = ssrf.clone();
    for u in configured {
        let port = u.port_u16().or(match u.scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        });
        if let Some(port) = port {
            if !p.allow_ports.contains(&port) {
                p.allow_ports.push(port);
            }
        }
    }
    p
}

/// A resolver that returns only addresses the policy allows, and fails when a name resolves
/// to any other (one blocked address is enough to refuse: which one a connection would use
/// is not the caller's choice).
#[derive(Clone, Debug)]
pub struct Guarded {
    policy: Arc<SsrfConfig>,
}

impl tower_service::Service<Name> for Guarded {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host.as_str(), 0)))
                    .await
                    .map_err(|_| std::io::Error::other(format!("resolving {host} timed out")))??
                    .collect();
            if addrs.is_empty() {
                return Err(std::io::Error::other(format!("{host} does not resolve")));
            }
            if policy.enabled {
                if let Some(a) = addrs.iter().find(|a| blocked(&policy, a.ip())) {
                    return Err(std::io::Error::other(format!(
                        "{host} resolves to {}, a blocked address (SSRF guard; see [ssrf] allow_cidrs)",
                        a.ip()
                    )));
                }
            }
            Ok(addrs.into_iter())
        })
    }
}

/// The client of the gateway's own fetches.
#[derive(Clone, Debug)]
pub struct Fetcher {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector<Guarded>>, Full<Bytes>>,
    policy: Arc<SsrfConfig>,
}

impl Fetcher {
    /// A client that checks every target against `policy` (see [`fetch_policy`]).
    pub fn new(policy: SsrfConfig, connect_timeout: Duration) -> Fetcher {
        let policy = Arc::new(policy);
        let http = HttpConnector::new_with_resolver(Guarded {
            policy: policy.clone(),
        });
        Fetcher {
            client: crate::upstream::pooled(http, connect_timeout, Duration::from_secs(30)),
            policy,
        }
    }

    /// Whether a URL may be fetched, decided without resolving (scheme, port, domain lists,
    /// an IP literal's range).
    pub fn check(&self, uri: &Uri) -> Result<(), String> {
        if !self.policy.enabled {
            return Ok(());
        }
        let text = uri.to_string();
        let (host, _) = parse(&self.policy, &text, "url").map_err(|e| e.to_string())?;
        let ip = match host {
            url::Host::Ipv4(ip) => Some(std::net::IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Some(std::net::IpAddr::V6(ip)),
            url::Host::Domain(_) => None,
        };
        match ip {
            Some(ip) if blocked(&self.policy, ip) => Err(format!(
                "{uri}: {ip} is a blocked address (SSRF guard; see [ssrf] allow_cidrs)"
            )),
            _ => Ok(()),
        }
    }

    /// Sends `req` to a checked target; a GET follows redirects, each checked.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, String> {
        let (parts, body) = req.into_parts();
        let mut uri = parts.uri.clone();
        for _ in 0..=MAX_REDIRECTS {
            self.check(&uri)?;
            let mut next = Request::builder()
                .method(parts.method.clone())
                .uri(uri.clone())
                .body(body.clone())
                .map_err(|e| e.to_string())?;
            *next.headers_mut() = parts.headers.clone();
            if uri.authority() != parts.uri.authority() {
                // Credentials stay with the origin they were meant for.
                next.headers_mut().remove(header::AUTHORIZATION);
            }
            let resp = self.client.request(next).await.map_err(|e| {
                // The resolver's refusal is in the source chain.
                let mut why = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    why = format!("{why}: {s}");
                    src = s.source();
                }
                why
            })?;
            if !resp.status().is_redirection() || resp.status() == StatusCode::NOT_MODIFIED {
                return Ok(resp);
            }
            if parts.method != Method::GET {
                return Err(format!(
                    "{uri} redirected a {} request: not followed",
                    parts.method
                ));
            }
            let location = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| format!("{uri} redirected without a Location"))?;
            uri = resolve(&uri, location)?;
        }
        Err(format!("more than {MAX_REDIRECTS} redirects"))
    }
}

/// A `Location` resolved against the URL that sent it.
fn resolve(base: &Uri, location: &str) -> Result<Uri, String> {
    let base = url::Url::parse(&base.to_string()).map_err(|e| e.to_string())?;
    base.join(location)
        .map_err(|e| format!("bad redirect {location:?}: {e}"))?
        .as_str()
        .parse()
        .map_err(|e: http::uri::InvalidUri| e.to_string())
}
