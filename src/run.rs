//! Starting and stopping the gateway (used by the binary and by tests).

use crate::controls::ssrf::fetch::{fetch_policy, Fetcher};
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use tokio::net::TcpListener;

use crate::app::{server, Gateway, Shared};
use crate::audit::{self, AuditWriter};
use crate::config::{Config, UpstreamTarget};
use crate::controls::authn::Trust;
use crate::controls::{
    authn::Authenticator, idempotency::Idempotency, origin::OriginGuard, session::SessionStore,
};
use crate::issuer::{revoked, Issuer};
use crate::upstream::{self, Upstream};

/// The gateway's Tokio runtime. Workers: one per core but one (at least one), so that the audit
/// writer thread, which chains and stores every record, has a core of its own instead of
/// preempting request handling. Fewer workers also mean fewer cross-thread wake-ups per request:
/// on the 2-core benchmark machine, one worker costs about 10–20% less CPU per call than two at the
/// same throughput. `TOKIO_WORKER_THREADS` overrides the count, as for any Tokio runtime.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        b.worker_threads(cores.saturating_sub(1).max(1));
    }
    b.enable_all().build()
}

/// A gateway that is bound and ready to serve.
#[derive(Debug)]
pub struct Running {
    /// The primary listener's bound address.
    pub addr: std::net::SocketAddr,
    /// `https` with `[tls]`, else `http`.
    pub scheme: &'static str,
    listeners: Vec<Bound>,
    admin: Option<TcpListener>,
    gw: Shared,
    writer: AuditWriter,
}

/// A bound listener.
#[derive(Debug)]
struct Bound {
    listener: TcpListener,
    addr: std::net::SocketAddr,
    tls: Option<Arc<crate::tls::Tls>>,
}

/// Builds everything from a validated config and binds the listener. Errors are start-up
/// failures: the gateway does not start (fail closed).
pub async fn start(
    config: Config,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> Result<Running, String> {
    start_with_clock(config, metrics, Arc::new(crate::clock::SystemClock)).await
}

/// [`start`] on a given clock (tests move a manual clock instead of sleeping).
pub async fn start_with_clock(
    config: Config,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    clock: crate::clock::SharedClock,
) -> Result<Running, String> {
    let client = upstream::client(
        config
            .upstreams
            .iter()
            .map(|u| u.connect_timeout)
            .max()
            .unwrap_or(Duration::from_secs(2)),
    );
    // What the gateway fetches for itself (JWKS, discovery, OAuth tokens) goes through the SSRF
    // guard; a configured URL that the guard would refuse stops the start.
    let fetched = config.fetched_urls();
    let fetcher = Fetcher::new(
        fetch_policy(&config.ssrf, fetched.iter()),
        Duration::from_secs(5),
    );
    for u in &fetched {
        fetcher
            .check(u)
            .map_err(|e| format!("the gateway would refuse to fetch {e}"))?;
    }
    let key = audit::load_or_create_key(&config.data_dir)
        .map_err(|e| format!("audit signing key in {}: {e}", config.data_dir.display()))?;
    let (audit, writer) = AuditWriter::start(
        &config.audit,
        key,
        config.limits.audit_wait,
        tokio::runtime::Handle::current(),
    )?;
    let mut routes = Vec::new();
    for u in &config.upstreams {
        let uri = match &u.target {
            UpstreamTarget::Url(uri) => uri.clone(),
            // Reached through the hub's stdio link, never over HTTP.
            UpstreamTarget::Stdio(_) => Uri::from_static("http://stdio.invalid/"),
            UpstreamTarget::BuiltinDemo => {
                let addr = crate::demo::spawn(([127, 0, 0, 1], 0).into())
                    .await
                    .map_err(|e| format!("demo upstream: {e}"))?;
                format!("http://{addr}/mcp")
                    .parse::<Uri>()
                    .map_err(|e| e.to_string())?
            }
        };
        routes.push(Arc::new(Upstream::new(
            u,
            uri,
            client.clone(),
            &fetcher,
            clock.clone(),
            Some(audit.clone()),
        )));
    }
    // Every listener, the primary first: bound now, so a taken port fails the start.
    let mut bound = Vec::new();
    for l in &config.listeners {
        let tls = match &l.tls {
            Some(t) => {
                let tls = crate::tls::Tls::new(t.clone())?;
                tokio::spawn(tls.clone().watch());
                Some(tls)
            }
            None => None,
        };
        let listener = TcpListener::bind(l.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", l.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        if config.allow_unauthenticated_non_loopback && !addr.ip().is_loopback() {
            tracing::warn!(%addr, "DANGEROUS: no authentication on a non-loopback listener (dangerous.allow_unauthenticated_non_loopback)");
        }
        bound.push(Bound {
            listener,
            addr,
            tls,
        });
    }
    // The operator API, on its own listener; its address goes to the data directory for the
    // `blocks` and `quarantine` commands.
    let admin = match config.admin.enabled {
        true => {
            let l = TcpListener::bind(config.admin.listen)
                .await
                .map_err(|e| format!("cannot listen on {} (admin): {e}", config.admin.listen))?;
            let addr = l.local_addr().map_err(|e| e.to_string())?;
            let file = crate::app::admin::addr_file(&config.data_dir);
            std::fs::create_dir_all(&config.data_dir)
                .and_then(|_| std::fs::write(&file, format!("http://{addr}\n")))
                .map_err(|e| format!("writing {}: {e}", file.display()))?;
            Some(l)
        }
        false => None,
    };
    let origins: Vec<OriginGuard> = bound
        .iter()
        .map(|b| OriginGuard::new(config.origins.clone(), b.addr.ip().is_loopback()))
        .collect();
    // What the JWT verifier trusts at run time: the built-in issuer's keys and revoked ids,
    // both reloaded by a watcher when `palisade keys rotate` / `token revoke` change them.
    let trust = Trust::default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    trust.revoked.replace(
        revoked::load(&config.data_dir, now)
            .map_err(|e| format!("revocation list in {}: {e}", config.data_dir.display()))?,
    );
    let issuer = match &config.issuer {
        Some(i) => Some(Arc::new(
            Issuer::start(
                i.clone(),
                config.data_dir.clone(),
                &config.upstreams,
                config.auth.oauth.as_ref(),
                trust.clone(),
            )
            .map_err(|e| format!("issuer keys in {}: {e}", config.data_dir.display()))?,
        )),
        None => None,
    };
    tokio::spawn(crate::issuer::watch(
        issuer.clone(),
        config.data_dir.clone(),
        trust.clone(),
    ));
    // Tool pins: a pin file that cannot be read stops the start (fail closed); approvals
    // written by `palisade tools approve` are picked up by the watcher.
    let pins = Arc::new(
        crate::controls::pinning::Pins::new(
            config.pinning.clone(),
            config
                .upstreams
                .iter()
                .map(|u| Arc::from(u.name.as_str()))
                .collect(),
            audit.clone(),
        )
        .map_err(|e| format!("tool pins: {e}"))?,
    );
    if pins.active() {
        tokio::spawn(pins.clone().watch());
    }
    let hub = crate::hub::Hub::new(&config, &routes, audit.clone(), pins);
    let gw = Arc::new(Gateway {
        origin: origins[0].clone(),
        origins,
        authn: Authenticator::new(
            &config.auth,
            &config.upstreams,
            &config.hub,
            &config.listeners,
            fetcher.clone(),
            trust,
        ),
        authz: crate::controls::authz::Authz::new(&config)
            .map_err(|e| format!("authorization: {e}"))?,
        issuer,
        sessions: SessionStore::new(&config.sessions),
        idempotency: Idempotency::new(&config.idempotency),
        network: crate::controls::network::Network::new(config.network.clone()),
        limiter: crate::controls::ratelimit::RateLimiter::new(
            &config.rate_limits,
            Arc::new(crate::controls::ratelimit::MemoryLimitStore::new(
                config.limits.max_rate_limit_keys,
            )),
        ),
        abuse: crate::controls::abuse::Abuse::new(
            config.abuse.clone(),
            Arc::new(crate::controls::abuse::MemoryAbuseStore::new(100_000)),
            audit.clone(),
            fetcher.clone(),
        ),
        concurrency: crate::controls::concurrency::Concurrency::new(
            &config,
            Arc::new(crate::controls::concurrency::MemorySlotStore::default()),
        ),
        clock,
        routes,
        hub,
        audit,
        metrics,
        config,
    });
    gw.authn.prefetch().await;
    gw.hub.boot().await;
    Ok(Running {
        addr: bound[0].addr,
        scheme: if bound[0].tls.is_some() {
            "https"
        } else {
            "http"
        },
        listeners: bound,
        admin,
        gw,
        writer,
    })
}

impl Running {
    /// Serves until `shutdown` resolves, drains in-flight requests, then flushes the audit trail.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) {
        // One shutdown signal for every listener.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut servers = Vec::new();
        for (i, b) in self.listeners.into_iter().enumerate() {
            let mut stopped = stopped.clone();
            let gw = self.gw.clone();
            servers.push(tokio::spawn(async move {
                let signal = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                server::serve(b.listener, i, gw, b.tls, signal, Duration::from_secs(30)).await;
            }));
        }
        let admin = self
            .admin
            .map(|l| tokio::spawn(crate::app::admin::serve(l, self.gw.clone())));
        shutdown.await;
        if let Some(a) = admin {
            a.abort();
        }
        let _ = stop.send(true);
        for s in servers {
            let _ = s.await;
        }
        self.gw.hub.shutdown().await;
        drop(self.gw);
        self.writer.shutdown().await;
    }

    /// Every listener's address and scheme, the primary first.
    pub fn listeners(&self) -> Vec<(&'static str, std::net::SocketAddr)> {
        self.listeners
            .iter()
            .map(|b| (if b.tls.is_some() { "https" } else { "http" }, b.addr))
            .collect()
    }
}
