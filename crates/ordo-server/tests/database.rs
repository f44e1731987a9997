//! Backing services by URL: `database_url`, `ordo-server migrate`, and readiness while
//! migrations are pending or the database is unreachable.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Server, postgres, ruleset, wait_for};
use serde_json::json;

fn ordo(args: &[&str]) -> Output {
    let mut cmd = Command::new(common::BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("ORDO_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The URL with a password added (the local server trusts loopback, so any password
/// works and only its absence from every output is checked).
fn with_password(url: &str) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_username("postgres").unwrap();
    url.set_password(Some("s3cret-pw")).unwrap();
    url.to_string()
}

#[test]
fn migrate_status_and_up_on_postgres() {
    if !postgres::available("migrate_status_and_up_on_postgres") {
        return;
    }
    let url = with_password(&postgres::fresh_database());
    let out = ordo(&["migrate", "status", "--database-url", &url]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains("pending   commit log"), "{shown}");
    assert!(shown.contains("ordo-server migrate up"), "{shown}");
    assert!(shown.contains("postgres:***@"), "{shown}");
    assert!(!shown.contains("s3cret-pw"), "{shown}");

    let out = ordo(&["migrate", "up", "--database-url", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("applied   commit log"),
        "{}",
        text(&out)
    );
    // Idempotent; the environment works as well as the flag.
    let out = Command::new(common::BIN)
        .args(["migrate", "up"])
        .env("ORDO_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = ordo(&["migrate", "status", "--database-url", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("schema is up to date"));
}

#[test]
fn migrate_needs_a_database_and_works_on_sqlite() {
    let out = ordo(&["migrate", "status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("no database to migrate"),
        "{}",
        text(&out)
    );

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state/ordo.db");
    let url = format!("sqlite:{}", db.display());
    let out = ordo(&["migrate", "status", "--database-url", &url]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!db.exists(), "status must not create the database");
    let out = ordo(&["migrate", "up", "--database-url", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = ordo(&["migrate", "status", "--database-url", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains("pending"), "{}", text(&out));
}

#[test]
fn a_sqlite_url_keeps_the_log_without_a_rules_dir() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("log.db").display());
    let s = Server::start(&["--database-url", &url]);
    assert_eq!(
        s.post("/api/v1/rulesets", &ruleset("r", "1.0.0", "A"))
            .status,
        201
    );
    drop(s);
    let s = Server::start(&["--database-url", &url]);
    let h = s.get("/health").json();
    assert_eq!(h["storage"]["backend"], "sqlite");
    assert_eq!(h["storage"]["last_seq"], 1);
    let r = s.post("/api/v1/execute/r", &json!({"input": {"x": 1}}));
    assert_eq!(r.json()["code"], "A");
}

#[test]
fn pending_migrations_keep_the_server_not_ready_until_migrate_up() {
    if !postgres::available("pending_migrations_keep_the_server_not_ready_until_migrate_up") {
        return;
    }
    let url = with_password(&postgres::fresh_database());
    let s = Server::start(&["--database-url", &url]);
    assert_eq!(s.get("/healthz/live").status, 200);
    wait_for("the pending reason", Duration::from_secs(10), || {
        s.get("/healthz/ready").text.contains("pending")
    });
    let r = s.get("/healthz/ready");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["status"], "not_ready");
    let reasons = r.json()["reasons"].to_string();
    assert!(reasons.contains("ordo-server migrate up"), "{reasons}");
    // Nothing is served from a log that is not loaded: not even "not found".
    let r = s.post("/api/v1/execute/r", &json!({"input": {}}));
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["code"], "NOT_READY");
    assert_eq!(
        s.post("/api/v1/rulesets", &ruleset("r", "1.0.0", "A"))
            .status,
        503
    );
    let h = s.get("/health").json();
    assert_eq!(h["status"], "not_ready");
    assert_eq!(h["storage"]["backend"], "postgres");
    assert!(h["storage"]["url"].as_str().unwrap().contains(":***@"));

    let out = ordo(&["migrate", "up", "--database-url", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    s.wait_ready(Duration::from_secs(10)).unwrap();
    assert_eq!(
        s.post("/api/v1/rulesets", &ruleset("r", "1.0.0", "A"))
            .status,
        201
    );
    assert_eq!(
        s.post("/api/v1/execute/r", &json!({"input": {"x": 1}}))
            .json()["code"],
        "A"
    );
    assert!(!s.log_text().contains("s3cret-pw"), "{}", s.log_text());
}

#[test]
fn auto_migrate_applies_the_schema_at_start() {
    if !postgres::available("auto_migrate_applies_the_schema_at_start") {
        return;
    }
    let url = postgres::fresh_database();
    let s = Server::start(&["--database-url", &url, "--auto-migrate"]);
    s.wait_ready(Duration::from_secs(10)).unwrap();
    assert!(s.log_text().contains("applying schema migrations"));
    let out = ordo(&["migrate", "status", "--database-url", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// A TCP relay the test can cut, standing for the network between server and database.
struct Relay {
    port: u16,
    up: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn to(target: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (target, up2, open2) = (target.to_string(), up.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                // While cut, connections are accepted and closed at once.
                if !up2.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let mut list = open2.lock().unwrap();
                list.push(client.try_clone().unwrap());
                list.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Relay { port, up, open }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[test]
fn an_unreachable_database_makes_the_server_not_ready_and_writes_fail_cleanly() {
    if !postgres::available(
        "an_unreachable_database_makes_the_server_not_ready_and_writes_fail_cleanly",
    ) {
        return;
    }
    let direct = url::Url::parse(&postgres::fresh_database()).unwrap();
    let relay = Relay::to(&format!(
        "{}:{}",
        direct.host_str().unwrap(),
        direct.port().unwrap_or(5432)
    ));
    let mut url = direct.clone();
    url.set_port(Some(relay.port)).unwrap();
    let s = Server::start(&["--database-url", url.as_str(), "--auto-migrate"]);
    s.wait_ready(Duration::from_secs(10)).unwrap();
    assert_eq!(
        s.post("/api/v1/rulesets", &ruleset("r", "1.0.0", "A"))
            .status,
        201
    );

    relay.cut();
    let r = s.post("/api/v1/rulesets", &ruleset("r", "2.0.0", "B"));
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.json()["code"], "STORE_UNAVAILABLE");
    wait_for("not ready", Duration::from_secs(10), || {
        s.get("/healthz/ready").status == 503
    });
    let reasons = s.get("/healthz/ready").json()["reasons"].to_string();
    assert!(reasons.contains("unreachable"), "{reasons}");
    assert_eq!(s.get("/healthz/live").status, 200);
    // What is loaded keeps being served from memory.
    let r = s.post("/api/v1/execute/r", &json!({"input": {"x": 1}}));
    assert_eq!(r.json()["code"], "A", "{}", r.text);

    relay.restore();
    s.wait_ready(Duration::from_secs(15)).unwrap();
    // The failed write changed nothing; the next one gets the next seq.
    let versions = s.get("/api/v1/rulesets/r/versions").json();
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        1,
        "{versions}"
    );
    let r = s.post("/api/v1/rulesets", &ruleset("r", "2.0.0", "B"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["seq"], 2);
}

#[test]
fn a_database_that_never_answers_keeps_the_server_live_but_not_ready() {
    // Port 9 (discard) on loopback: nothing listens there.
    let s = Server::start(&[
        "--database-url",
        "postgres://ordo:s3cret-pw@127.0.0.1:9/ordo",
    ]);
    assert_eq!(s.get("/healthz/live").status, 200);
    wait_for("the unreachable reason", Duration::from_secs(10), || {
        s.get("/healthz/ready").text.contains("unreachable")
    });
    assert_eq!(s.get("/healthz/ready").status, 503);
    assert_eq!(s.get("/api/v1/rulesets").status, 503);
    let h = s.get("/health").text;
    assert!(h.contains("postgres://ordo:***@127.0.0.1:9/ordo"), "{h}");
    assert!(!h.contains("s3cret-pw"));
    assert!(!s.log_text().contains("s3cret-pw"), "{}", s.log_text());
}

#[test]
fn commits_appended_by_another_process_are_served_never_overwritten() {
    if !postgres::available("commits_appended_by_another_process_are_served_never_overwritten") {
        return;
    }
    let url = postgres::fresh_database();
    let s = Server::start(&["--database-url", &url, "--auto-migrate"]);
    s.wait_ready(Duration::from_secs(10)).unwrap();
    assert_eq!(
        s.post("/api/v1/rulesets", &ruleset("r", "1.0.0", "A"))
            .status,
        201
    );

    // Another process appends commit 2 behind the server's back.
    let mut other = ruleset("r", "2.0.0", "B");
    other["config"]["description"] = json!("from elsewhere");
    let content = serde_json::to_string(&other).unwrap();
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(content.as_bytes()))
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            let mut tx = conn.begin().await.unwrap();
            sqlx::query(
                "INSERT INTO commits (seq, id, created_at_ms, source, kind, tenant_id, name, version, content, hash)
                 VALUES (2, 'elsewhere', 0, 'api', 'ruleset_put', 'default', 'r', '2.0.0', $1, $2)",
            )
            .bind(&content)
            .bind(&hash)
            .execute(&mut *tx)
            .await
            .unwrap();
            sqlx::query(
                "UPDATE rulesets SET seq = 2, version = '2.0.0', hash = $1
                 WHERE tenant_id = 'default' AND name = 'r'",
            )
            .bind(&hash)
            .execute(&mut *tx)
            .await
            .unwrap();
            tx.commit().await.unwrap();
        });

    // The server's next write would have been commit 2: it is refused, not written.
    let r = s.post("/api/v1/rulesets", &ruleset("r", "3.0.0", "C"));
    assert_eq!(r.status, 503, "{}", r.text);
    // The database's state is then read back and served.
    wait_for(
        "the other process's commit",
        Duration::from_secs(10),
        || s.get("/health").json()["storage"]["last_seq"] == 2,
    );
    let r = s.post("/api/v1/execute/r", &json!({"input": {"x": 1}}));
    assert_eq!(r.json()["code"], "B", "{}", r.text);
    let r = s.post("/api/v1/rulesets", &ruleset("r", "3.0.0", "C"));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["seq"], 3);
    let seqs: Vec<u64> = s.get("/api/v1/rulesets/r/versions").json()["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 2, 1]);
}
