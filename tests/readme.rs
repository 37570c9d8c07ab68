//! The README's "Put it in front of your API" walked as a newcomer would, on a fresh
//! directory: its files, written as shown, pass `check`; `run` starts; each shown `curl`
//! gets the status (and code) its comment promises; a key from `key new`, pasted as shown,
//! is in force at the next reload. Ports are the only thing changed (to free ones).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_scopegate");
const SECTION: &str = "## Put it in front of your API";

/// The section's text, up to the next `## ` heading.
fn section() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme.find(SECTION).expect("the README has the section");
    let rest = &readme[start + SECTION.len()..];
    rest[..rest.find("\n## ").unwrap_or(rest.len())].to_string()
}

/// The fenced blocks of `text` in the given language, in order.
fn blocks(text: &str, lang: &str) -> Vec<String> {
    let fence = format!("```{lang}\n");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(&fence) {
        let body = &rest[i + fence.len()..];
        let end = body.find("```").unwrap();
        out.push(body[..end].to_string());
        rest = &body[end + 3..];
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `scopegate args…` in `dir`, with the app's secret set as the section exports it.
fn scopegate(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("MY_APP_SECRET", SECRET)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const SECRET: &str = "0123456789abcdef0123456789abcdef-readme";

/// A curl line of the section: method, headers, URL, and the `# <status> [code]` comment.
struct Curl {
    headers: Vec<(String, String)>,
    url: String,
    status: u16,
    code: Option<String>,
}

fn curls(sh: &str, vars: &[(&str, &str)]) -> Vec<Curl> {
    let mut out = Vec::new();
    for line in sh.lines().filter(|l| l.starts_with("curl ")) {
        let (command, comment) = line.split_once('#').expect("a curl line says what it gets");
        let mut expected = comment.split_whitespace();
        let status = expected
            .next()
            .unwrap()
            .trim_end_matches(',')
            .parse()
            .unwrap();
        let code = expected
            .next()
            .filter(|c| c.contains('_'))
            .map(String::from);
        let mut command = command.to_string();
        for (name, value) in vars {
            command = command.replace(&format!("${name}"), value);
        }
        let mut headers = Vec::new();
        let mut url = String::new();
        let mut rest = command.trim();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("-H \"") {
                let end = r.find('"').unwrap();
                let (k, v) = r[..end].split_once(": ").unwrap();
                headers.push((k.to_string(), v.to_string()));
                rest = r[end + 1..].trim_start();
            } else {
                let (word, r) = rest.split_once(' ').unwrap_or((rest, ""));
                if word.starts_with("http") {
                    url = word.to_string();
                }
                rest = r.trim_start();
            }
        }
        out.push(Curl {
            headers,
            url,
            status,
            code,
        });
    }
    out
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_readme_walk_from_two_files_to_a_200() {
    let text = section();
    let yaml = blocks(&text, "yaml");
    let sh = blocks(&text, "sh").join("\n");
    let api = Upstream::start().await;
    let (listen, admin) = (free_port(), free_port());
    let ports = [
        ("127.0.0.1:8080", format!("127.0.0.1:{listen}")),
        ("127.0.0.1:9901", format!("127.0.0.1:{admin}")),
        ("127.0.0.1:3000", api.addr.to_string()),
    ];
    let localize = |s: &str| {
        ports
            .iter()
            .fold(s.to_string(), |s, (from, to)| s.replace(from, to))
    };

    // The files, as shown (each block names its file on its first line).
    let dir = tempfile::tempdir().unwrap();
    let mut names = Vec::new();
    for block in &yaml {
        let name = block
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# "))
            .expect("each file block starts with `# <file name>`");
        std::fs::write(dir.path().join(name), localize(block)).unwrap();
        names.push(name.to_string());
    }
    assert_eq!(names, ["scopegate.yaml", "policy.yaml"]);

    // The commands it shows, run as shown.
    for command in [
        "scopegate check --config scopegate.yaml",
        "scopegate run --config scopegate.yaml",
        "scopegate token --policy policy.yaml --app my-app --ttl 10m",
        "scopegate key new",
        "cargo install --locked --path .",
    ] {
        assert!(sh.contains(command), "the section shows {command:?}");
    }
    let (code, out, err) = scopegate(dir.path(), &["check", "--config", "scopegate.yaml"]);
    assert_eq!(code, 0, "check passes the files as written: {out}{err}");

    let server = Running(
        Command::new(BIN)
            .args(["run", "--config", "scopegate.yaml"])
            .current_dir(dir.path())
            .env("MY_APP_SECRET", SECRET)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    eventually(
        Duration::from_secs(20),
        "scopegate run is ready",
        || async {
            let r = client()
                .get(format!("http://127.0.0.1:{admin}/readyz"))
                .send()
                .await;
            r.is_ok_and(|r| r.status() == 200)
        },
    )
    .await;

    let (code, token, err) = scopegate(
        dir.path(),
        &[
            "token",
            "--policy",
            "policy.yaml",
            "--app",
            "my-app",
            "--ttl",
            "10m",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let token = token.trim().to_string();
    let shown = curls(&sh, &[("TOKEN", &token)]);
    assert!(shown.len() >= 3, "the section shows a 200 and refusals");
    for c in &shown {
        let headers: Vec<(&str, &str)> = c
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let a = get(&localize(&c.url), &headers).await;
        assert_eq!(a.status, c.status, "{}", c.url);
        match &c.code {
            Some(code) => assert_eq!(&a.code(), code, "{}", c.url),
            None => {
                let echo = a.echo();
                assert_eq!(echo.header("x-auth-app-id").as_deref(), Some("my-app"));
                assert_eq!(echo.header("x-auth-scopes").as_deref(), Some("orders:read"));
                assert_eq!(echo.header("authorization"), None);
            }
        }
    }

    // An API key: `key new`'s entry pasted into the policy with the scope the text says.
    let (code, out, _) = scopegate(dir.path(), &["key", "new"]);
    assert_eq!(code, 0);
    let key = out
        .lines()
        .find_map(|l| l.strip_prefix("key:    "))
        .unwrap()
        .to_string();
    assert!(text.contains("set its `scopes: [orders:read]`"));
    let entry =
        out[out.find("api_keys:").unwrap()..].replace("scopes: []", "scopes: [orders:read]");
    let policy = dir.path().join("policy.yaml");
    let mut written = std::fs::read_to_string(&policy).unwrap();
    written.push_str(&entry);
    std::fs::write(&policy, written).unwrap();
    let url = format!("http://127.0.0.1:{listen}/orders");
    let bearer = format!("Bearer {key}");
    eventually(
        Duration::from_secs(5),
        "the pasted key is in force",
        || async { get(&url, &[("Authorization", &bearer)]).await.status == 200 },
    )
    .await;
    drop(server);
}
