//! Configuration: sources and their precedence, exact errors, `config` subcommands, and
//! the reference documentation kept in step with the schema.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(common::BIN);
    cmd.args(args);
    // Only the variables a test sets reach the server.
    for (k, _) in std::env::vars() {
        if k.starts_with("ORDO_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn show(args: &[&str], env: &[(&str, &str)]) -> Value {
    let mut all = args.to_vec();
    all.extend(["config", "show"]);
    let out = run(&all, env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// A value for every key, unlike its default, as file value and as text.
fn samples() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        ("role", json!("writer"), "writer"),
        (
            "writer_addr",
            json!("http://writer:8080"),
            "http://writer:8080",
        ),
        ("host", json!("127.0.0.1"), "127.0.0.1"),
        ("port", json!(9123), "9123"),
        ("grpc_port", json!(50123), "50123"),
        ("grpc_addr", json!("127.0.0.1:50124"), "127.0.0.1:50124"),
        ("disable_grpc", json!(true), "true"),
        ("disable_http", json!(false), "false"),
        ("grpc_tls_cert", json!("/tls/cert.pem"), "/tls/cert.pem"),
        ("grpc_tls_key", json!("/tls/key.pem"), "/tls/key.pem"),
        ("grpc_tls_client_ca", json!("/tls/ca.pem"), "/tls/ca.pem"),
        ("rules_dir", json!("/tmp/somewhere"), "/tmp/somewhere"),
        ("watch_rules", json!(true), "true"),
        (
            "database_url",
            json!("postgres://ordo@db.example:5432/ordo"),
            "postgres://ordo@db.example:5432/ordo",
        ),
        ("auto_migrate", json!(true), "true"),
        ("multi_tenancy_enabled", json!(true), "true"),
        ("default_tenant", json!("main"), "main"),
        ("default_tenant_qps", json!(50), "50"),
        ("default_tenant_burst", json!(70), "70"),
        ("default_tenant_timeout_ms", json!(25), "25"),
        ("api_token", json!(["a", "b"]), "a,b"),
        ("max_body_bytes", json!(4096), "4096"),
        ("request_timeout_ms", json!(1234), "1234"),
        ("shutdown_timeout_secs", json!(7), "7"),
        ("worker_threads", json!(3), "3"),
        (
            "nats_url",
            json!("nats://nats.example:4222"),
            "nats://nats.example:4222",
        ),
        ("nats_subject_prefix", json!("acme.rules"), "acme.rules"),
        ("nats_stale_after_secs", json!(9), "9"),
        ("writer_lease_ttl_secs", json!(12), "12"),
        ("instance_id", json!("ordo-7"), "ordo-7"),
        ("log_executions_every", json!(10), "10"),
        ("log_level", json!("debug"), "debug"),
        ("log_format", json!("json"), "json"),
        ("rate_limit.enabled", json!(true), "true"),
        ("rate_limit.default_rps", json!(250), "250"),
        ("rate_limit.default_burst", json!(25), "25"),
        ("rate_limit.endpoints.admin_rps", json!(5), "5"),
        ("rate_limit.endpoints.admin_burst", json!(6), "6"),
        ("rate_limit.endpoints.execute_rps", json!(700), "700"),
        ("rate_limit.endpoints.execute_burst", json!(80), "80"),
        ("rate_limit.max_keys", json!(5000), "5000"),
        (
            "trusted_proxies",
            json!(["10.0.0.0/8", "192.168.1.1"]),
            "10.0.0.0/8,192.168.1.1",
        ),
        ("max_concurrent_executions", json!(64), "64"),
        ("rulesets.include", json!(["orders.*"]), "orders.*"),
        (
            "rulesets.exclude",
            json!(["orders.legacy"]),
            "orders.legacy",
        ),
        ("queue.workers", json!(8), "8"),
        ("queue.buffer_size", json!(50), "50"),
        ("queue.processing_timeout_ms", json!(1500), "1500"),
        ("queue.max_result_size_bytes", json!(4096), "4096"),
        ("queue.max_queue_memory_bytes", json!(8192), "8192"),
        ("queue.dlq_retry_enabled", json!(false), "false"),
        ("queue.dlq_max_retries", json!(9), "9"),
        ("queue.dlq_poll_interval_secs", json!(5), "5"),
        ("queue.trace_retention_hours", json!(1.5), "1.5"),
        ("queue.trace_cleanup_interval_secs", json!(60), "60"),
    ]
}

/// The value at a dotted key.
fn at<'v>(config: &'v Value, key: &str) -> &'v Value {
    config
        .pointer(&format!("/{}", key.replace('.', "/")))
        .unwrap_or(&Value::Null)
}

#[test]
fn every_key_can_come_from_a_file_the_environment_or_a_flag() {
    let mut keys = ordo_server::config::keys();
    keys.sort();
    let mut sample_keys: Vec<String> = samples().iter().map(|(k, _, _)| k.to_string()).collect();
    sample_keys.sort();
    assert_eq!(keys, sample_keys, "the test's samples must cover every key");

    let dir = tempfile::tempdir().unwrap();
    // Nested keys as nested maps, as a file writes them.
    let mut file = json!({});
    for (key, value, _) in samples() {
        let mut at = &mut file;
        let parts: Vec<&str> = key.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            at = at
                .as_object_mut()
                .unwrap()
                .entry(part.to_string())
                .or_insert(json!({}));
        }
        at[parts[parts.len() - 1]] = value;
    }
    let path = write(dir.path(), "all.json", &file.to_string());
    let from_file = show(&["-c", &path], &[]);
    for (key, _, text) in samples() {
        let var = ordo_server::config::env_var(key);
        // A burst needs a rate to go with it; watching needs a directory.
        let (with_env, with_flag): (Vec<(&str, &str)>, Vec<&str>) = match key {
            "default_tenant_burst" => (
                vec![("ORDO_DEFAULT_TENANT_QPS", "60")],
                vec!["--default-tenant-qps=60"],
            ),
            "watch_rules" => (
                vec![("ORDO_RULES_DIR", "/tmp/somewhere")],
                vec!["--rules-dir=/tmp/somewhere"],
            ),
            // Only a writer (with a log to publish) or a reader syncs.
            "nats_url" => (
                vec![
                    ("ORDO_ROLE", "writer"),
                    ("ORDO_RULES_DIR", "/tmp/somewhere"),
                ],
                vec!["--role=writer", "--rules-dir=/tmp/somewhere"],
            ),
            // TLS comes as a certificate and its key, with or without a client CA.
            "grpc_tls_cert" => (
                vec![("ORDO_GRPC_TLS_KEY", "/tls/key.pem")],
                vec!["--grpc-tls-key=/tls/key.pem"],
            ),
            "grpc_tls_key" => (
                vec![("ORDO_GRPC_TLS_CERT", "/tls/cert.pem")],
                vec!["--grpc-tls-cert=/tls/cert.pem"],
            ),
            "grpc_tls_client_ca" => (
                vec![
                    ("ORDO_GRPC_TLS_CERT", "/tls/cert.pem"),
                    ("ORDO_GRPC_TLS_KEY", "/tls/key.pem"),
                ],
                vec![
                    "--grpc-tls-cert=/tls/cert.pem",
                    "--grpc-tls-key=/tls/key.pem",
                ],
            ),
            _ => (Vec::new(), Vec::new()),
        };
        let mut env = with_env.clone();
        env.push((&var, text));
        let from_env = show(&[], &env);
        let flag = ordo_server::config::flag_name(key);
        let arg = format!("{flag}={text}");
        let mut args = with_flag.clone();
        args.push(&arg);
        let from_flag = show(&args, &[]);
        let expected = if key == "api_token" {
            json!(["(hidden)", "(hidden)"])
        } else {
            samples().into_iter().find(|s| s.0 == key).unwrap().1
        };
        assert_eq!(at(&from_file, key), &expected, "{key} from a file");
        assert_eq!(at(&from_env, key), &expected, "{key} from {var}");
        assert_eq!(at(&from_flag, key), &expected, "{key} from {flag}");
    }
}

#[test]
fn later_sources_win() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = write(
        dir.path(),
        "a.yaml",
        "request_timeout_ms: 1111\nshutdown_timeout_secs: 5\nport: 1\nrate_limit:\n  default_rps: 7\n",
    );
    let toml = write(
        dir.path(),
        "b.toml",
        "request_timeout_ms = 2222\n[rate_limit]\nenabled = true\n",
    );
    assert_eq!(show(&[], &[])["request_timeout_ms"], 30000);
    assert_eq!(show(&["-c", &yaml], &[])["request_timeout_ms"], 1111);
    let both = show(&["-c", &yaml, "-c", &toml], &[]);
    assert_eq!(both["request_timeout_ms"], 2222);
    assert_eq!(both["shutdown_timeout_secs"], 5);
    // Sections merge key by key.
    assert_eq!(both["rate_limit"]["default_rps"], 7);
    assert_eq!(both["rate_limit"]["enabled"], true);
    assert_eq!(both["rate_limit"]["default_burst"], 50);
    let env = [("ORDO_REQUEST_TIMEOUT_MS", "3333"), ("ORDO_PORT", "2")];
    let with_env = show(&["-c", &yaml, "-c", &toml], &env);
    assert_eq!(with_env["request_timeout_ms"], 3333);
    assert_eq!(with_env["port"], 2);
    let with_flag = show(
        &["-c", &yaml, "-c", &toml, "--request-timeout-ms", "4444"],
        &env,
    );
    assert_eq!(with_flag["request_timeout_ms"], 4444);
    assert_eq!(with_flag["port"], 2);
    assert_eq!(with_flag["shutdown_timeout_secs"], 5);
    // Seed flag spellings.
    assert_eq!(show(&["-p", "7"], &[])["port"], 7);
    assert_eq!(
        show(&["--multi-tenancy-enabled"], &[])["multi_tenancy_enabled"],
        true
    );
    assert_eq!(
        show(
            &["--multi-tenancy-enabled=false"],
            &[("ORDO_MULTI_TENANCY_ENABLED", "true")]
        )["multi_tenancy_enabled"],
        false
    );
}

#[test]
fn every_bad_key_is_reported_with_its_value_source_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "bad.yaml",
        "colour: red\nlog_format: xml\nworker_threads: 0\n",
    );
    let out = run(
        &["-c", &file, "--max-body-bytes", "12", "config", "validate"],
        &[
            ("ORDO_PORT", "70000"),
            ("ORDO_MULTI_TENANCY_ENABLED", "maybe"),
            ("ORDO_API_TOKEN", ""),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let expected = format!(
        "ordo-server: invalid configuration (6 problems):
  colour (from {file}): unknown key
  multi_tenancy_enabled = \"maybe\" (from ORDO_MULTI_TENANCY_ENABLED): expected true or false
  log_format = \"xml\" (from {file}): \"xml\" is not one of \"text\" or \"json\"
  max_body_bytes = 12 (from --max-body-bytes): 12 is less than the minimum of 1024
  port = 70000 (from ORDO_PORT): 70000 is greater than the maximum of 65535
  worker_threads = 0 (from {file}): 0 is less than the minimum of 1
"
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), expected);

    // Combinations are checked once every value is well formed.
    let out = run(&["--default-tenant-burst", "5", "config", "validate"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "ordo-server: invalid configuration (1 problem):\n  default_tenant_burst = 5 (from --default-tenant-burst): needs default_tenant_qps\n"
    );
    // A database URL is checked for its scheme; its password is never printed.
    let out = run(
        &["--database-url", "mysql://u:pw@h/db", "config", "validate"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "ordo-server: invalid configuration (1 problem):\n  database_url = \"mysql://u:***@h/db\" (from --database-url): must start with sqlite: or postgres://\n"
    );
    let bad_file = write(dir.path(), "x.ini", "port=1");
    let out = run(&["-c", &bad_file, "config", "validate"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("must end in .yaml, .yml, .json or .toml")
    );
    let out = run(&["-c", "/nonexistent/ordo.yaml", "config", "validate"], &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));

    let ok = run(&["--port", "9000", "config", "validate"], &[]);
    assert!(ok.status.success());
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout),
        "configuration is valid\n"
    );
}

#[test]
fn identifiers_are_checked_character_by_character() {
    let out = run(
        &["--instance-id", "a/b", "config", "validate"],
        &[("ORDO_DEFAULT_TENANT", ".hidden")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "ordo-server: invalid configuration (2 problems):
  default_tenant = \".hidden\" (from ORDO_DEFAULT_TENANT): \".hidden\" is not a tenant id: name must not start with '.'
  instance_id = \"a/b\" (from --instance-id): \"a/b\" is not an instance id: letters, digits, '.', '_' and '-' only
"
    );
    for (tenant, instance) in [("t.1_x-Y", "i.2_z-W"), ("-", "."), ("_a", ".a")] {
        let out = run(
            &["--instance-id", instance, "config", "validate"],
            &[("ORDO_DEFAULT_TENANT", tenant)],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{tenant} {instance}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for tenant in ["", "é", "a b", "..", "a..b"] {
        let out = run(&["config", "validate"], &[("ORDO_DEFAULT_TENANT", tenant)]);
        assert_eq!(out.status.code(), Some(2), "{tenant:?}");
    }
}

#[test]
fn a_bad_configuration_stops_the_server_before_it_binds() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run(
        &[
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--request-timeout-ms",
            "soon",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "request_timeout_ms = \"soon\" (from --request-timeout-ms): expected a whole number"
        ),
        "{err}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing is logged before the configuration is good"
    );
}

#[test]
fn tokens_never_appear_in_errors_or_output() {
    let out = run(&["--api-token", "s3cr3t-value,", "config", "validate"], &[]);
    // An empty token in the list is dropped; the rest is valid.
    assert!(out.status.success());
    let shown = run(&["--api-token", "s3cr3t-value", "config", "show"], &[]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        !text.contains("s3cr3t-value") && text.contains("(hidden)"),
        "{text}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "t.json", r#"{"api_token": "s3cr3t-value"}"#);
    let out = run(&["-c", &file, "config", "validate"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("s3cr3t-value") && err.contains("api_token = (hidden)"),
        "{err}"
    );
}

#[test]
fn unknown_ordo_variables_are_warned_about() {
    let out = run(&["config", "validate"], &[("ORDO_PROT", "8080")]);
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        s.contains("ORDO_PROT is not a configuration variable"),
        "{s}"
    );
}

#[test]
fn schema_and_reference_documentation_agree() {
    let out = run(&["config", "schema"], &[]);
    assert!(out.status.success());
    let schema: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema, ordo_server::config::schema());
    assert_eq!(schema["additionalProperties"], false);
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/configuration.md"
    ))
    .unwrap();
    let table = ordo_server::config::docs_table();
    assert!(
        docs.contains(&table),
        "docs/configuration.md is out of date; regenerate its table with `ordo-server config docs`:\n{table}"
    );
}

#[test]
fn nested_keys_are_checked_by_their_full_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "bad.yaml",
        "rate_limit:\n  nope: 1\n  default_rps: 0\n  endpoints:\n    admin_rps: fast\n",
    );
    let out = run(&["-c", &path, "config", "validate"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(text.contains("rate_limit.nope"), "{text}");
    assert!(text.contains("unknown key"), "{text}");
    let out = run(
        &["config", "validate"],
        &[
            ("ORDO_RATE_LIMIT__DEFAULT_RPS", "0"),
            ("ORDO_RATE_LIMIT__ENDPOINTS__ADMIN_RPS", "fast"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        text.contains("rate_limit.default_rps = 0 (from ORDO_RATE_LIMIT__DEFAULT_RPS)"),
        "{text}"
    );
    assert!(
        text.contains(
            "rate_limit.endpoints.admin_rps = \"fast\" (from ORDO_RATE_LIMIT__ENDPOINTS__ADMIN_RPS)"
        ),
        "{text}"
    );
}
