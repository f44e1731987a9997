//! The embedded commit log: one SQLite file in WAL mode with `synchronous = FULL`,
//! so a commit is on disk when `append` returns.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{
    Commit, FileCache, FileCacheRow, State, StoreError, StoredRuleSet, file_cache_of, migrate,
    seq_of, tenant_of,
};

shared_queries!(SqliteStore, sqlx::Sqlite);

pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
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
        migrate::migrator(migrate::SQLITE).await?.run(&pool).await?;
        Ok(SqliteStore {
            pool,
            path: path.to_path_buf(),
        })
    }

    /// The migration state of the database file at `path`, without changing it.
    pub async fn migration_status(path: &Path) -> Result<migrate::MigrationStatus, StoreError> {
        use sqlx::Connection;
        if !path.exists() {
            return migrate::status::<sqlx::SqliteConnection>(migrate::SQLITE, None).await;
        }
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .read_only(true);
        let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
        let has_table: bool = sqlx::query_scalar(
            "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_one(&mut conn)
        .await?;
        let status = migrate::status(migrate::SQLITE, has_table.then_some(&mut conn)).await;
        let _ = conn.close().await;
        status
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
        // are validated names, seq a number, hash hex, the version a JSON string literal
        // (json_quote escapes control characters), content compact JSON.
        let all: Option<String> = sqlx::query_scalar(
            "SELECT group_concat(tenant_id || char(9) || name || char(9) || seq || char(9)
                                 || hash || char(9) || json_quote(version) || char(9) || content,
                                 char(10))
             FROM (SELECT * FROM rulesets ORDER BY tenant_id, name)",
        )
        .fetch_one(&self.pool)
        .await?;
        for line in all.as_deref().unwrap_or_default().lines() {
            let mut fields = line.splitn(6, '\t');
            let mut next = || {
                fields
                    .next()
                    .ok_or_else(|| StoreError::Corrupt("rulesets: malformed row".into()))
            };
            let (tenant, name, seq, hash) = (next()?, next()?, next()?, next()?);
            let (version, content) = (next()?, next()?);
            state.rulesets.push(StoredRuleSet {
                tenant: tenant.to_string(),
                name: name.to_string(),
                version: serde_json::from_str(version)
                    .map_err(|_| StoreError::Corrupt(format!("rulesets: version {version}")))?,
                content: content.into(),
                hash: hash.to_string(),
                seq: seq
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("rulesets: seq {seq}")))?,
            });
        }
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, content FROM tenants ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        for (id, content) in rows {
            state.tenants.push(tenant_of(&id, &content)?);
        }
        Ok(state)
    }

    pub async fn append_all(&self, commits: &[Commit], files_done: u64) -> Result<(), StoreError> {
        append_in(self.pool.begin().await?, commits, files_done).await
    }
}

impl SqliteStore {
    pub async fn load_file_cache(&self) -> Result<FileCache, StoreError> {
        let all: Option<String> = sqlx::query_scalar(
            "SELECT group_concat(tenant_id || char(9) || name || char(9) || raw_hash || char(9)
                                 || content_hash || char(9) || size || char(9) || mtime_ns
                                 || char(9) || checked_at_ns, char(10))
             FROM file_cache",
        )
        .fetch_one(&self.pool)
        .await?;
        let malformed = || StoreError::Corrupt("file_cache: malformed row".into());
        let mut rows: Vec<FileCacheRow> = Vec::new();
        for line in all.as_deref().unwrap_or_default().lines() {
            let f: Vec<&str> = line.split('\t').collect();
            let [tenant, name, raw, content, size, mtime, checked] = f[..] else {
                return Err(malformed());
            };
            let int = |v: &str| v.parse::<i64>().map_err(|_| malformed());
            rows.push((
                tenant.to_string(),
                name.to_string(),
                raw.to_string(),
                content.to_string(),
                int(size)?,
                int(mtime)?,
                int(checked)?,
            ));
        }
        Ok(file_cache_of(rows))
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
