//! TLS on the public listener (rustls with aws-lc-rs): HTTPS with HTTP/1.1 and HTTP/2 by
//! ALPN, `X-Forwarded-Proto: https`, and client-certificate authentication (mTLS).
//! Certificates: tests/fixtures/tls (test-only; generate.sh).

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::policy::{self, *};
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

fn tls_fixture(name: &str) -> String {
    format!("{REPO}/tests/fixtures/tls/{name}")
}

fn pem_certs(name: &str) -> Vec<CertificateDer<'static>> {
    rustls_pemfile::certs(&mut std::fs::read(tls_fixture(name)).unwrap().as_slice())
        .collect::<Result<_, _>>()
        .unwrap()
}

fn connector(client_cert: bool, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in pem_certs("ca.crt.pem") {
        roots.add(c).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = if client_cert {
        let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(
            &mut std::fs::read(tls_fixture("client.key.pem"))
                .unwrap()
                .as_slice(),
        )
        .unwrap()
        .unwrap();
        builder
            .with_client_auth_cert(pem_certs("client.crt.pem"), key)
            .unwrap()
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

/// One GET over TLS; returns the negotiated ALPN protocol, the status and the body.
async fn https_get(
    p: &Proxy,
    path: &str,
    client_cert: bool,
    alpn: &[&[u8]],
) -> std::io::Result<(Option<Vec<u8>>, u16, Bytes)> {
    let tcp = TcpStream::connect(p.addr).await?;
    let tls = connector(client_cert, alpn)
        .connect(ServerName::IpAddress(p.addr.ip().into()), tcp)
        .await?;
    let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    let req = http::Request::get(path)
        .header("host", "127.0.0.1")
        .header("authorization", format!("Bearer {KEY_READ}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = if negotiated.as_deref() == Some(b"h2") {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        let req = http::Request::builder()
            .uri(format!("https://127.0.0.1{path}"))
            .header("authorization", format!("Bearer {KEY_READ}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        send.send_request(req)
            .await
            .map_err(std::io::Error::other)?
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        send.send_request(req)
            .await
            .map_err(std::io::Error::other)?
    };
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    Ok((negotiated, status, body))
}

async fn tls_proxy(mtls: bool) -> (Upstream, Proxy) {
    let up = Upstream::start().await;
    let ca = if mtls {
        format!("\n  client_ca_file: {}", tls_fixture("ca.crt.pem"))
    } else {
        String::new()
    };
    let p = ProxyBuilder::new(&policy::standard())
        .upstream("default", up.addr)
        .upstream("sandbox", up.addr)
        .config(&format!(
            "tls:\n  cert_file: {}\n  key_file: {}{ca}",
            tls_fixture("server.crt.pem"),
            tls_fixture("server.key.pem")
        ))
        .start()
        .await;
    (up, p)
}

#[tokio::test]
async fn https_with_http1_and_http2_and_forwarded_proto() {
    let (_, p) = tls_proxy(false).await;
    for (alpn, want) in [
        (&[&b"http/1.1"[..]][..], b"http/1.1".to_vec()),
        (&[&b"h2"[..], &b"http/1.1"[..]][..], b"h2".to_vec()),
    ] {
        let (negotiated, status, body) =
            https_get(&p, "/v1/bots/bot-1", false, alpn).await.unwrap();
        assert_eq!(negotiated, Some(want));
        assert_eq!(status, 200);
        let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(echo["headers"]["x-forwarded-proto"][0], "https");
        assert_eq!(echo["headers"]["x-auth-key-id"][0], "key-read");
    }
    // Plain HTTP on the TLS port is not served.
    assert!(reqwest::get(p.url("/v1/bots/bot-1")).await.is_err());
}

#[tokio::test]
async fn mtls_requires_a_client_certificate_from_the_configured_ca() {
    let (up, p) = tls_proxy(true).await;
    let (_, status, _) = https_get(&p, "/v1/bots/bot-1", true, &[b"http/1.1"])
        .await
        .unwrap();
    assert_eq!(status, 200);
    let without = https_get(&p, "/v1/bots/bot-1", false, &[b"http/1.1"]).await;
    assert!(
        without.is_err(),
        "no client certificate must fail the handshake or the first request: {:?}",
        without.map(|r| r.1)
    );
    assert_eq!(up.hits(), 1);
}

/// The end-entity certificate a new handshake is given.
async fn served_certificate(p: &Proxy) -> CertificateDer<'static> {
    let tcp = TcpStream::connect(p.addr).await.unwrap();
    let tls = connector(false, &[b"http/1.1"])
        .connect(ServerName::IpAddress(p.addr.ip().into()), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

/// Publishes a certificate and key the way a Kubernetes Secret volume (cert-manager's
/// output) is updated: the files in a new `..<version>` directory, then a new `..data`
/// symlink renamed over the old one. `tls.crt` and `tls.key` point into `..data`.
fn publish(dir: &std::path::Path, version: u32, cert: &[u8], key: &[u8]) {
    let files = dir.join(format!("..{version}"));
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("tls.crt"), cert).unwrap();
    std::fs::write(files.join("tls.key"), key).unwrap();
    std::os::unix::fs::symlink(format!("..{version}"), dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    for name in ["tls.crt", "tls.key"] {
        if std::fs::symlink_metadata(dir.join(name)).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).unwrap();
        }
    }
}

async fn tls_reloads(p: &Proxy, result: &str) -> u64 {
    let metrics = p.metrics().await;
    let series = format!("scopegate_tls_reloads_total{{result=\"{result}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn a_rotated_certificate_is_served_to_new_handshakes_and_a_bad_one_is_refused() {
    let fixture = |name: &str| std::fs::read(tls_fixture(name)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    publish(
        dir.path(),
        1,
        &fixture("server.crt.pem"),
        &fixture("server.key.pem"),
    );
    let up = Upstream::start().await;
    let p = ProxyBuilder::new(&policy::standard())
        .upstream("default", up.addr)
        .config(&format!(
            "tls:\n  cert_file: {0}/tls.crt\n  key_file: {0}/tls.key",
            dir.path().display()
        ))
        .start()
        .await;
    let first = pem_certs("server.crt.pem").remove(0);
    let next = pem_certs("server-next.crt.pem").remove(0);
    assert_eq!(served_certificate(&p).await, first);

    // A connection opened before the rotation keeps working after it.
    let tcp = TcpStream::connect(p.addr).await.unwrap();
    let tls = connector(false, &[b"http/1.1"])
        .connect(ServerName::IpAddress(p.addr.ip().into()), tcp)
        .await
        .unwrap();
    let (mut early, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);

    publish(
        dir.path(),
        2,
        &fixture("server-next.crt.pem"),
        &fixture("server-next.key.pem"),
    );
    eventually(
        Duration::from_secs(10),
        "the rotated certificate",
        || async { served_certificate(&p).await == next },
    )
    .await;
    let req = http::Request::get("/public/a")
        .header("host", "127.0.0.1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(early.send_request(req).await.unwrap().status(), 200);

    // A broken certificate, then a certificate that does not match its key: each refused
    // and counted, and the last good pair is still served.
    let broken = b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n";
    let mismatched = fixture("server.crt.pem");
    for (version, cert) in [(3, &broken[..]), (4, &mismatched[..])] {
        let failures = tls_reloads(&p, "failure").await;
        publish(dir.path(), version, cert, &fixture("server-next.key.pem"));
        eventually(Duration::from_secs(10), "a refused reload", || async {
            tls_reloads(&p, "failure").await > failures
        })
        .await;
        assert_eq!(served_certificate(&p).await, next);
    }
    assert_eq!(tls_reloads(&p, "success").await, 1);
}

/// SIGHUP reloads the certificate too (with no file watching to do it first).
#[tokio::test]
async fn sighup_reloads_the_certificate() {
    let fixture = |name: &str| std::fs::read(tls_fixture(name)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    publish(
        dir.path(),
        1,
        &fixture("server.crt.pem"),
        &fixture("server.key.pem"),
    );
    let up = Upstream::start().await;
    let p = ProxyBuilder::new(&policy::standard())
        .upstream("default", up.addr)
        .config(&format!(
            "tls:\n  cert_file: {0}/tls.crt\n  key_file: {0}/tls.key",
            dir.path().display()
        ))
        .without_file_watch()
        .start()
        .await;
    publish(
        dir.path(),
        2,
        &fixture("server-next.crt.pem"),
        &fixture("server-next.key.pem"),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first = pem_certs("server.crt.pem").remove(0);
    assert_eq!(
        served_certificate(&p).await,
        first,
        "no watcher, no signal yet"
    );
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let next = pem_certs("server-next.crt.pem").remove(0);
    eventually(
        Duration::from_secs(10),
        "the certificate after SIGHUP",
        || async { served_certificate(&p).await == next },
    )
    .await;
}
