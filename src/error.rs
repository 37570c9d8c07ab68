//! Every way a request can be refused, and the one place a refusal becomes a response.
//!
//! Variants carry an internal reason for the access log; the client only ever sees the
//! status, the public `code` and a fixed detail sentence (SPEC §6), so no body can reveal
//! whether an app or key exists or why a signature failed.

use http::{HeaderValue, Response, StatusCode, header};

use crate::proxy::{Body, full};

/// Where a failure came from: decides 4xx vs 5xx mechanically and lets metrics split them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Client,
    Upstream,
    Internal,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("invalid path: {0}")]
    InvalidPath(String),
    #[error("malformed request: {0}")]
    MalformedRequest(&'static str),
    #[error("plaintext body on an encrypted route")]
    EncryptionRequired,
    #[error("encrypted payload rejected: {0}")]
    InvalidEncryptedPayload(String),
    #[error("invalid client credentials")]
    InvalidClient,
    #[error("no credentials")]
    MissingCredentials,
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    #[error("token expired")]
    TokenExpired,
    #[error("token not yet valid")]
    TokenNotYetValid,
    #[error("audience mismatch")]
    InvalidAudience,
    #[error("token has no jti")]
    JtiRequired,
    #[error("jti already used")]
    TokenReplayed,
    #[error("app requires a JWE-wrapped token")]
    JweRequired,
    #[error("unknown API key")]
    InvalidApiKey,
    #[error("API key expired")]
    ApiKeyExpired,
    #[error("API key disabled")]
    ApiKeyDisabled,
    #[error("webhook signature invalid: {0}")]
    InvalidSignature(&'static str),
    #[error("webhook signature outside tolerance")]
    StaleSignature,
    #[error("missing scopes: {0}")]
    InsufficientScope(String),
    #[error("resource not allowed: {0}")]
    ResourceNotAllowed(String),
    #[error("no route")]
    NoRoute,
    #[error("body exceeds max_body_bytes")]
    PayloadTooLarge,
    #[error("header block exceeds max_header_bytes")]
    HeadersTooLarge,
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    #[error("upstream unavailable: {0}")]
    UpstreamUnavailable(String),
    /// No connection to the upstream (refused, unresolvable, or not within
    /// `upstream_connect_timeout`): the same answer as `UpstreamUnavailable`, counted apart.
    #[error("upstream connect failed: {0}")]
    UpstreamConnect(String),
    #[error("response encryption failed: {0}")]
    EncryptionFailed(String),
    #[error("not ready")]
    NotReady,
    #[error("replay store unavailable: {0}")]
    ReplayStoreUnavailable(String),
    #[error("signing keys unavailable")]
    KeysUnavailable,
    #[error("upstream timed out")]
    UpstreamTimeout,
    /// The drain ended (`drain_timeout`) before the request was answered: its connection
    /// was cut. Never sent; it names the request's end in the access log and metrics.
    #[error("cut at the end of drain_timeout: no answer was sent")]
    DrainCut,
}

impl Error {
    pub fn status(&self) -> StatusCode {
        use Error::*;
        match self {
            InvalidPath(_)
            | MalformedRequest(_)
            | EncryptionRequired
            | InvalidEncryptedPayload(_) => StatusCode::BAD_REQUEST,
            InvalidClient | MissingCredentials | InvalidToken(_) | TokenExpired
            | TokenNotYetValid | InvalidAudience | JtiRequired | TokenReplayed | JweRequired
            | InvalidApiKey | ApiKeyExpired | ApiKeyDisabled | InvalidSignature(_)
            | StaleSignature => StatusCode::UNAUTHORIZED,
            InsufficientScope(_) | ResourceNotAllowed(_) => StatusCode::FORBIDDEN,
            NoRoute => StatusCode::NOT_FOUND,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            UpstreamUnavailable(_) | UpstreamConnect(_) | EncryptionFailed(_) => {
                StatusCode::BAD_GATEWAY
            }
            NotReady | ReplayStoreUnavailable(_) | KeysUnavailable | DrainCut => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The stable, public code of SPEC §6.
    pub fn code(&self) -> &'static str {
        use Error::*;
        match self {
            InvalidPath(_) => "invalid_path",
            MalformedRequest(_) => "malformed_request",
            EncryptionRequired => "encryption_required",
            InvalidEncryptedPayload(_) => "invalid_encrypted_payload",
            InvalidClient => "invalid_client",
            MissingCredentials => "missing_credentials",
            InvalidToken(_) => "invalid_token",
            TokenExpired => "token_expired",
            TokenNotYetValid => "token_not_yet_valid",
            InvalidAudience => "invalid_audience",
            JtiRequired => "jti_required",
            TokenReplayed => "token_replayed",
            JweRequired => "jwe_required",
            InvalidApiKey => "invalid_api_key",
            ApiKeyExpired => "api_key_expired",
            ApiKeyDisabled => "api_key_disabled",
            InvalidSignature(_) => "invalid_signature",
            StaleSignature => "stale_signature",
            InsufficientScope(_) => "insufficient_scope",
            ResourceNotAllowed(_) => "resource_not_allowed",
            NoRoute => "no_route",
            PayloadTooLarge => "payload_too_large",
            HeadersTooLarge => "headers_too_large",
            RateLimited { .. } => "rate_limited",
            UpstreamUnavailable(_) | UpstreamConnect(_) => "upstream_unavailable",
            EncryptionFailed(_) => "encryption_failed",
            NotReady => "not_ready",
            ReplayStoreUnavailable(_) => "replay_store_unavailable",
            KeysUnavailable => "keys_unavailable",
            UpstreamTimeout => "upstream_timeout",
            DrainCut => "drain_timeout",
        }
    }

    /// The sentence a client reads. Fixed per code: it never carries the internal reason.
    fn public_detail(&self) -> &'static str {
        use Error::*;
        match self {
            InvalidPath(_) => "the request path is not acceptable",
            MalformedRequest(_) => "the request is malformed",
            EncryptionRequired => "this route requires an encrypted request body",
            InvalidEncryptedPayload(_) => "the encrypted request body could not be processed",
            InvalidClient => "invalid client credentials",
            MissingCredentials => "credentials are required",
            InvalidToken(_) => "the token is not valid",
            TokenExpired => "the token has expired",
            TokenNotYetValid => "the token is not valid yet",
            InvalidAudience => "the token is not meant for this audience",
            JtiRequired => "the token must carry a jti claim",
            TokenReplayed => "the token has already been used",
            JweRequired => "the token must be encrypted (JWE)",
            InvalidApiKey => "the API key is not valid",
            ApiKeyExpired => "the API key has expired",
            ApiKeyDisabled => "the API key has been disabled",
            InvalidSignature(_) => "the request signature is not valid",
            StaleSignature => "the request signature is too old or too new",
            InsufficientScope(_) => "the credential lacks a required scope",
            ResourceNotAllowed(_) => "the credential is not allowed this resource",
            NoRoute => "no route matches this request",
            PayloadTooLarge => "the request body is too large",
            HeadersTooLarge => "the request headers are too large",
            RateLimited { .. } => "too many requests",
            UpstreamUnavailable(_) | UpstreamConnect(_) => "the upstream service is unavailable",
            EncryptionFailed(_) => "the response could not be encrypted",
            NotReady => "the proxy is not ready",
            ReplayStoreUnavailable(_) => "the replay store is unavailable",
            KeysUnavailable => "signing keys are unavailable",
            UpstreamTimeout => "the upstream service timed out",
            DrainCut => "the proxy stopped before answering",
        }
    }

    /// Named `origin`, not `source`: thiserror already gives `Error` the std `source()`.
    pub fn origin(&self) -> Source {
        match self {
            Error::UpstreamUnavailable(_) | Error::UpstreamConnect(_) | Error::UpstreamTimeout => {
                Source::Upstream
            }
            Error::EncryptionFailed(_)
            | Error::NotReady
            | Error::ReplayStoreUnavailable(_)
            | Error::KeysUnavailable
            | Error::DrainCut => Source::Internal,
            _ => Source::Client,
        }
    }

    /// Framing errors leave the connection in an unknown state: answer, then close it so
    /// the rest of the bytes are never parsed as a next request.
    fn closes_connection(&self) -> bool {
        matches!(self, Error::MalformedRequest(_))
    }

    /// The one mapping from a refusal to a response (RFC 9457 problem+json, RFC 6750 challenges).
    pub fn into_response(&self, request_id: &HeaderValue) -> Response<Body> {
        let status = self.status();
        let body = serde_json::json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or(""),
            "status": status.as_u16(),
            "code": self.code(),
            "detail": self.public_detail(),
            "request_id": request_id.to_str().unwrap_or_default(),
        });
        let mut resp = Response::new(full(body.to_string()));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(crate::proxy::headers::X_REQUEST_ID, request_id.clone());
        match self {
            Error::MissingCredentials => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"scopegate\""),
                );
            }
            Error::InsufficientScope(missing) => {
                let v = format!("Bearer error=\"insufficient_scope\", scope=\"{missing}\"");
                if let Ok(v) = HeaderValue::from_str(&v) {
                    h.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            Error::RateLimited { retry_after_secs } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            e if status == StatusCode::UNAUTHORIZED => {
                let v = format!(
                    "Bearer realm=\"scopegate\", error=\"invalid_token\", error_description=\"{}\"",
                    e.public_detail()
                );
                if let Ok(v) = HeaderValue::from_str(&v) {
                    h.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            _ => {}
        }
        if self.closes_connection() {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}
