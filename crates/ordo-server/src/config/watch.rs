//! Live configuration reload: the config files are watched (their directories, so that a
//! Kubernetes ConfigMap's symlink swap is seen) and re-read on change, with a slow poll
//! as a backstop. A change is applied only if the whole configuration is valid and no
//! key that needs a restart changed; every outcome is logged and counted.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use notify::Watcher;
use serde_json::Value;

use super::{Config, Flags, RESTART_KEYS, load};
use crate::service::Service;

/// What the configuration was built from; variables and flags do not change while the
/// process runs, files may.
pub struct Sources {
    pub files: Vec<PathBuf>,
    pub env: BTreeMap<String, String>,
    pub flags: Flags,
}

/// Checked even without a file event, in case events are lost (network file systems).
const POLL: Duration = Duration::from_secs(2);
/// Events arriving this close together are one change (editors write in several steps).
const SETTLE: Duration = Duration::from_millis(100);

/// Starts watching on a thread of its own. `runtime` runs the service's async parts.
pub fn spawn(service: Arc<Service>, sources: Sources, runtime: tokio::runtime::Handle) {
    if sources.files.is_empty() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("config-watch".into())
        .spawn(move || watch(service, sources, runtime));
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot watch the configuration files; changes need a restart");
    }
}

fn fingerprint(files: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
    files.iter().map(|f| std::fs::read(f).ok()).collect()
}

fn watch(service: Arc<Service>, sources: Sources, runtime: tokio::runtime::Handle) {
    let (tx, rx) = mpsc::channel();
    let watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    });
    let _watcher = match watcher {
        Ok(mut w) => {
            let mut dirs: Vec<PathBuf> = sources
                .files
                .iter()
                .filter_map(|f| {
                    f.parent().map(|p| {
                        if p.as_os_str().is_empty() {
                            PathBuf::from(".")
                        } else {
                            p.to_path_buf()
                        }
                    })
                })
                .collect();
            dirs.sort();
            dirs.dedup();
            for dir in &dirs {
                if let Err(e) = w.watch(dir, notify::RecursiveMode::NonRecursive) {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch; polling instead");
                }
            }
            Some(w)
        }
        Err(e) => {
            tracing::warn!(error = %e, "file watcher unavailable; polling the configuration every 2 s");
            None
        }
    };
    let mut last = fingerprint(&sources.files);
    loop {
        match rx.recv_timeout(POLL) {
            Ok(_) => {
                // Let a burst of events settle into one change.
                std::thread::sleep(SETTLE);
                while rx.try_recv().is_ok() {}
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(POLL),
        }
        let now = fingerprint(&sources.files);
        if now == last {
            continue;
        }
        last = now;
        reload(&service, &sources, &runtime);
    }
}

fn outcome(result: &'static str) {
    metrics::counter!("ordo_config_reloads_total", "outcome" => result).increment(1);
}

fn reload(service: &Arc<Service>, sources: &Sources, runtime: &tokio::runtime::Handle) {
    let names: Vec<String> = sources.env.keys().cloned().collect();
    let loaded = load(
        &sources.files,
        &|name| sources.env.get(name).cloned(),
        &names,
        &sources.flags,
    );
    let new = match loaded {
        Ok((config, _)) => config,
        Err(e) => {
            tracing::error!(
                "configuration change rejected, the running configuration is kept: {e}"
            );
            outcome("invalid");
            return;
        }
    };
    let old = service.config();
    let changed = changed_keys(&old, &new);
    if changed.is_empty() {
        outcome("unchanged");
        return;
    }
    let needs_restart: Vec<&str> = changed
        .iter()
        .map(String::as_str)
        .filter(|k| RESTART_KEYS.contains(k))
        .collect();
    if !needs_restart.is_empty() {
        tracing::warn!(
            keys = %needs_restart.join(", "),
            "configuration change refused: these keys only change with a restart; the running configuration is kept"
        );
        outcome("refused");
        return;
    }
    if new.log_level != old.log_level
        && let Err(e) = crate::telemetry::set_log_level(&new.log_level)
    {
        tracing::error!(error = %e, "configuration change rejected: log_level");
        outcome("invalid");
        return;
    }
    drop(old);
    runtime.block_on(service.apply_config(new));
    tracing::info!(keys = %changed.join(", "), "configuration reloaded");
    outcome("applied");
}

/// The keys whose values differ, nested ones dotted.
fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    fn leaves(value: Value, prefix: &str, out: &mut Vec<(String, Value)>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    leaves(v, &format!("{prefix}{k}."), out);
                }
            }
            leaf => out.push((prefix.trim_end_matches('.').to_string(), leaf)),
        }
    }
    let (Ok(a), Ok(b)) = (serde_json::to_value(old), serde_json::to_value(new)) else {
        return Vec::new();
    };
    let (mut before, mut after) = (Vec::new(), Vec::new());
    leaves(a, "", &mut before);
    leaves(b, "", &mut after);
    let after: std::collections::BTreeMap<String, Value> = after.into_iter().collect();
    before
        .into_iter()
        .filter(|(k, v)| after.get(k) != Some(v))
        .map(|(k, _)| k)
        .collect()
}
