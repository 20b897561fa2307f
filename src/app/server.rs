//! The front door: an HTTP/1.1 + HTTP/2 listener feeding the pipeline, and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::{idle, pipeline, Conn, Shared};

/// Accepts connections until `shutdown` resolves, then drains in-flight requests (bounded by
/// `drain`). With `tls`, every connection is TLS (a plain-HTTP request gets a short refusal).
pub async fn serve(
    listener: TcpListener,
    index: usize,
    gw: Shared,
    tls: Option<Arc<crate::tls::Tls>>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    let limits = gw.config.connections.clone();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Slowloris: headers must arrive in time, and so must the next request on a kept-alive
    // connection (hyper counts that wait in the same timer).
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_timeout_ms));
    let builder = Arc::new(builder);
    let open = Arc::new(Open::default());
    let idle_limit = Duration::from_millis(limits.idle_timeout_ms);
    tokio::pin!(shutdown);
    // Sessions idle past their timeout are reaped in the background.
    // (Run once, by the primary listener.)
    let reaper = (index == 0).then(|| {
        let gw = gw.clone();
        let every = (gw.config.sessions.idle_timeout / 4)
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let ended = gw.sessions.reap(Instant::now());
                pipeline::end_upstream_sessions(&gw, ended);
                gw.hub.reap();
                gw.abuse.sweep(gw.clock.now_ms());
                let tracked = gw.limiter.sweep(gw.clock.now_ms());
                metrics::gauge!("palisade_ratelimit_keys").set(tracked as f64);
            }
        })
    });
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Seed 002: connections per listener and per client address. A trusted
                // proxy's connections carry many clients: only the listener's cap counts them.
                let per_ip = (!gw.network.is_trusted_proxy(peer.ip())).then_some(limits.max_per_ip);
                let guard = match open.enter(peer.ip(), limits.max_per_listener, per_ip) {
                    Ok(g) => g,
                    Err(reason) => {
                        refused(&gw, peer, reason);
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let gw = gw.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let _guard = guard;
                    let Some(tls) = tls else {
                        let activity = idle::Activity::new();
                        let act = activity.clone();
                        let svc = service_fn(move |req| {
                            let gw = gw.clone();
                            let busy = act.request();
                            async move {
                                let resp = pipeline::handle(gw, req, peer, Conn { listener: index, client_cert: None }).await;
                                drop(busy);
                                Ok::<_, std::convert::Infallible>(resp)
                            }
                        });
                        let io = TokioIo::new(idle::Tracked::new(stream, activity.clone()));
                        let conn = watcher.watch(builder.serve_connection(io, svc).into_owned());
                        ended(peer, idle::watch(conn, activity, idle_limit).await);
                        return;
                    };
                    // A TLS record starts with 0x16 (handshake); anything else is plain HTTP
                    // on a TLS-only listener: say so and close, instead of a handshake error.
                    let mut first = [0u8; 1];
                    if matches!(stream.peek(&mut first).await, Ok(1)) && first[0] != 0x16 {
                        let _ = refuse_plain_http(stream).await;
                        return;
                    }
                    let stream = match tokio::time::timeout(Duration::from_secs(10), tls.acceptor().accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::info!(target: "palisade::tls", peer = %peer, error = %e, "TLS handshake refused");
                            return;
                        }
                        Err(_) => return,
                    };
                    let cert = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(crate::tls::identity);
                    let activity = idle::Activity::new();
                    let act = activity.clone();
                    let svc = service_fn(move |req| {
                        let gw = gw.clone();
                        let cert = cert.clone();
                        let busy = act.request();
                        async move {
                            let resp = pipeline::handle(gw, req, peer, Conn { listener: index, client_cert: cert }).await;
                            drop(busy);
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let io = TokioIo::new(idle::Tracked::new(stream, activity.clone()));
                    let conn = watcher.watch(builder.serve_connection(io, svc).into_owned());
                    ended(peer, idle::watch(conn, activity, idle_limit).await);
                });
            }
            _ = &mut shutdown => break,
        }
    }
    if let Some(r) = reaper {
        r.abort();
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timed out; closing remaining connections");
    }
}

/// Connections open on one listener, in all and per client address (IPv6 per /64).
#[derive(Debug, Default)]
struct Open {
    total: std::sync::atomic::AtomicU32,
    per_ip: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, u32>>,
}

/// One open connection, counted until dropped.
struct Entered {
    open: Arc<Open>,
    ip: Option<std::net::IpAddr>,
}

impl Open {
    fn enter(
        self: &Arc<Self>,
        peer: std::net::IpAddr,
        max_total: u32,
        max_per_ip: Option<u32>,
    ) -> Result<Entered, &'static str> {
        use std::sync::atomic::Ordering;
        if self.total.fetch_add(1, Ordering::AcqRel) >= max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err("too_many_connections");
        }
        let mut entered = Entered {
            open: self.clone(),
            ip: None,
        };
        if let Some(max) = max_per_ip {
            let ip = crate::controls::network::host_key(peer);
            let mut map = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = map.entry(ip).or_insert(0);
            if *n >= max {
                // `entered` gives the listener's count back.
                return Err("too_many_connections_per_ip");
            }
            *n += 1;
            entered.ip = Some(ip);
        }
        Ok(entered)
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        self.open
            .total
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        if let Some(ip) = self.ip {
            let mut map = self.open.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
    }
}

/// How a connection ended: by itself (an error is logged), or closed for being idle.
fn ended(peer: SocketAddr, how: Option<Result<(), Box<dyn std::error::Error + Send + Sync>>>) {
    match how {
        Some(Ok(())) => {}
        Some(Err(e)) => tracing::debug!(peer = %peer, error = %e, "connection ended with error"),
        None => {
            tracing::debug!(peer = %peer, "idle connection closed");
            metrics::counter!("palisade_connections_idle_closed_total").increment(1);
        }
    }
}

/// A connection closed at once: logged, counted and audited.
fn refused(gw: &Shared, peer: SocketAddr, reason: &'static str) {
    tracing::info!(target: "palisade::deny", %peer, reason, "connection refused");
    metrics::counter!("palisade_connections_refused_total", "reason" => reason).increment(1);
    let mut r = crate::audit::AuditRecord::event(
        "http",
        "connections",
        reason,
        crate::audit::Decision::Deny,
    );
    r.client_ip = crate::audit::Text::from(peer.ip().to_string());
    gw.audit.write_later(r);
}

async fn refuse_plain_http(mut stream: tokio::net::TcpStream) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let body = "This listener requires HTTPS.\n";
    let head = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

/// The line to print: the real bound address, with its scheme.
pub fn describe(scheme: &str, addr: SocketAddr) -> String {
    format!("listening on {scheme}://{addr}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_per_listener_and_per_address() {
        let open = Arc::new(Open::default());
        let a: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        let b: std::net::IpAddr = "192.0.2.2".parse().unwrap();
        let first = open.enter(a, 3, Some(2)).unwrap();
        let second = open.enter(a, 3, Some(2)).unwrap();
        assert_eq!(
            open.enter(a, 3, Some(2)).err(),
            Some("too_many_connections_per_ip")
        );
        let third = open.enter(b, 3, Some(2)).unwrap();
        // The listener is full, whoever asks; a trusted proxy (no per-address cap) too.
        assert_eq!(
            open.enter(b, 3, Some(2)).err(),
            Some("too_many_connections")
        );
        assert_eq!(open.enter(b, 3, None).err(), Some("too_many_connections"));
        drop(first);
        let again = open.enter(a, 3, Some(2)).unwrap();
        drop((second, third, again));
        assert_eq!(open.total.load(std::sync::atomic::Ordering::Relaxed), 0);
        assert!(open.per_ip.lock().unwrap().is_empty());
    }
}
