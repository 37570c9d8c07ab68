//! JWE cost, to size the proxy's payload-encryption overhead: throughput of
//! encrypt/decrypt per body size for each mode we emit, and the fixed
//! per-message cost of each key-management step on an empty body.
//!
//! Run with `cargo bench --bench jwe`; kept to about a minute and a half.

use std::hint::black_box;
use std::slice::from_ref;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};
use scopegate::jose::{
    ACCEPT_PAYLOAD, DecryptWith, JweKey, Recipient, Serialization, SharedKey, decrypt, encrypt,
    encrypt_to_jwe_key,
};

// Test-only fixture keys shipped with the module's unit tests.
const RSA_PEM: &[u8] = include_bytes!("../src/jose/testdata/test_only_rsa2048_a.pkcs8.pem");
const EC_PEM: &[u8] = include_bytes!("../src/jose/testdata/test_only_p256_a.sec1.pem");
const SHARED: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

const BODY_SIZES: [(usize, &str); 3] =
    [(1024, "1KiB"), (64 * 1024, "64KiB"), (1024 * 1024, "1MiB")];

/// One way of encrypting to the proxy and back.
enum Mode {
    Dir(SharedKey, Recipient),
    KeyPair(&'static str, JweKey),
}

impl Mode {
    fn all() -> [Mode; 3] {
        let shared = SharedKey::parse(SHARED).expect("fixture shared key");
        let key = |kid, pem| JweKey::from_pem(kid, pem).expect("fixture key");
        [
            Mode::Dir(shared.clone(), Recipient::Direct(shared)),
            Mode::KeyPair("rsa-oaep-256", key("rsa", RSA_PEM)),
            Mode::KeyPair("ecdh-es+a256kw", key("ec", EC_PEM)),
        ]
    }

    fn name(&self) -> &'static str {
        match self {
            Mode::Dir(..) => "dir",
            Mode::KeyPair(name, _) => name,
        }
    }

    fn seal(&self, body: &[u8]) -> Vec<u8> {
        match self {
            Mode::Dir(_, recipient) => encrypt(body, None, recipient, Serialization::Compact),
            Mode::KeyPair(_, key) => encrypt_to_jwe_key(body, None, key, Serialization::Compact),
        }
        .expect("encrypts")
    }

    fn open(&self, jwe: &[u8]) -> Vec<u8> {
        let with = match self {
            Mode::Dir(shared, _) => DecryptWith::Shared(shared),
            Mode::KeyPair(_, key) => DecryptWith::Keys(from_ref(key)),
        };
        decrypt(jwe, with, &ACCEPT_PAYLOAD)
            .expect("decrypts")
            .plaintext
    }
}

/// Keeps the whole run short: 20 samples, 1 s warm-up, 3 s measurement.
fn short<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group
}

/// Encrypt and decrypt throughput per body size and mode.
fn body_throughput(c: &mut Criterion) {
    let modes = Mode::all();
    let mut group = short(c, "jwe_body");
    for (size, label) in BODY_SIZES {
        let body = vec![0x5a; size];
        group.throughput(Throughput::Bytes(size as u64));
        for mode in &modes {
            group.bench_with_input(
                BenchmarkId::new(format!("encrypt/{}", mode.name()), label),
                &body,
                |b, body| b.iter(|| mode.seal(black_box(body))),
            );
            let jwe = mode.seal(&body);
            group.bench_with_input(
                BenchmarkId::new(format!("decrypt/{}", mode.name()), label),
                &jwe,
                |b, jwe| b.iter(|| mode.open(black_box(jwe))),
            );
        }
    }
    group.finish();
}

/// Fixed cost per message of key management (RSA wrap/unwrap, ECDH-ES
/// derive+wrap/unwrap), measured on an empty body.
fn per_message(c: &mut Criterion) {
    let mut group = short(c, "jwe_per_message");
    for mode in Mode::all()
        .iter()
        .filter(|mode| matches!(mode, Mode::KeyPair(..)))
    {
        let (wrap, unwrap) = match mode.name() {
            "rsa-oaep-256" => ("rsa-oaep-256 wrap", "rsa-oaep-256 unwrap"),
            _ => ("ecdh-es+a256kw derive+wrap", "ecdh-es+a256kw unwrap"),
        };
        group.bench_function(wrap, |b| b.iter(|| mode.seal(black_box(&[]))));
        let jwe = mode.seal(&[]);
        group.bench_function(unwrap, |b| b.iter(|| mode.open(black_box(&jwe))));
    }
    group.finish();
}

/// The A256GCM bulk part alone: what every mode spends per byte, without the base64 and
/// JSON framing of the JWE around it.
fn bulk_aes_gcm(c: &mut Criterion) {
    use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).expect("key"));
    let mut group = short(c, "jwe_bulk_a256gcm");
    let size = 1024 * 1024;
    group.throughput(Throughput::Bytes(size as u64));
    let plaintext = vec![0x5au8; size];
    let mut sealed = plaintext.clone();
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key([1; 12]),
            Aad::from(b"protected"),
            &mut sealed,
        )
        .expect("seal");
    group.bench_function("seal_1MiB", |b| {
        b.iter(|| {
            let mut buf = plaintext.clone();
            let tag = key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key([1; 12]),
                    Aad::from(b"protected"),
                    &mut buf,
                )
                .expect("seal");
            black_box((buf, tag))
        })
    });
    group.bench_function("open_1MiB", |b| {
        b.iter(|| {
            let mut buf = sealed.clone();
            buf.extend_from_slice(tag.as_ref());
            let n = key
                .open_in_place(
                    Nonce::assume_unique_for_key([1; 12]),
                    Aad::from(b"protected"),
                    &mut buf,
                )
                .expect("open")
                .len();
            black_box(n)
        })
    });
    group.finish();
}

criterion_group!(benches, body_throughput, per_message, bulk_aes_gcm);
criterion_main!(benches);
