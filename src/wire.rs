//! What both sides of the house speak: the body type that flows through the proxy, and the
//! header names that the edge (hygiene) and the decision (credentials, identity) share.
//! It imports neither side.

use bytes::Bytes;
use http::header::HeaderName;
use http_body_util::{Either, Full};
use hyper::body::Incoming;

/// Bodies flowing through the proxy: streamed from a peer, or produced here (errors,
/// decrypted requests, encrypted responses). `Either` keeps streaming free of boxing.
pub type Body = Either<Incoming, Full<Bytes>>;

pub fn full(b: impl Into<Bytes>) -> Body {
    Either::Right(Full::new(b.into()))
}

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The credential header some bot platforms document beside `Authorization` (SPEC §3.1).
pub const AUTH: HeaderName = HeaderName::from_static("auth");
/// The webhook signature (SPEC §3.5).
pub const X_SIGNATURE: HeaderName = HeaderName::from_static("x-signature");

/// The trusted identity header names, made once from `identity_header_prefix`.
#[derive(Debug, Clone)]
pub struct IdentityNames {
    prefix: String,
    pub kind: HeaderName,
    pub app_id: HeaderName,
    pub key_id: HeaderName,
    pub subject: HeaderName,
    pub scopes: HeaderName,
    pub route: HeaderName,
}

impl IdentityNames {
    pub fn new(prefix: &str) -> Result<IdentityNames, http::header::InvalidHeaderName> {
        let n = |s: &str| HeaderName::from_bytes(format!("{prefix}{s}").as_bytes());
        Ok(IdentityNames {
            prefix: prefix.to_ascii_lowercase(),
            kind: n("kind")?,
            app_id: n("app-id")?,
            key_id: n("key-id")?,
            subject: n("subject")?,
            scopes: n("scopes")?,
            route: n("route")?,
        })
    }

    /// CGI/WSGI upstreams read `x_auth_scopes` as `x-auth-scopes`, so `_` counts as `-`.
    pub fn is_owned(&self, name: &HeaderName) -> bool {
        let n = name.as_str().as_bytes();
        n.len() >= self.prefix.len()
            && n.iter()
                .zip(self.prefix.as_bytes())
                .all(|(a, b)| *a == *b || (*a == b'_' && *b == b'-'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_prefix_matches_underscore_spelling() {
        let n = IdentityNames::new("x-auth-").unwrap();
        for h in [
            "x-auth-scopes",
            "x_auth_scopes",
            "x-auth_kind",
            "x_auth-anything",
        ] {
            assert!(
                n.is_owned(&HeaderName::from_bytes(h.as_bytes()).unwrap()),
                "{h}"
            );
        }
        for h in ["x-author", "x-aut", "authorization"] {
            assert!(
                !n.is_owned(&HeaderName::from_bytes(h.as_bytes()).unwrap()),
                "{h}"
            );
        }
    }
}

/// Why a body could not be read whole (`Error` has the answer for each).
#[derive(Debug)]
pub enum BodyError {
    /// Over the limit: 413.
    TooLarge,
    /// Cut short or badly framed by the client: 400.
    Unreadable,
}

/// Reads a whole body, refusing it past `limit` bytes.
pub async fn read_limited(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    use http_body_util::{BodyExt, Limited};
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Unreadable),
    }
}
