//! TLS on the front door (rustls, no OpenSSL): version and cipher-suite allow lists, hot reload
//! of the certificate and of the client CA, and client certificates (mTLS) whose identity becomes
//! a principal.
//!
//! Each accepted connection takes the current `ServerConfig`; a watcher rebuilds it when the
//! certificate, key or client-CA file changes, so a renewed certificate or a rotated CA is used
//! by the next handshake without a restart. A rebuild that fails (a half-written file, a key that
//! does not match) is logged and the previous configuration kept: reloading never weakens or
//! drops TLS. The identity of a client certificate is its first URI SAN (e.g. SPIFFE), else DNS
//! SAN, else e-mail SAN, else the subject CN.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::CertificateDer;
use tokio_rustls::TlsAcceptor;
use x509_parser::extensions::GeneralName;

use crate::config::{read_certs, read_key, TlsConfig};

/// The listener's TLS configuration, replaced whole on reload.
pub struct Tls {
    cfg: TlsConfig,
    current: RwLock<Arc<ServerConfig>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert_file", &self.cfg.cert_file)
            .finish()
    }
}

impl Tls {
    /// Reads the files and builds the configuration. Errors stop the gateway at start (fail
    /// closed).
    pub fn new(cfg: TlsConfig) -> Result<Arc<Self>, String> {
        let sc = server_config(&cfg)?;
        Ok(Arc::new(Tls {
            cfg,
            current: RwLock::new(sc),
        }))
    }

    /// An acceptor for one connection, with the configuration current at accept time.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }

    /// Rebuilds the configuration when a file changes, until the gateway stops.
    pub async fn watch(self: Arc<Self>) {
        let stamp = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let files = |c: &TlsConfig| -> [Option<SystemTime>; 3] {
            [
                stamp(&c.cert_file),
                stamp(&c.key_file),
                c.client_ca_file.as_deref().and_then(stamp),
            ]
        };
        let mut last = files(&self.cfg);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let now = files(&self.cfg);
            if now == last {
                continue;
            }
            last = now;
            match self.reload() {
                Ok(()) => {
                    tracing::info!(target: "palisade::tls", "certificate and client CA reloaded")
                }
                Err(e) => {
                    tracing::error!(target: "palisade::tls", error = %e, "TLS reload failed; keeping the previous configuration")
                }
            }
        }
    }

    /// Re-reads the files; on any error the current configuration stays.
    fn reload(&self) -> Result<(), String> {
        let sc = server_config(&self.cfg)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = sc;
        Ok(())
    }
}

/// Builds the rustls configuration from the files named in `cfg`.
fn server_config(cfg: &TlsConfig) -> Result<Arc<ServerConfig>, String> {
    let mut provider = rustls::crypto::ring::default_provider();
    if !cfg.cipher_suites.is_empty() {
        provider.cipher_suites.retain(|s| {
            s.suite()
                .as_str()
                .is_some_and(|n| cfg.cipher_suites.iter().any(|c| c == n))
        });
    }
    let provider = Arc::new(provider);
    let versions: &[&rustls::SupportedProtocolVersion] = if cfg.allow_tls12 {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS versions and cipher suites: {e}"))?;
    let builder = match &cfg.client_ca_file {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in read_certs(ca)? {
                roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let v = if cfg.client_cert_required {
                v
            } else {
                v.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(v.build().map_err(|e| format!("client CA: {e}"))?)
        }
        None => builder.with_no_client_auth(),
    };
    let certs = read_certs(&cfg.cert_file)?;
    let key = read_key(&cfg.key_file)?;
    let key = CertifiedKey::from_der(certs, key, &provider)
        .map_err(|e| format!("certificate and key: {e}"))?;
    let mut sc = builder.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key)));
    sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(sc))
}

/// The identity of a verified client certificate.
pub fn identity(cert: &CertificateDer<'_>) -> Option<Arc<str>> {
    let (_, c) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    if let Ok(Some(san)) = c.subject_alternative_name() {
        let names = &san.value.general_names;
        let pick = |f: &dyn Fn(&GeneralName) -> Option<String>| names.iter().find_map(f);
        let found = pick(&|n| match n {
            GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .or_else(|| {
            pick(&|n| match n {
                GeneralName::DNSName(d) => Some(d.to_string()),
                _ => None,
            })
        })
        .or_else(|| {
            pick(&|n| match n {
                GeneralName::RFC822Name(m) => Some(m.to_string()),
                _ => None,
            })
        });
        if let Some(f) = found {
            return Some(Arc::from(f));
        }
    }
    let cn = c.subject().iter_common_name().next()?.as_str().ok()?;
    Some(Arc::from(cn))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> TlsConfig {
        let ca = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = p.self_signed(&ca).unwrap();
        std::fs::write(dir.join("c.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.join("k.pem"), ca.serialize_pem()).unwrap();
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
        TlsConfig {
            cert_file: dir.join("c.pem"),
            key_file: dir.join("k.pem"),
            allow_tls12: false,
            cipher_suites: vec![],
            client_ca_file: Some(dir.join("ca.pem")),
            client_cert_required: true,
        }
    }

    #[test]
    fn a_broken_file_at_reload_keeps_the_previous_configuration() {
        let dir = std::env::temp_dir().join(format!("palisade-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tls = Tls::new(files(&dir)).unwrap();
        let before = tls.current.read().unwrap().clone();
        // A half-written CA, then a key that does not match the certificate.
        std::fs::write(
            dir.join("ca.pem"),
            "-----BEGIN CERTIFICATE-----\nnot base64\n",
        )
        .unwrap();
        assert!(tls.reload().is_err());
        assert!(Arc::ptr_eq(&before, &tls.current.read().unwrap()));
        files(&dir);
        std::fs::write(
            dir.join("k.pem"),
            rcgen::KeyPair::generate().unwrap().serialize_pem(),
        )
        .unwrap();
        assert!(tls.reload().unwrap_err().contains("certificate and key"));
        assert!(Arc::ptr_eq(&before, &tls.current.read().unwrap()));
        // Whole again: the new configuration is taken.
        files(&dir);
        tls.reload().unwrap();
        assert!(!Arc::ptr_eq(&before, &tls.current.read().unwrap()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
