//! What an execution returns. Names, codes and keys are borrowed from the compiled
//! ruleset (`'r`), so producing an outcome copies no strings and touches no shared
//! reference counts.

use serde::ser::{Serialize, SerializeMap, SerializeStruct, Serializer};

use crate::model::LogLevel;
use crate::rule::compiled::Terminal;
use crate::value::{Str, Value, new_map};

/// A successful execution: the terminal reached and its output, plus what `log` and
/// `metric` actions recorded and, when asked for, the trace.
#[derive(Debug, Clone)]
pub struct Outcome<'r> {
    pub(crate) terminal: &'r Terminal,
    pub(crate) values: super::Values,
    /// Rarely present, so kept out of line: the outcome stays a few words long.
    pub(crate) extras: Option<Box<Extras<'r>>>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Extras<'r> {
    pub logs: Vec<LogRecord<'r>>,
    pub metrics: Vec<MetricRecord<'r>>,
    pub trace: Option<Trace<'r>>,
}

impl<'r> Outcome<'r> {
    pub fn code(&self) -> &'r str {
        &self.terminal.code
    }
    pub fn message(&self) -> &'r str {
        &self.terminal.message
    }
    /// Id of the terminal step that ended the execution.
    pub fn terminal(&self) -> &'r str {
        &self.terminal.step
    }
    /// The output fields, in declared order.
    pub fn output(&self) -> Output<'_> {
        Output {
            keys: &self.terminal.keys,
            values: &self.values,
        }
    }
    /// Messages of `log` actions, in execution order.
    pub fn logs(&self) -> &[LogRecord<'r>] {
        self.extras.as_ref().map_or(&[], |e| &e.logs)
    }
    /// Values of `metric` actions, in execution order.
    pub fn metrics(&self) -> &[MetricRecord<'r>] {
        self.extras.as_ref().map_or(&[], |e| &e.metrics)
    }
    /// The trace, when one was asked for.
    pub fn trace(&self) -> Option<&Trace<'r>> {
        self.extras.as_ref().and_then(|e| e.trace.as_ref())
    }
}

/// A view of a terminal's output fields, in declared order.
#[derive(Debug, Clone, Copy)]
pub struct Output<'a> {
    pub(crate) keys: &'a [Str],
    pub(crate) values: &'a [Value],
}

impl<'a> Output<'a> {
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.keys
            .iter()
            .position(|k| k == key)
            .and_then(|i| self.values.get(i))
    }
    pub fn len(&self) -> usize {
        self.values.len()
    }
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a Value)> {
        self.keys.iter().map(Str::as_str).zip(self.values.iter())
    }
    /// The output as an object value.
    pub fn to_value(&self) -> Value {
        let mut map = new_map(self.len());
        for (k, v) in self.iter() {
            map.insert(Str::from(k), v.clone());
        }
        Value::object(map)
    }
}

impl Serialize for Output<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LogRecord<'r> {
    pub step: &'r str,
    pub level: LogLevel,
    pub message: &'r str,
}

#[derive(Debug, Clone)]
pub struct MetricRecord<'r> {
    pub step: &'r str,
    pub name: &'r str,
    pub value: Value,
    pub tags: &'r [(Str, Str)],
}

impl Serialize for MetricRecord<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Tags<'a>(&'a [(Str, Str)]);
        impl Serialize for Tags<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(Some(self.0.len()))?;
                for (k, v) in self.0 {
                    map.serialize_entry(k.as_str(), v.as_str())?;
                }
                map.end()
            }
        }
        let mut st = s.serialize_struct("MetricRecord", 4)?;
        st.serialize_field("step", self.step)?;
        st.serialize_field("name", self.name)?;
        st.serialize_field("value", &self.value)?;
        st.serialize_field("tags", &Tags(self.tags))?;
        st.end()
    }
}

/// The steps an execution went through.
#[derive(Debug, Clone, Default)]
pub struct Trace<'r> {
    pub(crate) steps: TraceSteps<'r>,
}

/// A short trace lives inside the outcome's single extra allocation.
pub(crate) type TraceSteps<'r> = smallvec::SmallVec<[TraceStep<'r>; 4]>;

#[derive(Debug, Clone)]
pub struct TraceStep<'r> {
    pub id: &'r str,
    pub name: Option<&'r str>,
    /// The sub-rule this step belongs to; `None` in the main flow.
    pub sub_rule: Option<&'r str>,
    pub kind: &'static str,
    /// Time spent in the step, in nanoseconds (a sub-rule step includes its sub-rule).
    pub duration_ns: u64,
    /// For a decision: the index of the branch taken, `None` for `default_next`.
    pub branch: Option<usize>,
    /// The step executed next; `None` after a terminal.
    pub next: Option<&'r str>,
}

impl<'r> Trace<'r> {
    /// The steps, in execution order.
    pub fn steps(&self) -> &[TraceStep<'r>] {
        &self.steps
    }

    /// `"a -> b -> c"`; steps inside a sub-rule read `sub::step`.
    pub fn path(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.steps.iter().enumerate() {
            if i > 0 {
                out.push_str(" -> ");
            }
            if let Some(sub) = s.sub_rule {
                out.push_str(sub);
                out.push_str("::");
            }
            out.push_str(s.id);
        }
        out
    }
}

impl Serialize for Trace<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Trace", 2)?;
        st.serialize_field("path", &self.path())?;
        st.serialize_field("steps", self.steps())?;
        st.end()
    }
}

impl Serialize for TraceStep<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("TraceStep", 7)?;
        st.serialize_field("id", self.id)?;
        st.serialize_field("name", self.name.unwrap_or(self.id))?;
        if let Some(sub) = self.sub_rule {
            st.serialize_field("sub_rule", sub)?;
        }
        st.serialize_field("type", self.kind)?;
        st.serialize_field("duration_us", &(self.duration_ns as f64 / 1000.0))?;
        if self.kind == "decision" {
            match self.branch {
                Some(b) => st.serialize_field("branch", &b)?,
                None => st.serialize_field("branch", "default")?,
            }
        }
        if let Some(next) = self.next {
            st.serialize_field("next_step", next)?;
        }
        st.end()
    }
}

impl Serialize for Outcome<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Outcome", 6)?;
        st.serialize_field("code", self.code())?;
        st.serialize_field("message", self.message())?;
        st.serialize_field("output", &self.output())?;
        if !self.logs().is_empty() {
            st.serialize_field("logs", self.logs())?;
        }
        if !self.metrics().is_empty() {
            st.serialize_field("metrics", self.metrics())?;
        }
        if let Some(trace) = self.trace() {
            st.serialize_field("trace", trace)?;
        }
        st.end()
    }
}
