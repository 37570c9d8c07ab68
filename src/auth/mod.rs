//! Credentials and their verification: the stages between "a route matched" and "we know
//! who is asking". Each verifier turns a `Credential` into a `Principal` or an `Error`.

pub mod api_key;
pub mod cache;
pub mod credential;
pub mod jwt;
pub mod key_store;
pub mod mint;
pub mod rate_limit;
pub mod replay;
pub mod verify;
pub mod webhook;

use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use crate::policy::{ApiKey, App, Grants, ScopeSet};

/// Who is asking, once verified.
#[derive(Debug, Clone)]
pub enum Identity {
    /// No credential (public route, optional authentication, passthrough).
    Anonymous,
    Jwt {
        app: Arc<App>,
    },
    ApiKey {
        key: Arc<ApiKey>,
    },
    Webhook,
}

#[derive(Debug, Clone)]
pub struct Principal {
    pub identity: Identity,
    /// Effective scopes: the app's or key's, narrowed by a token's `scope` claim.
    pub scopes: ScopeSet,
    /// The effective scopes as the `x-auth-scopes` value, precomputed where possible.
    pub scopes_header: Option<HeaderValue>,
    /// JWT `sub`, already checked to be a header-safe string.
    pub subject: Option<HeaderValue>,
    /// `claims_to_headers` values, already checked to be header-safe.
    pub claim_headers: Vec<(HeaderName, HeaderValue)>,
}

impl Principal {
    pub fn anonymous(catalogue: usize) -> Principal {
        Principal {
            identity: Identity::Anonymous,
            scopes: ScopeSet::empty(catalogue),
            scopes_header: None,
            subject: None,
            claim_headers: Vec::new(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self.identity {
            Identity::Anonymous => "none",
            Identity::Jwt { .. } => "jwt",
            Identity::ApiKey { .. } => "api_key",
            Identity::Webhook => "webhook",
        }
    }

    /// The app id or key id (what logs and metrics may name), as its identity header value.
    pub fn id(&self) -> Option<&HeaderValue> {
        match &self.identity {
            Identity::Jwt { app } => Some(&app.id_header),
            Identity::ApiKey { key } => Some(&key.id),
            _ => None,
        }
    }

    pub fn grants(&self) -> Option<&Grants> {
        match &self.identity {
            Identity::Jwt { app } => Some(&app.grants),
            Identity::ApiKey { key } => Some(&key.grants),
            _ => None,
        }
    }
}
