//! The audit record and its canonical bytes.

use serde::{Deserialize, Serialize};

pub use super::text::Text;

/// Lowercase hex of a hash (record `input_hash`, chain hashes), written from a lookup table
/// into a stack buffer: a SHA-256 stays inline in the [`Text`].
pub fn hex_lower(bytes: &[u8]) -> Text {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 64];
    if bytes.len() * 2 > buf.len() {
        return Text::from(hex::encode(bytes));
    }
    for (i, b) in bytes.iter().enumerate() {
        buf[2 * i] = DIGITS[usize::from(b >> 4)];
        buf[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
    Text::copy(std::str::from_utf8(&buf[..bytes.len() * 2]).unwrap_or_default())
}

/// The chain hash of a record: SHA-256 of the previous record's hash (zeros for the first) and
/// the record's canonical bytes.
pub(super) fn link(prev: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(prev);
    h.update(canonical);
    h.finalize().into()
}

/// Whether the request was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Forwarded upstream.
    Allow,
    /// Refused by a control.
    Deny,
}

impl Decision {
    /// Stable text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

/// One request, as the audit trail keeps it. Field names are fixed: tools and dashboards rely on
/// them. The hash chain is computed over [`AuditRecord::canonical`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Milliseconds since the Unix epoch when the request arrived.
    pub ts_ms: i64,
    /// UUIDv7 of the request, also sent to the client in errors.
    pub request_id: Text,
    /// Principal id (`anonymous` in no-auth mode).
    pub principal: Text,
    /// How the principal authenticated.
    pub auth_method: Text,
    /// Client IP address.
    pub client_ip: Text,
    /// Front-door transport (`http`).
    pub transport: Text,
    /// Route / upstream name, if resolved.
    pub upstream: Option<Text>,
    /// HTTP method.
    pub http_method: Text,
    /// JSON-RPC method, if parsed.
    pub rpc_method: Option<Text>,
    /// Tool name for `tools/call`.
    pub tool: Option<Text>,
    /// SHA-256 (hex) of the raw `params` bytes.
    pub input_hash: Option<Text>,
    /// allow / deny.
    pub decision: Decision,
    /// The control that decided (`origin`, `envelope`, `session`, `upstream`, …).
    pub control: Text,
    /// Its reason code (`foreign_origin`, `ok`, …).
    pub reason: Text,
    /// HTTP status returned to the client.
    pub status: u16,
    /// Stable error code returned to the client, if any.
    pub error_code: Option<Text>,
    /// Microseconds from arrival to the end of the response.
    pub duration_us: i64,
    /// Request body bytes.
    pub input_bytes: i64,
    /// Response body bytes sent to the client.
    pub output_bytes: i64,
}

impl AuditRecord {
    /// A record of something the gateway did or saw outside a client request (a child
    /// process's life, a tool definition's change): now, no client, no HTTP exchange. The
    /// caller fills in what it knows.
    pub fn event(
        transport: &'static str,
        control: &'static str,
        reason: &'static str,
        decision: Decision,
    ) -> AuditRecord {
        AuditRecord {
            ts_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            request_id: Text::default(),
            principal: Text::default(),
            auth_method: Text::default(),
            client_ip: Text::default(),
            transport: Text::fixed(transport),
            upstream: None,
            http_method: Text::default(),
            rpc_method: None,
            tool: None,
            input_hash: None,
            decision,
            control: Text::fixed(control),
            reason: Text::fixed(reason),
            status: 0,
            error_code: None,
            duration_us: 0,
            input_bytes: 0,
            output_bytes: 0,
        }
    }

    /// The bytes the hash chain covers in the per-row layouts: the record as a JSON object with
    /// fields in declaration order, exactly as `serde_json::to_vec` writes it (a property test
    /// holds the two equal).
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.write_canonical(&mut out);
        out
    }

    /// Appends [`AuditRecord::canonical`] to `out` (the writer reuses one buffer). Written by
    /// hand because it runs once per request: serde's generic path costs several times more.
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        self.write_json(&mut CanonicalJson { out, keys: true });
    }

    /// Appends the record's values form to `out`: what the segment layout stores and chains. A
    /// JSON array of the field values in declaration order, written as serde_json writes each
    /// value; serde reads it back as the record (a derived `Deserialize` accepts a sequence). It
    /// is the canonical form without the field names, which would be half of every record.
    pub fn write_values(&self, out: &mut Vec<u8>) {
        self.write_json(&mut CanonicalJson { out, keys: false });
    }

    fn write_json(&self, j: &mut CanonicalJson<'_>) {
        j.int("{\"ts_ms\":", self.ts_ms);
        j.str(",\"request_id\":", Some(self.request_id.bytes()));
        j.str(",\"principal\":", Some(self.principal.bytes()));
        j.str(",\"auth_method\":", Some(self.auth_method.bytes()));
        j.str(",\"client_ip\":", Some(self.client_ip.bytes()));
        j.str(",\"transport\":", Some(self.transport.bytes()));
        j.str(",\"upstream\":", self.upstream.as_ref().map(Text::bytes));
        j.str(",\"http_method\":", Some(self.http_method.bytes()));
        j.str(
            ",\"rpc_method\":",
            self.rpc_method.as_ref().map(Text::bytes),
        );
        j.str(",\"tool\":", self.tool.as_ref().map(Text::bytes));
        j.str(
            ",\"input_hash\":",
            self.input_hash.as_ref().map(Text::bytes),
        );
        j.str(",\"decision\":", Some(self.decision.as_str().as_bytes()));
        j.str(",\"control\":", Some(self.control.bytes()));
        j.str(",\"reason\":", Some(self.reason.bytes()));
        j.int(",\"status\":", i64::from(self.status));
        j.str(
            ",\"error_code\":",
            self.error_code.as_ref().map(Text::bytes),
        );
        j.int(",\"duration_us\":", self.duration_us);
        j.int(",\"input_bytes\":", self.input_bytes);
        j.int(",\"output_bytes\":", self.output_bytes);
        j.out.push(if j.keys { b'}' } else { b']' });
    }
}

/// serde_json's compact output for the two value kinds a record has, as an object (`keys`) or
/// as an array of the values alone.
struct CanonicalJson<'a> {
    out: &'a mut Vec<u8>,
    keys: bool,
}

impl CanonicalJson<'_> {
    /// `key` with its separator (`{"name":` for the first field, `,"name":` after), or in an
    /// array only the separator (`[`, then `,`).
    fn key(&mut self, key: &str) {
        if self.keys {
            self.out.extend_from_slice(key.as_bytes());
        } else {
            self.out
                .push(if key.starts_with('{') { b'[' } else { b',' });
        }
    }

    /// `key` (with its separator) then an integer.
    fn int(&mut self, key: &str, v: i64) {
        self.key(key);
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut n = v.unsigned_abs();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        if v < 0 {
            self.out.push(b'-');
        }
        self.out.extend_from_slice(&digits[i..]);
    }

    /// `key` (with its separator) then a string, or `null`. Escapes what serde_json escapes:
    /// `"`, `\\` and control characters (short forms where JSON has them, else `\u00xx`).
    fn str(&mut self, key: &str, v: Option<&[u8]>) {
        self.key(key);
        let Some(v) = v else {
            self.out.extend_from_slice(b"null");
            return;
        };
        let out = &mut *self.out;
        out.push(b'"');
        let bytes = v;
        // Nearly every value needs no escape; this check has no early exit, so it vectorises.
        let plain = bytes
            .iter()
            .fold(true, |ok, &b| ok & (b >= 0x20) & (b != b'"') & (b != b'\\'));
        if plain {
            out.extend_from_slice(bytes);
            out.push(b'"');
            return;
        }
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let short = match b {
                b'"' => b'"',
                b'\\' => b'\\',
                b'\n' => b'n',
                b'\r' => b'r',
                b'\t' => b't',
                0x08 => b'b',
                0x0c => b'f',
                0x00..=0x1f => b'u',
                _ => continue,
            };
            out.extend_from_slice(&bytes[start..i]);
            start = i + 1;
            out.extend_from_slice(&[b'\\', short]);
            if short == b'u' {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ]);
            }
        }
        out.extend_from_slice(&bytes[start..]);
        out.push(b'"');
    }
}
