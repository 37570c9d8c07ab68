//! One request's record: what it did, gathered along the way, and the metrics and
//! access-log line written once it is answered — or, if its handler is dropped first (its
//! connection cut at the end of the drain), then, as `DrainCut`. The request's span (SPEC
//! §7), when tracing is on, ends with the same record. Shared by the proxy's
//! pipeline and the authorization-service listener.

use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::access_log::{AccessLog, Record};
use super::metrics::Metrics;
use crate::decide::Seen;
use crate::error::Error;
use crate::trace::Ended;

/// Which listener answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The public listener: the request was forwarded (or refused).
    Proxy,
    /// The authorization service (SPEC §8): the request was only decided.
    Authz,
}

/// What the request did: what the decision saw, and the timings around it.
#[derive(Default)]
pub struct Trace<'s> {
    pub path: String,
    pub seen: Seen<'s>,
    pub auth: Duration,
    pub upstream: Option<(u16, Duration)>,
}

pub struct Pending<'a, 's> {
    metrics: &'a Metrics,
    access_log: &'a AccessLog,
    listener: Listener,
    started: Instant,
    pub request_id: HeaderValue,
    method: Method,
    pub trace: Trace<'s>,
    answered: bool,
}

impl<'a> Pending<'a, '_> {
    pub fn start(
        metrics: &'a Metrics,
        access_log: &'a AccessLog,
        listener: Listener,
        method: &Method,
        request_id: HeaderValue,
    ) -> Self {
        if listener == Listener::Proxy {
            metrics.inflight.inc();
        }
        Pending {
            metrics,
            access_log,
            listener,
            started: Instant::now(),
            request_id,
            method: method.clone(),
            trace: Trace {
                seen: Seen {
                    principal_kind: "none",
                    ..Seen::default()
                },
                ..Trace::default()
            },
            answered: false,
        }
    }

    /// `RateLimit-*` on every limited principal's answer (SPEC §3.6).
    pub fn rate_limit_headers(&self, h: &mut HeaderMap) {
        if let Some(d) = self.trace.seen.rate {
            h.insert("ratelimit-limit", HeaderValue::from(d.limit));
            h.insert("ratelimit-remaining", HeaderValue::from(d.remaining));
            h.insert("ratelimit-reset", HeaderValue::from(d.reset_secs));
        }
    }

    pub fn answered(&mut self, status: StatusCode, error: Option<&Error>) {
        self.answered = true;
        self.record(status, error);
    }

    fn record(&self, status: StatusCode, error: Option<&Error>) {
        if self.listener == Listener::Proxy {
            self.metrics.inflight.dec();
        }
        let t = &self.trace;
        let elapsed = self.started.elapsed();
        let code = error.map(Error::code).unwrap_or("ok");
        let route = t
            .seen
            .route
            .unwrap_or(if error.is_some_and(|e| matches!(e, Error::NoRoute)) {
                "no_route"
            } else {
                "-"
            });
        let class = match status.as_u16() / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        };
        match self.listener {
            Listener::Proxy => {
                self.metrics
                    .requests
                    .with_label_values(&[route, code, class])
                    .inc();
                self.metrics.request_duration.observe(elapsed.as_secs_f64());
            }
            Listener::Authz => {
                self.metrics
                    .authz_decisions
                    .with_label_values(&[route, code])
                    .inc();
            }
        }
        self.access_log.write(&Record {
            request_id: self.request_id.to_str().unwrap_or_default(),
            method: self.method.as_str(),
            path: &t.path,
            route,
            status: status.as_u16(),
            code,
            reason: error.map(|e| e.to_string()),
            principal_kind: t.seen.principal_kind,
            principal_id: t.seen.principal_id.as_ref().and_then(|v| v.to_str().ok()),
            upstream_status: t.upstream.map(|u| u.0),
            duration: elapsed,
            auth: t.auth,
            upstream: t.upstream.map(|u| u.1),
            shadow: t.seen.shadowed.is_some(),
            listener: (self.listener == Listener::Authz).then_some("authz"),
        });
        if let Some(span) = t.seen.span.as_ref().filter(|s| s.is_sampled()) {
            span.end_request(&Ended {
                route: t.seen.route,
                method: &self.method,
                path: &t.path,
                status,
                code,
                principal_kind: t.seen.principal_kind,
                principal_id: t.seen.principal_id.as_ref().and_then(|v| v.to_str().ok()),
            });
        }
    }
}

impl Drop for Pending<'_, '_> {
    fn drop(&mut self) {
        if !self.answered {
            let cut = Error::DrainCut;
            self.record(cut.status(), Some(&cut));
        }
    }
}
