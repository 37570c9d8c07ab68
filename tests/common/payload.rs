//! Shared by the payload-encryption tests (tests/payload_*.rs): the policy and its proxy,
//! the joserfc jobs that encrypt requests and decrypt responses, and the checks of what the
//! client and the upstream receive.
#![allow(dead_code)]

use scopegate::policy::compile::sha256_hex;
use serde_json::{Value, json};

use super::jose::*;
use super::*;

pub const JOSE: &str = "application/jose";
pub const JOSE_JSON: &str = "application/jose+json";

pub fn policy() -> String {
    format!(
        r#"version: 1
routes:
  - {{ id: enc-post, methods: [POST], path: /enc, auth: [jwt], encryption: supported }}
  - {{ id: enc-get, methods: [GET], path: /enc, auth: [jwt], encryption: supported }}
  - {{ id: plain, methods: [POST], path: /plain, auth: [jwt] }}
apps:
  - client_id: app-rsa
    algorithms: [HS256]
    secret: {{ value: "{HS_SECRET}" }}
    payload_encryption: {{ public_key_file: "{rsa}" }}
  - client_id: app-ec
    algorithms: [HS256]
    secret: {{ value: "{HS_SECRET}" }}
    payload_encryption: {{ public_key_file: "{ec}" }}
  - client_id: app-dir
    algorithms: [HS256]
    secret: {{ value: "{HS_SECRET}" }}
    payload_encryption: {{ shared_key: {{ file: "{shared}" }} }}
  - client_id: app-plain
    algorithms: [HS256]
    secret: {{ value: "{HS_SECRET}" }}
jwe_keys:
  - {{ kid: sg-rsa, private_key_file: "{jwe_rsa}" }}
  - {{ kid: sg-ec, private_key_file: "{jwe_ec}" }}
"#,
        rsa = key("client-rsa.pub.pem"),
        ec = key("client-ec.pub.pem"),
        shared = key("shared.key"),
        jwe_rsa = key("proxy-jwe-rsa.key.pem"),
        jwe_ec = key("proxy-jwe-ec.key.pem"),
    )
}

pub async fn start() -> (Upstream, Proxy) {
    Proxy::with_upstream(&policy()).await
}

pub fn token(app: &str) -> String {
    hs256(json!({ "appId": app, "exp": now() + 600 }))
}

// ---------------------------------------------------------------- joserfc, in batches

/// What a client encrypts with.
#[derive(Clone, Copy, Debug)]
pub enum To<'a> {
    /// A PEM public key (file name under tests/fixtures/keys).
    Key(&'a str),
    /// A file holding a base64url symmetric key.
    Shared(&'a str),
}

/// A request serialization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ser {
    /// `Content-Type: application/jose`.
    Compact,
    /// Flattened JSON with every header parameter protected (`jose_tool --json`),
    /// `Content-Type: application/jose+json`.
    Flattened,
    /// Flattened JSON as joserfc's own JSON encoder writes it (`--json-native`): `epk` in
    /// the per-recipient unprotected `header`.
    Native,
}

pub const SERS: [Ser; 3] = [Ser::Compact, Ser::Flattened, Ser::Native];

/// `jose_tool encrypt`: `plaintext` to `to`, in serialization `ser`.
pub fn encrypt_job(
    alg: &str,
    enc: &str,
    to: To,
    cty: Option<&str>,
    kid: Option<&str>,
    ser: Ser,
    plaintext: &str,
) -> Value {
    let mut args = vec![
        "encrypt".into(),
        "--alg".into(),
        alg.into(),
        "--enc".into(),
        enc.into(),
    ];
    match to {
        To::Key(name) => args.extend(["--key".into(), key(name)]),
        To::Shared(path) => args.extend(["--shared-file".into(), path.to_string()]),
    }
    if let Some(cty) = cty {
        args.extend(["--cty".into(), cty.into()]);
    }
    if let Some(kid) = kid {
        args.extend(["--kid".into(), kid.into()]);
    }
    match ser {
        Ser::Compact => {}
        Ser::Flattened => args.push("--json".into()),
        Ser::Native => args.push("--json-native".into()),
    }
    json!({ "args": args, "stdin": plaintext })
}

/// `jose_tool decrypt` of a response body, as the app `app` would.
pub fn decrypt_job(app: &str, body: &[u8]) -> Value {
    let (flag, path) = match app {
        "app-rsa" => ("--key", key("client-rsa.key.pem")),
        "app-ec" => ("--key", key("client-ec.key.pem")),
        "app-dir" => ("--shared-file", key("shared.key")),
        other => panic!("no decryption key for {other}"),
    };
    json!({
        "args": ["decrypt", flag, path],
        "stdin": String::from_utf8_lossy(body),
    })
}

/// The `alg` each app's responses must use (SPEC §4: responses always use these, with
/// `enc: A256GCM`).
pub fn response_alg(app: &str) -> &'static str {
    match app {
        "app-rsa" => "RSA-OAEP-256",
        "app-ec" => "ECDH-ES+A256KW",
        "app-dir" => "dir",
        other => panic!("{other} does not encrypt"),
    }
}

// ---------------------------------------------------------------- requests

pub async fn post(p: &Proxy, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    send("POST", &p.url(path), headers, Some(body.to_vec())).await
}

/// Sends `jwe` (compact or flattened, chosen by its first byte) to POST /enc as `app`.
pub async fn post_jwe(p: &Proxy, app: &str, jwe: &str, accept: Option<&str>) -> Answer {
    let ct = if jwe.starts_with('{') {
        JOSE_JSON
    } else {
        JOSE
    };
    let t = token(app);
    let mut headers = vec![("auth", t.as_str()), ("content-type", ct)];
    if let Some(a) = accept {
        headers.push(("accept", a));
    }
    post(p, "/enc", &headers, jwe.as_bytes()).await
}

/// Checks an encrypted response's HTTP framing: status 200, the JOSE media type the request
/// asked for, a correct Content-Length, and the members of the serialization.
pub fn check_sealed(a: &Answer, app: &str, flattened: bool) -> Result<(), String> {
    if a.status != 200 {
        return Err(format!(
            "status {} body {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        ));
    }
    let want = if flattened { JOSE_JSON } else { JOSE };
    if a.header("content-type") != Some(want) {
        return Err(format!(
            "response content-type {:?}, want {want}",
            a.header("content-type")
        ));
    }
    if a.header("content-length") != Some(a.body.len().to_string().as_str()) {
        return Err(format!(
            "content-length {:?} for {} bytes",
            a.header("content-length"),
            a.body.len()
        ));
    }
    if a.headers.contains_key("content-encoding") {
        return Err("content-encoding on a JWE response".into());
    }
    let dir = app == "app-dir";
    if flattened {
        let v: Value = serde_json::from_slice(&a.body)
            .map_err(|e| format!("flattened response is not JSON: {e}"))?;
        let members: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = vec!["ciphertext", "iv", "protected", "tag"];
        if !dir {
            want.push("encrypted_key");
        }
        for m in &want {
            if !members.contains(m) {
                return Err(format!("flattened response lacks {m}: {members:?}"));
            }
        }
        if let Some(extra) = members
            .iter()
            .find(|m| !["ciphertext", "iv", "protected", "tag", "encrypted_key"].contains(m))
        {
            return Err(format!("unexpected member {extra} in {members:?}"));
        }
    } else {
        let text = std::str::from_utf8(&a.body).map_err(|e| e.to_string())?;
        let parts: Vec<&str> = text.split('.').collect();
        if parts.len() != 5 {
            return Err(format!("compact response has {} parts", parts.len()));
        }
        if dir != parts[1].is_empty() {
            return Err(format!("encrypted_key part {:?} for {app}", parts[1]));
        }
    }
    Ok(())
}

/// Checks joserfc's decryption of a response: the header the SPEC requires and the plaintext.
pub fn check_opened(r: &Result<PyOut, String>, app: &str, cty: &str) -> Result<Value, String> {
    let opened = r
        .as_ref()
        .map_err(|e| format!("joserfc cannot decrypt the response: {e}"))?;
    let h = &opened.header;
    let want = json!({ "alg": response_alg(app), "enc": "A256GCM", "cty": cty });
    for name in ["alg", "enc", "cty"] {
        if h[name] != want[name] {
            return Err(format!("response header {name}: {} in {h}", h[name]));
        }
    }
    if h.get("zip").is_some() || h.get("crit").is_some() {
        return Err(format!("response header {h}"));
    }
    serde_json::from_str(&opened.out).map_err(|e| format!("plaintext is not JSON ({e})"))
}

/// Checks what the echo upstream says it received for an encrypted POST of `plaintext`.
pub fn check_upstream_saw(
    echo: &Value,
    app: &str,
    plaintext: &str,
    cty: &str,
) -> Result<(), String> {
    let e = Echo(echo.clone());
    let checks = [
        ("method", echo["method"] == "POST"),
        ("path", e.path() == "/enc"),
        ("body", echo["body"] == plaintext),
        ("body_len", echo["body_len"] == plaintext.len()),
        (
            "body_sha256",
            echo["body_sha256"] == sha256_hex(plaintext.as_bytes()),
        ),
        (
            "content-type",
            e.header("content-type").as_deref() == Some(cty),
        ),
        (
            "content-length",
            e.header("content-length") == Some(plaintext.len().to_string()),
        ),
        (
            "no transfer-encoding",
            e.header("transfer-encoding").is_none(),
        ),
        (
            "accept-encoding",
            e.header("accept-encoding").as_deref() == Some("identity"),
        ),
        ("app id", e.header("x-auth-app-id").as_deref() == Some(app)),
        ("no credential", e.header("auth").is_none()),
    ];
    match checks.iter().find(|(_, ok)| !ok) {
        Some((what, _)) => Err(format!("upstream saw a wrong {what}: {echo}")),
        None => Ok(()),
    }
}
