//! The command line (SPEC §2): the clap definitions of every command and the dispatch to
//! the file that carries it out (`run`, `demo`, `check`, `explain` and `test`, `token`,
//! `schema`, `key`, `keys`, `jwe`). Setup shared by
//! the serving commands (logging, the tokio runtime) lives in `run`.

mod check;
mod demo;
mod explain;
mod jwe;
mod key;
mod keys;
mod run;
mod schema;
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
        /// The config file (SPEC §1.1); it names the policy file.
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
    #[command(group = clap::ArgGroup::new("file").required(true).args(["config", "policy"]))]
    Check {
        /// A config file: checks it, and the policy it names against its upstreams.
        #[arg(long)]
        config: Option<PathBuf>,
        /// A policy file alone (upstream names are not checked).
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// Print the proxy's decision for one request and the checks that led to it, offline.
    Explain {
        /// The policy to decide with.
        #[arg(long)]
        policy: PathBuf,
        /// The request's method.
        #[arg(long, default_value = "GET")]
        method: String,
        /// The request's path (and query), as the client sends it.
        #[arg(long)]
        path: String,
        /// A request header, 'Name: value' (repeatable).
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
        /// Decide as `unmatched: passthrough` would (the config's setting; default deny).
        #[arg(long)]
        passthrough: bool,
    },
    /// Run policy test cases offline; exit 1 on any mismatch.
    Test {
        /// The policy under test.
        #[arg(long)]
        policy: PathBuf,
        /// The cases: a YAML list of {name, request: {method, path, headers}, expect: {status, code}}.
        cases: PathBuf,
        /// Decide as `unmatched: passthrough` would (default deny).
        #[arg(long)]
        passthrough: bool,
    },
    /// Mint a test JWT for an HS* app of the policy.
    Token {
        /// The policy that holds the app and its secret.
        #[arg(long)]
        policy: PathBuf,
        /// The app's client_id (the token's appId claim).
        #[arg(long)]
        app: String,
        /// Narrow the token to this scope (repeatable); it must be one the app is granted.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// How long the token lives (its exp).
        #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// Add a random jti claim.
        #[arg(long)]
        jti: bool,
    },
    /// Encrypt a request body to the proxy, or decrypt its answer, as an app that opted into
    /// payload encryption would (SPEC §4); standard input to standard output.
    Jwe {
        #[command(subcommand)]
        command: JweCommand,
    },
    /// Print the JSON Schema (draft 2020-12) of the config or the policy file, for editors and CI.
    Schema {
        /// Which file's schema: config or policy.
        #[arg(value_enum)]
        file: SchemaFile,
    },
    /// API keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// API keys in the key store (Redis or Redis Cluster; the config's `key_store`).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key in the store and print it once; its scopes and resource kinds must exist in the policy.
    Put {
        /// The key store: redis://host:port/db or redis+cluster://h1:p1,h2:p2,...
        #[arg(long)]
        store: String,
        /// The policy the key is checked against.
        #[arg(long)]
        policy: PathBuf,
        /// The key's id (x-auth-key-id; what `revoke` names).
        #[arg(long)]
        id: String,
        /// A human-readable name.
        #[arg(long)]
        name: Option<String>,
        /// A scope the key holds (repeatable; declared in the policy).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// KIND=ITEM[:ACTIONS] (repeatable): e.g. bots=st-1234, bots=*, tables=orders:read,write.
        #[arg(long = "resource", value_parser = keys::parse_resource)]
        resources: Vec<keys::ResourceArg>,
        /// live, or test (sent to the config's environments.test upstream).
        #[arg(long, default_value = "live", value_parser = keys::parse_environment)]
        environment: scopegate::policy::Environment,
        /// When the key stops working (RFC 3339, e.g. 2027-03-01T00:00:00Z).
        #[arg(long, value_parser = keys::parse_expires)]
        expires: Option<i64>,
        /// A rate limit, PER_SECOND/BURST (e.g. 10/20).
        #[arg(long, value_parser = keys::parse_rate)]
        rate: Option<scopegate::policy::RateLimit>,
        /// The new key's prefix (default sk_live_, or sk_test_ for a test key).
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Disable a key everywhere within a second.
    Revoke {
        /// The key store: redis://host:port/db or redis+cluster://h1:p1,h2:p2,...
        #[arg(long)]
        store: String,
        /// The key's id.
        #[arg(long)]
        id: String,
    },
    /// List the key ids in the store (never keys, never hashes).
    List {
        /// The key store: redis://host:port/db or redis+cluster://h1:p1,h2:p2,...
        #[arg(long)]
        store: String,
    },
    /// Bulk-load `api_keys` entries written as in the policy (a policy file itself will do).
    Import {
        /// The key store: redis://host:port/db or redis+cluster://h1:p1,h2:p2,...
        #[arg(long)]
        store: String,
        /// YAML or JSON with an `api_keys` list.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum JweCommand {
    /// Encrypt standard input to one of the policy's jwe_keys (compact JWE, A256GCM).
    Encrypt {
        /// The policy whose jwe_keys the proxy decrypts with.
        #[arg(long)]
        policy: PathBuf,
        /// The key's kid (default: the policy's first jwe key).
        #[arg(long)]
        kid: Option<String>,
        /// The plaintext's content type (the JWE's cty: what the upstream receives).
        #[arg(long)]
        cty: Option<String>,
    },
    /// Decrypt a JWE (compact or flattened JSON) from standard input with a private key.
    Decrypt {
        /// The app's private key (PEM): the pair of its payload_encryption public_key_file.
        #[arg(long)]
        key: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SchemaFile {
    Config,
    Policy,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Print a new random API key and the sha256 line for the policy.
    New {
        /// Text the key starts with (e.g. sk_test_ for a test key), so a leaked key is recognised.
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
        Command::Explain {
            policy,
            method,
            path,
            headers,
            format,
            passthrough,
        } => explain::explain(
            &policy,
            &method,
            &path,
            &headers,
            matches!(format, Format::Json),
            unmatched(passthrough),
        ),
        Command::Test {
            policy,
            cases,
            passthrough,
        } => explain::test(&policy, &cases, unmatched(passthrough)),
        Command::Token {
            policy,
            app,
            scopes,
            ttl,
            jti,
        } => token::token(&policy, &app, &scopes, ttl, jti),
        Command::Schema { file } => schema::schema(match file {
            SchemaFile::Config => scopegate::config::schema(),
            SchemaFile::Policy => scopegate::policy::raw::schema(),
        }),
        Command::Key {
            command: KeyCommand::New { prefix },
        } => key::new(&prefix),
        Command::Jwe { command } => match command {
            JweCommand::Encrypt { policy, kid, cty } => {
                jwe::encrypt(&policy, kid.as_deref(), cty.as_deref())
            }
            JweCommand::Decrypt { key } => jwe::decrypt(&key),
        },
        Command::Keys { command } => match command {
            KeysCommand::Put {
                store,
                policy,
                id,
                name,
                scopes,
                resources,
                environment,
                expires,
                rate,
                prefix,
            } => keys::put(keys::Put {
                store,
                policy,
                id,
                name,
                scopes,
                resources,
                environment,
                expires,
                rate,
                prefix,
            }),
            KeysCommand::Revoke { store, id } => keys::revoke(&store, &id),
            KeysCommand::List { store } => keys::list(&store),
            KeysCommand::Import { store, file } => keys::import(&store, &file),
        },
    }
}

fn unmatched(passthrough: bool) -> scopegate::config::Unmatched {
    if passthrough {
        scopegate::config::Unmatched::Passthrough
    } else {
        scopegate::config::Unmatched::Deny
    }
}
