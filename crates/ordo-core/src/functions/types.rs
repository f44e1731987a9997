//! Type tests and conversions.

use super::{Args, Builtin, func};
use crate::error::EvalError;
use crate::value::Value;

pub(super) const FUNCTIONS: &[Builtin] = &[
    func("type", 1, 1, |a| Ok(Value::from(a.get(0).type_name()))),
    func("is_null", 1, 1, |a| Ok(Value::Bool(a.get(0).is_null()))),
    func("is_number", 1, 1, |a| {
        Ok(Value::Bool(matches!(
            a.get(0),
            Value::Int(_) | Value::Float(_)
        )))
    }),
    func("is_string", 1, 1, |a| {
        Ok(Value::Bool(matches!(a.get(0), Value::String(_))))
    }),
    func("is_array", 1, 1, |a| {
        Ok(Value::Bool(matches!(a.get(0), Value::Array(_))))
    }),
    func("is_bool", 1, 1, |a| {
        Ok(Value::Bool(matches!(a.get(0), Value::Bool(_))))
    }),
    func("is_object", 1, 1, |a| {
        Ok(Value::Bool(matches!(a.get(0), Value::Object(_))))
    }),
    func("to_int", 1, 1, to_int),
    func("to_float", 1, 1, to_float),
    func("to_string", 1, 1, |a| Ok(Value::String(a.get(0).to_text()))),
    func("to_bool", 1, 1, to_bool),
];

/// Ints as they are, floats truncated toward zero, numeric strings parsed, bools as 0/1.
fn to_int(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    match a.get(0) {
        Value::Int(i) => Ok(Value::Int(*i)),
        Value::Float(f) => {
            let t = f.trunc();
            if (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&t) {
                Ok(Value::Int(t as i64))
            } else {
                Err(a.err(format!("{f:?} is outside the int range")))
            }
        }
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .map(Value::Int)
            .map_err(|_| a.err(format!("cannot convert \"{s}\" to an int"))),
        Value::Bool(b) => Ok(Value::Int(i64::from(*b))),
        _ => Err(a.type_err(0, "a number, string or bool")),
    }
}

fn to_float(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    match a.get(0) {
        Value::Int(i) => Ok(Value::Float(*i as f64)),
        Value::Float(f) => Ok(Value::Float(*f)),
        Value::String(s) => match s.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Value::Float(f)),
            _ => Err(a.err(format!("cannot convert \"{s}\" to a float"))),
        },
        _ => Err(a.type_err(0, "a number or string")),
    }
}

/// Bools as they are; numbers are true unless zero; `"true"`/`"false"` (any case),
/// `"1"`/`"0"` parsed; `null` is false.
fn to_bool(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    match a.get(0) {
        Value::Bool(b) => Ok(Value::Bool(*b)),
        Value::Int(i) => Ok(Value::Bool(*i != 0)),
        Value::Float(f) => Ok(Value::Bool(*f != 0.0)),
        Value::Null => Ok(Value::Bool(false)),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(Value::Bool(true)),
            "false" | "0" => Ok(Value::Bool(false)),
            _ => Err(a.err(format!("cannot convert \"{s}\" to a bool"))),
        },
        _ => Err(a.type_err(0, "a bool, number, string or null")),
    }
}
