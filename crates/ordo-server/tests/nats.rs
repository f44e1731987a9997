//! NATS JetStream sync with real processes: a private `nats-server -js` per test, one
//! writer and readers, all started from the real binary.
#![cfg(feature = "nats-sync")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, Instant};

use common::nats::Nats;
use common::{Server, ruleset, wait_for};
use serde_json::{Value, json};

const CONVERGE: Duration = Duration::from_secs(30);

fn writer(nats: &Nats, dir: &std::path::Path, extra: &[&str]) -> Server {
    let mut args = vec![
        "--role",
        "writer",
        "--rules-dir",
        dir.to_str().unwrap(),
        "--multi-tenancy-enabled",
    ];
    args.extend_from_slice(extra);
    let url = nats.url();
    args.extend_from_slice(&["--nats-url", &url]);
    let s = Server::start(&args);
    s.wait_ready(CONVERGE).unwrap();
    s
}

fn reader(nats: &Nats, id: &str, extra: &[&str]) -> Server {
    let url = nats.url();
    let mut args = vec![
        "--role",
        "reader",
        "--instance-id",
        id,
        "--multi-tenancy-enabled",
        "--writer-addr",
        "http://writer:8080",
        "--nats-url",
        &url,
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn sync_of(s: &Server) -> Value {
    s.get("/health").json()["sync"].clone()
}

/// Waits until every reader serves exactly the writer's catalog (same seq, same hash)
/// and is ready.
fn converge(writer: &Server, readers: &[&Server]) {
    let want = sync_of(writer);
    for r in readers {
        let deadline = Instant::now() + CONVERGE;
        loop {
            let got = sync_of(r);
            if got["catalog_hash"] == want["catalog_hash"]
                && got["applied_seq"] == want["applied_seq"]
                && r.get("/healthz/ready").status == 200
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "reader did not converge: writer {want}\nreader {got}\n{}",
                r.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn code_of(s: &Server, name: &str, tenant: &str) -> Value {
    let r = s.send_json_as(
        "POST",
        &format!("/api/v1/execute/{name}"),
        &json!({"input": {"x": 1}}),
        &[("x-tenant-id", tenant)],
    );
    if r.status != 200 {
        return json!(null);
    }
    r.json()["code"].clone()
}

fn put(s: &Server, name: &str, version: &str, code: &str) -> u64 {
    let r = s.post("/api/v1/rulesets", &ruleset(name, version, code));
    assert_eq!(r.status / 100, 2, "{}", r.text);
    r.json()["seq"].as_u64().unwrap()
}

#[test]
fn put_update_delete_rollback_and_tenants_reach_every_reader() {
    let Some(nats) = Nats::start("put_update_delete_rollback_and_tenants_reach_every_reader")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let w = writer(&nats, dir.path(), &[]);
    let r1 = reader(&nats, "r1", &[]);
    let r2 = reader(&nats, "r2", &[]);
    converge(&w, &[&r1, &r2]);

    let first = put(&w, "pricing", "1.0.0", "P1");
    put(&w, "pricing", "2.0.0", "P2");
    // Same version, other content: readers apply by seq, not by version.
    put(&w, "pricing", "2.0.0", "P3");
    put(&w, "doomed", "1.0.0", "D");
    assert_eq!(w.delete("/api/v1/rulesets/doomed").status / 100, 2);
    let r = w.post("/api/v1/rulesets/pricing/rollback", &json!({"seq": first}));
    assert_eq!(r.status, 200, "{}", r.text);
    // A tenant with its own rules and limits.
    let r = w.post(
        "/api/v1/tenants",
        &json!({"id": "acme", "name": "Acme", "qps_limit": 1000}),
    );
    assert_eq!(r.status / 100, 2, "{}", r.text);
    let r = w.send_json_as(
        "POST",
        "/api/v1/rulesets",
        &ruleset("pricing", "9.0.0", "ACME"),
        &[("x-tenant-id", "acme")],
    );
    assert_eq!(r.status / 100, 2, "{}", r.text);
    converge(&w, &[&r1, &r2]);

    for r in [&r1, &r2] {
        assert_eq!(code_of(r, "pricing", "default"), "P1");
        assert_eq!(code_of(r, "pricing", "acme"), "ACME");
        assert_eq!(r.get("/api/v1/rulesets/doomed").status, 404);
        let t = r.get("/api/v1/tenants/acme").json();
        assert_eq!(t["qps_limit"], 1000, "{t}");
        let h = sync_of(r);
        assert_eq!(
            h["nats"]["consumer"],
            format!("ordo-{}", if std::ptr::eq(r, &r1) { "r1" } else { "r2" })
        );
        assert_eq!(h["nats"]["fresh"], true);
    }

    // The same-version content change alone, observed by execution.
    put(&w, "pricing", "1.0.0", "P4");
    wait_for("same-version change on r1", CONVERGE, || {
        code_of(&r1, "pricing", "default") == "P4"
    });
    // Tenant deletion propagates too.
    assert_eq!(
        w.send_json_as(
            "DELETE",
            "/api/v1/rulesets/pricing",
            &json!({}),
            &[("x-tenant-id", "acme")]
        )
        .status
            / 100,
        2
    );
    assert_eq!(w.delete("/api/v1/tenants/acme").status / 100, 2);
    converge(&w, &[&r1, &r2]);
    assert_eq!(r2.get("/api/v1/tenants/acme").status, 404);
}

#[test]
fn readers_restart_and_join_late_with_the_full_catalog() {
    let Some(nats) = Nats::start("readers_restart_and_join_late_with_the_full_catalog") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let w = writer(&nats, dir.path(), &[]);
    let r1 = reader(&nats, "r1", &[]);
    for i in 0..1000 {
        // 100 rulesets, each written 10 times: 1,000 commits.
        put(&w, &format!("rule-{}", i % 100), "1.0.0", &format!("C{i}"));
    }
    assert_eq!(sync_of(&w)["applied_seq"], 1000);
    converge(&w, &[&r1]);
    // Restart with the same id (no cache: it rebuilds from the stream).
    r1.kill9();
    let r1 = reader(&nats, "r1", &[]);
    // A reader that has never seen the deployment.
    let late = reader(&nats, "late", &[]);
    converge(&w, &[&r1, &late]);
    assert_eq!(code_of(&late, "rule-7", "default"), "C907");
    let list = late.get("/api/v1/rulesets").json();
    assert_eq!(list.as_array().unwrap().len(), 100);
}

#[test]
fn a_nats_outage_during_writes_loses_nothing() {
    let Some(mut nats) = Nats::start("a_nats_outage_during_writes_loses_nothing") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let w = writer(&nats, dir.path(), &[]);
    let r1 = reader(&nats, "r1", &["--nats-stale-after-secs", "2"]);
    let r2 = reader(&nats, "r2", &[]);
    converge(&w, &[&r1, &r2]);

    let mut n = 0;
    let writes = |n: &mut u32, count: u32| {
        for _ in 0..count {
            *n += 1;
            put(&w, &format!("r{}", *n % 7), "1.0.0", &format!("V{n}"));
        }
    };
    writes(&mut n, 20);
    nats.kill();
    let down = Instant::now();
    // The writer keeps accepting writes; readers keep serving.
    while down.elapsed() < Duration::from_secs(5) {
        writes(&mut n, 1);
        assert!(code_of(&r2, "r1", "default").is_string());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Cut off longer than its staleness bound, r1 says so.
    assert_eq!(r1.get("/healthz/ready").status, 503);
    assert!(
        w.get("/health").json()["checks"]["degraded_reasons"]
            .to_string()
            .contains("waiting to be published"),
    );
    nats.resume();
    writes(&mut n, 20);
    converge(&w, &[&r1, &r2]);
    assert_eq!(
        sync_of(&w)["nats"]["published_seq"],
        sync_of(&w)["applied_seq"]
    );
}

#[test]
fn a_writer_killed_between_commit_and_publish_publishes_on_restart() {
    let Some(mut nats) =
        Nats::start("a_writer_killed_between_commit_and_publish_publishes_on_restart")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let w = writer(&nats, dir.path(), &["--instance-id", "w1"]);
    let r1 = reader(&nats, "r1", &[]);
    put(&w, "a", "1.0.0", "A1");
    converge(&w, &[&r1]);
    // Commits acknowledged while they cannot be published, then kill -9.
    nats.kill();
    put(&w, "a", "1.0.0", "A2");
    put(&w, "b", "1.0.0", "B1");
    let want = sync_of(&w)["catalog_hash"].clone();
    w.kill9();
    nats.resume();
    let w = writer(&nats, dir.path(), &["--instance-id", "w1"]);
    assert_eq!(sync_of(&w)["catalog_hash"], want);
    converge(&w, &[&r1]);
    assert_eq!(code_of(&r1, "a", "default"), "A2");
    assert_eq!(code_of(&r1, "b", "default"), "B1");
}

#[test]
fn a_purged_stream_or_lost_consumer_makes_readers_rebuild() {
    let Some(nats) = Nats::start("a_purged_stream_or_lost_consumer_makes_readers_rebuild") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let w = writer(&nats, dir.path(), &[]);
    let r1 = reader(&nats, "r1", &[]);
    for i in 0..10 {
        put(&w, &format!("k{i}"), "1.0.0", "K");
    }
    converge(&w, &[&r1]);
    let rebuilds = |s: &Server| sync_of(s)["nats"]["rebuilds"].as_u64().unwrap();

    let before = rebuilds(&r1);
    nats.with_js(async |js| {
        js.get_stream("ordo-rules")
            .await
            .unwrap()
            .purge()
            .await
            .unwrap();
    });
    wait_for("a rebuild after the purge", CONVERGE, || {
        rebuilds(&r1) > before
    });
    // Serving all along, then ready again with everything.
    assert_eq!(code_of(&r1, "k3", "default"), "K");
    converge(&w, &[&r1]);
    // The writer filled the stream again: a new reader gets everything.
    let late = reader(&nats, "late", &[]);
    converge(&w, &[&late]);

    let before = rebuilds(&r1);
    nats.with_js(async |js| {
        js.get_stream("ordo-rules")
            .await
            .unwrap()
            .delete_consumer("ordo-r1")
            .await
            .unwrap();
    });
    wait_for("a rebuild after the consumer loss", CONVERGE, || {
        rebuilds(&r1) > before
    });
    put(&w, "after", "1.0.0", "AFTER");
    converge(&w, &[&r1, &late]);
    assert_eq!(code_of(&r1, "after", "default"), "AFTER");

    // The stream deleted: the writer creates it again and publishes its whole log; the
    // readers rebuild from the new stream.
    let before = rebuilds(&r1);
    nats.with_js(async |js| {
        js.delete_stream("ordo-rules").await.unwrap();
    });
    wait_for("a rebuild after the deletion", CONVERGE, || {
        rebuilds(&r1) > before
    });
    put(&w, "later", "1.0.0", "LATER");
    converge(&w, &[&r1, &late]);
    assert_eq!(code_of(&late, "k9", "default"), "K");
    assert_eq!(code_of(&late, "later", "default"), "LATER");
}

#[test]
fn an_undecodable_event_makes_a_reader_not_ready_but_serving() {
    let Some(nats) = Nats::start("an_undecodable_event_makes_a_reader_not_ready_but_serving")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let w = writer(&nats, dir.path(), &[]);
    let r1 = reader(&nats, "r1", &[]);
    put(&w, "good", "1.0.0", "G");
    converge(&w, &[&r1]);
    nats.with_js(async |js| {
        js.publish("ordo.rules.default.junk", "not an event".into())
            .await
            .unwrap()
            .await
            .unwrap();
    });
    wait_for("the reader to report not ready", CONVERGE, || {
        r1.get("/healthz/ready").status == 503
    });
    let reasons = r1.get("/healthz/ready").json()["reasons"].to_string();
    assert!(reasons.contains("undecodable"), "{reasons}");
    // The last good catalog is still served.
    assert_eq!(code_of(&r1, "good", "default"), "G");
    // The writer's next event on that subject replaces the junk: fresh again.
    put(&w, "junk", "1.0.0", "J");
    converge(&w, &[&r1]);
    assert_eq!(code_of(&r1, "junk", "default"), "J");
}

#[test]
fn a_second_writer_is_refused_until_the_first_is_gone() {
    let Some(nats) = Nats::start("a_second_writer_is_refused_until_the_first_is_gone") else {
        return;
    };
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ttl = ["--writer-lease-ttl-secs", "3"];
    let w1 = writer(&nats, d1.path(), &ttl);
    put(&w1, "one", "1.0.0", "W1");
    let url = nats.url();
    let mut args = vec![
        "--role",
        "writer",
        "--rules-dir",
        d2.path().to_str().unwrap(),
    ];
    args.extend_from_slice(&ttl);
    args.extend_from_slice(&["--nats-url", &url, "--instance-id", "w2"]);
    let w2 = Server::start(&args);
    wait_for("w2 to see the lease held", CONVERGE, || {
        w2.get("/healthz/ready")
            .text
            .contains("holds the writer lease")
    });
    let r = w2.post("/api/v1/rulesets", &ruleset("two", "1.0.0", "W2"));
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.json()["code"], "NOT_LEASE_HOLDER");
    assert_eq!(w2.get("/api/v1/rulesets/two").status, 404);

    // The first writer stops: the second takes over once the lease expires.
    w1.kill9();
    w2.wait_ready(Duration::from_secs(20)).unwrap();
    put(&w2, "two", "1.0.0", "W2");
    let r1 = reader(&nats, "r1", &[]);
    converge(&w2, &[&r1]);
    // Its log is another authority: the reader serves exactly the new writer's rules.
    assert_eq!(r1.get("/api/v1/rulesets/one").status, 404);
    assert_eq!(code_of(&r1, "two", "default"), "W2");
}

#[test]
fn a_writer_stopped_with_sigterm_publishes_and_hands_its_lease_over_at_once() {
    let Some(nats) =
        Nats::start("a_writer_stopped_with_sigterm_publishes_and_hands_its_lease_over_at_once")
    else {
        return;
    };
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The default TTL (10 s): a hand-over within 5 s is the lease given back.
    let w1 = writer(&nats, d1.path(), &[]);
    put(&w1, "one", "1.0.0", "W1");
    let url = nats.url();
    let args = [
        "--role",
        "writer",
        "--rules-dir",
        d2.path().to_str().unwrap(),
        "--nats-url",
        &url,
    ];
    let w2 = Server::start(&args);
    wait_for("w2 to see the lease held", CONVERGE, || {
        w2.get("/healthz/ready")
            .text
            .contains("holds the writer lease")
    });
    let stopped = Instant::now();
    let log = w1.log.clone();
    assert!(w1.terminate().success());
    assert!(log.lock().unwrap().contains("writer lease given back"));
    w2.wait_ready(Duration::from_secs(5)).unwrap();
    assert!(stopped.elapsed() < Duration::from_secs(5));
    put(&w2, "two", "1.0.0", "W2");
    let r1 = reader(&nats, "r1", &[]);
    converge(&w2, &[&r1]);
}

#[test]
fn a_reader_started_before_the_writer_waits_not_ready() {
    let Some(nats) = Nats::start("a_reader_started_before_the_writer_waits_not_ready") else {
        return;
    };
    let r1 = reader(&nats, "r1", &[]);
    std::thread::sleep(Duration::from_millis(500));
    let ready = r1.get("/healthz/ready");
    assert_eq!(ready.status, 503);
    assert!(ready.text.contains("waiting for stream"), "{}", ready.text);
    // It serves what it has (nothing) meanwhile.
    assert_eq!(r1.get("/api/v1/rulesets").status, 200);
    let dir = tempfile::tempdir().unwrap();
    let w = writer(&nats, dir.path(), &[]);
    put(&w, "x", "1.0.0", "X");
    converge(&w, &[&r1]);
}

#[test]
fn a_reader_killed_during_writes_catches_up() {
    let Some(nats) = Nats::start("a_reader_killed_during_writes_catches_up") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let w = writer(&nats, dir.path(), &[]);
    let r1 = reader(&nats, "r1", &[]);
    let mut r1 = Some(r1);
    for i in 0..60 {
        if i == 20 {
            r1.take().unwrap().kill9();
        }
        if i == 40 {
            r1 = Some(reader(&nats, "r1", &[]));
        }
        put(&w, &format!("n{}", i % 9), "1.0.0", &format!("N{i}"));
    }
    converge(&w, &[r1.as_ref().unwrap()]);
}

#[test]
fn a_reader_with_a_rules_directory_serves_its_cache_at_once_and_follows_on() {
    let Some(mut nats) =
        Nats::start("a_reader_with_a_rules_directory_serves_its_cache_at_once_and_follows_on")
    else {
        return;
    };
    let (wd, rd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let w = writer(&nats, wd.path(), &[]);
    let r = w.post("/api/v1/tenants", &json!({"id": "acme", "name": "Acme"}));
    assert_eq!(r.status / 100, 2, "{}", r.text);
    put(&w, "a", "1.0.0", "A1");
    put(&w, "gone", "1.0.0", "G");
    let r = w.send_json_as(
        "POST",
        "/api/v1/rulesets",
        &ruleset("t", "1.0.0", "T1"),
        &[("x-tenant-id", "acme")],
    );
    assert_eq!(r.status / 100, 2, "{}", r.text);
    assert_eq!(w.delete("/api/v1/rulesets/gone").status / 100, 2);
    let cache = ["--rules-dir", rd.path().to_str().unwrap()];
    let r1 = reader(&nats, "r1", &cache);
    converge(&w, &[&r1]);
    assert_eq!(sync_of(&r1)["rules_dir"]["mode"], "nats_cache");
    // The cache is readable files, the other tenant's in its own directory.
    assert!(rd.path().join("a.json").exists());
    assert!(rd.path().join("tenants/acme/t.json").exists());
    assert!(!rd.path().join("gone.json").exists());
    r1.kill9();

    // Changes while the reader is down, then NATS goes away too.
    put(&w, "a", "1.0.0", "A2");
    put(&w, "b", "1.0.0", "B1");
    wait_for("the writer to publish", CONVERGE, || {
        sync_of(&w)["nats"]["published_seq"] == sync_of(&w)["applied_seq"]
    });
    nats.kill();
    let r1 = reader(&nats, "r1", &cache);
    // Served at once from the cache, not ready (it cannot know what it missed).
    assert_eq!(code_of(&r1, "a", "default"), "A1");
    assert_eq!(code_of(&r1, "t", "acme"), "T1");
    assert_eq!(r1.get("/healthz/ready").status, 503);
    nats.resume();
    converge(&w, &[&r1]);
    assert_eq!(code_of(&r1, "a", "default"), "A2");
    assert_eq!(code_of(&r1, "b", "default"), "B1");
    // It followed on from its durable consumer: no rebuild since the restart.
    assert_eq!(sync_of(&r1)["nats"]["rebuilds"], 0);
    assert!(rd.path().join("b.json").exists());
}

#[test]
fn nats_settings_are_checked_before_start() {
    let cases: [(&[&str], &str); 5] = [
        (&["--nats-url", "nats://127.0.0.1:4222"], "standalone"),
        (
            &["--role", "writer", "--nats-url", "nats://127.0.0.1:4222"],
            "durable commit log",
        ),
        (
            &["--role", "reader", "--nats-url", "http://127.0.0.1:4222"],
            "nats://",
        ),
        (
            &["--role", "reader", "--nats-subject-prefix", "a.*"],
            "wildcard",
        ),
        (
            &[
                "--role",
                "reader",
                "--nats-url",
                "nats://127.0.0.1:4222",
                "--rules-dir",
                "/tmp",
                "--watch-rules",
            ],
            "not both",
        ),
    ];
    for (args, reason) in cases {
        let out = std::process::Command::new(common::BIN)
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {text}");
        assert!(text.contains(reason), "{args:?}: {text}");
    }
}
