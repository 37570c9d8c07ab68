//! Validation and compilation of a policy file (SPEC §1.2): every check of the spec, all
//! errors collected with `file:line`, every expensive thing (route tree, decoded keys,
//! hash maps, scope bitsets) done here once.
//!
//! This file holds the entry points, the `Compiler` with its shared helpers (errors,
//! scope sets, rate limits, header values) and the top-level pass over the policy; each
//! part of the file is compiled in its own module: `routes`, `apps`, `api_keys`, and
//! `key_files` for what is read from disk or the environment.

mod api_keys;
mod apps;
mod issuer;
mod jwks;
mod key_files;
mod routes;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde_saphyr::Spanned;

use self::routes::method_names;
use super::raw::{self, RawGrant, RawPolicy, SecretRef, Str};
use super::routes::{Methods, Router, Template};
use super::*;
use crate::jose::keys::{JweKey, Recipient, SharedKey};
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
    /// The running proxy's JWKS sources; `None` offline (`check`, `explain`, `test`), where
    /// JWKS apps get sources that fetch only when a token needs their keys.
    pub jwks: Option<Arc<crate::jwks::Registry>>,
}

impl Context {
    pub fn standalone() -> Context {
        Context {
            upstreams: None,
            identity_prefix: "x-auth-".into(),
            test_environment: None,
            jwks: None,
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
    match yaml::parse::<RawPolicy>(file, text) {
        Ok(raw) => compile_raw(file, raw, ctx, sha256),
        Err(refused) => Err(crate::schema::all_errors(
            file,
            text,
            crate::policy::raw::schema(),
            refused,
            |rest| match yaml::parse::<RawPolicy>(file, rest) {
                Ok(raw) => {
                    compile_raw(file, raw, ctx, String::new())
                        .err()
                        .unwrap_or_default()
                        .0
                }
                Err(_) => Vec::new(),
            },
        )),
    }
}

/// Compiles a policy already read (by serde_json or the YAML parser); the fuzz target
/// compares the two readings of one document through it.
pub(crate) fn compile_raw<'a>(
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
        let app_id_claims = self.app_id_claims(raw.app_id_claims);

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
        let had_issuer = raw.issuer.is_some();
        let issuer = self.issuer(raw.issuer);
        let token_endpoint = self.token_endpoint(
            &scopes,
            raw.token_endpoint,
            issuer.as_ref(),
            had_issuer,
            &apps,
        );
        let upstream_assertion = self.upstream_assertion(raw.upstream_assertion, had_issuer);
        Policy {
            jwks: Bytes::from(crate::jose::signing::jwks_document(
                &jwe_keys,
                issuer.as_deref(),
            )),
            issuer,
            token_endpoint,
            upstream_assertion,
            scopes,
            routes,
            router,
            apps,
            api_keys,
            jwe_keys,
            app_id_claims,
        }
    }

    /// `app_id_claims`, or the default `[appId]` (the seeds' platforms name the app so).
    fn app_id_claims(&mut self, raw: Option<Spanned<Vec<String>>>) -> Vec<String> {
        let Some(raw) = raw else {
            return vec!["appId".into()];
        };
        let l = line(&raw);
        if raw.value.is_empty() {
            self.err(l, "app_id_claims must name at least one claim");
        }
        for (i, c) in raw.value.iter().enumerate() {
            if c.is_empty() {
                self.err(l, "app_id_claims: a claim name must not be empty");
            } else if raw.value[..i].contains(c) {
                self.err(l, format!("app_id_claims: {c:?} is listed twice"));
            }
        }
        raw.value
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
}

/// Scope names are checked to be header-safe at load, so this cannot fail in practice.
fn scopes_header(scopes: &Scopes, set: &ScopeSet) -> HeaderValue {
    HeaderValue::from_str(&scopes.join(set)).unwrap_or(HeaderValue::from_static(""))
}

/// RFC 6749 scope-token characters: what can sit inside `scope="..."` of a challenge.
fn is_scope_char(b: u8) -> bool {
    b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b)
}
