//! `scopegate explain` and `scopegate test`: the proxy's decision for a request, offline,
//! and suites of such requests with the outcome each must get (SPEC §2).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use scopegate::config::Unmatched;
use scopegate::decide::Decider;
use scopegate::explain::{self, Explanation};
use scopegate::policy::compile::Context;
use scopegate::policy::snapshot::{Policies, Snapshot};
use serde::Deserialize;

/// Loads the policy as `check` does; `Err` carries the exit code after printing why.
fn load(policy: &Path) -> Result<Policies, ExitCode> {
    Policies::load(policy, Context::standalone())
        .map(|(p, _)| p)
        .map_err(|e| {
            eprintln!("{e}");
            ExitCode::from(1)
        })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}

/// `Name: value` pairs into a header map; `Err` names the one that is not a header.
fn headers(pairs: &[String]) -> Result<HeaderMap, String> {
    let mut h = HeaderMap::new();
    for pair in pairs {
        let (name, value) = pair
            .split_once(':')
            .ok_or_else(|| format!("-H {pair:?}: expected 'Name: value'"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("-H {pair:?}: not a header name"))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("-H {pair:?}: not a header value"))?;
        h.append(name, value);
    }
    Ok(h)
}

pub(super) fn explain(
    policy: &Path,
    method: &str,
    path: &str,
    header_args: &[String],
    json: bool,
    unmatched: Unmatched,
) -> ExitCode {
    let (Ok(method), Ok(headers)) = (Method::from_bytes(method.as_bytes()), headers(header_args))
    else {
        let why = headers(header_args)
            .err()
            .unwrap_or(format!("--method {method:?}: not a method"));
        eprintln!("{why}");
        return ExitCode::from(2);
    };
    let policies = match load(policy) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let decider = explain::offline_decider(unmatched);
    let snap = policies.current();
    let e = runtime().block_on(explain::explain(
        &decider,
        &snap,
        &method,
        path,
        &headers,
        Default::default(),
    ));
    if json {
        println!("{}", e.to_json());
    } else {
        print!("{}", e.to_text());
    }
    if e.forwarded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// One case of a policy test suite (SPEC §2).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    request: CaseRequest,
    expect: Expect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseRequest {
    method: String,
    path: String,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    status: u16,
    code: Option<String>,
}

pub(super) fn test(policy: &Path, cases_file: &Path, unmatched: Unmatched) -> ExitCode {
    let text = match std::fs::read_to_string(cases_file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: {e}", cases_file.display());
            return ExitCode::from(2);
        }
    };
    let cases: Vec<Case> = match scopegate::yaml::parse(cases_file, &text) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let policies = match load(policy) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let snap = policies.current();
    let decider = explain::offline_decider(unmatched);
    let rt = runtime();
    let (mut passed, mut failed) = (0, 0);
    for case in &cases {
        match rt.block_on(run_case(&decider, &snap, case)) {
            Ok(e) if matches(case, &e) => passed += 1,
            Ok(e) => {
                failed += 1;
                println!(
                    "FAIL {}: expected {} {}, got {} {}\n{}",
                    case.name,
                    case.expect.status,
                    case.expect.code.as_deref().unwrap_or("(any code)"),
                    e.status,
                    e.code,
                    indent(&e.to_text())
                );
            }
            Err(why) => {
                failed += 1;
                println!("FAIL {}: {why}", case.name);
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn matches(case: &Case, e: &Explanation) -> bool {
    e.status == case.expect.status && case.expect.code.as_deref().is_none_or(|c| c == e.code)
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

async fn run_case(decider: &Decider, snap: &Snapshot, case: &Case) -> Result<Explanation, String> {
    let method = Method::from_bytes(case.request.method.as_bytes())
        .map_err(|_| format!("{:?} is not a method", case.request.method))?;
    let pairs = case
        .request
        .headers
        .iter()
        .map(|(k, v)| Ok(format!("{k}: {}", expand(snap, v)?)))
        .collect::<Result<Vec<_>, String>>()?;
    let headers = headers(&pairs)?;
    Ok(explain::explain(
        decider,
        snap,
        &method,
        &case.request.path,
        &headers,
        Default::default(),
    )
    .await)
}

/// Expands `{{token app=ID [scope=S]... [ttl=D]}}` (a token minted with the policy's own
/// secret) and `{{env NAME}}` in a header value.
fn expand(snap: &Snapshot, value: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .ok_or_else(|| format!("unclosed {{{{ in {value:?}"))?;
        let inner = rest[start + 2..start + end].trim();
        out.push_str(&placeholder(snap, inner)?);
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn placeholder(snap: &Snapshot, inner: &str) -> Result<String, String> {
    let mut words = inner.split_whitespace();
    match words.next() {
        Some("env") => {
            let name = words.next().ok_or("{{env}} needs a variable name")?;
            std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
        }
        Some("token") => {
            let (mut app, mut scopes, mut ttl) = (None, Vec::new(), Duration::from_secs(600));
            for w in words {
                match w.split_once('=') {
                    Some(("app", v)) => app = Some(v),
                    Some(("scope", v)) => scopes.push(v.to_string()),
                    Some(("ttl", v)) => {
                        ttl = humantime::parse_duration(v).map_err(|e| format!("ttl={v}: {e}"))?
                    }
                    _ => return Err(format!("{{{{token}}}}: unknown argument {w:?}")),
                }
            }
            let id = app.ok_or("{{token}} needs app=CLIENT_ID")?;
            let app = snap
                .policy
                .apps
                .get(id)
                .ok_or_else(|| format!("no app with client_id {id:?}"))?;
            let now = scopegate::decide::unix_now() as u64;
            scopegate::auth::mint::mint(
                app,
                snap.policy.app_id_claim(),
                &scopes,
                ttl.as_secs(),
                true,
                now,
            )
        }
        _ => Err(format!("unknown placeholder {{{{{inner}}}}}")),
    }
}
