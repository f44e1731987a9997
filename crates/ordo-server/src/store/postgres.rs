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
    Change, Commit, CommitRow, ContentRow, FileCache, FileCacheRow, MigrationStatus, State,
    StoreError, StoredRuleSet, VersionInfo, VersionRow, file_cache_of, migrate, redact_url, seq_of,
    stored_version, tenant_of, version_info,
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
        let rows: Vec<(String, String, i64, String, String, String)> = sqlx::query_as(
            "SELECT tenant_id, name, seq, hash, version, content FROM rulesets ORDER BY tenant_id, name",
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
        for (tenant, name, seq, hash, version, content) in rows {
            state.rulesets.push(StoredRuleSet {
                tenant,
                name,
                version,
                content: content.into(),
                hash,
                seq: seq_of(seq)?,
            });
        }
        for (id, content) in tenants {
            state.tenants.push(tenant_of(&id, &content)?);
        }
        Ok(state)
    }

    pub async fn append_all(&self, commits: &[Commit]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(APPEND_LOCK)
            .execute(&mut *tx)
            .await?;
        let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM commits")
            .fetch_one(&mut *tx)
            .await?;
        let mut last = seq_of(last)?;
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

    pub async fn versions(&self, tenant: &str, name: &str) -> Result<Vec<VersionInfo>, StoreError> {
        let rows: Vec<VersionRow> = sqlx::query_as(
            "SELECT seq, version, created_at_ms, source, hash FROM commits
             WHERE tenant_id = $1 AND name = $2 AND kind = 'ruleset_put' ORDER BY seq DESC",
        )
        .bind(tenant)
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(version_info).collect()
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
        let row: Option<ContentRow> = sqlx::query_as(
            "SELECT version, content, hash FROM commits
             WHERE seq = $1 AND tenant_id = $2 AND name = $3 AND kind = 'ruleset_put'",
        )
        .bind(seq_value)
        .bind(tenant)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| stored_version(tenant, name, seq, row))
            .transpose()
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

/// Writes one commit and its effect on the current state, inside `tx`.
async fn insert(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    c: &Commit,
) -> Result<(), StoreError> {
    let row = CommitRow::of(c)?;
    sqlx::query(
        "INSERT INTO commits (seq, id, created_at_ms, source, kind, tenant_id, name, version, content, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(row.seq)
    .bind(&c.id)
    .bind(c.created_at_ms)
    .bind(c.source.as_str())
    .bind(row.kind)
    .bind(row.tenant)
    .bind(row.name)
    .bind(row.version)
    .bind(row.content.as_deref())
    .bind(row.hash)
    .execute(&mut **tx)
    .await?;
    let query = match &c.change {
        Change::PutRuleSet(r) => sqlx::query(
            "INSERT INTO rulesets (tenant_id, name, seq, version, content, hash) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (tenant_id, name) DO UPDATE SET
               seq = excluded.seq, version = excluded.version,
               content = excluded.content, hash = excluded.hash",
        )
        .bind(row.tenant)
        .bind(row.name)
        .bind(row.seq)
        .bind(&r.version)
        .bind(row.content.as_deref())
        .bind(&r.hash),
        Change::DeleteRuleSet { .. } => {
            sqlx::query("DELETE FROM rulesets WHERE tenant_id = $1 AND name = $2")
                .bind(row.tenant)
                .bind(row.name)
        }
        Change::PutTenant(_) => sqlx::query(
            "INSERT INTO tenants (id, seq, content) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, content = excluded.content",
        )
        .bind(row.tenant)
        .bind(row.seq)
        .bind(row.content.as_deref()),
        Change::DeleteTenant { .. } => {
            sqlx::query("DELETE FROM tenants WHERE id = $1").bind(row.tenant)
        }
    };
    query.execute(&mut **tx).await?;
    Ok(())
}
