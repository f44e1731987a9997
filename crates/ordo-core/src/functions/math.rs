//! Numeric functions.

use std::cmp::Ordering;

use super::{Args, Builtin, VARIADIC, func};
use crate::error::EvalError;
use crate::expr::ops::finite;
use crate::value::Value;

pub(super) const FUNCTIONS: &[Builtin] = &[
    func("abs", 1, 1, abs),
    func("min", 1, VARIADIC, |a| extreme(a, Ordering::Less)),
    func("max", 1, VARIADIC, |a| extreme(a, Ordering::Greater)),
    func("floor", 1, 1, |a| to_integer(a, f64::floor)),
    func("ceil", 1, 1, |a| to_integer(a, f64::ceil)),
    func("round", 1, 2, round),
];

fn abs(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    match a.get(0) {
        Value::Int(i) => i
            .checked_abs()
            .map(Value::Int)
            .ok_or_else(|| EvalError::overflow("abs")),
        Value::Float(f) => Ok(Value::Float(f.abs())),
        _ => Err(a.type_err(0, "a number")),
    }
}

/// `min(a, b, ...)` or, with one array argument, its smallest element (`max` alike).
fn extreme(a: &Args<'_, '_>, want: Ordering) -> Result<Value, EvalError> {
    let candidates: Vec<&Value> = match (a.len(), a.get(0)) {
        (1, Value::Array(items)) => items.iter().collect(),
        _ => a.iter().collect(),
    };
    let mut best: Option<&Value> = None;
    for v in candidates {
        best = Some(match best {
            None => v,
            Some(b) => match v.compare(b) {
                Some(ord) if ord == want => v,
                Some(_) => b,
                None => {
                    return Err(a.err(format!(
                        "cannot compare {} with {}",
                        v.type_name(),
                        b.type_name()
                    )));
                }
            },
        });
    }
    match best {
        Some(v) => Ok(v.clone()),
        None => Err(a.err("needs at least one value")),
    }
}

/// Converts a float to an int after `round`, refusing values outside the int range.
fn float_to_int(a: &Args<'_, '_>, x: f64) -> Result<Value, EvalError> {
    // i64::MIN is -2^63 exactly; anything at or above 2^63 does not fit.
    if (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&x) {
        Ok(Value::Int(x as i64))
    } else {
        Err(a.err(format!("{x:?} is outside the int range")))
    }
}

fn to_integer(a: &Args<'_, '_>, round: fn(f64) -> f64) -> Result<Value, EvalError> {
    match a.get(0) {
        Value::Int(i) => Ok(Value::Int(*i)),
        Value::Float(f) => float_to_int(a, round(*f)),
        _ => Err(a.type_err(0, "a number")),
    }
}

/// `round(x)` gives an int (half away from zero); `round(x, n)` a float with `n` decimals.
fn round(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    if a.opt(1).is_none() {
        return to_integer(a, f64::round);
    }
    let digits = a.int(1)?;
    if !(0..=15).contains(&digits) {
        return Err(a.err("the number of decimals must be between 0 and 15"));
    }
    match a.get(0) {
        Value::Int(i) => Ok(Value::Int(*i)),
        Value::Float(f) => {
            let scaled = f * 10f64.powi(digits as i32);
            if !scaled.is_finite() {
                // Too large to have decimals worth rounding.
                return Ok(Value::Float(*f));
            }
            finite(scaled.round() / 10f64.powi(digits as i32), "round")
        }
        _ => Err(a.type_err(0, "a number")),
    }
}
