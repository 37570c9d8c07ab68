//! The Redis connection shared by the stores that replicas must agree on (single-use `jti`,
//! rate limits), failing fast while Redis is down (SPEC §7 "Stores fail fast").
//!
//! A command that fails for want of a connection (refused, dropped, timed out) marks the
//! store down; from then on every command fails at once, without touching the network,
//! while one background task pings Redis until it answers again. So an outage costs each
//! request a 503 now instead of a reconnect attempt it would wait for, requests do not pile
//! up behind a dead server, and recovery needs no request to notice it. No command waits
//! longer than the configured timeout (the config's `upstream_connect_timeout`).
//!
//! One server (`redis://…`) or a Redis Cluster (`redis+cluster://h1:p1,h2:p2,…`): the
//! stores run the same commands on either, through `Conn`. Every key a command names is
//! one key, so the cluster routes each command by its slot.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, PubSub};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, RedisResult, Value};

/// Between probes of a store that is down: from the first to the last, doubling.
const PROBE_FIRST: Duration = Duration::from_millis(100);
const PROBE_MAX: Duration = Duration::from_millis(500);

/// Where a store lives, as the config names it (SPEC §1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `redis://host:port/db`.
    Single(String),
    /// `redis+cluster://h1:p1,h2:p2,…`: the seed nodes, each as a `redis://` URL.
    Cluster(Vec<String>),
}

impl Target {
    /// Parses `redis://…` or `redis+cluster://h1:p1,h2:p2,…` (user info, if any, written
    /// once before the first node, applies to every node).
    /// Errors show the URL without its user info (a password may be in it).
    pub fn parse(url: &str) -> Result<Target, String> {
        let shown = redacted(url);
        if url.starts_with("redis://") {
            redis::Client::open(url).map_err(|e| format!("{shown:?}: {e}"))?;
            return Ok(Target::Single(url.to_string()));
        }
        let Some(rest) = url.strip_prefix("redis+cluster://") else {
            return Err(format!(
                "{shown:?} is neither a redis:// nor a redis+cluster:// URL"
            ));
        };
        let (user, hosts) = match rest.rsplit_once('@') {
            Some((user, hosts)) => (format!("{user}@"), hosts),
            None => (String::new(), rest),
        };
        let hosts = hosts.trim_end_matches('/');
        let mut nodes = Vec::new();
        for host in hosts.split(',') {
            if host.is_empty() || host.contains('/') {
                return Err(format!("{shown:?}: {host:?} is not a host:port"));
            }
            let node = format!("redis://{user}{host}");
            redis::Client::open(node.as_str()).map_err(|e| format!("{shown:?}: {e}"))?;
            nodes.push(node);
        }
        Ok(Target::Cluster(nodes))
    }

    /// The URLs of the servers named (one, or the cluster's seed nodes).
    pub fn nodes(&self) -> &[String] {
        match self {
            Target::Single(url) => std::slice::from_ref(url),
            Target::Cluster(nodes) => nodes,
        }
    }
}

/// `url` with any user info replaced by `***`.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// A connection to one server or to a cluster; cloning it shares the connection.
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

#[derive(Clone)]
pub struct Redis {
    conn: Conn,
    target: Target,
    timeout: Duration,
    health: Arc<Health>,
}

#[derive(Default)]
struct Health {
    down: AtomicBool,
}

impl Redis {
    /// Connects (at start, a store that cannot be reached is an error) with every
    /// command bounded by `timeout`.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Redis, String> {
        let target = Target::parse(url)?;
        let conn = match &target {
            Target::Single(url) => {
                let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(timeout)
                    .set_response_timeout(timeout)
                    // Reconnecting is the prober's job; a command never waits for retries.
                    .set_number_of_retries(0);
                let conn = ConnectionManager::new_with_config(client, config);
                Conn::Single(bounded(timeout, conn).await?)
            }
            Target::Cluster(nodes) => {
                let client = redis::cluster::ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    // As above: a command that meets a dead node fails now, the prober waits.
                    .retries(0)
                    .build()
                    .map_err(|e| e.to_string())?;
                Conn::Cluster(bounded(timeout, client.get_async_connection()).await?)
            }
        };
        Ok(Redis {
            conn,
            target,
            timeout,
            health: Arc::default(),
        })
    }

    /// A subscriber's connection (pub/sub needs one of its own): to the first seed node
    /// that answers. A cluster forwards every `PUBLISH` to all its nodes, so any will do.
    pub async fn pubsub(&self) -> Result<PubSub, String> {
        let mut last = String::from("no node");
        for node in self.target.nodes() {
            let client = match redis::Client::open(node.as_str()) {
                Ok(c) => c,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            match bounded(self.timeout, client.get_async_pubsub()).await {
                Ok(p) => return Ok(p),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The connection, for callers that bound and account for their commands themselves
    /// (the `keys` commands).
    pub fn conn(&self) -> Conn {
        self.conn.clone()
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Whether the store is known to be down.
    pub fn is_down(&self) -> bool {
        self.health.down.load(Ordering::Acquire)
    }

    /// Runs one command (or script) on the shared connection: at once `Err` while the store
    /// is down, else bounded by the timeout. The error text is for the log.
    pub async fn run<T, F, Fut>(&self, command: F) -> Result<T, String>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        if self.is_down() {
            return Err("redis is unreachable (retried in the background)".into());
        }
        match tokio::time::timeout(self.timeout, command(self.conn.clone())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if unreachable(&e) {
                    self.mark_down();
                }
                Err(e.to_string())
            }
            Err(_) => {
                self.mark_down();
                Err(format!("no answer from redis within {:?}", self.timeout))
            }
        }
    }

    /// Marks the store down and starts the one prober that will mark it up again.
    fn mark_down(&self) {
        if self.health.down.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!("redis is unreachable: failing requests that need it until it answers");
        let probe = self.clone();
        tokio::spawn(async move {
            let mut wait = PROBE_FIRST;
            loop {
                tokio::time::sleep(wait).await;
                let mut conn = probe.conn.clone();
                let ping = redis::cmd("PING");
                let answer = ping.query_async::<String>(&mut conn);
                if let Ok(Ok(_)) = tokio::time::timeout(probe.timeout, answer).await {
                    probe.health.down.store(false, Ordering::Release);
                    tracing::info!("redis answers again");
                    return;
                }
                wait = (wait * 2).min(PROBE_MAX);
            }
        });
    }
}

/// `future`, or an error once `timeout` has passed.
async fn bounded<T>(
    timeout: Duration,
    future: impl Future<Output = RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, future).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer from redis within {timeout:?}")),
    }
}

/// A failure of the connection rather than of the command (a Redis error reply).
fn unreachable(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_url_forms_parse_and_others_are_refused() {
        assert_eq!(
            Target::parse("redis://127.0.0.1:6379/2").unwrap(),
            Target::Single("redis://127.0.0.1:6379/2".into())
        );
        assert_eq!(
            Target::parse("redis+cluster://a:7000,b:7001/").unwrap(),
            Target::Cluster(vec!["redis://a:7000".into(), "redis://b:7001".into()])
        );
        assert_eq!(
            Target::parse("redis+cluster://:pw@a:7000,b:7001").unwrap(),
            Target::Cluster(vec![
                "redis://:pw@a:7000".into(),
                "redis://:pw@b:7001".into()
            ])
        );
        for bad in [
            "memory",
            "http://a:1",
            "redis+cluster://",
            "redis+cluster://a:1,,b:2",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
