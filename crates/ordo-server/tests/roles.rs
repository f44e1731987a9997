//! Roles: a reader answers every write with the specified 409 and serves every read.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Server, ruleset};
use serde_json::json;

const READ_ONLY: &str =
    "This instance is a read-only reader. Mutations must be sent to the writer.";

#[test]
fn a_reader_rejects_every_write_with_the_specified_body() {
    let s = Server::start(&["--role", "reader", "--writer-addr", "http://writer:8080"]);
    let writes: Vec<(&str, &str, Option<Vec<u8>>)> = vec![
        (
            "POST",
            "/api/v1/rulesets",
            Some(ruleset("r", "1.0.0", "A").to_string().into_bytes()),
        ),
        // Even a malformed write is told where the writer is.
        (
            "POST",
            "/api/v1/rulesets",
            Some(br#"{"config":{"name":"test"}}"#.to_vec()),
        ),
        ("POST", "/api/v1/rulesets", Some(b"not json".to_vec())),
        // A ruleset named like a read route is still a write.
        (
            "PUT",
            "/api/v1/rulesets/test",
            Some(ruleset("test", "1.0.0", "A").to_string().into_bytes()),
        ),
        ("DELETE", "/api/v1/rulesets/r", None),
        (
            "POST",
            "/api/v1/rulesets/r/rollback",
            Some(br#"{"seq":1}"#.to_vec()),
        ),
        (
            "POST",
            "/api/v1/tenants",
            Some(br#"{"id":"acme","name":"Acme"}"#.to_vec()),
        ),
        (
            "PUT",
            "/api/v1/tenants/acme",
            Some(br#"{"name":"Acme"}"#.to_vec()),
        ),
        ("DELETE", "/api/v1/tenants/acme", None),
    ];
    for (method, path, body) in writes {
        let r = s.request(method, path, &[("content-type", "application/json")], body);
        assert_eq!(r.status, 409, "{method} {path}: {}", r.text);
        assert_eq!(
            r.json(),
            json!({"error": "read_only", "message": READ_ONLY, "writer": "http://writer:8080"}),
            "{method} {path}"
        );
    }
    assert_eq!(s.get("/health").json()["role"], "reader");
}

#[test]
fn a_reader_serves_reads_executions_and_evaluations() {
    let s = Server::start(&["--role", "reader"]);
    let r = s.get("/api/v1/rulesets");
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!([]));
    // Reads of what it does not hold are "not found", never "read only".
    assert_eq!(s.get("/api/v1/rulesets/r").status, 404);
    assert_eq!(
        s.post("/api/v1/execute/r", &json!({"input": {}})).status,
        404
    );
    assert_eq!(
        s.post("/api/v1/execute/r/batch", &json!({"inputs": [{}]}))
            .status,
        404
    );
    assert_eq!(
        s.post("/api/v1/rulesets/r/test", &json!({"tests": []}))
            .status,
        404
    );
    let r = s.post(
        "/api/v1/eval",
        &json!({"expression": "1 + 2", "context": {}}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["result"], 3);
    // Without --writer-addr the writer is "unknown".
    let r = s.post("/api/v1/rulesets", &ruleset("r", "1.0.0", "A"));
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["writer"], "unknown");
    assert_eq!(s.get("/healthz/ready").status, 200);
}

#[test]
fn writer_and_standalone_accept_writes_and_show_their_role() {
    for role in ["writer", "standalone"] {
        let s = Server::start(&["--role", role]);
        assert_eq!(
            s.post("/api/v1/rulesets", &ruleset("r", "1.0.0", "A"))
                .status,
            201
        );
        assert_eq!(s.get("/health").json()["role"], role);
    }
    let s = Server::start(&[]);
    assert_eq!(s.get("/health").json()["role"], "standalone");
}

#[test]
fn role_settings_that_cannot_work_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}/x.db", dir.path().display());
    for (args, expected) in [
        (
            vec!["--role", "reader", "--database-url", db.as_str()],
            "database_url",
        ),
        (vec!["--role", "primary"], "role"),
        (
            vec!["--role", "reader", "--writer-addr", "writer:8080"],
            "writer_addr",
        ),
    ] {
        let err = Server::try_start(&args)
            .err()
            .unwrap_or_else(|| panic!("{args:?} must not start"));
        assert!(err.contains("exited with exit status: 2"), "{err}");
        assert!(err.contains(expected), "{err}");
    }
}
