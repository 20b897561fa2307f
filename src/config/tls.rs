//! `[tls]`, validated: files are read and parsed at start-up so a bad certificate, key or CA
//! stops the gateway (fail closed) with a message naming the file.

use std::path::PathBuf;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::raw::RawTls;
use super::validated::Errors;

/// `[tls]`, validated.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Certificate chain file.
    pub cert_file: PathBuf,
    /// Private key file.
    pub key_file: PathBuf,
    /// Accept TLS 1.2 (else 1.3 only).
    pub allow_tls12: bool,
    /// Cipher-suite allow list (IANA names); empty: the defaults.
    pub cipher_suites: Vec<String>,
    /// Client CA file (mTLS).
    pub client_ca_file: Option<PathBuf>,
    /// Client certificate required (with a CA).
    pub client_cert_required: bool,
}

/// Reads a certificate chain.
pub fn read_certs(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect();
    match certs {
        Ok(c) if !c.is_empty() => Ok(c),
        Ok(_) => Err(format!("{} holds no certificate", path.display())),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Reads a private key.
pub fn read_key(path: &PathBuf) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

pub(super) fn tls(raw: RawTls, e: &mut Errors) -> Option<TlsConfig> {
    let (Some(cert), Some(key)) = (raw.cert_file, raw.key_file) else {
        e.push("tls", "cert_file and key_file are both required");
        return None;
    };
    let (cert_file, key_file) = (PathBuf::from(cert), PathBuf::from(key));
    let before = e.0.len();
    if let Err(w) = read_certs(&cert_file) {
        e.push("tls.cert_file", w);
    }
    if let Err(w) = read_key(&key_file) {
        e.push("tls.key_file", w);
    }
    let allow_tls12 = match raw.min_version.as_deref() {
        None | Some("1.2") => true,
        Some("1.3") => false,
        Some(other) => {
            e.push(
                "tls.min_version",
                format!("must be \"1.2\" or \"1.3\", got {other:?}"),
            );
            true
        }
    };
    let known: Vec<String> = rustls::crypto::ring::default_provider()
        .cipher_suites
        .iter()
        .filter_map(|s| s.suite().as_str().map(str::to_owned))
        .collect();
    let cipher_suites = raw.cipher_suites.unwrap_or_default();
    for (i, c) in cipher_suites.iter().enumerate() {
        if !known.contains(c) {
            e.push(
                format!("tls.cipher_suites[{i}]"),
                format!("unknown suite {c:?}; known: {}", known.join(", ")),
            );
        }
    }
    let client_ca_file = raw.client_ca_file.map(PathBuf::from);
    if let Some(ca) = &client_ca_file {
        if let Err(w) = read_certs(ca) {
            e.push("tls.client_ca_file", w);
        }
    }
    let client_cert_required = match (raw.client_auth.as_deref(), &client_ca_file) {
        (None | Some("required"), _) => true,
        (Some("optional"), Some(_)) => false,
        (Some("optional"), None) => {
            e.push("tls.client_auth", "needs client_ca_file");
            false
        }
        (Some(other), _) => {
            e.push(
                "tls.client_auth",
                format!("must be \"required\" or \"optional\", got {other:?}"),
            );
            true
        }
    };
    (e.0.len() == before).then_some(TlsConfig {
        cert_file,
        key_file,
        allow_tls12,
        cipher_suites,
        client_ca_file,
        client_cert_required,
    })
}
