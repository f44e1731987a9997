//! The embedded commit log: one SQLite file in WAL mode with `synchronous = FULL`,
//! so a commit is on disk when `append` returns.

use std::borrow::Cow;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Row;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{
    Change, Commit, FileCache, FileSeen, Source, State, StoreError, StoredRuleSet, VersionInfo,
};
use crate::tenant::TenantConfig;

/// The schema, embedded in the binary.
#[derive(Debug)]
struct Migrations;

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "commit log",
        include_str!("../../migrations/sqlite/0001_commit_log.sql"),
    ),
    (
        2,
        "file cache",
        include_str!("../../migrations/sqlite/0002_file_cache.sql"),
    ),
    (
        3,
        "file cache stat",
        include_str!("../../migrations/sqlite/0003_file_cache_stat.sql"),
    ),
];

impl MigrationSource<'static> for Migrations {
    fn resolve(
        self,
    ) -> Pin<
        Box<dyn Future<Output = Result<Vec<Migration>, sqlx::error::BoxDynError>> + Send + 'static>,
    > {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
}

fn seq_of(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative seq {v}")))
}

fn seq_param(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("seq {seq} out of range")))
}

impl SqliteStore {
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        // One connection: writes are serialised by the service anyway, and reads are rare
        // (versions, rollback), so a single connection keeps memory and startup small.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        Migrator::new(Migrations).await?.run(&pool).await?;
        Ok(SqliteStore {
            pool,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn load(&self) -> Result<State, StoreError> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM commits")
            .fetch_one(&self.pool)
            .await?;
        let mut state = State {
            seq: seq_of(seq.unwrap_or(0))?,
            ..State::default()
        };
        // All current rulesets in one value, one per line, fields separated by tabs:
        // handing thousands of rows one by one from the database thread costs several
        // times more than the data. No field can hold a tab or a newline: tenant and name
        // are validated names, seq a number, hash hex, content compact JSON. The version
        // is read from the content when it is compiled.
        let all: Option<String> = sqlx::query_scalar(
            "SELECT group_concat(tenant_id || char(9) || name || char(9) || seq || char(9)
                                 || hash || char(9) || content, char(10))
             FROM (SELECT * FROM rulesets ORDER BY tenant_id, name)",
        )
        .fetch_one(&self.pool)
        .await?;
        for line in all.as_deref().unwrap_or_default().lines() {
            let mut fields = line.splitn(5, '\t');
            let mut next = || {
                fields
                    .next()
                    .ok_or_else(|| StoreError::Corrupt("rulesets: malformed row".into()))
            };
            let (tenant, name, seq, hash, content) = (next()?, next()?, next()?, next()?, next()?);
            state.rulesets.push(StoredRuleSet {
                tenant: tenant.to_string(),
                name: name.to_string(),
                version: String::new(),
                content: content.into(),
                hash: hash.to_string(),
                seq: seq
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("rulesets: seq {seq}")))?,
            });
        }
        let rows = sqlx::query("SELECT id, content FROM tenants ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        for row in rows {
            let id: String = row.try_get("id")?;
            let content: String = row.try_get("content")?;
            let tenant: TenantConfig = serde_json::from_str(&content)
                .map_err(|e| StoreError::Corrupt(format!("tenant '{id}': {e}")))?;
            state.tenants.push(tenant);
        }
        Ok(state)
    }

    pub async fn append_all(&self, commits: &[Commit]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM commits")
            .fetch_one(&mut *tx)
            .await?;
        let mut last = seq_of(last.unwrap_or(0))?;
        for c in commits {
            if c.seq != last + 1 {
                return Err(StoreError::OutOfOrder { last, got: c.seq });
            }
            last = c.seq;
            insert(&mut tx, c).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Writes one commit and its effect on the current state, inside `tx`.
async fn insert(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    c: &Commit,
) -> Result<(), StoreError> {
    let seq = seq_param(c.seq)?;
    let (tenant, name, version, content, hash) = match &c.change {
        Change::PutRuleSet(r) => (
            r.tenant.as_str(),
            r.name.as_str(),
            Some(r.version.as_str()),
            Some(r.content.to_string()),
            Some(r.hash.as_str()),
        ),
        Change::DeleteRuleSet { tenant, name } => {
            (tenant.as_str(), name.as_str(), None, None, None)
        }
        Change::PutTenant(t) => (
            t.id.as_str(),
            "",
            None,
            Some(serde_json::to_string(t).map_err(|e| StoreError::Corrupt(e.to_string()))?),
            None,
        ),
        Change::DeleteTenant { id } => (id.as_str(), "", None, None, None),
    };
    sqlx::query(
            "INSERT INTO commits (seq, id, created_at_ms, source, kind, tenant_id, name, version, content, hash)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(seq)
        .bind(&c.id)
        .bind(c.created_at_ms)
        .bind(c.source.as_str())
        .bind(c.change.kind())
        .bind(tenant)
        .bind(name)
        .bind(version)
        .bind(content.as_deref())
        .bind(hash)
        .execute(&mut **tx)
        .await?;
    match &c.change {
        Change::PutRuleSet(r) => {
            sqlx::query(
                    "INSERT INTO rulesets (tenant_id, name, seq, version, content, hash) VALUES (?, ?, ?, ?, ?, ?)
                     ON CONFLICT (tenant_id, name) DO UPDATE SET
                       seq = excluded.seq, version = excluded.version,
                       content = excluded.content, hash = excluded.hash",
                )
                .bind(&r.tenant)
                .bind(&r.name)
                .bind(seq)
                .bind(&r.version)
                .bind(content.as_deref())
                .bind(&r.hash)
                .execute(&mut **tx)
                .await?;
        }
        Change::DeleteRuleSet { tenant, name } => {
            sqlx::query("DELETE FROM rulesets WHERE tenant_id = ? AND name = ?")
                .bind(tenant)
                .bind(name)
                .execute(&mut **tx)
                .await?;
        }
        Change::PutTenant(t) => {
            sqlx::query(
                "INSERT INTO tenants (id, seq, content) VALUES (?, ?, ?)
                     ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, content = excluded.content",
            )
            .bind(&t.id)
            .bind(seq)
            .bind(content.as_deref())
            .execute(&mut **tx)
            .await?;
        }
        Change::DeleteTenant { id } => {
            sqlx::query("DELETE FROM tenants WHERE id = ?")
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

impl SqliteStore {
    pub async fn versions(&self, tenant: &str, name: &str) -> Result<Vec<VersionInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, version, created_at_ms, source, hash FROM commits
             WHERE tenant_id = ? AND name = ? AND kind = 'ruleset_put' ORDER BY seq DESC",
        )
        .bind(tenant)
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| {
                let source: String = row.try_get("source")?;
                Ok(VersionInfo {
                    seq: seq_of(row.try_get("seq")?)?,
                    version: row
                        .try_get::<Option<String>, _>("version")?
                        .unwrap_or_default(),
                    created_at_ms: row.try_get("created_at_ms")?,
                    source: Source::parse(&source),
                    hash: row
                        .try_get::<Option<String>, _>("hash")?
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    pub async fn version(
        &self,
        tenant: &str,
        name: &str,
        seq: u64,
    ) -> Result<Option<StoredRuleSet>, StoreError> {
        let Ok(seq_value) = i64::try_from(seq) else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT version, content, hash FROM commits
             WHERE seq = ? AND tenant_id = ? AND name = ? AND kind = 'ruleset_put'",
        )
        .bind(seq_value)
        .bind(tenant)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let content: Option<String> = row.try_get("content")?;
        let content =
            content.ok_or_else(|| StoreError::Corrupt(format!("commit {seq} has no content")))?;
        Ok(Some(StoredRuleSet {
            tenant: tenant.to_string(),
            name: name.to_string(),
            version: row
                .try_get::<Option<String>, _>("version")?
                .unwrap_or_default(),
            content: content.into(),
            hash: row
                .try_get::<Option<String>, _>("hash")?
                .unwrap_or_default(),
            seq,
        }))
    }

    pub async fn load_file_cache(&self) -> Result<FileCache, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant_id, name, raw_hash, content_hash, size, mtime_ns, checked_at_ns FROM file_cache",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut cache = FileCache::new();
        for row in rows {
            cache.insert(
                (row.try_get("tenant_id")?, row.try_get("name")?),
                FileSeen {
                    raw_hash: row.try_get("raw_hash")?,
                    content_hash: row.try_get("content_hash")?,
                    size: u64::try_from(row.try_get::<i64, _>("size")?).unwrap_or(0),
                    mtime_ns: row.try_get("mtime_ns")?,
                    checked_at_ns: row.try_get("checked_at_ns")?,
                },
            );
        }
        Ok(cache)
    }

    pub async fn save_file_cache(&self, cache: &FileCache) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM file_cache")
            .execute(&mut *tx)
            .await?;
        for ((tenant, name), seen) in cache {
            sqlx::query(
                "INSERT INTO file_cache (tenant_id, name, raw_hash, content_hash, size, mtime_ns, checked_at_ns)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(tenant)
            .bind(name)
            .bind(&seen.raw_hash)
            .bind(&seen.content_hash)
            .bind(i64::try_from(seen.size).unwrap_or(i64::MAX))
            .bind(seen.mtime_ns)
            .bind(seen.checked_at_ns)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
