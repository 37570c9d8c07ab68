//! The record format of SPEC §3.8, both ways: what `scopegate keys …` (or any Redis client)
//! writes, and what a replica reads back and compiles against the policy in force.
//!
//! `scopegate:key:<sha256 hex>` is a hash with the fields of a policy `api_keys` entry
//! (`id`, `name`, `environment`, `scopes` space-separated, `resources` as JSON, `expires` as
//! RFC 3339, `disabled` as `true`/`false`, `rate_limit` as JSON); `scopegate:key-id:<id>`
//! holds the sha256. Changes are announced on `scopegate:key-events` with the sha256.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use http::HeaderValue;
use prometheus::IntCounter;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::policy::{
    Action, Actions, ApiKey, Environment, Grants, KindGrant, Limit, Policy, RateLimit,
};

/// The channel every change is published on; the payload is the key's sha256 (hex).
pub const EVENTS: &str = "scopegate:key-events";

pub fn record_key(sha256_hex: &str) -> String {
    format!("scopegate:key:{sha256_hex}")
}

pub fn id_key(id: &str) -> String {
    format!("scopegate:key-id:{id}")
}

/// The grants of one resource kind: a list grants every action on its items, a map the
/// listed actions per item, as in the policy.
#[derive(Debug, Clone, PartialEq)]
pub enum Grant {
    List(Vec<String>),
    Map(BTreeMap<String, Vec<Action>>),
}

/// One key as stored. Its hash is the Redis key, not a field.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: String,
    pub name: Option<String>,
    pub environment: Environment,
    pub scopes: Vec<String>,
    pub resources: BTreeMap<String, Grant>,
    /// Unix seconds.
    pub expires: Option<i64>,
    pub disabled: bool,
    pub rate_limit: Option<RateLimit>,
}

impl Record {
    /// Reads a record from its hash's fields. An empty hash is no record; a field that
    /// does not parse makes the whole record unusable (the error names the field, never
    /// the key).
    pub fn from_fields(fields: &HashMap<String, String>) -> Result<Option<Record>, String> {
        if fields.is_empty() {
            return Ok(None);
        }
        let get = |f: &str| fields.get(f).map(String::as_str);
        let id = get("id").filter(|i| !i.is_empty()).ok_or("no id")?;
        let environment = match get("environment").unwrap_or("live") {
            "live" => Environment::Live,
            "test" => Environment::Test,
            e => return Err(format!("environment {e:?} is neither live nor test")),
        };
        let scopes = get("scopes")
            .unwrap_or("")
            .split_ascii_whitespace()
            .map(str::to_string)
            .collect();
        let resources = match get("resources").filter(|r| !r.is_empty()) {
            None => BTreeMap::new(),
            Some(json) => parse_resources(json)?,
        };
        let expires = match get("expires").filter(|e| !e.is_empty()) {
            None => None,
            Some(e) => Some(parse_time(e)?),
        };
        let disabled = match get("disabled").unwrap_or("false") {
            "true" => true,
            "false" => false,
            d => return Err(format!("disabled {d:?} is neither true nor false")),
        };
        let rate_limit = match get("rate_limit").filter(|r| !r.is_empty()) {
            None => None,
            Some(json) => Some(parse_rate_limit(json)?),
        };
        Ok(Some(Record {
            id: id.to_string(),
            name: get("name").filter(|n| !n.is_empty()).map(str::to_string),
            environment,
            scopes,
            resources,
            expires,
            disabled,
            rate_limit,
        }))
    }

    /// The hash's fields, for `HSET`.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            ("id", self.id.clone()),
            (
                "environment",
                match self.environment {
                    Environment::Live => "live",
                    Environment::Test => "test",
                }
                .to_string(),
            ),
            ("scopes", self.scopes.join(" ")),
            ("resources", resources_json(&self.resources).to_string()),
            ("disabled", self.disabled.to_string()),
        ];
        if let Some(name) = &self.name {
            out.push(("name", name.clone()));
        }
        if let Some(e) = self.expires {
            out.push(("expires", format_time(e)));
        }
        if let Some(r) = self.rate_limit {
            let json = json!({ "per_second": r.per_second, "burst": r.burst });
            out.push(("rate_limit", json.to_string()));
        }
        out
    }

    /// The key as the request path uses it, against `policy`: scopes and resource kinds the
    /// policy does not declare are dropped (they grant nothing) and counted in `unknown`.
    /// `Err` when the record cannot stand for a key at all (an id no header can carry).
    pub fn compile(&self, policy: &Policy, unknown: &IntCounter) -> Result<ApiKey, String> {
        let id = HeaderValue::from_str(&self.id)
            .ok()
            .filter(|h| h.to_str().is_ok())
            .ok_or("the id is not printable ASCII")?;
        let undeclared = self
            .scopes
            .iter()
            .filter(|s| policy.scopes.get(s).is_none())
            .count();
        let scopes = policy.scopes.set(self.scopes.iter().map(String::as_str));
        let scopes_header = HeaderValue::from_str(&policy.scopes.join(&scopes))
            .unwrap_or(HeaderValue::from_static(""));
        let mut grants = HashMap::new();
        let mut unknown_kinds = 0;
        for (kind, grant) in &self.resources {
            if !declares_kind(policy, kind) {
                unknown_kinds += 1;
                continue;
            }
            grants.insert(kind.clone(), kind_grant(grant));
        }
        unknown.inc_by((undeclared + unknown_kinds) as u64);
        Ok(ApiKey {
            rate_limit: self.rate_limit.map(|rate| {
                Arc::new(Limit {
                    rate,
                    bucket: format!("key:{}", self.id).into(),
                })
            }),
            id,
            environment: self.environment,
            scopes,
            scopes_header,
            grants: Arc::new(Grants(grants)),
            expires: self.expires,
            disabled: self.disabled,
        })
    }
}

/// A resource kind is declared by a route that names it (`resource: { kind }`).
pub fn declares_kind(policy: &Policy, kind: &str) -> bool {
    policy
        .routes
        .iter()
        .any(|r| r.resource.as_ref().is_some_and(|res| res.kind == kind))
}

fn kind_grant(grant: &Grant) -> KindGrant {
    let mut kg = KindGrant::default();
    let mut put = |item: &str, actions: Actions| {
        if item == "*" {
            kg.any_item = kg.any_item.union(actions);
        } else {
            let held = kg.items.entry(item.to_string()).or_default();
            *held = held.union(actions);
        }
    };
    match grant {
        Grant::List(items) => items.iter().for_each(|i| put(i, Actions::ALL)),
        Grant::Map(items) => {
            for (item, actions) in items {
                let a = actions
                    .iter()
                    .fold(Actions::default(), |acc, a| acc.union(Actions::of(*a)));
                put(item, a);
            }
        }
    }
    kg
}

pub fn parse_time(s: &str) -> Result<i64, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| format!("expires {s:?} is not an RFC 3339 time"))
}

pub fn format_time(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

pub fn parse_action(s: &str) -> Result<Action, String> {
    match s {
        "read" => Ok(Action::Read),
        "write" => Ok(Action::Write),
        "delete" => Ok(Action::Delete),
        a => Err(format!("action {a:?} is not read, write or delete")),
    }
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Read => "read",
        Action::Write => "write",
        Action::Delete => "delete",
    }
}

fn parse_resources(json: &str) -> Result<BTreeMap<String, Grant>, String> {
    let bad = || "resources is not a JSON object of kind to a list or a map".to_string();
    let Ok(Value::Object(kinds)) = serde_json::from_str::<Value>(json) else {
        return Err(bad());
    };
    let strings = |v: &Value| -> Result<Vec<String>, String> {
        v.as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|s| s.as_str().map(str::to_string).ok_or_else(bad))
            .collect()
    };
    let mut out = BTreeMap::new();
    for (kind, grant) in kinds {
        let grant = match &grant {
            Value::Array(_) => Grant::List(strings(&grant)?),
            Value::Object(items) => {
                let mut map = BTreeMap::new();
                for (item, actions) in items {
                    let actions = strings(actions)?
                        .iter()
                        .map(|a| parse_action(a))
                        .collect::<Result<Vec<_>, _>>()?;
                    map.insert(item.clone(), actions);
                }
                Grant::Map(map)
            }
            _ => return Err(bad()),
        };
        out.insert(kind, grant);
    }
    Ok(out)
}

fn resources_json(resources: &BTreeMap<String, Grant>) -> Value {
    let mut kinds = Map::new();
    for (kind, grant) in resources {
        let v = match grant {
            Grant::List(items) => json!(items),
            Grant::Map(items) => Value::Object(
                items
                    .iter()
                    .map(|(item, actions)| {
                        let names: Vec<&str> = actions.iter().map(|a| action_name(*a)).collect();
                        (item.clone(), json!(names))
                    })
                    .collect(),
            ),
        };
        kinds.insert(kind.clone(), v);
    }
    Value::Object(kinds)
}

pub fn parse_rate_limit(json: &str) -> Result<RateLimit, String> {
    let v: Value = serde_json::from_str(json).map_err(|_| "rate_limit is not JSON")?;
    let per_second = v.get("per_second").and_then(Value::as_f64);
    let burst = v.get("burst").and_then(Value::as_u64);
    match (per_second, burst) {
        (Some(p), Some(b))
            if p.is_finite() && p > 0.0 && (1..=u64::from(u32::MAX)).contains(&b) =>
        {
            Ok(RateLimit {
                per_second: p,
                burst: b as u32,
            })
        }
        _ => Err("rate_limit needs per_second > 0 and burst >= 1".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_record_reads_back_what_was_written() {
        let r = Record {
            id: "cust-1".into(),
            name: Some("Customer one".into()),
            environment: Environment::Test,
            scopes: vec!["bots:read".into(), "reports".into()],
            resources: BTreeMap::from([
                ("bots".into(), Grant::List(vec!["*".into()])),
                (
                    "tables".into(),
                    Grant::Map(BTreeMap::from([(
                        "orders".into(),
                        vec![Action::Read, Action::Write],
                    )])),
                ),
            ]),
            expires: Some(1_900_000_000),
            disabled: false,
            rate_limit: Some(RateLimit {
                per_second: 2.5,
                burst: 5,
            }),
        };
        let written: HashMap<String, String> = r
            .fields()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(written["scopes"], "bots:read reports");
        assert_eq!(written["expires"], "2030-03-17T17:46:40Z");
        assert_eq!(Record::from_fields(&written).unwrap(), Some(r));
    }

    #[test]
    fn an_empty_hash_is_no_record_and_a_bad_field_spoils_the_record() {
        assert_eq!(Record::from_fields(&HashMap::new()).unwrap(), None);
        let minimal = Record::from_fields(&fields(&[("id", "k")]))
            .unwrap()
            .unwrap();
        assert_eq!(
            (minimal.environment, minimal.disabled),
            (Environment::Live, false)
        );
        for (field, value, says) in [
            ("environment", "prod", "environment"),
            ("disabled", "yes", "disabled"),
            ("expires", "tomorrow", "RFC 3339"),
            ("resources", "[1]", "resources"),
            ("resources", r#"{"bots":{"b":["fly"]}}"#, "action"),
            ("rate_limit", r#"{"per_second":0,"burst":1}"#, "per_second"),
        ] {
            let e = Record::from_fields(&fields(&[("id", "k"), (field, value)])).unwrap_err();
            assert!(e.contains(says), "{field}: {e}");
        }
        assert!(Record::from_fields(&fields(&[("scopes", "a")])).is_err());
    }
}
