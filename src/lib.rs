//! scopegate: an authenticating, authorizing, payload-encrypting reverse proxy.
//!
//! Start at `pipeline`: it is the request path, stage by stage.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod authorize;
pub mod authz;
pub mod busy_poll;
pub mod config;
pub mod decide;
pub mod demo;
pub mod error;
pub mod explain;
#[doc(hidden)]
pub mod fuzz_api;
pub mod issuer;
pub mod jose;
pub mod jwks;
pub mod observe;
pub mod path;
pub mod payload;
pub mod pipeline;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod schema;
pub mod server;
pub mod store;
pub mod trace;
pub mod wire;
pub mod yaml;
