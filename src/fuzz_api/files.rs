//! The operator's files: the policy (through the real compiler, both of its readings) and
//! the config.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{canonical, names_a_device};
use crate::config::Config;
use crate::policy::compile::{self, Compiled, Context};
use crate::policy::raw::RawPolicy;
use crate::yaml::{self, FileErrors};

/// Where the targets' files "are": relative key paths resolve against `policies/`, so the
/// example policies of the repository compile as seeds.
fn file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("policies")
        .join(name)
}

/// The policy loader (`policy::compile::compile_bytes`). A document starting with `{` is
/// read by serde_json (the fast path for generated policies) and otherwise, or when that
/// reading is refused, by the YAML parser. The differential: whenever serde_json's reading
/// compiles, the YAML parser's reading of the same text compiles to the same policy. Inputs
/// that are YAML but not JSON are also rewritten as JSON and the two texts compared the same
/// way, so the YAML seeds exercise the JSON path too.
pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if names_a_device(text) {
        return;
    }
    let path = file("fuzz.yaml");
    let ctx = Context::standalone();
    let loaded = compile::compile_bytes(&path, data, &ctx);
    let json_reading = both_readings(&path, text, &ctx);
    if let Some(json) = json_reading {
        let loaded = loaded.expect("the JSON reading compiles, the loader refuses");
        assert_eq!(canonical(&json.policy), canonical(&loaded.policy));
        return;
    }
    // YAML (or JSON serde_json refused): the same document as JSON text must compile alike.
    let Ok(doc) = serde_saphyr::from_str::<Value>(text) else {
        return;
    };
    let Ok(as_json) = serde_json::to_string(&doc) else {
        return;
    };
    if let (Ok(yaml), Some(json)) = (&loaded, both_readings(&path, &as_json, &ctx)) {
        assert_eq!(
            canonical(&yaml.policy),
            canonical(&json.policy),
            "the document as YAML and as JSON compile to different policies"
        );
    }
}

/// Compiles `text` as serde_json reads it and as the YAML parser reads it. `Some` when the
/// JSON reading compiles, after asserting that the YAML reading compiles to the same policy.
fn both_readings(path: &Path, text: &str, ctx: &Context) -> Option<Compiled> {
    let sha = compile::sha256_hex(text.as_bytes());
    let raw = serde_json::from_str::<RawPolicy>(text).ok()?;
    let json = compile::compile_raw(path, raw, ctx, sha.clone()).ok()?;
    let yaml: Result<Compiled, FileErrors> = yaml::parse::<RawPolicy>(path, text)
        .map_err(FileErrors::from)
        .and_then(|raw| compile::compile_raw(path, raw, ctx, sha));
    let yaml = match yaml {
        Ok(yaml) => yaml,
        Err(e) => panic!("serde_json's reading compiles, the YAML parser's does not: {e:?}"),
    };
    assert_eq!(
        canonical(&json.policy),
        canonical(&yaml.policy),
        "serde_json and the YAML parser compile one text to different policies"
    );
    assert_eq!(json.referenced_files, yaml.referenced_files);
    let messages = |c: &Compiled| {
        c.warnings
            .iter()
            .map(|w| w.message.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(messages(&json), messages(&yaml));
    Some(json)
}

/// The config loader (`Config::parse`). The differential: a config that loads loads the
/// same when rewritten as JSON text (which is YAML too).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if names_a_device(text) {
        return;
    }
    let path = file("scopegate.yaml");
    let Ok(config) = Config::parse(&path, text) else {
        return;
    };
    let Ok(doc) = serde_saphyr::from_str::<Value>(text) else {
        return;
    };
    let Ok(as_json) = serde_json::to_string(&doc) else {
        return;
    };
    match Config::parse(&path, &as_json) {
        Ok(again) => assert_eq!(canonical(&config), canonical(&again)),
        Err(e) => panic!("the config as JSON is refused: {e:?}"),
    }
}
