//! The durable commit log, the rules directory as files, file import, and `kill -9`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Server, rules_dir_with, ruleset};
use serde_json::{Value, json};

fn start(dir: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["--rules-dir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn file_json(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

fn names(s: &Server) -> Vec<String> {
    s.get("/api/v1/rulesets")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn examples_load_and_writes_survive_a_restart_as_files() {
    let dir = rules_dir_with(&["discount.json", "loan-approval.yaml", "fraud-score.json"]);
    let s = start(dir.path(), &["--multi-tenancy-enabled"]);
    assert_eq!(names(&s), ["discount", "fraud-score", "loan-approval"]);
    let out = s
        .post(
            "/api/v1/execute/discount",
            &json!({"input": {"user": {"vip": true}, "order": {"total": 640}}}),
        )
        .json();
    assert_eq!(out["code"], "VIP_BIG");

    assert_eq!(
        s.post("/api/v1/rulesets", &ruleset("fresh", "1.0.0", "F1"))
            .status,
        201
    );
    assert_eq!(
        s.post("/api/v1/rulesets", &ruleset("fresh", "2.0.0", "F2"))
            .status,
        200
    );
    // The file holds the current content, as GET returns it.
    let file = file_json(&dir.path().join("fresh.json"));
    assert_eq!(file, s.get("/api/v1/rulesets/fresh").json());
    assert_eq!(file["config"]["version"], "2.0.0");
    // A YAML ruleset stays YAML when written through the API.
    let mut loan = s.get("/api/v1/rulesets/loan-approval").json();
    loan["config"]["version"] = json!("1.3.0");
    assert_eq!(s.post("/api/v1/rulesets", &loan).status, 200);
    assert!(
        fs::read_to_string(dir.path().join("loan-approval.yaml"))
            .unwrap()
            .contains("1.3.0")
    );
    assert!(!dir.path().join("loan-approval.json").exists());
    // Other tenants live under tenants/<id>/.
    s.post("/api/v1/tenants", &json!({"id": "acme", "max_rules": 5}));
    let r = s.send_json_as(
        "POST",
        "/api/v1/rulesets",
        &ruleset("only-acme", "1", "A"),
        &[("x-tenant-id", "acme")],
    );
    assert_eq!(r.status, 201);
    assert!(dir.path().join("tenants/acme/only-acme.json").exists());
    assert_eq!(s.delete("/api/v1/rulesets/discount").status, 204);
    assert!(!dir.path().join("discount.json").exists());
    let seq = s.get("/health").json()["storage"]["last_seq"]
        .as_u64()
        .unwrap();
    let versions = s.get("/api/v1/rulesets/fresh/versions").json();
    // SIGTERM is a clean stop.
    assert!(s.terminate().success());

    // After a restart: the same rules, versions, tenants and seq; nothing re-imported.
    let s = start(dir.path(), &["--multi-tenancy-enabled"]);
    assert_eq!(names(&s), ["fraud-score", "fresh", "loan-approval"]);
    assert_eq!(
        s.get("/health").json()["storage"]["last_seq"]
            .as_u64()
            .unwrap(),
        seq
    );
    assert_eq!(s.get("/api/v1/rulesets/fresh/versions").json(), versions);
    assert_eq!(s.get("/api/v1/tenants/acme").json()["max_rules"], 5);
    let r = s.send_json_as(
        "POST",
        "/api/v1/execute/only-acme",
        &json!({"input": {}}),
        &[("x-tenant-id", "acme")],
    );
    assert_eq!(r.json()["code"], "A");
    // Seq continues without a gap.
    let r = s
        .post("/api/v1/rulesets", &ruleset("fresh", "3.0.0", "F3"))
        .json();
    assert_eq!(r["seq"].as_u64().unwrap(), seq + 1);
    // Versions of a deleted ruleset remain readable, and it can be restored.
    let v = s.get("/api/v1/rulesets/discount/versions").json();
    assert_eq!(v["current_version"], Value::Null);
    let old = v["versions"][0]["seq"].as_u64().unwrap();
    assert_eq!(
        s.post("/api/v1/rulesets/discount/rollback", &json!({"seq": old}))
            .status,
        200
    );
    assert!(dir.path().join("discount.json").exists());
}

#[test]
fn two_files_of_one_ruleset_are_both_refused() {
    let dir = rules_dir_with(&["discount.json"]);
    let text = serde_json::to_string(&ruleset("twice", "1", "T")).unwrap();
    // JSON is YAML too: both files define ruleset 'twice'.
    fs::write(dir.path().join("twice.json"), &text).unwrap();
    fs::write(dir.path().join("twice.yaml"), &text).unwrap();
    let s = start(dir.path(), &[]);
    assert_eq!(names(&s), ["discount"]);
    let h = s.get("/health").json();
    let problems = h["checks"]["rules_dir_problems"].as_array().unwrap();
    let mut paths: Vec<&str> = problems
        .iter()
        .map(|p| {
            assert_eq!(
                p["reason"], "more than one file defines ruleset 'twice'",
                "{p}"
            );
            p["path"].as_str().unwrap()
        })
        .collect();
    paths.sort();
    assert_eq!(paths.len(), 2, "{problems:?}");
    assert!(
        paths[0].ends_with("twice.json") && paths[1].ends_with("twice.yaml"),
        "{paths:?}"
    );
}

/// A first start over many files reads and compiles them on every core; each file
/// still becomes its own commit, in name order, and each bad one is reported by path.
#[test]
fn a_large_directory_is_imported_in_name_order_with_its_bad_files_reported() {
    let dir = tempfile::tempdir().unwrap();
    let expected: Vec<String> = (0..300).map(|i| format!("r-{i:03}")).collect();
    for name in &expected {
        let text = serde_json::to_string(&ruleset(name, "1.0.0", name)).unwrap();
        fs::write(dir.path().join(format!("{name}.json")), text).unwrap();
    }
    // Among them, a file that does not parse and one that does not compile.
    fs::write(dir.path().join("r-100a.json"), "{\"config\": ").unwrap();
    let mut broken = ruleset("r-200a", "1.0.0", "X");
    broken["steps"]["check"]["default_next"] = json!("nowhere");
    fs::write(dir.path().join("r-200a.json"), broken.to_string()).unwrap();

    let s = start(dir.path(), &[]);
    assert_eq!(names(&s), expected);
    assert_eq!(s.get("/health").json()["storage"]["last_seq"], 300);
    if !common::postgres::active() {
        // So many new files are imported by a one-off process (`ordo-server import`),
        // whose audit events are in the same log and whose commits are counted here.
        let log = s.log_text();
        assert!(
            log.contains("rules directory imported by a one-off process")
                && log.contains("commits=300"),
            "{log}"
        );
        let audited = log
            .lines()
            .filter(|l| l.contains("ordo::audit") && l.contains("ruleset_put"))
            .count();
        assert_eq!(audited, 300, "{log}");
        let metrics = s.get("/metrics").text;
        assert!(
            metrics.contains("ordo_commits_total{source=\"file\"} 300"),
            "{metrics}"
        );
    }
    for (seq, name) in [(1, "r-000"), (101, "r-100"), (200, "r-199"), (300, "r-299")] {
        let versions = s.get(&format!("/api/v1/rulesets/{name}/versions")).json();
        assert_eq!(versions["versions"][0]["seq"], seq, "{name}: {versions}");
    }
    let r = s.post("/api/v1/execute/r-123", &json!({"input": {"x": 1}}));
    assert_eq!(r.json()["code"], "r-123", "{}", r.text);
    let h = s.get("/health").json();
    let problems = h["checks"]["rules_dir_problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0]["path"]
            .as_str()
            .unwrap()
            .ends_with("r-100a.json")
    );
    assert!(
        problems[1]["path"]
            .as_str()
            .unwrap()
            .ends_with("r-200a.json")
    );
    assert!(
        problems[1]["reason"].as_str().unwrap().contains("nowhere"),
        "{problems:?}"
    );
    // The process that imported knows every file it imported: a reload imports
    // nothing, and the imported rulesets execute.
    let r = s.request("POST", "/api/v1/admin/reload", &[], None);
    assert_eq!(r.status, 200, "{}", r.text);
    let report = r.json();
    assert_eq!(report["imported"], 0, "{report}");
    assert_eq!(report["rules_loaded"], 300, "{report}");
    assert_eq!(s.get("/health").json()["storage"]["last_seq"], 300);
    for name in ["r-000", "r-199", "r-299"] {
        let r = s.post(
            &format!("/api/v1/execute/{name}"),
            &json!({"input": {"x": 1}}),
        );
        assert_eq!(r.json()["code"], name, "{}", r.text);
    }
    // Nothing new at the next start: every file is known.
    drop(s);
    let s = start(dir.path(), &[]);
    assert_eq!(names(&s), expected);
    assert_eq!(s.get("/health").json()["storage"]["last_seq"], 300);
}

#[test]
fn files_are_imported_at_start_and_on_reload() {
    let dir = rules_dir_with(&["discount.json", "fraud-score.json"]);
    // An invalid file is reported with its path and skipped; the rest load.
    fs::write(
        dir.path().join("broken.json"),
        "{\"config\": {\"name\": \"broken\"",
    )
    .unwrap();
    fs::write(
        dir.path().join("wrongname.json"),
        serde_json::to_string(&ruleset("other", "1", "X")).unwrap(),
    )
    .unwrap();
    let s = start(dir.path(), &[]);
    assert_eq!(names(&s), ["discount", "fraud-score"]);
    let log = s.log_text();
    assert!(log.contains("broken.json"), "{log}");
    let h = s.get("/health").json();
    assert_eq!(h["status"], "degraded");
    assert_eq!(
        h["checks"]["rules_dir_problems"].as_array().unwrap().len(),
        2
    );

    // Hand edits: a changed file, a new file, a deleted file and a broken edit.
    let mut discount = file_json(&dir.path().join("discount.json"));
    discount["config"]["version"] = json!("9.9.9");
    fs::write(
        dir.path().join("discount.json"),
        serde_json::to_string_pretty(&discount).unwrap(),
    )
    .unwrap();
    fs::write(
        dir.path().join("added.json"),
        serde_json::to_string(&ruleset("added", "1", "ADDED")).unwrap(),
    )
    .unwrap();
    fs::remove_file(dir.path().join("fraud-score.json")).unwrap();
    fs::remove_file(dir.path().join("broken.json")).unwrap();
    fs::remove_file(dir.path().join("wrongname.json")).unwrap();
    let r = s.request("POST", "/api/v1/admin/reload", &[], None);
    assert_eq!(r.status, 200, "{}", r.text);
    let report = r.json();
    assert_eq!(report["status"], "reloaded");
    assert_eq!(report["rules_loaded"], 2);
    assert_eq!(report["imported"], 2);
    assert_eq!(report["rules_removed"], 1);
    assert_eq!(report["errors"], json!([]));
    assert_eq!(names(&s), ["added", "discount"]);
    assert_eq!(
        s.get("/api/v1/rulesets/discount").json()["config"]["version"],
        "9.9.9"
    );
    let v = s.get("/api/v1/rulesets/discount/versions").json();
    assert_eq!(v["versions"][0]["source"], "file");
    assert_eq!(s.get("/health").json()["status"], "ok");
    let metrics = s.get("/metrics").text;
    assert!(
        metrics.contains("ordo_rules_reloads_total{outcome=\"with_problems\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ordo_rules_reloads_total{outcome=\"ok\"} 1"),
        "{metrics}"
    );

    // A half-written (invalid) edit never replaces the good ruleset, nor deletes it.
    fs::write(dir.path().join("added.json"), "{\"config\": {\"na").unwrap();
    let report = s.request("POST", "/api/v1/admin/reload", &[], None).json();
    assert_eq!(report["errors"].as_array().unwrap().len(), 1);
    assert!(
        report["errors"][0]["path"]
            .as_str()
            .unwrap()
            .ends_with("added.json")
    );
    assert_eq!(report["rules_removed"], 0);
    assert_eq!(
        s.post("/api/v1/execute/added", &json!({"input": {"x": 1}}))
            .json()["code"],
        "ADDED"
    );
    // An invalid-but-parseable ruleset is refused the same way.
    let mut invalid = ruleset("added", "2", "ADDED2");
    invalid["config"]["entry_step"] = json!("nowhere");
    fs::write(
        dir.path().join("added.json"),
        serde_json::to_string(&invalid).unwrap(),
    )
    .unwrap();
    let report = s.request("POST", "/api/v1/admin/reload", &[], None).json();
    assert!(
        report["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("nowhere"),
        "{report}"
    );
    assert_eq!(
        s.get("/api/v1/rulesets/added").json()["config"]["version"],
        "1"
    );
    // Two files for one ruleset: both reported, the log's version kept.
    fs::write(
        dir.path().join("added.json"),
        serde_json::to_string(&ruleset("added", "1", "ADDED")).unwrap(),
    )
    .unwrap();
    fs::write(dir.path().join("added.yaml"), "config: {name: added}\n").unwrap();
    let report = s.request("POST", "/api/v1/admin/reload", &[], None).json();
    assert_eq!(report["errors"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(s.get("/api/v1/rulesets/added").status, 200);
    fs::remove_file(dir.path().join("added.yaml")).unwrap();
    s.terminate();

    // Edits made while the server is down are imported at the next start.
    fs::write(
        dir.path().join("offline.json"),
        serde_json::to_string(&ruleset("offline", "1", "OFF")).unwrap(),
    )
    .unwrap();
    fs::remove_file(dir.path().join("added.json")).unwrap();
    // A changed file, even one of the same size.
    let text = fs::read_to_string(dir.path().join("discount.json")).unwrap();
    assert!(text.contains("9.9.9"));
    fs::write(
        dir.path().join("discount.json"),
        text.replace("9.9.9", "8.8.8"),
    )
    .unwrap();
    let s = start(dir.path(), &[]);
    assert_eq!(names(&s), ["discount", "offline"]);
    assert_eq!(
        s.get("/api/v1/rulesets/discount").json()["config"]["version"],
        "8.8.8"
    );
}

#[test]
fn interrupted_file_writes_are_resolved_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), &[]);
    s.post("/api/v1/rulesets", &ruleset("kept", "1", "K1"));
    s.post("/api/v1/rulesets", &ruleset("gone", "1", "G"));
    s.delete("/api/v1/rulesets/gone");
    let committed = s.get("/api/v1/rulesets/kept").json();
    s.kill9();
    // As if a crash hit between the commit and the rename: the staged file holds the
    // committed content and the target still the old one.
    let mut old = committed.clone();
    old["config"]["version"] = json!("0");
    fs::write(
        dir.path().join("kept.json"),
        serde_json::to_string(&old).unwrap(),
    )
    .unwrap();
    fs::write(
        dir.path().join(".kept.json.ordo-tmp"),
        serde_json::to_string(&committed).unwrap(),
    )
    .unwrap();
    // A staged write whose commit never happened.
    fs::write(
        dir.path().join(".ghost.json.ordo-tmp"),
        serde_json::to_string(&ruleset("ghost", "1", "G")).unwrap(),
    )
    .unwrap();
    // A delete that was committed but whose marker remained.
    fs::write(
        dir.path().join(".gone.json.ordo-del"),
        serde_json::to_string(&ruleset("gone", "1", "G")).unwrap(),
    )
    .unwrap();

    let s = start(dir.path(), &[]);
    assert_eq!(names(&s), ["kept"]);
    assert_eq!(s.get("/api/v1/rulesets/kept").json(), committed);
    assert_eq!(file_json(&dir.path().join("kept.json")), committed);
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("ordo-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(!dir.path().join("ghost.json").exists());
    assert!(!dir.path().join("gone.json").exists());
}

#[test]
fn one_directory_has_one_owner() {
    let dir = tempfile::tempdir().unwrap();
    let _first = start(dir.path(), &[]);
    let err = Server::try_start(&["--rules-dir", dir.path().to_str().unwrap()])
        .err()
        .expect("a second server on the same directory must not start");
    assert!(err.contains("locked"), "{err}");
}

/// Writers hammer the server; it is killed with SIGKILL at arbitrary moments and
/// restarted. Every acknowledged write must be there, the in-flight one either fully
/// present or absent, and log, files and projection must agree.
#[test]
fn kill_9_during_a_write_storm_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    // name -> (last acknowledged counter, counter possibly in flight)
    let acked: Arc<Mutex<HashMap<String, (i64, i64)>>> = Arc::default();
    for round in 0..4u64 {
        let s = Arc::new(start(dir.path(), &[]));
        check_consistent(&s, dir.path(), &acked.lock().unwrap());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..3)
            .map(|w| {
                let (s, acked, stop) = (s.clone(), acked.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut i = 0i64;
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        i += 1;
                        let name = format!("w{w}-r{}", i % 4);
                        let counter = (round as i64) * 1_000_000 + i;
                        let body =
                            ruleset(&name, &format!("1.0.{counter}"), &format!("C{counter}"));
                        acked
                            .lock()
                            .unwrap()
                            .entry(name.clone())
                            .or_insert((-1, -1))
                            .1 = counter;
                        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            s.post("/api/v1/rulesets", &body).status
                        }));
                        match ok {
                            Ok(200 | 201) => {
                                acked.lock().unwrap().get_mut(&name).unwrap().0 = counter;
                            }
                            // The connection died with the server.
                            _ => break,
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300 + round * 150));
        let pid = s.pid();
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for w in writers {
            w.join().unwrap();
        }
    }
    let s = start(dir.path(), &[]);
    let acked = acked.lock().unwrap();
    assert!(
        acked.values().filter(|(a, _)| *a > 0).count() >= 6,
        "too few writes: {acked:?}"
    );
    check_consistent(&s, dir.path(), &acked);
}

fn check_consistent(s: &Server, dir: &Path, acked: &HashMap<String, (i64, i64)>) {
    for (name, (last_acked, in_flight)) in acked {
        let r = s.get(&format!("/api/v1/rulesets/{name}"));
        if *last_acked < 0 {
            // Never acknowledged: absent, or fully present as the in-flight write.
            if r.status == 404 {
                assert!(!dir.join(format!("{name}.json")).exists());
                continue;
            }
        }
        assert_eq!(r.status, 200, "{name} lost: {}", r.text);
        let got = r.json();
        let version = got["config"]["version"].as_str().unwrap().to_string();
        let ok = [*last_acked, *in_flight]
            .iter()
            .any(|c| *c >= 0 && version == format!("1.0.{c}"));
        assert!(
            ok,
            "{name}: found {version}, acknowledged {last_acked}, in flight {in_flight}"
        );
        // Projection agrees with the log and the file.
        let code = s
            .post(
                &format!("/api/v1/execute/{name}"),
                &json!({"input": {"x": 1}}),
            )
            .json()["code"]
            .clone();
        assert_eq!(code, format!("C{}", &version["1.0.".len()..]));
        assert_eq!(file_json(&dir.join(format!("{name}.json"))), got);
    }
    // Every file is a ruleset the log knows, and no staged file is left behind.
    for entry in fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            !name.contains("ordo-tmp") && !name.contains("ordo-del"),
            "{name} left behind"
        );
        if let Some(stem) = name.strip_suffix(".json") {
            assert_eq!(
                s.get(&format!("/api/v1/rulesets/{stem}")).status,
                200,
                "{name}"
            );
        }
    }
    // Seqs are gapless: every commit is one version here (puts only).
    let mut seqs: Vec<u64> = Vec::new();
    for name in names(s) {
        let v = s.get(&format!("/api/v1/rulesets/{name}/versions")).json();
        seqs.extend(
            v["versions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["seq"].as_u64().unwrap()),
        );
    }
    seqs.sort_unstable();
    let last = s.get("/health").json()["storage"]["last_seq"]
        .as_u64()
        .unwrap();
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>());
}

#[test]
fn file_import_respects_tenants_and_their_quotas() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), &["--multi-tenancy-enabled"]);
    s.post("/api/v1/tenants", &json!({"id": "acme", "max_rules": 1}));
    let acme = dir.path().join("tenants/acme");
    fs::create_dir_all(&acme).unwrap();
    fs::write(
        acme.join("a.json"),
        serde_json::to_string(&ruleset("a", "1", "A")).unwrap(),
    )
    .unwrap();
    fs::write(
        acme.join("b.json"),
        serde_json::to_string(&ruleset("b", "1", "B")).unwrap(),
    )
    .unwrap();
    let ghost = dir.path().join("tenants/ghost");
    fs::create_dir_all(&ghost).unwrap();
    fs::write(
        ghost.join("g.json"),
        serde_json::to_string(&ruleset("g", "1", "G")).unwrap(),
    )
    .unwrap();
    let report = s.request("POST", "/api/v1/admin/reload", &[], None).json();
    assert_eq!(report["imported"], 1, "{report}");
    let reasons: Vec<String> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["path"].as_str().unwrap(),
                e["reason"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("b.json") && r.contains("max_rules")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("g.json") && r.contains("not found")),
        "{reasons:?}"
    );
    let h = [("x-tenant-id", "acme")];
    assert_eq!(s.get_as("/api/v1/rulesets/a", &h).status, 200);
    assert_eq!(s.get_as("/api/v1/rulesets/b", &h).status, 404);
}

// The same tests with the commit log on PostgreSQL.
/// A file is written after its commit: a crash in between leaves the file behind the
/// log. The next start writes it again from the log instead of taking it for a hand edit;
/// after a clean stop, the same difference is a hand edit and is imported.
#[test]
fn a_file_left_behind_its_commit_by_a_crash_is_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), &[]);
    assert_eq!(
        s.post("/api/v1/rulesets", &ruleset("r", "1", "OLD")).status,
        201
    );
    let old = fs::read_to_string(dir.path().join("r.json")).unwrap();
    assert_eq!(
        s.post("/api/v1/rulesets", &ruleset("r", "2", "NEW")).status,
        200
    );
    s.kill9();
    // As if the crash had come after the commit, before its file.
    fs::write(dir.path().join("r.json"), &old).unwrap();
    let s = start(dir.path(), &[]);
    let out = s
        .post("/api/v1/execute/r", &json!({"input": {"x": 1}}))
        .json();
    assert_eq!(out["code"], "NEW");
    assert_eq!(
        file_json(&dir.path().join("r.json"))["config"]["version"],
        "2"
    );
    let versions = s.get("/api/v1/rulesets/r/versions").json();
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        2,
        "{versions}"
    );
    assert!(s.log_text().contains("written again from the log"));
    // After a clean stop nothing is in doubt: the same edit is the user's.
    s.terminate();
    fs::write(dir.path().join("r.json"), &old).unwrap();
    let s = start(dir.path(), &[]);
    let out = s
        .post("/api/v1/execute/r", &json!({"input": {"x": 1}}))
        .json();
    assert_eq!(out["code"], "OLD");
    let versions = s.get("/api/v1/rulesets/r/versions").json();
    assert_eq!(versions["versions"][0]["source"], "file", "{versions}");
}

/// The same for a new ruleset: a crash before its first file leaves no file at all. The
/// next start must write it, not take the missing file for a deletion.
#[test]
fn a_new_ruleset_whose_first_file_a_crash_prevented_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), &[]);
    assert_eq!(
        s.post("/api/v1/rulesets", &ruleset("kept", "1", "KEPT"))
            .status,
        201
    );
    s.kill9();
    fs::remove_file(dir.path().join("kept.json")).unwrap();
    let s = start(dir.path(), &[]);
    let out = s
        .post("/api/v1/execute/kept", &json!({"input": {"x": 1}}))
        .json();
    assert_eq!(out["code"], "KEPT", "{out}");
    assert_eq!(
        file_json(&dir.path().join("kept.json"))["config"]["version"],
        "1"
    );
    let versions = s.get("/api/v1/rulesets/kept/versions").json();
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        1,
        "{versions}"
    );
}

/// After a restart the server is ready before its rulesets' contents are read back
/// from the log (the warm-up reads and compiles them). Requests that come at once, on a
/// single worker thread, wait for what they need and are all answered correctly: the
/// wait never depends on the worker they hold.
#[test]
fn requests_right_after_a_restart_are_served_while_contents_are_read_back() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..400 {
        let body = ruleset(&format!("r{i}"), "1.0.0", &format!("C{i}"));
        fs::write(dir.path().join(format!("r{i}.json")), body.to_string()).unwrap();
    }
    let s = start(dir.path(), &[]);
    assert_eq!(names(&s).len(), 400);
    drop(s);
    let s = Arc::new(start(dir.path(), &["--worker-threads", "1"]));
    let mut clients = Vec::new();
    for i in (0..400).rev().step_by(50) {
        let s = s.clone();
        clients.push(std::thread::spawn(move || {
            let r = s.post(
                &format!("/api/v1/execute/r{i}"),
                &json!({"input": {"x": 20}}),
            );
            assert_eq!(r.status, 200, "{}", r.text);
            assert_eq!(r.json()["code"], format!("C{i}"));
            assert_eq!(r.json()["output"]["size"], "big");
        }));
    }
    let reader = {
        let s = s.clone();
        std::thread::spawn(move || {
            let r = s.get("/api/v1/rulesets/r399");
            assert_eq!(r.status, 200, "{}", r.text);
            assert_eq!(r.json()["config"]["version"], "1.0.0");
            assert_eq!(names(&s).len(), 400);
        })
    };
    let writer = {
        let s = s.clone();
        std::thread::spawn(move || {
            let r = s.post("/api/v1/rulesets", &ruleset("r0", "2.0.0", "NEW"));
            assert_eq!(r.status, 200, "{}", r.text);
        })
    };
    for t in clients.into_iter().chain([reader, writer]) {
        t.join().unwrap();
    }
    let r = s.post("/api/v1/execute/r0", &json!({"input": {"x": 1}}));
    assert_eq!(r.json()["code"], "NEW");
    let r = s.get("/api/v1/rulesets/r0");
    assert_eq!(r.json()["config"]["version"], "2.0.0");
}

/// The file cache (what was last read of each rules file) follows the directory: a
/// file read is remembered, an unchanged one keeps its entry, a removed one loses it.
#[test]
fn the_file_cache_follows_the_rules_directory() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a", "b", "c"] {
        fs::write(
            dir.path().join(format!("{name}.json")),
            ruleset(name, "1.0.0", "X").to_string(),
        )
        .unwrap();
    }
    let rows = |dir: &Path| -> Vec<(String, String)> {
        let db = dir.join(".ordo/ordo.db");
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                use sqlx::Connection;
                let mut conn =
                    sqlx::SqliteConnection::connect(&format!("sqlite:{}?mode=ro", db.display()))
                        .await
                        .unwrap();
                // One line per file: tenant, name, raw hash, content hash, size,
                // mtime, checked at.
                let data: String =
                    sqlx::query_scalar("SELECT data FROM file_cache_snapshot WHERE id = 1")
                        .fetch_one(&mut conn)
                        .await
                        .unwrap();
                let mut rows: Vec<(String, String)> = data
                    .lines()
                    .map(|line| {
                        let f: Vec<&str> = line.split('\t').collect();
                        assert_eq!(f.len(), 7, "{line}");
                        (f[1].to_string(), f[3].to_string())
                    })
                    .collect();
                rows.sort();
                rows
            })
    };
    let s = start(dir.path(), &[]);
    assert_eq!(names(&s), ["a", "b", "c"]);
    drop(s);
    let first = rows(dir.path());
    let cached: Vec<&str> = first.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(cached, ["a", "b", "c"]);

    // A restart over unchanged files leaves the cache as it was.
    let s = start(dir.path(), &[]);
    assert_eq!(names(&s), ["a", "b", "c"]);
    fs::remove_file(dir.path().join("b.json")).unwrap();
    fs::write(
        dir.path().join("c.json"),
        ruleset("c", "2.0.0", "Y").to_string(),
    )
    .unwrap();
    let r = s.request("POST", "/api/v1/admin/reload", &[], None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(names(&s), ["a", "c"]);
    let c_hash = s.get("/api/v1/rulesets/c/versions").json()["versions"][0]["hash"].clone();
    drop(s);
    let now = rows(dir.path());
    assert_eq!(now.len(), 2, "{now:?}");
    assert_eq!(now[0], first[0], "an unchanged file keeps its entry");
    assert_eq!(now[1].0, "c");
    assert_eq!(
        json!(now[1].1),
        c_hash,
        "a file read again is remembered as it is now"
    );
}

on_postgres!(
    requests_right_after_a_restart_are_served_while_contents_are_read_back,
    a_file_left_behind_its_commit_by_a_crash_is_written_again,
    a_new_ruleset_whose_first_file_a_crash_prevented_is_kept,
    examples_load_and_writes_survive_a_restart_as_files,
    files_are_imported_at_start_and_on_reload,
    interrupted_file_writes_are_resolved_at_start,
    one_directory_has_one_owner,
    kill_9_during_a_write_storm_loses_nothing_acknowledged,
    file_import_respects_tenants_and_their_quotas,
);

/// Rulesets read back from the log compile on first use. One that no longer compiles
/// (only a changed engine could cause it; simulated here by editing the database) is
/// reported with its reason, and the others are served as usual.
#[test]
fn a_stored_ruleset_that_no_longer_compiles_is_reported_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), &[]);
    assert_eq!(
        s.post("/api/v1/rulesets", &ruleset("good", "1.0.0", "G"))
            .status,
        201
    );
    assert_eq!(
        s.post("/api/v1/rulesets", &ruleset("bad", "1.0.0", "B"))
            .status,
        201
    );
    drop(s);
    let mut broken = ruleset("bad", "1.0.0", "B");
    broken["steps"]["check"]["default_next"] = json!("nowhere");
    let db = dir.path().join(".ordo/ordo.db");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite:{}", db.display()))
                .await
                .unwrap();
            sqlx::query("UPDATE commits SET content = ? WHERE name = 'bad'")
                .bind(broken.to_string())
                .execute(&mut conn)
                .await
                .unwrap();
        });
    // The file and the hash column still say the content is current, so the start
    // serves the edited log rather than importing the file again.
    let s = start(dir.path(), &[]);
    let r = s.post("/api/v1/execute/good", &json!({"input": {"x": 1}}));
    assert_eq!(r.json()["code"], "G");
    let r = s.post("/api/v1/execute/bad", &json!({"input": {"x": 1}}));
    assert_eq!(r.status, 500, "{}", r.text);
    assert!(r.text.contains("does not compile"), "{}", r.text);
}

/// Rules files may be symbolic links (as in a Kubernetes ConfigMap mount); links to
/// anything but a file are skipped.
#[test]
fn symbolically_linked_rules_files_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("linked.json");
    fs::write(&target, ruleset("linked", "1.0.0", "L").to_string()).unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join("linked.json")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("folder.json")).unwrap();
    let s = start(dir.path(), &[]);
    assert_eq!(names(&s), ["linked"]);
    let r = s.post("/api/v1/execute/linked", &json!({"input": {"x": 1}}));
    assert_eq!(r.json()["code"], "L");
}

/// Runs `ordo-server <args> import` and returns its exit code, stdout and stderr.
fn import(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(common::BIN)
        .args(["--log-level", "info"])
        .args(args)
        .arg("import")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `ordo-server import` brings the embedded log up to the directory as a one-off
/// process; a server then imports nothing. It takes the directory's lock, so it is
/// refused while a server holds it, and a configuration it cannot use stops it with
/// exit code 2, touching nothing.
#[test]
fn the_import_command_fills_the_log_once_and_takes_the_directory_lock() {
    if common::postgres::active() {
        return;
    }
    let dir = rules_dir_with(&["discount.json", "fraud-score.json"]);
    let path = dir.path().to_str().unwrap();
    let (code, out, err) = import(&["--rules-dir", path]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("imported=2") && out.contains("import done"),
        "{out}"
    );
    let audited = out.lines().filter(|l| l.contains("ordo::audit")).count();
    assert_eq!(audited, 2, "{out}");
    // Nothing new the second time.
    let (code, out, err) = import(&["--rules-dir", path]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("imported=0") && out.contains("loaded=2"),
        "{out}"
    );

    let s = start(dir.path(), &[]);
    assert_eq!(names(&s), ["discount", "fraud-score"]);
    assert_eq!(s.get("/health").json()["storage"]["last_seq"], 2);
    assert!(s.log_text().contains("imported=0"), "{}", s.log_text());
    // A file added while the server holds the directory is not imported behind its back.
    fs::write(
        dir.path().join("added.json"),
        serde_json::to_string(&ruleset("added", "1.0.0", "A")).unwrap(),
    )
    .unwrap();
    let (code, out, err) = import(&["--rules-dir", path]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("is locked by another ordo-server"), "{err}");
    assert_eq!(s.get("/health").json()["storage"]["last_seq"], 2);
    drop(s);
    let (code, out, err) = import(&["--rules-dir", path]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("imported=1"), "{out}");

    for (args, reason) in [
        (
            vec!["--rules-dir", path, "--role", "reader"],
            "a reader commits nothing",
        ),
        (vec![], "no rules directory to import"),
        (
            vec![
                "--rules-dir",
                path,
                "--database-url",
                "postgres://127.0.0.1:1/ordo",
            ],
            "a one-off import writes the embedded SQLite log",
        ),
        (vec!["--rules-dir", path, "--port", "nope"], "port"),
    ] {
        let (code, out, err) = import(&args);
        assert_eq!(code, Some(2), "{args:?}: {out}{err}");
        assert!(err.contains(reason), "{args:?}: {err}");
    }
    let s = start(dir.path(), &[]);
    assert_eq!(s.get("/health").json()["storage"]["last_seq"], 3);
}

/// The import process only saves the server work: when it cannot run (here its binary
/// is gone, deleted once the server runs), the server imports the files itself.
#[test]
fn a_first_start_whose_import_process_cannot_run_imports_by_itself() {
    if common::postgres::active() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let n = ordo_server::service::OWN_PROCESS_FROM + 10;
    for i in 0..n {
        let name = format!("r-{i:03}");
        let text = serde_json::to_string(&ruleset(&name, "1.0.0", &name)).unwrap();
        fs::write(dir.path().join(format!("{name}.json")), text).unwrap();
    }
    let bin_dir = tempfile::tempdir().unwrap();
    let bin = bin_dir.path().join("ordo-server");
    fs::copy(common::BIN, &bin).unwrap();
    let s = Server::try_start_binary(
        bin.to_str().unwrap(),
        &["--rules-dir", dir.path().to_str().unwrap()],
        || fs::remove_file(&bin).unwrap(),
    )
    .unwrap();
    let log = s.log_text();
    assert!(
        log.contains("cannot start the import process")
            && log.contains("importing in the server's own process"),
        "{log}"
    );
    assert!(!log.contains("imported by a one-off process"), "{log}");
    assert_eq!(s.get("/health").json()["storage"]["last_seq"], n);
    let r = s.post("/api/v1/execute/r-007", &json!({"input": {"x": 1}}));
    assert_eq!(r.json()["code"], "r-007", "{}", r.text);
}

/// Many files added while the server was stopped are imported by a process of its own
/// too, into the log that already exists.
#[test]
fn many_files_added_while_stopped_are_imported_by_a_process_of_their_own() {
    if common::postgres::active() {
        return;
    }
    let dir = rules_dir_with(&["discount.json"]);
    let s = start(dir.path(), &[]);
    assert!(
        !s.log_text().contains("one-off process"),
        "{}",
        s.log_text()
    );
    drop(s);
    let n = ordo_server::service::OWN_PROCESS_FROM;
    for i in 0..n {
        let name = format!("added-{i:03}");
        let text = serde_json::to_string(&ruleset(&name, "1.0.0", &name)).unwrap();
        fs::write(dir.path().join(format!("{name}.json")), text).unwrap();
    }
    let s = start(dir.path(), &[]);
    let log = s.log_text();
    assert!(
        log.contains("rules directory imported by a one-off process")
            && log.contains(&format!("commits={n}")),
        "{log}"
    );
    assert_eq!(s.get("/health").json()["storage"]["last_seq"], n + 1);
    let r = s.post("/api/v1/execute/added-042", &json!({"input": {"x": 1}}));
    assert_eq!(r.json()["code"], "added-042", "{}", r.text);
    let r = s.get("/api/v1/rulesets/discount");
    assert_eq!(r.status, 200, "{}", r.text);
}
