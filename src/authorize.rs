//! Principal + route -> `Permit`: the only way to obtain one, and the forwarder accepts
//! nothing else, so "forwarded without being authorized" does not compile.

use std::collections::BTreeMap;

use crate::auth::{Identity, Principal};
use crate::error::Error;
use crate::policy::{Environment, Policy, Route};

/// Proof that a request may go upstream, and as whom.
#[derive(Debug)]
pub struct Permit<'p> {
    route: Option<&'p Route>,
    principal: Principal,
    upstream: usize,
    /// In shadow mode: the refusal that enforcement would have answered.
    shadowed: Option<Error>,
}

impl<'p> Permit<'p> {
    pub fn route(&self) -> Option<&'p Route> {
        self.route
    }
    pub fn principal(&self) -> &Principal {
        &self.principal
    }
    pub fn upstream(&self) -> usize {
        self.upstream
    }
    pub fn shadowed(&self) -> Option<&Error> {
        self.shadowed.as_ref()
    }
    /// Shadow routes keep the client's credential: the upstream still authenticates itself
    /// while the policy is being tried out.
    pub fn keeps_credentials(&self) -> bool {
        self.route.is_some_and(|r| r.shadow)
    }
}

/// Checks scopes and the resource named in the path.
pub fn authorize<'p>(
    policy: &'p Policy,
    route: &'p Route,
    params: &[&str],
    principal: Principal,
    environments: &BTreeMap<String, usize>,
) -> Result<Permit<'p>, Error> {
    if let Some(missing) = policy.scopes.missing(&principal.scopes, &route.scopes) {
        if matches!(principal.identity, Identity::Anonymous) {
            return Err(Error::MissingCredentials);
        }
        return Err(Error::InsufficientScope(policy.scopes.join(&missing)));
    }
    if let Some(rule) = &route.resource {
        let item = params.get(rule.param).copied().unwrap_or_default();
        let allowed = principal
            .grants()
            .is_some_and(|g| g.allows(&rule.kind, item, rule.action));
        if !allowed {
            if matches!(principal.identity, Identity::Anonymous) {
                return Err(Error::MissingCredentials);
            }
            return Err(Error::ResourceNotAllowed(format!("{}/{item}", rule.kind)));
        }
    }
    let upstream = match &principal.identity {
        Identity::ApiKey { key } => {
            let env = match key.environment {
                Environment::Live => "live",
                Environment::Test => "test",
            };
            environments.get(env).copied().unwrap_or(route.upstream)
        }
        _ => route.upstream,
    };
    Ok(Permit {
        route: Some(route),
        principal,
        upstream,
        shadowed: None,
    })
}

/// A shadow-mode route forwards what enforcement would refuse, recording why.
pub(crate) fn shadow<'p>(route: &'p Route, catalogue: usize, would_be: Error) -> Permit<'p> {
    Permit {
        route: Some(route),
        principal: Principal::anonymous(catalogue),
        upstream: route.upstream,
        shadowed: Some(would_be),
    }
}

/// `unmatched: passthrough`: the operator chose to forward unmatched requests unauthenticated.
pub(crate) fn passthrough<'p>(catalogue: usize) -> Permit<'p> {
    Permit {
        route: None,
        principal: Principal::anonymous(catalogue),
        upstream: 0,
        shadowed: None,
    }
}
