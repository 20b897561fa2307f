//! Closing connections that sit idle (seed 002: connections are a resource to bound).
//!
//! hyper bounds the wait for a request's headers on HTTP/1.1 (which also covers the gap
//! between requests on a kept-alive connection) but has no idle limit for HTTP/2. This covers
//! both: the connection's socket counts bytes moving either way, requests count while their
//! handler runs, and a connection with no request in its handler and no byte moved for the
//! idle timeout is closed. A streamed answer moves bytes (events, keep-alive comments), so it
//! is not idle while its stream lives.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What happened on one connection. Bytes moving only bump a counter (no clock read per
/// read or write); the watchdog compares it between its ticks.
#[derive(Debug)]
pub(super) struct Activity {
    moves: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    /// A connection just opened.
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Activity {
            moves: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        })
    }

    fn touch(&self) {
        self.moves.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request while its handler runs.
    pub(super) fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        InFlight(self.clone())
    }

    /// A mark that changes whenever the connection is not idle.
    fn mark(&self) -> (u64, bool) {
        (
            self.moves.load(Ordering::Relaxed),
            self.in_flight.load(Ordering::Relaxed) > 0,
        )
    }
}

/// A request being handled.
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The watchdog looks every quarter of the limit; four quiet looks in a row close the
/// connection (so after `limit` to `limit` × 5/4 of idleness).
const LOOKS: u32 = 4;

/// Runs `conn` until it ends or the connection has been idle for `limit` (then it is dropped,
/// which closes the socket). Returns the connection's result, if it ended by itself.
pub(super) async fn watch<F, E>(
    conn: F,
    activity: Arc<Activity>,
    limit: Duration,
) -> Option<Result<(), E>>
where
    F: std::future::Future<Output = Result<(), E>>,
{
    tokio::pin!(conn);
    let step = limit / LOOKS;
    let mut last = activity.mark();
    let mut quiet = 0;
    loop {
        tokio::select! {
            out = &mut conn => return Some(out),
            () = tokio::time::sleep(step) => {}
        }
        let now = activity.mark();
        quiet = if now == last && !now.1 { quiet + 1 } else { 0 };
        last = now;
        if quiet >= LOOKS {
            return None;
        }
    }
}

/// A socket that reports bytes moving to its connection's [`Activity`].
pub(super) struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Tracked<T> {
    /// Wraps `inner`.
    pub(super) fn new(inner: T, activity: Arc<Activity>) -> Self {
        Tracked { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
