//! The token endpoint (SPEC §3.7): partners exchange an access key and a secret key for a
//! short-lived JWT that scopegate signs and later verifies as the client's minted-token app
//! (`auth::jwt`). This room checks the exchange and mints; the edge (`pipeline`) only
//! routes the request here and writes the answer.
//!
//! Brute force is bounded by `Guard`: failures are counted per access key and per client
//! address, and after ten in a minute every attempt from either gets 429 until the minute
//! ends. The counters live in a bounded cache, so a flood of made-up keys or addresses
//! costs a fixed amount of memory.

use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, header};
use moka::sync::Cache;
use serde::Deserialize;
use serde_json::json;

use crate::auth::rate_limit::Limiter;
use crate::error::Error;
use crate::policy::Policy;
use crate::wire::Body;
use crate::wire::read_limited;

/// The route label and access-log route of an exchange.
pub const ROUTE: &str = "token_endpoint";
/// Bodies above this are refused (413).
pub const MAX_BODY: usize = 16 * 1024;
/// Failures allowed per access key and per address within `WINDOW`.
const ALLOWED_FAILURES: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);
/// Keys and addresses with a failure in the last minute that are remembered; beyond it the
/// least used are forgotten first.
const GUARD_CAPACITY: u64 = 100_000;

/// The body partners send today, field names and all. Unknown members are ignored; a
/// member given twice, a missing one, or one that is not a string is a malformed request.
#[derive(Deserialize)]
pub struct Credentials {
    #[serde(rename = "accessKey")]
    pub access_key: String,
    #[serde(rename = "secretKey")]
    pub secret_key: String,
}

/// Failures in the current minute of one access key or address.
#[derive(Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// The brute-force counters, per replica.
pub struct Guard {
    failures: Cache<String, Window>,
}

impl Default for Guard {
    fn default() -> Guard {
        Guard::new(GUARD_CAPACITY)
    }
}

impl Guard {
    pub fn new(capacity: u64) -> Guard {
        Guard {
            failures: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(WINDOW)
                .build(),
        }
    }

    /// Seconds until `who` may try again, when it is locked out.
    fn locked(&self, who: &str, now: Instant) -> Option<u64> {
        let w = self.failures.get(who)?;
        let elapsed = now.saturating_duration_since(w.started);
        (elapsed < WINDOW && w.failures >= ALLOWED_FAILURES)
            .then(|| ((WINDOW - elapsed).as_secs_f64().ceil() as u64).max(1))
    }

    fn failed(&self, who: String, now: Instant) {
        self.failures
            .entry(who)
            .and_upsert_with(|e| match e.map(|e| e.into_value()) {
                Some(w) if now.saturating_duration_since(w.started) < WINDOW => Window {
                    failures: w.failures.saturating_add(1),
                    ..w
                },
                _ => Window {
                    started: now,
                    failures: 1,
                },
            });
    }
}

/// Reads the request body. `pub` for the fuzz target (`fuzz_api`).
///
/// The body must be UTF-8 as a whole: serde_json checks the strings it keeps, not the ones
/// it skips, so bytes that are not UTF-8 inside an unknown member would otherwise pass for
/// JSON (found by the `token_body` fuzz target).
#[doc(hidden)]
pub fn read_body(bytes: &[u8]) -> Result<Credentials, Error> {
    std::str::from_utf8(bytes)
        .ok()
        // An object only: serde's derived reading also takes a struct as an array of its
        // fields in order (`["ak", "sk"]`; found by the `token_body` fuzz target).
        .filter(|text| {
            text.trim_start_matches([' ', '\t', '\n', '\r'])
                .starts_with('{')
        })
        .and_then(|text| serde_json::from_str(text).ok())
        .ok_or(Error::MalformedRequest(
            "token request is not {\"accessKey\", \"secretKey\"}",
        ))
}

fn key_slot(access_key: &str) -> String {
    format!("key:{access_key}")
}

fn address_slot(address: &str) -> String {
    format!("addr:{address}")
}

/// A successful exchange: the token and its lifetime, and who got it.
pub struct Minted {
    pub access_token: String,
    pub expire_in: u64,
    pub client_id: HeaderValue,
}

impl Minted {
    /// The answer's body: `{"accessToken", "expireIn"}`.
    pub fn body(&self) -> String {
        json!({ "accessToken": self.access_token, "expireIn": self.expire_in }).to_string()
    }
}

/// Everything an exchange needs besides the request.
pub struct Exchange<'a> {
    pub policy: &'a Policy,
    pub guard: &'a Guard,
    pub limiter: &'a Limiter,
    /// The client's address, as `X-Real-IP` carries it.
    pub address: &'a str,
}

impl Exchange<'_> {
    /// Checks the client's credentials and mints its token.
    pub async fn run(&self, headers: &HeaderMap, body: Body, now: f64) -> Result<Minted, Error> {
        let (Some(endpoint), Some(issuer)) = (&self.policy.token_endpoint, &self.policy.issuer)
        else {
            return Err(Error::NoRoute);
        };
        let started = Instant::now();
        let address = address_slot(self.address);
        if let Some(retry_after_secs) = self.guard.locked(&address, started) {
            return Err(Error::RateLimited { retry_after_secs });
        }
        if !is_json(headers) {
            return Err(Error::MalformedRequest(
                "token request is not application/json",
            ));
        }
        let bytes = read_limited(body, MAX_BODY).await?;
        let creds = read_body(&bytes)?;
        let key = key_slot(&creds.access_key);
        if let Some(retry_after_secs) = self.guard.locked(&key, started) {
            return Err(Error::RateLimited { retry_after_secs });
        }
        let client = endpoint.clients.get(&creds.access_key);
        let presented =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, creds.secret_key.as_bytes());
        // An unknown key is compared too, against a hash no secret has, so both failures
        // take the same path and the same time.
        let expected = client.map_or(&[0u8; 32], |c| &c.secret_sha256);
        let matches =
            aws_lc_rs::constant_time::verify_slices_are_equal(presented.as_ref(), expected).is_ok();
        let client = match client {
            Some(c) if matches => c,
            _ => {
                self.guard.failed(key, started);
                self.guard.failed(address, started);
                return Err(Error::InvalidClient);
            }
        };
        if let Some(limit) = &client.rate_limit {
            let d = self.limiter.check(&limit.bucket, limit.rate).await?;
            if !d.allowed {
                return Err(Error::RateLimited {
                    retry_after_secs: d.retry_after_secs,
                });
            }
        }
        let iat = now.floor() as u64;
        let claims = json!({
            "iss": issuer.name,
            "aud": issuer.name,
            "appId": client.app.client_id,
            "sub": client.app.client_id,
            "iat": iat,
            "exp": iat + endpoint.ttl_secs,
            "jti": uuid::Uuid::new_v4().to_string(),
            "sgb": client.binding,
        });
        let access_token = issuer
            .sign(&claims)
            .map_err(|_| Error::KeysUnavailable("the issuer could not sign".into()))?;
        Ok(Minted {
            access_token,
            expire_in: endpoint.ttl_secs,
            client_id: client.app.id_header.clone(),
        })
    }
}

/// `application/json`, with or without parameters (`; charset=utf-8`).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `token_body` fuzz target: a byte that is not UTF-8 in the name of an
    /// unknown member was skipped unchecked, and the body taken for JSON.
    #[test]
    fn a_body_that_is_not_utf8_is_refused_wherever_the_bytes_are() {
        let ok = br#"{"accessKey":"ak-1","secretKey":"sk-1","extra":[1,2,{"x":null}]}"#;
        assert_eq!(read_body(ok).unwrap().access_key, "ak-1");
        let bad = b"{\"accessKey\":\"ak-1\",\"secretKey\":\"sk-1\",\"extra\":[{\"\xf8\":null}]}";
        assert!(serde_json::from_slice::<serde_json::Value>(bad).is_err());
        assert_eq!(
            read_body(bad).err().map(|e| e.code()),
            Some("malformed_request")
        );
    }

    #[test]
    fn the_eleventh_failure_in_a_minute_locks_out_until_the_minute_ends() {
        let g = Guard::new(100);
        let t0 = Instant::now();
        for i in 0..ALLOWED_FAILURES {
            assert_eq!(g.locked("k", t0), None, "after {i} failures");
            g.failed("k".into(), t0 + Duration::from_secs(i as u64));
        }
        assert_eq!(g.locked("k", t0 + Duration::from_secs(10)), Some(50));
        assert_eq!(g.locked("k", t0 + Duration::from_millis(59_500)), Some(1));
        assert_eq!(g.locked("k", t0 + WINDOW), None);
        assert_eq!(g.locked("other", t0), None);
        // A failure after the minute starts a new one.
        g.failed("k".into(), t0 + WINDOW);
        assert_eq!(g.locked("k", t0 + WINDOW), None);
    }

    #[test]
    fn the_counters_stay_within_their_capacity() {
        let g = Guard::new(50);
        let now = Instant::now();
        for i in 0..2_000 {
            g.failed(format!("addr:{i}"), now);
        }
        g.failures.run_pending_tasks();
        assert!(
            g.failures.entry_count() <= 50,
            "{}",
            g.failures.entry_count()
        );
    }

    #[test]
    fn only_an_object_is_read_as_credentials() {
        assert!(read_body(br#" {"accessKey": "a", "secretKey": "s"}"#).is_ok());
        for body in [&br#"["a", "s"]"#[..], b" [\"\",\"\"]", b"\"a\"", b""] {
            assert!(read_body(body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn only_json_content_types_are_read() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h));
        for (v, ok) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("text/plain", false),
            ("application/json-patch+json", false),
        ] {
            h.insert(header::CONTENT_TYPE, v.parse().unwrap());
            assert_eq!(is_json(&h), ok, "{v}");
        }
    }
}
