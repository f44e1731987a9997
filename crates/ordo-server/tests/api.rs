//! Every HTTP route against the real binary (in-memory store), success and error cases.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Server, ruleset};
use serde_json::{Value, json};

fn assert_error(resp: &common::Resp, status: u16, code: &str) {
    assert_eq!(resp.status, status, "{}", resp.text);
    let body = resp.json();
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(
        resp.header("content-type").as_deref(),
        Some("application/json")
    );
}

#[test]
fn ruleset_crud_versions_and_rollback() {
    let s = Server::start(&[]);
    assert_eq!(s.get("/api/v1/rulesets").json(), json!([]));

    let r = s.post("/api/v1/rulesets", &ruleset("zeta", "1.0.0", "Z1"));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["status"], "created");
    assert_eq!(r.json()["name"], "zeta");
    let r = s.post("/api/v1/rulesets", &ruleset("alpha", "1.0.0", "A1"));
    assert_eq!(r.status, 201);
    // POST on an existing name updates.
    let r = s.post("/api/v1/rulesets", &ruleset("zeta", "2.0.0", "Z2"));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "updated");
    // PUT by name.
    let r = s.send_json(
        "PUT",
        "/api/v1/rulesets/alpha",
        &ruleset("alpha", "1.1.0", "A2"),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = s.send_json(
        "PUT",
        "/api/v1/rulesets/beta",
        &ruleset("beta", "1.0.0", "B"),
    );
    assert_eq!(r.status, 201);
    // PUT with a mismatching name changes nothing.
    let r = s.send_json(
        "PUT",
        "/api/v1/rulesets/alpha",
        &ruleset("other", "9.0.0", "X"),
    );
    assert_error(&r, 400, "BAD_REQUEST");
    assert_eq!(s.get("/api/v1/rulesets/other").status, 404);

    // The list is sorted by name.
    let list = s.get("/api/v1/rulesets").json();
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("alpha"), json!("beta"), json!("zeta")]);
    assert_eq!(list[0]["version"], "1.1.0");
    assert_eq!(list[0]["step_count"], 3);
    assert!(list[0]["description"].is_string());

    // GET returns the rule as written: conditions stay strings.
    let got = s.get("/api/v1/rulesets/zeta").json();
    assert_eq!(got["steps"]["check"]["branches"][0]["condition"], "x > 10");
    assert_eq!(got["config"]["version"], "2.0.0");
    assert_eq!(got["config"]["tenant_id"], "default");

    // Versions: newest first, by seq.
    let v = s.get("/api/v1/rulesets/zeta/versions").json();
    assert_eq!(v["name"], "zeta");
    assert_eq!(v["current_version"], "2.0.0");
    let versions = v["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["version"], "2.0.0");
    assert_eq!(versions[1]["version"], "1.0.0");
    assert!(versions[0]["seq"].as_u64() > versions[1]["seq"].as_u64());
    assert!(versions[0]["created_at"].as_str().unwrap().ends_with('Z'));
    let old_seq = versions[1]["seq"].as_u64().unwrap();
    let old = s
        .get(&format!("/api/v1/rulesets/zeta/versions/{old_seq}"))
        .json();
    assert_eq!(old["config"]["version"], "1.0.0");
    assert_error(
        &s.get("/api/v1/rulesets/zeta/versions/999"),
        404,
        "NOT_FOUND",
    );
    assert_error(
        &s.get("/api/v1/rulesets/zeta/versions/abc"),
        400,
        "BAD_REQUEST",
    );
    assert_error(&s.get("/api/v1/rulesets/nope/versions"), 404, "NOT_FOUND");

    // Rollback is a new commit with the old content.
    let r = s.post("/api/v1/rulesets/zeta/rollback", &json!({"seq": old_seq}));
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    assert_eq!(body["status"], "rolled_back");
    assert_eq!(body["from_version"], "2.0.0");
    assert_eq!(body["to_version"], "1.0.0");
    let out = s
        .post("/api/v1/execute/zeta", &json!({"input": {"x": 1}}))
        .json();
    assert_eq!(out["code"], "Z1");
    let v = s.get("/api/v1/rulesets/zeta/versions").json();
    assert_eq!(v["versions"].as_array().unwrap().len(), 3);
    assert_eq!(v["versions"][0]["source"], "rollback");
    assert_error(
        &s.post("/api/v1/rulesets/zeta/rollback", &json!({"seq": 424242})),
        404,
        "NOT_FOUND",
    );
    // A seq of another ruleset is not a version of this one.
    let alpha_seq = s.get("/api/v1/rulesets/alpha/versions").json()["versions"][0]["seq"]
        .as_u64()
        .unwrap();
    assert_error(
        &s.post("/api/v1/rulesets/zeta/rollback", &json!({"seq": alpha_seq})),
        404,
        "NOT_FOUND",
    );
    assert_error(
        &s.post("/api/v1/rulesets/zeta/rollback", &json!({"sequence": 1})),
        400,
        "BAD_REQUEST",
    );

    // Delete.
    assert_eq!(s.delete("/api/v1/rulesets/beta").status, 204);
    assert_error(&s.delete("/api/v1/rulesets/beta"), 404, "NOT_FOUND");
    assert_error(&s.get("/api/v1/rulesets/beta"), 404, "NOT_FOUND");
    assert_error(
        &s.post("/api/v1/execute/beta", &json!({"input": {}})),
        404,
        "NOT_FOUND",
    );
}

#[test]
fn invalid_rulesets_are_rejected_with_every_problem_and_change_nothing() {
    let s = Server::start(&[]);
    let bad = json!({
        "config": {"name": "bad", "entry_step": "s"},
        "steps": {"s": {"id": "s", "type": "decision",
                         "branches": [{"condition": "a >", "next_step": "missing"}]}}
    });
    let r = s.post("/api/v1/rulesets", &bad);
    assert_error(&r, 400, "BAD_REQUEST");
    let errors = r.json()["errors"].as_array().unwrap().clone();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().all(|e| e["step"] == "s"));
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("character 4")
    );

    // Names: same rule as the API contract.
    for name in ["../etc", "a b", "", ".hidden", "a..b"] {
        let r = s.post("/api/v1/rulesets", &ruleset(name, "1.0.0", "X"));
        assert_error(&r, 400, "BAD_REQUEST");
    }
    // Unknown keys and duplicate step ids.
    let mut unknown = ruleset("u", "1.0.0", "X");
    unknown["config"]["colour"] = json!("red");
    assert_error(&s.post("/api/v1/rulesets", &unknown), 400, "BAD_REQUEST");
    let dup = r#"{"config":{"name":"d","entry_step":"a"},"steps":{"a":{"id":"a","type":"terminal","result":{"code":"A"}},"a":{"id":"a","type":"terminal","result":{"code":"B"}}}}"#;
    let r = s.request(
        "POST",
        "/api/v1/rulesets",
        &[("content-type", "application/json")],
        Some(dup.into()),
    );
    assert_error(&r, 400, "BAD_REQUEST");
    // A loop of action steps can never end.
    let looping = json!({
        "config": {"name": "loop", "entry_step": "a"},
        "steps": {
            "a": {"id": "a", "type": "action", "actions": [], "next_step": "b"},
            "b": {"id": "b", "type": "action", "actions": [], "next_step": "a"}
        }
    });
    assert_error(&s.post("/api/v1/rulesets", &looping), 400, "BAD_REQUEST");
    // tenant_id in the body must be the request's tenant.
    let mut other = ruleset("t", "1.0.0", "X");
    other["config"]["tenant_id"] = json!("someone-else");
    assert_error(&s.post("/api/v1/rulesets", &other), 400, "BAD_REQUEST");

    assert_eq!(s.get("/api/v1/rulesets").json(), json!([]));
    assert_eq!(s.get("/health").json()["storage"]["last_seq"], 0);
}

#[test]
fn request_protection_errors_are_json() {
    let s = Server::start(&["--max-body-bytes", "4096"]);
    s.post("/api/v1/rulesets", &ruleset("r", "1.0.0", "OK"));
    // Wrong or missing content type.
    let r = s.request(
        "POST",
        "/api/v1/execute/r",
        &[("content-type", "text/plain")],
        Some(b"{}".to_vec()),
    );
    assert_error(&r, 415, "UNSUPPORTED_MEDIA_TYPE");
    let r = s.request("POST", "/api/v1/execute/r", &[], Some(b"{}".to_vec()));
    assert_error(&r, 415, "UNSUPPORTED_MEDIA_TYPE");
    // Body too large.
    let big = json!({"input": {"blob": "x".repeat(5000)}});
    assert_error(&s.post("/api/v1/execute/r", &big), 413, "PAYLOAD_TOO_LARGE");
    assert_error(
        &s.post(
            "/api/v1/rulesets",
            &json!({"config": {"name": "x".repeat(5000)}}),
        ),
        413,
        "PAYLOAD_TOO_LARGE",
    );
    // Bad JSON.
    let r = s.request(
        "POST",
        "/api/v1/execute/r",
        &[("content-type", "application/json")],
        Some(b"{\"input\": ".to_vec()),
    );
    assert_error(&r, 400, "BAD_REQUEST");
    // Nesting: 128 levels are fine, deeper is refused.
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let ok = format!("{{\"input\": {}}}", nested(126));
    let r = s.request(
        "POST",
        "/api/v1/execute/r",
        &[("content-type", "application/json")],
        Some(ok.into()),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let deep = format!("{{\"input\": {}}}", nested(200));
    let r = s.request(
        "POST",
        "/api/v1/execute/r",
        &[("content-type", "application/json")],
        Some(deep.into()),
    );
    assert_error(&r, 400, "BAD_REQUEST");
    assert!(r.json()["message"].as_str().unwrap().contains("128"));
    // Unknown route and method.
    assert_error(&s.get("/api/v1/nothing"), 404, "NOT_FOUND");
    assert_error(
        &s.request("PATCH", "/api/v1/rulesets/r", &[], None),
        405,
        "METHOD_NOT_ALLOWED",
    );
    // Reload needs a rules directory.
    assert_error(
        &s.request("POST", "/api/v1/admin/reload", &[], None),
        400,
        "BAD_REQUEST",
    );
    assert_eq!(s.get("/health").json()["storage"]["last_seq"], 1);
}

#[test]
fn execute_trace_and_execution_errors() {
    let s = Server::start(&[]);
    s.post("/api/v1/rulesets", &ruleset("r", "1.0.0", "OK"));
    let out = s
        .post("/api/v1/execute/r", &json!({"input": {"x": 11}}))
        .json();
    assert_eq!(out["code"], "OK");
    assert_eq!(out["output"], json!({"size": "big"}));
    assert!(out["duration_us"].is_u64());
    assert!(out.get("trace").is_none());
    let out = s
        .post(
            "/api/v1/execute/r",
            &json!({"input": {"x": 1}, "trace": true}),
        )
        .json();
    assert_eq!(out["output"], json!({"size": "small"}));
    assert_eq!(out["trace"]["path"], "check -> small");
    assert_eq!(out["trace"]["steps"][0]["id"], "check");
    assert!(out["trace"]["steps"][0]["duration_us"].is_number());

    // Execution errors are 422 with the step.
    let typed = json!({
        "config": {"name": "typed", "entry_step": "calc", "field_missing": "strict"},
        "steps": {
            "calc": {"id": "calc", "type": "action", "next_step": "done",
                      "actions": [{"action": "set_variable", "name": "v", "value": "a / b"}]},
            "done": {"id": "done", "type": "terminal", "result": {"code": "DONE", "output": [["v", "$v"]]}}
        }
    });
    assert_eq!(s.post("/api/v1/rulesets", &typed).status, 201);
    let r = s.post("/api/v1/execute/typed", &json!({"input": {"a": 1, "b": 0}}));
    assert_error(&r, 422, "EXECUTION_ERROR");
    assert_eq!(r.json()["step"], "calc");
    let r = s.post("/api/v1/execute/typed", &json!({"input": {"a": 1}}));
    assert_error(&r, 422, "EXECUTION_ERROR");
    assert_eq!(r.json()["step"], "calc");
    let r = s.post(
        "/api/v1/execute/typed",
        &json!({"input": {"a": "s", "b": 2}}),
    );
    assert_error(&r, 422, "EXECUTION_ERROR");
    let nomatch = json!({
        "config": {"name": "nomatch", "entry_step": "d"},
        "steps": {
            "d": {"id": "d", "type": "decision", "branches": [{"condition": "x == 1", "next_step": "t"}]},
            "t": {"id": "t", "type": "terminal", "result": {"code": "T"}}
        }
    });
    s.post("/api/v1/rulesets", &nomatch);
    let r = s.post("/api/v1/execute/nomatch", &json!({"input": {"x": 2}}));
    assert_error(&r, 422, "EXECUTION_ERROR");
    assert_eq!(r.json()["step"], "d");
    assert_eq!(r.json()["error_code"], "NO_MATCHING_BRANCH");
}

#[test]
fn batch_sequential_parallel_and_limits() {
    let s = Server::start(&[]);
    s.post("/api/v1/rulesets", &ruleset("r", "1.0.0", "OK"));
    let inputs: Vec<Value> = (0..50)
        .map(|i| {
            if i % 10 == 3 {
                json!({"x": "text"})
            } else {
                json!({"x": i})
            }
        })
        .collect();
    for parallel in [false, true] {
        let r = s.post(
            "/api/v1/execute/r/batch",
            &json!({"inputs": inputs, "options": {"parallel": parallel}}),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        let body = r.json();
        let results = body["results"].as_array().unwrap();
        assert_eq!(results.len(), 50);
        // Order is the input order.
        assert_eq!(results[0]["output"]["size"], "small");
        assert_eq!(results[20]["output"]["size"], "big");
        assert_eq!(results[3]["code"], "error");
        assert_eq!(results[3]["output"], Value::Null);
        assert!(results[3]["error"].as_str().unwrap().contains("check"));
        assert_eq!(body["summary"]["total"], 50);
        assert_eq!(body["summary"]["success"], 45);
        assert_eq!(body["summary"]["failed"], 5);
    }
    let r = s.post(
        "/api/v1/execute/r/batch",
        &json!({"inputs": inputs, "options": {"stop_on_error": true, "trace": true}}),
    );
    let body = r.json();
    assert_eq!(body["results"].as_array().unwrap().len(), 4);
    assert_eq!(body["summary"]["skipped"], 46);
    assert!(body["results"][0]["trace"]["path"].is_string());
    let too_many: Vec<Value> = (0..1001).map(|i| json!({"x": i})).collect();
    assert_error(
        &s.post("/api/v1/execute/r/batch", &json!({"inputs": too_many})),
        400,
        "BAD_REQUEST",
    );
    let exactly: Vec<Value> = (0..1000).map(|i| json!({"x": i})).collect();
    assert_eq!(
        s.post("/api/v1/execute/r/batch", &json!({"inputs": exactly}))
            .json()["summary"]["success"],
        1000
    );
    assert_error(
        &s.post("/api/v1/execute/r/batch", &json!({"input": {}})),
        400,
        "BAD_REQUEST",
    );
    assert_error(
        &s.post("/api/v1/execute/none/batch", &json!({"inputs": []})),
        404,
        "NOT_FOUND",
    );
}

#[test]
fn eval_endpoint() {
    let s = Server::start(&[]);
    let r = s.post("/api/v1/eval", &json!({"expression": "items[0].price * 2 + len(name)", "context": {"items": [{"price": 5}], "name": "abc"}}));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["result"], 13);
    assert!(r.json()["parsed"].is_string());
    let r = s.post("/api/v1/eval", &json!({"expression": "1 +", "context": {}}));
    assert_error(&r, 400, "BAD_REQUEST");
    let r = s.post("/api/v1/eval", &json!({"expression": "1 / 0"}));
    assert_error(&r, 422, "EXECUTION_ERROR");
}

#[test]
fn rule_test_endpoint() {
    let s = Server::start(&[]);
    s.post("/api/v1/rulesets", &ruleset("r", "1.0.0", "OK"));
    let r = s.post(
        "/api/v1/rulesets/r/test",
        &json!({"tests": [
            {"name": "big", "input": {"x": 20}, "expect": {"code": "OK", "output": {"size": "big"}}},
            {"name": "small", "input": {"x": 1}, "expect": {"output_includes": {"size": "small"}}},
            {"name": "wrong", "input": {"x": 1}, "expect": {"code": "NOPE", "output_includes": {"size": "big"}}},
            {"name": "broken", "input": {"x": "s"}, "expect": {"code": "OK"}},
            {"name": "expected error", "input": {"x": "s"}, "expect": {"error_contains": "check"}}
        ]}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    assert_eq!(body["total"], 5);
    assert_eq!(body["passed"], 3);
    assert_eq!(body["failed"], 2);
    let status: Vec<_> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].clone())
        .collect();
    assert_eq!(
        status,
        vec![
            json!("PASS"),
            json!("PASS"),
            json!("FAIL"),
            json!("ERROR"),
            json!("PASS")
        ]
    );
    assert_eq!(body["results"][2]["failures"].as_array().unwrap().len(), 2);
    assert_error(
        &s.post("/api/v1/rulesets/none/test", &json!({"tests": []})),
        404,
        "NOT_FOUND",
    );
}

#[test]
fn health_readiness_and_metrics() {
    let s = Server::start(&[]);
    let h = s.get("/health").json();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["role"], "standalone");
    assert!(h["uptime_seconds"].is_number());
    let backend = if common::postgres::active() {
        "postgres"
    } else {
        "memory"
    };
    assert_eq!(h["storage"]["backend"], backend);
    assert!(h["version"].is_string());
    assert_eq!(s.get("/healthz/live").status, 200);
    let r = s.get("/healthz/ready");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ready");
    s.post("/api/v1/rulesets", &ruleset("r", "1.0.0", "OK"));
    s.post("/api/v1/execute/r", &json!({"input": {"x": 1}}));
    let m = s.get("/metrics");
    assert_eq!(m.status, 200);
    assert!(m.text.contains("ordo_executions_total{"), "{}", m.text);
    assert!(m.text.contains("ordo_http_requests_total{"));
    assert!(m.text.contains("ordo_commits_total"));
}

#[test]
fn yaml_upload_is_accepted() {
    let s = Server::start(&[]);
    let yaml = "config:\n  name: y\n  entry_step: t\nsteps:\n  t:\n    id: t\n    type: terminal\n    result:\n      code: YAML\n";
    let r = s.request(
        "POST",
        "/api/v1/rulesets",
        &[("content-type", "application/yaml")],
        Some(yaml.into()),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        s.post("/api/v1/execute/y", &json!({"input": {}})).json()["code"],
        "YAML"
    );
}

#[test]
fn a_request_that_takes_too_long_is_cut_off_with_408() {
    use std::io::{Read, Write};
    let s = Server::start(&["--request-timeout-ms", "300"]);
    s.post("/api/v1/rulesets", &ruleset("r", "1.0.0", "OK"));
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    // Headers promise a body that never fully arrives.
    conn.write_all(b"POST /api/v1/execute/r HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"input\":").unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"REQUEST_TIMEOUT\""), "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn writing_the_same_content_again_commits_nothing() {
    let s = Server::start(&[]);
    let first = s
        .post("/api/v1/rulesets", &ruleset("r", "1.0.0", "OK"))
        .json();
    assert_eq!(first["changed"], true);
    let again = s.post("/api/v1/rulesets", &ruleset("r", "1.0.0", "OK"));
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["status"], "updated");
    assert_eq!(again.json()["changed"], false);
    assert_eq!(again.json()["seq"], first["seq"]);
    // A change of content under the same version string is a new commit.
    let same_version = s
        .post("/api/v1/rulesets", &ruleset("r", "1.0.0", "OTHER"))
        .json();
    assert_eq!(same_version["changed"], true);
    assert_eq!(
        s.get("/api/v1/rulesets/r/versions").json()["versions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        s.post("/api/v1/execute/r", &json!({"input": {}})).json()["code"],
        "OTHER"
    );
}

#[test]
fn health_names_the_instance_and_the_last_commit() {
    let s = Server::start(&["--instance-id", "node-a"]);
    let h = s.get("/health").json();
    assert_eq!(h["instance_id"], "node-a");
    assert_eq!(h["storage"]["last_seq"], 0);
    s.post("/api/v1/rulesets", &ruleset("r", "1.0.0", "OK"));
    let h2 = s.get("/health").json();
    assert_eq!(h2["storage"]["last_seq"], 1);
    assert_eq!(h2["sync"]["applied_seq"], 1);
    assert!(h2["uptime_seconds"].as_f64().unwrap() >= h["uptime_seconds"].as_f64().unwrap());
    // Without one, each start gets its own id.
    let a = Server::start(&[]).get("/health").json()["instance_id"].clone();
    let b = Server::start(&[]).get("/health").json()["instance_id"].clone();
    assert!(a.as_str().unwrap().starts_with("ordo-") && a != b);
}

// The same tests with the commit log on PostgreSQL.
on_postgres!(
    ruleset_crud_versions_and_rollback,
    invalid_rulesets_are_rejected_with_every_problem_and_change_nothing,
    request_protection_errors_are_json,
    execute_trace_and_execution_errors,
    batch_sequential_parallel_and_limits,
    eval_endpoint,
    rule_test_endpoint,
    health_readiness_and_metrics,
    yaml_upload_is_accepted,
    writing_the_same_content_again_commits_nothing,
    health_names_the_instance_and_the_last_commit,
);
