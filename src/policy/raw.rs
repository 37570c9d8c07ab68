//! The policy file as written (SPEC §1.2): serde types that mirror the YAML one to one.
//! Unknown keys are errors, so a typo can never silently weaken a rule. Nothing here is
//! validated beyond its shape; `compile` does the rest.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::{Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::yaml;

/// A string of the policy file, borrowed from its text whenever the parser can lend it (no
/// escapes): a policy with 100,000 keys is then read without an allocation per string.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Str<'a>(pub Cow<'a, str>);

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// Quoted, as a `String` would be: errors show it with `{:?}`.
impl fmt::Debug for Str<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Str<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl JsonSchema for Str<'_> {
    fn schema_name() -> Cow<'static, str> {
        "String".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        String::json_schema(g)
    }
    fn inline_schema() -> bool {
        true
    }
}

/// The policy's JSON Schema (`scopegate schema policy`).
pub fn schema() -> schemars::Schema {
    crate::schema::generate::<RawPolicy>(
        "scopegate policy",
        "The policy of scopegate (SPEC §1.2): routes, apps, API keys; hot-reloaded.",
    )
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy<'a> {
    #[schemars(with = "u32")]
    pub version: Spanned<u32>,
    /// Name -> description; the description's line locates the entry.
    #[serde(default, deserialize_with = "unique")]
    #[schemars(with = "BTreeMap<String, String>")]
    pub scopes: BTreeMap<String, Spanned<String>>,
    #[serde(default, borrow)]
    #[schemars(with = "Vec<RawRoute<'a>>")]
    pub routes: Vec<Spanned<RawRoute<'a>>>,
    #[serde(default, borrow)]
    #[schemars(with = "Vec<RawApp<'a>>")]
    pub apps: Vec<Spanned<RawApp<'a>>>,
    #[serde(default, borrow)]
    pub api_keys: RawApiKeys<'a>,
    #[serde(default)]
    #[schemars(with = "Vec<RawJweKey>")]
    pub jwe_keys: Vec<Spanned<RawJweKey>>,
    /// The claims that name the app, first present wins (SPEC §3.2; default `[appId]`).
    #[schemars(with = "Option<Vec<String>>")]
    pub app_id_claims: Option<Spanned<Vec<String>>>,
    #[serde(default, borrow)]
    #[schemars(with = "Option<RawTokenEndpoint<'a>>")]
    pub token_endpoint: Option<Spanned<RawTokenEndpoint<'a>>>,
    #[schemars(with = "Option<RawIssuer>")]
    pub issuer: Option<Spanned<RawIssuer>>,
    #[schemars(with = "Option<RawUpstreamAssertion>")]
    pub upstream_assertion: Option<Spanned<RawUpstreamAssertion>>,
}

/// scopegate's own signing key (SPEC §3.7).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    pub name: String,
    #[schemars(with = "PathBuf")]
    pub signing_key_file: Spanned<PathBuf>,
    pub kid: String,
    #[serde(default)]
    #[schemars(with = "Vec<RawPreviousKey>")]
    pub previous_keys: Vec<Spanned<RawPreviousKey>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPreviousKey {
    pub kid: String,
    pub public_key_file: PathBuf,
}

/// The client-credentials exchange (SPEC §3.7).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTokenEndpoint<'a> {
    #[schemars(with = "String")]
    pub path: Spanned<String>,
    #[serde(default, with = "yaml::duration::option")]
    #[schemars(with = "Option<yaml::DurationText>")]
    pub ttl: Option<Duration>,
    #[serde(default, borrow)]
    #[schemars(with = "Vec<RawClient<'a>>")]
    pub clients: Vec<Spanned<RawClient<'a>>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawClient<'a> {
    #[serde(borrow)]
    pub access_key: Str<'a>,
    pub secret_sha256: String,
    #[serde(default, borrow)]
    #[schemars(with = "Vec<String>")]
    pub scopes: Vec<Spanned<Str<'a>>>,
    #[serde(default, borrow, deserialize_with = "unique")]
    pub resources: BTreeMap<Str<'a>, RawGrant<'a>>,
    pub rate_limit: Option<RawRateLimit>,
}

/// The signed identity token for the upstream (SPEC §3.7).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamAssertion {
    pub header: Option<String>,
    #[serde(default, with = "yaml::duration::option")]
    #[schemars(with = "Option<yaml::DurationText>")]
    pub ttl: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    Jwt,
    ApiKey,
    Webhook,
    None,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encryption {
    #[default]
    Off,
    Supported,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Shadow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Read,
    Write,
    Delete,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRoute<'a> {
    pub id: String,
    #[schemars(with = "Vec<String>")]
    pub methods: Vec<Spanned<String>>,
    #[schemars(with = "String")]
    pub path: Spanned<String>,
    pub auth: Vec<AuthKind>,
    #[serde(default, borrow)]
    #[schemars(with = "Vec<String>")]
    pub scopes: Vec<Spanned<Str<'a>>>,
    #[schemars(with = "Option<RawResource>")]
    pub resource: Option<Spanned<RawResource>>,
    #[serde(default)]
    pub encryption: Encryption,
    #[schemars(with = "Option<String>")]
    pub upstream: Option<Spanned<String>>,
    #[serde(default)]
    pub mode: Mode,
    #[schemars(with = "Option<RawWebhook>")]
    pub webhook: Option<Spanned<RawWebhook>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawResource {
    pub kind: String,
    pub param: String,
    pub action: Option<Action>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub secret: SecretRef,
    #[serde(default, with = "yaml::duration::option")]
    #[schemars(with = "Option<yaml::DurationText>")]
    pub tolerance: Option<Duration>,
}

/// Where a secret comes from. `value` is accepted for demos and warned about.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
    Value(String),
}

/// Per-kind resource grants: a list grants every action on the items, a map grants
/// the listed actions per item. `"*"` stands for any item.
#[derive(Debug, Clone, PartialEq)]
pub enum RawGrant<'a> {
    List(Vec<Str<'a>>),
    Map(BTreeMap<Str<'a>, Vec<Action>>),
}

/// By hand rather than `#[serde(untagged)]`, which buffers every value before trying each
/// variant (allocations per key of a large policy) and reports a mismatch without saying why.
impl<'de: 'a, 'a> Deserialize<'de> for RawGrant<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawGrant<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of items, or a map of item to actions")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(1));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(RawGrant::List(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                unique_entries(map).map(RawGrant::Map)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for RawGrant<'_> {
    fn schema_name() -> Cow<'static, str> {
        "Grant".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A list of items, or a map of item to actions: a list grants every action on each item, a map the listed ones; \"*\" stands for any item.",
            "anyOf": [
                g.subschema_for::<Vec<String>>(),
                g.subschema_for::<BTreeMap<String, Vec<Action>>>(),
            ]
        })
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub per_second: f64,
    pub burst: u32,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPayloadEncryption {
    pub public_key_file: Option<PathBuf>,
    pub shared_key: Option<SecretRef>,
}

fn yes() -> bool {
    true
}

/// A map that refuses a key given twice. The YAML parser does that itself; serde_json, which
/// reads JSON policies, keeps the last value, so `"bots":["b1"],"bots":["*"]` would grant `*`.
fn unique<'de, D, K, V>(d: D) -> Result<BTreeMap<K, V>, D::Error>
where
    D: Deserializer<'de>,
    K: Deserialize<'de> + Ord + fmt::Display,
    V: Deserialize<'de>,
{
    struct Unique<K, V>(std::marker::PhantomData<(K, V)>);
    impl<'de, K, V> Visitor<'de> for Unique<K, V>
    where
        K: Deserialize<'de> + Ord + fmt::Display,
        V: Deserialize<'de>,
    {
        type Value = BTreeMap<K, V>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            unique_entries(map)
        }
    }
    d.deserialize_map(Unique(std::marker::PhantomData))
}

/// A map's entries, refusing a key given twice (see `unique`).
fn unique_entries<'de, A, K, V>(mut map: A) -> Result<BTreeMap<K, V>, A::Error>
where
    A: MapAccess<'de>,
    K: Deserialize<'de> + Ord + fmt::Display,
    V: Deserialize<'de>,
{
    let mut out = BTreeMap::new();
    while let Some((k, v)) = map.next_entry::<K, V>()? {
        if out.contains_key(&k) {
            return Err(A::Error::custom(format!("duplicate mapping key: {k}")));
        }
        out.insert(k, v);
    }
    Ok(out)
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawApp<'a> {
    #[serde(borrow)]
    pub client_id: Str<'a>,
    #[serde(borrow)]
    pub name: Option<Str<'a>>,
    #[schemars(with = "Vec<String>")]
    pub algorithms: Vec<Spanned<String>>,
    pub secret: Option<SecretRef>,
    pub public_key_file: Option<PathBuf>,
    #[schemars(with = "Option<String>")]
    pub jwks_url: Option<Spanned<String>>,
    pub jwks_ca_file: Option<PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    #[serde(default = "yes")]
    pub require_exp: bool,
    #[serde(default, with = "yaml::duration::option")]
    #[schemars(with = "Option<yaml::DurationText>")]
    pub leeway: Option<Duration>,
    #[serde(default, with = "yaml::duration::option")]
    #[schemars(with = "Option<yaml::DurationText>")]
    pub max_lifetime: Option<Duration>,
    #[serde(default)]
    pub enforce_jti: bool,
    #[serde(default)]
    pub single_use_jti: bool,
    #[serde(default)]
    pub enforce_jwe: bool,
    #[schemars(with = "Option<RawPayloadEncryption>")]
    pub payload_encryption: Option<Spanned<RawPayloadEncryption>>,
    #[serde(default, borrow)]
    #[schemars(with = "Vec<String>")]
    pub scopes: Vec<Spanned<Str<'a>>>,
    #[serde(default, borrow, deserialize_with = "unique")]
    pub resources: BTreeMap<Str<'a>, RawGrant<'a>>,
    #[serde(default, deserialize_with = "unique")]
    pub claims_to_headers: BTreeMap<String, String>,
    pub rate_limit: Option<RawRateLimit>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    #[default]
    Live,
    Test,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawApiKey<'a> {
    #[serde(borrow)]
    pub id: Str<'a>,
    #[serde(borrow)]
    pub name: Option<Str<'a>>,
    #[serde(borrow)]
    pub sha256: Str<'a>,
    #[serde(default)]
    pub environment: Environment,
    #[serde(default, borrow)]
    #[schemars(with = "Vec<String>")]
    pub scopes: Vec<Spanned<Str<'a>>>,
    #[serde(default, borrow, deserialize_with = "unique")]
    pub resources: BTreeMap<Str<'a>, RawGrant<'a>>,
    #[serde(borrow)]
    pub expires: Option<Str<'a>>,
    #[serde(default)]
    pub disabled: bool,
    pub rate_limit: Option<RawRateLimit>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawJweKey {
    pub kid: String,
    pub private_key_file: PathBuf,
}

/// `api_keys`, read one key at a time into a compact entry: the scope lists and resource
/// grants that thousands of keys repeat are kept once, so a 100,000-key policy is never
/// held as 100,000 parsed trees (that cost 140 MB and most of the load time).
#[derive(Debug, Default)]
pub struct RawApiKeys<'a> {
    pub keys: Vec<KeyEntry<'a>>,
    /// Distinct `scopes` lists, each with the index of the first key that has it (errors
    /// name that key).
    pub scope_lists: Vec<(usize, Vec<Spanned<Str<'a>>>)>,
    /// Distinct `resources` maps, likewise.
    pub grants: Vec<(usize, BTreeMap<Str<'a>, RawGrant<'a>>)>,
}

#[derive(Debug)]
pub struct KeyEntry<'a> {
    pub line: u64,
    pub id: Str<'a>,
    /// Not used by the proxy; kept for `keys import`, which stores it.
    pub name: Option<Str<'a>>,
    pub sha256: Str<'a>,
    pub environment: Environment,
    /// Index into `scope_lists`.
    pub scopes: usize,
    /// Index into `grants`.
    pub grants: usize,
    pub expires: Option<Str<'a>>,
    pub disabled: bool,
    pub rate_limit: Option<RawRateLimit>,
}

/// How many recent distinct lists a new key is compared with before it gets its own.
const RECENT: usize = 16;

impl<'de: 'a, 'a> Deserialize<'de> for RawApiKeys<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawApiKeys<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of api keys")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = RawApiKeys::default();
                out.keys.reserve(seq.size_hint().unwrap_or(0));
                while let Some(k) = seq.next_element::<Spanned<RawApiKey<'de>>>()? {
                    let line = k.referenced.line();
                    let k = k.value;
                    let index = out.keys.len();
                    let scopes = recent(&out.scope_lists, |l| same_names(&l.1, &k.scopes))
                        .unwrap_or_else(|| {
                            out.scope_lists.push((index, k.scopes));
                            out.scope_lists.len() - 1
                        });
                    let grants = recent(&out.grants, |g| g.1 == k.resources).unwrap_or_else(|| {
                        out.grants.push((index, k.resources));
                        out.grants.len() - 1
                    });
                    out.keys.push(KeyEntry {
                        line,
                        id: k.id,
                        name: k.name,
                        sha256: k.sha256,
                        environment: k.environment,
                        scopes,
                        grants,
                        expires: k.expires,
                        disabled: k.disabled,
                        rate_limit: k.rate_limit,
                    });
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V)
    }
}

/// Read key by key (above), written as a plain list of keys.
impl JsonSchema for RawApiKeys<'_> {
    fn schema_name() -> Cow<'static, str> {
        "ApiKeys".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        Vec::<RawApiKey>::json_schema(g)
    }
    fn inline_schema() -> bool {
        true
    }
}

fn recent<T>(list: &[T], same: impl Fn(&T) -> bool) -> Option<usize> {
    let from = list.len().saturating_sub(RECENT);
    (from..list.len()).rev().find(|i| same(&list[*i]))
}

fn same_names(a: &[Spanned<Str<'_>>], b: &[Spanned<Str<'_>>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.value == y.value)
}
