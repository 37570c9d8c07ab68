//! `policies/example.yaml` against the reference it is written from
//! (`../shared/reference/bot-api-surface.md`): every endpoint listed there is routed, behind
//! a credential, and each of the conversational-AI platform's 23 API scopes has a scope of
//! its own that guards exactly its endpoints.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use http::Method;
use scopegate::path::Normalized;
use scopegate::policy::compile::Context;
use scopegate::policy::snapshot::Policies;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// One table row of the reference: its first cell, the methods it names, its paths.
struct Row {
    name: String,
    methods: Vec<Method>,
    paths: Vec<String>,
}

fn rows(section: &str) -> Vec<Row> {
    let file = Path::new(REPO).join("../shared/reference/bot-api-surface.md");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
    let body = text
        .split("\n## ")
        .find(|s| s.starts_with(section))
        .unwrap_or_else(|| panic!("no section {section}"));
    let mut rows = Vec::new();
    for line in body.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        if cells.len() < 3 || cells[0] == "| scope" || cells[0].starts_with("| ---") {
            continue;
        }
        let text = cells[1..].join(" ");
        let all = ["GET", "POST", "PUT", "PATCH", "DELETE"];
        let mut methods: Vec<Method> = all
            .into_iter()
            .filter(|m| text.contains(m))
            .map(|m| m.parse().unwrap())
            .collect();
        if methods.is_empty() {
            // A row that names no method ("view / create, update integrations").
            methods = all.into_iter().map(|m| m.parse().unwrap()).collect();
        }
        // Paths are backticked; `…/x` continues the row's first path's `{botId}` prefix.
        let mut paths: Vec<String> = Vec::new();
        for quoted in text.split('`').skip(1).step_by(2) {
            let path = match quoted.strip_prefix("…") {
                Some(rest) => {
                    let first = &paths[0];
                    let base = &first[..first.find("{botId}").unwrap() + "{botId}".len()];
                    format!("{base}{rest}")
                }
                None if quoted.starts_with('/') => quoted.to_string(),
                None => continue, // `bots:read` and the like
            };
            paths.push(path);
        }
        rows.push(Row {
            name: cells[0].trim_start_matches("| ").to_string(),
            methods,
            paths,
        });
    }
    assert!(rows.len() > 5, "no rows read from section {section}");
    rows
}

/// `{param}` -> a sample value.
fn concrete(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap() + start;
        out.push_str("x1");
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn example() -> Policies {
    // The policy's secrets come from the environment; a copy names them inline instead.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(Path::new(REPO).join("policies/example.yaml"))
        .unwrap()
        .replace("{ env: REPORTING_CLIENT_SECRET }", "{ value: s1 }")
        .replace("{ env: DATA_APP_CLIENT_SECRET }", "{ value: s2 }")
        .replace(": keys/", &format!(": {REPO}/policies/keys/"));
    let file = dir.path().join("example.yaml");
    std::fs::write(&file, text).unwrap();
    let ctx = Context {
        upstreams: None,
        identity_prefix: "x-auth-".into(),
        test_environment: None,
        jwks: None,
    };
    Policies::load(&file, ctx)
        .unwrap_or_else(|e| panic!("{e}"))
        .0
}

/// The scopes (joined) of the route each of the row's paths reaches with any of its
/// methods; panics naming the endpoint when none does, or when it is open.
fn scopes_of(policies: &Policies, row: &Row) -> BTreeSet<String> {
    let snap = policies.current();
    let policy = &snap.policy;
    let mut found = BTreeSet::new();
    for template in &row.paths {
        let path = concrete(template);
        let normalized = Normalized::new(&path).unwrap();
        let routes: Vec<_> = row
            .methods
            .iter()
            .filter_map(|m| policy.router.at(m, &normalized))
            .map(|m| &policy.routes[m.route])
            .collect();
        assert!(
            !routes.is_empty(),
            "{}: {:?} {template} has no route",
            row.name,
            row.methods
        );
        for route in routes {
            assert!(
                !route.auth.only_none(),
                "{}: route {} is open",
                row.name,
                route.id
            );
            assert!(
                !route.scopes.is_empty() || route.resource.is_some(),
                "{}: route {} asks for nothing",
                row.name,
                route.id
            );
            found.insert(policy.scopes.join(&route.scopes));
        }
    }
    found
}

#[test]
fn every_endpoint_of_the_conversational_platform_is_routed_and_each_api_scope_is_its_own() {
    let policies = example();
    let mut api_scopes: BTreeMap<String, String> = BTreeMap::new();
    for row in rows("1.") {
        let scopes = scopes_of(&policies, &row);
        if row.name.starts_with("(admin)") || row.name.starts_with("Data tables") {
            continue;
        }
        // One of the 23 API scopes: all its endpoints under one policy scope, its own.
        assert_eq!(scopes.len(), 1, "{}: {scopes:?}", row.name);
        let scope = scopes.into_iter().next().unwrap();
        if let Some(other) = api_scopes.insert(scope.clone(), row.name.clone()) {
            panic!("{} and {other} share the scope {scope}", row.name);
        }
    }
    assert_eq!(api_scopes.len(), 23, "{api_scopes:?}");
}

#[test]
fn every_endpoint_of_the_chatbot_platform_is_routed_behind_its_resource_action_scope() {
    let policies = example();
    for row in rows("2.") {
        let scopes = scopes_of(&policies, &row);
        let named: Vec<&str> = row.name.split('`').skip(1).step_by(2).collect();
        if named == ["admin"] {
            continue; // every scope check passes for `admin` (SPEC §1.2)
        }
        // `integrations:read` / `:write`: the row's resource and actions.
        let resource = named[0].split(':').next().unwrap();
        for scope in &scopes {
            assert!(
                scope.starts_with(&format!("{resource}:")),
                "{}: {scope}",
                row.name
            );
        }
        assert_eq!(scopes.len(), 2, "{}: read and write: {scopes:?}", row.name);
    }
}
