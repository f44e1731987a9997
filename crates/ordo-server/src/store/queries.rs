//! The statements both SQL backends share. `$N` parameters work on SQLite as on
//! PostgreSQL, so the text is one (except the parameters of multi-row statements, see
//! [`values`]); the store methods are generated once per backend, because sqlx's
//! connections and transactions are typed by database.

/// Rows per multi-row statement: at 11 parameters a row, well under the parameter
/// limits of SQLite (32,766) and PostgreSQL (65,535).
pub(crate) const ROWS_PER_STATEMENT: usize = 500;

/// `rows` groups of `cols` parameters: `($1, $2), ($3, $4)` when `numbered`, else
/// `(?, ?), (?, ?)`. SQLite must get the anonymous form: it keeps `$N` and `?N` in a list
/// it searches for each parameter bound, and a 500-row insert took 40 to 80 ms.
pub(crate) fn values(rows: usize, cols: usize, numbered: bool) -> String {
    let groups: Vec<String> = (0..rows)
        .map(|r| {
            let params: Vec<String> = (1..=cols)
                .map(|c| {
                    if numbered {
                        format!("${}", r * cols + c)
                    } else {
                        "?".to_string()
                    }
                })
                .collect();
            format!("({})", params.join(", "))
        })
        .collect();
    groups.join(", ")
}

/// Splits commits, in order, into runs of one kind of change with no key twice (an
/// upsert may not touch one row twice) and at most [`ROWS_PER_STATEMENT`] each.
pub(crate) fn runs<'a, C>(
    rows: &'a [(C, super::CommitRow<'a>)],
) -> Vec<Vec<&'a (C, super::CommitRow<'a>)>> {
    let mut runs: Vec<Vec<&(C, super::CommitRow<'_>)>> = Vec::new();
    let mut keys = std::collections::HashSet::new();
    for item in rows {
        let row = &item.1;
        let fits = runs.last().is_some_and(|run| {
            run.len() < ROWS_PER_STATEMENT
                && run.first().is_some_and(|(_, first)| first.kind == row.kind)
                && !keys.contains(&(row.tenant, row.name))
        });
        if !fits {
            runs.push(Vec::new());
            keys.clear();
        }
        keys.insert((row.tenant, row.name));
        if let Some(run) = runs.last_mut() {
            run.push(item);
        }
    }
    runs
}

/// Binds a commit row's eleven columns, in the order of `INSERT INTO commits (seq, id,
/// created_at_ms, source, kind, tenant_id, name, version, content, hash, files_done)`.
macro_rules! bind_commit {
    ($query:expr, $commit:expr, $row:expr, $files_done:expr) => {
        $query
            .bind($row.seq)
            .bind(&$commit.id)
            .bind($commit.created_at_ms)
            .bind($commit.source.as_str())
            .bind($row.kind)
            .bind($row.tenant)
            .bind($row.name)
            .bind($row.version)
            .bind($row.content.as_deref())
            .bind($row.hash)
            .bind($files_done)
    };
}

macro_rules! shared_queries {
    ($store:ty, $db:ty, $numbered:literal) => {
        /// Appends `commits` inside `tx` if they follow the stored head without a gap,
        /// then commits the transaction. Many commits (an import of a directory) are
        /// written with multi-row statements: one statement per commit was a round trip
        /// each, most of a first start over a thousand files.
        async fn append_in(
            mut tx: sqlx::Transaction<'_, $db>,
            commits: &[$crate::store::Commit],
            files_done: u64,
        ) -> Result<(), $crate::store::StoreError> {
            use $crate::store::queries::{ROWS_PER_STATEMENT, runs, values};
            use $crate::store::{Change, CommitRow};
            let last: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM commits")
                .fetch_one(&mut *tx)
                .await?;
            let mut last = $crate::store::seq_of(last)?;
            for c in commits {
                if c.seq != last + 1 {
                    return Err($crate::store::StoreError::OutOfOrder { last, got: c.seq });
                }
                last = c.seq;
            }
            let files_done = $crate::store::seq_param(files_done)?;
            let rows = commits
                .iter()
                .map(|c| CommitRow::of(c).map(|row| (c, row)))
                .collect::<Result<Vec<_>, _>>()?;
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let sql = format!(
                    "INSERT INTO commits (seq, id, created_at_ms, source, kind, tenant_id, name, version, content, hash, files_done)
                     VALUES {}",
                    values(chunk.len(), 11, $numbered)
                );
                let mut query = sqlx::query(&sql).persistent(false);
                for (c, row) in chunk {
                    query = bind_commit!(query, c, row, files_done);
                }
                query.execute(&mut *tx).await?;
            }
            // The effects on the current state, in commit order: each run of changes
            // of one kind, without a repeated key, is one statement.
            for run in runs(&rows) {
                let Some((first, _)) = run.first() else { continue };
                let sql = match &first.change {
                    Change::PutRuleSet(_) => format!(
                        "INSERT INTO rulesets (tenant_id, name, seq, version, hash)
                         VALUES {}
                         ON CONFLICT (tenant_id, name) DO UPDATE SET
                           seq = excluded.seq, version = excluded.version, hash = excluded.hash",
                        values(run.len(), 5, $numbered)
                    ),
                    Change::DeleteRuleSet { .. } => format!(
                        "DELETE FROM rulesets WHERE (tenant_id, name) IN (VALUES {})",
                        values(run.len(), 2, $numbered)
                    ),
                    Change::PutTenant(_) => format!(
                        "INSERT INTO tenants (id, seq, content) VALUES {}
                         ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, content = excluded.content",
                        values(run.len(), 3, $numbered)
                    ),
                    Change::DeleteTenant { .. } => format!(
                        "DELETE FROM tenants WHERE id IN (VALUES {})",
                        values(run.len(), 1, $numbered)
                    ),
                };
                let mut query = sqlx::query(&sql).persistent(false);
                for (c, row) in run {
                    query = match &c.change {
                        Change::PutRuleSet(r) => query
                            .bind(row.tenant)
                            .bind(row.name)
                            .bind(row.seq)
                            .bind(&r.version)
                            .bind(&r.hash),
                        Change::DeleteRuleSet { .. } => query.bind(row.tenant).bind(row.name),
                        Change::PutTenant(_) => query
                            .bind(row.tenant)
                            .bind(row.seq)
                            .bind(row.content.as_deref()),
                        Change::DeleteTenant { .. } => query.bind(row.tenant),
                    };
                }
                query.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        }

        /// The contents the ruleset commits `seqs` put, as `(seq, content)`: a few
        /// statements over `conn`, the seqs written into the text (they are numbers).
        pub(crate) async fn contents_on(
            conn: &mut <$db as sqlx::Database>::Connection,
            seqs: &[u64],
        ) -> Result<Vec<(u64, std::sync::Arc<str>)>, $crate::store::StoreError> {
            use std::fmt::Write;
            let mut out = Vec::with_capacity(seqs.len());
            for chunk in seqs.chunks($crate::store::queries::ROWS_PER_STATEMENT) {
                let mut sql = String::from(
                    "SELECT seq, content FROM commits WHERE kind = 'ruleset_put' AND seq IN (",
                );
                for (i, seq) in chunk.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "," };
                    let _ = write!(sql, "{sep}{seq}");
                }
                sql.push(')');
                let rows: Vec<(i64, Option<String>)> = sqlx::query_as(&sql)
                    .persistent(false)
                    .fetch_all(&mut *conn)
                    .await?;
                for (seq, content) in rows {
                    let seq = $crate::store::seq_of(seq)?;
                    let content = content.ok_or_else(|| {
                        $crate::store::StoreError::Corrupt(format!("commit {seq} has no content"))
                    })?;
                    out.push((seq, content.into()));
                }
            }
            Ok(out)
        }

        impl $store {
            /// The contents the ruleset commits `seqs` put, as `(seq, content)`.
            pub async fn contents(
                &self,
                seqs: &[u64],
            ) -> Result<Vec<(u64, std::sync::Arc<str>)>, $crate::store::StoreError> {
                let mut conn = self.pool.acquire().await?;
                contents_on(&mut conn, seqs).await
            }

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
