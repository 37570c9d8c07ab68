//! `scopegate keys`: API keys in the key store (SPEC §2, §3.8). Parsing and checking happen
//! here; the Redis side is `auth::key_store::write`. Every failure is one line on stderr and
//! exit 1 (clap answers usage errors with exit 2).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use scopegate::auth::key_store::record::{self, Grant, Record};
use scopegate::auth::key_store::write;
use scopegate::policy::compile::{self, Context};
use scopegate::policy::raw::{RawApiKeys, RawGrant};
use scopegate::policy::{Action, Environment, RateLimit};
use scopegate::store::Redis;

/// How long a command waits for Redis to connect or answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// `--resource KIND=ITEM[:ACTIONS]`, as clap parses it.
#[derive(Clone, Debug)]
pub(super) struct ResourceArg {
    kind: String,
    item: String,
    /// `None`: every action (the list form of the policy).
    actions: Option<Vec<Action>>,
}

pub(super) fn parse_resource(s: &str) -> Result<ResourceArg, String> {
    let (kind, rest) = s
        .split_once('=')
        .ok_or("expected KIND=ITEM[:ACTIONS], e.g. bots=st-1234 or tables=orders:read,write")?;
    let (item, actions) = match rest.split_once(':') {
        Some((item, actions)) => {
            let actions = actions
                .split(',')
                .map(record::parse_action)
                .collect::<Result<Vec<_>, _>>()?;
            (item, Some(actions))
        }
        None => (rest, None),
    };
    if kind.is_empty() || item.is_empty() {
        return Err("expected KIND=ITEM[:ACTIONS] with a kind and an item".into());
    }
    Ok(ResourceArg {
        kind: kind.into(),
        item: item.into(),
        actions,
    })
}

/// `--rate PER_SECOND/BURST`.
pub(super) fn parse_rate(s: &str) -> Result<RateLimit, String> {
    let bad = || format!("expected PER_SECOND/BURST (e.g. 10/20), got {s:?}");
    let (p, b) = s.split_once('/').ok_or_else(bad)?;
    let per_second: f64 = p.parse().map_err(|_| bad())?;
    let burst: u32 = b.parse().map_err(|_| bad())?;
    if !(per_second.is_finite() && per_second > 0.0) || burst == 0 {
        return Err("a rate needs PER_SECOND > 0 and BURST >= 1".into());
    }
    Ok(RateLimit { per_second, burst })
}

/// `--expires` as RFC 3339.
pub(super) fn parse_expires(s: &str) -> Result<i64, String> {
    record::parse_time(s)
}

/// `--environment live|test`.
pub(super) fn parse_environment(s: &str) -> Result<Environment, String> {
    match s {
        "live" => Ok(Environment::Live),
        "test" => Ok(Environment::Test),
        _ => Err("live or test".into()),
    }
}

pub(super) struct Put {
    pub store: String,
    pub policy: std::path::PathBuf,
    pub id: String,
    pub name: Option<String>,
    pub scopes: Vec<String>,
    pub resources: Vec<ResourceArg>,
    pub environment: Environment,
    pub expires: Option<i64>,
    pub rate: Option<RateLimit>,
    pub prefix: Option<String>,
}

/// `keys put`: checks the key against the policy, stores it, prints it once.
pub(super) fn put(p: Put) -> ExitCode {
    let compiled = match compile::load(&p.policy, &Context::standalone()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let policy = &compiled.policy;
    if let Some(s) = p.scopes.iter().find(|s| policy.scopes.get(s).is_none()) {
        return fail(format!(
            "scope {s:?} is not declared in the policy's `scopes` ({})",
            p.policy.display()
        ));
    }
    if let Some(r) = p
        .resources
        .iter()
        .find(|r| !record::declares_kind(policy, &r.kind))
    {
        return fail(format!(
            "resource kind {:?} is not used by any route of the policy ({})",
            r.kind,
            p.policy.display()
        ));
    }
    if !valid_id(&p.id) {
        return fail(format!("id {:?} must be non-empty printable ASCII", p.id));
    }
    let prefix = p.prefix.unwrap_or_else(|| match p.environment {
        Environment::Live => "sk_live_".into(),
        Environment::Test => "sk_test_".into(),
    });
    let (key, hash) = scopegate::auth::api_key::generate(&prefix);
    let record = Record {
        id: p.id,
        name: p.name,
        environment: p.environment,
        scopes: p.scopes,
        resources: grants(p.resources),
        expires: p.expires,
        disabled: false,
        rate_limit: p.rate,
    };
    let done = with_store(&p.store, |redis| async move {
        write::put(&redis, &hash, &record).await?;
        Ok((record.id, hash))
    });
    match done {
        Ok((id, hash)) => {
            println!("key:    {key}");
            println!("id:     {id}");
            println!("sha256: {hash}");
            eprintln!("the key is shown once: store it now");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `--resource` arguments into the policy's form: a kind whose items all grant every
/// action is a list, else a map.
fn grants(args: Vec<ResourceArg>) -> BTreeMap<String, Grant> {
    let mut by_kind: BTreeMap<String, Vec<ResourceArg>> = BTreeMap::new();
    for a in args {
        by_kind.entry(a.kind.clone()).or_default().push(a);
    }
    by_kind
        .into_iter()
        .map(|(kind, items)| {
            let grant = if items.iter().all(|i| i.actions.is_none()) {
                Grant::List(items.into_iter().map(|i| i.item).collect())
            } else {
                let all = || vec![Action::Read, Action::Write, Action::Delete];
                Grant::Map(
                    items
                        .into_iter()
                        .map(|i| (i.item, i.actions.unwrap_or_else(all)))
                        .collect(),
                )
            };
            (kind, grant)
        })
        .collect()
}

/// `keys revoke`: disables the key and announces it.
pub(super) fn revoke(store: &str, id: &str) -> ExitCode {
    let id = id.to_string();
    match with_store(
        store,
        |redis| async move { write::revoke(&redis, &id).await },
    ) {
        Ok(()) => {
            println!("revoked");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `keys list`: the ids, one per line.
pub(super) fn list(store: &str) -> ExitCode {
    match with_store(store, |redis| async move { write::list(&redis).await }) {
        Ok(ids) => {
            use std::io::Write;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for id in ids {
                if writeln!(out, "{id}").is_err() {
                    break;
                }
            }
            let _ = out.flush();
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `keys import`: every `api_keys` entry of FILE (a policy, or a file with only
/// `api_keys:`), checked first as the policy would check it; nothing is written unless all are good.
pub(super) fn import(store: &str, file: &Path) -> ExitCode {
    let started = Instant::now();
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return fail(format!("{}: cannot read: {e}", file.display())),
    };
    let keys = match records(file, &text) {
        Ok(k) => k,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            return ExitCode::from(1);
        }
    };
    drop(text);
    let count = keys.len();
    match with_store(
        store,
        |redis| async move { write::import(&redis, keys).await },
    ) {
        Ok(written) => {
            println!(
                "imported {written} keys in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            debug_assert_eq!(written, count);
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// The document `keys import` reads: `api_keys` as in the policy; anything else a policy
/// holds is ignored, so a policy file itself can be imported.
#[derive(serde::Deserialize)]
struct ImportFile<'a> {
    #[serde(borrow, default)]
    api_keys: RawApiKeys<'a>,
}

fn records(file: &Path, text: &str) -> Result<Vec<(String, Record)>, Vec<String>> {
    // JSON is read by serde_json, ten times faster than the YAML parser (see the policy loader).
    let parsed: ImportFile = match text.trim_start().starts_with('{') {
        true => serde_json::from_str(text)
            .map_err(|e| vec![format!("{}:{}: {e}", file.display(), e.line())])?,
        false => scopegate::yaml::parse(file, text).map_err(|e| vec![e.to_string()])?,
    };
    let raw = parsed.api_keys;
    let mut errors = Vec::new();
    let mut ids = HashSet::with_capacity(raw.keys.len());
    let mut hashes = HashSet::with_capacity(raw.keys.len());
    let mut out = Vec::with_capacity(raw.keys.len());
    for k in &raw.keys {
        let mut err = |m: String| errors.push(format!("{}:{}: {m}", file.display(), k.line));
        let what = format!("api key {:?}", &*k.id);
        if !valid_id(&k.id) {
            err(format!("{what}: the id must be non-empty printable ASCII"));
        }
        if !ids.insert(&*k.id) {
            err(format!("{what}: the id is used twice"));
        }
        let hash = k.sha256.to_ascii_lowercase();
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            err(format!("{what}: sha256 must be 64 hex characters"));
        } else if !hashes.insert(hash.clone()) {
            err(format!("{what}: two api keys have the same sha256"));
        }
        let expires = match k.expires.as_deref().map(record::parse_time) {
            Some(Err(e)) => {
                err(format!("{what}: {e}"));
                None
            }
            Some(Ok(t)) => Some(t),
            None => None,
        };
        let rate_limit = k.rate_limit.as_ref().and_then(|r| {
            let ok = r.per_second.is_finite() && r.per_second > 0.0 && r.burst >= 1;
            if !ok {
                err(format!(
                    "{what}: rate_limit needs per_second > 0 and burst >= 1"
                ));
            }
            ok.then_some(RateLimit {
                per_second: r.per_second,
                burst: r.burst,
            })
        });
        let resources = raw.grants[k.grants]
            .1
            .iter()
            .map(|(kind, g)| {
                let grant = match g {
                    RawGrant::List(items) => {
                        Grant::List(items.iter().map(|i| i.to_string()).collect())
                    }
                    RawGrant::Map(items) => Grant::Map(
                        items
                            .iter()
                            .map(|(i, a)| (i.to_string(), a.clone()))
                            .collect(),
                    ),
                };
                (kind.to_string(), grant)
            })
            .collect();
        out.push((
            hash,
            Record {
                id: k.id.to_string(),
                name: k.name.as_ref().map(|n| n.to_string()),
                environment: k.environment,
                scopes: raw.scope_lists[k.scopes]
                    .1
                    .iter()
                    .map(|s| s.value.to_string())
                    .collect(),
                resources,
                expires,
                disabled: k.disabled,
                rate_limit,
            },
        ));
    }
    match errors.is_empty() {
        true => Ok(out),
        false => Err(errors),
    }
}

/// Ids travel in the `x-auth-key-id` header.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| (0x21..0x7f).contains(&b))
}

/// Connects to the store and runs `f` on a runtime of its own.
fn with_store<T, F, Fut>(url: &str, f: F) -> Result<T, String>
where
    F: FnOnce(Redis) -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let redis = Redis::connect(url, TIMEOUT)
            .await
            .map_err(|e| format!("key store: {e}"))?;
        f(redis).await
    })
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(1)
}
