//! What the proxy tells its operator: Prometheus metrics, one JSON access-log line per
//! request, and the record that ends the request's trace span (`crate::trace`). Neither ever
//! carries a credential, token, key or secret.

pub mod access_log;
pub mod metrics;
pub mod record;
