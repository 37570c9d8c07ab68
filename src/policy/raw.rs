//! The policy file as written (SPEC §1.2): serde types that mirror the YAML one to one.
//! Unknown keys are errors, so a typo can never silently weaken a rule. Nothing here is
//! validated beyond its shape; `compile` does the rest.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::yaml;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub version: Spanned<u32>,
    #[serde(default)]
    pub scopes: BTreeMap<String, String>,
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    pub apps: Vec<Spanned<RawApp>>,
    #[serde(default)]
    pub api_keys: Vec<Spanned<RawApiKey>>,
    #[serde(default)]
    pub jwe_keys: Vec<Spanned<RawJweKey>>,
    pub token_endpoint: Option<Spanned<serde_json::Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    Jwt,
    ApiKey,
    Webhook,
    None,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encryption {
    #[default]
    Off,
    Supported,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Shadow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Read,
    Write,
    Delete,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub id: String,
    pub methods: Vec<Spanned<String>>,
    pub path: Spanned<String>,
    pub auth: Vec<AuthKind>,
    #[serde(default)]
    pub scopes: Vec<Spanned<String>>,
    pub resource: Option<Spanned<RawResource>>,
    #[serde(default)]
    pub encryption: Encryption,
    pub upstream: Option<Spanned<String>>,
    #[serde(default)]
    pub mode: Mode,
    pub webhook: Option<Spanned<RawWebhook>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResource {
    pub kind: String,
    pub param: String,
    pub action: Option<Action>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub secret: SecretRef,
    #[serde(default, with = "yaml::duration::option")]
    pub tolerance: Option<Duration>,
}

/// Where a secret comes from. `value` is accepted for demos and warned about.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
    Value(String),
}

/// Per-kind resource grants: a list grants every action on the items, a map grants
/// the listed actions per item. `"*"` stands for any item.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum RawGrant {
    List(Vec<String>),
    Map(BTreeMap<String, Vec<Action>>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub per_second: f64,
    pub burst: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPayloadEncryption {
    pub public_key_file: Option<PathBuf>,
    pub shared_key: Option<SecretRef>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApp {
    pub client_id: String,
    pub name: Option<String>,
    pub algorithms: Vec<Spanned<String>>,
    pub secret: Option<SecretRef>,
    pub public_key_file: Option<PathBuf>,
    pub jwks_url: Option<String>,
    pub audience: Option<String>,
    #[serde(default = "yes")]
    pub require_exp: bool,
    #[serde(default, with = "yaml::duration::option")]
    pub leeway: Option<Duration>,
    #[serde(default)]
    pub enforce_jti: bool,
    #[serde(default)]
    pub single_use_jti: bool,
    #[serde(default)]
    pub enforce_jwe: bool,
    pub payload_encryption: Option<Spanned<RawPayloadEncryption>>,
    #[serde(default)]
    pub scopes: Vec<Spanned<String>>,
    #[serde(default)]
    pub resources: BTreeMap<String, RawGrant>,
    #[serde(default)]
    pub claims_to_headers: BTreeMap<String, String>,
    pub rate_limit: Option<RawRateLimit>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Live,
    Test,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKey {
    pub id: String,
    pub name: Option<String>,
    pub sha256: String,
    #[serde(default)]
    pub environment: Environment,
    #[serde(default)]
    pub scopes: Vec<Spanned<String>>,
    #[serde(default)]
    pub resources: BTreeMap<String, RawGrant>,
    pub expires: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    pub rate_limit: Option<RawRateLimit>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJweKey {
    pub kid: String,
    pub private_key_file: PathBuf,
}
