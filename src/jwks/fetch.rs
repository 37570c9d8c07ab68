//! One GET of a JWKS document: over `http://`, or `https://` with rustls (aws-lc-rs) against
//! `jwks_ca_file` or the system's roots, the host name checked. Bounded in time (the whole
//! exchange) and in size (the body), and an answer other than 200 is a failure.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Where a JWKS lives, read and checked at policy load.
pub struct Endpoint {
    /// The URL as written in the policy.
    pub url: String,
    host: String,
    port: u16,
    /// `Host` header value.
    authority: String,
    path_and_query: String,
    tls: Option<Tls>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

enum Tls {
    /// The system's roots, loaded on the first fetch (a `check` never needs them).
    System,
    /// `jwks_ca_file`'s certificates only.
    Ca(Arc<rustls::ClientConfig>),
}

/// Why a fetch failed: `kind` labels `scopegate_jwks_fetches_total{result}`.
#[derive(Debug)]
pub struct Failure {
    pub kind: &'static str,
    pub detail: String,
}

impl Failure {
    pub fn new(kind: &'static str, detail: impl Into<String>) -> Failure {
        Failure {
            kind,
            detail: detail.into(),
        }
    }
}

/// What a successful GET brought: the body and its `Cache-Control: max-age`.
pub struct Fetched {
    pub body: Bytes,
    pub max_age: Option<Duration>,
}

impl Endpoint {
    /// Checks the URL's form and reads `ca_pem` (the contents of `jwks_ca_file`) into a trust
    /// anchor. Only `http` and `https`, a host, no user info and no fragment.
    pub fn parse(url: &str, ca_pem: Option<&[u8]>) -> Result<Endpoint, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("jwks_url {url:?} is not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(format!(
                    "jwks_url {url:?} must be an http:// or https:// URL"
                ));
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("jwks_url {url:?} has no host"))?;
        if authority.as_str().contains('@') || url.contains('#') {
            return Err(format!(
                "jwks_url {url:?} may carry neither user info nor a fragment"
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(format!("jwks_url {url:?} has no host"));
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = match (https, ca_pem) {
            (true, Some(pem)) => Some(Tls::Ca(client_config(roots_from_pem(pem)?)?)),
            (true, None) => Some(Tls::System),
            (false, Some(_)) => {
                return Err(format!(
                    "jwks_ca_file is set but jwks_url {url:?} is not https://"
                ));
            }
            (false, None) => None,
        };
        if https {
            ServerName::try_from(host.clone())
                .map_err(|_| format!("jwks_url {url:?}: {host:?} is not a valid TLS name"))?;
        }
        Ok(Endpoint {
            url: url.to_string(),
            authority: authority.as_str().to_string(),
            path_and_query: uri
                .path_and_query()
                .map_or("/".to_string(), |p| p.as_str().to_string()),
            host,
            port,
            tls,
        })
    }

    /// GETs the document within `timeout`, refusing a body over `max_body` bytes.
    pub async fn get(&self, timeout: Duration, max_body: usize) -> Result<Fetched, Failure> {
        tokio::time::timeout(timeout, self.exchange(max_body))
            .await
            .map_err(|_| Failure::new("timeout", format!("no answer within {timeout:?}")))?
    }

    async fn exchange(&self, max_body: usize) -> Result<Fetched, Failure> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| Failure::new("connect", format!("connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => self.request(tcp, max_body).await,
            Some(tls) => {
                let tls_failure = |e: String| Failure::new("tls", format!("tls: {e}"));
                let config = match tls {
                    Tls::Ca(c) => c.clone(),
                    Tls::System => system_config().map_err(tls_failure)?,
                };
                let name = ServerName::try_from(self.host.clone())
                    .map_err(|e| tls_failure(e.to_string()))?;
                let stream = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| tls_failure(e.to_string()))?;
                self.request(stream, max_body).await
            }
        }
    }

    async fn request<S>(&self, io: S, max_body: usize) -> Result<Fetched, Failure>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| Failure::new("http", format!("http: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::get(self.path_and_query.as_str())
            .header(header::HOST, self.authority.as_str())
            .header(header::ACCEPT, "application/jwk-set+json, application/json")
            .header(header::USER_AGENT, "scopegate")
            .body(Empty::<Bytes>::new())
            .map_err(|e| Failure::new("http", format!("request: {e}")))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| Failure::new("http", format!("http: {e}")))?;
        if resp.status() != StatusCode::OK {
            return Err(Failure::new(
                "status",
                format!("HTTP status {}", resp.status().as_u16()),
            ));
        }
        let max_age = max_age(resp.headers());
        let too_big = || Failure::new("oversize", format!("body over {max_body} bytes"));
        let declared = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max_body as u64) {
            return Err(too_big());
        }
        let body = Limited::new(resp.into_body(), max_body)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    too_big()
                } else {
                    Failure::new("http", format!("http body: {e}"))
                }
            })?
            .to_bytes();
        Ok(Fetched { body, max_age })
    }
}

/// `max-age` of `Cache-Control` (`no-store`/`no-cache` read as 0, clamped later).
fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
    let mut out = None;
    for v in headers.get_all(header::CACHE_CONTROL) {
        for d in v.to_str().ok()?.split(',') {
            let d = d.trim();
            let (name, value) = d.split_once('=').unwrap_or((d, ""));
            match name.trim().to_ascii_lowercase().as_str() {
                "max-age" => {
                    if let Ok(s) = value.trim().trim_matches('"').parse::<u64>() {
                        out = Some(Duration::from_secs(s));
                    }
                }
                "no-store" | "no-cache" => out = Some(Duration::ZERO),
                _ => {}
            }
        }
    }
    out
}

fn roots_from_pem(pem: &[u8]) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &pem[..]) {
        let c = c.map_err(|e| format!("jwks_ca_file: {e}"))?;
        roots.add(c).map_err(|e| format!("jwks_ca_file: {e}"))?;
    }
    if roots.is_empty() {
        return Err("jwks_ca_file holds no PEM certificate".into());
    }
    Ok(roots)
}

fn client_config(roots: rustls::RootCertStore) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// The system's roots (rustls-native-certs), read once per process.
fn system_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static SYSTEM: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    SYSTEM
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err("no system root certificates found".into());
            }
            client_config(roots)
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms() {
        assert!(Endpoint::parse("https://idp.example/jwks.json", None).is_ok());
        assert!(Endpoint::parse("http://127.0.0.1:8080/k?x=1", None).is_ok());
        assert!(Endpoint::parse("https://[::1]:8443/k", None).is_ok());
        for bad in [
            "ftp://idp.example/jwks",
            "idp.example/jwks",
            "/jwks.json",
            "https://user:pw@idp.example/jwks",
            "https://idp.example/jwks#frag",
            "https:///jwks",
        ] {
            assert!(Endpoint::parse(bad, None).is_err(), "{bad}");
        }
        let e = Endpoint::parse("http://idp.example/k", Some(b"x")).unwrap_err();
        assert!(e.contains("not https"), "{e}");
        let e = Endpoint::parse("https://idp.example/k", Some(b"not a pem")).unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
    }

    #[test]
    fn cache_control_max_age() {
        let h = |v: &str| {
            let mut m = http::HeaderMap::new();
            m.insert(header::CACHE_CONTROL, v.parse().unwrap());
            max_age(&m)
        };
        assert_eq!(h("public, max-age=300"), Some(Duration::from_secs(300)));
        assert_eq!(h("MAX-AGE=\"60\""), Some(Duration::from_secs(60)));
        assert_eq!(h("no-store"), Some(Duration::ZERO));
        assert_eq!(h("public"), None);
        assert_eq!(max_age(&http::HeaderMap::new()), None);
    }
}
