//! Upstreams (SPEC §1.1): a base URL, or a map with the URL and its TLS and HTTP/2
//! settings, read and split once so forwarding only concatenates.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;

use crate::yaml;

/// An upstream as written: a base URL (short form), or a map with `url` and the TLS and
/// HTTP/2 settings (long form, SPEC §1.1).
#[derive(Debug)]
pub(super) enum RawUpstream {
    Short(String),
    Long(RawUpstreamLong),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstreamLong {
    url: String,
    ca_file: Option<PathBuf>,
    client_cert_file: Option<PathBuf>,
    client_key_file: Option<PathBuf>,
    server_name: Option<String>,
    #[serde(default)]
    http2: bool,
}

impl JsonSchema for RawUpstream {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Upstream".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "An upstream URL or a map with `url`: a base URL (http:// or https://), or the long form with its TLS and HTTP/2 settings.",
            "anyOf": [{ "type": "string" }, g.subschema_for::<RawUpstreamLong>()]
        })
    }
}

impl<'de> Deserialize<'de> for RawUpstream {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawUpstream;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an upstream URL or a map with `url`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawUpstream, E> {
                Ok(RawUpstream::Short(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                m: A,
            ) -> Result<RawUpstream, A::Error> {
                RawUpstreamLong::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(RawUpstream::Long)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// An upstream base URL, split once so forwarding only concatenates.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub authority: http::uri::Authority,
    /// `authority` as the `Host` value the upstream gets.
    pub host: http::HeaderValue,
    /// Path prefix without a trailing slash ("" for none).
    pub base_path: String,
    /// `https://`: TLS to the upstream, verified.
    pub tls: Option<UpstreamTls>,
    /// HTTP/2 to the upstream (ALPN h2 over TLS, prior knowledge over `http://`).
    pub http2: bool,
}

impl Upstream {
    pub fn port(&self) -> u16 {
        let default = if self.tls.is_some() { 443 } else { 80 };
        self.authority.port_u16().unwrap_or(default)
    }
}

/// How scopegate checks an upstream's certificate and which one it shows (SPEC §5.1).
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// `None`: the system's root certificates.
    pub ca_file: Option<PathBuf>,
    /// Certificate and key files of scopegate's client certificate (upstream mTLS).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// SNI and the name the certificate must carry: `server_name`, else the URL's host.
    pub server_name: String,
}

pub(super) fn parse_upstream(
    file: &Path,
    name: &str,
    raw: &RawUpstream,
) -> Result<Upstream, String> {
    let (url, long) = match raw {
        RawUpstream::Short(url) => (url.as_str(), None),
        RawUpstream::Long(l) => (l.url.as_str(), Some(l)),
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        Some(s) => return Err(format!("scheme {s:?} is not supported (http or https)")),
        None => return Err(format!("{url:?} has no scheme")),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{url:?} has no host"))?
        .clone();
    if uri.query().is_some() {
        return Err("an upstream URL cannot carry a query string".into());
    }
    let base_path = uri.path().trim_end_matches('/').to_string();
    let tls = match long {
        Some(l) if !https => {
            let tls_fields = [
                ("ca_file", l.ca_file.is_some()),
                ("client_cert_file", l.client_cert_file.is_some()),
                ("client_key_file", l.client_key_file.is_some()),
                ("server_name", l.server_name.is_some()),
            ];
            if let Some((field, _)) = tls_fields.iter().find(|(_, set)| *set) {
                return Err(format!("{field} needs an https:// url"));
            }
            None
        }
        _ if !https => None,
        _ => {
            let host = authority.host();
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            let server_name = long
                .and_then(|l| l.server_name.clone())
                .unwrap_or_else(|| host.to_string());
            if rustls::pki_types::ServerName::try_from(server_name.as_str()).is_err() {
                return Err(format!(
                    "server_name {server_name:?} is not a DNS name or IP address"
                ));
            }
            let resolve = |p: &Option<PathBuf>| p.as_ref().map(|p| yaml::resolve(file, p));
            let client_cert =
                match long.map(|l| (resolve(&l.client_cert_file), resolve(&l.client_key_file))) {
                    Some((Some(c), Some(k))) => Some((c, k)),
                    Some((Some(_), None)) | Some((None, Some(_))) => {
                        return Err("client_cert_file and client_key_file go together".into());
                    }
                    _ => None,
                };
            Some(UpstreamTls {
                ca_file: long.and_then(|l| resolve(&l.ca_file)),
                client_cert,
                server_name,
            })
        }
    };
    Ok(Upstream {
        name: name.to_string(),
        host: http::HeaderValue::from_str(authority.as_str())
            .map_err(|_| format!("{url:?}: the host is not a valid Host header"))?,
        authority,
        base_path,
        tls,
        http2: long.is_some_and(|l| l.http2),
    })
}
