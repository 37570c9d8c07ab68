//! The policy most integration tests run against, with every credential a test needs.

use super::HS_SECRET;

pub const KEY_READ: &str = "sk_live_read_0123456789";
pub const KEY_ADMIN: &str = "sk_live_admin_0123456789";
pub const KEY_DISABLED: &str = "sk_live_disabled_0123456789";
pub const KEY_EXPIRED: &str = "sk_live_expired_0123456789";
pub const KEY_SANDBOX: &str = "sk_test_sandbox_0123456789";
pub const KEY_LIMITED: &str = "sk_live_limited_0123456789";
pub const WEBHOOK_SECRET: &str = "hook-secret-42";

pub fn sha256(s: &str) -> String {
    scopegate::policy::compile::sha256_hex(s.as_bytes())
}

pub fn standard() -> String {
    format!(
        r#"version: 1
scopes:
  bots:read: View bots
  bots:write: Change bots
  reports: Reports
  admin: Everything
routes:
  - {{ id: bot-read, methods: [GET], path: "/v1/bots/{{botId}}", auth: [jwt, api_key], scopes: [bots:read], resource: {{ kind: bots, param: botId }} }}
  - {{ id: bot-write, methods: [POST, PATCH], path: "/v1/bots/{{botId}}", auth: [jwt, api_key], scopes: [bots:write], resource: {{ kind: bots, param: botId }} }}
  - {{ id: bots-list, methods: [GET], path: /v1/bots, auth: [api_key], scopes: [bots:read] }}
  - {{ id: jwt-only, methods: [GET], path: /jwt-only, auth: [jwt] }}
  - {{ id: key-only, methods: [GET], path: /key-only, auth: [api_key] }}
  - {{ id: optional, methods: [GET], path: /optional, auth: [jwt, none] }}
  - {{ id: public, methods: ["*"], path: "/public/{{*rest}}", auth: [none] }}
  - {{ id: upload, methods: [POST], path: /upload, auth: [none] }}
  - {{ id: table-query, methods: [POST], path: "/tables/{{table}}/query", auth: [jwt], resource: {{ kind: tables, param: table, action: read }} }}
  - {{ id: table-delete, methods: [DELETE], path: "/tables/{{table}}", auth: [jwt], resource: {{ kind: tables, param: table, action: delete }} }}
  - {{ id: hook, methods: [POST], path: "/hooks/{{channel}}", auth: [webhook], webhook: {{ secret: {{ value: {WEBHOOK_SECRET} }}, tolerance: 300s }} }}
  - {{ id: shadowed, methods: [GET], path: /shadow, auth: [jwt], scopes: [bots:write], mode: shadow }}
apps:
  - client_id: app-hs
    algorithms: [HS256]
    secret: {{ value: {HS_SECRET} }}
    scopes: [bots:read, reports]
    resources:
      bots: [bot-1, bot-2]
      tables: {{ orders: [read] }}
    claims_to_headers: {{ tenant: x-auth-tenant }}
  - client_id: app-strict
    algorithms: [HS256]
    secret: {{ value: {HS_SECRET} }}
    audience: https://api.example
    enforce_jti: true
    single_use_jti: true
    leeway: 0s
    scopes: [bots:read]
    resources: {{ bots: ["*"] }}
  - client_id: app-noexp
    algorithms: [HS256]
    secret: {{ value: {HS_SECRET} }}
    require_exp: false
    scopes: [bots:read]
    resources: {{ bots: ["*"] }}
  - client_id: app-limited
    algorithms: [HS256]
    secret: {{ value: {HS_SECRET} }}
    scopes: [bots:read]
    resources: {{ bots: ["*"] }}
    rate_limit: {{ per_second: 0.01, burst: 2 }}
api_keys:
  - {{ id: key-read, sha256: {read}, scopes: [bots:read], resources: {{ bots: ["*"] }} }}
  - {{ id: key-admin, sha256: {admin}, scopes: [admin], resources: {{ bots: ["*"] }} }}
  - {{ id: key-disabled, sha256: {disabled}, scopes: [bots:read], disabled: true }}
  - {{ id: key-expired, sha256: {expired}, scopes: [bots:read], expires: "2020-01-01T00:00:00Z" }}
  - {{ id: key-sandbox, sha256: {sandbox}, environment: test, scopes: [bots:read], resources: {{ bots: ["*"] }} }}
  - {{ id: key-limited, sha256: {limited}, scopes: [bots:read], resources: {{ bots: ["*"] }}, rate_limit: {{ per_second: 0.01, burst: 1 }} }}
"#,
        read = sha256(KEY_READ),
        admin = sha256(KEY_ADMIN),
        disabled = sha256(KEY_DISABLED),
        expired = sha256(KEY_EXPIRED),
        sandbox = sha256(KEY_SANDBOX),
        limited = sha256(KEY_LIMITED),
    )
}

/// A valid token for `app` expiring in ten minutes, plus `extra` claims.
pub fn token(app: &str, extra: serde_json::Value) -> String {
    let now = super::now();
    let mut claims =
        serde_json::json!({ "appId": app, "sub": "user-7", "iat": now, "exp": now + 600 });
    if let serde_json::Value::Object(m) = extra {
        for (k, v) in m {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(&k);
            } else {
                claims[k] = v;
            }
        }
    }
    super::hs256(claims)
}

/// An `X-Signature` value for `body` at unix time `t`, signed with `WEBHOOK_SECRET` (SPEC §3.5).
pub fn webhook_sig(t: i64, body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, WEBHOOK_SECRET.as_bytes());
    let msg = [t.to_string().as_bytes(), b".", body].concat();
    format!(
        "t={t},v1={}",
        hex::encode(aws_lc_rs::hmac::sign(&key, &msg))
    )
}
