//! End-to-end behaviour of the proxy: a real upstream, the real proxy, real HTTP.

mod common;

use std::time::Duration;

use common::jose::bearer;
use common::policy::{self, *};
use common::*;
use serde_json::json;

async fn standard() -> (Upstream, Upstream, Proxy) {
    let up = Upstream::start().await;
    let sandbox = Upstream::start().await;
    let proxy = ProxyBuilder::new(&policy::standard())
        .upstream("default", up.addr)
        .upstream("sandbox", sandbox.addr)
        .config("environments: { test: sandbox }")
        .start()
        .await;
    (up, sandbox, proxy)
}

/// method, path, headers, expected status, expected code
type Case = (
    &'static str,
    &'static str,
    Vec<(&'static str, String)>,
    u16,
    &'static str,
);

#[tokio::test]
async fn jwt_request_reaches_upstream_with_trusted_identity_and_no_credential() {
    let (up, _, p) = standard().await;
    let t = token("app-hs", json!({ "tenant": "acme" }));
    let a = get(
        &p.url("/v1/bots/bot-1?x=1&y=%2F"),
        &[("auth", &t), ("x-request-id", "req-1")],
    )
    .await;
    let e = a.echo();
    assert_eq!(e.path(), "/v1/bots/bot-1");
    assert_eq!(
        e.0["query"], "x=1&y=%2F",
        "query string is forwarded unchanged"
    );
    assert_eq!(e.header("x-auth-kind").as_deref(), Some("jwt"));
    assert_eq!(e.header("x-auth-app-id").as_deref(), Some("app-hs"));
    assert_eq!(e.header("x-auth-subject").as_deref(), Some("user-7"));
    assert_eq!(
        e.header("x-auth-scopes").as_deref(),
        Some("bots:read reports")
    );
    assert_eq!(e.header("x-auth-route").as_deref(), Some("bot-read"));
    assert_eq!(e.header("x-auth-tenant").as_deref(), Some("acme"));
    assert_eq!(e.header("x-request-id").as_deref(), Some("req-1"));
    assert_eq!(a.header("x-request-id"), Some("req-1"));
    assert_eq!(e.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(e.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(e.header("x-forwarded-host"), Some(p.addr.to_string()));
    assert_eq!(e.header("host"), Some(up.addr.to_string()));
    assert!(
        e.header("auth").is_none() && e.header("authorization").is_none(),
        "credentials must not reach the upstream"
    );
    assert!(e.header("x-auth-key-id").is_none());
}

/// An upstream URL with a path: its path goes in front of the normalized request path,
/// with and without a query, and the request id generated for the request is the one the
/// upstream and the client both see.
#[tokio::test]
async fn upstream_base_path_is_prefixed_and_request_id_is_shared() {
    let up = Upstream::start().await;
    let p = ProxyBuilder::new(&policy::standard())
        .upstream_url("default", &format!("http://{}/legacy/api/", up.addr))
        .upstream("sandbox", up.addr)
        .start()
        .await;
    let key = [("authorization", bearer(KEY_READ))];
    let key = [(key[0].0, key[0].1.as_str())];
    let a = get(&p.url("/v1/bots/bot-1"), &key).await;
    assert_eq!(a.status, 200);
    let e = a.echo();
    assert_eq!(e.path(), "/legacy/api/v1/bots/bot-1");
    assert!(e.0["query"].is_null(), "{:?}", e.0);
    assert_eq!(e.header("host"), Some(up.addr.to_string()));
    let rid = a.header("x-request-id").expect("a generated request id");
    assert_eq!(rid.len(), 36, "{rid}");
    assert_eq!(e.header("x-request-id").as_deref(), Some(rid));

    let b = get(&p.url("/v1/bots/bot-1/../bot-2?x=1&y=%2F"), &key).await;
    let e = b.echo();
    assert_eq!(e.path(), "/legacy/api/v1/bots/bot-2");
    assert_eq!(e.0["query"], "x=1&y=%2F");
    assert_ne!(
        b.header("x-request-id"),
        Some(rid),
        "a fresh id per request"
    );
}

#[tokio::test]
async fn api_key_request_and_environment_routing() {
    let (up, sandbox, p) = standard().await;
    let e = get(
        &p.url("/v1/bots/bot-9"),
        &[("authorization", &bearer(KEY_READ))],
    )
    .await
    .echo();
    assert_eq!(e.header("x-auth-kind").as_deref(), Some("api_key"));
    assert_eq!(e.header("x-auth-key-id").as_deref(), Some("key-read"));
    assert_eq!(e.header("x-auth-scopes").as_deref(), Some("bots:read"));
    assert_eq!((up.hits(), sandbox.hits()), (1, 0));
    // A test key goes to the sandbox upstream.
    get(
        &p.url("/v1/bots"),
        &[("authorization", &bearer(KEY_SANDBOX))],
    )
    .await
    .echo();
    assert_eq!((up.hits(), sandbox.hits()), (1, 1));
}

/// Which credential each kind of route accepts, and what it answers otherwise.
#[tokio::test]
async fn jwt_versus_api_key_decision_table() {
    let (_, _, p) = standard().await;
    let jwt = token("app-hs", json!({}));
    let cases: &[(&str, Option<&str>, u16, &str)] = &[
        ("/jwt-only", None, 401, "missing_credentials"),
        ("/jwt-only", Some(&jwt), 200, "jwt"),
        ("/jwt-only", Some(KEY_READ), 401, "invalid_token"),
        ("/key-only", None, 401, "missing_credentials"),
        ("/key-only", Some(KEY_READ), 200, "api_key"),
        ("/key-only", Some(&jwt), 401, "invalid_token"),
        ("/key-only", Some("sk_live_unknown"), 401, "invalid_api_key"),
        ("/v1/bots/bot-1", Some(&jwt), 200, "jwt"),
        ("/v1/bots/bot-1", Some(KEY_READ), 200, "api_key"),
        ("/v1/bots/bot-1", None, 401, "missing_credentials"),
        ("/optional", None, 200, "none"),
        ("/optional", Some(&jwt), 200, "jwt"),
        ("/optional", Some("a.b.c"), 401, "invalid_token"),
        ("/optional", Some(KEY_READ), 401, "invalid_token"),
        ("/public/x", None, 200, "none"),
        ("/public/x", Some("garbage.token.here"), 200, "none"),
        ("/public/x", Some(KEY_READ), 200, "none"),
    ];
    for (path, cred, status, expect) in cases {
        let auth = cred.map(bearer);
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let a = get(&p.url(path), &headers).await;
        assert_eq!(a.status, *status, "{path} with {cred:?}");
        if *status == 200 {
            let e = a.echo();
            assert_eq!(
                e.header("x-auth-kind").as_deref(),
                Some(*expect),
                "{path} with {cred:?}"
            );
            assert!(
                e.header("authorization").is_none(),
                "credential removed even on public routes"
            );
        } else {
            assert_eq!(a.code(), *expect, "{path} with {cred:?}");
        }
    }
}

/// Every rejection this proxy can produce without payload encryption, each triggered by a
/// request, with its status and code.
#[tokio::test]
async fn every_rejection_code() {
    let (up, _, p) = standard().await;
    let now = now() as i64;
    let strict = |extra: serde_json::Value| {
        token(
            "app-strict",
            json!({ "aud": "https://api.example", "jti": uuid() })
                .as_object()
                .unwrap()
                .clone()
                .into_iter()
                .chain(extra.as_object().unwrap().clone())
                .collect::<serde_json::Map<_, _>>()
                .into(),
        )
    };
    let replayed = strict(json!({}));
    assert_eq!(
        get(&p.url("/v1/bots/b"), &[("auth", &replayed)])
            .await
            .status,
        200
    );
    let cases: Vec<Case> = vec![
        ("GET", "/v1/bots/a%2Fb", vec![], 400, "invalid_path"),
        (
            "GET",
            "/v1/bots/bot-1",
            vec![
                ("authorization", bearer(KEY_READ)),
                ("auth", "other".into()),
            ],
            400,
            "malformed_request",
        ),
        ("GET", "/v1/bots/bot-1", vec![], 401, "missing_credentials"),
        (
            "GET",
            "/v1/bots/bot-1",
            vec![("auth", "a.b.c".into())],
            401,
            "invalid_token",
        ),
        (
            "GET",
            "/v1/bots/bot-1",
            vec![("auth", token("app-hs", json!({ "exp": now - 3600 })))],
            401,
            "token_expired",
        ),
        (
            "GET",
            "/v1/bots/bot-1",
            vec![("auth", token("app-hs", json!({ "nbf": now + 3600 })))],
            401,
            "token_not_yet_valid",
        ),
        (
            "GET",
            "/v1/bots/bot-1",
            vec![("auth", token("app-hs", json!({ "iat": now + 3600 })))],
            401,
            "token_not_yet_valid",
        ),
        (
            "GET",
            "/v1/bots/bot-1",
            vec![("auth", token("app-hs", json!({ "exp": null })))],
            401,
            "invalid_token",
        ),
        (
            "GET",
            "/v1/bots/bot-1",
            vec![("auth", strict(json!({ "aud": "https://other" })))],
            401,
            "invalid_audience",
        ),
        (
            "GET",
            "/v1/bots/bot-1",
            vec![("auth", strict(json!({ "aud": null })))],
            401,
            "invalid_audience",
        ),
        (
            "GET",
            "/v1/bots/bot-1",
            vec![("auth", strict(json!({ "jti": null })))],
            401,
            "jti_required",
        ),
        (
            "GET",
            "/v1/bots/bot-1",
            vec![("auth", replayed.clone())],
            401,
            "token_replayed",
        ),
        (
            "GET",
            "/v1/bots/bot-1",
            vec![("authorization", bearer("sk_live_nope"))],
            401,
            "invalid_api_key",
        ),
        (
            "GET",
            "/v1/bots/bot-1",
            vec![("authorization", bearer(KEY_EXPIRED))],
            401,
            "api_key_expired",
        ),
        (
            "GET",
            "/v1/bots/bot-1",
            vec![("authorization", bearer(KEY_DISABLED))],
            401,
            "api_key_disabled",
        ),
        (
            "POST",
            "/hooks/slack",
            vec![("x-signature", format!("t={now},v1=00"))],
            401,
            "invalid_signature",
        ),
        (
            "POST",
            "/hooks/slack",
            vec![("x-signature", webhook_sig(now - 1000, b""))],
            401,
            "stale_signature",
        ),
        ("POST", "/hooks/slack", vec![], 401, "missing_credentials"),
        (
            "POST",
            "/v1/bots/bot-1",
            vec![("authorization", bearer(KEY_READ))],
            403,
            "insufficient_scope",
        ),
        (
            "GET",
            "/v1/bots/bot-3",
            vec![("auth", token("app-hs", json!({})))],
            403,
            "resource_not_allowed",
        ),
        (
            "POST",
            "/tables/customers/query",
            vec![("auth", token("app-hs", json!({})))],
            403,
            "resource_not_allowed",
        ),
        (
            "DELETE",
            "/tables/orders",
            vec![("auth", token("app-hs", json!({})))],
            403,
            "resource_not_allowed",
        ),
        ("GET", "/nowhere", vec![], 404, "no_route"),
        (
            "DELETE",
            "/v1/bots/bot-1",
            vec![("authorization", bearer(KEY_ADMIN))],
            404,
            "no_route",
        ),
        (
            "GET",
            "/v1/bots/bot-1",
            vec![("x-big", "a".repeat(20_000))],
            431,
            "headers_too_large",
        ),
    ];
    for (method, path, headers, status, code) in cases {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let a = send(method, &p.url(path), &h, None).await;
        assert_eq!(
            (a.status, a.code().as_str()),
            (status, code),
            "{method} {path} {headers:?}"
        );
        let body: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(body["status"], status);
        assert_eq!(body["type"], "about:blank");
        assert!(body["request_id"].as_str().is_some_and(|r| !r.is_empty()));
        assert!(a.header("x-request-id").is_some());
    }
    let (status, body) = raw_get(p.addr, "/v1/../../etc/passwd", &[]).await;
    assert_eq!(status, 400);
    assert!(body.contains("\"invalid_path\""), "{body}");
    assert_eq!(up.hits(), 1, "no rejected request reaches the upstream");
}

#[tokio::test]
async fn unauthorized_answers_carry_rfc6750_challenges_without_oracles() {
    let (_, _, p) = standard().await;
    let a = get(&p.url("/v1/bots/bot-1"), &[]).await;
    assert_eq!(
        a.header("www-authenticate"),
        Some("Bearer realm=\"scopegate\"")
    );
    let a = get(
        &p.url("/v1/bots/bot-1"),
        &[("authorization", &bearer(KEY_READ))],
    )
    .await;
    assert_eq!(a.status, 200);
    let a = send(
        "POST",
        &p.url("/v1/bots/bot-1"),
        &[("authorization", &bearer(KEY_READ))],
        None,
    )
    .await;
    assert_eq!(
        a.header("www-authenticate"),
        Some("Bearer error=\"insufficient_scope\", scope=\"bots:write\"")
    );
    // An unknown app, a bad signature and a missing appId answer byte-identically but for the request id.
    let unknown = hs256(json!({ "appId": "no-such-app", "exp": now() + 60 }));
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "appId": "app-hs", "exp": now() + 60 }),
        &jsonwebtoken::EncodingKey::from_secret(b"wrong"),
    )
    .unwrap();
    let no_app = hs256(json!({ "exp": now() + 60 }));
    let mut bodies = Vec::new();
    for t in [unknown, forged, no_app] {
        let a = get(
            &p.url("/v1/bots/bot-1"),
            &[("x-request-id", "same"), ("auth", &t)],
        )
        .await;
        assert!(
            a.header("www-authenticate")
                .unwrap()
                .contains("error=\"invalid_token\"")
        );
        bodies.push(a.body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "no oracle: {bodies:?}"
    );
}

#[tokio::test]
async fn a_custom_identity_prefix_names_the_headers_and_is_the_one_stripped() {
    let up = Upstream::start().await;
    // claims_to_headers targets must carry the prefix too.
    let policy = policy::standard().replace("x-auth-tenant", "x-gw-tenant");
    let p = ProxyBuilder::new(&policy)
        .upstream("default", up.addr)
        .upstream("sandbox", up.addr)
        .config("identity_header_prefix: X-GW-")
        .start()
        .await;
    let t = token("app-hs", json!({}));
    let e = get(
        &p.url("/v1/bots/bot-1"),
        &[
            ("auth", &t),
            ("x-gw-scopes", "admin"),
            ("x_gw_anything", "1"),
            ("x-gw-tenant", "evil"),
        ],
    )
    .await
    .echo();
    assert_eq!(e.header("x-gw-kind").as_deref(), Some("jwt"));
    assert_eq!(e.header("x-gw-app-id").as_deref(), Some("app-hs"));
    assert_eq!(
        e.header("x-gw-scopes").as_deref(),
        Some("bots:read reports")
    );
    assert_eq!(e.header("x-gw-route").as_deref(), Some("bot-read"));
    assert!(e.header("x-gw-tenant").is_none());
    let names = e.header_names();
    assert!(
        names
            .iter()
            .all(|n| !n.starts_with("x_gw") && !n.starts_with("x-auth-")),
        "{names:?}"
    );
}

#[tokio::test]
async fn identity_headers_cannot_be_spoofed() {
    let (_, _, p) = standard().await;
    let spoof = [
        ("x-auth-app-id", "app-admin"),
        ("x-auth-scopes", "admin"),
        ("x-auth-kind", "api_key"),
        ("x_auth_scopes", "admin"),
        ("X-Auth-Tenant", "evil"),
        ("x-auth-anything", "1"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
        ("x-real-ip", "10.9.9.9"),
        ("x-original-url", "/admin"),
        ("x-rewrite-url", "/admin"),
        ("x-http-method-override", "DELETE"),
        ("x-http-method", "DELETE"),
        ("x-method-override", "DELETE"),
        ("x-forwarded-for", "10.1.1.1"),
        ("forwarded", "for=10.1.1.1"),
        ("connection", "x-auth-kind, x-request-id"),
    ];
    for cred in [None, Some(token("app-hs", json!({})))] {
        let mut h: Vec<(&str, &str)> = spoof.to_vec();
        let path = if let Some(t) = &cred {
            h.push(("auth", t));
            "/v1/bots/bot-1"
        } else {
            "/public/a"
        };
        let e = get(&p.url(path), &h).await.echo();
        let kind = if cred.is_some() { "jwt" } else { "none" };
        assert_eq!(e.header("x-auth-kind").as_deref(), Some(kind));
        assert_eq!(
            e.header("x-auth-app-id").as_deref(),
            cred.as_ref().map(|_| "app-hs")
        );
        assert_eq!(
            e.header("x-auth-scopes").as_deref(),
            cred.as_ref().map(|_| "bots:read reports")
        );
        assert!(e.header("x-auth-tenant").is_none() && e.header("x-auth-anything").is_none());
        assert!(
            e.header_names().iter().all(|n| !n.starts_with("x_auth")),
            "{:?}",
            e.header_names()
        );
        assert_eq!(e.header("x-forwarded-host"), Some(p.addr.to_string()));
        assert_eq!(e.header("x-forwarded-proto").as_deref(), Some("http"));
        assert_eq!(e.header("x-real-ip").as_deref(), Some("127.0.0.1"));
        for h in [
            "x-original-url",
            "x-rewrite-url",
            "x-http-method-override",
            "x-http-method",
            "x-method-override",
            "connection",
        ] {
            assert!(e.header(h).is_none(), "{h} must be removed");
        }
        assert_eq!(
            e.header("x-forwarded-for").as_deref(),
            Some("10.1.1.1, 127.0.0.1")
        );
        assert_eq!(
            e.header("forwarded").as_deref(),
            Some("for=10.1.1.1, for=127.0.0.1")
        );
        assert!(
            e.header("x-request-id").is_some(),
            "proxy headers survive a Connection list naming them"
        );
        assert_eq!(e.0["method"], "GET");
    }
}

#[tokio::test]
async fn scope_claim_narrows_but_never_widens_and_admin_passes_scope_checks() {
    let (_, _, p) = standard().await;
    let narrowed = token("app-hs", json!({ "scope": "reports bots:write admin" }));
    let a = get(&p.url("/v1/bots/bot-1"), &[("auth", &narrowed)]).await;
    assert_eq!((a.status, a.code().as_str()), (403, "insufficient_scope"));
    let e = get(
        &p.url("/v1/bots/bot-1"),
        &[("auth", &token("app-hs", json!({ "scope": "bots:read" })))],
    )
    .await
    .echo();
    assert_eq!(e.header("x-auth-scopes").as_deref(), Some("bots:read"));
    // admin passes every scope check; resources still apply (its grant is bots: ["*"]).
    let e = send(
        "PATCH",
        &p.url("/v1/bots/any"),
        &[("authorization", &bearer(KEY_ADMIN))],
        None,
    )
    .await
    .echo();
    assert_eq!(e.header("x-auth-scopes").as_deref(), Some("admin"));
    let bad = token("app-hs", json!({ "scope": ["bots:read"] }));
    assert_eq!(
        get(&p.url("/v1/bots/bot-1"), &[("auth", &bad)])
            .await
            .code(),
        "invalid_token"
    );
}

#[tokio::test]
async fn table_grants_follow_actions() {
    let (_, _, p) = standard().await;
    let t = token("app-hs", json!({}));
    assert_eq!(
        send(
            "POST",
            &p.url("/tables/orders/query"),
            &[("auth", &t)],
            None
        )
        .await
        .status,
        200
    );
    assert_eq!(
        send("DELETE", &p.url("/tables/orders"), &[("auth", &t)], None)
            .await
            .code(),
        "resource_not_allowed"
    );
}

#[tokio::test]
async fn tokens_without_exp_follow_require_exp() {
    let (_, _, p) = standard().await;
    let t = token("app-noexp", json!({ "exp": null }));
    assert_eq!(get(&p.url("/v1/bots/x"), &[("auth", &t)]).await.status, 200);
    let t = token("app-noexp", json!({ "exp": "tomorrow" }));
    assert_eq!(
        get(&p.url("/v1/bots/x"), &[("auth", &t)]).await.code(),
        "invalid_token"
    );
}

#[tokio::test]
async fn single_use_jti_is_accepted_once() {
    let (up, _, p) = standard().await;
    let t = token(
        "app-strict",
        json!({ "aud": ["x", "https://api.example"], "jti": "once" }),
    );
    assert_eq!(get(&p.url("/v1/bots/b"), &[("auth", &t)]).await.status, 200);
    assert_eq!(
        get(&p.url("/v1/bots/b"), &[("auth", &t)]).await.code(),
        "token_replayed"
    );
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn a_far_future_exp_is_refused_before_its_jti_is_remembered() {
    let (up, _, p) = standard().await;
    let replay = &p.running.as_ref().unwrap().state.decider.verifier.replay;
    // A stream of distinct jtis on tokens far past max_lifetime: none is remembered.
    for (n, exp) in ["1e300", "9.2e15", "9223372036854775807"]
        .iter()
        .cycle()
        .take(300)
        .enumerate()
    {
        let claims = format!(
            r#"{{"appId":"app-strict","aud":"https://api.example","jti":"far-{n}","exp":{exp}}}"#
        );
        let t = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &serde_json::from_str::<serde_json::Value>(&claims).unwrap(),
            &jsonwebtoken::EncodingKey::from_secret(HS_SECRET.as_bytes()),
        )
        .unwrap();
        let a = get(&p.url("/v1/bots/b"), &[("auth", &t)]).await;
        assert_eq!(
            (a.status, a.code().as_str()),
            (401, "invalid_token"),
            "exp {exp}"
        );
    }
    assert_eq!(replay.remembered(), 0);
    // Within max_lifetime (24 h by default): accepted once, and remembered.
    let t = token(
        "app-strict",
        json!({ "aud": "https://api.example", "jti": "near", "exp": now() + 23 * 3600 }),
    );
    assert_eq!(get(&p.url("/v1/bots/b"), &[("auth", &t)]).await.status, 200);
    assert_eq!(
        get(&p.url("/v1/bots/b"), &[("auth", &t)]).await.code(),
        "token_replayed"
    );
    assert_eq!(replay.remembered(), 1);
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn rate_limits_answer_429_with_headers() {
    let (_, _, p) = standard().await;
    let t = token("app-limited", json!({}));
    let a = get(&p.url("/v1/bots/b"), &[("auth", &t)]).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        (a.header("ratelimit-limit"), a.header("ratelimit-remaining")),
        (Some("2"), Some("1"))
    );
    // Seconds until the bucket is full: one token missing at 0.01 per second.
    let secs = |a: &Answer, h: &str| a.header(h).unwrap().parse::<u64>().unwrap();
    assert!(
        (99..=100).contains(&secs(&a, "ratelimit-reset")),
        "{:?}",
        a.header("ratelimit-reset")
    );
    assert_eq!(get(&p.url("/v1/bots/b"), &[("auth", &t)]).await.status, 200);
    let a = get(&p.url("/v1/bots/b"), &[("auth", &t)]).await;
    assert_eq!((a.status, a.code().as_str()), (429, "rate_limited"));
    assert_eq!(a.header("ratelimit-remaining"), Some("0"));
    // Two tokens missing; one request is allowed again after about one token's time.
    assert!(
        (199..=200).contains(&secs(&a, "ratelimit-reset")),
        "{:?}",
        a.header("ratelimit-reset")
    );
    assert!(
        (99..=100).contains(&secs(&a, "retry-after")),
        "{:?}",
        a.header("retry-after")
    );
    let a = get(
        &p.url("/v1/bots/b"),
        &[("authorization", &bearer(KEY_LIMITED))],
    )
    .await;
    assert_eq!(a.status, 200, "keys have their own buckets");
    assert_eq!(
        get(
            &p.url("/v1/bots/b"),
            &[("authorization", &bearer(KEY_LIMITED))]
        )
        .await
        .code(),
        "rate_limited"
    );
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[tokio::test]
async fn webhook_signature_over_the_raw_body() {
    let (_, _, p) = standard().await;
    let body = br#"{"event":"message","text":"hi"}"#.to_vec();
    let sig = webhook_sig(now() as i64, &body);
    let e = send(
        "POST",
        &p.url("/hooks/slack"),
        &[("x-signature", &sig)],
        Some(body.clone()),
    )
    .await
    .echo();
    assert_eq!(e.header("x-auth-kind").as_deref(), Some("webhook"));
    assert_eq!(
        e.0["body"],
        String::from_utf8(body.clone()).unwrap(),
        "the body arrives intact"
    );
    let mut tampered = body.clone();
    tampered[3] ^= 1;
    assert_eq!(
        send(
            "POST",
            &p.url("/hooks/slack"),
            &[("x-signature", &sig)],
            Some(tampered)
        )
        .await
        .code(),
        "invalid_signature"
    );
}

/// An optional webhook route (`auth: [webhook, none]`) and a single-use-jti app with leeway.
fn optional_hook_and_leeway_policy() -> String {
    format!(
        r#"version: 1
scopes:
  bots:read: Read bots
routes:
  - {{ id: hook, methods: [POST], path: "/hooks/{{channel}}", auth: [webhook, none], webhook: {{ secret: {{ value: {WEBHOOK_SECRET} }} }} }}
  - {{ id: bot-read, methods: [GET], path: "/v1/bots/{{botId}}", auth: [jwt], scopes: [bots:read], resource: {{ kind: bots, param: botId }} }}
apps:
  - client_id: app-once
    algorithms: [HS256]
    secret: {{ value: {HS_SECRET} }}
    enforce_jti: true
    single_use_jti: true
    leeway: 30s
    scopes: [bots:read]
    resources: {{ bots: ["*"] }}
"#
    )
}

#[tokio::test]
async fn an_optional_webhook_route_takes_unsigned_requests_but_checks_signed_ones() {
    let (up, p) = Proxy::with_upstream(&optional_hook_and_leeway_policy()).await;
    let body = b"{}".to_vec();
    let post = |sig: Option<String>| {
        let url = p.url("/hooks/slack");
        let body = body.clone();
        async move {
            let headers: Vec<(&str, &str)> =
                sig.iter().map(|s| ("x-signature", s.as_str())).collect();
            send("POST", &url, &headers, Some(body)).await
        }
    };
    let unsigned = post(None).await.echo();
    assert_eq!(unsigned.header("x-auth-kind").as_deref(), Some("none"));
    let signed = post(Some(webhook_sig(now() as i64, &body))).await.echo();
    assert_eq!(signed.header("x-auth-kind").as_deref(), Some("webhook"));
    // A signature that is present must be valid.
    let forged = post(Some(format!("t={},v1=00", now()))).await;
    assert_eq!(
        (forged.status, forged.code().as_str()),
        (401, "invalid_signature")
    );
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn a_single_use_jti_is_remembered_through_the_leeway_after_exp() {
    let (up, p) = Proxy::with_upstream(&optional_hook_and_leeway_policy()).await;
    // Expired 5 s ago, still inside the app's 30 s leeway: accepted once.
    let t = token("app-once", json!({ "jti": "late", "exp": now() - 5 }));
    assert_eq!(get(&p.url("/v1/bots/b"), &[("auth", &t)]).await.status, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = get(&p.url("/v1/bots/b"), &[("auth", &t)]).await;
    assert_eq!(
        (again.status, again.code().as_str()),
        (401, "token_replayed")
    );
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn webhook_body_over_the_limit_is_413() {
    let up = Upstream::start().await;
    let p = ProxyBuilder::new(&policy::standard())
        .upstream("default", up.addr)
        .upstream("sandbox", up.addr)
        .config("limits: { max_body_bytes: 1024 }")
        .start()
        .await;
    let body = vec![b'x'; 4096];
    let a = send(
        "POST",
        &p.url("/hooks/slack"),
        &[("x-signature", &webhook_sig(now() as i64, &body))],
        Some(body),
    )
    .await;
    assert_eq!((a.status, a.code().as_str()), (413, "payload_too_large"));
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn large_bodies_stream_through_untouched() {
    let (_, _, p) = standard().await;
    let body: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let digest = scopegate::policy::compile::sha256_hex(&body);
    let e = send("POST", &p.url("/upload"), &[], Some(body.clone()))
        .await
        .echo();
    assert_eq!(e.0["body_len"], body.len());
    assert_eq!(e.0["body_sha256"], digest);
}

#[tokio::test]
async fn unmatched_requests_are_denied_or_passed_through_as_configured() {
    let up = Upstream::start().await;
    let p = ProxyBuilder::new(&policy::standard())
        .upstream("default", up.addr)
        .upstream("sandbox", up.addr)
        .config("unmatched: passthrough")
        .start()
        .await;
    let e = get(
        &p.url("/legacy/thing"),
        &[("authorization", &bearer(KEY_READ)), ("x-auth-kind", "jwt")],
    )
    .await
    .echo();
    assert_eq!(e.header("x-auth-kind").as_deref(), Some("none"));
    assert!(e.header("authorization").is_none());
    assert!(e.header("x-auth-route").is_none());
    // Matched routes are still enforced.
    assert_eq!(
        get(&p.url("/v1/bots/bot-1"), &[]).await.code(),
        "missing_credentials"
    );
    // Invalid paths are refused before the passthrough decision.
    let (status, body) = raw_get(p.addr, "/legacy/%2e%2e/%2e%2e/x", &[]).await;
    assert_eq!(status, 400);
    assert!(body.contains("\"invalid_path\""), "{body}");
}

#[tokio::test]
async fn shadow_routes_forward_what_enforcement_would_refuse_and_count_it() {
    let (up, _, p) = standard().await;
    let t = token("app-hs", json!({}));
    let e = get(&p.url("/shadow"), &[("auth", &t)]).await.echo();
    assert_eq!(
        e.header("x-auth-kind").as_deref(),
        Some("none"),
        "an unauthorized shadow request carries no identity"
    );
    assert_eq!(
        e.header("auth").as_deref(),
        Some(t.as_str()),
        "the upstream still authenticates in shadow mode"
    );
    assert_eq!(up.hits(), 1);
    let metrics = p.metrics().await;
    assert!(
        metrics.contains(
            "scopegate_shadow_denials_total{code=\"insufficient_scope\",route=\"shadowed\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_is_504() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let up = Upstream::start().await;
    let p = ProxyBuilder::new(&policy::standard())
        .upstream("default", up.addr)
        .upstream("sandbox", closed)
        .config("environments: { test: sandbox }\nlimits: { upstream_timeout: 300ms, upstream_connect_timeout: 300ms }")
        .start()
        .await;
    let a = get(
        &p.url("/v1/bots"),
        &[("authorization", &bearer(KEY_SANDBOX))],
    )
    .await;
    assert_eq!((a.status, a.code().as_str()), (502, "upstream_unavailable"));
    let a = get(&p.url("/public/slow"), &[("x-test-delay-ms", "2000")]).await;
    assert_eq!((a.status, a.code().as_str()), (504, "upstream_timeout"));
    let a = get(&p.url("/public/fast"), &[("x-test-delay-ms", "10")]).await;
    assert_eq!(a.status, 200);
    let metrics = p.metrics().await;
    assert!(
        metrics.contains("scopegate_upstream_errors_total{kind=\"connect\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("scopegate_upstream_errors_total{kind=\"timeout\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn upstream_statuses_and_bodies_pass_through() {
    let (_, _, p) = standard().await;
    let a = get(
        &p.url("/public/x"),
        &[("x-test-status", "418"), ("x-test-body", "teapot")],
    )
    .await;
    assert_eq!((a.status, &a.body[..]), (418, &b"teapot"[..]));
    assert!(a.header("x-request-id").is_some());
}

#[tokio::test]
async fn head_is_allowed_where_get_is() {
    let (_, _, p) = standard().await;
    let a = send(
        "HEAD",
        &p.url("/v1/bots/bot-1"),
        &[("authorization", &bearer(KEY_READ))],
        None,
    )
    .await;
    assert_eq!(a.status, 200);
    assert!(a.body.is_empty());
}

#[tokio::test]
async fn keep_alive_requests_are_each_authenticated() {
    let (_, _, p) = standard().await;
    let c = client();
    let ok = c
        .get(p.url("/v1/bots/bot-1"))
        .header("authorization", bearer(KEY_READ))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    ok.bytes().await.unwrap();
    let next = c.get(p.url("/v1/bots/bot-1")).send().await.unwrap();
    assert_eq!(
        next.status(),
        401,
        "nothing carries over on a kept-alive connection"
    );
}

#[tokio::test]
async fn admin_endpoints_report_and_never_leak_secrets() {
    let (_, _, p) = standard().await;
    get(
        &p.url("/v1/bots/bot-1"),
        &[("authorization", &bearer(KEY_READ))],
    )
    .await;
    let c = client();
    assert_eq!(
        c.get(p.admin_url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(p.admin_url("/readyz")).send().await.unwrap().status(),
        200
    );
    let policy: serde_json::Value = c
        .get(p.admin_url("/policy"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(policy["generation"], 1);
    assert_eq!(policy["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(policy["counts"]["api_keys"], 6);
    let metrics = c
        .get(p.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for family in [
        "scopegate_requests_total",
        "scopegate_request_duration_seconds",
        "scopegate_auth_duration_seconds",
        "scopegate_upstream_duration_seconds",
        "scopegate_inflight_requests",
        "scopegate_policy_reloads_total",
        "scopegate_policy_generation",
        "scopegate_access_log_dropped_total",
        "scopegate_token_cache_hits_total",
        "scopegate_upstream_errors_total",
    ] {
        assert!(metrics.contains(family), "{family} missing");
    }
    assert!(
        metrics.contains(
            r#"scopegate_requests_total{code="ok",route="bot-read",status_class="2xx"} 1"#
        ),
        "{metrics}"
    );
    for text in [policy.to_string(), metrics] {
        for secret in [
            HS_SECRET,
            KEY_READ,
            WEBHOOK_SECRET,
            &policy::sha256(KEY_READ),
        ] {
            assert!(!text.contains(secret), "admin output leaks {secret}");
        }
    }
    // The admin endpoints are never served on the public listener.
    assert_eq!(get(&p.url("/metrics"), &[]).await.code(), "no_route");
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let (_, _, mut p) = standard().await;
    let url = p.url("/public/slow");
    let in_flight = tokio::spawn(async move { get(&url, &[("x-test-delay-ms", "700")]).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let admin = p.admin_url("/readyz");
    let state = p.running.as_ref().unwrap().state.clone();
    let shutdown = tokio::spawn(async move { p.shutdown().await });
    eventually(
        Duration::from_secs(2),
        "readyz turns 503 while draining",
        || {
            let admin = admin.clone();
            async move { reqwest::get(&admin).await.is_ok_and(|r| r.status() == 503) }
        },
    )
    .await;
    assert!(!state.is_ready());
    assert!(
        !shutdown.is_finished(),
        "the drain waits for the request in flight"
    );
    let a = in_flight.await.unwrap();
    assert_eq!(a.status, 200, "the in-flight request completed");
    shutdown.await.unwrap();
}

#[tokio::test]
async fn the_drain_stops_waiting_at_the_drain_timeout() {
    let up = Upstream::start().await;
    let mut p = ProxyBuilder::new(&policy::standard())
        .upstream("default", up.addr)
        .config("limits: { drain_timeout: 300ms }")
        .start()
        .await;
    let url = p.url("/public/slow");
    // Outlives the drain; its outcome does not matter here.
    let _in_flight = tokio::spawn(async move {
        client()
            .get(url)
            .header("x-test-delay-ms", "5000")
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    p.shutdown().await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_busy_polling_proxy_serves_then_goes_quiet() {
    let up = Upstream::start().await;
    let p = ProxyBuilder::new(&policy::standard())
        .upstream("default", up.addr)
        .config("limits: { busy_poll: 2ms }")
        .start()
        .await;
    for _ in 0..10 {
        assert_eq!(get(&p.url("/public/x"), &[]).await.status, 200);
    }
    let state = &p.running.as_ref().unwrap().state;
    let bp = state
        .busy_poll
        .as_ref()
        .expect("limits.busy_poll turns it on");
    assert!(bp.spins() > 0, "requests made it spin");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let settled = bp.spins();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(bp.spins(), settled, "no requests, no spinning");
}
