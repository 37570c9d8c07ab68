//! `scopegate token`: mint a test JWT for an HS* app of a policy.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use scopegate::policy::compile::{self, Context};

pub(super) fn token(
    policy: &Path,
    app: &str,
    scopes: &[String],
    ttl: Duration,
    jti: bool,
) -> ExitCode {
    let compiled = match compile::load(policy, &Context::standalone()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let Some(a) = compiled.policy.apps.get(app) else {
        eprintln!("{}: no app with client_id {app:?}", policy.display());
        return ExitCode::from(1);
    };
    // A token's `scope` can only narrow the app's scopes (SPEC §3.2): a scope the app is not
    // granted would be dropped silently at every request, so it is refused here.
    let catalogue = &compiled.policy.scopes;
    let ungranted: Vec<&str> = scopes
        .iter()
        .map(String::as_str)
        .filter(|s| !catalogue.get(s).is_some_and(|i| a.scopes.contains(i)))
        .collect();
    if !ungranted.is_empty() {
        eprintln!(
            "{}: app {app:?} is not granted {} (it holds: {}); a token's scope can only narrow the app's scopes",
            policy.display(),
            ungranted.join(", "),
            catalogue.join(&a.scopes)
        );
        return ExitCode::from(1);
    }
    let now = scopegate::decide::unix_now() as u64;
    match scopegate::auth::mint::mint(
        a,
        compiled.policy.app_id_claim(),
        scopes,
        ttl.as_secs(),
        jti,
        now,
    ) {
        Ok(t) => {
            println!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
