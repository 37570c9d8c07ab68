//! Hot reload (SPEC §7): file watch through every way operators and Kubernetes replace a
//! file, SIGHUP, last-good-policy on errors, atomic swaps under load, and caches that
//! never outlive the policy they were filled under.

mod common;

use std::path::Path;
use std::time::Duration;

use common::policy::{self, *};
use common::*;
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(5);

async fn start(policy: &str) -> (Upstream, Proxy) {
    let up = Upstream::start().await;
    let p = ProxyBuilder::new(policy)
        .upstream("default", up.addr)
        .upstream("sandbox", up.addr)
        .start()
        .await;
    (up, p)
}

async fn admin_json(p: &Proxy, path: &str) -> serde_json::Value {
    reqwest::get(p.admin_url(path))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn generation(p: &Proxy) -> u64 {
    admin_json(p, "/policy").await["generation"]
        .as_u64()
        .unwrap()
}

fn revoked(policy: &str) -> String {
    let needle = format!("{{ id: key-read, sha256: {}, ", policy::sha256(KEY_READ));
    assert!(policy.contains(&needle));
    policy.replace(&needle, &format!("{needle}disabled: true, "))
}

/// Editors' save: write a temp file beside the target, then rename it over.
fn save_by_rename(path: &Path, content: &str) {
    let tmp = path.with_extension("swp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn key_read_status(p: &Proxy) -> u16 {
    get(
        &p.url("/v1/bots/bot-1"),
        &[("authorization", &format!("Bearer {KEY_READ}"))],
    )
    .await
    .status
}

async fn wait_for_status(p: &Proxy, want: u16, what: &str) {
    eventually(DEADLINE, what, || async {
        key_read_status(p).await == want
    })
    .await;
}

#[tokio::test]
async fn revoking_a_key_by_rewriting_the_file_takes_effect() {
    let (_, p) = start(&policy::standard()).await;
    assert_eq!(key_read_status(&p).await, 200);
    std::fs::write(&p.policy_file, revoked(&policy::standard())).unwrap();
    wait_for_status(&p, 401, "revoked key rejected").await;
    let a = get(
        &p.url("/v1/bots/bot-1"),
        &[("authorization", &format!("Bearer {KEY_READ}"))],
    )
    .await;
    assert_eq!(a.code(), "api_key_disabled");
    assert_eq!(generation(&p).await, 2);
    // The reload task records its metrics just after the swap that requests already see.
    eventually(DEADLINE, "the reload counted in the metrics", || async {
        let m = p.metrics().await;
        m.contains("scopegate_policy_reloads_total{result=\"success\"} 1")
            && m.contains("scopegate_policy_generation 2")
    })
    .await;
}

#[tokio::test]
async fn editor_rename_on_save_and_delete_then_recreate_are_picked_up() {
    let (_, p) = start(&policy::standard()).await;
    save_by_rename(&p.policy_file, &revoked(&policy::standard()));
    wait_for_status(&p, 401, "rename-on-save picked up").await;
    std::fs::remove_file(&p.policy_file).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        key_read_status(&p).await,
        401,
        "a missing file keeps the last good policy"
    );
    std::fs::write(&p.policy_file, policy::standard()).unwrap();
    wait_for_status(&p, 200, "recreated file picked up").await;
}

/// Kubernetes mounts a ConfigMap as `policy.yaml -> ..data/policy.yaml` with
/// `..data -> ..<timestamp>`, and updates it by renaming a new `..data` symlink over the old.
#[tokio::test]
async fn configmap_symlink_swap_is_picked_up() {
    let up = Upstream::start().await;
    let builder = ProxyBuilder::new(&policy::standard())
        .upstream("default", up.addr)
        .upstream("sandbox", up.addr);
    let (dir, config_file, policy_file) = builder.write();
    let d = dir.path();
    std::fs::create_dir(d.join("..2026_11_22_00_00_01.1")).unwrap();
    std::fs::rename(&policy_file, d.join("..2026_11_22_00_00_01.1/policy.yaml")).unwrap();
    std::os::unix::fs::symlink("..2026_11_22_00_00_01.1", d.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/policy.yaml", &policy_file).unwrap();
    let p = Proxy::start_with(dir, &config_file, policy_file).await;
    assert_eq!(key_read_status(&p).await, 200);

    let d = p.dir.path();
    std::fs::create_dir(d.join("..2026_11_22_00_05_00.2")).unwrap();
    std::fs::write(
        d.join("..2026_11_22_00_05_00.2/policy.yaml"),
        revoked(&policy::standard()),
    )
    .unwrap();
    std::os::unix::fs::symlink("..2026_11_22_00_05_00.2", d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    std::fs::remove_dir_all(d.join("..2026_11_22_00_00_01.1")).unwrap();
    wait_for_status(&p, 401, "ConfigMap swap picked up").await;

    // And a second swap, after the first re-armed nothing by hand.
    std::fs::create_dir(d.join("..2026_11_22_00_10_00.3")).unwrap();
    std::fs::write(
        d.join("..2026_11_22_00_10_00.3/policy.yaml"),
        policy::standard(),
    )
    .unwrap();
    std::os::unix::fs::symlink("..2026_11_22_00_10_00.3", d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    wait_for_status(&p, 200, "second ConfigMap swap picked up").await;
}

#[tokio::test]
async fn an_invalid_policy_is_refused_and_the_last_good_one_stays() {
    let (_, p) = start(&policy::standard()).await;
    let before = admin_json(&p, "/policy").await;
    for bad in [
        "version: 1\nroutes: [ {id: x\n".to_string(), // YAML error
        policy::standard().replace("scopes: [bots:read]", "scopes: [bots:raed]"), // undeclared scope
        policy::standard().replace("unmatched", "x") + "\nsurprise: true\n",      // unknown key
        policy::standard() + "jwe_keys:\n  - { kid: k, private_key_file: /nonexistent.pem }\n", // missing key file
    ] {
        let failures_before = failure_count(&p).await;
        std::fs::write(&p.policy_file, &bad).unwrap();
        eventually(DEADLINE, "failure counted", || async {
            failure_count(&p).await > failures_before
        })
        .await;
        assert_eq!(key_read_status(&p).await, 200, "old policy still in force");
        let now = admin_json(&p, "/policy").await;
        assert_eq!(now["generation"], before["generation"]);
        assert_eq!(now["sha256"], before["sha256"]);
    }
}

async fn failure_count(p: &Proxy) -> u64 {
    let m = p.metrics().await;
    m.lines()
        .find(|l| l.starts_with("scopegate_policy_reloads_total{result=\"failure\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap()
}

#[tokio::test]
async fn sighup_reloads_even_without_file_watching() {
    let up = Upstream::start().await;
    let p = ProxyBuilder::new(&policy::standard())
        .upstream("default", up.addr)
        .upstream("sandbox", up.addr)
        .without_file_watch()
        .start()
        .await;
    std::fs::write(&p.policy_file, revoked(&policy::standard())).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        key_read_status(&p).await,
        200,
        "no file watch: the write alone changes nothing"
    );
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for_status(&p, 401, "reloaded after SIGHUP").await;
}

#[tokio::test]
async fn removing_an_app_stops_its_cached_tokens_at_the_swap() {
    let up = Upstream::start().await;
    let app = format!(
        "  - {{ client_id: app-es, algorithms: [ES256], public_key_file: {}, scopes: [bots:read], resources: {{ bots: [\"*\"] }} }}\n",
        fixture("app-ec256.pub.pem").display()
    );
    let with_app = policy::standard().replace("api_keys:\n", &format!("{app}api_keys:\n"));
    let p = ProxyBuilder::new(&with_app)
        .upstream("default", up.addr)
        .upstream("sandbox", up.addr)
        .start()
        .await;
    let key = jsonwebtoken::EncodingKey::from_ec_pem(
        &std::fs::read(fixture("app-ec256.key.pem")).unwrap(),
    )
    .unwrap();
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &json!({ "appId": "app-es", "exp": now() + 600 }),
        &key,
    )
    .unwrap();
    for _ in 0..3 {
        assert_eq!(
            get(&p.url("/v1/bots/x"), &[("auth", &token)]).await.status,
            200
        );
    }
    let m = p.metrics().await;
    assert!(m.contains("scopegate_token_cache_hits_total 2"), "{m}");
    assert!(m.contains("scopegate_token_cache_misses_total 1"), "{m}");
    std::fs::write(&p.policy_file, policy::standard()).unwrap();
    eventually(
        DEADLINE,
        "removed app rejected despite the cache",
        || async { get(&p.url("/v1/bots/x"), &[("auth", &token)]).await.status == 401 },
    )
    .await;
}

/// HMAC tokens are cached too (per thread): a secret rotated by a reload stops the old
/// tokens at the swap, however often they were seen before.
#[tokio::test]
async fn rotating_an_app_secret_stops_its_cached_hmac_tokens_at_the_swap() {
    let (_, p) = start(&policy::standard()).await;
    let old = token("app-hs", json!({}));
    for _ in 0..3 {
        assert_eq!(
            get(&p.url("/v1/bots/bot-1"), &[("auth", &old)])
                .await
                .status,
            200
        );
    }
    let m = p.metrics().await;
    assert!(m.contains("scopegate_token_cache_hits_total 2"), "{m}");
    assert!(m.contains("scopegate_token_cache_misses_total 1"), "{m}");
    let rotated = policy::standard().replacen(
        &format!("secret: {{ value: {HS_SECRET} }}"),
        "secret: { value: a-rotated-secret-0123456789-0123456789-01234 }",
        1,
    );
    assert_ne!(rotated, policy::standard());
    std::fs::write(&p.policy_file, rotated).unwrap();
    eventually(
        DEADLINE,
        "a token signed with the old secret rejected despite the cache",
        || async {
            get(&p.url("/v1/bots/bot-1"), &[("auth", &old)])
                .await
                .status
                == 401
        },
    )
    .await;
}

/// A storm of reloads while clients keep sending: no request fails, and every response
/// is one of the two policies, never a mix or an error.
#[tokio::test]
async fn reload_storm_under_load_fails_no_request() {
    let a = policy::standard();
    let b = a.replace("id: public,", "id: public-b,");
    assert_ne!(a, b);
    let (_, p) = start(&a).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let url = p.url("/public/storm");
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let c = client();
            let (mut seen_a, mut seen_b, mut total) = (0, 0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && total < 20_000 {
                let r = c
                    .get(&url)
                    .send()
                    .await
                    .expect("request failed during reload");
                assert_eq!(r.status(), 200);
                let e: serde_json::Value =
                    r.json().await.expect("malformed response during reload");
                match e["headers"]["x-auth-route"][0].as_str() {
                    Some("public") => seen_a += 1,
                    Some("public-b") => seen_b += 1,
                    other => panic!("response from neither policy: {other:?}"),
                }
                total += 1;
            }
            (seen_a, seen_b, total)
        }));
    }
    let start_generation = generation(&p).await;
    for i in 0..50 {
        save_by_rename(&p.policy_file, if i % 2 == 0 { &b } else { &a });
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut a_count, mut b_count, mut total) = (0, 0, 0);
    for c in clients {
        let (x, y, t) = c.await.unwrap();
        a_count += x;
        b_count += y;
        total += t;
    }
    let reloads = generation(&p).await - start_generation;
    eprintln!(
        "storm: {reloads} swaps, {total} requests ({a_count} under A, {b_count} under B), 0 failed"
    );
    assert!(
        reloads >= 25,
        "most writes should have been swapped in: {reloads}"
    );
    assert!(a_count > 0 && b_count > 0);
    assert_eq!(failure_count(&p).await, 0);
}

#[tokio::test]
async fn in_flight_requests_finish_under_the_policy_they_started_with() {
    let (_, p) = start(&policy::standard()).await;
    let url = p.url("/v1/bots/bot-1");
    let slow = tokio::spawn(async move {
        get(
            &url,
            &[
                ("authorization", &format!("Bearer {KEY_READ}")),
                ("x-test-delay-ms", "800"),
            ],
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    std::fs::write(&p.policy_file, revoked(&policy::standard())).unwrap();
    wait_for_status(&p, 401, "revocation in force").await;
    let a = slow.await.unwrap();
    assert_eq!(a.status, 200, "authorized before the swap, so it completes");
}

#[tokio::test]
async fn a_keep_alive_connection_sees_the_new_policy_on_its_next_request() {
    let (_, p) = start(&policy::standard()).await;
    let c = client();
    let send = || {
        c.get(p.url("/v1/bots/bot-1"))
            .header("authorization", format!("Bearer {KEY_READ}"))
            .send()
    };
    let r = send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    std::fs::write(&p.policy_file, revoked(&policy::standard())).unwrap();
    eventually(
        DEADLINE,
        "same client connection sees the revocation",
        || async {
            let r = send().await.unwrap();
            r.status() == 401
        },
    )
    .await;
}

/// Other files in the policy's directory (logs, swap files, a benchmark's output) are not
/// the policy: writing them must not even make the proxy read and hash it.
#[tokio::test]
async fn unrelated_files_in_the_directory_trigger_nothing() {
    let (_, p) = start(&policy::standard()).await;
    let unchanged = || async {
        let m = p.metrics().await;
        m.lines()
            .find(|l| l.starts_with("scopegate_policy_reloads_total{result=\"unchanged\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap()
    };
    for i in 0..5 {
        std::fs::write(p.dir.path().join("notes.txt"), format!("write {i}")).unwrap();
        save_by_rename(&p.dir.path().join("other.yaml"), "x: 1");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        unchanged().await,
        0,
        "no reload attempt for unrelated files"
    );
    // The policy's own file still counts, even when its bytes stay the same.
    std::fs::write(&p.policy_file, policy::standard()).unwrap();
    eventually(
        DEADLINE,
        "a write to the policy file is looked at",
        || async { unchanged().await >= 1 },
    )
    .await;
    assert_eq!(generation(&p).await, 1);
}
