//! HTTP/2 conformance of the public listener, h2c (prior knowledge) and TLS (ALPN h2), in
//! front of a real upstream: tests/conformance/h2spec.py runs h2spec's list of cases (RFC 9113
//! frames, stream states, flow control, SETTINGS, HPACK errors, GOAWAY) over raw sockets and
//! exits non-zero on any case that is neither passed nor a listed, explained deviation.
//! Needs Python's `h2` package (scripts/test.sh installs it).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::policy;
use common::*;

fn tls_fixture(name: &str) -> String {
    format!("{REPO}/tests/fixtures/tls/{name}")
}

async fn proxy(tls: bool) -> (Upstream, Proxy) {
    let up = Upstream::start().await;
    let mut builder = ProxyBuilder::new(&policy::standard())
        .upstream("default", up.addr)
        .upstream("sandbox", up.addr);
    if tls {
        builder = builder.config(&format!(
            "tls:\n  cert_file: {}\n  key_file: {}",
            tls_fixture("server.crt.pem"),
            tls_fixture("server.key.pem")
        ));
    }
    (up, builder.start().await)
}

/// Runs the cases against `p` in a blocking thread (the proxy keeps serving on the runtime).
async fn h2spec(p: &Proxy, tls: bool) -> (bool, String) {
    let mut args = vec![
        format!("{REPO}/tests/conformance/h2spec.py"),
        "--host".into(),
        "127.0.0.1".into(),
        "--port".into(),
        p.addr.port().to_string(),
        "--path".into(),
        "/public/h2spec".into(),
    ];
    if tls {
        args.extend(["--tls".into(), "--ca".into(), tls_fixture("ca.crt.pem")]);
    }
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || Command::new("python3").args(&args).output())
        .await
        .unwrap()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The script bounds itself to 50 s; this catches a hang in it all the same.
    assert!(started.elapsed() < Duration::from_secs(60), "{text}");
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_conformance() {
    let (up, p) = proxy(false).await;
    let (ok, report) = h2spec(&p, false).await;
    println!("{report}");
    assert!(ok, "h2c conformance failures:\n{report}");
    assert!(up.hits() > 0, "no case reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn_h2_conformance() {
    let (up, p) = proxy(true).await;
    let (ok, report) = h2spec(&p, true).await;
    println!("{report}");
    assert!(ok, "TLS h2 conformance failures:\n{report}");
    assert!(up.hits() > 0, "no case reached the upstream");
}
