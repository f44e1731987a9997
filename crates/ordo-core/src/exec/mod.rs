//! The executor: walks a compiled flow from its entry step to a terminal.
//!
//! An execution is bounded by the ruleset's `max_depth` (steps, sub-rule steps included)
//! and its `timeout_ms`. Step indices were validated at compile time, so the walk never
//! looks anything up by name.

mod clock;
mod outcome;

use std::time::Duration;

use smallvec::SmallVec;

pub use outcome::{LogRecord, MetricRecord, Outcome, Output, Trace, TraceStep};

use outcome::{Extras, TraceSteps};

use crate::error::{EvalError, ExecError, ExecErrorKind};
use crate::expr::FieldMissing;
use crate::expr::node::{Env, NULL};
use crate::rule::compiled::{
    Action, ChildValue, CompiledRuleSet, Decision, Graph, Kind, OutputValue, Segment, Step,
    Terminal,
};
use crate::value::{Str, Value};

static DEFAULT_OPTIONS: ExecOptions = ExecOptions {
    trace: false,
    timeout: None,
};

/// Per-call options.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Record a trace (always on when the ruleset sets `enable_trace`).
    pub trace: bool,
    /// A cap on the ruleset's own `timeout_ms`, such as a tenant's execution limit.
    pub timeout: Option<Duration>,
}

/// Variable slots: a handful live on the stack.
type Vars = SmallVec<[Option<Value>; 4]>;

/// Output values: up to four live inside the outcome, so a typical execution
/// allocates nothing at all.
pub(crate) type Values = SmallVec<[Value; 4]>;

#[inline(always)]
fn new_vars(n: usize) -> Vars {
    if n <= 4 {
        Vars::from_buf_and_len([None, None, None, None], n)
    } else {
        std::iter::repeat_n(None, n).collect()
    }
}

impl CompiledRuleSet {
    /// Executes against `input` with default options.
    #[inline]
    pub fn execute<'r>(&'r self, input: &Value) -> Result<Outcome<'r>, ExecError> {
        self.execute_with(input, &DEFAULT_OPTIONS)
    }

    /// Executes against `input`.
    ///
    /// Always inlined: the outcome is then built directly where the caller keeps it,
    /// instead of being copied out of this frame.
    #[inline(always)]
    pub fn execute_with<'r>(
        &'r self,
        input: &Value,
        opts: &ExecOptions,
    ) -> Result<Outcome<'r>, ExecError> {
        let cap_ms = opts.timeout.map_or(0, |d| {
            // A cap below one millisecond still caps.
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
        });
        let limit_ms = match (self.timeout_ms, cap_ms) {
            (0, cap) => cap,
            (own, 0) => own,
            (own, cap) => own.min(cap),
        };
        let mut run = Run {
            rule: self,
            steps: 0,
            deadline: (limit_ms > 0).then(|| Deadline {
                end: clock::now().after_ms(limit_ms),
                limit_ms,
            }),
            trace: (opts.trace || self.enable_trace).then(|| Tracer {
                steps: TraceSteps::new(),
                last: quanta::Instant::now(),
            }),
            records: None,
        };
        let mut vars = new_vars(self.main.vars);
        // Built in place and filled by the walk, so the output values are not moved.
        let mut out = Outcome {
            terminal: &self.placeholder,
            values: Values::new(),
            extras: None,
        };
        out.terminal = run.flow(&self.main, input, &[], &mut vars, &mut out.values)?;
        if let Some(tracer) = run.trace {
            run.records.get_or_insert_default().trace = Some(Trace {
                steps: tracer.steps,
            });
        }
        out.extras = run.records;
        Ok(out)
    }
}

struct Deadline {
    end: clock::Stamp,
    limit_ms: u64,
}

struct Run<'r> {
    rule: &'r CompiledRuleSet,
    /// Steps executed so far, across sub-rules.
    steps: u32,
    deadline: Option<Deadline>,
    trace: Option<Tracer<'r>>,
    /// Logs and metrics, allocated when the first one is recorded.
    records: Option<Box<Extras<'r>>>,
}

/// What stays fixed while one flow runs; with the variables, it makes an `Env`.
struct Frame<'a> {
    input: &'a Value,
    overlay: &'a [(Str, Value)],
    missing: FieldMissing,
}

impl<'a> Frame<'a> {
    #[inline(always)]
    fn env<'e>(&'e self, vars: &'e [Option<Value>]) -> Env<'e> {
        Env {
            input: self.input,
            overlay: self.overlay,
            vars,
            missing: self.missing,
        }
    }
}

/// Trace steps being recorded, and the clock reading that ended the last one: one
/// reading per step boundary times every step.
struct Tracer<'r> {
    steps: TraceSteps<'r>,
    last: quanta::Instant,
}

impl<'r> Run<'r> {
    fn fail(&self, g: &Graph, step: &Step, kind: impl Into<ExecErrorKind>) -> ExecError {
        ExecError::new(
            step.id.to_string(),
            g.name.as_ref().map(Str::to_string),
            kind.into(),
        )
    }

    fn flow(
        &mut self,
        g: &'r Graph,
        input: &Value,
        overlay: &[(Str, Value)],
        vars: &mut Vars,
        values: &mut Values,
    ) -> Result<&'r Terminal, ExecError> {
        let missing = self.rule.missing;
        let frame = Frame {
            input,
            overlay,
            missing,
        };
        let mut idx = g.entry;
        let first = self.steps;
        loop {
            // Indices come from compile-time validation and are always in range.
            #[allow(clippy::indexing_slicing)]
            let step = &g.steps[idx];
            self.steps += 1;
            if self.steps > self.rule.max_depth {
                return Err(self.fail(
                    g,
                    step,
                    ExecErrorKind::MaxDepthExceeded {
                        limit: self.rule.max_depth,
                    },
                ));
            }
            // The clock is read before every step but the first: a flow of any length is
            // held to its deadline, and a one-step flow pays for no clock read at all.
            if let Some(d) = self.deadline.as_ref().filter(|_| self.steps > first + 1)
                && clock::now() > d.end
            {
                let limit_ms = d.limit_ms;
                return Err(self.fail(g, step, ExecErrorKind::Timeout { limit_ms }));
            }
            let started = self.trace.as_ref().map(|t| t.last);
            let (next, branch) = match &step.kind {
                Kind::Decision(d) => {
                    let env = frame.env(vars);
                    match choose(d, &env).map_err(|e| self.fail(g, step, e))? {
                        Some(b) => {
                            #[allow(clippy::indexing_slicing)]
                            let branch = &d.branches[b];
                            self.actions(&branch.actions, step, &frame, vars)
                                .map_err(|e| self.fail(g, step, e))?;
                            (branch.next, Some(b))
                        }
                        None => match d.default {
                            Some(n) => (n, None),
                            None => {
                                return Err(self.fail(g, step, ExecErrorKind::NoMatchingBranch));
                            }
                        },
                    }
                }
                Kind::Action { actions, next } => {
                    self.actions(actions, step, &frame, vars)
                        .map_err(|e| self.fail(g, step, e))?;
                    (*next, None)
                }
                Kind::Terminal(t) => {
                    let env = frame.env(vars);
                    for v in t.values.iter() {
                        values.push(match v {
                            OutputValue::Const(c) => c.clone(),
                            OutputValue::Path(p) => {
                                p.read(&env).map_err(|e| self.fail(g, step, e))?.clone()
                            }
                            OutputValue::Expr(n) => n
                                .eval(&env)
                                .map_err(|e| self.fail(g, step, e))?
                                .into_owned(),
                        });
                    }
                    if started.is_some() {
                        self.record(g, step, started, None, None);
                    }
                    return Ok(t);
                }
                Kind::SubRule(call) => {
                    let env = frame.env(vars);
                    let mut child_overlay = Vec::with_capacity(call.bindings.len() + overlay.len());
                    for (k, n) in call.bindings.iter() {
                        let v = n.eval(&env).map_err(|e| self.fail(g, step, e))?;
                        child_overlay.push((k.clone(), v.into_owned()));
                    }
                    child_overlay.extend_from_slice(overlay);
                    #[allow(clippy::indexing_slicing)]
                    let child = &self.rule.subs[call.graph];
                    // The calling step goes into the trace before the sub-rule's steps;
                    // its duration, which includes them, is filled in afterwards.
                    let entry =
                        started.map(|_| self.record(g, step, started, None, Some(call.next)));
                    let mut child_vars = new_vars(child.vars);
                    let mut child_values = Values::new();
                    let end = self.flow(
                        child,
                        input,
                        &child_overlay,
                        &mut child_vars,
                        &mut child_values,
                    )?;
                    let end_output = Output {
                        keys: &end.keys,
                        values: &child_values,
                    };
                    for (slot, source) in call.outputs.iter() {
                        let (value, name) = match source {
                            ChildValue::Var { slot, name } => (
                                child_vars
                                    .get(*slot)
                                    .cloned()
                                    .flatten()
                                    .or_else(|| end_output.get(name).cloned()),
                                name,
                            ),
                            ChildValue::Output(k) => (end_output.get(k).cloned(), k),
                        };
                        let value = match (value, missing) {
                            (Some(v), _) => v,
                            (None, FieldMissing::Default) => Value::Null,
                            (None, _) => {
                                return Err(self.fail(
                                    g,
                                    step,
                                    EvalError::missing(format_sub_field(child, name)),
                                ));
                            }
                        };
                        if let Some(var) = vars.get_mut(*slot) {
                            *var = Some(value);
                        }
                    }
                    if let (Some(i), Some(t0)) = (entry.flatten(), started) {
                        self.finish(i, t0);
                    }
                    idx = call.next;
                    continue;
                }
            };
            if started.is_some() {
                self.record(g, step, started, branch, Some(next));
            }
            idx = next;
        }
    }

    #[cold]
    fn records(&mut self) -> &mut Extras<'r> {
        self.records.get_or_insert_default()
    }

    #[inline(always)]
    fn actions(
        &mut self,
        actions: &'r [Action],
        step: &'r Step,
        frame: &Frame<'_>,
        vars: &mut Vars,
    ) -> Result<(), EvalError> {
        for a in actions {
            match a {
                Action::SetConst { slot, value } => {
                    if let Some(var) = vars.get_mut(*slot) {
                        *var = Some(value.clone());
                    }
                }
                Action::Set { slot, value } => {
                    let env = frame.env(vars);
                    let v = value.eval(&env)?.into_owned();
                    if let Some(var) = vars.get_mut(*slot) {
                        *var = Some(v);
                    }
                }
                Action::Log { level, message } => self.records().logs.push(LogRecord {
                    step: &step.id,
                    level: *level,
                    message,
                }),
                Action::Metric { name, value, tags } => {
                    let env = frame.env(vars);
                    let value = value.eval(&env)?.into_owned();
                    self.records().metrics.push(MetricRecord {
                        step: &step.id,
                        name,
                        value,
                        tags,
                    });
                }
            }
        }
        Ok(())
    }

    /// Sets the duration of trace entry `i` to the time from `t0` to the end of the last
    /// step recorded (a sub-rule step lasts until its sub-rule's last step ends).
    #[cold]
    fn finish(&mut self, i: usize, t0: quanta::Instant) {
        if let Some(tracer) = self.trace.as_mut() {
            let end = tracer.last;
            if let Some(entry) = tracer.steps.get_mut(i) {
                entry.duration_ns = nanos(end.saturating_duration_since(t0));
            }
        }
    }

    /// Appends a trace entry for `step`, timed from `started`; returns its index.
    #[cold]
    fn record(
        &mut self,
        g: &'r Graph,
        step: &'r Step,
        started: Option<quanta::Instant>,
        branch: Option<usize>,
        next: Option<usize>,
    ) -> Option<usize> {
        let tracer = self.trace.as_mut()?;
        let t0 = started?;
        let now = quanta::Instant::now();
        tracer.last = now;
        let trace = &mut tracer.steps;
        {
            trace.push(TraceStep {
                id: &step.id,
                name: step.name.as_deref(),
                sub_rule: g.name.as_deref(),
                kind: match step.kind {
                    Kind::Decision(_) => "decision",
                    Kind::Action { .. } => "action",
                    Kind::Terminal(_) => "terminal",
                    Kind::SubRule(_) => "sub_rule",
                },
                duration_ns: nanos(now.saturating_duration_since(t0)),
                branch,
                next: next.and_then(|n| g.steps.get(n)).map(|s| s.id.as_str()),
            });
        }
        Some(trace.len() - 1)
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().try_into().unwrap_or(u64::MAX)
}

fn format_sub_field(child: &Graph, name: &str) -> Str {
    smol_str::format_smolstr!("{}::${name}", child.name.as_deref().unwrap_or_default())
}

/// The index of the first branch whose condition holds.
fn choose(d: &Decision, env: &Env<'_>) -> Result<Option<usize>, EvalError> {
    for seg in d.plan.iter() {
        match seg {
            Segment::Scan(range) => {
                for i in range.clone() {
                    let matched = match d.branches.get(i).and_then(|b| b.cond.as_ref()) {
                        None => true,
                        Some(cond) => cond.eval_condition(env)?,
                    };
                    if matched {
                        return Ok(Some(i));
                    }
                }
            }
            Segment::Switch { path, table } => {
                let key = match path.resolve(env) {
                    Some(v) => Some(v),
                    None => match env.missing {
                        FieldMissing::Lenient => None,
                        FieldMissing::Strict => {
                            return Err(EvalError::missing(path.text()));
                        }
                        FieldMissing::Default => Some(&NULL),
                    },
                };
                if let Some(&i) = key.and_then(|k| table.get(k)) {
                    return Ok(Some(i));
                }
            }
        }
    }
    Ok(None)
}
