//! Request hygiene through the real proxy (SPEC §5 "What the upstream receives", "Path
//! normalization", "Request hygiene", §6). Requests whose bytes matter are written raw on a
//! TCP socket (tests/common/raw.rs), so no client normalizes them first.
//!
//! Here: path normalization.

mod common;

use common::jose::bearer;
use common::policy::*;
use common::raw::*;
use common::*;
use serde_json::json;

// ---------------------------------------------------------------------------------------------
// 1. Path normalization
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn dot_segments_are_resolved_after_decoding_and_forwarded_resolved() {
    let (up, p) = setup().await;
    use Want::*;
    let cases = vec![
        ("/public/a/../b", vec![], Fwd("/public/b")),
        ("/public/a/%2e%2e/b", vec![], Fwd("/public/b")),
        ("/public/a/%2E%2e/b", vec![], Fwd("/public/b")),
        ("/public/a/%2E%2E/b", vec![], Fwd("/public/b")),
        ("/public/a/.%2e/b", vec![], Fwd("/public/b")),
        ("/public/a/%2e./b", vec![], Fwd("/public/b")),
        ("/public/./a/%2e/b", vec![], Fwd("/public/a/b")),
        ("/public/a/b/../../c", vec![], Fwd("/public/c")),
        // `..` that leaves the public prefix lands on a route that needs a credential.
        (
            "/public/../v1/bots/bot-1",
            vec![],
            Rej(401, "missing_credentials"),
        ),
        (
            "/public/%2e%2e/v1/bots/bot-1",
            vec![],
            Rej(401, "missing_credentials"),
        ),
        (
            "/public/.%2E/jwt-only",
            vec![],
            Rej(401, "missing_credentials"),
        ),
        // `/public/..` resolves to `/`, which no route matches.
        ("/public/..", vec![], Rej(404, "no_route")),
    ];
    assert_no_failures(check_all(&p, &up, &cases).await);
}

#[tokio::test]
async fn paths_climbing_above_root_are_invalid() {
    let (up, p) = setup().await;
    use Want::*;
    let cases = vec![
        ("/..", vec![], Rej(400, "invalid_path")),
        ("/../public/x", vec![], Rej(400, "invalid_path")),
        ("/public/../../x", vec![], Rej(400, "invalid_path")),
        ("/public/../../public/x", vec![], Rej(400, "invalid_path")),
        ("/public/%2e%2e/%2e%2e/x", vec![], Rej(400, "invalid_path")),
        ("/%2E%2E/public/x", vec![], Rej(400, "invalid_path")),
        ("/public/a/../../../x", vec![], Rej(400, "invalid_path")),
    ];
    assert_no_failures(check_all(&p, &up, &cases).await);
}

#[tokio::test]
async fn encoded_slash_nul_backslash_semicolon_and_bad_escapes_are_invalid() {
    let (up, p) = setup().await;
    use Want::*;
    let bad = Rej(400, "invalid_path");
    let cases = vec![
        ("/public/a%2Fb", vec![], bad),
        ("/public/a%2fb", vec![], bad),
        ("/public/..%2F..%2Fx", vec![], bad),
        ("/public/x/..%2f", vec![], bad),
        ("/public/a%00b", vec![], bad),
        ("/public/a%5Cb", vec![], bad),
        ("/public/a%5cb", vec![], bad),
        ("/public/..%5C..%5Cx", vec![], bad),
        ("/public/a;b", vec![], bad),
        ("/public/a;jsessionid=1", vec![], bad),
        ("/public/a%3Bb", vec![], bad),
        ("/public/a%3bb", vec![], bad),
        ("/public/..;/x", vec![], bad),
        ("/public/a/..;/b", vec![], bad),
        ("/public/a%zz", vec![], bad),
        ("/public/a%2", vec![], bad),
        ("/public/a%", vec![], bad),
        ("/public/a%g0b", vec![], bad),
    ];
    assert_no_failures(check_all(&p, &up, &cases).await);
}

/// A raw `\` in the target: the proxy answers `invalid_path`, or hyper refuses the request
/// line with a bare 400 first. Either way it is never forwarded.
#[tokio::test]
async fn raw_backslash_is_never_forwarded() {
    let (up, p) = setup().await;
    for target in [
        "/public/a\\b",
        "/public/..\\..\\x",
        "/public\\..\\v1/bots/bot-1",
    ] {
        let ex = exchange(p.addr, &request(p.addr, "GET", target, &[])).await;
        let r = ex.responses();
        if let Some(r) = r.first() {
            assert_eq!(r.status, 400, "{target}: {}", r.describe());
            if r.is_problem() {
                assert_eq!(r.code(), "invalid_path", "{target}");
            }
        } else {
            assert!(ex.closed, "{target}: neither an answer nor a close");
        }
    }
    assert_eq!(
        up.hits(),
        0,
        "a path with a raw backslash reached the upstream"
    );
}

/// SPEC: "a raw `#` [is] rejected with `invalid_path` too". A fragment is never sent by a
/// conforming client, so one in a request target is an attempt to make parsers disagree.
/// SPEC §5 asks for 400 on a raw `#`, but the HTTP parser (the `http` crate's URI) drops
/// the fragment before the proxy sees the target, so it cannot be told apart. What matters
/// still holds: the fragment never reaches the upstream, and the path authorized (the part
/// before `#`) is exactly the path forwarded, so `#/../../x` cannot climb anywhere.
#[tokio::test]
async fn raw_fragment_is_dropped_before_authorization_and_never_forwarded() {
    let (up, p) = setup().await;
    for (target, seen) in [
        ("/public/a#b", "/public/a"),
        ("/public/a#/../../x", "/public/a"),
    ] {
        let (status, body) = raw_get(p.addr, target, &[]).await;
        assert_eq!(status, 200, "{target}: {body}");
        let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(echo["path"], seen, "{target}");
    }
    let (status, body) = raw_get(p.addr, "/v1/bots/bot-1#/../../../public/x", &[]).await;
    assert_eq!(
        status, 401,
        "the path before # is what gets authorized: {body}"
    );
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn unreserved_escapes_are_decoded_and_others_stay_encoded_once() {
    let (up, p) = setup().await;
    use Want::*;
    let cases = vec![
        ("/public/%7Euser", vec![], Fwd("/public/~user")),
        ("/public/%7euser", vec![], Fwd("/public/~user")),
        ("/public/%41bc", vec![], Fwd("/public/Abc")),
        ("/public/%61%62%63", vec![], Fwd("/public/abc")),
        ("/public/a%2Db%5Fc%2Ed%30", vec![], Fwd("/public/a-b_c.d0")),
        // Reserved and other characters stay encoded, hex upper-cased.
        ("/public/a%3fb", vec![], Fwd("/public/a%3Fb")),
        ("/public/a%3Fb", vec![], Fwd("/public/a%3Fb")),
        ("/public/a%23b", vec![], Fwd("/public/a%23b")),
        ("/public/a%20b", vec![], Fwd("/public/a%20b")),
        ("/public/%c3%a9", vec![], Fwd("/public/%C3%A9")),
        // Nothing is decoded twice.
        ("/public/%252e", vec![], Fwd("/public/%252e")),
        ("/public/%252e%252e/x", vec![], Fwd("/public/%252e%252e/x")),
        ("/public/a%252Fb", vec![], Fwd("/public/a%252Fb")),
        ("/public/a%25b", vec![], Fwd("/public/a%25b")),
    ];
    assert_no_failures(check_all(&p, &up, &cases).await);
    // An encoded `?` does not start a query.
    let e = send_raw(&p, "GET", "/public/a%3fb", &[]).await.echo();
    assert_eq!(e.0["query"], serde_json::Value::Null, "{:?}", e.0);
}

#[tokio::test]
async fn repeated_slashes_are_merged_and_the_query_is_untouched() {
    let (up, p) = setup().await;
    use Want::*;
    let cases = vec![
        ("/public//a///b", vec![], Fwd("/public/a/b")),
        ("//public/a", vec![], Fwd("/public/a")),
        ("/public/a//", vec![], Fwd("/public/a/")),
        ("//v1//bots//bot-1", vec![], Rej(401, "missing_credentials")),
    ];
    assert_no_failures(check_all(&p, &up, &cases).await);
    let e = send_raw(
        &p,
        "GET",
        "/public/a/../b?x=%2e%2e/..&y=%2F&z=a;b&w=%3f",
        &[],
    )
    .await
    .echo();
    assert_eq!(e.path(), "/public/b");
    assert_eq!(e.0["query"], "x=%2e%2e/..&y=%2F&z=a;b&w=%3f");
}

#[tokio::test]
async fn one_trailing_slash_is_kept_and_not_significant_for_matching() {
    let (up, p) = setup().await;
    let key = bearer(KEY_READ);
    use Want::*;
    let cases = vec![
        (
            "/v1/bots/bot-1/",
            vec![("authorization", key.as_str())],
            Fwd("/v1/bots/bot-1/"),
        ),
        (
            "/v1/bots/",
            vec![("authorization", key.as_str())],
            Fwd("/v1/bots/"),
        ),
        ("/public/a/", vec![], Fwd("/public/a/")),
        ("/v1/bots/bot-1/", vec![], Rej(401, "missing_credentials")),
    ];
    assert_no_failures(check_all(&p, &up, &cases).await);
    let e = send_raw(&p, "GET", "/v1/bots/bot-1/", &[("authorization", &key)])
        .await
        .echo();
    assert_eq!(e.header("x-auth-route").as_deref(), Some("bot-read"));
}

#[tokio::test]
async fn matching_is_case_sensitive() {
    let (up, p) = setup().await;
    let key = bearer(KEY_READ);
    use Want::*;
    let cases = vec![
        (
            "/V1/bots/bot-1",
            vec![("authorization", key.as_str())],
            Rej(404, "no_route"),
        ),
        (
            "/v1/BOTS/bot-1",
            vec![("authorization", key.as_str())],
            Rej(404, "no_route"),
        ),
        ("/Public/x", vec![], Rej(404, "no_route")),
        ("/PUBLIC/x", vec![], Rej(404, "no_route")),
        // Case of the matched text is preserved for the parameters and the rest.
        ("/public/MiXeD/Case", vec![], Fwd("/public/MiXeD/Case")),
    ];
    assert_no_failures(check_all(&p, &up, &cases).await);
}

/// The path that is authorized is the path the upstream acts on.
#[tokio::test]
async fn the_authorized_path_is_the_forwarded_path() {
    let (up, p) = setup().await;
    let jwt = token("app-hs", json!({}));
    let key = bearer(KEY_READ);
    use Want::*;
    let cases = vec![
        // app-hs is allowed bot-1 and bot-2 only.
        (
            "/v1/bots/bot-9/../bot-1",
            vec![("auth", jwt.as_str())],
            Fwd("/v1/bots/bot-1"),
        ),
        (
            "/v1/bots/bot-9/%2e%2e/bot-2",
            vec![("auth", jwt.as_str())],
            Fwd("/v1/bots/bot-2"),
        ),
        (
            "/v1/bots/bot-1/../bot-9",
            vec![("auth", jwt.as_str())],
            Rej(403, "resource_not_allowed"),
        ),
        (
            "/v1/bots/bot-1/%2e%2e/bot-3",
            vec![("auth", jwt.as_str())],
            Rej(403, "resource_not_allowed"),
        ),
        (
            "/v1/bots/bot-1/..%2F..%2Fbot-3",
            vec![("auth", jwt.as_str())],
            Rej(400, "invalid_path"),
        ),
        (
            "/v1/bots/bot-1/..%2f..%2fbot-3",
            vec![("authorization", key.as_str())],
            Rej(400, "invalid_path"),
        ),
        (
            "/v1/bots/bot-1;/../bot-3",
            vec![("auth", jwt.as_str())],
            Rej(400, "invalid_path"),
        ),
        // `/v1/bots/bot-1/..` is `/v1/bots/`: the api_key-only list route, not bot-read.
        (
            "/v1/bots/bot-1/..",
            vec![("auth", jwt.as_str())],
            Rej(401, "invalid_token"),
        ),
    ];
    assert_no_failures(check_all(&p, &up, &cases).await);
    let e = send_raw(&p, "GET", "/v1/bots/bot-9/../bot-1", &[("auth", &jwt)])
        .await
        .echo();
    assert_eq!(e.header("x-auth-route").as_deref(), Some("bot-read"));
    assert_eq!(e.header("x-auth-app-id").as_deref(), Some("app-hs"));
}
