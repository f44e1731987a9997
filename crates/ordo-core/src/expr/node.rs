//! Compiled expressions and their evaluation.
//!
//! A [`Node`] is what an [`Expr`](super::Expr) becomes once paths are split, variables
//! resolved to slots, functions resolved to code, literal collections and patterns
//! prepared and constants folded. Evaluation borrows wherever it can: reading a field or a
//! constant returns a reference, so a comparison such as `user.vip == true` allocates
//! and copies nothing.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU32, Ordering};

use smallvec::SmallVec;

use super::ops::{self, ArithOp, CmpOp};
use super::set::LiteralSet;
use crate::error::EvalError;
use crate::functions::{Args, Builtin, Prepared};
use crate::limits::MAX_VALUE_DEPTH;
use crate::value::{Str, Value, new_map};

/// How a field that is not there is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldMissing {
    /// A missing field makes a decision condition false; elsewhere it is an error.
    #[default]
    Lenient,
    /// A missing field is an error everywhere.
    Strict,
    /// A missing field reads as `null`.
    Default,
}

/// What an expression can see while it runs.
pub(crate) struct Env<'a> {
    pub input: &'a Value,
    /// Sub-rule bindings, consulted before the input for top-level names.
    pub overlay: &'a [(Str, Value)],
    pub vars: &'a [Option<Value>],
    pub missing: FieldMissing,
}

pub(crate) static NULL: Value = Value::Null;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Root {
    Input,
    Var(u32),
}

#[derive(Debug)]
pub(crate) struct Seg {
    /// Kept as a `Str`: comparing two inline `Str`s is a fixed-size compare, with no
    /// decoding of either side.
    pub key: Str,
    /// The segment as an array index, or [`Seg::NOT_AN_INDEX`] (no array holds that
    /// many items, so reading it finds nothing, as a key finds nothing in an array).
    /// A `u32` keeps a segment at 32 bytes: a two-segment path fills a 64-byte block.
    pub index: u32,
    /// Where in the object the key was found last time. Inputs to one ruleset nearly
    /// always share a shape, so this usually finds the key at the first comparison.
    /// Relaxed: a stale hint only costs a search.
    pub hint: AtomicU32,
}

impl Seg {
    pub(crate) const NOT_AN_INDEX: u32 = u32::MAX;

    pub(crate) fn new(key: &str) -> Seg {
        let index = if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
            key.parse().unwrap_or(Seg::NOT_AN_INDEX)
        } else {
            Seg::NOT_AN_INDEX
        };
        Seg {
            key: Str::from(key),
            index,
            hint: AtomicU32::new(0),
        }
    }

    /// This segment of `v`: the member `key` of an object, or element `index` of an array.
    #[inline(always)]
    pub(crate) fn of<'v>(&self, v: &'v Value) -> Option<&'v Value> {
        match v {
            Value::Object(o) => {
                let hint = self.hint.load(Ordering::Relaxed) as usize;
                if let Some((k, found)) = o.get_index(hint)
                    && *k == self.key
                {
                    return Some(found);
                }
                let (i, found) = o.find(&self.key)?;
                self.hint
                    .store(u32::try_from(i).unwrap_or(0), Ordering::Relaxed);
                Some(found)
            }
            Value::Array(a) => a.get(self.index as usize),
            _ => None,
        }
    }
}

impl Clone for Seg {
    fn clone(&self) -> Seg {
        Seg::new(&self.key)
    }
}

/// A field path, split into its segments. It carries no copy of its text: a path sits in
/// most compiled conditions, and the text is needed only for an error message, which
/// joins the segments again (a segment never holds a dot).
#[derive(Debug, Clone)]
pub(crate) struct Path {
    /// For an input path, the first segment is the top-level field. For a variable path,
    /// the first segment is the variable's name as written (`$name`), kept for messages
    /// only: reading starts from the variable's slot and the segments after it.
    pub segs: Box<[Seg]>,
    pub root: Root,
}

impl Path {
    /// The path as written.
    pub(crate) fn text(&self) -> Str {
        let mut text = String::new();
        for (i, seg) in self.segs.iter().enumerate() {
            if i > 0 {
                text.push('.');
            }
            text.push_str(&seg.key);
        }
        Str::from(text.as_str())
    }

    /// Whether both paths read the same place.
    pub(crate) fn same(&self, other: &Path) -> bool {
        self.root == other.root
            && self.segs.len() == other.segs.len()
            && self
                .segs
                .iter()
                .zip(&other.segs[..])
                .all(|(a, b)| a.key == b.key)
    }

    /// The value at the path, applying the missing-field mode.
    #[inline(always)]
    pub(crate) fn read<'a>(&'a self, env: &Env<'a>) -> Result<&'a Value, EvalError> {
        match self.resolve(env) {
            Some(v) => Ok(v),
            None if env.missing == FieldMissing::Default => Ok(&NULL),
            None => Err(EvalError::missing(self.text())),
        }
    }

    #[inline(always)]
    pub(crate) fn resolve<'a>(&'a self, env: &Env<'a>) -> Option<&'a Value> {
        let (first, rest) = self.segs.split_first()?;
        let mut cur = match self.root {
            Root::Var(slot) => env.vars.get(slot as usize)?.as_ref()?,
            Root::Input => {
                let bound = if env.overlay.is_empty() {
                    None
                } else {
                    env.overlay.iter().find(|(k, _)| *k == first.key)
                };
                match bound {
                    Some((_, v)) => v,
                    None => first.of(env.input)?,
                }
            }
        };
        for seg in rest {
            cur = seg.of(cur)?;
        }
        Some(cur)
    }
}

#[derive(Debug)]
pub(crate) enum Node {
    Const(Value),
    Path(Path),
    Not(Box<Node>),
    Neg(Box<Node>),
    /// `a && b && ...`, flattened.
    All(Box<[Node]>),
    /// `a || b || ...`, flattened.
    Any(Box<[Node]>),
    Arith(ArithOp, Box<Node>, Box<Node>),
    Cmp(CmpOp, Box<Node>, Box<Node>),
    /// `path <op> constant`, the most common condition, fused into one node.
    Test(Box<(Path, CmpOp, Value)>),
    /// `path <op> constant` arithmetic (`order.total * 0.8`), fused into one node; the
    /// flag says the path is the right operand.
    Calc(Box<(Path, ArithOp, Value, bool)>),
    In {
        item: Box<Node>,
        coll: Box<Node>,
        negate: bool,
    },
    InSet {
        item: Box<Node>,
        set: Box<LiteralSet>,
        negate: bool,
    },
    Call {
        f: &'static Builtin,
        args: Box<[Node]>,
        prepared: Option<Box<Prepared>>,
    },
    Cond(Box<[Node; 3]>),
    Array(Box<[Node]>),
    Object(Box<[(Str, Node)]>),
    Exists(Path),
    Coalesce(Box<[Node]>),
}

type Out<'a> = Result<Cow<'a, Value>, EvalError>;

impl Node {
    /// Evaluates the node. The common cases live here; the rest are out of line so this
    /// function stays small and cheap to enter.
    #[inline]
    pub(crate) fn eval<'a>(&'a self, env: &Env<'a>) -> Out<'a> {
        match self {
            Node::Const(v) => Ok(Cow::Borrowed(v)),
            Node::Path(p) => p.read(env).map(Cow::Borrowed),
            Node::Arith(op, l, r) => {
                let (l, r) = (l.eval(env)?, r.eval(env)?);
                Ok(Cow::Owned(ops::arith(*op, &l, &r)?))
            }
            Node::Calc(c) => {
                let (path, op, value, swapped) = &**c;
                let v = path.read(env)?;
                Ok(Cow::Owned(if *swapped {
                    ops::arith(*op, value, v)?
                } else {
                    ops::arith(*op, v, value)?
                }))
            }
            Node::Not(_)
            | Node::All(_)
            | Node::Any(_)
            | Node::Cmp(..)
            | Node::Test(_)
            | Node::In { .. }
            | Node::InSet { .. }
            | Node::Exists(_) => Ok(bool_value(self.eval_bool(env)?)),
            Node::Neg(_)
            | Node::Call { .. }
            | Node::Cond(_)
            | Node::Array(_)
            | Node::Object(_)
            | Node::Coalesce(_) => self.eval_other(env),
        }
    }

    /// Evaluates the node for its truthiness, without building a value where possible.
    pub(crate) fn eval_bool(&self, env: &Env<'_>) -> Result<bool, EvalError> {
        match self {
            Node::Test(t) => {
                let (path, op, value) = &**t;
                ops::compare(*op, path.read(env)?, value)
            }
            Node::Cmp(op, l, r) => ops::compare(*op, &*l.eval(env)?, &*r.eval(env)?),
            Node::All(items) => {
                for n in items.iter() {
                    if !n.eval_bool(env)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Node::Any(items) => {
                for n in items.iter() {
                    if n.eval_bool(env)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Node::Not(n) => Ok(!n.eval_bool(env)?),
            Node::InSet { item, set, negate } => Ok(set.contains(&*item.eval(env)?) != *negate),
            Node::In { item, coll, negate } => {
                let (item, coll) = (item.eval(env)?, coll.eval(env)?);
                Ok(ops::member(&item, &coll)? != *negate)
            }
            Node::Exists(p) => Ok(p.resolve(env).is_some()),
            Node::Const(v) => Ok(v.is_truthy()),
            Node::Path(p) => Ok(p.read(env)?.is_truthy()),
            other => Ok(other.eval(env)?.is_truthy()),
        }
    }

    #[inline(never)]
    fn eval_other<'a>(&'a self, env: &Env<'a>) -> Out<'a> {
        match self {
            Node::Neg(n) => Ok(Cow::Owned(ops::negate(&*n.eval(env)?)?)),
            Node::Call { f, args, prepared } => {
                let mut vals: SmallVec<[Cow<'a, Value>; 4]> = SmallVec::with_capacity(args.len());
                for a in args.iter() {
                    vals.push(a.eval(env)?);
                }
                let v = (f.call)(&Args::new(f.name, &vals, prepared.as_deref()))?;
                check_depth(&v)?;
                Ok(Cow::Owned(v))
            }
            Node::Cond(parts) => {
                let [c, t, e] = &**parts;
                if c.eval_bool(env)? {
                    t.eval(env)
                } else {
                    e.eval(env)
                }
            }
            Node::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for n in items.iter() {
                    out.push(n.eval(env)?.into_owned());
                }
                let v = Value::array(out);
                check_depth(&v)?;
                Ok(Cow::Owned(v))
            }
            Node::Object(pairs) => {
                let mut map = new_map(pairs.len());
                for (k, n) in pairs.iter() {
                    map.insert(k.clone(), n.eval(env)?.into_owned());
                }
                let v = Value::object(map);
                check_depth(&v)?;
                Ok(Cow::Owned(v))
            }
            Node::Coalesce(items) => {
                for n in items.iter() {
                    match n.eval(env) {
                        Ok(v) if !v.is_null() => return Ok(v),
                        Ok(_) => {}
                        Err(e) if e.is_missing_field() => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(Cow::Borrowed(&NULL))
            }
            Node::Const(_)
            | Node::Path(_)
            | Node::Arith(..)
            | Node::Calc(_)
            | Node::Not(_)
            | Node::All(_)
            | Node::Any(_)
            | Node::Cmp(..)
            | Node::Test(_)
            | Node::In { .. }
            | Node::InSet { .. }
            | Node::Exists(_) => self.eval(env),
        }
    }

    /// Evaluates a decision condition: truthiness, with a missing field in `lenient` mode
    /// making the whole condition false.
    #[inline]
    pub(crate) fn eval_condition(&self, env: &Env<'_>) -> Result<bool, EvalError> {
        match self.eval_bool(env) {
            Ok(b) => Ok(b),
            Err(e) if e.is_missing_field() && env.missing == FieldMissing::Lenient => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn as_const(&self) -> Option<&Value> {
        match self {
            Node::Const(v) => Some(v),
            _ => None,
        }
    }
}

static TRUE: Value = Value::Bool(true);
static FALSE: Value = Value::Bool(false);

#[inline]
fn bool_value<'a>(b: bool) -> Cow<'a, Value> {
    Cow::Borrowed(if b { &TRUE } else { &FALSE })
}

fn check_depth(v: &Value) -> Result<(), EvalError> {
    if v.depth() > MAX_VALUE_DEPTH {
        return Err(EvalError::limit(format!(
            "value nested deeper than the limit of {MAX_VALUE_DEPTH}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A compiled ruleset is mostly nodes, paths and segments: these sizes are what 1,000
    /// rulesets cost in memory, so a field that grows one of them should be a decision.
    #[test]
    fn compiled_pieces_stay_small() {
        assert_eq!(size_of::<Seg>(), 32);
        assert_eq!(size_of::<Path>(), 24);
        assert!(
            size_of::<Node>() <= 40,
            "Node is {} bytes",
            size_of::<Node>()
        );
    }
}
