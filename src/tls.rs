//! TLS on the front door (rustls, no OpenSSL): version and cipher-suite allow lists, certificate
//! hot reload, and client certificates (mTLS) whose identity becomes a principal.
//!
//! The certificate is served through a resolver holding the current key; a watcher re-reads the
//! files when they change, so a renewed certificate is picked up without a restart (a file that
//! fails to parse is logged and the previous certificate kept). The client CA is read at start.
//! The identity of a client certificate is its first URI SAN (e.g. SPIFFE), else DNS SAN, else
//! e-mail SAN, else the subject CN.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

use crate::config::{read_certs, read_key, TlsConfig};

/// Serves the current certificate; replaced on reload.
#[derive(Debug)]
pub struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
    provider: Arc<CryptoProvider>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

fn load_key(cfg: &TlsConfig, provider: &CryptoProvider) -> Result<CertifiedKey, String> {
    let certs = read_certs(&cfg.cert_file)?;
    let key = read_key(&cfg.key_file)?;
    CertifiedKey::from_der(certs, key, provider).map_err(|e| format!("certificate and key: {e}"))
}

/// Builds the rustls configuration. Errors stop the gateway at start (fail closed).
pub fn server_config(cfg: &TlsConfig) -> Result<(Arc<ServerConfig>, Arc<Resolver>), String> {
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
    let resolver = Arc::new(Resolver {
        current: RwLock::new(Arc::new(load_key(cfg, &provider)?)),
        provider,
    });
    let mut sc = builder.with_cert_resolver(resolver.clone());
    sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((Arc::new(sc), resolver))
}

/// Reloads the certificate when its files change, until the gateway stops.
pub async fn watch(cfg: TlsConfig, resolver: Arc<Resolver>) {
    let stamp = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let seen = |c: &TlsConfig| -> (Option<SystemTime>, Option<SystemTime>) {
        (stamp(&c.cert_file), stamp(&c.key_file))
    };
    let mut last = seen(&cfg);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = seen(&cfg);
        if now == last {
            continue;
        }
        last = now;
        match load_key(&cfg, &resolver.provider) {
            Ok(k) => {
                *resolver.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(k);
                tracing::info!(target: "palisade::tls", "certificate reloaded");
            }
            Err(e) => {
                tracing::error!(target: "palisade::tls", error = %e, "certificate reload failed; keeping the previous one")
            }
        }
    }
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
