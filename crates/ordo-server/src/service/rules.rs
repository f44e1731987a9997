//! Ruleset reads and writes, versions, rollback and the rules-directory import.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use ordo_core::RuleSet;
use serde::Serialize;

use super::{Service, run_blocking, spawn_write};
use crate::error::{Error, Result};
use crate::projection::{Catalog, Compiled, Entry, TenantView};
use crate::rules_dir::Stamp;
use crate::rules_dir::{FileProblem, canonical_json};
use crate::store::{Change, FileCache, FileSeen, Source, StoredRuleSet, VersionInfo, content_hash};

/// A file modified less than this before its bytes were hashed may have changed again
/// within the same clock tick: its stamp is not trusted.
const RACY_NS: i64 = 2_000_000_000;

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutStatus {
    Created,
    Updated,
    /// The content equals the current content: nothing was committed.
    Unchanged,
}

/// Clients know two statuses, `created` and `updated`; `changed` tells an update that
/// committed something from one that found the same content already there.
impl Serialize for PutStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            PutStatus::Created => "created",
            PutStatus::Updated | PutStatus::Unchanged => "updated",
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PutOutcome {
    pub status: PutStatus,
    pub changed: bool,
    pub name: String,
    pub version: String,
    /// The commit holding this content.
    pub seq: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RollbackOutcome {
    pub status: &'static str,
    pub name: String,
    pub from_version: Option<String>,
    pub to_version: String,
    pub from_seq: Option<u64>,
    pub seq: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Versions {
    pub name: String,
    pub current_version: Option<String>,
    pub current_seq: Option<u64>,
    pub versions: Vec<VersionView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VersionView {
    pub seq: u64,
    pub version: String,
    pub created_at: String,
    pub source: Source,
    pub hash: String,
}

impl From<VersionInfo> for VersionView {
    fn from(v: VersionInfo) -> Self {
        VersionView {
            seq: v.seq,
            version: v.version,
            created_at: rfc3339(v.created_at_ms),
            source: v.source,
            hash: v.hash,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadReport {
    pub status: &'static str,
    /// Valid ruleset files found.
    pub rules_loaded: usize,
    /// Files whose content differed from the log and became commits.
    pub imported: usize,
    /// Rulesets whose files were deleted, removed by a commit.
    pub rules_removed: usize,
    pub duration_ms: u64,
    /// Files that could not be used, with the reason; the log's version stays.
    pub errors: Vec<FileProblem>,
}

/// A summary row of the ruleset list.
#[derive(Debug, Clone, Serialize)]
pub struct RuleSetSummary {
    pub name: String,
    pub version: String,
    pub description: String,
    pub step_count: usize,
    pub seq: u64,
}

pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// A ruleset about to be written: validated, stamped with its tenant and compiled.
pub(super) struct Prepared {
    model: RuleSet,
    stored: StoredRuleSet,
    compiled: Compiled,
}

/// Checks the name, stamps the tenant and computes the canonical content and its hash:
/// everything but compilation, which a file whose content is already current skips.
fn stamp(tenant: &str, mut ruleset: RuleSet) -> Result<(RuleSet, StoredRuleSet)> {
    ordo_core::validate_name(&ruleset.config.name)
        .map_err(|e| Error::BadRequest(format!("config.name: {e}")))?;
    match ruleset.config.tenant_id.as_deref() {
        Some(t) if t != tenant => {
            return Err(Error::BadRequest(format!(
                "config.tenant_id is '{t}' but the request is for tenant '{tenant}'"
            )));
        }
        _ => ruleset.config.tenant_id = Some(tenant.to_string()),
    }
    let content = canonical_json(&ruleset);
    let stored = StoredRuleSet {
        tenant: tenant.to_string(),
        name: ruleset.config.name.clone(),
        version: ruleset.config.version().to_string(),
        hash: content_hash(&content),
        content: content.into(),
        seq: 0,
    };
    Ok((ruleset, stored))
}

fn compile_stamped(model: RuleSet, stored: StoredRuleSet) -> Result<Prepared> {
    let compiled = Compiled::of(&model)?;
    Ok(Prepared {
        model,
        stored,
        compiled,
    })
}

fn prepare(tenant: &str, ruleset: RuleSet) -> Result<Prepared> {
    let (model, stored) = stamp(tenant, ruleset)?;
    compile_stamped(model, stored)
}

impl Service {
    /// Rulesets of a tenant, sorted by name.
    pub fn list(&self, tenant: &TenantView) -> Vec<RuleSetSummary> {
        let mut list: Vec<_> = tenant
            .rulesets
            .values()
            .filter(|e| self.traffic.serves_all() || self.controls(tenant, e).served())
            .map(|e| {
                let (description, step_count) = match e.compiled() {
                    Ok(c) => (c.description.clone(), c.rules.step_count()),
                    Err(_) => (String::new(), 0),
                };
                RuleSetSummary {
                    name: e.stored.name.clone(),
                    version: e.stored.version.clone(),
                    description,
                    step_count,
                    seq: e.stored.seq,
                }
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// A ruleset this instance serves (`rulesets.include`/`exclude`: another is not
    /// found here).
    #[inline]
    pub fn get<'t>(&self, tenant: &'t TenantView, name: &str) -> Result<&'t Arc<Entry>> {
        tenant
            .rulesets
            .get(name)
            .filter(|entry| self.traffic.serves_all() || self.controls(tenant, entry).served())
            .ok_or_else(|| Error::NotFound(format!("ruleset '{name}' not found")))
    }

    /// The canonical JSON of a catalog entry: kept with it on a reader, read from the
    /// log (the commit that put it) elsewhere.
    pub async fn content(&self, entry: &Entry) -> Result<std::sync::Arc<str>> {
        if let Some(content) = entry.kept_content() {
            return Ok(content.clone());
        }
        let stored = &entry.stored;
        let found = self
            .store()?
            .version(&stored.tenant, &stored.name, stored.seq)
            .await?;
        found.map(|s| s.content).ok_or_else(|| {
            Error::Internal(format!(
                "the commit log holds no content for ruleset '{}' at seq {}",
                stored.name, stored.seq
            ))
        })
    }

    /// Creates or updates a ruleset. `expected_name` (from a `PUT` path) must match.
    pub async fn put_ruleset(
        self: &Arc<Self>,
        tenant: String,
        ruleset: RuleSet,
        expected_name: Option<String>,
    ) -> Result<PutOutcome> {
        if let Some(expected) = &expected_name
            && *expected != ruleset.config.name
        {
            return Err(Error::BadRequest(format!(
                "the path names ruleset '{expected}' but config.name is '{}'",
                ruleset.config.name
            )));
        }
        let prepared = prepare(&tenant, ruleset)?;
        let this = self.clone();
        spawn_write(&self.runtime, async move {
            let mut head = this.head.lock().await;
            this.put_locked(&mut head, prepared, Source::Api, true)
                .await
        })
        .await
    }

    /// The write itself; the caller holds the head lock. `write_file` is false when the
    /// change comes from the file itself.
    async fn put_locked(
        &self,
        head: &mut u64,
        prepared: Prepared,
        source: Source,
        write_file: bool,
    ) -> Result<PutOutcome> {
        let Prepared {
            model,
            mut stored,
            compiled,
        } = prepared;
        let catalog = self.projection.load_full();
        let tenant_id = stored.tenant.clone();
        let name = stored.name.clone();
        let version = stored.version.clone();
        let view = catalog
            .tenant(&tenant_id)
            .ok_or_else(|| Error::NotFound(format!("tenant '{tenant_id}' not found")))?;
        let existing = view.rulesets.get(&name);
        if let Some(existing) = existing
            && existing.stored.hash == stored.hash
        {
            return Ok(PutOutcome {
                status: PutStatus::Unchanged,
                changed: false,
                name,
                version,
                seq: existing.stored.seq,
            });
        }
        if existing.is_none()
            && let Some(max) = view.config.max_rules
            && view.rulesets.len() >= max as usize
        {
            return Err(Error::Forbidden(format!(
                "tenant '{tenant_id}' already has {} rulesets, its max_rules limit",
                view.rulesets.len()
            )));
        }
        let status = if existing.is_some() {
            PutStatus::Updated
        } else {
            PutStatus::Created
        };
        let file = write_file.then(|| crate::rules_dir::FileChange::Put {
            tenant: tenant_id.clone(),
            name: name.clone(),
            model: Box::new(model),
        });
        // The head lock is held: this commit gets exactly the next seq.
        stored.seq = *head + 1;
        let change = Change::PutRuleSet(stored.clone());
        // Only a reader keeps contents, and a reader does not write.
        let entry = Entry::new(stored, compiled, false);
        let seq = self
            .commit(head, source, change, file, |c: &Catalog, seq| {
                c.put_ruleset(seq, entry)
            })
            .await?;
        Ok(PutOutcome {
            status,
            changed: true,
            name,
            version,
            seq,
        })
    }

    pub async fn delete_ruleset(self: &Arc<Self>, tenant: String, name: String) -> Result<u64> {
        let this = self.clone();
        spawn_write(&self.runtime, async move {
            let mut head = this.head.lock().await;
            this.delete_locked(&mut head, &tenant, &name, Source::Api, true)
                .await
        })
        .await
    }

    async fn delete_locked(
        &self,
        head: &mut u64,
        tenant: &str,
        name: &str,
        source: Source,
        touch_file: bool,
    ) -> Result<u64> {
        let catalog = self.projection.load_full();
        let exists = catalog
            .tenant(tenant)
            .is_some_and(|v| v.rulesets.contains_key(name));
        if !exists {
            return Err(Error::NotFound(format!("ruleset '{name}' not found")));
        }
        let file = touch_file.then(|| crate::rules_dir::FileChange::Delete {
            tenant: tenant.to_string(),
            name: name.to_string(),
        });
        let change = Change::DeleteRuleSet {
            tenant: tenant.to_string(),
            name: name.to_string(),
        };
        let (t, n) = (tenant.to_string(), name.to_string());
        self.commit(head, source, change, file, move |c, seq| {
            c.delete_ruleset(seq, &t, &n)
        })
        .await
    }

    /// Stored versions, newest first. 404 when the ruleset never existed.
    pub async fn versions(&self, tenant: &TenantView, name: &str) -> Result<Versions> {
        let versions = self.store()?.versions(&tenant.config.id, name).await?;
        let current = tenant.rulesets.get(name);
        if versions.is_empty() && current.is_none() {
            return Err(Error::NotFound(format!("ruleset '{name}' not found")));
        }
        Ok(Versions {
            name: name.to_string(),
            current_version: current.map(|e| e.stored.version.clone()),
            current_seq: current.map(|e| e.stored.seq),
            versions: versions.into_iter().map(VersionView::from).collect(),
        })
    }

    /// The content of one stored version.
    pub async fn version(
        &self,
        tenant: &TenantView,
        name: &str,
        seq: u64,
    ) -> Result<StoredRuleSet> {
        self.store()?
            .version(&tenant.config.id, name, seq)
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!("ruleset '{name}' has no version with seq {seq}"))
            })
    }

    /// Makes version `seq` current again, as a new commit.
    pub async fn rollback(
        self: &Arc<Self>,
        tenant: String,
        name: String,
        seq: u64,
    ) -> Result<RollbackOutcome> {
        let this = self.clone();
        spawn_write(&self.runtime, async move {
            let mut head = this.head.lock().await;
            let catalog = this.projection.load_full();
            let view = catalog
                .tenant(&tenant)
                .ok_or_else(|| Error::NotFound(format!("tenant '{tenant}' not found")))?
                .clone();
            let stored = this.version(&view, &name, seq).await?;
            let model = RuleSet::from_json(&stored.content)
                .map_err(|e| Error::Internal(format!("stored version {seq}: {e}")))?;
            let current = view.rulesets.get(&name);
            let from_version = current.map(|e| e.stored.version.clone());
            let from_seq = current.map(|e| e.stored.seq);
            let prepared = prepare(&view.config.id, model)?;
            let out = this
                .put_locked(&mut head, prepared, Source::Rollback, true)
                .await?;
            Ok(RollbackOutcome {
                status: "rolled_back",
                name,
                from_version,
                to_version: out.version,
                from_seq,
                seq: out.seq,
            })
        })
        .await
    }

    /// Imports the rules directory: files that differ from the log become commits,
    /// rulesets whose files are gone are deleted, unusable files are reported. On a
    /// reader the same differences are applied to the catalog only.
    pub async fn reload(self: &Arc<Self>) -> Result<ReloadReport> {
        self.reload_listed(None).await
    }

    /// [`Service::reload`] from a listing of the directory taken just before, if given.
    pub(super) async fn reload_listed(
        self: &Arc<Self>,
        listing: Option<crate::rules_dir::Listing>,
    ) -> Result<ReloadReport> {
        let Some(dir) = self.files.clone() else {
            return Err(Error::BadRequest(
                "reload reads the rules directory, and none is configured (--rules-dir)".into(),
            ));
        };
        let this = self.clone();
        spawn_write(&self.runtime, async move {
            let started = Instant::now();
            let mut head = this.head.lock().await;
            let mut tenant_problem = None;
            if this.is_reader() && !this.is_cache() {
                tenant_problem = this
                    .read_tenants_file(&dir)
                    .err()
                    .map(|reason| (dir.tenants_path(), reason));
            }
            // A file seen before, whose content is the one now current, need not be
            // parsed when its bytes are the same, nor even read when its size and
            // modification time are, and that time is older than when its bytes were
            // hashed by a safe margin (an edit in the same clock tick as the hash
            // could otherwise go unnoticed). That keeps a restart over many files fast.
            let cache = this
                .file_cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let current = this.projection.load_full();
            let known_cache = cache.clone();
            let scan = run_blocking(move || {
                let known = |tenant: &str, name: &str, stamp: Stamp, raw: Option<&str>| {
                    let Some(seen) = known_cache.get(&(tenant.to_string(), name.to_string()))
                    else {
                        return false;
                    };
                    let is_current = current
                        .tenant(tenant)
                        .and_then(|v| v.rulesets.get(name))
                        .is_some_and(|e| e.stored.hash == seen.content_hash);
                    is_current
                        && match raw {
                            Some(raw) => seen.raw_hash == raw,
                            None => {
                                seen.size == stamp.size
                                    && seen.mtime_ns == stamp.mtime_ns
                                    && stamp.mtime_ns < seen.checked_at_ns - RACY_NS
                            }
                        }
                };
                let mut scan = match listing {
                    Some(listing) => listing.read(&known),
                    None => dir.scan(&known),
                };
                // Stamped, and compiled unless their content is already current, here
                // and on every core when many files were read: the write path below
                // only decides what each becomes.
                let parsed: Vec<(usize, Box<RuleSet>)> = scan
                    .found
                    .iter_mut()
                    .enumerate()
                    .filter_map(|(i, file)| file.ruleset.take().map(|r| (i, r)))
                    .collect();
                let parsed: Vec<_> = parsed
                    .into_iter()
                    .filter_map(|(i, ruleset)| scan.found.get(i).map(|file| (i, file, ruleset)))
                    .collect();
                let heavy = parsed.len();
                let checked = crate::parallel::map(parsed, heavy, |(i, file, ruleset)| {
                    let checked = stamp(&file.tenant, *ruleset).map(|(model, stored)| {
                        let is_current = current
                            .tenant(&file.tenant)
                            .and_then(|v| v.rulesets.get(&file.name))
                            .is_some_and(|e| e.stored.hash == stored.hash);
                        // The model is kept (as `Err`) only where it was not
                        // compiled: a thousand parsed rulesets held to the end of
                        // the import took its peak from 6.2 to 10.6 MB.
                        let compiled = if is_current {
                            Err(model)
                        } else {
                            Ok(Compiled::of(&model))
                        };
                        (stored, compiled)
                    });
                    (i, checked)
                });
                Ok((scan, checked))
            })
            .await?;
            let (scan, checked) = scan;
            let mut checked = checked.into_iter().peekable();
            let checked_at_ns = now_ns();
            let t_scan = started.elapsed();
            // What the file cache learns: files read now. Unchanged files keep their
            // entry; the cache is copied only when something differs.
            let mut learnt: Vec<((String, String), FileSeen)> = Vec::new();
            let unusable = scan.unusable.clone();
            let mut report = ReloadReport {
                status: "reloaded",
                errors: scan.problems,
                ..ReloadReport::default()
            };
            if let Some((path, reason)) = tenant_problem {
                report.errors.push(FileProblem { path, reason });
            }
            let mut seen: HashSet<(String, String)> = scan.unusable;
            // All differences become commits appended in one transaction and made
            // visible in one catalog swap: importing a thousand files costs one sync.
            let catalog = this.projection.load_full();
            let mut edit = catalog.edit();
            let mut commits = Vec::new();
            let mut seq = *head;
            for (i, file) in scan.found.into_iter().enumerate() {
                let key = (file.tenant.clone(), file.name.clone());
                seen.insert(key.clone());
                let Some((_, checked)) = checked.next_if(|(j, _)| *j == i) else {
                    // Known bytes, already current.
                    if let (Some(seen), Some(_)) = (cache.get(&key), &file.raw_hash) {
                        // Read and hashed again just now (the stamp had changed).
                        let mut seen = seen.clone();
                        seen.size = file.stamp.size;
                        seen.mtime_ns = file.stamp.mtime_ns;
                        seen.checked_at_ns = checked_at_ns;
                        learnt.push((key, seen));
                    }
                    report.rules_loaded += 1;
                    continue;
                };
                let mut problem = |reason: String| {
                    report.errors.push(FileProblem {
                        path: file.path.clone(),
                        reason,
                    })
                };
                let (mut stored, compiled) = match checked {
                    Ok(checked) => checked,
                    Err(e) => {
                        problem(e.to_string());
                        continue;
                    }
                };
                let Some(view) = edit.tenant(&file.tenant) else {
                    problem(format!("tenant '{}' not found", file.tenant));
                    continue;
                };
                let existing = view.rulesets.get(&file.name);
                let seen = FileSeen {
                    raw_hash: file.raw_hash.clone().unwrap_or_default(),
                    content_hash: stored.hash.clone(),
                    size: file.stamp.size,
                    mtime_ns: file.stamp.mtime_ns,
                    checked_at_ns,
                };
                if existing.is_some_and(|e| e.stored.hash == stored.hash) {
                    learnt.push((key, seen));
                    report.rules_loaded += 1;
                    continue;
                }
                if existing.is_none()
                    && let Some(max) = view.config.max_rules
                    && edit.count(&file.tenant) >= max as usize
                {
                    problem(format!(
                        "tenant '{}' already has {max} rulesets, its max_rules limit",
                        file.tenant
                    ));
                    continue;
                }
                let compiled = match compiled.unwrap_or_else(|model| Compiled::of(&model)) {
                    Ok(compiled) => compiled,
                    Err(e) => {
                        problem(e.to_string());
                        continue;
                    }
                };
                seq += 1;
                stored.seq = seq;
                learnt.push((key, seen));
                commits.push(this.new_commit(seq, Source::File, Change::PutRuleSet(stored.clone())));
                // A reader serves files without a log to read them back from.
                edit.put(Entry::new(stored, compiled, this.is_reader()));
                report.rules_loaded += 1;
                report.imported += 1;
            }
            let mut gone: Vec<(String, String)> = catalog
                .tenants
                .iter()
                .flat_map(|(t, v)| v.rulesets.keys().map(move |n| (t.clone(), n.clone())))
                .filter(|key| !seen.contains(key))
                .collect();
            gone.sort();
            for (tenant, name) in gone {
                seq += 1;
                edit.remove(&tenant, &name);
                commits.push(this.new_commit(seq, Source::File, Change::DeleteRuleSet { tenant, name }));
                report.rules_removed += 1;
            }
            if !commits.is_empty() {
                if this.is_reader() {
                    // A reader follows the writer's files: it serves what they hold,
                    // and commits nothing.
                    this.projection.store(edit.finish(*head));
                } else {
                    this.commit_all(&mut head, &commits, edit.finish(seq)).await?;
                }
            }
            let t_apply = started.elapsed();
            // Entries of files no longer there (or no longer usable) go.
            let forgotten = cache
                .keys()
                .any(|key| !seen.contains(key) || unusable.contains(key));
            if forgotten || learnt.iter().any(|(key, new)| cache.get(key) != Some(new)) {
                let mut next_cache: FileCache = cache
                    .iter()
                    .filter(|(key, _)| seen.contains(*key) && !unusable.contains(*key))
                    .map(|(key, seen)| (key.clone(), seen.clone()))
                    .collect();
                next_cache.extend(learnt);
                let next_cache = Arc::new(next_cache);
                // Only a cache: failing to save it costs the next start some time.
                if let Err(e) = this.store()?.save_file_cache(&next_cache).await {
                    tracing::warn!(error = %e, "could not save the rules-directory file cache");
                }
                *this.file_cache.lock().unwrap_or_else(|e| e.into_inner()) = next_cache;
            }
            for problem in &report.errors {
                tracing::warn!(path = %problem.path.display(), reason = %problem.reason, "rules file skipped");
            }
            metrics::gauge!("ordo_rules_dir_problems").set(report.errors.len() as f64);
            let outcome = if report.errors.is_empty() { "ok" } else { "with_problems" };
            metrics::counter!("ordo_rules_reloads_total", "outcome" => outcome).increment(1);
            *this
                .file_problems
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = report.errors.clone();
            report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            tracing::debug!(scan_ms = t_scan.as_secs_f64() * 1e3, apply_ms = t_apply.as_secs_f64() * 1e3, total_ms = started.elapsed().as_secs_f64() * 1e3, "reload phases");
            this.last_reload_ms.store(super::now_ms(), std::sync::atomic::Ordering::SeqCst);
            Ok(report)
        })
        .await
    }
}
