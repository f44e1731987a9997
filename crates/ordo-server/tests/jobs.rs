//! Async executions, black box: the trace lifecycle, a full queue, timeouts and result
//! sizes, dead-letter retries, replay and purge, retention, crash recovery and the
//! drain at shutdown.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, Instant};

use common::{Server, ruleset, wait_for};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

/// A ruleset that loops through a decision, scanning `text` each round, until its
/// step or time limit: as slow as its input is long.
fn spin(timeout_ms: u64) -> Value {
    json!({
        "config": {"name": "spin", "entry_step": "d", "max_depth": 100000, "timeout_ms": timeout_ms},
        "steps": {
            "d": {"id": "d", "type": "decision",
                   "branches": [{"condition": "len(regex_find_all('a+', text)) >= 0", "next_step": "a"}]},
            "a": {"id": "a", "type": "action", "actions": [], "next_step": "d"}
        }
    })
}

/// A ruleset whose every execution fails (division by zero).
fn failing() -> Value {
    json!({
        "config": {"name": "failing", "entry_step": "t"},
        "steps": {"t": {"id": "t", "type": "terminal",
                        "result": {"code": "X", "output": [["q", "1 / zero"]]}}}
    })
}

/// A ruleset that echoes its input's `text`.
fn echo() -> Value {
    json!({
        "config": {"name": "echo", "entry_step": "t"},
        "steps": {"t": {"id": "t", "type": "terminal",
                        "result": {"code": "E", "output": [["text", "text"]]}}}
    })
}

fn submit(s: &Server, name: &str, body: &Value) -> common::Resp {
    s.post(&format!("/api/v1/execute/{name}/async"), body)
}

fn submitted(s: &Server, name: &str, body: &Value) -> String {
    let r = submit(s, name, body);
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.json()["status"], "pending");
    r.json()["trace_id"].as_str().unwrap().to_string()
}

fn trace(s: &Server, id: &str) -> Value {
    let r = s.get(&format!("/api/v1/traces/{id}"));
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()
}

/// Waits until trace `id` satisfies `done`, and returns it.
fn until(s: &Server, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, WAIT, || done(&trace(s, id)));
    trace(s, id)
}

fn finished(s: &Server, id: &str) -> Value {
    until(s, id, "the job to finish", |t| {
        t["status"] == "completed" || t["status"] == "failed"
    })
}

fn traces(s: &Server, query: &str) -> Vec<Value> {
    s.get(&format!("/api/v1/traces{query}")).json()["traces"]
        .as_array()
        .unwrap()
        .clone()
}

fn lifecycle() {
    let s = Server::start(&[]);
    assert_eq!(
        s.post("/api/v1/rulesets", &ruleset("r", "1", "OK")).status,
        201
    );
    let id = submitted(&s, "r", &json!({"input": {"x": 20}}));
    let done = finished(&s, &id);
    assert_eq!(done["status"], "completed", "{done}");
    // The same answer as a synchronous execution.
    assert_eq!(done["result"]["code"], "OK");
    assert_eq!(done["result"]["output"]["size"], "big");
    assert_eq!(done["attempts"], 1);
    let (created, started, ended) = (
        done["created_at_ms"].as_i64().unwrap(),
        done["started_at_ms"].as_i64().unwrap(),
        done["finished_at_ms"].as_i64().unwrap(),
    );
    assert!(created <= started && started <= ended, "{done}");

    // A batch: one job, its report as the result.
    let inputs: Vec<Value> = (0..1000).map(|i| json!({"x": i % 20})).collect();
    let batch = submitted(&s, "r", &json!({"inputs": inputs}));
    let done = finished(&s, &batch);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["batch"], true);
    assert_eq!(done["inputs"], 1000);
    assert_eq!(done["result"]["summary"]["total"], 1000);
    assert_eq!(done["result"]["summary"]["success"], 1000);
    assert_eq!(done["result"]["results"][15]["output"]["size"], "big");

    let completed = traces(&s, "?status=completed");
    assert_eq!(completed.len(), 2);
    assert!(completed.iter().all(|t| t.get("result").is_none()));
    assert!(traces(&s, "?status=pending").is_empty());
    assert_eq!(s.get("/api/v1/traces?status=lost").status, 400);
    assert_eq!(s.get("/api/v1/traces/no-such-trace").status, 404);

    // Bad submissions are refused and leave nothing.
    for body in [
        json!({}),
        json!({"input": 1, "inputs": [1]}),
        json!({"inputs": []}),
    ] {
        assert_eq!(submit(&s, "r", &body).status, 400, "{body}");
    }
    assert_eq!(submit(&s, "missing", &json!({"input": {}})).status, 404);
    assert_eq!(traces(&s, "").len(), 2);

    let metrics = s.get("/metrics").text;
    for series in [
        "ordo_queue_depth 0",
        "ordo_queue_workers_busy 0",
        "ordo_traces{status=\"completed\"} 2",
        "ordo_dlq_entries{state=\"exhausted\"} 0",
        "ordo_async_jobs_total{status=\"completed\"} 2",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
}

#[test]
fn a_job_goes_from_pending_to_completed_with_its_result() {
    lifecycle();
}

#[test]
fn traces_belong_to_their_tenant() {
    let s = Server::start(&["--multi-tenancy-enabled"]);
    for tenant in ["acme", "globex"] {
        let r = s.post("/api/v1/tenants", &json!({"id": tenant}));
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let acme = [("x-tenant-id", "acme")];
    let r = s.send_json_as("POST", "/api/v1/rulesets", &ruleset("r", "1", "A"), &acme);
    assert_eq!(r.status, 201, "{}", r.text);
    let r = s.send_json_as(
        "POST",
        "/api/v1/execute/r/async",
        &json!({"input": {}}),
        &acme,
    );
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.json()["trace_id"].as_str().unwrap().to_string();
    wait_for("the job", WAIT, || {
        s.get_as(&format!("/api/v1/traces/{id}"), &acme).json()["status"] == "completed"
    });
    let other = s.get_as(
        &format!("/api/v1/traces/{id}"),
        &[("x-tenant-id", "globex")],
    );
    assert_eq!(other.status, 404);
    let listed = s
        .get_as("/api/v1/traces", &[("x-tenant-id", "globex")])
        .json();
    assert_eq!(listed["traces"], json!([]));
}

fn full_queue_leaves_no_trace() {
    let s = Server::start(&["--queue.workers", "1", "--queue.buffer-size", "1"]);
    assert_eq!(s.post("/api/v1/rulesets", &spin(60_000)).status, 201);
    let slow = json!({"input": {"text": "a b ".repeat(4000)}});
    // One job runs (for seconds), one waits: the queue is full.
    let running = submitted(&s, "spin", &slow);
    until(&s, &running, "the first job to run", |t| {
        t["status"] == "running"
    });
    submitted(&s, "spin", &slow);
    let started = Instant::now();
    let refused = submit(&s, "spin", &slow);
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert_eq!(refused.json()["code"], "OVERLOADED");
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(traces(&s, "").len(), 2, "the refused job left a trace");
    assert!(
        s.get("/metrics")
            .text
            .contains("ordo_rejected_total{reason=\"queue_full\"} 1")
    );
}

#[test]
fn a_full_queue_answers_503_at_once_and_leaves_no_trace() {
    full_queue_leaves_no_trace();
}

#[test]
fn the_queue_memory_limit_refuses_what_does_not_fit() {
    let s = Server::start(&["--queue.max-queue-memory-bytes", "2048"]);
    s.post("/api/v1/rulesets", &echo());
    let big = json!({"input": {"text": "x".repeat(4096)}});
    let r = submit(&s, "echo", &big);
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.text.contains("bytes"), "{}", r.text);
    assert!(traces(&s, "").is_empty());
    // What fits goes through.
    let id = submitted(&s, "echo", &json!({"input": {"text": "small"}}));
    assert_eq!(finished(&s, &id)["status"], "completed");
}

#[test]
fn a_job_past_its_time_or_result_size_fails() {
    time_and_size_failures();
}

fn time_and_size_failures() {
    let s = Server::start(&[
        "--queue.processing-timeout-ms",
        "100",
        "--queue.max-result-size-bytes",
        "2048",
        "--queue.dlq-retry-enabled=false",
    ]);
    s.post("/api/v1/rulesets", &spin(60_000));
    s.post("/api/v1/rulesets", &echo());
    let started = Instant::now();
    let slow = submitted(&s, "spin", &json!({"input": {"text": "a b ".repeat(4000)}}));
    let done = finished(&s, &slow);
    assert_eq!(done["status"], "failed", "{done}");
    assert!(
        done["error"].as_str().unwrap().contains("timeout"),
        "{done}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // Retries off: straight to the dead-letter queue, exhausted.
    assert_eq!(done["dlq"], "exhausted");

    let big = submitted(&s, "echo", &json!({"input": {"text": "y".repeat(3000)}}));
    let done = finished(&s, &big);
    assert_eq!(done["status"], "failed", "{done}");
    assert!(
        done["error"]
            .as_str()
            .unwrap()
            .contains("max_result_size_bytes"),
        "{done}"
    );
    assert!(done.get("result").is_none());
}

fn dlq_retries_then_exhausted() {
    let s = Server::start(&[
        "--queue.dlq-max-retries",
        "2",
        "--queue.dlq-poll-interval-secs",
        "1",
    ]);
    s.post("/api/v1/rulesets", &failing());
    let id = submitted(&s, "failing", &json!({"input": {"zero": 0}}));
    let first = finished(&s, &id);
    assert_eq!(first["status"], "failed");
    assert_eq!(first["dlq"], "retrying");
    assert!(first["error"].as_str().unwrap().contains("zero"), "{first}");
    let done = until(&s, &id, "the retries to run out", |t| {
        t["dlq"] == "exhausted"
    });
    // The first run and exactly two retries.
    assert_eq!(done["attempts"], 3, "{done}");
    assert!(done.get("next_retry_at_ms").is_none());
    // Nothing more happens to it.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(trace(&s, &id)["attempts"], 3);

    let listed = s.get("/api/v1/admin/dlq?state=exhausted").json();
    assert_eq!(listed["entries"].as_array().unwrap().len(), 1);
    assert_eq!(
        s.get("/api/v1/admin/dlq?state=retrying").json()["entries"],
        json!([])
    );
    assert_eq!(s.get("/api/v1/admin/dlq?state=sideways").status, 400);

    // Replay: it runs once more (and, its retries spent, is exhausted again).
    let r = s.post(&format!("/api/v1/admin/dlq/{id}/replay"), &json!({}));
    assert_eq!(r.status, 202, "{}", r.text);
    until(&s, &id, "the replay", |t| {
        t["attempts"] == 4 && t["dlq"] == "exhausted"
    });
    assert_eq!(
        s.post("/api/v1/admin/dlq/no-such/replay", &json!({}))
            .status,
        404
    );

    // Purge one, then all.
    let second = submitted(&s, "failing", &json!({"input": {"zero": 0}}));
    finished(&s, &second);
    assert_eq!(s.delete(&format!("/api/v1/admin/dlq/{id}")).status, 200);
    assert_eq!(s.get(&format!("/api/v1/traces/{id}")).status, 404);
    assert_eq!(s.delete(&format!("/api/v1/admin/dlq/{id}")).status, 404);
    let purged = s.request("DELETE", "/api/v1/admin/dlq", &[], None).json();
    assert_eq!(purged["purged"], 1);
    assert!(traces(&s, "").is_empty());
}

#[test]
fn dead_letter_retries_run_exactly_dlq_max_retries_times_then_stop() {
    dlq_retries_then_exhausted();
}

#[test]
fn old_finished_traces_are_deleted() {
    retention();
}

fn retention() {
    // 0.0005 h is 1.8 s.
    let s = Server::start(&[
        "--queue.trace-retention-hours",
        "0.0005",
        "--queue.trace-cleanup-interval-secs",
        "1",
    ]);
    s.post("/api/v1/rulesets", &ruleset("r", "1", "OK"));
    let id = submitted(&s, "r", &json!({"input": {}}));
    finished(&s, &id);
    wait_for("the cleanup", WAIT, || {
        s.get(&format!("/api/v1/traces/{id}")).status == 404
    });
    // 0 keeps them.
    let keep = Server::start(&[
        "--queue.trace-retention-hours",
        "0",
        "--queue.trace-cleanup-interval-secs",
        "1",
    ]);
    keep.post("/api/v1/rulesets", &ruleset("r", "1", "OK"));
    let id = submitted(&keep, "r", &json!({"input": {}}));
    finished(&keep, &id);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(keep.get(&format!("/api/v1/traces/{id}")).status, 200);
}

fn crash_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().to_str().unwrap().to_string();
    let args = [
        "--rules-dir",
        rules.as_str(),
        "--instance-id",
        "ordo-recovery",
        "--queue.workers",
        "1",
        "--queue.dlq-retry-enabled=false",
    ];
    let s = Server::start(&args);
    s.post("/api/v1/rulesets", &spin(60_000));
    s.post("/api/v1/rulesets", &ruleset("r", "1", "OK"));
    let slow = json!({"input": {"text": "a b ".repeat(4000)}});
    let running = submitted(&s, "spin", &slow);
    until(&s, &running, "the slow job to run", |t| {
        t["status"] == "running"
    });
    let waiting: Vec<String> = (0..3)
        .map(|_| submitted(&s, "r", &json!({"input": {"x": 50}})))
        .collect();
    for id in &waiting {
        assert_eq!(trace(&s, id)["status"], "pending");
    }
    s.kill9();

    let s = Server::start(&args);
    // The jobs that waited run; the one that was running is failed as interrupted.
    for id in &waiting {
        let done = finished(&s, id);
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["result"]["output"]["size"], "big");
    }
    let interrupted = finished(&s, &running);
    assert_eq!(interrupted["status"], "failed", "{interrupted}");
    assert!(
        interrupted["error"]
            .as_str()
            .unwrap()
            .contains("interrupted"),
        "{interrupted}"
    );
    assert_eq!(interrupted["dlq"], "exhausted");
}

#[test]
fn jobs_a_crash_left_unfinished_are_taken_back() {
    crash_recovery();
}

#[test]
fn interrupted_jobs_are_retried_when_retries_are_on() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().to_str().unwrap().to_string();
    let args = [
        "--rules-dir",
        rules.as_str(),
        "--queue.workers",
        "1",
        "--queue.dlq-poll-interval-secs",
        "1",
    ];
    let s = Server::start(&args);
    s.post("/api/v1/rulesets", &spin(60_000));
    let running = submitted(&s, "spin", &json!({"input": {"text": "a b ".repeat(4000)}}));
    until(&s, &running, "the job to run", |t| t["status"] == "running");
    s.kill9();
    let s = Server::start(&args);
    // Interrupted (attempt 1), then retried: attempt 2 is running or further.
    until(&s, &running, "the retry", |t| {
        t["attempts"].as_u64().unwrap_or(0) >= 2
    });
}

#[test]
fn at_sigterm_the_queue_drains_before_exit() {
    drain_at_sigterm();
}

fn drain_at_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().to_str().unwrap().to_string();
    let args = [
        "--rules-dir",
        rules.as_str(),
        "--queue.workers",
        "1",
        "--shutdown-timeout-secs",
        "120",
    ];
    let mut s = Server::start(&args);
    s.post("/api/v1/rulesets", &spin(60_000));
    // Each job takes a while: several are still queued when the signal comes.
    let input = json!({"input": {"text": "a b ".repeat(100)}});
    let ids: Vec<String> = (0..4).map(|_| submitted(&s, "spin", &input)).collect();
    s.signal_term();
    let status = s.wait_exit(Duration::from_secs(150)).expect("exited");
    assert_eq!(status.code(), Some(0));
    let exited_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let s = Server::start(&args);
    for id in &ids {
        let t = trace(&s, id);
        assert!(t["status"] == "completed" || t["status"] == "failed", "{t}");
        assert_eq!(t["attempts"], 1, "{t}");
        // Run by the instance that was stopping, not taken back by the new one.
        assert!(t["finished_at_ms"].as_i64().unwrap() <= exited_ms, "{t}");
    }
}

on_postgres!(
    lifecycle,
    full_queue_leaves_no_trace,
    dlq_retries_then_exhausted,
    crash_recovery,
    time_and_size_failures,
    retention,
    drain_at_sigterm
);

#[test]
fn on_postgresql_any_instance_answers_for_any_trace() {
    if !common::postgres::available("on_postgresql_any_instance_answers_for_any_trace") {
        return;
    }
    let url = common::postgres::fresh_database();
    let args = ["--database-url", url.as_str(), "--auto-migrate"];
    let a = Server::start(&args);
    a.wait_ready(WAIT).unwrap();
    let b = Server::start(&args);
    b.wait_ready(WAIT).unwrap();
    assert_eq!(
        a.post("/api/v1/rulesets", &ruleset("r", "1", "OK")).status,
        201
    );
    let id = submitted(&a, "r", &json!({"input": {"x": 20}}));
    finished(&a, &id);
    let seen = trace(&b, &id);
    assert_eq!(seen["status"], "completed", "{seen}");
    assert_eq!(seen["result"]["output"]["size"], "big");
    assert_eq!(traces(&b, "?status=completed").len(), 1);
}

#[test]
fn a_client_that_goes_away_never_strands_a_job() {
    use std::io::Write;
    let s = Server::start(&[]);
    s.post("/api/v1/rulesets", &ruleset("r", "1", "OK"));
    let addr = s.base.trim_start_matches("http://").to_string();
    let body = json!({"input": {"x": 1}}).to_string();
    // Each client sends its submission and hangs up without waiting for the answer:
    // the server may be anywhere in it when the connection goes.
    for _ in 0..50 {
        let mut conn = std::net::TcpStream::connect(&addr).unwrap();
        let request = format!(
            "POST /api/v1/execute/r/async HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(request.as_bytes()).unwrap();
        drop(conn);
    }
    std::thread::sleep(Duration::from_millis(500));
    wait_for("every written job to run", WAIT, || {
        traces(&s, "?limit=1000")
            .iter()
            .all(|t| t["status"] == "completed")
    });
    let metrics = s.get("/metrics").text;
    assert!(metrics.contains("ordo_queue_memory_bytes 0"), "{metrics}");
    assert!(metrics.contains("ordo_queue_depth 0"), "{metrics}");
}
