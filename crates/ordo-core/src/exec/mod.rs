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

use outcome::Extras;

use crate::error::{EvalError, ExecError, ExecErrorKind};
use crate::expr::FieldMissing;
use crate::expr::node::{Env, NULL};
use crate::rule::compiled::{
    Action, ChildValue, CompiledRuleSet, Decision, Graph, Kind, OutputValue, Segment, Step,
    Terminal,
};
use crate::value::{Str, Value};

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
    pub fn execute<'r>(&'r self, input: &Value) -> Result<Outcome<'r>, ExecError> {
        self.execute_with(input, &ExecOptions::default())
    }

    /// Executes against `input`.
    pub fn execute_with<'r>(
        &'r self,
        input: &Value,
        opts: &ExecOptions,
    ) -> Result<Outcome<'r>, ExecError> {
        let rule_limit = (self.timeout_ms > 0).then(|| Duration::from_millis(self.timeout_ms));
        let limit = match (rule_limit, opts.timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut run = Run {
            rule: self,
            steps: 0,
            deadline: limit.map(|limit| Deadline {
                end: clock::now().after(limit),
                limit_ms: limit.as_millis().try_into().unwrap_or(u64::MAX),
            }),
            trace: (opts.trace || self.enable_trace).then(Vec::new),
            logs: Vec::new(),
            metrics: Vec::new(),
        };
        let mut vars = new_vars(self.main.vars);
        let mut values = Values::new();
        let terminal = run.flow(&self.main, input, &[], &mut vars, &mut values)?;
        let extras =
            (run.trace.is_some() || !run.logs.is_empty() || !run.metrics.is_empty()).then(|| {
                Box::new(Extras {
                    logs: run.logs,
                    metrics: run.metrics,
                    trace: run.trace.map(|steps| Trace { steps }),
                })
            });
        Ok(Outcome {
            terminal,
            values,
            extras,
        })
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
    trace: Option<Vec<TraceStep<'r>>>,
    logs: Vec<LogRecord<'r>>,
    metrics: Vec<MetricRecord<'r>>,
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
            let started = self.trace.is_some().then(quanta::Instant::now);
            let (next, branch) = match &step.kind {
                Kind::Decision(d) => {
                    let env = Env {
                        input,
                        overlay,
                        vars,
                        missing,
                    };
                    match choose(d, &env).map_err(|e| self.fail(g, step, e))? {
                        Some(b) => {
                            #[allow(clippy::indexing_slicing)]
                            let branch = &d.branches[b];
                            self.actions(&branch.actions, step, input, overlay, missing, vars)
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
                    self.actions(actions, step, input, overlay, missing, vars)
                        .map_err(|e| self.fail(g, step, e))?;
                    (*next, None)
                }
                Kind::Terminal(t) => {
                    let env = Env {
                        input,
                        overlay,
                        vars,
                        missing,
                    };
                    values.reserve(t.values.len());
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
                    let env = Env {
                        input,
                        overlay,
                        vars,
                        missing,
                    };
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

    fn actions(
        &mut self,
        actions: &'r [Action],
        step: &'r Step,
        input: &Value,
        overlay: &[(Str, Value)],
        missing: FieldMissing,
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
                    let env = Env {
                        input,
                        overlay,
                        vars,
                        missing,
                    };
                    let v = value.eval(&env)?.into_owned();
                    if let Some(var) = vars.get_mut(*slot) {
                        *var = Some(v);
                    }
                }
                Action::Log { level, message } => self.logs.push(LogRecord {
                    step: &step.id,
                    level: *level,
                    message,
                }),
                Action::Metric { name, value, tags } => {
                    let env = Env {
                        input,
                        overlay,
                        vars,
                        missing,
                    };
                    let value = value.eval(&env)?.into_owned();
                    self.metrics.push(MetricRecord {
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

    /// Sets the duration of trace entry `i` to the time since `t0`.
    fn finish(&mut self, i: usize, t0: quanta::Instant) {
        if let Some(entry) = self.trace.as_mut().and_then(|t| t.get_mut(i)) {
            entry.duration_ns = t0.elapsed().as_nanos().try_into().unwrap_or(u64::MAX);
        }
    }

    /// Appends a trace entry for `step`, timed from `started`; returns its index.
    fn record(
        &mut self,
        g: &'r Graph,
        step: &'r Step,
        started: Option<quanta::Instant>,
        branch: Option<usize>,
        next: Option<usize>,
    ) -> Option<usize> {
        let trace = self.trace.as_mut()?;
        let t0 = started?;
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
                duration_ns: t0.elapsed().as_nanos().try_into().unwrap_or(u64::MAX),
                branch,
                next: next.and_then(|n| g.steps.get(n)).map(|s| s.id.as_str()),
            });
        }
        Some(trace.len() - 1)
    }
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
                            return Err(EvalError::missing(path.text.clone()));
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
