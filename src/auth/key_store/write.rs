//! Writing the key store (the `scopegate keys` commands, SPEC §2): create, revoke, list and
//! bulk-import keys in the record format of §3.8, announcing each change on
//! `scopegate:key-events` so every replica sees it within a second.
//!
//! Every command names one key, so the same code runs on one server and on a cluster. Bulk
//! work keeps many commands in flight on the one multiplexed connection, which pipelines
//! them on the wire.

use futures_util::{StreamExt, TryStreamExt, stream};
use redis::AsyncCommands;

use super::record::{self, EVENTS, Record};
use crate::store::{Conn, Redis, Target};

/// Commands in flight at once during an import.
const IN_FLIGHT: usize = 1024;
/// What a bulk change publishes: not a hash, so every replica drops its whole cache.
pub const EVERYTHING: &str = "*";

/// Creates a key: refused when the id is taken (revoke it, or choose another id).
pub async fn put(redis: &Redis, sha256_hex: &str, record: &Record) -> Result<(), String> {
    let mut conn = redis.conn();
    let id_key = record::id_key(&record.id);
    let taken: Option<String> = redis::cmd("SET")
        .arg(&id_key)
        .arg(sha256_hex)
        .arg("NX")
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    if taken.is_none() {
        return Err(format!(
            "a key with id {:?} already exists (revoke it, or choose another id)",
            record.id
        ));
    }
    write_record(&mut conn, sha256_hex, record).await?;
    publish(&mut conn, sha256_hex).await
}

/// Disables a key (401 `api_key_disabled` from then on) and announces it.
pub async fn revoke(redis: &Redis, id: &str) -> Result<(), String> {
    let mut conn = redis.conn();
    let hash: Option<String> = conn
        .get(record::id_key(id))
        .await
        .map_err(|e| e.to_string())?;
    let Some(hash) = hash else {
        return Err(format!("no key with id {id:?}"));
    };
    let key = record::record_key(&hash);
    let exists: bool = conn.exists(&key).await.map_err(|e| e.to_string())?;
    if !exists {
        return Err(format!("key id {id:?} names no record"));
    }
    let _: () = conn
        .hset(&key, "disabled", "true")
        .await
        .map_err(|e| e.to_string())?;
    publish(&mut conn, &hash).await
}

/// Every key id in the store, sorted. A cluster is scanned master by master.
pub async fn list(redis: &Redis) -> Result<Vec<String>, String> {
    let prefix = record::id_key("");
    let mut ids = Vec::new();
    for node in masters(redis).await? {
        let client = redis::Client::open(node.as_str()).map_err(|e| e.to_string())?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| format!("{node}: {e}"))?;
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            ids.extend(
                keys.iter()
                    .filter_map(|k| k.strip_prefix(&prefix))
                    .map(str::to_string),
            );
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// The servers that hold keys: the one server, or the cluster's masters.
async fn masters(redis: &Redis) -> Result<Vec<String>, String> {
    let nodes = match redis.target() {
        Target::Single(url) => return Ok(vec![url.clone()]),
        Target::Cluster(nodes) => nodes,
    };
    let user = nodes[0]
        .strip_prefix("redis://")
        .and_then(|rest| rest.rsplit_once('@'))
        .map(|(user, _)| format!("{user}@"))
        .unwrap_or_default();
    let mut conn = redis.conn();
    let slots: Vec<redis::Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    // Each range: [start, end, [host, port, id…] (the master), replicas…].
    for range in slots {
        let redis::Value::Array(parts) = range else {
            continue;
        };
        let Some(redis::Value::Array(master)) = parts.get(2) else {
            continue;
        };
        let host: Option<String> = master.first().and_then(|h| redis::from_redis_value(h).ok());
        let port: Option<u16> = master.get(1).and_then(|p| redis::from_redis_value(p).ok());
        if let (Some(host), Some(port)) = (host, port) {
            let url = format!("redis://{user}{host}:{port}");
            if !out.contains(&url) {
                out.push(url);
            }
        }
    }
    Ok(out)
}

/// Writes many keys (`keys import`): each record whole, its id pointed at it, and a key that
/// an id pointed at before disabled; then one event that drops every replica's cache.
/// Returns how many keys were written.
pub async fn import(redis: &Redis, keys: Vec<(String, Record)>) -> Result<usize, String> {
    let conn = redis.conn();
    let mut written = 0;
    let mut replaced = Vec::new();
    let mut writes = stream::iter(keys)
        .map(|(hash, record)| {
            let mut conn = conn.clone();
            async move {
                write_record(&mut conn, &hash, &record).await?;
                let before: Option<String> = redis::cmd("SET")
                    .arg(record::id_key(&record.id))
                    .arg(&hash)
                    .arg("GET")
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(before.filter(|b| *b != hash))
            }
        })
        .buffer_unordered(IN_FLIGHT);
    while let Some(old) = writes.next().await {
        replaced.extend(old?);
        written += 1;
    }
    drop(writes);
    // An id given a new key: the key it named before must not keep working.
    stream::iter(replaced)
        .map(|old| {
            let mut conn = conn.clone();
            async move {
                let _: () = conn
                    .hset(record::record_key(&old), "disabled", "true")
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect::<()>()
        .await?;
    publish(&mut conn.clone(), EVERYTHING).await?;
    Ok(written)
}

/// The record, every field written (absent ones empty) so no field of an earlier record
/// under the same hash survives.
async fn write_record(conn: &mut Conn, sha256_hex: &str, record: &Record) -> Result<(), String> {
    let mut fields = record.fields();
    for f in ["name", "expires", "rate_limit"] {
        if !fields.iter().any(|(k, _)| *k == f) {
            fields.push((f, String::new()));
        }
    }
    let _: () = conn
        .hset_multiple(record::record_key(sha256_hex), &fields)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

async fn publish(conn: &mut Conn, payload: &str) -> Result<(), String> {
    let _: i64 = conn
        .publish(EVENTS, payload)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}
