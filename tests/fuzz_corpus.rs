//! The fuzz targets on the stable toolchain: every committed seed (`fuzz/seeds/<target>/`)
//! through the same function the libFuzzer target calls (`scopegate::fuzz_api`), and the
//! list of targets kept the same in the library, `fuzz/Cargo.toml`, `fuzz/fuzz_targets/`
//! and `fuzz/seeds/`.
//!
//! The seeds are written by `regenerate_seeds` (ignored; run it with
//! `cargo test --test fuzz_corpus -- --ignored regenerate_seeds` after changing it), except
//! the regression inputs (`regress-*`), which are the crashes the fuzzers found, kept as found.

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use scopegate::fuzz_api::{JWS_SECRET, TARGETS};
use scopegate::jose::jwe::{self, Serialization};
use scopegate::jose::keys::{JweKey, Recipient, SharedKey};
use serde_json::json;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn seeds_dir() -> PathBuf {
    root().join("fuzz/seeds")
}

#[test]
fn every_target_is_a_binary_a_file_and_a_seed_directory() {
    let library: BTreeSet<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    let manifest = std::fs::read_to_string(root().join("fuzz/Cargo.toml")).unwrap();
    let bins: BTreeSet<String> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .map(|n| n.trim_end_matches('"').to_string())
        .filter(|n| n != "scopegate-fuzz")
        .collect();
    let names_in = |dir: &Path, ext: Option<&str>| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| ext.is_none_or(|x| p.extension().is_some_and(|e| e == x)))
            .filter(|p| ext.is_some() || p.is_dir())
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(library, bins, "fuzz/Cargo.toml");
    assert_eq!(
        library,
        names_in(&root().join("fuzz/fuzz_targets"), Some("rs")),
        "fuzz/fuzz_targets"
    );
    assert_eq!(library, names_in(&seeds_dir(), None), "fuzz/seeds");
}

#[test]
fn every_seed_passes_its_target() {
    let mut failed = Vec::new();
    for (name, target) in TARGETS {
        let dir = seeds_dir().join(name);
        let mut seeds: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        seeds.sort();
        assert!(seeds.len() >= 3, "{name}: only {} seeds", seeds.len());
        for seed in seeds {
            let data = std::fs::read(&seed).unwrap();
            if catch_unwind(AssertUnwindSafe(|| target(&data))).is_err() {
                failed.push(seed.display().to_string());
            }
        }
    }
    assert!(
        failed.is_empty(),
        "seeds that fail their target: {failed:#?}"
    );
}

fn write(target: &str, name: &str, data: impl AsRef<[u8]>) {
    let dir = seeds_dir().join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), data).unwrap();
}

fn pem_der(path: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn hs256(header: &serde_json::Value, claims: &serde_json::Value) -> String {
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let key = hmac::Key::new(hmac::HMAC_SHA256, JWS_SECRET.as_bytes());
    format!("{input}.{}", b64(hmac::sign(&key, input.as_bytes())))
}

/// Writes the seed corpus. Deterministic where the formats allow (JWE and ECDSA are
/// randomized, so their seeds change on every run: commit them only when they must change).
#[test]
#[ignore = "writes fuzz/seeds; run by hand"]
fn regenerate_seeds() {
    let now = 1_800_000_000u64;
    // path
    for (i, p) in [
        "/",
        "/v1/bots/bot-1",
        "/a//b/./c/../d",
        "/api/%2e%2e/%2F/%41%7e",
        "/x;y?z#w",
        "/\\..\\etc",
        "/%00/%zz/%",
    ]
    .iter()
    .enumerate()
    {
        write("path", &format!("seed-{i}"), p);
    }

    // jws: mode 0 (a token as sent), mode 1/3/5 (header \0 claims, signed HS256/384/512)
    let hs = json!({"alg": "HS256", "typ": "JWT"});
    let claims = json!({"appId": "app-hs", "sub": "user-1", "exp": now + 300, "iat": now,
        "scope": "read", "tenant": "t-1"});
    let strict = json!({"appId": "app-strict", "iss": "https://issuer.example",
        "aud": ["https://api.example"], "jti": "j-1", "exp": now + 60, "nbf": now - 5});
    let mut tokens = vec![hs256(&hs, &claims), hs256(&hs, &strict)];
    tokens.push(format!(
        "{}.{}.",
        b64(json!({"alg": "none"}).to_string()),
        b64(claims.to_string())
    ));
    let es = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &pem_der("policies/keys/analytics-app.key.pem"),
    )
    .unwrap();
    let input = format!(
        "{}.{}",
        b64(json!({"alg": "ES256", "kid": "k1"}).to_string()),
        b64(json!({"appId": "app-es", "exp": now + 60}).to_string())
    );
    let sig = es.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    tokens.push(format!("{input}.{}", b64(sig.as_ref())));
    tokens.push(hs256(&json!({"alg": "HS256", "crit": ["x"]}), &claims));
    for (i, t) in tokens.iter().enumerate() {
        write(
            "jws",
            &format!("token-{i}"),
            [&[0u8][..], t.as_bytes()].concat(),
        );
    }
    let structured = [
        (1u8, hs.clone(), claims.clone()),
        (1, json!({"alg": "HS256", "kid": "x"}), strict.clone()),
        (
            3,
            json!({"alg": "HS384"}),
            json!({"appId": "app-hs", "exp": 1e300, "scope": 5}),
        ),
        (
            5,
            json!({"alg": "HS512"}),
            json!({"appId": "app-hs", "exp": now, "sub": "a\u{1}b", "jti": ""}),
        ),
        (
            1,
            hs.clone(),
            json!({"azp": "app-hs", "appId": null, "tenant": ["x"]}),
        ),
    ];
    for (i, (mode, h, c)) in structured.iter().enumerate() {
        let data = format!("{h}\0{c}");
        write(
            "jws",
            &format!("signed-{i}"),
            [&[*mode][..], data.as_bytes()].concat(),
        );
    }

    // jwe: mode 0 (as sent), 1 (plaintext to seal), 2 (edits of a fixed message)
    let keys = [
        JweKey::from_pem(
            "sg-demo-rsa",
            &std::fs::read(root().join("policies/keys/scopegate-demo-rsa.key.pem")).unwrap(),
        )
        .unwrap(),
        JweKey::from_pem(
            "sg-demo-ec",
            &std::fs::read(root().join("policies/keys/scopegate-demo-ec.key.pem")).unwrap(),
        )
        .unwrap(),
    ];
    let inner = hs256(&hs, &claims);
    for (k, key) in keys.iter().enumerate() {
        for (s, ser) in [Serialization::Compact, Serialization::Flattened]
            .into_iter()
            .enumerate()
        {
            let sealed = jwe::encrypt_to_jwe_key(inner.as_bytes(), Some("JWT"), key, ser).unwrap();
            write(
                "jwe",
                &format!("token-{k}-{s}"),
                [&[0u8][..], &sealed].concat(),
            );
        }
    }
    let shared = SharedKey::parse("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY").unwrap();
    let dir = jwe::encrypt(
        b"{\"a\":1}",
        None,
        &Recipient::Direct(shared),
        Serialization::Flattened,
    )
    .unwrap();
    write("jwe", "dir-flattened", [&[0u8][..], &dir].concat());
    write("jwe", "plaintext-0", b"\x01{\"hello\":\"world\"}");
    write("jwe", "plaintext-1", b"\x01");
    write("jwe", "edits-0", b"\x02\x00\x05\x00\x01");
    write("jwe", "edits-1", b"\x02\x01\x10\x00\x20\x40\x00\x01");

    // jwks
    let ec = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &pem_der("tests/fixtures/keys/app-ec256.key.pem"),
    )
    .unwrap();
    let point = ec.public_key().as_ref();
    let ec_jwk = json!({"kty": "EC", "crv": "P-256", "kid": "ec-1", "use": "sig", "alg": "ES256",
        "x": b64(&point[1..33]), "y": b64(&point[33..65])});
    let rsa = RsaKeyPair::from_pkcs8(&pem_der("tests/fixtures/keys/app-rsa.key.pem")).unwrap();
    let rsa_jwk = json!({"kty": "RSA", "kid": "rsa-1",
        "n": b64(rsa.public_key().modulus().big_endian_without_leading_zero()),
        "e": b64(rsa.public_key().exponent().big_endian_without_leading_zero())});
    let ed =
        signature::Ed25519KeyPair::from_pkcs8(&pem_der("tests/fixtures/keys/app-ed25519.key.pem"))
            .unwrap();
    let ed_jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(ed.public_key().as_ref())});
    let oct = json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0", "alg": "HS256"});
    let enc =
        json!({"kty": "EC", "crv": "P-256", "use": "enc", "x": ec_jwk["x"], "y": ec_jwk["y"]});
    write(
        "jwks",
        "mixed",
        json!({"keys": [ec_jwk, rsa_jwk, ed_jwk, oct, enc]}).to_string(),
    );
    write("jwks", "rsa-only", json!({"keys": [rsa_jwk]}).to_string());
    write(
        "jwks",
        "ec-no-kid",
        json!({"keys": [{"kty": "EC", "crv": "P-256",
        "x": ec_jwk["x"], "y": ec_jwk["y"]}]})
        .to_string(),
    );
    write("jwks", "not-a-set", b"{\"keys\": {}}");

    // policy: the repository's policies, one as JSON, and small ones
    for name in ["example.yaml", "idp.yaml"] {
        let text = std::fs::read(root().join("policies").join(name)).unwrap();
        write("policy", name, &text);
    }
    let small = "version: 1\nscopes: { read: Read }\nroutes:\n  - { id: r, methods: [GET], path: \"/r/{id}\", auth: [jwt, api_key], scopes: [read] }\napps:\n  - { client_id: a, algorithms: [HS256], secret: { value: s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t }, scopes: [read] }\n";
    write("policy", "small.yaml", small);
    let doc: serde_json::Value = serde_saphyr::from_str(small).unwrap();
    write(
        "policy",
        "small.json",
        serde_json::to_string_pretty(&doc).unwrap(),
    );
    let text = std::fs::read_to_string(root().join("policies/example.yaml")).unwrap();
    let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    write("policy", "example.json", doc.to_string());

    // config
    write(
        "config",
        "scopegate.yaml",
        std::fs::read(root().join("policies/scopegate.yaml")).unwrap(),
    );
    write(
        "config",
        "minimal.yaml",
        "version: 1\nlisten: 127.0.0.1:8080\npolicy_file: example.yaml\nupstreams:\n  default: http://127.0.0.1:9000\n",
    );
    write(
        "config",
        "upstreams.json",
        r#"{"version":1,"listen":"127.0.0.1:0","policy_file":"example.yaml","upstreams":{"default":"http://127.0.0.1:9000","bots":{"url":"https://bots.internal:8443","server_name":"bots"}}}"#,
    );

    // framing: a seed byte for the read sizes, then raw request bytes
    let requests: [&[u8]; 5] = [
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\ncontent-length: 0\r\n\r\n",
        b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
        b"POST / HTTP/1.1\nTRANSFER-ENCODING: chunked\nCONTENT-LENGTH: 3\n\nabc",
        b"\r\r\ncontent-length: 1\r\n\r\r\ntransfer-encoding: x\r\n\r\n",
    ];
    for (i, r) in requests.iter().enumerate() {
        write(
            "framing",
            &format!("request-{i}"),
            [&[i as u8 * 37][..], r].concat(),
        );
    }

    // credential: headers, one per line
    for (i, h) in [
        "authorization: Bearer a.b.c\nauth: a.b.c",
        "authorization: bearer  x.y.z.w.v \nx-other: 1",
        "auth: sk_live_0123456789",
        "authorization: Basic dTpw\nauth: k",
        "authorization: Bearer a\nauth: b",
        "auth: a\nauth: a",
        "authorization: Bearer a b",
    ]
    .iter()
    .enumerate()
    {
        write("credential", &format!("headers-{i}"), h);
    }

    // webhook: header \n body
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"fuzz-webhook-secret");
    let mac = hmac::sign(&key, format!("{now}.{{}}").as_bytes());
    write(
        "webhook",
        "signed",
        format!("t={now},v1={}\n{{}}", hex::encode(mac)),
    );
    write(
        "webhook",
        "two-signatures",
        format!("t={now}, v1=00, v1={}\n{{}}", hex::encode(mac)),
    );
    write("webhook", "no-timestamp", "v1=abcd\n{\"event\":\"x\"}");
    write(
        "webhook",
        "stale",
        format!("t=0{},v1=zz\n\u{1}\u{2}", now - 1000),
    );

    // token_body
    for (i, b) in [
        r#"{"accessKey":"ak-1","secretKey":"sk-1"}"#,
        r#"{"accessKey":"ak-1","secretKey":"sk-1","extra":[1,2,{"x":null}]}"#,
        r#"{"accessKey":"a","accessKey":"b","secretKey":"c"}"#,
        r#"{"accessKey":"\u00e9\ud83d\ude00","secretKey":""}"#,
        r#"{"accessKey":1,"secretKey":"x"}"#,
    ]
    .iter()
    .enumerate()
    {
        write("token_body", &format!("body-{i}"), b);
    }
}
