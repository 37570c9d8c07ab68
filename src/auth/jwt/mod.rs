//! JWT verification (SPEC §3.2, §3.3 and the claim rules of §5).
//!
//! The signature is checked by `jsonwebtoken` (aws-lc-rs); everything around it is ours,
//! because the spec's error codes and its strictness (crit, claim types, header-bound
//! claims) need finer control than a generic `Validation`. The order matters: nothing about
//! the claims is reported until the signature holds, and every failure before that point is
//! the same `invalid_token`, so a client cannot probe which apps exist.

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Identity, Principal};
use crate::error::Error;
use crate::jose::jwe;
use crate::jose::signing::SigAlg;
use crate::policy::{App, Policy};

mod json;

use json::{Claim, Claims, JoseHeader};

/// Bounds a token's parts before any JSON parsing; tokens are also capped by the header limit.
const MAX_PART: usize = 8 * 1024;

/// A token whose signature, app, algorithm, audience and claim shapes have been verified.
/// Time and replay checks are left to `check_time` and the replay store: they change with
/// the clock, while this part can be cached for the token's lifetime.
#[derive(Debug)]
pub struct Verified {
    pub principal: Principal,
    pub app: Arc<App>,
    pub exp: Option<f64>,
    pub nbf: Option<f64>,
    pub iat: Option<f64>,
    pub jti: Option<String>,
}

/// A compact JWS split into its parts, with the header read once.
pub struct Jws<'t> {
    signing_input: &'t str,
    payload: &'t str,
    signature: &'t str,
    alg: Algorithm,
    kid: Option<String>,
}

impl<'t> Jws<'t> {
    pub fn parse(token: &'t str) -> Result<Jws<'t>, Error> {
        let mut parts = token.splitn(3, '.');
        let (Some(h64), Some(p64), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Error::InvalidToken("not a compact JWS"));
        };
        if h64.len() > MAX_PART || p64.len() > MAX_PART * 4 || sig.contains('.') {
            return Err(Error::InvalidToken("token part too large or malformed"));
        }
        let bytes = b64(h64)?;
        let header: JoseHeader<'_> = json::utf8(&bytes).and_then(|_| {
            serde_json::from_slice(&bytes).map_err(|_| Error::InvalidToken("bad JSON"))
        })?;
        // We implement no JWS extension, so any `crit` is by definition one we don't understand.
        if header.crit {
            return Err(Error::InvalidToken("crit header parameter"));
        }
        let alg =
            Algorithm::from_str(&header.alg).map_err(|_| Error::InvalidToken("unsupported alg"))?;
        Ok(Jws {
            signing_input: &token[..h64.len() + 1 + p64.len()],
            payload: p64,
            signature: sig,
            alg,
            kid: header.kid.map(Cow::into_owned),
        })
    }

    /// Public-key signatures are worth a SHA-256 key and the shared cache; an HMAC is not.
    pub fn is_asymmetric(&self) -> bool {
        self.alg.family() != AlgorithmFamily::Hmac
    }
}

/// Verifies a compact JWS. `wrapped` says it arrived inside a JWE (for `enforce_jwe`).
pub fn verify_jws(policy: &Policy, token: &str, wrapped: bool) -> Result<Verified, Error> {
    verify(policy, &Jws::parse(token)?, wrapped)
}

pub fn verify(policy: &Policy, jws: &Jws<'_>, wrapped: bool) -> Result<Verified, Error> {
    let payload = b64(jws.payload)?;
    let claims = Claims::parse(&payload, &policy.app_id_claims)?;
    let app_id = claims.app_id()?;
    let app = match policy.apps.get(app_id) {
        Some(app) => {
            check_signature(app, jws)?;
            if let Some(issuer) = &app.issuer {
                if claims.iss.as_str() != Some(issuer) {
                    return Err(Error::InvalidToken("iss is not the app's issuer"));
                }
            }
            app
        }
        // Not an app of the policy: a token scopegate minted for a client (SPEC §3.7).
        None => minted(policy, app_id, jws, &payload)?,
    };

    // From here on the token is authentic: specific codes may be given.
    if app.enforce_jwe && !wrapped {
        return Err(Error::JweRequired);
    }
    let exp = numeric(&claims.exp)?;
    let nbf = numeric(&claims.nbf)?;
    let iat = numeric(&claims.iat)?;
    if exp.is_none() && app.require_exp {
        return Err(Error::InvalidToken("no exp"));
    }
    if let Some(aud) = &app.audience {
        let ok = match &claims.aud {
            Some(Value::String(s)) => s == aud,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(aud)),
            _ => false,
        };
        if !ok {
            return Err(Error::InvalidAudience);
        }
    }
    let jti = match claims.jti {
        Claim::String(s) if !s.is_empty() => Some(s.into_owned()),
        Claim::Absent => None,
        _ => return Err(Error::InvalidToken("jti is not a non-empty string")),
    };
    if app.enforce_jti && jti.is_none() {
        return Err(Error::JtiRequired);
    }
    let (scopes, scopes_header) = match &claims.scope {
        Claim::Absent => (app.scopes.clone(), app.scopes_header.clone()),
        Claim::String(s) => {
            let narrowed = app.scopes.intersection(&policy.scopes.set(s.split(' ')));
            let header = HeaderValue::from_str(&policy.scopes.join(&narrowed))
                .unwrap_or(HeaderValue::from_static(""));
            (narrowed, header)
        }
        _ => return Err(Error::InvalidToken("scope claim is not a string")),
    };
    let subject = match &claims.sub {
        Claim::Absent => None,
        sub => Some(header_safe(sub.as_str())?),
    };
    let mut claim_headers = Vec::new();
    if !app.claims_to_headers.is_empty() {
        // Only apps that map arbitrary claims pay for reading all of them.
        let all: Map<String, Value> =
            serde_json::from_slice(&payload).map_err(|_| Error::InvalidToken("bad JSON"))?;
        for (claim, name) in &app.claims_to_headers {
            if let Some(v) = all.get(claim) {
                claim_headers.push((name.clone(), header_safe(v.as_str())?));
            }
        }
    }
    Ok(Verified {
        principal: Principal {
            identity: Identity::Jwt { app: app.clone() },
            scopes,
            scopes_header: Some(scopes_header),
            subject,
            claim_headers,
        },
        app: app.clone(),
        exp,
        nbf,
        iat,
        jti,
    })
}

/// The signature step of [`verify`] on its own: the alg must be one the app allows, and the
/// key is chosen by the alg's family. Public so that tests can run signature vectors
/// (Project Wycheproof's, whose payloads are not claim sets) through exactly this code.
pub fn check_signature(app: &App, jws: &Jws<'_>) -> Result<(), Error> {
    let alg = jws.alg;
    if !app.algorithms.contains(&alg) {
        return Err(Error::InvalidToken("alg not allowed for app"));
    }
    // The key is chosen by the algorithm's family, so an HMAC alg can only ever meet the
    // app's secret, never its public key (algorithm confusion).
    let verify = |key: &jsonwebtoken::DecodingKey| {
        matches!(
            jsonwebtoken::crypto::verify(jws.signature, jws.signing_input.as_bytes(), key, alg),
            Ok(true)
        )
    };
    let authentic = if let (true, Some(source)) = (jws.is_asymmetric(), &app.jwks) {
        // The keys in force; a kid they do not know (or no keys at all) is for the verifier
        // to refetch, not a verdict yet.
        let keys = source
            .keys()
            .ok_or_else(|| Error::KeyNotFound(source.clone()))?;
        let candidates = keys
            .set
            .candidates(jws.kid.as_deref(), alg)
            .ok_or_else(|| Error::KeyNotFound(source.clone()))?;
        candidates.into_iter().any(verify)
    } else if jws.is_asymmetric() {
        let key = app
            .public_key
            .as_ref()
            .ok_or(Error::InvalidToken("no key for alg"))?;
        verify(&key.key)
    } else {
        let key = app
            .hmac_keys
            .get(alg)
            .ok_or(Error::InvalidToken("no key for alg"))?;
        let mut sig = [0u8; 64];
        match URL_SAFE_NO_PAD.decode_slice(jws.signature, &mut sig) {
            Ok(n) => aws_lc_rs::hmac::verify(key, jws.signing_input.as_bytes(), &sig[..n]).is_ok(),
            Err(_) => false,
        }
    };
    if !authentic {
        return Err(Error::InvalidToken("bad signature"));
    }
    Ok(())
}

/// The app of a token scopegate minted at its token endpoint (SPEC §3.7), once its
/// signature is the issuer's (current or previous key), its `iss` the issuer's name, and its
/// `sgb` the client's current secret binding: a client removed from the policy, or given a
/// new secret, is refused whatever tokens it holds. Every failure is the same
/// `invalid_token` as an unknown app's.
fn minted<'p>(
    policy: &'p Policy,
    app_id: &str,
    jws: &Jws<'_>,
    payload: &[u8],
) -> Result<&'p Arc<App>, Error> {
    #[derive(Deserialize)]
    struct Minted<'a> {
        #[serde(borrow)]
        iss: Option<Cow<'a, str>>,
        #[serde(borrow)]
        sgb: Option<Cow<'a, str>>,
    }
    let (Some(issuer), Some(endpoint)) = (&policy.issuer, &policy.token_endpoint) else {
        return Err(Error::InvalidToken("unknown app"));
    };
    let client = endpoint
        .clients
        .get(app_id)
        .ok_or(Error::InvalidToken("unknown app"))?;
    let alg = match jws.alg {
        Algorithm::ES256 => SigAlg::Es256,
        Algorithm::EdDSA => SigAlg::EdDsa,
        _ => return Err(Error::InvalidToken("alg not allowed for app")),
    };
    let mut sig = [0u8; 64];
    let authentic = match URL_SAFE_NO_PAD.decode_slice(jws.signature, &mut sig) {
        Ok(n) => issuer.verifies(alg, jws.signing_input.as_bytes(), &sig[..n]),
        Err(_) => false,
    };
    if !authentic {
        return Err(Error::InvalidToken("bad signature"));
    }
    let claims: Minted<'_> =
        serde_json::from_slice(payload).map_err(|_| Error::InvalidToken("bad JSON"))?;
    if claims.iss.as_deref() != Some(issuer.name.as_str())
        || claims.sgb.as_deref() != Some(client.binding.as_str())
    {
        return Err(Error::InvalidToken(
            "not minted by this issuer for the client's current secret",
        ));
    }
    Ok(&client.app)
}

/// Decrypts a JWE-wrapped token with the proxy's own keys, then verifies the JWS inside.
pub fn verify_jwe(policy: &Policy, token: &str) -> Result<Verified, Error> {
    let inner = jwe::decrypt(
        token.as_bytes(),
        jwe::DecryptWith::Keys(&policy.jwe_keys),
        &jwe::ACCEPT_TOKEN,
    )
    .map_err(|_| Error::InvalidToken("JWE token did not decrypt"))?;
    let jws = std::str::from_utf8(&inner.plaintext)
        .map_err(|_| Error::InvalidToken("JWE payload is not text"))?;
    if jws.bytes().filter(|b| *b == b'.').count() != 2 {
        return Err(Error::InvalidToken("JWE payload is not a JWS"));
    }
    verify_jws(policy, jws, true)
}

/// The clock-dependent checks, done on every use (cached or not).
pub fn check_time(v: &Verified, now: f64) -> Result<(), Error> {
    let leeway = v.app.leeway_secs as f64;
    if v.exp.is_some_and(|exp| now > exp + leeway) {
        return Err(Error::TokenExpired);
    }
    // Bounds how long a token, and so a remembered jti, can live: an exp of 1e300 is no
    // longer a token valid forever, nor a number for the replay store to overflow on.
    let max_lifetime = v.app.max_lifetime_secs as f64;
    if v.exp.is_some_and(|exp| exp > now + max_lifetime + leeway) {
        return Err(Error::InvalidToken("exp beyond max_lifetime"));
    }
    if v.nbf.is_some_and(|nbf| nbf > now + leeway) || v.iat.is_some_and(|iat| iat > now + leeway) {
        return Err(Error::TokenNotYetValid);
    }
    Ok(())
}

/// A header or payload part, decoded. The JSON readers (`json`) then require UTF-8: a JWS
/// payload may be any bytes, a JWT's claim set may not.
fn b64(part: &str) -> Result<Vec<u8>, Error> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Error::InvalidToken("bad base64url"))
}

fn numeric(claim: &Claim<'_>) -> Result<Option<f64>, Error> {
    match claim {
        Claim::Absent => Ok(None),
        Claim::Number(f) if f.is_finite() => Ok(Some(*f)),
        Claim::Number(_) => Err(Error::InvalidToken("time claim not finite")),
        _ => Err(Error::InvalidToken("time claim not numeric")),
    }
}

/// A claim bound for a header must be a string free of control characters.
fn header_safe(claim: Option<&str>) -> Result<HeaderValue, Error> {
    match claim {
        Some(s) if !s.chars().any(char::is_control) => {
            HeaderValue::from_str(s).map_err(|_| Error::InvalidToken("claim not header-safe"))
        }
        _ => Err(Error::InvalidToken(
            "claim bound for a header is not a plain string",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `jws` fuzz target: `"typ":"JW\x9a"` in a header (or any member nobody
    /// reads, in the header or the claims) passed for JSON.
    #[test]
    fn a_part_that_is_not_utf8_is_refused_even_in_a_member_nobody_reads() {
        let part = |json: &[u8]| URL_SAFE_NO_PAD.encode(json);
        let good = format!(
            "{}.{}.sig",
            part(br#"{"alg":"HS256","typ":"JWT"}"#),
            part(b"{}")
        );
        assert!(Jws::parse(&good).is_ok());
        let bad = format!(
            "{}.{}.sig",
            part(b"{\"alg\":\"HS256\",\"typ\":\"JW\x9a\"}"),
            part(b"{}")
        );
        assert_eq!(
            Jws::parse(&bad).err().map(|e| e.code()),
            Some("invalid_token")
        );
        let claims = |json: &[u8]| Claims::parse(json, &["appId".into()]).map(|_| ());
        assert!(claims(b"{\"appId\":\"a\",\"x\":\"\xff\"}").is_err());
        assert!(claims(br#"{"appId":"a","x":"\u00ff"}"#).is_ok());
    }
}
