//! Transparent payload encryption (SPEC §4): for an app that opted in, on a route that
//! supports it, the client sends and receives JWE while the upstream sees plaintext.
//!
//! Both directions must buffer (a JWE is one authenticated unit), bounded by
//! `max_body_bytes`. Routes and apps without encryption never come here and keep streaming.
//! Every decryption failure is the same `invalid_encrypted_payload` (no padding or tag
//! oracle), and a response that cannot be sealed is a 502, never plaintext.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http_body_util::Either;
use hyper::body::Incoming;

use crate::authorize::Permit;
use crate::error::Error;
use crate::jose::jwe::{self, DecryptWith, Serialization};
use crate::jose::keys::Recipient;
use crate::policy::{App, Policy};
use crate::wire::read_limited;
use crate::wire::{Body, full};

const JOSE: &str = "application/jose";
const JOSE_JSON: &str = "application/jose+json";

/// The decision to encrypt this exchange, made after authorization.
pub struct Plan {
    app: Arc<App>,
    respond_as: Serialization,
    /// HEAD: the response has no body to seal, only headers to keep from describing one.
    head: bool,
}

impl Plan {
    fn recipient(&self) -> Option<&Recipient> {
        self.app.payload_encryption.as_ref()
    }
}

pub fn plan(permit: &Permit<'_>, method: &http::Method, request: &HeaderMap) -> Option<Plan> {
    let app = match &permit.principal().identity {
        crate::auth::Identity::Jwt { app } if permit.encrypts_payloads() => app,
        _ => return None,
    };
    let wants_json = request
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| {
            m.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case(JOSE_JSON))
        });
    Some(Plan {
        head: method == http::Method::HEAD,
        app: app.clone(),
        respond_as: if wants_json {
            Serialization::Flattened
        } else {
            Serialization::Compact
        },
    })
}

/// Decrypts the request body. A request without a body passes as is.
/// Returns the plaintext body and the content type the client encrypted (`cty`).
pub async fn open_request(
    plan: &Plan,
    policy: &Policy,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<(Body, Option<String>), Error> {
    let bytes = read_limited(body, limit).await?;
    if bytes.is_empty() {
        return Ok((full(bytes), None));
    }
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if !matches!(media.as_deref(), Some(JOSE | JOSE_JSON)) {
        return Err(Error::EncryptionRequired);
    }
    let with = match plan.recipient() {
        Some(Recipient::Direct(key)) => DecryptWith::Shared(key),
        _ => DecryptWith::Keys(&policy.jwe_keys),
    };
    let opened = jwe::decrypt(&bytes, with, &jwe::ACCEPT_PAYLOAD)
        .map_err(|e| Error::InvalidEncryptedPayload(e.to_string()))?;
    // RFC 7515 §4.1.10: a `cty` without a '/' is short for `application/<cty>`.
    let cty = opened.cty.map(|c| {
        if c.contains('/') {
            c
        } else {
            format!("application/{c}")
        }
    });
    Ok((full(opened.plaintext), cty))
}

/// Gives the upstream the headers of the plaintext: its content type and length.
pub fn restore_request_headers(headers: &mut HeaderMap, content_type: Option<String>, body: &Body) {
    let Either::Right(full_body) = body else {
        return;
    };
    // An empty plaintext too: the ciphertext's length and type must not reach the upstream.
    let len = http_body::Body::size_hint(full_body).exact().unwrap_or(0);
    headers.remove(header::TRANSFER_ENCODING);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    match content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
        Some(ct) => {
            headers.insert(header::CONTENT_TYPE, ct);
        }
        None => {
            headers.remove(header::CONTENT_TYPE);
        }
    }
}

/// The client's `Accept` names the wire format (JOSE); the upstream must not negotiate on
/// it. Other media ranges the client listed stay.
pub fn upstream_accept(headers: &mut HeaderMap) {
    let kept: Vec<String> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|m| {
            let media = m.split(';').next().unwrap_or("").trim();
            !media.eq_ignore_ascii_case(JOSE) && !media.eq_ignore_ascii_case(JOSE_JSON)
        })
        .map(str::to_string)
        .collect();
    headers.remove(header::ACCEPT);
    if let Ok(v) = HeaderValue::from_str(&kept.join(", ")) {
        if !kept.is_empty() {
            headers.insert(header::ACCEPT, v);
        }
    }
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
}

/// Encrypts the upstream's response body to the client. Every response of an encrypted
/// exchange is described as JOSE, even one without a body (HEAD, 204, 304), so headers
/// never reveal the plaintext's type or length.
pub async fn seal_response(
    plan: &Plan,
    status: http::StatusCode,
    headers: &mut HeaderMap,
    body: Incoming,
    limit: usize,
) -> Result<Body, Error> {
    let plaintext: Bytes = read_limited(Either::Left(body), limit)
        .await
        .map_err(|e| Error::EncryptionFailed(format!("upstream body: {}", Error::from(e))))?;
    // We asked for `identity`; a compressed body would be sealed under a wrong `cty`.
    if headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v != "identity")
    {
        return Err(Error::EncryptionFailed(
            "upstream ignored Accept-Encoding: identity".into(),
        ));
    }
    let media = match plan.respond_as {
        Serialization::Compact => JOSE,
        Serialization::Flattened => JOSE_JSON,
    };
    let bodiless = plan.head
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED;
    let sealed = if bodiless {
        Bytes::new()
    } else {
        let recipient = plan
            .recipient()
            .ok_or_else(|| Error::EncryptionFailed("no recipient key".into()))?;
        let cty = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        Bytes::from(
            jwe::encrypt(&plaintext, cty, recipient, plan.respond_as)
                .map_err(|e| Error::EncryptionFailed(e.to_string()))?,
        )
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    headers.append(header::VARY, HeaderValue::from_static("Accept"));
    if plan.head || status == http::StatusCode::NOT_MODIFIED {
        headers.remove(header::CONTENT_LENGTH);
    } else {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(sealed.len()));
    }
    // Validators and digests describe the plaintext; they must not leak alongside ciphertext.
    for h in [
        header::ETAG,
        header::CONTENT_ENCODING,
        header::HeaderName::from_static("content-md5"),
        header::HeaderName::from_static("digest"),
        header::HeaderName::from_static("repr-digest"),
    ] {
        headers.remove(h);
    }
    Ok(full(sealed))
}
