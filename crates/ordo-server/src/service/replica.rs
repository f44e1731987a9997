//! A reader's side of NATS sync: its catalog is a snapshot at some `seq` plus every later
//! event, applied in `seq` order. Nothing here touches a store; the writer's log is the
//! truth and the stream its published image.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Service, build_catalog, warm_up};
use crate::projection::{Catalog, Entry, TenantView};
use crate::store::{State, StoredRuleSet};
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

    fn into_state(self) -> State {
        State {
            seq: self.seq,
            rulesets: self.rulesets.into_values().collect(),
            tenants: self.tenants,
        }
    }
}

impl Service {
    /// Serves a rebuilt catalog in place of the current one.
    pub async fn install_rebuild(&self, rebuild: Rebuild) {
        let _head = self.head.lock().await;
        let state = rebuild.into_state();
        let catalog = build_catalog(&self.config(), &state);
        tracing::info!(
            seq = catalog.seq,
            rulesets = catalog.ruleset_count(),
            tenants = catalog.tenants.len(),
            "catalog rebuilt from the stream"
        );
        self.projection.store(catalog);
        warm_up(self.catalog_full());
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
                    let entry = Entry::from_log(stored);
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
    fn with_tenants(&self, current: &Catalog, seq: u64, tenants: &[TenantConfig]) -> Catalog {
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
