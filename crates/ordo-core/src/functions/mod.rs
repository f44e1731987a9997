//! Built-in functions.
//!
//! Each function is a [`Builtin`]: a name, an arity checked when the expression is
//! compiled, whether it is pure (and so may be folded when its arguments are constant),
//! and the code. Functions whose first argument is a pattern (regexes, globs, CIDR
//! ranges) can prepare it once at compile time when it is a constant.

use std::borrow::Cow;

use crate::error::EvalError;
use crate::limits::{MAX_COLLECTION_LEN, MAX_STRING_BYTES};
use crate::value::{Map, Value};

mod collections;
mod encoding;
mod math;
mod net;
mod objects;
mod patterns;
mod strings;
mod time;
mod types;

/// A pattern argument compiled ahead of time.
#[derive(Debug)]
pub(crate) enum Prepared {
    Regex(regex::Regex),
    Glob(globset::GlobMatcher),
    Net(ipnet::IpNet),
}

pub(crate) type Call = fn(&Args<'_, '_>) -> Result<Value, EvalError>;
pub(crate) type Prepare = fn(&Value) -> Result<Prepared, String>;

pub(crate) struct Builtin {
    pub name: &'static str,
    pub min: usize,
    /// `usize::MAX` for variadic functions.
    pub max: usize,
    /// Pure functions give the same result for the same arguments and are folded when
    /// all their arguments are constants.
    pub pure: bool,
    pub call: Call,
    /// Compiles a constant first argument once.
    pub prepare: Option<Prepare>,
}

impl std::fmt::Debug for Builtin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}()", self.name)
    }
}

const VARIADIC: usize = usize::MAX;

/// A pure function without a prepared argument.
const fn func(name: &'static str, min: usize, max: usize, call: Call) -> Builtin {
    Builtin {
        name,
        min,
        max,
        pure: true,
        call,
        prepare: None,
    }
}

const TABLES: &[&[Builtin]] = &[
    strings::FUNCTIONS,
    math::FUNCTIONS,
    collections::FUNCTIONS,
    objects::FUNCTIONS,
    types::FUNCTIONS,
    time::FUNCTIONS,
    patterns::FUNCTIONS,
    encoding::FUNCTIONS,
    net::FUNCTIONS,
];

pub(crate) fn lookup(name: &str) -> Option<&'static Builtin> {
    TABLES
        .iter()
        .flat_map(|t| t.iter())
        .find(|b| b.name == name)
}

/// Names of every built-in function.
pub fn names() -> impl Iterator<Item = &'static str> {
    TABLES.iter().flat_map(|t| t.iter()).map(|b| b.name)
}

impl Builtin {
    /// "expects 2 or 3 arguments"-style description of the arity.
    pub(crate) fn arity_text(&self) -> String {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        match (self.min, self.max) {
            (a, b) if a == b => format!("{a} argument{}", plural(a)),
            (a, VARIADIC) => format!("at least {a} argument{}", plural(a)),
            (a, b) if b == a + 1 => format!("{a} or {b} arguments"),
            (a, b) => format!("{a} to {b} arguments"),
        }
    }
}

static NULL: Value = Value::Null;

/// The evaluated arguments of one call, with typed accessors whose errors name the
/// function and the argument.
pub(crate) struct Args<'v, 'a> {
    name: &'static str,
    vals: &'v [Cow<'a, Value>],
    prepared: Option<&'v Prepared>,
}

impl<'v, 'a> Args<'v, 'a> {
    pub(crate) fn new(
        name: &'static str,
        vals: &'v [Cow<'a, Value>],
        prepared: Option<&'v Prepared>,
    ) -> Self {
        Args {
            name,
            vals,
            prepared,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.vals.len()
    }

    /// Argument `i`, or `null` past the end (arity is checked at compile time, so only
    /// optional arguments can be absent).
    pub(crate) fn get(&self, i: usize) -> &Value {
        self.vals.get(i).map_or(&NULL, |v| &**v)
    }

    pub(crate) fn opt(&self, i: usize) -> Option<&Value> {
        self.vals.get(i).map(|v| &**v)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Value> {
        self.vals.iter().map(|v| &**v)
    }

    pub(crate) fn prepared(&self) -> Option<&Prepared> {
        self.prepared
    }

    pub(crate) fn err(&self, message: impl Into<String>) -> EvalError {
        EvalError::func(self.name, message)
    }

    pub(crate) fn type_err(&self, i: usize, expected: &str) -> EvalError {
        self.err(format!(
            "expects {expected} as argument {}, got {}",
            i + 1,
            self.get(i).type_name()
        ))
    }

    pub(crate) fn str(&self, i: usize) -> Result<&str, EvalError> {
        self.get(i)
            .as_str()
            .ok_or_else(|| self.type_err(i, "a string"))
    }

    pub(crate) fn int(&self, i: usize) -> Result<i64, EvalError> {
        self.get(i)
            .as_i64()
            .ok_or_else(|| self.type_err(i, "an int"))
    }

    pub(crate) fn array(&self, i: usize) -> Result<&[Value], EvalError> {
        self.get(i)
            .as_array()
            .ok_or_else(|| self.type_err(i, "an array"))
    }

    pub(crate) fn object(&self, i: usize) -> Result<&Map, EvalError> {
        self.get(i)
            .as_object()
            .ok_or_else(|| self.type_err(i, "an object"))
    }

    /// Refuses results that would exceed the string limit, before building them.
    pub(crate) fn check_string_len(&self, len: usize) -> Result<(), EvalError> {
        if len > MAX_STRING_BYTES {
            return Err(EvalError::limit(format!(
                "{}: result of {len} bytes exceeds the limit of {MAX_STRING_BYTES}",
                self.name
            )));
        }
        Ok(())
    }

    /// Refuses results that would exceed the collection limit, before building them.
    pub(crate) fn check_collection_len(&self, len: usize) -> Result<(), EvalError> {
        if len > MAX_COLLECTION_LEN {
            return Err(EvalError::limit(format!(
                "{}: result of {len} elements exceeds the limit of {MAX_COLLECTION_LEN}",
                self.name
            )));
        }
        Ok(())
    }
}

/// Builds a string result, refusing one over the size limit.
pub(crate) fn string(args: &Args<'_, '_>, s: String) -> Result<Value, EvalError> {
    args.check_string_len(s.len())?;
    Ok(Value::from(s))
}
