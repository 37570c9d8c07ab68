//! Header hygiene (SPEC §5): what is removed from a request before it goes upstream, what
//! the proxy adds, and what is removed from the response. Header names are constants and
//! the identity names are built once from the configured prefix.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::wire::{AUTH, IdentityNames, X_REQUEST_ID};

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the legacy ones proxies still see).
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];

/// Headers that would let a client steer the upstream away from what was authorized.
const OVERRIDES: [HeaderName; 8] = [
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    X_REAL_IP,
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

/// A valid client request id (1 to 128 of `A-Za-z0-9._-`), or a fresh UUID. A header
/// value, so the upstream request and the response share it without copies.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID) {
        let b = v.as_bytes();
        if (1..=128).contains(&b.len())
            && b.iter()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(b))
        {
            return v.clone();
        }
    }
    let mut buf = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("-"))
}

/// Removes the hop-by-hop headers, including those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    remove_where(headers, |_| false);
}

/// Removes every header that is hop-by-hop, named by `Connection`, or `doomed`. One pass
/// over the headers present (a request has a handful) instead of a lookup per name that
/// could be there (twenty, nearly always absent).
fn remove_where(headers: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    let gone: Vec<HeaderName> = headers
        .keys()
        .filter(|n| HOP_BY_HOP.contains(n) || listed.contains(n) || doomed(n))
        .cloned()
        .collect();
    for name in gone {
        headers.remove(name);
    }
}

/// The client's address as the forwarding headers carry it, formatted once per connection
/// and shared by its requests.
#[derive(Debug, Clone)]
pub struct Peer {
    /// `X-Forwarded-For` and `X-Real-IP`: the bare address.
    ip: HeaderValue,
    /// `Forwarded` node (RFC 7239 §6: an IPv6 address is bracketed and quoted).
    node: HeaderValue,
}

impl Peer {
    /// The bare address, as `X-Real-IP` carries it.
    pub fn ip(&self) -> &str {
        self.ip.to_str().unwrap_or_default()
    }

    pub fn new(addr: SocketAddr) -> Peer {
        let ip = addr.ip().to_string();
        let node = if addr.is_ipv6() {
            format!("for=\"[{ip}]\"")
        } else {
            format!("for={ip}")
        };
        // Digits, dots, colons, brackets and quotes: always a valid header value.
        let value = |s: String| HeaderValue::try_from(s).expect("an address is a header value");
        Peer {
            ip: value(ip),
            node: value(node),
        }
    }
}

pub struct Forwarding<'a> {
    pub peer: &'a Peer,
    pub https: bool,
    pub request_id: &'a HeaderValue,
    /// The upstream's `Host`.
    pub upstream_host: &'a HeaderValue,
    /// The Host the client addressed (Host header, or the HTTP/2 authority).
    pub original_host: Option<HeaderValue>,
    pub keep_credentials: bool,
}

/// Turns the client's headers into the upstream's, in place: hop-by-hop, credential,
/// override and identity-prefixed headers out; the forwarding headers in. The identity
/// headers themselves are the permit's to write (`Permit::write_identity`).
pub fn prepare_request(headers: &mut HeaderMap, names: &IdentityNames, f: &Forwarding<'_>) {
    remove_where(headers, |n| {
        (!f.keep_credentials && (n == header::AUTHORIZATION || n == AUTH))
            || OVERRIDES.contains(n)
            || names.is_owned(n)
    });

    for (name, value) in [
        (
            X_FORWARDED_FOR,
            appended(headers, &X_FORWARDED_FOR, &f.peer.ip),
        ),
        (FORWARDED, appended(headers, &FORWARDED, &f.peer.node)),
        (X_REAL_IP, Some(f.peer.ip.clone())),
    ] {
        if let Some(v) = value {
            headers.insert(name, v);
        }
    }
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if f.https { "https" } else { "http" }),
    );
    if let Some(host) = &f.original_host {
        headers.insert(X_FORWARDED_HOST, host.clone());
    }
    headers.insert(header::HOST, f.upstream_host.clone());
    headers.insert(X_REQUEST_ID, f.request_id.clone());
}

/// Whether the client said it takes trailers (`TE: trailers`). `TE` is hop-by-hop, so it
/// is removed like the others; to an HTTP/2 upstream scopegate then says it itself, since
/// it passes trailers on (gRPC servers answer only clients that do).
pub fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("trailers")
        })
}

/// Removes the upstream's hop-by-hop headers and adds the request id.
pub fn prepare_response(headers: &mut HeaderMap, request_id: &HeaderValue) {
    strip_hop_by_hop(headers);
    headers.insert(X_REQUEST_ID, request_id.clone());
}

/// The values of `name` the request already has, joined, with `last` appended; just `last`
/// when it has none (the usual case, and no copy).
fn appended(headers: &HeaderMap, name: &HeaderName, last: &HeaderValue) -> Option<HeaderValue> {
    let mut list = String::new();
    for v in headers.get_all(name).iter().filter_map(|v| v.to_str().ok()) {
        list.push_str(v);
        list.push_str(", ");
    }
    if list.is_empty() {
        return Some(last.clone());
    }
    list.push_str(last.to_str().ok()?);
    HeaderValue::try_from(list).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_nodes_bracket_and_quote_ipv6_and_append_to_earlier_hops() {
        let v4 = Peer::new("10.0.0.1:5".parse().unwrap());
        assert_eq!(v4.ip, "10.0.0.1");
        assert_eq!(v4.node, "for=10.0.0.1");
        let v6 = Peer::new("[2001:db8::1]:443".parse().unwrap());
        assert_eq!(v6.ip, "2001:db8::1");
        assert_eq!(v6.node, "for=\"[2001:db8::1]\"");
        let mut h = HeaderMap::new();
        assert_eq!(appended(&h, &FORWARDED, &v6.node).unwrap(), v6.node);
        h.append(FORWARDED, HeaderValue::from_static("for=1.1.1.1"));
        h.append(FORWARDED, HeaderValue::from_static("for=2.2.2.2"));
        assert_eq!(
            appended(&h, &FORWARDED, &v6.node).unwrap(),
            "for=1.1.1.1, for=2.2.2.2, for=\"[2001:db8::1]\""
        );
    }

    #[test]
    fn te_trailers_is_found_among_codings_in_any_case() {
        let mut h = HeaderMap::new();
        assert!(!accepts_trailers(&h));
        h.insert(header::TE, HeaderValue::from_static("gzip;q=0.5, Trailers"));
        assert!(accepts_trailers(&h));
        h.insert(header::TE, HeaderValue::from_static("trailersx, gzip"));
        assert!(!accepts_trailers(&h));
    }

    #[test]
    fn request_id_is_kept_only_when_valid() {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123_x.y"));
        assert_eq!(request_id(&h), "abc-123_x.y");
        h.insert(X_REQUEST_ID, HeaderValue::from_static("bad id"));
        assert_ne!(request_id(&h), "bad id");
        h.insert(
            X_REQUEST_ID,
            HeaderValue::from_str(&"a".repeat(129)).unwrap(),
        );
        assert_eq!(request_id(&h).len(), 36);
    }

    #[test]
    fn connection_listed_headers_go_but_proxy_headers_are_added_after() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("x-request-id, x-secret, keep-alive"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        let names = IdentityNames::new("x-auth-").unwrap();
        let host = HeaderValue::from_static("up:1");
        let rid = HeaderValue::from_static("rid");
        let peer = Peer::new("10.0.0.1:5".parse().unwrap());
        let f = Forwarding {
            peer: &peer,
            https: false,
            request_id: &rid,
            upstream_host: &host,
            original_host: None,
            keep_credentials: false,
        };
        prepare_request(&mut h, &names, &f);
        assert!(h.get("x-secret").is_none() && h.get(header::TE).is_none());
        assert_eq!(h.get(X_REQUEST_ID).unwrap(), "rid");
        assert_eq!(h.get(FORWARDED).unwrap(), "for=10.0.0.1");
    }
}
