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

/// [`read`], also refusing a body that arrives slower than `pace`.
pub async fn read_paced<B>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
    pace: Pace,
) -> Result<Bytes, BodyError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    check_headers(headers, limit)?;
    let start = tokio::time::Instant::now();
    let mut body = std::pin::pin!(body);
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
