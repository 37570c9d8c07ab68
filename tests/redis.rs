//! The shared store across replicas (SPEC §1.1 `replay_store`, §3.2, §3.6) against a real
//! redis-server this test starts on a free loopback port.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::policy::{self, *};
use common::*;
use serde_json::json;

struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    async fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Redis::start_on(port).await
    }

    async fn start_on(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is required (scripts/test.sh installs it)");
        let r = Redis { child, port };
        eventually(
            Duration::from_secs(5),
            "redis-server accepts connections",
            || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            },
        )
        .await;
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn replica(up: &Upstream, redis: &Redis) -> Proxy {
    ProxyBuilder::new(&policy::standard())
        .upstream("default", up.addr)
        .upstream("sandbox", up.addr)
        .config(&format!("replay_store: {}", redis.url()))
        .start()
        .await
}

#[tokio::test]
async fn a_single_use_jti_is_accepted_once_across_replicas() {
    let redis = Redis::start().await;
    let up = Upstream::start().await;
    let (a, b) = (replica(&up, &redis).await, replica(&up, &redis).await);
    let t = token(
        "app-strict",
        json!({ "aud": "https://api.example", "jti": "shared-once" }),
    );
    assert_eq!(get(&a.url("/v1/bots/x"), &[("auth", &t)]).await.status, 200);
    let again = get(&b.url("/v1/bots/x"), &[("auth", &t)]).await;
    assert_eq!(
        (again.status, again.code().as_str()),
        (401, "token_replayed"),
        "replica B knows what replica A accepted"
    );
    let other = token(
        "app-strict",
        json!({ "aud": "https://api.example", "jti": "another" }),
    );
    assert_eq!(
        get(&b.url("/v1/bots/x"), &[("auth", &other)]).await.status,
        200
    );
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn rate_limits_are_shared_across_replicas() {
    let redis = Redis::start().await;
    let up = Upstream::start().await;
    let (a, b) = (replica(&up, &redis).await, replica(&up, &redis).await);
    // app-limited: burst 2, refill 0.01/s.
    let t = token("app-limited", json!({}));
    assert_eq!(get(&a.url("/v1/bots/x"), &[("auth", &t)]).await.status, 200);
    let second = get(&b.url("/v1/bots/x"), &[("auth", &t)]).await;
    assert_eq!(
        (second.status, second.header("ratelimit-remaining")),
        (200, Some("0"))
    );
    let third = get(&a.url("/v1/bots/x"), &[("auth", &t)]).await;
    assert_eq!((third.status, third.code().as_str()), (429, "rate_limited"));
    assert!(third.header("retry-after").is_some());
}

#[tokio::test]
async fn redis_going_away_fails_closed_with_503() {
    let mut redis = Redis::start().await;
    let up = Upstream::start().await;
    let p = replica(&up, &redis).await;
    let t = token(
        "app-strict",
        json!({ "aud": "https://api.example", "jti": "before" }),
    );
    assert_eq!(get(&p.url("/v1/bots/x"), &[("auth", &t)]).await.status, 200);
    redis.child.kill().unwrap();
    redis.child.wait().unwrap();
    let t = token(
        "app-strict",
        json!({ "aud": "https://api.example", "jti": "after" }),
    );
    let a = get(&p.url("/v1/bots/x"), &[("auth", &t)]).await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (503, "replay_store_unavailable"),
        "a jti that cannot be recorded is not accepted"
    );
    // Requests that need no shared state keep working.
    assert_eq!(
        get(
            &p.url("/v1/bots/x"),
            &[("authorization", &format!("Bearer {KEY_READ}"))]
        )
        .await
        .status,
        200
    );
}

#[tokio::test]
async fn while_redis_is_down_requests_get_their_503_at_once_and_service_returns_by_itself() {
    let mut redis = Redis::start().await;
    let up = Upstream::start().await;
    let p = replica(&up, &redis).await;
    let jti = |n: usize| {
        token(
            "app-strict",
            json!({ "aud": "https://api.example", "jti": format!("j{n}") }),
        )
    };
    assert_eq!(
        get(&p.url("/v1/bots/x"), &[("auth", &jti(0))]).await.status,
        200
    );
    redis.child.kill().unwrap();
    redis.child.wait().unwrap();
    // The first request to meet the outage finds it out (within the connect timeout).
    let first = get(&p.url("/v1/bots/x"), &[("auth", &jti(1))]).await;
    assert_eq!(
        (first.status, first.code().as_str()),
        (503, "replay_store_unavailable")
    );
    // From then on, no request waits for Redis: single-use jti and shared rate limits alike.
    let limited = token("app-limited", json!({}));
    let mut slowest = Duration::ZERO;
    for n in 2..40 {
        let t = if n % 2 == 0 { jti(n) } else { limited.clone() };
        let started = Instant::now();
        let a = get(&p.url("/v1/bots/x"), &[("auth", &t)]).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(
            (a.status, a.code().as_str()),
            (503, "replay_store_unavailable"),
            "#{n}"
        );
    }
    assert!(
        slowest < Duration::from_millis(100),
        "a request waited {slowest:?} for a Redis known to be down"
    );
    // Redis comes back: service resumes without a restart and without a request to notice.
    let _redis = Redis::start_on(redis.port).await;
    let back = Instant::now();
    let mut n = 100;
    eventually(
        Duration::from_secs(5),
        "service resumes after Redis returns",
        || {
            n += 1;
            let t = jti(n);
            let url = p.url("/v1/bots/x");
            async move { get(&url, &[("auth", &t)]).await.status == 200 }
        },
    )
    .await;
    println!(
        "recovered {:?} after Redis accepted connections",
        back.elapsed()
    );
    assert_eq!(
        get(&p.url("/v1/bots/x"), &[("auth", &jti(n))]).await.code(),
        "token_replayed"
    );
}
