//! The audit record of one request, filled in as the pipeline learns things.
//!
//! This runs for every request, so it avoids work that does not change the record: fixed names
//! (HTTP and JSON-RPC methods, controls, reasons, error codes) are borrowed rather than copied,
//! other values are kept inline in the record (see [`Text`]), and hex and IPv4 addresses are
//! written without the formatting machinery.

use std::net::IpAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::audit::{hex_lower, AuditRecord, Decision, Text};
use crate::controls::authn::Principal;
use crate::proto::Envelope;

/// What the pipeline has learnt about a request so far.
#[derive(Debug)]
pub(crate) struct Trace {
    started: Instant,
    record: AuditRecord,
    /// Concurrency slots the request holds until its record is finished (its answer
    /// delivered).
    held: Option<crate::controls::concurrency::Held>,
}

/// HTTP methods recorded without a copy.
const HTTP_METHODS: &[&str] = &["POST", "GET", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"];

/// `s` as a borrowed `'static` name when it is one of `known`, else a copy.
fn text(s: &str, known: &[&'static str]) -> Text {
    match known.iter().find(|k| **k == s) {
        Some(k) => Text::fixed(k),
        None => Text::copy(s),
    }
}

/// The address as `Display` writes it; IPv4 without the formatting machinery.
fn ip_text(ip: IpAddr) -> Text {
    let IpAddr::V4(v4) = ip else {
        return Text::from(ip.to_string());
    };
    let mut buf = [0u8; 15];
    let mut n = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            buf[n] = b'.';
            n += 1;
        }
        if octet >= 100 {
            buf[n] = b'0' + octet / 100;
            n += 1;
        }
        if octet >= 10 {
            buf[n] = b'0' + octet / 10 % 10;
            n += 1;
        }
        buf[n] = b'0' + octet % 10;
        n += 1;
    }
    Text::copy(std::str::from_utf8(&buf[..n]).unwrap_or_default())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A fresh request id: a UUIDv7 (Unix milliseconds, then 74 random bits). The random bits come
/// from the thread-local CSPRNG (ChaCha, seeded and periodically reseeded from the OS) rather
/// than from a `getrandom` system call per request.
pub(crate) fn new_request_id() -> String {
    let random: [u8; 10] = rand::random();
    let id = uuid::Builder::from_unix_timestamp_millis(unix_ms(), &random).into_uuid();
    id.hyphenated()
        .encode_lower(&mut uuid::Uuid::encode_buffer())
        .to_owned()
}

impl Trace {
    pub(crate) fn new(request_id: &str, http_method: &str, client: IpAddr) -> Self {
        Trace {
            started: Instant::now(),
            held: None,
            record: AuditRecord {
                ts_ms: unix_ms() as i64,
                request_id: Text::copy(request_id),
                principal: Text::default(),
                auth_method: Text::default(),
                client_ip: ip_text(client),
                transport: Text::fixed("http"),
                upstream: None,
                http_method: text(http_method, HTTP_METHODS),
                rpc_method: None,
                tool: None,
                input_hash: None,
                decision: Decision::Deny,
                control: Text::default(),
                reason: Text::default(),
                status: 0,
                error_code: None,
                duration_us: 0,
                input_bytes: 0,
                output_bytes: 0,
            },
        }
    }

    /// Keeps concurrency slots until the request ends.
    pub(crate) fn hold(&mut self, held: crate::controls::concurrency::Held) {
        self.held = Some(held);
    }

    pub(crate) fn upstream(&mut self, name: &str) {
        self.record.upstream = Some(Text::copy(name));
    }

    pub(crate) fn principal(&mut self, p: &Principal) {
        self.record.principal = Text::copy(p.id());
        self.record.auth_method = Text::fixed(p.method());
    }

    /// Who a non-MCP request (a token request) was about, before any principal exists.
    pub(crate) fn subject(&mut self, id: &str, method: &'static str) {
        self.record.principal = Text::copy(id);
        self.record.auth_method = Text::fixed(method);
    }

    pub(crate) fn input_bytes(&mut self, n: usize) {
        self.record.input_bytes = n as i64;
    }

    pub(crate) fn message(&mut self, env: &Envelope) {
        let method = env.method();
        self.record.rpc_method = method.map(|m| text(m, super::ops::METHOD_LABELS));
        if method == Some("tools/call") {
            self.record.tool = env.param_str("name").map(|s| Text::copy(&s));
        }
        if let Some(p) = env.params() {
            self.record.input_hash = Some(hex_lower(&Sha256::digest(p)));
        }
    }

    /// Completes the record.
    pub(crate) fn finish(
        mut self,
        decision: Decision,
        control: &'static str,
        reason: &'static str,
        status: u16,
        error_code: Option<&'static str>,
        output_bytes: u64,
    ) -> AuditRecord {
        let elapsed = self.started.elapsed();
        let r = &mut self.record;
        r.decision = decision;
        r.control = Text::fixed(control);
        r.reason = Text::fixed(reason);
        r.status = status;
        r.error_code = error_code.map(Text::fixed);
        r.output_bytes = output_bytes as i64;
        r.duration_us = elapsed.as_micros() as i64;
        super::ops::observe(r, elapsed);
        self.record
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text_is_display() {
        for ip in [
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "10.0.100.9",
            "192.168.1.20",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), *ip.to_string());
        }
        for n in 0..=255u8 {
            let ip = IpAddr::from([n, 255 - n, n / 3, 7]);
            assert_eq!(ip_text(ip), *ip.to_string());
        }
    }

    #[test]
    fn request_ids_are_distinct_uuid_v7() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        for id in [a, b] {
            let u = uuid::Uuid::parse_str(&id).unwrap();
            assert_eq!(u.get_version_num(), 7);
            assert_eq!(id, u.hyphenated().to_string());
        }
    }
}
