//! What a JWKS app costs per request against the same key as a PEM file (SPEC §3.2.1):
//! the verified-token cache hit through the `Verifier` (every request of a client that
//! reuses its token), a cold verification (the signature with the key built from the JWK
//! against the one read from PEM), and what a refetch adds before such a verification
//! (the GET over loopback and reading the JWK set).
//!
//! Run with `cargo bench --bench jwks` (about a minute). The JWKS is served by a loopback
//! HTTP server started here and fetched by the proxy's own `Registry`, as in production.

mod support;

/// The binary's allocator, so the figures are the product's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use scopegate::auth::cache::TokenCache;
use scopegate::auth::jwt;
use scopegate::auth::replay::ReplayStore;
use scopegate::auth::verify::{Verdict, Verifier};
use scopegate::decide::unix_now;
use scopegate::jwks::{Endpoint, KeySet, Registry, TIMING};
use scopegate::observe::metrics::Metrics;
use scopegate::policy::compile::{Context, compile_bytes};
use scopegate::policy::snapshot::Snapshot;

fn keys_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys")
}

/// The RSA fixture's public JWK, made by joserfc (tests/interop/jose_tool.py).
fn rsa_jwk(kid: &str) -> serde_json::Value {
    let out = std::process::Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/jose_tool.py"))
        .args(["jwk", "--pub"])
        .arg(keys_dir().join("app-rsa.pub.pem"))
        .output()
        .expect("python3 with joserfc");
    let mut jwk: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JWK");
    jwk["kid"] = kid.into();
    jwk["alg"] = "RS256".into();
    jwk
}

/// A loopback HTTP server answering every GET with `body`.
async fn serve(body: Bytes) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            let body = body.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let body = body.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(body)))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

fn token(app_id: &str) -> String {
    let pem = std::fs::read(keys_dir().join("app-rsa.key.pem")).expect("fixture");
    let now = unix_now() as u64;
    let claims = serde_json::json!({
        "appId": app_id, "sub": "user-42", "iat": now, "exp": now + 3600, "scope": "bots:read",
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(&pem).expect("key"),
    )
    .expect("signs")
}

fn jwks(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let doc = Bytes::from(serde_json::json!({ "keys": [rsa_jwk("rsa-1")] }).to_string());
    let addr = rt.block_on(serve(doc.clone()));
    let metrics = Metrics::new();
    let registry = rt.block_on(async { Arc::new(Registry::new(metrics.jwks.clone())) });
    let pem = keys_dir().join("app-rsa.pub.pem");
    let apps = format!(
        "  - {{ client_id: app-pem, algorithms: [RS256], public_key_file: \"{}\", scopes: [bots:read], resources: {{ bots: [\"*\"] }} }}\n  - {{ client_id: app-jwks, algorithms: [RS256], jwks_url: \"http://{addr}/jwks.json\", scopes: [bots:read], resources: {{ bots: [\"*\"] }} }}\n",
        pem.display()
    );
    let ctx = Context {
        jwks: Some(registry),
        ..Context::standalone()
    };
    let policy = compile_bytes(
        Path::new("bench.yaml"),
        support::policy(10, 1, 2, &apps).as_bytes(),
        &ctx,
    )
    .unwrap_or_else(|e| panic!("bench policy: {e}"))
    .policy;
    let source = policy.apps["app-jwks"].jwks.clone().expect("a JWKS app");
    while source.keys().is_none() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let snap = Snapshot {
        policy,
        generation: 1,
        sha256: String::new(),
        loaded_at: String::new(),
        fingerprint: [0; 32],
        referenced_files: Vec::new(),
    };
    let (pem_token, jwks_token) = (token("app-pem"), token("app-jwks"));
    let verifier = Verifier {
        cache: TokenCache::new(100_000),
        replay: ReplayStore::memory(),
        hits: metrics.token_cache_hits.clone(),
        misses: metrics.token_cache_misses.clone(),
    };
    let local = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    // The first verification fetches the JWKS (the verdict waits); then both are cached.
    for t in [&pem_token, &jwks_token] {
        match verifier.verify(&snap, t, false, unix_now()) {
            Verdict::Ready(decided) => decided,
            Verdict::Wait(w) => {
                local.block_on(verifier.finish(&snap, t, false, unix_now(), w, None))
            }
        }
        .expect("verifies");
    }

    let mut group = c.benchmark_group("jwks");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (name, t) in [("pem", &pem_token), ("jwks", &jwks_token)] {
        group.bench_function(format!("cache_hit/{name}"), |b| {
            b.iter(
                || match verifier.verify(&snap, black_box(t), false, unix_now()) {
                    Verdict::Ready(decided) => decided.is_ok(),
                    Verdict::Wait(_) => panic!("a cached token waits for nothing"),
                },
            )
        });
    }
    for (name, t) in [("pem", &pem_token), ("jwks", &jwks_token)] {
        group.bench_function(format!("cold/{name}"), |b| {
            b.iter(|| jwt::verify_jws(&snap.policy, black_box(t), false).is_ok())
        });
    }
    group.bench_function("refetch/parse_jwk_set", |b| {
        b.iter(|| KeySet::parse(black_box(&doc)).map(|s| s.len()))
    });
    let endpoint = Endpoint::parse(&format!("http://{addr}/jwks.json"), None).expect("url");
    group.bench_function("refetch/get_over_loopback", |b| {
        b.iter(|| {
            rt.block_on(endpoint.get(TIMING.timeout, TIMING.max_body))
                .map(|f| f.body.len())
                .is_ok()
        })
    });
    group.finish();
}

criterion_group!(benches, jwks);
criterion_main!(benches);
