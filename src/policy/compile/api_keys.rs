//! Compiling `api_keys`: the compactly read keys (`raw::RawApiKeys`) into the hash map the
//! request path looks keys up in, with their shared scope sets and grants.

use super::*;

impl<'a> Compiler<'a> {
    /// The keys were read compactly (`raw::RawApiKeys`): each distinct scope list and
    /// grant is compiled once, and every key id is a slice of one buffer, so 100,000 keys
    /// cost no allocation of their own (and nothing to free when the policy is replaced).
    pub(super) fn api_keys(
        &mut self,
        scopes: &Scopes,
        raw: raw::RawApiKeys<'a>,
    ) -> HashMap<[u8; 32], Arc<ApiKey>> {
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
            if out.insert(hash, Arc::new(key)).is_some() {
                self.err(l, "two api keys have the same sha256");
            }
        }
        out
    }
}
