//! Test tokens: an HS* JWT for an app of the policy, signed with its own secret, the way
//! the app itself would (the `token` command, `test` cases, the demo). Verification never
//! comes here.

use jsonwebtoken::AlgorithmFamily;

use crate::policy::App;

/// Mints an HS* token for an app of the policy (the `token` command and `test` cases).
pub fn mint(
    app: &App,
    app_id_claim: &str,
    scopes: &[String],
    ttl_secs: u64,
    with_jti: bool,
    now: u64,
) -> Result<String, String> {
    let secret = app.hmac_keys.secret().ok_or("the app has no HS* secret")?;
    let alg = *app
        .algorithms
        .iter()
        .find(|a| a.family() == AlgorithmFamily::Hmac)
        .ok_or("the app allows no HS* algorithm")?;
    let mut claims = serde_json::json!({
        app_id_claim: app.client_id,
        "sub": format!("scopegate-cli@{}", app.client_id),
        "iat": now,
        "exp": now + ttl_secs,
    });
    if let Some(aud) = &app.audience {
        claims["aud"] = aud.clone().into();
    }
    if let Some(iss) = &app.issuer {
        claims["iss"] = iss.clone().into();
    }
    if !scopes.is_empty() {
        claims["scope"] = scopes.join(" ").into();
    }
    if with_jti {
        claims["jti"] = uuid::Uuid::new_v4().to_string().into();
    }
    let header = jsonwebtoken::Header::new(alg);
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .map_err(|e| e.to_string())
}
