//! Regular expressions and globs. A constant pattern is compiled once, with the rule;
//! a pattern computed at run time is compiled per call, under the same size limits.

use std::borrow::Cow;

use regex::{Regex, RegexBuilder};

use super::{Args, Builtin, Prepare, Prepared, func, string};
use crate::error::EvalError;
use crate::limits::{MAX_PATTERN_LEN, MAX_REGEX_SIZE};
use crate::value::Value;

/// A function whose first argument is a regex, compiled once when constant.
const fn regex_fn(name: &'static str, min: usize, max: usize, call: super::Call) -> Builtin {
    Builtin {
        prepare: Some(prepare_regex as Prepare),
        ..func(name, min, max, call)
    }
}

pub(super) const FUNCTIONS: &[Builtin] = &[
    regex_fn("regex_match", 2, 2, |a| {
        Ok(Value::Bool(regex(a)?.is_match(a.str(1)?)))
    }),
    regex_fn("regex_find", 2, 2, |a| {
        Ok(regex(a)?
            .find(a.str(1)?)
            .map_or(Value::Null, |m| Value::from(m.as_str())))
    }),
    regex_fn("regex_find_all", 2, 2, |a| {
        let re = regex(a)?;
        let mut out = Vec::new();
        for m in re.find_iter(a.str(1)?) {
            out.push(Value::from(m.as_str()));
            a.check_collection_len(out.len())?;
        }
        Ok(Value::array(out))
    }),
    regex_fn("regex_replace", 3, 3, |a| {
        let re = regex(a)?;
        let replaced = re.replace_all(a.str(1)?, a.str(2)?);
        string(a, replaced.into_owned())
    }),
    regex_fn("regex_split", 2, 2, |a| {
        let re = regex(a)?;
        let mut out = Vec::new();
        for part in re.split(a.str(1)?) {
            out.push(Value::from(part));
            a.check_collection_len(out.len())?;
        }
        Ok(Value::array(out))
    }),
    Builtin {
        name: "glob_match",
        min: 2,
        max: 2,
        pure: true,
        call: |a| {
            let matcher = match a.prepared() {
                Some(Prepared::Glob(g)) => Cow::Borrowed(g),
                _ => Cow::Owned(glob(a.str(0)?).map_err(|e| a.err(e))?),
            };
            Ok(Value::Bool(matcher.is_match(a.str(1)?)))
        },
        prepare: Some(|v| match v {
            Value::String(p) => glob(p).map(Prepared::Glob),
            other => Err(format!(
                "expects a string pattern, got {}",
                other.type_name()
            )),
        }),
    },
];

fn build_regex(pattern: &str) -> Result<Regex, String> {
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(format!("pattern is longer than {MAX_PATTERN_LEN} bytes"));
    }
    RegexBuilder::new(pattern)
        .size_limit(MAX_REGEX_SIZE)
        .dfa_size_limit(MAX_REGEX_SIZE)
        .build()
        .map_err(|e| {
            // The syntax error's last line states the problem; the lines above draw it.
            let text = e.to_string();
            let reason = text.lines().last().unwrap_or_default().trim();
            format!(
                "invalid regex: {}",
                reason.strip_prefix("error: ").unwrap_or(reason)
            )
        })
}

fn prepare_regex(v: &Value) -> Result<Prepared, String> {
    match v {
        Value::String(p) => build_regex(p).map(Prepared::Regex),
        other => Err(format!(
            "expects a string pattern, got {}",
            other.type_name()
        )),
    }
}

fn regex<'x>(a: &'x Args<'_, '_>) -> Result<Cow<'x, Regex>, EvalError> {
    match a.prepared() {
        Some(Prepared::Regex(re)) => Ok(Cow::Borrowed(re)),
        _ => build_regex(a.str(0)?).map(Cow::Owned).map_err(|e| a.err(e)),
    }
}

fn glob(pattern: &str) -> Result<globset::GlobMatcher, String> {
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(format!("pattern is longer than {MAX_PATTERN_LEN} bytes"));
    }
    globset::Glob::new(pattern)
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("invalid glob: {e}"))
}
