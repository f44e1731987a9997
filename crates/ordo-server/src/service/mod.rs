//! The service layer: every operation of the server, independent of the transport.
//!
//! Writes are serialised by one lock around the log's head and run on their own task,
//! so a client that disconnects mid-write never leaves a commit half-applied. Reads and
//! executions use the current [`Catalog`] snapshot only.

mod attach;
mod exec;
mod import;
mod jobs;
mod replica;
mod rules;
mod tenants;

use std::collections::BTreeMap;
use std::fs::File;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::projection::{Catalog, Delivery, Entry, LogContents, Projection, TenantView};
use crate::rules_dir::{FileChange, FileProblem, RulesDir};
use crate::store::{Commit, Location, Source, StorageInfo, Store};

pub use exec::{BatchOptions, Executed, TestCase};
pub use import::{OWN_PROCESS_FROM, enable_own_process};
pub use jobs::{JobInput, Jobs, MAX_ASYNC_BATCH, MAX_LIST};
pub use replica::{Rebuild, ReplicaState};

/// Files as this instance last wrote them (`None`: deleted).
type OwnWrites = BTreeMap<std::path::PathBuf, Option<crate::rules_dir::Stamp>>;

pub use rules::{PutOutcome, PutStatus, ReloadReport, RollbackOutcome, Versions};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("rules directory {path}: {source}")]
    RulesDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("importing the rules directory failed: {0}")]
    Import(Error),
}

pub struct Service {
    /// Swapped whole by a configuration reload; keys that need a restart never change.
    config: arc_swap::ArcSwap<Config>,
    projection: Projection,
    /// Where the commit log lives.
    location: Location,
    /// The commit log, once attached (at start for the embedded stores; when the
    /// database answers with an up-to-date schema for PostgreSQL).
    store: OnceLock<Store>,
    /// The store is attached and its state served: API requests are let through.
    attached: AtomicBool,
    /// Why the store is not usable right now (unreachable, migrations pending).
    store_problem: Mutex<Option<String>>,
    /// An append failed in a way that leaves the database's head uncertain (the
    /// connection broke around the commit, or another process appended): no write is
    /// taken until the state has been read back from the database.
    resync_needed: AtomicBool,
    files: Option<Arc<RulesDir>>,
    /// Seq of the last commit; holding the lock is the right to append.
    head: tokio::sync::Mutex<u64>,
    /// The runtime the service started on. Writes run there, whichever runtime the
    /// request came from (gRPC serves from runtimes of its own), so that a write
    /// outlives the request and the runtime that carried it.
    runtime: tokio::runtime::Handle,
    /// The last commit's seq, announced to the outbox after every append.
    appended: tokio::sync::watch::Sender<u64>,
    /// The latest commits, so the outbox publishes them without reading the store.
    recent: Mutex<std::collections::VecDeque<Commit>>,
    /// NATS sync, when `nats_url` is set.
    nats: Option<Arc<crate::sync::status::NatsStatus>>,
    /// A NATS reader's cached state, as read from its rules directory at start.
    replica: Mutex<Option<replica::ReplicaState>>,
    /// A NATS reader's rules directory: content hash of each ruleset file it wrote.
    cache_files: Mutex<std::collections::HashMap<(String, String), String>>,
    /// `instance_id` from the configuration, or a random one.
    instance_id: String,
    shutting_down: AtomicBool,
    /// Rate limits, execution bounds and the ruleset filter.
    traffic: crate::traffic::Traffic,
    /// The async job queue.
    jobs: jobs::Jobs,
    /// When this process's service was made (Unix ms): async jobs submitted before
    /// were left by a previous run.
    booted_ms: i64,
    /// A commit's file could not be written (the commit itself is durable): the files
    /// lag behind the log until the next start repairs them.
    files_lagging: AtomicBool,
    /// The rules-directory watcher is running (not only the poll).
    watcher_active: AtomicBool,
    /// When the rules directory was last read in full (ms since the epoch; 0: never).
    last_reload_ms: std::sync::atomic::AtomicI64,
    /// Bytes of rules files already read, so unchanged files are not parsed again.
    file_cache: Mutex<Arc<crate::store::FileCache>>,
    /// Files the last scan could not use (admin plane only).
    file_problems: Mutex<Vec<FileProblem>>,
    /// Files as this instance last wrote them (`None`: deleted): the watcher ignores
    /// events on a file that is still exactly so.
    own_writes: Arc<Mutex<OwnWrites>>,
    /// Every commit up to this seq has its rules file written (recorded with each
    /// commit, so a start knows which files a crash may have left behind).
    files_done: std::sync::atomic::AtomicU64,
    /// Exclusive lock on the rules directory, held for the process's lifetime.
    dir_lock: Option<File>,
    purpose: Purpose,
}

/// What a process starts the service for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// A server.
    Serve,
    /// `ordo-server import`: bring the log up to the rules directory, then stop.
    Import,
}

impl Service {
    /// Opens the store, repairs interrupted file writes, builds the catalog and imports
    /// the rules directory. An embedded store is attached before this returns (and any
    /// failure stops the start); PostgreSQL is attached in the background, the instance
    /// staying not ready until the database answers with an up-to-date schema.
    pub async fn start(config: Config) -> Result<Arc<Service>, StartError> {
        Self::start_for(config, Purpose::Serve).await
    }

    /// `ordo-server import`: imports the rules directory into the embedded database's
    /// log as a one-off process (a server's start runs one for a large import) and
    /// returns once the commits are durable. The directory's lock is taken, or shared
    /// when standard input is the lock file of a server that runs this import.
    pub async fn import(mut config: Config) -> Result<(), StartError> {
        if config.role == crate::config::Role::Reader {
            return Err(StartError::Config(
                "a reader commits nothing; run it with the writer's configuration".into(),
            ));
        }
        if config.rules_dir.is_none() {
            return Err(StartError::Config(
                "no rules directory to import (rules_dir / --rules-dir)".into(),
            ));
        }
        if let Location::Postgres(_) = config.store_location().map_err(StartError::Config)? {
            return Err(StartError::Config(
                "a one-off import writes the embedded SQLite log; a server on PostgreSQL imports its rules directory when it attaches".into(),
            ));
        }
        // Nothing is published from here: the server publishes the log it loads.
        config.nats_url = None;
        let service = Self::start_for(config, Purpose::Import).await?;
        service.close().await;
        // The process ends once this returns: the catalog of everything imported is
        // left for the exit to free at once rather than freed value by value here
        // (some ms for a thousand rulesets, which the waiting server's start pays).
        std::mem::forget(service);
        Ok(())
    }

    async fn start_for(config: Config, purpose: Purpose) -> Result<Arc<Service>, StartError> {
        let problems = config.check();
        if !problems.is_empty() {
            return Err(StartError::Config(
                crate::config::ConfigError { problems }.to_string(),
            ));
        }
        let location = config.store_location().map_err(StartError::Config)?;
        let t0 = Instant::now();
        let reader = config.role == crate::config::Role::Reader;
        // A reader following NATS keeps its own copy of the catalog in its directory.
        let follows_files = reader && config.nats_url.is_none();
        let (files, dir_lock) = match &config.rules_dir {
            // A reader reads the writer's directory and never writes to it.
            Some(path) if follows_files => (
                Some(Arc::new(RulesDir::open_read_only(
                    path,
                    &config.default_tenant,
                ))),
                None,
            ),
            Some(path) => {
                let dir_err = |source| StartError::RulesDir {
                    path: path.display().to_string(),
                    source,
                };
                let dir = RulesDir::open(path, &config.default_tenant).map_err(dir_err)?;
                let inherited = match purpose {
                    Purpose::Import => {
                        use std::os::fd::AsFd;
                        dir.inherited_lock(std::io::stdin().as_fd())
                    }
                    Purpose::Serve => None,
                };
                let lock = inherited.unwrap_or_else(|| dir.lock()).map_err(dir_err)?;
                (Some(Arc::new(dir)), Some(lock))
            }
            None => (None, None),
        };
        let nats = config.nats_url.as_deref().map(|url| {
            Arc::new(crate::sync::status::NatsStatus::new(
                url,
                &config.nats_subject_prefix,
            ))
        });
        let service = Arc::new(Service {
            head: tokio::sync::Mutex::new(0),
            runtime: tokio::runtime::Handle::current(),
            appended: tokio::sync::watch::Sender::new(0),
            recent: Mutex::new(std::collections::VecDeque::new()),
            nats,
            replica: Mutex::new(None),
            cache_files: Mutex::new(Default::default()),
            instance_id: config.instance_id.clone().unwrap_or_else(|| {
                format!("ordo-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
            }),
            projection: Projection::new(build_catalog(&config, 0, &[], [])),
            traffic: crate::traffic::Traffic::new(&config),
            jobs: jobs::Jobs::new(config.queue.buffer_size),
            booted_ms: now_ms(),
            config: arc_swap::ArcSwap::from_pointee(config),
            location: location.clone(),
            store: OnceLock::new(),
            attached: AtomicBool::new(false),
            store_problem: Mutex::new(None),
            resync_needed: AtomicBool::new(false),
            files,
            shutting_down: AtomicBool::new(false),
            files_lagging: AtomicBool::new(false),
            watcher_active: AtomicBool::new(false),
            last_reload_ms: std::sync::atomic::AtomicI64::new(0),
            file_cache: Mutex::new(Default::default()),
            file_problems: Mutex::new(Vec::new()),
            own_writes: Arc::new(Mutex::new(BTreeMap::new())),
            files_done: std::sync::atomic::AtomicU64::new(0),
            dir_lock,
            purpose,
        });
        // A local log is read now: list the rules directory meanwhile, on another
        // thread, for the import that follows (a remote one may take minutes to reach,
        // and its import lists the directory then).
        let listing = match (&location, &service.files) {
            (Location::Memory | Location::Sqlite(_), Some(dir)) if !service.is_cache() => {
                let dir = dir.clone();
                Some(tokio::task::spawn_blocking(move || dir.list()))
            }
            _ => None,
        };
        match location {
            Location::Memory => service.attach(Some(Store::memory()), t0, listing).await?,
            Location::Sqlite(path) => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|source| StartError::RulesDir {
                        path: parent.display().to_string(),
                        source,
                    })?;
                }
                let store = Store::sqlite(&path).await?;
                service.attach(Some(store), t0, listing).await?;
            }
            Location::Postgres(url) => {
                *service
                    .store_problem
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some("connecting to the database".into());
                tokio::spawn(attach::postgres(service.clone(), url));
            }
        }
        Ok(service)
    }

    /// Makes `store` the commit log (unless one is already attached, as when an
    /// earlier attempt failed after connecting), loads its state, repairs interrupted
    /// file writes, imports the rules directory (from `listing` when given and no
    /// repair touched a file) and opens the API.
    async fn attach(
        self: &Arc<Self>,
        store: Option<Store>,
        t0: Instant,
        listing: Option<tokio::task::JoinHandle<crate::rules_dir::Listing>>,
    ) -> Result<(), StartError> {
        if let Some(store) = store {
            let _ = self.store.set(store);
        }
        let Some(store) = self.store.get() else {
            return Err(StartError::Config("no store".into()));
        };
        let opened = t0.elapsed();
        let mut state = store.load().await?;
        let loaded = t0.elapsed();
        // The listing taken meanwhile says whether a crash left staged files behind.
        let mut listing = match listing {
            Some(task) => task.await.ok(),
            None => None,
        };
        if self.purpose == Purpose::Serve
            && matches!(store, Store::Sqlite(_))
            && !self.is_reader()
            && let (Some(lock), Some(listed)) = (&self.dir_lock, &listing)
            && import::worth_own_process(listed, &state)
        {
            let before = state.seq;
            match import::in_own_process(lock).await {
                Ok(took) => {
                    state = store.load().await?;
                    let commits = state.seq.saturating_sub(before);
                    // Its audit events went to the same log; its commits count here.
                    metrics::counter!("ordo_commits_total", "source" => Source::File.as_str())
                        .increment(commits);
                    tracing::info!(
                        commits,
                        ms = took.as_secs_f64() * 1e3,
                        "rules directory imported by a one-off process"
                    );
                    // Its repairs of interrupted writes may have changed files.
                    if listing.as_ref().is_some_and(|l| l.staged) {
                        listing = None;
                    }
                }
                // The import below does it all, as it would have anyway.
                Err(e) => tracing::warn!("{e}; importing in the server's own process"),
            }
        }
        let staged = listing.as_ref().is_none_or(|l| l.staged);
        if let Some(dir) = self.files.as_ref().filter(|_| !self.is_reader()) {
            let mut repaired = false;
            if staged {
                let hashes: BTreeMap<(String, String), String> = state
                    .rulesets
                    .iter()
                    .map(|r| ((r.tenant.clone(), r.name.clone()), r.hash.clone()))
                    .collect();
                let dir = dir.clone();
                let recovered = tokio::task::spawn_blocking(move || {
                    dir.recover(|t, n| hashes.get(&(t.to_string(), n.to_string())).cloned())
                })
                .await
                .unwrap_or_default();
                repaired = !recovered.is_empty();
                for line in recovered {
                    tracing::warn!("interrupted file write {line}");
                }
            }
            if self.rewrite_files_in_doubt(store, &state).await? || repaired {
                // Files changed since the listing: the import lists them again.
                listing = None;
            }
        }
        self.files_done.store(state.seq, Ordering::SeqCst);
        let (catalog, contents) = log_catalog(&self.config(), &state);
        // The embedded database's contents are read after readiness, by the warm-up;
        // another store's are read now (a database across a network can fail between
        // the two, and an entry must never wait on one that does).
        let deferred = match store {
            Store::Sqlite(sqlite) => Some(ReadContents {
                path: sqlite.path().to_path_buf(),
                seqs: state.rulesets.iter().map(|r| r.seq).collect(),
                delivery: contents,
            }),
            _ => {
                deliver(store, &state, &contents.0).await?;
                None
            }
        };
        let built = t0.elapsed();
        let file_cache = store.load_file_cache().await?;
        {
            let mut head = self.head.lock().await;
            *head = state.seq;
            self.appended.send_replace(state.seq);
            *self.file_cache.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(file_cache);
            self.projection.store(catalog);
        }
        if self.is_cache() {
            self.load_replica().await;
        } else if self.files.is_some() {
            let report = self
                .reload_listed(listing)
                .await
                .map_err(StartError::Import)?;
            tracing::debug!(
                open_ms = opened.as_secs_f64() * 1e3,
                load_ms = loaded.as_secs_f64() * 1e3,
                catalog_ms = built.as_secs_f64() * 1e3,
                total_ms = t0.elapsed().as_secs_f64() * 1e3,
                "startup phases"
            );
            tracing::info!(
                loaded = report.rules_loaded,
                imported = report.imported,
                removed = report.rules_removed,
                problems = report.errors.len(),
                "rules directory read"
            );
        }
        self.attached.store(true, Ordering::SeqCst);
        if self.purpose == Purpose::Import {
            return Ok(());
        }
        if self.files.is_some() && !self.is_reader() {
            // Readers of the directory learn the tenants from it; repair it if a crash
            // came between a tenant commit and its file.
            let this = self.clone();
            tokio::spawn(async move { this.write_tenants_file().await });
        }
        let (warmed, warm_up_over) = tokio::sync::oneshot::channel();
        warm_up(self.catalog_full(), deferred, Some(warmed));
        let this = self.clone();
        tokio::spawn(async move {
            // Done, or never started: either way the start is over.
            let _ = warm_up_over.await;
            if let Some(store) = this.store.get()
                && let Err(e) = store.after_start().await
            {
                tracing::warn!(error = %e, "the commit log could not be checkpointed after the start");
            }
        });
        if self.config().watch_rules
            && let Some(dir) = &self.files
        {
            crate::sync::rules_watch::spawn(self.clone(), dir.root().to_path_buf());
        }
        #[cfg(feature = "nats-sync")]
        if self.nats.is_some() {
            crate::sync::nats::spawn(self.clone());
        }
        Ok(())
    }

    /// NATS sync's state, when `nats_url` is set.
    pub fn nats(&self) -> Option<&Arc<crate::sync::status::NatsStatus>> {
        self.nats.as_ref()
    }

    /// Follows the seq of the last appended commit.
    pub fn watch_appended(&self) -> tokio::sync::watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Records appended commits for the outbox and announces the new head.
    fn appended(&self, commits: &[Commit]) {
        if self.nats.is_some() {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            for commit in commits {
                if recent.len() == RECENT {
                    recent.pop_front();
                }
                recent.push_back(commit.clone());
            }
        }
        if let Some(last) = commits.last() {
            self.appended.send_replace(last.seq);
        }
    }

    /// The commits after `seq` if they are all still held in memory (`None`: read
    /// them from the store).
    pub fn recent_after(&self, seq: u64) -> Option<Vec<Commit>> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let first = recent.front()?.seq;
        if first > seq + 1 {
            return None;
        }
        Some(recent.iter().filter(|c| c.seq > seq).cloned().collect())
    }

    /// The commit log, once attached.
    pub fn commit_log(&self) -> Option<&Store> {
        self.store.get()
    }

    /// This reader's durable consumer: `ordo-{instance-id}`.
    pub fn consumer_name(&self) -> String {
        format!("ordo-{}", self.instance_id)
    }

    /// Writes again, from the log, the files of the commits made after the last one
    /// whose file was known written: a crash between a commit and its file leaves the
    /// file behind, and it must not be taken for a hand edit.
    async fn rewrite_files_in_doubt(
        &self,
        store: &Store,
        state: &crate::store::State,
    ) -> Result<bool, StartError> {
        let Some(done) = store.files_done().await? else {
            return Ok(false);
        };
        if done >= state.seq {
            return Ok(false);
        }
        let mut keys = std::collections::BTreeSet::new();
        let mut after = done;
        loop {
            let page = store.commits_after(after, 1000, false).await?;
            let Some(last) = page.last().map(|c| c.seq) else {
                break;
            };
            for commit in page {
                match commit.change {
                    crate::store::Change::PutRuleSet(r) => keys.insert((r.tenant, r.name)),
                    crate::store::Change::DeleteRuleSet { tenant, name } => {
                        keys.insert((tenant, name))
                    }
                    _ => false,
                };
            }
            after = last;
        }
        let current: BTreeMap<(String, String), u64> = state
            .rulesets
            .iter()
            .map(|r| ((r.tenant.clone(), r.name.clone()), r.seq))
            .collect();
        for (tenant, name) in keys {
            let stored = match current.get(&(tenant.clone(), name.clone())) {
                Some(&seq) => store.version(&tenant, &name, seq).await?,
                None => None,
            };
            let content = stored.as_ref().map(|s| &*s.content);
            let write = match FileChange::to_match(&tenant, &name, content) {
                Ok(write) => write,
                Err(e) => {
                    tracing::error!(tenant = %tenant, ruleset = %name, error = %e, "stored ruleset unreadable; its file is left as is");
                    continue;
                }
            };
            match self.write_file(write).await {
                Ok(()) => {
                    tracing::warn!(tenant = %tenant, ruleset = %name, "rules file written again from the log (its write was interrupted)")
                }
                Err(e) => {
                    self.files_lagging.store(true, Ordering::SeqCst);
                    tracing::error!(tenant = %tenant, ruleset = %name, error = %e, "rules file could not be written from the log");
                }
            }
        }
        Ok(true)
    }

    /// The commit log, or why there is none yet.
    fn store(&self) -> Result<&Store> {
        self.store.get().ok_or_else(|| {
            Error::Unavailable(
                self.store_problem()
                    .unwrap_or_else(|| "the commit log is not attached yet".into()),
            )
        })
    }

    /// Whether API requests can be served: the store is attached and its state loaded.
    #[inline]
    pub fn is_attached(&self) -> bool {
        self.attached.load(Ordering::Relaxed)
    }

    /// Why API requests are turned away while the store is not attached.
    pub fn not_attached_reason(&self) -> String {
        self.store_problem()
            .unwrap_or_else(|| "the commit log is not attached yet".into())
    }

    fn store_problem(&self) -> Option<String> {
        self.store_problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records (or clears) why the store cannot be used; logged on change.
    fn set_store_problem(&self, problem: Option<String>) {
        let mut current = self.store_problem.lock().unwrap_or_else(|e| e.into_inner());
        if *current != problem {
            match &problem {
                Some(p) => tracing::warn!(problem = %p, "store not usable"),
                None if current.is_some() => tracing::info!("store usable again"),
                None => {}
            }
            *current = problem;
        }
    }

    /// The current configuration.
    #[inline]
    pub fn config(&self) -> arc_swap::Guard<Arc<Config>> {
        self.config.load()
    }

    /// Applies a reloaded configuration whose restart-only keys are unchanged: the
    /// default tenant's limits follow it unless that tenant has a stored configuration.
    pub async fn apply_config(&self, config: Config) {
        // The head lock keeps writes from swapping the catalog meanwhile.
        let head = self.head.lock().await;
        let catalog = self.projection.load_full();
        let default = config.default_tenant_config();
        if let Some(view) = catalog.tenant(&default.id)
            && !view.stored
            && view.config != default
        {
            self.projection.store(catalog.default_tenant(default));
        }
        self.traffic.apply(&config);
        self.config.store(Arc::new(config));
        drop(head);
    }

    /// Rate limits, execution bounds and the ruleset filter.
    pub fn traffic(&self) -> &crate::traffic::Traffic {
        &self.traffic
    }

    /// The traffic controls of a catalog entry of `tenant`.
    #[inline]
    pub fn controls<'e>(
        &self,
        tenant: &TenantView,
        entry: &'e Entry,
    ) -> &'e Arc<crate::traffic::Controls> {
        entry.controls(|settings| {
            self.traffic.controls(
                &tenant.config.id,
                &entry.stored.name,
                settings,
                self.config().rate_limit.max_keys,
            )
        })
    }

    /// Admits one execution (or batch, or async submission) of `entry` for `caller`:
    /// the tenant's rate limit, the ruleset's, then the instance's and the ruleset's
    /// execution bounds. The execution counts as running while the permit lives.
    pub fn admit_execution(
        &self,
        tenant: &TenantView,
        entry: &Entry,
        caller: &crate::traffic::Caller<'_>,
    ) -> Result<crate::traffic::Permit> {
        self.admit(tenant)?;
        let controls = self.controls(tenant, entry);
        self.traffic.admit(
            controls,
            &tenant.config.id,
            &entry.stored.name,
            caller,
            self.config().max_concurrent_executions,
        )
    }

    /// The current catalog snapshot.
    #[inline]
    pub fn catalog(&self) -> arc_swap::Guard<Arc<Catalog>> {
        self.projection.load()
    }

    /// The current catalog, owned (for holding across an await).
    pub fn catalog_full(&self) -> Arc<Catalog> {
        self.projection.load_full()
    }

    /// The tenant a request acts for: the requested one when multi-tenancy is on,
    /// otherwise (or when none is named) the default tenant.
    #[inline]
    pub fn tenant<'c>(
        &self,
        catalog: &'c Catalog,
        requested: Option<&str>,
    ) -> Result<&'c Arc<TenantView>> {
        let config = self.config.load();
        let id = match requested {
            Some(id) if config.multi_tenancy_enabled => id,
            _ => config.default_tenant.as_str(),
        };
        match catalog.tenant(id) {
            Some(view) if view.config.enabled => Ok(view),
            Some(_) => Err(Error::NotFound(format!("tenant '{id}' is disabled"))),
            None => Err(Error::NotFound(format!("tenant '{id}' not found"))),
        }
    }

    /// Takes one token from the tenant's rate limiter.
    #[inline]
    pub fn admit(&self, tenant: &TenantView) -> Result<()> {
        let Some(limiter) = &tenant.limiter else {
            return Ok(());
        };
        limiter.check().map_err(|retry_after_secs| {
            crate::traffic::rejected("rate_limit_tenant");
            Error::RateLimited {
                message: format!(
                    "tenant '{}' is over its rate limit of {} requests per second",
                    tenant.config.id,
                    tenant.config.qps_limit.unwrap_or_default()
                ),
                retry_after_secs,
            }
        })
    }

    pub fn storage_info(&self) -> StorageInfo {
        match self.store.get() {
            Some(store) => store.info(),
            None => StorageInfo {
                backend: self.location.backend(),
                durable: true,
                path: None,
                url: self.location.shown(),
            },
        }
    }

    /// Seconds since the process started (not since the service was built).
    pub fn uptime_seconds(&self) -> f64 {
        process_uptime().as_secs_f64()
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.jobs.stop_accepting();
    }

    /// Reasons the instance should not receive traffic; empty when ready.
    pub fn not_ready_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.shutting_down.load(Ordering::SeqCst) {
            reasons.push("shutting down".to_string());
        }
        if let Some(problem) = self.store_problem() {
            reasons.push(problem);
        } else if !self.is_attached() {
            reasons.push("starting: loading the commit log".to_string());
        }
        if let Some(nats) = &self.nats {
            if self.is_reader() {
                if let Some(why) = nats.unfresh() {
                    reasons.push(format!("not in step with the stream: {why}"));
                }
            } else {
                match nats.lease() {
                    crate::sync::status::Lease::Held => {}
                    crate::sync::status::Lease::Unknown => {
                        reasons.push("waiting for the writer lease (NATS not reached yet)".into())
                    }
                    crate::sync::status::Lease::HeldBy(holder) => {
                        reasons.push(format!("another writer ({holder}) holds the writer lease"))
                    }
                }
            }
        }
        reasons
    }

    /// Problems worth an operator's attention that do not stop serving.
    pub fn degraded_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.files_lagging.load(Ordering::SeqCst) {
            reasons.push("a rules file could not be written after its commit".to_string());
        }
        if let Some(nats) = self.nats.as_ref().filter(|_| !self.is_reader()) {
            let behind = self.appended.borrow().saturating_sub(nats.published());
            if behind > 0 && nats.down_for().is_some() {
                reasons.push(format!(
                    "{behind} commit(s) waiting to be published: NATS unreachable"
                ));
            }
        }
        let problems = self.file_problems();
        if !problems.is_empty() {
            reasons.push(format!(
                "{} file(s) in the rules directory could not be loaded",
                problems.len()
            ));
        }
        reasons
    }

    pub fn file_problems(&self) -> Vec<FileProblem> {
        self.file_problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn rules_dir(&self) -> Option<&std::path::Path> {
        self.files.as_ref().map(|d| d.root())
    }

    pub async fn close(&self) {
        if let Some(nats) = self.nats.as_ref().filter(|_| !self.is_reader()) {
            // Publish what is committed (briefly), then give the writer lease back.
            let head = *self.appended.borrow();
            let deadline = Instant::now() + std::time::Duration::from_secs(2);
            while nats.published() < head
                && nats.lease() == crate::sync::status::Lease::Held
                && Instant::now() < deadline
            {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            if nats.published() < head {
                tracing::warn!(
                    unpublished = head - nats.published(),
                    "commits not published yet; the next start publishes them"
                );
            }
            nats.stop();
            let deadline = Instant::now() + std::time::Duration::from_secs(1);
            while nats.lease() == crate::sync::status::Lease::Held && Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
        if let Some(store) = self.store.get() {
            // Every file written: nothing for the next start to doubt.
            let head = *self.head.lock().await;
            if self.files.is_some()
                && !self.is_reader()
                && head > 0
                && self.files_done.load(Ordering::SeqCst) == head
                && let Err(e) = store.mark_files_done(head).await
            {
                tracing::warn!(error = %e, "could not record that every rules file is written");
            }
            store.close().await;
        }
    }

    pub fn rules_dir_handle(&self) -> Option<&RulesDir> {
        self.files.as_deref()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Whether `path` is as this instance last wrote it (or deleted it): then its events
    /// are this instance's own write, not a hand edit.
    pub fn is_own_write(&self, path: &std::path::Path) -> bool {
        let own = self.own_writes.lock().unwrap_or_else(|e| e.into_inner());
        own.get(path)
            .is_some_and(|written| *written == crate::rules_dir::stamp_of(path))
    }

    /// Writes a committed change's file (stage, fsync, rename, directory fsync), noting
    /// it as this instance's own before the rename so the watcher knows the event.
    async fn write_file(&self, change: FileChange) -> Result<()> {
        let Some(dir) = self.files.clone() else {
            return Ok(());
        };
        let own = self.own_writes.clone();
        run_blocking(move || {
            dir.apply(&change, |target, stamp| {
                own.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(target.to_path_buf(), stamp);
            })
            .map_err(|e| Error::Internal(e.to_string()))
        })
        .await
    }

    /// Records whether the native rules-directory watcher runs.
    pub fn set_watcher_active(&self, active: bool) {
        self.watcher_active.store(active, Ordering::SeqCst);
    }

    /// How this instance follows its rules directory, for `/health`.
    pub fn rules_sync(&self) -> serde_json::Value {
        let config = self.config();
        let last = self.last_reload_ms.load(Ordering::SeqCst);
        serde_json::json!({
            "mode": match (config.rules_dir.is_some(), config.watch_rules) {
                (true, _) if self.is_cache() => "nats_cache",
                (true, true) => "rules_dir_watch",
                (true, false) => "rules_dir",
                (false, _) => "none",
            },
            "watcher": config.watch_rules.then(|| {
                if self.watcher_active.load(Ordering::SeqCst) { "native" } else { "polling" }
            }),
            "last_reload_at_ms": (last > 0).then_some(last),
        })
    }

    pub fn is_reader(&self) -> bool {
        self.config().role == crate::config::Role::Reader
    }

    /// Refuses writes on a reader: only the writer (or a standalone instance) commits.
    pub fn writable(&self) -> Result<()> {
        let config = self.config();
        if config.role == crate::config::Role::Reader {
            return Err(Error::ReadOnly {
                writer: config.writer_addr.clone(),
            });
        }
        Ok(())
    }

    /// Logs a failed append. A lost database also makes the instance not ready; when
    /// the database's head is uncertain, writes wait for [`Service::resync`].
    fn commit_failed(&self, e: crate::store::StoreError) -> Error {
        use crate::store::StoreError;
        tracing::error!(error = %e, "commit failed");
        if e.is_unreachable() {
            self.set_store_problem(Some(e.to_string()));
        }
        if e.is_unreachable() || matches!(e, StoreError::OutOfOrder { .. }) {
            self.resync_needed.store(true, Ordering::SeqCst);
        }
        match e {
            StoreError::OutOfOrder { .. } => Error::Unavailable(format!(
                "{e}: another process appended to the commit log; reloading its state"
            )),
            e => e.into(),
        }
    }

    /// Appends one commit to the store.
    async fn append(&self, commit: &Commit) -> Result<()> {
        self.append_all(std::slice::from_ref(commit)).await
    }

    /// Appends commits in one transaction, unless the database's head is uncertain.
    async fn append_all(&self, commits: &[Commit]) -> Result<()> {
        self.writable()?;
        // Files of the instance's own (locked) directory may be imported without the
        // lease: the log is its own; only the lease holder's log is published.
        if let Some(nats) = &self.nats
            && commits.iter().any(|c| c.source != Source::File)
        {
            match nats.lease() {
                crate::sync::status::Lease::Held => {}
                crate::sync::status::Lease::Unknown => {
                    return Err(Error::NotLeaseHolder(
                        "this writer has not acquired the writer lease yet (NATS not reached); retry shortly".into(),
                    ));
                }
                crate::sync::status::Lease::HeldBy(holder) => {
                    return Err(Error::NotLeaseHolder(format!(
                        "another writer ({holder}) holds the writer lease; send writes to it"
                    )));
                }
            }
        }
        if self.resync_needed.load(Ordering::SeqCst) {
            return Err(Error::Unavailable(
                "re-reading the commit log after a failed write; retry shortly".into(),
            ));
        }
        let files_done = self.files_done.load(Ordering::SeqCst);
        self.store()?
            .append_all(commits, files_done)
            .await
            .map_err(|e| self.commit_failed(e))
    }

    /// Reads the state back from the database after a failed append and serves it if it
    /// moved: the database is the truth, whatever this instance believed.
    async fn resync(&self) -> Result<(), crate::store::StoreError> {
        let mut head = self.head.lock().await;
        let Some(store) = self.store.get() else {
            return Ok(());
        };
        let state = store.load().await?;
        if state.seq != *head {
            tracing::warn!(
                served = *head,
                stored = state.seq,
                "the commit log holds commits this instance did not apply; serving its state"
            );
            let (catalog, contents) = log_catalog(&self.config(), &state);
            deliver(store, &state, &contents.0).await?;
            self.projection.store(catalog);
            warm_up(self.catalog_full(), None, None);
            if self.files.is_some() {
                self.files_lagging.store(true, Ordering::SeqCst);
            }
            *head = state.seq;
            // Commits this instance did not make are read from the store by the outbox.
            self.recent
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            self.appended.send_replace(state.seq);
        }
        self.resync_needed.store(false, Ordering::SeqCst);
        Ok(())
    }

    fn new_commit(&self, seq: u64, source: Source, change: crate::store::Change) -> Commit {
        Commit {
            seq,
            id: uuid::Uuid::new_v4().to_string(),
            created_at_ms: now_ms(),
            source,
            change,
        }
    }

    /// Appends several commits in one transaction (the caller holds the head lock) and
    /// swaps in `next`, the catalog they add up to. No file is touched: this is the
    /// import path, where the files are the source.
    async fn commit_all(&self, head: &mut u64, commits: &[Commit], next: Catalog) -> Result<()> {
        let started = Instant::now();
        self.append_all(commits).await?;
        metrics::histogram!("ordo_commit_duration_seconds").record(started.elapsed());
        for commit in commits {
            metrics::counter!("ordo_commits_total", "source" => commit.source.as_str())
                .increment(1);
            audit(commit);
        }
        if let (Some(first), Some(last)) = (commits.first(), commits.last()) {
            *head = last.seq;
            // The files are where these commits came from: nothing to write.
            let _ = self.files_done.compare_exchange(
                first.seq - 1,
                last.seq,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
        self.appended(commits);
        self.projection.store(next);
        Ok(())
    }

    /// Appends one commit (the caller holds the head lock) and makes it visible: its
    /// file is written and the catalog swapped. The file comes after the commit, so the
    /// commit is published without waiting for it; a crash in between leaves the file
    /// behind the log, and the next start writes it again (see `files_done`).
    async fn commit(
        &self,
        head: &mut u64,
        source: Source,
        change: crate::store::Change,
        file: Option<FileChange>,
        apply: impl FnOnce(&Catalog, u64) -> Catalog,
    ) -> Result<u64> {
        let commit = self.new_commit(*head + 1, source, change);
        let started = Instant::now();
        self.append(&commit).await?;
        metrics::histogram!("ordo_commit_duration_seconds").record(started.elapsed());
        audit(&commit);
        metrics::counter!("ordo_commits_total", "source" => source.as_str()).increment(1);
        *head = commit.seq;
        self.appended(std::slice::from_ref(&commit));
        let written = match file {
            Some(file) => self.write_file(file).await,
            None => Ok(()),
        };
        match written {
            Ok(()) => {
                let _ = self.files_done.compare_exchange(
                    commit.seq - 1,
                    commit.seq,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
            }
            Err(e) => {
                // The commit is durable and is served; the next start writes the file.
                self.files_lagging.store(true, Ordering::SeqCst);
                tracing::error!(seq = commit.seq, error = %e, "rules file not updated after commit");
            }
        }
        let next = apply(&self.projection.load(), commit.seq);
        self.projection.store(next);
        Ok(commit.seq)
    }
}

/// One audit event per commit: what changed, from where, at which seq. Inside a request
/// the event carries the request's id (from its span).
fn audit(commit: &Commit) {
    use crate::store::Change;
    let (kind, tenant, name, version) = match &commit.change {
        Change::PutRuleSet(r) => (
            "ruleset_put",
            r.tenant.as_str(),
            r.name.as_str(),
            r.version.as_str(),
        ),
        Change::DeleteRuleSet { tenant, name } => {
            ("ruleset_delete", tenant.as_str(), name.as_str(), "")
        }
        Change::PutTenant(t) => ("tenant_put", t.id.as_str(), "", ""),
        Change::DeleteTenant { id } => ("tenant_delete", id.as_str(), "", ""),
    };
    tracing::info!(
        target: "ordo::audit",
        seq = commit.seq,
        commit_id = %commit.id,
        source = commit.source.as_str(),
        kind,
        tenant,
        name,
        version,
        "commit"
    );
}

/// Runs a write on its own task so that it completes even if the caller goes away
/// (a dropped request future must never leave a commit half-applied).
async fn spawn_write<T: Send + 'static>(
    runtime: &tokio::runtime::Handle,
    fut: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    runtime
        .spawn(tracing::Instrument::in_current_span(fut))
        .await
        .map_err(|e| Error::Internal(format!("write task failed: {e}")))?
}

/// Runs blocking file I/O off the async workers.
async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("file task failed: {e}")))?
}

/// Commits kept in memory for the outbox.
const RECENT: usize = 1024;

static PROCESS_START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Marks the process start; call first thing in `main`.
pub fn mark_process_start() {
    let _ = PROCESS_START.get_or_init(Instant::now);
}

fn process_uptime() -> std::time::Duration {
    PROCESS_START.get_or_init(Instant::now).elapsed()
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Builds a catalog: the configured default tenant, the stored `tenants`, and
/// `entries`. Nothing is compiled here: entries compile on first use or in the
/// [`warm_up`] that follows.
fn build_catalog(
    config: &Config,
    seq: u64,
    tenants: &[crate::tenant::TenantConfig],
    entries: impl IntoIterator<Item = Entry>,
) -> Catalog {
    let mut catalog = Catalog {
        seq,
        ..Catalog::default()
    };
    let default = config.default_tenant_config();
    catalog.tenants.insert(
        default.id.clone(),
        Arc::new(TenantView::new(default, None, false)),
    );
    for tenant in tenants {
        catalog.tenants.insert(
            tenant.id.clone(),
            Arc::new(TenantView::new(tenant.clone(), None, true)),
        );
    }
    let mut edit = catalog.edit();
    for entry in entries {
        if edit.tenant(&entry.stored.tenant).is_none() {
            tracing::error!(tenant = %entry.stored.tenant, "rulesets stored for a tenant that does not exist");
            continue;
        }
        edit.put(Arc::new(entry));
    }
    edit.finish(seq)
}

/// The catalog of a state read from the log, whose entries compile from contents that
/// arrive through the returned delivery.
fn log_catalog(config: &Config, state: &crate::store::State) -> (Catalog, Delivery) {
    let contents = LogContents::new();
    let entries = state
        .rulesets
        .iter()
        .map(|info| Entry::from_log(info.clone(), contents.clone()));
    let catalog = build_catalog(config, state.seq, &state.tenants, entries);
    (catalog, Delivery(contents))
}

/// Reads the contents of `state`'s rulesets from `store` and hands them over.
async fn deliver(
    store: &Store,
    state: &crate::store::State,
    contents: &LogContents,
) -> Result<(), crate::store::StoreError> {
    let seqs: Vec<u64> = state.rulesets.iter().map(|r| r.seq).collect();
    contents.arrive(store.contents(&seqs).await?);
    contents.finish(Ok(()));
    Ok(())
}

/// The contents the warm-up reads from the embedded database.
struct ReadContents {
    path: std::path::PathBuf,
    seqs: Vec<u64>,
    delivery: Delivery,
}

/// Contents read and compiled at a time: what the warm-up holds in memory at once is
/// this many rulesets' text, not all of them.
const WARM_UP_CHUNK: usize = 64;

/// Compiles every entry not compiled yet, on a thread of its own, so that the first
/// executions after a start find their rulesets compiled. With `read`, their contents
/// are read first, a chunk at a time, each chunk compiled before the next is read (on a
/// connection and a runtime of the thread's own: entries waiting for these contents may
/// hold every worker of the serving runtime). `done` is told when it is over.
fn warm_up(
    catalog: Arc<Catalog>,
    read: Option<ReadContents>,
    done: Option<tokio::sync::oneshot::Sender<()>>,
) {
    let compile_all = move || {
        let started = Instant::now();
        let entries: std::collections::HashMap<u64, &Arc<Entry>> = catalog
            .tenants
            .values()
            .flat_map(|t| t.rulesets.values())
            .map(|e| (e.stored.seq, e))
            .collect();
        if let Some(read) = read {
            let contents = read.delivery.0.clone();
            let outcome = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| crate::store::StoreError::Unreachable(e.to_string()))
                .and_then(|rt| {
                    rt.block_on(crate::store::SqliteStore::contents_apart(
                        &read.path,
                        &read.seqs,
                        WARM_UP_CHUNK,
                        |chunk| {
                            let seqs: Vec<u64> = chunk.iter().map(|(seq, _)| *seq).collect();
                            contents.arrive(chunk);
                            for seq in seqs {
                                if let Some(entry) = entries.get(&seq) {
                                    let _ = entry.compiled();
                                }
                            }
                        },
                    ))
                });
            if let Err(e) = &outcome {
                tracing::error!(error = %e, "the rulesets' contents could not be read from the commit log");
            }
            contents.finish(outcome.map_err(|e| e.to_string()));
        }
        for entry in entries.values() {
            let _ = entry.compiled();
        }
        crate::memory::warm_up_done();
        if let Some(done) = done {
            let _ = done.send(());
        }
        tracing::debug!(
            rulesets = entries.len(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            "rulesets compiled"
        );
    };
    let spawned = std::thread::Builder::new()
        .name("warm-up".into())
        .spawn(compile_all);
    if let Err(e) = spawned {
        // The closure, and with it any unread contents' delivery, is dropped: waiting
        // entries are told, and the rest compile on first use.
        tracing::warn!(error = %e, "cannot start the warm-up thread; rulesets compile on first use");
    }
}
