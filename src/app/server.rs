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

use super::{pipeline, Conn, Shared};

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
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
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
                let _ = stream.set_nodelay(true);
                let gw = gw.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let Some(tls) = tls else {
                        let svc = service_fn(move |req| {
                            let gw = gw.clone();
                            async move { Ok::<_, std::convert::Infallible>(pipeline::handle(gw, req, peer, Conn { listener: index, client_cert: None }).await) }
                        });
                        let conn = watcher.watch(builder.serve_connection(TokioIo::new(stream), svc).into_owned());
                        if let Err(e) = conn.await {
                            tracing::debug!(peer = %peer, error = %e, "connection ended with error");
                        }
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
                    let svc = service_fn(move |req| {
                        let gw = gw.clone();
                        let cert = cert.clone();
                        async move { Ok::<_, std::convert::Infallible>(pipeline::handle(gw, req, peer, Conn { listener: index, client_cert: cert }).await) }
                    });
                    let conn = watcher.watch(builder.serve_connection(TokioIo::new(stream), svc).into_owned());
                    if let Err(e) = conn.await {
                        tracing::debug!(peer = %peer, error = %e, "connection ended with error");
                    }
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
