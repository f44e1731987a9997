//! The in-memory log, used when no rules directory is configured.

use std::sync::Mutex;

use super::{Change, Commit, State, StoreError, StoredRuleSet, VersionInfo};

#[derive(Default)]
pub struct MemoryStore {
    log: Mutex<Vec<Commit>>,
    pub(super) traces: super::traces::MemoryTraces,
}

impl MemoryStore {
    fn with_log<R>(&self, f: impl FnOnce(&mut Vec<Commit>) -> R) -> R {
        // A poisoned lock only means another thread panicked mid-push; the Vec is intact.
        let mut guard = self.log.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    pub fn load(&self) -> State {
        self.with_log(|log| {
            let mut state = State::default();
            let mut rulesets = by_key();
            let mut tenants = by_key();
            for c in log.iter() {
                state.seq = c.seq;
                match &c.change {
                    Change::PutRuleSet(r) => {
                        rulesets.insert((r.tenant.clone(), r.name.clone()), r.info());
                    }
                    Change::DeleteRuleSet { tenant, name } => {
                        rulesets.remove(&(tenant.clone(), name.clone()));
                    }
                    Change::PutTenant(t) => {
                        tenants.insert((t.id.clone(), String::new()), t.clone());
                    }
                    Change::DeleteTenant { id } => {
                        tenants.remove(&(id.clone(), String::new()));
                    }
                }
            }
            state.rulesets = rulesets.into_values().collect();
            state.tenants = tenants.into_values().collect();
            state
        })
    }

    pub fn append_all(&self, commits: &[Commit], _files_done: u64) -> Result<(), StoreError> {
        self.with_log(|log| {
            let mut last = log.last().map_or(0, |c| c.seq);
            for commit in commits {
                if commit.seq != last + 1 {
                    return Err(StoreError::OutOfOrder {
                        last,
                        got: commit.seq,
                    });
                }
                last = commit.seq;
            }
            log.extend_from_slice(commits);
            Ok(())
        })
    }

    pub fn contents(&self, seqs: &[u64]) -> Vec<(u64, std::sync::Arc<str>)> {
        self.with_log(|log| {
            seqs.iter()
                .filter_map(|&seq| {
                    let index = usize::try_from(seq.checked_sub(1)?).ok()?;
                    match &log.get(index)?.change {
                        Change::PutRuleSet(r) => Some((seq, r.content.clone())),
                        _ => None,
                    }
                })
                .collect()
        })
    }

    pub fn commits_after(&self, after: u64, limit: u32, tenants_only: bool) -> Vec<Commit> {
        self.with_log(|log| {
            log.iter()
                .filter(|c| c.seq > after)
                .filter(|c| {
                    !tenants_only
                        || matches!(c.change, Change::PutTenant(_) | Change::DeleteTenant { .. })
                })
                .take(usize::try_from(limit).unwrap_or(usize::MAX))
                .cloned()
                .collect()
        })
    }

    pub fn versions(&self, tenant: &str, name: &str) -> Vec<VersionInfo> {
        self.with_log(|log| {
            log.iter()
                .rev()
                .filter_map(|c| match &c.change {
                    Change::PutRuleSet(r) if r.tenant == tenant && r.name == name => {
                        Some(VersionInfo {
                            seq: c.seq,
                            version: r.version.clone(),
                            created_at_ms: c.created_at_ms,
                            source: c.source,
                            hash: r.hash.clone(),
                        })
                    }
                    _ => None,
                })
                .collect()
        })
    }

    pub fn version(&self, tenant: &str, name: &str, seq: u64) -> Option<StoredRuleSet> {
        self.with_log(|log| {
            let index = usize::try_from(seq.checked_sub(1)?).ok()?;
            match &log.get(index)?.change {
                Change::PutRuleSet(r) if r.tenant == tenant && r.name == name => Some(r.clone()),
                _ => None,
            }
        })
    }
}

fn by_key<V>() -> std::collections::BTreeMap<(String, String), V> {
    std::collections::BTreeMap::new()
}
