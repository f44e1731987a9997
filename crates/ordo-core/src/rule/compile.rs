//! Validation and compilation of a ruleset. Every problem is collected, each naming its
//! step and field, and reported together.

use std::collections::{HashMap, HashSet};

use indexmap::IndexMap;

use super::compiled::{
    Action, Branch, ChildValue, CompiledRuleSet, Decision, Graph, Kind, OutputValue, Segment, Step,
    SubCall, Terminal,
};
use crate::boxed::exact;
use crate::error::{CompileError, ValidationError};
use crate::expr::compile::{Vars, compile as compile_expr};
use crate::expr::node::{Node, Path};
use crate::expr::ops::CmpOp;
use crate::expr::{ast::is_identifier, locate, parse};
use crate::limits::{MAX_STEPS, MAX_SUB_RULE_NESTING};
use crate::model::{self, ExprSource, RuleSet, validate_name};
use crate::value::{Str, Value};

/// A run of at least this many equality tests on one field becomes a table lookup.
const SWITCH_MIN: usize = 4;
/// Longest accepted `timeout_ms`: one hour.
const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// Validates `rs` and compiles it, or reports every problem found.
pub fn compile(rs: &RuleSet) -> Result<CompiledRuleSet, CompileError> {
    let mut c = Compiler {
        errors: Vec::new(),
        subs: rs
            .sub_rules
            .iter()
            .map(|(name, g)| (name.as_str(), SubInfo::of(&g.steps)))
            .collect(),
    };
    c.config(&rs.config);
    let main = c.graph(
        None,
        rs.config.entry_step(),
        "config.entry_step",
        &rs.steps,
        "steps",
    );
    let subs: Vec<Option<Graph>> = rs
        .sub_rules
        .iter()
        .map(|(name, g)| {
            c.graph(
                Some(name),
                &g.entry_step,
                &format!("sub_rules.{name}.entry_step"),
                &g.steps,
                &format!("sub_rules.{name}.steps"),
            )
        })
        .collect();
    c.sub_rule_calls(rs);
    match (main, subs.into_iter().collect::<Option<Vec<_>>>()) {
        (Some(main), Some(subs)) if c.errors.is_empty() => Ok(CompiledRuleSet {
            name: Str::from(rs.config.name.as_str()),
            version: Str::from(rs.config.version()),
            main,
            subs: exact(subs),
            missing: rs.config.field_missing(),
            max_depth: rs.config.max_depth(),
            timeout_ms: rs.config.timeout_ms(),
            enable_trace: rs.config.enable_trace(),
            placeholder: Terminal {
                step: Str::default(),
                code: Str::default(),
                message: Str::default(),
                keys: Box::default(),
                values: Box::default(),
            },
        }),
        _ => Err(CompileError { errors: c.errors }),
    }
}

/// What a caller may read back from a sub-rule.
struct SubInfo {
    vars: Vars,
    outputs: HashSet<String>,
}

impl SubInfo {
    fn of(steps: &IndexMap<String, model::Step>) -> SubInfo {
        let mut outputs = HashSet::new();
        for step in steps.values() {
            if let model::Step::Terminal { result, .. } = step {
                outputs.extend(result.output.iter().map(|(k, _)| k.clone()));
                outputs.extend(result.data.iter().flat_map(|d| d.keys().cloned()));
            }
        }
        SubInfo {
            vars: collect_vars(steps),
            outputs,
        }
    }
}

/// Every variable a flow assigns, in first-assignment order: its slots.
fn collect_vars(steps: &IndexMap<String, model::Step>) -> Vars {
    let mut vars = Vars::default();
    let add_actions = |actions: &[model::Action], vars: &mut Vars| {
        for a in actions {
            if let model::Action::SetVariable { name, .. } = a {
                vars.insert(Str::from(var_name(name)));
            }
        }
    };
    for step in steps.values() {
        match step {
            model::Step::Decision { branches, .. } => {
                for b in branches {
                    add_actions(&b.actions, &mut vars);
                }
            }
            model::Step::Action { actions, .. } => add_actions(actions, &mut vars),
            model::Step::SubRule { outputs, .. } => {
                for (parent, _) in outputs {
                    vars.insert(Str::from(var_name(parent)));
                }
            }
            model::Step::Terminal { .. } => {}
        }
    }
    vars
}

/// A variable name as written, with its optional `$` removed.
fn var_name(name: &str) -> &str {
    name.strip_prefix('$').unwrap_or(name)
}

struct Compiler<'a> {
    errors: Vec<ValidationError>,
    subs: IndexMap<&'a str, SubInfo>,
}

/// The flow being compiled: its step ids and variables, and where it sits in the document.
struct Flow<'a> {
    ids: HashMap<&'a str, usize>,
    vars: Vars,
    prefix: &'a str,
}

impl<'a> Compiler<'a> {
    fn error(&mut self, step: Option<&str>, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ValidationError {
            step: step.map(str::to_string),
            field: field.into(),
            message: message.into(),
        });
    }

    fn config(&mut self, cfg: &model::RuleSetConfig) {
        if let Err(e) = validate_name(&cfg.name) {
            self.error(None, "config.name", e);
        }
        let depth = cfg.max_depth();
        if !(1..=MAX_STEPS).contains(&depth) {
            self.error(
                None,
                "config.max_depth",
                format!("must be between 1 and {MAX_STEPS}, got {depth}"),
            );
        }
        if let Some(limit) = &cfg.rate_limit {
            if limit.requests_per_second == 0 {
                self.error(
                    None,
                    "config.rate_limit.requests_per_second",
                    "must be at least 1 (remove rate_limit for no limit)",
                );
            }
            if limit.burst == Some(0) {
                self.error(None, "config.rate_limit.burst", "must be at least 1");
            }
        }
        if cfg
            .backpressure
            .as_ref()
            .is_some_and(|b| b.max_concurrent == 0)
        {
            self.error(
                None,
                "config.backpressure.max_concurrent",
                "must be at least 1 (remove backpressure for no bound)",
            );
        }
        if cfg.timeout_ms() > MAX_TIMEOUT_MS {
            self.error(
                None,
                "config.timeout_ms",
                format!(
                    "must be at most {MAX_TIMEOUT_MS} (one hour), got {}",
                    cfg.timeout_ms()
                ),
            );
        }
    }

    fn graph<'s>(
        &mut self,
        sub: Option<&str>,
        entry: &str,
        entry_field: &str,
        steps: &'s IndexMap<String, model::Step>,
        prefix: &'s str,
    ) -> Option<Graph> {
        let flow = Flow {
            ids: steps
                .keys()
                .enumerate()
                .map(|(i, k)| (k.as_str(), i))
                .collect(),
            vars: collect_vars(steps),
            prefix,
        };
        let entry_idx = flow.ids.get(entry).copied();
        if entry_idx.is_none() {
            self.error(
                None,
                entry_field,
                format!("entry step '{entry}' does not exist"),
            );
        }
        let errors_before = self.errors.len();
        let mut compiled = Vec::with_capacity(steps.len());
        for (key, step) in steps {
            if step.id() != key {
                self.error(
                    Some(key),
                    format!("{prefix}.{key}.id"),
                    format!(
                        "id '{}' does not match the key '{key}' it is stored under",
                        step.id()
                    ),
                );
            }
            compiled.push(self.step(&flow, key, step));
        }
        let compiled: Vec<Step> = compiled.into_iter().collect::<Option<_>>()?;
        if self.errors.len() == errors_before {
            self.endless_loops(&flow, &compiled);
        }
        Some(Graph {
            name: sub.map(Str::from),
            entry: entry_idx?,
            steps: exact(compiled),
            vars: flow.vars.len(),
        })
    }

    fn step(&mut self, flow: &Flow<'_>, key: &str, step: &model::Step) -> Option<Step> {
        let at = format!("{}.{key}", flow.prefix);
        let kind = match step {
            model::Step::Decision {
                branches,
                default_next,
                ..
            } => {
                if branches.is_empty() && default_next.is_none() {
                    self.error(
                        Some(key),
                        &at,
                        "a decision needs branches or a default_next",
                    );
                }
                let mut out = Vec::with_capacity(branches.len());
                for (i, b) in branches.iter().enumerate() {
                    let field = format!("{at}.branches[{i}]");
                    let cond = match &b.condition {
                        None => Some(None),
                        Some(src) => self
                            .expr(flow, key, &format!("{field}.condition"), src)
                            .map(Some),
                    };
                    let actions = self.actions(flow, key, &field, &b.actions);
                    let next = self.target(flow, key, &format!("{field}.next_step"), &b.next_step);
                    if let (Some(cond), Some(actions), Some(next)) = (cond, actions, next) {
                        out.push(Branch {
                            cond,
                            actions,
                            next,
                        });
                    }
                }
                let default = match default_next {
                    Some(d) => Some(self.target(flow, key, &format!("{at}.default_next"), d)?),
                    None => None,
                };
                if out.len() != branches.len() {
                    return None;
                }
                let plan = plan(&out);
                Kind::Decision(Decision {
                    branches: exact(out),
                    default,
                    plan,
                })
            }
            model::Step::Action {
                actions, next_step, ..
            } => {
                let actions = self.actions(flow, key, &at, actions);
                let next = self.target(flow, key, &format!("{at}.next_step"), next_step);
                Kind::Action {
                    actions: actions?,
                    next: next?,
                }
            }
            model::Step::Terminal { result, .. } => {
                Kind::Terminal(self.terminal(flow, key, &at, result)?)
            }
            model::Step::SubRule {
                ref_name,
                bindings,
                outputs,
                next_step,
                ..
            } => self.sub_call(flow, key, &at, ref_name, bindings, outputs, next_step)?,
        };
        Some(Step {
            id: Str::from(key),
            name: step.name().map(Str::from),
            kind,
        })
    }

    fn target(&mut self, flow: &Flow<'_>, key: &str, field: &str, target: &str) -> Option<usize> {
        let idx = flow.ids.get(target).copied();
        if idx.is_none() {
            self.error(Some(key), field, format!("step '{target}' does not exist"));
        }
        idx
    }

    fn expr(&mut self, flow: &Flow<'_>, key: &str, field: &str, src: &ExprSource) -> Option<Node> {
        let parsed;
        let (ast, text) = match src {
            ExprSource::Text(t) => match parse(t) {
                Ok(a) => {
                    parsed = a;
                    (&parsed, Some(t.as_str()))
                }
                Err(e) => {
                    self.error(Some(key), field, e.to_string());
                    return None;
                }
            },
            ExprSource::Ast(a) => (a, None),
        };
        match compile_expr(ast, &flow.vars) {
            Ok(node) => Some(node),
            Err(issue) => {
                let pos = text
                    .zip(issue.needle.as_deref())
                    .and_then(|(t, n)| locate(t, n));
                let message = match pos {
                    Some(p) => format!("{} at character {p}", issue.message),
                    None => issue.message,
                };
                self.error(Some(key), field, message);
                None
            }
        }
    }

    fn actions(
        &mut self,
        flow: &Flow<'_>,
        key: &str,
        at: &str,
        actions: &[model::Action],
    ) -> Option<Box<[Action]>> {
        let mut out = Vec::with_capacity(actions.len());
        let mut ok = true;
        for (i, a) in actions.iter().enumerate() {
            let field = format!("{at}.actions[{i}]");
            let compiled = match a {
                model::Action::SetVariable { name, value, .. } => {
                    let name = var_name(name);
                    if !is_identifier(name) {
                        self.error(
                            Some(key),
                            format!("{field}.name"),
                            format!("'{name}' is not a valid variable name"),
                        );
                    }
                    let value = self.expr(flow, key, &format!("{field}.value"), value);
                    flow.vars
                        .get_index_of(name)
                        .zip(value)
                        .map(|(slot, value)| match value {
                            Node::Const(value) => Action::SetConst { slot, value },
                            value => Action::Set { slot, value },
                        })
                }
                model::Action::Log { message, level, .. } => Some(Action::Log {
                    level: level.unwrap_or_default(),
                    message: Str::from(message.as_str()),
                }),
                model::Action::Metric {
                    name, value, tags, ..
                } => {
                    if name.is_empty() {
                        self.error(Some(key), format!("{field}.name"), "a metric needs a name");
                    }
                    self.expr(flow, key, &format!("{field}.value"), value)
                        .map(|value| Action::Metric {
                            name: Str::from(name.as_str()),
                            value,
                            tags: tags
                                .iter()
                                .map(|(k, v)| (Str::from(k.as_str()), Str::from(v.as_str())))
                                .collect(),
                        })
                }
            };
            match compiled {
                Some(c) => out.push(c),
                None => ok = false,
            }
        }
        ok.then(|| exact(out))
    }

    fn terminal(
        &mut self,
        flow: &Flow<'_>,
        key: &str,
        at: &str,
        result: &model::TerminalResult,
    ) -> Option<Terminal> {
        let mut keys: Vec<Str> = Vec::new();
        let mut values = Vec::new();
        let mut ok = true;
        for (i, (k, src)) in result.output.iter().enumerate() {
            let field = format!("{at}.result.output[{i}]");
            if keys.iter().any(|x| x == k) {
                self.error(Some(key), &field, format!("duplicate output key '{k}'"));
                ok = false;
                continue;
            }
            match self.expr(flow, key, &field, src) {
                Some(node) => {
                    keys.push(Str::from(k.as_str()));
                    values.push(match node {
                        Node::Const(v) => OutputValue::Const(v),
                        Node::Path(p) => OutputValue::Path(p),
                        n => OutputValue::Expr(n),
                    });
                }
                None => ok = false,
            }
        }
        for (k, v) in result.data.iter().flatten() {
            match keys.iter().position(|x| x == k) {
                Some(i) => {
                    if let Some(slot) = values.get_mut(i) {
                        *slot = OutputValue::Const(v.clone());
                    }
                }
                None => {
                    keys.push(Str::from(k.as_str()));
                    values.push(OutputValue::Const(v.clone()));
                }
            }
        }
        ok.then(|| Terminal {
            step: Str::from(key),
            code: Str::from(result.code.as_str()),
            message: Str::from(result.message.as_deref().unwrap_or_default()),
            keys: exact(keys),
            values: exact(values),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn sub_call(
        &mut self,
        flow: &Flow<'_>,
        key: &str,
        at: &str,
        ref_name: &str,
        bindings: &[(String, ExprSource)],
        outputs: &[(String, String)],
        next_step: &str,
    ) -> Option<Kind> {
        let next = self.target(flow, key, &format!("{at}.next_step"), next_step);
        let Some(graph) = self.subs.get_index_of(ref_name) else {
            self.error(
                Some(key),
                format!("{at}.ref_name"),
                format!("sub-rule '{ref_name}' does not exist"),
            );
            return None;
        };
        let mut ok = true;
        let mut bound = Vec::with_capacity(bindings.len());
        for (i, (field_name, src)) in bindings.iter().enumerate() {
            let field = format!("{at}.bindings[{i}]");
            if !is_identifier(field_name) {
                self.error(
                    Some(key),
                    &field,
                    format!("'{field_name}' is not a valid top-level field name"),
                );
                ok = false;
            }
            match self.expr(flow, key, &field, src) {
                Some(node) => bound.push((Str::from(field_name.as_str()), node)),
                None => ok = false,
            }
        }
        let mut outs = Vec::with_capacity(outputs.len());
        for (i, (parent, child)) in outputs.iter().enumerate() {
            let field = format!("{at}.outputs[{i}]");
            let (parent, child) = (var_name(parent), var_name(child));
            if !is_identifier(parent) {
                self.error(
                    Some(key),
                    &field,
                    format!("'{parent}' is not a valid variable name"),
                );
                ok = false;
                continue;
            }
            let info = self.subs.get_index(graph).map(|(_, info)| info);
            let source = info.and_then(|info| match info.vars.get_index_of(child) {
                Some(slot) => Some(ChildValue::Var {
                    slot,
                    name: Str::from(child),
                }),
                None => info
                    .outputs
                    .contains(child)
                    .then(|| ChildValue::Output(Str::from(child))),
            });
            match (flow.vars.get_index_of(parent), source) {
                (Some(slot), Some(source)) => outs.push((slot, source)),
                _ => {
                    self.error(
                        Some(key),
                        &field,
                        format!("sub-rule '{ref_name}' has no variable or output named '{child}'"),
                    );
                    ok = false;
                }
            }
        }
        let next = next?;
        ok.then(|| {
            Kind::SubRule(SubCall {
                graph,
                bindings: exact(bound),
                outputs: exact(outs),
                next,
            })
        })
    }

    /// Rejects loops that never make a choice: steps whose next step is fixed (actions,
    /// sub-rules, decisions that always take the same branch) chained back to themselves.
    fn endless_loops(&mut self, flow: &Flow<'_>, steps: &[Step]) {
        let fixed_next: Vec<Option<usize>> = steps.iter().map(fixed_next).collect();
        // 0: unvisited, 1: on the current walk, 2: done.
        let mut state = vec![0u8; steps.len()];
        for start in 0..steps.len() {
            let mut walk = Vec::new();
            let mut cur = Some(start);
            while let Some(i) = cur {
                match state.get(i).copied() {
                    Some(0) => {
                        if let Some(st) = state.get_mut(i) {
                            *st = 1;
                        }
                        walk.push(i);
                        cur = fixed_next.get(i).copied().flatten();
                    }
                    Some(1) => {
                        let from = walk.iter().position(|&w| w == i).unwrap_or(0);
                        let cycle: Vec<&str> = walk
                            .get(from..)
                            .unwrap_or_default()
                            .iter()
                            .chain(std::iter::once(&i))
                            .filter_map(|&w| steps.get(w).map(|s| s.id.as_str()))
                            .collect();
                        let first = cycle.first().copied().unwrap_or_default().to_string();
                        self.error(
                            Some(&first),
                            format!("{}.{first}", flow.prefix),
                            format!(
                                "steps {} loop without any decision that could leave the loop, so it can never end",
                                cycle.join(" -> ")
                            ),
                        );
                        break;
                    }
                    _ => break,
                }
            }
            for w in walk {
                if let Some(st) = state.get_mut(w) {
                    *st = 2;
                }
            }
        }
    }

    /// Sub-rules must not call themselves, directly or not, nor nest too deeply.
    fn sub_rule_calls(&mut self, rs: &RuleSet) {
        let calls = |steps: &IndexMap<String, model::Step>| -> Vec<usize> {
            steps
                .values()
                .filter_map(|s| match s {
                    model::Step::SubRule { ref_name, .. } => rs.sub_rules.get_index_of(ref_name),
                    _ => None,
                })
                .collect()
        };
        let edges: Vec<Vec<usize>> = rs.sub_rules.values().map(|g| calls(&g.steps)).collect();
        let names: Vec<&str> = rs.sub_rules.keys().map(String::as_str).collect();
        // Longest call chain below each sub-rule, or None while on the DFS stack.
        let mut depth: Vec<Option<Option<usize>>> = vec![None; names.len()];
        let mut stack = Vec::new();
        for start in 0..names.len() {
            if let Err(cycle) = chain_depth(start, &edges, &mut depth, &mut stack) {
                let path: Vec<&str> = cycle
                    .iter()
                    .filter_map(|&i| names.get(i).copied())
                    .collect();
                let first = path.first().copied().unwrap_or_default();
                self.error(
                    None,
                    format!("sub_rules.{first}"),
                    format!(
                        "sub-rules call each other in a cycle: {}",
                        path.join(" -> ")
                    ),
                );
                return;
            }
        }
        let deepest = calls(&rs.steps)
            .into_iter()
            .filter_map(|i| depth.get(i).copied().flatten().flatten())
            .max();
        if let Some(d) = deepest
            && d + 1 > MAX_SUB_RULE_NESTING
        {
            self.error(
                None,
                "sub_rules",
                format!(
                    "sub-rules nest {} deep; the limit is {MAX_SUB_RULE_NESTING}",
                    d + 1
                ),
            );
        }
    }
}

/// Depth-first longest chain from `node`; `Err` carries a cycle.
fn chain_depth(
    node: usize,
    edges: &[Vec<usize>],
    depth: &mut Vec<Option<Option<usize>>>,
    stack: &mut Vec<usize>,
) -> Result<usize, Vec<usize>> {
    match depth.get(node).copied().flatten() {
        Some(Some(d)) => return Ok(d),
        Some(None) => {
            let from = stack.iter().position(|&s| s == node).unwrap_or(0);
            let mut cycle = stack.get(from..).unwrap_or_default().to_vec();
            cycle.push(node);
            return Err(cycle);
        }
        None => {}
    }
    if stack.len() > MAX_SUB_RULE_NESTING * 4 {
        // Deeper than any accepted ruleset: stop before the recursion grows further.
        return Ok(stack.len());
    }
    if let Some(slot) = depth.get_mut(node) {
        *slot = Some(None);
    }
    stack.push(node);
    let mut best = 0;
    for &next in edges.get(node).map_or(&[][..], Vec::as_slice) {
        best = best.max(1 + chain_depth(next, edges, depth, stack)?);
    }
    stack.pop();
    if let Some(slot) = depth.get_mut(node) {
        *slot = Some(Some(best));
    }
    Ok(best)
}

/// The next step when it does not depend on the input.
fn fixed_next(step: &Step) -> Option<usize> {
    match &step.kind {
        Kind::Action { next, .. } => Some(*next),
        Kind::SubRule(call) => Some(call.next),
        Kind::Terminal(_) => None,
        Kind::Decision(d) => match d.branches.first() {
            None => d.default,
            Some(b) => match &b.cond {
                None => Some(b.next),
                Some(Node::Const(v)) if v.is_truthy() => Some(b.next),
                _ => None,
            },
        },
    }
}

/// The field and constants a branch condition compares for equality, if it is that simple.
fn switch_key(cond: Option<&Node>) -> Option<(&Path, Vec<&Value>)> {
    match cond? {
        Node::Test(t) => match &**t {
            (p, CmpOp::Eq, v) => Some((p, vec![v])),
            _ => None,
        },
        Node::InSet {
            item,
            set,
            negate: false,
        } => match &**item {
            Node::Path(p) => Some((p, set.items().collect())),
            _ => None,
        },
        _ => None,
    }
}

/// Splits a decision's branches into scanned runs and table lookups.
fn plan(branches: &[Branch]) -> Box<[Segment]> {
    let keys: Vec<_> = branches
        .iter()
        .map(|b| switch_key(b.cond.as_ref()))
        .collect();
    let same_path =
        |i: usize, path: &Path| matches!(keys.get(i), Some(Some((p, _))) if p.same(path));
    let mut plan = Vec::new();
    let (mut i, mut scan_from) = (0, 0);
    while i < branches.len() {
        let Some(Some((path, _))) = keys.get(i) else {
            i += 1;
            continue;
        };
        let mut end = i + 1;
        while end < branches.len() && same_path(end, path) {
            end += 1;
        }
        if end - i >= SWITCH_MIN {
            if scan_from < i {
                plan.push(Segment::Scan(scan_from..i));
            }
            let mut table = HashMap::default();
            for (k, key) in keys.iter().enumerate().take(end).skip(i) {
                for v in key.iter().flat_map(|(_, vs)| vs) {
                    table.entry((*v).clone()).or_insert(k);
                }
            }
            plan.push(Segment::Switch {
                path: (*path).clone(),
                table,
            });
            scan_from = end;
        }
        i = end;
    }
    if scan_from < branches.len() {
        plan.push(Segment::Scan(scan_from..branches.len()));
    }
    exact(plan)
}
