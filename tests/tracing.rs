//! OpenTelemetry tracing (SPEC §7): the real proxy exports to an OTLP/HTTP receiver started
//! here, which decodes the protobuf with `opentelemetry-proto`. Spans, their parent/child
//! links and attributes, the `traceparent` the upstream gets, parent-based sampling, no
//! credential anywhere in the export, and a collector that is down or silent costing the
//! requests nothing.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;
use tokio::net::TcpListener;

use common::jose::{bearer, py_sign};
use common::*;

const SECRET: &str = "tracing-test-hs-secret-0123456789abcdef0123456789abcdef";
const KEY: &str = "sk_live_tracing_0123456789abcdef";
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

fn policy() -> String {
    format!(
        r#"version: 1
scopes: {{ bots:read: View bots, bots:write: Change bots }}
routes:
  - {{ id: read, methods: [GET], path: "/v1/bots/{{botId}}", auth: [jwt, api_key], scopes: [bots:read] }}
  - {{ id: write, methods: [POST], path: "/v1/bots/{{botId}}", auth: [jwt, api_key], scopes: [bots:write] }}
  - {{ id: public, methods: [GET], path: "/public/{{*rest}}", auth: [none] }}
apps:
  - {{ client_id: app-hs, algorithms: [HS256], secret: {{ value: "{SECRET}" }}, scopes: [bots:read] }}
api_keys:
  - {{ id: key-1, sha256: {}, scopes: [bots:read] }}
"#,
        scopegate::policy::compile::sha256_hex(KEY.as_bytes())
    )
}

fn token() -> String {
    token_signed_with(SECRET)
}

fn token_signed_with(secret: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    py_sign(
        "HS256",
        secret,
        &json!({ "appId": "app-hs", "sub": "user-1", "iat": now, "exp": now + 600 }),
    )
}

/// An OTLP/HTTP receiver: keeps each export's path, content type and body.
struct Collector {
    addr: SocketAddr,
    exports: Arc<Mutex<Vec<(String, String, Bytes)>>>,
}

impl Collector {
    async fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let exports = Arc::new(Mutex::new(Vec::new()));
        let kept = exports.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let kept = kept.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let kept = kept.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let ct = req
                                .headers()
                                .get("content-type")
                                .map(|v| v.to_str().unwrap().to_string())
                                .unwrap_or_default();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            kept.lock().unwrap().push((path, ct, body));
                            let mut r = Response::new(Full::new(Bytes::new()));
                            r.headers_mut()
                                .insert("content-type", "application/x-protobuf".parse().unwrap());
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Collector { addr, exports }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every export so far, checked for path and content type, as (service.name, span).
    fn spans(&self) -> Vec<(String, Span)> {
        let mut out = Vec::new();
        for (path, ct, body) in self.exports.lock().unwrap().iter() {
            assert_eq!(path, "/v1/traces");
            assert_eq!(ct, "application/x-protobuf");
            let req = ExportTraceServiceRequest::decode(body.clone()).expect("OTLP protobuf");
            for rs in req.resource_spans {
                let resource = rs.resource.unwrap_or_default();
                let service = resource
                    .attributes
                    .iter()
                    .find(|a| a.key == "service.name")
                    .and_then(|a| string(a.value.as_ref()?.value.as_ref()?))
                    .unwrap_or_default();
                for ss in rs.scope_spans {
                    for s in ss.spans {
                        out.push((service.clone(), s));
                    }
                }
            }
        }
        out
    }

    /// All the bytes exported so far.
    fn raw(&self) -> Vec<u8> {
        let exports = self.exports.lock().unwrap();
        exports.iter().flat_map(|e| e.2.to_vec()).collect()
    }
}

fn string(v: &Any) -> Option<String> {
    match v {
        Any::StringValue(s) => Some(s.clone()),
        Any::IntValue(i) => Some(i.to_string()),
        _ => None,
    }
}

fn attributes(s: &Span) -> BTreeMap<String, String> {
    s.attributes
        .iter()
        .filter_map(|a| Some((a.key.clone(), string(a.value.as_ref()?.value.as_ref()?)?)))
        .collect()
}

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn proxy(collector: &str, ratio: &str) -> (Upstream, Proxy) {
    let up = Upstream::start().await;
    let p = ProxyBuilder::new(&policy())
        .upstream("default", up.addr)
        .config(&format!(
            "tracing:\n  otlp_endpoint: {collector}\n  sample_ratio: {ratio}\n  service_name: edge-test\n"
        ))
        .start()
        .await;
    (up, p)
}

/// A `traceparent` of the right form with an all-zero (invalid) trace id.
const BROKEN: &str = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";

fn traceparent(trace: &str, span: &str, flags: &str) -> String {
    format!("00-{trace}-{span}-{flags}")
}

/// Spans of one trace by name; each name once.
fn by_name(spans: &[(String, Span)], trace: &[u8]) -> BTreeMap<String, Span> {
    let mut out = BTreeMap::new();
    for (_, s) in spans.iter().filter(|(_, s)| s.trace_id == trace) {
        assert!(
            out.insert(s.name.clone(), s.clone()).is_none(),
            "{} twice",
            s.name
        );
    }
    out
}

#[tokio::test]
async fn a_request_span_with_its_children_attributes_and_the_upstream_traceparent() {
    let collector = Collector::start().await;
    let (_up, mut p) = proxy(&collector.url(), "0").await;
    let token = token();
    let client_tp = traceparent(CLIENT_TRACE, CLIENT_SPAN, "01");

    // A JWT request, its client's trace sampled: kept although the ratio is 0.
    let a = get(
        &p.url("/v1/bots/./b1"),
        &[
            ("authorization", &bearer(&token)),
            ("traceparent", &client_tp),
            ("tracestate", "vendor=abc"),
        ],
    )
    .await;
    let echo = a.echo();
    let sent = echo.header("traceparent").expect("a traceparent upstream");
    assert_eq!(echo.header("tracestate").as_deref(), Some("vendor=abc"));
    // An API-key request on the same trace, refused for its scope.
    let refused = send(
        "POST",
        &p.url("/v1/bots/b2"),
        &[
            ("authorization", &bearer(KEY)),
            (
                "traceparent",
                &traceparent(CLIENT_TRACE, "1111111111111111", "01"),
            ),
        ],
        None,
    )
    .await;
    assert_eq!(refused.status, 403);
    p.shutdown().await;

    let spans = collector.spans();
    let trace = hex::decode(CLIENT_TRACE).unwrap();
    let request_spans: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.name == "scopegate.request")
        .collect();
    assert_eq!(request_spans.len(), 2, "{spans:#?}");
    assert!(spans.iter().all(|(service, _)| service == "edge-test"));

    let jwt = request_spans
        .iter()
        .find(|s| s.parent_span_id == hex::decode(CLIENT_SPAN).unwrap())
        .expect("the JWT request's span, a child of the client's");
    assert_eq!(jwt.trace_id, trace);
    assert_eq!(jwt.kind, 2, "SPAN_KIND_SERVER");
    assert_eq!(
        attributes(jwt),
        attrs(&[
            ("http.route", "read"),
            ("http.request.method", "GET"),
            ("url.path", "/v1/bots/b1"),
            ("http.response.status_code", "200"),
            ("scopegate.code", "ok"),
            ("scopegate.principal.kind", "jwt"),
            ("scopegate.principal.id", "app-hs"),
        ])
    );
    // The upstream's parent is scopegate's request span, on the client's trace.
    assert_eq!(
        sent,
        traceparent(CLIENT_TRACE, &hex::encode(&jwt.span_id), "01")
    );
    let children: BTreeMap<String, &Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.parent_span_id == jwt.span_id)
        .map(|s| (s.name.clone(), s))
        .collect();
    assert_eq!(
        children.keys().collect::<Vec<_>>(),
        ["scopegate.upstream", "scopegate.verify"]
    );
    let upstream = children["scopegate.upstream"];
    assert_eq!(upstream.kind, 3, "SPAN_KIND_CLIENT");
    assert_eq!(
        attributes(upstream),
        attrs(&[("http.response.status_code", "200")])
    );
    assert_eq!(
        attributes(children["scopegate.verify"]),
        attrs(&[("scopegate.principal.kind", "jwt")])
    );
    for c in children.values() {
        assert_eq!(c.trace_id, trace);
        assert!(c.start_time_unix_nano >= jwt.start_time_unix_nano);
        assert!(c.end_time_unix_nano <= jwt.end_time_unix_nano);
    }

    let key = request_spans
        .iter()
        .find(|s| s.parent_span_id == hex::decode("1111111111111111").unwrap())
        .expect("the API-key request's span");
    assert_eq!(
        attributes(key),
        attrs(&[
            ("http.route", "write"),
            ("http.request.method", "POST"),
            ("url.path", "/v1/bots/b2"),
            ("http.response.status_code", "403"),
            ("scopegate.code", "insufficient_scope"),
            ("scopegate.principal.kind", "api_key"),
            ("scopegate.principal.id", "key-1"),
        ])
    );
    let verify: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.parent_span_id == key.span_id)
        .collect();
    assert_eq!(verify.len(), 1, "a refusal never reaches the upstream");
    assert_eq!(verify[0].name, "scopegate.verify");

    // No credential anywhere in what was exported.
    let raw = collector.raw();
    for secret in [token.as_str(), KEY, SECRET] {
        assert!(
            !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "a credential was exported"
        );
    }
    let signature = token.rsplit('.').next().unwrap();
    assert!(
        !raw.windows(signature.len())
            .any(|w| w == signature.as_bytes())
    );
}

#[tokio::test]
async fn refusals_carry_their_code_and_a_verification_failure_is_marked() {
    let collector = Collector::start().await;
    let (up, mut p) = proxy(&collector.url(), "1").await;
    let bad = token_signed_with(&SECRET.replace('0', "1"));
    let a = get(&p.url("/v1/bots/b1"), &[("authorization", &bearer(&bad))]).await;
    assert_eq!((a.status, a.code().as_str()), (401, "invalid_token"));
    let a = get(&p.url("/nowhere"), &[]).await;
    assert_eq!((a.status, a.code().as_str()), (404, "no_route"));
    let a = get(&p.url("/public/x"), &[]).await;
    // No traceparent from the client, ratio 1: a new trace, scopegate's span its root.
    let sent = a
        .echo()
        .header("traceparent")
        .expect("a traceparent upstream");
    assert_eq!(up.hits(), 1);
    p.shutdown().await;

    let spans = collector.spans();
    let requests: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.name == "scopegate.request")
        .collect();
    assert_eq!(requests.len(), 3, "{spans:#?}");
    let find = |code: &str| {
        *requests
            .iter()
            .find(|s| attributes(s)["scopegate.code"] == code)
            .unwrap_or_else(|| panic!("no span with {code}"))
    };
    let invalid = find("invalid_token");
    assert_eq!(attributes(invalid)["http.response.status_code"], "401");
    assert_eq!(attributes(invalid)["scopegate.principal.kind"], "none");
    assert!(!attributes(invalid).contains_key("scopegate.principal.id"));
    let verify = by_name(&spans, &invalid.trace_id);
    let failed = &verify["scopegate.verify"];
    assert_eq!(attributes(failed)["scopegate.code"], "invalid_token");
    assert_eq!(failed.status.as_ref().unwrap().code, 2, "STATUS_CODE_ERROR");

    let none = find("no_route");
    assert!(
        !attributes(none).contains_key("http.route"),
        "no route, no http.route"
    );
    assert_eq!(attributes(none)["url.path"], "/nowhere");
    assert!(none.parent_span_id.is_empty(), "a root span");

    let public = find("ok");
    assert_eq!(attributes(public)["scopegate.principal.kind"], "none");
    assert_eq!(
        sent,
        traceparent(
            &hex::encode(&public.trace_id),
            &hex::encode(&public.span_id),
            "01"
        )
    );
}

#[tokio::test]
async fn sampling_is_parent_based_with_the_ratio_for_new_traces() {
    let collector = Collector::start().await;
    let (_up, mut p) = proxy(&collector.url(), "0").await;
    // No parent at ratio 0: scopegate starts no trace; as with tracing off, nothing is
    // exported and the upstream gets no traceparent, and a broken one passes as it came.
    for _ in 0..20 {
        let e = get(&p.url("/public/a"), &[]).await.echo();
        assert_eq!(e.header("traceparent"), None);
    }
    let e = get(&p.url("/public/a"), &[("traceparent", BROKEN)])
        .await
        .echo();
    assert_eq!(e.header("traceparent"), Some(BROKEN.to_owned()));
    // An unsampled parent stays unsampled: its trace id goes on, nothing is exported.
    let unsampled = traceparent(CLIENT_TRACE, CLIENT_SPAN, "00");
    let e = get(&p.url("/public/b"), &[("traceparent", &unsampled)])
        .await
        .echo();
    let tp = e.header("traceparent").unwrap();
    assert!(tp.starts_with(&format!("00-{CLIENT_TRACE}-")), "{tp}");
    assert!(tp.ends_with("-00") && !tp.contains(CLIENT_SPAN), "{tp}");
    // A sampled parent is always kept.
    let sampled = traceparent("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "01");
    get(&p.url("/public/c"), &[("traceparent", &sampled)])
        .await
        .echo();
    p.shutdown().await;
    let spans = collector.spans();
    let names: Vec<&str> = spans.iter().map(|(_, s)| s.name.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let kept = by_name(
        &spans,
        &hex::decode("0af7651916cd43dd8448eb211c80319c").unwrap(),
    );
    let request = &kept["scopegate.request"];
    assert_eq!(attributes(request)["url.path"], "/public/c");
    assert_eq!(kept["scopegate.upstream"].parent_span_id, request.span_id);
}

/// A new trace the ratio drops is still one: the upstream gets scopegate's span as the
/// unsampled parent, so the services behind it follow the decision (as the OpenTelemetry
/// SDK and Envoy pass theirs on).
#[tokio::test]
async fn a_new_trace_the_ratio_drops_passes_its_decision_upstream() {
    let collector = Collector::start().await;
    let (_up, mut p) = proxy(&collector.url(), "0.000000001").await;
    let mut traces = BTreeSet::new();
    for _ in 0..20 {
        let e = get(&p.url("/public/a"), &[]).await.echo();
        let tp = e.header("traceparent").unwrap();
        assert!(tp.starts_with("00-") && tp.ends_with("-00"), "{tp}");
        traces.insert(tp[3..35].to_owned());
    }
    assert_eq!(traces.len(), 20, "each request starts a trace of its own");
    p.shutdown().await;
    assert!(collector.spans().is_empty());
}

#[tokio::test]
async fn an_invalid_traceparent_starts_a_new_trace() {
    let collector = Collector::start().await;
    let (_up, mut p) = proxy(&collector.url(), "1").await;
    let e = get(&p.url("/public/a"), &[("traceparent", BROKEN)])
        .await
        .echo();
    let tp = e.header("traceparent").unwrap();
    assert_ne!(tp, BROKEN);
    p.shutdown().await;
    let spans = collector.spans();
    let (_, request) = spans
        .iter()
        .find(|(_, s)| s.name == "scopegate.request")
        .unwrap();
    assert!(request.parent_span_id.is_empty());
    assert_eq!(
        tp,
        traceparent(
            &hex::encode(&request.trace_id),
            &hex::encode(&request.span_id),
            "01"
        )
    );
}

/// A collector that refuses connections, and one that accepts and never answers: requests
/// neither fail nor wait; the spans are lost.
#[tokio::test]
async fn a_collector_down_or_silent_costs_requests_nothing() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let holder = held.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = silent.accept().await {
            holder.lock().unwrap().push(s);
        }
    });
    for collector in [format!("http://{closed}"), format!("http://{silent_addr}")] {
        let (up, p) = proxy(&collector, "1").await;
        let token = token();
        let started = Instant::now();
        let mut slowest = Duration::ZERO;
        for i in 0..200 {
            let t = Instant::now();
            let a = get(
                &p.url(&format!("/v1/bots/b{i}")),
                &[("authorization", &bearer(&token))],
            )
            .await;
            assert_eq!(a.status, 200, "{collector}: request {i}");
            slowest = slowest.max(t.elapsed());
        }
        assert_eq!(up.hits(), 200);
        if collector.ends_with(&silent_addr.to_string()) {
            // 600 spans passed a batch's 512: an export was sent, and hangs.
            eventually(
                Duration::from_secs(10),
                "an export reaches the silent collector",
                || {
                    let n = held.lock().unwrap().len();
                    async move { n > 0 }
                },
            )
            .await;
        }
        assert!(
            slowest < Duration::from_millis(500),
            "{collector}: slowest {slowest:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{collector}: {:?} for 200 requests",
            started.elapsed()
        );
        drop(p);
    }
}

/// The authorization service gets the request span too.
#[tokio::test]
async fn the_authz_listener_traces_its_decisions() {
    let collector = Collector::start().await;
    let up = Upstream::start().await;
    let mut p = ProxyBuilder::new(&policy())
        .upstream("default", up.addr)
        .config(&format!(
            "authz: {{ listen: 127.0.0.1:0 }}\ntracing: {{ otlp_endpoint: {}, sample_ratio: 1 }}\n",
            collector.url()
        ))
        .start()
        .await;
    let authz = p.running.as_ref().unwrap().authz_addr.unwrap();
    let a = get(
        &format!("http://{authz}/"),
        &[
            ("x-forwarded-uri", "/v1/bots/b1"),
            ("x-forwarded-method", "GET"),
            ("authorization", &bearer(KEY)),
            ("traceparent", &traceparent(CLIENT_TRACE, CLIENT_SPAN, "01")),
        ],
    )
    .await;
    assert_eq!(a.status, 200);
    p.shutdown().await;
    let spans = collector.spans();
    let request = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.name == "scopegate.request")
        .expect("a request span");
    assert_eq!(hex::encode(&request.trace_id), CLIENT_TRACE);
    assert_eq!(
        attributes(request),
        attrs(&[
            ("http.route", "read"),
            ("http.request.method", "GET"),
            ("url.path", "/v1/bots/b1"),
            ("http.response.status_code", "200"),
            ("scopegate.code", "ok"),
            ("scopegate.principal.kind", "api_key"),
            ("scopegate.principal.id", "key-1"),
        ])
    );
    assert!(spans.iter().any(|(_, s)| s.name == "scopegate.verify"));
    // The service name defaults to scopegate.
    assert!(spans.iter().all(|(service, _)| service == "scopegate"));
}

/// A key the policy does not hold is looked up in the key store: a `scopegate.key_store`
/// span under the verification's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_store_lookup_is_a_child_of_the_verification() {
    let redis = common::redis_server::Redis::start().await;
    let stored = "sk_live_tracing_stored_0123456789";
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let hash = scopegate::policy::compile::sha256_hex(stored.as_bytes());
    let _: () = redis::cmd("HSET")
        .arg(format!("scopegate:key:{hash}"))
        .arg(&[("id", "stored-1"), ("scopes", "bots:read")])
        .query_async(&mut conn)
        .await
        .unwrap();
    let collector = Collector::start().await;
    let up = Upstream::start().await;
    let mut p = ProxyBuilder::new(&policy())
        .upstream("default", up.addr)
        .config(&format!(
            "key_store: {}\ntracing: {{ otlp_endpoint: {}, sample_ratio: 1 }}\n",
            redis.url(),
            collector.url()
        ))
        .start()
        .await;
    let a = get(&p.url("/v1/bots/b1"), &[("authorization", &bearer(stored))]).await;
    assert_eq!(a.status, 200);
    p.shutdown().await;
    let spans = collector.spans();
    let request = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.name == "scopegate.request")
        .unwrap();
    assert_eq!(attributes(request)["scopegate.principal.id"], "stored-1");
    let trace = by_name(&spans, &request.trace_id);
    let verify = &trace["scopegate.verify"];
    let lookup = &trace["scopegate.key_store"];
    assert_eq!(verify.parent_span_id, request.span_id);
    assert_eq!(lookup.parent_span_id, verify.span_id);
    assert_eq!(lookup.kind, 3, "SPAN_KIND_CLIENT");
    let raw = collector.raw();
    assert!(!raw.windows(stored.len()).any(|w| w == stored.as_bytes()));
}

/// A token whose `kid` the keys in force lack makes a JWKS lookup: a `scopegate.jwks` span
/// under the verification's, marked with the refusal when the key is still not there.
#[tokio::test]
async fn a_jwks_lookup_is_a_child_of_the_verification() {
    let out = common::jose::jose_tool(
        &["jwk", "--pub", &common::jose::key("app-rsa.pub.pem")],
        None,
    );
    let mut jwk: serde_json::Value = serde_json::from_slice(&out).unwrap();
    jwk["kid"] = "old".into();
    let doc = Bytes::from(json!({ "keys": [jwk] }).to_string());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let doc = doc.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |_req: Request<Incoming>| {
                    let mut r = Response::new(Full::new(doc.clone()));
                    r.headers_mut()
                        .insert("content-type", "application/json".parse().unwrap());
                    async move { Ok::<_, Infallible>(r) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let policy = format!(
        r#"version: 1
scopes: {{ read: Read }}
routes:
  - {{ id: r, methods: [GET], path: /r, auth: [jwt], scopes: [read] }}
apps:
  - {{ client_id: idp-app, algorithms: [RS256], jwks_url: "http://{jwks}/jwks", scopes: [read] }}
"#
    );
    let collector = Collector::start().await;
    let up = Upstream::start().await;
    let mut p = ProxyBuilder::new(&policy)
        .upstream("default", up.addr)
        .config(&format!(
            "tracing: {{ otlp_endpoint: {}, sample_ratio: 1 }}\n",
            collector.url()
        ))
        .start()
        .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({ "appId": "idp-app", "sub": "u", "iat": now, "exp": now + 600 });
    let token = common::jose::run(&[common::jose::sign_h(
        "RS256",
        &common::jose::key("app-rsa-other.key.pem"),
        &claims,
        json!({ "kid": "new" }),
    )])
    .remove(0);
    let a = get(&p.url("/r"), &[("authorization", &bearer(&token))]).await;
    assert_eq!((a.status, a.code().as_str()), (401, "invalid_token"));
    p.shutdown().await;
    let spans = collector.spans();
    let request = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.name == "scopegate.request")
        .unwrap();
    let trace = by_name(&spans, &request.trace_id);
    let verify = &trace["scopegate.verify"];
    let lookup = &trace["scopegate.jwks"];
    assert_eq!(verify.parent_span_id, request.span_id);
    assert_eq!(lookup.parent_span_id, verify.span_id);
    assert_eq!(attributes(lookup)["scopegate.code"], "invalid_token");
    assert_eq!(attributes(verify)["scopegate.code"], "invalid_token");
}
