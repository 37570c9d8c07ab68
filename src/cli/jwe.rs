//! `scopegate jwe encrypt|decrypt`: payload encryption (SPEC §4) from the client's side, to
//! try an encrypted route by hand — the demo prints such a command. `encrypt` seals a request
//! body to one of the policy's `jwe_keys` as a client would (from the proxy's JWKS);
//! `decrypt` opens the proxy's answer with the app's private key. Standard input to
//! standard output, nothing added.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use scopegate::jose::jwe::{self, ACCEPT_TOKEN, DecryptWith, JweError, Serialization};
use scopegate::jose::keys::JweKey;
use scopegate::policy::compile::{self, Context};

pub(super) fn encrypt(policy: &Path, kid: Option<&str>, cty: Option<&str>) -> ExitCode {
    let compiled = match compile::load(policy, &Context::standalone()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let keys = &compiled.policy.jwe_keys;
    let key = match kid {
        Some(kid) => keys.iter().find(|k| k.kid == kid),
        None => keys.first(),
    };
    let Some(key) = key else {
        return fail(format!(
            "{}: no jwe_keys entry{}",
            policy.display(),
            kid.map(|k| format!(" with kid {k:?}")).unwrap_or_default()
        ));
    };
    let plaintext = match stdin() {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    match jwe::encrypt_to_jwe_key(&plaintext, cty, key, Serialization::Compact) {
        Ok(sealed) => stdout(&sealed),
        Err(e) => fail(e),
    }
}

pub(super) fn decrypt(key_file: &Path) -> ExitCode {
    let pem = match std::fs::read(key_file) {
        Ok(pem) => pem,
        Err(e) => return fail(format!("{}: {e}", key_file.display())),
    };
    let input = match stdin() {
        Ok(i) => i,
        Err(e) => return fail(e),
    };
    // The proxy's answers name no kid; a message that does names the key it was sealed to.
    let mut kid = "client".to_string();
    loop {
        let key = match JweKey::from_pem(&kid, &pem) {
            Ok(k) => k,
            Err(e) => return fail(format!("{}: {e}", key_file.display())),
        };
        // Responses are always RSA-OAEP-256 or ECDH-ES+A256KW with A256GCM (SPEC §4).
        let with = DecryptWith::Keys(std::slice::from_ref(&key));
        match jwe::decrypt(input.trim_ascii(), with, &ACCEPT_TOKEN) {
            Ok(d) => return stdout(&d.plaintext),
            Err(JweError::UnknownKid(named)) if named != kid => kid = named,
            Err(e) => return fail(format!("cannot decrypt: {e}")),
        }
    }
}

fn stdin() -> Result<Vec<u8>, String> {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| format!("standard input: {e}"))?;
    Ok(input)
}

fn stdout(bytes: &[u8]) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format!("standard output: {e}")),
    }
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(1)
}
