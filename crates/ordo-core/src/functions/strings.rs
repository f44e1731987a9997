//! String functions. Lengths and positions count characters, not bytes.

use std::fmt::Write;

use super::{Args, Builtin, VARIADIC, func, string};
use crate::error::EvalError;
use crate::expr::ops;
use crate::value::Value;

pub(super) const FUNCTIONS: &[Builtin] = &[
    func("len", 1, 1, len),
    func("upper", 1, 1, |a| Ok(Value::from(a.str(0)?.to_uppercase()))),
    func("lower", 1, 1, |a| Ok(Value::from(a.str(0)?.to_lowercase()))),
    func("trim", 1, 1, |a| Ok(Value::from(a.str(0)?.trim()))),
    func("starts_with", 2, 2, |a| {
        Ok(Value::Bool(a.str(0)?.starts_with(a.str(1)?)))
    }),
    func("ends_with", 2, 2, |a| {
        Ok(Value::Bool(a.str(0)?.ends_with(a.str(1)?)))
    }),
    func("contains_str", 2, 2, |a| {
        Ok(Value::Bool(a.str(0)?.contains(a.str(1)?)))
    }),
    func("contains", 2, 2, |a| {
        Ok(Value::Bool(ops::member(a.get(1), a.get(0))?))
    }),
    func("substring", 2, 3, substring),
    func("replace", 3, 3, replace),
    func("split", 2, 2, split),
    func("join", 2, 2, join),
    func("pad_left", 2, 3, |a| pad(a, true)),
    func("pad_right", 2, 3, |a| pad(a, false)),
    func("char_at", 2, 2, char_at),
    func("index_of", 2, 2, index_of),
    func("format", 1, VARIADIC, format),
    func("sprintf", 1, VARIADIC, sprintf),
];

fn len(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    let n = match a.get(0) {
        Value::String(s) => s.chars().count(),
        Value::Array(items) => items.len(),
        Value::Object(map) => map.len(),
        _ => return Err(a.type_err(0, "a string, array or object")),
    };
    Ok(Value::Int(n as i64))
}

/// Resolves a possibly negative (from the end) index into `0..=len`.
pub(super) fn clamp_index(i: i64, len: usize) -> usize {
    if i < 0 {
        len.saturating_sub(i.unsigned_abs().try_into().unwrap_or(usize::MAX))
    } else {
        usize::try_from(i).unwrap_or(usize::MAX).min(len)
    }
}

fn substring(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    let s = a.str(0)?;
    let count = s.chars().count();
    let start = clamp_index(a.int(1)?, count);
    let end = match a.opt(2) {
        Some(_) => clamp_index(a.int(2)?, count),
        None => count,
    };
    Ok(Value::from(
        s.chars()
            .skip(start)
            .take(end.saturating_sub(start))
            .collect::<String>(),
    ))
}

fn replace(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    let (s, from, to) = (a.str(0)?, a.str(1)?, a.str(2)?);
    let occurrences = if from.is_empty() {
        s.chars().count() + 1
    } else {
        s.matches(from).count()
    };
    let len =
        (s.len() - occurrences * from.len()).saturating_add(occurrences.saturating_mul(to.len()));
    a.check_string_len(len)?;
    Ok(Value::from(s.replace(from, to)))
}

fn split(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    let (s, sep) = (a.str(0)?, a.str(1)?);
    let parts: Vec<Value> = if sep.is_empty() {
        a.check_collection_len(s.chars().count())?;
        s.chars().map(|c| Value::from(c.to_string())).collect()
    } else {
        a.check_collection_len(s.matches(sep).count() + 1)?;
        s.split(sep).map(Value::from).collect()
    };
    Ok(Value::array(parts))
}

fn join(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    let (items, sep) = (a.array(0)?, a.str(1)?);
    let mut out = String::new();
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        match v {
            Value::String(s) => out.push_str(s),
            Value::Int(_) | Value::Float(_) | Value::Bool(_) => out.push_str(&v.to_text()),
            other => {
                return Err(a.err(format!(
                    "cannot join element {} of type {}",
                    i + 1,
                    other.type_name()
                )));
            }
        }
        a.check_string_len(out.len())?;
    }
    Ok(Value::from(out))
}

fn pad(a: &Args<'_, '_>, left: bool) -> Result<Value, EvalError> {
    let s = a.str(0)?;
    let width = a.int(1)?;
    let fill = match a.opt(2) {
        Some(_) => {
            let p = a.str(2)?;
            let mut chars = p.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => c,
                _ => return Err(a.err("the padding must be exactly one character")),
            }
        }
        None => ' ',
    };
    let have = s.chars().count();
    let want = usize::try_from(width).unwrap_or(0);
    if want <= have {
        return Ok(Value::from(s));
    }
    let missing = want - have;
    a.check_string_len(
        s.len()
            .saturating_add(missing.saturating_mul(fill.len_utf8())),
    )?;
    let padding: String = std::iter::repeat_n(fill, missing).collect();
    Ok(Value::from(if left {
        padding + s
    } else {
        format!("{s}{padding}")
    }))
}

fn char_at(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    let s = a.str(0)?;
    let i = a.int(1)?;
    let idx = if i < 0 {
        let count = s.chars().count();
        match count.checked_sub(usize::try_from(i.unsigned_abs()).unwrap_or(usize::MAX)) {
            Some(x) => x,
            None => return Ok(Value::Null),
        }
    } else {
        usize::try_from(i).unwrap_or(usize::MAX)
    };
    Ok(s.chars()
        .nth(idx)
        .map_or(Value::Null, |c| Value::from(c.to_string())))
}

fn index_of(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    let pos = match a.get(0) {
        Value::String(s) => {
            let sub = a.str(1)?;
            s.find(sub).map(|byte| s[..byte].chars().count())
        }
        Value::Array(items) => items.iter().position(|x| x == a.get(1)),
        _ => return Err(a.type_err(0, "a string or an array")),
    };
    Ok(Value::Int(pos.map_or(-1, |p| p as i64)))
}

/// `format("{} owes {1}", name, amount)`: `{}` takes the next argument, `{N}` argument N
/// (0-based), `{{` and `}}` are literal braces.
fn format(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    let template = a.str(0)?;
    let values: Vec<&Value> = a.iter().skip(1).collect();
    let mut out = String::with_capacity(template.len());
    let mut next = 0;
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let mut spec = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(d) if d.is_ascii_digit() && spec.len() < 6 => spec.push(d),
                        _ => {
                            return Err(a.err(
                                "placeholders must be {} or {N}; use {{ for a literal brace",
                            ));
                        }
                    }
                }
                let idx = if spec.is_empty() {
                    next += 1;
                    next - 1
                } else {
                    spec.parse().unwrap_or(usize::MAX)
                };
                let v = values
                    .get(idx)
                    .ok_or_else(|| a.err(format!("placeholder {{{idx}}} has no argument")))?;
                out.push_str(&v.to_text());
                a.check_string_len(out.len())?;
            }
            '}' => return Err(a.err("unmatched '}'; use }} for a literal brace")),
            c => out.push(c),
        }
    }
    string(a, out)
}

/// `sprintf("%s is %05.2f", name, x)` or, as in Ordo, `sprintf(fmt, [values])`.
/// Verbs: `%s %v` (text), `%d` (int), `%f` (number), `%x %X` (hex int), `%%`; flags
/// `- 0 +`, width and `.precision`.
fn sprintf(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    let fmt = a.str(0)?;
    let values: Vec<&Value> = match (a.len(), a.get(1)) {
        (2, Value::Array(items)) => items.iter().collect(),
        _ => a.iter().skip(1).collect(),
    };
    let mut out = String::with_capacity(fmt.len());
    let mut used = 0;
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        let (mut left, mut zero, mut plus) = (false, false, false);
        while let Some(&f) = chars.peek() {
            match f {
                '-' => left = true,
                '0' => zero = true,
                '+' => plus = true,
                _ => break,
            }
            chars.next();
        }
        let width = read_number(&mut chars);
        let precision = if chars.peek() == Some(&'.') {
            chars.next();
            Some(read_number(&mut chars).unwrap_or(0))
        } else {
            None
        };
        if width.unwrap_or(0) > 1024 || precision.unwrap_or(0) > 64 {
            return Err(a.err("width is limited to 1024 and precision to 64"));
        }
        let verb = chars
            .next()
            .ok_or_else(|| a.err("format ends in the middle of a '%' verb"))?;
        let v = values.get(used).ok_or_else(|| {
            a.err(format!(
                "the format needs more than {} argument(s)",
                values.len()
            ))
        })?;
        used += 1;
        let body = match verb {
            's' | 'v' => {
                let t = v.to_text();
                match precision {
                    Some(p) => t.chars().take(p).collect(),
                    None => t.to_string(),
                }
            }
            'd' => match v {
                Value::Int(i) => signed(i.to_string(), plus),
                other => return Err(a.err(format!("%d needs an int, got {}", other.type_name()))),
            },
            'f' => match v.as_f64() {
                Some(x) => signed(format!("{:.*}", precision.unwrap_or(6), x), plus),
                None => return Err(a.err(format!("%f needs a number, got {}", v.type_name()))),
            },
            'x' | 'X' => match v {
                Value::Int(i) => {
                    let h = format!("{i:x}");
                    if verb == 'X' { h.to_uppercase() } else { h }
                }
                other => {
                    return Err(a.err(format!("%{verb} needs an int, got {}", other.type_name())));
                }
            },
            other => return Err(a.err(format!("unknown verb '%{other}'"))),
        };
        let pad = width.unwrap_or(0).saturating_sub(body.chars().count());
        if left {
            out.push_str(&body);
            out.extend(std::iter::repeat_n(' ', pad));
        } else if zero && matches!(verb, 'd' | 'f' | 'x' | 'X') {
            // Zeros go after the sign.
            let (sign, digits) = match body.strip_prefix(['-', '+']) {
                Some(rest) => (&body[..1], rest),
                None => ("", body.as_str()),
            };
            let _ = write!(out, "{sign}{}{digits}", "0".repeat(pad));
        } else {
            out.extend(std::iter::repeat_n(' ', pad));
            out.push_str(&body);
        }
        a.check_string_len(out.len())?;
    }
    if used < values.len() {
        return Err(a.err(format!(
            "{} argument(s) given but the format uses {used}",
            values.len()
        )));
    }
    Ok(Value::from(out))
}

fn signed(s: String, plus: bool) -> String {
    if plus && !s.starts_with('-') {
        format!("+{s}")
    } else {
        s
    }
}

fn read_number(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<usize> {
    let mut n: Option<usize> = None;
    while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
        chars.next();
        n = Some(n.unwrap_or(0).saturating_mul(10).saturating_add(d as usize));
    }
    n
}
