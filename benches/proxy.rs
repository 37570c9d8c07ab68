//! The proxy's per-request decision cost, stage by stage and whole: route match, path
//! normalization, JWT verification (cold and through the token cache), API-key lookup in a
//! big policy, and the decision a typical request goes through (normalize -> match ->
//! extract credential -> verify -> authorize), composed the way `pipeline` composes it.
//!
//! Run with `cargo bench --bench proxy`; kept under about two minutes (30 samples, 1 s warm-up,
//! 2 s measurement per bench). The load benchmark (`benches/load/run.sh`) measures the same
//! decisions end to end, with the network and the forwarding around them.

mod support;

/// The binary's allocator, so the figures are the product's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method, header};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use scopegate::auth::cache::TokenCache;
use scopegate::auth::credential::{self, Credential};
use scopegate::auth::{Principal, api_key, jwt};
use scopegate::authorize::authorize;
use scopegate::decide::unix_now;
use scopegate::path;
use scopegate::policy::Policy;
use scopegate::policy::compile::{Context, compile_bytes};

/// The path every JWT/API-key bench asks for: route 0 of `support::policy`.
const BOT_PATH: &str = "/v1/bots/st-1234";

/// The asymmetric apps: (client_id, alg, fixture key stem).
const ASYM_APPS: [(&str, Algorithm, &str); 3] = [
    ("app-rs256", Algorithm::RS256, "app-rsa"),
    ("app-es256", Algorithm::ES256, "app-ec256"),
    ("app-eddsa", Algorithm::EdDSA, "app-ed25519"),
];

fn keys_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys")
}

/// `extra_apps` YAML for the RS256, ES256 and EdDSA apps, with absolute key paths.
fn asym_apps_yaml() -> String {
    let dir = keys_dir();
    ASYM_APPS
        .iter()
        .map(|(id, alg, stem)| {
            let key = dir.join(format!("{stem}.pub.pem"));
            format!(
                "  - {{ client_id: {id}, algorithms: [{alg:?}], public_key_file: \"{}\", scopes: [bots:read], resources: {{ bots: [\"*\"] }} }}\n",
                key.display()
            )
        })
        .collect()
}

fn compile(yaml: &str) -> Policy {
    compile_bytes(
        Path::new("bench.yaml"),
        yaml.as_bytes(),
        &Context::standalone(),
    )
    .unwrap_or_else(|e| panic!("bench policy does not compile:\n{e}"))
    .policy
}

/// A token for `app_id` as a client would send it: appId, sub, iat, exp in an hour, a scope.
fn token(app_id: &str, alg: Algorithm, key: &EncodingKey) -> String {
    let now = unix_now() as u64;
    let claims = serde_json::json!({
        "appId": app_id,
        "sub": "user-42",
        "iat": now,
        "exp": now + 3600,
        "scope": "bots:read",
    });
    jsonwebtoken::encode(&Header::new(alg), &claims, key).expect("signs")
}

fn hs256_token() -> String {
    token(
        "app-0",
        Algorithm::HS256,
        &EncodingKey::from_secret(support::HS_SECRET.as_bytes()),
    )
}

fn asym_token(app_id: &str, alg: Algorithm, stem: &str) -> String {
    let pem = std::fs::read(keys_dir().join(format!("{stem}.key.pem"))).expect("fixture key");
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        other => unreachable!("no fixture for {other:?}"),
    }
    .expect("fixture key parses");
    token(app_id, alg, &key)
}

/// The headers of a typical API call carrying `credential` as a bearer value.
fn request_headers(credential: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::HOST, HeaderValue::from_static("api.example.com"));
    h.insert(
        header::USER_AGENT,
        HeaderValue::from_static("bench-client/1.0"),
    );
    h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {credential}")).expect("header-safe"),
    );
    h
}

/// 30 samples, 1 s warm-up, 2 s measurement: the whole run stays around two minutes.
fn short<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    group
}

/// Route match against 10, 1,000 and 10,000 routes: a hit on the last route of the table
/// and a miss that shares its prefix; and path normalization on its own.
fn route_match(c: &mut Criterion) {
    let mut group = short(c, "route_match");
    for routes in [10usize, 1_000, 10_000] {
        let policy = compile(&support::policy(1, 1, routes, ""));
        let hit = format!("/api/public/bot/st-1234/family{}/item-7", routes - 1);
        let hit = path::Normalized::new(&hit).expect("normal");
        let miss =
            path::Normalized::new("/api/public/bot/st-1234/nofamily/item-7").expect("normal");
        assert!(
            policy.router.at(&Method::GET, &hit).is_some(),
            "{hit:?} matches"
        );
        assert!(
            policy.router.at(&Method::GET, &miss).is_none(),
            "{miss:?} misses"
        );
        group.bench_with_input(BenchmarkId::new("hit_last", routes), &hit, |b, p| {
            b.iter(|| {
                policy
                    .router
                    .at(&Method::GET, black_box(p))
                    .map(|m| m.route)
            })
        });
        group.bench_with_input(BenchmarkId::new("miss", routes), &miss, |b, p| {
            b.iter(|| {
                policy
                    .router
                    .at(&Method::GET, black_box(p))
                    .map(|m| m.route)
            })
        });
    }
    // A clean path (borrowed as is) and one that needs decoding and dot-segment work.
    let clean = "/api/public/bot/st-1234/dashboard/d-1/widget/w-9";
    let dirty = "/api/public//bot/%73t-1234/./dashboard/x/../d-1/widget/w-9";
    assert_eq!(path::normalize(dirty).expect("normalizes"), clean);
    group.bench_function("normalize/clean", |b| {
        b.iter(|| path::normalize(black_box(clean)).map(|p| p.len()))
    });
    group.bench_function("normalize/dirty", |b| {
        b.iter(|| path::normalize(black_box(dirty)).map(|p| p.len()))
    });
    group.finish();
}

/// What `pipeline::verify_token` does on a token-cache hit: find the token among this
/// thread's recent ones, check the clock, clone the principal out.
fn cache_hit(cache: &TokenCache, generation: u64, token: &str) -> Principal {
    let now = unix_now();
    let verified = cache.get_local(generation, token, now).expect("cached");
    jwt::check_time(&verified, now).expect("in time");
    verified.principal.clone()
}

/// Full verification per algorithm (every iteration pays the signature), and the cache hit.
fn jwt_verify(c: &mut Criterion) {
    let policy = compile(&support::policy(10, 1, 2, &asym_apps_yaml()));
    let mut group = short(c, "jwt_verify");

    let hs = hs256_token();
    verify_ok(&policy, &hs);
    group.bench_function("cold/HS256", |b| {
        b.iter(|| jwt::verify_jws(&policy, black_box(&hs), false).map(|v| v.exp))
    });
    let mut rs256 = String::new();
    for (id, alg, stem) in ASYM_APPS {
        let t = asym_token(id, alg, stem);
        verify_ok(&policy, &t);
        group.bench_function(format!("cold/{alg:?}"), |b| {
            b.iter(|| jwt::verify_jws(&policy, black_box(&t), false).map(|v| v.exp))
        });
        if alg == Algorithm::RS256 {
            rs256 = t;
        }
    }

    // The cache as the server builds it, holding the RS256 token's verdict at both levels.
    let cache = TokenCache::new(100_000);
    let generation = 1;
    let verified = Arc::new(jwt::verify_jws(&policy, &rs256, false).expect("verifies"));
    cache.insert(
        TokenCache::key(&rs256),
        generation,
        verified.clone(),
        unix_now(),
    );
    cache.insert_local(generation, &rs256, &verified, unix_now());
    // The shared level alone (what a thread that has not seen the token pays).
    group.bench_function("cache_hit/shared_key+get+check_time", |b| {
        b.iter(|| {
            let key = TokenCache::key(black_box(&rs256));
            let v = cache.get(&key, generation).expect("cached");
            jwt::check_time(&v, unix_now()).is_ok()
        })
    });
    group.bench_function("cache_hit/as_pipeline", |b| {
        b.iter(|| cache_hit(&cache, generation, black_box(&rs256)))
    });
    group.finish();
}

fn verify_ok(policy: &Policy, token: &str) {
    let v = jwt::verify_jws(policy, token, false).expect("bench token verifies");
    jwt::check_time(&v, unix_now()).expect("bench token in time");
}

/// Hash-and-look-up in a policy of 100,000 keys.
fn api_key_lookup(c: &mut Criterion) {
    let policy = compile(&support::policy(1, 100_000, 2, ""));
    let hit = support::api_key(99_999);
    let miss = "sk_live_bench_not_a_key_0000";
    let now = unix_now() as i64;
    assert!(api_key::verify_in_policy(&policy, &hit, now).is_ok());
    assert!(api_key::verify_in_policy(&policy, miss, now).is_err());
    let mut group = short(c, "api_key");
    group.bench_function("100k/hit", |b| {
        b.iter(|| api_key::verify_in_policy(&policy, black_box(&hit), now).is_ok())
    });
    group.bench_function("100k/miss", |b| {
        b.iter(|| api_key::verify_in_policy(&policy, black_box(miss), now).is_ok())
    });
    group.finish();
}

/// The whole decision for `GET /v1/bots/st-1234`, stage by stage as `pipeline` runs it
/// (without the HTTP I/O, metrics and access log around it). Returns the upstream index.
/// `cache`: tokens are found there (a hit), or verified in full when `None`.
fn decide(
    policy: &Policy,
    cache: Option<&TokenCache>,
    uri_path: &str,
    headers: &HeaderMap,
) -> usize {
    let environments = BTreeMap::new();
    let normalized = path::Normalized::new(uri_path).expect("valid path");
    let m = policy.router.at(&Method::GET, &normalized).expect("route");
    let route = &policy.routes[m.route];
    let principal = match credential::extract(headers).expect("one credential") {
        Some(Credential::Jws(token)) => match cache {
            Some(cache) => cache_hit(cache, 1, token),
            None => {
                let v = jwt::verify_jws(policy, token, false).expect("verifies");
                jwt::check_time(&v, unix_now()).expect("in time");
                v.principal
            }
        },
        Some(Credential::ApiKey(key)) => {
            api_key::verify_in_policy(policy, key, unix_now() as i64).expect("key")
        }
        other => panic!("unexpected credential {other:?}"),
    };
    authorize(policy, route, &m.params, principal, &environments)
        .expect("authorized")
        .upstream()
}

fn decision(c: &mut Criterion) {
    // A mid-sized policy: 100 apps (+3 asymmetric), 1,000 keys, 100 routes.
    let policy = compile(&support::policy(100, 1_000, 100, &asym_apps_yaml()));
    let cache = TokenCache::new(100_000);
    let (id, alg, stem) = ASYM_APPS[0];
    let rs256 = asym_token(id, alg, stem);
    let hs256 = hs256_token();
    for token in [&rs256, &hs256] {
        let verified = Arc::new(jwt::verify_jws(&policy, token, false).expect("verifies"));
        cache.insert_local(1, token, &verified, unix_now());
    }

    let cases = [
        ("HS256_jwt_cache_hit", request_headers(&hs256), Some(&cache)),
        ("HS256_jwt_uncached", request_headers(&hs256), None),
        ("RS256_jwt_cache_hit", request_headers(&rs256), Some(&cache)),
        ("api_key", request_headers(&support::api_key(500)), None),
    ];
    let mut group = short(c, "decision");
    for (name, headers, cache) in &cases {
        decide(&policy, *cache, BOT_PATH, headers);
        group.bench_function(*name, |b| {
            b.iter(|| decide(&policy, *cache, black_box(BOT_PATH), black_box(headers)))
        });
    }
    group.finish();
}

criterion_group!(benches, route_match, jwt_verify, api_key_lookup, decision);
criterion_main!(benches);
