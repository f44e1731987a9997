//! `--watch-rules`: reloads the rules directory when its files change.
//!
//! A change is picked up at once (the writer's atomic rename is one complete event, so
//! there is no trailing window to wait out); reloads are then spaced at least
//! [`SPACING`] apart, so a burst of edits costs a few reloads, not one per event. A
//! reload rescans the directory by file size and time, reading only what changed. A 30 s
//! poll runs alongside: it covers events a network file system never delivers, and takes
//! over when the native watcher cannot start or stops (the watcher is tried again every
//! second, so a directory created after the start is watched once it exists).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::Watcher;
use tokio::sync::mpsc;

use crate::service::Service;

/// Least time between two reloads.
pub const SPACING: Duration = Duration::from_millis(200);
/// The poll that backs the watcher up.
pub const POLL: Duration = Duration::from_secs(30);

/// How often a watcher that could not start (or stopped) is tried again, as when a
/// reader starts before the writer has created the directory.
pub const RETRY_WATCH: Duration = Duration::from_secs(1);

type Events = mpsc::UnboundedSender<notify::Result<notify::Event>>;

/// Starts watching `dir` for `service` (on the current tokio runtime).
pub fn spawn(service: Arc<Service>, dir: PathBuf) {
    let (tx, rx) = mpsc::unbounded_channel();
    let watcher = watch(&dir, &tx, true);
    service.set_watcher_active(watcher.is_some());
    tokio::spawn(run(service, dir, tx, watcher, rx));
}

/// A native watcher on `dir`, or `None` (the poll covers it meanwhile).
fn watch(dir: &Path, tx: &Events, report: bool) -> Option<notify::RecommendedWatcher> {
    let tx = tx.clone();
    let watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })
    .and_then(|mut w| w.watch(dir, notify::RecursiveMode::Recursive).map(|()| w));
    match watcher {
        Ok(w) => {
            tracing::info!(dir = %dir.display(), "watching the rules directory");
            Some(w)
        }
        Err(e) => {
            if report {
                tracing::warn!(
                    dir = %dir.display(), error = %e,
                    "cannot watch the rules directory; polling it every {} s and retrying the watcher every {} s",
                    POLL.as_secs(), RETRY_WATCH.as_secs()
                );
            }
            None
        }
    }
}

async fn run(
    service: Arc<Service>,
    dir: PathBuf,
    tx: Events,
    watcher: Option<notify::RecommendedWatcher>,
    mut events: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
) {
    // Dropping the watcher stops its events: it lives as long as this task.
    let mut watcher = watcher;
    let mut poll = tokio::time::interval(POLL);
    poll.tick().await;
    let mut retry = tokio::time::interval(RETRY_WATCH);
    retry.tick().await;
    let mut last = Instant::now()
        .checked_sub(SPACING)
        .unwrap_or_else(Instant::now);
    loop {
        // `Some(true)`: a file event; `Some(false)`: the poll.
        let trigger = tokio::select! {
            event = events.recv(), if watcher.is_some() => match event {
                // Reading a file is an event too (the reload's own reads among them).
                // The watched directory itself removed or moved away: its watch is
                // gone with it. Watch again (once it exists again) and reload now.
                Some(Ok(event)) if lost_root(&event, &dir) => {
                    watcher = None;
                    watch_lost(&service, &dir);
                    Some(false)
                }
                Some(Ok(event)) => {
                    let wanted = wanted(&event.kind) && relevant(&service, &event.paths);
                    if wanted {
                        tracing::debug!(kind = ?event.kind, paths = ?event.paths, "rules directory event");
                    }
                    wanted.then_some(true)
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "rules-directory watcher failed; polling every {} s until it can be started again", POLL.as_secs());
                    watcher = None;
                    service.set_watcher_active(false);
                    None
                }
                None => {
                    watcher = None;
                    service.set_watcher_active(false);
                    None
                }
            },
            _ = poll.tick() => Some(false),
            _ = retry.tick(), if watcher.is_none() => {
                watcher = watch(&dir, &tx, false);
                service.set_watcher_active(watcher.is_some());
                // What changed while nothing watched is read now.
                watcher.is_some().then_some(false)
            }
        };
        let Some(from_event) = trigger else {
            continue;
        };
        if from_event {
            // Spacing applies between event-driven reloads: it coalesces bursts of
            // edits, and a poll is not part of one.
            let wait = (last + SPACING).saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        // This reload covers every event so far; later ones trigger the next. Among
        // them may be the loss of the directory's own watch.
        while let Ok(event) = events.try_recv() {
            if watcher.is_some() && event.as_ref().is_ok_and(|e| lost_root(e, &dir)) {
                watcher = None;
                watch_lost(&service, &dir);
            }
        }
        let started = Instant::now();
        if service.is_shutting_down() {
            return;
        }
        match service.reload().await {
            Ok(report)
                if report.imported + report.rules_removed > 0 || !report.errors.is_empty() =>
            {
                // Only a reload that found changes (or files it could not use, as while
                // an editor saves in steps) counts for the spacing: a late duplicate
                // event must not hold back the next real change.
                if from_event {
                    last = started;
                }
                if report.imported + report.rules_removed == 0 {
                    continue;
                }
                tracing::info!(
                    imported = report.imported,
                    removed = report.rules_removed,
                    problems = report.errors.len(),
                    "rules directory changed"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "rules directory reload failed"),
        }
    }
}

/// Changes worth a reload: not reads (the reload's own among them), and not inotify's
/// paired rename, whose `To` half is delivered as an event of its own.
fn wanted(kind: &notify::EventKind) -> bool {
    use notify::event::{EventKind, ModifyKind, RenameMode};
    !kind.is_access() && !matches!(kind, EventKind::Modify(ModifyKind::Name(RenameMode::Both)))
}

fn watch_lost(service: &Service, dir: &Path) {
    tracing::warn!(dir = %dir.display(), "the watched rules directory went away; polling until it can be watched again");
    service.set_watcher_active(false);
}

/// Whether `event` removes or renames the watched directory itself.
fn lost_root(event: &notify::Event, dir: &Path) -> bool {
    use notify::event::{EventKind, ModifyKind};
    matches!(
        event.kind,
        EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
    ) && event.paths.iter().any(|p| p == dir)
}

/// Whether an event touches a ruleset file that this instance did not just write.
fn relevant(service: &Service, paths: &[PathBuf]) -> bool {
    let Some(dir) = service.rules_dir_handle() else {
        return false;
    };
    let tenants = dir.tenants_path();
    paths.iter().any(|p| {
        (dir.is_ruleset_path(p) && !service.is_own_write(Path::new(p)))
            || (service.is_reader() && *p == tenants)
    })
}
