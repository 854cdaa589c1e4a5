//! `sessiontrail serve --tls-cert --tls-key`: the real binary serving HTTPS
//! with a self-signed certificate made at test time, checked with a rustls
//! client that trusts only that certificate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Kills the server when the test ends, passed or not.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `sessiontrail serve` on a free loopback port with TLS; returns
/// the server and its address.
fn start(data: &Path, cert: &Path, key: &Path) -> (Server, String) {
    let tls = [
        "--tls-cert".as_ref(),
        cert.as_os_str(),
        "--tls-key".as_ref(),
        key.as_os_str(),
    ];
    let (child, listening) = common::serve(data, tls);
    let server = Server(child);
    assert_eq!(listening["tls"], true, "{listening}");
    let addr = listening["addr"].as_str().unwrap_or_default().to_owned();
    (server, addr)
}

/// A client config trusting only `cert`.
fn client_config(cert: CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// One HTTP/1.1 GET over TLS to `addr`, naming the server `name`; returns
/// the raw response (status line, headers, body).
fn https_get(
    config: Arc<rustls::ClientConfig>,
    addr: &str,
    name: &str,
    path: &str,
) -> Result<String, std::io::Error> {
    let server_name = ServerName::try_from(name.to_owned()).unwrap();
    let conn = rustls::ClientConnection::new(config, server_name).unwrap();
    let sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(TIMEOUT))?;
    sock.set_write_timeout(Some(TIMEOUT))?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"
    )?;
    tls.flush()?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_the_configured_certificate_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
    let cert_der = certified.cert.der().clone();

    let (_server, addr) = start(&data, &cert_path, &key_path);
    let port = addr.rsplit_once(':').unwrap().1.to_owned();
    let config = client_config(cert_der.clone());

    // HTTPS, by IP address and by host name (both in the certificate).
    for name in ["127.0.0.1", "localhost"] {
        let cfg = config.clone();
        let a = addr.clone();
        let r = tokio::task::spawn_blocking(move || https_get(cfg, &a, name, "/healthz"))
            .await
            .unwrap()
            .unwrap();
        assert!(r.starts_with("HTTP/1.1 200"), "{name}: {r}");
    }

    // Plain HTTP to the TLS port gets no answer.
    let http = reqwest::Client::builder().timeout(TIMEOUT).build().unwrap();
    let plain = http
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(
        plain.is_err(),
        "plain HTTP to the TLS port answered: {plain:?}"
    );

    // A client that does not trust the certificate refuses the server.
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let stranger = client_config(other.cert.der().clone());
    let a = addr.clone();
    let r = tokio::task::spawn_blocking(move || https_get(stranger, &a, "127.0.0.1", "/healthz"))
        .await
        .unwrap();
    let e = r.expect_err("a client not trusting the certificate connected");
    assert!(
        e.to_string().to_lowercase().contains("certificate"),
        "unexpected error: {e}"
    );

    // A name the certificate does not cover is refused too.
    let a = addr.clone();
    let r =
        tokio::task::spawn_blocking(move || https_get(config, &a, "example.invalid", "/healthz"))
            .await
            .unwrap();
    assert!(r.is_err(), "a name outside the certificate was accepted");
}
