//! JWT (JWS) and JWE-wrapped tokens against an independent JOSE implementation (SPEC §3.1–§3.3,
//! the claim and header-parameter rules of §5, the codes of §6).
//!
//! Here: every supported algorithm, and forgeries.
//!
//! Every token the proxy sees here is made by Python joserfc (tests/interop/jose_tool.py) or
//! derived from one by editing bytes; scopegate's own JOSE code never produces a test input.
//! Tokens are made in batches (tests/interop/jose_batch.py runs jose_tool's commands in
//! one Python process) before a proxy starts, and each proxy instance serves a whole table of
//! cases. The policy and the request helpers are in tests/common/jwt.rs.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::jose::*;
use common::jwt::*;
use common::*;
use serde_json::json;

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
