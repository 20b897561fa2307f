//! The gateway's own access token for an upstream (OAuth client_credentials, RFC 6749 §4.4).
//!
//! The client's credential never goes upstream; when an upstream wants OAuth, the gateway is its
//! client. The token is fetched on first use, cached, and fetched again `refresh_before` ahead of
//! its expiry; concurrent requests wait for one fetch rather than each starting its own. A fetch
//! that fails fails the request (MCP-003) — no request is sent upstream without its credential.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request};
use http_body_util::{BodyExt, Full, Limited};
use sha2::{Digest, Sha256};

use crate::config::UpstreamOAuth;

/// A cached upstream token.
#[derive(Debug)]
pub(crate) struct Credential {
    cfg: UpstreamOAuth,
    resource: String,
    fetcher: crate::controls::ssrf::fetch::Fetcher,
    current: RwLock<Option<(HeaderValue, Instant)>>,
    fetching: tokio::sync::Mutex<()>,
    exchanged: std::sync::Mutex<HashMap<[u8; 32], (HeaderValue, Instant)>>,
}

const EXCHANGED_MAX: usize = 10_000;

impl Credential {
    pub(crate) fn new(
        cfg: UpstreamOAuth,
        upstream: &http::Uri,
        fetcher: crate::controls::ssrf::fetch::Fetcher,
    ) -> Self {
        let resource = cfg.resource.clone().unwrap_or_else(|| upstream.to_string());
        Credential {
            cfg,
            resource,
            fetcher,
            current: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(()),
            exchanged: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn fresh(&self) -> Option<HeaderValue> {
        let g = self.current.read().unwrap_or_else(|p| p.into_inner());
        g.as_ref()
            .filter(|(_, exp)| Instant::now() + self.cfg.refresh_before < *exp)
            .map(|(h, _)| h.clone())
    }

    /// The `Authorization` value to send upstream for a request with `client_headers`.
    pub(crate) async fn header(&self, client_headers: &HeaderMap) -> Result<HeaderValue, String> {
        if self.cfg.token_exchange {
            return self.exchange(client_headers).await;
        }
        if let Some(h) = self.fresh() {
            return Ok(h);
        }
        let _one = self.fetching.lock().await;
        if let Some(h) = self.fresh() {
            return Ok(h);
        }
        let (h, ttl) = self.fetch(self.form(None)).await?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) =
            Some((h.clone(), Instant::now() + ttl));
        Ok(h)
    }

    async fn exchange(&self, client_headers: &HeaderMap) -> Result<HeaderValue, String> {
        let subject = client_headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.get(7..)
                    .filter(|_| v[..7].eq_ignore_ascii_case("bearer "))
            })
            .filter(|t| t.split('.').count() == 3)
            .ok_or("token exchange needs the caller's JWT")?
            .to_owned();
        let key: [u8; 32] = Sha256::digest(subject.as_bytes()).into();
        let now = Instant::now();
        {
            let map = self.exchanged.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((h, exp)) = map.get(&key) {
                if now + self.cfg.refresh_before < *exp {
                    return Ok(h.clone());
                }
            }
        }
        let form = self.form(Some(&subject));
        let (h, ttl) = self.fetch(form).await?;
        let mut map = self.exchanged.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= EXCHANGED_MAX {
            map.retain(|_, (_, exp)| now < *exp);
        }
        if map.len() < EXCHANGED_MAX {
            map.insert(key, (h.clone(), now + ttl));
        }
        Ok(h)
    }

    fn form(&self, subject: Option<&str>) -> String {
        let mut form = form_urlencoded::Serializer::new(String::new());
        match subject {
            None => {
                form.append_pair("grant_type", "client_credentials");
            }
            Some(t) => {
                form.append_pair(
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                );
                form.append_pair("subject_token", t);
                form.append_pair(
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                );
                form.append_pair(
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                );
            }
        }
        form.append_pair("resource", &self.resource);
        if let Some(s) = &self.cfg.scope {
            form.append_pair("scope", s);
        }
        form.finish()
    }

    async fn fetch(&self, form: String) -> Result<(HeaderValue, Duration), String> {
        let enc = |s: &[u8]| form_urlencoded::byte_serialize(s).collect::<String>();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            enc(self.cfg.client_id.as_bytes()),
            enc(self.cfg.client_secret.expose())
        ));
        let mut auth =
            HeaderValue::from_str(&format!("Basic {basic}")).map_err(|e| e.to_string())?;
        auth.set_sensitive(true);
        let req = Request::post(self.cfg.token_url.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .header(header::AUTHORIZATION, auth)
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.fetcher.send(req))
            .await
            .map_err(|_| "token endpoint timed out".to_owned())?
            .map_err(|e| format!("token endpoint: {e}"))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), 64 * 1024)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("token endpoint answered {status}"));
        }
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let token = v
            .get("access_token")
            .and_then(|t| t.as_str())
            .ok_or("no access_token in the token response")?;
        if !v
            .get("token_type")
            .and_then(|t| t.as_str())
            .is_some_and(|t| t.eq_ignore_ascii_case("bearer"))
        {
            return Err("token_type is not Bearer".into());
        }
        let ttl = Duration::from_secs(v.get("expires_in").and_then(|e| e.as_u64()).unwrap_or(3600));
        let mut h = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "token is not header-safe")?;
        h.set_sensitive(true);
        Ok((h, ttl))
    }
}
