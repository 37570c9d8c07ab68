//! Compiling `apps`: each app's algorithms and keys, token rules (leeway, lifetime, jti),
//! payload encryption, scopes, resource grants, identity headers and rate limit.

use super::key_files::key_fits;
use super::*;

const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Bounds on the two durations a remembered `jti` is kept for, so that no store's
/// arithmetic (Redis's millisecond expiries, `Instant`) can overflow on them.
const MAX_LEEWAY: Duration = Duration::from_secs(24 * 3600);
const MAX_MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);
/// Headers the proxy sets itself; `claims_to_headers` may not shadow them.
const RESERVED_SUFFIXES: &[&str] = &["kind", "app-id", "key-id", "subject", "scopes", "route"];
impl<'a> Compiler<'a> {
    /// A principal's scopes and their `x-auth-scopes` value, shared with identical ones.
    pub(super) fn principal_scopes(
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

    pub(super) fn shared_grants(
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

    pub(super) fn grants(
        &mut self,
        l: u64,
        raw: &BTreeMap<Str<'a>, RawGrant<'a>>,
        what: &What<'_>,
    ) -> Grants {
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

    pub(super) fn app(&mut self, scopes: &Scopes, l: u64, a: raw::RawApp<'a>) -> Option<App> {
        let what = What("app", &a.client_id);
        if a.client_id.is_empty() {
            self.err(l, "app client_id must not be empty");
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
        let jwks = match &a.jwks_url {
            Some(u) => self.jwks_source(
                line(u),
                &u.value,
                a.jwks_ca_file.as_deref(),
                &what,
                &a.client_id,
            ),
            None => None,
        };
        if a.jwks_ca_file.is_some() && a.jwks_url.is_none() {
            self.err(l, format!("{what}: jwks_ca_file needs a jwks_url"));
        }
        match (&a.public_key_file, &a.jwks_url) {
            (Some(_), Some(u)) => self.err(
                line(u),
                format!("{what}: public_key_file and jwks_url exclude each other"),
            ),
            (None, None) if wants_public => self.err(
                l,
                format!("{what}: RS*/PS*/ES*/EdDSA algorithms need a `public_key_file` or a `jwks_url`"),
            ),
            (None, Some(u)) if wants_hmac => self.err(
                line(u),
                format!("{what}: an app with a jwks_url may not allow HS* algorithms (a JWKS never holds the app's HMAC secret)"),
            ),
            _ => {}
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
        let secret_len = secret.as_ref().map(|s| s.0.len());
        for (alg, min) in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]
            .into_iter()
            .zip(HmacKeys::MIN_SECRET_LEN)
        {
            if let Some(len) = secret_len.filter(|len| *len < min && algorithms.contains(&alg)) {
                self.warn(
                    l,
                    format!("{what}: the secret is {len} bytes; {alg:?} needs at least {min} (RFC 7518 §3.2), so its tokens will be refused"),
                );
            }
        }
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
            jwks,
            audience: a.audience,
            issuer: a.issuer,
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
}
