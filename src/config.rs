//! The static config (SPEC §1.1): read once at start, never reloaded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use crate::yaml::{self, FileError, FileErrors};

/// The config as written. Values that are checked after parsing carry their line
/// (`Spanned`), so every error `check` prints has one; defaults have none (line 0).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// Absent: 0.0.0.0:8080, unless `authz` is set (an authz-only deployment).
    #[schemars(with = "Option<String>")]
    listen: Option<Spanned<String>>,
    #[serde(default = "default_admin_listen")]
    #[schemars(with = "String")]
    admin_listen: Spanned<String>,
    policy_file: PathBuf,
    #[serde(default = "unspanned::<BTreeMap<String, Spanned<RawUpstream>>>")]
    #[schemars(with = "BTreeMap<String, RawUpstream>")]
    upstreams: Spanned<BTreeMap<String, Spanned<RawUpstream>>>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    environments: BTreeMap<String, Spanned<String>>,
    tls: Option<RawTls>,
    #[serde(default = "unspanned::<Limits>")]
    #[schemars(with = "Limits")]
    limits: Spanned<Limits>,
    #[serde(default = "default_prefix")]
    #[schemars(with = "String")]
    identity_header_prefix: Spanned<String>,
    #[serde(default)]
    unmatched: Unmatched,
    #[serde(default = "default_replay_store")]
    #[schemars(with = "String")]
    replay_store: Spanned<String>,
    #[schemars(with = "Option<String>")]
    key_store: Option<Spanned<String>>,
    #[serde(default = "unspanned::<LogConfig>")]
    #[schemars(with = "LogConfig")]
    log: Spanned<LogConfig>,
    #[schemars(with = "Option<RawAuthz>")]
    authz: Option<Spanned<RawAuthz>>,
    #[schemars(with = "Option<RawTracing>")]
    tracing: Option<Spanned<RawTracing>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawTracing {
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
    /// For traces the client did not sample either way (parent-based).
    pub sample_ratio: f64,
    pub service_name: String,
}

impl TracingConfig {
    /// Where OTLP/HTTP wants traces.
    pub fn traces_url(&self) -> String {
        format!("{}/v1/traces", self.otlp_endpoint)
    }
}

/// An upstream as written: a base URL (short form), or a map with `url` and the TLS and
/// HTTP/2 settings (long form, SPEC §1.1).
#[derive(Debug)]
enum RawUpstream {
    Short(String),
    Long(RawUpstreamLong),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawUpstreamLong {
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

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawAuthz {
    #[schemars(with = "String")]
    listen: Spanned<String>,
    #[serde(default)]
    statuses: AuthzStatuses,
}

/// How the authorization service answers a denial (SPEC §8).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthzStatuses {
    /// The status of SPEC §6.
    #[default]
    Exact,
    /// Denials other than 401 and 403 as 403 (nginx's `auth_request` turns anything else
    /// into a 500), the real code kept in the body and in `x-auth-code`.
    Nginx,
}

/// The authorization-service listener (SPEC §8).
#[derive(Debug, Clone)]
pub struct Authz {
    pub listen: SocketAddr,
    pub statuses: AuthzStatuses,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_body_bytes: usize,
    #[serde(with = "yaml::duration")]
    #[schemars(with = "yaml::DurationText")]
    pub header_read_timeout: Duration,
    #[serde(with = "yaml::duration")]
    #[schemars(with = "yaml::DurationText")]
    pub idle_timeout: Duration,
    #[serde(with = "yaml::duration")]
    #[schemars(with = "yaml::DurationText")]
    pub upstream_connect_timeout: Duration,
    #[serde(with = "yaml::duration")]
    #[schemars(with = "yaml::DurationText")]
    pub upstream_timeout: Duration,
    #[serde(with = "yaml::duration")]
    #[schemars(with = "yaml::DurationText")]
    pub drain_timeout: Duration,
    /// A WebSocket with no byte either way for this long is closed.
    #[serde(with = "yaml::duration")]
    #[schemars(with = "yaml::DurationText")]
    pub websocket_idle_timeout: Duration,
    /// Keep polling for I/O this long after activity instead of sleeping (`busy_poll`);
    /// zero, the default, sleeps at once.
    #[serde(with = "yaml::duration")]
    #[schemars(with = "yaml::DurationText")]
    pub busy_poll: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_body_bytes: 10 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            upstream_connect_timeout: Duration::from_secs(2),
            upstream_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            websocket_idle_timeout: Duration::from_secs(3600),
            busy_poll: Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Unmatched {
    #[default]
    Deny,
    Passthrough,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Json,
            level: "info".into(),
        }
    }
}

fn unspanned<T: Default>() -> Spanned<T> {
    Spanned::new(T::default(), Location::UNKNOWN, Location::UNKNOWN)
}
fn default_string(s: &str) -> Spanned<String> {
    Spanned::new(s.into(), Location::UNKNOWN, Location::UNKNOWN)
}
const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
fn default_admin_listen() -> Spanned<String> {
    default_string("127.0.0.1:9901")
}
fn default_prefix() -> Spanned<String> {
    default_string("x-auth-")
}
fn default_replay_store() -> Spanned<String> {
    default_string("memory")
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

#[derive(Debug, Clone)]
pub struct Tls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayStoreConfig {
    Memory,
    Redis(String),
}

/// The validated config.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    /// The public (proxy) listener; `None` in an authz-only deployment.
    pub listen: Option<SocketAddr>,
    pub admin_listen: SocketAddr,
    pub policy_file: PathBuf,
    /// Index 0 is always `default`; empty only in an authz-only deployment.
    pub upstreams: Vec<Upstream>,
    /// API-key environment -> index into `upstreams`.
    pub environments: BTreeMap<String, usize>,
    pub tls: Option<Tls>,
    pub limits: Limits,
    /// Lower-case, e.g. `x-auth-`.
    pub identity_header_prefix: String,
    pub unmatched: Unmatched,
    pub replay_store: ReplayStoreConfig,
    /// `key_store` (SPEC §3.8): a `redis://` or `redis+cluster://` URL, checked at load.
    pub key_store: Option<String>,
    pub log: LogConfig,
    pub authz: Option<Authz>,
    /// `tracing` (SPEC §7); `None`: off.
    pub tracing: Option<TracingConfig>,
}

/// The refusal of a SPEC field this version does not build: named as such, so it does not
/// read like a typo ("unknown field") and is never half-honoured.
pub fn not_supported(field: &str, section: &str) -> String {
    format!("{field} is not supported by this version (SPEC {section})")
}

/// The config's JSON Schema (`scopegate schema config`).
pub fn schema() -> schemars::Schema {
    crate::schema::generate::<RawConfig>(
        "scopegate config",
        "The static config of scopegate (SPEC §1.1), read once at start.",
    )
}

impl Config {
    pub fn load(file: &Path) -> Result<Config, FileErrors> {
        let text = yaml::read(file)?;
        Config::parse(file, &text)
    }

    /// Reads a config from its text; `file` names it in errors and anchors relative paths.
    /// A refused file is read again for every error it holds (`schema::all_errors`).
    pub fn parse(file: &Path, text: &str) -> Result<Config, FileErrors> {
        match yaml::parse::<RawConfig>(file, text) {
            Ok(raw) => Config::from_raw(file, raw),
            Err(refused) => Err(crate::schema::all_errors(
                file,
                text,
                crate::schema::Kind::Config,
                refused,
                |rest| match yaml::parse::<RawConfig>(file, rest) {
                    Ok(raw) => Config::from_raw(file, raw).err().unwrap_or_default().0,
                    Err(_) => Vec::new(),
                },
            )),
        }
    }

    fn from_raw(file: &Path, raw: RawConfig) -> Result<Config, FileErrors> {
        let mut errors = Vec::new();
        let mut err = |at: u64, m: String| errors.push(FileError::new(file, at, m));
        let tracing = raw.tracing.as_ref().and_then(|t| {
            let t = &t.value;
            let endpoint = otlp_endpoint(&t.otlp_endpoint.value)
                .map_err(|m| err(t.otlp_endpoint.referenced.line(), m))
                .ok();
            let ratio = t.sample_ratio.value;
            if !(0.0..=1.0).contains(&ratio) {
                err(
                    t.sample_ratio.referenced.line(),
                    format!("tracing.sample_ratio: {ratio} is not between 0 and 1"),
                );
            }
            let name = t.service_name.value.trim();
            if name.is_empty() {
                err(
                    t.service_name.referenced.line(),
                    "tracing.service_name: must not be empty".into(),
                );
            }
            Some(TracingConfig {
                otlp_endpoint: endpoint?,
                sample_ratio: ratio,
                service_name: name.to_string(),
            })
        });

        let mut address = |what: &str, s: &Spanned<String>| {
            s.value.parse::<SocketAddr>().map_err(|_| {
                err(
                    s.referenced.line(),
                    format!("{what}: {:?} is not an address:port", s.value),
                )
            })
        };
        let authz = raw.authz.as_ref().and_then(|a| {
            let listen = address("authz.listen", &a.value.listen).ok()?;
            Some(Authz {
                listen,
                statuses: a.value.statuses,
            })
        });
        // With `authz`, the proxy listener is there only when asked for (SPEC §8).
        let listen = match (&raw.listen, &raw.authz) {
            (Some(l), _) => address("listen", l).ok(),
            (None, Some(_)) => None,
            (None, None) => DEFAULT_LISTEN.parse().ok(),
        };
        let admin_listen = raw.admin_listen.value.parse().unwrap_or_else(|_| {
            err(
                raw.admin_listen.referenced.line(),
                format!(
                    "admin_listen: {:?} is not an address:port",
                    raw.admin_listen.value
                ),
            );
            SocketAddr::from(([127, 0, 0, 1], 0))
        });

        let mut upstreams = Vec::new();
        let named = &raw.upstreams.value;
        // An authz-only deployment forwards nothing, so needs no upstream.
        if !named.contains_key("default") && (raw.listen.is_some() || raw.authz.is_none()) {
            err(
                raw.upstreams.referenced.line(),
                "upstreams: a `default` upstream is required".into(),
            );
        }
        let ordered = named
            .iter()
            .filter(|(n, _)| n.as_str() == "default")
            .chain(named.iter().filter(|(n, _)| n.as_str() != "default"));
        for (name, up) in ordered {
            match parse_upstream(file, name, &up.value) {
                Ok(u) => upstreams.push(u),
                Err(m) => err(up.referenced.line(), format!("upstreams.{name}: {m}")),
            }
        }
        let mut environments = BTreeMap::new();
        for (env, up) in &raw.environments {
            // A misspelt name would silently send test keys to the live upstream.
            if env != "live" && env != "test" {
                err(
                    up.referenced.line(),
                    format!("environments.{env}: not an API-key environment (live | test)"),
                );
            }
            match upstreams.iter().position(|u| u.name == up.value) {
                Some(i) => {
                    environments.insert(env.clone(), i);
                }
                None => err(
                    up.referenced.line(),
                    format!("environments.{env}: upstream {:?} is not defined", up.value),
                ),
            }
        }
        let replay_store = match raw.replay_store.value.as_str() {
            "memory" => ReplayStoreConfig::Memory,
            s => match crate::store::Target::parse(s) {
                Ok(_) => ReplayStoreConfig::Redis(s.to_string()),
                Err(e) => {
                    err(
                        raw.replay_store.referenced.line(),
                        format!("replay_store: not `memory`, and {e}"),
                    );
                    ReplayStoreConfig::Memory
                }
            },
        };
        let key_store = raw
            .key_store
            .and_then(|k| match crate::store::Target::parse(&k.value) {
                Ok(_) => Some(k.value),
                Err(e) => {
                    err(k.referenced.line(), format!("key_store: {e}"));
                    None
                }
            });
        let prefix = raw.identity_header_prefix.value.to_ascii_lowercase();
        if prefix.is_empty() || http::HeaderName::from_bytes(prefix.as_bytes()).is_err() {
            err(
                raw.identity_header_prefix.referenced.line(),
                format!("identity_header_prefix: {prefix:?} is not a header-name prefix"),
            );
        }
        let limits = raw.limits.value;
        if limits.max_header_bytes < 1024 {
            err(
                raw.limits.referenced.line(),
                "limits.max_header_bytes: must be at least 1024".into(),
            );
        }
        let log = raw.log.value;
        if !matches!(
            log.level.as_str(),
            "trace" | "debug" | "info" | "warn" | "error"
        ) {
            err(
                raw.log.referenced.line(),
                format!(
                    "log.level: {:?} is not trace|debug|info|warn|error",
                    log.level
                ),
            );
        }
        let tls = raw.tls.map(|t| Tls {
            cert_file: yaml::resolve(file, &t.cert_file),
            key_file: yaml::resolve(file, &t.key_file),
            client_ca_file: t.client_ca_file.map(|p| yaml::resolve(file, &p)),
        });
        if !errors.is_empty() {
            return Err(FileErrors(errors));
        }
        Ok(Config {
            file: file.to_path_buf(),
            listen,
            admin_listen,
            policy_file: yaml::resolve(file, &raw.policy_file),
            upstreams,
            environments,
            tls,
            limits,
            identity_header_prefix: prefix,
            unmatched: raw.unmatched,
            replay_store,
            key_store,
            log,
            authz,
            tracing,
        })
    }
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

fn parse_upstream(file: &Path, name: &str, raw: &RawUpstream) -> Result<Upstream, String> {
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

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
