//! Assembly: the gateway's shared state, the pipeline, the listener and the operational endpoints.

pub mod admin;
pub mod body;
pub mod error;
mod hubroute;
mod idle;
mod lists;
mod ops;
pub use ops::LATENCY_BUCKETS;
pub mod pipeline;
mod respond;
pub mod server;
mod trace;
mod wellknown;

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::audit::AuditHandle;
use crate::config::Config;
use crate::controls::authn::Authenticator;
use crate::controls::idempotency::Idempotency;
use crate::controls::origin::OriginGuard;
use crate::controls::session::SessionStore;
use crate::hub::Hub;
use crate::upstream::Upstream;

pub(crate) use trace::new_request_id;

/// Everything a request needs, built once at start-up and shared immutably (interior state only
/// in the session store and the audit queue).
#[derive(Debug)]
pub struct Gateway {
    /// Validated configuration.
    pub config: Config,
    /// Upstreams; a route's index is its position (the hub's route is `routes.len()`).
    pub routes: Vec<Arc<Upstream>>,
    /// The aggregated endpoint `/mcp`, and stdio upstreams' own routes.
    pub hub: Hub,
    /// Host/Origin checks of the primary listener (operational endpoints are served there only).
    pub origin: OriginGuard,
    /// Host/Origin checks per listener (a listener's loopback-ness decides its Host rule).
    pub origins: Vec<OriginGuard>,
    /// Authentication.
    pub authn: Authenticator,
    /// Authorization rules.
    pub authz: crate::controls::authz::Authz,
    /// Downstream sessions.
    pub sessions: SessionStore,
    /// Stored answers for `Idempotency-Key`.
    pub idempotency: Idempotency,
    /// The built-in token issuer, if configured.
    pub issuer: Option<Arc<crate::issuer::Issuer>>,
    /// Audit queue.
    pub audit: AuditHandle,
    /// Prometheus renderer.
    pub metrics: Option<PrometheusHandle>,
    /// The time, for every window, expiry and timer.
    pub clock: crate::clock::SharedClock,
    /// Client addresses and IP lists.
    pub network: crate::controls::network::Network,
    /// Rate limits.
    pub limiter: crate::controls::ratelimit::RateLimiter,
    /// Automatic blocks and quarantine.
    pub abuse: crate::controls::abuse::Abuse,
    /// Calls in flight per principal, tool and upstream.
    pub concurrency: crate::controls::concurrency::Concurrency,
}

impl Gateway {
    /// The route index for `/mcp/{name}` on `listener`, if it is served there.
    pub fn route(&self, listener: usize, path: &str) -> Option<usize> {
        let r = if path == "/mcp" {
            self.hub.route
        } else {
            let name = path.strip_prefix("/mcp/")?;
            self.routes.iter().position(|u| u.name == name)?
        };
        self.config
            .listeners
            .get(listener)
            .and_then(|l| l.routes.get(r))
            .is_some_and(Option::is_some)
            .then_some(r)
    }

    /// `https` for a TLS listener, else `http` (what policies see as `request.transport`).
    pub fn transport(&self, listener: usize) -> &'static str {
        match self.config.listeners.get(listener) {
            Some(l) if l.tls.is_some() => "https",
            _ => "http",
        }
    }
}

/// Where a request came in.
#[derive(Debug, Clone, Default)]
pub struct Conn {
    /// Listener index (0: the primary).
    pub listener: usize,
    /// Identity of the verified TLS client certificate, if any.
    pub client_cert: Option<Arc<str>>,
}

/// Shared handle to the gateway.
pub type Shared = Arc<Gateway>;
