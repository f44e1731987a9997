//! Logs: JSON lines with the request id, one audit event per commit, no secrets.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::{Server, ruleset};
use serde_json::{Value, json};

#[test]
fn json_logs_carry_the_request_id_and_audit_every_commit_without_secrets() {
    let secret = "tok-very-secret-123";
    let s = Server::start(&[
        "--log-format",
        "json",
        "--api-token",
        secret,
        "--log-executions-every",
        "2",
    ]);
    let auth = format!("Bearer {secret}");
    let r = s.send_json_as(
        "POST",
        "/api/v1/rulesets",
        &ruleset("audited", "1.0.0", "A"),
        &[("authorization", &auth), ("x-request-id", "req-abc-123")],
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.header("x-request-id").as_deref(), Some("req-abc-123"));
    // Without one, an id is generated and echoed; each is different.
    let a = s.get_as("/api/v1/rulesets", &[("authorization", &auth)]);
    let b = s.get_as("/api/v1/rulesets", &[("authorization", &auth)]);
    let (a, b) = (
        a.header("x-request-id").unwrap(),
        b.header("x-request-id").unwrap(),
    );
    assert!(!a.is_empty() && a != b);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = s.send_json_as(
            "POST",
            "/api/v1/execute/audited",
            &json!({"input": {}}),
            &[("x-api-token", secret)],
        );
        assert_eq!(r.status, 200);
        ids.push(r.header("x-request-id").unwrap());
    }
    s.request(
        "DELETE",
        "/api/v1/rulesets/audited",
        &[("authorization", &auth), ("x-request-id", "req-del-9")],
        None,
    );
    std::thread::sleep(Duration::from_millis(200));

    let log = s.log_text();
    assert!(
        !log.contains(secret),
        "a token leaked into the logs:\n{log}"
    );
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let commits: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "ordo::audit")
        .collect();
    assert_eq!(commits.len(), 2, "{log}");
    assert_eq!(commits[0]["fields"]["kind"], "ruleset_put");
    assert_eq!(commits[0]["fields"]["name"], "audited");
    assert_eq!(commits[0]["fields"]["seq"], 1);
    assert_eq!(commits[0]["span"]["request_id"], "req-abc-123");
    assert_eq!(commits[1]["fields"]["kind"], "ruleset_delete");
    assert_eq!(commits[1]["span"]["request_id"], "req-del-9");
    // One execution in two is logged, with its generated request id.
    let executions: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "ordo::execution")
        .collect();
    assert_eq!(executions.len(), 2, "{log}");
    assert_eq!(executions[0]["fields"]["ruleset"], "audited");
    assert_eq!(executions[0]["fields"]["code"], "A");
    assert_eq!(executions[0]["fields"]["request_id"], ids[0].as_str());
    assert_eq!(executions[1]["fields"]["request_id"], ids[2].as_str());
}
