//! The `scopegate` binary itself: exit codes, `check` output, `token`, `key new`, and `run`
//! with its access log and SIGTERM drain.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::policy::{self, *};
use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_scopegate");

fn scopegate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `err` (a `check` run's stderr) has, for each `(line, what)`, a line `<file>:<line>:` that
/// says `what`.
fn assert_reports(err: &str, file: &std::path::Path, expected: &[(u32, &str)]) {
    let path = file.display().to_string();
    for (line, what) in expected {
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("{path}:{line}:")) && l.contains(what)),
            "missing {line}: {what} in\n{err}"
        );
    }
}

#[test]
fn check_accepts_a_good_policy_and_lists_every_error_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, policy::standard()).unwrap();
    let (code, out, _) = scopegate(&["check", "--policy", good.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        out.contains("ok (4 scopes, 12 routes, 4 apps, 6 api keys"),
        "{out}"
    );

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "version: 1\nscopes: { a: x }\nroutes:\n  - { id: r, methods: [GET], path: \"/b/{id}\", auth: [jwt], scopes: [nope], resource: { kind: bots, param: botId } }\n  - { id: r, methods: [GET], path: \"/b/{x}\", auth: [jwt] }\napps:\n  - { client_id: c, algorithms: [none] }\n  - { client_id: d, algorithms: [HS256] }\napi_keys:\n  - { id: k, sha256: abc }\n",
    )
    .unwrap();
    let (code, _, err) = scopegate(&["check", "--policy", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_reports(
        &err,
        &bad,
        &[
            (4, "scope \"nope\" is not declared"),
            (4, "resource param \"botId\" is not a parameter"),
            (5, "route id \"r\" is used twice"),
            (5, "another route already has method GET"),
            (7, "alg \"none\" can never be allowed"),
            (8, "HS* algorithms need a `secret`"),
            (10, "sha256 must be 64 hex characters"),
        ],
    );
    let unknown = dir.path().join("unknown.yaml");
    std::fs::write(&unknown, "version: 1\nroutes: []\nrouts: []\n").unwrap();
    let (code, _, err) = scopegate(&["check", "--policy", unknown.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with(&format!("{}:3:", unknown.display())) && err.contains("routs"),
        "{err}"
    );
}

#[test]
fn usage_errors_exit_2_and_every_command_has_help() {
    assert_eq!(scopegate(&["frobnicate"]).0, 2);
    assert_eq!(scopegate(&["check"]).0, 2);
    for cmd in [
        &["--help"][..],
        &["run", "--help"],
        &["demo", "--help"],
        &["check", "--help"],
        &["explain", "--help"],
        &["test", "--help"],
        &["token", "--help"],
        &["schema", "--help"],
        &["key", "new", "--help"],
    ] {
        assert_eq!(scopegate(cmd).0, 0, "{cmd:?}");
    }
}

#[test]
fn key_new_prints_a_key_and_its_hash() {
    let (code, out, _) = scopegate(&["key", "new", "--prefix", "sk_test_"]);
    assert_eq!(code, 0);
    let key = out
        .lines()
        .find_map(|l| l.strip_prefix("key:    "))
        .unwrap();
    let hash = out
        .lines()
        .find_map(|l| l.strip_prefix("sha256: "))
        .unwrap();
    assert!(key.starts_with("sk_test_") && key.len() > 40);
    assert_eq!(hash, policy::sha256(key));
    assert_ne!(scopegate(&["key", "new"]).1, out, "keys are random");
}

#[test]
fn key_new_prints_a_ready_to_paste_api_keys_entry() {
    let (code, out, _) = scopegate(&["key", "new"]);
    assert_eq!(code, 0);
    let hash = out
        .lines()
        .find_map(|l| l.strip_prefix("sha256: "))
        .unwrap();
    let entry = &out[out.find("api_keys:").expect("an api_keys entry")..];
    assert!(entry.contains(&format!("    sha256: {hash}\n")), "{out}");
    // The entry, with the id and scopes it shows, is a policy `check` accepts.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.yaml");
    std::fs::write(
        &file,
        format!("version: 1\nscopes: {{ a: x }}\nroutes: []\n{entry}"),
    )
    .unwrap();
    let (code, out, err) = scopegate(&["check", "--policy", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(", 1 api key, "), "{out}");
}

#[test]
fn token_refuses_a_scope_the_app_is_not_granted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.yaml");
    std::fs::write(&file, policy::standard()).unwrap();
    let file = file.to_str().unwrap();
    let (code, out, _) = scopegate(&[
        "token",
        "--policy",
        file,
        "--app",
        "app-hs",
        "--scope",
        "bots:read",
    ]);
    assert_eq!(code, 0, "a granted scope narrows: {out}");
    let (code, out, err) = scopegate(&[
        "token",
        "--policy",
        file,
        "--app",
        "app-hs",
        "--scope",
        "bots:read",
        "--scope",
        "admin",
    ]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.contains("is not granted admin") && err.lines().count() == 1,
        "{err}"
    );
    let (code, _, err) = scopegate(&[
        "token", "--policy", file, "--app", "app-hs", "--scope", "nope",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("is not granted nope"), "{err}");
}

/// Every flag of every command says what it is for, and `check`'s usage shows its two
/// files as alternatives.
#[test]
fn every_flag_of_every_command_has_a_description() {
    for cmd in [
        &["run"][..],
        &["demo"],
        &["check"],
        &["explain"],
        &["test"],
        &["token"],
        &["schema"],
        &["key", "new"],
        &["keys", "put"],
        &["keys", "revoke"],
        &["keys", "list"],
        &["keys", "import"],
        &["jwe", "encrypt"],
        &["jwe", "decrypt"],
    ] {
        let (code, out, _) = scopegate(&[cmd, &["--help"]].concat());
        assert_eq!(code, 0, "{cmd:?}");
        let options = &out[out.find("Options:").unwrap()..];
        for line in options
            .lines()
            .skip(1)
            .filter(|l| l.trim_start().starts_with('-'))
        {
            // clap writes the description after the flag, two spaces or more apart.
            let description = line.trim().split_once("  ").map(|(_, d)| d.trim());
            assert!(
                description.is_some_and(|d| !d.is_empty()),
                "{cmd:?}: no description: {line:?}\n{out}"
            );
        }
    }
    let (_, out, _) = scopegate(&["check", "--help"]);
    assert!(
        out.contains("<--config <CONFIG>|--policy <POLICY>>"),
        "{out}"
    );
}

/// `demo` does what it prints: every command's answer is the status and code its title
/// says, and the echo names the upstream (default, or sandbox for a test key).
#[tokio::test]
async fn demo_commands_do_what_they_say() {
    let mut child = Command::new(BIN)
        .args(["demo", "--exit-after", "60s"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut commands, mut pipelines) = (Vec::new(), Vec::new());
    let mut title = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.starts_with("Ctrl-C") {
            break;
        }
        if let Some(t) = line.strip_prefix("# ") {
            title = Some(t.to_string());
        } else if let (Some(t), true) = (title.take(), line.starts_with("curl ")) {
            commands.push((t, line));
        } else if line.starts_with("echo ") {
            pipelines.push(line);
        }
    }
    // The encrypted round trip, run as printed: the client sends and gets only JWE, the
    // upstream saw the plaintext (the echo, decrypted by `jwe decrypt`, shows its body).
    assert_eq!(pipelines.len(), 1, "{pipelines:?}");
    let out = Command::new("bash")
        .args(["-c", &format!("set -o pipefail; {}", pipelines[0])])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let echo: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(echo["body"], "{\"month\": \"2026-11\"}\n");
    assert_eq!(echo["headers"]["content-type"], "application/json");
    assert_eq!(echo["path"], "/api/public/bot/st-1234/getSessions");
    // The same pipeline without `jwe decrypt`: what the client gets is a compact JWE.
    let sealed = pipelines[0].rsplit_once(" | ").unwrap().0;
    let out = Command::new("bash").args(["-c", sealed]).output().unwrap();
    assert_eq!(out.stdout.iter().filter(|&&b| b == b'.').count(), 4);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("month"));
    assert!(commands.len() >= 10, "{commands:?}");
    let mut checked = 0;
    for (title, command) in &commands {
        if command.contains(';') {
            continue; // the operator view: two commands against the admin listener
        }
        let (method, headers, url) = curl(command);
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let a = send(&method, &url, &headers, None).await;
        let mut words = title.split([' ', ':']);
        match words.next().unwrap() {
            "allowed" | "public" => {
                assert_eq!(
                    a.status,
                    200,
                    "{title}: {}",
                    String::from_utf8_lossy(&a.body)
                );
                if title.starts_with("allowed") {
                    let upstream = if title.contains("sandbox") {
                        "sandbox"
                    } else {
                        "default"
                    };
                    let echo: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
                    assert_eq!(echo["upstream"], upstream, "{title}");
                }
            }
            status => {
                assert_eq!(a.status.to_string(), status, "{title}");
                assert_eq!(a.code(), words.next().unwrap(), "{title}");
            }
        }
        checked += 1;
    }
    assert!(checked >= 10);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Method, headers and URL of a demo curl command (single-quoted words, `-X`, `-H`).
fn curl(command: &str) -> (String, Vec<(String, String)>, String) {
    let mut words = Vec::new();
    let mut rest = command;
    while let Some(start) = rest.find(|c: char| !c.is_whitespace()) {
        rest = &rest[start..];
        let (word, next) = match rest.strip_prefix('\'') {
            Some(quoted) => {
                let end = quoted.find('\'').unwrap();
                (&quoted[..end], &quoted[end + 1..])
            }
            None => rest.split_at(rest.find(char::is_whitespace).unwrap_or(rest.len())),
        };
        words.push(word.to_string());
        rest = next;
    }
    let (mut method, mut headers, mut url) = ("GET".to_string(), Vec::new(), String::new());
    let mut it = words.into_iter().skip(1);
    while let Some(w) = it.next() {
        match w.as_str() {
            "-X" => method = it.next().unwrap(),
            "-H" => {
                let h = it.next().unwrap();
                let (k, v) = h.split_once(": ").unwrap();
                headers.push((k.to_string(), v.to_string()));
            }
            w if w.starts_with('-') => {}
            w => url = w.to_string(),
        }
    }
    (method, headers, url)
}

#[tokio::test]
async fn run_serves_logs_without_secrets_and_drains_on_sigterm() {
    run_serve_reload_drain(false).await;
}

/// On one CPU the binary picks tokio's current-thread scheduler: the same life, end to end
/// (serving, a SIGHUP reload through the blocking pool, drain), on that scheduler.
#[tokio::test]
async fn run_on_one_cpu_uses_the_current_thread_scheduler_and_behaves_the_same() {
    run_serve_reload_drain(true).await;
}

/// Rewrites a harness config to fixed free ports (needed to reach a child process).
fn fixed_ports(config_file: &std::path::Path) -> (std::net::SocketAddr, std::net::SocketAddr) {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (addr, admin) = (free(), free());
    let config = std::fs::read_to_string(config_file).unwrap().replace(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0",
        &format!("listen: {addr}\nadmin_listen: {admin}"),
    );
    std::fs::write(config_file, config).unwrap();
    (addr, admin)
}

async fn ready(admin: std::net::SocketAddr) {
    let ready = format!("http://{admin}/readyz");
    eventually(
        Duration::from_secs(10),
        "scopegate run becomes ready",
        || {
            let ready = ready.clone();
            async move { reqwest::get(&ready).await.is_ok_and(|r| r.status() == 200) }
        },
    )
    .await;
}

#[tokio::test]
async fn a_request_cut_at_the_drain_timeout_still_gets_its_access_log_line() {
    let up = Upstream::start().await;
    let builder = ProxyBuilder::new(&policy::standard())
        .upstream("default", up.addr)
        .upstream("sandbox", up.addr)
        .config("limits: { drain_timeout: 300ms }");
    let (_dir, config_file, _) = builder.write();
    let (addr, admin) = fixed_ports(&config_file);
    let child = Command::new(BIN)
        .args(["run", "--config", config_file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ready(admin).await;
    let url = format!("http://{addr}/public/cut");
    let in_flight = tokio::spawn(async move {
        client()
            .get(url)
            .header("x-request-id", "cut-by-the-drain")
            .header("x-test-delay-ms", "5000")
            .send()
            .await
    });
    eventually(
        Duration::from_secs(5),
        "the slow request reaches the upstream",
        || async { up.hits() == 1 },
    )
    .await;
    let started = std::time::Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        in_flight.await.unwrap().is_err(),
        "the cut request got no answer"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line: serde_json::Value = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|l| l["request_id"] == "cut-by-the-drain")
        .unwrap_or_else(|| panic!("no access-log line for the cut request:\n{stdout}"));
    assert_eq!(line["path"], "/public/cut");
    assert_eq!(line["route"], "public");
    assert_eq!(line["code"], "drain_timeout");
    assert_eq!(line["status"], 503);
}

async fn run_serve_reload_drain(one_cpu: bool) {
    let up = Upstream::start().await;
    let builder = ProxyBuilder::new(&policy::standard())
        .upstream("default", up.addr)
        .upstream("sandbox", up.addr);
    let (dir, config_file, _) = builder.write();
    let (addr, admin) = fixed_ports(&config_file);

    // `token` mints for an app of the same policy.
    let policy_file = dir.path().join("policy.yaml");
    let (code, token, _) = scopegate(&[
        "token",
        "--policy",
        policy_file.to_str().unwrap(),
        "--app",
        "app-hs",
        "--ttl",
        "5m",
    ]);
    assert_eq!(code, 0);
    let token = token.trim().to_string();

    let mut command = if one_cpu {
        // taskset execs scopegate, so the child's pid is scopegate's.
        let mut c = Command::new("taskset");
        c.args(["-c", "0", BIN]);
        c
    } else {
        Command::new(BIN)
    };
    let child = command
        .args(["run", "--config", config_file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    ready(admin).await;
    let base = format!("http://{addr}");
    assert_eq!(
        get(&format!("{base}/v1/bots/bot-1"), &[("auth", &token)])
            .await
            .status,
        200
    );
    assert_eq!(
        get(
            &format!("{base}/v1/bots/bot-1"),
            &[("authorization", &format!("Bearer {KEY_READ}"))]
        )
        .await
        .status,
        200
    );
    assert_eq!(
        get(
            &format!("{base}/v1/bots/bot-1?api_key={KEY_ADMIN}"),
            &[("authorization", &format!("Bearer {KEY_DISABLED}"))]
        )
        .await
        .status,
        401
    );
    let forged = format!("{}x", &token[..token.len() - 1]);
    assert_eq!(
        get(&format!("{base}/v1/bots/bot-1"), &[("auth", &forged)])
            .await
            .status,
        401
    );

    // SIGHUP reloads: the read-only key, revoked in the file, stops working.
    let revoked = std::fs::read_to_string(&policy_file)
        .unwrap()
        .replace("{ id: key-read, ", "{ id: key-read, disabled: true, ");
    std::fs::write(&policy_file, revoked).unwrap();
    let signal = |name: &str| {
        assert!(
            Command::new("kill")
                .args([name, &child.id().to_string()])
                .status()
                .unwrap()
                .success()
        )
    };
    signal("-HUP");
    let read_url = format!("{base}/v1/bots/bot-1");
    eventually(Duration::from_secs(10), "SIGHUP revokes key-read", || {
        let url = read_url.clone();
        async move {
            get(&url, &[("authorization", &format!("Bearer {KEY_READ}"))])
                .await
                .status
                == 401
        }
    })
    .await;

    // A slow request in flight when SIGTERM arrives still completes.
    let slow_url = format!("{base}/public/slow");
    let slow = tokio::spawn(async move { get(&slow_url, &[("x-test-delay-ms", "800")]).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal("-TERM");
    assert_eq!(slow.await.unwrap().status, 200, "in-flight request drained");
    let status = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.status.code(), Some(0), "exit 0 after draining");

    let stdout = String::from_utf8_lossy(&status.stdout);
    let lines: Vec<serde_json::Value> = BufReader::new(stdout.as_bytes())
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).expect("access log lines are JSON"))
        .collect();
    // Four requests, the polls until the reload took (at least one), the slow one.
    assert!(lines.len() >= 6, "one line per request:\n{stdout}");
    let (after_reload, slow) = (&lines[lines.len() - 2], &lines[lines.len() - 1]);
    assert_eq!(after_reload["code"], "api_key_disabled");
    assert_eq!(slow["path"], "/public/slow");
    assert_eq!(slow["status"], 200);
    assert_eq!(lines[0]["principal_kind"], "jwt");
    assert_eq!(lines[0]["principal_id"], "app-hs");
    assert_eq!(lines[0]["route"], "bot-read");
    assert_eq!(lines[1]["principal_id"], "key-read");
    assert_eq!(lines[2]["code"], "api_key_disabled");
    assert_eq!(lines[3]["code"], "invalid_token");
    for l in &lines {
        for field in [
            "time",
            "request_id",
            "method",
            "path",
            "status",
            "duration_ms",
        ] {
            assert!(l.get(field).is_some(), "{field} missing in {l}");
        }
    }
    let stderr = String::from_utf8_lossy(&status.stderr);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let scheduler = if one_cpu || cpus == 1 {
        "CurrentThread"
    } else {
        "MultiThread"
    };
    assert!(
        stderr.contains(&format!("\"scheduler\":\"{scheduler}\"")),
        "{stderr}"
    );
    assert!(stderr.contains("policy reloaded"), "{stderr}");
    for secret in [
        token.as_str(),
        &forged,
        KEY_READ,
        KEY_ADMIN,
        KEY_DISABLED,
        HS_SECRET,
        WEBHOOK_SECRET,
    ] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "a secret reached the logs: {secret}"
        );
    }
}

#[test]
fn shipped_example_policy_and_config_pass_check() {
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(REPO)
            .env("REPORTING_CLIENT_SECRET", "example-secret")
            .env("DATA_APP_CLIENT_SECRET", "example-secret-2")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&["check", "--policy", "policies/example.yaml"]);
    run(&["check", "--config", "policies/scopegate.yaml"]);
}

/// The rest of SPEC §1.2's validation list (and §4's shared-key length), each with the line
/// it is reported on, checked through a config so upstream names are known.
#[test]
fn check_reports_the_remaining_validation_errors() {
    let dir = tempfile::tempdir().unwrap();
    let rsa = fixture("app-rsa.pub.pem").display().to_string();
    let jwe = fixture("proxy-jwe-rsa.key.pem").display().to_string();
    let short_key = dir.path().join("short.key");
    std::fs::write(&short_key, "c2hvcnQ").unwrap(); // base64url of 5 bytes
    let policy = format!(
        r#"version: 1
scopes: {{ r: read }}
routes:
  - {{ id: a, methods: [GET], path: /a, auth: [jwt], upstream: nowhere }}
apps:
  - {{ client_id: rs, algorithms: [RS256] }}
  - {{ client_id: dup, algorithms: [HS256], secret: {{ value: s1 }} }}
  - {{ client_id: dup, algorithms: [HS256], secret: {{ value: s2 }} }}
  - {{ client_id: es, algorithms: [ES256], public_key_file: "{rsa}" }}
  - {{ client_id: hdr, algorithms: [HS256], secret: {{ value: s3 }}, claims_to_headers: {{ tenant: x-tenant }} }}
  - {{ client_id: enc, algorithms: [HS256], secret: {{ value: s4 }}, payload_encryption: {{ shared_key: {{ file: "{short}" }} }} }}
api_keys:
  - {{ id: k, sha256: {h1} }}
  - {{ id: k, sha256: {h2} }}
jwe_keys:
  - {{ kid: sg, private_key_file: "{jwe}" }}
  - {{ kid: sg, private_key_file: "{jwe}" }}
"#,
        short = short_key.display(),
        h1 = "a".repeat(64),
        h2 = "b".repeat(64),
    );
    let policy_file = dir.path().join("policy.yaml");
    std::fs::write(&policy_file, policy).unwrap();
    let config = dir.path().join("scopegate.yaml");
    std::fs::write(
        &config,
        "policy_file: policy.yaml\nupstreams: { default: http://127.0.0.1:9 }\n",
    )
    .unwrap();
    let (code, _, err) = scopegate(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_reports(
        &err,
        &policy_file,
        &[
            (4, "upstream \"nowhere\" is not defined in the config"),
            (6, "RS*/PS*/ES*/EdDSA algorithms need a `public_key_file`"),
            (8, "app client_id \"dup\" is used twice"),
            (9, "does not fit the Rsa public key"),
            (
                10,
                "claims_to_headers target \"x-tenant\" must be a header name starting with",
            ),
            (11, "payload_encryption.shared_key"),
            (14, "api key id \"k\" is used twice"),
            (17, "jwe key kid \"sg\" is used twice"),
        ],
    );
}

#[test]
fn explain_prints_the_decision_and_its_checks() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.yaml");
    std::fs::write(&file, policy::standard()).unwrap();
    let p = file.to_str().unwrap();
    let key = format!("Authorization: Bearer {KEY_READ}");
    let explain = |header: &str| {
        scopegate(&[
            "explain",
            "--policy",
            p,
            "--path",
            "/v1/bots/bot-1",
            "-H",
            header,
        ])
    };
    let (code, out, _) = explain(&key);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("route: bot-read\nprincipal: api_key key-read\n"),
        "{out}"
    );
    assert!(out.ends_with("=> 200 ok\n"), "{out}");
    let (code, out, _) = scopegate(&[
        "explain",
        "--policy",
        p,
        "--method",
        "POST",
        "--path",
        "/v1/bots/bot-1",
        "-H",
        &key,
        "--format",
        "json",
    ]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["status"].as_u64(), v["code"].as_str()),
        (Some(403), Some("insufficient_scope"))
    );
    assert_eq!(v["route"], "bot-write");
    assert_eq!(
        v["principal"],
        serde_json::json!({ "kind": "api_key", "id": "key-read" })
    );
    let checks: Vec<(&str, &str)> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["check"].as_str().unwrap(), c["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        checks,
        [
            ("path", "pass"),
            ("route", "pass"),
            ("credential", "pass"),
            ("verify", "pass"),
            ("rate_limit", "skip"),
            ("authorize", "fail")
        ]
    );
    assert!(
        !out.contains(KEY_READ),
        "the key never appears in the trace"
    );
    let (code, out, _) = scopegate(&["explain", "--policy", p, "--path", "/nothing"]);
    assert_eq!(code, 1);
    assert!(
        out.starts_with("route: no_route\n") && out.ends_with("=> 404 no_route\n"),
        "{out}"
    );
    let (code, _, err) = scopegate(&["explain", "--policy", p, "--path", "/x", "-H", "no colon"]);
    assert_eq!(code, 2, "{err}");

    // A single-use jti: the trace says the proxy would consume it; explain consumes nothing
    // anyone else sees, so the same token is explained twice alike.
    let strict = policy::token(
        "app-strict",
        serde_json::json!({ "aud": "https://api.example", "jti": "once-1" }),
    );
    let auth = format!("auth: {strict}");
    for _ in 0..2 {
        let (code, out, _) = explain(&auth);
        assert_eq!(code, 0, "{out}");
        assert!(
            out.contains("verify     pass  jwt app-strict, its single-use jti would be consumed"),
            "{out}"
        );
    }
}

#[test]
fn test_runs_cases_and_reports_every_mismatch_with_its_trace() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.yaml");
    std::fs::write(&file, policy::standard()).unwrap();
    let cases = |name: &str, text: &str| {
        let f = dir.path().join(name);
        std::fs::write(&f, text).unwrap();
        f
    };
    let good = cases(
        "good.yaml",
        r#"- name: the app reads its bot
  request:
    method: GET
    path: /v1/bots/bot-1
    headers: { auth: "{{token app=app-hs}}" }
  expect: { status: 200 }
- name: a token narrowed to another scope cannot read
  request:
    method: GET
    path: /v1/bots/bot-1
    headers: { auth: "{{token app=app-hs scope=reports}}" }
  expect: { status: 403, code: insufficient_scope }
- name: a key from the environment
  request:
    method: GET
    path: /v1/bots/bot-1
    headers: { Authorization: "Bearer {{env SG_TEST_KEY}}" }
  expect: { status: 200 }
"#,
    );
    let run = |cases: &std::path::Path| {
        let out = Command::new(BIN)
            .args([
                "test",
                "--policy",
                file.to_str().unwrap(),
                cases.to_str().unwrap(),
            ])
            .env("SG_TEST_KEY", KEY_READ)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = run(&good);
    assert_eq!((code, out.as_str()), (0, "3 passed, 0 failed\n"));
    let bad = cases(
        "bad.yaml",
        r#"- name: expects too much
  request: { method: POST, path: /v1/bots/bot-1, headers: { auth: "{{token app=app-hs}}" } }
  expect: { status: 200 }
- name: right
  request: { method: GET, path: /nothing }
  expect: { status: 404, code: no_route }
- name: unknown app
  request: { method: GET, path: /v1/bots/bot-1, headers: { auth: "{{token app=nobody}}" } }
  expect: { status: 200 }
"#,
    );
    let (code, out) = run(&bad);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "FAIL expects too much: expected 200 (any code), got 403 insufficient_scope\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("    route: bot-write\n"),
        "the trace follows the mismatch: {out}"
    );
    assert!(
        out.contains("FAIL unknown app: no app with client_id \"nobody\""),
        "{out}"
    );
    assert!(out.ends_with("1 passed, 2 failed\n"), "{out}");
}

#[test]
fn the_shipped_policy_cases_pass() {
    let out = Command::new(BIN)
        .args([
            "test",
            "--policy",
            "policies/example.yaml",
            "policies/example.cases.yaml",
        ])
        .current_dir(REPO)
        .env(
            "REPORTING_CLIENT_SECRET",
            "reporting-secret-0123456789abcdef-0123",
        )
        .env(
            "DATA_APP_CLIENT_SECRET",
            "data-app-secret-0123456789abcdef0123456789abcdef0123456789abcdef",
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.ends_with(" passed, 0 failed\n") && !stdout.starts_with("0 passed"),
        "{stdout}"
    );
}

/// `jwe encrypt` seals to the policy's key, `jwe decrypt` opens with a private key; what
/// they cannot do is an error on standard error and exit 1, never output.
#[test]
fn jwe_encrypts_to_the_policy_and_refuses_what_it_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let key = fixture("proxy-jwe-rsa.key.pem");
    let with_key = dir.path().join("p.yaml");
    std::fs::write(
        &with_key,
        format!(
            "version: 1\nroutes: []\njwe_keys:\n  - {{ kid: k1, private_key_file: \"{}\" }}\n",
            key.display()
        ),
    )
    .unwrap();
    let without = dir.path().join("none.yaml");
    std::fs::write(&without, "version: 1\nroutes: []\n").unwrap();
    let run = |args: &[&str], input: &[u8]| {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), input).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap(),
            out.stdout,
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (p, k) = (with_key.to_str().unwrap(), key.to_str().unwrap());
    let (code, sealed, _) = run(
        &["jwe", "encrypt", "--policy", p, "--cty", "text/plain"],
        b"hello",
    );
    assert_eq!(code, 0);
    assert_eq!(sealed.iter().filter(|&&b| b == b'.').count(), 4);
    assert_eq!(run(&["jwe", "decrypt", "--key", k], &sealed).1, b"hello");

    let refusals: [(&[&str], &[u8], &str); 4] = [
        (
            &["jwe", "encrypt", "--policy", p, "--kid", "k9"],
            b"x",
            "no jwe_keys entry with kid \"k9\"",
        ),
        (
            &["jwe", "encrypt", "--policy", without.to_str().unwrap()],
            b"x",
            "no jwe_keys entry",
        ),
        (
            &["jwe", "decrypt", "--key", k],
            b"not.a.jwe.at.all",
            "cannot decrypt",
        ),
        (&["jwe", "decrypt", "--key", p], &sealed, "p.yaml"),
    ];
    for (args, input, error) in refusals {
        let (code, out, err) = run(args, input);
        assert_eq!((code, out.as_slice()), (1, &b""[..]), "{args:?}: {err}");
        assert!(err.contains(error), "{args:?}: {err}");
    }
}
