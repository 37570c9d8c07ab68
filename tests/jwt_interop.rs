//! JWT (JWS) and JWE-wrapped tokens against an independent JOSE implementation (SPEC §3.1–§3.3,
//! the claim and header-parameter rules of §5, the codes of §6).
//!
//! Every token the proxy sees here is made by Python joserfc (tests/interop/jose_tool.py) or
//! derived from one by editing bytes; scopegate's own JOSE code never produces a test input.
//! Tokens are made in batches (tests/interop/jose_batch.py runs jose_tool's commands in
//! one Python process) before a proxy starts, and each proxy instance serves a whole table of
//! cases.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::jose::*;
use common::*;
use serde_json::{Value, json};

const HS: &str = "jwt-interop-hs-secret-0123456789abcdef0123456789abcdef0123456789abcdef";
/// The own secret of `app-mixed` (RS256 + HS256): anything but its public PEM.
const MIXED_HS: &str = "app-mixed-own-secret-fedcba9876543210fedcba9876543210fedcba98";
const AUD: &str = "https://api.example";

fn jwt_fixture(name: &str) -> PathBuf {
    Path::new(REPO).join("tests/fixtures/jwt").join(name)
}

fn policy() -> String {
    let rsa = key("app-rsa.pub.pem");
    format!(
        r#"version: 1
scopes:
  bots:read: View bots
  bots:write: Change bots
routes:
  - {{ id: read, methods: [GET], path: "/v1/bots/{{botId}}", auth: [jwt], scopes: [bots:read] }}
  - {{ id: write, methods: [GET], path: "/v1/write/{{botId}}", auth: [jwt], scopes: [bots:write] }}
apps:
  - {{ client_id: app-hs, algorithms: [HS256, HS384, HS512], secret: {{ value: "{HS}" }}, scopes: [bots:read, bots:write] }}
  - {{ client_id: app-rs, algorithms: [RS256, RS384, RS512, PS256, PS384, PS512], public_key_file: "{rsa}", scopes: [bots:read, bots:write] }}
  - {{ client_id: app-rs-twin, algorithms: [RS256], public_key_file: "{rsa}", scopes: [bots:read, bots:write] }}
  - {{ client_id: app-rs256, algorithms: [RS256], public_key_file: "{rsa}", scopes: [bots:read] }}
  - {{ client_id: app-mixed, algorithms: [RS256, HS256], public_key_file: "{rsa}", secret: {{ value: "{MIXED_HS}" }}, scopes: [bots:read] }}
  - {{ client_id: app-es256, algorithms: [ES256], public_key_file: "{ec256}", scopes: [bots:read] }}
  - {{ client_id: app-es384, algorithms: [ES384], public_key_file: "{ec384}", scopes: [bots:read] }}
  - {{ client_id: app-ed, algorithms: [EdDSA], public_key_file: "{ed}", scopes: [bots:read] }}
  - client_id: app-claims
    algorithms: [HS256]
    secret: {{ value: "{HS}" }}
    leeway: 30s
    scopes: [bots:read]
    claims_to_headers: {{ tenant: x-auth-tenant }}
  - {{ client_id: app-long, algorithms: [HS256], secret: {{ value: "{HS}" }}, max_lifetime: 48h, leeway: 0s, scopes: [bots:read] }}
  - {{ client_id: app-aud, algorithms: [HS256], secret: {{ value: "{HS}" }}, audience: "{AUD}", scopes: [bots:read] }}
  - {{ client_id: app-jwe, algorithms: [RS256], public_key_file: "{rsa}", enforce_jwe: true, scopes: [bots:read] }}
jwe_keys:
  - {{ kid: sg-rsa, private_key_file: "{jwe_rsa}" }}
  - {{ kid: sg-ec, private_key_file: "{jwe_ec}" }}
"#,
        ec256 = key("app-ec256.pub.pem"),
        ec384 = key("app-ec384.pub.pem"),
        ed = key("app-ed25519.pub.pem"),
        jwe_rsa = key("proxy-jwe-rsa.key.pem"),
        jwe_ec = key("proxy-jwe-ec.key.pem"),
    )
}

async fn start() -> (Upstream, Proxy) {
    Proxy::with_upstream(&policy()).await
}

// ---------------------------------------------------------------- token making (joserfc)

/// Claims for `app`, valid for ten minutes; `extra` members are merged, a null removes one.
fn claims(app: &str, extra: Value) -> Value {
    let now = now();
    let mut c = json!({ "appId": app, "sub": "user-1", "iat": now, "exp": now + 600 });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

// ---------------------------------------------------------------- requests

async fn call(p: &Proxy, path: &str, token: &str) -> Answer {
    get(&p.url(path), &[("authorization", &bearer(token))]).await
}

/// Asserts that `token` is forwarded for `app` on the read route.
async fn accepted(p: &Proxy, token: &str, app: &str, what: &str) -> Echo {
    let a = call(p, "/v1/bots/b1", token).await;
    assert_eq!(
        a.status,
        200,
        "{what}: expected acceptance, got {} {}",
        a.status,
        String::from_utf8_lossy(&a.body)
    );
    let e = a.echo();
    assert_eq!(e.header("x-auth-kind").as_deref(), Some("jwt"), "{what}");
    assert_eq!(e.header("x-auth-app-id").as_deref(), Some(app), "{what}");
    e
}

/// Asserts a 401 with `code` on `path`, and that the upstream saw nothing.
async fn refused_on(p: &Proxy, up: &Upstream, path: &str, token: &str, code: &str, what: &str) {
    let before = up.hits();
    let a = call(p, path, token).await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (401, code),
        "{what}: token {token}"
    );
    assert!(
        a.header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer ") && v.contains(r#"error="invalid_token""#)),
        "{what}: 401 without the RFC 6750 challenge: {:?}",
        a.header("www-authenticate")
    );
    assert_eq!(up.hits(), before, "{what}: reached the upstream");
}

async fn refused(p: &Proxy, up: &Upstream, token: &str, code: &str, what: &str) {
    refused_on(p, up, "/v1/bots/b1", token, code, what).await;
}

/// Counts TCP connections made to it: proves a URL in a token header is never fetched.
async fn connection_counter() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    let counter = n.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (addr, n)
}

// ================================================================ 1. every algorithm

#[tokio::test]
async fn every_supported_alg_from_joserfc_is_accepted_through_both_headers() {
    let cases: Vec<(&str, &str, String)> = vec![
        ("HS256", "app-hs", HS.to_string()),
        ("HS384", "app-hs", HS.to_string()),
        ("HS512", "app-hs", HS.to_string()),
        ("RS256", "app-rs", key("app-rsa.key.pem")),
        ("RS384", "app-rs", key("app-rsa.key.pem")),
        ("RS512", "app-rs", key("app-rsa.key.pem")),
        ("PS256", "app-rs", key("app-rsa.key.pem")),
        ("PS384", "app-rs", key("app-rsa.key.pem")),
        ("PS512", "app-rs", key("app-rsa.key.pem")),
        ("ES256", "app-es256", key("app-ec256.key.pem")),
        ("ES384", "app-es384", key("app-ec384.key.pem")),
        ("EdDSA", "app-ed", key("app-ed25519.key.pem")),
    ];
    let jobs: Vec<Job> = cases
        .iter()
        .map(|(alg, app, signer)| {
            sign(
                alg,
                signer,
                &claims(app, json!({ "sub": format!("user-{alg}") })),
            )
        })
        .collect();
    let tokens = run(&jobs);
    let (up, p) = start().await;
    for ((alg, app, _), t) in cases.iter().zip(&tokens) {
        assert_eq!(decode_part(t, 0)["alg"], *alg, "joserfc header");
        let via: [(&str, String); 3] = [
            ("authorization", bearer(t)),
            ("authorization", format!("bearer {t}")),
            ("auth", t.clone()),
        ];
        for (name, value) in &via {
            let a = get(&p.url("/v1/bots/b1"), &[(name, value.as_str())]).await;
            assert_eq!(
                a.status,
                200,
                "{alg} via {name}: {}",
                String::from_utf8_lossy(&a.body)
            );
            let e = a.echo();
            assert_eq!(e.header("x-auth-kind").as_deref(), Some("jwt"), "{alg}");
            assert_eq!(e.header("x-auth-app-id").as_deref(), Some(*app), "{alg}");
            let sub = format!("user-{alg}");
            assert_eq!(e.header("x-auth-subject"), Some(sub), "{alg}");
            assert_eq!(e.header("x-auth-route").as_deref(), Some("read"), "{alg}");
            assert!(
                e.header("authorization").is_none() && e.header("auth").is_none(),
                "{alg}: the token reached the upstream"
            );
        }
    }
    assert_eq!(up.hits(), cases.len() * 3);
}

// ================================================================ 2. forgeries

#[tokio::test]
async fn wrong_key_disallowed_alg_and_tampering_are_invalid_token() {
    let rsa = key("app-rsa.key.pem");
    let other = key("app-rsa-other.key.pem");
    let ec = key("app-ec256.key.pem");
    let ed = key("app-ed25519.key.pem");
    let narrowed = claims("app-rs", json!({ "scope": "bots:read" }));
    let jobs = vec![
        // 0..=3: genuine tokens, the base of every edit below
        sign("RS256", &rsa, &narrowed),
        sign("PS256", &rsa, &claims("app-rs", json!({}))),
        sign("ES256", &ec, &claims("app-es256", json!({}))),
        sign("EdDSA", &ed, &claims("app-ed", json!({}))),
        // 4..=7: wrong key
        sign("RS256", &other, &claims("app-rs", json!({}))),
        sign("PS512", &other, &claims("app-rs", json!({}))),
        sign(
            "ES256",
            &key("client-ec.key.pem"),
            &claims("app-es256", json!({})),
        ),
        sign(
            "EdDSA",
            &jwt_fixture("attacker-ed25519.key.pem")
                .display()
                .to_string(),
            &claims("app-ed", json!({})),
        ),
        // 8..=11: right key, alg not in the app's list
        sign("PS256", &rsa, &claims("app-rs256", json!({}))),
        sign("RS512", &rsa, &claims("app-rs256", json!({}))),
        sign("ES256", &ec, &claims("app-rs", json!({}))),
        sign("RS256", &rsa, &claims("app-es256", json!({}))),
        // 12: signed with RS256 but labelled RS512 (joserfc hand-builds the header)
        sign_h(
            "RS256",
            &rsa,
            &claims("app-rs", json!({})),
            json!({ "alg": "RS512" }),
        ),
        // 13: a genuine token for the app that uses the same key as app-rs
        sign("RS256", &rsa, &claims("app-rs-twin", json!({}))),
    ];
    let t = run(&jobs);
    let (rs, ps, es, eddsa) = (&t[0], &t[1], &t[2], &t[3]);
    let (up, p) = start().await;

    // Controls: the genuine tokens work, and the narrowed one lacks bots:write.
    accepted(&p, rs, "app-rs", "genuine RS256").await;
    accepted(&p, ps, "app-rs", "genuine PS256").await;
    accepted(&p, es, "app-es256", "genuine ES256").await;
    accepted(&p, eddsa, "app-ed", "genuine EdDSA").await;
    accepted(&p, &t[13], "app-rs-twin", "genuine twin").await;
    let a = call(&p, "/v1/write/b1", rs).await;
    assert_eq!((a.status, a.code().as_str()), (403, "insufficient_scope"));

    let mut bad: Vec<(String, String)> = vec![
        ("RS256 by another RSA key".into(), t[4].clone()),
        ("PS512 by another RSA key".into(), t[5].clone()),
        ("ES256 by another P-256 key".into(), t[6].clone()),
        ("EdDSA by another Ed25519 key".into(), t[7].clone()),
        ("PS256 for an RS256-only app".into(), t[8].clone()),
        ("RS512 for an RS256-only app".into(), t[9].clone()),
        ("ES256 for an RSA app".into(), t[10].clone()),
        ("RS256 for an ES256 app".into(), t[11].clone()),
        ("RS256 signature labelled RS512".into(), t[12].clone()),
    ];
    // Header alg re-encoded, signature kept.
    for alg in [
        "RS384", "RS512", "PS256", "HS256", "ES256", "none", "rs256", "",
    ] {
        bad.push((
            format!("header alg changed to {alg:?}"),
            edit_json(rs, 0, |h| h["alg"] = alg.into()),
        ));
    }
    bad.push((
        "header alg removed".into(),
        edit_json(rs, 0, |h| {
            h.as_object_mut().unwrap().remove("alg");
        }),
    ));
    bad.push((
        "header kid added".into(),
        edit_json(rs, 0, |h| h["kid"] = "k1".into()),
    ));
    bad.push((
        "PS256 relabelled RS256".into(),
        edit_json(ps, 0, |h| h["alg"] = "RS256".into()),
    ));
    bad.push((
        "ES256 relabelled ES384".into(),
        edit_json(es, 0, |h| h["alg"] = "ES384".into()),
    ));
    // Payload edited, signature kept.
    bad.push((
        "appId moved to a twin app with the same key".into(),
        edit_json(rs, 1, |c| c["appId"] = "app-rs-twin".into()),
    ));
    bad.push((
        "sub changed".into(),
        edit_json(rs, 1, |c| c["sub"] = "admin".into()),
    ));
    bad.push((
        "exp extended".into(),
        edit_json(rs, 1, |c| c["exp"] = (now() + 86_400).into()),
    ));
    bad.push((
        "ES256 sub changed".into(),
        edit_json(es, 1, |c| c["sub"] = "other".into()),
    ));
    // Signature damaged.
    let sig = part(rs, 2).to_string();
    bad.push((
        "signature truncated".into(),
        replace_part(rs, 2, &sig[..sig.len() - 8]),
    ));
    bad.push((
        "signature halved".into(),
        replace_part(rs, 2, &sig[..sig.len() / 2]),
    ));
    bad.push(("signature empty".into(), replace_part(rs, 2, "")));
    bad.push((
        "signature not base64".into(),
        replace_part(rs, 2, "!!!!$$$$"),
    ));
    bad.push(("signature first byte flipped".into(), flip(rs, 2)));
    bad.push((
        "signature with padding".into(),
        replace_part(rs, 2, &format!("{sig}==")),
    ));
    bad.push((
        "signature of zeros".into(),
        replace_part(rs, 2, &B64.encode([0u8; 256])),
    ));
    bad.push((
        "signature of another token".into(),
        replace_part(rs, 2, part(ps, 2)),
    ));
    bad.push((
        "signature extended".into(),
        replace_part(rs, 2, &format!("{sig}AAAA")),
    ));
    // ECDSA r = s = 0 ("psychic signatures", CVE-2022-21449) and an all-zero Ed25519 signature.
    bad.push((
        "ES256 r=s=0".into(),
        replace_part(es, 2, &B64.encode([0u8; 64])),
    ));
    bad.push(("ES256 flipped".into(), flip(es, 2)));
    bad.push((
        "EdDSA all-zero signature".into(),
        replace_part(eddsa, 2, &B64.encode([0u8; 64])),
    ));
    bad.push(("EdDSA flipped".into(), flip(eddsa, 2)));
    for (what, token) in &bad {
        refused(&p, &up, token, "invalid_token", what).await;
    }
    // The narrowed token with a widened scope claim must not become a 403 or a 200.
    let widened = edit_json(rs, 1, |c| c["scope"] = "bots:read bots:write".into());
    refused_on(
        &p,
        &up,
        "/v1/write/b1",
        &widened,
        "invalid_token",
        "scope widened",
    )
    .await;
}

// ================================================================ 3. attacks

#[tokio::test]
async fn alg_none_is_refused_even_for_apps_with_many_algorithms() {
    let rsa = key("app-rsa.key.pem");
    let jobs = vec![
        sign_none(&claims("app-rs", json!({})), None),
        sign_none(&claims("app-hs", json!({})), None),
        sign_none(&claims("app-mixed", json!({})), None),
        sign_none(&claims("app-rs", json!({})), Some(json!({ "alg": "None" }))),
        sign_none(&claims("app-rs", json!({})), Some(json!({ "alg": "NONE" }))),
        sign_none(&claims("app-hs", json!({})), Some(json!({ "alg": "nOnE" }))),
        sign_none(&claims("app-rs", json!({})), Some(json!({ "alg": null }))),
        sign("RS256", &rsa, &claims("app-rs", json!({}))),
    ];
    let t = run(&jobs);
    let (up, p) = start().await;
    accepted(&p, &t[7], "app-rs", "genuine").await;
    for (i, token) in t[..7].iter().enumerate() {
        assert!(token.ends_with('.'), "unsigned token {token}");
        refused(&p, &up, token, "invalid_token", &format!("unsigned #{i}")).await;
    }
    // alg none carrying a (valid, for another header) signature.
    let with_sig = format!("{}{}", t[0], part(&t[7], 2));
    refused(&p, &up, &with_sig, "invalid_token", "none + signature").await;
}

#[test]
fn a_policy_allowing_alg_none_is_refused_at_load() {
    let rsa = key("app-rsa.pub.pem");
    for algs in ["[none]", "[RS256, none]", "[HS256, None]", "[NONE]"] {
        let yaml = format!(
            "version: 1\nscopes: {{ bots:read: r }}\nroutes:\n  - {{ id: r, methods: [GET], path: \"/v1/bots/{{botId}}\", auth: [jwt], scopes: [bots:read] }}\napps:\n  - {{ client_id: app-x, algorithms: {algs}, secret: {{ value: \"{HS}\" }}, public_key_file: \"{rsa}\", scopes: [bots:read] }}\n"
        );
        let r = scopegate::policy::compile::compile_bytes(
            Path::new("policy.yaml"),
            yaml.as_bytes(),
            &scopegate::policy::compile::Context::standalone(),
        );
        match r {
            Ok(_) => panic!("a policy with algorithms {algs} was accepted"),
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.to_lowercase().contains("none"),
                    "{algs}: error does not name alg none: {msg}"
                );
                assert!(msg.contains("policy.yaml:"), "{algs}: no file:line: {msg}");
            }
        }
        // The same text without `none` compiles: the refusal is about `none` alone.
        let fixed = yaml
            .replace(", none]", "]")
            .replace(", None]", "]")
            .replace("[none]", "[RS256]")
            .replace("[NONE]", "[RS256]");
        if let Err(e) = scopegate::policy::compile::compile_bytes(
            Path::new("policy.yaml"),
            fixed.as_bytes(),
            &scopegate::policy::compile::Context::standalone(),
        ) {
            panic!("control policy refused: {e}\n{fixed}");
        }
    }
}

#[tokio::test]
async fn a_proxy_cannot_start_with_alg_none() {
    let up = Upstream::start().await;
    let yaml = policy().replace(
        "algorithms: [RS256, HS256]",
        "algorithms: [RS256, HS256, none]",
    );
    assert_ne!(yaml, policy());
    let builder = ProxyBuilder::new(&yaml).upstream("default", up.addr);
    let r = tokio::spawn(async move { builder.start().await.addr }).await;
    match r {
        Ok(addr) => panic!("the proxy started on {addr} with alg none allowed"),
        Err(e) => {
            let panic = e.into_panic();
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            assert!(
                msg.to_lowercase().contains("none"),
                "start failed without naming alg none: {msg}"
            );
        }
    }
}

#[tokio::test]
async fn algorithm_confusion_hmac_keyed_with_the_public_key_is_refused() {
    let rsa_pub = key("app-rsa.pub.pem");
    let jobs = vec![
        confusion(&rsa_pub, "HS256", &claims("app-rs", json!({}))),
        confusion(&rsa_pub, "HS256", &claims("app-rs256", json!({}))),
        confusion(&rsa_pub, "HS256", &claims("app-mixed", json!({}))),
        confusion(&rsa_pub, "HS384", &claims("app-mixed", json!({}))),
        confusion(&rsa_pub, "HS512", &claims("app-mixed", json!({}))),
        confusion(
            &key("app-ec256.pub.pem"),
            "HS256",
            &claims("app-es256", json!({})),
        ),
        // controls: app-mixed takes both its RS256 key and its own HS256 secret
        sign("HS256", MIXED_HS, &claims("app-mixed", json!({}))),
        sign(
            "RS256",
            &key("app-rsa.key.pem"),
            &claims("app-mixed", json!({})),
        ),
        // HS256 keyed with the PEM text as a --secret (same bytes, via joserfc)
        sign(
            "HS256",
            &std::fs::read_to_string(&rsa_pub).unwrap(),
            &claims("app-mixed", json!({})),
        ),
    ];
    let t = run(&jobs);
    let (up, p) = start().await;
    accepted(&p, &t[6], "app-mixed", "app-mixed own HS256").await;
    accepted(&p, &t[7], "app-mixed", "app-mixed RS256").await;
    for (i, token) in t[..6].iter().chain(&t[8..]).enumerate() {
        assert!(
            decode_part(token, 0)["alg"]
                .as_str()
                .unwrap()
                .starts_with("HS")
        );
        refused(&p, &up, token, "invalid_token", &format!("confusion #{i}")).await;
    }
}

#[tokio::test]
async fn crit_with_an_unknown_extension_is_refused_although_validly_signed() {
    let rsa = key("app-rsa.key.pem");
    let c = claims("app-rs", json!({}));
    let jobs = vec![
        sign("RS256", &rsa, &c),
        sign_h("RS256", &rsa, &c, json!({ "crit": ["exp"] })),
        sign_h(
            "RS256",
            &rsa,
            &c,
            json!({ "crit": ["x-ext"], "x-ext": true }),
        ),
        sign_h("RS256", &rsa, &c, json!({ "crit": ["b64"], "b64": false })),
        sign_h("RS256", &rsa, &c, json!({ "crit": [] })),
        sign_h(
            "HS256",
            HS,
            &claims("app-hs", json!({})),
            json!({ "crit": ["x-ext"], "x-ext": 1 }),
        ),
    ];
    let t = run(&jobs);
    let (up, p) = start().await;
    accepted(&p, &t[0], "app-rs", "without crit").await;
    for (i, token) in t[1..].iter().enumerate() {
        assert!(
            decode_part(token, 0).get("crit").is_some(),
            "crit lost: {token}"
        );
        refused(&p, &up, token, "invalid_token", &format!("crit #{i}")).await;
    }
}

/// HS256 over a header written as raw JSON text, so that it can repeat a member (no JSON
/// library writes one twice).
fn hs256_raw_header(header: &str, claims: &Value) -> String {
    let input = format!("{}.{}", B64.encode(header), B64.encode(claims.to_string()));
    let key = jsonwebtoken::EncodingKey::from_secret(HS.as_bytes());
    let sig =
        jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::HS256).unwrap();
    format!("{input}.{sig}")
}

#[tokio::test]
async fn a_header_parameter_given_twice_is_refused_although_validly_signed() {
    let (up, p) = start().await;
    let c = claims("app-hs", json!({}));
    let control = hs256_raw_header(r#"{"alg":"HS256","kid":"a","typ":"JWT"}"#, &c);
    accepted(&p, &control, "app-hs", "every parameter once").await;
    for header in [
        r#"{"alg":"HS256","kid":"a","kid":"b"}"#,
        r#"{"alg":"HS256","typ":"JWT","typ":"JWT"}"#,
        r#"{"alg":"HS256","alg":"HS256"}"#,
        r#"{"alg":"HS256","x-ext":1,"x-ext":1}"#,
        r#"{"alg":"HS256","crit":null,"crit":null}"#,
        // The same name, once escaped: still one name twice.
        r#"{"alg":"HS256","kid":"a","k\u0069d":"b"}"#,
    ] {
        let t = hs256_raw_header(header, &c);
        refused(&p, &up, &t, "invalid_token", header).await;
    }
}

#[tokio::test]
async fn jku_x5u_jwk_x5c_are_never_used_or_fetched() {
    let (fetch_addr, fetches) = connection_counter().await;
    let jku = format!("http://{fetch_addr}/jwks.json");
    let x5u = format!("http://{fetch_addr}/cert.pem");
    let rsa = key("app-rsa.key.pem");
    let other = key("app-rsa-other.key.pem");
    let jwks = run(&[
        Job(
            vec!["jwk".into(), "--pub".into(), key("app-rsa-other.pub.pem")],
            None,
        ),
        Job(
            vec!["jwk".into(), "--pub".into(), key("client-ec.pub.pem")],
            None,
        ),
        Job(
            vec!["jwk".into(), "--pub".into(), key("app-rsa.pub.pem")],
            None,
        ),
    ]);
    let attacker_rsa: Value = serde_json::from_str(&jwks[0]).unwrap();
    let attacker_ec: Value = serde_json::from_str(&jwks[1]).unwrap();
    let app_jwk: Value = serde_json::from_str(&jwks[2]).unwrap();
    let attacker_oct = json!({ "kty": "oct", "k": B64.encode("attacker-secret"), "kid": "a" });
    let x5c = std::fs::read_to_string(jwt_fixture("attacker-rsa.x5c")).unwrap();
    let c = claims("app-rs", json!({}));
    let jobs = vec![
        // 0..=7 signed by an attacker key, the key (or where to get it) in the header
        sign_h(
            "RS256",
            &other,
            &c,
            json!({ "jwk": attacker_rsa.clone(), "kid": attacker_rsa["kid"].clone() }),
        ),
        sign_h(
            "ES256",
            &key("client-ec.key.pem"),
            &claims("app-es256", json!({})),
            json!({ "jwk": attacker_ec.clone(), "kid": attacker_ec["kid"].clone() }),
        ),
        sign_h(
            "HS256",
            "attacker-secret",
            &claims("app-mixed", json!({})),
            json!({ "jwk": attacker_oct, "kid": "a" }),
        ),
        sign_h("RS256", &other, &c, json!({ "x5c": [x5c] })),
        sign_h("RS256", &other, &c, json!({ "jku": jku, "kid": "k1" })),
        sign_h("RS256", &other, &c, json!({ "x5u": x5u })),
        // kid naming a key the proxy has, but not this app's (its own JWE key)
        sign_h(
            "RS256",
            &key("proxy-jwe-rsa.key.pem"),
            &c,
            json!({ "kid": "sg-rsa" }),
        ),
        // attacker key, but the embedded jwk is the app's genuine public key
        sign_h(
            "RS256",
            &other,
            &c,
            json!({ "jwk": app_jwk.clone(), "kid": app_jwk["kid"].clone() }),
        ),
        // 8..=12 signed by the app's key: the extra parameters change nothing
        sign_h("RS256", &rsa, &c, json!({ "jku": jku })),
        sign_h(
            "RS256",
            &rsa,
            &c,
            json!({ "jku": "http://127.0.0.1:1/jwks.json" }),
        ),
        sign_h("RS256", &rsa, &c, json!({ "x5u": x5u })),
        sign_h("RS256", &rsa, &c, json!({ "jwk": attacker_rsa })),
        sign_h("RS256", &rsa, &c, json!({ "x5c": [x5c] })),
    ];
    let t = run(&jobs);
    let (up, p) = start().await;
    for (i, token) in t[..8].iter().enumerate() {
        refused(&p, &up, token, "invalid_token", &format!("attacker #{i}")).await;
    }
    for (i, token) in t[8..].iter().enumerate() {
        accepted(&p, token, "app-rs", &format!("genuine with header #{i}")).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        0,
        "the proxy fetched a jku/x5u URL"
    );
}

// ================================================================ 4. claims

/// (what, raw claims JSON, expected: `Ok(x-auth-tenant)` or `Err(code)`)
type ClaimCase = (
    &'static str,
    String,
    Result<Option<&'static str>, &'static str>,
);

#[tokio::test]
async fn claim_shapes_times_and_header_bound_claims() {
    let now = now() as i64;
    let base = |extra: Value| claims("app-claims", extra).to_string();
    // `base` drops members set to null; these keep one.
    let with_null = |member: &str| {
        format!(
            r#"{{"appId":"app-claims","sub":"u","exp":{},"{member}":null}}"#,
            now + 600
        )
    };
    // (what, raw claims JSON, expected: Ok(x-auth-tenant) or Err(code))
    let cases: Vec<ClaimCase> = vec![
        ("plain", base(json!({})), Ok(None)),
        (
            "clean header-bound claim",
            base(json!({ "tenant": "acme-1" })),
            Ok(Some("acme-1")),
        ),
        (
            "fractional exp",
            base(json!({ "exp": now as f64 + 600.5 })),
            Ok(None),
        ),
        (
            "exp inside leeway",
            base(json!({ "exp": now - 20 })),
            Ok(None),
        ),
        (
            "nbf inside leeway",
            base(json!({ "nbf": now + 20 })),
            Ok(None),
        ),
        (
            "iat inside leeway",
            base(json!({ "iat": now + 20 })),
            Ok(None),
        ),
        ("no iat", base(json!({ "iat": null })), Ok(None)),
        // time claims
        (
            "exp outside leeway",
            base(json!({ "exp": now - 60 })),
            Err("token_expired"),
        ),
        (
            "exp long past",
            base(json!({ "exp": 1000 })),
            Err("token_expired"),
        ),
        (
            "nbf beyond leeway",
            base(json!({ "nbf": now + 120 })),
            Err("token_not_yet_valid"),
        ),
        (
            "iat in the future",
            base(json!({ "iat": now + 120 })),
            Err("token_not_yet_valid"),
        ),
        ("no exp", base(json!({ "exp": null })), Err("invalid_token")),
        (
            "exp \"123\"",
            base(json!({ "exp": "123" })),
            Err("invalid_token"),
        ),
        (
            "exp numeric string in the future",
            base(json!({ "exp": (now + 600).to_string() })),
            Err("invalid_token"),
        ),
        (
            "exp object",
            base(json!({ "exp": { "v": now + 600 } })),
            Err("invalid_token"),
        ),
        (
            "exp array",
            base(json!({ "exp": [now + 600] })),
            Err("invalid_token"),
        ),
        (
            "exp true",
            base(json!({ "exp": true })),
            Err("invalid_token"),
        ),
        (
            "exp null",
            r#"{"appId":"app-claims","sub":"u","exp":null}"#.to_string(),
            Err("invalid_token"),
        ),
        // `null` is a value, not an absence: present and of the wrong type.
        ("nbf null", with_null("nbf"), Err("invalid_token")),
        ("iat null", with_null("iat"), Err("invalid_token")),
        ("scope null", with_null("scope"), Err("invalid_token")),
        ("sub null", with_null("sub"), Err("invalid_token")),
        ("jti null", with_null("jti"), Err("invalid_token")),
        ("tenant null", with_null("tenant"), Err("invalid_token")),
        (
            "exp Infinity",
            r#"{"appId":"app-claims","sub":"u","exp":Infinity}"#.to_string(),
            Err("invalid_token"),
        ),
        (
            "exp NaN",
            r#"{"appId":"app-claims","sub":"u","exp":NaN}"#.to_string(),
            Err("invalid_token"),
        ),
        (
            "nbf string",
            base(json!({ "nbf": "0" })),
            Err("invalid_token"),
        ),
        (
            "nbf object",
            base(json!({ "nbf": {} })),
            Err("invalid_token"),
        ),
        (
            "iat string",
            base(json!({ "iat": now.to_string() })),
            Err("invalid_token"),
        ),
        // scope
        (
            "scope array",
            base(json!({ "scope": ["bots:read"] })),
            Err("invalid_token"),
        ),
        (
            "scope number",
            base(json!({ "scope": 1 })),
            Err("invalid_token"),
        ),
        // sub (bound for x-auth-subject)
        (
            "sub with \\n",
            base(json!({ "sub": "a\nb" })),
            Err("invalid_token"),
        ),
        (
            "sub with NUL",
            base(json!({ "sub": "a\u{0}b" })),
            Err("invalid_token"),
        ),
        (
            "sub with \\r\\n",
            base(json!({ "sub": "a\r\nx-auth-app-id: evil" })),
            Err("invalid_token"),
        ),
        (
            "sub with DEL",
            base(json!({ "sub": "a\u{7f}b" })),
            Err("invalid_token"),
        ),
        (
            "sub with a C1 control",
            base(json!({ "sub": "a\u{85}b" })),
            Err("invalid_token"),
        ),
        (
            "sub number",
            base(json!({ "sub": 7 })),
            Err("invalid_token"),
        ),
        (
            "sub array",
            base(json!({ "sub": ["a"] })),
            Err("invalid_token"),
        ),
        // claims_to_headers
        (
            "tenant number",
            base(json!({ "tenant": 42 })),
            Err("invalid_token"),
        ),
        (
            "tenant bool",
            base(json!({ "tenant": true })),
            Err("invalid_token"),
        ),
        (
            "tenant object",
            base(json!({ "tenant": { "id": "acme" } })),
            Err("invalid_token"),
        ),
        (
            "tenant with CRLF",
            base(json!({ "tenant": "acme\r\nx-auth-app-id: evil" })),
            Err("invalid_token"),
        ),
        (
            "tenant with \\n",
            base(json!({ "tenant": "a\nb" })),
            Err("invalid_token"),
        ),
        // the app is found by `appId` only
        (
            "appid",
            base(json!({ "appId": null, "appid": "app-claims" })),
            Err("invalid_token"),
        ),
        (
            "App ID",
            base(json!({ "appId": null, "App ID": "app-claims" })),
            Err("invalid_token"),
        ),
        (
            "iss only",
            base(json!({ "appId": null, "iss": "app-claims" })),
            Err("invalid_token"),
        ),
        (
            "client_id only",
            base(json!({ "appId": null, "client_id": "app-claims" })),
            Err("invalid_token"),
        ),
        (
            "appId array",
            base(json!({ "appId": ["app-claims"] })),
            Err("invalid_token"),
        ),
        (
            "appId wrong case",
            base(json!({ "appId": "APP-CLAIMS" })),
            Err("invalid_token"),
        ),
    ];
    let jobs: Vec<Job> = cases
        .iter()
        .map(|(_, c, _)| sign_raw("HS256", HS, c, None))
        .collect();
    let tokens = run(&jobs);
    let (up, p) = start().await;
    for ((what, c, expect), token) in cases.iter().zip(&tokens) {
        let a = get(
            &p.url("/v1/bots/b1"),
            &[
                ("authorization", &bearer(token)),
                ("x-auth-tenant", "spoofed"),
            ],
        )
        .await;
        match expect {
            Ok(tenant) => {
                assert_eq!(
                    a.status,
                    200,
                    "{what} ({c}): {}",
                    String::from_utf8_lossy(&a.body)
                );
                let e = a.echo();
                assert_eq!(e.header("x-auth-app-id").as_deref(), Some("app-claims"));
                assert_eq!(e.header("x-auth-tenant").as_deref(), *tenant, "{what}");
            }
            Err(code) => {
                assert_eq!(
                    (a.status, a.code().as_str()),
                    (401, *code),
                    "{what}: claims {c}"
                );
            }
        }
    }
    let ok = cases.iter().filter(|c| c.2.is_ok()).count();
    assert_eq!(up.hits(), ok, "a refused token reached the upstream");
}

/// A numeric, finite `exp` far in the future is valid (§3.2, §5). Asymmetric tokens go through
/// the verdict cache, whose lifetime is derived from `exp`: that must not break them.
#[tokio::test]
async fn far_future_exp_is_refused_by_max_lifetime_for_cached_and_uncached_tokens() {
    let rsa = key("app-rsa.key.pem");
    let ec = key("app-ec256.key.pem");
    let raw = |app: &str, exp: &str| format!(r#"{{"appId":"{app}","sub":"u","exp":{exp}}}"#);
    let day = 24 * 3600;
    let (in_a_day, in_two_days) = ((now() + day).to_string(), (now() + 2 * day).to_string());
    let refused_cases = [
        ("RS256", rsa.as_str(), "app-rs", "1e300"),
        ("RS256", rsa.as_str(), "app-rs", "1e20"),
        ("RS256", rsa.as_str(), "app-rs", "99999999999999999999"),
        ("ES256", ec.as_str(), "app-es256", "1.7976931348623157e308"),
        ("HS256", HS, "app-hs", "1e300"),
        // Over the default max_lifetime (24 h) plus the leeway (30 s).
        ("HS256", HS, "app-hs", &(now() + day + 120).to_string()),
        // Over this app's own 48 h.
        (
            "HS256",
            HS,
            "app-long",
            &(now() + 2 * day + 120).to_string(),
        ),
    ];
    let accepted_cases = [
        ("HS256", HS, "app-hs", in_a_day.as_str()),
        ("RS256", rsa.as_str(), "app-rs", in_a_day.as_str()),
        ("HS256", HS, "app-long", in_two_days.as_str()),
    ];
    let jobs: Vec<Job> = refused_cases
        .iter()
        .chain(&accepted_cases)
        .map(|(alg, signer, app, exp)| sign_raw(alg, signer, &raw(app, exp), None))
        .collect();
    let t = run(&jobs);
    let (up, p) = start().await;
    for ((alg, _, app, exp), token) in refused_cases.iter().zip(&t) {
        // Twice: uncached, then as the token caches would hold it.
        for round in 0..2 {
            refused(
                &p,
                &up,
                token,
                "invalid_token",
                &format!("{alg} {app} exp {exp} #{round}"),
            )
            .await;
        }
    }
    for ((_, _, app, exp), token) in accepted_cases.iter().zip(&t[refused_cases.len()..]) {
        for round in 0..2 {
            accepted(&p, token, app, &format!("{app} exp {exp} #{round}")).await;
        }
    }
}

#[tokio::test]
async fn audience_string_or_array() {
    let base = |aud: Value| claims("app-aud", json!({ "aud": aud }));
    let cases: Vec<(&str, Value, Option<&str>)> = vec![
        ("string", base(json!(AUD)), None),
        (
            "array containing it",
            base(json!(["https://other", AUD])),
            None,
        ),
        (
            "missing",
            claims("app-aud", json!({})),
            Some("invalid_audience"),
        ),
        (
            "wrong string",
            base(json!("https://other")),
            Some("invalid_audience"),
        ),
        (
            "trailing slash",
            base(json!(format!("{AUD}/"))),
            Some("invalid_audience"),
        ),
        (
            "array without it",
            base(json!(["https://other"])),
            Some("invalid_audience"),
        ),
        ("empty array", base(json!([])), Some("invalid_audience")),
        ("number", base(json!(1)), Some("invalid_audience")),
    ];
    let jobs: Vec<Job> = cases.iter().map(|(_, c, _)| sign("HS256", HS, c)).collect();
    let t = run(&jobs);
    let (up, p) = start().await;
    for ((what, _, code), token) in cases.iter().zip(&t) {
        match code {
            None => {
                accepted(&p, token, "app-aud", what).await;
            }
            Some(code) => refused(&p, &up, token, code, what).await,
        }
    }
}

// ================================================================ 5. JWE-wrapped tokens

#[tokio::test]
async fn jwe_wrapped_tokens() {
    let rsa = key("app-rsa.key.pem");
    let jwe_rsa = key("proxy-jwe-rsa.pub.pem");
    let jwe_ec = key("proxy-jwe-ec.pub.pem");
    let now = now();
    let inner = run(&[
        sign("RS256", &rsa, &claims("app-rs", json!({}))),
        sign("HS256", HS, &claims("app-hs", json!({}))),
        sign("RS256", &rsa, &claims("app-jwe", json!({}))),
        sign(
            "RS256",
            &key("app-rsa-other.key.pem"),
            &claims("app-jwe", json!({})),
        ),
        sign_none(&claims("app-rs", json!({})), None),
        sign(
            "RS256",
            &rsa,
            &claims("app-rs", json!({ "exp": now - 3600, "iat": now - 7200 })),
        ),
        sign(
            "RS256",
            &key("app-rsa-other.key.pem"),
            &claims("app-rs", json!({})),
        ),
    ]);
    let (rs, hs, enforced, enforced_bad, none, expired, forged) = (
        &inner[0], &inner[1], &inner[2], &inner[3], &inner[4], &inner[5], &inner[6],
    );
    let oaep = "RSA-OAEP-256";
    let ecdh = "ECDH-ES+A256KW";
    let jobs = vec![
        wrap(rs, &jwe_rsa, oaep, Some("sg-rsa"), false), // 0
        wrap(rs, &jwe_ec, ecdh, Some("sg-ec"), false),   // 1
        wrap(rs, &jwe_rsa, oaep, None, false),           // 2
        wrap(rs, &jwe_ec, ecdh, None, false),            // 3
        wrap(hs, &jwe_ec, ecdh, Some("sg-ec"), false),   // 4
        wrap(enforced, &jwe_rsa, oaep, Some("sg-rsa"), false), // 5
        wrap(enforced, &jwe_ec, ecdh, None, false),      // 6
        // refused
        wrap(rs, &jwe_rsa, oaep, Some("sg-nope"), false), // 7 unknown kid
        wrap(rs, &jwe_rsa, oaep, Some("sg-ec"), false),   // 8 kid of the other key
        wrap(rs, &jwe_ec, ecdh, Some("sg-rsa"), false),   // 9 kid of the other key
        wrap(rs, &key("app-rsa.pub.pem"), oaep, None, false), // 10 not a proxy key
        wrap(rs, &jwe_rsa, oaep, Some("sg-rsa"), true),   // 11 zip
        wrap(rs, &jwe_ec, ecdh, None, true),              // 12 zip
        wrap("not-a-token", &jwe_rsa, oaep, Some("sg-rsa"), false), // 13
        wrap("a.b.c", &jwe_rsa, oaep, Some("sg-rsa"), false), // 14
        wrap(none, &jwe_rsa, oaep, Some("sg-rsa"), false), // 15
        wrap(forged, &jwe_rsa, oaep, Some("sg-rsa"), false), // 16
        wrap(enforced_bad, &jwe_rsa, oaep, Some("sg-rsa"), false), // 17
        wrap(expired, &jwe_rsa, oaep, Some("sg-rsa"), false), // 18 -> token_expired
    ];
    // alg/enc outside the token set of §3.3, and a control with the token set (joserfc `encrypt`)
    let enc = |alg: &str, enc: &str, key: &str, kid: &str| {
        encrypt(
            rs,
            &[
                "--alg", alg, "--enc", enc, "--key", key, "--kid", kid, "--cty", "JWT",
            ],
        )
    };
    let mut jobs = jobs;
    jobs.extend([
        enc("RSA-OAEP", "A256GCM", &jwe_rsa, "sg-rsa"), // 19
        enc(oaep, "A128GCM", &jwe_rsa, "sg-rsa"),       // 20
        enc("ECDH-ES+A128KW", "A256GCM", &jwe_ec, "sg-ec"), // 21
        enc(oaep, "A256GCM", &jwe_rsa, "sg-rsa"),       // 22 accepted
    ]);
    let w = run(&jobs);
    // A JWE inside a JWE.
    let nested = run(&[wrap(&w[0], &jwe_rsa, oaep, Some("sg-rsa"), false)]).remove(0);
    let (rsa_oaep_1, a128gcm, a128kw, plain_encrypt) =
        (w[19].clone(), w[20].clone(), w[21].clone(), w[22].clone());

    let (up, p) = start().await;
    for t in &w {
        assert_eq!(t.matches('.').count(), 4, "not a compact JWE: {t}");
    }
    // Accepted: both key types, with and without kid, the JWS inside checked as in §3.2.
    for (i, what) in [
        (0, "RSA-OAEP-256 kid sg-rsa"),
        (1, "ECDH-ES+A256KW kid sg-ec"),
        (2, "RSA-OAEP-256 without kid"),
        (3, "ECDH-ES+A256KW without kid"),
    ] {
        accepted(&p, &w[i], "app-rs", what).await;
        // twice: the second may come from the verdict cache and must agree
        accepted(&p, &w[i], "app-rs", what).await;
    }
    accepted(&p, &w[4], "app-hs", "HS256 inside ECDH-ES+A256KW").await;
    accepted(
        &p,
        &plain_encrypt,
        "app-rs",
        "joserfc encrypt RSA-OAEP-256/A256GCM",
    )
    .await;
    let e = get(&p.url("/v1/bots/b1"), &[("auth", &w[1])]).await.echo();
    assert_eq!(e.header("x-auth-app-id").as_deref(), Some("app-rs"));

    // enforce_jwe: the bare JWS is refused before and after the wrapped one was accepted.
    refused(&p, &up, enforced, "jwe_required", "bare JWS, enforce_jwe").await;
    accepted(&p, &w[5], "app-jwe", "enforce_jwe, RSA-OAEP-256").await;
    accepted(&p, &w[6], "app-jwe", "enforce_jwe, ECDH-ES+A256KW").await;
    refused(&p, &up, enforced, "jwe_required", "bare JWS again").await;
    refused(&p, &up, enforced, "jwe_required", "bare JWS, third time").await;
    // A forged bare token for that app is just invalid (no oracle on enforce_jwe).
    refused(
        &p,
        &up,
        enforced_bad,
        "invalid_token",
        "forged bare JWS, enforce_jwe",
    )
    .await;

    let parts_flipped: Vec<(String, String)> = (1..5)
        .map(|i| (format!("part {i} of RSA JWE flipped"), flip(&w[0], i)))
        .chain((1..5).map(|i| (format!("part {i} of ECDH JWE flipped"), flip(&w[1], i))))
        .collect();
    let mut bad: Vec<(String, String)> = vec![
        ("unknown kid".into(), w[7].clone()),
        ("RSA JWE with the EC key's kid".into(), w[8].clone()),
        ("ECDH JWE with the RSA key's kid".into(), w[9].clone()),
        ("encrypted to a key the proxy lacks".into(), w[10].clone()),
        ("zip (RSA)".into(), w[11].clone()),
        ("zip (ECDH)".into(), w[12].clone()),
        ("garbage inside".into(), w[13].clone()),
        ("JWS-shaped garbage inside".into(), w[14].clone()),
        ("alg none inside".into(), w[15].clone()),
        ("wrong-key JWS inside".into(), w[16].clone()),
        (
            "wrong-key JWS inside, enforce_jwe app".into(),
            w[17].clone(),
        ),
        ("JWE inside JWE".into(), nested),
        ("RSA-OAEP (not -256)".into(), rsa_oaep_1),
        ("enc A128GCM".into(), a128gcm),
        ("ECDH-ES+A128KW".into(), a128kw),
        (
            "protected header edited".into(),
            edit_json(&w[0], 0, |h| h["x"] = 1.into()),
        ),
        (
            "protected header kid changed to the other key".into(),
            edit_json(&w[0], 0, |h| h["kid"] = "sg-ec".into()),
        ),
        ("ciphertext empty".into(), replace_part(&w[0], 3, "")),
        ("tag empty".into(), replace_part(&w[0], 4, "")),
        (
            "tag truncated".into(),
            replace_part(&w[0], 4, &part(&w[0], 4)[..8]),
        ),
        (
            "ciphertext of another JWE".into(),
            replace_part(&w[0], 3, part(&w[2], 3)),
        ),
    ];
    bad.extend(parts_flipped);
    for (what, token) in &bad {
        refused(&p, &up, token, "invalid_token", what).await;
    }
    refused(&p, &up, &w[18], "token_expired", "expired JWS inside a JWE").await;
}

// ================================================================ 6. no oracle

#[tokio::test]
async fn unknown_app_bad_signature_and_disallowed_alg_share_one_answer() {
    let rsa = key("app-rsa.key.pem");
    let c = |app: &str| claims(app, json!({}));
    let jobs = vec![
        sign("RS256", &rsa, &c("app-ghost")),
        sign("RS256", &key("app-rsa-other.key.pem"), &c("app-rs")),
        sign("PS256", &rsa, &c("app-rs256")),
        sign("HS256", HS, &c("app-ghost")),
        sign("HS256", "not-the-secret", &c("app-hs")),
        sign("HS512", HS, &c("app-mixed")),
        sign("RS256", &rsa, &claims("app-rs", json!({ "appId": null }))),
        sign("RS256", &rsa, &claims("app-rs", json!({ "exp": null }))),
        sign_h(
            "RS256",
            &rsa,
            &c("app-rs"),
            json!({ "crit": ["x-ext"], "x-ext": 1 }),
        ),
        sign_none(&c("app-rs"), None),
        confusion(&key("app-rsa.pub.pem"), "HS256", &c("app-mixed")),
        sign("RS256", &rsa, &c("app-rs")),
    ];
    let names = [
        "unknown app (RS256)",
        "bad signature (RS256)",
        "disallowed alg",
        "unknown app (HS256)",
        "bad signature (HS256)",
        "disallowed HS alg",
        "missing appId",
        "missing exp",
        "unknown crit",
        "alg none",
        "algorithm confusion",
    ];
    let t = run(&jobs);
    let (up, p) = start().await;
    accepted(&p, &t[11], "app-rs", "control").await;
    let mut reference: Option<(Value, Option<String>)> = None;
    for (what, token) in names.iter().zip(&t) {
        let a = call(&p, "/v1/bots/b1", token).await;
        assert_eq!(
            (a.status, a.code().as_str()),
            (401, "invalid_token"),
            "{what}"
        );
        let mut body: Value = serde_json::from_slice(&a.body).unwrap();
        let rid = body
            .as_object_mut()
            .unwrap()
            .remove("request_id")
            .unwrap_or_else(|| panic!("{what}: no request_id"));
        assert_eq!(rid.as_str(), a.header("x-request-id"), "{what}");
        let www = a.header("www-authenticate").map(str::to_string);
        match &reference {
            None => reference = Some((body, www)),
            Some((b, w)) => {
                assert_eq!(&body, b, "{what}: body differs from {}", names[0]);
                assert_eq!(&www, w, "{what}: WWW-Authenticate differs");
            }
        }
    }
    assert_eq!(up.hits(), 1);
}
