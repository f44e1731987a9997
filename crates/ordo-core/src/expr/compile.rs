//! [`Expr`] to [`Node`]: split paths, resolve variables and functions, check arities,
//! prepare constant patterns and literal collections, fold constants.

use indexmap::IndexSet;

use super::ast::{BinaryOp, Expr, UnaryOp};
use super::node::{Env, FieldMissing, NULL, Node, Path, Root, Seg};
use super::ops::{ArithOp, CmpOp};
use super::set::LiteralSet;
use crate::boxed::exact;
use crate::functions;
use crate::limits::MAX_EXPR_DEPTH;
use crate::value::{Str, Value};

/// The variables (`$name`, stored without the `$`) visible to an expression, by slot.
pub(crate) type Vars = IndexSet<Str, foldhash::fast::RandomState>;

/// Why an expression does not compile, and a piece of its text to locate it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issue {
    pub message: String,
    /// Text whose first occurrence in the source locates the problem.
    pub needle: Option<String>,
}

impl Issue {
    fn new(message: impl Into<String>, needle: Option<String>) -> Issue {
        Issue {
            message: message.into(),
            needle,
        }
    }
}

pub(crate) fn compile(expr: &Expr, vars: &Vars) -> Result<Node, Issue> {
    Compiler { vars }.expr(expr, 1)
}

struct Compiler<'v> {
    vars: &'v Vars,
}

impl Compiler<'_> {
    fn expr(&self, e: &Expr, depth: u32) -> Result<Node, Issue> {
        if depth > MAX_EXPR_DEPTH {
            return Err(Issue::new(
                format!("expression tree is deeper than the limit of {MAX_EXPR_DEPTH}"),
                None,
            ));
        }
        let d = depth + 1;
        let node = match e {
            Expr::Literal(v) => return Ok(Node::Const(v.clone())),
            Expr::Field(p) => return Ok(Node::Path(self.path(p)?)),
            Expr::Exists(p) => return Ok(Node::Exists(self.path(p)?)),
            Expr::Unary { op, operand } => {
                let inner = Box::new(self.expr(operand, d)?);
                match op {
                    UnaryOp::Not => Node::Not(inner),
                    UnaryOp::Neg => Node::Neg(inner),
                }
            }
            Expr::Binary {
                op: op @ (BinaryOp::And | BinaryOp::Or),
                ..
            } => {
                // Flatten the left spine of `a && b && c` into one n-ary node.
                let mut operands = Vec::new();
                let mut cur = e;
                let mut rights = Vec::new();
                while let Expr::Binary { op: o, left, right } = cur {
                    if o != op {
                        break;
                    }
                    rights.push(&**right);
                    cur = left;
                }
                operands.push(self.expr(cur, d)?);
                for r in rights.into_iter().rev() {
                    operands.push(self.expr(r, d)?);
                }
                if *op == BinaryOp::And {
                    Node::All(exact(operands))
                } else {
                    Node::Any(exact(operands))
                }
            }
            Expr::Binary { op, left, right } => {
                let l = self.expr(left, d)?;
                let r = self.expr(right, d)?;
                binary(*op, l, r)
            }
            Expr::Call { name, args } => self.call(name, args, d)?,
            Expr::Conditional {
                condition,
                then_branch,
                else_branch,
            } => Node::Cond(Box::new([
                self.expr(condition, d)?,
                self.expr(then_branch, d)?,
                self.expr(else_branch, d)?,
            ])),
            Expr::Array(items) => Node::Array(self.list(items, d)?),
            Expr::Object(pairs) => Node::Object(exact(
                pairs
                    .iter()
                    .map(|(k, v)| Ok((Str::from(k.as_str()), self.expr(v, d)?)))
                    .collect::<Result<_, Issue>>()?,
            )),
            Expr::Coalesce(items) => Node::Coalesce(self.list(items, d)?),
        };
        Ok(fold(node))
    }

    fn list(&self, items: &[Expr], depth: u32) -> Result<Box<[Node]>, Issue> {
        items
            .iter()
            .map(|x| self.expr(x, depth))
            .collect::<Result<_, Issue>>()
            .map(exact)
    }

    fn call(&self, name: &str, args: &[Expr], depth: u32) -> Result<Node, Issue> {
        let needle = Some(name.to_string());
        let f = functions::lookup(name)
            .ok_or_else(|| Issue::new(format!("unknown function '{name}'"), needle.clone()))?;
        if args.len() < f.min || args.len() > f.max {
            return Err(Issue::new(
                format!(
                    "function '{name}' expects {}, got {}",
                    f.arity_text(),
                    args.len()
                ),
                needle,
            ));
        }
        let args = self.list(args, depth)?;
        let prepared = match (f.prepare, args.first().and_then(Node::as_const)) {
            (Some(prepare), Some(pattern)) => Some(Box::new(
                prepare(pattern).map_err(|m| Issue::new(format!("{name}: {m}"), needle))?,
            )),
            _ => None,
        };
        Ok(Node::Call { f, args, prepared })
    }

    fn path(&self, text: &str) -> Result<Path, Issue> {
        let mut parts = text.split('.');
        let first = parts.next().unwrap_or_default();
        if first.is_empty() {
            return Err(Issue::new(format!("invalid field path '{text}'"), None));
        }
        let root = match first.strip_prefix('$') {
            Some(var) => {
                let slot = self
                    .vars
                    .get_index_of(var)
                    .and_then(|slot| u32::try_from(slot).ok())
                    .ok_or_else(|| {
                        Issue::new(
                            format!("unknown variable '${var}': no action sets it"),
                            Some(format!("${var}")),
                        )
                    })?;
                Root::Var(slot)
            }
            None => Root::Input,
        };
        let segs = exact(std::iter::once(first).chain(parts).map(Seg::new).collect());
        Ok(Path { segs, root })
    }
}

fn binary(op: BinaryOp, l: Node, r: Node) -> Node {
    match op {
        BinaryOp::Add => arithmetic(ArithOp::Add, l, r),
        BinaryOp::Sub => arithmetic(ArithOp::Sub, l, r),
        BinaryOp::Mul => arithmetic(ArithOp::Mul, l, r),
        BinaryOp::Div => arithmetic(ArithOp::Div, l, r),
        BinaryOp::Mod => arithmetic(ArithOp::Mod, l, r),
        BinaryOp::Eq => comparison(CmpOp::Eq, l, r),
        BinaryOp::Ne => comparison(CmpOp::Ne, l, r),
        BinaryOp::Lt => comparison(CmpOp::Lt, l, r),
        BinaryOp::Le => comparison(CmpOp::Le, l, r),
        BinaryOp::Gt => comparison(CmpOp::Gt, l, r),
        BinaryOp::Ge => comparison(CmpOp::Ge, l, r),
        BinaryOp::In => membership(Box::new(l), Box::new(r), false),
        BinaryOp::NotIn => membership(Box::new(l), Box::new(r), true),
        // `a contains b` is `b in a`.
        BinaryOp::Contains => membership(Box::new(r), Box::new(l), false),
        // Flattened by the caller; kept total for safety.
        BinaryOp::And => Node::All(Box::new([l, r])),
        BinaryOp::Or => Node::Any(Box::new([l, r])),
    }
}

/// Arithmetic; `path <op> constant` (either way round) becomes one fused node.
fn arithmetic(op: ArithOp, l: Node, r: Node) -> Node {
    match (l, r) {
        (Node::Path(p), Node::Const(v)) => Node::Calc(Box::new((p, op, v, false))),
        (Node::Const(v), Node::Path(p)) => Node::Calc(Box::new((p, op, v, true))),
        (l, r) => Node::Arith(op, Box::new(l), Box::new(r)),
    }
}

/// A comparison; `path <op> constant` (either way round) becomes one fused node.
fn comparison(op: CmpOp, l: Node, r: Node) -> Node {
    match (l, r) {
        (Node::Path(p), Node::Const(v)) => Node::Test(Box::new((p, op, v))),
        (Node::Const(v), Node::Path(p)) => Node::Test(Box::new((p, op.flipped(), v))),
        (l, r) => Node::Cmp(op, Box::new(l), Box::new(r)),
    }
}

fn membership(item: Box<Node>, coll: Box<Node>, negate: bool) -> Node {
    match coll.as_const() {
        Some(Value::Array(items)) if item.as_const().is_none() => Node::InSet {
            item,
            set: Box::new(LiteralSet::new(items)),
            negate,
        },
        _ => Node::In { item, coll, negate },
    }
}

/// Replaces a node whose operands are all constant by its value. A node that would fail
/// (`1 / 0`) is kept, so the error surfaces when, and only if, it is evaluated.
fn fold(node: Node) -> Node {
    let foldable = match &node {
        Node::Const(_) | Node::Path(_) | Node::Exists(_) => false,
        Node::Not(n) | Node::Neg(n) => is_const(n),
        Node::Arith(_, l, r) | Node::Cmp(_, l, r) => is_const(l) && is_const(r),
        Node::Test(_) | Node::Calc(_) => false,
        Node::In { item, coll, .. } => is_const(item) && is_const(coll),
        Node::InSet { item, .. } => is_const(item),
        Node::All(items) | Node::Any(items) | Node::Array(items) | Node::Coalesce(items) => {
            items.iter().all(is_const)
        }
        Node::Object(pairs) => pairs.iter().all(|(_, n)| is_const(n)),
        Node::Call { f, args, .. } => f.pure && args.iter().all(is_const),
        Node::Cond(parts) => {
            let [c, ..] = &**parts;
            is_const(c)
        }
    };
    if !foldable {
        return node;
    }
    if let Node::Cond(parts) = node {
        let [c, t, e] = *parts;
        return if c.as_const().is_some_and(Value::is_truthy) {
            t
        } else {
            e
        };
    }
    let env = Env {
        input: &NULL,
        overlay: &[],
        vars: &[],
        missing: FieldMissing::Strict,
    };
    let folded = node.eval(&env).map(|v| v.into_owned());
    match folded {
        Ok(v) => Node::Const(v),
        Err(_) => node,
    }
}

fn is_const(n: &Node) -> bool {
    matches!(n, Node::Const(_))
}
