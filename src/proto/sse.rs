//! An incremental Server-Sent-Events splitter.
//!
//! The gateway forwards SSE event by event, as each one completes, with the upstream's bytes
//! unchanged (ids, `retry:`, comments and priming events included). It only needs to see each
//! event's `data` to enforce "exactly one response per request".

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};

/// Splits a byte stream into complete SSE events (each including its terminating blank line).
#[derive(Debug, Default)]
pub struct Splitter {
    buf: BytesMut,
    line_start: usize,
    scan: usize,
}

impl Splitter {
    /// Appends bytes read from the upstream.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Bytes buffered that do not yet form a complete event.
    pub fn pending_len(&self) -> usize {
        self.buf.len()
    }

    /// The next complete event, if one is buffered.
    pub fn next_event(&mut self) -> Option<Bytes> {
        let b = &self.buf[..];
        let mut i = self.scan;
        while i < b.len() {
            let term = match b[i] {
                b'\n' => 1,
                b'\r' if i + 1 < b.len() => 1 + usize::from(b[i + 1] == b'\n'),
                // A CR at the end of the buffer may be the first half of CRLF: wait.
                b'\r' => break,
                _ => {
                    i += 1;
                    continue;
                }
            };
            let blank = i == self.line_start;
            i += term;
            self.line_start = i;
            if blank {
                self.scan = 0;
                self.line_start = 0;
                return Some(self.buf.split_to(i).freeze());
            }
        }
        self.scan = i;
        None
    }
}

/// The event's `data` (all `data:` lines joined with `\n`), or `None` if it has no data field.
pub fn data(event: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut out: Option<Cow<'_, [u8]>> = None;
    for line in lines(event) {
        let Some(rest) = line.strip_prefix(b"data") else {
            continue;
        };
        let value = match rest.first() {
            None => &rest[..0],
            Some(b':') => rest[1..].strip_prefix(b" ").unwrap_or(&rest[1..]),
            Some(_) => continue, // a field merely starting with "data", e.g. "dataset:"
        };
        out = Some(match out {
            None => Cow::Borrowed(value),
            Some(prev) => {
                let mut v = prev.into_owned();
                v.push(b'\n');
                v.extend_from_slice(value);
                Cow::Owned(v)
            }
        });
    }
    out
}

fn lines(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = event;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest
            .iter()
            .position(|&c| c == b'\n' || c == b'\r')
            .unwrap_or(rest.len());
        let line = &rest[..end];
        let mut next = end;
        if next < rest.len() {
            next += if rest[next] == b'\r' && rest.get(next + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
        }
        rest = &rest[next..];
        Some(line)
    })
}

/// Builds one SSE event carrying the (single-line) JSON message `json` as its data.
pub fn message_event_bytes(json: &[u8]) -> Bytes {
    let mut s = Vec::with_capacity(json.len() + 24);
    s.extend_from_slice(b"event: message\ndata: ");
    s.extend_from_slice(json);
    s.extend_from_slice(b"\n\n");
    Bytes::from(s)
}

/// Builds one SSE event carrying `json` as its data.
pub fn message_event(json: &str) -> Bytes {
    let mut s = String::with_capacity(json.len() + 24);
    s.push_str("event: message\ndata: ");
    s.push_str(json);
    s.push_str("\n\n");
    Bytes::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(chunks: &[&[u8]]) -> Vec<Bytes> {
        let mut s = Splitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c);
            while let Some(e) = s.next_event() {
                out.push(e);
            }
        }
        out
    }

    #[test]
    fn splits_on_blank_lines_with_any_line_ending() {
        let ev = split_all(&[b"id: 1\ndata: a\n\nretry: 10\r\n\r\n: c\r\rdata: x"]);
        assert_eq!(
            ev,
            vec![
                &b"id: 1\ndata: a\n\n"[..],
                &b"retry: 10\r\n\r\n"[..],
                &b": c\r\r"[..]
            ]
        );
    }

    #[test]
    fn events_split_across_chunks_byte_by_byte() {
        let src = b"event: message\r\ndata: {\"a\":1}\r\n\r\nid: p\ndata:\n\n";
        let chunks: Vec<&[u8]> = src.chunks(1).collect();
        let ev = split_all(&chunks);
        assert_eq!(ev.len(), 2);
        assert_eq!(ev.concat(), src.to_vec());
    }

    #[test]
    fn data_joins_lines() {
        assert_eq!(
            data(b"data: a\ndata:b\ndata\n\n").unwrap().as_ref(),
            b"a\nb\n"
        );
        assert_eq!(data(b"id: 1\ndata:\n\n").unwrap().as_ref(), b"");
        assert!(data(b": comment\n\n").is_none());
        assert!(data(b"dataset: 1\n\n").is_none());
    }
}
