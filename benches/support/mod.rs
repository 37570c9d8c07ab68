//! Shared by the benchmarks: policies of a given size.
#![allow(dead_code)]

use std::fmt::Write;

pub const HS_SECRET: &str = "bench-client-secret-0123456789abcdef";

/// The key the benchmarks present; the policy holds its hash as key 0.
pub fn api_key(i: usize) -> String {
    format!("sk_live_bench_{i:08}")
}

pub fn sha256_hex(s: &str) -> String {
    scopegate::policy::compile::sha256_hex(s.as_bytes())
}

/// A policy with `apps` HS256 apps (`app-0` …), `keys` API keys and `routes` routes
/// (route 0 is `GET /v1/bots/{botId}`, route 1 `GET /open`, auth none). `extra_routes` YAML
/// lines are appended to the routes list (e.g. an RS256/ES256 route).
pub fn policy(apps: usize, keys: usize, routes: usize, extra_apps: &str) -> String {
    let mut s = String::with_capacity(apps * 200 + keys * 150 + routes * 150);
    s.push_str("version: 1\nscopes:\n  bots:read: r\n  bots:write: w\n  admin: a\nroutes:\n");
    s.push_str("  - { id: bot-read, methods: [GET], path: \"/v1/bots/{botId}\", auth: [jwt, api_key], scopes: [bots:read], resource: { kind: bots, param: botId } }\n");
    s.push_str("  - { id: open, methods: [GET], path: /open, auth: [none] }\n");
    for i in 2..routes {
        let _ = writeln!(
            s,
            "  - {{ id: r{i}, methods: [GET, POST], path: \"/api/public/bot/{{botId}}/family{i}/{{item}}\", auth: [jwt], scopes: [bots:read], resource: {{ kind: bots, param: botId }} }}"
        );
    }
    s.push_str("apps:\n");
    for i in 0..apps {
        let _ = writeln!(
            s,
            "  - {{ client_id: app-{i}, algorithms: [HS256], secret: {{ value: {HS_SECRET} }}, scopes: [bots:read], resources: {{ bots: [\"*\"] }} }}"
        );
    }
    s.push_str(extra_apps);
    s.push_str("api_keys:\n");
    for i in 0..keys {
        let _ = writeln!(
            s,
            "  - {{ id: key-{i}, sha256: {}, scopes: [bots:read], resources: {{ bots: [\"*\"] }} }}",
            sha256_hex(&api_key(i))
        );
    }
    s
}
