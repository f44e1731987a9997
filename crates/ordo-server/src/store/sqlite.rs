//! The embedded commit log: one SQLite file in WAL mode with `synchronous = FULL`,
//! so a commit is on disk when `append` returns.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{
    Commit, FileCache, FileCacheRow, RuleSetInfo, State, StoreError, file_cache_of, migrate,
    seq_of, tenant_of,
};

trace_queries!(SqliteStore);
shared_queries!(SqliteStore, sqlx::Sqlite, false);

pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
}

impl SqliteStore {
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let fresh = !path.exists();
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            // The log is read in full once, at start, and then only written: a small
            // page cache (512 KiB instead of 2 MiB) keeps the resident size down, and
            // the operating system caches the file anyway.
            .pragma("cache_size", "-512");
        // One connection: writes are serialised by the service anyway, and reads are rare
        // (versions, rollback), so a single connection keeps memory and startup small.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            // A ping before each use is a round trip to the database thread; a local
            // file has no connection to lose.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        let mut conn = pool.acquire().await?;
        if fresh {
            // A new file's migrations need not each reach the disk: in WAL mode a lost
            // tail of them leaves a consistent database whose next start applies them
            // again, and the first commit of the log syncs all of them with it.
            sqlx::query("PRAGMA synchronous = NORMAL")
                .execute(&mut *conn)
                .await?;
        }
        migrate::migrator(migrate::SQLITE)
            .await?
            .run(&mut *conn)
            .await?;
        // Until the start is over (see `resume_checkpoints`), commits stay in the
        // write-ahead log: importing a rules directory then costs one write of its
        // rulesets, not a second copy into the database file before readiness.
        let settings = if fresh {
            "PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0"
        } else {
            "PRAGMA wal_autocheckpoint = 0"
        };
        sqlx::query(settings).execute(&mut *conn).await?;
        drop(conn);
        Ok(SqliteStore {
            pool,
            path: path.to_path_buf(),
        })
    }

    /// Copies what the start wrote from the write-ahead log into the database file,
    /// and lets SQLite do so again whenever the log reaches its default 1,000 pages
    /// (a connection opened later, after an error, starts with that default anyway).
    pub async fn resume_checkpoints(&self) -> Result<(), StoreError> {
        sqlx::query("PRAGMA wal_autocheckpoint = 1000; PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&self.pool)
            .await?;
        Ok(())
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

    /// [`contents`](Self::contents) over a connection of its own, opened read-only
    /// and closed after, driven by whatever runtime the caller runs: the warm-up
    /// reads the contents after a start without waiting for the store's connection
    /// (which a write may hold) or for a worker of the serving runtime. They are read
    /// `chunk` seqs at a time, each chunk handed to `each` before the next is read.
    pub async fn contents_apart(
        path: &Path,
        seqs: &[u64],
        chunk: usize,
        mut each: impl FnMut(Vec<(u64, std::sync::Arc<str>)>),
    ) -> Result<(), StoreError> {
        use sqlx::Connection;
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .read_only(true)
            .busy_timeout(Duration::from_secs(5))
            // Each page is read once: a page cache of its default 2 MiB would only grow
            // the heap SQLite allocates from (the C allocator, which keeps what it freed).
            .pragma("cache_size", "-64");
        let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
        let mut read = Ok(());
        for seqs in seqs.chunks(chunk.max(1)) {
            match contents_on(&mut conn, seqs).await {
                Ok(contents) => each(contents),
                Err(e) => {
                    read = Err(e);
                    break;
                }
            }
        }
        let _ = conn.close().await;
        read
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn load(&self) -> Result<State, StoreError> {
        // All current rulesets in one value, one line per ruleset: handing thousands of
        // rows one by one from the database thread costs several times more than the
        // data. Their contents are in the commits that put them, read after readiness
        // (see `contents`). No field holds a tab or a newline: tenant and name are
        // validated names, seq a number, hash hex, the version a JSON string literal
        // (json_quote escapes control characters).
        let (seq, meta): (Option<i64>, Option<String>) = sqlx::query_as(
            "SELECT (SELECT MAX(seq) FROM commits),
                    group_concat(tenant_id || char(9) || name || char(9) || seq || char(9)
                                 || hash || char(9) || json_quote(version), char(10))
             FROM rulesets",
        )
        .fetch_one(&self.pool)
        .await?;
        let mut state = State {
            seq: seq_of(seq.unwrap_or(0))?,
            ..State::default()
        };
        let malformed = || StoreError::Corrupt("rulesets: malformed row".into());
        for line in meta.as_deref().unwrap_or_default().lines() {
            let mut fields = line.splitn(5, '\t');
            let mut next = || fields.next().ok_or_else(malformed);
            let (tenant, name, seq, hash, version) = (next()?, next()?, next()?, next()?, next()?);
            state.rulesets.push(RuleSetInfo {
                tenant: tenant.to_string(),
                name: name.to_string(),
                version: serde_json::from_str(version)
                    .map_err(|_| StoreError::Corrupt(format!("rulesets: version {version}")))?,
                hash: hash.to_string(),
                seq: seq
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("rulesets: seq {seq}")))?,
            });
        }
        state
            .rulesets
            .sort_unstable_by(|a, b| (&a.tenant, &a.name).cmp(&(&b.tenant, &b.name)));
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
        match commits {
            [commit] => self.append_one(commit, files_done).await,
            _ => append_in(self.pool.begin().await?, commits, files_done).await,
        }
    }

    /// One commit in one round trip to the database thread: the transaction, the
    /// gapless check, both writes and the COMMIT are one multi-statement query. Each
    /// statement sent separately is a hand-off between threads, which on an idle
    /// machine costs more than the statement itself.
    async fn append_one(&self, c: &Commit, files_done: u64) -> Result<(), StoreError> {
        use super::{Change, CommitRow, seq_param};
        let row = CommitRow::of(c)?;
        // ?1 seq, ?2 id, ?3 created_at_ms, ?4 source, ?5 kind, ?6 tenant, ?7 name,
        // ?8 version, ?9 content, ?10 hash, ?11 files_done. The change applies only if
        // the commit row went in (`changes()` counts the statement before it).
        macro_rules! one_commit {
            ($change:literal) => {
                concat!(
                    "BEGIN IMMEDIATE;
                     INSERT INTO commits (seq, id, created_at_ms, source, kind, tenant_id, name, version, content, hash, files_done)
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11
                     WHERE (SELECT COALESCE(MAX(seq), 0) FROM commits) = ?1 - 1
                     RETURNING seq;",
                    $change,
                    "; COMMIT;"
                )
            };
        }
        let sql = match &c.change {
            Change::PutRuleSet(_) => one_commit!(
                "INSERT INTO rulesets (tenant_id, name, seq, version, hash)
                 SELECT ?6, ?7, ?1, ?8, ?10 WHERE changes() = 1
                 ON CONFLICT (tenant_id, name) DO UPDATE SET
                   seq = excluded.seq, version = excluded.version, hash = excluded.hash"
            ),
            Change::DeleteRuleSet { .. } => one_commit!(
                "DELETE FROM rulesets WHERE tenant_id = ?6 AND name = ?7 AND changes() = 1"
            ),
            Change::PutTenant(_) => one_commit!(
                "INSERT INTO tenants (id, seq, content) SELECT ?6, ?1, ?9 WHERE changes() = 1
                 ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, content = excluded.content"
            ),
            Change::DeleteTenant { .. } => {
                one_commit!("DELETE FROM tenants WHERE id = ?6 AND changes() = 1")
            }
        };
        let mut conn = self.pool.acquire().await?;
        let written = bind_commit!(sqlx::query(sql), c, row, seq_param(files_done)?)
            .fetch_all(&mut *conn)
            .await;
        match written {
            Ok(rows) if rows.len() == 1 => Ok(()),
            Ok(_) => {
                // Nothing was written (the empty transaction committed): report where
                // the log stands.
                let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM commits")
                    .fetch_one(&mut *conn)
                    .await?;
                Err(StoreError::OutOfOrder {
                    last: seq_of(last)?,
                    got: c.seq,
                })
            }
            Err(e) => {
                // A statement failed after BEGIN: end the transaction before the
                // connection goes back to the pool ("no transaction" is fine here).
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                Err(e.into())
            }
        }
    }
}

impl SqliteStore {
    /// The file cache, stored as one value (see migration 0007): one line per file,
    /// its fields tab-separated. No field holds a tab or a newline: tenant and name are
    /// validated names, the hashes hex, the rest numbers.
    pub async fn load_file_cache(&self) -> Result<FileCache, StoreError> {
        let all: Option<String> =
            sqlx::query_scalar("SELECT data FROM file_cache_snapshot WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        let malformed = || StoreError::Corrupt("file_cache_snapshot: malformed line".into());
        let mut rows: Vec<FileCacheRow> = Vec::new();
        for line in all.as_deref().unwrap_or_default().lines() {
            let mut fields = line.split('\t');
            let mut text = || fields.next().ok_or_else(malformed);
            let (tenant, name, raw, content) = (text()?, text()?, text()?, text()?);
            let mut int = || text()?.parse::<i64>().map_err(|_| malformed());
            let (size, mtime, checked) = (int()?, int()?, int()?);
            if fields.next().is_some() {
                return Err(malformed());
            }
            rows.push((
                tenant.to_string(),
                name.to_string(),
                raw.to_string(),
                content.to_string(),
                size,
                mtime,
                checked,
            ));
        }
        Ok(file_cache_of(rows))
    }

    /// Replaces the file cache in one statement.
    pub async fn save_file_cache(&self, cache: &FileCache) -> Result<(), StoreError> {
        use std::fmt::Write;
        let mut data = String::with_capacity(cache.len() * 200);
        for ((tenant, name), seen) in cache {
            if !data.is_empty() {
                data.push('\n');
            }
            let _ = write!(
                data,
                "{tenant}\t{name}\t{}\t{}\t{}\t{}\t{}",
                seen.raw_hash,
                seen.content_hash,
                i64::try_from(seen.size).unwrap_or(i64::MAX),
                seen.mtime_ns,
                seen.checked_at_ns
            );
        }
        sqlx::query(
            "INSERT INTO file_cache_snapshot (id, data) VALUES (1, ?)
             ON CONFLICT (id) DO UPDATE SET data = excluded.data",
        )
        .bind(data)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Change, Source, StoredRuleSet};
    use crate::tenant::TenantConfig;

    /// The current rulesets as `(name, content, seq)`, their contents read back by seq
    /// over the store's connection and over one of its own, which must agree.
    async fn current(store: &SqliteStore) -> Result<Vec<(String, String, u64)>, StoreError> {
        let state = store.load().await?;
        let seqs: Vec<u64> = state.rulesets.iter().map(|r| r.seq).collect();
        let contents: std::collections::HashMap<u64, std::sync::Arc<str>> =
            store.contents(&seqs).await?.into_iter().collect();
        let mut apart = Vec::new();
        SqliteStore::contents_apart(store.path(), &seqs, 3, |chunk| {
            assert!(chunk.len() <= 3);
            apart.extend(chunk)
        })
        .await?;
        assert_eq!(apart.len(), contents.len());
        for (seq, content) in &apart {
            assert_eq!(contents.get(seq), Some(content));
        }
        Ok(state
            .rulesets
            .iter()
            .map(|r| {
                let content = contents
                    .get(&r.seq)
                    .map(|c| c.to_string())
                    .unwrap_or_default();
                (r.name.clone(), content, r.seq)
            })
            .collect())
    }

    fn commit(seq: u64, change: Change) -> Commit {
        Commit {
            seq,
            id: format!("commit-{seq}"),
            created_at_ms: 1,
            source: Source::Api,
            change,
        }
    }

    fn put(seq: u64, tenant: &str, name: &str, content: &str) -> Commit {
        commit(
            seq,
            Change::PutRuleSet(StoredRuleSet {
                tenant: tenant.into(),
                name: name.into(),
                version: format!("1.0.{seq}"),
                content: content.into(),
                hash: format!("hash-{seq}"),
                seq,
            }),
        )
    }

    fn tenant(id: &str) -> TenantConfig {
        TenantConfig {
            id: id.into(),
            name: String::new(),
            enabled: true,
            qps_limit: None,
            burst_limit: None,
            execution_timeout_ms: None,
            max_rules: None,
        }
    }

    #[tokio::test]
    async fn single_commits_append_in_order_and_nothing_else_changes() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let store = SqliteStore::open(&dir.path().join("log.db")).await?;
        store
            .append_all(&[commit(1, Change::PutTenant(tenant("acme")))], 0)
            .await?;
        store
            .append_all(&[put(2, "acme", "a", "{\"a\":1}")], 1)
            .await?;
        store
            .append_all(&[put(3, "acme", "b", "{\"b\":1}")], 2)
            .await?;
        store
            .append_all(&[put(4, "acme", "a", "{\"a\":2}")], 3)
            .await?;
        store
            .append_all(
                &[commit(
                    5,
                    Change::DeleteRuleSet {
                        tenant: "acme".into(),
                        name: "b".into(),
                    },
                )],
                4,
            )
            .await?;

        // A gap and a repeated seq are refused and write nothing, not even the change.
        for seq in [7, 5, 1] {
            let refused = store.append_all(&[put(seq, "acme", "x", "{}")], 5).await;
            assert!(
                matches!(refused, Err(StoreError::OutOfOrder { last: 5, got }) if got == seq),
                "seq {seq}: {refused:?}"
            );
        }
        // The connection is usable afterwards, with no transaction left open.
        store
            .append_all(&[put(6, "acme", "c", "{\"c\":1}")], 5)
            .await?;
        store
            .append_all(&[commit(7, Change::DeleteTenant { id: "gone".into() })], 6)
            .await?;

        let state = store.load().await?;
        assert_eq!(state.seq, 7);
        let current = current(&store).await?;
        let current: Vec<(&str, &str, u64)> = current
            .iter()
            .map(|(name, content, seq)| (name.as_str(), content.as_str(), *seq))
            .collect();
        assert_eq!(current, [("a", "{\"a\":2}", 4), ("c", "{\"c\":1}", 6)]);
        // Contents are those of ruleset puts only: a deletion, a tenant commit or an
        // unknown seq has none.
        let some = store.contents(&[1, 4, 5, 7, 99]).await?;
        let seqs: Vec<u64> = some.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, [4]);
        assert_eq!(state.tenants.len(), 1);
        assert_eq!(store.files_done().await?, Some(6));
        let ids: Vec<String> = store
            .commits_after(0, 100, false)
            .await?
            .into_iter()
            .map(|c| c.id)
            .collect();
        let expected: Vec<String> = (1..=7).map(|seq| format!("commit-{seq}")).collect();
        assert_eq!(ids, expected);
        Ok(())
    }

    #[tokio::test]
    async fn a_batch_is_written_in_order_whatever_its_size_and_mix() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let store = SqliteStore::open(&dir.path().join("log.db")).await?;
        let delete = |seq, name: &str| {
            commit(
                seq,
                Change::DeleteRuleSet {
                    tenant: "acme".into(),
                    name: name.into(),
                },
            )
        };
        // More rows than one statement takes, a key twice in a run, and every kind.
        let mut batch = vec![commit(1, Change::PutTenant(tenant("acme")))];
        for i in 0..1200u64 {
            batch.push(put(
                2 + i,
                "acme",
                &format!("r{i}"),
                &format!("{{\"v\":{i}}}"),
            ));
        }
        batch.push(put(1202, "acme", "r0", "{\"v\":\"again\"}"));
        batch.push(delete(1203, "r1"));
        batch.push(delete(1204, "r2"));
        batch.push(put(1205, "acme", "r1", "{\"v\":\"back\"}"));
        batch.push(commit(1206, Change::PutTenant(tenant("other"))));
        batch.push(commit(1207, Change::DeleteTenant { id: "other".into() }));
        store.append_all(&batch, 0).await?;

        let state = store.load().await?;
        assert_eq!(state.seq, 1207);
        assert_eq!(state.rulesets.len(), 1199);
        let current = current(&store).await?;
        let get = |name: &str| {
            current
                .iter()
                .find(|(n, _, _)| n == name)
                .map(|(_, content, seq)| (content.clone(), *seq))
        };
        assert_eq!(get("r0"), Some(("{\"v\":\"again\"}".into(), 1202)));
        assert_eq!(get("r1"), Some(("{\"v\":\"back\"}".into(), 1205)));
        assert_eq!(get("r2"), None);
        assert_eq!(get("r1199"), Some(("{\"v\":1199}".into(), 1201)));
        let tenants: Vec<&str> = state.tenants.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(tenants, ["acme"]);
        assert_eq!(store.commits_after(0, 2000, false).await?.len(), 1207);

        // A batch that does not follow the head writes nothing.
        let gap = [
            put(1208, "acme", "late", "{}"),
            put(1210, "acme", "later", "{}"),
        ];
        assert!(matches!(
            store.append_all(&gap, 0).await,
            Err(StoreError::OutOfOrder {
                last: 1208,
                got: 1210
            })
        ));
        assert_eq!(store.load().await?.seq, 1207);
        Ok(())
    }

    fn seen(hash: &str, size: u64) -> crate::store::FileSeen {
        crate::store::FileSeen {
            raw_hash: format!("raw-{hash}"),
            content_hash: hash.to_string(),
            size,
            mtime_ns: 1_700_000_000_123_456_789,
            checked_at_ns: 1_700_000_005_000_000_000,
        }
    }

    #[tokio::test]
    async fn the_file_cache_is_saved_and_loaded_whole() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let path = dir.path().join("log.db");
        let store = SqliteStore::open(&path).await?;
        assert!(
            store.load_file_cache().await?.is_empty(),
            "a new log has none"
        );
        let mut cache = FileCache::new();
        for i in 0..1500u64 {
            let tenant = if i % 2 == 0 { "default" } else { "acme" };
            cache.insert(
                (tenant.into(), format!("rules-{i}")),
                seen(&format!("{i:064x}"), i),
            );
        }
        store.save_file_cache(&cache).await?;
        assert_eq!(store.load_file_cache().await?, cache);

        // A save replaces the whole cache, and it survives a reopen.
        let mut smaller = FileCache::new();
        smaller.insert(("default".into(), "only".into()), seen("abc", 7));
        store.save_file_cache(&smaller).await?;
        store.pool.close().await;
        let store = SqliteStore::open(&path).await?;
        assert_eq!(store.load_file_cache().await?, smaller);
        store.save_file_cache(&FileCache::new()).await?;
        assert!(store.load_file_cache().await?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn a_file_cache_kept_as_rows_is_carried_over_by_the_migration() -> Result<(), StoreError>
    {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let path = dir.path().join("log.db");
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(&path)
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        // The schema as the release before the snapshot left it.
        let before = migrate::SQLITE
            .get(..6)
            .ok_or_else(|| StoreError::Corrupt("fewer than 6 migrations".into()))?;
        migrate::migrator(before).await?.run(&pool).await?;
        sqlx::query(
            "INSERT INTO file_cache (tenant_id, name, raw_hash, content_hash, size, mtime_ns, checked_at_ns)
             VALUES ('default', 'a', 'raw-a', 'hash-a', 10, 11, 12),
                    ('acme', 'b', 'raw-b', 'hash-b', 20, 21, 22)",
        )
        .execute(&pool)
        .await?;
        pool.close().await;

        let store = SqliteStore::open(&path).await?;
        let cache = store.load_file_cache().await?;
        let entries: Vec<_> = cache
            .iter()
            .map(|((t, n), s)| {
                let (t, n, raw, hash) = (
                    t.as_str(),
                    n.as_str(),
                    s.raw_hash.as_str(),
                    s.content_hash.as_str(),
                );
                (t, n, raw, hash, s.size, s.mtime_ns, s.checked_at_ns)
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("acme", "b", "raw-b", "hash-b", 20, 21, 22),
                ("default", "a", "raw-a", "hash-a", 10, 11, 12)
            ]
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_malformed_file_cache_is_an_error_not_a_guess() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let store = SqliteStore::open(&dir.path().join("log.db")).await?;
        for data in [
            "default\ta\traw\thash\t1\t2",
            "default\ta\traw\thash\t1\t2\t3\textra",
            "default\ta\traw\thash\tten\t2\t3",
        ] {
            sqlx::query("INSERT OR REPLACE INTO file_cache_snapshot (id, data) VALUES (1, ?)")
                .bind(data)
                .execute(&store.pool)
                .await?;
            assert!(
                matches!(store.load_file_cache().await, Err(StoreError::Corrupt(_))),
                "{data:?}"
            );
        }
        Ok(())
    }
}
