//! `scopegate key`: API key commands.

use std::process::ExitCode;

/// `key new`: print a new random API key and the sha256 line for the policy.
pub(super) fn new(prefix: &str) -> ExitCode {
    let (key, hash) = scopegate::auth::api_key::generate(prefix);
    println!("key:    {key}");
    println!("sha256: {hash}");
    ExitCode::SUCCESS
}
