//! `scopegate key`: API key commands.

use std::process::ExitCode;

/// `key new`: print a new random API key, its sha256, and an `api_keys` entry to paste into
/// the policy (the key itself is shown once and never stored).
pub(super) fn new(prefix: &str) -> ExitCode {
    let (key, hash) = scopegate::auth::api_key::generate(prefix);
    println!("key:    {key}");
    println!("sha256: {hash}");
    println!();
    println!("# the policy's entry (only the hash is stored); set its id and scopes:");
    println!("api_keys:");
    println!("  - id: my-server");
    println!("    sha256: {hash}");
    println!("    scopes: []");
    ExitCode::SUCCESS
}
