//! Attaching PostgreSQL: connect, wait for (or apply) migrations, load, then watch.
//!
//! The server listens from the start so that probes can see why it is not ready; the
//! API opens only once the database answers with a schema this binary knows.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Service, StartError};
use crate::store::{PgStore, Store, StoreError};

/// Pause between attempts while the database is unreachable or behind.
const RETRY: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How often an attached database is checked.
const PING_EVERY: Duration = Duration::from_secs(2);
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs until PostgreSQL is attached (or the process shuts down), then keeps checking
/// that it answers.
pub(super) async fn postgres(service: Arc<Service>, url: String) {
    let t0 = Instant::now();
    let mut pause = RETRY;
    let store = loop {
        if service.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        match PgStore::connect(&url).await {
            Ok(store) => break store,
            Err(e) => service.set_store_problem(Some(unreachable(&e))),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_MAX);
    };
    let mut store = Some(Store::Postgres(store));
    pause = RETRY;
    loop {
        if service.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        match ready_to_attach(&service, store.as_ref()).await {
            Ok(true) => {
                // The first attempt hands the store over; later ones reuse it.
                match service.attach(store.take(), t0, None).await {
                    Ok(()) => {
                        service.set_store_problem(None);
                        tracing::info!(
                            seq = service.catalog().seq,
                            ms = t0.elapsed().as_secs_f64() * 1e3,
                            "commit log attached"
                        );
                        break;
                    }
                    Err(StartError::Store(e)) if e.is_unreachable() => {
                        service.set_store_problem(Some(unreachable(&e)));
                    }
                    Err(e) => {
                        service.set_store_problem(Some(format!("cannot load the commit log: {e}")))
                    }
                }
            }
            Ok(false) => {}
            Err(e) => service.set_store_problem(Some(unreachable(&e))),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_MAX);
    }
    monitor(service).await;
}

/// Whether the schema is current, applying migrations when `auto_migrate` allows.
/// Records why not otherwise.
async fn ready_to_attach(service: &Service, pending: Option<&Store>) -> Result<bool, StoreError> {
    let Some(Store::Postgres(pg)) = pending.or(service.store.get()) else {
        return Ok(true);
    };
    let status = pg.migration_status().await?;
    let Some(blocker) = status.blocker() else {
        return Ok(true);
    };
    let only_pending =
        status.dirty.is_none() && status.count(crate::store::MigrationState::Modified) == 0;
    if only_pending && service.config().auto_migrate {
        tracing::info!(
            pending = status.pending(),
            "applying schema migrations (--auto-migrate)"
        );
        pg.migrate_up().await?;
        return Ok(true);
    }
    service.set_store_problem(Some(blocker));
    Ok(false)
}

/// Checks the attached database every few seconds: readiness follows it.
async fn monitor(service: Arc<Service>) {
    loop {
        tokio::time::sleep(PING_EVERY).await;
        if service.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        let Some(store) = service.store.get() else {
            return;
        };
        let mut problem = match tokio::time::timeout(PING_TIMEOUT, store.ping()).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(unreachable(&e)),
            Err(_) => Some(format!(
                "database unreachable: no answer within {} s",
                PING_TIMEOUT.as_secs()
            )),
        };
        if problem.is_none()
            && service.resync_needed.load(Ordering::SeqCst)
            && let Err(e) = service.resync().await
        {
            problem = Some(unreachable(&e));
        }
        service.set_store_problem(problem);
    }
}

fn unreachable(e: &StoreError) -> String {
    match e {
        StoreError::Unreachable(_) => e.to_string(),
        other => format!("database unreachable: {other}"),
    }
}
