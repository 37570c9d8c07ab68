//! `scopegate check` reports every error of a file in one run (issue 19): each structural
//! error (unknown key, wrong type, missing field, unknown value) at its line, then the
//! semantic errors of everything else, and YAML syntax errors on the line of the cause with
//! a hint. The real binary, on files written to a temp dir.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_scopegate");

fn check(flag: &str, file: &Path) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["check", flag])
        .arg(file)
        .env("APP_SECRET", "0123456789abcdef0123456789abcdef")
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The error lines of `err` are exactly `expected` (line, text it contains), in that order.
fn assert_errors(err: &str, file: &Path, expected: &[(u32, &str)]) {
    let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("warning:")).collect();
    let path = file.display().to_string();
    assert_eq!(lines.len(), expected.len(), "{err}");
    for (got, (line, what)) in lines.iter().zip(expected) {
        assert!(
            got.starts_with(&format!("{path}:{line}: ")) && got.contains(what),
            "expected {line}: {what}\n in\n{err}"
        );
    }
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn a_policy_with_three_structural_and_two_semantic_mistakes_gets_all_five() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "policy.yaml",
        r#"version: 1
scopes:
  bots:read: View bots
routes:
  - id: list-bots
    methods: [GET]
    path: /bots
    auth: [jwt, password]
    scopes: [bots:raed]
  - id: bot
    methods: [GET]
    path: /bots/{botId}
    auth: [jwt]
    resource: { kind: bots, param: id }
    mode: enforce
apps:
  - client_id: app
    algoritms: [HS256]
    algorithms: [HS256]
    secret: { env: APP_SECRET }
    scopes: [bots:read]
    require_exp: maybe
"#,
    );
    let (code, err) = check("--policy", &policy);
    assert_eq!(code, 1);
    assert_errors(
        &err,
        &policy,
        &[
            (
                8,
                "routes[0].auth[1]: unknown variant `password`, expected one of `jwt`, `api_key`, `webhook`, `none`",
            ),
            (9, "scope \"bots:raed\" is not declared"),
            (14, "resource param \"id\" is not a parameter"),
            (
                18,
                "apps[0]: unknown field `algoritms`, did you mean `algorithms`?",
            ),
            (
                22,
                "apps[0].require_exp: invalid type: a string, expected true or false",
            ),
        ],
    );
}

#[test]
fn a_config_with_three_structural_and_two_semantic_mistakes_gets_all_five() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy.yaml", "version: 1\n");
    let config = write(
        dir.path(),
        "scopegate.yaml",
        "listen: 127.0.0.1:80800
policy_file: policy.yaml
upstreams:
  default: http://127.0.0.1:3000
  other: { url: ftp://legacy, http3: true }
limits:
  max_header_bytes: lots
log: { format: text, level: loud }
tracing:
  otlp_endpoint: https://127.0.0.1:4318
",
    );
    let (code, err) = check("--config", &config);
    assert_eq!(code, 1);
    assert_errors(
        &err,
        &config,
        &[
            (1, "listen: \"127.0.0.1:80800\" is not an address:port"),
            (
                5,
                "upstreams.other: unknown field `http3`, did you mean `http2`?",
            ),
            (5, "upstreams.other: scheme \"ftp\" is not supported"),
            (
                7,
                "limits.max_header_bytes: invalid type: a string, expected an integer",
            ),
            (8, "log.level: \"loud\" is not trace|debug|info|warn|error"),
            // A SPEC form not built keeps its own words, not "invalid value".
            (
                10,
                "tracing.otlp_endpoint: https:// is not supported by this version (SPEC §7)",
            ),
        ],
    );
}

/// Missing fields and wrong shapes, in block and flow style, and in a JSON policy (read
/// again as YAML for its lines); what is cut to let the rest load does not hide the rest.
#[test]
fn missing_fields_wrong_shapes_and_json_policies_are_each_reported_at_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "policy.yaml",
        r#"scopes: { a: x }
routes:
  - { id: r1, methods: [GET], auth: [jwt] }
  - id: r2
    methods: GET
    path: /r2
    auth: [jwt]
  - { id: r3, methods: [GET], path: /r3, auth: [jwt], scopes: [b] }
apps:
  - { client_id: c, algorithms: [HS256], secret: { vault: x } }
"#,
    );
    let (code, err) = check("--policy", &policy);
    assert_eq!(code, 1);
    assert_errors(
        &err,
        &policy,
        &[
            (
                1,
                "missing field `version`: add `version: 1` as the file's first line",
            ),
            (3, "routes[0]: missing field `path`"),
            (
                5,
                "routes[1].methods: invalid type: a string, expected a list",
            ),
            (
                10,
                "apps[0].secret: expected exactly one of `env`, `file`, `value`",
            ),
        ],
    );

    let json = write(
        dir.path(),
        "policy.json",
        "{\n  \"version\": 1,\n  \"scopes\": {\"a\": \"x\"},\n  \"routes\": [\n    {\"id\": \"r\", \"methods\": [\"GET\"], \"path\": \"/r\", \"auth\": [\"jwt\"], \"scopes\": [\"b\"], \"upstrem\": \"x\"}\n  ],\n  \"apps\": [{\"client_id\": \"c\", \"algorithms\": \"HS256\"}]\n}\n",
    );
    let (code, err) = check("--policy", &json);
    assert_eq!(code, 1);
    assert_errors(
        &err,
        &json,
        &[
            (
                5,
                "routes[0]: unknown field `upstrem`, did you mean `upstream`?",
            ),
            (5, "scope \"b\" is not declared"),
            (
                7,
                "apps[0].algorithms: invalid type: a string, expected a list",
            ),
        ],
    );
}

/// The loader stays the authority: what the schema cannot see (a key given twice) is still
/// refused, with the parser's own error.
#[test]
fn what_the_schema_does_not_catch_the_loader_still_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "policy.yaml",
        "version: 1\nscopes:\n  a: x\n  a: y\n",
    );
    let (code, err) = check("--policy", &policy);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("{}:4: ", policy.display())) && err.contains("duplicate"),
        "{err}"
    );
}

/// A YAML syntax error is reported on the line of its cause, which the parser often meets
/// lines later, with what it is: an unclosed bracket or quote, a tab, a bad indentation.
#[test]
fn syntax_errors_name_their_cause_on_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "version: 1\nroutes:\n  - id: r\n    methods: [GET\n    path: /a\n    auth: [jwt]\n",
            4,
            "unclosed `[`: the `[` on line 4 is never closed with `]`",
        ),
        (
            "version: 1\nscopes: {a: x, b: y\nroutes: []\n",
            2,
            "unclosed `{`: the `{` on line 2 is never closed with `}`",
        ),
        (
            "version: 1\nroutes:\n  - { id: r, methods: [GET], path: /a, auth: [jwt, api_key }\n",
            3,
            "unclosed `[`: the `[` on line 3 is never closed with `]`",
        ),
        (
            "version: 1\nscopes:\n  a: \"read\n  b: write\nroutes: []\n",
            3,
            "unclosed `\"`: the quoted value opened on line 3 is never closed",
        ),
        (
            "version: 1\nscopes:\n  a: 'it''s\n  b: write\n",
            3,
            "unclosed `'`: the quoted value opened on line 3 is never closed",
        ),
        (
            "version: 1\nscopes:\n  a: read\n\tb: write\n",
            4,
            "a tab indents this line: YAML indents with spaces only",
        ),
        (
            "version: 1\nscopes:\n  a: read\n   b: write\nroutes: []\n",
            4,
            "bad indentation: this line is indented by 3 spaces, the entry above by 2",
        ),
        (
            "version: 1\nroutes:\n  - id: r\n     methods: [GET]\n",
            4,
            "bad indentation: this line is indented by 5 spaces, the entry above by 4",
        ),
    ];
    for (i, (text, line, hint)) in cases.iter().enumerate() {
        let file = write(dir.path(), &format!("case{i}.yaml"), text);
        let (code, err) = check("--policy", &file);
        assert_eq!(code, 1, "{text}");
        assert_eq!(err.lines().count(), 1, "{text}\n{err}");
        assert!(
            err.starts_with(&format!("{}:{line}: {hint} (the parser: ", file.display())),
            "{text}\n{err}"
        );
    }
}

/// A hostile file nested far deeper than any policy is refused with one error, no crash and
/// no false hint.
#[test]
fn deep_nesting_is_refused_without_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let deep = format!(
        "version: 1\nscopes: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let policy = write(dir.path(), "policy.yaml", &deep);
    let (code, err) = check("--policy", &policy);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains("unclosed"), "{err}");
}

/// The same hints in a config, and a multi-line flow list that is closed is no cause.
#[test]
fn syntax_hints_hold_for_the_config_and_only_for_real_causes() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "scopegate.yaml",
        "policy_file: p.yaml\nupstreams:\n  default: \"http://127.0.0.1:3000\n  sandbox: http://127.0.0.1:3001\n",
    );
    let (code, err) = check("--config", &config);
    assert_eq!(code, 1);
    assert!(
        err.starts_with(&format!("{}:3: unclosed `\"`", config.display())),
        "{err}"
    );
    // Closed brackets over several lines, then a type error: no syntax hint.
    let policy = write(
        dir.path(),
        "policy.yaml",
        "version: 1\nscopes: {\n  a: x,\n  b: y }\nroutes:\n  - { id: r, methods: [GET], path: /a, auth: jwt }\n",
    );
    let (code, err) = check("--policy", &policy);
    assert_eq!(code, 1);
    assert!(
        err.starts_with(&format!(
            "{}:6: routes[0].auth: invalid type: a string, expected a list",
            policy.display()
        )),
        "{err}"
    );
}

/// A secret written where a map or a list was expected is not echoed by its error (a hot
/// reload logs these).
#[test]
fn a_misplaced_secret_is_not_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "sk_live_9f2c0a7b1e4d4c7e8a6b5d3c2b1a0f9e";
    let policy = write(
        dir.path(),
        "policy.yaml",
        &format!(
            "version: 1\napps:\n  - client_id: c\n    algorithms: [HS256]\n    secret: {secret}\n    payload_encryption: {{ shared_key: {{ value: [{secret}] }} }}\nroutes:\n  - {{ id: r, methods: [GET], path: /r, auth: [{secret}] }}\n"
        ),
    );
    let (code, err) = check("--policy", &policy);
    assert_eq!(code, 1);
    for what in [
        "5: apps[0].secret: invalid type: a string, expected a map",
        "6: apps[0].payload_encryption.shared_key: expected exactly one of `env`, `file`, `value`",
        "8: routes[0].auth[0]: unknown value, expected one of `jwt`, `api_key`, `webhook`, `none`",
    ] {
        assert!(err.contains(what), "{what}\n{err}");
    }
    assert!(!err.contains(secret), "{err}");
}
