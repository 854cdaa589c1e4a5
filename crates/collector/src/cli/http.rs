//! A small blocking HTTP/1.1 client for the admin commands that talk to a
//! collector (`rulepack publish`): one request per connection, `http://`
//! or `https://` (rustls, verifying the server against the system roots or
//! `--ca-cert`). The admin CLI needs nothing more, and this keeps it free of
//! an async runtime.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Largest response body read.
const MAX_RESPONSE: u64 = 4 * 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(60);

/// A parsed response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The parts of a collector URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Without a trailing `/` (empty for the root).
    pub base_path: String,
}

impl Url {
    pub fn parse(url: &str) -> Result<Url, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!(
                "{url:?}: the collector URL must start with http:// or https://"
            ));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("{url:?}: bad host"));
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(h) = authority.strip_prefix('[') {
            let (h, after) = h
                .split_once(']')
                .ok_or_else(|| format!("{url:?}: bad host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("{url:?}: bad port"))?,
                None => default_port,
            };
            (h.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_owned(),
                    p.parse().map_err(|_| format!("{url:?}: bad port"))?,
                ),
                None => (authority.to_owned(), default_port),
            }
        };
        Ok(Url {
            tls,
            host,
            port,
            base_path: path.trim_end_matches('/').to_owned(),
        })
    }

    fn host_header(&self) -> String {
        let h = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            h
        } else {
            format!("{h}:{}", self.port)
        }
    }
}

fn tls_config(ca_cert: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    match ca_cert {
        Some(p) => files.push(p.to_owned()),
        None => {
            if let Some(f) = std::env::var_os("SSL_CERT_FILE") {
                files.push(f.into());
            }
            files.push("/etc/ssl/certs/ca-certificates.crt".into());
            files.push("/etc/pki/tls/certs/ca-bundle.crt".into());
            files.push("/etc/ssl/cert.pem".into());
        }
    }
    for f in &files {
        let Ok(pem) = std::fs::read(f) else {
            if ca_cert.is_some() {
                return Err(format!("cannot read CA certificate {}", f.display()));
            }
            continue;
        };
        for c in CertificateDer::pem_slice_iter(&pem).flatten() {
            let _ = roots.add(c);
        }
        if !roots.is_empty() {
            break;
        }
    }
    if roots.is_empty() {
        return Err("no trusted CA certificates found: pass --ca-cert FILE".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Sends one request and reads the whole response.
pub fn request(
    method: &str,
    url: &Url,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    ca_cert: Option<&Path>,
) -> Result<HttpResponse, String> {
    let addr = format!("{}:{}", url.host, url.port);
    let tcp = TcpStream::connect(&addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    tcp.set_read_timeout(Some(TIMEOUT)).ok();
    tcp.set_write_timeout(Some(TIMEOUT)).ok();
    let mut head = format!(
        "{method} {}{path_and_query} HTTP/1.1\r\nHost: {}\r\nUser-Agent: sessiontrail-cli/{}\r\nConnection: close\r\nContent-Length: {}\r\n",
        url.base_path,
        url.host_header(),
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    for (k, v) in headers {
        if k.contains(['\r', '\n']) || v.contains(['\r', '\n']) {
            return Err("a header contains a line break".into());
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut raw = Vec::new();
    let io_err = |e: std::io::Error| format!("talking to {addr}: {e}");
    if url.tls {
        let name = rustls::pki_types::ServerName::try_from(url.host.clone())
            .map_err(|e| format!("bad TLS server name {:?}: {e}", url.host))?;
        let conn = rustls::ClientConnection::new(tls_config(ca_cert)?, name)
            .map_err(|e| format!("TLS: {e}"))?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        s.write_all(head.as_bytes()).map_err(io_err)?;
        s.write_all(body).map_err(io_err)?;
        s.flush().map_err(io_err)?;
        match s.take(MAX_RESPONSE).read_to_end(&mut raw) {
            Ok(_) => {}
            // Servers often close without close_notify after a complete
            // `Connection: close` response; the framing below still checks
            // that the body is complete.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
            Err(e) => return Err(io_err(e)),
        }
    } else {
        let mut s = tcp;
        s.write_all(head.as_bytes()).map_err(io_err)?;
        s.write_all(body).map_err(io_err)?;
        s.take(MAX_RESPONSE).read_to_end(&mut raw).map_err(io_err)?;
    }
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Result<HttpResponse, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the collector sent an incomplete response")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "unreadable response header")?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("the collector sent no HTTP status")?;
    let mut length: Option<usize> = None;
    let mut chunked = false;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("content-length") {
                length = v.parse().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.eq_ignore_ascii_case("chunked");
            }
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n)
            .ok_or("the collector's response was cut short")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse { status, body })
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let nl = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunked body")?;
        let size_s = std::str::from_utf8(&b[..nl]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_s.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        b = &b[nl + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(b.get(..size).ok_or("chunked body cut short")?);
        b = b.get(size + 2..).ok_or("chunked body cut short")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("http://127.0.0.1:7878").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (false, "127.0.0.1", 7878));
        assert_eq!(u.base_path, "");
        let u = Url::parse("https://st.example.com/collector/").unwrap();
        assert_eq!(
            (u.tls, u.port, u.base_path.as_str()),
            (true, 443, "/collector")
        );
        assert_eq!(u.host_header(), "st.example.com");
        let u = Url::parse("http://[::1]:9/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 9));
        assert_eq!(u.host_header(), "[::1]:9");
        assert!(Url::parse("ftp://x").is_err());
        assert!(Url::parse("http://u:p@x").is_err());
    }

    #[test]
    fn responses() {
        let r = parse_response(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (201, &b"{}"[..]));
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"abcde");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nab").is_err());
    }
}
