//! The bodies of the fuzz targets (`fuzz/`), one function per target, each taking the
//! fuzzer's bytes. They live in the library so that the libFuzzer targets and the stable
//! `cargo test` that replays the committed seeds (`tests/fuzz_corpus.rs`) run the same code,
//! and so they can reach what the crate does not otherwise export. Not an API: nothing else
//! may call these.
//!
//! Every body must never panic on any input; a panic (or a failed `assert!`, which is how the
//! invariants and the differentials between two readings of one input are stated) is a bug.

pub(crate) mod edge;
mod files;
mod jose;

pub use edge::{credential, framing, path, token_body, webhook};
pub use files::{config, policy};
pub use jose::{JWS_SECRET, jwe, jwks, jws};

/// A target's body: the fuzzer's bytes in, a panic for a bug.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/Cargo.toml` names its binaries.
pub const TARGETS: &[(&str, Target)] = &[
    ("path", path),
    ("jws", jws),
    ("jwe", jwe),
    ("jwks", jwks),
    ("policy", policy),
    ("config", config),
    ("framing", framing),
    ("credential", credential),
    ("webhook", webhook),
    ("token_body", token_body),
];

/// The fixed clock of the targets (a run must not depend on when it happens).
const NOW: i64 = 1_800_000_000;

/// Files the fuzzer must not make the loaders open: devices that block or never end.
fn names_a_device(text: &str) -> bool {
    ["/dev", "/proc", "/sys"].iter().any(|d| text.contains(d))
}

/// Whether `bytes` are JSON by RFC 8259's grammar: UTF-8, and one value with nothing after
/// it, read by serde_json without building it. A `Value` would refuse more than the grammar
/// does: a lone surrogate escape, a number past f64's range (`1E100000000`, found by the
/// `jws` target in a skipped header member), both valid JSON that a reader skipping the
/// member accepts.
fn is_json(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

/// The lines of a pretty `Debug` rendering, sorted: two values built from the same input
/// have the same multiset of lines even where a `HashMap` lists them in another order (each
/// map has its own hasher seed).
fn canonical<T: std::fmt::Debug>(value: &T) -> Vec<String> {
    let mut lines: Vec<String> = format!("{value:#?}").lines().map(str::to_owned).collect();
    lines.sort_unstable();
    lines
}
