//! Array functions.

use std::collections::HashSet;

use super::strings::clamp_index;
use super::{Args, Builtin, VARIADIC, func};
use crate::error::EvalError;
use crate::expr::ops::finite;
use crate::value::{Value, new_map};

pub(super) const FUNCTIONS: &[Builtin] = &[
    func("sum", 1, 1, sum),
    func("avg", 1, 1, avg),
    func("count", 1, 1, |a| Ok(Value::Int(a.array(0)?.len() as i64))),
    func("first", 1, 1, |a| {
        Ok(a.array(0)?.first().cloned().unwrap_or_default())
    }),
    func("last", 1, 1, |a| {
        Ok(a.array(0)?.last().cloned().unwrap_or_default())
    }),
    func("sort", 1, 1, sort),
    func("reverse", 1, 1, reverse),
    func("unique", 1, 1, unique),
    func("slice", 2, 3, slice),
    func("range", 1, 3, range),
    func("flatten", 1, 1, flatten),
    func("array_concat", 2, VARIADIC, array_concat),
    func("map_extract", 2, 2, map_extract),
    func("filter_by", 3, 3, filter_by),
    func("group_by", 2, 2, group_by),
];

/// Sum of numbers: an int while every element is an int (overflow is an error), a float
/// as soon as one is a float.
fn sum(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    let mut acc = Value::Int(0);
    for v in a.array(0)? {
        acc = match (&acc, v) {
            (Value::Int(x), Value::Int(y)) => Value::Int(
                x.checked_add(*y)
                    .ok_or_else(|| EvalError::overflow("sum"))?,
            ),
            (_, Value::Int(_) | Value::Float(_)) => finite(
                acc.as_f64().unwrap_or(0.0) + v.as_f64().unwrap_or(0.0),
                "sum",
            )?,
            _ => return Err(a.err(format!("cannot add {} to a sum", v.type_name()))),
        };
    }
    Ok(acc)
}

/// Mean as a float; `null` for an empty array.
fn avg(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    let items = a.array(0)?;
    if items.is_empty() {
        return Ok(Value::Null);
    }
    let mut total = 0.0;
    for v in items {
        total += v
            .as_f64()
            .ok_or_else(|| a.err(format!("cannot average {}", v.type_name())))?;
    }
    finite(total / items.len() as f64, "avg")
}

/// Ascending sort of numbers, strings or bools; mixed kinds are an error.
fn sort(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    let items = a.array(0)?;
    if let Some(first) = items.first() {
        for v in items {
            if v.compare(first).is_none() {
                return Err(a.err(format!(
                    "cannot sort {} together with {}",
                    v.type_name(),
                    first.type_name()
                )));
            }
        }
    }
    let mut out = items.to_vec();
    out.sort_by(|x, y| x.compare(y).unwrap_or(std::cmp::Ordering::Equal));
    Ok(Value::array(out))
}

/// Reverses an array, or the characters of a string.
fn reverse(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    match a.get(0) {
        Value::Array(items) => Ok(Value::array(items.iter().rev().cloned().collect())),
        Value::String(s) => Ok(Value::from(s.chars().rev().collect::<String>())),
        _ => Err(a.type_err(0, "an array or a string")),
    }
}

/// Distinct elements (strict equality), first occurrences kept, in order.
fn unique(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    let items = a.array(0)?;
    let mut seen: HashSet<&Value, foldhash::fast::RandomState> = HashSet::default();
    let out = items.iter().filter(|v| seen.insert(v)).cloned().collect();
    Ok(Value::array(out))
}

/// `slice(arr, start, end?)`; negative positions count from the end.
fn slice(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    let items = a.array(0)?;
    let start = clamp_index(a.int(1)?, items.len());
    let end = match a.opt(2) {
        Some(_) => clamp_index(a.int(2)?, items.len()),
        None => items.len(),
    };
    Ok(Value::array(
        items
            .get(start..end.max(start))
            .unwrap_or_default()
            .to_vec(),
    ))
}

/// `range(end)`, `range(start, end)`, `range(start, end, step)`: end excluded.
fn range(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    let (start, end) = match a.opt(1) {
        Some(_) => (a.int(0)?, a.int(1)?),
        None => (0, a.int(0)?),
    };
    let step = match a.opt(2) {
        Some(_) => a.int(2)?,
        None => 1,
    };
    if step == 0 {
        return Err(a.err("step cannot be zero"));
    }
    let span = i128::from(end) - i128::from(start);
    let count = if (span > 0) == (step > 0) && span != 0 {
        let step = i128::from(step);
        ((span.abs() + step.abs() - 1) / step.abs()) as u128
    } else {
        0
    };
    a.check_collection_len(usize::try_from(count).unwrap_or(usize::MAX))?;
    let out = (0..count as i128)
        .map(|k| Value::Int((i128::from(start) + k * i128::from(step)) as i64))
        .collect();
    Ok(Value::array(out))
}

/// Flattens one level of nesting.
fn flatten(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    let items = a.array(0)?;
    let total: usize = items
        .iter()
        .map(|v| v.as_array().map_or(1, <[Value]>::len))
        .sum();
    a.check_collection_len(total)?;
    let mut out = Vec::with_capacity(total);
    for v in items {
        match v {
            Value::Array(inner) => out.extend(inner.iter().cloned()),
            other => out.push(other.clone()),
        }
    }
    Ok(Value::array(out))
}

fn array_concat(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    let mut total = 0usize;
    for i in 0..a.len() {
        total = total.saturating_add(a.array(i)?.len());
    }
    a.check_collection_len(total)?;
    let mut out = Vec::with_capacity(total);
    for i in 0..a.len() {
        out.extend(a.array(i)?.iter().cloned());
    }
    Ok(Value::array(out))
}

/// The value at `path` in each element (`null` where absent).
fn map_extract(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    let (items, path) = (a.array(0)?, a.str(1)?);
    Ok(Value::array(
        items
            .iter()
            .map(|v| v.get_path(path).cloned().unwrap_or_default())
            .collect(),
    ))
}

/// The elements whose value at `path` equals `value` (strictly).
fn filter_by(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    let (items, path, want) = (a.array(0)?, a.str(1)?, a.get(2));
    Ok(Value::array(
        items
            .iter()
            .filter(|v| v.get_path(path) == Some(want))
            .cloned()
            .collect(),
    ))
}

/// An object from the text of each element's value at `path` to the elements having it,
/// groups in order of first appearance.
fn group_by(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    let (items, path) = (a.array(0)?, a.str(1)?);
    let mut groups: indexmap::IndexMap<_, Vec<Value>, foldhash::fast::RandomState> =
        indexmap::IndexMap::default();
    for v in items {
        let key = v
            .get_path(path)
            .map_or_else(|| "null".into(), Value::to_text);
        groups.entry(key).or_default().push(v.clone());
    }
    let mut map = new_map(groups.len());
    for (k, vs) in groups {
        map.insert(k, Value::array(vs));
    }
    Ok(Value::object(map))
}
