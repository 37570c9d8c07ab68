//! `scopegate demo`: serve on 127.0.0.1 in front of a built-in echo upstream, with a
//! temporary copy of the policy and credentials made for it, and print curl commands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use scopegate::config::{Config, LogFormat};
use scopegate::server::{self, Options};

use super::run::{init_logging, runtime};

pub(super) fn demo(policy: &Path, exit_after: Option<Duration>) -> ExitCode {
    init_logging(LogFormat::Text, "error");
    let policy = match std::fs::canonicalize(policy) {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "{}: {e} (run the demo from the repository root, or pass --policy)",
                policy.display()
            );
            return ExitCode::from(1);
        }
    };
    runtime().block_on(async {
        match demo_inner(&policy, exit_after).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("demo: {e}");
                ExitCode::from(1)
            }
        }
    })
}

async fn demo_inner(policy: &Path, exit_after: Option<Duration>) -> Result<(), String> {
    // Two echo upstreams, so the echo shows which one a request reached.
    let mut upstreams = Vec::new();
    for name in ["default", "sandbox"] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        upstreams.push(listener.local_addr().map_err(|e| e.to_string())?);
        tokio::spawn(scopegate::demo::echo_upstream(listener, name));
    }
    let dir = tempdir()?;
    let (demo_policy, creds) = scopegate::demo::prepare_policy(policy, &dir)?;
    let config_file = scopegate::demo::write_config(&dir, &demo_policy, upstreams[0], upstreams[1])
        .map_err(|e| e.to_string())?;
    let config = Config::load(&config_file).map_err(|e| e.to_string())?;
    let running = server::start(
        config,
        Options {
            access_log: false,
            watch: true,
        },
    )
    .await?;
    let script = scopegate::demo::script(
        &running.state.policies.current().policy,
        running
            .addr
            .ok_or("the demo config has a public listener")?,
        running.admin_addr,
        &creds,
        &scopegate::demo::Files {
            program: std::env::current_exe().map_err(|e| e.to_string())?,
            policy: demo_policy.clone(),
            client_key: policy
                .parent()
                .unwrap_or(Path::new("."))
                .join("keys/reporting-client.key.pem"),
        },
    )?;
    println!("{script}");
    match exit_after {
        Some(d) => tokio::time::sleep(d).await,
        None => server::termination().await,
    }
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempdir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("scopegate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(dir)
}
