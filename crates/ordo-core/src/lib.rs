//! # ordo-core: the Ordo rule engine
//!
//! A ruleset is a flow of steps (decisions, actions, terminals, sub-rules) whose
//! conditions and values are written in a small expression language. This crate reads
//! rulesets ([`RuleSet`], JSON or YAML), validates and compiles them once
//! ([`compile`] → [`CompiledRuleSet`]) and executes them against input values
//! ([`CompiledRuleSet::execute`]) in well under a microsecond for typical rules.
//!
//! The crate is pure: no I/O, no async, no global state. Every execution is bounded
//! (steps, time, expression and value nesting, result sizes) and no input, ruleset or
//! expression makes it panic.
//!
//! Map of the modules:
//! - [`value`]: [`Value`], JSON-shaped data with distinct ints and floats.
//! - [`model`]: the ruleset as written (source model, round-trips exactly).
//! - [`expr`]: expression lexer, parser, tree ([`Expr`]), compiler and evaluator.
//! - `functions`: the built-in function library.
//! - `rule`: validation and the compiled form.
//! - [`exec`]: the executor, outcomes and traces.
//! - [`limits`]: the hard bounds.
//!
//! ```
//! use ordo_core::{RuleSet, Value};
//!
//! let rules = RuleSet::from_json(r#"{
//!   "config": {"name": "adult", "entry_step": "check"},
//!   "steps": {
//!     "check": {"id": "check", "type": "decision",
//!               "branches": [{"condition": "age >= 18", "next_step": "yes"}],
//!               "default_next": "no"},
//!     "yes": {"id": "yes", "type": "terminal", "result": {"code": "ADULT"}},
//!     "no":  {"id": "no",  "type": "terminal", "result": {"code": "MINOR"}}
//!   }
//! }"#).unwrap();
//! let compiled = rules.compile().unwrap();
//! let input = Value::from_json_str(r#"{"age": 20}"#).unwrap();
//! assert_eq!(compiled.execute(&input).unwrap().code(), "ADULT");
//! ```

mod boxed;
pub mod error;
pub mod exec;
pub mod expr;
mod functions;
pub mod limits;
pub mod model;
mod rule;
pub mod value;

pub use error::{
    CompileError, EvalError, EvalErrorKind, ExecError, ExecErrorKind, ExprError, LoadError,
    ParseError, ValidationError,
};
pub use exec::{ExecOptions, Outcome, Output, Trace, TraceStep};
pub use expr::{Expr, Expression, FieldMissing};
pub use model::{RuleSet, validate_name};
pub use rule::compile::compile;
pub use rule::compiled::CompiledRuleSet;
pub use value::{Map, Str, Value};

/// The README's Rust example is compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

/// Names of all built-in functions.
pub fn function_names() -> impl Iterator<Item = &'static str> {
    functions::names()
}
