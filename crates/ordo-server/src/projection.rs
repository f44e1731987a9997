//! The in-memory catalog executions read: every tenant and its compiled rulesets, as of
//! one commit `seq`, behind an [`ArcSwap`].
//!
//! A change builds a new catalog (sharing every untouched entry) and swaps it in, so an
//! execution holds one consistent snapshot and never takes a lock or waits for a write.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use arc_swap::{ArcSwap, Guard};
use metrics::{Counter, Histogram};
use ordo_core::{CompiledRuleSet, RuleSet};

use crate::store::{RuleSetInfo, StoredRuleSet};
use crate::tenant::{Limiter, TenantConfig};
use crate::traffic::{Controls, RulesetTraffic};

/// Fast hashing for short keys (names): the execute path looks up two per request.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Handles to a ruleset's execution metrics, registered on its first execution: a
/// ruleset that is never run costs no series, no registry entry and no startup time.
pub struct Handles {
    pub ok: Counter,
    pub failed: Counter,
    pub duration: Histogram,
}

impl Handles {
    fn register(tenant: &str, name: &str) -> Handles {
        let labels = [
            ("tenant", tenant.to_string()),
            ("ruleset", name.to_string()),
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

/// One ruleset: what is stored of it but its content, and its compiled form.
///
/// Written rulesets are compiled before their commit (a write that does not compile is
/// refused). Rulesets read back from the log at start were compiled when written, so
/// they are compiled after the start (by the warm-up that follows readiness, or by a
/// first use that comes before it) instead of holding the start back.
///
/// The content itself is not kept where the log holds it: the log is read when it is
/// shown (see `Service::content`). Only a reader, which has no log of its own, keeps it.
pub struct Entry {
    pub stored: RuleSetInfo,
    metrics: OnceLock<Handles>,
    /// The canonical JSON, kept where no log holds it (a reader's catalog).
    kept: Option<Arc<str>>,
    /// Where the content of an entry read back from the log arrives.
    pending: Option<Arc<LogContents>>,
    compiled: OnceLock<Result<Compiled, String>>,
    /// Its traffic controls, found on first use (they outlive the entry).
    controls: OnceLock<Arc<Controls>>,
}

impl Entry {
    /// A ruleset compiled on its way in; its content is kept only when `keep`.
    pub fn new(stored: StoredRuleSet, compiled: Compiled, keep: bool) -> Arc<Entry> {
        let kept = keep.then(|| stored.content.clone());
        let entry = Entry::of(stored.info(), kept, None);
        let _ = entry.compiled.set(Ok(compiled));
        Arc::new(entry)
    }

    /// A ruleset whose content is kept, compiled when first needed (a reader's).
    pub fn kept(stored: StoredRuleSet) -> Entry {
        let content = stored.content.clone();
        Entry::of(stored.info(), Some(content), None)
    }

    /// A ruleset read back from the log: it compiles once its content arrives in
    /// `contents`.
    pub fn from_log(stored: RuleSetInfo, contents: Arc<LogContents>) -> Entry {
        Entry::of(stored, None, Some(contents))
    }

    fn of(stored: RuleSetInfo, kept: Option<Arc<str>>, pending: Option<Arc<LogContents>>) -> Entry {
        Entry {
            metrics: OnceLock::new(),
            stored,
            kept,
            pending,
            compiled: OnceLock::new(),
            controls: OnceLock::new(),
        }
    }

    /// The handles to this ruleset's execution metrics, registered on first use.
    #[inline]
    pub fn metrics(&self) -> &Handles {
        self.metrics
            .get_or_init(|| Handles::register(&self.stored.tenant, &self.stored.name))
    }

    /// The content, where this entry keeps it (a reader's); otherwise the log has it.
    pub fn kept_content(&self) -> Option<&Arc<str>> {
        self.kept.as_ref()
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

    /// The compiled ruleset. One read back from the log and not compiled yet waits
    /// for its content (the first moments after a start). A stored ruleset that does
    /// not compile (which only a changed engine could cause), or whose content cannot
    /// be read, is reported once and answers with the reason.
    #[inline]
    pub fn compiled(&self) -> Result<&Compiled, &str> {
        self.compiled
            .get_or_init(|| self.compile())
            .as_ref()
            .map_err(String::as_str)
    }

    fn compile(&self) -> Result<Compiled, String> {
        let stored = &self.stored;
        let content = match (&self.kept, &self.pending) {
            (Some(content), _) => content.clone(),
            (None, Some(pending)) => pending.take(stored.seq).map_err(|e| {
                tracing::error!(
                    tenant = %stored.tenant, ruleset = %stored.name, seq = stored.seq, error = %e,
                    "stored ruleset unreadable"
                );
                format!(
                    "the content of stored ruleset '{}' cannot be read: {e}",
                    stored.name
                )
            })?,
            (None, None) => return Err(format!("ruleset '{}' has no content", stored.name)),
        };
        RuleSet::from_json(&content)
            .map_err(|e| e.to_string())
            .and_then(|model| Compiled::of(&model).map_err(|e| e.to_string()))
            .map_err(|e| {
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
}

/// The contents of rulesets read back from the log, arriving after the catalog is
/// served: an entry compiled before its content arrived waits for it (only in the first
/// moments after a start; the contents are read by a thread that nothing served waits
/// on, so the wait always ends).
#[derive(Default)]
pub struct LogContents {
    arrived: Mutex<Arrived>,
    changed: Condvar,
}

#[derive(Default)]
struct Arrived {
    /// By the seq of the commit that put them; taken by the entry that compiles.
    contents: HashMap<u64, Arc<str>>,
    /// Set when every content has arrived, or none more will (and why).
    done: Option<Result<(), String>>,
}

impl LogContents {
    pub fn new() -> Arc<LogContents> {
        Arc::new(LogContents::default())
    }

    /// Contents of the given commits have arrived.
    pub fn arrive(&self, contents: Vec<(u64, Arc<str>)>) {
        let mut arrived = self.arrived.lock().unwrap_or_else(|e| e.into_inner());
        arrived.contents.extend(contents);
        self.changed.notify_all();
    }

    /// No more contents will arrive: all have (`Ok`), or reading them failed.
    pub fn finish(&self, outcome: Result<(), String>) {
        let mut arrived = self.arrived.lock().unwrap_or_else(|e| e.into_inner());
        if arrived.done.is_none() {
            arrived.done = Some(outcome);
        }
        self.changed.notify_all();
    }

    /// Takes the content commit `seq` put, waiting until it arrives.
    fn take(&self, seq: u64) -> Result<Arc<str>, String> {
        let mut arrived = self.arrived.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(content) = arrived.contents.remove(&seq) {
                return Ok(content);
            }
            match &arrived.done {
                Some(Ok(())) => return Err(format!("the log holds no content for commit {seq}")),
                Some(Err(e)) => return Err(format!("its content could not be read: {e}")),
                None => {
                    arrived = self
                        .changed
                        .wait(arrived)
                        .unwrap_or_else(|e| e.into_inner())
                }
            }
        }
    }
}

/// Finishes `LogContents` when dropped unfinished (the reading thread failed or
/// stopped early), so that no entry waits for contents that will not come.
pub struct Delivery(pub Arc<LogContents>);

impl Drop for Delivery {
    fn drop(&mut self) {
        self.0
            .finish(Err("the contents were not read to the end".into()));
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const RULES: &str = r#"{"config": {"name": "r", "version": "1", "entry_step": "t"},
        "steps": {"t": {"id": "t", "type": "terminal", "result": {"code": "OK"}}}}"#;

    fn info(seq: u64) -> RuleSetInfo {
        RuleSetInfo {
            tenant: "default".into(),
            name: "r".into(),
            version: "1".into(),
            hash: String::new(),
            seq,
        }
    }

    #[test]
    fn an_entry_needed_before_its_content_arrives_waits_for_it() {
        let contents = LogContents::new();
        let entry = Arc::new(Entry::from_log(info(7), contents.clone()));
        let waiting = {
            let entry = entry.clone();
            std::thread::spawn(move || entry.compiled().map(|c| c.rules.step_count()).is_ok())
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !waiting.is_finished(),
            "compiled before its content arrived"
        );
        contents.arrive(vec![(7, RULES.into())]);
        assert!(waiting.join().unwrap_or(false));
        // The content was taken by the compilation: nothing stays behind.
        contents.finish(Ok(()));
        assert!(contents.take(7).is_err());
        assert!(entry.compiled().is_ok());
    }

    #[test]
    fn contents_that_will_not_come_end_the_wait_with_the_reason() {
        // Read to the end without this entry's commit.
        let contents = LogContents::new();
        let missing = Entry::from_log(info(3), contents.clone());
        contents.finish(Ok(()));
        let reason = missing.compiled().err().unwrap_or_default().to_string();
        assert!(reason.contains("no content for commit 3"), "{reason}");

        // The reading failed; a waiting entry learns why.
        let contents = LogContents::new();
        let entry = Arc::new(Entry::from_log(info(4), contents.clone()));
        let waiting = {
            let entry = entry.clone();
            std::thread::spawn(move || entry.compiled().err().map(str::to_string))
        };
        contents.finish(Err("disk I/O error".into()));
        let reason = waiting.join().ok().flatten().unwrap_or_default();
        assert!(
            reason.contains("cannot be read: its content could not be read: disk I/O error"),
            "{reason}"
        );

        // A delivery dropped unfinished (its reader stopped) ends every wait.
        let contents = LogContents::new();
        let entry = Entry::from_log(info(5), contents.clone());
        drop(Delivery(contents));
        let reason = entry.compiled().err().unwrap_or_default().to_string();
        assert!(reason.contains("not read to the end"), "{reason}");
    }

    #[test]
    fn a_delivery_finished_in_time_is_not_overridden_by_its_drop() {
        let contents = LogContents::new();
        let entry = Entry::from_log(info(9), contents.clone());
        let delivery = Delivery(contents.clone());
        contents.arrive(vec![(9, RULES.into())]);
        contents.finish(Ok(()));
        drop(delivery);
        assert!(entry.compiled().is_ok());
    }
}
