//! OpenTelemetry traces (SPEC §7): a `scopegate.request` span per request, child spans for
//! verification, key-store and JWKS lookups and the upstream call, exported in batches over
//! OTLP/HTTP (protobuf) to `<otlp_endpoint>/v1/traces`.
//!
//! Off by default. The request path holds an `Option<Span>`: with tracing off it is `None`
//! and every hook here is one branch on it — no span object, no allocation. On, a request
//! the sampler drops carries two ids, for the upstream's `traceparent`, and nothing else;
//! at `sample_ratio: 0` scopegate starts no trace of its own, so a request without a
//! `traceparent` is handled as with tracing off, and only the traces clients start are
//! joined (linkerd2-proxy's model).
//!
//! The OpenTelemetry crates give the trace-context propagation, the ids and the ratio
//! sampler; a span is our own, as Envoy's and linkerd2-proxy's tracers keep theirs, and is
//! encoded as it is recorded: its attributes as they are set, the rest when it ends
//! (`otlp`; protobuf takes fields in any order), so no attribute value is copied into a
//! string of its own. Through the SDK's span objects, batch processor and exporter, a
//! sampled request of three spans cost 73 % more instructions than one with tracing off.
//! Ending a span puts its bytes on a bounded queue (a full queue drops them, counted in a
//! warning); one task sends the queue in batches, so an unreachable collector loses spans
//! and never delays a request. Attributes carry ids
//! (route, principal), never a credential: nothing here reads a token or key.

mod otlp;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanId, TraceContextExt, TraceId};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, ShouldSample,
};
use tokio::sync::Notify;

use crate::config::TracingConfig;
use crate::error::Error;

pub use opentelemetry::trace::SpanKind as Kind;

/// Spans waiting for export; past this, new ones are dropped (never a wait).
const MAX_QUEUE: usize = 2048;
/// Spans per export: a full batch goes at once, what is queued at least every `EXPORT_EVERY`
/// (the SDK's defaults).
const BATCH: usize = 512;
const EXPORT_EVERY: Duration = Duration::from_secs(5);
/// One export's bound (connect and answer): the export task's, not a request's.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const REQUEST: &str = "scopegate.request";

/// The sampler and the export queue, built once at start from `tracing:`.
pub struct Tracer {
    sink: Arc<Sink>,
    /// Decides for new traces, by `sample_ratio` (the SDK's ratio sampler); a parent's
    /// decision is followed as it came. `None` at `sample_ratio: 0`: scopegate then starts
    /// no trace, and a request without a `traceparent` is handled as with tracing off.
    roots: Option<Sampler>,
    exporter: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Where ended spans wait for the export task.
struct Sink {
    /// Ended spans, each encoded (`otlp::finish`).
    queue: Mutex<Vec<Vec<u8>>>,
    /// A full batch is waiting, or shutdown asks for the last export.
    wake: Notify,
    stopping: AtomicBool,
    /// Spans dropped on a full queue since the last export.
    dropped: AtomicU64,
    ids: RandomIdGenerator,
}

impl Sink {
    fn push(&self, span: Vec<u8>) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.len() >= MAX_QUEUE {
            drop(queue);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        queue.push(span);
        if queue.len() == BATCH {
            self.wake.notify_one();
        }
    }

    /// Up to a batch of what is queued, oldest first: the whole queue (swapped out, not
    /// copied) when it holds no more than a batch.
    fn take_batch(&self) -> Vec<Vec<u8>> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        match queue.len() {
            0 => Vec::new(),
            n if n <= BATCH => std::mem::replace(&mut *queue, Vec::with_capacity(BATCH)),
            _ => queue.drain(..BATCH).collect(),
        }
    }
}

impl Tracer {
    /// Must run inside the Tokio runtime: the export task runs on it.
    pub fn start(config: &TracingConfig) -> Result<Tracer, String> {
        let target = otlp::Target::parse(&config.traces_url())?;
        let sink = Arc::new(Sink {
            queue: Mutex::new(Vec::with_capacity(BATCH)),
            wake: Notify::new(),
            stopping: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            ids: RandomIdGenerator::default(),
        });
        let exporter = tokio::spawn(export(sink.clone(), target, config.service_name.clone()));
        Ok(Tracer {
            sink,
            roots: (config.sample_ratio > 0.0)
                .then_some(Sampler::TraceIdRatioBased(config.sample_ratio)),
            exporter: Mutex::new(Some(exporter)),
        })
    }

    /// The request's span, the child of the client's `traceparent` when it sent a valid
    /// one. Parent-based: a sampled parent's child is sampled, an unsampled one's is not,
    /// and a new trace is kept at `sample_ratio`. An unsampled span is two ids and nothing
    /// else. `None` for a new trace at `sample_ratio: 0`: no ids, no span, no `traceparent`
    /// upstream, as with tracing off (the client's header, if any, passes as it came).
    pub fn request(&self, headers: &HeaderMap) -> Option<Span> {
        let incoming = match headers.contains_key(TRACEPARENT) {
            true => {
                let cx = TraceContextPropagator::new().extract(&Headers(headers));
                let sc = cx.span().span_context().clone();
                sc.is_valid().then_some(sc)
            }
            false => None,
        };
        let (trace, parent, sampled) = match incoming {
            Some(sc) => (sc.trace_id(), sc.span_id(), sc.is_sampled()),
            None => {
                let roots = self.roots.as_ref()?;
                let trace = self.sink.ids.new_trace_id();
                let root = roots.should_sample(None, trace, REQUEST, &Kind::Server, &[], &[]);
                let kept = root.decision == SamplingDecision::RecordAndSample;
                (trace, SpanId::INVALID, kept)
            }
        };
        let span = self.sink.ids.new_span_id();
        if !sampled {
            return Some(Span::unsampled(trace, span));
        }
        Some(Span::sampled(
            &self.sink,
            trace.to_bytes(),
            span,
            parent.to_bytes(),
            REQUEST,
            Kind::Server,
        ))
    }

    /// Sends what is queued and stops the export task, within twice an export's bound.
    pub async fn shutdown(&self) {
        self.sink.stopping.store(true, Ordering::SeqCst);
        self.sink.wake.notify_one();
        let task = self
            .exporter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(2 * EXPORT_TIMEOUT, task).await;
        }
    }
}

/// The export task: a batch when one is full, what is queued every `EXPORT_EVERY`, and
/// everything at shutdown. One export at a time; meanwhile the queue fills, then drops.
async fn export(sink: Arc<Sink>, target: otlp::Target, service: String) {
    loop {
        tokio::select! {
            _ = sink.wake.notified() => {}
            _ = tokio::time::sleep(EXPORT_EVERY) => {}
        }
        let stopping = sink.stopping.load(Ordering::SeqCst);
        loop {
            let batch = sink.take_batch();
            if batch.is_empty() {
                break;
            }
            let dropped = sink.dropped.swap(0, Ordering::Relaxed);
            if dropped > 0 {
                tracing::warn!(dropped, "tracing: spans dropped, the export queue was full");
            }
            let body = otlp::encode(&service, &batch);
            if let Err(e) = target.post(body, EXPORT_TIMEOUT).await {
                tracing::warn!(error = %e, spans = batch.len(), "tracing: export failed; its spans are lost");
            }
            if batch.len() < BATCH && !stopping {
                break;
            }
        }
        if stopping {
            return;
        }
    }
}

/// The request's headers, as the propagator reads them.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// An attribute's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Str(&'a str),
    Int(i64),
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(s: &'a str) -> Value<'a> {
        Value::Str(s)
    }
}

impl From<i64> for Value<'_> {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

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
    trace: [u8; 16],
    span: [u8; 8],
    /// All zero for a root.
    parent: [u8; 8],
    name: &'static str,
    kind: Kind,
    /// Unix nanoseconds.
    start: u64,
    /// The attributes set so far, encoded (`otlp::attribute`).
    attributes: Vec<u8>,
    sink: Arc<Sink>,
}

impl Sampled {
    /// The span's bytes with its fields after `attributes`, on the export queue.
    fn finish(&self, mut bytes: Vec<u8>, error: Option<&str>) {
        otlp::finish(
            &mut bytes,
            &otlp::Fields {
                trace: &self.trace,
                span: &self.span,
                parent: &self.parent,
                name: self.name,
                kind: &self.kind,
                start: self.start,
                end: unix_nanos(),
                error,
            },
        );
        self.sink.push(bytes);
    }
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
    fn unsampled(trace: TraceId, span: SpanId) -> Span {
        Span(Inner::Unsampled {
            trace: trace.to_bytes(),
            span: span.to_bytes(),
        })
    }

    /// A sampled span, started now.
    fn sampled(
        sink: &Arc<Sink>,
        trace: [u8; 16],
        span: SpanId,
        parent: [u8; 8],
        name: &'static str,
        kind: Kind,
    ) -> Span {
        Span(Inner::Sampled(Box::new(Sampled {
            trace,
            span: span.to_bytes(),
            parent,
            name,
            kind,
            start: unix_nanos(),
            // A child's bytes, whole: its one or two attributes and the fields `finish`
            // adds (about 100 bytes), without growing. The request span's are made when it
            // ends (`end_request`).
            attributes: match name {
                REQUEST => Vec::new(),
                _ => Vec::with_capacity(192),
            },
            sink: sink.clone(),
        })))
    }

    /// A child span, started now; `None` when this span is not sampled (nothing to export).
    pub fn child(&self, name: &'static str, kind: Kind) -> Option<Span> {
        let Inner::Sampled(s) = &self.0 else {
            return None;
        };
        let id = s.sink.ids.new_span_id();
        Some(Span::sampled(&s.sink, s.trace, id, s.span, name, kind))
    }

    /// `traceparent` for the upstream: the client's trace, with this span as the parent
    /// (W3C Trace Context). The client's `tracestate` passes through as it came.
    pub fn write_traceparent(&self, headers: &mut HeaderMap) {
        let (trace, span, sampled) = match &self.0 {
            Inner::Sampled(s) => (s.trace, s.span, b'1'),
            Inner::Unsampled { trace, span } => (*trace, *span, b'0'),
        };
        // "00-" trace "-" span "-" flags, in lowercase hex. Each slot is exactly twice its
        // id's length, so `encode_to_slice` cannot fail.
        let mut value: [u8; 55] = *b"00-00000000000000000000000000000000-0000000000000000-00";
        let _ = hex::encode_to_slice(trace, &mut value[3..35]);
        let _ = hex::encode_to_slice(span, &mut value[36..52]);
        value[54] = sampled;
        if let Ok(v) = HeaderValue::from_bytes(&value) {
            headers.insert(TRACEPARENT, v);
        }
    }

    /// Whether this span is exported (what it records is read only then).
    pub fn is_sampled(&self) -> bool {
        matches!(self.0, Inner::Sampled(_))
    }

    pub fn set<'v>(&mut self, key: &'static str, value: impl Into<Value<'v>>) {
        if let Inner::Sampled(s) = &mut self.0 {
            otlp::attribute(&mut s.attributes, key, value.into());
        }
    }

    /// Ends the request span with SPEC §7's attributes.
    pub fn end_request(&self, e: &Ended<'_>) {
        let Inner::Sampled(s) = &self.0 else {
            return;
        };
        let mut b = Vec::with_capacity(s.attributes.len() + 384 + e.path.len());
        b.extend_from_slice(&s.attributes);
        if let Some(route) = e.route {
            otlp::attribute(&mut b, "http.route", Value::Str(route));
        }
        otlp::attribute(&mut b, "http.request.method", Value::Str(e.method.as_str()));
        if !e.path.is_empty() {
            otlp::attribute(&mut b, "url.path", Value::Str(e.path));
        }
        let status = i64::from(e.status.as_u16());
        otlp::attribute(&mut b, "http.response.status_code", Value::Int(status));
        otlp::attribute(&mut b, "scopegate.code", Value::Str(e.code));
        otlp::attribute(
            &mut b,
            "scopegate.principal.kind",
            Value::Str(e.principal_kind),
        );
        if let Some(id) = e.principal_id {
            otlp::attribute(&mut b, "scopegate.principal.id", Value::Str(id));
        }
        s.finish(b, e.status.is_server_error().then_some(e.code));
    }

    /// Ends a child span with how its step went.
    pub fn end<T>(self, result: &Result<T, Error>) {
        let Inner::Sampled(mut s) = self.0 else {
            return;
        };
        let attributes = std::mem::take(&mut s.attributes);
        match result {
            Ok(_) => s.finish(attributes, None),
            Err(e) => {
                let mut b = attributes;
                otlp::attribute(&mut b, "scopegate.code", Value::Str(e.code()));
                s.finish(b, Some(e.code()));
            }
        }
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
pub fn child(parent: Option<&Span>, name: &'static str, kind: Kind) -> Option<Span> {
    parent.and_then(|p| p.child(name, kind))
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

    /// The export queue is bounded: past `MAX_QUEUE` spans, new ones are dropped and
    /// counted, and a batch is taken a batch at a time, oldest first.
    #[test]
    fn a_full_queue_drops_and_counts_what_it_cannot_hold() {
        let sink = Sink {
            queue: Mutex::new(Vec::new()),
            wake: Notify::new(),
            stopping: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            ids: RandomIdGenerator::default(),
        };
        for i in 0..MAX_QUEUE + 5 {
            sink.push(i.to_le_bytes().to_vec());
        }
        assert_eq!(sink.queue.lock().unwrap().len(), MAX_QUEUE);
        assert_eq!(sink.dropped.load(Ordering::Relaxed), 5);
        let first = sink.take_batch();
        assert_eq!(first.len(), BATCH);
        assert_eq!(first[0], 0usize.to_le_bytes());
        let rest: usize = std::iter::from_fn(|| Some(sink.take_batch()))
            .take_while(|b| !b.is_empty())
            .map(|b| b.len())
            .sum();
        assert_eq!(rest, MAX_QUEUE - BATCH);
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
