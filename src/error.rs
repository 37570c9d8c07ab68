//! Every way a request can be refused, and the one place a refusal becomes a response.
//!
//! Variants carry an internal reason for the access log; the client only ever sees the
//! status, the public `code` and a fixed detail sentence (SPEC §6), so no body can reveal
//! whether an app or key exists or why a signature failed.

use http::{HeaderValue, Response, StatusCode, header};

use crate::wire::{Body, full};

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
    /// The TLS session to the upstream failed: its certificate did not verify (unknown CA,
    /// wrong name, expired), or it refused ours. Never a fallback to no verification.
    #[error("upstream TLS failed: {0}")]
    UpstreamTls(String),
    #[error("response encryption failed: {0}")]
    EncryptionFailed(String),
    #[error("not ready")]
    NotReady,
    #[error("replay store unavailable: {0}")]
    ReplayStoreUnavailable(String),
    #[error("key store unavailable: {0}")]
    KeyStoreUnavailable(String),
    /// No JWKS key to check the token with: the app's JWKS was never fetched, or its keys
    /// expired while fetches kept failing. Carries the fetch failure for the log.
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
    /// The JWKS keys in force have none for the token's `kid` and `alg`. The verifier
    /// refetches (`Source::refetch`) and tries again; only then is it a refusal.
    #[error("no JWKS key for the token's kid and alg")]
    KeyNotFound(std::sync::Arc<crate::jwks::Source>),
    #[error("upstream timed out")]
    UpstreamTimeout,
    /// The drain ended (`drain_timeout`) before the request was answered: its connection
    /// was cut. Never sent; it names the request's end in the access log and metrics.
    #[error("cut at the end of drain_timeout: no answer was sent")]
    DrainCut,
}

/// Everything a refusal is, besides its internal reason: one row per variant.
struct Meta {
    status: StatusCode,
    /// The stable, public code of SPEC §6.
    code: &'static str,
    /// The sentence a client reads. Fixed per code: it never carries the internal reason.
    detail: &'static str,
    origin: Source,
    /// For `scopegate_upstream_errors_total{kind}`.
    upstream_kind: Option<&'static str>,
}

impl Meta {
    const fn new(
        status: StatusCode,
        code: &'static str,
        detail: &'static str,
        origin: Source,
        upstream_kind: Option<&'static str>,
    ) -> Meta {
        Meta {
            status,
            code,
            detail,
            origin,
            upstream_kind,
        }
    }
}

impl Error {
    /// The one table: status, code, detail, origin and upstream error kind of every
    /// variant. No wildcard arm, so a new variant cannot be added without all five.
    fn meta(&self) -> Meta {
        use Error::*;
        #[rustfmt::skip]
        let meta = match self {
            InvalidPath(_) => Meta::new(StatusCode::BAD_REQUEST, "invalid_path", "the request path is not acceptable", Source::Client, None),
            MalformedRequest(_) => Meta::new(StatusCode::BAD_REQUEST, "malformed_request", "the request is malformed", Source::Client, None),
            EncryptionRequired => Meta::new(StatusCode::BAD_REQUEST, "encryption_required", "this route requires an encrypted request body", Source::Client, None),
            InvalidEncryptedPayload(_) => Meta::new(StatusCode::BAD_REQUEST, "invalid_encrypted_payload", "the encrypted request body could not be processed", Source::Client, None),
            InvalidClient => Meta::new(StatusCode::UNAUTHORIZED, "invalid_client", "invalid client credentials", Source::Client, None),
            MissingCredentials => Meta::new(StatusCode::UNAUTHORIZED, "missing_credentials", "credentials are required", Source::Client, None),
            InvalidToken(_) => Meta::new(StatusCode::UNAUTHORIZED, "invalid_token", "the token is not valid", Source::Client, None),
            TokenExpired => Meta::new(StatusCode::UNAUTHORIZED, "token_expired", "the token has expired", Source::Client, None),
            TokenNotYetValid => Meta::new(StatusCode::UNAUTHORIZED, "token_not_yet_valid", "the token is not valid yet", Source::Client, None),
            InvalidAudience => Meta::new(StatusCode::UNAUTHORIZED, "invalid_audience", "the token is not meant for this audience", Source::Client, None),
            JtiRequired => Meta::new(StatusCode::UNAUTHORIZED, "jti_required", "the token must carry a jti claim", Source::Client, None),
            TokenReplayed => Meta::new(StatusCode::UNAUTHORIZED, "token_replayed", "the token has already been used", Source::Client, None),
            JweRequired => Meta::new(StatusCode::UNAUTHORIZED, "jwe_required", "the token must be encrypted (JWE)", Source::Client, None),
            InvalidApiKey => Meta::new(StatusCode::UNAUTHORIZED, "invalid_api_key", "the API key is not valid", Source::Client, None),
            ApiKeyExpired => Meta::new(StatusCode::UNAUTHORIZED, "api_key_expired", "the API key has expired", Source::Client, None),
            ApiKeyDisabled => Meta::new(StatusCode::UNAUTHORIZED, "api_key_disabled", "the API key has been disabled", Source::Client, None),
            InvalidSignature(_) => Meta::new(StatusCode::UNAUTHORIZED, "invalid_signature", "the request signature is not valid", Source::Client, None),
            StaleSignature => Meta::new(StatusCode::UNAUTHORIZED, "stale_signature", "the request signature is too old or too new", Source::Client, None),
            InsufficientScope(_) => Meta::new(StatusCode::FORBIDDEN, "insufficient_scope", "the credential lacks a required scope", Source::Client, None),
            ResourceNotAllowed(_) => Meta::new(StatusCode::FORBIDDEN, "resource_not_allowed", "the credential is not allowed this resource", Source::Client, None),
            NoRoute => Meta::new(StatusCode::NOT_FOUND, "no_route", "no route matches this request", Source::Client, None),
            PayloadTooLarge => Meta::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is too large", Source::Client, None),
            HeadersTooLarge => Meta::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large", "the request headers are too large", Source::Client, None),
            RateLimited { .. } => Meta::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many requests", Source::Client, None),
            UpstreamUnavailable(_) => Meta::new(StatusCode::BAD_GATEWAY, "upstream_unavailable", "the upstream service is unavailable", Source::Upstream, Some("protocol")),
            UpstreamConnect(_) => Meta::new(StatusCode::BAD_GATEWAY, "upstream_unavailable", "the upstream service is unavailable", Source::Upstream, Some("connect")),
            UpstreamTls(_) => Meta::new(StatusCode::BAD_GATEWAY, "upstream_unavailable", "the upstream service is unavailable", Source::Upstream, Some("tls")),
            EncryptionFailed(_) => Meta::new(StatusCode::BAD_GATEWAY, "encryption_failed", "the response could not be encrypted", Source::Internal, None),
            NotReady => Meta::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "the proxy is not ready", Source::Internal, None),
            ReplayStoreUnavailable(_) => Meta::new(StatusCode::SERVICE_UNAVAILABLE, "replay_store_unavailable", "the replay store is unavailable", Source::Internal, None),
            KeyStoreUnavailable(_) => Meta::new(StatusCode::SERVICE_UNAVAILABLE, "key_store_unavailable", "the key store is unavailable", Source::Internal, None),
            KeysUnavailable(_) => Meta::new(StatusCode::SERVICE_UNAVAILABLE, "keys_unavailable", "signing keys are unavailable", Source::Internal, None),
            KeyNotFound(_) => Meta::new(StatusCode::UNAUTHORIZED, "invalid_token", "the token is not valid", Source::Client, None),
            UpstreamTimeout => Meta::new(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", "the upstream service timed out", Source::Upstream, Some("timeout")),
            DrainCut => Meta::new(StatusCode::SERVICE_UNAVAILABLE, "drain_timeout", "the proxy stopped before answering", Source::Internal, None),
        };
        meta
    }

    pub fn status(&self) -> StatusCode {
        self.meta().status
    }

    /// The stable, public code of SPEC §6.
    pub fn code(&self) -> &'static str {
        self.meta().code
    }

    fn public_detail(&self) -> &'static str {
        self.meta().detail
    }

    /// Named `origin`, not `source`: thiserror already gives `Error` the std `source()`.
    pub fn origin(&self) -> Source {
        self.meta().origin
    }

    /// What went wrong upstream, for `scopegate_upstream_errors_total{kind}`.
    pub fn upstream_kind(&self) -> Option<&'static str> {
        self.meta().upstream_kind
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
        h.insert(crate::wire::X_REQUEST_ID, request_id.clone());
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
            // A token-endpoint answer (SPEC §3.7): no bearer token was presented.
            Error::InvalidClient => {}
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

impl From<crate::jwks::Miss> for Error {
    fn from(miss: crate::jwks::Miss) -> Error {
        match miss {
            crate::jwks::Miss::NoKey => {
                Error::InvalidToken("no JWKS key for the token's kid and alg")
            }
            crate::jwks::Miss::Unavailable(why) => Error::KeysUnavailable(why),
        }
    }
}

impl From<crate::wire::BodyError> for Error {
    fn from(e: crate::wire::BodyError) -> Error {
        match e {
            crate::wire::BodyError::TooLarge => Error::PayloadTooLarge,
            crate::wire::BodyError::Unreadable => {
                Error::MalformedRequest("request body could not be read")
            }
        }
    }
}
