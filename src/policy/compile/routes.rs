//! Compiling `routes`: each route's path template, methods, auth kinds, required scopes,
//! resource rule, webhook and upstream. Reads shared state only through the `Compiler`.

use super::*;

const DEFAULT_WEBHOOK_TOLERANCE: Duration = Duration::from_secs(300);

impl<'a> Compiler<'a> {
    pub(super) fn route(
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
}

pub(super) fn method_names(m: &Methods) -> Vec<String> {
    match m {
        Methods::Any => vec!["*".into()],
        Methods::List(l) => l.iter().map(|m| m.to_string()).collect(),
    }
}
