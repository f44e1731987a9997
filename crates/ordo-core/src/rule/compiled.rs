//! The compiled form of a ruleset: flat step arrays addressed by index, expressions as
//! nodes, variables as slots, terminal outputs with their keys laid out in advance.

use std::collections::HashMap;
use std::ops::Range;

use crate::expr::FieldMissing;
use crate::expr::node::{Node, Path};
use crate::model::LogLevel;
use crate::value::{Str, Value};

/// A validated, compiled ruleset. Immutable, `Send + Sync`: compile once, share behind an
/// `Arc`, execute from any number of threads.
#[derive(Debug)]
pub struct CompiledRuleSet {
    pub(crate) name: Str,
    pub(crate) version: Str,
    pub(crate) main: Graph,
    pub(crate) subs: Box<[Graph]>,
    pub(crate) missing: FieldMissing,
    pub(crate) max_depth: u32,
    pub(crate) timeout_ms: u64,
    pub(crate) enable_trace: bool,
    /// The terminal an outcome points at until the real one is reached.
    pub(crate) placeholder: Terminal,
}

impl CompiledRuleSet {
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn version(&self) -> &str {
        &self.version
    }
    /// Number of steps in the main flow.
    pub fn step_count(&self) -> usize {
        self.main.steps.len()
    }
    pub fn field_missing(&self) -> FieldMissing {
        self.missing
    }
    pub fn max_depth(&self) -> u32 {
        self.max_depth
    }
    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms
    }
}

/// One step flow: the main one or a sub-rule.
#[derive(Debug)]
pub(crate) struct Graph {
    /// The sub-rule's name; `None` for the main flow.
    pub name: Option<Str>,
    pub entry: usize,
    pub steps: Box<[Step]>,
    /// Number of variable slots.
    pub vars: usize,
}

#[derive(Debug)]
pub(crate) struct Step {
    pub id: Str,
    pub name: Option<Str>,
    pub kind: Kind,
}

#[derive(Debug)]
pub(crate) enum Kind {
    Decision(Decision),
    Action { actions: Box<[Action]>, next: usize },
    Terminal(Terminal),
    SubRule(SubCall),
}

#[derive(Debug)]
pub(crate) struct Decision {
    pub branches: Box<[Branch]>,
    pub default: Option<usize>,
    /// How the branches are searched: runs scanned in order, and runs of equality tests
    /// on one field answered by a table lookup.
    pub plan: Box<[Segment]>,
}

#[derive(Debug)]
pub(crate) struct Branch {
    /// `None` always matches.
    pub cond: Option<Node>,
    pub actions: Box<[Action]>,
    pub next: usize,
}

#[derive(Debug)]
pub(crate) enum Segment {
    Scan(Range<usize>),
    /// A run of branches that all test `path == constant` (or `path in [constants]`): the
    /// value at `path` maps to the first branch of the run that matches it.
    Switch {
        path: Path,
        table: HashMap<Value, usize, foldhash::fast::RandomState>,
    },
}

#[derive(Debug)]
pub(crate) enum Action {
    Set {
        slot: usize,
        value: Node,
    },
    SetConst {
        slot: usize,
        value: Value,
    },
    Log {
        level: LogLevel,
        message: Str,
    },
    Metric {
        name: Str,
        value: Node,
        tags: Box<[(Str, Str)]>,
    },
}

#[derive(Debug)]
pub(crate) struct Terminal {
    /// Id of the step this terminal belongs to.
    pub step: Str,
    pub code: Str,
    pub message: Str,
    /// Output keys in order: `output` keys, then `data` keys not among them.
    pub keys: Box<[Str]>,
    pub values: Box<[OutputValue]>,
}

#[derive(Debug)]
pub(crate) enum OutputValue {
    Expr(Node),
    Path(Path),
    Const(Value),
}

#[derive(Debug)]
pub(crate) struct SubCall {
    pub graph: usize,
    pub bindings: Box<[(Str, Node)]>,
    pub outputs: Box<[(usize, ChildValue)]>,
    pub next: usize,
}

/// Where a sub-rule output comes from.
#[derive(Debug)]
pub(crate) enum ChildValue {
    /// A variable of the sub-rule, or failing that the output field of the same name.
    Var { slot: usize, name: Str },
    /// An output field of the sub-rule's terminal.
    Output(Str),
}
