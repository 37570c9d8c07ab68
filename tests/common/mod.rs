//! Test harness: a real upstream and the real proxy, both on 127.0.0.1:0, through small
//! builders. Policies are written to a temp dir; secrets are inline (`value`) or files,
//! never process environment (tests run in parallel threads).
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use scopegate::config::Config;
use scopegate::server::{self, Options, Running};

pub mod jose;
pub mod jwt;
pub mod payload;
pub mod policy;
pub mod raw;
pub mod redis_server;

pub const HS_SECRET: &str = "test-client-secret-0123456789abcdef";
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

pub fn fixture(name: &str) -> PathBuf {
    Path::new(REPO).join("tests/fixtures/keys").join(name)
}

/// A real HTTP upstream that echoes what it received as JSON: method, path, query, headers,
/// body length and body text. `x-test-delay-ms` makes it wait before answering;
/// `x-test-status` picks the status; `x-test-body` replaces the response body.
pub struct Upstream {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let counter = counter.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        echo(req)
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream { addr, hits }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

pub async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    if let Some(ms) = parts
        .headers
        .get("x-test-delay-ms")
        .and_then(|v| v.to_str().ok()?.parse().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let status = parts
        .headers
        .get("x-test-status")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(200u16);
    let mut headers = serde_json::Map::new();
    for (k, v) in &parts.headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        match headers.get_mut(k.as_str()) {
            Some(serde_json::Value::Array(a)) => a.push(v.into()),
            _ => {
                headers.insert(k.to_string(), serde_json::Value::Array(vec![v.into()]));
            }
        }
    }
    let out = match parts.headers.get("x-test-body") {
        Some(b) => Bytes::copy_from_slice(b.as_bytes()),
        None => Bytes::from(
            serde_json::json!({
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "query": parts.uri.query(),
                "headers": headers,
                "body_len": body.len(),
                "body_sha256": scopegate::policy::compile::sha256_hex(&body),
                "body": String::from_utf8_lossy(&body[..body.len().min(4096)]),
            })
            .to_string(),
        ),
    };
    let mut resp = Response::new(Full::new(out));
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    Ok(resp)
}

/// What the echo upstream saw.
#[derive(Debug)]
pub struct Echo(pub serde_json::Value);

impl Echo {
    pub fn path(&self) -> &str {
        self.0["path"].as_str().unwrap()
    }
    /// The single value of a header as the upstream received it.
    pub fn header(&self, name: &str) -> Option<String> {
        let v = self.0["headers"].get(name)?.as_array()?;
        assert_eq!(v.len(), 1, "header {name} arrived {} times", v.len());
        v[0].as_str().map(str::to_string)
    }
    pub fn header_names(&self) -> Vec<String> {
        self.0["headers"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }
}

/// The running proxy under test plus its temp dir.
pub struct Proxy {
    pub running: Option<Running>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub policy_file: PathBuf,
}

pub struct ProxyBuilder {
    watch: bool,
    policy: String,
    config_extra: String,
    upstreams: Vec<(String, String)>,
}

impl ProxyBuilder {
    pub fn new(policy: &str) -> ProxyBuilder {
        ProxyBuilder {
            watch: true,
            policy: policy.to_string(),
            config_extra: String::new(),
            upstreams: Vec::new(),
        }
    }

    pub fn upstream(mut self, name: &str, addr: SocketAddr) -> Self {
        self.upstreams.push((name.into(), format!("http://{addr}")));
        self
    }

    pub fn upstream_url(mut self, name: &str, url: &str) -> Self {
        self.upstreams.push((name.into(), url.into()));
        self
    }

    /// No file watching: only SIGHUP reloads.
    pub fn without_file_watch(mut self) -> Self {
        self.watch = false;
        self
    }

    /// Extra top-level config YAML (e.g. `unmatched: passthrough`, `limits: {...}`).
    pub fn config(mut self, yaml: &str) -> Self {
        self.config_extra.push_str(yaml);
        self.config_extra.push('\n');
        self
    }

    pub fn write(&self) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let policy_file = dir.path().join("policy.yaml");
        std::fs::write(&policy_file, &self.policy).unwrap();
        let mut config = String::from(
            "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\npolicy_file: policy.yaml\nupstreams:\n",
        );
        for (n, u) in &self.upstreams {
            config.push_str(&format!("  {n}: {u}\n"));
        }
        config.push_str(&self.config_extra);
        let config_file = dir.path().join("scopegate.yaml");
        std::fs::write(&config_file, config).unwrap();
        (dir, config_file, policy_file)
    }

    pub async fn start(self) -> Proxy {
        let (dir, config_file, policy_file) = self.write();
        Proxy::start_with_options(dir, &config_file, policy_file, self.watch).await
    }
}

impl Proxy {
    /// `policy` in front of one echo upstream, `default`.
    pub async fn with_upstream(policy: &str) -> (Upstream, Proxy) {
        let up = Upstream::start().await;
        let p = ProxyBuilder::new(policy)
            .upstream("default", up.addr)
            .start()
            .await;
        (up, p)
    }

    /// Starts the proxy from a config file the test laid out itself.
    pub async fn start_with(
        dir: tempfile::TempDir,
        config_file: &Path,
        policy_file: PathBuf,
    ) -> Proxy {
        Proxy::start_with_options(dir, config_file, policy_file, true).await
    }

    async fn start_with_options(
        dir: tempfile::TempDir,
        config_file: &Path,
        policy_file: PathBuf,
        watch: bool,
    ) -> Proxy {
        let config = Config::load(config_file).unwrap_or_else(|e| panic!("config: {e}"));
        let running = server::start(
            config,
            Options {
                access_log: false,
                watch,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
        Proxy {
            // The public listener; an authz-only proxy's authz listener.
            addr: running.addr.or(running.authz_addr).expect("a listener"),
            admin: running.admin_addr,
            running: Some(running),
            dir,
            policy_file,
        }
    }
}

impl Proxy {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }
    /// The admin listener's Prometheus text.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.admin_url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
    pub async fn shutdown(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Status, parsed problem body (if problem+json) and headers of a proxy response.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub async fn from(r: reqwest::Response) -> Answer {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.bytes().await.unwrap();
        Answer {
            status,
            headers,
            body,
        }
    }
    pub fn code(&self) -> String {
        let ct = self
            .headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        assert_eq!(
            ct,
            "application/problem+json",
            "status {} body {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        let v: serde_json::Value = serde_json::from_slice(&self.body).unwrap();
        v["code"].as_str().unwrap().to_string()
    }
    pub fn echo(&self) -> Echo {
        assert_eq!(
            self.status,
            200,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        Echo(serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("not an echo ({e}): {}", String::from_utf8_lossy(&self.body))
        }))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

pub async fn get(url: &str, headers: &[(&str, &str)]) -> Answer {
    send("GET", url, headers, None).await
}

pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Answer {
    let mut rb = client().request(method.parse().unwrap(), url);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    if let Some(b) = body {
        rb = rb.body(b);
    }
    Answer::from(rb.send().await.unwrap()).await
}

/// Sends raw bytes on a fresh connection and returns everything read until close or timeout.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// HS256 token signed by jsonwebtoken (our own implementation side).
pub fn hs256(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap()
}

/// Polls `f` until it returns true, or panics after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if f().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends `GET <target>` exactly as written (no client-side normalization) and returns the
/// status and the body.
pub async fn raw_get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let resp = raw(addr, req.as_bytes()).await;
    let status = resp.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
