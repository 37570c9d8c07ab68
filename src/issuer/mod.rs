//! scopegate as an issuer (SPEC §3.7): `endpoint`, the client-credentials exchange that
//! mints tokens, and `assertion`, the signed statement of each request's identity for the
//! upstream. The keys they sign with are `jose::signing`'s, which the policy compiles.

pub mod assertion;
pub mod endpoint;
