//! JWT (JWS) and JWE-wrapped tokens against an independent JOSE implementation (SPEC §3.1–§3.3,
//! the claim and header-parameter rules of §5, the codes of §6).
//!
//! Here: JWE-wrapped tokens, and no oracle.
//!
//! Every token the proxy sees here is made by Python joserfc (tests/interop/jose_tool.py) or
//! derived from one by editing bytes; scopegate's own JOSE code never produces a test input.
//! Tokens are made in batches (tests/interop/jose_batch.py runs jose_tool's commands in
//! one Python process) before a proxy starts, and each proxy instance serves a whole table of
//! cases. The policy and the request helpers are in tests/common/jwt.rs.

mod common;

use common::jose::*;
use common::jwt::*;
use common::*;
use serde_json::{Value, json};

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
