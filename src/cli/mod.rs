//! The command line (SPEC §2): the clap definitions of every command and the dispatch to
//! the file that carries it out (`run`, `demo`, `check`, `token`, `key`). Setup shared by
//! the serving commands (logging, the tokio runtime) lives in `run`.

mod check;
mod demo;
mod key;
mod run;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "scopegate",
    version,
    about = "Authenticating, authorizing, payload-encrypting reverse proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve (the main job).
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Serve on 127.0.0.1 in front of a built-in echo upstream, and print curl commands.
    Demo {
        /// The policy to demo with.
        #[arg(long, default_value = "policies/example.yaml")]
        policy: PathBuf,
        /// Print the commands and exit after this long (for scripted runs); default: serve until Ctrl-C.
        #[arg(long, value_parser = humantime::parse_duration)]
        exit_after: Option<Duration>,
    },
    /// Validate a config (and its policy) or a policy alone; print every error with file:line.
    Check {
        #[arg(long, conflicts_with = "policy", required_unless_present = "policy")]
        config: Option<PathBuf>,
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// Mint a test JWT for an HS* app of the policy.
    Token {
        #[arg(long)]
        policy: PathBuf,
        #[arg(long)]
        app: String,
        #[arg(long = "scope")]
        scopes: Vec<String>,
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// Add a random jti claim.
        #[arg(long)]
        jti: bool,
    },
    /// API keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Print a new random API key and the sha256 line for the policy.
    New {
        #[arg(long, default_value = "sk_live_")]
        prefix: String,
    },
}

/// Parses the command line and runs the command; its exit code is the process's.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config } => run::run(&config),
        Command::Demo { policy, exit_after } => demo::demo(&policy, exit_after),
        Command::Check { config, policy } => check::check(config.as_deref(), policy.as_deref()),
        Command::Token {
            policy,
            app,
            scopes,
            ttl,
            jti,
        } => token::token(&policy, &app, &scopes, ttl, jti),
        Command::Key {
            command: KeyCommand::New { prefix },
        } => key::new(&prefix),
    }
}
