//! Starting and stopping the gateway (used by the binary and by tests).

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

/// The TLS acceptor (rustls's type has no `Debug`).
#[derive(Clone)]
struct Tls(tokio_rustls::TlsAcceptor);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsAcceptor")
    }
}

/// A gateway that is bound and ready to serve.
#[derive(Debug)]
pub struct Running {
    /// The bound address.
    pub addr: std::net::SocketAddr,
    /// `https` with `[tls]`, else `http`.
    pub scheme: &'static str,
    tls: Option<Tls>,
    listener: TcpListener,
    gw: Shared,
    writer: AuditWriter,
}

/// Builds everything from a validated config and binds the listener. Errors are start-up
/// failures: the gateway does not start (fail closed).
pub async fn start(
    config: Config,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> Result<Running, String> {
    let client = upstream::client(
        config
            .upstreams
            .iter()
            .map(|u| u.connect_timeout)
            .max()
            .unwrap_or(Duration::from_secs(2)),
    );
    let mut routes = Vec::new();
    for u in &config.upstreams {
        let uri = match &u.target {
            UpstreamTarget::Url(uri) => uri.clone(),
            UpstreamTarget::BuiltinDemo => {
                let addr = crate::demo::spawn(([127, 0, 0, 1], 0).into())
                    .await
                    .map_err(|e| format!("demo upstream: {e}"))?;
                format!("http://{addr}/mcp")
                    .parse::<Uri>()
                    .map_err(|e| e.to_string())?
            }
        };
        routes.push(Upstream::new(u, uri, client.clone()));
    }
    let key = audit::load_or_create_key(&config.data_dir)
        .map_err(|e| format!("audit signing key in {}: {e}", config.data_dir.display()))?;
    let (audit, writer) = AuditWriter::start(
        &config.audit,
        key,
        config.limits.audit_wait,
        tokio::runtime::Handle::current(),
    )?;
    let tls = match &config.tls {
        Some(t) => {
            let (sc, resolver) = crate::tls::server_config(t)?;
            tokio::spawn(crate::tls::watch(t.clone(), resolver));
            Some(Tls(tokio_rustls::TlsAcceptor::from(sc)))
        }
        None => None,
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    if config.allow_unauthenticated_non_loopback && !addr.ip().is_loopback() {
        tracing::warn!(%addr, "DANGEROUS: no authentication on a non-loopback listener (dangerous.allow_unauthenticated_non_loopback)");
    }
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
    let gw = Arc::new(Gateway {
        origin: OriginGuard::new(config.origins.clone(), addr.ip().is_loopback()),
        authn: Authenticator::new(&config.auth, &config.upstreams, client.clone(), trust),
        issuer,
        sessions: SessionStore::new(&config.sessions),
        idempotency: Idempotency::new(&config.idempotency),
        routes,
        audit,
        metrics,
        config,
    });
    gw.authn.prefetch().await;
    Ok(Running {
        addr,
        scheme: if tls.is_some() { "https" } else { "http" },
        tls,
        listener,
        gw,
        writer,
    })
}

impl Running {
    /// Serves until `shutdown` resolves, drains in-flight requests, then flushes the audit trail.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) {
        server::serve(
            self.listener,
            self.gw.clone(),
            self.tls.map(|t| t.0),
            shutdown,
            Duration::from_secs(30),
        )
        .await;
        drop(self.gw);
        self.writer.shutdown().await;
    }
}
