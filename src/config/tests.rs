//! Unit tests of `config`: the config file's forms, defaults and errors at their lines.
use super::*;

fn load_str(text: &str) -> Result<Config, FileErrors> {
    let file = Path::new("/etc/scopegate/scopegate.yaml");
    let raw: RawConfig = yaml::parse(file, text)?;
    Config::from_raw(file, raw)
}

#[test]
fn full_config_parses_with_defaults_filled() {
    let c = load_str(
        "listen: 127.0.0.1:8080\npolicy_file: p.yaml\nupstreams:\n  sandbox: http://127.0.0.1:3001\n  default: http://127.0.0.1:3000/base/\nenvironments: { test: sandbox }\nlimits: { upstream_timeout: 250ms }\n",
    )
    .unwrap();
    assert_eq!(c.upstreams[0].name, "default");
    assert_eq!(c.upstreams[0].base_path, "/base");
    assert_eq!(c.environments["test"], 1);
    assert_eq!(c.limits.upstream_timeout, Duration::from_millis(250));
    assert_eq!(c.limits.drain_timeout, Duration::from_secs(30));
    assert_eq!(c.limits.websocket_idle_timeout, Duration::from_secs(3600));
    assert_eq!(c.policy_file, Path::new("/etc/scopegate/p.yaml"));
    assert_eq!(c.unmatched, Unmatched::Deny);
}

#[test]
fn the_tracing_block_parses_with_defaults_filled() {
    let c = load_str(
        "policy_file: p\nupstreams: { default: http://a:1 }\ntracing:\n  otlp_endpoint: http://collector:4318/otlp/\n  sample_ratio: 0.05\n  service_name: edge\n",
    )
    .unwrap();
    let t = c.tracing.unwrap();
    assert_eq!(t.traces_url(), "http://collector:4318/otlp/v1/traces");
    assert_eq!(t.sample_ratio, 0.05);
    assert_eq!(t.service_name, "edge");

    let t = load_str("policy_file: p\nupstreams: { default: http://a:1 }\ntracing: {}\n")
        .unwrap()
        .tracing
        .unwrap();
    assert_eq!(t.traces_url(), "http://127.0.0.1:4318/v1/traces");
    assert_eq!(t.sample_ratio, 1.0);
    assert_eq!(t.service_name, "scopegate");

    let off = load_str("policy_file: p\nupstreams: { default: http://a:1 }\n").unwrap();
    assert!(off.tracing.is_none(), "off by default");
}

#[test]
fn bad_tracing_values_are_refused_at_their_lines() {
    let head = "policy_file: p\nupstreams: { default: http://a:1 }\ntracing:\n";
    let cases = [
        (
            "  otlp_endpoint: https://collector:4318\n",
            4,
            "tracing.otlp_endpoint: https:// is not supported by this version (SPEC §7)",
        ),
        (
            "  otlp_endpoint: grpc://collector:4317\n",
            4,
            "is not an http:// URL",
        ),
        ("  otlp_endpoint: \"http://\"\n", 4, "tracing.otlp_endpoint"),
        (
            "  otlp_endpoint: http://c:4318/?x=1\n",
            4,
            "cannot carry a query string",
        ),
        (
            "  service_name: edge\n  sample_ratio: 1.5\n",
            5,
            "tracing.sample_ratio: 1.5 is not between 0 and 1",
        ),
        ("  sample_ratio: -0.1\n", 4, "not between 0 and 1"),
        ("  sample_ratio: .nan\n", 4, "not between 0 and 1"),
        (
            "  service_name: \"\"\n",
            4,
            "tracing.service_name: must not be empty",
        ),
        ("  sample_rate: 0.5\n", 4, "sample_rate"),
    ];
    for (body, line, message) in cases {
        let e = load_str(&format!("{head}{body}")).unwrap_err();
        assert_eq!(e.0[0].line, line, "{body}: {e}");
        assert!(e.to_string().contains(message), "{body}: {e}");
    }
}

#[test]
fn unknown_key_is_an_error_with_a_line() {
    let e = load_str("policy_file: p.yaml\nupstreams: { default: http://a:1 }\nunmatchd: deny\n")
        .unwrap_err();
    assert_eq!(e.0[0].line, 3, "{e}");
    assert!(e.to_string().contains("unmatchd"), "{e}");
}

#[test]
fn missing_default_upstream_and_bad_env_are_reported_together() {
    let e = load_str(
        "policy_file: p.yaml\nupstreams: { other: http://a:1 }\nenvironments: { test: nope }\n",
    )
    .unwrap_err();
    let lines: Vec<u64> = e.0.iter().map(|e| e.line).collect();
    assert_eq!(lines, [2, 3], "{e}");
}

#[test]
fn an_environment_name_other_than_live_or_test_is_refused() {
    let e = load_str(
        "policy_file: p\nupstreams: { default: http://a:1, sandbox: http://b:1 }\n\
         environments:\n  tset: sandbox\n",
    )
    .unwrap_err();
    assert_eq!(e.0[0].line, 4, "{e}");
    assert!(e.to_string().contains("environments.tset"), "{e}");
}

#[test]
fn every_invalid_value_is_reported_at_its_line() {
    let e = load_str(
        "policy_file: p.yaml\nlisten: nowhere\nupstreams:\n  default: ftp://a:1\n\
         replay_store: mongo\nidentity_header_prefix: 'x auth'\n\
         limits: { max_header_bytes: 10 }\nlog: { level: loud }\n",
    )
    .unwrap_err();
    let lines: Vec<u64> = e.0.iter().map(|e| e.line).collect();
    assert_eq!(lines, [2, 4, 5, 6, 7, 8], "{e}");
    assert!(
        e.to_string()
            .contains("scopegate.yaml:4: upstreams.default"),
        "{e}"
    );
}

#[test]
fn authz_makes_listen_and_upstreams_optional_and_only_then() {
    let c = load_str("policy_file: p\nauthz: { listen: 127.0.0.1:9191 }\n").unwrap();
    assert_eq!((c.listen, c.upstreams.len()), (None, 0));
    let a = c.authz.unwrap();
    assert_eq!((a.listen.port(), a.statuses), (9191, AuthzStatuses::Exact));
    // Without authz the public listener has its default, and needs its upstream.
    let c = load_str("policy_file: p\nupstreams: { default: http://a:1 }\n").unwrap();
    assert_eq!(c.listen, "0.0.0.0:8080".parse().ok());
    assert!(load_str("policy_file: p\n").is_err());
    // Both listeners: the proxy one still needs its upstream.
    let e = load_str(
        "policy_file: p\nlisten: 127.0.0.1:1\nauthz: { listen: 127.0.0.1:2, statuses: nginx }\n",
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("a `default` upstream is required"),
        "{e}"
    );
    let e =
        load_str("policy_file: p\nauthz:\n  listen: somewhere\n  statuses: envoy\n").unwrap_err();
    assert!(
        e.to_string().contains("scopegate.yaml:4:") && e.to_string().contains("exact, nginx"),
        "{e}"
    );
    let e = load_str("policy_file: p\nauthz:\n  listen: somewhere\n").unwrap_err();
    assert!(
        e.to_string().contains("scopegate.yaml:3: authz.listen"),
        "{e}"
    );
}

#[test]
fn stores_take_a_server_or_a_cluster() {
    let c = load_str(
        "policy_file: p\nupstreams: { default: http://a:1 }\n\
         replay_store: redis+cluster://a:7000,b:7001\nkey_store: redis://k:6379/1\n",
    )
    .unwrap();
    assert_eq!(
        c.replay_store,
        ReplayStoreConfig::Redis("redis+cluster://a:7000,b:7001".into())
    );
    assert_eq!(c.key_store.as_deref(), Some("redis://k:6379/1"));
    let e =
        load_str("policy_file: p\nupstreams: { default: http://a:1 }\nkey_store: memcached://k\n")
            .unwrap_err();
    assert_eq!(e.0[0].line, 3, "{e}");
    assert!(e.to_string().contains("key_store:"), "{e}");
}

#[test]
fn long_form_upstreams_parse_beside_short_ones() {
    let c = load_str(
        "policy_file: p\nupstreams:\n  default: https://api.example\n  legacy:\n    url: https://10.0.0.9:8443/base\n    ca_file: certs/ca.crt\n    client_cert_file: certs/sg.crt\n    client_key_file: /abs/sg.key\n    server_name: legacy.internal\n    http2: true\n  grpc: { url: http://127.0.0.1:50051, http2: true }\n",
    )
    .unwrap();
    let [default, grpc, legacy] = &c.upstreams[..] else {
        panic!("{:?}", c.upstreams)
    };
    let t = default.tls.as_ref().unwrap();
    assert_eq!(
        (t.server_name.as_str(), default.port()),
        ("api.example", 443)
    );
    assert!(t.ca_file.is_none() && t.client_cert.is_none() && !default.http2);
    assert!(grpc.tls.is_none() && grpc.http2 && grpc.port() == 50051);
    let t = legacy.tls.as_ref().unwrap();
    assert_eq!(t.server_name, "legacy.internal");
    assert_eq!(
        t.ca_file.as_deref(),
        Some(Path::new("/etc/scopegate/certs/ca.crt"))
    );
    assert_eq!(
        t.client_cert,
        Some(("/etc/scopegate/certs/sg.crt".into(), "/abs/sg.key".into()))
    );
    assert_eq!((legacy.base_path.as_str(), legacy.http2), ("/base", true));
}

#[test]
fn invalid_long_form_upstreams_are_refused_at_their_line() {
    let e = load_str(
        "policy_file: p\nupstreams:\n  default:\n    url: http://a:1\n    ca_file: ca.crt\n  b:\n    url: https://b\n    client_cert_file: c.crt\n  c:\n    url: https://c\n    server_name: 'not a name'\n  d: ftp://d\n",
    )
    .unwrap_err();
    let lines: Vec<u64> = e.0.iter().map(|e| e.line).collect();
    assert_eq!(lines, [4, 7, 10, 12], "{e}");
    let text = e.to_string();
    for m in [
        "upstreams.default: ca_file needs an https:// url",
        "upstreams.b: client_cert_file and client_key_file go together",
        "upstreams.c: server_name \"not a name\"",
        "upstreams.d: scheme \"ftp\" is not supported",
    ] {
        assert!(text.contains(m), "{m}: {text}");
    }
    let e =
        load_str("policy_file: p\nupstreams:\n  default:\n    url: http://a:1\n    htp2: true\n")
            .unwrap_err();
    assert!(e.to_string().contains("htp2"), "{e}");
}
