//! The upstream client: pooled keep-alive HTTP/1.1 connections, connect and response-header
//! timeouts mapped to 502 and 504. It only accepts a `Permit`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::Body;
use crate::authorize::Permit;
use crate::config::{Config, Upstream};
use crate::error::Error;

pub struct Forwarder {
    client: Client<HttpConnector, Body>,
    upstreams: Vec<Upstream>,
    timeout: Duration,
}

/// What went wrong upstream, for `scopegate_upstream_errors_total{kind}`.
pub fn error_kind(e: &Error) -> Option<&'static str> {
    match e {
        Error::UpstreamTimeout => Some("timeout"),
        Error::UpstreamUnavailable(m) if m.starts_with("connect") => Some("connect"),
        Error::UpstreamUnavailable(_) => Some("protocol"),
        _ => None,
    }
}

impl Forwarder {
    pub fn new(config: &Config) -> Forwarder {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(config.limits.upstream_connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(connector);
        Forwarder {
            client,
            upstreams: config.upstreams.clone(),
            timeout: config.limits.upstream_timeout,
        }
    }

    pub fn upstream(&self, i: usize) -> &Upstream {
        &self.upstreams[i]
    }

    /// Sends the request to the permit's upstream at `path_and_query` (already normalized,
    /// the upstream's base path in front). Returns the response and how long the upstream
    /// took to answer with headers.
    pub async fn send(
        &self,
        permit: &Permit<'_>,
        path_and_query: String,
        mut req: Request<Body>,
    ) -> Result<(Response<Incoming>, Duration), Error> {
        let up = self.upstream(permit.upstream());
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(up.authority.clone());
        uri.path_and_query = PathAndQuery::from_maybe_shared(Bytes::from(path_and_query)).ok();
        *req.uri_mut() = Uri::from_parts(uri)
            .map_err(|_| Error::UpstreamUnavailable("unrepresentable upstream URI".into()))?;
        *req.version_mut() = Version::HTTP_11;
        let started = Instant::now();
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => Err(Error::UpstreamTimeout),
            Ok(Err(e)) if e.is_connect() => {
                Err(Error::UpstreamUnavailable(format!("connect: {e}")))
            }
            Ok(Err(e)) => Err(Error::UpstreamUnavailable(format!("{e}"))),
            Ok(Ok(resp)) => Ok((resp, started.elapsed())),
        }
    }
}
