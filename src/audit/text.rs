//! [`Text`]: a string field of an audit record that usually needs no heap allocation.
//!
//! Records are built on the request path and dropped on the writer thread, so every heap string
//! in one costs an allocation on a worker and a cross-thread free on the writer. Fixed names
//! (`POST`, `tools/call`, `upstream`, `ok`, …) are borrowed; short values (request ids, client
//! addresses, hashes, principal, route and tool names) are stored inline; only longer ones go to
//! the heap. It serialises, compares and binds exactly like a `String`.

use std::fmt;
use std::ops::Deref;

use rusqlite::types::{ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest value stored inline: a SHA-256 in hex.
const INLINE: usize = 64;

/// A record's text value.
#[derive(Clone)]
pub struct Text(Repr);

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

impl Text {
    /// A fixed name: no copy.
    pub const fn fixed(s: &'static str) -> Self {
        Text(Repr::Static(s))
    }

    /// A copy of `s`, inline when it fits.
    pub fn copy(s: &str) -> Self {
        if s.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            Text(Repr::Inline {
                len: s.len() as u8,
                bytes,
            })
        } else {
            Text(Repr::Heap(s.into()))
        }
    }

    /// The value's UTF-8 bytes, without re-checking them (what the SQLite binding and the
    /// canonical form need, once per field per request).
    pub fn bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Static(s) => s.as_bytes(),
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Heap(s) => s.as_bytes(),
        }
    }

    /// The value.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            // Always a whole `str` copied in by `copy`, so this cannot fail.
            Repr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Repr::Heap(s) => s,
        }
    }
}

impl Default for Text {
    fn default() -> Self {
        Text::fixed("")
    }
}

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<&'static str> for Text {
    fn from(s: &'static str) -> Self {
        Text::fixed(s)
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        if s.len() <= INLINE {
            Text::copy(&s)
        } else {
            Text(Repr::Heap(s.into_boxed_str()))
        }
    }
}

impl PartialEq for Text {
    fn eq(&self, other: &Self) -> bool {
        // Equal strings are equal bytes: no UTF-8 check of either side.
        self.bytes() == other.bytes()
    }
}

impl Eq for Text {}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Text::from)
    }
}

impl ToSql for Text {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(self.bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_reads_back_the_same() {
        let long = "x".repeat(INLINE + 1);
        let exact = "y".repeat(INLINE);
        for s in ["", "tools/call", "héllo ✓", exact.as_str(), long.as_str()] {
            let forms = [Text::copy(s), Text::from(s.to_owned())];
            for t in forms {
                assert_eq!(t.as_str(), s);
                assert_eq!(t.bytes(), s.as_bytes());
                assert_eq!(t, *s);
                assert_eq!(
                    serde_json::to_string(&t).unwrap(),
                    serde_json::to_string(s).unwrap()
                );
            }
        }
        assert_eq!(Text::fixed("ok"), Text::copy("ok"));
        assert!(matches!(Text::copy(&long).0, Repr::Heap(_)));
        assert!(matches!(Text::copy(&exact).0, Repr::Inline { .. }));
    }
}
