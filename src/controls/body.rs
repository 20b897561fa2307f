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
}

/// Reads the whole body, refusing anything over `limit` bytes.
pub async fn read<B>(headers: &HeaderMap, body: B, limit: usize) -> Result<Bytes, BodyError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
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
