//! Durable intent: the commit log and the current state derived from it.
//!
//! Every change is one immutable [`Commit`] with a gapless `seq`, appended together with
//! its effect on the current state in one transaction. The log is the truth; the
//! projection, the rules-dir files and (later) published events are derived from it.

mod memory;
mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::tenant::TenantConfig;

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

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
    /// Current rulesets; `version` may be empty (it is read from the content when the
    /// ruleset is compiled).
    pub rulesets: Vec<StoredRuleSet>,
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
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("commit log is corrupt: {0}")]
    Corrupt(String),
    #[error("commit {got} does not follow the last commit {last}")]
    OutOfOrder { last: u64, got: u64 },
}

/// The commit log backend.
pub enum Store {
    Memory(MemoryStore),
    Sqlite(SqliteStore),
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
            },
            Store::Sqlite(s) => StorageInfo {
                backend: "sqlite",
                durable: true,
                path: Some(s.path().to_path_buf()),
            },
        }
    }

    /// Reads the current state.
    pub async fn load(&self) -> Result<State, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.load()),
            Store::Sqlite(s) => s.load().await,
        }
    }

    /// Appends one commit and applies it to the current state, atomically and durably.
    pub async fn append(&self, commit: &Commit) -> Result<(), StoreError> {
        match self {
            Store::Memory(s) => s.append(commit),
            Store::Sqlite(s) => s.append_all(std::slice::from_ref(commit)).await,
        }
    }

    /// Appends several commits, in order, in one transaction: all or none.
    pub async fn append_all(&self, commits: &[Commit]) -> Result<(), StoreError> {
        match self {
            Store::Memory(s) => s.append_all(commits),
            Store::Sqlite(s) => s.append_all(commits).await,
        }
    }

    /// Stored versions of a ruleset, newest first.
    pub async fn versions(&self, tenant: &str, name: &str) -> Result<Vec<VersionInfo>, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.versions(tenant, name)),
            Store::Sqlite(s) => s.versions(tenant, name).await,
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
        }
    }

    /// The rules-directory file cache (empty for the in-memory store).
    pub async fn load_file_cache(&self) -> Result<FileCache, StoreError> {
        match self {
            Store::Memory(_) => Ok(FileCache::new()),
            Store::Sqlite(s) => s.load_file_cache().await,
        }
    }

    pub async fn save_file_cache(&self, cache: &FileCache) -> Result<(), StoreError> {
        match self {
            Store::Memory(_) => Ok(()),
            Store::Sqlite(s) => s.save_file_cache(cache).await,
        }
    }

    /// Releases the database (pending writes are already durable).
    pub async fn close(&self) {
        if let Store::Sqlite(s) = self {
            s.close().await;
        }
    }
}

/// Hex SHA-256 of canonical content.
pub fn content_hash(content: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(content.as_bytes()))
}
