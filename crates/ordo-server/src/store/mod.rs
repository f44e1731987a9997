//! Durable intent: the commit log and the current state derived from it.
//!
//! Every change is one immutable [`Commit`] with a gapless `seq`, appended together with
//! its effect on the current state in one transaction. The log is the truth; the
//! projection, the rules-dir files and (later) published events are derived from it.

#[macro_use]
mod queries;
#[macro_use]
pub mod traces;
mod memory;
mod migrate;
mod postgres;
mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::tenant::TenantConfig;

pub use memory::MemoryStore;
pub use migrate::{MigrationInfo, MigrationState, MigrationStatus};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Where the commit log lives, from `database_url` and `rules_dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// Nothing durable: no database URL and no rules directory.
    Memory,
    Sqlite(PathBuf),
    /// A `postgres://` URL (with its password, if any: never log it as is).
    Postgres(String),
}

impl Location {
    /// Reads a `database_url`: `sqlite:PATH` (also `sqlite://PATH`) or
    /// `postgres://...`/`postgresql://...`. Without one, the rules directory's
    /// `.ordo/ordo.db`, or memory.
    pub fn new(database_url: Option<&str>, rules_dir: Option<&Path>) -> Result<Location, String> {
        let Some(url) = database_url else {
            return Ok(match rules_dir {
                Some(dir) => Location::Sqlite(crate::rules_dir::database_path(dir)),
                None => Location::Memory,
            });
        };
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err("sqlite: needs a file path, as in sqlite:/var/lib/ordo/ordo.db".into());
            }
            if path.contains('?') || path.starts_with(':') {
                return Err(
                    "sqlite: takes a file path only (no options, no :memory:; leave database_url unset for an in-memory log)"
                        .into(),
                );
            }
            return Ok(Location::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return postgres::check_url(url).map(|()| Location::Postgres(url.to_string()));
        }
        Err("must start with sqlite: or postgres://".into())
    }

    /// The backend's name, as `/health` shows it.
    pub fn backend(&self) -> &'static str {
        match self {
            Location::Memory => "memory",
            Location::Sqlite(_) => "sqlite",
            Location::Postgres(_) => "postgres",
        }
    }

    /// The location as it may be shown: passwords are masked.
    pub fn shown(&self) -> Option<String> {
        match self {
            Location::Memory => None,
            Location::Sqlite(path) => Some(format!("sqlite:{}", path.display())),
            Location::Postgres(url) => Some(redact_url(url)),
        }
    }
}

/// A URL with its password replaced by `***` (unparseable URLs are hidden whole).
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            let secret_query = url
                .query_pairs()
                .any(|(k, _)| k.eq_ignore_ascii_case("password"));
            if secret_query {
                let pairs: Vec<(String, String)> = url
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if k.eq_ignore_ascii_case("password") {
                            "***".to_string()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                url.query_pairs_mut().clear().extend_pairs(pairs);
            }
            url.to_string()
        }
        Err(_) => "(hidden)".to_string(),
    }
}

/// Where a change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Api,
    File,
    Rollback,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::File => "file",
            Source::Rollback => "rollback",
        }
    }

    fn parse(s: &str) -> Source {
        match s {
            "file" => Source::File,
            "rollback" => Source::Rollback,
            _ => Source::Api,
        }
    }
}

/// A ruleset as stored: canonical JSON and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRuleSet {
    pub tenant: String,
    pub name: String,
    pub version: String,
    /// Canonical JSON of the ruleset model (what GET returns).
    pub content: Arc<str>,
    /// Hex SHA-256 of `content`: equal content, equal hash.
    pub hash: String,
    /// The commit that made this the current content.
    pub seq: u64,
}

/// What one commit changes.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    PutRuleSet(StoredRuleSet),
    DeleteRuleSet { tenant: String, name: String },
    PutTenant(TenantConfig),
    DeleteTenant { id: String },
}

impl Change {
    fn kind(&self) -> &'static str {
        match self {
            Change::PutRuleSet(_) => "ruleset_put",
            Change::DeleteRuleSet { .. } => "ruleset_delete",
            Change::PutTenant(_) => "tenant_put",
            Change::DeleteTenant { .. } => "tenant_delete",
        }
    }
}

impl StoredRuleSet {
    /// Everything but the content.
    pub fn info(&self) -> RuleSetInfo {
        RuleSetInfo {
            tenant: self.tenant.clone(),
            name: self.name.clone(),
            version: self.version.clone(),
            hash: self.hash.clone(),
            seq: self.seq,
        }
    }
}

/// What the catalog keeps of a stored ruleset: everything but its content, which the
/// log holds (commit `seq` put it) and which is read from there when needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSetInfo {
    pub tenant: String,
    pub name: String,
    pub version: String,
    /// Hex SHA-256 of the content.
    pub hash: String,
    /// The commit that made this the current content.
    pub seq: u64,
}

/// One immutable entry of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    /// Gapless, starting at 1, never reused.
    pub seq: u64,
    /// Unique id (UUID), later the message id of the published event.
    pub id: String,
    pub created_at_ms: i64,
    pub source: Source,
    pub change: Change,
}

/// The current state: what the log adds up to.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// Seq of the last commit (0 for an empty log).
    pub seq: u64,
    /// Current rulesets, without their contents (see [`Store::contents`]).
    pub rulesets: Vec<RuleSetInfo>,
    pub tenants: Vec<TenantConfig>,
}

/// One stored version of a ruleset.
#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    pub seq: u64,
    pub version: String,
    pub created_at_ms: i64,
    pub source: Source,
    pub hash: String,
}

/// What was last seen of a ruleset's file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSeen {
    /// SHA-256 of the file's bytes.
    pub raw_hash: String,
    /// Canonical content hash those bytes parsed to.
    pub content_hash: String,
    pub size: u64,
    pub mtime_ns: i64,
    /// When the bytes were hashed (ns since the epoch).
    pub checked_at_ns: i64,
}

/// `(tenant, name)` → what was last seen of its file.
pub type FileCache = std::collections::BTreeMap<(String, String), FileSeen>;

/// What the store is, for `/health`.
#[derive(Debug, Clone, Serialize)]
pub struct StorageInfo {
    pub backend: &'static str,
    pub durable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The database URL, password masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached (or stopped answering): retrying may help.
    #[error("database unreachable: {0}")]
    Unreachable(String),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("no database to migrate: set database_url (or rules_dir for the embedded SQLite)")]
    NoDatabase,
    #[error("commit log is corrupt: {0}")]
    Corrupt(String),
    #[error("commit {got} does not follow the last commit {last}")]
    OutOfOrder { last: u64, got: u64 },
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> StoreError {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unreachable(e.to_string()),
            // Connection exceptions, a server shutting down or starting, no free slot.
            sqlx::Error::Database(ref db)
                if db.code().is_some_and(|c| {
                    c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03" | "53300")
                }) =>
            {
                StoreError::Unreachable(e.to_string())
            }
            e => StoreError::Database(e),
        }
    }
}

impl StoreError {
    /// Whether the database may work again later (connection trouble), as opposed to
    /// a problem with the data or the schema.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StoreError::Unreachable(_))
    }
}

/// The commit log backend.
pub enum Store {
    Memory(MemoryStore),
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store {
    pub fn memory() -> Store {
        Store::Memory(MemoryStore::default())
    }

    /// Opens (creating and migrating) the SQLite database at `path`.
    pub async fn sqlite(path: &Path) -> Result<Store, StoreError> {
        Ok(Store::Sqlite(SqliteStore::open(path).await?))
    }

    pub fn info(&self) -> StorageInfo {
        match self {
            Store::Memory(_) => StorageInfo {
                backend: "memory",
                durable: false,
                path: None,
                url: None,
            },
            Store::Sqlite(s) => StorageInfo {
                backend: "sqlite",
                durable: true,
                path: Some(s.path().to_path_buf()),
                url: None,
            },
            Store::Postgres(s) => StorageInfo {
                backend: "postgres",
                durable: true,
                path: None,
                url: Some(s.shown_url().to_string()),
            },
        }
    }

    /// Checks that the database answers (always true for the embedded ones).
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Postgres(s) => s.ping().await,
            _ => Ok(()),
        }
    }

    /// Reads the current state: every current ruleset but its content.
    pub async fn load(&self) -> Result<State, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.load()),
            Store::Sqlite(s) => s.load().await,
            Store::Postgres(s) => s.load().await,
        }
    }

    /// Appends several commits, in order, in one transaction: all or none. Each
    /// records `files_done`, the last seq whose rules file was written before it.
    pub async fn append_all(&self, commits: &[Commit], files_done: u64) -> Result<(), StoreError> {
        match self {
            Store::Memory(s) => s.append_all(commits, files_done),
            Store::Sqlite(s) => s.append_all(commits, files_done).await,
            Store::Postgres(s) => s.append_all(commits, files_done).await,
        }
    }

    /// Records that the file of the last commit, `seq`, is written (at a clean stop, so
    /// the next start has nothing in doubt).
    pub async fn mark_files_done(&self, seq: u64) -> Result<(), StoreError> {
        match self {
            Store::Memory(_) => Ok(()),
            Store::Sqlite(s) => s.mark_files_done(seq).await,
            Store::Postgres(s) => s.mark_files_done(seq).await,
        }
    }

    /// The `files_done` of the last commit: the files of later commits are in doubt.
    /// `None` for an empty log or commits from before it was recorded.
    pub async fn files_done(&self) -> Result<Option<u64>, StoreError> {
        match self {
            Store::Memory(_) => Ok(None),
            Store::Sqlite(s) => s.files_done().await,
            Store::Postgres(s) => s.files_done().await,
        }
    }

    /// Stored versions of a ruleset, newest first.
    pub async fn versions(&self, tenant: &str, name: &str) -> Result<Vec<VersionInfo>, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.versions(tenant, name)),
            Store::Sqlite(s) => s.versions(tenant, name).await,
            Store::Postgres(s) => s.versions(tenant, name).await,
        }
    }

    /// The ruleset content written by commit `seq`, if that commit put `tenant/name`.
    pub async fn version(
        &self,
        tenant: &str,
        name: &str,
        seq: u64,
    ) -> Result<Option<StoredRuleSet>, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.version(tenant, name, seq)),
            Store::Sqlite(s) => s.version(tenant, name, seq).await,
            Store::Postgres(s) => s.version(tenant, name, seq).await,
        }
    }

    /// The contents the ruleset commits `seqs` put, as `(seq, content)` (a seq that
    /// put no ruleset is left out).
    pub async fn contents(&self, seqs: &[u64]) -> Result<Vec<(u64, Arc<str>)>, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.contents(seqs)),
            Store::Sqlite(s) => s.contents(seqs).await,
            Store::Postgres(s) => s.contents(seqs).await,
        }
    }

    /// Commits after `after`, in `seq` order, at most `limit` of them; only the tenant
    /// commits when `tenants_only`. What the outbox publishes from.
    pub async fn commits_after(
        &self,
        after: u64,
        limit: u32,
        tenants_only: bool,
    ) -> Result<Vec<Commit>, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.commits_after(after, limit, tenants_only)),
            Store::Sqlite(s) => s.commits_after(after, limit, tenants_only).await,
            Store::Postgres(s) => s.commits_after(after, limit, tenants_only).await,
        }
    }

    /// The rules-directory file cache (empty for the in-memory store).
    pub async fn load_file_cache(&self) -> Result<FileCache, StoreError> {
        match self {
            Store::Memory(_) => Ok(FileCache::new()),
            Store::Sqlite(s) => s.load_file_cache().await,
            Store::Postgres(s) => s.load_file_cache().await,
        }
    }

    pub async fn save_file_cache(&self, cache: &FileCache) -> Result<(), StoreError> {
        match self {
            Store::Memory(_) => Ok(()),
            Store::Sqlite(s) => s.save_file_cache(cache).await,
            Store::Postgres(s) => s.save_file_cache(cache).await,
        }
    }

    /// Applies trace writes in one transaction.
    pub async fn apply_trace_ops(
        &self,
        ops: &[traces::TraceOp],
    ) -> Result<Vec<traces::OpResult>, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.traces.apply(ops)),
            Store::Sqlite(s) => s.apply_trace_ops(ops).await,
            Store::Postgres(s) => s.apply_trace_ops(ops).await,
        }
    }

    pub async fn trace(&self, id: &str) -> Result<Option<traces::Trace>, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.traces.get(id)),
            Store::Sqlite(s) => s.trace(id).await,
            Store::Postgres(s) => s.trace(id).await,
        }
    }

    /// Traces matching `filter`, newest first.
    pub async fn traces(
        &self,
        filter: &traces::TraceFilter,
    ) -> Result<Vec<traces::Trace>, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.traces.list(filter)),
            Store::Sqlite(s) => s.traces(filter).await,
            Store::Postgres(s) => s.traces(filter).await,
        }
    }

    /// Puts a job back to pending: any job, or with `due_by` only a retry due by then.
    pub async fn requeue_trace(&self, id: &str, due_by: Option<i64>) -> Result<bool, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.traces.requeue(id, due_by)),
            Store::Sqlite(s) => s.requeue_trace(id, due_by).await,
            Store::Postgres(s) => s.requeue_trace(id, due_by).await,
        }
    }

    pub async fn purge_dlq(
        &self,
        id: Option<&str>,
        state: Option<traces::DlqState>,
    ) -> Result<u64, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.traces.purge_dlq(id, state)),
            Store::Sqlite(s) => s.purge_dlq(id, state).await,
            Store::Postgres(s) => s.purge_dlq(id, state).await,
        }
    }

    pub async fn delete_finished(&self, before_ms: i64) -> Result<u64, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.traces.delete_finished(before_ms)),
            Store::Sqlite(s) => s.delete_finished(before_ms).await,
            Store::Postgres(s) => s.delete_finished(before_ms).await,
        }
    }

    pub async fn trace_counts(&self) -> Result<traces::TraceCounts, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.traces.counts()),
            Store::Sqlite(s) => s.trace_counts().await,
            Store::Postgres(s) => s.trace_counts().await,
        }
    }

    /// The start is over: an embedded log goes back to copying its write-ahead log
    /// into its database file (see [`SqliteStore::resume_checkpoints`]).
    pub async fn after_start(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.resume_checkpoints().await,
            Store::Memory(_) | Store::Postgres(_) => Ok(()),
        }
    }

    /// Releases the database (pending writes are already durable).
    pub async fn close(&self) {
        match self {
            Store::Memory(_) => {}
            Store::Sqlite(s) => s.close().await,
            Store::Postgres(s) => s.close().await,
        }
    }
}

/// `ordo-server migrate`: applies pending migrations when `apply`, then reads where
/// the schema stands.
pub async fn migrate(location: &Location, apply: bool) -> Result<MigrationStatus, StoreError> {
    match location {
        Location::Memory => Err(StoreError::NoDatabase),
        Location::Sqlite(path) => {
            if apply {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        StoreError::Unreachable(format!("{}: {e}", parent.display()))
                    })?;
                }
                SqliteStore::open(path).await?.close().await;
            }
            SqliteStore::migration_status(path).await
        }
        Location::Postgres(url) => {
            let store = PgStore::connect(url).await?;
            if apply {
                store.migrate_up().await?;
            }
            let status = store.migration_status().await;
            store.close().await;
            status
        }
    }
}

/// A commit as the columns of its row in `commits`.
pub(crate) struct CommitRow<'a> {
    pub seq: i64,
    pub kind: &'static str,
    pub tenant: &'a str,
    pub name: &'a str,
    pub version: Option<&'a str>,
    pub content: Option<String>,
    pub hash: Option<&'a str>,
}

impl<'a> CommitRow<'a> {
    pub fn of(c: &'a Commit) -> Result<CommitRow<'a>, StoreError> {
        let seq = seq_param(c.seq)?;
        let kind = c.change.kind();
        let row = |tenant, name, version, content, hash| CommitRow {
            seq,
            kind,
            tenant,
            name,
            version,
            content,
            hash,
        };
        Ok(match &c.change {
            Change::PutRuleSet(r) => row(
                &r.tenant,
                &r.name,
                Some(r.version.as_str()),
                Some(r.content.to_string()),
                Some(r.hash.as_str()),
            ),
            Change::DeleteRuleSet { tenant, name } => row(tenant, name, None, None, None),
            Change::PutTenant(t) => row(
                &t.id,
                "",
                None,
                Some(serde_json::to_string(t).map_err(|e| StoreError::Corrupt(e.to_string()))?),
                None,
            ),
            Change::DeleteTenant { id } => row(id, "", None, None, None),
        })
    }
}

/// A `versions` row: seq, version, created_at_ms, source, hash.
pub(crate) type VersionRow = (i64, Option<String>, i64, String, Option<String>);

pub(crate) fn version_info(row: VersionRow) -> Result<VersionInfo, StoreError> {
    let (seq, version, created_at_ms, source, hash) = row;
    Ok(VersionInfo {
        seq: seq_of(seq)?,
        version: version.unwrap_or_default(),
        created_at_ms,
        source: Source::parse(&source),
        hash: hash.unwrap_or_default(),
    })
}

/// A `commits` row: seq, id, created_at_ms, source, kind, tenant, name, version,
/// content, hash.
pub(crate) type LogRow = (
    i64,
    String,
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The commit a `commits` row holds.
pub(crate) fn commit_of(row: LogRow) -> Result<Commit, StoreError> {
    let (seq, id, created_at_ms, source, kind, tenant, name, version, content, hash) = row;
    let seq = seq_of(seq)?;
    let change = match kind.as_str() {
        "ruleset_put" => Change::PutRuleSet(stored_version(
            &tenant,
            &name,
            seq,
            (version, content, hash),
        )?),
        "ruleset_delete" => Change::DeleteRuleSet { tenant, name },
        "tenant_put" => {
            let content = content
                .ok_or_else(|| StoreError::Corrupt(format!("commit {seq} has no content")))?;
            Change::PutTenant(tenant_of(&tenant, &content)?)
        }
        "tenant_delete" => Change::DeleteTenant { id: tenant },
        other => {
            return Err(StoreError::Corrupt(format!(
                "commit {seq} has an unknown kind '{other}'"
            )));
        }
    };
    Ok(Commit {
        seq,
        id,
        created_at_ms,
        source: Source::parse(&source),
        change,
    })
}

/// A `version` row: version, content, hash.
pub(crate) type ContentRow = (Option<String>, Option<String>, Option<String>);

pub(crate) fn stored_version(
    tenant: &str,
    name: &str,
    seq: u64,
    row: ContentRow,
) -> Result<StoredRuleSet, StoreError> {
    let (version, content, hash) = row;
    let content =
        content.ok_or_else(|| StoreError::Corrupt(format!("commit {seq} has no content")))?;
    Ok(StoredRuleSet {
        tenant: tenant.to_string(),
        name: name.to_string(),
        version: version.unwrap_or_default(),
        content: content.into(),
        hash: hash.unwrap_or_default(),
        seq,
    })
}

/// A `file_cache` row: tenant, name, raw hash, content hash, size, mtime, checked at.
pub(crate) type FileCacheRow = (String, String, String, String, i64, i64, i64);

pub(crate) fn file_cache_of(rows: Vec<FileCacheRow>) -> FileCache {
    rows.into_iter()
        .map(
            |(tenant, name, raw_hash, content_hash, size, mtime_ns, checked_at_ns)| {
                let seen = FileSeen {
                    raw_hash,
                    content_hash,
                    size: u64::try_from(size).unwrap_or(0),
                    mtime_ns,
                    checked_at_ns,
                };
                ((tenant, name), seen)
            },
        )
        .collect()
}

/// A tenant's stored configuration.
pub(crate) fn tenant_of(id: &str, content: &str) -> Result<TenantConfig, StoreError> {
    serde_json::from_str(content).map_err(|e| StoreError::Corrupt(format!("tenant '{id}': {e}")))
}

pub(crate) fn seq_of(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative seq {v}")))
}

pub(crate) fn seq_param(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("seq {seq} out of range")))
}

/// Hex SHA-256 of canonical content.
pub fn content_hash(content: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(content.as_bytes()))
}
