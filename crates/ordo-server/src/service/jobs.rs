//! Async executions: a bounded queue of jobs, its workers, the dead-letter queue's
//! retries and the deletion of old traces.
//!
//! A job is admitted only when the queue has room for it (a slot and its bytes): the
//! slot is reserved before its trace is written, so a full queue answers at once and
//! leaves nothing behind. Each job's trace is in the store from `pending` to
//! `completed` or `failed`; what the queue holds in memory is only the work.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ordo_core::Value;
use tokio::sync::mpsc;

use super::{BatchOptions, Service, now_ms};
use crate::error::{Error, Result};
use crate::store::traces::{DlqState, Finish, OpResult, Trace, TraceFilter, TraceOp, TraceStatus};

/// Most trace writes in one transaction.
const MAX_GROUP: usize = 512;
/// Jobs a worker takes at once: their starts and their ends are each written in one
/// commit, so a queue of small jobs does not wait on two disk syncs per job.
const TAKE: usize = 32;

/// How a group commit answered one of its writes.
type Reply = tokio::sync::oneshot::Sender<std::result::Result<OpResult, (String, bool)>>;

/// Most inputs in one async batch.
pub const MAX_ASYNC_BATCH: usize = 100_000;
/// Most traces a list returns.
pub const MAX_LIST: u32 = 1000;

/// What a job runs.
#[derive(Debug)]
pub enum JobInput {
    One(Value),
    Many(Vec<Value>),
}

impl JobInput {
    fn count(&self) -> usize {
        match self {
            JobInput::One(_) => 1,
            JobInput::Many(inputs) => inputs.len(),
        }
    }

    /// The input as stored with its trace.
    fn to_json(&self) -> Result<String> {
        match self {
            JobInput::One(v) => serde_json::to_string(v),
            JobInput::Many(vs) => serde_json::to_string(vs),
        }
        .map_err(|e| Error::Internal(e.to_string()))
    }

    /// The input of a stored trace.
    fn of_trace(trace: &Trace) -> Result<JobInput> {
        let bad = |e: serde_json::Error| Error::Internal(format!("trace {}: {e}", trace.id));
        Ok(if trace.batch {
            JobInput::Many(serde_json::from_str(&trace.input).map_err(bad)?)
        } else {
            JobInput::One(serde_json::from_str(&trace.input).map_err(bad)?)
        })
    }
}

struct Job {
    id: String,
    tenant: String,
    ruleset: String,
    input: JobInput,
    /// Bytes it counts for in the queue's memory.
    bytes: u64,
}

/// A place in the queue: a slot and bytes of its memory, given back unless a job is
/// sent into it. It may be moved into a task, so that a submission whose client went
/// away still queues the job its trace promises.
struct Reservation {
    slot: Option<mpsc::OwnedPermit<Job>>,
    bytes: u64,
    counter: Arc<AtomicU64>,
}

impl Reservation {
    fn send(mut self, job: Job) {
        if let Some(slot) = self.slot.take() {
            // From now on the bytes are the job's, released when a worker takes it.
            self.bytes = 0;
            slot.send(job);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// The queue's state.
pub struct Jobs {
    tx: mpsc::Sender<Job>,
    rx: tokio::sync::Mutex<mpsc::Receiver<Job>>,
    /// Trace writes, for the group-commit writer.
    writes: mpsc::Sender<(TraceOp, Reply)>,
    writes_rx: std::sync::Mutex<Option<mpsc::Receiver<(TraceOp, Reply)>>>,
    capacity: usize,
    queued_bytes: Arc<AtomicU64>,
    busy: AtomicU32,
    accepting: AtomicBool,
}

impl Jobs {
    pub fn new(buffer_size: u32) -> Jobs {
        let capacity = usize::try_from(buffer_size).unwrap_or(1).max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let (writes, writes_rx) = mpsc::channel(4 * MAX_GROUP);
        Jobs {
            tx,
            rx: tokio::sync::Mutex::new(rx),
            writes,
            writes_rx: std::sync::Mutex::new(Some(writes_rx)),
            capacity,
            queued_bytes: Arc::new(AtomicU64::new(0)),
            busy: AtomicU32::new(0),
            accepting: AtomicBool::new(true),
        }
    }

    /// Jobs waiting to run.
    pub fn depth(&self) -> usize {
        self.capacity.saturating_sub(self.tx.capacity())
    }

    pub fn queued_bytes(&self) -> u64 {
        self.queued_bytes.load(Ordering::Relaxed)
    }

    pub fn busy(&self) -> u32 {
        self.busy.load(Ordering::Relaxed)
    }

    /// No more submissions (shutdown); the queue drains.
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    /// A slot and `bytes` of the queue's memory, or why not.
    fn reserve(&self, bytes: u64, max_bytes: u64) -> Result<Reservation> {
        let before = self.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        // Gives the bytes back if no slot is found.
        let mut reservation = Reservation {
            slot: None,
            bytes,
            counter: self.queued_bytes.clone(),
        };
        if before.saturating_add(bytes) > max_bytes {
            crate::traffic::rejected("queue_memory");
            return Err(Error::Overloaded(format!(
                "the async queue holds its limit of {max_bytes} bytes of input; retry shortly"
            )));
        }
        match self.tx.clone().try_reserve_owned() {
            Ok(slot) => {
                reservation.slot = Some(slot);
                Ok(reservation)
            }
            Err(_) => {
                crate::traffic::rejected("queue_full");
                Err(Error::Overloaded(format!(
                    "the async queue is full ({} jobs waiting); retry shortly",
                    self.capacity
                )))
            }
        }
    }

    fn release(&self, bytes: u64) {
        self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }
}

impl Service {
    /// Submits a job for `ruleset` of `tenant`; `bytes` is what it holds in memory.
    /// Returns its trace id; the trace is `pending` and durable.
    pub async fn submit_async(
        self: &Arc<Self>,
        tenant: &str,
        ruleset: &str,
        input: JobInput,
        bytes: u64,
    ) -> Result<String> {
        let jobs = &self.jobs;
        if !jobs.accepting.load(Ordering::SeqCst) || self.is_shutting_down() {
            return Err(Error::Unavailable(
                "shutting down: no new async jobs are accepted".into(),
            ));
        }
        if let JobInput::Many(inputs) = &input
            && inputs.len() > MAX_ASYNC_BATCH
        {
            return Err(Error::BadRequest(format!(
                "an async batch holds at most {MAX_ASYNC_BATCH} inputs, got {}",
                inputs.len()
            )));
        }
        self.store()?;
        let max_bytes = self.config().queue.max_queue_memory_bytes;
        let slot = jobs.reserve(bytes, max_bytes)?;
        let trace = Trace {
            id: uuid::Uuid::new_v4().to_string(),
            tenant_id: tenant.to_string(),
            ruleset: ruleset.to_string(),
            status: TraceStatus::Pending,
            batch: matches!(input, JobInput::Many(_)),
            inputs: input.count() as u64,
            input: input.to_json()?,
            result: None,
            error: None,
            attempts: 0,
            dlq: None,
            next_retry_at_ms: None,
            instance: self.instance_id.clone(),
            created_at_ms: now_ms(),
            started_at_ms: None,
            finished_at_ms: None,
        };
        let id = trace.id.clone();
        let job = Job {
            id: id.clone(),
            tenant: tenant.to_string(),
            ruleset: ruleset.to_string(),
            input,
            bytes,
        };
        // Once the trace is written its job must be queued, even if the client goes
        // away meanwhile (which drops this future): both happen in a task of their own.
        let svc = self.clone();
        tokio::spawn(async move {
            svc.write_trace(TraceOp::Insert(Box::new(trace))).await?;
            slot.send(job);
            Ok::<(), Error>(())
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        Ok(id)
    }

    /// One trace write, committed with whatever others are waiting (one sync to disk
    /// for all of them).
    async fn write_trace(&self, op: TraceOp) -> Result<OpResult> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let stopped = || Error::Unavailable("the trace writer has stopped".into());
        self.jobs
            .writes
            .send((op, reply))
            .await
            .map_err(|_| stopped())?;
        match answer.await.map_err(|_| stopped())? {
            Ok(result) => Ok(result),
            Err((message, true)) => Err(Error::Unavailable(message)),
            Err((message, false)) => Err(Error::Internal(message)),
        }
    }

    /// The group-commit writer: takes every trace write waiting, applies them in one
    /// transaction, answers each.
    async fn write_traces(self: Arc<Self>, mut rx: mpsc::Receiver<(TraceOp, Reply)>) {
        let mut group = Vec::with_capacity(MAX_GROUP);
        while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
            let (ops, replies): (Vec<TraceOp>, Vec<Reply>) = group.drain(..).unzip();
            let applied = match self.store() {
                Ok(store) => store
                    .apply_trace_ops(&ops)
                    .await
                    .map_err(|e| (e.to_string(), e.is_unreachable())),
                Err(e) => Err((e.to_string(), true)),
            };
            match applied {
                Ok(results) => {
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(Ok(result));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// A trace of `tenant`.
    pub async fn trace(&self, tenant: &str, id: &str) -> Result<Trace> {
        self.store()?
            .trace(id)
            .await?
            .filter(|t| t.tenant_id == tenant)
            .ok_or_else(|| Error::NotFound(format!("trace '{id}' not found")))
    }

    pub async fn traces(&self, filter: &TraceFilter) -> Result<Vec<Trace>> {
        Ok(self.store()?.traces(filter).await?)
    }

    /// Puts a dead-letter entry back in the queue, whatever its state.
    pub async fn replay(self: &Arc<Self>, id: &str) -> Result<Trace> {
        let store = self.store()?;
        let trace = store
            .trace(id)
            .await?
            .filter(|t| t.dlq.is_some())
            .ok_or_else(|| Error::NotFound(format!("no dead-letter entry '{id}'")))?;
        let input = JobInput::of_trace(&trace)?;
        let bytes = trace.input.len() as u64;
        let slot = self
            .jobs
            .reserve(bytes, self.config().queue.max_queue_memory_bytes)?;
        let job = Job {
            id: trace.id.clone(),
            tenant: trace.tenant_id.clone(),
            ruleset: trace.ruleset.clone(),
            input,
            bytes,
        };
        // As for a submission: requeued means queued, whatever the client does.
        let svc = self.clone();
        let requeued = tokio::spawn(async move {
            let requeued = svc.store()?.requeue_trace(&job.id, None).await?;
            if requeued {
                slot.send(job);
            }
            Ok::<bool, Error>(requeued)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        if !requeued {
            return Err(Error::NotFound(format!("no dead-letter entry '{id}'")));
        }
        Ok(Trace {
            status: TraceStatus::Pending,
            dlq: None,
            next_retry_at_ms: None,
            ..trace
        })
    }

    /// Deletes dead-letter entries: one, or all (in `state`). How many went.
    pub async fn purge_dlq(&self, id: Option<&str>, state: Option<DlqState>) -> Result<u64> {
        let purged = self.store()?.purge_dlq(id, state).await?;
        if let (Some(id), 0) = (id, purged) {
            return Err(Error::NotFound(format!("no dead-letter entry '{id}'")));
        }
        Ok(purged)
    }

    /// Starts the workers, the dead-letter poller and the trace cleaner, after taking
    /// back the jobs a previous run of this instance left unfinished.
    pub fn start_jobs(self: &Arc<Self>) {
        let writes = self
            .jobs
            .writes_rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(rx) = writes {
            let svc = self.clone();
            tokio::spawn(async move { svc.write_traces(rx).await });
        }
        let workers = self.config().queue.workers.max(1);
        for _ in 0..workers {
            let svc = self.clone();
            tokio::spawn(async move { svc.work().await });
        }
        let svc = self.clone();
        tokio::spawn(async move {
            // Nothing can be recovered or retried before the store is attached.
            while !svc.is_attached() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            svc.recover_jobs().await;
            svc.run_upkeep().await;
        });
    }

    /// The dead-letter poller and the trace cleaner.
    async fn run_upkeep(self: Arc<Self>) {
        let svc = self.clone();
        tokio::spawn(async move {
            loop {
                let every = svc.config().queue.dlq_poll_interval_secs.max(1);
                tokio::time::sleep(Duration::from_secs(every)).await;
                if let Err(e) = svc.retry_due().await {
                    tracing::warn!(error = %e, "dead-letter retries postponed");
                }
            }
        });
        let svc = self.clone();
        tokio::spawn(async move {
            loop {
                let every = svc.config().queue.trace_cleanup_interval_secs.max(1);
                tokio::time::sleep(Duration::from_secs(every)).await;
                if let Err(e) = svc.clean_traces().await {
                    tracing::warn!(error = %e, "old traces not deleted");
                }
            }
        });
    }

    /// Takes back the jobs a previous run left unfinished: a pending one is queued
    /// again; a running one was interrupted, which counts as a failed attempt (retried like any failure). On
    /// SQLite and in memory every such job is this instance's; on PostgreSQL only those
    /// it submitted itself (a stable `instance_id` keeps them across restarts).
    async fn recover_jobs(&self) {
        let Ok(store) = self.store() else { return };
        let mine_only = matches!(store, crate::store::Store::Postgres(_));
        for status in [TraceStatus::Running, TraceStatus::Pending] {
            let filter = TraceFilter {
                status: Some(status),
                limit: u32::MAX,
                ..TraceFilter::default()
            };
            let found = match store.traces(&filter).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(error = %e, "unfinished async jobs not recovered");
                    return;
                }
            };
            // Only jobs submitted before this process started: the API may already be
            // taking new ones, which are not left over.
            for trace in found.into_iter().filter(|t| {
                t.created_at_ms < self.booted_ms && (!mine_only || t.instance == self.instance_id)
            }) {
                let outcome = match status {
                    TraceStatus::Running => {
                        let failed = self.failure(
                            trace.attempts,
                            "interrupted: the instance stopped while running it".into(),
                        );
                        store
                            .apply_trace_ops(&[TraceOp::Finish {
                                id: trace.id.clone(),
                                finish: failed,
                            }])
                            .await
                            .map(|_| "interrupted")
                    }
                    _ => match self.enqueue_stored(&trace) {
                        Ok(()) => Ok("queued again"),
                        Err(e) => {
                            tracing::warn!(trace_id = %trace.id, error = %e, "pending job not queued again");
                            continue;
                        }
                    },
                };
                match outcome {
                    Ok(what) => {
                        tracing::info!(trace_id = %trace.id, outcome = what, "unfinished async job recovered")
                    }
                    Err(e) => {
                        tracing::warn!(trace_id = %trace.id, error = %e, "unfinished async job not recovered")
                    }
                }
            }
        }
    }

    /// Queues a stored pending job (recovery, a due retry).
    fn enqueue_stored(&self, trace: &Trace) -> Result<()> {
        let input = JobInput::of_trace(trace)?;
        let bytes = trace.input.len() as u64;
        let slot = self
            .jobs
            .reserve(bytes, self.config().queue.max_queue_memory_bytes)?;
        slot.send(Job {
            id: trace.id.clone(),
            tenant: trace.tenant_id.clone(),
            ruleset: trace.ruleset.clone(),
            input,
            bytes,
        });
        Ok(())
    }

    /// One worker: takes jobs until the queue closes, up to [`TAKE`] at a time.
    async fn work(self: Arc<Self>) {
        let mut taken = Vec::with_capacity(TAKE);
        loop {
            {
                let mut rx = self.jobs.rx.lock().await;
                if rx.recv_many(&mut taken, TAKE).await == 0 {
                    return;
                }
            }
            for job in &taken {
                self.jobs.release(job.bytes);
            }
            self.jobs.busy.fetch_add(1, Ordering::AcqRel);
            if let Err(e) = self.clone().run_jobs(std::mem::take(&mut taken)).await {
                tracing::error!(error = %e, "async jobs not recorded");
            }
            self.jobs.busy.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Sends trace writes to the group-commit writer, then waits for each: writes
    /// sent together are committed together.
    async fn write_traces_together(&self, ops: Vec<TraceOp>) -> Result<Vec<OpResult>> {
        let stopped = || Error::Unavailable("the trace writer has stopped".into());
        let mut answers = Vec::with_capacity(ops.len());
        for op in ops {
            let (reply, answer) = tokio::sync::oneshot::channel();
            self.jobs
                .writes
                .send((op, reply))
                .await
                .map_err(|_| stopped())?;
            answers.push(answer);
        }
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            results.push(match answer.await.map_err(|_| stopped())? {
                Ok(result) => result,
                Err((message, true)) => return Err(Error::Unavailable(message)),
                Err((message, false)) => return Err(Error::Internal(message)),
            });
        }
        Ok(results)
    }

    /// Runs jobs taken together: their starts in one commit, then each in turn (each
    /// within `processing_timeout_ms` of its own start), then their ends in one commit.
    async fn run_jobs(self: Arc<Self>, jobs: Vec<Job>) -> Result<()> {
        let at_ms = now_ms();
        let starts = jobs
            .iter()
            .map(|job| TraceOp::Start {
                id: job.id.clone(),
                instance: self.instance_id.clone(),
                at_ms,
            })
            .collect();
        let started = self.write_traces_together(starts).await?;
        // A job not pending any more was purged, or taken by another instance.
        let runnable: Vec<(Job, u32)> = jobs
            .into_iter()
            .zip(started)
            .filter_map(|(job, attempts)| attempts.map(|a| (job, a)))
            .collect();
        if runnable.is_empty() {
            return Ok(());
        }
        let queue = self.config().queue.clone();
        let svc = self.clone();
        let timeout = Duration::from_millis(queue.processing_timeout_ms);
        let ran = tokio::task::spawn_blocking(move || {
            runnable
                .into_iter()
                .map(|(job, attempts)| {
                    let deadline = Instant::now() + timeout;
                    let result = svc.run_input(&job.tenant, &job.ruleset, &job.input, deadline);
                    (job.id, attempts, result)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
        let finishes = ran
            .into_iter()
            .map(|(id, attempts, result)| {
                let finish = match result {
                    Ok(result) if result.len() as u64 > queue.max_result_size_bytes => self
                        .failure(
                            attempts,
                            format!(
                                "the result is {} bytes, over max_result_size_bytes ({})",
                                result.len(),
                                queue.max_result_size_bytes
                            ),
                        ),
                    Ok(result) => Finish {
                        status: TraceStatus::Completed,
                        result: Some(result),
                        error: None,
                        dlq: None,
                        next_retry_at_ms: None,
                        at_ms: now_ms(),
                    },
                    Err(e) => self.failure(attempts, e.to_string()),
                };
                metrics::counter!("ordo_async_jobs_total", "status" => finish.status.as_str())
                    .increment(1);
                TraceOp::Finish { id, finish }
            })
            .collect();
        self.write_traces_together(finishes).await?;
        Ok(())
    }

    /// Runs a job's input on the current catalog: its result as JSON text.
    fn run_input(
        &self,
        tenant: &str,
        ruleset: &str,
        input: &JobInput,
        deadline: Instant,
    ) -> Result<String> {
        let catalog = self.catalog_full();
        let view = self.tenant(&catalog, Some(tenant))?;
        let entry = self.get(view, ruleset)?;
        let json = match input {
            JobInput::One(input) => {
                let done = self.execute_by(view, entry, input, false, Some(deadline));
                let done = done.map_err(|e| match e {
                    Error::DeadlineExceeded(_) => timeout_error(),
                    Error::Execution(e) if e.code() == "TIMEOUT" => timeout_error(),
                    other => other,
                })?;
                serde_json::to_string(&done)
            }
            JobInput::Many(inputs) => {
                let options = BatchOptions {
                    parallel: true,
                    deadline: Some(deadline),
                    ..BatchOptions::default()
                };
                let report = self
                    .run_batch(view, entry, inputs, options)
                    .map_err(|e| match e {
                        Error::DeadlineExceeded(_) => timeout_error(),
                        other => other,
                    })?;
                serde_json::to_string(&report)
            }
        };
        json.map_err(|e| Error::Internal(e.to_string()))
    }

    /// How a failed run ends: into the dead-letter queue, retrying while retries
    /// remain (retry n due `dlq_poll_interval_secs * 2^(n-1)` after the failure), then
    /// exhausted.
    fn failure(&self, attempts: u32, error: String) -> Finish {
        let queue = &self.config().queue;
        // `attempts` counts this run; the retries done so far are the runs before it.
        let retries_done = attempts.saturating_sub(1);
        let retry = queue.dlq_retry_enabled && retries_done < queue.dlq_max_retries;
        let now = now_ms();
        let delay_ms = i64::try_from(queue.dlq_poll_interval_secs.saturating_mul(1000))
            .unwrap_or(i64::MAX)
            .saturating_mul(1i64 << retries_done.min(20));
        Finish {
            status: TraceStatus::Failed,
            result: None,
            error: Some(error),
            dlq: Some(if retry {
                DlqState::Retrying
            } else {
                DlqState::Exhausted
            }),
            next_retry_at_ms: retry.then(|| now.saturating_add(delay_ms)),
            at_ms: now,
        }
    }

    /// Queues the dead-letter entries whose retry is due.
    async fn retry_due(&self) -> Result<()> {
        let store = self.store()?;
        let now = now_ms();
        let due = store
            .traces(&TraceFilter {
                dlq: Some(DlqState::Retrying),
                dlq_only: true,
                limit: MAX_LIST,
                ..TraceFilter::default()
            })
            .await?;
        for trace in due
            .into_iter()
            .filter(|t| t.next_retry_at_ms.is_some_and(|n| n <= now))
        {
            let input = JobInput::of_trace(&trace)?;
            let bytes = trace.input.len() as u64;
            // Room first: a job taken out of the dead-letter queue must be queued.
            let Ok(slot) = self
                .jobs
                .reserve(bytes, self.config().queue.max_queue_memory_bytes)
            else {
                return Ok(());
            };
            // Only one instance wins a due retry.
            if !store.requeue_trace(&trace.id, Some(now)).await? {
                continue;
            }
            tracing::info!(trace_id = %trace.id, retry = trace.attempts, "dead-letter entry retried");
            slot.send(Job {
                id: trace.id,
                tenant: trace.tenant_id,
                ruleset: trace.ruleset,
                input,
                bytes,
            });
        }
        Ok(())
    }

    /// Deletes completed and failed traces older than `trace_retention_hours`.
    async fn clean_traces(&self) -> Result<()> {
        let hours = self.config().queue.trace_retention_hours;
        if hours <= 0.0 || !hours.is_finite() {
            return Ok(());
        }
        // Saturating: a huge retention keeps everything.
        let age_ms = (hours * 3_600_000.0) as i64;
        let deleted = self
            .store()?
            .delete_finished(now_ms().saturating_sub(age_ms))
            .await?;
        if deleted > 0 {
            tracing::info!(deleted, "old traces deleted");
        }
        Ok(())
    }

    /// Traces by state, for metrics.
    pub async fn trace_counts(&self) -> Result<crate::store::traces::TraceCounts> {
        Ok(self.store()?.trace_counts().await?)
    }

    /// The queue's state, for metrics.
    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }

    /// Waits until the queue is empty and no job runs (at shutdown, bounded by the
    /// caller).
    pub async fn jobs_drained(&self) {
        while self.jobs.depth() > 0 || self.jobs.busy() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn timeout_error() -> Error {
    Error::DeadlineExceeded("timeout: the job ran past processing_timeout_ms".into())
}
