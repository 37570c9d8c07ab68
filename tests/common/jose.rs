//! The independent JOSE implementation (Python joserfc, tests/interop/jose_tool.py) and the
//! byte-level editing of the tokens and JWEs it makes: one home for the interop tests.
//!
//! Jobs run in batches (tests/interop/jose_batch.py runs jose_tool's own commands in one
//! Python process). Python and joserfc are required: without them the tests fail, never skip.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

use super::{REPO, fixture};

/// The path of a key under tests/fixtures/keys, as a string for a policy or a jose_tool flag.
pub fn key(name: &str) -> String {
    let p = fixture(name);
    assert!(p.exists(), "missing fixture {}", p.display());
    p.display().to_string()
}

pub fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

// ---------------------------------------------------------------- jose_tool jobs

/// A `jose_tool` invocation (argv, stdin), run later by [`run`] or [`batch`].
#[derive(Clone, Debug)]
pub struct Job(pub Vec<String>, pub Option<String>);

impl From<&Job> for Value {
    fn from(j: &Job) -> Value {
        json!({ "args": j.0, "stdin": j.1 })
    }
}

/// `sign --alg ALG (--secret|--key) --claims JSON [--header JSON]`. `claims` is raw JSON text
/// (so that `Infinity`/`NaN` can be written); `signer` is a secret for HS*, else a PEM path.
pub fn sign_raw(alg: &str, signer: &str, claims: &str, header: Option<Value>) -> Job {
    let flag = if alg.starts_with("HS") {
        "--secret"
    } else {
        "--key"
    };
    let mut a = vec![
        "sign".into(),
        "--alg".into(),
        alg.into(),
        flag.into(),
        signer.into(),
        "--claims".into(),
        claims.into(),
    ];
    if let Some(h) = header {
        a.extend(["--header".into(), h.to_string()]);
    }
    Job(a, None)
}

pub fn sign(alg: &str, signer: &str, claims: &Value) -> Job {
    sign_raw(alg, signer, &claims.to_string(), None)
}

pub fn sign_h(alg: &str, signer: &str, claims: &Value, header: Value) -> Job {
    sign_raw(alg, signer, &claims.to_string(), Some(header))
}

pub fn sign_none(claims: &Value, header: Option<Value>) -> Job {
    let mut a: Vec<String> = vec!["sign-none".into(), "--claims".into(), claims.to_string()];
    if let Some(h) = header {
        a.extend(["--header".into(), h.to_string()]);
    }
    Job(a, None)
}

pub fn confusion(pubkey: &str, alg: &str, claims: &Value) -> Job {
    Job(
        vec![
            "sign-confusion".into(),
            "--pubkey".into(),
            pubkey.into(),
            "--alg".into(),
            alg.into(),
            "--claims".into(),
            claims.to_string(),
        ],
        None,
    )
}

/// `jwe-token --jws JWS --key PROXY_PUB --alg ALG [--kid KID] [--zip]`.
pub fn wrap(jws: &str, pubkey: &str, alg: &str, kid: Option<&str>, zip: bool) -> Job {
    let mut a: Vec<String> = vec![
        "jwe-token".into(),
        "--jws".into(),
        jws.into(),
        "--key".into(),
        pubkey.into(),
        "--alg".into(),
        alg.into(),
    ];
    if let Some(k) = kid {
        a.extend(["--kid".into(), k.into()]);
    }
    if zip {
        a.push("--zip".into());
    }
    Job(a, None)
}

/// `encrypt ARGS < plaintext` (compact JWE, any alg/enc joserfc knows).
pub fn encrypt(plaintext: &str, args: &[&str]) -> Job {
    let mut a: Vec<String> = vec!["encrypt".into()];
    a.extend(args.iter().map(|s| s.to_string()));
    Job(a, Some(plaintext.into()))
}

// ---------------------------------------------------------------- running jobs

/// One result of tests/interop/jose_batch.py: stdout, and for `decrypt` the
/// protected header it printed.
#[derive(Debug)]
pub struct PyOut {
    pub out: String,
    pub header: Value,
}

/// Runs jobs (jose_batch.py's JSON: `{"args", "stdin"}` or `{"unwrap_cek"}`) in one Python
/// process and returns their results in order. A job that failed is `Err(message)`.
pub fn run_batch(jobs: &[Value]) -> Vec<Result<PyOut, String>> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("python3")
        .arg(Path::new(REPO).join("tests/interop/jose_batch.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is required for interop tests (CI installs joserfc)");
    let input = serde_json::to_vec(jobs).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "jose_batch failed (is joserfc installed?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results.len(), jobs.len());
    results
        .into_iter()
        .map(|r| match r.get("error") {
            Some(e) => Err(e.as_str().unwrap_or_default().to_string()),
            None => Ok(PyOut {
                out: r["out"].as_str().unwrap().to_string(),
                header: r["header"].clone(),
            }),
        })
        .collect()
}

/// Like [`run_batch`], for jobs that must all succeed.
pub fn run_batch_ok(jobs: &[Value]) -> Vec<PyOut> {
    run_batch(jobs)
        .into_iter()
        .zip(jobs)
        .map(|(r, j)| r.unwrap_or_else(|e| panic!("jose_tool {}: {e}", j["args"])))
        .collect()
}

/// Runs `jose_tool` jobs that must all succeed and returns their outputs in order.
pub fn run(jobs: &[Job]) -> Vec<String> {
    let jobs: Vec<Value> = jobs.iter().map(Value::from).collect();
    run_batch_ok(&jobs).into_iter().map(|o| o.out).collect()
}

/// [`run_batch`] off the runtime's thread (the proxy under test runs on it), within 60 s.
pub async fn batch(jobs: Vec<Value>) -> Vec<Result<PyOut, String>> {
    let run = tokio::task::spawn_blocking(move || run_batch(&jobs));
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("jose_batch did not finish within 60 s")
        .unwrap()
}

/// Like [`batch`], for jobs that must all succeed.
pub async fn batch_ok(jobs: Vec<Value>) -> Vec<PyOut> {
    let what: Vec<String> = jobs.iter().map(|j| j["args"].to_string()).collect();
    batch(jobs)
        .await
        .into_iter()
        .zip(what)
        .map(|(r, what)| r.unwrap_or_else(|e| panic!("jose_tool {what}: {e}")))
        .collect()
}

/// Runs one `jose_tool` command in its own Python process and returns its stdout.
pub fn jose_tool(args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("python3")
        .arg(Path::new(REPO).join("tests/interop/jose_tool.py"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is required for interop tests (CI installs joserfc)");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "jose_tool {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Signs `claims` with the independent implementation (`key_or_secret`: a secret for HS*,
/// else a PEM path).
pub fn py_sign(alg: &str, key_or_secret: &str, claims: &Value) -> String {
    let Job(args, _) = sign_raw(alg, key_or_secret, &claims.to_string(), None);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    String::from_utf8(jose_tool(&args, None)).unwrap()
}

// ---------------------------------------------------------------- byte-level editing

/// The dot-separated parts of a compact JWS or JWE.
pub fn parts(t: &str) -> Vec<String> {
    t.split('.').map(str::to_string).collect()
}

pub fn part(t: &str, i: usize) -> &str {
    t.split('.').nth(i).unwrap()
}

pub fn decode_part(t: &str, i: usize) -> Value {
    serde_json::from_slice(&B64.decode(part(t, i)).unwrap()).unwrap()
}

/// `t` with part `i` replaced by `new`; every other part is kept byte for byte.
pub fn replace_part(t: &str, i: usize, new: &str) -> String {
    let mut parts: Vec<&str> = t.split('.').collect();
    parts[i] = new;
    parts.join(".")
}

/// Re-encodes the JSON of part `i` after `f` edits it; every other part is kept byte for byte.
pub fn edit_json(t: &str, i: usize, f: impl FnOnce(&mut Value)) -> String {
    let mut v = decode_part(t, i);
    f(&mut v);
    replace_part(t, i, &B64.encode(v.to_string()))
}

/// Decodes the protected header, lets `f` edit it, re-encodes it (a JWE's tag then fails too).
pub fn edit_header(t: &str, f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    edit_json(t, 0, |h| f(h.as_object_mut().unwrap()))
}

/// `edit_header` for one string member.
pub fn set_header(t: &str, name: &str, value: &str) -> String {
    edit_header(t, |h| {
        h.insert(name.into(), value.into());
    })
}

/// Replaces the base64url character at `at` of part `i` with another ('A', or 'B' for an 'A').
fn flip_char_at(t: &str, i: usize, at: impl FnOnce(usize) -> usize) -> String {
    let p = part(t, i);
    assert!(!p.is_empty(), "part {i} of {t} is empty");
    let mut chars: Vec<char> = p.chars().collect();
    let at = at(chars.len());
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    replace_part(t, i, &chars.into_iter().collect::<String>())
}

/// Changes the first character of part `i`, which flips bits of its first decoded byte.
pub fn flip(t: &str, i: usize) -> String {
    flip_char_at(t, i, |_| 0)
}

/// Replaces one base64url character in the middle of part `i` with another.
pub fn flip_char(t: &str, i: usize) -> String {
    flip_char_at(t, i, |len| len / 2)
}

/// Flips one bit in the middle of the decoded bytes of part `i` and re-encodes it.
pub fn flip_bit(t: &str, i: usize) -> String {
    let mut bytes = B64.decode(part(t, i)).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    replace_part(t, i, &B64.encode(bytes))
}

/// Drops the last `n` bytes of the decoded part `i`.
pub fn shorten(t: &str, i: usize, n: usize) -> String {
    let bytes = B64.decode(part(t, i)).unwrap();
    replace_part(t, i, &B64.encode(&bytes[..bytes.len() - n]))
}

/// A compact JWE in the flattened JSON serialization.
pub fn to_flattened(t: &str) -> String {
    let p = parts(t);
    json!({
        "protected": p[0], "encrypted_key": p[1], "iv": p[2], "ciphertext": p[3], "tag": p[4],
    })
    .to_string()
}
