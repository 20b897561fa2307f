//! TLS and mTLS end to end: certificates made by the test (rcgen), a real TLS client (rustls),
//! the real binary. A client certificate becomes the principal; missing, foreign-CA and
//! old-version clients are refused at the handshake; plain HTTP gets a clear refusal; a renewed
//! server certificate is served without a restart.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    Ca {
        cert: p.self_signed(&key).unwrap(),
        key,
    }
}

fn leaf(ca: &Ca, cn: &str, sans: Vec<SanType>) -> (String, String) {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.subject_alt_names = sans;
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn der_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(Result::unwrap)
        .collect()
}

fn der_key(pem: &str) -> PrivateKeyDer<'static> {
    use rustls::pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap()
}

fn client_config(
    ca: &Ca,
    client: Option<&(String, String)>,
    tls12_only: bool,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match client {
        Some((c, k)) => b.with_client_auth_cert(der_certs(c), der_key(k)).unwrap(),
        None => b.with_no_client_auth(),
    })
}

/// One POST over a fresh TLS connection; `Err` if the handshake (or the request) fails.
async fn post_tls(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    body: &str,
) -> Result<(u16, Vec<u8>), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let server_cert = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = http::Request::post("/mcp/s")
        .header("host", format!("localhost:{}", addr.port()))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    Ok((status, server_cert))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    let text = if name.ends_with(".toml") {
        support::with_authz(text)
    } else {
        text.to_owned()
    };
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn mtls_principals_handshake_refusals_and_certificate_reload() {
    let dir = tmpdir("tls-files");
    let ca1 = ca("Palisade test CA");
    let other = ca("Someone else's CA");
    let server = leaf(
        &ca1,
        "localhost",
        vec![SanType::DnsName("localhost".try_into().unwrap())],
    );
    let agent = leaf(
        &ca1,
        "agent-1",
        vec![SanType::URI(
            "spiffe://palisade.test/agent-1".try_into().unwrap(),
        )],
    );
    let stranger = leaf(
        &other,
        "agent-1",
        vec![SanType::URI(
            "spiffe://palisade.test/agent-1".try_into().unwrap(),
        )],
    );
    let cert_file = write(&dir, "server.pem", &server.0);
    let key_file = write(&dir, "server.key", &server.1);
    let ca_file = write(&dir, "ca.pem", &ca1.cert.pem());
    let (up, addr) = Scripted::start().await;
    let mut gw = Gateway::start(
        "tls",
        &format!(
            "[tls]\ncert_file = {cert_file:?}\nkey_file = {key_file:?}\nclient_ca_file = {ca_file:?}\nmin_version = \"1.3\"\n\
             [auth]\nmethods = [\"mtls\"]\n[auth.mtls.roles]\n\"spiffe://palisade.test/agent-1\" = [\"trader\"]\n\
             [[upstream]]\nname = \"s\"\nurl = \"http://{addr}/mcp\"\n"
        ),
    );
    let gw_addr: SocketAddr = gw.addr.parse().unwrap();
    // The agent's certificate is its identity.
    let (status, first_cert) = post_tls(gw_addr, client_config(&ca1, Some(&agent), false), INIT)
        .await
        .unwrap();
    assert_eq!(status, 200);
    // Refused at the handshake: no certificate, a certificate from another CA, TLS 1.2.
    assert!(
        post_tls(gw_addr, client_config(&ca1, None, false), INIT)
            .await
            .is_err(),
        "no client certificate"
    );
    assert!(
        post_tls(gw_addr, client_config(&ca1, Some(&stranger), false), INIT)
            .await
            .is_err(),
        "foreign CA"
    );
    assert!(
        post_tls(gw_addr, client_config(&ca1, Some(&agent), true), INIT)
            .await
            .is_err(),
        "TLS 1.2 below min_version"
    );
    assert_eq!(up.count(), 1);
    // Plain HTTP on the TLS port: a clear refusal, not a hang or a handshake error.
    let mut tcp = tokio::net::TcpStream::connect(gw_addr).await.unwrap();
    tcp.write_all(b"POST /mcp/s HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    tcp.read_to_string(&mut reply).await.unwrap();
    assert!(
        reply.starts_with("HTTP/1.1 400") && reply.contains("requires HTTPS"),
        "{reply}"
    );
    // Renew the server certificate on disk: served without a restart.
    let renewed = leaf(
        &ca1,
        "localhost-renewed",
        vec![SanType::DnsName("localhost".try_into().unwrap())],
    );
    write(&dir, "server.key", &renewed.1);
    write(&dir, "server.pem", &renewed.0);
    let start = Instant::now();
    loop {
        let (status, cert) = post_tls(gw_addr, client_config(&ca1, Some(&agent), false), INIT)
            .await
            .unwrap();
        assert_eq!(status, 200);
        if cert != first_cert {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "certificate not reloaded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Rotate the client CA on disk: the other CA's agents get in, the old CA's no longer do.
    write(&dir, "ca.pem", &other.cert.pem());
    let start = Instant::now();
    while post_tls(gw_addr, client_config(&ca1, Some(&stranger), false), INIT)
        .await
        .is_err()
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "client CA not reloaded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        post_tls(gw_addr, client_config(&ca1, Some(&agent), false), INIT)
            .await
            .is_err(),
        "a certificate of the rotated-out CA"
    );
    gw.stop();
    let rows = gw.principal_rows();
    assert!(
        rows.iter()
            .any(|r| r.0 == "spiffe://palisade.test/agent-1" && r.1 == "mtls" && r.2 == "allow"),
        "{rows:#?}"
    );
}

#[test]
fn mtls_without_a_client_ca_is_a_config_error() {
    let dir = tmpdir("tls-config");
    let ca1 = ca("CA");
    let server = leaf(&ca1, "localhost", vec![]);
    let cert_file = write(&dir, "s.pem", &server.0);
    let key_file = write(&dir, "s.key", &server.1);
    let cfg = write(
        &dir,
        "p.toml",
        &format!(
            "[tls]\ncert_file = {cert_file:?}\nkey_file = {key_file:?}\ncipher_suites = [\"TLS_NOPE\"]\n\
             [auth]\nmethods = [\"mtls\"]\n[[upstream]]\nname = \"s\"\nurl = \"http://127.0.0.1:1/mcp\"\n"
        ),
    );
    let out = std::process::Command::new(BIN)
        .args(["config", "check", &cfg])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("tls.cipher_suites[0]: unknown suite \"TLS_NOPE\""),
        "{text}"
    );
    assert!(
        text.contains("uses \"mtls\" but [tls] has no client_ca_file"),
        "{text}"
    );
}
