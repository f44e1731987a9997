//! The ruleset as users write it (JSON or YAML), kept exactly as written.
//!
//! This is the *source* model: optional fields stay absent, expression strings stay
//! strings and expression objects stay objects, so a ruleset read and written back is the
//! same document. Defaults are applied by accessors and by the compiler, which turns this
//! model into a [`CompiledRuleSet`](crate::CompiledRuleSet).

use std::fmt;
use std::marker::PhantomData;

use indexmap::IndexMap;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::error::LoadError;
use crate::expr::{Expr, FieldMissing};
use crate::value::Value;

pub const DEFAULT_VERSION: &str = "1.0.0";
pub const DEFAULT_ENTRY_STEP: &str = "start";
pub const DEFAULT_MAX_DEPTH: u32 = 100;
pub const DEFAULT_TIMEOUT_MS: u64 = 5000;

/// A ruleset: configuration, the main step flow and optional sub-rule flows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    pub config: RuleSetConfig,
    #[serde(deserialize_with = "unique_map")]
    pub steps: IndexMap<String, Step>,
    #[serde(
        default,
        skip_serializing_if = "IndexMap::is_empty",
        deserialize_with = "unique_map"
    )]
    pub sub_rules: IndexMap<String, SubRuleGraph>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSetConfig {
    /// `[A-Za-z0-9._-]+`, no `..`, not starting with `.`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_missing: Option<FieldMissing>,
    /// Most steps one execution may run (sub-rule steps included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_depth: Option<u32>,
    /// Time limit of one execution; 0 means none (steps are still bounded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_trace: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<IndexMap<String, Value>>,
    /// Requests per second the server admits for this ruleset. The engine ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Executions of this ruleset the server runs at once. The engine ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backpressure: Option<Backpressure>,
}

/// A ruleset's rate limit: a token bucket per key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained requests per second, per key.
    pub requests_per_second: u32,
    /// Requests allowed at once above the sustained rate; defaults to
    /// `requests_per_second`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// JSONLogic computing each request's key from `{client_ip, tenant, ruleset,
    /// headers}`; absent: one bucket per client IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_logic: Option<Value>,
}

/// A ruleset's concurrency bound: requests beyond it are shed, not queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backpressure {
    pub max_concurrent: u32,
}

impl RuleSetConfig {
    pub fn version(&self) -> &str {
        self.version.as_deref().unwrap_or(DEFAULT_VERSION)
    }
    pub fn description(&self) -> &str {
        self.description.as_deref().unwrap_or_default()
    }
    pub fn entry_step(&self) -> &str {
        self.entry_step.as_deref().unwrap_or(DEFAULT_ENTRY_STEP)
    }
    pub fn field_missing(&self) -> FieldMissing {
        self.field_missing.unwrap_or_default()
    }
    pub fn max_depth(&self) -> u32 {
        self.max_depth.unwrap_or(DEFAULT_MAX_DEPTH)
    }
    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)
    }
    pub fn enable_trace(&self) -> bool {
        self.enable_trace.unwrap_or(false)
    }
}

/// A step flow used by `sub_rule` steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubRuleGraph {
    pub entry_step: String,
    #[serde(deserialize_with = "unique_map")]
    pub steps: IndexMap<String, Step>,
}

/// One step of a flow, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Runs the first branch whose condition holds, else `default_next`.
    Decision {
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default)]
        branches: Vec<Branch>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        default_next: Option<String>,
    },
    /// Runs its actions and continues.
    Action {
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default)]
        actions: Vec<Action>,
        next_step: String,
    },
    /// Ends the execution with a result.
    Terminal {
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        result: TerminalResult,
    },
    /// Runs a sub-rule flow, then continues.
    SubRule {
        id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        ref_name: String,
        /// `[child_field, expression]`: top-level input fields the sub-rule sees, on top
        /// of the caller's input.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        bindings: Vec<(String, ExprSource)>,
        /// `[parent_var, child_var]`: copies a sub-rule variable (or, failing that, an
        /// output field of its terminal) into a variable of the caller.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        outputs: Vec<(String, String)>,
        next_step: String,
    },
}

impl Step {
    pub fn id(&self) -> &str {
        match self {
            Step::Decision { id, .. }
            | Step::Action { id, .. }
            | Step::Terminal { id, .. }
            | Step::SubRule { id, .. } => id,
        }
    }

    pub fn name(&self) -> Option<&str> {
        match self {
            Step::Decision { name, .. }
            | Step::Action { name, .. }
            | Step::Terminal { name, .. }
            | Step::SubRule { name, .. } => name.as_deref(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Step::Decision { .. } => "decision",
            Step::Action { .. } => "action",
            Step::Terminal { .. } => "terminal",
            Step::SubRule { .. } => "sub_rule",
        }
    }

    /// Every step this one may continue to.
    pub fn next_steps(&self) -> Vec<&str> {
        match self {
            Step::Decision {
                branches,
                default_next,
                ..
            } => branches
                .iter()
                .map(|b| b.next_step.as_str())
                .chain(default_next.as_deref())
                .collect(),
            Step::Action { next_step, .. } | Step::SubRule { next_step, .. } => vec![next_step],
            Step::Terminal { .. } => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Branch {
    /// `null` (or absent) always matches.
    #[serde(default)]
    pub condition: Option<ExprSource>,
    pub next_step: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Sets `$name`.
    SetVariable {
        name: String,
        value: ExprSource,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
    },
    /// Records a message in the outcome.
    Log {
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        level: Option<LogLevel>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
    },
    /// Records a named value with tags in the outcome.
    Metric {
        name: String,
        value: ExprSource,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tags: Vec<(String, String)>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalResult {
    #[serde(default)]
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `[key, expression]` pairs, in output order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output: Vec<(String, ExprSource)>,
    /// Constant fields merged over `output` (a key in both takes this value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<IndexMap<String, Value>>,
}

/// An expression as written: text (`"order.total * 0.8"`) or an expression object
/// (`{"Binary": {...}}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ExprSource {
    Text(String),
    Ast(Expr),
}

impl From<&str> for ExprSource {
    fn from(s: &str) -> Self {
        ExprSource::Text(s.to_string())
    }
}

impl From<Expr> for ExprSource {
    fn from(e: Expr) -> Self {
        ExprSource::Ast(e)
    }
}

impl<'de> Deserialize<'de> for ExprSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ExprSource;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    r#"an expression string or an expression object such as {"Literal": 1}"#,
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ExprSource, E> {
                Ok(ExprSource::Text(s.to_string()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<ExprSource, E> {
                Ok(ExprSource::Text(s))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ExprSource, A::Error> {
                Expr::deserialize(de::value::MapAccessDeserializer::new(map)).map(ExprSource::Ast)
            }
            // YAML writes expression objects as tags (`!Literal 1`).
            fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<ExprSource, A::Error> {
                Expr::deserialize(de::value::EnumAccessDeserializer::new(data)).map(ExprSource::Ast)
            }
        }
        d.deserialize_any(V)
    }
}

/// Deserializes a map, refusing a key that appears twice (a second step with the same
/// id would otherwise silently replace the first).
fn unique_map<'de, D, T>(d: D) -> Result<IndexMap<String, T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
        type Value = IndexMap<String, T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
            let mut map = IndexMap::with_capacity(access.size_hint().unwrap_or(0).min(1024));
            while let Some(key) = access.next_key::<String>()? {
                if map.contains_key(&key) {
                    return Err(de::Error::custom(format!("duplicate key '{key}'")));
                }
                let value = access.next_value()?;
                map.insert(key, value);
            }
            Ok(map)
        }
    }
    d.deserialize_map(V(PhantomData))
}

impl RuleSet {
    /// Reads a ruleset from JSON text.
    pub fn from_json(text: &str) -> Result<RuleSet, LoadError> {
        serde_json::from_str(text).map_err(|e| LoadError {
            format: "JSON",
            message: e.to_string(),
        })
    }

    /// Reads a ruleset from JSON bytes.
    pub fn from_json_slice(bytes: &[u8]) -> Result<RuleSet, LoadError> {
        serde_json::from_slice(bytes).map_err(|e| LoadError {
            format: "JSON",
            message: e.to_string(),
        })
    }

    /// Reads a ruleset from YAML text.
    pub fn from_yaml(text: &str) -> Result<RuleSet, LoadError> {
        serde_norway::from_str(text).map_err(|e| LoadError {
            format: "YAML",
            message: e.to_string(),
        })
    }

    /// Writes the ruleset as pretty JSON.
    pub fn to_json_pretty(&self) -> String {
        // The model holds only strings, numbers and our own values: always serializable.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Writes the ruleset as YAML. Expression objects are written as maps
    /// (`{Literal: 1}`), the same shape as in JSON, not as YAML tags.
    pub fn to_yaml(&self) -> Result<String, LoadError> {
        let tree = serde_json::to_value(self).map_err(|e| LoadError {
            format: "YAML",
            message: e.to_string(),
        })?;
        serde_norway::to_string(&tree).map_err(|e| LoadError {
            format: "YAML",
            message: e.to_string(),
        })
    }

    /// Validates and compiles the ruleset; see [`crate::compile`].
    pub fn compile(&self) -> Result<crate::CompiledRuleSet, crate::CompileError> {
        crate::compile(self)
    }
}

/// Checks a ruleset (or tenant) name: 1 to 128 characters of `[A-Za-z0-9._-]`, no `..`,
/// not starting with `.` (it names a file in the rules directory).
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("name must not be empty".to_string());
    }
    if name.len() > 128 {
        return Err("name must be at most 128 characters".to_string());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "name may contain only letters, digits, '.', '_' and '-', found '{c}'"
        ));
    }
    if name.contains("..") {
        return Err("name must not contain '..'".to_string());
    }
    if name.starts_with('.') {
        return Err("name must not start with '.'".to_string());
    }
    Ok(())
}
