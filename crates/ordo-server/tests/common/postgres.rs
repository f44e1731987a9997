//! Runs black-box tests against PostgreSQL: a fresh database per test run on the local
//! server (`ORDO_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`).
//!
//! [`run`] marks the current test thread; every server it starts without its own
//! `--database-url` gets one database per rules directory (so a restart on the same
//! directory finds its log) or a new one. Databases of test processes that have ended
//! are dropped on first use.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use sqlx::{Connection, Executor, PgConnection};

thread_local! {
    static ON_POSTGRES: Cell<bool> = const { Cell::new(false) };
}

const PREFIX: &str = "ordo_test_";

/// The administrative URL of the local server.
pub fn admin_url() -> String {
    std::env::var("ORDO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// `admin_url` with another database.
pub fn url_of(database: &str) -> String {
    let mut url = url::Url::parse(&admin_url()).expect("ORDO_TEST_POSTGRES_URL is a URL");
    url.set_path(&format!("/{database}"));
    url.to_string()
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Whether the server answers; prints SKIP (or fails under
/// `ORDO_TEST_REQUIRE_SERVICES=1`) when it does not.
pub fn available(test: &str) -> bool {
    static AVAILABLE: OnceLock<Result<(), String>> = OnceLock::new();
    let result = AVAILABLE.get_or_init(|| {
        block_on(async {
            let mut conn = PgConnection::connect(&admin_url())
                .await
                .map_err(|e| e.to_string())?;
            drop_stale(&mut conn).await;
            Ok(())
        })
    });
    match result {
        Ok(()) => true,
        Err(e) => {
            assert!(
                std::env::var("ORDO_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "PostgreSQL is required (ORDO_TEST_REQUIRE_SERVICES=1) but {} does not answer: {e}",
                admin_url()
            );
            println!(
                "SKIP {test}: PostgreSQL at {} does not answer: {e}",
                admin_url()
            );
            false
        }
    }
}

/// Drops the databases of test processes that are gone.
async fn drop_stale(conn: &mut PgConnection) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'ordo\\_test\\_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
    for name in names {
        let pid = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = conn
                .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                .await;
        }
    }
}

/// Creates a fresh, empty database and returns its URL.
pub fn fresh_database() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "{PREFIX}{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    block_on(async {
        let mut conn = PgConnection::connect(&admin_url()).await.unwrap();
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
    });
    url_of(&name)
}

/// Runs `test` with every server it starts on PostgreSQL (or prints SKIP).
pub fn run(name: &str, test: fn()) {
    if !available(name) {
        return;
    }
    ON_POSTGRES.with(|on| on.set(true));
    test();
}

/// Whether the current test runs on PostgreSQL.
pub fn active() -> bool {
    ON_POSTGRES.with(Cell::get)
}

/// The database a server started with `args` should use, if the current test runs on
/// PostgreSQL and the arguments name none.
pub(super) fn database_for(args: &[&str]) -> Option<String> {
    if !ON_POSTGRES.with(Cell::get) || args.contains(&"--database-url") {
        return None;
    }
    let Some(dir) = args
        .iter()
        .position(|a| *a == "--rules-dir")
        .and_then(|i| args.get(i + 1))
    else {
        return Some(fresh_database());
    };
    static BY_DIR: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    let mut map = BY_DIR.get_or_init(Default::default).lock().unwrap();
    Some(
        map.entry((*dir).to_string())
            .or_insert_with(fresh_database)
            .clone(),
    )
}

/// Declares, for each named test function of the file, a twin that runs it on
/// PostgreSQL: `on_postgres!(a, b)` adds `on_postgres::a` and `on_postgres::b`.
#[macro_export]
macro_rules! on_postgres {
    ($($name:ident),* $(,)?) => {
        mod on_postgres {
            $(
                #[test]
                fn $name() {
                    $crate::common::postgres::run(stringify!($name), super::$name);
                }
            )*
        }
    };
}
