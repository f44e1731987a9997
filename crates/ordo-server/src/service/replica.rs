//! A reader's side of NATS sync: its catalog is a snapshot at some `seq` plus every later
//! event, applied in `seq` order. Nothing here touches a store; the writer's log is the
//! truth and the stream its published image.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Service, build_catalog, warm_up};
use crate::projection::{Catalog, Entry, TenantView};
use crate::store::StoredRuleSet;
use crate::sync::event::{Envelope, Event};
use crate::tenant::TenantConfig;

/// A catalog being rebuilt from the stream: the latest of every ruleset and the tenant
/// list, folded from the stream's messages in order.
#[derive(Default)]
pub struct Rebuild {
    seq: u64,
    rulesets: BTreeMap<(String, String), StoredRuleSet>,
    tenants: Vec<TenantConfig>,
}

impl Rebuild {
    /// Folds one event in (older seqs than already folded are ignored).
    pub fn fold(&mut self, env: &Envelope) {
        if env.seq <= self.seq {
            return;
        }
        self.seq = env.seq;
        match &env.event {
            Event::RulePut { .. } => {
                if let Some(stored) = env.stored() {
                    self.rulesets
                        .insert((stored.tenant.clone(), stored.name.clone()), stored);
                }
            }
            Event::RuleDeleted { tenant_id, name } => {
                self.rulesets.remove(&(tenant_id.clone(), name.clone()));
            }
            Event::TenantConfigChanged { tenants, .. } => self.tenants = tenants.clone(),
        }
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl Service {
    /// Serves a rebuilt catalog in place of the current one.
    pub async fn install_rebuild(&self, rebuild: Rebuild) {
        let _head = self.head.lock().await;
        // A reader has no log to read contents back from: its entries keep them.
        let entries = rebuild.rulesets.into_values().map(Entry::kept);
        let catalog = build_catalog(&self.config(), rebuild.seq, &rebuild.tenants, entries);
        tracing::info!(
            seq = catalog.seq,
            rulesets = catalog.ruleset_count(),
            tenants = catalog.tenants.len(),
            "catalog rebuilt from the stream"
        );
        self.projection.store(catalog);
        warm_up(self.catalog_full(), None, None);
    }

    /// Applies one event after the catalog's `seq`; returns whether it changed anything
    /// (an event at or below the applied `seq` is a duplicate and is skipped).
    pub async fn apply_event(&self, env: &Envelope) -> bool {
        let _head = self.head.lock().await;
        let current = self.projection.load_full();
        if env.seq <= current.seq {
            return false;
        }
        let next = match &env.event {
            Event::RulePut { .. } => {
                let Some(stored) = env.stored() else {
                    return false;
                };
                if current.tenant(&stored.tenant).is_none() {
                    tracing::error!(
                        seq = env.seq, tenant = %stored.tenant, ruleset = %stored.name,
                        "event for a tenant this instance does not know (is default_tenant the writer's?)"
                    );
                    let mut next = (*current).clone();
                    next.seq = env.seq;
                    next
                } else {
                    // Compiled here, before the swap, never on the execute path.
                    let entry = Entry::kept(stored);
                    let _ = entry.compiled();
                    current.put_ruleset(env.seq, Arc::new(entry))
                }
            }
            Event::RuleDeleted { tenant_id, name } => {
                current.delete_ruleset(env.seq, tenant_id, name)
            }
            Event::TenantConfigChanged { tenants, .. } => {
                self.with_tenants(&current, env.seq, tenants)
            }
        };
        self.projection.store(next);
        true
    }

    /// The catalog with exactly `tenants` stored (and the configured default tenant when
    /// it has no stored configuration); rulesets and rate limiters carry over.
    pub(super) fn with_tenants(
        &self,
        current: &Catalog,
        seq: u64,
        tenants: &[TenantConfig],
    ) -> Catalog {
        let mut next = current.clone();
        let default = self.config().default_tenant_config();
        next.tenants
            .retain(|id, _| *id == default.id || tenants.iter().any(|t| t.id == *id));
        for config in tenants {
            let previous = current.tenant(&config.id).map(|v| v.as_ref());
            if previous.is_some_and(|p| p.stored && p.config == *config) {
                continue;
            }
            next.tenants.insert(
                config.id.clone(),
                Arc::new(TenantView::new(config.clone(), previous, true)),
            );
        }
        if !tenants.iter().any(|t| t.id == default.id) {
            let previous = current.tenant(&default.id).map(|v| v.as_ref());
            if previous.is_none_or(|p| p.stored || p.config != default) {
                next.tenants.insert(
                    default.id.clone(),
                    Arc::new(TenantView::new(default, previous, false)),
                );
            }
        }
        next.seq = seq;
        next
    }
}

/// What a reader's rules directory holds besides the files: which log they come from,
/// up to which commit, and the tenant list. Written after the files, so the files are
/// never behind it (events after it are delivered again and re-applied).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ReplicaState {
    pub authority: Option<String>,
    pub seq: u64,
    /// Creation time of the stream the catalog was read from (ns since the epoch).
    pub stream_created: Option<i128>,
    pub tenants: Vec<TenantConfig>,
}

const REPLICA_FILE: &str = "replica.json";

impl Service {
    /// Whether this reader keeps its catalog in its own rules directory (NATS reader
    /// with `rules_dir`).
    pub fn is_cache(&self) -> bool {
        self.is_reader() && self.nats.is_some() && self.files.is_some()
    }

    fn replica_path(&self) -> Option<std::path::PathBuf> {
        self.files.as_ref().map(|d| {
            d.root()
                .join(crate::rules_dir::STATE_DIR)
                .join(REPLICA_FILE)
        })
    }

    /// Reads the cache's state (before its files are loaded): `None` without one.
    pub(super) fn read_replica(&self) -> Option<ReplicaState> {
        let path = self.replica_path()?;
        let text = std::fs::read_to_string(&path).ok()?;
        match serde_json::from_str(&text) {
            Ok(state) => Some(state),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unreadable replica state; rebuilding from the stream");
                None
            }
        }
    }

    /// The cached state this reader started from, if any.
    pub fn cached_replica(&self) -> Option<ReplicaState> {
        self.replica
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Brings the rules directory in line with the served catalog, then records its
    /// state. `changed`: the rulesets to write or delete (`None`: compare everything).
    pub async fn persist_replica(
        &self,
        authority: Option<String>,
        stream_created: Option<i128>,
        changed: Option<Vec<(String, String)>>,
    ) {
        let (Some(dir), Some(path)) = (self.files.clone(), self.replica_path()) else {
            return;
        };
        let catalog = self.catalog_full();
        let mut stored = self
            .cache_files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let keys: Vec<(String, String)> = match changed {
            Some(keys) => keys,
            None => {
                let mut all: Vec<(String, String)> = stored.keys().cloned().collect();
                for (t, view) in &catalog.tenants {
                    all.extend(view.rulesets.keys().map(|n| (t.clone(), n.clone())));
                }
                all.sort();
                all.dedup();
                all
            }
        };
        let state = ReplicaState {
            authority,
            seq: catalog.seq,
            stream_created,
            tenants: catalog
                .tenants
                .values()
                .filter(|v| v.stored)
                .map(|v| v.config.clone())
                .collect(),
        };
        let result = super::run_blocking(move || {
            for (tenant, name) in keys {
                let current = catalog.tenant(&tenant).and_then(|v| v.rulesets.get(&name));
                let key = (tenant.clone(), name.clone());
                if current.map(|e| &e.stored.hash) == stored.get(&key) {
                    continue;
                }
                let content = match current {
                    Some(entry) => Some(entry.kept_content().ok_or_else(|| {
                        super::Error::Internal(format!("ruleset '{name}' holds no content"))
                    })?),
                    None => None,
                };
                let change =
                    crate::rules_dir::FileChange::to_match(&tenant, &name, content.map(|c| &**c))
                        .map_err(super::Error::Internal)?;
                dir.apply(&change, |_, _| {})
                    .map_err(|e| super::Error::Internal(e.to_string()))?;
                match current {
                    Some(entry) => stored.insert(key, entry.stored.hash.clone()),
                    None => stored.remove(&key),
                };
            }
            let text = serde_json::to_vec_pretty(&state)
                .map_err(|e| super::Error::Internal(e.to_string()))?;
            crate::rules_dir::write_atomic(&path, &text)
                .map_err(|e| super::Error::Internal(e.to_string()))?;
            Ok(stored)
        })
        .await;
        match result {
            Ok(stored) => {
                *self.cache_files.lock().unwrap_or_else(|e| e.into_inner()) = stored;
            }
            Err(e) => {
                self.files_lagging
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                tracing::error!(error = %e, "the reader's rules directory could not be updated");
            }
        }
    }
}

impl Service {
    /// Serves a NATS reader's cached catalog at once: its tenants and `seq` from the
    /// replica state, its rulesets from the files. A cache that cannot be read whole is
    /// served as far as it goes, but not trusted: the follower rebuilds from the stream.
    pub(super) async fn load_replica(self: &Arc<Self>) {
        let Some(dir) = self.files.clone() else {
            return;
        };
        // Staged changes of an interrupted update: their events are delivered again.
        let _ = super::run_blocking(move || Ok(dir.recover(|_, _| None))).await;
        let Some(state) = self.read_replica() else {
            return;
        };
        {
            let mut head = self.head.lock().await;
            self.projection
                .store(build_catalog(&self.config(), state.seq, &state.tenants, []));
            *head = state.seq;
        }
        let complete = match self.reload().await {
            Ok(report) if report.errors.is_empty() => true,
            Ok(report) => {
                tracing::warn!(
                    problems = report.errors.len(),
                    "the reader's rules directory is incomplete; rebuilding from the stream"
                );
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "the reader's rules directory could not be read; rebuilding from the stream");
                false
            }
        };
        let catalog = self.catalog_full();
        let on_disk = catalog
            .tenants
            .iter()
            .flat_map(|(t, v)| {
                v.rulesets
                    .iter()
                    .map(move |(n, e)| ((t.clone(), n.clone()), e.stored.hash.clone()))
            })
            .collect();
        *self.cache_files.lock().unwrap_or_else(|e| e.into_inner()) = on_disk;
        tracing::info!(
            seq = catalog.seq,
            rulesets = catalog.ruleset_count(),
            "serving the cached catalog"
        );
        if complete {
            *self.replica.lock().unwrap_or_else(|e| e.into_inner()) = Some(state);
        }
    }
}
