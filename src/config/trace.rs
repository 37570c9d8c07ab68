//! The `tracing` block (SPEC §7): OpenTelemetry traces, exported over OTLP/HTTP.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::{default_string, not_supported};

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTracing {
    #[serde(default = "default_otlp_endpoint")]
    #[schemars(with = "String")]
    otlp_endpoint: Spanned<String>,
    #[serde(default = "default_sample_ratio")]
    #[schemars(with = "f64")]
    sample_ratio: Spanned<f64>,
    #[serde(default = "default_service_name")]
    #[schemars(with = "String")]
    service_name: Spanned<String>,
}

/// OpenTelemetry traces (SPEC §7).
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// `http://host:port[/base]`, without a trailing slash.
    pub otlp_endpoint: String,
    /// For requests without a trace of their client's (parent-based); at 0 scopegate starts
    /// no trace and joins only those clients start.
    pub sample_ratio: f64,
    pub service_name: String,
}

impl TracingConfig {
    /// Where OTLP/HTTP wants traces.
    pub fn traces_url(&self) -> String {
        format!("{}/v1/traces", self.otlp_endpoint)
    }
}

fn default_otlp_endpoint() -> Spanned<String> {
    default_string("http://127.0.0.1:4318")
}
fn default_sample_ratio() -> Spanned<f64> {
    Spanned::new(1.0, Location::UNKNOWN, Location::UNKNOWN)
}
fn default_service_name() -> Spanned<String> {
    default_string("scopegate")
}

/// `tracing.otlp_endpoint`: an `http://` base URL (the collector beside the proxy; the
/// exporter's client speaks no TLS).
fn otlp_endpoint(url: &str) -> Result<String, String> {
    let what = "tracing.otlp_endpoint";
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{what}: {url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err(not_supported(&format!("{what}: https://"), "§7")),
        _ => return Err(format!("{what}: {url:?} is not an http:// URL")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{what}: {url:?} has no host"));
    }
    if uri.query().is_some() {
        return Err(format!("{what}: {url:?} cannot carry a query string"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

impl RawTracing {
    /// The block's settings, each checked at its line (`err`); `None` when the endpoint is
    /// refused.
    pub(super) fn compile(&self, err: &mut impl FnMut(u64, String)) -> Option<TracingConfig> {
        let endpoint = otlp_endpoint(&self.otlp_endpoint.value)
            .map_err(|m| err(self.otlp_endpoint.referenced.line(), m))
            .ok();
        let ratio = self.sample_ratio.value;
        if !(0.0..=1.0).contains(&ratio) {
            err(
                self.sample_ratio.referenced.line(),
                format!("tracing.sample_ratio: {ratio} is not between 0 and 1"),
            );
        }
        let name = self.service_name.value.trim();
        if name.is_empty() {
            err(
                self.service_name.referenced.line(),
                "tracing.service_name: must not be empty".into(),
            );
        }
        Some(TracingConfig {
            otlp_endpoint: endpoint?,
            sample_ratio: ratio,
            service_name: name.to_string(),
        })
    }
}
