//! `scopegate schema` (SPEC §2): the committed schemas under `policies/schema/` are the ones
//! the binary generates from the loader's types, every shipped example carries the editor's
//! `$schema` line and validates against its schema, checked by an independent validator
//! (python-jsonschema), which also refuses what the loader refuses.

mod common;

use std::path::Path;
use std::process::Command;

use common::REPO;

const BIN: &str = env!("CARGO_BIN_EXE_scopegate");

fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// python-jsonschema over `files` (configs, policies, Kubernetes manifests holding them).
fn validate(files: &[&Path]) -> (i32, String, String) {
    run(Command::new("python3")
        .arg(Path::new(REPO).join("tests/schema/validate.py"))
        .arg(Path::new(REPO).join("policies/schema"))
        .args(files))
}

#[test]
fn committed_schemas_are_the_generated_ones() {
    for kind in ["config", "policy"] {
        let (code, out, err) = run(Command::new(BIN).args(["schema", kind]));
        assert_eq!(code, 0, "{err}");
        let file = format!("policies/schema/{kind}.schema.json");
        let committed = std::fs::read_to_string(Path::new(REPO).join(&file)).unwrap();
        assert!(
            out == committed,
            "{file} differs from what the loader's types generate; regenerate it with\n  \
             cargo run -q -- schema {kind} > {file}"
        );
        let schema: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
    }
    let (code, _, err) = run(Command::new(BIN).args(["schema", "nonsense"]));
    assert_eq!(code, 2, "{err}");
}

/// The examples that are whole config or policy files, with the schema their first line
/// names for the editor (yaml-language-server), relative to the file.
const EXAMPLES: [(&str, &str); 3] = [
    ("policies/example.yaml", "policy"),
    ("policies/idp.yaml", "policy"),
    ("policies/scopegate.yaml", "config"),
];

#[test]
fn every_example_names_its_schema_for_the_editor() {
    for (file, kind) in EXAMPLES {
        let path = Path::new(REPO).join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let first = text.lines().next().unwrap();
        let schema = first
            .strip_prefix("# yaml-language-server: $schema=")
            .unwrap_or_else(|| panic!("{file}: first line {first:?}"));
        let schema = path.parent().unwrap().join(schema);
        assert_eq!(
            std::fs::canonicalize(schema).unwrap(),
            std::fs::canonicalize(
                Path::new(REPO).join(format!("policies/schema/{kind}.schema.json"))
            )
            .unwrap(),
            "{file}"
        );
    }
}

#[test]
fn every_example_validates_against_its_schema() {
    let dir = tempfile::tempdir().unwrap();
    // The README's own config and policy ("Put it in front of your API").
    let readme = std::fs::read_to_string(Path::new(REPO).join("README.md")).unwrap();
    let mut readme_files = Vec::new();
    for block in readme.split("```yaml\n").skip(1) {
        let block = &block[..block.find("```").unwrap()];
        if let Some(name) = block.lines().next().and_then(|l| l.strip_prefix("# ")) {
            if name == "scopegate.yaml" || name == "policy.yaml" {
                let file = dir.path().join(name);
                std::fs::write(&file, block).unwrap();
                readme_files.push(file);
            }
        }
    }
    assert_eq!(readme_files.len(), 2, "the README's two files");
    let mut files: Vec<std::path::PathBuf> = EXAMPLES
        .iter()
        .map(|(f, _)| Path::new(REPO).join(f))
        .collect();
    for manifest in [
        "deploy/kubernetes/gateway.yaml",
        "deploy/kubernetes/sidecar.yaml",
    ] {
        files.push(Path::new(REPO).join(manifest));
    }
    files.extend(readme_files);
    let paths: Vec<&Path> = files.iter().map(|f| f.as_path()).collect();
    let (code, out, err) = validate(&paths);
    assert_eq!(code, 0, "{out}{err}");
    // 3 examples, a config and a policy in each manifest, the README's two.
    assert_eq!(
        out.lines().filter(|l| l.starts_with("valid ")).count(),
        9,
        "{out}"
    );
}

/// The independent validator is not vacuous: it refuses an unknown key, a wrong type, a
/// missing required field, a misspelt tracing setting.
#[test]
fn the_schema_refuses_what_the_loader_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        "version: 1\nrouts: []\n",
        "version: 1\nroutes:\n  - { id: r, methods: GET, path: /a, auth: [jwt] }\n",
        "version: 1\nroutes:\n  - { id: r, methods: [GET], auth: [jwt] }\n",
        "version: 1\nroutes:\n  - { id: r, methods: [GET], path: /a, auth: [password] }\n",
        "version: 1\napps:\n  - { client_id: a, algorithms: [HS256], secret: { vault: x } }\n",
        "version: one\n",
        "policy_file: p.yaml\nlimits: { max_header_bytes: lots }\n",
        "policy_file: p.yaml\ntracing: { sample_rate: 0.5 }\n",
    ];
    for (i, case) in cases.iter().enumerate() {
        let file = dir.path().join(format!("case{i}.yaml"));
        std::fs::write(&file, case).unwrap();
        let (code, out, err) = validate(&[&file]);
        assert_eq!(code, 1, "{case}\n{out}{err}");
        assert!(out.starts_with("invalid "), "{out}");
        // The loader agrees.
        let flag = if case.starts_with("version") {
            "--policy"
        } else {
            "--config"
        };
        let (code, _, err) = run(Command::new(BIN).args(["check", flag]).arg(&file));
        assert_eq!(code, 1, "{case}\n{err}");
    }
}
