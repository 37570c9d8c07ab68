//! The HTTP edge: listeners, the upstream client and header hygiene. Thin on purpose: the
//! decisions live in `decide`, `auth` and `authorize`, and nothing here imports them or
//! the pipeline; both sides share `wire`.

pub mod forward;
pub mod framing;
pub mod headers;
pub mod idle;
pub mod listener;
pub mod tap;
pub mod tls;
pub mod upstream_tls;
pub mod websocket;
