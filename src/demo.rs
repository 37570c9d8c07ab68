//! `scopegate demo`: the proxy in front of a built-in echo upstream, with the example
//! policy, and curl commands that show an allowed request, a 401 and a 403.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use http::{Request, Response, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::wire::{Body, full};

/// An upstream that answers every request with JSON describing what it received: method,
/// path, query and headers, and its own `name`. It lets a user see the identity headers the
/// proxy adds, and which upstream a request was sent to.
pub async fn echo_upstream(listener: TcpListener, name: &'static str) {
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| async move {
                Ok::<_, Infallible>(echo(req, name).await)
            });
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn echo(req: Request<Incoming>, name: &str) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = http_body_util::BodyExt::collect(body)
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned().into(),
            )
        })
        .collect();
    let out = serde_json::json!({
        "echo": "upstream",
        "upstream": name,
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    let mut r = Response::new(full(serde_json::to_vec_pretty(&out).unwrap_or_default()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/json".parse().expect("static value"),
    );
    r
}

/// Writes the demo's config next to the example policy and returns its path.
pub fn write_config(
    dir: &Path,
    policy: &Path,
    default: SocketAddr,
    sandbox: SocketAddr,
) -> std::io::Result<PathBuf> {
    let config = format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\npolicy_file: {}\nupstreams:\n  default: http://{default}\n  sandbox: http://{sandbox}\nenvironments: {{ test: sandbox }}\nlog: {{ format: text, level: warn }}\n",
        policy.display()
    );
    let file = dir.join("scopegate-demo.yaml");
    std::fs::write(&file, config)?;
    Ok(file)
}

/// The fresh credentials the demo minted for itself.
pub struct Credentials {
    /// API key id -> the key.
    pub keys: Vec<(String, String)>,
    /// App client_id -> its fresh HS secret.
    pub secrets: Vec<(String, String)>,
}

/// Copies the example policy with fresh secrets: every HS* app gets a new client secret and
/// every API key a new key (the policy holds only its hash), so the demo never relies on
/// credentials committed anywhere. Relative file paths are made absolute so the copy reads
/// the same key files. The copy is JSON, which is YAML.
pub fn prepare_policy(example: &Path, dir: &Path) -> Result<(PathBuf, Credentials), String> {
    let text =
        std::fs::read_to_string(example).map_err(|e| format!("{}: {e}", example.display()))?;
    let mut doc: serde_json::Value =
        serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", example.display()))?;
    let base = example.parent().unwrap_or(Path::new("."));
    let mut creds = Credentials {
        keys: Vec::new(),
        secrets: Vec::new(),
    };
    let absolute = |v: &mut serde_json::Value| {
        if let Some(p) = v.as_str() {
            *v = crate::yaml::resolve(&base.join("x"), Path::new(p))
                .display()
                .to_string()
                .into();
        }
    };
    for app in doc
        .get_mut("apps")
        .and_then(|a| a.as_array_mut())
        .into_iter()
        .flatten()
    {
        if app.get("secret").is_some() {
            let (secret, _) = crate::auth::api_key::generate("demo-secret-");
            creds.secrets.push((
                app["client_id"].as_str().unwrap_or_default().to_string(),
                secret.clone(),
            ));
            app["secret"] = serde_json::json!({ "value": secret });
        }
        if let Some(v) = app.get_mut("public_key_file") {
            absolute(v);
        }
        if let Some(v) = app
            .get_mut("payload_encryption")
            .and_then(|p| p.get_mut("public_key_file"))
        {
            absolute(v);
        }
        if let Some(v) = app
            .get_mut("payload_encryption")
            .and_then(|p| p.get_mut("shared_key"))
            .and_then(|s| s.get_mut("file"))
        {
            absolute(v);
        }
    }
    for key in doc
        .get_mut("api_keys")
        .and_then(|a| a.as_array_mut())
        .into_iter()
        .flatten()
    {
        let prefix = if key.get("environment").and_then(|e| e.as_str()) == Some("test") {
            "sk_test_"
        } else {
            "sk_live_"
        };
        let (k, hash) = crate::auth::api_key::generate(prefix);
        creds
            .keys
            .push((key["id"].as_str().unwrap_or_default().to_string(), k));
        key["sha256"] = hash.into();
    }
    for key in doc
        .get_mut("jwe_keys")
        .and_then(|a| a.as_array_mut())
        .into_iter()
        .flatten()
    {
        if let Some(v) = key.get_mut("private_key_file") {
            absolute(v);
        }
    }
    let out = dir.join("policy.json");
    std::fs::write(
        &out,
        serde_json::to_vec_pretty(&doc).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    Ok((out, creds))
}

/// What the encrypted round trip's command names: this program, the demo's policy (its
/// `jwe_keys` are what a client encrypts to) and the reporting app's private key.
pub struct Files {
    pub program: PathBuf,
    pub policy: PathBuf,
    pub client_key: PathBuf,
}

/// The text the demo prints: what runs where, and curl commands to paste.
pub fn script(
    policy: &crate::policy::Policy,
    addr: SocketAddr,
    admin: SocketAddr,
    creds: &Credentials,
    files: &Files,
) -> Result<String, String> {
    use std::fmt::Write;
    let now = crate::decide::unix_now() as u64;
    let key = |id: &str| {
        creds
            .keys
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, v)| v.as_str())
            .ok_or(format!("example policy has no api key {id:?}"))
    };
    let app = |id: &str| {
        policy
            .apps
            .get(id)
            .ok_or(format!("example policy has no app {id:?}"))
    };
    let reporting = app(REPORTING_APP)?;
    let token = crate::auth::mint::mint(reporting, policy.app_id_claim(), &[], 600, false, now)?;
    let narrow = crate::auth::mint::mint(
        reporting,
        policy.app_id_claim(),
        &["chat-history".into()],
        600,
        false,
        now,
    )?;
    let expired =
        crate::auth::mint::mint(reporting, policy.app_id_claim(), &[], 1, false, now - 3600)?;
    let base = format!("http://{addr}");
    let mut s = String::new();
    let _ = writeln!(
        s,
        "scopegate demo: proxy on {base}, admin on http://{admin}, two echo upstreams (default, sandbox) behind it."
    );
    let _ = writeln!(
        s,
        "Fresh tokens and keys were minted for this run. Paste any of these:\n"
    );
    let mut cmd = |title: &str, c: String| {
        let _ = writeln!(s, "# {title}\n{c}\n");
    };
    cmd(
        "allowed: the reporting app's JWT (HS256, header `auth`) reads a widget of bot st-1234; the echo shows the x-auth-* identity headers and \"upstream\": \"default\"",
        format!("curl -s -H 'auth: {token}' {base}/api/public/bot/st-1234/dashboard/d1/widget/w1"),
    );
    cmd(
        "allowed: a read-only API key lists a bot's conversations",
        format!(
            "curl -s -H 'Authorization: Bearer {}' {base}/v1/bots/bot_42/conversations",
            key("readonly-server")?
        ),
    );
    cmd(
        "allowed: a test key is routed to the sandbox upstream (environments.test): the echo says \"upstream\": \"sandbox\"",
        format!(
            "curl -s -H 'Authorization: Bearer {}' {base}/v1/bots",
            key("sandbox-ci")?
        ),
    );
    cmd(
        "401 missing_credentials: no credential",
        format!("curl -si {base}/api/public/bot/st-1234/dashboard/d1/widget/w1"),
    );
    cmd(
        "401 token_expired: an expired token",
        format!(
            "curl -si -H 'auth: {expired}' {base}/api/public/bot/st-1234/dashboard/d1/widget/w1"
        ),
    );
    cmd(
        "403 insufficient_scope: the read-only key tries to create a bot",
        format!(
            "curl -si -X POST -H 'Authorization: Bearer {}' {base}/v1/bots",
            key("readonly-server")?
        ),
    );
    cmd(
        "403 insufficient_scope: a token narrowed to chat-history reads a widget",
        format!(
            "curl -si -H 'auth: {narrow}' {base}/api/public/bot/st-1234/dashboard/d1/widget/w1"
        ),
    );
    cmd(
        "403 resource_not_allowed: the reporting app asks for a bot it was not granted",
        format!("curl -si -H 'auth: {token}' {base}/api/public/bot/st-9999/dashboard/d1/widget/w1"),
    );
    cmd(
        "400 invalid_path: an encoded-slash traversal attempt",
        format!(
            "curl -si --path-as-is '{base}/api/public/bot/st-1234%2F..%2Fst-9999/dashboard/d1/widget/w1'"
        ),
    );
    if reporting.payload_encryption.is_some() && files.client_key.exists() {
        let (program, policy_file, key) = (
            files.program.display(),
            files.policy.display(),
            files.client_key.display(),
        );
        cmd(
            "encrypted: the reporting app opted into payload encryption; its body is encrypted to the proxy's key and the answer to the app's, while the upstream sees plaintext: the decrypted echo shows the \"body\" it received",
            format!(
                "echo '{{\"month\": \"2026-11\"}}' | {program} jwe encrypt --policy {policy_file} --cty application/json | curl -s -H 'auth: {token}' -H 'Content-Type: application/jose' --data-binary @- {base}/api/public/bot/st-1234/getSessions | {program} jwe decrypt --key {key}"
            ),
        );
    }
    cmd(
        "public route, no credential needed",
        format!("curl -s {base}/api/health"),
    );
    cmd(
        "operator view: policy in force and metrics",
        format!(
            "curl -s http://{admin}/policy; curl -s http://{admin}/metrics | grep scopegate_requests_total"
        ),
    );
    let _ = writeln!(s, "Ctrl-C stops the demo.");
    Ok(s)
}

/// The example policy's JWT app the demo speaks for.
pub const REPORTING_APP: &str = "cs-5250bdc9-6bfe-5ece-92c9-ab54aa2d4285";
