//! Executions: single, batch, expression evaluation and rule tests. All synchronous
//! and lock-free: they run on one catalog snapshot.

use std::time::{Duration, Instant};

use ordo_core::{ExecOptions, Expression, Outcome, Value};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

use super::Service;
use crate::error::{Error, Result};
use crate::projection::{Entry, TenantView};

/// Most inputs in one batch.
pub const MAX_BATCH: usize = 1000;
/// Most cases in one test request.
pub const MAX_TESTS: usize = 1000;

/// One successful execution, serialised as the API's execute response.
pub struct Executed<'r> {
    pub outcome: Outcome<'r>,
    pub duration_us: u64,
}

impl Serialize for Executed<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let o = &self.outcome;
        let mut st = s.serialize_struct("Executed", 6)?;
        st.serialize_field("code", o.code())?;
        st.serialize_field("message", o.message())?;
        st.serialize_field("output", &o.output())?;
        st.serialize_field("duration_us", &self.duration_us)?;
        if !o.logs().is_empty() {
            st.serialize_field("logs", o.logs())?;
        }
        if !o.metrics().is_empty() {
            st.serialize_field("metrics", o.metrics())?;
        }
        if let Some(trace) = o.trace() {
            st.serialize_field("trace", trace)?;
        }
        st.end()
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchOptions {
    pub parallel: bool,
    pub trace: bool,
    pub stop_on_error: bool,
    /// When the caller stops waiting (a gRPC deadline): each execution is capped by
    /// the time left, and the batch ends with `DeadlineExceeded` once it passes.
    #[serde(skip)]
    pub deadline: Option<Instant>,
}

/// One case of a rule test.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub input: Value,
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Expect {
    pub code: Option<String>,
    pub message: Option<String>,
    /// The whole output must equal this object.
    pub output: Option<Value>,
    /// Each of these keys must be in the output with this value.
    pub output_includes: Option<Value>,
    /// The execution must fail with an error message containing this text.
    pub error_contains: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TestReport {
    pub total: usize,
    pub passed: usize,
    pub failed: usize,
    pub results: Vec<TestResult>,
}

#[derive(Debug, Serialize)]
pub struct TestResult {
    pub name: String,
    /// PASS, FAIL (an expectation not met) or ERROR (the execution failed unexpectedly).
    pub status: &'static str,
    pub duration_us: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct BatchReport {
    pub results: Vec<serde_json::Value>,
    pub summary: BatchSummary,
}

#[derive(Debug, Serialize)]
pub struct BatchSummary {
    pub total: usize,
    pub success: usize,
    pub failed: usize,
    /// Inputs not run because `stop_on_error` stopped the batch.
    pub skipped: usize,
    pub total_duration_us: u64,
}

#[derive(Debug, Serialize)]
pub struct EvalResult {
    pub result: Value,
    /// The expression as the engine understood it (canonical text).
    pub parsed: String,
}

fn micros(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// The error of work whose caller's deadline passed.
fn deadline_exceeded() -> Error {
    Error::DeadlineExceeded("the caller's deadline passed before the work finished".into())
}

/// The time limit of one execution: the tenant's cap and the time left before
/// `deadline`, whichever is shorter.
fn time_cap(tenant: &TenantView, deadline: Option<Instant>) -> Result<Option<Duration>> {
    let own = tenant.config.execution_timeout();
    let Some(deadline) = deadline else {
        return Ok(own);
    };
    let left = deadline
        .checked_duration_since(Instant::now())
        .filter(|left| !left.is_zero())
        .ok_or_else(deadline_exceeded)?;
    Ok(Some(own.map_or(left, |own| own.min(left))))
}

impl Service {
    /// Runs one execution. The tenant's execution timeout caps the ruleset's own.
    #[inline]
    pub fn execute<'r>(
        &self,
        tenant: &TenantView,
        entry: &'r Entry,
        input: &Value,
        trace: bool,
    ) -> Result<Executed<'r>> {
        self.execute_by(tenant, entry, input, trace, None)
    }

    /// Runs one execution that must end by `deadline` (the caller's), if given.
    #[inline]
    pub fn execute_by<'r>(
        &self,
        tenant: &TenantView,
        entry: &'r Entry,
        input: &Value,
        trace: bool,
        deadline: Option<Instant>,
    ) -> Result<Executed<'r>> {
        let options = ExecOptions {
            trace,
            timeout: time_cap(tenant, deadline)?,
        };
        let started = Instant::now();
        let compiled = entry
            .compiled()
            .map_err(|e| Error::Internal(e.to_string()))?;
        let result = compiled.rules.execute_with(input, &options);
        let elapsed = started.elapsed();
        let metrics = entry.metrics();
        metrics.duration.record(elapsed);
        match result {
            Ok(outcome) => {
                metrics.ok.increment(1);
                Ok(Executed {
                    outcome,
                    duration_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
                })
            }
            Err(e) => {
                metrics.failed.increment(1);
                Err(Error::Execution(e))
            }
        }
    }

    fn batch_item(
        &self,
        tenant: &TenantView,
        entry: &Entry,
        input: &Value,
        options: BatchOptions,
    ) -> (bool, serde_json::Value) {
        match self.execute_by(tenant, entry, input, options.trace, options.deadline) {
            Ok(done) => (true, serde_json::to_value(&done).unwrap_or_default()),
            Err(Error::Execution(e)) => (
                false,
                serde_json::json!({
                    "code": "error",
                    "message": e.to_string(),
                    "output": null,
                    "error": e.to_string(),
                    "error_code": e.code(),
                    "step": e.step(),
                }),
            ),
            Err(e) => (
                false,
                serde_json::json!({"code": "error", "message": e.to_string(), "output": null, "error": e.to_string()}),
            ),
        }
    }

    /// Runs a batch, in input order either way. Blocking: call it off the async workers
    /// when it is big.
    pub fn batch(
        &self,
        tenant: &TenantView,
        entry: &Entry,
        inputs: &[Value],
        options: BatchOptions,
    ) -> Result<BatchReport> {
        if inputs.len() > MAX_BATCH {
            return Err(Error::BadRequest(format!(
                "a batch holds at most {MAX_BATCH} inputs, got {}",
                inputs.len()
            )));
        }
        self.run_batch(tenant, entry, inputs, options)
    }

    /// Runs a batch of any size (an async job's).
    pub(super) fn run_batch(
        &self,
        tenant: &TenantView,
        entry: &Entry,
        inputs: &[Value],
        options: BatchOptions,
    ) -> Result<BatchReport> {
        let started = Instant::now();
        let items: Vec<(bool, serde_json::Value)> = if options.parallel && !options.stop_on_error {
            let threads = crate::parallel::cores();
            let chunk = inputs.len().div_ceil(threads).max(1);
            std::thread::scope(|scope| {
                let handles: Vec<_> = inputs
                    .chunks(chunk)
                    .map(|part| {
                        scope.spawn(move || {
                            part.iter()
                                .map(|input| self.batch_item(tenant, entry, input, options))
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_default())
                    .collect()
            })
        } else {
            let mut items = Vec::with_capacity(inputs.len());
            for input in inputs {
                let item = self.batch_item(tenant, entry, input, options);
                let failed = !item.0;
                items.push(item);
                if failed && options.stop_on_error {
                    break;
                }
            }
            items
        };
        // Items past the deadline failed without running; the caller has stopped waiting.
        if options.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(deadline_exceeded());
        }
        if items.len() < inputs.len() && !options.stop_on_error {
            return Err(Error::Internal("a batch worker failed".into()));
        }
        let success = items.iter().filter(|(ok, _)| *ok).count();
        let failed = items.len() - success;
        Ok(BatchReport {
            summary: BatchSummary {
                total: inputs.len(),
                success,
                failed,
                skipped: inputs.len() - items.len(),
                total_duration_us: micros(started),
            },
            results: items.into_iter().map(|(_, v)| v).collect(),
        })
    }

    /// Evaluates one expression against a context.
    pub fn eval(&self, expression: &str, context: &Value) -> Result<EvalResult> {
        let parsed = Expression::parse(expression).map_err(|e| Error::BadRequest(e.to_string()))?;
        let result = parsed
            .eval(context)
            .map_err(|e| Error::Eval(e.to_string()))?;
        Ok(EvalResult {
            result,
            parsed: parsed.ast().to_string(),
        })
    }

    /// Runs test cases against a ruleset.
    pub fn run_tests(
        &self,
        tenant: &TenantView,
        entry: &Entry,
        cases: &[TestCase],
    ) -> Result<TestReport> {
        if cases.len() > MAX_TESTS {
            return Err(Error::BadRequest(format!(
                "at most {MAX_TESTS} tests per request, got {}",
                cases.len()
            )));
        }
        let results: Vec<TestResult> = cases
            .iter()
            .enumerate()
            .map(|(i, case)| self.run_test(tenant, entry, i, case))
            .collect();
        let passed = results.iter().filter(|r| r.status == "PASS").count();
        Ok(TestReport {
            total: results.len(),
            passed,
            failed: results.len() - passed,
            results,
        })
    }

    fn run_test(
        &self,
        tenant: &TenantView,
        entry: &Entry,
        index: usize,
        case: &TestCase,
    ) -> TestResult {
        let started = Instant::now();
        let name = if case.name.is_empty() {
            format!("test {}", index + 1)
        } else {
            case.name.clone()
        };
        let expect = &case.expect;
        let mut failures = Vec::new();
        let (actual, error) = match self.execute(tenant, entry, &case.input, false) {
            Ok(done) => {
                let o = &done.outcome;
                if let Some(want) = &expect.error_contains {
                    failures.push(format!(
                        "expected an error containing '{want}', but the execution succeeded"
                    ));
                }
                if let Some(code) = &expect.code
                    && code != o.code()
                {
                    failures.push(format!("code: expected '{code}', got '{}'", o.code()));
                }
                if let Some(message) = &expect.message
                    && message != o.message()
                {
                    failures.push(format!(
                        "message: expected '{message}', got '{}'",
                        o.message()
                    ));
                }
                let output = o.output().to_value();
                if let Some(want) = &expect.output
                    && *want != output
                {
                    failures.push(format!(
                        "output: expected {}, got {}",
                        want.to_json_string(),
                        output.to_json_string()
                    ));
                }
                if let Some(want) = &expect.output_includes {
                    match want.as_object() {
                        Some(keys) => {
                            for (k, v) in keys {
                                match output.get(k) {
                                    Some(got) if got == v => {}
                                    Some(got) => failures.push(format!(
                                        "output.{k}: expected {}, got {}",
                                        v.to_json_string(),
                                        got.to_json_string()
                                    )),
                                    None => failures.push(format!("output.{k}: missing")),
                                }
                            }
                        }
                        None => failures.push("output_includes must be an object".to_string()),
                    }
                }
                (
                    Some(
                        serde_json::json!({"code": o.code(), "message": o.message(), "output": output}),
                    ),
                    None,
                )
            }
            Err(e) => {
                let message = e.to_string();
                match &expect.error_contains {
                    Some(want) if message.contains(want.as_str()) => {}
                    Some(want) => failures.push(format!(
                        "error: expected it to contain '{want}', got '{message}'"
                    )),
                    None => {
                        return TestResult {
                            name,
                            status: "ERROR",
                            duration_us: micros(started),
                            failures,
                            actual: None,
                            error: Some(message),
                        };
                    }
                }
                (None, Some(message))
            }
        };
        TestResult {
            name,
            status: if failures.is_empty() { "PASS" } else { "FAIL" },
            duration_us: micros(started),
            failures,
            actual,
            error,
        }
    }
}
