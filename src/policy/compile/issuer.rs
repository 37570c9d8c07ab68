//! Compiling `issuer`, `token_endpoint` and `upstream_assertion` (SPEC §3.7): the signing
//! key and the previous public keys, the partners of the token endpoint as the apps their
//! minted tokens are verified as, and the assertion header.

use super::*;
use crate::jose::signing::{Issuer, SigAlg, VerifyKey, binding};
use crate::path::Normalized;

const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(1800);
/// A minted token lives at most as long as any app's token may (`max_lifetime`'s default).
const MAX_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_ASSERTION_HEADER: &str = "x-auth-assertion";
const DEFAULT_ASSERTION_TTL: Duration = Duration::from_secs(60);
const MAX_ASSERTION_TTL: Duration = Duration::from_secs(3600);
/// Headers the proxy sets or removes itself: an assertion may not take their place.
const TAKEN_HEADERS: &[&str] = &[
    "authorization",
    "auth",
    "host",
    "connection",
    "cookie",
    "content-type",
    "content-length",
    "transfer-encoding",
    "upgrade",
    "te",
    "x-request-id",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "forwarded",
    "traceparent",
    "tracestate",
];
const IDENTITY_SUFFIXES: &[&str] = &["kind", "app-id", "key-id", "subject", "scopes", "route"];

impl<'a> Compiler<'a> {
    pub(super) fn issuer(&mut self, raw: Option<Spanned<raw::RawIssuer>>) -> Option<Arc<Issuer>> {
        let raw = raw?;
        let l = line(&raw);
        let i = raw.value;
        if i.name.is_empty() {
            self.err(l, "issuer.name must not be empty");
        }
        if i.kid.is_empty() {
            self.err(l, "issuer.kid must not be empty");
        }
        let mut previous = Vec::new();
        for p in i.previous_keys {
            let pl = line(&p);
            let p = p.value;
            if p.kid == i.kid || previous.iter().any(|k: &VerifyKey| k.kid == p.kid) {
                self.err(pl, format!("issuer key kid {:?} is used twice", p.kid));
                continue;
            }
            let Some(pem) = self.read_file(
                pl,
                &p.public_key_file,
                "issuer.previous_keys public_key_file",
            ) else {
                continue;
            };
            match VerifyKey::from_public_pem(&p.kid, &pem) {
                Ok(k) => previous.push(k),
                Err(e) => self.err(
                    pl,
                    format!("issuer.previous_keys {:?}: public_key_file: {e}", p.kid),
                ),
            }
        }
        let kl = line(&i.signing_key_file);
        let pem = self.read_file(kl, &i.signing_key_file.value, "issuer.signing_key_file")?;
        match Issuer::new(&i.name, &i.kid, &pem, previous) {
            Ok(issuer) => Some(Arc::new(issuer)),
            Err(e) => {
                self.err(kl, format!("issuer.signing_key_file: {e}"));
                None
            }
        }
    }

    pub(super) fn token_endpoint(
        &mut self,
        scopes: &Scopes,
        raw: Option<Spanned<raw::RawTokenEndpoint<'a>>>,
        issuer: Option<&Arc<Issuer>>,
        had_issuer: bool,
        apps: &HashMap<String, Arc<App>>,
    ) -> Option<TokenEndpoint> {
        let raw = raw?;
        let l = line(&raw);
        let t = raw.value;
        if !had_issuer {
            self.err(
                l,
                "token_endpoint needs `issuer` (the key its tokens are signed with)",
            );
        }
        let path = t.path.value.clone();
        if !path.starts_with('/')
            || Normalized::new(&path)
                .map(|n| n.as_str() != path)
                .unwrap_or(true)
        {
            self.err(
                line(&t.path),
                format!("token_endpoint.path {path:?} must be a normalized absolute path"),
            );
        }
        let ttl = t.ttl.unwrap_or(DEFAULT_TOKEN_TTL);
        if ttl.as_secs() == 0 || ttl > MAX_TOKEN_TTL {
            self.err(l, "token_endpoint.ttl must be at least 1s and at most 24h");
        }
        let mut clients = HashMap::with_capacity(t.clients.len());
        for c in t.clients {
            let cl = line(&c);
            let c = c.value;
            let what = What("token_endpoint client", &c.access_key);
            if clients.contains_key(&*c.access_key) {
                self.err(cl, format!("{what}: access_key is used twice"));
                continue;
            }
            if apps.contains_key(&*c.access_key) {
                // Its tokens name it in `appId`, as an app's do: the two could not be told apart.
                self.err(cl, format!("{what}: access_key is also an app's client_id"));
            }
            let mut secret_sha256 = [0u8; 32];
            if hex::decode_to_slice(&c.secret_sha256, &mut secret_sha256).is_err() {
                self.err(
                    cl,
                    format!("{what}: secret_sha256 must be 64 hex characters"),
                );
            }
            let (client_scopes, scopes_header) = self.principal_scopes(scopes, &c.scopes, &what);
            let grants = self.shared_grants(cl, &c.resources, &what);
            let rate_limit = c
                .rate_limit
                .as_ref()
                .and_then(|r| self.rate_limit(cl, r, &what, "client", &c.access_key));
            let id_header = self.header_value(
                cl,
                &c.access_key,
                HeaderValue::from_str(&c.access_key),
                "token_endpoint client access_key",
            );
            let Some(issuer) = issuer else { continue };
            let app = App {
                client_id: c.access_key.to_string(),
                id_header,
                algorithms: issuer
                    .keys
                    .iter()
                    .map(|k| match k.alg {
                        SigAlg::Es256 => Algorithm::ES256,
                        SigAlg::EdDsa => Algorithm::EdDSA,
                    })
                    .collect(),
                hmac_keys: HmacKeys::default(),
                public_key: None,
                audience: Some(issuer.name.clone()),
                issuer: Some(issuer.name.clone()),
                jwks: None,
                require_exp: true,
                leeway_secs: 30,
                max_lifetime_secs: ttl.as_secs(),
                enforce_jti: true,
                single_use_jti: false,
                enforce_jwe: false,
                payload_encryption: None,
                scopes: client_scopes,
                scopes_header,
                grants,
                claims_to_headers: Vec::new(),
                rate_limit: None,
            };
            clients.insert(
                c.access_key.to_string(),
                Client {
                    app: Arc::new(app),
                    binding: binding(&issuer.name, &secret_sha256),
                    secret_sha256,
                    rate_limit,
                },
            );
        }
        Some(TokenEndpoint {
            path,
            ttl_secs: ttl.as_secs(),
            clients,
        })
    }

    pub(super) fn upstream_assertion(
        &mut self,
        raw: Option<Spanned<raw::RawUpstreamAssertion>>,
        had_issuer: bool,
    ) -> Option<UpstreamAssertion> {
        let raw = raw?;
        let l = line(&raw);
        let a = raw.value;
        if !had_issuer {
            self.err(
                l,
                "upstream_assertion needs `issuer` (the key assertions are signed with)",
            );
        }
        let name = a
            .header
            .as_deref()
            .unwrap_or(DEFAULT_ASSERTION_HEADER)
            .to_ascii_lowercase();
        let suffix = name.strip_prefix(self.ctx.identity_prefix.as_str());
        let taken = TAKEN_HEADERS.contains(&name.as_str())
            || suffix.is_some_and(|s| s.is_empty() || IDENTITY_SUFFIXES.contains(&s));
        let header = match HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) if !taken => Some(h),
            _ => {
                self.err(
                    l,
                    format!("upstream_assertion.header {name:?} must be a header name the proxy does not set itself"),
                );
                None
            }
        };
        let ttl = a.ttl.unwrap_or(DEFAULT_ASSERTION_TTL);
        if ttl.as_secs() == 0 || ttl > MAX_ASSERTION_TTL {
            self.err(
                l,
                "upstream_assertion.ttl must be at least 1s and at most 1h",
            );
        }
        Some(UpstreamAssertion {
            header: header?,
            ttl_secs: ttl.as_secs(),
        })
    }
}
