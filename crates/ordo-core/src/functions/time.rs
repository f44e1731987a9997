//! Time functions over Unix timestamps (seconds, UTC).

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveDateTime, TimeDelta, Utc};

use super::{Args, Builtin, func};
use crate::error::EvalError;
use crate::limits::MAX_PATTERN_LEN;
use crate::value::Value;

pub(super) const FUNCTIONS: &[Builtin] = &[
    Builtin {
        pure: false,
        ..func("now", 0, 0, |_| {
            Ok(Value::Int(since_epoch().as_secs() as i64))
        })
    },
    Builtin {
        pure: false,
        ..func("now_millis", 0, 0, |_| {
            Ok(Value::Int(
                since_epoch().as_millis().try_into().unwrap_or(i64::MAX),
            ))
        })
    },
    func("parse_time", 1, 2, parse_time),
    func("format_time", 1, 2, format_time),
    func("time_diff", 2, 3, time_diff),
    func("date_add", 3, 3, date_add),
    func("time_of_day", 1, 1, |a| {
        Ok(Value::from(datetime(a, 0)?.format("%H:%M:%S").to_string()))
    }),
    func("day_of_week", 1, 1, |a| {
        Ok(Value::Int(i64::from(
            datetime(a, 0)?.weekday().number_from_monday(),
        )))
    }),
];

fn since_epoch() -> std::time::Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn datetime(a: &Args<'_, '_>, i: usize) -> Result<DateTime<Utc>, EvalError> {
    let ts = a.int(i)?;
    DateTime::from_timestamp(ts, 0).ok_or_else(|| a.err(format!("timestamp {ts} is out of range")))
}

fn pattern<'x>(a: &'x Args<'_, '_>, i: usize) -> Result<&'x str, EvalError> {
    let p = a.str(i)?;
    if p.len() > MAX_PATTERN_LEN {
        return Err(a.err(format!("format is longer than {MAX_PATTERN_LEN} bytes")));
    }
    Ok(p)
}

/// `parse_time(text)` reads RFC 3339; `parse_time(text, fmt)` a strftime format, with or
/// without a time or an offset (a bare date means midnight UTC).
fn parse_time(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    let s = a.str(0)?;
    let parsed = match a.opt(1) {
        None => DateTime::parse_from_rfc3339(s).map(|d| d.timestamp()).ok(),
        Some(_) => {
            let fmt = pattern(a, 1)?;
            DateTime::parse_from_str(s, fmt)
                .map(|d| d.timestamp())
                .or_else(|_| NaiveDateTime::parse_from_str(s, fmt).map(|d| d.and_utc().timestamp()))
                .or_else(|_| {
                    NaiveDate::parse_from_str(s, fmt)
                        .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc().timestamp())
                })
                .ok()
        }
    };
    parsed.map(Value::Int).ok_or_else(|| {
        a.err(match a.opt(1) {
            Some(f) => format!("cannot parse \"{s}\" with format {f}"),
            None => format!("cannot parse \"{s}\" as an RFC 3339 time"),
        })
    })
}

/// `format_time(ts, fmt?)`: strftime format, RFC 3339 (`2024-01-31T12:00:00Z`) by default.
fn format_time(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    let dt = datetime(a, 0)?;
    let fmt = match a.opt(1) {
        Some(_) => pattern(a, 1)?,
        None => "%Y-%m-%dT%H:%M:%SZ",
    };
    let mut out = String::new();
    write!(out, "{}", dt.format(fmt)).map_err(|_| a.err(format!("invalid format \"{fmt}\"")))?;
    Ok(Value::from(out))
}

fn unit_seconds(a: &Args<'_, '_>, unit: &str) -> Result<i64, EvalError> {
    Ok(match unit {
        "seconds" | "second" | "s" => 1,
        "minutes" | "minute" | "m" => 60,
        "hours" | "hour" | "h" => 3600,
        "days" | "day" | "d" => 86_400,
        "weeks" | "week" | "w" => 604_800,
        other => {
            return Err(a.err(format!(
                "unknown unit \"{other}\" (seconds, minutes, hours, days, weeks)"
            )));
        }
    })
}

/// `time_diff(t1, t2, unit?)`: `t1 - t2` in whole units (seconds by default).
fn time_diff(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    let diff = a
        .int(0)?
        .checked_sub(a.int(1)?)
        .ok_or_else(|| EvalError::overflow("time_diff"))?;
    let unit = match a.opt(2) {
        Some(_) => unit_seconds(a, a.str(2)?)?,
        None => 1,
    };
    Ok(Value::Int(diff / unit))
}

/// `date_add(ts, amount, unit)`: seconds to weeks by fixed lengths; months and years by
/// the calendar (Jan 31 + 1 month = Feb 28/29).
fn date_add(a: &Args<'_, '_>) -> Result<Value, EvalError> {
    let (ts, amount, unit) = (a.int(0)?, a.int(1)?, a.str(2)?);
    let months = match unit {
        "months" | "month" => Some(amount),
        "years" | "year" => amount.checked_mul(12),
        _ => None,
    };
    let out_of_range = || a.err("result is out of range");
    let result = if matches!(unit, "months" | "month" | "years" | "year") {
        let months = months.ok_or_else(out_of_range)?;
        let dt = datetime(a, 0)?;
        let n = Months::new(u32::try_from(months.unsigned_abs()).map_err(|_| out_of_range())?);
        let moved = if months >= 0 {
            dt.checked_add_months(n)
        } else {
            dt.checked_sub_months(n)
        };
        moved.ok_or_else(out_of_range)?.timestamp()
    } else {
        let delta = amount
            .checked_mul(unit_seconds(a, unit)?)
            .and_then(TimeDelta::try_seconds)
            .ok_or_else(out_of_range)?;
        ts.checked_add(delta.num_seconds())
            .ok_or_else(out_of_range)?
    };
    Ok(Value::Int(result))
}
