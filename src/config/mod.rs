//! The static config (SPEC §1.1): read once at start, never reloaded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use crate::yaml::{self, FileError, FileErrors};

mod trace;
mod upstream;

use trace::RawTracing;
pub use trace::TracingConfig;
use upstream::{RawUpstream, parse_upstream};
pub use upstream::{Upstream, UpstreamTls};

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
pub(super) fn default_string(s: &str) -> Spanned<String> {
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
                schema(),
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
        let tracing = raw.tracing.as_ref().and_then(|t| t.value.compile(&mut err));

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

#[cfg(test)]
mod tests;
