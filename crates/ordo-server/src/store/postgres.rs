//! The commit log on PostgreSQL: the same tables and behaviour as the embedded SQLite,
//! for deployments whose state lives in a managed database.
//!
//! Appends take a transaction-scoped advisory lock and check the head inside it, so
//! two processes appending to one database can never both write the same `seq`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::{
    Commit, FileCache, FileCacheRow, MigrationStatus, RuleSetInfo, State, StoreError,
    file_cache_of, migrate, redact_url, seq_of, tenant_of,
};

/// Key of the advisory lock that serialises appends ("ordo" in ASCII).
const APPEND_LOCK: i64 = 0x6f72_646f;

/// How long a statement may wait for a connection before the database counts as
/// unreachable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Checks a `postgres://` URL without connecting.
pub(super) fn check_url(url: &str) -> Result<(), String> {
    PgConnectOptions::from_str(url)
        .map(|_| ())
        .map_err(|e| format!("not a usable PostgreSQL URL: {e}"))
}

trace_queries!(PgStore);
shared_queries!(PgStore, sqlx::Postgres, true);

pub struct PgStore {
    pool: PgPool,
    shown_url: String,
}

impl PgStore {
    /// Connects (one connection at once, more on demand). Does not migrate.
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unreachable(e.to_string()))?
            .application_name("ordo-server")
            // Commits are logged by the service, with who and what; per-statement lines
            // would only add noise.
            .disable_statement_logging();
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        Ok(PgStore {
            pool,
            shown_url: redact_url(url),
        })
    }

    /// The URL with its password masked.
    pub fn shown_url(&self) -> &str {
        &self.shown_url
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Where the schema stands against this binary's migrations.
    pub async fn migration_status(&self) -> Result<MigrationStatus, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let has_table: bool =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                .fetch_one(&mut *conn)
                .await?;
        migrate::status(migrate::POSTGRES, has_table.then_some(&mut *conn)).await
    }

    /// Applies pending migrations (under sqlx's advisory lock, so concurrent runs wait).
    pub async fn migrate_up(&self) -> Result<(), StoreError> {
        migrate::migrator(migrate::POSTGRES)
            .await?
            .run(&self.pool)
            .await?;
        Ok(())
    }

    /// Reads the current state from one snapshot.
    pub async fn load(&self) -> Result<State, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM commits")
            .fetch_one(&mut *tx)
            .await?;
        let rows: Vec<(String, String, i64, String, String)> = sqlx::query_as(
            "SELECT tenant_id, name, seq, hash, version FROM rulesets ORDER BY tenant_id, name",
        )
        .fetch_all(&mut *tx)
        .await?;
        let tenants: Vec<(String, String)> =
            sqlx::query_as("SELECT id, content FROM tenants ORDER BY id")
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        let mut state = State {
            seq: seq_of(seq)?,
            ..State::default()
        };
        for (tenant, name, seq, hash, version) in rows {
            state.rulesets.push(RuleSetInfo {
                tenant,
                name,
                version,
                hash,
                seq: seq_of(seq)?,
            });
        }
        for (id, content) in tenants {
            state.tenants.push(tenant_of(&id, &content)?);
        }
        Ok(state)
    }

    pub async fn append_all(&self, commits: &[Commit], files_done: u64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(APPEND_LOCK)
            .execute(&mut *tx)
            .await?;
        append_in(tx, commits, files_done).await
    }

    pub async fn load_file_cache(&self) -> Result<FileCache, StoreError> {
        let rows: Vec<FileCacheRow> = sqlx::query_as(
            "SELECT tenant_id, name, raw_hash, content_hash, size, mtime_ns, checked_at_ns FROM file_cache",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(file_cache_of(rows))
    }

    /// Replaces the cache in one statement (arrays, not one round trip per file).
    pub async fn save_file_cache(&self, cache: &FileCache) -> Result<(), StoreError> {
        let n = cache.len();
        let (mut tenants, mut names, mut raw, mut content) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut sizes, mut mtimes, mut checked) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for ((tenant, name), seen) in cache {
            tenants.push(tenant.as_str());
            names.push(name.as_str());
            raw.push(seen.raw_hash.as_str());
            content.push(seen.content_hash.as_str());
            sizes.push(i64::try_from(seen.size).unwrap_or(i64::MAX));
            mtimes.push(seen.mtime_ns);
            checked.push(seen.checked_at_ns);
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM file_cache")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO file_cache (tenant_id, name, raw_hash, content_hash, size, mtime_ns, checked_at_ns)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[], $7::int8[])",
        )
        .bind(&tenants)
        .bind(&names)
        .bind(&raw)
        .bind(&content)
        .bind(&sizes)
        .bind(&mtimes)
        .bind(&checked)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
