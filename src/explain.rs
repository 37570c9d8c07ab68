//! What the proxy would decide for one request, and why, offline (SPEC §2 `explain` and
//! `test`): the proxy's own `decide`, with its check trace recorded, and no listener, no
//! upstream and no shared store. A single-use `jti` is checked against an empty store of
//! this process only, so nothing a real replica remembers is consumed. A JWKS app's keys
//! are fetched when a token needs them, by the proxy's code (`jwks::Source::on_demand`).

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{HeaderMap, Method};
use prometheus::{IntCounter, IntCounterVec, Opts};
use serde_json::json;

use crate::auth::cache::TokenCache;
use crate::auth::rate_limit::Limiter;
use crate::auth::replay::ReplayStore;
use crate::auth::verify::Verifier;
use crate::config::Unmatched;
use crate::decide::{self, Check, Decider, Outcome, Seen};
use crate::policy::snapshot::Snapshot;
use crate::wire::full;

/// The decision for one request, with the checks that led to it.
#[derive(Debug)]
pub struct Explanation {
    pub route: Option<String>,
    /// Kind and id of the verified principal, when one was.
    pub principal: Option<(&'static str, String)>,
    pub checks: Vec<Check>,
    /// 200 when the request would be forwarded.
    pub status: u16,
    /// `ok`, or the refusal's code (SPEC §6).
    pub code: &'static str,
}

impl Explanation {
    pub fn forwarded(&self) -> bool {
        self.status == 200
    }

    /// The `--format json` object of SPEC §2.
    pub fn to_json(&self) -> serde_json::Value {
        let outcome = |o: Outcome| match o {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Skip => "skip",
        };
        json!({
            "route": self.route,
            "principal": self.principal.as_ref().map(|(kind, id)| json!({ "kind": kind, "id": id })),
            "checks": self.checks.iter().map(|c| json!({
                "check": c.check,
                "outcome": outcome(c.outcome),
                "detail": c.detail,
            })).collect::<Vec<_>>(),
            "status": self.status,
            "code": self.code,
        })
    }

    /// The text form: the route, the principal, each check, the verdict.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "route: {}\nprincipal: {}\n",
            self.route.as_deref().unwrap_or("no_route"),
            self.principal
                .as_ref()
                .map_or("none".to_string(), |(k, id)| format!("{k} {id}")),
        );
        for c in &self.checks {
            let outcome = match c.outcome {
                Outcome::Pass => "pass",
                Outcome::Fail => "FAIL",
                Outcome::Skip => "skip",
            };
            out.push_str(&format!("  {:<10} {outcome:<4}  {}\n", c.check, c.detail));
        }
        out.push_str(&format!("=> {} {}\n", self.status, self.code));
        out
    }
}

/// A decider for offline use: memory stores of its own, counters registered nowhere.
pub fn offline_decider(unmatched: Unmatched) -> Decider {
    let counter = |name: &str| IntCounter::new(name, name).expect("valid counter");
    Decider {
        verifier: Verifier {
            cache: TokenCache::new(1_000),
            replay: ReplayStore::memory(),
            hits: counter("hits"),
            misses: counter("misses"),
        },
        limiter: Limiter::memory(),
        // Offline: keys are the policy's; a key-store key is refused as unknown.
        key_store: None,
        unmatched,
        environments: BTreeMap::new(),
        max_body_bytes: 10 * 1024 * 1024,
        shadow_denials: IntCounterVec::new(Opts::new("shadow", "shadow"), &["route", "code"])
            .expect("valid counter"),
    }
}

/// Decides on `method target` with `headers` (and `body`, which only a webhook route
/// reads) as the proxy would, recording each check.
pub async fn explain(
    decider: &Decider,
    snap: &Snapshot,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Explanation {
    let mut seen = Seen {
        principal_kind: "none",
        checks: Some(Vec::new()),
        ..Seen::default()
    };
    let raw_path = target.split_once('?').map_or(target, |(p, _)| p);
    let decided = match decide::normalize(raw_path) {
        Err(e) => {
            seen.check("path", Outcome::Fail, || format!("{}: {e}", e.code()));
            Err(e)
        }
        Ok(path) => {
            seen.check("path", Outcome::Pass, || path.to_string());
            let mut body = full(body);
            decider
                .decide(snap, method, &path, headers, &mut body, &mut seen)
                .await
                .map(|permit| permit.encrypts_payloads())
        }
    };
    if let Ok(true) = decided {
        seen.check("payload", Outcome::Pass, || {
            "the app opted into payload encryption: bodies are decrypted and sealed".into()
        });
    }
    let (status, code) = match &decided {
        Ok(_) => (200, "ok"),
        Err(e) => (e.status().as_u16(), e.code()),
    };
    Explanation {
        route: seen.route.map(str::to_string),
        principal: seen
            .principal_id
            .as_ref()
            .and_then(|id| id.to_str().ok())
            .map(|id| (seen.principal_kind, id.to_string()))
            .or_else(|| (seen.principal_kind == "webhook").then(|| ("webhook", "-".into()))),
        checks: seen.checks.take().unwrap_or_default(),
        status,
        code,
    }
}
