//! API keys in a key store (SPEC §1.1 `key_store`, §2 `keys`, §3.8) against a real
//! redis-server and a real 3-node Redis Cluster the tests start on free loopback ports;
//! keys written by the real `scopegate keys` binary or by a plain Redis client.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::policy::{self, *};
use common::redis_server::{Cluster, Redis};
use common::*;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_scopegate");

/// Runs `scopegate ARGS` off the runtime's threads: (exit code, stdout, stderr).
async fn scopegate(args: &[&str]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(BIN).args(&args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// `keys put` with the standard policy; returns the printed key.
async fn put(store: &str, policy_file: &str, id: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "keys",
        "put",
        "--store",
        store,
        "--policy",
        policy_file,
        "--id",
        id,
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = scopegate(&args).await;
    assert_eq!(code, 0, "keys put: {err}");
    let key = out
        .lines()
        .find_map(|l| l.strip_prefix("key:"))
        .unwrap()
        .trim()
        .to_string();
    assert!(key.starts_with("sk_"), "{out}");
    key
}

async fn revoke(store: &str, id: &str) {
    let (code, _, err) = scopegate(&["keys", "revoke", "--store", store, "--id", id]).await;
    assert_eq!(code, 0, "keys revoke: {err}");
}

/// Writes a record as any Redis client may (SPEC §3.8), without announcing it.
async fn hset(url: &str, key: &str, fields: &[(&str, &str)]) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let hash = sha256(key);
    let _: () = redis::cmd("HSET")
        .arg(format!("scopegate:key:{hash}"))
        .arg(fields)
        .query_async(&mut conn)
        .await
        .unwrap();
}

async fn replica(up: &Upstream, sandbox: &Upstream, store: &str, extra: &str) -> Proxy {
    ProxyBuilder::new(&policy::standard())
        .upstream("default", up.addr)
        .upstream("sandbox", sandbox.addr)
        .config(&format!(
            "environments: {{ test: sandbox }}\nkey_store: {store}\n{extra}"
        ))
        .start()
        .await
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

async fn call(p: &Proxy, path: &str, key: &str) -> Answer {
    get(&p.url(path), &[("authorization", &bearer(key))]).await
}

async fn status_and_code(p: &Proxy, path: &str, key: &str) -> (u16, String) {
    let a = call(p, path, key).await;
    let code = if a.status == 200 {
        "ok".into()
    } else {
        a.code()
    };
    (a.status, code)
}

async fn policy_status(p: &Proxy) -> serde_json::Value {
    let body = reqwest::get(p.admin_url("/policy")).await.unwrap();
    body.json::<serde_json::Value>().await.unwrap()["key_store"].clone()
}

/// The standard policy written where the CLI can read it.
fn policy_file(dir: &tempfile::TempDir) -> String {
    let f = dir.path().join("policy.yaml");
    std::fs::write(&f, policy::standard()).unwrap();
    f.to_str().unwrap().to_string()
}

fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_key_meets_every_check_a_policy_key_does() {
    let redis = Redis::start().await;
    let (up, sandbox) = (Upstream::start().await, Upstream::start().await);
    let p = replica(&up, &sandbox, &redis.url(), "").await;
    let dir = tempfile::tempdir().unwrap();
    let pf = policy_file(&dir);
    let store = redis.url();

    let good = put(
        &store,
        &pf,
        "cust-1",
        &["--scope", "bots:read", "--resource", "bots=bot-1"],
    )
    .await;
    let a = call(&p, "/v1/bots/bot-1", &good).await;
    let echo = a.echo();
    assert_eq!(echo.header("x-auth-kind").as_deref(), Some("api_key"));
    assert_eq!(echo.header("x-auth-key-id").as_deref(), Some("cust-1"));
    assert_eq!(echo.header("x-auth-scopes").as_deref(), Some("bots:read"));
    assert!(echo.header("authorization").is_none());
    assert_eq!(up.hits(), 1);

    // Every refusal a key can meet, with its own code.
    let scoped = put(
        &store,
        &pf,
        "cust-scope",
        &["--scope", "reports", "--resource", "bots=*"],
    )
    .await;
    let limited = put(
        &store,
        &pf,
        "cust-rate",
        &[
            "--scope",
            "bots:read",
            "--resource",
            "bots=*",
            "--rate",
            "0.01/1",
        ],
    )
    .await;
    let expired = put(
        &store,
        &pf,
        "cust-old",
        &[
            "--scope",
            "bots:read",
            "--resource",
            "bots=*",
            "--expires",
            "2021-01-01T00:00:00Z",
        ],
    )
    .await;
    let test_key = put(
        &store,
        &pf,
        "cust-test",
        &[
            "--scope",
            "bots:read",
            "--resource",
            "bots=*",
            "--environment",
            "test",
        ],
    )
    .await;
    assert!(test_key.starts_with("sk_test_"));
    hset(
        &store,
        "sk_disabled_by_hand",
        &[
            ("id", "by-hand"),
            ("scopes", "bots:read"),
            ("resources", r#"{"bots":["*"]}"#),
            ("disabled", "true"),
        ],
    )
    .await;
    hset(
        &store,
        "sk_broken_record",
        &[
            ("id", "broken"),
            ("scopes", "bots:read"),
            ("disabled", "maybe"),
        ],
    )
    .await;
    for (key, path, want) in [
        (
            "sk_live_nobody_has_this",
            "/v1/bots/bot-1",
            (401, "invalid_api_key"),
        ),
        (
            good.as_str(),
            "/v1/bots/bot-2",
            (403, "resource_not_allowed"),
        ),
        (
            scoped.as_str(),
            "/v1/bots/bot-1",
            (403, "insufficient_scope"),
        ),
        (expired.as_str(), "/v1/bots/bot-1", (401, "api_key_expired")),
        (
            "sk_disabled_by_hand",
            "/v1/bots/bot-1",
            (401, "api_key_disabled"),
        ),
        (
            "sk_broken_record",
            "/v1/bots/bot-1",
            (401, "invalid_api_key"),
        ),
        (good.as_str(), "/jwt-only", (401, "invalid_token")),
    ] {
        let got = status_and_code(&p, path, key).await;
        assert_eq!((got.0, got.1.as_str()), want, "{key} on {path}");
    }
    let first = call(&p, "/v1/bots/b", &limited).await;
    assert_eq!(
        (first.status, first.header("ratelimit-remaining")),
        (200, Some("0"))
    );
    let second = call(&p, "/v1/bots/b", &limited).await;
    assert_eq!(
        (second.status, second.code().as_str()),
        (429, "rate_limited")
    );
    // A test key goes to the test environment's upstream.
    assert_eq!(call(&p, "/v1/bots/b", &test_key).await.status, 200);
    assert_eq!(sandbox.hits(), 1);

    // A hash in both the policy and the store is the policy's.
    hset(
        &store,
        KEY_READ,
        &[("id", "shadowing"), ("disabled", "true")],
    )
    .await;
    let a = call(&p, "/v1/bots/x", KEY_READ).await;
    assert_eq!(
        a.echo().header("x-auth-key-id").as_deref(),
        Some("key-read")
    );

    // Nothing of a key reaches a body, a header or the metrics.
    let m = p.metrics().await;
    assert!(!m.contains(&good) && !m.contains(&sha256(&good)));
    assert!(metric(&m, "scopegate_key_store_lookups_total{result=\"hit\"}") >= 1);
    assert!(metric(&m, "scopegate_key_store_lookups_total{result=\"miss\"}") >= 6);
    assert!(
        metric(
            &m,
            "scopegate_key_store_lookups_total{result=\"not_found\"}"
        ) >= 1
    );
    let status = policy_status(&p).await;
    assert_eq!(
        (
            status["reachable"].as_bool(),
            status["subscribed"].as_bool()
        ),
        (Some(true), Some(true))
    );
    assert!(status["cache_entries"].as_u64().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_and_kinds_the_policy_does_not_declare_grant_nothing_and_are_counted() {
    let redis = Redis::start().await;
    let (up, sandbox) = (Upstream::start().await, Upstream::start().await);
    let p = replica(&up, &sandbox, &redis.url(), "").await;
    // Written by another tool: scopes and a resource kind this policy never declared.
    hset(
        &redis.url(),
        "sk_live_foreign",
        &[
            ("id", "foreign"),
            ("scopes", "superuser bots:read"),
            ("resources", r#"{"bots":["*"],"galaxies":["*"]}"#),
        ],
    )
    .await;
    hset(
        &redis.url(),
        "sk_live_only_foreign",
        &[
            ("id", "only-foreign"),
            ("scopes", "superuser root"),
            ("resources", r#"{"galaxies":["*"]}"#),
        ],
    )
    .await;
    let a = call(&p, "/v1/bots/b", "sk_live_foreign").await;
    assert_eq!(
        a.echo().header("x-auth-scopes").as_deref(),
        Some("bots:read")
    );
    let refused = status_and_code(&p, "/v1/bots/b", "sk_live_only_foreign").await;
    assert_eq!((refused.0, refused.1.as_str()), (403, "insufficient_scope"));
    let refused = status_and_code(&p, "/v1/bots", "sk_live_only_foreign").await;
    assert_eq!((refused.0, refused.1.as_str()), (403, "insufficient_scope"));
    let m = p.metrics().await;
    // superuser + galaxies, then superuser + root + galaxies.
    assert_eq!(metric(&m, "scopegate_key_store_unknown_scopes_total"), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_stops_on_three_replicas_within_a_second_and_a_put_key_starts_everywhere() {
    let redis = Redis::start().await;
    let (up, sandbox) = (Upstream::start().await, Upstream::start().await);
    let store = redis.url();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(replica(&up, &sandbox, &store, "").await);
    }
    let dir = tempfile::tempdir().unwrap();
    let pf = policy_file(&dir);
    let key = put(
        &store,
        &pf,
        "rotating",
        &["--scope", "bots:read", "--resource", "bots=*"],
    )
    .await;
    for r in &replicas {
        assert_eq!(
            call(r, "/v1/bots/b", &key).await.status,
            200,
            "cached on every replica"
        );
    }
    revoke(&store, "rotating").await;
    let revoked = Instant::now();
    for r in &replicas {
        eventually(
            Duration::from_secs(1),
            "the revocation reaches the replica",
            || async {
                status_and_code(r, "/v1/bots/b", &key).await == (401, "api_key_disabled".into())
            },
        )
        .await;
    }
    assert!(
        revoked.elapsed() < Duration::from_secs(1),
        "{:?}",
        revoked.elapsed()
    );
    for r in &replicas {
        let m = r.metrics().await;
        assert!(
            metric(&m, "scopegate_key_store_events_total") >= 2,
            "put and revoke were heard"
        );
    }

    // A key each replica has cached as unknown starts working everywhere once written.
    let fresh = "sk_live_fresh_0123456789";
    for r in &replicas {
        assert_eq!(
            status_and_code(r, "/v1/bots/b", fresh).await,
            (401, "invalid_api_key".into())
        );
    }
    let file = dir.path().join("fresh.json");
    let entry = json!({ "id": "fresh", "sha256": sha256(fresh), "scopes": ["bots:read"], "resources": { "bots": ["*"] } });
    std::fs::write(&file, json!({ "api_keys": [entry] }).to_string()).unwrap();
    assert_eq!(
        scopegate(&["keys", "import", "--store", &store, file.to_str().unwrap()])
            .await
            .0,
        0
    );
    let written = Instant::now();
    for r in &replicas {
        eventually(
            Duration::from_secs(1),
            "the new key reaches the replica",
            || async { call(r, "/v1/bots/b", fresh).await.status == 200 },
        )
        .await;
    }
    assert!(
        written.elapsed() < Duration::from_secs(1),
        "{:?}",
        written.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_cached_keys_work_others_get_503_at_once_and_service_comes_back() {
    let mut redis = Redis::start().await;
    let (up, sandbox) = (Upstream::start().await, Upstream::start().await);
    let store = redis.url();
    let p = replica(
        &up,
        &sandbox,
        &store,
        "limits: { upstream_connect_timeout: 500ms }",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let pf = policy_file(&dir);
    let cached = put(
        &store,
        &pf,
        "cached",
        &["--scope", "bots:read", "--resource", "bots=*"],
    )
    .await;
    let uncached = put(
        &store,
        &pf,
        "uncached",
        &["--scope", "bots:read", "--resource", "bots=*"],
    )
    .await;
    assert_eq!(call(&p, "/v1/bots/b", &cached).await.status, 200);
    redis.kill();

    let mut slowest = Duration::ZERO;
    for n in 0..20 {
        let started = Instant::now();
        assert_eq!(
            call(&p, "/v1/bots/b", &cached).await.status,
            200,
            "#{n}: a cached key keeps working"
        );
        for key in [uncached.as_str(), "sk_live_never_seen"] {
            let a = call(&p, "/v1/bots/b", key).await;
            assert_eq!(
                (a.status, a.code().as_str()),
                (503, "key_store_unavailable"),
                "#{n}: never a 401"
            );
        }
        slowest = slowest.max(started.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(900),
        "a request waited {slowest:?} for Redis"
    );
    // Policy keys never need the store.
    assert_eq!(call(&p, "/v1/bots/b", KEY_READ).await.status, 200);
    let status = policy_status(&p).await;
    assert_eq!(status["reachable"], json!(false));
    assert_eq!(status["subscribed"], json!(false));
    let m = p.metrics().await;
    assert!(metric(&m, "scopegate_key_store_lookups_total{result=\"error\"}") >= 40);

    // Redis is back (empty: it kept nothing): the replica finds it by itself, subscribes
    // again, drops what it cached while deaf, and serves what the store holds now.
    let back = Redis::start_on(redis.port).await;
    hset(
        &back.url(),
        &uncached,
        &[
            ("id", "uncached"),
            ("scopes", "bots:read"),
            ("resources", r#"{"bots":["*"]}"#),
        ],
    )
    .await;
    eventually(Duration::from_secs(5), "service resumes", || async {
        call(&p, "/v1/bots/b", &uncached).await.status == 200
    })
    .await;
    eventually(Duration::from_secs(5), "subscribed again", || async {
        policy_status(&p).await["subscribed"] == json!(true)
    })
    .await;
    let gone = status_and_code(&p, "/v1/bots/b", &cached).await;
    assert_eq!(
        (gone.0, gone.1.as_str()),
        (401, "invalid_api_key"),
        "the cache was dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_subscription_drops_the_cache_and_revocations_still_land() {
    let redis = Redis::start().await;
    let (up, sandbox) = (Upstream::start().await, Upstream::start().await);
    let store = redis.url();
    let p = replica(&up, &sandbox, &store, "").await;
    let dir = tempfile::tempdir().unwrap();
    let pf = policy_file(&dir);
    let key = put(
        &store,
        &pf,
        "quiet",
        &["--scope", "bots:read", "--resource", "bots=*"],
    )
    .await;
    assert_eq!(call(&p, "/v1/bots/b", &key).await.status, 200);
    // Disabled without an event: the cached answer stands (the 30 s a silent writer waits).
    hset(&store, &key, &[("disabled", "true")]).await;
    assert_eq!(call(&p, "/v1/bots/b", &key).await.status, 200);

    let client = redis::Client::open(store.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "pubsub"][..])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(killed, 1, "the replica's one subscription");
    eventually(
        Duration::from_secs(3),
        "resubscribed, the cache dropped",
        || async {
            status_and_code(&p, "/v1/bots/b", &key).await == (401, "api_key_disabled".into())
        },
    )
    .await;
    assert_eq!(policy_status(&p).await["subscribed"], json!(true));

    let next = put(
        &store,
        &pf,
        "next",
        &["--scope", "bots:read", "--resource", "bots=*"],
    )
    .await;
    assert_eq!(call(&p, "/v1/bots/b", &next).await.status, 200);
    revoke(&store, "next").await;
    eventually(
        Duration::from_secs(1),
        "a revocation after the resubscription lands",
        || async {
            status_and_code(&p, "/v1/bots/b", &next).await == (401, "api_key_disabled".into())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keys_commands_check_what_they_write_and_fail_in_one_line() {
    let redis = Redis::start().await;
    let store = redis.url();
    let dir = tempfile::tempdir().unwrap();
    let pf = policy_file(&dir);
    let key = put(
        &store,
        &pf,
        "listed",
        &["--scope", "bots:read", "--name", "Listed key"],
    )
    .await;

    let (code, out, _) = scopegate(&["keys", "list", "--store", &store]).await;
    assert_eq!((code, out.as_str()), (0, "listed\n"));
    assert!(!out.contains(&key) && !out.contains(&sha256(&key)));

    for (args, says) in [
        (
            vec!["--id", "x", "--scope", "nope"],
            "scope \"nope\" is not declared",
        ),
        (
            vec![
                "--id",
                "x",
                "--scope",
                "bots:read",
                "--resource",
                "galaxies=m31",
            ],
            "resource kind \"galaxies\"",
        ),
        (
            vec!["--id", "listed", "--scope", "bots:read"],
            "already exists",
        ),
    ] {
        let mut all = vec!["keys", "put", "--store", &store, "--policy", &pf];
        all.extend(args);
        let (code, out, err) = scopegate(&all).await;
        assert_eq!((code, out.as_str()), (1, ""), "{err}");
        assert!(
            err.contains(says) && err.trim().lines().count() == 1,
            "{err}"
        );
    }
    let (code, _, err) = scopegate(&["keys", "revoke", "--store", &store, "--id", "ghost"]).await;
    assert_eq!(code, 1);
    assert_eq!(err.trim(), "no key with id \"ghost\"");
    let (code, _, err) = scopegate(&["keys", "list", "--store", "redis://127.0.0.1:1/0"]).await;
    assert_eq!(code, 1);
    assert!(
        err.starts_with("key store:") && err.trim().lines().count() == 1,
        "{err}"
    );
    // Usage errors: exit 2.
    for args in [
        vec![
            "keys",
            "put",
            "--store",
            &store,
            "--policy",
            &pf,
            "--id",
            "x",
            "--scope",
            "bots:read",
            "--rate",
            "fast",
        ],
        vec![
            "keys", "put", "--store", &store, "--policy", &pf, "--id", "x",
        ],
        vec![
            "keys",
            "put",
            "--store",
            &store,
            "--policy",
            &pf,
            "--id",
            "x",
            "--scope",
            "a",
            "--resource",
            "bots",
        ],
        vec!["keys", "revoke", "--store", &store],
    ] {
        assert_eq!(scopegate(&args).await.0, 2, "{args:?}");
    }
    for cmd in ["put", "revoke", "list", "import"] {
        let (code, out, _) = scopegate(&["keys", cmd, "--help"]).await;
        assert!(code == 0 && out.contains("--store"), "{cmd}");
    }

    // Import: every bad entry named at its line, nothing written; then a good file.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, format!(
        "api_keys:\n  - {{ id: a, sha256: {} }}\n  - {{ id: b, sha256: 1234 }}\n  - {{ id: a, sha256: {}, expires: soon }}\n",
        sha256("k1"), sha256("k2"))).unwrap();
    let (code, _, err) =
        scopegate(&["keys", "import", "--store", &store, bad.to_str().unwrap()]).await;
    assert_eq!(code, 1);
    let lines: Vec<&str> = err.trim().lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(
        lines[0].ends_with("bad.yaml:3: api key \"b\": sha256 must be 64 hex characters"),
        "{err}"
    );
    assert!(
        lines[1].contains("bad.yaml:4:") && lines[1].contains("used twice"),
        "{err}"
    );
    assert!(
        lines[2].contains("bad.yaml:4:") && lines[2].contains("RFC 3339"),
        "{err}"
    );
    assert_eq!(
        scopegate(&["keys", "list", "--store", &store]).await.1,
        "listed\n"
    );

    // A policy file itself imports: its api_keys, as the policy declares them.
    let (code, out, err) = scopegate(&["keys", "import", "--store", &store, &pf]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("imported 6 keys"), "{out}");
    let (_, out, _) = scopegate(&["keys", "list", "--store", &store]).await;
    assert_eq!(out.lines().count(), 7, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_replaces_an_ids_key_and_every_replica_hears_of_it() {
    let redis = Redis::start().await;
    let (up, sandbox) = (Upstream::start().await, Upstream::start().await);
    let store = redis.url();
    let p = replica(&up, &sandbox, &store, "").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.json");
    let entry = |key: &str| json!({ "id": "imported", "name": "From a file", "sha256": sha256(key), "scopes": ["bots:read"], "resources": { "bots": ["*"] } });
    std::fs::write(
        &file,
        json!({ "api_keys": [entry("sk_live_first")] }).to_string(),
    )
    .unwrap();
    assert_eq!(
        scopegate(&["keys", "import", "--store", &store, file.to_str().unwrap()])
            .await
            .0,
        0
    );
    assert_eq!(
        call(&p, "/v1/bots/b", "sk_live_second").await.code(),
        "invalid_api_key"
    );
    assert_eq!(call(&p, "/v1/bots/b", "sk_live_first").await.status, 200);

    std::fs::write(
        &file,
        json!({ "api_keys": [entry("sk_live_second")] }).to_string(),
    )
    .unwrap();
    assert_eq!(
        scopegate(&["keys", "import", "--store", &store, file.to_str().unwrap()])
            .await
            .0,
        0
    );
    eventually(
        Duration::from_secs(1),
        "the new key works, the one it replaced does not",
        || async {
            call(&p, "/v1/bots/b", "sk_live_second").await.status == 200
                && status_and_code(&p, "/v1/bots/b", "sk_live_first").await
                    == (401, "api_key_disabled".into())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_keys_single_use_jti_and_rate_limits_hold_across_replicas() {
    let cluster = Cluster::start().await;
    let (up, sandbox) = (Upstream::start().await, Upstream::start().await);
    let store = cluster.url();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(replica(&up, &sandbox, &store, &format!("replay_store: {store}")).await);
    }
    let dir = tempfile::tempdir().unwrap();
    let pf = policy_file(&dir);

    // Keys spread over the slots of every node: each accepted by every replica.
    let mut keys = Vec::new();
    for i in 0..6 {
        keys.push(
            put(
                &store,
                &pf,
                &format!("cluster-{i}"),
                &["--scope", "bots:read", "--resource", "bots=*"],
            )
            .await,
        );
    }
    for r in &replicas {
        for k in &keys {
            assert_eq!(call(r, "/v1/bots/b", k).await.status, 200);
        }
    }
    let (code, out, _) = scopegate(&["keys", "list", "--store", &store]).await;
    assert_eq!((code, out.lines().count()), (0, 6), "{out}");

    revoke(&store, "cluster-3").await;
    let revoked = Instant::now();
    for r in &replicas {
        eventually(
            Duration::from_secs(1),
            "the revocation reaches the replica",
            || async {
                status_and_code(r, "/v1/bots/b", &keys[3]).await == (401, "api_key_disabled".into())
            },
        )
        .await;
    }
    assert!(revoked.elapsed() < Duration::from_secs(1));

    // Single-use jti: accepted once, by one replica only.
    let t = token(
        "app-strict",
        json!({ "aud": "https://api.example", "jti": "cluster-once" }),
    );
    assert_eq!(
        get(&replicas[0].url("/v1/bots/x"), &[("auth", &t)])
            .await
            .status,
        200
    );
    for r in &replicas[1..] {
        assert_eq!(
            get(&r.url("/v1/bots/x"), &[("auth", &t)]).await.code(),
            "token_replayed"
        );
    }
    // A stored key's rate limit (burst 2) is one bucket across the replicas.
    let limited = put(
        &store,
        &pf,
        "cluster-rate",
        &[
            "--scope",
            "bots:read",
            "--resource",
            "bots=*",
            "--rate",
            "0.01/2",
        ],
    )
    .await;
    let statuses = [
        call(&replicas[0], "/v1/bots/b", &limited).await.status,
        call(&replicas[1], "/v1/bots/b", &limited).await.status,
        call(&replicas[2], "/v1/bots/b", &limited).await.status,
    ];
    assert_eq!(statuses, [200, 200, 429]);
    // And an app's.
    let t = token("app-limited", json!({}));
    let statuses = [
        get(&replicas[2].url("/v1/bots/x"), &[("auth", &t)])
            .await
            .status,
        get(&replicas[1].url("/v1/bots/x"), &[("auth", &t)])
            .await
            .status,
        get(&replicas[0].url("/v1/bots/x"), &[("auth", &t)])
            .await
            .status,
    ];
    assert_eq!(statuses, [200, 200, 429]);

    // A bulk import over every node's slots.
    let file = dir.path().join("bulk.json");
    let entries: Vec<_> = (0..500)
        .map(|i| json!({ "id": format!("bulk-{i}"), "sha256": sha256(&format!("sk_live_bulk_{i}")), "scopes": ["bots:read"], "resources": { "bots": ["*"] } }))
        .collect();
    std::fs::write(&file, json!({ "api_keys": entries }).to_string()).unwrap();
    let (code, out, err) =
        scopegate(&["keys", "import", "--store", &store, file.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("imported 500 keys"), "{out}");
    for i in [0, 137, 499] {
        assert_eq!(
            call(&replicas[i % 3], "/v1/bots/b", &format!("sk_live_bulk_{i}"))
                .await
                .status,
            200
        );
    }
}

#[tokio::test]
async fn a_key_store_that_cannot_be_reached_at_start_is_an_error() {
    let up = Upstream::start().await;
    let (_dir, config_file, _) = ProxyBuilder::new(&policy::standard())
        .upstream("default", up.addr)
        .config("key_store: redis://127.0.0.1:1/0\nlimits: { upstream_connect_timeout: 300ms }")
        .write();
    let config = scopegate::config::Config::load(&config_file).unwrap();
    let started = Instant::now();
    let e = match scopegate::server::start(
        config,
        scopegate::server::Options {
            access_log: false,
            watch: false,
        },
    )
    .await
    {
        Ok(_) => panic!("started without its key store"),
        Err(e) => e,
    };
    assert!(e.starts_with("key_store:"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
