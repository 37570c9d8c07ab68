//! What the proxy tells its operator: Prometheus metrics and one JSON access-log line per
//! request. Neither ever carries a credential, token, key or secret.

pub mod access_log;
pub mod metrics;
pub mod record;
