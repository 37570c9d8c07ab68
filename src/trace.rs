//! OpenTelemetry traces (SPEC §7): a `scopegate.request` span per request, child spans for
//! verification, key-store and JWKS lookups and the upstream call, exported in batches over
//! OTLP/HTTP (protobuf) to `<otlp_endpoint>/v1/traces`.
//!
//! Off by default. The request path holds an `Option<Span>`: with tracing off it is `None`
//! and every hook here is one branch on it — no span object, no allocation.
//!
//! Ending a span only puts it on the batch processor's bounded queue (a full queue drops
//! it); the export runs on the processor's own thread, so an unreachable collector loses
//! spans and never delays a request. Attributes carry ids (route, principal), never a
//! credential: nothing here reads a token or key.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_http::{HeaderExtractor, HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};

use crate::config::TracingConfig;
use crate::error::Error;

/// Spans waiting for export; past this, new ones are dropped (never a wait).
const MAX_QUEUE: usize = 2048;
/// One export's bound (connect and answer): the batch thread's, not a request's.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

const TRACEPARENT: &str = "traceparent";

/// The exporter and sampler, built once at start from `tracing:`.
pub struct Tracer {
    provider: SdkTracerProvider,
    tracer: Arc<SdkTracer>,
}

impl Tracer {
    /// Must run inside the Tokio runtime: exports are sent from it.
    pub fn start(config: &TracingConfig) -> Result<Tracer, String> {
        let client = OnRuntime {
            client: HyperClient::with_default_connector(EXPORT_TIMEOUT, None),
            runtime: tokio::runtime::Handle::current(),
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(config.traces_url())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| format!("tracing: {e}"))?;
        let batches = BatchConfigBuilder::default()
            .with_max_queue_size(MAX_QUEUE)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(
                BatchSpanProcessor::builder(exporter)
                    .with_batch_config(batches)
                    .build(),
            )
            // A sampled incoming traceparent is always kept; a new trace by the ratio.
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(
                Resource::builder_empty()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = Arc::new(provider.tracer("scopegate"));
        Ok(Tracer { provider, tracer })
    }

    /// The request's span, the child of the client's `traceparent` when it sent a valid one.
    pub fn request(&self, headers: &HeaderMap) -> Span {
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        let span = self
            .tracer
            .span_builder("scopegate.request")
            .with_kind(SpanKind::Server)
            .start_with_context(&*self.tracer, &parent);
        Span {
            cx: parent.with_span(span),
            tracer: self.tracer.clone(),
        }
    }

    /// Exports what is queued and stops. It blocks on the batch thread, so it runs on a
    /// blocking thread, leaving the runtime free to carry the last export.
    pub async fn shutdown(&self) {
        let provider = self.provider.clone();
        let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    }
}

/// A span of this request: the request's own or one of its children. Small (two
/// pointers and a flag), as it sits in every request's state.
pub struct Span {
    cx: Context,
    tracer: Arc<SdkTracer>,
}

/// What the request span records when it ends.
pub struct Ended<'a> {
    pub route: Option<&'a str>,
    pub method: &'a Method,
    pub path: &'a str,
    pub status: StatusCode,
    pub code: &'static str,
    pub principal_kind: &'static str,
    pub principal_id: Option<&'a str>,
}

impl Span {
    /// A child span, started now; `None` when this span is not sampled (nothing to export).
    pub fn child(&self, name: &'static str, kind: SpanKind) -> Option<Span> {
        if !self.cx.span().span_context().is_sampled() {
            return None;
        }
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .start_with_context(&*self.tracer, &self.cx);
        Some(Span {
            cx: self.cx.with_span(span),
            tracer: self.tracer.clone(),
        })
    }

    /// `traceparent` for the upstream: the client's trace, with this span as the parent
    /// (W3C Trace Context). The client's `tracestate` passes through as it came.
    pub fn write_traceparent(&self, headers: &mut HeaderMap) {
        let span = self.cx.span();
        let sc = span.span_context();
        let value = format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        );
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(TRACEPARENT, v);
        }
    }

    pub fn set(&self, key: &'static str, value: impl Into<opentelemetry::Value>) {
        self.cx.span().set_attribute(KeyValue::new(key, value));
    }

    /// Ends the request span with SPEC §7's attributes.
    pub fn end_request(&self, e: &Ended<'_>) {
        let span = self.cx.span();
        let mut attributes = Vec::with_capacity(7);
        if let Some(route) = e.route {
            attributes.push(KeyValue::new("http.route", route.to_string()));
        }
        attributes.push(KeyValue::new(
            "http.request.method",
            e.method.as_str().to_string(),
        ));
        if !e.path.is_empty() {
            attributes.push(KeyValue::new("url.path", e.path.to_string()));
        }
        attributes.push(KeyValue::new(
            "http.response.status_code",
            i64::from(e.status.as_u16()),
        ));
        attributes.push(KeyValue::new("scopegate.code", e.code));
        attributes.push(KeyValue::new("scopegate.principal.kind", e.principal_kind));
        if let Some(id) = e.principal_id {
            attributes.push(KeyValue::new("scopegate.principal.id", id.to_string()));
        }
        span.set_attributes(attributes);
        if e.status.is_server_error() {
            span.set_status(Status::error(e.code));
        }
        span.end();
    }

    /// Ends a child span with how its step went.
    pub fn end<T>(self, result: &Result<T, Error>) {
        let span = self.cx.span();
        if let Err(e) = result {
            span.set_attribute(KeyValue::new("scopegate.code", e.code()));
            span.set_status(Status::error(e.code()));
        }
        span.end();
    }
}

/// Ends a child span, if there is one.
pub fn end<T>(span: Option<Span>, result: &Result<T, Error>) {
    if let Some(s) = span {
        s.end(result);
    }
}

/// A child of `parent`, if there is a sampled one.
pub fn child(parent: Option<&Span>, name: &'static str, kind: SpanKind) -> Option<Span> {
    parent.and_then(|p| p.child(name, kind))
}

pub use opentelemetry::trace::SpanKind as Kind;

/// The OTLP client: hyper's, with every send run on the proxy's Tokio runtime. The batch
/// processor drives exports from a thread of its own, outside any runtime.
struct OnRuntime {
    client: HyperClient,
    runtime: tokio::runtime::Handle,
}

impl fmt::Debug for OnRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OnRuntime")
    }
}

impl HttpClient for OnRuntime {
    fn send_bytes<'a, 'b>(
        &'a self,
        request: http::Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<http::Response<Bytes>, HttpError>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        let client = self.client.clone();
        let sent = self
            .runtime
            .spawn(async move { client.send_bytes(request).await });
        Box::pin(async move { sent.await.map_err(|e| Box::new(e) as HttpError)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With tracing off every request still carries the `Option<Span>`: it must stay a few
    /// words (the request future is copied whole when it moves).
    #[test]
    fn an_absent_span_costs_a_few_words() {
        assert!(std::mem::size_of::<Option<Span>>() <= 4 * std::mem::size_of::<usize>());
    }
}
