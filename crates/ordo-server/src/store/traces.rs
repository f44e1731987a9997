//! Async execution traces: one row per submitted job, in the same database as the
//! commit log (so on PostgreSQL any instance answers for any trace), or in memory for
//! the in-memory store.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;

use super::StoreError;

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceStatus {
    Pending,
    Running,
    Completed,
    Failed,
}

impl TraceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TraceStatus::Pending => "pending",
            TraceStatus::Running => "running",
            TraceStatus::Completed => "completed",
            TraceStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<TraceStatus> {
        Some(match text {
            "pending" => TraceStatus::Pending,
            "running" => TraceStatus::Running,
            "completed" => TraceStatus::Completed,
            "failed" => TraceStatus::Failed,
            _ => return None,
        })
    }
}

/// A failed job's place in the dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DlqState {
    /// Will be retried at `next_retry_at`.
    Retrying,
    /// Retried `dlq_max_retries` times (or retries are off): left for an operator to
    /// replay or purge.
    Exhausted,
}

impl DlqState {
    pub fn as_str(self) -> &'static str {
        match self {
            DlqState::Retrying => "retrying",
            DlqState::Exhausted => "exhausted",
        }
    }

    pub fn parse(text: &str) -> Option<DlqState> {
        Some(match text {
            "retrying" => DlqState::Retrying,
            "exhausted" => DlqState::Exhausted,
            _ => return None,
        })
    }
}

/// One async job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trace {
    #[serde(rename = "trace_id")]
    pub id: String,
    pub tenant_id: String,
    pub ruleset: String,
    pub status: TraceStatus,
    /// A batch (`inputs`) rather than one input.
    pub batch: bool,
    /// The submitted input (one JSON value, or an array of them for a batch).
    #[serde(skip)]
    pub input: String,
    /// Inputs in the job.
    pub inputs: u64,
    /// The result as JSON text, once completed.
    #[serde(skip)]
    pub result: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Runs so far (the first and each retry).
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dlq: Option<DlqState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_retry_at_ms: Option<i64>,
    /// The instance that took it.
    pub instance: String,
    pub created_at_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<i64>,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Finish {
    pub status: TraceStatus,
    pub result: Option<String>,
    pub error: Option<String>,
    pub dlq: Option<DlqState>,
    pub next_retry_at_ms: Option<i64>,
    pub at_ms: i64,
}

/// A write to the traces, applied with others in one transaction (a group commit).
#[derive(Debug, Clone)]
pub enum TraceOp {
    Insert(Box<Trace>),
    /// Marks a pending job running and counts the attempt.
    Start {
        id: String,
        instance: String,
        at_ms: i64,
    },
    Finish {
        id: String,
        finish: Finish,
    },
}

/// What a [`TraceOp`] did: for a start, the job's attempts counting this one, or
/// `None` when it was not pending (purged, or taken by another instance).
pub type OpResult = Option<u32>;

/// What a list asks for.
#[derive(Debug, Clone, Default)]
pub struct TraceFilter {
    pub tenant: Option<String>,
    pub status: Option<TraceStatus>,
    /// Only dead-letter entries (in any state, or in this one).
    pub dlq_only: bool,
    pub dlq: Option<DlqState>,
    pub limit: u32,
}

/// A row as stored, in the order of [`COLUMNS`].
pub(crate) type TraceRow = (
    String,
    String,
    String,
    String,
    i64,
    String,
    i64,
    Option<String>,
    Option<String>,
    i64,
    Option<String>,
    Option<i64>,
    String,
    i64,
    Option<i64>,
    Option<i64>,
);

/// The columns of [`TraceRow`].
pub(crate) const COLUMNS: &str = "id, tenant_id, ruleset, status, batch, input, inputs, result, \
     error, attempts, dlq, next_retry_at_ms, instance, created_at_ms, started_at_ms, finished_at_ms";

pub(crate) fn trace_of(row: TraceRow) -> Result<Trace, StoreError> {
    let (
        id,
        tenant_id,
        ruleset,
        status,
        batch,
        input,
        inputs,
        result,
        error,
        attempts,
        dlq,
        next_retry_at_ms,
        instance,
        created_at_ms,
        started_at_ms,
        finished_at_ms,
    ) = row;
    let bad = |what: &str| StoreError::Corrupt(format!("trace {id}: bad {what}"));
    Ok(Trace {
        status: TraceStatus::parse(&status).ok_or_else(|| bad("status"))?,
        dlq: match &dlq {
            None => None,
            Some(d) => Some(DlqState::parse(d).ok_or_else(|| bad("dlq state"))?),
        },
        batch: batch != 0,
        inputs: u64::try_from(inputs).map_err(|_| bad("input count"))?,
        attempts: u32::try_from(attempts).map_err(|_| bad("attempts"))?,
        id,
        tenant_id,
        ruleset,
        input,
        result,
        error,
        next_retry_at_ms,
        instance,
        created_at_ms,
        started_at_ms,
        finished_at_ms,
    })
}

/// The trace statements of one SQL backend (their text is the same on both).
macro_rules! trace_queries {
    ($store:ty) => {
        impl $store {
            /// Applies `ops` in one transaction: one sync to disk for all of them.
            pub async fn apply_trace_ops(
                &self,
                ops: &[$crate::store::traces::TraceOp],
            ) -> Result<Vec<$crate::store::traces::OpResult>, $crate::store::StoreError> {
                use $crate::store::traces::TraceOp;
                let mut tx = self.pool.begin().await?;
                let mut results = Vec::with_capacity(ops.len());
                for op in ops {
                    results.push(match op {
                        TraceOp::Insert(t) => {
                            sqlx::query(
                                "INSERT INTO traces (id, tenant_id, ruleset, status, batch, input,
                                 inputs, attempts, instance, created_at_ms)
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                            )
                            .bind(&t.id)
                            .bind(&t.tenant_id)
                            .bind(&t.ruleset)
                            .bind(t.status.as_str())
                            .bind(i64::from(t.batch))
                            .bind(&t.input)
                            .bind(i64::try_from(t.inputs).unwrap_or(i64::MAX))
                            .bind(i64::from(t.attempts))
                            .bind(&t.instance)
                            .bind(t.created_at_ms)
                            .execute(&mut *tx)
                            .await?;
                            None
                        }
                        TraceOp::Start { id, instance, at_ms } => {
                            let row: Option<(i64,)> = sqlx::query_as(
                                "UPDATE traces SET status = 'running', instance = $2,
                                 started_at_ms = $3, attempts = attempts + 1
                                 WHERE id = $1 AND status = 'pending' RETURNING attempts",
                            )
                            .bind(id)
                            .bind(instance)
                            .bind(at_ms)
                            .fetch_optional(&mut *tx)
                            .await?;
                            row.map(|(n,)| u32::try_from(n).unwrap_or(u32::MAX))
                        }
                        TraceOp::Finish { id, finish: f } => {
                            sqlx::query(
                                "UPDATE traces SET status = $2, result = $3, error = $4, dlq = $5,
                                 next_retry_at_ms = $6, finished_at_ms = $7
                                 WHERE id = $1",
                            )
                            .bind(id)
                            .bind(f.status.as_str())
                            .bind(f.result.as_deref())
                            .bind(f.error.as_deref())
                            .bind(f.dlq.map(|d| d.as_str()))
                            .bind(f.next_retry_at_ms)
                            .bind(f.at_ms)
                            .execute(&mut *tx)
                            .await?;
                            None
                        }
                    });
                }
                tx.commit().await?;
                Ok(results)
            }

            pub async fn trace(
                &self,
                id: &str,
            ) -> Result<Option<$crate::store::traces::Trace>, $crate::store::StoreError> {
                let sql = format!(
                    "SELECT {} FROM traces WHERE id = $1",
                    $crate::store::traces::COLUMNS
                );
                let row: Option<$crate::store::traces::TraceRow> = sqlx::query_as(&sql)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map($crate::store::traces::trace_of).transpose()
            }

            pub async fn traces(
                &self,
                f: &$crate::store::traces::TraceFilter,
            ) -> Result<Vec<$crate::store::traces::Trace>, $crate::store::StoreError> {
                let sql = format!(
                    "SELECT {} FROM traces
                     WHERE ($1 = '' OR tenant_id = $1) AND ($2 = '' OR status = $2)
                       AND ($3 = 0 OR dlq IS NOT NULL) AND ($4 = '' OR dlq = $4)
                     ORDER BY created_at_ms DESC, id LIMIT $5",
                    $crate::store::traces::COLUMNS
                );
                let rows: Vec<$crate::store::traces::TraceRow> = sqlx::query_as(&sql)
                .bind(f.tenant.as_deref().unwrap_or_default())
                .bind(f.status.map_or("", |s| s.as_str()))
                .bind(i64::from(f.dlq_only))
                .bind(f.dlq.map_or("", |d| d.as_str()))
                .bind(i64::from(f.limit))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map($crate::store::traces::trace_of)
                    .collect()
            }

            /// Puts a job back to pending (a retry, a replay, a recovery); false when
            /// there is no such job (or, with `due_by`, it is not a retry due by then).
            pub async fn requeue_trace(
                &self,
                id: &str,
                due_by: Option<i64>,
            ) -> Result<bool, $crate::store::StoreError> {
                let done = sqlx::query(
                    "UPDATE traces SET status = 'pending', dlq = NULL, next_retry_at_ms = NULL,
                     result = NULL, started_at_ms = NULL, finished_at_ms = NULL
                     WHERE id = $1 AND ($2 < 0 OR (dlq = 'retrying' AND next_retry_at_ms <= $2))",
                )
                .bind(id)
                .bind(due_by.unwrap_or(-1))
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            /// Deletes dead-letter entries (one, or all in `state`); how many went.
            pub async fn purge_dlq(
                &self,
                id: Option<&str>,
                state: Option<$crate::store::traces::DlqState>,
            ) -> Result<u64, $crate::store::StoreError> {
                let done = sqlx::query(
                    "DELETE FROM traces WHERE dlq IS NOT NULL
                     AND ($1 = '' OR id = $1) AND ($2 = '' OR dlq = $2)",
                )
                .bind(id.unwrap_or_default())
                .bind(state.map_or("", |s| s.as_str()))
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected())
            }

            /// Deletes completed and failed jobs (not dead-letter entries) that finished
            /// before `before_ms`.
            pub async fn delete_finished(
                &self,
                before_ms: i64,
            ) -> Result<u64, $crate::store::StoreError> {
                let done = sqlx::query(
                    "DELETE FROM traces WHERE status IN ('completed', 'failed') AND dlq IS NULL
                     AND finished_at_ms < $1",
                )
                .bind(before_ms)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected())
            }

            /// Counts by status and dead-letter state, and the oldest pending job's
            /// creation time.
            pub async fn trace_counts(
                &self,
            ) -> Result<$crate::store::traces::TraceCounts, $crate::store::StoreError> {
                let rows: Vec<(String, Option<String>, i64, i64)> = sqlx::query_as(
                    "SELECT status, dlq, COUNT(*), MIN(created_at_ms) FROM traces
                     GROUP BY status, dlq",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok($crate::store::traces::TraceCounts::of(rows))
            }
        }
    };
}

/// Jobs by state, for metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceCounts {
    pub by_status: Vec<(TraceStatus, u64)>,
    pub dlq_retrying: u64,
    pub dlq_exhausted: u64,
    /// Creation time of the oldest pending job.
    pub oldest_pending_ms: Option<i64>,
}

impl TraceCounts {
    pub(crate) fn of(rows: Vec<(String, Option<String>, i64, i64)>) -> TraceCounts {
        let mut counts = TraceCounts::default();
        let mut by_status: HashMap<TraceStatus, u64> = HashMap::new();
        for (status, dlq, n, oldest) in rows {
            let n = u64::try_from(n).unwrap_or_default();
            let Some(status) = TraceStatus::parse(&status) else {
                continue;
            };
            *by_status.entry(status).or_default() += n;
            match dlq.as_deref().and_then(DlqState::parse) {
                Some(DlqState::Retrying) => counts.dlq_retrying += n,
                Some(DlqState::Exhausted) => counts.dlq_exhausted += n,
                None => {}
            }
            if status == TraceStatus::Pending {
                counts.oldest_pending_ms =
                    Some(counts.oldest_pending_ms.map_or(oldest, |o| o.min(oldest)));
            }
        }
        counts.by_status = [
            TraceStatus::Pending,
            TraceStatus::Running,
            TraceStatus::Completed,
            TraceStatus::Failed,
        ]
        .into_iter()
        .map(|s| (s, by_status.get(&s).copied().unwrap_or_default()))
        .collect();
        counts
    }
}

/// Traces of the in-memory store (lost at exit, like its log).
#[derive(Debug, Default)]
pub struct MemoryTraces {
    rows: Mutex<HashMap<String, Trace>>,
}

impl MemoryTraces {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, Trace>) -> R) -> R {
        let mut rows = self
            .rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut rows)
    }

    pub fn insert(&self, t: &Trace) {
        self.with(|rows| rows.insert(t.id.clone(), t.clone()));
    }

    pub fn get(&self, id: &str) -> Option<Trace> {
        self.with(|rows| rows.get(id).cloned())
    }

    pub fn list(&self, f: &TraceFilter) -> Vec<Trace> {
        let mut found: Vec<Trace> = self.with(|rows| {
            rows.values()
                .filter(|t| f.tenant.as_ref().is_none_or(|x| *x == t.tenant_id))
                .filter(|t| f.status.is_none_or(|s| s == t.status))
                .filter(|t| !f.dlq_only || t.dlq.is_some())
                .filter(|t| f.dlq.is_none_or(|d| t.dlq == Some(d)))
                .cloned()
                .collect()
        });
        found.sort_by(|a, b| b.created_at_ms.cmp(&a.created_at_ms).then(a.id.cmp(&b.id)));
        found.truncate(usize::try_from(f.limit).unwrap_or(usize::MAX));
        found
    }

    pub fn start(&self, id: &str, instance: &str, at_ms: i64) -> bool {
        self.with(|rows| match rows.get_mut(id) {
            Some(t) if t.status == TraceStatus::Pending => {
                t.status = TraceStatus::Running;
                t.instance = instance.to_string();
                t.started_at_ms = Some(at_ms);
                t.attempts += 1;
                true
            }
            _ => false,
        })
    }

    pub fn finish(&self, id: &str, f: &Finish) {
        self.with(|rows| {
            if let Some(t) = rows.get_mut(id) {
                t.status = f.status;
                t.result.clone_from(&f.result);
                t.error.clone_from(&f.error);
                t.dlq = f.dlq;
                t.next_retry_at_ms = f.next_retry_at_ms;
                t.finished_at_ms = Some(f.at_ms);
            }
        });
    }

    pub fn apply(&self, ops: &[TraceOp]) -> Vec<OpResult> {
        ops.iter()
            .map(|op| match op {
                TraceOp::Insert(t) => {
                    self.insert(t);
                    None
                }
                TraceOp::Start {
                    id,
                    instance,
                    at_ms,
                } => self
                    .start(id, instance, *at_ms)
                    .then(|| self.get(id).map_or(1, |t| t.attempts)),
                TraceOp::Finish { id, finish } => {
                    self.finish(id, finish);
                    None
                }
            })
            .collect()
    }

    pub fn requeue(&self, id: &str, due_by: Option<i64>) -> bool {
        self.with(|rows| match rows.get_mut(id) {
            Some(t)
                if due_by.is_none_or(|by| {
                    t.dlq == Some(DlqState::Retrying) && t.next_retry_at_ms.is_some_and(|n| n <= by)
                }) =>
            {
                t.status = TraceStatus::Pending;
                t.dlq = None;
                t.next_retry_at_ms = None;
                t.result = None;
                t.started_at_ms = None;
                t.finished_at_ms = None;
                true
            }
            _ => false,
        })
    }

    pub fn purge_dlq(&self, id: Option<&str>, state: Option<DlqState>) -> u64 {
        self.with(|rows| {
            let before = rows.len();
            rows.retain(|_, t| {
                !(t.dlq.is_some()
                    && id.is_none_or(|i| i == t.id)
                    && state.is_none_or(|s| t.dlq == Some(s)))
            });
            (before - rows.len()) as u64
        })
    }

    pub fn delete_finished(&self, before_ms: i64) -> u64 {
        self.with(|rows| {
            let before = rows.len();
            rows.retain(|_, t| {
                !(matches!(t.status, TraceStatus::Completed | TraceStatus::Failed)
                    && t.dlq.is_none()
                    && t.finished_at_ms.is_some_and(|f| f < before_ms))
            });
            (before - rows.len()) as u64
        })
    }

    pub fn counts(&self) -> TraceCounts {
        let rows: Vec<(String, Option<String>, i64, i64)> = self.with(|rows| {
            rows.values()
                .map(|t| {
                    (
                        t.status.as_str().to_string(),
                        t.dlq.map(|d| d.as_str().to_string()),
                        1,
                        t.created_at_ms,
                    )
                })
                .collect()
        });
        TraceCounts::of(rows)
    }
}
