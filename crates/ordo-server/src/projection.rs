//! The in-memory catalog executions read: every tenant and its compiled rulesets, as of
//! one commit `seq`, behind an [`ArcSwap`].
//!
//! A change builds a new catalog (sharing every untouched entry) and swaps it in, so an
//! execution holds one consistent snapshot and never takes a lock or waits for a write.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arc_swap::{ArcSwap, Guard};
use metrics::{Counter, Histogram};
use ordo_core::{CompiledRuleSet, RuleSet};

use crate::store::StoredRuleSet;
use crate::tenant::{Limiter, TenantConfig};
use crate::traffic::{Controls, RulesetTraffic};

/// Fast hashing for short keys (names): the execute path looks up two per request.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Handles to a ruleset's execution metrics, registered on its first execution: a
/// ruleset that is never run costs no series, no registry entry and no startup time.
pub struct ExecMetrics {
    tenant: String,
    name: String,
    handles: OnceLock<Handles>,
}

pub struct Handles {
    pub ok: Counter,
    pub failed: Counter,
    pub duration: Histogram,
}

impl ExecMetrics {
    fn new(tenant: &str, name: &str) -> ExecMetrics {
        ExecMetrics {
            tenant: tenant.to_string(),
            name: name.to_string(),
            handles: OnceLock::new(),
        }
    }

    #[inline]
    pub fn get(&self) -> &Handles {
        self.handles.get_or_init(|| {
            let labels = [
                ("tenant", self.tenant.clone()),
                ("ruleset", self.name.clone()),
            ];
            let with_result = |result: &'static str| {
                let mut l = labels.to_vec();
                l.push(("result", result.to_string()));
                l
            };
            Handles {
                ok: metrics::counter!("ordo_executions_total", &with_result("success")),
                failed: metrics::counter!("ordo_executions_total", &with_result("error")),
                duration: metrics::histogram!("ordo_execution_duration_seconds", &labels),
            }
        })
    }
}

/// A ruleset as compiled, with what the listing shows of its model and its traffic
/// settings.
pub struct Compiled {
    pub rules: CompiledRuleSet,
    pub description: String,
    pub traffic: Option<Arc<RulesetTraffic>>,
}

impl Compiled {
    /// Compiles `model`, its rules and its traffic settings.
    pub fn of(model: &RuleSet) -> Result<Compiled, crate::error::Error> {
        let rules = model
            .compile()
            .map_err(|e| crate::error::Error::InvalidRuleSet {
                message: e.to_string(),
                errors: e.errors,
            })?;
        let traffic =
            RulesetTraffic::of(model).map_err(|message| crate::error::Error::InvalidRuleSet {
                errors: vec![ordo_core::ValidationError {
                    step: None,
                    field: "config.rate_limit.key_logic".into(),
                    message: message.clone(),
                }],
                message,
            })?;
        Ok(Compiled {
            rules,
            description: model.config.description().to_string(),
            traffic,
        })
    }
}

/// One ruleset: what is stored, and its compiled form.
///
/// Written rulesets are compiled before their commit (a write that does not compile is
/// refused). Rulesets read back from the log at start were compiled when written, so
/// they are compiled on first use (or by the warm-up that follows readiness) instead of
/// holding the start back.
pub struct Entry {
    pub stored: StoredRuleSet,
    pub metrics: ExecMetrics,
    compiled: OnceLock<Result<Compiled, String>>,
    /// Its traffic controls, found on first use (they outlive the entry).
    controls: OnceLock<Arc<Controls>>,
}

impl Entry {
    pub fn new(stored: StoredRuleSet, compiled: Compiled) -> Arc<Entry> {
        let entry = Entry::from_log(stored);
        let _ = entry.compiled.set(Ok(compiled));
        Arc::new(entry)
    }

    /// The traffic controls of this ruleset; `find` looks them up the first time.
    #[inline]
    pub fn controls(
        &self,
        find: impl FnOnce(Option<Arc<RulesetTraffic>>) -> Arc<Controls>,
    ) -> &Arc<Controls> {
        self.controls.get_or_init(|| {
            let settings = self.compiled().ok().and_then(|c| c.traffic.clone());
            find(settings)
        })
    }

    /// An entry whose content is compiled when first needed.
    pub fn from_log(stored: StoredRuleSet) -> Entry {
        Entry {
            metrics: ExecMetrics::new(&stored.tenant, &stored.name),
            stored,
            compiled: OnceLock::new(),
            controls: OnceLock::new(),
        }
    }

    /// The compiled ruleset. A stored ruleset that no longer compiles (which only a
    /// changed engine could cause) is reported once and answers with the reason.
    #[inline]
    pub fn compiled(&self) -> Result<&Compiled, &str> {
        self.compiled
            .get_or_init(|| compile_stored(&self.stored))
            .as_ref()
            .map_err(String::as_str)
    }
}

fn compile_stored(stored: &StoredRuleSet) -> Result<Compiled, String> {
    let compiled = RuleSet::from_json(&stored.content)
        .map_err(|e| e.to_string())
        .and_then(|model| Compiled::of(&model).map_err(|e| e.to_string()));
    compiled.map_err(|e| {
        tracing::error!(
            tenant = %stored.tenant, ruleset = %stored.name, error = %e,
            "stored ruleset does not compile"
        );
        format!(
            "stored ruleset '{}' does not compile with this version of the engine: {e}",
            stored.name
        )
    })
}

/// A tenant: its configuration, rate limiter and rulesets.
pub struct TenantView {
    pub config: TenantConfig,
    pub limiter: Option<Arc<Limiter>>,
    pub rulesets: FastMap<String, Arc<Entry>>,
    /// False for the default tenant while it has no stored configuration of its own.
    pub stored: bool,
}

impl TenantView {
    pub fn new(config: TenantConfig, previous: Option<&TenantView>, stored: bool) -> TenantView {
        let limiter = Limiter::for_config(&config, previous.and_then(|p| p.limiter.as_ref()));
        TenantView {
            config,
            limiter,
            rulesets: previous.map(|p| p.rulesets.clone()).unwrap_or_default(),
            stored,
        }
    }
}

/// Everything executions need, as of commit `seq`.
#[derive(Default, Clone)]
pub struct Catalog {
    pub seq: u64,
    pub tenants: FastMap<String, Arc<TenantView>>,
}

impl Catalog {
    pub fn tenant(&self, id: &str) -> Option<&Arc<TenantView>> {
        self.tenants.get(id)
    }

    /// SHA-256 over every tenant's configuration and every ruleset's content hash, in
    /// name order: two instances serve the same rules exactly when these are equal.
    pub fn content_hash(&self) -> String {
        use sha2::Digest;
        let mut tenants: Vec<&Arc<TenantView>> = self.tenants.values().collect();
        tenants.sort_by(|a, b| a.config.id.cmp(&b.config.id));
        let mut hasher = sha2::Sha256::new();
        for tenant in tenants {
            hasher.update(serde_json::to_string(&tenant.config).unwrap_or_default());
            hasher.update(b"\n");
            let mut names: Vec<&String> = tenant.rulesets.keys().collect();
            names.sort();
            for name in names {
                if let Some(entry) = tenant.rulesets.get(name) {
                    hasher.update(name.as_bytes());
                    hasher.update(b" ");
                    hasher.update(entry.stored.hash.as_bytes());
                    hasher.update(b"\n");
                }
            }
        }
        hex::encode(hasher.finalize())
    }

    pub fn ruleset_count(&self) -> usize {
        self.tenants.values().map(|t| t.rulesets.len()).sum()
    }

    pub fn edit(&self) -> CatalogEdit {
        CatalogEdit {
            base: self.clone(),
            touched: FastMap::default(),
        }
    }

    pub fn put_ruleset(&self, seq: u64, entry: Arc<Entry>) -> Catalog {
        let mut edit = self.edit();
        edit.put(entry);
        edit.finish(seq)
    }

    pub fn delete_ruleset(&self, seq: u64, tenant: &str, name: &str) -> Catalog {
        let mut edit = self.edit();
        edit.remove(tenant, name);
        edit.finish(seq)
    }

    pub fn put_tenant(&self, seq: u64, config: TenantConfig) -> Catalog {
        let mut next = self.clone();
        let previous = self.tenants.get(&config.id).map(|v| v.as_ref());
        let id = config.id.clone();
        next.tenants
            .insert(id, Arc::new(TenantView::new(config, previous, true)));
        next.seq = seq;
        next
    }

    /// The default tenant's configured (not stored) settings changed: same seq, same
    /// rulesets, and the rate limiter kept when its quota is unchanged.
    pub fn default_tenant(&self, config: TenantConfig) -> Catalog {
        let mut next = self.clone();
        let previous = self.tenants.get(&config.id).map(|v| v.as_ref());
        let id = config.id.clone();
        next.tenants
            .insert(id, Arc::new(TenantView::new(config, previous, false)));
        next
    }

    pub fn delete_tenant(&self, seq: u64, id: &str) -> Catalog {
        let mut next = self.clone();
        next.tenants.remove(id);
        next.seq = seq;
        next
    }
}

/// A batch of changes to a catalog: each touched tenant's map is copied once, however
/// many of its rulesets change.
pub struct CatalogEdit {
    base: Catalog,
    touched: FastMap<String, TenantView>,
}

impl CatalogEdit {
    pub fn tenant(&self, id: &str) -> Option<&TenantView> {
        self.touched
            .get(id)
            .or_else(|| self.base.tenants.get(id).map(|t| t.as_ref()))
    }

    pub fn count(&self, tenant: &str) -> usize {
        self.tenant(tenant).map_or(0, |t| t.rulesets.len())
    }

    fn touch(&mut self, tenant: &str) -> Option<&mut TenantView> {
        if !self.touched.contains_key(tenant) {
            let view = self.base.tenants.get(tenant)?;
            self.touched.insert(
                tenant.to_string(),
                TenantView {
                    config: view.config.clone(),
                    limiter: view.limiter.clone(),
                    rulesets: view.rulesets.clone(),
                    stored: view.stored,
                },
            );
        }
        self.touched.get_mut(tenant)
    }

    pub fn put(&mut self, entry: Arc<Entry>) {
        let tenant = entry.stored.tenant.clone();
        if let Some(view) = self.touch(&tenant) {
            view.rulesets.insert(entry.stored.name.clone(), entry);
        }
    }

    pub fn remove(&mut self, tenant: &str, name: &str) {
        if let Some(view) = self.touch(tenant) {
            view.rulesets.remove(name);
        }
    }

    pub fn finish(mut self, seq: u64) -> Catalog {
        for (id, view) in self.touched {
            self.base.tenants.insert(id, Arc::new(view));
        }
        self.base.seq = seq;
        self.base
    }
}

/// The swap point between the write path and the execute path.
pub struct Projection {
    current: ArcSwap<Catalog>,
}

impl Projection {
    pub fn new(catalog: Catalog) -> Projection {
        Projection {
            current: ArcSwap::from_pointee(catalog),
        }
    }

    /// The current snapshot (cheap, lock-free).
    #[inline]
    pub fn load(&self) -> Guard<Arc<Catalog>> {
        self.current.load()
    }

    pub fn load_full(&self) -> Arc<Catalog> {
        self.current.load_full()
    }

    pub fn store(&self, catalog: Catalog) {
        metrics::gauge!("ordo_catalog_seq").set(catalog.seq as f64);
        metrics::gauge!("ordo_rulesets").set(catalog.ruleset_count() as f64);
        self.current.store(Arc::new(catalog));
    }
}
