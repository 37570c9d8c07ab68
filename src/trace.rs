//! OpenTelemetry traces (SPEC §7): a `scopegate.request` span per request, child spans for
//! verification, key-store and JWKS lookups and the upstream call, exported in batches over
//! OTLP/HTTP (protobuf) to `<otlp_endpoint>/v1/traces`.
//!
//! Off by default. The request path holds an `Option<Span>`: with tracing off it is `None`
//! and every hook here is one branch on it — no span object, no allocation. On, a request
//! the sampler drops builds no SDK span either: it carries two ids, for the upstream's
//! `traceparent`, and nothing else.
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
use http::header::HeaderName;
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
    BatchConfigBuilder, BatchSpanProcessor, IdGenerator, RandomIdGenerator, Sampler,
    SamplingDecision, SdkTracer, SdkTracerProvider, ShouldSample,
};

use crate::config::TracingConfig;
use crate::error::Error;

/// Spans waiting for export; past this, new ones are dropped (never a wait).
const MAX_QUEUE: usize = 2048;
/// One export's bound (connect and answer): the batch thread's, not a request's.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The exporter and sampler, built once at start from `tracing:`.
pub struct Tracer {
    provider: SdkTracerProvider,
    tracer: Arc<SdkTracer>,
    /// Decides for new traces, by `sample_ratio` (the SDK's ratio sampler, asked before any
    /// span is built); a parent's decision is followed as it came.
    roots: Sampler,
    ids: RandomIdGenerator,
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
            // Only sampled requests reach the SDK (`request` decides first): a sampled
            // parent's child, or a new trace that `roots` kept.
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
            .with_resource(
                Resource::builder_empty()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = Arc::new(provider.tracer("scopegate"));
        Ok(Tracer {
            provider,
            tracer,
            roots: Sampler::TraceIdRatioBased(config.sample_ratio),
            ids: RandomIdGenerator::default(),
        })
    }

    /// The request's span, the child of the client's `traceparent` when it sent a valid
    /// one. Parent-based: a sampled parent's child is sampled, an unsampled one's is not,
    /// and a new trace is kept at `sample_ratio`. An unsampled span is two ids and nothing
    /// else; a sampled one is the SDK's.
    pub fn request(&self, headers: &HeaderMap) -> Span {
        let parent = match headers.contains_key(TRACEPARENT) {
            true => TraceContextPropagator::new().extract(&HeaderExtractor(headers)),
            false => Context::new(),
        };
        let sc = parent.span().span_context().clone();
        let sampled = match sc.is_valid() {
            true => sc.is_sampled(),
            false => {
                let trace_id = self.ids.new_trace_id();
                let kind = SpanKind::Server;
                let root = self
                    .roots
                    .should_sample(None, trace_id, REQUEST, &kind, &[], &[]);
                if root.decision != SamplingDecision::RecordAndSample {
                    return Span::unsampled(trace_id, self.ids.new_span_id());
                }
                true
            }
        };
        if !sampled {
            return Span::unsampled(sc.trace_id(), self.ids.new_span_id());
        }
        let span = self
            .tracer
            .span_builder(REQUEST)
            .with_kind(SpanKind::Server)
            .start_with_context(&*self.tracer, &parent);
        Span(Inner::Sampled(Box::new(Sampled {
            cx: parent.with_span(span),
            tracer: self.tracer.clone(),
        })))
    }

    /// Exports what is queued and stops. It blocks on the batch thread, so it runs on a
    /// blocking thread, leaving the runtime free to carry the last export.
    pub async fn shutdown(&self) {
        let provider = self.provider.clone();
        let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    }
}

const REQUEST: &str = "scopegate.request";

/// A span of this request: the request's own or one of its children. Small (four words),
/// as it sits in every request's state.
pub struct Span(Inner);

enum Inner {
    /// Recorded and exported when it ends.
    Sampled(Box<Sampled>),
    /// Not exported: only the ids the upstream's `traceparent` names.
    Unsampled { trace: [u8; 16], span: [u8; 8] },
}

struct Sampled {
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
    fn unsampled(trace: opentelemetry::trace::TraceId, span: opentelemetry::trace::SpanId) -> Span {
        Span(Inner::Unsampled {
            trace: trace.to_bytes(),
            span: span.to_bytes(),
        })
    }

    /// A child span, started now; `None` when this span is not sampled (nothing to export).
    pub fn child(&self, name: &'static str, kind: SpanKind) -> Option<Span> {
        let Inner::Sampled(s) = &self.0 else {
            return None;
        };
        let span = s
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .start_with_context(&*s.tracer, &s.cx);
        Some(Span(Inner::Sampled(Box::new(Sampled {
            cx: s.cx.with_span(span),
            tracer: s.tracer.clone(),
        }))))
    }

    /// `traceparent` for the upstream: the client's trace, with this span as the parent
    /// (W3C Trace Context). The client's `tracestate` passes through as it came.
    pub fn write_traceparent(&self, headers: &mut HeaderMap) {
        let (trace, span, flags) = match &self.0 {
            Inner::Sampled(s) => {
                let span = s.cx.span();
                let sc = span.span_context();
                let flags = sc.trace_flags().to_u8();
                (sc.trace_id().to_bytes(), sc.span_id().to_bytes(), flags)
            }
            Inner::Unsampled { trace, span } => (*trace, *span, 0),
        };
        // "00-" trace "-" span "-" flags, in lowercase hex.
        let mut value = [b'-'; 55];
        value[..2].copy_from_slice(b"00");
        hex(&trace, &mut value[3..35]);
        hex(&span, &mut value[36..52]);
        hex(&[flags], &mut value[53..55]);
        if let Ok(v) = HeaderValue::from_bytes(&value) {
            headers.insert(TRACEPARENT, v);
        }
    }

    pub fn set(&self, key: &'static str, value: impl Into<opentelemetry::Value>) {
        if let Inner::Sampled(s) = &self.0 {
            s.cx.span().set_attribute(KeyValue::new(key, value));
        }
    }

    /// Ends the request span with SPEC §7's attributes.
    pub fn end_request(&self, e: &Ended<'_>) {
        let Inner::Sampled(s) = &self.0 else {
            return;
        };
        let span = s.cx.span();
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
        let Inner::Sampled(s) = &self.0 else {
            return;
        };
        let span = s.cx.span();
        if let Err(e) = result {
            span.set_attribute(KeyValue::new("scopegate.code", e.code()));
            span.set_status(Status::error(e.code()));
        }
        span.end();
    }
}

/// Lowercase hex of `bytes` into `out` (twice as long).
fn hex(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
}

/// Ends a child span, if there is one.
#[inline]
pub fn end<T>(span: Option<Span>, result: &Result<T, Error>) {
    if let Some(s) = span {
        s.end(result);
    }
}

/// A child of `parent`, if there is a sampled one.
#[inline]
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

    /// The upstream's `traceparent` for an unsampled span: W3C's layout, lowercase hex.
    #[test]
    fn an_unsampled_span_names_itself_as_the_parent() {
        let trace = opentelemetry::trace::TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736");
        let span = opentelemetry::trace::SpanId::from_hex("00f067aa0ba902b7");
        let mut h = HeaderMap::new();
        Span::unsampled(trace.unwrap(), span.unwrap()).write_traceparent(&mut h);
        assert_eq!(
            h[TRACEPARENT],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        );
    }
}
