//! OTLP/HTTP export (protobuf): finished spans encoded as an `ExportTraceServiceRequest`
//! (opentelemetry-proto's `collector/trace/v1`) and POSTed to `<otlp_endpoint>/v1/traces`.
//!
//! The protobuf wire format is written straight from our span records (a key byte, varint
//! lengths and integers, little-endian fixed64 times), as Envoy's and linkerd2-proxy's
//! exporters do rather than going through an SDK: the SDK's exporter first copied every span
//! into generated message structs (a string allocated per attribute key and value) and
//! measured their nested lengths again at each level, about 25,000 instructions per request
//! of three spans. Here each message is written once and its length put in front of it.
//! The unit tests below and `tests/tracing.rs` read what this writes with
//! opentelemetry-proto's generated types.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{Kind, Value};

/// The OTLP span kind's number.
fn kind(k: &Kind) -> u64 {
    match k {
        Kind::Internal => 1,
        Kind::Server => 2,
        Kind::Client => 3,
        Kind::Producer => 4,
        Kind::Consumer => 5,
    }
}

/// `ExportTraceServiceRequest` with one resource (`service.name`) and one scope, around
/// spans already encoded (`attribute`, `finish`).
pub fn encode(service: &str, spans: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + spans.iter().map(|s| s.len() + 3).sum::<usize>());
    // ExportTraceServiceRequest.resource_spans
    nested(&mut out, 1, |rs| {
        // ResourceSpans.resource -> Resource.attributes
        nested(rs, 1, |r| kv(r, 1, "service.name", Value::Str(service)));
        // ResourceSpans.scope_spans
        nested(rs, 2, |ss| {
            // ScopeSpans.scope -> InstrumentationScope.name
            nested(ss, 1, |scope| string(scope, 1, "scopegate"));
            for s in spans {
                bytes(ss, 2, s);
            }
        });
    });
    out
}

/// What a span is besides its attributes.
pub struct Fields<'a> {
    pub trace: &'a [u8; 16],
    pub span: &'a [u8; 8],
    /// All zero for a root.
    pub parent: &'a [u8; 8],
    pub name: &'a str,
    pub kind: &'a Kind,
    /// Unix nanoseconds.
    pub start: u64,
    pub end: u64,
    /// The refusal's code, on a span that failed (status ERROR).
    pub error: Option<&'a str>,
}

/// Appends one of a `trace.v1.Span`'s attributes (field 9) to the span's bytes. Fields may
/// come in any order, so a span's attributes are written as they are set.
#[inline]
pub fn attribute(span: &mut Vec<u8>, name: &str, value: Value<'_>) {
    kv(span, 9, name, value);
}

/// Appends the rest of a `trace.v1.Span`: the span is then whole.
pub fn finish(span: &mut Vec<u8>, f: &Fields<'_>) {
    bytes(span, 1, f.trace);
    bytes(span, 2, f.span);
    if *f.parent != [0; 8] {
        bytes(span, 4, f.parent);
    }
    string(span, 5, f.name);
    varint(span, 6, kind(f.kind));
    fixed64(span, 7, f.start);
    fixed64(span, 8, f.end);
    if let Some(code) = f.error {
        // Status { message = 2, code = 3 (STATUS_CODE_ERROR = 2) }
        nested(span, 15, |st| {
            string(st, 2, code);
            varint(st, 3, 2);
        });
    }
}

/// `common.v1.KeyValue` { key = 1, value = 2: AnyValue { string = 1 | int = 3 } }.
#[inline]
fn kv(out: &mut Vec<u8>, tag: u8, name: &str, value: Value<'_>) {
    nested(out, tag, |kv| {
        string(kv, 1, name);
        nested(kv, 2, |any| match value {
            Value::Str(s) => string(any, 1, s),
            // int64 is a varint of the two's complement (ten bytes when negative).
            Value::Int(i) => varint(any, 3, i as u64),
        });
    });
}

/// Wire types (protobuf encoding): varint, 64-bit, length-delimited.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

/// A field's key; every field number here is below 16, so it is one byte.
#[inline]
fn key(out: &mut Vec<u8>, tag: u8, wire: u8) {
    debug_assert!(tag < 16);
    out.push(tag << 3 | wire);
}

/// `v` as a varint: seven bits a byte, low first, the high bit saying "more".
#[inline]
fn varint_bytes(mut v: u64) -> ([u8; 10], usize) {
    let (mut b, mut n) = ([0u8; 10], 0);
    while v >= 0x80 {
        b[n] = v as u8 | 0x80;
        v >>= 7;
        n += 1;
    }
    b[n] = v as u8;
    (b, n + 1)
}

#[inline]
fn encode_varint(v: u64, out: &mut Vec<u8>) {
    match v {
        0..0x80 => out.push(v as u8),
        _ => {
            let (b, n) = varint_bytes(v);
            out.extend_from_slice(&b[..n]);
        }
    }
}

/// A length-delimited field whose body `write` appends. One byte is kept for the length,
/// enough below 128 bytes (attributes, statuses); a longer body (a span, the batch) moves
/// up to make room for the rest.
#[inline]
fn nested(out: &mut Vec<u8>, tag: u8, write: impl FnOnce(&mut Vec<u8>)) {
    key(out, tag, LEN);
    let at = out.len();
    out.push(0);
    write(out);
    let len = out.len() - at - 1;
    if len < 0x80 {
        out[at] = len as u8;
        return;
    }
    let (prefix, n) = varint_bytes(len as u64);
    let end = out.len();
    out.resize(end + n - 1, 0);
    out.copy_within(at + 1..end, at + n);
    out[at..at + n].copy_from_slice(&prefix[..n]);
}

#[inline]
fn bytes(out: &mut Vec<u8>, tag: u8, b: &[u8]) {
    key(out, tag, LEN);
    encode_varint(b.len() as u64, out);
    out.extend_from_slice(b);
}

#[inline]
fn string(out: &mut Vec<u8>, tag: u8, s: &str) {
    bytes(out, tag, s.as_bytes());
}

#[inline]
fn varint(out: &mut Vec<u8>, tag: u8, v: u64) {
    key(out, tag, VARINT);
    encode_varint(v, out);
}

#[inline]
fn fixed64(out: &mut Vec<u8>, tag: u8, v: u64) {
    key(out, tag, FIXED64);
    out.extend_from_slice(&v.to_le_bytes());
}

/// Where the collector is: `http://host:port[/base]/v1/traces`.
pub struct Target {
    authority: String,
    host: HeaderValue,
    path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("tracing: {url}: only http:// is supported"))?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let host = HeaderValue::from_str(authority)
            .map_err(|_| format!("tracing: {url}: not a host and port"))?;
        let authority = match authority.rsplit_once(':') {
            Some((_, port)) if port.parse::<u16>().is_ok() => authority.to_string(),
            _ => format!("{authority}:80"),
        };
        Ok(Target {
            authority,
            host,
            path: if path.is_empty() {
                "/".into()
            } else {
                path.into()
            },
        })
    }

    /// One POST of an encoded batch, on a connection of its own, within `timeout`; the
    /// connection goes with the call (a collector that never answers keeps nothing open).
    pub async fn post(&self, body: Vec<u8>, timeout: Duration) -> Result<(), String> {
        tokio::time::timeout(timeout, self.exchange(body))
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))?
    }

    async fn exchange(&self, body: Vec<u8>) -> Result<(), String> {
        let tcp = TcpStream::connect(self.authority.as_str())
            .await
            .map_err(|e| format!("connect {}: {e}", self.authority))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("http: {e}"))?;
        let req = Request::post(self.path.as_str())
            .header(header::HOST, self.host.clone())
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .header(header::USER_AGENT, "scopegate")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("request: {e}"))?;
        let exchange = async move {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| format!("http: {e}"))?;
            let status = resp.status();
            // What a collector answers (a partial-success message) is small; it is read and
            // dropped, so the connection ends cleanly.
            let _ = Limited::new(resp.into_body(), 64 * 1024).collect().await;
            drop(sender);
            match status.is_success() {
                true => Ok(()),
                false => Err(format!("the collector answered {status}")),
            }
        };
        let (_, result) = tokio::join!(conn, exchange);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Proto;
    use prost::Message;

    fn span(attributes: &[(&str, Value<'_>)], f: &Fields<'_>) -> Vec<u8> {
        let mut s = Vec::new();
        for (k, v) in attributes {
            attribute(&mut s, k, *v);
        }
        finish(&mut s, f);
        s
    }

    const ROOT: Fields<'static> = Fields {
        trace: &[7; 16],
        span: &[8; 8],
        parent: &[0; 8],
        name: "scopegate.request",
        kind: &Kind::Server,
        start: 1_700_000_000_123_456_789,
        end: 1_700_000_000_223_456_789,
        error: Some("upstream_unavailable"),
    };

    /// What `encode` writes, read back by opentelemetry-proto's generated types, with an
    /// attribute long enough (300 bytes) for two-byte lengths.
    #[test]
    fn the_generated_types_read_back_what_is_written() {
        let long = "x".repeat(300);
        let spans = [
            span(
                &[
                    ("url.path", Value::Str(&long)),
                    ("http.response.status_code", Value::Int(503)),
                    ("negative", Value::Int(-2)),
                ],
                &ROOT,
            ),
            span(
                &[],
                &Fields {
                    span: &[9; 8],
                    parent: &[8; 8],
                    name: "scopegate.upstream",
                    kind: &Kind::Client,
                    error: None,
                    ..ROOT
                },
            ),
        ];
        let req = ExportTraceServiceRequest::decode(&encode("edge", &spans)[..]).unwrap();
        assert_eq!(req.resource_spans.len(), 1);
        let rs = &req.resource_spans[0];
        let service = &rs.resource.as_ref().unwrap().attributes[0];
        assert_eq!(service.key, "service.name");
        let value = service.value.as_ref().unwrap().value.as_ref();
        assert_eq!(value, Some(&Proto::StringValue("edge".into())));
        let ss = &rs.scope_spans[0];
        assert_eq!(ss.scope.as_ref().unwrap().name, "scopegate");
        let (a, b) = (&ss.spans[0], &ss.spans[1]);
        assert_eq!(
            (a.trace_id.as_slice(), a.span_id.as_slice()),
            (&[7; 16][..], &[8; 8][..])
        );
        assert!(a.parent_span_id.is_empty());
        assert_eq!((a.name.as_str(), a.kind), ("scopegate.request", 2));
        assert_eq!(
            (a.start_time_unix_nano, a.end_time_unix_nano),
            (1_700_000_000_123_456_789, 1_700_000_000_223_456_789)
        );
        let values: Vec<(&str, Option<&Proto>)> = (a.attributes.iter())
            .map(|kv| {
                (
                    kv.key.as_str(),
                    kv.value.as_ref().and_then(|v| v.value.as_ref()),
                )
            })
            .collect();
        assert_eq!(
            values,
            [
                ("url.path", Some(&Proto::StringValue(long))),
                ("http.response.status_code", Some(&Proto::IntValue(503))),
                ("negative", Some(&Proto::IntValue(-2))),
            ]
        );
        let status = a.status.as_ref().unwrap();
        assert_eq!(
            (status.code, status.message.as_str()),
            (2, "upstream_unavailable")
        );
        assert_eq!(b.parent_span_id, [8; 8]);
        assert_eq!((b.name.as_str(), b.kind), ("scopegate.upstream", 3));
        assert!(b.status.is_none() && b.attributes.is_empty());
    }

    /// A batch long enough for a three-byte length (over 16 KiB): every span read back.
    #[test]
    fn a_long_batch_reads_back_whole() {
        let path = "/v1/bots/b".repeat(10);
        let spans: Vec<Vec<u8>> = (0..200u8)
            .map(|i| {
                span(
                    &[("url.path", Value::Str(&path))],
                    &Fields {
                        span: &[i; 8],
                        ..ROOT
                    },
                )
            })
            .collect();
        let body = encode("edge", &spans);
        assert!(body.len() > 1 << 14, "{}", body.len());
        let req = ExportTraceServiceRequest::decode(&body[..]).unwrap();
        let got = &req.resource_spans[0].scope_spans[0].spans;
        assert_eq!(got.len(), 200);
        assert!(got.iter().zip(0..200u8).all(|(s, i)| s.span_id == [i; 8]));
    }

    #[test]
    fn collector_urls() {
        let t = Target::parse("http://127.0.0.1:4318/v1/traces").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("127.0.0.1:4318", "/v1/traces")
        );
        let t = Target::parse("http://collector/base/v1/traces").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.host.to_str().unwrap()),
            ("collector:80", "collector")
        );
        assert_eq!(t.path, "/base/v1/traces");
        assert!(Target::parse("https://collector/v1/traces").is_err());
    }
}
