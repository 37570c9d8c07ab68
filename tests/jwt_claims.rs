//! JWT (JWS) and JWE-wrapped tokens against an independent JOSE implementation (SPEC §3.1–§3.3,
//! the claim and header-parameter rules of §5, the codes of §6).
//!
//! Here: claims (shapes, times, header-bound claims, max_lifetime, audience).
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
