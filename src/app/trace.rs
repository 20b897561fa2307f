//! The audit record of one request, filled in as the pipeline learns things.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::audit::{AuditRecord, Decision};
use crate::controls::authn::Principal;
use crate::proto::Envelope;

/// What the pipeline has learnt about a request so far.
#[derive(Debug)]
pub(crate) struct Trace {
    started: Instant,
    record: AuditRecord,
}

impl Trace {
    pub(crate) fn new(request_id: &str, http_method: &str, peer: SocketAddr) -> Self {
        let ts_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Trace {
            started: Instant::now(),
            record: AuditRecord {
                ts_ms,
                request_id: request_id.to_owned(),
                principal: String::new(),
                auth_method: String::new(),
                client_ip: peer.ip().to_string(),
                transport: "http".into(),
                upstream: None,
                http_method: http_method.to_owned(),
                rpc_method: None,
                tool: None,
                input_hash: None,
                decision: Decision::Deny,
                control: String::new(),
                reason: String::new(),
                status: 0,
                error_code: None,
                duration_us: 0,
                input_bytes: 0,
                output_bytes: 0,
            },
        }
    }

    pub(crate) fn upstream(&mut self, name: &str) {
        self.record.upstream = Some(name.to_owned());
    }

    pub(crate) fn principal(&mut self, p: &Principal) {
        self.record.principal = p.id().to_string();
        self.record.auth_method = p.method().to_owned();
    }

    /// Who a non-MCP request (a token request) was about, before any principal exists.
    pub(crate) fn subject(&mut self, id: &str, method: &str) {
        self.record.principal = id.to_owned();
        self.record.auth_method = method.to_owned();
    }

    pub(crate) fn input_bytes(&mut self, n: usize) {
        self.record.input_bytes = n as i64;
    }

    pub(crate) fn message(&mut self, env: &Envelope) {
        self.record.rpc_method = env.method().map(str::to_owned);
        if env.method() == Some("tools/call") {
            self.record.tool = env.param_str("name").map(|s| s.into_owned());
        }
        if let Some(p) = env.params() {
            self.record.input_hash = Some(hex::encode(Sha256::digest(p)));
        }
    }

    /// Completes the record.
    pub(crate) fn finish(
        mut self,
        decision: Decision,
        control: &str,
        reason: &str,
        status: u16,
        error_code: Option<&str>,
        output_bytes: u64,
    ) -> AuditRecord {
        let r = &mut self.record;
        r.decision = decision;
        r.control = control.to_owned();
        r.reason = reason.to_owned();
        r.status = status;
        r.error_code = error_code.map(str::to_owned);
        r.output_bytes = output_bytes as i64;
        r.duration_us = self.started.elapsed().as_micros() as i64;
        crate::app::ops::observe(r, self.started.elapsed());
        self.record
    }
}
