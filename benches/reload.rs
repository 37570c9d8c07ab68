//! Reload latency: from the moment a policy write completes (rename over the old file) to
//! the moment the new policy is in force, through the real file watcher. Reports p50/p99
//! over many reloads for a small policy and for one with 10,000 apps and 100,000 API keys,
//! in YAML and in JSON, plus the large policy's load time and the RSS it costs.
//!
//! `cargo bench --bench reload` (set RELOADS=N to change the number of reloads per case).

#[path = "support/mod.rs"]
mod support;

/// The binary's allocator, so the figures are the product's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::time::{Duration, Instant};

use scopegate::config::Config;
use scopegate::server::{self, Options};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn as_json(yaml: &str) -> String {
    let mut options = serde_saphyr::Options::default();
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = 50_000_000;
    budget.max_events = 100_000_000;
    options.budget = Some(budget);
    let v: serde_json::Value =
        serde_saphyr::from_str_with_options(yaml, options).expect("generated policy parses");
    serde_json::to_string(&v).expect("json")
}

/// Two versions of the policy that differ in one key's `disabled` flag.
fn variants(policy: &str) -> [String; 2] {
    let marker = "  - { id: key-0, ";
    assert!(policy.contains(marker));
    [
        policy.to_string(),
        policy.replacen(marker, "  - { id: key-0, disabled: true, ", 1),
    ]
}

async fn measure(name: &str, texts: [String; 2], reloads: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ext = if texts[0].starts_with('{') {
        "json"
    } else {
        "yaml"
    };
    let policy = dir.path().join(format!("policy.{ext}"));
    std::fs::write(&policy, &texts[0]).expect("write policy");
    let config = dir.path().join("scopegate.yaml");
    std::fs::write(
        &config,
        format!("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\npolicy_file: {}\nupstreams: {{ default: http://127.0.0.1:9 }}\n", policy.display()),
    )
    .expect("write config");
    let started = Instant::now();
    let running = server::start(
        Config::load(&config).expect("config"),
        Options {
            access_log: false,
            watch: true,
        },
    )
    .await
    .expect("start");
    let startup = started.elapsed();
    let rss_loaded = rss_kib();
    let policies = running.state.policies.clone();
    let mut samples = Vec::with_capacity(reloads);
    for i in 0..reloads {
        let before = policies.current().generation;
        let tmp = dir.path().join("policy.tmp");
        std::fs::write(&tmp, &texts[(i + 1) % 2]).expect("write");
        std::fs::rename(&tmp, &policy).expect("rename");
        let written = Instant::now();
        let deadline = written + Duration::from_secs(30);
        while policies.current().generation == before {
            assert!(Instant::now() < deadline, "reload did not happen");
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        samples.push(written.elapsed());
        // Let the watcher settle so one write is one measured reload.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    samples.sort();
    println!(
        "| {name} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {} MiB |",
        reloads,
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
        startup.as_secs_f64() * 1e3,
        rss_loaded / 1024,
    );
    running.shutdown().await;
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: then do a quick run.
    let quick = !std::env::args().any(|a| a == "--bench");
    let reloads: usize = std::env::var("RELOADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 3 } else { 50 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let small = support::policy(10, 20, 20, "");
    let (apps, keys) = if quick {
        (100, 1_000)
    } else {
        (10_000, 100_000)
    };
    let large = support::policy(apps, keys, 50, "");
    println!(
        "reload latency: write (rename) -> new policy in force, {reloads} reloads per case, 20 ms debounce included"
    );
    println!(
        "| policy | reloads | p50 | p99 | max | startup to ready | process RSS with it loaded |"
    );
    println!("|---|---|---|---|---|---|---|");
    rt.block_on(async {
        measure("small, YAML (10 apps, 20 keys)", variants(&small), reloads).await;
        measure(
            &format!("large, JSON ({apps} apps, {keys} keys)"),
            variants(&large).map(|t| as_json(&t)),
            reloads,
        )
        .await;
        measure(
            &format!("large, YAML ({apps} apps, {keys} keys)"),
            variants(&large),
            reloads.min(20),
        )
        .await;
    });
}
