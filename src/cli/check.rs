//! `scopegate check`: validate a config (and its policy) or a policy alone, printing every
//! warning and error with file:line and a summary of what the policy holds.

use std::path::Path;
use std::process::ExitCode;

use scopegate::config::Config;
use scopegate::policy::compile::{self, Context};
use scopegate::proxy::forward::Forwarder;
use scopegate::server;

pub(super) fn check(config: Option<&Path>, policy: Option<&Path>) -> ExitCode {
    let (policy_file, ctx) = match (config, policy) {
        (Some(c), _) => match Config::load(c) {
            // The upstreams' CA and client-certificate files are read as at start.
            Ok(cfg) => match Forwarder::new(&cfg) {
                Ok(_) => (cfg.policy_file.clone(), server::context(&cfg)),
                Err(e) => {
                    eprintln!("{}: {e}", c.display());
                    return ExitCode::from(1);
                }
            },
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(1);
            }
        },
        (None, Some(p)) => (p.to_path_buf(), Context::standalone()),
        (None, None) => return ExitCode::from(2),
    };
    match compile::load(&policy_file, &ctx) {
        Ok(c) => {
            for w in &c.warnings {
                eprintln!("warning: {w}");
            }
            let p = &c.policy;
            println!(
                "{}: ok ({}, {}, {}, {}, {}; sha256 {})",
                policy_file.display(),
                count(p.scopes.len(), "scope"),
                count(p.routes.len(), "route"),
                count(p.apps.len(), "app"),
                count(p.api_keys.len(), "api key"),
                count(p.jwe_keys.len(), "jwe key"),
                c.sha256
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

/// "1 app", "2 apps".
fn count(n: usize, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    }
}
