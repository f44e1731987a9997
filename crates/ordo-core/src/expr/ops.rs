//! Operator semantics: checked integer arithmetic, strict equality, typed ordering,
//! membership.

use std::cmp::Ordering;

use crate::error::EvalError;
use crate::limits::MAX_STRING_BYTES;
use crate::value::{EXACT_IN_FLOAT, Str, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl ArithOp {
    fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
            ArithOp::Mod => "%",
        }
    }
    fn name(self) -> &'static str {
        match self {
            ArithOp::Add => "addition",
            ArithOp::Sub => "subtraction",
            ArithOp::Mul => "multiplication",
            ArithOp::Div => "division",
            ArithOp::Mod => "remainder",
        }
    }
}

impl CmpOp {
    fn is_ordering(self) -> bool {
        !matches!(self, CmpOp::Eq | CmpOp::Ne)
    }

    /// Whether the operator holds for operands ordered `ord`.
    #[inline(always)]
    fn holds(self, ord: Ordering) -> bool {
        match self {
            CmpOp::Eq => ord == Ordering::Equal,
            CmpOp::Ne => ord != Ordering::Equal,
            CmpOp::Lt => ord == Ordering::Less,
            CmpOp::Le => ord != Ordering::Greater,
            CmpOp::Gt => ord == Ordering::Greater,
            CmpOp::Ge => ord != Ordering::Less,
        }
    }

    /// The operator with its operands swapped: `a < b` is `b > a`.
    pub(crate) fn flipped(self) -> CmpOp {
        match self {
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            same => same,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// Arithmetic. The float cases every pricing rule hits are answered inline; the rest,
/// with its checks and error messages, is out of line.
#[inline(always)]
pub(crate) fn arith(op: ArithOp, l: &Value, r: &Value) -> Result<Value, EvalError> {
    let (a, b) = match (l, r) {
        (Value::Float(a), Value::Float(b)) => (*a, *b),
        (Value::Float(a), Value::Int(b)) if b.unsigned_abs() <= EXACT_IN_FLOAT => (*a, *b as f64),
        (Value::Int(a), Value::Float(b)) if a.unsigned_abs() <= EXACT_IN_FLOAT => (*a as f64, *b),
        _ => return arith_general(op, l, r),
    };
    let v = match op {
        ArithOp::Add => a + b,
        ArithOp::Sub => a - b,
        ArithOp::Mul => a * b,
        _ => return arith_general(op, l, r),
    };
    if v.is_finite() {
        Ok(Value::Float(v))
    } else {
        Err(EvalError::non_finite(op.name()))
    }
}

#[inline(never)]
fn arith_general(op: ArithOp, l: &Value, r: &Value) -> Result<Value, EvalError> {
    use Value::{Float, Int};
    let overflow = || EvalError::overflow(op.name());
    match (l, r) {
        (Int(a), Int(b)) => {
            let v = match op {
                ArithOp::Add => a.checked_add(*b),
                ArithOp::Sub => a.checked_sub(*b),
                ArithOp::Mul => a.checked_mul(*b),
                ArithOp::Div | ArithOp::Mod if *b == 0 => return Err(EvalError::division_by_zero()),
                ArithOp::Div => a.checked_div(*b),
                ArithOp::Mod => a.checked_rem(*b),
            };
            v.map(Int).ok_or_else(overflow)
        }
        (Int(_) | Float(_), Int(_) | Float(_)) => {
            let (a, b) = (l.as_f64().unwrap_or(0.0), r.as_f64().unwrap_or(0.0));
            let v = match op {
                ArithOp::Add => a + b,
                ArithOp::Sub => a - b,
                ArithOp::Mul => a * b,
                ArithOp::Div | ArithOp::Mod if b == 0.0 => {
                    return Err(EvalError::division_by_zero());
                }
                ArithOp::Div => a / b,
                ArithOp::Mod => a % b,
            };
            finite(v, op.name())
        }
        (Value::String(a), Value::String(b)) if op == ArithOp::Add => concat(a, b),
        _ => Err(EvalError::type_error(format!(
            "cannot apply '{}' to {} and {}",
            op.symbol(),
            l.type_name(),
            r.type_name()
        ))),
    }
}

pub(crate) fn finite(v: f64, what: &'static str) -> Result<Value, EvalError> {
    if v.is_finite() {
        Ok(Value::Float(v))
    } else {
        Err(EvalError::non_finite(what))
    }
}

fn concat(a: &str, b: &str) -> Result<Value, EvalError> {
    let len = a.len() + b.len();
    if len > MAX_STRING_BYTES {
        return Err(EvalError::limit(format!(
            "string of {len} bytes exceeds the limit of {MAX_STRING_BYTES}"
        )));
    }
    let mut s = String::with_capacity(len);
    s.push_str(a);
    s.push_str(b);
    Ok(Value::String(Str::from(s)))
}

pub(crate) fn negate(v: &Value) -> Result<Value, EvalError> {
    match v {
        Value::Int(i) => i
            .checked_neg()
            .map(Value::Int)
            .ok_or_else(|| EvalError::overflow("negation")),
        Value::Float(f) => Ok(Value::Float(-f)),
        other => Err(EvalError::type_error(format!(
            "cannot negate {}",
            other.type_name()
        ))),
    }
}

/// Comparison. Same-kind scalars are answered inline; the rest out of line.
#[inline(always)]
pub(crate) fn compare(op: CmpOp, l: &Value, r: &Value) -> Result<bool, EvalError> {
    let ord = match (l, r) {
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        (Value::Int(a), Value::Int(b)) => a.cmp(b),
        (Value::Float(a), Value::Float(b)) => match a.partial_cmp(b) {
            Some(ord) => ord,
            None => return compare_general(op, l, r),
        },
        (Value::Float(a), Value::Int(b))
            if op.is_ordering() && b.unsigned_abs() <= EXACT_IN_FLOAT =>
        {
            match a.partial_cmp(&(*b as f64)) {
                Some(ord) => ord,
                None => return compare_general(op, l, r),
            }
        }
        _ => return compare_general(op, l, r),
    };
    Ok(op.holds(ord))
}

#[inline(never)]
fn compare_general(op: CmpOp, l: &Value, r: &Value) -> Result<bool, EvalError> {
    let ord = match op {
        CmpOp::Eq => return Ok(l == r),
        CmpOp::Ne => return Ok(l != r),
        _ => l.compare(r).ok_or_else(|| {
            EvalError::type_error(format!(
                "cannot compare {} with {} using '{}'",
                l.type_name(),
                r.type_name(),
                op.symbol()
            ))
        })?,
    };
    Ok(op.holds(ord))
}

/// `item in coll`: array membership (strict equality), substring, or object key.
pub(crate) fn member(item: &Value, coll: &Value) -> Result<bool, EvalError> {
    match (coll, item) {
        (Value::Array(a), _) => Ok(a.iter().any(|x| x == item)),
        (Value::String(s), Value::String(sub)) => Ok(s.contains(sub.as_str())),
        (Value::Object(o), Value::String(k)) => Ok(o.contains_key(k.as_str())),
        _ => Err(EvalError::type_error(format!(
            "cannot test whether {} is in {}",
            item.type_name(),
            coll.type_name()
        ))),
    }
}
