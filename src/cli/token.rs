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
    let now = scopegate::pipeline::unix_now() as u64;
    match scopegate::auth::jwt::mint(
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
