//! scopegate as an issuer (SPEC §3.7), through the real proxy and a real upstream: the
//! token endpoint (exchange, refusals, brute force), minted tokens verified by the proxy
//! and by Python joserfc through the published JWKS, key rotation, client removal, and the
//! upstream assertion.

mod common;

use std::time::Duration;

use serde_json::{Value, json};

use common::jose::{self, bearer, key};
use common::policy::{KEY_READ, sha256};
use common::*;

const ISSUER: &str = "https://gw.test/";
const ENDPOINT: &str = "/monitor/v1/auth";
const ACME: &str = "partner-acme";
const ACME_SECRET: &str = "acme-secret-key-0123456789";
const OTHER: &str = "partner-other";
const OTHER_SECRET: &str = "other-secret-key-0123456789";
const LIMITED: &str = "partner-limited";
const ASSERTION: &str = "x-gateway-assertion";
const RELOAD: Duration = Duration::from_secs(10);

/// The issuer's key: `(kid, private key fixture)`, and previous keys `(kid, public fixture)`.
struct Keys<'a> {
    kid: &'a str,
    signing: &'a str,
    previous: &'a [(&'a str, &'a str)],
}

const ES256: Keys = Keys {
    kid: "k-ec",
    signing: "app-ec256.key.pem",
    previous: &[],
};
const EDDSA: Keys = Keys {
    kid: "k-ed",
    signing: "app-ed25519.key.pem",
    previous: &[],
};

fn policy(keys: &Keys<'_>, acme_secret: &str, with_acme: bool) -> String {
    let mut previous: String = keys
        .previous
        .iter()
        .map(|(kid, f)| format!("    - {{ kid: {kid}, public_key_file: {} }}\n", key(f)))
        .collect();
    if !previous.is_empty() {
        previous.insert_str(0, "  previous_keys:\n");
    }
    let acme = if with_acme {
        format!(
            "    - {{ access_key: {ACME}, secret_sha256: {}, scopes: [bots:read], resources: {{ bots: [bot-1] }} }}\n",
            sha256(acme_secret)
        )
    } else {
        String::new()
    };
    format!(
        r#"version: 1
scopes:
  bots:read: View bots
  bots:write: Change bots
routes:
  - {{ id: bot-read, methods: [GET], path: "/v1/bots/{{botId}}", auth: [jwt, api_key], scopes: [bots:read], resource: {{ kind: bots, param: botId }} }}
  - {{ id: hs, methods: [GET], path: /hs, auth: [jwt] }}
  - {{ id: public, methods: [GET], path: /public, auth: [none] }}
apps:
  - client_id: app-hs
    algorithms: [HS256]
    secret: {{ value: {HS_SECRET} }}
    scopes: [bots:read]
    resources: {{ bots: ["*"] }}
api_keys:
  - {{ id: key-read, sha256: {key_read}, scopes: [bots:read], resources: {{ bots: ["*"] }} }}
issuer:
  name: {ISSUER}
  signing_key_file: {signing}
  kid: {kid}
{previous}upstream_assertion: {{ header: {ASSERTION}, ttl: 60s }}
token_endpoint:
  path: {ENDPOINT}
  ttl: 1800s
  clients:
{acme}    - {{ access_key: {OTHER}, secret_sha256: {other}, scopes: [bots:read], resources: {{ bots: ["*"] }} }}
    - {{ access_key: {LIMITED}, secret_sha256: {other}, rate_limit: {{ per_second: 0.01, burst: 1 }} }}
"#,
        key_read = sha256(KEY_READ),
        signing = key(keys.signing),
        kid = keys.kid,
        other = sha256(OTHER_SECRET),
    )
}

async fn start(keys: &Keys<'_>) -> (Upstream, Proxy) {
    Proxy::with_upstream(&policy(keys, ACME_SECRET, true)).await
}

/// `POST` to the token endpoint from `from` (a loopback address), with a JSON content type.
async fn post_from(p: &Proxy, from: &str, body: &str, content_type: &str, rid: &str) -> Answer {
    let c = reqwest::Client::builder()
        .local_address(Some(from.parse().unwrap()))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let r = c
        .post(p.url(ENDPOINT))
        .header("content-type", content_type)
        .header("x-request-id", rid)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    Answer::from(r).await
}

async fn exchange_from(p: &Proxy, from: &str, access: &str, secret: &str) -> Answer {
    let body = json!({ "accessKey": access, "secretKey": secret }).to_string();
    post_from(p, from, &body, "application/json", "rid-exchange").await
}

/// A token for `access`, which must be issued.
async fn exchange(p: &Proxy, access: &str, secret: &str) -> String {
    let a = exchange_from(p, "127.0.0.1", access, secret).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    v["accessToken"].as_str().unwrap().to_string()
}

async fn jwks(p: &Proxy) -> String {
    let a = get(&p.url("/.well-known/scopegate/jwks.json"), &[]).await;
    assert_eq!(a.status, 200);
    String::from_utf8(a.body.to_vec()).unwrap()
}

/// Verifies `token` with joserfc against `jwks` (key by kid; iss, aud, exp checked).
async fn py_verify(tokens: &[(&str, &str)], jwks: &str) -> Vec<Result<Value, String>> {
    let jobs = tokens
        .iter()
        .map(|(t, aud)| {
            Value::from(&jose::Job(
                [
                    "verify-jwks",
                    "--jwks",
                    jwks,
                    "--token",
                    t,
                    "--iss",
                    ISSUER,
                    "--aud",
                    aud,
                ]
                .map(String::from)
                .to_vec(),
                None,
            ))
        })
        .collect();
    jose::batch(jobs)
        .await
        .into_iter()
        .map(|r| r.map(|o| serde_json::from_str(&o.out).unwrap()))
        .collect()
}

async fn call(p: &Proxy, path: &str, token: &str) -> Answer {
    get(&p.url(path), &[("authorization", &bearer(token))]).await
}

// ---------------------------------------------------------------- the exchange

#[tokio::test]
async fn an_exchanged_token_calls_the_api_until_its_client_is_changed_or_removed() {
    let (up, p) = start(&ES256).await;
    let a = exchange_from(&p, "127.0.0.1", ACME, ACME_SECRET).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("cache-control"), Some("no-store"));
    assert_eq!(a.header("content-type"), Some("application/json"));
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["expireIn"], 1800);
    assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
    let token = v["accessToken"].as_str().unwrap().to_string();

    let echo = call(&p, "/v1/bots/bot-1", &token).await.echo();
    assert_eq!(echo.header("x-auth-kind").as_deref(), Some("jwt"));
    assert_eq!(echo.header("x-auth-app-id").as_deref(), Some(ACME));
    assert_eq!(echo.header("x-auth-scopes").as_deref(), Some("bots:read"));
    // The client's grants, not more.
    let a = call(&p, "/v1/bots/bot-2", &token).await;
    assert_eq!((a.status, a.code()), (403, "resource_not_allowed".into()));
    assert_eq!(up.hits(), 1);

    // A new secret: the old tokens stop at the swap; the new secret exchanges.
    std::fs::write(&p.policy_file, policy(&ES256, "acme-new-secret-42", true)).unwrap();
    eventually(RELOAD, "the changed secret is in force", || async {
        call(&p, "/v1/bots/bot-1", &token).await.status == 401
    })
    .await;
    let a = call(&p, "/v1/bots/bot-1", &token).await;
    assert_eq!(a.code(), "invalid_token");
    let a = exchange_from(&p, "127.0.0.1", ACME, ACME_SECRET).await;
    assert_eq!(a.code(), "invalid_client");
    let renewed = exchange(&p, ACME, "acme-new-secret-42").await;
    assert_eq!(call(&p, "/v1/bots/bot-1", &renewed).await.status, 200);

    // Removed: whatever it holds is refused.
    std::fs::write(&p.policy_file, policy(&ES256, "acme-new-secret-42", false)).unwrap();
    eventually(RELOAD, "the removal is in force", || async {
        call(&p, "/v1/bots/bot-1", &renewed).await.status == 401
    })
    .await;
    let a = exchange_from(&p, "127.0.0.1", ACME, "acme-new-secret-42").await;
    assert_eq!(a.code(), "invalid_client");
    // The other clients were not touched.
    let other = exchange(&p, OTHER, OTHER_SECRET).await;
    assert_eq!(call(&p, "/v1/bots/bot-9", &other).await.status, 200);
}

#[tokio::test]
async fn a_wrong_secret_and_an_unknown_key_get_byte_identical_answers() {
    let (up, p) = start(&ES256).await;
    let wrong = exchange_from(&p, "127.0.0.1", ACME, "not-the-secret").await;
    let unknown = exchange_from(&p, "127.0.0.1", "partner-nobody", ACME_SECRET).await;
    for a in [&wrong, &unknown] {
        assert_eq!((a.status, a.code()), (401, "invalid_client".into()));
        assert!(
            a.header("www-authenticate").is_none(),
            "no bearer challenge"
        );
        assert_eq!(a.header("cache-control"), Some("no-store"));
    }
    assert_eq!(wrong.body, unknown.body, "same request id, same bytes");
    let names = |a: &Answer| {
        let mut v: Vec<(String, String)> = a
            .headers
            .iter()
            .filter(|(n, _)| *n != "date")
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&wrong), names(&unknown));
    let body = String::from_utf8_lossy(&wrong.body);
    assert!(
        !body.contains(ACME) && !body.contains("not-the-secret"),
        "{body}"
    );
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn anything_but_the_json_object_is_a_malformed_request() {
    let (up, p) = start(&EDDSA).await;
    let ok = json!({ "accessKey": OTHER, "secretKey": OTHER_SECRET }).to_string();
    // The right credentials as an array of the fields in order: serde's derived reading
    // would take it for the object (found by the token_body fuzz target).
    let as_array = json!([OTHER, OTHER_SECRET]).to_string();
    let cases: &[(&str, &str)] = &[
        (&ok, "text/plain"),
        (&as_array, "application/json"),
        (&ok, "application/x-www-form-urlencoded"),
        ("", "application/json"),
        ("not json", "application/json"),
        ("[]", "application/json"),
        ("\"accessKey\"", "application/json"),
        (r#"{"accessKey":"partner-other"}"#, "application/json"),
        (r#"{"secretKey":"x"}"#, "application/json"),
        (r#"{"accessKey":1,"secretKey":"x"}"#, "application/json"),
        (
            r#"{"accessKey":"partner-other","secretKey":null}"#,
            "application/json",
        ),
        (
            r#"{"accessKey":"partner-other","secretKey":["x"]}"#,
            "application/json",
        ),
        (
            r#"{"accessKey":"a","accessKey":"partner-other","secretKey":"x"}"#,
            "application/json",
        ),
    ];
    for (body, ct) in cases {
        let a = post_from(&p, "127.0.0.1", body, ct, "rid").await;
        assert_eq!(
            (a.status, a.code()),
            (400, "malformed_request".into()),
            "{ct} {body}"
        );
    }
    let big = json!({ "accessKey": OTHER, "secretKey": "x".repeat(16 * 1024) }).to_string();
    let a = post_from(&p, "127.0.0.1", &big, "application/json", "rid").await;
    assert_eq!((a.status, a.code()), (413, "payload_too_large".into()));
    // Unknown members are ignored; a charset parameter is fine.
    let extra = json!({ "accessKey": OTHER, "secretKey": OTHER_SECRET, "x": 1 }).to_string();
    let a = post_from(
        &p,
        "127.0.0.1",
        &extra,
        "application/json; charset=utf-8",
        "r",
    )
    .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    // Only POST is the exchange; the path is no route otherwise.
    let a = get(&p.url(ENDPOINT), &[]).await;
    assert_eq!((a.status, a.code()), (404, "no_route".into()));
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn from_the_eleventh_failure_in_a_minute_the_key_and_the_address_get_429() {
    let (_up, p) = start(&ES256).await;
    // Ten failures against one key, from one address.
    for i in 0..10 {
        let a = exchange_from(&p, "127.0.0.2", ACME, "wrong").await;
        assert_eq!(
            (a.status, a.code()),
            (401, "invalid_client".into()),
            "attempt {i}"
        );
    }
    // The eleventh attempt, right or wrong, from that address or for that key: 429.
    let checks = [
        ("127.0.0.2", ACME, ACME_SECRET),
        ("127.0.0.2", ACME, "wrong"),
        ("127.0.0.3", ACME, ACME_SECRET),
        ("127.0.0.2", OTHER, OTHER_SECRET),
    ];
    for (from, access, secret) in checks {
        let a = exchange_from(&p, from, access, secret).await;
        assert_eq!(
            (a.status, a.code()),
            (429, "rate_limited".into()),
            "{from} {access}"
        );
        let retry: u64 = a.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
    }
    // Another key from another address is untouched.
    let a = exchange_from(&p, "127.0.0.3", OTHER, OTHER_SECRET).await;
    assert_eq!(a.status, 200);
    let m = p.metrics().await;
    assert!(
        m.contains(r#"scopegate_token_exchanges_total{result="rate_limited"} 4"#),
        "{m}"
    );
    assert!(m.contains(r#"scopegate_token_exchanges_total{result="invalid_client"} 10"#));
    assert!(!m.contains(ACME_SECRET) && !m.contains("wrong\""));
}

#[tokio::test]
async fn a_client_rate_limit_counts_successful_exchanges() {
    let (_up, p) = start(&ES256).await;
    assert_eq!(
        exchange_from(&p, "127.0.0.1", LIMITED, OTHER_SECRET)
            .await
            .status,
        200
    );
    let a = exchange_from(&p, "127.0.0.1", LIMITED, OTHER_SECRET).await;
    assert_eq!((a.status, a.code()), (429, "rate_limited".into()));
    assert!(a.header("retry-after").is_some());
}

// ---------------------------------------------------------------- what scopegate signs

#[tokio::test]
async fn minted_tokens_and_assertions_verify_with_joserfc_through_the_jwks() {
    for keys in [&ES256, &EDDSA] {
        let (_up, p) = start(keys).await;
        let doc = jwks(&p).await;
        let published: Value = serde_json::from_str(&doc).unwrap();
        let sig: Vec<&Value> = published["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| k["use"] == "sig")
            .collect();
        assert_eq!(sig.len(), 1, "{doc}");
        assert_eq!(sig[0]["kid"], keys.kid);
        assert!(sig[0].get("d").is_none(), "never a private member: {doc}");

        let token = exchange(&p, ACME, ACME_SECRET).await;
        let first = call(&p, "/v1/bots/bot-1", &token).await.echo();
        let again = call(&p, "/v1/bots/bot-1", &token).await.echo();
        let by_key = get(
            &p.url("/v1/bots/bot-3"),
            &[("authorization", &bearer(KEY_READ)), (ASSERTION, "forged")],
        )
        .await
        .echo();
        let hs = call(&p, "/hs", &common::policy::token("app-hs", json!({})))
            .await
            .echo();
        let assertion = first.header(ASSERTION).expect("an assertion");
        assert_eq!(
            again.header(ASSERTION).as_deref(),
            Some(assertion.as_str()),
            "reused"
        );
        let by_key = by_key
            .header(ASSERTION)
            .expect("the proxy's, not the client's");
        assert_ne!(by_key, "forged");
        let hs = hs.header(ASSERTION).unwrap();

        let out = py_verify(
            &[
                (&token, ISSUER),
                (&assertion, "default"),
                (&by_key, "default"),
                (&hs, "default"),
            ],
            &doc,
        )
        .await;
        let out: Vec<Value> = out
            .into_iter()
            .map(|r| r.unwrap_or_else(|e| panic!("{}: {e}", keys.kid)))
            .collect();
        let (t, a) = (&out[0]["claims"], &out[1]["claims"]);
        assert_eq!(out[0]["header"]["kid"], keys.kid);
        assert_eq!(out[0]["header"]["alg"], sig[0]["alg"]);
        assert_eq!(t["appId"], ACME);
        assert_eq!(t["sub"], ACME);
        assert_eq!(
            t["exp"].as_u64().unwrap() - t["iat"].as_u64().unwrap(),
            1800
        );
        assert!(t["jti"].as_str().is_some_and(|j| !j.is_empty()));

        assert_eq!(a["kind"], "jwt");
        assert_eq!(a["sub"], ACME);
        assert_eq!(a["route"], "bot-read");
        assert_eq!(a["scopes"], "bots:read");
        assert_eq!(a["exp"].as_u64().unwrap() - a["iat"].as_u64().unwrap(), 60);
        assert!(a["jti"].as_str().is_some());
        let k = &out[2]["claims"];
        assert_eq!(
            (&k["kind"], &k["sub"]),
            (&json!("api_key"), &json!("key-read"))
        );
        let h = &out[3]["claims"];
        assert_eq!(
            (&h["kind"], &h["sub"], &h["route"]),
            (&json!("jwt"), &json!("user-7"), &json!("hs"))
        );
        assert_ne!(a["jti"], h["jti"]);
    }
}

#[tokio::test]
async fn public_routes_carry_no_assertion_and_a_client_sent_one_never_reaches_the_upstream() {
    let (_up, p) = start(&EDDSA).await;
    let echo = get(
        &p.url("/public"),
        &[(ASSERTION, "forged"), ("x-gateway_assertion", "f2")],
    )
    .await
    .echo();
    assert_eq!(echo.header(ASSERTION), None);
    assert_eq!(echo.header("x-auth-kind").as_deref(), Some("none"));
    // Refused requests reach nothing at all; a valid one gets the proxy's own.
    let a = get(&p.url("/v1/bots/bot-1"), &[(ASSERTION, "forged")]).await;
    assert_eq!(a.status, 401);
    let token = exchange(&p, OTHER, OTHER_SECRET).await;
    let echo = get(
        &p.url("/v1/bots/bot-1"),
        &[("authorization", &bearer(&token)), (ASSERTION, "forged")],
    )
    .await
    .echo();
    assert_ne!(echo.header(ASSERTION).as_deref(), Some("forged"));
}

#[tokio::test]
async fn tokens_of_another_issuer_name_or_key_are_refused() {
    let (up, p) = start(&EDDSA).await;
    let genuine = exchange(&p, ACME, ACME_SECRET).await;
    let claims = jose::decode_part(&genuine, 1);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims.clone();
        f(&mut c);
        c
    };
    let jobs: Vec<Value> = [
        // Signed with another key, everything else as minted.
        jose::sign("ES256", &key("app-ec256.key.pem"), &claims),
        jose::sign_h(
            "ES256",
            &key("app-ec256.key.pem"),
            &claims,
            json!({ "kid": "k-ed" }),
        ),
        // The issuer's own key (as if it leaked to a test), but another issuer's name, or
        // no secret binding: still refused.
        jose::sign(
            "EdDSA",
            &key("app-ed25519.key.pem"),
            &with(&|c| c["iss"] = "https://evil/".into()),
        ),
        jose::sign(
            "EdDSA",
            &key("app-ed25519.key.pem"),
            &with(&|c| {
                c.as_object_mut().unwrap().remove("sgb");
            }),
        ),
        jose::sign(
            "EdDSA",
            &key("app-ed25519.key.pem"),
            &with(&|c| c["aud"] = "https://evil/".into()),
        ),
        // The control: the same key and claims verify.
        jose::sign("EdDSA", &key("app-ed25519.key.pem"), &claims),
    ]
    .iter()
    .map(Value::from)
    .collect();
    let tokens: Vec<String> = jose::batch_ok(jobs)
        .await
        .into_iter()
        .map(|o| o.out)
        .collect();
    let (control, refused) = tokens.split_last().unwrap();
    for (i, t) in refused.iter().enumerate() {
        let a = call(&p, "/v1/bots/bot-1", t).await;
        let code = if i == 4 {
            "invalid_audience"
        } else {
            "invalid_token"
        };
        assert_eq!((a.status, a.code()), (401, code.into()), "case {i}");
    }
    // An HS256 token naming the client, signed with an app's secret.
    let hs = common::policy::token(ACME, json!({ "iss": ISSUER, "aud": ISSUER }));
    assert_eq!(
        call(&p, "/v1/bots/bot-1", &hs).await.code(),
        "invalid_token"
    );
    assert_eq!(call(&p, "/v1/bots/bot-1", control).await.status, 200);
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn tokens_of_a_previous_key_work_until_it_is_removed() {
    let (_up, p) = start(&EDDSA).await;
    let old = exchange(&p, ACME, ACME_SECRET).await;
    let rotated = Keys {
        kid: "k-ec",
        signing: "app-ec256.key.pem",
        previous: &[("k-ed", "app-ed25519.pub.pem")],
    };
    std::fs::write(&p.policy_file, policy(&rotated, ACME_SECRET, true)).unwrap();
    eventually(RELOAD, "the new key is published", || async {
        jwks(&p).await.contains("\"k-ec\"")
    })
    .await;
    let doc = jwks(&p).await;
    assert!(
        doc.contains("\"k-ed\""),
        "the previous key stays published: {doc}"
    );
    assert_eq!(call(&p, "/v1/bots/bot-1", &old).await.status, 200);
    let new = exchange(&p, ACME, ACME_SECRET).await;
    assert_eq!(jose::decode_part(&new, 0)["kid"], "k-ec");
    assert_eq!(jose::decode_part(&new, 0)["alg"], "ES256");
    let out = py_verify(&[(&old, ISSUER), (&new, ISSUER)], &doc).await;
    assert!(out.iter().all(Result::is_ok), "{out:?}");

    std::fs::write(&p.policy_file, policy(&ES256, ACME_SECRET, true)).unwrap();
    eventually(RELOAD, "the previous key is dropped", || async {
        !jwks(&p).await.contains("\"k-ed\"")
    })
    .await;
    let a = call(&p, "/v1/bots/bot-1", &old).await;
    assert_eq!((a.status, a.code()), (401, "invalid_token".into()));
    assert_eq!(call(&p, "/v1/bots/bot-1", &new).await.status, 200);
}

// ---------------------------------------------------------------- the policy

#[tokio::test]
async fn secrets_never_reach_policy_or_metrics() {
    let (_up, p) = start(&ES256).await;
    let _ = exchange(&p, ACME, ACME_SECRET).await;
    let _ = exchange_from(&p, "127.0.0.1", ACME, "a-wrong-secret").await;
    let pem = std::fs::read_to_string(fixture(ES256.signing)).unwrap();
    let body_line = pem.lines().nth(1).unwrap();
    for path in ["/policy", "/metrics"] {
        let text = get(&p.admin_url(path), &[]).await.body;
        let text = String::from_utf8_lossy(&text);
        for secret in [ACME_SECRET, "a-wrong-secret", body_line] {
            assert!(!text.contains(secret), "{path} shows a secret");
        }
    }
}

fn check(policy_text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.yaml");
    std::fs::write(&file, policy_text).unwrap();
    match scopegate::policy::compile::load(
        &file,
        &scopegate::policy::compile::Context::standalone(),
    ) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn check_reports_a_missing_or_wrong_type_signing_key_at_its_line() {
    let base = policy(&ES256, ACME_SECRET, true);
    let line_of =
        |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    assert_eq!(check(&base), "", "the test policy is valid");

    let missing = base.replace(&key("app-ec256.key.pem"), "/nonexistent/issuer.pem");
    let errors = check(&missing);
    let l = line_of(&missing, "signing_key_file");
    assert!(
        errors.contains(&format!(":{l}: issuer.signing_key_file")),
        "{errors}"
    );
    assert!(errors.contains("cannot read"), "{errors}");

    for wrong in ["app-rsa.key.pem", "app-ec384.key.pem", "app-ec256.pub.pem"] {
        let text = base.replace(&key("app-ec256.key.pem"), &key(wrong));
        let errors = check(&text);
        assert!(
            errors.contains(&format!(
                ":{l}: issuer.signing_key_file: an EC P-256 (ES256) or Ed25519"
            )),
            "{wrong}: {errors}"
        );
    }

    let no_issuer = {
        let start = base.find("issuer:").unwrap();
        let end = base.find("upstream_assertion:").unwrap();
        format!("{}{}", &base[..start], &base[end..])
    };
    let errors = check(&no_issuer);
    assert!(
        errors.contains("upstream_assertion needs `issuer`"),
        "{errors}"
    );
    assert!(errors.contains("token_endpoint needs `issuer`"), "{errors}");

    for (from, to, says) in [
        (ACME, "partner-other", "access_key is used twice"),
        (ACME, "app-hs", "also an app's client_id"),
        (
            &format!("header: {ASSERTION}") as &str,
            "header: x-auth-scopes",
            "upstream_assertion.header",
        ),
        (
            &format!("header: {ASSERTION}") as &str,
            "header: authorization",
            "upstream_assertion.header",
        ),
        (
            &format!("path: {ENDPOINT}") as &str,
            "path: /a/../b",
            "token_endpoint.path",
        ),
        ("ttl: 1800s", "ttl: 48h", "token_endpoint.ttl"),
        (
            &sha256(ACME_SECRET) as &str,
            "abc",
            "secret_sha256 must be 64 hex",
        ),
    ] {
        let errors = check(&base.replacen(from, to, 1));
        assert!(errors.contains(says), "{to}: {errors}");
    }
    let previous = base.replace(
        &format!("  kid: {}\n", ES256.kid),
        &format!(
            "  kid: {}\n  previous_keys:\n    - {{ kid: old, public_key_file: {} }}\n",
            ES256.kid,
            key("app-rsa.pub.pem")
        ),
    );
    let errors = check(&previous);
    assert!(errors.contains("issuer.previous_keys \"old\""), "{errors}");
}
