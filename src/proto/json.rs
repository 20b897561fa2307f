//! A single-pass, allocation-light JSON validator that builds no tree.
//!
//! Why not `serde_json` alone: it keeps the *last* of two duplicate keys, has no notion of keys that
//! differ only in case, and only learns the nesting depth while it is already building values. Each
//! of those is a parser differential between the gateway and an upstream: the gateway would
//! authorise one reading of a message and the upstream execute another (CVE-2026-27896 is the
//! case-insensitive variant). This scanner checks, in one pass over the original bytes:
//! RFC 8259 grammar, string escapes (no lone surrogates, no raw control characters), the nesting
//! depth *before* descending, and per-object key uniqueness both exactly and ignoring case. It
//! reports the spans of the top-level members so callers can keep values raw.

use std::borrow::Cow;
use std::ops::Range;

/// Why a document was refused by [`scan`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// The bytes are not UTF-8.
    #[error("body is not valid UTF-8")]
    Utf8,
    /// The grammar is broken at this byte offset.
    #[error("invalid JSON at byte {0}")]
    Syntax(usize),
    /// Objects/arrays nest deeper than the configured limit.
    #[error("nesting deeper than {0}")]
    TooDeep(usize),
    /// The same key appears twice in one object.
    #[error("duplicate key at byte {0}")]
    DuplicateKey(usize),
    /// Two keys of one object differ only in letter case.
    #[error("keys differing only in case at byte {0}")]
    CaseVariantKey(usize),
    /// The document is not a single JSON object.
    #[error("top-level value is not an object")]
    NotAnObject,
    /// The document is an array (a JSON-RPC batch).
    #[error("top-level value is an array")]
    Array,
}

/// Above this many keys an object's uniqueness check switches from pairwise comparison to a set,
/// so a 1 MB object of tiny keys cannot make the check quadratic.
const PAIRWISE_MAX: usize = 16;

/// Validates `bytes` as one JSON object and calls `on_member(key, value_span)` for each of its
/// top-level members, in order. `max_depth` counts the top-level object as depth 1.
pub fn scan(
    bytes: &[u8],
    max_depth: usize,
    on_member: impl FnMut(&str, Range<usize>) -> Result<(), JsonError>,
) -> Result<(), JsonError> {
    scan_noting(bytes, max_depth, on_member).map(|_| ())
}

/// Keys that change an object's prototype in JavaScript servers (prototype pollution).
pub const PROTOTYPE_KEYS: [&str; 3] = ["__proto__", "constructor", "prototype"];

/// [`scan`], also returning the byte offset of the first key, at any depth, that is one of
/// [`PROTOTYPE_KEYS`] once unescaped (so `"\u005f_proto__"` counts). Costs nothing extra: the
/// scanner decodes every key anyway for its uniqueness checks.
pub fn scan_noting(
    bytes: &[u8],
    max_depth: usize,
    mut on_member: impl FnMut(&str, Range<usize>) -> Result<(), JsonError>,
) -> Result<Option<usize>, JsonError> {
    let text = std::str::from_utf8(bytes).map_err(|_| JsonError::Utf8)?;
    let mut s = Scanner {
        text,
        i: 0,
        max_depth,
        keys: Vec::new(),
        prototype_key: None,
    };
    s.ws();
    match s.peek() {
        Some(b'{') => {}
        Some(b'[') => return Err(JsonError::Array),
        Some(_) => return Err(JsonError::NotAnObject),
        None => return Err(JsonError::Syntax(0)),
    }
    s.object(1, Some(&mut on_member))?;
    s.ws();
    if s.i != bytes.len() {
        return Err(JsonError::Syntax(s.i));
    }
    Ok(s.prototype_key)
}

/// Validates any JSON value (used on already-extracted spans, e.g. to check a value's grammar).
pub fn validate_value(bytes: &[u8], max_depth: usize) -> Result<(), JsonError> {
    let text = std::str::from_utf8(bytes).map_err(|_| JsonError::Utf8)?;
    let mut s = Scanner {
        text,
        i: 0,
        max_depth,
        keys: Vec::new(),
        prototype_key: None,
    };
    s.ws();
    s.value(0)?;
    s.ws();
    if s.i != bytes.len() {
        return Err(JsonError::Syntax(s.i));
    }
    Ok(())
}

/// The span of the top-level member `key` of `obj`, an object that [`scan`] (or
/// [`validate_value`]) already accepted, so it has no duplicate keys and its grammar is sound.
/// Walks the top level only, skipping nested values by their brackets and strings: a lookup does
/// not pay for validating the object again. Returns `None` for anything that is not an object,
/// and never panics or loops on malformed input.
pub fn member(obj: &[u8], key: &str) -> Option<Range<usize>> {
    let mut w = Walk { b: obj, i: 0 };
    w.ws();
    if w.peek()? != b'{' {
        return None;
    }
    w.i += 1;
    loop {
        w.ws();
        if w.peek()? != b'"' {
            return None; // `}` of an empty object, or malformed
        }
        let k = w.string()?;
        w.ws();
        if w.peek()? != b':' {
            return None;
        }
        w.i += 1;
        w.ws();
        let start = w.i;
        w.value()?;
        let lit = &obj[k];
        let matches = if lit.contains(&b'\\') {
            unescape(lit) == key
        } else {
            &lit[1..lit.len() - 1] == key.as_bytes()
        };
        if matches {
            return Some(start..w.i);
        }
        w.ws();
        match w.peek()? {
            b',' => w.i += 1,
            _ => return None,
        }
    }
}

/// A cursor over already-validated JSON that only finds where values end.
struct Walk<'a> {
    b: &'a [u8],
    i: usize,
}

impl Walk<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// A string literal's span, quotes included.
    fn string(&mut self) -> Option<Range<usize>> {
        let start = self.i;
        self.i += 1;
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(start..self.i);
                }
                b'\\' => self.i += 2,
                _ => self.i += 1,
            }
        }
    }

    /// Moves past one value.
    fn value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            _ => {
                // A number or a literal: ends at the next delimiter.
                let start = self.i;
                while !matches!(
                    self.peek()?,
                    b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'
                ) {
                    self.i += 1;
                }
                (self.i > start).then_some(())
            }
        }
    }
}

/// Decodes a JSON string literal (with its quotes) that [`scan`] already validated.
pub fn unescape(lit: &[u8]) -> Cow<'_, str> {
    let inner = &lit[1..lit.len() - 1];
    // The scanner validated UTF-8 for the whole document, so this cannot fail for its spans.
    let text = std::str::from_utf8(inner).unwrap_or("");
    if !inner.contains(&b'\\') {
        return Cow::Borrowed(text);
    }
    Cow::Owned(unescape_str(text))
}

/// The value of a string literal's inside (`text`, without its quotes, already validated).
fn unescape_str(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some('/') => out.push('/'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('u') => {
                let hi = hex4(&mut chars);
                let code = if (0xD800..0xDC00).contains(&hi) {
                    chars.next();
                    chars.next();
                    let lo = hex4(&mut chars);
                    0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF)
                } else {
                    hi
                };
                out.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
            }
            _ => out.push('\u{FFFD}'),
        }
    }
    out
}

fn hex4(chars: &mut std::str::Chars<'_>) -> u32 {
    (0..4).fold(0, |acc, _| {
        acc * 16 + chars.next().and_then(|c| c.to_digit(16)).unwrap_or(0)
    })
}

struct Scanner<'a> {
    /// The document, already checked as UTF-8: keys are sliced from it, not re-checked.
    text: &'a str,
    i: usize,
    max_depth: usize,
    /// Keys of every object currently open, innermost last; reused across objects.
    keys: Vec<Cow<'a, str>>,
    /// Offset of the first prototype-changing key seen.
    prototype_key: Option<usize>,
}

type MemberFn<'f> = &'f mut dyn FnMut(&str, Range<usize>) -> Result<(), JsonError>;

impl<'a> Scanner<'a> {
    /// The document's bytes.
    fn b(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.b().get(self.i).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), JsonError> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(JsonError::Syntax(self.i))
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), JsonError> {
        match self.peek() {
            Some(b'{') => self.object(depth + 1, None),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(|_| ()),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(JsonError::Syntax(self.i)),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), JsonError> {
        if self.b()[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(JsonError::Syntax(self.i))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<(), JsonError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let int_digits = match self.peek() {
            Some(b'0') => {
                self.i += 1;
                1
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(JsonError::Syntax(self.i)),
        };
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(JsonError::Syntax(self.i));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(JsonError::Syntax(self.i));
            }
            return self.finite(start);
        }
        if int_digits > 300 {
            return self.finite(start);
        }
        Ok(())
    }

    /// Refuses a number beyond the range of a double (`1e400`): parsers disagree on it (serde_json
    /// refuses the message, JavaScript and Python read `Infinity`), so what the gateway checked
    /// would not be what the upstream executes. Only numbers with an exponent or more than 300
    /// integer digits can overflow, so the common case costs nothing.
    fn finite(&self, start: usize) -> Result<(), JsonError> {
        let text = std::str::from_utf8(&self.b()[start..self.i]).map_err(|_| JsonError::Utf8)?;
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(()),
            _ => Err(JsonError::Syntax(start)),
        }
    }

    /// Scans a string literal; returns its span including the quotes and whether it has escapes.
    fn string(&mut self) -> Result<(Range<usize>, bool), JsonError> {
        let start = self.i;
        self.expect(b'"')?;
        let mut escaped = false;
        loop {
            self.skip_plain();
            let Some(c) = self.peek() else {
                return Err(JsonError::Syntax(self.i));
            };
            match c {
                b'"' => {
                    self.i += 1;
                    return Ok((start..self.i, escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.i += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                        Some(b'u') => {
                            self.i += 1;
                            let cp = self.hex4()?;
                            if (0xD800..0xDC00).contains(&cp) {
                                // A high surrogate must be followed by an escaped low surrogate.
                                if !self.b()[self.i..].starts_with(b"\\u") {
                                    return Err(JsonError::Syntax(self.i));
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(JsonError::Syntax(self.i));
                                }
                            } else if (0xDC00..0xE000).contains(&cp) {
                                return Err(JsonError::Syntax(self.i));
                            }
                        }
                        _ => return Err(JsonError::Syntax(self.i)),
                    }
                }
                0x00..=0x1F => return Err(JsonError::Syntax(self.i)),
                _ => self.i += 1,
            }
        }
    }

    /// Moves past string bytes that need no attention (not `"`, `\\` or a control character),
    /// eight at a time: tool results are mostly long strings. Bytes of 0x80 and above are
    /// plain here; the document was checked as UTF-8 up front.
    fn skip_plain(&mut self) {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        // Non-zero exactly when some byte of `v` is zero / is below 0x20. A false positive
        // (from a borrow) only ever appears above a true one.
        let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
        while let Some(chunk) = self.b().get(self.i..self.i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let v = u64::from_le_bytes(word);
            let special = has_zero(v ^ (ONES * u64::from(b'"')))
                | has_zero(v ^ (ONES * u64::from(b'\\')))
                | (v.wrapping_sub(ONES * 0x20) & !v & HIGH);
            if special != 0 {
                // The lowest flagged byte is exact (a false positive only ever sits above a
                // true one), so this lands on the first byte that needs attention.
                self.i += (special.trailing_zeros() / 8) as usize;
                return;
            }
            self.i += 8;
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = self.peek().and_then(|c| (c as char).to_digit(16));
            let Some(d) = d else {
                return Err(JsonError::Syntax(self.i));
            };
            v = v * 16 + d;
            self.i += 1;
        }
        Ok(v)
    }

    fn array(&mut self, depth: usize) -> Result<(), JsonError> {
        if depth > self.max_depth {
            return Err(JsonError::TooDeep(self.max_depth));
        }
        self.expect(b'[')?;
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            self.value(depth)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(JsonError::Syntax(self.i)),
            }
        }
    }

    fn object(
        &mut self,
        depth: usize,
        mut on_member: Option<MemberFn<'_>>,
    ) -> Result<(), JsonError> {
        if depth > self.max_depth {
            return Err(JsonError::TooDeep(self.max_depth));
        }
        self.expect(b'{')?;
        let base = self.keys.len();
        let mut folded: Option<std::collections::HashSet<String>> = None;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            let at = self.i;
            let (span, escaped) = self.string()?;
            // The quotes are ASCII, so the span's ends are character boundaries.
            let inner = self.text.get(span.start + 1..span.end - 1).unwrap_or("");
            let key: Cow<'a, str> = if escaped {
                Cow::Owned(unescape_str(inner))
            } else {
                Cow::Borrowed(inner)
            };
            self.check_key(base, &key, &mut folded, at)?;
            if self.prototype_key.is_none()
                && matches!(key.len(), 9 | 11)
                && PROTOTYPE_KEYS.contains(&key.as_ref())
            {
                self.prototype_key = Some(at);
            }
            self.ws();
            self.expect(b':')?;
            self.ws();
            let vstart = self.i;
            self.value(depth)?;
            if let Some(f) = on_member.as_mut() {
                f(&key, vstart..self.i)?;
            }
            self.keys.push(key);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    self.keys.truncate(base);
                    return Ok(());
                }
                _ => return Err(JsonError::Syntax(self.i)),
            }
        }
    }

    fn check_key(
        &self,
        base: usize,
        key: &str,
        folded: &mut Option<std::collections::HashSet<String>>,
        at: usize,
    ) -> Result<(), JsonError> {
        let siblings = &self.keys[base..];
        if siblings.len() < PAIRWISE_MAX {
            // Keys are nearly always ASCII, and two ASCII keys are case variants exactly when
            // they are equal ignoring ASCII case: no folded copies. A non-ASCII key may fold
            // onto an ASCII one (KELVIN SIGN `\u212a` lowercases to `k`), so it takes the full fold.
            let ascii = key.is_ascii();
            let mut folded_key: Option<Cow<'_, str>> = None;
            for k in siblings {
                if k.as_ref() == key {
                    return Err(JsonError::DuplicateKey(at));
                }
                let variant = if ascii && k.is_ascii() {
                    k.eq_ignore_ascii_case(key)
                } else {
                    fold(k) == *folded_key.get_or_insert_with(|| fold(key))
                };
                if variant {
                    return Err(JsonError::CaseVariantKey(at));
                }
            }
            return Ok(());
        }
        let set =
            folded.get_or_insert_with(|| siblings.iter().map(|k| fold(k).into_owned()).collect());
        let f = fold(key).into_owned();
        if set.contains(&f) {
            return Err(if siblings.iter().any(|k| k.as_ref() == key) {
                JsonError::DuplicateKey(at)
            } else {
                JsonError::CaseVariantKey(at)
            });
        }
        set.insert(f);
        Ok(())
    }
}

/// Case folding for key comparison: ASCII fast path, full Unicode lowercase otherwise.
fn fold(k: &str) -> Cow<'_, str> {
    if k.is_ascii() {
        if k.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(k.to_ascii_lowercase())
        } else {
            Cow::Borrowed(k)
        }
    } else {
        Cow::Owned(k.to_lowercase())
    }
}

#[cfg(test)]
mod tests;
