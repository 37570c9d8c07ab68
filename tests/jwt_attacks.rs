//! JWT (JWS) and JWE-wrapped tokens against an independent JOSE implementation (SPEC §3.1–§3.3,
//! the claim and header-parameter rules of §5, the codes of §6).
//!
//! Here: attacks (alg none, algorithm confusion, crit, duplicate and URL header parameters).
//!
//! Every token the proxy sees here is made by Python joserfc (tests/interop/jose_tool.py) or
//! derived from one by editing bytes; scopegate's own JOSE code never produces a test input.
//! Tokens are made in batches (tests/interop/jose_batch.py runs jose_tool's commands in
//! one Python process) before a proxy starts, and each proxy instance serves a whole table of
//! cases. The policy and the request helpers are in tests/common/jwt.rs.

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::jose::*;
use common::jwt::*;
use common::*;
use serde_json::{Value, json};

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
