//! The compiled policy: everything a request needs, built once per load so the request
//! path only looks things up. `raw` mirrors the file, `compile` validates and builds,
//! `snapshot` publishes it atomically, `watch` reloads it.

pub mod compile;
pub mod raw;
pub mod routes;
pub mod snapshot;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::jose::keys::{JweKey, Recipient};
use crate::jose::signing::Issuer;
pub use raw::{Action, AuthKind, Environment};

/// The declared scope names, and sets of them as bitsets over the declaration order.
#[derive(Debug, Default)]
pub struct Scopes {
    names: Vec<String>,
    index: HashMap<String, usize>,
    admin: Option<usize>,
}

impl Scopes {
    pub fn new(names: impl IntoIterator<Item = String>) -> Scopes {
        let names: Vec<String> = names.into_iter().collect();
        let index: HashMap<String, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let admin = index.get("admin").copied();
        Scopes {
            names,
            index,
            admin,
        }
    }

    pub fn get(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    pub fn set<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> ScopeSet {
        let mut words = vec![0u64; self.names.len().div_ceil(64)];
        for i in names.into_iter().filter_map(|n| self.get(n)) {
            words[i / 64] |= 1 << (i % 64);
        }
        ScopeSet(words.into())
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Space-separated names of the members of `s`, in declaration order.
    pub fn join(&self, s: &ScopeSet) -> String {
        let mut out = String::new();
        for i in s.iter() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&self.names[i]);
        }
        out
    }

    /// What `held` lacks of `required`, or `None` when authorized (`admin` passes every
    /// check). The authorized case, every request's, allocates nothing.
    pub fn missing(&self, held: &ScopeSet, required: &ScopeSet) -> Option<ScopeSet> {
        if required.is_subset(held) || self.admin.is_some_and(|a| held.contains(a)) {
            return None;
        }
        Some(required.difference(held))
    }
}

/// A set of scopes of one catalogue. Shared, because every request's principal carries
/// one: cloning it is a reference-count increment.
#[derive(Clone, PartialEq, Eq)]
pub struct ScopeSet(Arc<[u64]>);

impl ScopeSet {
    pub fn empty(catalogue: usize) -> ScopeSet {
        ScopeSet(vec![0; catalogue.div_ceil(64)].into())
    }
    pub fn contains(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
    fn is_subset(&self, of: &ScopeSet) -> bool {
        self.0.iter().zip(of.0.iter()).all(|(a, b)| a & !b == 0)
    }
    pub fn intersection(&self, other: &ScopeSet) -> ScopeSet {
        ScopeSet(
            self.0
                .iter()
                .zip(other.0.iter())
                .map(|(a, b)| a & b)
                .collect(),
        )
    }
    fn difference(&self, other: &ScopeSet) -> ScopeSet {
        ScopeSet(
            self.0
                .iter()
                .zip(other.0.iter())
                .map(|(a, b)| a & !b)
                .collect(),
        )
    }
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(w, bits)| {
            (0..64)
                .filter(move |b| bits & (1 << b) != 0)
                .map(move |b| w * 64 + b)
        })
    }
}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// Actions on a resource item, as a bitmask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Actions(u8);

impl Actions {
    pub const ALL: Actions = Actions(0b111);
    pub fn of(a: Action) -> Actions {
        Actions(match a {
            Action::Read => 1,
            Action::Write => 2,
            Action::Delete => 4,
        })
    }
    pub fn union(self, o: Actions) -> Actions {
        Actions(self.0 | o.0)
    }
    /// `None` as the required action means "any grant of the item".
    pub fn allows(self, required: Option<Action>) -> bool {
        match required {
            Some(a) => self.0 & Actions::of(a).0 != 0,
            None => self.0 != 0,
        }
    }
}

/// What items of one resource kind a principal may touch.
#[derive(Debug, Default, Clone)]
pub struct KindGrant {
    /// Actions granted on every item (`"*"`).
    pub any_item: Actions,
    pub items: HashMap<String, Actions>,
}

#[derive(Debug, Default, Clone)]
pub struct Grants(pub HashMap<String, KindGrant>);

impl Grants {
    pub fn allows(&self, kind: &str, item: &str, action: Option<Action>) -> bool {
        let Some(g) = self.0.get(kind) else {
            return false;
        };
        let on_item = g.items.get(item).copied().unwrap_or_default();
        g.any_item.union(on_item).allows(action)
    }
}

/// A secret's bytes. Never printed.
#[derive(Clone)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

/// A principal's rate limit with the name of its bucket (`app:<client_id>`,
/// `key:<id>`), made at load rather than formatted on every request.
#[derive(Debug)]
pub struct Limit {
    pub rate: RateLimit,
    pub bucket: Box<str>,
}

pub use crate::jose::PublicKeyKind;

pub struct PublicKey {
    pub kind: PublicKeyKind,
    pub key: DecodingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({:?})", self.kind)
    }
}

/// A JWT client app.
#[derive(Debug)]
pub struct App {
    pub client_id: String,
    /// `client_id` as the `x-auth-app-id` value, made once.
    pub id_header: HeaderValue,
    pub algorithms: Vec<Algorithm>,
    /// The HS* keys, made from the app's secret (which it alone keeps).
    pub hmac_keys: HmacKeys,
    pub public_key: Option<PublicKey>,
    /// `jwks_url`: the JWKS the app's keys come from (SPEC §3.2.1), shared across reloads.
    pub jwks: Option<Arc<crate::jwks::Source>>,
    pub audience: Option<String>,
    /// `issuer`: the token's `iss` must equal it.
    pub issuer: Option<String>,
    pub require_exp: bool,
    pub leeway_secs: u64,
    /// `max_lifetime`: how far in the future an `exp` may lie (SPEC §3.2).
    pub max_lifetime_secs: u64,
    pub enforce_jti: bool,
    pub single_use_jti: bool,
    pub enforce_jwe: bool,
    pub payload_encryption: Option<Recipient>,
    pub scopes: ScopeSet,
    pub scopes_header: HeaderValue,
    pub grants: Arc<Grants>,
    pub claims_to_headers: Vec<(String, HeaderName)>,
    pub rate_limit: Option<Arc<Limit>>,
}

/// The app's HMAC keys, one per HS* algorithm it allows. Building one hashes the secret
/// into a 1.2 KB context, so it is done on the app's first token rather than
/// per request (slow) or for every app at load (10,000 idle apps held 37 MiB that way).
/// Kept apart from `secret`; Debug never prints them.
#[derive(Default)]
pub struct HmacKeys {
    secret: Vec<u8>,
    allowed: [bool; 3],
    /// Boxed: a key is 1,232 bytes inline, which unboxed made every `App` 4 KiB.
    keys: [std::sync::OnceLock<Box<aws_lc_rs::hmac::Key>>; 3],
}

impl HmacKeys {
    const ALGS: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

    /// An algorithm is usable when the app allows it and the secret is long enough for it
    /// (RFC 7518 §3.2; Wycheproof json_web_key_test tcId 10-12, `key_too_short`): decided
    /// here, once, not per token.
    pub fn new(secret: &[u8], algorithms: &[Algorithm]) -> HmacKeys {
        let mut allowed = [false; 3];
        for (i, alg) in Self::ALGS.iter().enumerate() {
            allowed[i] = algorithms.contains(alg) && secret.len() >= Self::MIN_SECRET_LEN[i];
        }
        HmacKeys {
            secret: secret.to_vec(),
            allowed,
            keys: Default::default(),
        }
    }

    /// The shared secret, for minting tokens (`scopegate token`); `None` without one.
    pub fn secret(&self) -> Option<&[u8]> {
        (!self.secret.is_empty()).then_some(self.secret.as_slice())
    }

    /// RFC 7518 §3.2: a key as long as the hash output, or longer, MUST be used.
    pub const MIN_SECRET_LEN: [usize; 3] = [32, 48, 64];

    /// The key for `alg`; `None` when the app does not allow it or its secret is too short
    /// for it.
    pub fn get(&self, alg: Algorithm) -> Option<&aws_lc_rs::hmac::Key> {
        use aws_lc_rs::hmac::{HMAC_SHA256, HMAC_SHA384, HMAC_SHA512, Key};
        let i = Self::ALGS.iter().position(|a| *a == alg)?;
        if !self.allowed[i] {
            return None;
        }
        let h = [HMAC_SHA256, HMAC_SHA384, HMAC_SHA512][i];
        Some(self.keys[i].get_or_init(|| Box::new(Key::new(h, &self.secret))))
    }
}

impl fmt::Debug for HmacKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacKeys(<redacted>)")
    }
}

/// An API key's grants. Cloned into each request's principal: the clone only bumps
/// reference counts (its id is a slice of one buffer shared by every key).
#[derive(Debug, Clone)]
pub struct ApiKey {
    /// The key's id as the `x-auth-key-id` value; printable ASCII, checked at load.
    pub id: HeaderValue,
    pub environment: Environment,
    pub scopes: ScopeSet,
    pub scopes_header: HeaderValue,
    pub grants: Arc<Grants>,
    /// Unix seconds.
    pub expires: Option<i64>,
    pub disabled: bool,
    pub rate_limit: Option<Arc<Limit>>,
}

#[derive(Debug)]
pub struct ResourceRule {
    pub kind: String,
    pub param: usize,
    pub action: Option<Action>,
}

#[derive(Debug)]
pub struct Webhook {
    pub secret: Secret,
    pub tolerance_secs: u64,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct AuthKinds {
    pub jwt: bool,
    pub api_key: bool,
    pub webhook: bool,
    pub none: bool,
}

impl AuthKinds {
    /// `auth: [none]`: credentials are not even looked at.
    pub fn only_none(&self) -> bool {
        self.none && !self.jwt && !self.api_key && !self.webhook
    }
}

#[derive(Debug)]
pub struct Route {
    pub id: String,
    pub id_header: HeaderValue,
    pub auth: AuthKinds,
    pub scopes: ScopeSet,
    pub resource: Option<ResourceRule>,
    pub encryption: bool,
    /// Index into the config's upstreams (0 = default).
    pub upstream: usize,
    pub shadow: bool,
    pub webhook: Option<Webhook>,
}

/// One compiled, validated policy. Immutable once built; replaced whole on reload.
#[derive(Debug)]
pub struct Policy {
    pub scopes: Scopes,
    pub routes: Vec<Route>,
    pub router: routes::Router,
    pub apps: HashMap<String, Arc<App>>,
    /// Shared, so a principal holds a reference count rather than a copy of its key.
    pub api_keys: HashMap<[u8; 32], Arc<ApiKey>>,
    pub jwe_keys: Vec<JweKey>,
    /// `app_id_claims`: the claims that name the app, first present wins.
    pub app_id_claims: Vec<String>,
    /// The public JWKS document of `jwe_keys` and the issuer's keys, rendered once.
    pub jwks: Bytes,
    /// scopegate's own signing key (SPEC §3.7).
    pub issuer: Option<Arc<Issuer>>,
    pub token_endpoint: Option<TokenEndpoint>,
    pub upstream_assertion: Option<UpstreamAssertion>,
}

/// The client-credentials exchange (SPEC §3.7).
#[derive(Debug)]
pub struct TokenEndpoint {
    /// Normalized, as request paths are compared.
    pub path: String,
    pub ttl_secs: u64,
    /// By access key.
    pub clients: HashMap<String, Client>,
}

/// A partner of the token endpoint.
#[derive(Debug)]
pub struct Client {
    /// What its minted tokens are verified as: an app with the client's scopes and grants,
    /// whose signatures are the issuer's.
    pub app: Arc<App>,
    /// SHA-256 of the secret key (the policy's `secret_sha256`).
    pub secret_sha256: [u8; 32],
    /// The `sgb` claim of its minted tokens: ties them to this secret, so a changed secret
    /// stops them at the swap (`issuer::endpoint::binding`).
    pub binding: String,
    /// On successful exchanges.
    pub rate_limit: Option<Arc<Limit>>,
}

/// The signed identity token for the upstream (SPEC §3.7).
#[derive(Debug)]
pub struct UpstreamAssertion {
    pub header: HeaderName,
    pub ttl_secs: u64,
}

impl Policy {
    /// The claim a token minted for an app names it in: the first of `app_id_claims`.
    pub fn app_id_claim(&self) -> &str {
        self.app_id_claims.first().map_or("appId", String::as_str)
    }
}
