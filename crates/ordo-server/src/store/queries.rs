//! The statements both SQL backends share. `$N` parameters work on SQLite as on
//! PostgreSQL, so the text is one; the store methods are generated once per backend,
//! because sqlx's connections and transactions are typed by database.

macro_rules! shared_queries {
    ($store:ty, $db:ty) => {
        /// Writes one commit and its effect on the current state, inside `tx`.
        async fn insert(
            tx: &mut sqlx::Transaction<'_, $db>,
            c: &$crate::store::Commit,
            files_done: u64,
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::store::Change;
            let row = $crate::store::CommitRow::of(c)?;
            sqlx::query(
                "INSERT INTO commits (seq, id, created_at_ms, source, kind, tenant_id, name, version, content, hash, files_done)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
            .bind($crate::store::seq_param(files_done)?)
            .execute(&mut **tx)
            .await?;
            let query = match &c.change {
                Change::PutRuleSet(r) => sqlx::query(
                    "INSERT INTO rulesets (tenant_id, name, seq, version, content, hash)
                     VALUES ($1, $2, $3, $4, $5, $6)
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

        /// Appends `commits` inside `tx` if they follow the stored head without a gap,
        /// then commits the transaction.
        async fn append_in(
            mut tx: sqlx::Transaction<'_, $db>,
            commits: &[$crate::store::Commit],
            files_done: u64,
        ) -> Result<(), $crate::store::StoreError> {
            let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM commits")
                .fetch_one(&mut *tx)
                .await?;
            let mut last = $crate::store::seq_of(last)?;
            for c in commits {
                if c.seq != last + 1 {
                    return Err($crate::store::StoreError::OutOfOrder { last, got: c.seq });
                }
                last = c.seq;
                insert(&mut tx, c, files_done).await?;
            }
            tx.commit().await?;
            Ok(())
        }

        impl $store {
            /// Stored versions of a ruleset, newest first.
            pub async fn versions(
                &self,
                tenant: &str,
                name: &str,
            ) -> Result<Vec<$crate::store::VersionInfo>, $crate::store::StoreError> {
                let rows: Vec<$crate::store::VersionRow> = sqlx::query_as(
                    "SELECT seq, version, created_at_ms, source, hash FROM commits
                     WHERE tenant_id = $1 AND name = $2 AND kind = 'ruleset_put' ORDER BY seq DESC",
                )
                .bind(tenant)
                .bind(name)
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map($crate::store::version_info).collect()
            }

            /// The ruleset content written by commit `seq`, if that commit put `tenant/name`.
            pub async fn version(
                &self,
                tenant: &str,
                name: &str,
                seq: u64,
            ) -> Result<Option<$crate::store::StoredRuleSet>, $crate::store::StoreError> {
                let Ok(seq_value) = i64::try_from(seq) else {
                    return Ok(None);
                };
                let row: Option<$crate::store::ContentRow> = sqlx::query_as(
                    "SELECT version, content, hash FROM commits
                     WHERE seq = $1 AND tenant_id = $2 AND name = $3 AND kind = 'ruleset_put'",
                )
                .bind(seq_value)
                .bind(tenant)
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|row| $crate::store::stored_version(tenant, name, seq, row))
                    .transpose()
            }

            /// The `files_done` of the last commit (`None`: an empty log, or one written
            /// before the column existed).
            pub async fn files_done(
                &self,
            ) -> Result<Option<u64>, $crate::store::StoreError> {
                let row: Option<(Option<i64>,)> =
                    sqlx::query_as("SELECT files_done FROM commits ORDER BY seq DESC LIMIT 1")
                        .fetch_optional(&self.pool)
                        .await?;
                row.and_then(|(v,)| v).map($crate::store::seq_of).transpose()
            }

            /// Records on the last commit, `seq`, that its file is written too (bookkeeping,
            /// not the commit's content).
            pub async fn mark_files_done(
                &self,
                seq: u64,
            ) -> Result<(), $crate::store::StoreError> {
                let seq = $crate::store::seq_param(seq)?;
                sqlx::query("UPDATE commits SET files_done = $1 WHERE seq = $1")
                    .bind(seq)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            /// Commits after `after`, in order, at most `limit`; only tenant commits when
            /// `tenants_only`.
            pub async fn commits_after(
                &self,
                after: u64,
                limit: u32,
                tenants_only: bool,
            ) -> Result<Vec<$crate::store::Commit>, $crate::store::StoreError> {
                let rows: Vec<$crate::store::LogRow> = sqlx::query_as(
                    "SELECT seq, id, created_at_ms, source, kind, tenant_id, name, version, content, hash
                     FROM commits WHERE seq > $1 AND ($2 = 0 OR kind LIKE 'tenant%')
                     ORDER BY seq LIMIT $3",
                )
                .bind($crate::store::seq_param(after)?)
                .bind(i32::from(tenants_only))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map($crate::store::commit_of).collect()
            }
        }
    };
}
