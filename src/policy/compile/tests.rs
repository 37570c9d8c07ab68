use std::fmt::Write;

use super::*;

fn compile(text: &str) -> Result<Policy, String> {
    compile_bytes(Path::new("p.yaml"), text.as_bytes(), &Context::standalone())
        .map(|c| c.policy)
        .map_err(|e| e.to_string())
}

fn digest(key: &str) -> [u8; 32] {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes())
        .as_ref()
        .try_into()
        .unwrap()
}

/// `n` keys where key `i` has scope `s{i % distinct}` and bot `b{i % distinct}`.
fn keys_policy(n: usize, distinct: usize) -> String {
    let mut p = String::from("version: 1\nscopes:\n");
    for s in 0..distinct {
        writeln!(p, "  s{s}: x").unwrap();
    }
    p.push_str("api_keys:\n");
    for i in 0..n {
        let d = i % distinct;
        writeln!(
            p,
            "  - {{ id: k{i}, sha256: {}, scopes: [s{d}], resources: {{ bots: [b{d}] }} }}",
            hex::encode(digest(&format!("key{i}")))
        )
        .unwrap();
    }
    p
}

#[test]
fn a_test_key_without_a_test_upstream_is_warned_about() {
    let policy = format!(
        "version: 1\nscopes: {{ s: x }}\napi_keys:\n  - {{ id: k, sha256: {}, scopes: [s] }}\n  \
         - {{ id: t, sha256: {}, scopes: [s], environment: test }}\n",
        hex::encode(digest("live")),
        hex::encode(digest("test"))
    );
    let warnings = |test_environment| {
        let ctx = Context {
            test_environment,
            ..Context::standalone()
        };
        compile_bytes(Path::new("p.yaml"), policy.as_bytes(), &ctx)
            .unwrap()
            .warnings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    let w = warnings(Some(false));
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("p.yaml:5: api key \"t\" is a test key"),
        "{w:?}"
    );
    assert!(warnings(Some(true)).is_empty());
    assert!(warnings(None).is_empty());
}

#[test]
fn route_rules_without_a_line_of_their_own_are_reported_at_the_route() {
    let e = compile(
        "version: 1\nscopes:\n  ok: fine\n  \"bad scope\": no\nroutes:\n  \
         - { id: a, methods: [], path: /a, auth: [none] }\n  \
         - { id: b, methods: [POST], path: /b, auth: [jwt], encryption: supported, mode: shadow }\n",
    )
    .unwrap_err();
    assert!(e.contains("p.yaml:4: scope \"bad scope\""), "{e}");
    assert!(
        e.contains("p.yaml:6: route \"a\": methods must not be empty"),
        "{e}"
    );
    assert!(
        e.contains("p.yaml:7: route \"b\": mode: shadow cannot be combined with encryption"),
        "{e}"
    );
}

#[test]
fn single_use_jti_needs_tokens_that_expire() {
    let app = |extra: &str| {
        format!(
            "version: 1\nscopes: {{ s: x }}\napps:\n  - {{ client_id: a, algorithms: [HS256], \
             secret: {{ value: 0123456789abcdef0123456789abcdef }}, scopes: [s], \
             enforce_jti: true, single_use_jti: true{extra} }}\n"
        )
    };
    compile(&app("")).unwrap();
    let e = compile(&app(", require_exp: false")).unwrap_err();
    assert!(e.contains("single_use_jti needs require_exp: true"), "{e}");
    // What a remembered jti lives for is bounded, so no store's arithmetic overflows.
    compile(&app(", max_lifetime: 366d, leeway: 24h")).unwrap();
    for (extra, message) in [
        (
            ", max_lifetime: 367d",
            "max_lifetime must be more than 0s and at most 366d",
        ),
        (
            ", max_lifetime: 0s",
            "max_lifetime must be more than 0s and at most 366d",
        ),
        (
            ", max_lifetime: 100000000000d",
            "max_lifetime must be more than 0s and at most 366d",
        ),
        (", leeway: 25h", "leeway may be at most 24h"),
    ] {
        let e = compile(&app(extra)).unwrap_err();
        assert!(
            e.contains(&format!("p.yaml:4: app \"a\": {message}")),
            "{extra}: {e}"
        );
    }
}

#[test]
fn every_key_keeps_its_own_scopes_and_grants_when_lists_are_shared() {
    // More distinct lists than the reader compares a new key with, cycled, so lists are
    // both shared and re-added; each key must still get exactly its own.
    let distinct = 2 * 16 + 3;
    let policy = compile(&keys_policy(200, distinct)).unwrap();
    assert_eq!(policy.api_keys.len(), 200);
    for i in 0..200 {
        let key = &policy.api_keys[&digest(&format!("key{i}"))];
        let d = i % distinct;
        assert_eq!(key.id, format!("k{i}"));
        assert_eq!(key.id, HeaderValue::from_str(&format!("k{i}")).unwrap());
        let own = policy.scopes.get(&format!("s{d}")).unwrap();
        assert_eq!(key.scopes.iter().collect::<Vec<_>>(), vec![own], "key {i}");
        assert_eq!(key.scopes_header, format!("s{d}").as_str());
        assert!(
            key.grants
                .allows("bots", &format!("b{d}"), Some(Action::Delete))
        );
        let other = (d + 1) % distinct;
        assert!(
            !key.grants.allows("bots", &format!("b{other}"), None),
            "key {i}"
        );
    }
    // Neighbours with the same lists share one compiled copy.
    let small = compile(&keys_policy(4, 1)).unwrap();
    let mut keys = small.api_keys.values();
    let (a, b) = (keys.next().unwrap(), keys.next().unwrap());
    assert!(Arc::ptr_eq(&a.grants, &b.grants));
}

#[test]
fn json_with_and_without_escapes_compiles_like_yaml() {
    let key = hex::encode(digest("sk_1"));
    let yaml = format!(
        "version: 1\nscopes: {{ a: x }}\napi_keys:\n  - {{ id: key-1, sha256: {key}, scopes: [a], resources: {{ bots: {{ b1: [read], \"*\": [write] }} }} }}\n"
    );
    // Escaped strings cannot be borrowed from the text; the parser hands them over owned.
    let json = format!(
        r#"{{"version":1,"scopes":{{"a":"x"}},"api_keys":[{{"id":"key\u002d1","sha256":"{key}","scopes":["\u0061"],"resources":{{"bots":{{"b\u0031":["read"],"*":["write"]}}}}}}]}}"#
    );
    for text in [yaml, json] {
        let policy = compile(&text).unwrap();
        let k = &policy.api_keys[&digest("sk_1")];
        assert_eq!(k.id, "key-1");
        assert_eq!(k.scopes_header, "a");
        assert!(k.grants.allows("bots", "b1", Some(Action::Read)));
        assert!(k.grants.allows("bots", "b2", Some(Action::Write)));
        assert!(!k.grants.allows("bots", "b2", Some(Action::Read)));
    }
}

#[test]
fn the_rest_of_an_api_keys_rejections_are_reported_on_its_line() {
    let (k1, k2) = (hex::encode(digest("sk_1")), hex::encode(digest("sk_2")));
    let cases = [
        (
            format!("  - {{ id: a, sha256: {k1} }}\n  - {{ id: b, sha256: {k1} }}"),
            4,
            "two api keys have the same sha256",
        ),
        (
            format!("  - {{ id: a, sha256: {k1}, expires: tomorrow }}"),
            3,
            "expires \"tomorrow\" is not an RFC 3339 time",
        ),
        (
            format!("  - {{ id: a, sha256: {k1}, resources: {{ bots: {{ b1: [] }} }} }}"),
            3,
            "resources.bots.b1 grants no action",
        ),
        (
            format!("  - {{ id: a, sha256: {k2}, rate_limit: {{ per_second: 0, burst: 1 }} }}"),
            3,
            "rate_limit needs per_second > 0 and burst >= 1",
        ),
    ];
    for (entries, line, message) in cases {
        let text = format!("version: 1\napi_keys:\n{entries}\n");
        let err = compile(&text).expect_err(&entries);
        assert!(
            err.starts_with(&format!("p.yaml:{line}:")),
            "{entries}: {err}"
        );
        assert!(err.contains(message), "{entries}: {err}");
    }
}

/// serde_json keeps the last of two equal keys; the policy reader must not.
#[test]
fn a_json_policy_with_a_map_key_given_twice_is_refused() {
    let key = hex::encode(digest("sk_1"));
    let app = r#"{"client_id":"a","algorithms":["HS256"],"secret":{"value":"0123456789abcdef0123456789abcdef"}"#;
    let cases = [
        (
            format!(
                r#"{{"version":1,"api_keys":[{{"id":"k","sha256":"{key}","resources":{{"bots":{{"b1":["read"],"b1":["delete"]}}}}}}]}}"#
            ),
            "b1",
        ),
        (
            format!(
                r#"{{"version":1,"api_keys":[{{"id":"k","sha256":"{key}","resources":{{"bots":["b1"],"bots":["*"]}}}}]}}"#
            ),
            "bots",
        ),
        (
            format!(
                r#"{{"version":1,"apps":[{app},"resources":{{"bots":["b1"],"bots":["*"]}}}}]}}"#
            ),
            "bots",
        ),
        (
            format!(
                r#"{{"version":1,"apps":[{app},"claims_to_headers":{{"t":"x-auth-a","t":"x-auth-b"}}}}]}}"#
            ),
            "t",
        ),
        (
            r#"{"version":1,"scopes":{"s":"one","s":"two"}}"#.to_string(),
            "s",
        ),
    ];
    for (json, twice) in cases {
        let err = compile(&json).expect_err(&json);
        assert!(
            err.contains(&format!("duplicate mapping key: {twice}")),
            "{json}: {err}"
        );
    }
}

#[test]
fn malformed_grants_and_key_ids_are_refused_on_their_line() {
    let key = hex::encode(digest("sk_1"));
    let cases = [
        (
            format!(
                "  - {{ id: k, sha256: {key}, resources: {{ bots: {{ b1: [read], b1: [write] }} }} }}"
            ),
            "duplicate mapping key: b1",
        ),
        (
            format!("  - {{ id: k, sha256: {key}, resources: {{ bots: b1 }} }}"),
            "a list of items, or a map of item to actions",
        ),
        (
            format!("  - {{ id: k, sha256: {key}, resources: {{ bots: {{ b1: [fly] }} }} }}"),
            "fly",
        ),
        (
            format!("  - {{ id: \"k\u{e9}\", sha256: {key} }}"),
            "must be non-empty printable ASCII",
        ),
        (
            format!("  - {{ id: \"\", sha256: {key} }}"),
            "must be non-empty printable ASCII",
        ),
    ];
    for (entry, message) in cases {
        let text = format!("version: 1\napi_keys:\n{entry}\n");
        let err = compile(&text).expect_err(&entry);
        assert!(err.starts_with("p.yaml:3:"), "{entry}: {err}");
        assert!(err.contains(message), "{entry}: {err}");
    }
}

#[test]
fn app_id_claims_default_and_validation() {
    let p = compile("version: 1\n").unwrap();
    assert_eq!(p.app_id_claims, ["appId"]);
    let p = compile("version: 1\napp_id_claims: [azp, client_id, appId]\n").unwrap();
    assert_eq!(p.app_id_claims, ["azp", "client_id", "appId"]);
    let e = compile("version: 1\napp_id_claims: []\n").unwrap_err();
    assert!(
        e.contains("p.yaml:2: app_id_claims must name at least one claim"),
        "{e}"
    );
    let e = compile("version: 1\napp_id_claims: [azp, azp]\n").unwrap_err();
    assert!(
        e.contains("p.yaml:2: app_id_claims: \"azp\" is listed twice"),
        "{e}"
    );
}

#[test]
fn a_jwks_app_compiles_offline_to_a_source_that_fetches_only_when_asked() {
    let p = compile(
        "version: 1\napps:\n  - { client_id: a, algorithms: [RS256, ES256], jwks_url: \"http://127.0.0.1:9/jwks\", issuer: \"https://idp/\" }\n",
    )
    .unwrap();
    let app = &p.apps["a"];
    assert_eq!(app.issuer.as_deref(), Some("https://idp/"));
    let source = app.jwks.as_ref().expect("a source");
    assert!(source.keys().is_none());
    assert_eq!(
        crate::error::Error::from(source.miss()).to_string(),
        "signing keys unavailable: http://127.0.0.1:9/jwks: no JWKS fetched yet"
    );
    let e = compile(
        "version: 1\napps:\n  - { client_id: a, algorithms: [RS256], jwks_ca_file: ca.pem }\n",
    )
    .unwrap_err();
    assert!(e.contains("jwks_ca_file needs a jwks_url"), "{e}");
    assert!(
        e.contains("need a `public_key_file` or a `jwks_url`"),
        "{e}"
    );
}
