//! The upstream leg (SPEC §5.1), against real servers started here: the HTTP version
//! scopegate speaks to the client whatever the upstream's (RFC 9110 §6.2, behind real
//! HTTP/1.0 servers); TLS to the upstream, verified (good, wrong name, unknown CA, expired,
//! client certificates and their reload); HTTP/2 to the upstream over h2c and TLS, with
//! gRPC-style trailers and streams both ways, multiplexed on one connection.
//! Certificates: tests/fixtures/tls (the good ones) and tests/fixtures/upstream (generate.py).

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::policy;
use common::*;
use http::{HeaderValue, Request, Response, Version};
use http_body_util::channel::Channel;
use http_body_util::{BodyExt, Either, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `python3 -m http.server` (HTTP/1.0, as a new user would try first) serving a temp dir
/// with `public/hello.txt`. Killed on drop.
struct PythonHttpServer {
    addr: SocketAddr,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for PythonHttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PythonHttpServer {
    async fn start() -> PythonHttpServer {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("public")).unwrap();
        std::fs::write(dir.path().join("public/hello.txt"), "hello from python\n").unwrap();
        let mut child = std::process::Command::new("python3")
            .args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "0"])
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .expect("http.server announces its port");
        let port: u16 = line
            .split(" port ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {line:?}"));
        PythonHttpServer {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
            _dir: dir,
        }
    }
}

/// A hand-written HTTP/1.0 upstream whose answers have no length: the body ends when it
/// closes the connection, as HTTP/1.0 allows.
async fn http10_until_close() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil close")
                    .await;
            });
        }
    });
    addr
}

/// `n` GETs of `path`, one after the other on ONE client connection (hyper's HTTP/1.1
/// client: a closed connection fails the next request). Returns the versions and bodies.
async fn many_on_one_connection(proxy: SocketAddr, path: &str, n: usize) -> Vec<(Version, Bytes)> {
    let stream = TcpStream::connect(proxy).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut out = Vec::new();
    for i in 0..n {
        sender
            .ready()
            .await
            .unwrap_or_else(|e| panic!("the client connection was closed after {i} requests: {e}"));
        let req = Request::get(path)
            .header("host", proxy.to_string())
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = sender
            .send_request(req)
            .await
            .unwrap_or_else(|e| panic!("request {i} on the kept connection: {e}"));
        let version = resp.version();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(status, 200, "request {i}: {body:?}");
        out.push((version, body));
    }
    out
}

#[tokio::test]
async fn behind_python_http_server_the_client_keeps_one_http11_connection() {
    let up = PythonHttpServer::start().await;
    let p = ProxyBuilder::new(&policy::standard())
        .upstream("default", up.addr)
        .start()
        .await;
    // Direct, the upstream answers HTTP/1.0 (the premise of the test).
    let direct = common::raw(
        up.addr,
        b"GET /public/hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(direct.starts_with("HTTP/1.0 200"), "{direct}");

    for (version, body) in many_on_one_connection(p.addr, "/public/hello.txt", 5).await {
        assert_eq!(version, Version::HTTP_11);
        assert_eq!(body, "hello from python\n");
    }
}

#[tokio::test]
async fn an_http10_body_delimited_by_close_reaches_a_kept_alive_client_whole() {
    let up = http10_until_close().await;
    let p = ProxyBuilder::new(&policy::standard())
        .upstream("default", up)
        .start()
        .await;
    for (version, body) in many_on_one_connection(p.addr, "/public/x", 3).await {
        assert_eq!(version, Version::HTTP_11);
        assert_eq!(body, "until close");
    }
}

#[tokio::test]
async fn an_http10_client_is_answered_in_http10() {
    let up = http10_until_close().await;
    let p = ProxyBuilder::new(&policy::standard())
        .upstream("default", up)
        .start()
        .await;
    let text = common::raw(p.addr, b"GET /public/x HTTP/1.0\r\nHost: x\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.0 200"), "{text}");
    assert!(text.ends_with("until close"), "{text}");
}

// ---------------------------------------------------------------------------------------
// TLS and HTTP/2 upstreams

fn cert_path(name: &str) -> String {
    format!("{REPO}/tests/fixtures/{name}")
}

fn pem_certs(name: &str) -> Vec<CertificateDer<'static>> {
    rustls_pemfile::certs(&mut std::fs::read(cert_path(name)).unwrap().as_slice())
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A real upstream over TLS (or h2c with `tls: None`) serving HTTP/1.1 and HTTP/2: the echo
/// of tests/common, told which protocol it was reached with (`x-test-version`) and which
/// client certificate it saw (`x-test-client-cert`), and under `/public/grpc` a gRPC-style
/// bidirectional stream (`grpc_echo`).
struct TlsUpstream {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

struct Serving {
    /// Server certificate and key, under tests/fixtures; `None`: plaintext (h2c or HTTP/1.1).
    tls: Option<(&'static str, &'static str)>,
    /// Require a client certificate from one of these CAs.
    client_cas: &'static [&'static str],
    alpn: &'static [&'static [u8]],
    /// One request per connection (so every request shows the client certificate anew).
    keep_alive: bool,
}

impl Serving {
    fn tls(cert: &'static str, key: &'static str) -> Serving {
        Serving {
            tls: Some((cert, key)),
            client_cas: &[],
            alpn: &[b"h2", b"http/1.1"],
            keep_alive: true,
        }
    }
    fn good() -> Serving {
        Serving::tls("tls/server.crt.pem", "tls/server.key.pem")
    }
    fn plain() -> Serving {
        Serving {
            tls: None,
            client_cas: &[],
            alpn: &[],
            keep_alive: true,
        }
    }
}

impl TlsUpstream {
    async fn start(s: Serving) -> TlsUpstream {
        let acceptor = s.tls.map(|(cert, key)| {
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .unwrap();
            let builder = if s.client_cas.is_empty() {
                builder.with_no_client_auth()
            } else {
                let mut roots = rustls::RootCertStore::empty();
                for ca in s.client_cas {
                    for c in pem_certs(ca) {
                        roots.add(c).unwrap();
                    }
                }
                builder.with_client_cert_verifier(
                    rustls::server::WebPkiClientVerifier::builder_with_provider(
                        Arc::new(roots),
                        provider,
                    )
                    .build()
                    .unwrap(),
                )
            };
            let key: PrivateKeyDer<'static> =
                rustls_pemfile::private_key(&mut std::fs::read(cert_path(key)).unwrap().as_slice())
                    .unwrap()
                    .unwrap();
            let mut config = builder.with_single_cert(pem_certs(cert), key).unwrap();
            config.alpn_protocols = s.alpn.iter().map(|p| p.to_vec()).collect();
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (h, c) = (hits.clone(), connections.clone());
        let keep_alive = s.keep_alive;
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let (acceptor, hits) = (acceptor.clone(), h.clone());
                tokio::spawn(async move {
                    let mut builder = auto::Builder::new(TokioExecutor::new());
                    builder.http1().keep_alive(keep_alive);
                    match acceptor {
                        None => {
                            let svc = service(hits, "none".into());
                            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                        }
                        Some(a) => {
                            // A failed handshake (our client refused) never reaches a request.
                            let Ok(stream) = a.accept(stream).await else {
                                return;
                            };
                            let seen = client_cert_name(stream.get_ref().1.peer_certificates());
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service(hits, seen))
                                .await;
                        }
                    }
                });
            }
        });
        TlsUpstream {
            addr,
            hits,
            connections,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Which fixture client certificate the upstream was shown.
fn client_cert_name(certs: Option<&[CertificateDer<'_>]>) -> String {
    let Some(first) = certs.and_then(|c| c.first()) else {
        return "none".into();
    };
    for (name, file) in [
        ("client", "tls/client.crt.pem"),
        ("client-next", "upstream/client-next.crt.pem"),
    ] {
        if pem_certs(file)[0] == *first {
            return name.into();
        }
    }
    "unknown".into()
}

type UpBody = Either<Full<Bytes>, Channel<Bytes>>;

fn service(
    hits: Arc<AtomicUsize>,
    client_cert: String,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<UpBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<UpBody>, Infallible>> + Send,
> + Clone {
    service_fn(move |mut req: Request<Incoming>| {
        hits.fetch_add(1, Ordering::SeqCst);
        let version = format!("{:?}", req.version());
        let cert = client_cert.clone();
        async move {
            if req.uri().path().starts_with("/public/grpc") {
                return Ok(grpc_echo(req).map(Either::Right));
            }
            let h = req.headers_mut();
            h.insert("x-test-version", version.parse().unwrap());
            h.insert("x-test-client-cert", cert.parse().unwrap());
            let resp = common::echo(req).await?;
            Ok(resp.map(Either::Left))
        }
    })
}

/// A gRPC-style bidirectional stream: each request data frame is sent straight back as a
/// response data frame (so a client that waits for each echo before sending on proves that
/// nothing is buffered either way); when the request ends, its trailers' `x-client-trailer`
/// comes back in the response trailers beside `grpc-status` (from `x-test-grpc-status`,
/// default 0) and `grpc-message`.
fn grpc_echo(req: Request<Incoming>) -> Response<Channel<Bytes>> {
    let status = req
        .headers()
        .get("x-test-grpc-status")
        .cloned()
        .unwrap_or(HeaderValue::from_static("0"));
    let te = req.headers().get("te").cloned();
    let (mut tx, body) = Channel::<Bytes>::new(4);
    let mut incoming = req.into_body();
    tokio::spawn(async move {
        let mut trailers = http::HeaderMap::new();
        while let Some(frame) = incoming.frame().await {
            let Ok(frame) = frame else { return };
            match frame.into_data() {
                Ok(data) => {
                    if tx.send_data(data).await.is_err() {
                        return;
                    }
                }
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        if let Some(v) = t.get("x-client-trailer") {
                            trailers.insert("x-client-trailer", v.clone());
                        }
                    }
                }
            }
        }
        trailers.insert("grpc-status", status);
        trailers.insert("grpc-message", HeaderValue::from_static("done"));
        if let Some(te) = te {
            trailers.insert("x-test-te", te);
        }
        let _ = tx.send_trailers(trailers).await;
    });
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    resp
}

/// `name` as a long-form upstream in flow style.
fn long_form(url: &str, fields: &[(&str, &str)]) -> String {
    let mut s = format!("{{ url: \"{url}\"");
    for (k, v) in fields {
        s.push_str(&format!(", {k}: \"{v}\""));
    }
    s.push_str(" }");
    s
}

async fn proxy_to(upstream: String) -> Proxy {
    ProxyBuilder::new(&policy::standard())
        .upstream_url("default", &upstream)
        .start()
        .await
}

fn tls_errors(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("scopegate_upstream_errors_total{kind=\"tls\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn an_https_upstream_with_a_certificate_from_ca_file_is_reached_and_pooled() {
    let up = TlsUpstream::start(Serving::good()).await;
    let ca = cert_path("tls/ca.crt.pem");
    let p = proxy_to(long_form(
        &format!("https://{}/", up.addr),
        &[("ca_file", &ca)],
    ))
    .await;
    for _ in 0..4 {
        let e = get(&p.url("/public/hello"), &[]).await.echo();
        assert_eq!(e.path(), "/public/hello");
        assert_eq!(e.header("x-test-version").as_deref(), Some("HTTP/1.1"));
        assert_eq!(e.header("host"), Some(up.addr.to_string()));
    }
    assert_eq!(up.connections(), 1, "one pooled TLS connection");
    // By the name `localhost` (SNI and the certificate's DNS name) as well.
    let p = proxy_to(long_form(
        &format!("https://{}", up.addr),
        &[("ca_file", &ca), ("server_name", "localhost")],
    ))
    .await;
    get(&p.url("/public/sni"), &[]).await.echo();
}

/// What the case is, the upstream, the long-form fields, the reason rustls gives.
type Unverified<'a> = (&'a str, Serving, Vec<(&'a str, &'a str)>, &'a str);

/// Every certificate that does not verify: 502 `upstream_unavailable`, counted as `tls`,
/// the request never reaching the upstream, and never a retry without verification.
#[tokio::test]
async fn an_upstream_certificate_that_does_not_verify_is_a_502_counted_as_tls() {
    let ca = cert_path("tls/ca.crt.pem");
    let upstream_ca = cert_path("upstream/ca.crt.pem");
    let cases: [Unverified; 4] = [
        (
            "wrong name",
            Serving::good(),
            vec![("ca_file", &ca), ("server_name", "elsewhere.test")],
            "NotValidForName",
        ),
        (
            "unknown CA",
            Serving::tls("upstream/foreign.crt.pem", "upstream/foreign.key.pem"),
            vec![("ca_file", &ca)],
            "UnknownIssuer",
        ),
        (
            "expired",
            Serving::tls("upstream/expired.crt.pem", "upstream/expired.key.pem"),
            vec![("ca_file", &upstream_ca)],
            "Expired",
        ),
        // No ca_file: the system's roots, which know nothing of the test CA.
        ("system roots", Serving::good(), vec![], "UnknownIssuer"),
    ];
    for (what, serving, fields, reason) in cases {
        let up = TlsUpstream::start(serving).await;
        let p = proxy_to(long_form(&format!("https://{}", up.addr), &fields)).await;
        let a = get(&p.url("/public/x"), &[]).await;
        assert_eq!(
            (a.status, a.code().as_str()),
            (502, "upstream_unavailable"),
            "{what}"
        );
        let body = String::from_utf8_lossy(&a.body);
        assert!(
            !body.contains(reason),
            "{what}: the reason stays in the log: {body}"
        );
        assert_eq!(up.hits(), 0, "{what}: never forwarded");
        assert_eq!(tls_errors(&p.metrics().await), 1, "{what}");
    }
}

#[tokio::test]
async fn an_upstream_that_requires_a_client_certificate_gets_ours_and_refuses_none() {
    let serving = || Serving {
        client_cas: &["tls/ca.crt.pem"],
        ..Serving::good()
    };
    let ca = cert_path("tls/ca.crt.pem");
    let (cert, key) = (
        cert_path("tls/client.crt.pem"),
        cert_path("tls/client.key.pem"),
    );

    let up = TlsUpstream::start(serving()).await;
    let with = long_form(
        &format!("https://{}", up.addr),
        &[
            ("ca_file", &ca),
            ("client_cert_file", &cert),
            ("client_key_file", &key),
        ],
    );
    let p = proxy_to(with).await;
    let e = get(&p.url("/public/mtls"), &[]).await.echo();
    assert_eq!(e.header("x-test-client-cert").as_deref(), Some("client"));

    let up = TlsUpstream::start(serving()).await;
    let p = proxy_to(long_form(
        &format!("https://{}", up.addr),
        &[("ca_file", &ca)],
    ))
    .await;
    let a = get(&p.url("/public/mtls"), &[]).await;
    assert_eq!((a.status, a.code().as_str()), (502, "upstream_unavailable"));
    assert_eq!(up.hits(), 0);
    assert_eq!(tls_errors(&p.metrics().await), 1);
}

#[tokio::test]
async fn the_client_certificate_is_reloaded_when_its_files_change() {
    let up = TlsUpstream::start(Serving {
        client_cas: &["tls/ca.crt.pem", "upstream/ca.crt.pem"],
        keep_alive: false,
        ..Serving::good()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("sg.crt"), dir.path().join("sg.key"));
    std::fs::copy(cert_path("tls/client.crt.pem"), &cert).unwrap();
    std::fs::copy(cert_path("tls/client.key.pem"), &key).unwrap();
    let p = proxy_to(long_form(
        &format!("https://{}", up.addr),
        &[
            ("ca_file", &cert_path("tls/ca.crt.pem")),
            ("client_cert_file", cert.to_str().unwrap()),
            ("client_key_file", key.to_str().unwrap()),
        ],
    ))
    .await;
    let shown = || async {
        get(&p.url("/public/who"), &[])
            .await
            .echo()
            .header("x-test-client-cert")
            .unwrap()
    };
    assert_eq!(shown().await, "client");
    // Written as cert-manager does: new files renamed over the old.
    for (from, to) in [
        ("client-next.key.pem", &key),
        ("client-next.crt.pem", &cert),
    ] {
        let tmp = dir.path().join("tmp");
        std::fs::copy(cert_path(&format!("upstream/{from}")), &tmp).unwrap();
        std::fs::rename(&tmp, to).unwrap();
    }
    eventually(
        Duration::from_secs(5),
        "the new client certificate",
        || async { shown().await == "client-next" },
    )
    .await;
}

#[tokio::test]
async fn check_reads_the_upstream_certificate_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), policy::standard()).unwrap();
    let config = |upstream: &str| {
        let f = dir.path().join("scopegate.yaml");
        std::fs::write(
            &f,
            format!("policy_file: policy.yaml\nupstreams:\n  default: {upstream}\n"),
        )
        .unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_scopegate"))
            .args(["check", "--config"])
            .arg(&f)
            .output()
            .unwrap()
    };
    let ok = config(&long_form(
        "https://127.0.0.1:1",
        &[("ca_file", &cert_path("tls/ca.crt.pem"))],
    ));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let missing = config(&long_form(
        "https://127.0.0.1:1",
        &[("ca_file", "nowhere.pem")],
    ));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    assert!(
        err.contains("upstreams.default") && err.contains("nowhere.pem"),
        "{err}"
    );
    let not_a_key = config(&long_form(
        "https://127.0.0.1:1",
        &[
            ("ca_file", &cert_path("tls/ca.crt.pem")),
            ("client_cert_file", &cert_path("tls/client.crt.pem")),
            ("client_key_file", &cert_path("tls/client.crt.pem")),
        ],
    ));
    let err = String::from_utf8_lossy(&not_a_key.stderr);
    assert!(
        !not_a_key.status.success() && err.contains("client.crt.pem"),
        "{err}"
    );
}

/// A gRPC-style exchange through the proxy from an HTTP/2 client: each message waits for
/// the echo of the one before (streaming both ways), the client's trailers reach the
/// upstream and the upstream's (`grpc-status`) reach the client.
async fn grpc_round(p: &Proxy, status: &str) -> (http::HeaderMap, Vec<Bytes>) {
    let stream = TcpStream::connect(p.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let (mut tx, body) = Channel::<Bytes>::new(4);
    let req = Request::post(format!("http://{}/public/grpc/Echo", p.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("x-test-grpc-status", status)
        .body(body)
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/grpc");
    let mut incoming = resp.into_body();
    let mut got = Vec::new();
    for i in 0..3 {
        let msg = Bytes::from(format!("message {i}"));
        tx.send_data(msg.clone()).await.unwrap();
        let frame = tokio::time::timeout(Duration::from_secs(5), incoming.frame())
            .await
            .unwrap_or_else(|_| panic!("message {i} not echoed while the stream is open"))
            .unwrap()
            .unwrap();
        got.push(frame.into_data().unwrap());
    }
    let mut t = http::HeaderMap::new();
    t.insert("x-client-trailer", HeaderValue::from_static("from-client"));
    tx.send_trailers(t).await.unwrap();
    drop(tx);
    let mut trailers = None;
    while let Some(frame) = incoming.frame().await {
        if let Ok(t) = frame.unwrap().into_trailers() {
            trailers = Some(t);
        }
    }
    (trailers.expect("response trailers"), got)
}

async fn grpc_through(p: &Proxy) {
    let (trailers, got) = grpc_round(p, "0").await;
    assert_eq!(got, ["message 0", "message 1", "message 2"]);
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(trailers["grpc-message"], "done");
    assert_eq!(trailers["x-client-trailer"], "from-client");
    assert_eq!(
        trailers["x-test-te"], "trailers",
        "te: trailers reaches a gRPC server"
    );
    let (trailers, _) = grpc_round(p, "5").await;
    assert_eq!(trailers["grpc-status"], "5");
}

#[tokio::test]
async fn grpc_over_h2c_streams_both_ways_with_trailers_on_one_connection() {
    let up = TlsUpstream::start(Serving::plain()).await;
    let p = proxy_to(format!("{{ url: \"http://{}\", http2: true }}", up.addr)).await;
    grpc_through(&p).await;
    let e = get(&p.url("/public/v"), &[]).await.echo();
    assert_eq!(e.header("x-test-version").as_deref(), Some("HTTP/2.0"));
    // Many at once: multiplexed on the one upstream connection.
    let calls = (0..32).map(|i| {
        let url = p.url(&format!("/public/m{i}"));
        async move { get(&url, &[("x-test-delay-ms", "50")]).await.echo() }
    });
    for e in futures_join_all(calls).await {
        assert_eq!(e.header("x-test-version").as_deref(), Some("HTTP/2.0"));
    }
    assert_eq!(up.connections(), 1, "every request on one h2 connection");
}

#[tokio::test]
async fn grpc_over_tls_with_alpn_h2() {
    let up = TlsUpstream::start(Serving::good()).await;
    let ca = cert_path("tls/ca.crt.pem");
    let p = proxy_to(format!(
        "{{ url: \"https://{}\", ca_file: \"{ca}\", http2: true }}",
        up.addr
    ))
    .await;
    grpc_through(&p).await;
    let e = get(&p.url("/public/v"), &[]).await.echo();
    assert_eq!(e.header("x-test-version").as_deref(), Some("HTTP/2.0"));
    assert_eq!(up.connections(), 1);
}

#[tokio::test]
async fn an_http2_upstream_that_does_not_agree_to_h2_is_a_502() {
    let up = TlsUpstream::start(Serving {
        alpn: &[b"http/1.1"],
        ..Serving::good()
    })
    .await;
    let ca = cert_path("tls/ca.crt.pem");
    let p = proxy_to(format!(
        "{{ url: \"https://{}\", ca_file: \"{ca}\", http2: true }}",
        up.addr
    ))
    .await;
    let a = get(&p.url("/public/x"), &[]).await;
    assert_eq!((a.status, a.code().as_str()), (502, "upstream_unavailable"));
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn upstream_timeout_applies_to_http2_response_headers() {
    let up = TlsUpstream::start(Serving::plain()).await;
    let p = ProxyBuilder::new(&policy::standard())
        .upstream_url(
            "default",
            &format!("{{ url: \"http://{}\", http2: true }}", up.addr),
        )
        .config("limits: { upstream_timeout: 200ms }")
        .start()
        .await;
    let a = get(&p.url("/public/slow"), &[("x-test-delay-ms", "2000")]).await;
    assert_eq!((a.status, a.code().as_str()), (504, "upstream_timeout"));
    // The connection is still good for the next request.
    get(&p.url("/public/fast"), &[]).await.echo();
    assert_eq!(up.connections(), 1);
}

/// Runs the futures at once, each on its own task; their outputs in order.
async fn futures_join_all<F>(fs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
