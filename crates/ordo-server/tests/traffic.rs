//! Traffic control, black box: platform, tenant and ruleset rate limits, load shedding
//! and which rulesets an instance serves.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, Instant};

use common::{Server, ruleset};
use serde_json::{Value, json};

/// `ruleset(name)` with `extra` merged into its config.
fn with_config(name: &str, extra: Value) -> Value {
    let mut r = ruleset(name, "1.0.0", "OK");
    for (k, v) in extra.as_object().unwrap() {
        r["config"][k] = v.clone();
    }
    r
}

fn execute_as(s: &Server, name: &str, headers: &[(&str, &str)]) -> u16 {
    s.send_json_as(
        "POST",
        &format!("/api/v1/execute/{name}"),
        &json!({"input": {"x": 1}}),
        headers,
    )
    .status
}

/// How many of `n` executions pass.
fn passed(s: &Server, name: &str, headers: &[(&str, &str)], n: usize) -> usize {
    (0..n)
        .filter(|_| execute_as(s, name, headers) == 200)
        .count()
}

#[test]
fn the_platform_limit_admits_exactly_the_burst_per_client_and_group() {
    let s = Server::start(&[
        "--rate-limit.enabled",
        "--rate-limit.default-rps",
        "1",
        "--rate-limit.default-burst",
        "5",
        "--rate-limit.endpoints.admin-burst",
        "30",
    ]);
    assert_eq!(
        s.post("/api/v1/rulesets", &ruleset("r", "1", "OK")).status,
        201
    );
    assert_eq!(passed(&s, "r", &[], 12), 5);
    let refused = s.post("/api/v1/execute/r", &json!({"input": {}}));
    assert_eq!(refused.status, 429, "{}", refused.text);
    assert_eq!(refused.json()["code"], "RATE_LIMITED");
    assert_eq!(refused.header("retry-after").as_deref(), Some("1"));
    // The admin group has buckets of its own.
    assert_eq!(s.get("/api/v1/rulesets/r").status, 200);
    // Health and metrics are never limited.
    for _ in 0..10 {
        assert_eq!(s.get("/healthz/ready").status, 200);
    }
    let metrics = s.get("/metrics").text;
    assert!(
        metrics.contains("ordo_rejected_total{reason=\"rate_limit_platform\"} 8"),
        "{metrics}"
    );
}

#[test]
fn a_spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing() {
    let s = Server::start(&[
        "--rate-limit.enabled",
        "--rate-limit.default-rps",
        "1",
        "--rate-limit.default-burst",
        "3",
    ]);
    s.post("/api/v1/rulesets", &ruleset("r", "1", "OK"));
    // Each request claims another client; the socket's peer is what counts.
    let ok = (0..8)
        .filter(|i| {
            let ip = format!("198.51.100.{i}");
            execute_as(&s, "r", &[("x-forwarded-for", &ip)]) == 200
        })
        .count();
    assert_eq!(ok, 3);
}

#[test]
fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket() {
    let s = Server::start(&[
        "--rate-limit.enabled",
        "--rate-limit.default-rps",
        "1",
        "--rate-limit.default-burst",
        "2",
        "--trusted-proxies",
        "127.0.0.0/8",
    ]);
    s.post("/api/v1/rulesets", &ruleset("r", "1", "OK"));
    assert_eq!(passed(&s, "r", &[("x-forwarded-for", "203.0.113.1")], 4), 2);
    assert_eq!(passed(&s, "r", &[("x-forwarded-for", "203.0.113.2")], 4), 2);
    // A forged hop left of the proxy's own entry is not believed.
    assert_eq!(
        passed(&s, "r", &[("x-forwarded-for", "6.6.6.6, 203.0.113.2")], 2),
        0
    );
}

#[test]
fn a_rulesets_limit_keys_by_key_logic_and_falls_back_to_the_client_ip() {
    ruleset_limit_keys_by_key_logic();
}

fn ruleset_limit_keys_by_key_logic() {
    // No platform limiter: the ruleset's own limit applies all the same.
    let s = Server::start(&["--trusted-proxies", "127.0.0.1"]);
    let limited = with_config(
        "keyed",
        json!({"rate_limit": {"requests_per_second": 1, "burst": 2,
                              "key_logic": {"var": "headers.x-api-key"}}}),
    );
    assert_eq!(s.post("/api/v1/rulesets", &limited).status, 201);
    // Each key has its own bucket.
    assert_eq!(passed(&s, "keyed", &[("x-api-key", "alice")], 4), 2);
    assert_eq!(passed(&s, "keyed", &[("x-api-key", "bob")], 4), 2);
    let refused = s.send_json_as(
        "POST",
        "/api/v1/execute/keyed",
        &json!({"input": {}}),
        &[("x-api-key", "alice")],
    );
    assert_eq!(refused.status, 429);
    assert!(refused.header("retry-after").is_some());
    // No key: one bucket per client, not one shared by every keyless request.
    let client = |ip: &'static str| [("x-forwarded-for", ip)];
    assert_eq!(passed(&s, "keyed", &client("203.0.113.1"), 4), 2);
    assert_eq!(passed(&s, "keyed", &client("203.0.113.2"), 4), 2);
    // Another ruleset is not limited at all.
    s.post("/api/v1/rulesets", &ruleset("free", "1", "OK"));
    assert_eq!(passed(&s, "free", &[], 10), 10);
}

#[test]
fn a_key_logic_that_is_not_jsonlogic_is_refused_and_changes_nothing() {
    let s = Server::start(&[]);
    let bad = with_config(
        "bad",
        json!({"rate_limit": {"requests_per_second": 5, "key_logic": {"no_such_operator": [1]}}}),
    );
    let r = s.post("/api/v1/rulesets", &bad);
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("key_logic"), "{}", r.text);
    assert_eq!(s.get("/api/v1/rulesets/bad").status, 404);
    for (extra, field) in [
        (
            json!({"rate_limit": {"requests_per_second": 0}}),
            "requests_per_second",
        ),
        (
            json!({"rate_limit": {"requests_per_second": 1, "burst": 0}}),
            "burst",
        ),
        (
            json!({"backpressure": {"max_concurrent": 0}}),
            "max_concurrent",
        ),
        (json!({"rate_limit": {"rps": 1}}), "rps"),
    ] {
        let r = s.post("/api/v1/rulesets", &with_config("bad", extra));
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(r.text.contains(field), "{field}: {}", r.text);
    }
}

fn drained_bucket_survives_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ordo.yaml");
    std::fs::write(&config, "request_timeout_ms: 30000\n").unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let s = Server::start(&[
        "--rules-dir",
        rules.to_str().unwrap(),
        "-c",
        config.to_str().unwrap(),
    ]);
    let limited = |description: &str| {
        let mut r = with_config(
            "slow",
            json!({"rate_limit": {"requests_per_second": 1, "burst": 3}}),
        );
        r["config"]["description"] = json!(description);
        r
    };
    assert_eq!(s.post("/api/v1/rulesets", &limited("v1")).status, 201);
    assert_eq!(passed(&s, "slow", &[], 5), 3);
    // A new version with the same limit, a reload of the rules and of the
    // configuration: none of them refills the bucket.
    assert_eq!(s.post("/api/v1/rulesets", &limited("v2")).status, 200);
    assert_eq!(
        s.get("/api/v1/rulesets/slow").json()["config"]["description"],
        "v2"
    );
    assert_eq!(s.post("/api/v1/admin/reload", &json!({})).status, 200);
    // (The test harness sets the log level by flag, which a file cannot override.)
    std::fs::write(&config, "request_timeout_ms: 20000\n").unwrap();
    common::wait_for("the configuration reload", Duration::from_secs(10), || {
        s.log_text().contains("configuration reloaded")
    });
    assert_eq!(execute_as(&s, "slow", &[]), 429);
    // A changed limit is a new bucket.
    let mut faster = limited("v3");
    faster["config"]["rate_limit"]["burst"] = json!(4);
    assert_eq!(s.post("/api/v1/rulesets", &faster).status, 200);
    assert_eq!(passed(&s, "slow", &[], 6), 4);
}

#[test]
fn a_drained_bucket_survives_reloads() {
    drained_bucket_survives_reloads();
}

/// Polls until `check` holds: admission happens when the server reads the headers.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    common::wait_for(what, Duration::from_secs(10), &mut check);
}

fn overloaded_ruleset_sheds_at_once_while_another_answers() {
    let s = Server::start(&[]);
    let bounded = with_config("bounded", json!({"backpressure": {"max_concurrent": 2}}));
    assert_eq!(s.post("/api/v1/rulesets", &bounded).status, 201);
    assert_eq!(
        s.post("/api/v1/rulesets", &ruleset("other", "1", "OK"))
            .status,
        201
    );
    let held = common::hold(&s, "bounded", 2);
    eventually("two executions held", || {
        s.get("/metrics")
            .text
            .contains("ordo_executions_in_flight 2")
    });
    let started = Instant::now();
    let shed = s.post("/api/v1/execute/bounded", &json!({"input": {}}));
    let took = started.elapsed();
    assert_eq!(shed.status, 503, "{}", shed.text);
    assert_eq!(shed.json()["code"], "OVERLOADED");
    assert!(took < Duration::from_millis(500), "shed after {took:?}");
    // The other ruleset is not affected.
    assert_eq!(execute_as(&s, "other", &[]), 200);
    assert!(
        s.get("/metrics")
            .text
            .contains("ordo_rejected_total{reason=\"overloaded_ruleset\"} 1")
    );
    // Slots come back when the held requests end.
    drop(held);
    eventually("the slots released", || {
        execute_as(&s, "bounded", &[]) == 200
    });
}

#[test]
fn an_overloaded_ruleset_sheds_at_once_while_another_answers() {
    overloaded_ruleset_sheds_at_once_while_another_answers();
}

#[test]
fn the_instance_bound_sheds_every_ruleset() {
    let s = Server::start(&["--max-concurrent-executions", "1"]);
    s.post("/api/v1/rulesets", &ruleset("a", "1", "OK"));
    s.post("/api/v1/rulesets", &ruleset("b", "1", "OK"));
    let held = common::hold(&s, "a", 1);
    eventually("one execution held", || {
        s.get("/metrics")
            .text
            .contains("ordo_executions_in_flight 1")
    });
    let shed = s.post("/api/v1/execute/b", &json!({"input": {}}));
    assert_eq!(shed.status, 503, "{}", shed.text);
    assert_eq!(shed.json()["code"], "OVERLOADED");
    // Management is not an execution: it still answers.
    assert_eq!(s.get("/api/v1/rulesets").status, 200);
    drop(held);
    eventually("the slot released", || execute_as(&s, "b", &[]) == 200);
}

#[test]
fn an_instance_serves_only_the_rulesets_its_filters_choose() {
    filters_choose_rulesets();
}

fn filters_choose_rulesets() {
    let s = Server::start(&[
        "--rulesets.include",
        "orders.*,payments.*",
        "--rulesets.exclude",
        "orders.legacy",
    ]);
    for name in [
        "orders.new",
        "orders.legacy",
        "payments.card",
        "analytics.daily",
    ] {
        // Writes go to the store whatever this instance serves.
        assert_eq!(
            s.post("/api/v1/rulesets", &ruleset(name, "1", "OK")).status,
            201
        );
    }
    assert_eq!(execute_as(&s, "orders.new", &[]), 200);
    assert_eq!(execute_as(&s, "payments.card", &[]), 200);
    for name in ["orders.legacy", "analytics.daily"] {
        let r = s.post(&format!("/api/v1/execute/{name}"), &json!({"input": {}}));
        assert_eq!(r.status, 404, "{name}: {}", r.text);
        assert_eq!(s.get(&format!("/api/v1/rulesets/{name}")).status, 404);
    }
    let listed: Vec<String> = s
        .get("/api/v1/rulesets")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, ["orders.new", "payments.card"]);
}

#[test]
fn a_bad_filter_or_proxy_stops_the_start() {
    let out = std::process::Command::new(common::BIN)
        .args([
            "config",
            "validate",
            "--rulesets.include",
            "orders.[",
            "--trusted-proxies",
            "10.0.0.0/33",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("rulesets.include.0"), "{text}");
    assert!(text.contains("trusted_proxies.0"), "{text}");
}

on_postgres!(
    drained_bucket_survives_reloads,
    overloaded_ruleset_sheds_at_once_while_another_answers,
    ruleset_limit_keys_by_key_logic,
    filters_choose_rulesets
);

#[test]
fn platform_buckets_survive_a_configuration_reload_that_keeps_their_rate() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ordo.yaml");
    let write = |text: &str| {
        let tmp = dir.path().join("ordo.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &config).unwrap();
    };
    let limits = "rate_limit:\n  enabled: true\n  default_rps: 1\n  default_burst: 3\n";
    write(&format!("{limits}request_timeout_ms: 30000\n"));
    let s = Server::start(&["-c", config.to_str().unwrap()]);
    s.post("/api/v1/rulesets", &ruleset("r", "1", "OK"));
    assert_eq!(passed(&s, "r", &[], 5), 3);
    write(&format!("{limits}request_timeout_ms: 20000\n"));
    common::wait_for("the reload", Duration::from_secs(10), || {
        s.log_text().contains("configuration reloaded")
    });
    assert_eq!(execute_as(&s, "r", &[]), 429);
    // A new rate is a new bucket.
    write("rate_limit:\n  enabled: true\n  default_rps: 1\n  default_burst: 4\n");
    common::wait_for("the second reload", Duration::from_secs(10), || {
        s.log_text().matches("configuration reloaded").count() == 2
    });
    assert_eq!(passed(&s, "r", &[], 6), 4);
}

/// Reads one HTTP/1.1 response from `conn`: its status and lower-cased head, or `None`
/// when the server closed the connection instead.
fn read_response(conn: &mut std::net::TcpStream) -> Option<(u16, String)> {
    use std::io::Read;
    let mut data = Vec::new();
    let mut byte = [0u8; 1];
    while !data.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => data.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&data).to_ascii_lowercase();
    let status = head.get(9..12)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body).ok()?;
    Some((status, head))
}

#[test]
fn a_refused_request_leaves_its_connection_usable() {
    use std::io::Write;
    let s = Server::start(&[]);
    let limited = with_config(
        "limited",
        json!({"rate_limit": {"requests_per_second": 1, "burst": 1}}),
    );
    assert_eq!(s.post("/api/v1/rulesets", &limited).status, 201);
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let body = r#"{"input":{"x":1}}"#;
    let head = format!(
        "POST /api/v1/execute/limited HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    // Head and body in two writes, as many clients send them: the refusal reaches the
    // server before the body does. Every answer comes on the one connection.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        conn.write_all(head.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        conn.write_all(body.as_bytes()).unwrap();
        let (status, head) = read_response(&mut conn).expect("the connection was closed");
        assert!(!head.contains("connection: close"), "{head}");
        statuses.push(status);
    }
    assert_eq!(statuses, [200, 429, 429, 429]);

    // A body too large to discard is not read: the refusal says it closes the
    // connection, and does.
    let big = "POST /api/v1/execute/limited HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500000\r\n\r\n{\"input\":";
    conn.write_all(big.as_bytes()).unwrap();
    let (status, head) = read_response(&mut conn).expect("no answer");
    assert_eq!(status, 429);
    assert!(head.contains("connection: close"), "{head}");
    assert!(read_response(&mut conn).is_none());
}
