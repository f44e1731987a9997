//! Object functions.

use super::{Args, Builtin, VARIADIC, func};
use crate::error::EvalError;
use crate::value::{Value, new_map};

pub(super) const FUNCTIONS: &[Builtin] = &[
    func("keys", 1, 1, |a| {
        Ok(Value::array(
            a.object(0)?
                .keys()
                .map(|k| Value::String(k.clone()))
                .collect(),
        ))
    }),
    func("values", 1, 1, |a| {
        Ok(Value::array(a.object(0)?.values().cloned().collect()))
    }),
    func("has_key", 2, 2, |a| {
        Ok(Value::Bool(a.object(0)?.contains_key(a.str(1)?)))
    }),
    func("merge", 2, VARIADIC, merge),
    func("object_get", 2, 3, object_get),
];

/// Merges objects left to right: a later key replaces an earlier one in place.
fn merge(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    let mut total = 0usize;
    for i in 0..a.len() {
        total = total.saturating_add(a.object(i)?.len());
    }
    a.check_collection_len(total)?;
    let mut map = new_map(total);
    for i in 0..a.len() {
        for (k, v) in a.object(i)? {
            map.insert(k.clone(), v.clone());
        }
    }
    Ok(Value::object(map))
}

/// `object_get(obj, "a.b", default?)`: the value at a dotted path, else the default
/// (`null` when not given).
fn object_get(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    a.object(0)?;
    let path = a.str(1)?;
    Ok(a.get(0)
        .get_path(path)
        .cloned()
        .unwrap_or_else(|| a.get(2).clone()))
}
