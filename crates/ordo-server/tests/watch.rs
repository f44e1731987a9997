//! `--watch-rules`: readers follow the writer's rules directory; a watched writer turns
//! hand edits into commits; nothing invalid or half-written replaces a good ruleset.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Server, ruleset, wait_for};
use serde_json::{Value, json};

/// How long a change may take to be seen.
const WAIT: Duration = Duration::from_secs(10);

fn code(s: &Server, name: &str) -> Option<String> {
    let r = s.post(
        &format!("/api/v1/execute/{name}"),
        &json!({"input": {"x": 1}}),
    );
    (r.status == 200).then(|| r.json()["code"].as_str().unwrap().to_string())
}

/// A reader following `dir` with `--watch-rules`.
fn watching_reader(dir: &Path, extra: &[&str]) -> Server {
    let mut args = vec![
        "--role",
        "reader",
        "--rules-dir",
        dir.to_str().unwrap(),
        "--watch-rules",
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn writer_and_reader(dir: &Path) -> (Server, Server) {
    let d = dir.to_str().unwrap().to_string();
    let d2 = d.clone();
    // Both at the same instant, on a directory neither has seen.
    let w = std::thread::spawn(move || {
        Server::start(&["--role", "writer", "--rules-dir", &d, "--watch-rules"])
    });
    let r = std::thread::spawn(move || {
        watching_reader(
            Path::new(&d2),
            &["--writer-addr", "http://writer.example:8080"],
        )
    });
    (w.join().unwrap(), r.join().unwrap())
}

#[test]
fn a_reader_follows_every_change_of_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let (w, r) = writer_and_reader(dir.path());
    assert_eq!(r.get("/healthz/ready").status, 200);
    assert_eq!(r.get("/health").json()["storage"]["backend"], "memory");

    assert_eq!(
        w.post("/api/v1/rulesets", &ruleset("r", "1.0.0", "A"))
            .status,
        201
    );
    wait_for("the put", WAIT, || code(&r, "r").as_deref() == Some("A"));
    // Same version, new content: applied by content, not by version string.
    assert_eq!(
        w.post("/api/v1/rulesets", &ruleset("r", "1.0.0", "B"))
            .status,
        200
    );
    wait_for("the same-version change", WAIT, || {
        code(&r, "r").as_deref() == Some("B")
    });
    let r2 = w.post("/api/v1/rulesets/r/rollback", &json!({"seq": 1}));
    assert_eq!(r2.status, 200, "{}", r2.text);
    wait_for("the rollback", WAIT, || {
        code(&r, "r").as_deref() == Some("A")
    });
    assert_eq!(w.delete("/api/v1/rulesets/r").status, 204);
    wait_for("the delete", WAIT, || {
        r.get("/api/v1/rulesets/r").status == 404
    });

    // The reader still refuses writes, naming the writer.
    let resp = r.post("/api/v1/rulesets", &ruleset("x", "1.0.0", "X"));
    assert_eq!(resp.status, 409);
    assert_eq!(resp.json()["writer"], "http://writer.example:8080");
    // The writer did not reload its own writes as hand edits: only API commits.
    let sources: Vec<Value> = w.get("/api/v1/rulesets/r/versions").json()["versions"]
        .as_array()
        .map(|v| v.iter().map(|x| x["source"].clone()).collect())
        .unwrap_or_default();
    assert!(sources.iter().all(|s| s != "file"), "{sources:?}");
}

#[test]
fn an_invalid_or_half_written_file_never_replaces_a_good_ruleset() {
    let dir = tempfile::tempdir().unwrap();
    let (w, r) = writer_and_reader(dir.path());
    assert_eq!(
        w.post("/api/v1/rulesets", &ruleset("r", "1.0.0", "A"))
            .status,
        201
    );
    wait_for("the put", WAIT, || code(&r, "r").as_deref() == Some("A"));

    // Written in place, cut off half-way.
    let full = ruleset("r", "2.0.0", "B").to_string();
    std::fs::write(dir.path().join("r.json"), &full[..full.len() / 2]).unwrap();
    for s in [&w, &r] {
        wait_for("the problem report", WAIT, || {
            !s.get("/health").json()["checks"]["rules_dir_problems"]
                .as_array()
                .unwrap()
                .is_empty()
        });
        assert_eq!(code(s, "r").as_deref(), Some("A"));
    }
    // A valid file, but not a valid ruleset.
    let mut bad = ruleset("r", "2.0.0", "B");
    bad["steps"]["check"]["default_next"] = json!("nowhere");
    std::fs::write(dir.path().join("r.json"), bad.to_string()).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(code(&w, "r").as_deref(), Some("A"));
    assert_eq!(code(&r, "r").as_deref(), Some("A"));
    // Repaired by hand: the writer commits it, the reader follows.
    std::fs::write(dir.path().join("r.json"), full).unwrap();
    wait_for("the repaired file on the writer", WAIT, || {
        code(&w, "r").as_deref() == Some("B")
    });
    wait_for("the repaired file on the reader", WAIT, || {
        code(&r, "r").as_deref() == Some("B")
    });
    let versions = w.get("/api/v1/rulesets/r/versions").json();
    assert_eq!(versions["versions"][0]["source"], "file", "{versions}");
}

#[test]
fn a_reader_alone_comes_up_and_never_writes_to_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let r = watching_reader(dir.path(), &[]);
    assert_eq!(r.get("/healthz/ready").status, 200);
    assert_eq!(r.get("/api/v1/rulesets").json(), json!([]));
    // Files placed by someone else are served.
    std::fs::write(
        dir.path().join("late.json"),
        ruleset("late", "1.0.0", "L").to_string(),
    )
    .unwrap();
    wait_for("the new file", WAIT, || {
        code(&r, "late").as_deref() == Some("L")
    });
    drop(r);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        names,
        ["late.json"],
        "the reader must not write to the directory"
    );
}

#[test]
fn watching_needs_a_rules_dir() {
    let err = Server::try_start(&["--watch-rules"]).err().unwrap();
    assert!(err.contains("watch_rules"), "{err}");
    assert!(err.contains("needs rules_dir"), "{err}");
}

fn reloads(s: &Server) -> u64 {
    s.get("/metrics")
        .text
        .lines()
        .filter(|l| l.starts_with("ordo_rules_reloads_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn a_burst_of_edits_is_coalesced_and_its_last_state_wins() {
    let dir = tempfile::tempdir().unwrap();
    let r = watching_reader(dir.path(), &[]);
    let before = reloads(&r);
    let started = Instant::now();
    for i in 0..100 {
        std::fs::write(
            dir.path().join("b.json"),
            ruleset("b", "1.0.0", &format!("V{i}")).to_string(),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let burst = started.elapsed();
    wait_for("the last state", WAIT, || {
        code(&r, "b").as_deref() == Some("V99")
    });
    std::thread::sleep(Duration::from_millis(500));
    let done = reloads(&r) - before;
    // At most one reload per 200 ms of burst, plus the first and the trailing one.
    let bound = burst.as_millis() as u64 / 200 + 3;
    assert!(
        done <= bound,
        "{done} reloads for a {burst:?} burst (bound {bound})"
    );
    assert_eq!(code(&r, "b").as_deref(), Some("V99"));
}

/// The native watcher cannot start on a directory that does not exist yet: the reader
/// comes up all the same, and watches the directory once the writer has created it.
#[test]
fn a_reader_started_before_its_directory_exists_follows_it_once_created() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("shared");
    let r = watching_reader(&dir, &[]);
    assert_eq!(r.get("/healthz/ready").status, 200);
    assert!(r.log_text().contains("cannot watch the rules directory"));
    assert_eq!(
        r.get("/health").json()["sync"]["rules_dir"]["watcher"],
        "polling"
    );
    let w = Server::start(&["--role", "writer", "--rules-dir", dir.to_str().unwrap()]);
    assert_eq!(
        w.post("/api/v1/rulesets", &ruleset("r", "1.0.0", "A"))
            .status,
        201
    );
    wait_for("the first file", WAIT, || {
        code(&r, "r").as_deref() == Some("A")
    });
    assert_eq!(
        w.post("/api/v1/rulesets", &ruleset("r", "1.0.0", "B"))
            .status,
        200
    );
    wait_for("the next change", WAIT, || {
        code(&r, "r").as_deref() == Some("B")
    });
    let sync = r.get("/health").json()["sync"]["rules_dir"].clone();
    assert_eq!(sync["watcher"], "native", "{sync}");
    assert_eq!(sync["mode"], "rules_dir_watch");
    assert!(sync["last_reload_at_ms"].as_i64().unwrap() > 0, "{sync}");
}

#[test]
fn a_watcher_that_dies_at_runtime_is_replaced_and_started_again() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("shared");
    std::fs::create_dir(&dir).unwrap();
    let write = |code: &str| {
        std::fs::write(dir.join("r.json"), ruleset("r", "1.0.0", code).to_string()).unwrap()
    };
    write("A");
    let r = watching_reader(&dir, &[]);
    assert_eq!(code(&r, "r").as_deref(), Some("A"));
    // The directory is removed under the watcher (its inotify watch dies with it) ...
    std::fs::remove_dir_all(&dir).unwrap();
    wait_for("the reader to notice", WAIT, || {
        r.get("/health").json()["sync"]["rules_dir"]["watcher"] == "polling"
    });
    wait_for("the deletion to be applied", WAIT, || {
        code(&r, "r").is_none()
    });
    // ... and made again: watched again within a second or so, long before the 30 s poll.
    std::fs::create_dir(&dir).unwrap();
    write("B");
    wait_for("the new directory's file", WAIT, || {
        code(&r, "r").as_deref() == Some("B")
    });
    wait_for("the native watcher again", WAIT, || {
        r.get("/health").json()["sync"]["rules_dir"]["watcher"] == "native"
    });
    write("C");
    wait_for("an edit seen by the new watcher", WAIT, || {
        code(&r, "r").as_deref() == Some("C")
    });
    assert!(r.log_text().contains("went away"), "{}", r.log_text());
}

#[test]
fn tenants_and_their_rules_reach_a_reader_of_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let w = Server::start(&[
        "--role",
        "writer",
        "--rules-dir",
        d,
        "--watch-rules",
        "--multi-tenancy-enabled",
    ]);
    let r = watching_reader(dir.path(), &["--multi-tenancy-enabled"]);
    let acme = [("x-tenant-id", "acme")];
    let created = w.post(
        "/api/v1/tenants",
        &json!({"id": "acme", "name": "Acme", "max_rules": 5}),
    );
    assert_eq!(created.status, 201, "{}", created.text);
    let put = w.send_json_as(
        "POST",
        "/api/v1/rulesets",
        &ruleset("p", "1.0.0", "ACME"),
        &acme,
    );
    assert_eq!(put.status, 201, "{}", put.text);
    assert_eq!(
        w.post("/api/v1/rulesets", &ruleset("p", "1.0.0", "DEFAULT"))
            .status,
        201
    );
    let run = |tenant: &[(&str, &str)]| {
        let out = r.send_json_as(
            "POST",
            "/api/v1/execute/p",
            &json!({"input": {"x": 1}}),
            tenant,
        );
        (out.status == 200).then(|| out.json()["code"].as_str().unwrap().to_string())
    };
    wait_for("the tenant's ruleset on the reader", WAIT, || {
        run(&acme).as_deref() == Some("ACME")
    });
    wait_for("the default tenant's ruleset", WAIT, || {
        run(&[]).as_deref() == Some("DEFAULT")
    });
    assert_eq!(run(&acme).as_deref(), Some("ACME"));
    assert_eq!(r.get_as("/api/v1/tenants/acme", &[]).json()["max_rules"], 5);
    // A configuration change alone reaches it too.
    let changed = w.send_json(
        "PUT",
        "/api/v1/tenants/acme",
        &json!({"id": "acme", "name": "Acme", "max_rules": 9}),
    );
    assert_eq!(changed.status, 200, "{}", changed.text);
    wait_for("the tenant's new configuration", WAIT, || {
        r.get("/api/v1/tenants/acme").json()["max_rules"] == 9
    });
    assert!(
        r.get("/health").json()["checks"]["rules_dir_problems"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}
