//! The HTTP edge: listeners, the upstream client and header hygiene. Thin on purpose: the
//! decisions live in `pipeline`, `auth` and `authorize`.

pub mod forward;
pub mod framing;
pub mod headers;
pub mod idle;
pub mod listener;
pub mod tap;
pub mod tls;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;

/// Bodies flowing through the proxy: streamed from a peer, or produced here (errors,
/// decrypted requests, encrypted responses). `Either` keeps streaming free of boxing.
pub type Body = Either<Incoming, Full<Bytes>>;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub fn full(b: impl Into<Bytes>) -> Body {
    Either::Right(Full::new(b.into()))
}
