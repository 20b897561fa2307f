//! Reading a request body under a hard size limit.
//!
//! Threat: memory exhaustion and parser abuse through huge bodies. The limit (default 1 MiB, the
//! seed's) is enforced on the bytes actually received, while they stream in; `Content-Length`
//! is only used to refuse early, never trusted to accept. A compressed body cannot be inspected
//! and is refused rather than passed on uninspected.

use bytes::Bytes;
use http::{header, HeaderMap};
use http_body_util::{BodyExt, Limited};

/// Why a body was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// More bytes than the limit (declared or received).
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    /// A `Content-Encoding` other than identity: the gateway cannot inspect it.
    #[error("content encoding not supported")]
    Encoded,
    /// The connection failed or the framing was invalid while reading.
    #[error("error reading body: {0}")]
    Read(String),
    /// The body arrived slower than the minimum rate (slowloris).
    #[error("body arrived slower than {0} bytes/s")]
    TooSlow(u64),
}

/// How fast a body must arrive: within `grace`, plus one second per `min_rate` bytes received
/// so far, the next bytes must be there. (A client trickling a body to hold a connection and
/// a buffer open is cut off; a slow but honest one is not.)
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Time allowed before the rate applies.
    pub grace: std::time::Duration,
    /// Bytes per second, on average since the start.
    pub min_rate: u64,
}

/// [`read`], also refusing a body that arrives slower than `pace`. The body is borrowed, so that
/// after a refusal for size the caller can [`linger`] on the rest of it.
pub async fn read_paced<B>(
    headers: &HeaderMap,
    body: &mut B,
    limit: usize,
    pace: Pace,
) -> Result<Bytes, BodyError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    check_headers(headers, limit)?;
    let start = tokio::time::Instant::now();
    let mut received: u64 = 0;
    let mut chunks: Vec<Bytes> = Vec::new();
    loop {
        let allowed = pace.grace
            + std::time::Duration::from_millis(
                received.saturating_mul(1000) / pace.min_rate.max(1),
            );
        // A frame already there (a small body usually arrives with its headers) needs no
        // timer; only a wait is timed.
        let next = match futures_util::FutureExt::now_or_never(body.frame()) {
            Some(next) => next,
            None => tokio::time::timeout_at(start + allowed, body.frame())
                .await
                .map_err(|_| BodyError::TooSlow(pace.min_rate))?,
        };
        let frame = match next {
            None => break,
            Some(Err(e)) => return Err(BodyError::Read(e.to_string())),
            Some(Ok(f)) => f,
        };
        if let Ok(data) = frame.into_data() {
            received += data.len() as u64;
            if received > limit as u64 {
                return Err(BodyError::TooLarge(limit));
            }
            chunks.push(data);
        }
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().unwrap_or_default(),
        _ => Bytes::from(chunks.concat()),
    })
}

/// How long the gateway goes on reading a body it refused for its size.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// [`read_paced`] for a request's own body: after a refusal for size, the rest of the body
/// (up to twice the limit more) is read in the background by [`linger`], so that a client still
/// writing it gets the 413 rather than a reset connection.
pub async fn read_request<B>(
    headers: &HeaderMap,
    mut body: B,
    limit: usize,
    pace: Pace,
) -> Result<Bytes, BodyError>
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let read = read_paced(headers, &mut body, limit, pace).await;
    if matches!(read, Err(BodyError::TooLarge(_))) {
        tokio::spawn(linger(body, 2 * limit as u64, LINGER));
    }
    read
}

/// Reads and discards what is left of a body refused for its size, up to `max_bytes` more or
/// until `within` has passed, whichever comes first.
///
/// Why: the refusal (413) is sent at once, but a client is usually still writing its body, and
/// closing a connection with received data unread makes the kernel reset it; the reset can
/// destroy the answer before the client reads it, so the client sees a broken connection
/// instead of the 413. Reading the rest lets the connection end cleanly (or even stay open for
/// the next request). Both bounds keep it from becoming a way to hold a connection or to make
/// the gateway read without limit: past them, the connection is closed as before.
pub async fn linger<B>(mut body: B, max_bytes: u64, within: std::time::Duration)
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    let drain = async {
        let mut discarded: u64 = 0;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                discarded += data.len() as u64;
                if discarded > max_bytes {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(within, drain).await;
}

/// Refuses encodings the gateway cannot inspect, and a declared length over the limit.
fn check_headers(headers: &HeaderMap, limit: usize) -> Result<(), BodyError> {
    for v in headers.get_all(header::CONTENT_ENCODING) {
        if !v.as_bytes().eq_ignore_ascii_case(b"identity") {
            return Err(BodyError::Encoded);
        }
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    Ok(())
}

/// Reads the whole body, refusing anything over `limit` bytes.
pub async fn read<B>(headers: &HeaderMap, body: B, limit: usize) -> Result<Bytes, BodyError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    check_headers(headers, limit)?;
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge(limit)),
        Err(e) => Err(BodyError::Read(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;
    use http_body_util::{Full, StreamBody};

    #[tokio::test]
    async fn limit_is_enforced_on_received_bytes_not_the_header() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, "10".parse().unwrap());
        // A chunked stream that sends more than the limit although the header claims 10.
        let chunks = stream::iter((0..20).map(|_| {
            Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(vec![b'x'; 100])))
        }));
        let r = read(&h, StreamBody::new(chunks), 1000).await;
        assert!(matches!(r, Err(BodyError::TooLarge(1000))));
    }

    #[tokio::test]
    async fn declared_oversize_is_refused_early() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, "1048577".parse().unwrap());
        assert!(matches!(
            read(&h, Full::new(Bytes::new()), 1 << 20).await,
            Err(BodyError::TooLarge(_))
        ));
    }

    /// A body counting the bytes taken from it.
    fn counted(
        n: usize,
        taken: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) -> impl http_body::Body<Data = Bytes, Error = std::io::Error> + Unpin {
        let chunks = stream::iter((0..n).map(move |_| {
            taken.fetch_add(1000, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(vec![b'x'; 1000])))
        }));
        StreamBody::new(chunks)
    }

    #[tokio::test]
    async fn lingering_reads_the_rest_of_a_refused_body_within_its_bounds() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, "50000".parse().unwrap());
        let pace = Pace {
            grace: std::time::Duration::from_secs(5),
            min_rate: 1,
        };
        // Refused on its declared length without reading any of it; then drained to its end.
        let taken = Arc::new(AtomicUsize::new(0));
        let mut body = counted(50, taken.clone());
        assert!(matches!(
            read_paced(&h, &mut body, 10_000, pace).await,
            Err(BodyError::TooLarge(10_000))
        ));
        assert_eq!(taken.load(Ordering::SeqCst), 0);
        linger(body, 100_000, std::time::Duration::from_secs(5)).await;
        assert_eq!(taken.load(Ordering::SeqCst), 50_000);
        // A body longer than the lingering budget is read only just past it.
        let taken = Arc::new(AtomicUsize::new(0));
        linger(
            counted(500, taken.clone()),
            100_000,
            std::time::Duration::from_secs(5),
        )
        .await;
        assert_eq!(taken.load(Ordering::SeqCst), 101_000);
        // A body that stops arriving is given up at the deadline (here 50 ms; the outer
        // bound only keeps a broken build from hanging the suite).
        let stalled = StreamBody::new(stream::pending::<
            Result<http_body::Frame<Bytes>, std::io::Error>,
        >());
        let given_up = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            linger(stalled, 100_000, std::time::Duration::from_millis(50)),
        )
        .await;
        assert!(given_up.is_ok());
    }

    #[tokio::test]
    async fn exact_limit_passes_and_encoding_is_refused() {
        let h = HeaderMap::new();
        assert_eq!(
            read(&h, Full::new(Bytes::from(vec![1; 64])), 64)
                .await
                .unwrap()
                .len(),
            64
        );
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
        assert!(matches!(
            read(&h, Full::new(Bytes::new()), 64).await,
            Err(BodyError::Encoded)
        ));
    }
}
