//! Validation and compilation of a policy file (SPEC §1.2): every check of the spec, all
//! errors collected with `file:line`, every expensive thing (route tree, decoded keys,
//! hash maps, scope bitsets) done here once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde_saphyr::Spanned;

use super::raw::{self, RawGrant, RawPolicy, SecretRef, Str};
use super::routes::{Methods, Router, Template};
use super::*;
use crate::jose::keys::{JweKey, Recipient, SharedKey, jwks_document};
use crate::yaml::{self, FileError, FileErrors};

/// What the policy may refer to outside itself.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Upstream names of the config, `default` first. `None` when checking a policy alone:
    /// then only `default` is known to exist and other names are reported as warnings.
    pub upstreams: Option<Vec<String>>,
    /// Lower-case identity header prefix (`x-auth-`); `claims_to_headers` must use it.
    pub identity_prefix: String,
    /// Whether the config sends test keys somewhere (`environments.test`); `None` when
    /// checking a policy alone.
    pub test_environment: Option<bool>,
}

impl Context {
    pub fn standalone() -> Context {
        Context {
            upstreams: None,
            identity_prefix: "x-auth-".into(),
            test_environment: None,
        }
    }
}

/// A compiled policy with what the loader learned on the way.
#[derive(Debug)]
pub struct Compiled {
    pub policy: Policy,
    pub warnings: Vec<FileError>,
    /// Every file the policy reads (key and secret files), to be watched for changes.
    pub referenced_files: Vec<PathBuf>,
    pub sha256: String,
}

const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Bounds on the two durations a remembered `jti` is kept for, so that no store's
/// arithmetic (Redis's millisecond expiries, `Instant`) can overflow on them.
const MAX_LEEWAY: Duration = Duration::from_secs(24 * 3600);
const MAX_MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);
const DEFAULT_WEBHOOK_TOLERANCE: Duration = Duration::from_secs(300);
/// Headers the proxy sets itself; `claims_to_headers` may not shadow them.
const RESERVED_SUFFIXES: &[&str] = &["kind", "app-id", "key-id", "subject", "scopes", "route"];

pub fn load(file: &Path, ctx: &Context) -> Result<Compiled, FileErrors> {
    let bytes = std::fs::read(file)
        .map_err(|e| FileError::new(file, 0, format!("cannot read policy: {e}")))?;
    compile_bytes(file, &bytes, ctx)
}

pub fn compile_bytes(file: &Path, bytes: &[u8], ctx: &Context) -> Result<Compiled, FileErrors> {
    compile_hashed(file, bytes, sha256_hex(bytes), ctx)
}

/// The policy's identity as `/policy` reports it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}

/// `compile_bytes` for a caller that already hashed the bytes (a reload hashes first to
/// skip unchanged files; a 16 MB policy should not be hashed twice).
pub fn compile_hashed(
    file: &Path,
    bytes: &[u8],
    sha256: String,
    ctx: &Context,
) -> Result<Compiled, FileErrors> {
    let text =
        std::str::from_utf8(bytes).map_err(|_| FileError::new(file, 0, "policy is not UTF-8"))?;
    // JSON is YAML, and machine-generated policies (100,000 keys) are often written as JSON:
    // serde_json reads them about ten times faster than the YAML parser. It carries no
    // source positions, so when such a policy is refused it is read again as YAML, only to
    // put line numbers on the errors.
    if text.trim_start().starts_with('{') {
        if let Ok(raw) = serde_json::from_str::<RawPolicy>(text) {
            if let Ok(compiled) = compile_raw(file, raw, ctx, sha256.clone()) {
                return Ok(compiled);
            }
        }
    }
    let raw: RawPolicy = yaml::parse(file, text)?;
    compile_raw(file, raw, ctx, sha256)
}

fn compile_raw<'a>(
    file: &'a Path,
    raw: RawPolicy<'a>,
    ctx: &'a Context,
    sha256: String,
) -> Result<Compiled, FileErrors> {
    let mut c = Compiler {
        file,
        ctx,
        errors: Vec::new(),
        warnings: Vec::new(),
        files: Vec::new(),
        scope_memo: Vec::new(),
        grant_memo: Vec::new(),
    };
    let policy = c.policy(raw);
    if !c.errors.is_empty() {
        c.errors.sort_by_key(|e| e.line);
        return Err(FileErrors(c.errors));
    }
    Ok(Compiled {
        policy,
        warnings: c.warnings,
        referenced_files: c.files,
        sha256,
    })
}

struct Compiler<'a> {
    file: &'a Path,
    ctx: &'a Context,
    errors: Vec<FileError>,
    warnings: Vec<FileError>,
    files: Vec<PathBuf>,
    /// Recently built scope sets and grants of apps: generated policies repeat the same few
    /// across thousands of apps, and sharing them saves most of their allocations. (API keys
    /// have theirs shared as they are read, `raw::RawApiKeys`, and never come through here.)
    scope_memo: Vec<(Vec<Str<'a>>, ScopeSet, HeaderValue)>,
    grant_memo: Vec<(BTreeMap<Str<'a>, RawGrant<'a>>, Arc<Grants>)>,
}

const MEMO: usize = 16;

/// Names the item an error is about, formatted only when an error is actually reported
/// (a large policy has 100,000 items and, normally, no errors).
struct What<'a>(&'static str, &'a str);

impl std::fmt::Display for What<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.0, self.1)
    }
}

fn line<T>(s: &Spanned<T>) -> u64 {
    s.referenced.line()
}

impl<'a> Compiler<'a> {
    fn err(&mut self, line: u64, msg: impl Into<String>) {
        self.errors.push(FileError::new(self.file, line, msg));
    }

    fn warn(&mut self, line: u64, msg: impl Into<String>) {
        self.warnings.push(FileError::new(self.file, line, msg));
    }

    fn policy(&mut self, raw: RawPolicy<'a>) -> Policy {
        if raw.version.value != 1 {
            self.err(
                line(&raw.version),
                format!("unsupported version {}", raw.version.value),
            );
        }
        if let Some(t) = &raw.token_endpoint {
            self.err(
                line(t),
                "token_endpoint is not supported by this version of scopegate",
            );
        }
        for (name, description) in &raw.scopes {
            if name.is_empty() || !name.bytes().all(is_scope_char) {
                self.err(
                    line(description),
                    format!(
                        "scope {name:?}: only printable ASCII without spaces, quotes or backslashes"
                    ),
                );
            }
        }
        let scopes = Scopes::new(raw.scopes.into_keys());

        let mut routes = Vec::new();
        let mut router = Router::default();
        let mut seen_ids = HashSet::new();
        let mut seen_method_shape = HashSet::new();
        for r in raw.routes {
            let l = line(&r);
            let r = r.value;
            if !seen_ids.insert(r.id.clone()) {
                self.err(l, format!("route id {:?} is used twice", r.id));
            }
            if let Some((route, template, methods)) = self.route(&scopes, l, r) {
                for m in method_names(&methods) {
                    if !seen_method_shape.insert((m.clone(), template.shape.clone())) {
                        self.err(l, format!("route {:?}: another route already has method {m} and this path template", route.id));
                    }
                }
                if let Err(e) = router.insert(&template, methods, routes.len()) {
                    self.err(l, format!("route {:?}: {e}", route.id));
                }
                routes.push(route);
            }
        }

        let mut apps = HashMap::with_capacity(raw.apps.len());
        for a in raw.apps {
            let l = line(&a);
            if let Some(app) = self.app(&scopes, l, a.value) {
                if apps.contains_key(&app.client_id) {
                    self.err(
                        l,
                        format!("app client_id {:?} is used twice", app.client_id),
                    );
                }
                apps.insert(app.client_id.clone(), Arc::new(app));
            }
        }

        let api_keys = self.api_keys(&scopes, raw.api_keys);

        let mut jwe_keys: Vec<JweKey> = Vec::new();
        for k in raw.jwe_keys {
            let l = line(&k);
            let k = k.value;
            if jwe_keys.iter().any(|j| j.kid == k.kid) {
                self.err(l, format!("jwe key kid {:?} is used twice", k.kid));
                continue;
            }
            if let Some(pem) = self.read_file(l, &k.private_key_file, "private_key_file") {
                match JweKey::from_pem(&k.kid, &pem) {
                    Ok(j) => jwe_keys.push(j),
                    Err(e) => self.err(l, format!("jwe key {:?}: {e}", k.kid)),
                }
            }
        }
        let needs_jwe = apps.values().any(|a| a.enforce_jwe)
            || (routes.iter().any(|r| r.encryption)
                && apps.values().any(|a| {
                    matches!(
                        a.payload_encryption,
                        Some(Recipient::Rsa(_) | Recipient::EcP256(_))
                    )
                }));
        if needs_jwe && jwe_keys.is_empty() {
            self.warn(0, "apps use JWE tokens or hybrid payload encryption but no jwe_keys are configured: clients cannot encrypt to the proxy");
        }
        Policy {
            jwks: Bytes::from(jwks_document(&jwe_keys)),
            scopes,
            routes,
            router,
            apps,
            api_keys,
            jwe_keys,
        }
    }

    fn scope_set(
        &mut self,
        scopes: &Scopes,
        names: &[Spanned<Str<'a>>],
        what: &What<'_>,
    ) -> ScopeSet {
        for n in names {
            if scopes.get(&n.value).is_none() {
                self.err(
                    line(n),
                    format!("{what}: scope {:?} is not declared in `scopes`", n.value),
                );
            }
        }
        scopes.set(names.iter().map(|n| &*n.value))
    }

    fn route(
        &mut self,
        scopes: &Scopes,
        l: u64,
        r: raw::RawRoute<'a>,
    ) -> Option<(Route, Template, Methods)> {
        let what = What("route", &r.id);
        let template = match Template::parse(&r.path.value) {
            Ok(t) => Some(t),
            Err(e) => {
                self.err(
                    line(&r.path),
                    format!("{what}: path {:?}: {e}", r.path.value),
                );
                None
            }
        };
        let methods = self.methods(l, &what, &r.methods);
        if r.auth.is_empty() {
            self.err(
                l,
                format!("{what}: auth must list at least one of jwt, api_key, webhook, none"),
            );
        }
        let auth = AuthKinds {
            jwt: r.auth.contains(&AuthKind::Jwt),
            api_key: r.auth.contains(&AuthKind::ApiKey),
            webhook: r.auth.contains(&AuthKind::Webhook),
            none: r.auth.contains(&AuthKind::None),
        };
        let required = self.scope_set(scopes, &r.scopes, &what);
        if auth.only_none() && !required.is_empty() {
            self.err(
                l,
                format!("{what}: a route with auth [none] cannot require scopes"),
            );
        }
        let webhook = match (&r.webhook, auth.webhook) {
            (Some(w), true) => {
                let secret = self.secret(line(w), &w.value.secret, &what);
                let tolerance = w
                    .value
                    .tolerance
                    .unwrap_or(DEFAULT_WEBHOOK_TOLERANCE)
                    .as_secs();
                secret.map(|secret| Webhook {
                    secret,
                    tolerance_secs: tolerance,
                })
            }
            (None, true) => {
                self.err(
                    l,
                    format!("{what}: auth webhook needs a `webhook` block with its secret"),
                );
                None
            }
            (Some(w), false) => {
                self.err(
                    line(w),
                    format!("{what}: `webhook` is set but auth does not list webhook"),
                );
                None
            }
            (None, false) => None,
        };
        if auth.webhook && (auth.jwt || auth.api_key) {
            self.err(
                l,
                format!("{what}: webhook auth cannot be combined with jwt or api_key"),
            );
        }
        let resource = match (&r.resource, &template) {
            (Some(res), Some(t)) => match t.params.iter().position(|p| *p == res.value.param) {
                Some(param) => Some(ResourceRule {
                    kind: res.value.kind.clone(),
                    param,
                    action: res.value.action,
                }),
                None => {
                    self.err(
                        line(res),
                        format!(
                            "{what}: resource param {:?} is not a parameter of the path",
                            res.value.param
                        ),
                    );
                    None
                }
            },
            _ => None,
        };
        if r.resource.is_some() && auth.only_none() {
            self.err(
                l,
                format!("{what}: a route with auth [none] cannot require a resource"),
            );
        }
        let upstream = match &r.upstream {
            None => 0,
            Some(u) => self.upstream(line(u), &u.value, &what),
        };
        if r.mode == raw::Mode::Shadow && r.encryption == raw::Encryption::Supported {
            // A request shadow mode would refuse has no app to decrypt for or encrypt to,
            // and an encrypted route never answers in plaintext (SPEC §4).
            self.err(
                l,
                format!("{what}: mode: shadow cannot be combined with encryption: supported"),
            );
        }
        let route = Route {
            id_header: HeaderValue::from_str(&r.id).unwrap_or_else(|_| {
                self.err(l, format!("{what}: the id must be printable ASCII"));
                HeaderValue::from_static("invalid")
            }),
            id: r.id,
            auth,
            scopes: required,
            resource,
            encryption: r.encryption == raw::Encryption::Supported,
            upstream,
            shadow: r.mode == raw::Mode::Shadow,
            webhook,
        };
        Some((route, template?, methods?))
    }

    fn methods(&mut self, l: u64, what: &What<'_>, list: &[Spanned<String>]) -> Option<Methods> {
        if list.is_empty() {
            self.err(l, format!("{what}: methods must not be empty"));
            return None;
        }
        if list.iter().any(|m| m.value == "*") {
            if list.len() > 1 {
                self.err(
                    line(&list[0]),
                    format!("{what}: \"*\" stands alone in methods"),
                );
            }
            return Some(Methods::Any);
        }
        let mut out = Vec::new();
        for m in list {
            match Method::from_str(&m.value) {
                Ok(method) if method == Method::TRACE || method == Method::CONNECT => {
                    self.err(
                        line(m),
                        format!("{what}: {} requests are never forwarded", m.value),
                    );
                }
                Ok(method) if m.value.bytes().all(|b| b.is_ascii_uppercase()) => out.push(method),
                _ => self.err(
                    line(m),
                    format!("{what}: {:?} is not an upper-case HTTP method", m.value),
                ),
            }
        }
        Some(Methods::List(out))
    }

    fn upstream(&mut self, l: u64, name: &str, what: &What<'_>) -> usize {
        match &self.ctx.upstreams {
            Some(names) => match names.iter().position(|n| n == name) {
                Some(i) => i,
                None => {
                    self.err(
                        l,
                        format!("{what}: upstream {name:?} is not defined in the config"),
                    );
                    0
                }
            },
            None => {
                if name != "default" {
                    self.warn(
                        l,
                        format!("{what}: upstream {name:?} is not checked without a config"),
                    );
                }
                0
            }
        }
    }

    /// A principal's scopes and their `x-auth-scopes` value, shared with identical ones.
    fn principal_scopes(
        &mut self,
        scopes: &Scopes,
        names: &[Spanned<Str<'a>>],
        what: &What<'_>,
    ) -> (ScopeSet, HeaderValue) {
        let same = |m: &(Vec<Str<'a>>, ScopeSet, HeaderValue)| {
            m.0.len() == names.len() && m.0.iter().zip(names).all(|(a, b)| *a == b.value)
        };
        if let Some(m) = self.scope_memo.iter().find(|m| same(m)) {
            return (m.1.clone(), m.2.clone());
        }
        let set = self.scope_set(scopes, names, what);
        let header = scopes_header(scopes, &set);
        if self.scope_memo.len() == MEMO {
            self.scope_memo.remove(0);
        }
        self.scope_memo.push((
            names.iter().map(|n| n.value.clone()).collect(),
            set.clone(),
            header.clone(),
        ));
        (set, header)
    }

    fn shared_grants(
        &mut self,
        l: u64,
        raw: &BTreeMap<Str<'a>, RawGrant<'a>>,
        what: &What<'_>,
    ) -> Arc<Grants> {
        if let Some(m) = self.grant_memo.iter().find(|m| &m.0 == raw) {
            return m.1.clone();
        }
        let g = Arc::new(self.grants(l, raw, what));
        if self.grant_memo.len() == MEMO {
            self.grant_memo.remove(0);
        }
        self.grant_memo.push((raw.clone(), g.clone()));
        g
    }

    fn grants(&mut self, l: u64, raw: &BTreeMap<Str<'a>, RawGrant<'a>>, what: &What<'_>) -> Grants {
        let mut out = HashMap::new();
        for (kind, g) in raw {
            let mut kg = KindGrant::default();
            match g {
                RawGrant::List(items) => {
                    for item in items {
                        if &**item == "*" {
                            kg.any_item = Actions::ALL;
                        } else {
                            kg.items.insert(item.to_string(), Actions::ALL);
                        }
                    }
                }
                RawGrant::Map(items) => {
                    for (item, actions) in items {
                        if actions.is_empty() {
                            self.err(
                                l,
                                format!("{what}: resources.{kind}.{item} grants no action"),
                            );
                        }
                        let a = actions
                            .iter()
                            .fold(Actions::default(), |acc, a| acc.union(Actions::of(*a)));
                        if &**item == "*" {
                            kg.any_item = a;
                        } else {
                            kg.items.insert(item.to_string(), a);
                        }
                    }
                }
            }
            out.insert(kind.to_string(), kg);
        }
        Grants(out)
    }

    fn app(&mut self, scopes: &Scopes, l: u64, a: raw::RawApp<'a>) -> Option<App> {
        let what = What("app", &a.client_id);
        if a.client_id.is_empty() {
            self.err(l, "app client_id must not be empty");
        }
        if a.jwks_url.is_some() {
            self.err(
                l,
                format!("{what}: jwks_url is not supported by this version; use public_key_file"),
            );
        }
        let mut algorithms = Vec::new();
        for alg in &a.algorithms {
            match Algorithm::from_str(&alg.value) {
                Ok(x) => algorithms.push(x),
                Err(_) if alg.value.eq_ignore_ascii_case("none") => self.err(
                    line(alg),
                    format!("{what}: alg \"none\" can never be allowed"),
                ),
                Err(_) => self.err(
                    line(alg),
                    format!("{what}: unsupported algorithm {:?}", alg.value),
                ),
            }
        }
        if a.algorithms.is_empty() {
            self.err(l, format!("{what}: algorithms must not be empty"));
        }
        let wants_hmac = algorithms
            .iter()
            .any(|x| x.family() == AlgorithmFamily::Hmac);
        let wants_public = algorithms
            .iter()
            .any(|x| x.family() != AlgorithmFamily::Hmac);
        let secret = match &a.secret {
            Some(s) => self.secret(l, s, &what),
            None => None,
        };
        if wants_hmac && a.secret.is_none() {
            self.err(l, format!("{what}: HS* algorithms need a `secret`"));
        }
        if !wants_hmac && a.secret.is_some() {
            self.warn(
                l,
                format!("{what}: `secret` is unused without an HS* algorithm"),
            );
        }
        let public_key = match &a.public_key_file {
            Some(p) => self.public_key(l, p, &what),
            None => None,
        };
        if wants_public && a.public_key_file.is_none() {
            self.err(
                l,
                format!("{what}: RS*/PS*/ES*/EdDSA algorithms need a `public_key_file`"),
            );
        }
        if let Some(pk) = &public_key {
            for alg in algorithms
                .iter()
                .filter(|x| x.family() != AlgorithmFamily::Hmac)
            {
                if !key_fits(pk.kind, *alg) {
                    self.err(
                        l,
                        format!(
                            "{what}: algorithm {alg:?} does not fit the {:?} public key",
                            pk.kind
                        ),
                    );
                }
            }
        }
        let leeway = a.leeway.unwrap_or(DEFAULT_LEEWAY);
        if leeway > MAX_LEEWAY {
            self.err(l, format!("{what}: leeway may be at most 24h"));
        }
        let max_lifetime = a.max_lifetime.unwrap_or(DEFAULT_MAX_LIFETIME);
        if max_lifetime.is_zero() || max_lifetime > MAX_MAX_LIFETIME {
            self.err(
                l,
                format!("{what}: max_lifetime must be more than 0s and at most 366d"),
            );
        }
        if a.single_use_jti && !a.enforce_jti {
            self.err(l, format!("{what}: single_use_jti needs enforce_jti: true"));
        }
        if a.single_use_jti && !a.require_exp {
            // A jti is remembered until its token expires; without exp, that is never.
            self.err(l, format!("{what}: single_use_jti needs require_exp: true"));
        }
        let payload_encryption = a.payload_encryption.as_ref().and_then(|p| {
            let pl = line(p);
            match (&p.value.public_key_file, &p.value.shared_key) {
                (Some(f), None) => {
                    let pem = self.read_file(pl, f, "payload_encryption.public_key_file")?;
                    Recipient::from_public_pem(&pem)
                        .map_err(|e| self.err(pl, format!("{what}: payload_encryption.public_key_file: {e}")))
                        .ok()
                }
                (None, Some(s)) => {
                    let secret = self.secret(pl, s, &what)?;
                    let text = String::from_utf8_lossy(&secret.0).trim().to_string();
                    SharedKey::parse(&text)
                        .map(Recipient::Direct)
                        .map_err(|e| self.err(pl, format!("{what}: payload_encryption.shared_key: {e}")))
                        .ok()
                }
                _ => {
                    self.err(pl, format!("{what}: payload_encryption needs exactly one of public_key_file or shared_key"));
                    None
                }
            }
        });
        let (app_scopes, app_scopes_header) = self.principal_scopes(scopes, &a.scopes, &what);
        let grants = self.shared_grants(l, &a.resources, &what);
        let mut claims_to_headers = Vec::new();
        for (claim, header) in &a.claims_to_headers {
            let h = header.to_ascii_lowercase();
            let suffix = h.strip_prefix(self.ctx.identity_prefix.as_str());
            match (HeaderName::from_bytes(h.as_bytes()), suffix) {
                (Ok(name), Some(sfx)) if !sfx.is_empty() && !RESERVED_SUFFIXES.contains(&sfx) => {
                    claims_to_headers.push((claim.clone(), name))
                }
                // Outside the prefix a client could send the header itself when the claim is
                // absent, and the upstream could not tell it from ours.
                _ => self.err(l, format!(
                    "{what}: claims_to_headers target {header:?} must be a header name starting with {:?} and not one the proxy sets",
                    self.ctx.identity_prefix
                )),
            }
        }
        let rate_limit = a
            .rate_limit
            .as_ref()
            .and_then(|r| self.rate_limit(l, r, &what, "app", &a.client_id));
        let hmac_keys = secret
            .as_ref()
            .map(|s| HmacKeys::new(&s.0, &algorithms))
            .unwrap_or_default();
        Some(App {
            id_header: self.header_value(
                l,
                &a.client_id,
                HeaderValue::from_str(&a.client_id),
                "app client_id",
            ),
            client_id: a.client_id.to_string(),
            algorithms,
            hmac_keys,
            public_key,
            audience: a.audience,
            require_exp: a.require_exp,
            leeway_secs: leeway.as_secs(),
            max_lifetime_secs: max_lifetime.as_secs(),
            enforce_jti: a.enforce_jti,
            single_use_jti: a.single_use_jti,
            enforce_jwe: a.enforce_jwe,
            payload_encryption,
            scopes_header: app_scopes_header,
            scopes: app_scopes,
            grants,
            claims_to_headers,
            rate_limit,
        })
    }

    /// `kind` and `id` name the bucket: `app:<client_id>` or `key:<id>`.
    fn rate_limit(
        &mut self,
        l: u64,
        r: &raw::RawRateLimit,
        what: &What<'_>,
        kind: &str,
        id: &str,
    ) -> Option<Arc<Limit>> {
        if !(r.per_second.is_finite() && r.per_second > 0.0) || r.burst == 0 {
            self.err(
                l,
                format!("{what}: rate_limit needs per_second > 0 and burst >= 1"),
            );
            return None;
        }
        Some(Arc::new(Limit {
            rate: RateLimit {
                per_second: r.per_second,
                burst: r.burst,
            },
            bucket: format!("{kind}:{id}").into(),
        }))
    }

    /// The keys were read compactly (`raw::RawApiKeys`): each distinct scope list and
    /// grant is compiled once, and every key id is a slice of one buffer, so 100,000 keys
    /// cost no allocation of their own (and nothing to free when the policy is replaced).
    fn api_keys(&mut self, scopes: &Scopes, raw: raw::RawApiKeys<'a>) -> HashMap<[u8; 32], ApiKey> {
        let scope_sets: Vec<(ScopeSet, HeaderValue)> = raw
            .scope_lists
            .iter()
            .map(|(first, names)| {
                let set = self.scope_set(scopes, names, &What("api key", &raw.keys[*first].id));
                let header = scopes_header(scopes, &set);
                (set, header)
            })
            .collect();
        let grants: Vec<Arc<Grants>> = raw
            .grants
            .iter()
            .map(|(first, g)| {
                let k = &raw.keys[*first];
                Arc::new(self.grants(k.line, g, &What("api key", &k.id)))
            })
            .collect();

        let mut ids = String::with_capacity(raw.keys.iter().map(|k| k.id.len()).sum());
        let mut seen = HashSet::with_capacity(raw.keys.len());
        for k in &raw.keys {
            if !seen.insert(&*k.id) {
                self.err(k.line, format!("api key id {:?} is used twice", k.id));
            }
            ids.push_str(&k.id);
        }
        // Without `environments.test`, test keys go where live keys go: fine for a single
        // upstream, a surprise otherwise. Said once, at the first test key.
        if self.ctx.test_environment == Some(false) {
            if let Some(k) = raw.keys.iter().find(|k| k.environment == Environment::Test) {
                self.warn(
                    k.line,
                    format!(
                        "api key {:?} is a test key, but the config maps no upstream for test \
                         keys (environments.test): test keys reach the routes' own upstreams",
                        k.id
                    ),
                );
            }
        }
        drop(seen);
        let ids = Bytes::from(ids);
        let mut at = 0;
        let mut out = HashMap::with_capacity(raw.keys.len());
        for k in raw.keys {
            let (l, what) = (k.line, What("api key", &k.id));
            let id = ids.slice(at..at + k.id.len());
            at += k.id.len();
            let id = self.header_value(l, &k.id, HeaderValue::from_maybe_shared(id), "api key id");
            let mut hash = [0u8; 32];
            if hex::decode_to_slice(k.sha256.as_bytes(), &mut hash).is_err() {
                self.err(l, format!("{what}: sha256 must be 64 hex characters"));
                continue;
            }
            let expires = k.expires.as_deref().and_then(|e| {
                match time::OffsetDateTime::parse(e, &time::format_description::well_known::Rfc3339)
                {
                    Ok(t) => Some(t.unix_timestamp()),
                    Err(_) => {
                        self.err(l, format!("{what}: expires {e:?} is not an RFC 3339 time"));
                        None
                    }
                }
            });
            let rate_limit = k
                .rate_limit
                .as_ref()
                .and_then(|r| self.rate_limit(l, r, &what, "key", &k.id));
            let (scopes, scopes_header) = scope_sets[k.scopes].clone();
            let key = ApiKey {
                id,
                environment: k.environment,
                scopes,
                scopes_header,
                grants: grants[k.grants].clone(),
                expires,
                disabled: k.disabled,
                rate_limit,
            };
            if out.insert(hash, key).is_some() {
                self.err(l, "two api keys have the same sha256");
            }
        }
        out
    }

    /// Ids travel in identity headers, so they must be valid header values.
    /// `value` is `v` made into a header value (copied, or a slice of a shared buffer).
    fn header_value(
        &mut self,
        l: u64,
        v: &str,
        value: Result<HeaderValue, http::header::InvalidHeaderValue>,
        what: &str,
    ) -> HeaderValue {
        match value {
            // `to_str` also refuses the bytes above 0x7F that a shared buffer may hold.
            Ok(h) if !v.is_empty() && h.to_str().is_ok() => h,
            _ => {
                self.err(l, format!("{what} {v:?} must be non-empty printable ASCII"));
                HeaderValue::from_static("invalid")
            }
        }
    }

    fn read_file(&mut self, l: u64, p: &Path, what: &str) -> Option<Vec<u8>> {
        let path = yaml::resolve(self.file, p);
        self.files.push(path.clone());
        match std::fs::read(&path) {
            Ok(b) => Some(b),
            Err(e) => {
                self.err(l, format!("{what} {}: cannot read: {e}", path.display()));
                None
            }
        }
    }

    fn secret(&mut self, l: u64, s: &SecretRef, what: &What<'_>) -> Option<Secret> {
        let bytes = match s {
            SecretRef::Env(name) => match std::env::var(name) {
                Ok(v) if !v.is_empty() => v.into_bytes(),
                _ => {
                    self.err(
                        l,
                        format!("{what}: secret environment variable {name} is not set"),
                    );
                    return None;
                }
            },
            SecretRef::File(p) => {
                let mut b = self.read_file(l, p, "secret file")?;
                while b.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
                    b.pop();
                }
                b
            }
            SecretRef::Value(v) => {
                self.warn(
                    l,
                    format!("{what}: secret written inline in the policy; prefer env or file"),
                );
                v.clone().into_bytes()
            }
        };
        if bytes.is_empty() {
            self.err(l, format!("{what}: secret is empty"));
            return None;
        }
        Some(Secret(bytes))
    }

    fn public_key(&mut self, l: u64, p: &Path, what: &What<'_>) -> Option<PublicKey> {
        let pem = self.read_file(l, p, "public_key_file")?;
        let kind = pem_public_key_kind(&pem);
        let key = match kind {
            Some(PublicKeyKind::Rsa) => DecodingKey::from_rsa_pem(&pem),
            Some(PublicKeyKind::EcP256 | PublicKeyKind::EcP384) => DecodingKey::from_ec_pem(&pem),
            Some(PublicKeyKind::Ed25519) => DecodingKey::from_ed_pem(&pem),
            None => {
                self.err(l, format!("{what}: public_key_file is not an RSA, P-256, P-384 or Ed25519 public key PEM"));
                return None;
            }
        };
        match (kind, key) {
            (Some(kind), Ok(key)) => Some(PublicKey { kind, key }),
            (_, Err(e)) => {
                self.err(l, format!("{what}: public_key_file: {e}"));
                None
            }
            (None, _) => None,
        }
    }
}

/// Scope names are checked to be header-safe at load, so this cannot fail in practice.
fn scopes_header(scopes: &Scopes, set: &ScopeSet) -> HeaderValue {
    HeaderValue::from_str(&scopes.join(set)).unwrap_or(HeaderValue::from_static(""))
}

fn method_names(m: &Methods) -> Vec<String> {
    match m {
        Methods::Any => vec!["*".into()],
        Methods::List(l) => l.iter().map(|m| m.to_string()).collect(),
    }
}

/// RFC 6749 scope-token characters: what can sit inside `scope="..."` of a challenge.
fn is_scope_char(b: u8) -> bool {
    b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b)
}

fn key_fits(kind: PublicKeyKind, alg: Algorithm) -> bool {
    use Algorithm::*;
    match kind {
        PublicKeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
        PublicKeyKind::EcP256 => alg == ES256,
        PublicKeyKind::EcP384 => alg == ES384,
        PublicKeyKind::Ed25519 => alg == EdDSA,
    }
}

/// Reads the key type from the SPKI's algorithm identifier (the OIDs are fixed byte
/// strings, so finding them in the DER is exact enough to pick the parser).
fn pem_public_key_kind(pem: &[u8]) -> Option<PublicKeyKind> {
    let text = std::str::from_utf8(pem).ok()?;
    if text.contains("BEGIN RSA PUBLIC KEY") {
        return Some(PublicKeyKind::Rsa);
    }
    let item = rustls_pemfile::read_one_from_slice(pem).ok()??.0;
    let der: Vec<u8> = match item {
        rustls_pemfile::Item::SubjectPublicKeyInfo(spki) => spki.as_ref().to_vec(),
        _ => return None,
    };
    const RSA: &[u8] = &[
        0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01,
    ];
    const P256: &[u8] = &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
    const P384: &[u8] = &[0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22];
    const ED25519: &[u8] = &[0x06, 0x03, 0x2B, 0x65, 0x70];
    let has = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
    if has(RSA) {
        Some(PublicKeyKind::Rsa)
    } else if has(P256) {
        Some(PublicKeyKind::EcP256)
    } else if has(P384) {
        Some(PublicKeyKind::EcP384)
    } else if has(ED25519) {
        Some(PublicKeyKind::Ed25519)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write;

    use super::*;

    fn compile(text: &str) -> Result<Policy, String> {
        compile_bytes(Path::new("p.yaml"), text.as_bytes(), &Context::standalone())
            .map(|c| c.policy)
            .map_err(|e| e.to_string())
    }

    fn digest(key: &str) -> [u8; 32] {
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes())
            .as_ref()
            .try_into()
            .unwrap()
    }

    /// `n` keys where key `i` has scope `s{i % distinct}` and bot `b{i % distinct}`.
    fn keys_policy(n: usize, distinct: usize) -> String {
        let mut p = String::from("version: 1\nscopes:\n");
        for s in 0..distinct {
            writeln!(p, "  s{s}: x").unwrap();
        }
        p.push_str("api_keys:\n");
        for i in 0..n {
            let d = i % distinct;
            writeln!(
                p,
                "  - {{ id: k{i}, sha256: {}, scopes: [s{d}], resources: {{ bots: [b{d}] }} }}",
                hex::encode(digest(&format!("key{i}")))
            )
            .unwrap();
        }
        p
    }

    #[test]
    fn a_test_key_without_a_test_upstream_is_warned_about() {
        let policy = format!(
            "version: 1\nscopes: {{ s: x }}\napi_keys:\n  - {{ id: k, sha256: {}, scopes: [s] }}\n  \
             - {{ id: t, sha256: {}, scopes: [s], environment: test }}\n",
            hex::encode(digest("live")),
            hex::encode(digest("test"))
        );
        let warnings = |test_environment| {
            let ctx = Context {
                test_environment,
                ..Context::standalone()
            };
            compile_bytes(Path::new("p.yaml"), policy.as_bytes(), &ctx)
                .unwrap()
                .warnings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        let w = warnings(Some(false));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("p.yaml:5: api key \"t\" is a test key"),
            "{w:?}"
        );
        assert!(warnings(Some(true)).is_empty());
        assert!(warnings(None).is_empty());
    }

    #[test]
    fn route_rules_without_a_line_of_their_own_are_reported_at_the_route() {
        let e = compile(
            "version: 1\nscopes:\n  ok: fine\n  \"bad scope\": no\nroutes:\n  \
             - { id: a, methods: [], path: /a, auth: [none] }\n  \
             - { id: b, methods: [POST], path: /b, auth: [jwt], encryption: supported, mode: shadow }\n",
        )
        .unwrap_err();
        assert!(e.contains("p.yaml:4: scope \"bad scope\""), "{e}");
        assert!(
            e.contains("p.yaml:6: route \"a\": methods must not be empty"),
            "{e}"
        );
        assert!(
            e.contains("p.yaml:7: route \"b\": mode: shadow cannot be combined with encryption"),
            "{e}"
        );
    }

    #[test]
    fn single_use_jti_needs_tokens_that_expire() {
        let app = |extra: &str| {
            format!(
                "version: 1\nscopes: {{ s: x }}\napps:\n  - {{ client_id: a, algorithms: [HS256], \
                 secret: {{ value: 0123456789abcdef0123456789abcdef }}, scopes: [s], \
                 enforce_jti: true, single_use_jti: true{extra} }}\n"
            )
        };
        compile(&app("")).unwrap();
        let e = compile(&app(", require_exp: false")).unwrap_err();
        assert!(e.contains("single_use_jti needs require_exp: true"), "{e}");
        // What a remembered jti lives for is bounded, so no store's arithmetic overflows.
        compile(&app(", max_lifetime: 366d, leeway: 24h")).unwrap();
        for (extra, message) in [
            (
                ", max_lifetime: 367d",
                "max_lifetime must be more than 0s and at most 366d",
            ),
            (
                ", max_lifetime: 0s",
                "max_lifetime must be more than 0s and at most 366d",
            ),
            (
                ", max_lifetime: 100000000000d",
                "max_lifetime must be more than 0s and at most 366d",
            ),
            (", leeway: 25h", "leeway may be at most 24h"),
        ] {
            let e = compile(&app(extra)).unwrap_err();
            assert!(
                e.contains(&format!("p.yaml:4: app \"a\": {message}")),
                "{extra}: {e}"
            );
        }
    }

    #[test]
    fn every_key_keeps_its_own_scopes_and_grants_when_lists_are_shared() {
        // More distinct lists than the reader compares a new key with, cycled, so lists are
        // both shared and re-added; each key must still get exactly its own.
        let distinct = 2 * 16 + 3;
        let policy = compile(&keys_policy(200, distinct)).unwrap();
        assert_eq!(policy.api_keys.len(), 200);
        for i in 0..200 {
            let key = &policy.api_keys[&digest(&format!("key{i}"))];
            let d = i % distinct;
            assert_eq!(key.id, format!("k{i}"));
            assert_eq!(key.id, HeaderValue::from_str(&format!("k{i}")).unwrap());
            let own = policy.scopes.get(&format!("s{d}")).unwrap();
            assert_eq!(key.scopes.iter().collect::<Vec<_>>(), vec![own], "key {i}");
            assert_eq!(key.scopes_header, format!("s{d}").as_str());
            assert!(
                key.grants
                    .allows("bots", &format!("b{d}"), Some(Action::Delete))
            );
            let other = (d + 1) % distinct;
            assert!(
                !key.grants.allows("bots", &format!("b{other}"), None),
                "key {i}"
            );
        }
        // Neighbours with the same lists share one compiled copy.
        let small = compile(&keys_policy(4, 1)).unwrap();
        let mut keys = small.api_keys.values();
        let (a, b) = (keys.next().unwrap(), keys.next().unwrap());
        assert!(Arc::ptr_eq(&a.grants, &b.grants));
    }

    #[test]
    fn json_with_and_without_escapes_compiles_like_yaml() {
        let key = hex::encode(digest("sk_1"));
        let yaml = format!(
            "version: 1\nscopes: {{ a: x }}\napi_keys:\n  - {{ id: key-1, sha256: {key}, scopes: [a], resources: {{ bots: {{ b1: [read], \"*\": [write] }} }} }}\n"
        );
        // Escaped strings cannot be borrowed from the text; the parser hands them over owned.
        let json = format!(
            r#"{{"version":1,"scopes":{{"a":"x"}},"api_keys":[{{"id":"key\u002d1","sha256":"{key}","scopes":["\u0061"],"resources":{{"bots":{{"b\u0031":["read"],"*":["write"]}}}}}}]}}"#
        );
        for text in [yaml, json] {
            let policy = compile(&text).unwrap();
            let k = &policy.api_keys[&digest("sk_1")];
            assert_eq!(k.id, "key-1");
            assert_eq!(k.scopes_header, "a");
            assert!(k.grants.allows("bots", "b1", Some(Action::Read)));
            assert!(k.grants.allows("bots", "b2", Some(Action::Write)));
            assert!(!k.grants.allows("bots", "b2", Some(Action::Read)));
        }
    }

    #[test]
    fn the_rest_of_an_api_keys_rejections_are_reported_on_its_line() {
        let (k1, k2) = (hex::encode(digest("sk_1")), hex::encode(digest("sk_2")));
        let cases = [
            (
                format!("  - {{ id: a, sha256: {k1} }}\n  - {{ id: b, sha256: {k1} }}"),
                4,
                "two api keys have the same sha256",
            ),
            (
                format!("  - {{ id: a, sha256: {k1}, expires: tomorrow }}"),
                3,
                "expires \"tomorrow\" is not an RFC 3339 time",
            ),
            (
                format!("  - {{ id: a, sha256: {k1}, resources: {{ bots: {{ b1: [] }} }} }}"),
                3,
                "resources.bots.b1 grants no action",
            ),
            (
                format!("  - {{ id: a, sha256: {k2}, rate_limit: {{ per_second: 0, burst: 1 }} }}"),
                3,
                "rate_limit needs per_second > 0 and burst >= 1",
            ),
        ];
        for (entries, line, message) in cases {
            let text = format!("version: 1\napi_keys:\n{entries}\n");
            let err = compile(&text).expect_err(&entries);
            assert!(
                err.starts_with(&format!("p.yaml:{line}:")),
                "{entries}: {err}"
            );
            assert!(err.contains(message), "{entries}: {err}");
        }
    }

    /// serde_json keeps the last of two equal keys; the policy reader must not.
    #[test]
    fn a_json_policy_with_a_map_key_given_twice_is_refused() {
        let key = hex::encode(digest("sk_1"));
        let app = r#"{"client_id":"a","algorithms":["HS256"],"secret":{"value":"0123456789abcdef0123456789abcdef"}"#;
        let cases = [
            (
                format!(
                    r#"{{"version":1,"api_keys":[{{"id":"k","sha256":"{key}","resources":{{"bots":{{"b1":["read"],"b1":["delete"]}}}}}}]}}"#
                ),
                "b1",
            ),
            (
                format!(
                    r#"{{"version":1,"api_keys":[{{"id":"k","sha256":"{key}","resources":{{"bots":["b1"],"bots":["*"]}}}}]}}"#
                ),
                "bots",
            ),
            (
                format!(
                    r#"{{"version":1,"apps":[{app},"resources":{{"bots":["b1"],"bots":["*"]}}}}]}}"#
                ),
                "bots",
            ),
            (
                format!(
                    r#"{{"version":1,"apps":[{app},"claims_to_headers":{{"t":"x-auth-a","t":"x-auth-b"}}}}]}}"#
                ),
                "t",
            ),
            (
                r#"{"version":1,"scopes":{"s":"one","s":"two"}}"#.to_string(),
                "s",
            ),
        ];
        for (json, twice) in cases {
            let err = compile(&json).expect_err(&json);
            assert!(
                err.contains(&format!("duplicate mapping key: {twice}")),
                "{json}: {err}"
            );
        }
    }

    #[test]
    fn malformed_grants_and_key_ids_are_refused_on_their_line() {
        let key = hex::encode(digest("sk_1"));
        let cases = [
            (
                format!(
                    "  - {{ id: k, sha256: {key}, resources: {{ bots: {{ b1: [read], b1: [write] }} }} }}"
                ),
                "duplicate mapping key: b1",
            ),
            (
                format!("  - {{ id: k, sha256: {key}, resources: {{ bots: b1 }} }}"),
                "a list of items, or a map of item to actions",
            ),
            (
                format!("  - {{ id: k, sha256: {key}, resources: {{ bots: {{ b1: [fly] }} }} }}"),
                "fly",
            ),
            (
                format!("  - {{ id: \"k\u{e9}\", sha256: {key} }}"),
                "must be non-empty printable ASCII",
            ),
            (
                format!("  - {{ id: \"\", sha256: {key} }}"),
                "must be non-empty printable ASCII",
            ),
        ];
        for (entry, message) in cases {
            let text = format!("version: 1\napi_keys:\n{entry}\n");
            let err = compile(&text).expect_err(&entry);
            assert!(err.starts_with("p.yaml:3:"), "{entry}: {err}");
            assert!(err.contains(message), "{entry}: {err}");
        }
    }
}
