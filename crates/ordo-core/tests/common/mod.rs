//! Shared helpers for the data-driven tests.
#![allow(
    dead_code,
    unused_imports,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use ordo_core::{Expression, FieldMissing, RuleSet, Value};

/// What a case expects: a value (as JSON text) or an error containing some text.
pub enum Want {
    Value(&'static str),
    Error(&'static str),
}

pub use Want::{Error as err, Value as ok};

pub fn json(text: &str) -> Value {
    Value::from_json_str(text).unwrap_or_else(|e| panic!("bad JSON in test: {e}: {text}"))
}

/// Evaluates `expr` against the JSON `context` (missing fields are errors).
pub fn eval(expr: &str, context: &str) -> Result<Value, String> {
    eval_with(expr, context, FieldMissing::Strict)
}

pub fn eval_with(expr: &str, context: &str, missing: FieldMissing) -> Result<Value, String> {
    let compiled = Expression::parse(expr).map_err(|e| e.to_string())?;
    compiled
        .eval_with(&json(context), missing)
        .map_err(|e| e.to_string())
}

/// Runs a table of `(expression, context, expectation)`, reporting every failing row.
pub fn check_table(cases: &[(&str, &str, Want)]) {
    let mut failures = Vec::new();
    for (expr, ctx, want) in cases {
        let got = eval(expr, ctx);
        let pass = match (want, &got) {
            (Want::Value(v), Ok(got)) => *got == json(v) && same_kind(got, &json(v)),
            (Want::Error(needle), Err(msg)) => msg.contains(needle),
            _ => false,
        };
        if !pass {
            let want = match want {
                Want::Value(v) => format!("value {v}"),
                Want::Error(e) => format!("error containing {e:?}"),
            };
            failures.push(format!("  {expr:?} with {ctx}: want {want}, got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Equality that also tells ints from floats in nested positions (`==` already does) and
/// checks float results are floats and int results ints at the top.
fn same_kind(a: &Value, b: &Value) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

pub fn rules(text: &str) -> RuleSet {
    RuleSet::from_json(text).unwrap_or_else(|e| panic!("{e}"))
}
