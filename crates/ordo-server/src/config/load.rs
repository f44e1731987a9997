//! Merging the sources into one validated [`Config`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{Config, Flags};

/// One bad key: where it is, what it was set to and from where, and why it is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub value: Option<String>,
    /// The variable, flag or file the value came from.
    pub source: Option<String>,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)?;
        if let Some(v) = &self.value {
            write!(f, " = {v}")?;
        }
        if let Some(s) = &self.source {
            write!(f, " (from {s})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Every problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration ({} problem", self.problems.len())?;
        if self.problems.len() != 1 {
            f.write_str("s")?;
        }
        f.write_str("):")?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// The configuration's JSON Schema.
pub fn schema() -> Value {
    schema_ref().clone()
}

/// The schema as the configuration's types generate it (schemars). What the server
/// reads is `config.schema.json`, the same schema written out: a start parses it in a
/// fraction of the time generating it takes. A test keeps the two equal.
pub fn generated_schema() -> Value {
    serde_json::to_value(schemars::schema_for!(Config)).unwrap_or(Value::Null)
}

/// The schema, read once per process (flags and the loader both read it).
fn schema_ref() -> &'static Value {
    static SCHEMA: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        serde_json::from_str(include_str!("../../config.schema.json"))
            .unwrap_or_else(|_| generated_schema())
    })
}

/// The environment variable of a key: `ORDO_` and the key in capitals, `.` as `__`.
pub fn env_var(key: &str) -> String {
    format!("ORDO_{}", key.to_uppercase().replace('.', "__"))
}

/// The flag of a key: `--` and the key with `-` for `_` (a nested key keeps its dots:
/// `--rate-limit.default-rps`).
pub fn flag_name(key: &str) -> String {
    format!("--{}", key.replace('_', "-"))
}

/// Every key, a nested one dotted (`rate_limit.default_rps`), in schema order.
pub fn keys() -> Vec<String> {
    leaves().iter().map(|(k, _)| k.clone()).collect()
}

/// [`properties`] of the configuration's schema, walked once per process (the flags,
/// the loader and the docs all read them).
pub(super) fn leaves() -> &'static [(String, Value)] {
    static LEAVES: std::sync::OnceLock<Vec<(String, Value)>> = std::sync::OnceLock::new();
    LEAVES.get_or_init(|| properties(schema_ref()))
}

/// The validator of the configuration's schema, generated as code when the server is
/// built, from `config.schema.json`: a start spends nothing on building it. The
/// `schema_file_is_the_generated_schema` test keeps that file equal to the schema the
/// types generate (`ordo-server config schema` writes it).
///
/// The two identifiers are checked as formats of ours rather than as `pattern`s: a
/// pattern is a regular expression compiled at every start, and its compiler was a
/// fifth of a megabyte of the code a start keeps resident.
#[jsonschema::validator(
    path = "config.schema.json",
    validate_formats = true,
    formats = {
        "tenant-id" => crate::config::load::is_tenant_id,
        "instance-id" => crate::config::load::is_instance_id,
    }
)]
struct SchemaValidator;

/// Why `value` is not of one of our own formats, in words for an error.
fn id_problem(format: &str, value: &Value) -> Option<String> {
    let text = value.as_str()?;
    match format {
        "tenant-id" => ordo_core::validate_name(text)
            .err()
            .map(|why| format!("{value} is not a tenant id: {why}")),
        "instance-id" => Some(format!(
            "{value} is not an instance id: letters, digits, '.', '_' and '-' only"
        )),
        _ => None,
    }
}

/// Format `tenant-id`: a name a tenant can have (see [`ordo_core::validate_name`]).
pub(crate) fn is_tenant_id(s: &str) -> bool {
    ordo_core::validate_name(s).is_ok()
}

/// Format `instance-id`: letters, digits, `.`, `_` and `-`.
pub(crate) fn is_instance_id(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The definition a `$ref` points at, or the property itself.
fn resolved<'s>(schema: &'s Value, prop: &'s Value) -> &'s Value {
    prop.get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix('#'))
        .and_then(|pointer| schema.pointer(pointer))
        .unwrap_or(prop)
}

/// The properties of a section (the schema, or a nested section of it).
fn section_properties<'s>(schema: &'s Value, section: &'s Value) -> Option<&'s Map<String, Value>> {
    resolved(schema, section)
        .get("properties")
        .and_then(Value::as_object)
}

/// The leaf keys with their schemas: nested sections are walked, their keys dotted.
pub(super) fn properties(schema: &Value) -> Vec<(String, Value)> {
    fn walk(schema: &Value, section: &Value, prefix: &str, out: &mut Vec<(String, Value)>) {
        let Some(props) = section_properties(schema, section) else {
            return;
        };
        for (name, prop) in props {
            let key = format!("{prefix}{name}");
            if section_properties(schema, prop).is_some() {
                walk(schema, prop, &format!("{key}."), out);
            } else {
                // The property's own description, not its type's.
                let mut leaf = resolved(schema, prop).clone();
                if let (Some(obj), Some(d)) = (leaf.as_object_mut(), prop.get("description")) {
                    obj.insert("description".into(), d.clone());
                }
                out.push((key, leaf));
            }
        }
    }
    let mut out = Vec::new();
    walk(schema, schema, "", &mut out);
    out
}

/// Sets the value at a dotted key, creating the sections on the way.
fn set_path(merged: &mut Value, key: &str, value: Value) {
    let mut at = merged;
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        let Some(obj) = at.as_object_mut() else {
            return;
        };
        if parts.peek().is_none() {
            obj.insert(part.to_string(), value);
            return;
        }
        at = obj
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

/// The JSON pointer of a dotted key.
fn pointer(key: &str) -> String {
    format!("/{}", key.replace('.', "/"))
}

fn types(prop: &Value) -> Vec<String> {
    match prop.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// Converts a variable's or flag's text to the key's type.
fn convert(text: &str, prop: &Value) -> Result<Value, String> {
    let types = types(prop);
    let has = |t: &str| types.iter().any(|x| x == t);
    let trimmed = text.trim();
    if trimmed.is_empty() && has("null") {
        return Ok(Value::Null);
    }
    if has("boolean") {
        return match trimmed.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Value::Bool(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Bool(false)),
            _ => Err("expected true or false".into()),
        };
    }
    if has("number") {
        return trimmed
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| "expected a number".into());
    }
    if has("integer") {
        if let Ok(n) = trimmed.parse::<u64>() {
            return Ok(Value::from(n));
        }
        return trimmed
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| "expected a whole number".into());
    }
    if has("array") {
        return Ok(Value::Array(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        ));
    }
    Ok(Value::String(text.to_string()))
}

fn is_secret(key: &str) -> bool {
    key.starts_with("api_token")
}

/// Shown in errors: values of secret keys are hidden, passwords in URLs masked.
fn shown(key: &str, value: &Value) -> String {
    if is_secret(key) {
        "(hidden)".to_string()
    } else if let (true, Some(url)) = (is_url(key), value.as_str()) {
        format!("{:?}", crate::store::redact_url(url))
    } else {
        value.to_string()
    }
}

fn is_url(key: &str) -> bool {
    key.ends_with("_url")
}

/// A variable's or flag's text that does not convert to its key's type.
fn text_problem(key: &str, text: &str, source: String, reason: String) -> Problem {
    Problem {
        key: key.to_string(),
        value: Some(if is_secret(key) {
            "(hidden)".into()
        } else if is_url(key) {
            format!("{:?}", crate::store::redact_url(text))
        } else {
            format!("{text:?}")
        }),
        source: Some(source),
        reason,
    }
}

fn read_file(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    let value: Value = match ext {
        "yaml" | "yml" => serde_norway::from_str(&text).map_err(|e| e.to_string())?,
        "json" => serde_json::from_str(&text).map_err(|e| e.to_string())?,
        "toml" => toml::from_str(&text).map_err(|e| e.to_string())?,
        _ => return Err("the file name must end in .yaml, .yml, .json or .toml".into()),
    };
    match value {
        Value::Object(_) => Ok(value),
        // An empty YAML file is an empty configuration.
        Value::Null => Ok(Value::Object(Map::new())),
        _ => Err("the file must hold a map of keys".into()),
    }
}

/// Merges defaults, `files`, the environment (`env` looks a variable up) and `flags`,
/// then validates. `env_names` lists the set variable names, to warn about unknown
/// `ORDO_*` ones. Returns the configuration and warnings.
pub fn load(
    files: &[PathBuf],
    env: &dyn Fn(&str) -> Option<String>,
    env_names: &[String],
    flags: &Flags,
) -> Result<(Config, Vec<String>), ConfigError> {
    let props = leaves();
    let known: BTreeMap<&str, &Value> = props.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut merged = serde_json::to_value(Config::default()).unwrap_or(Value::Null);
    let mut sources: BTreeMap<String, String> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let set = set_path;

    for path in files {
        let source = path.display().to_string();
        match read_file(path) {
            Ok(Value::Object(map)) => {
                // Sections merge key by key: a file setting `rate_limit.enabled` keeps
                // the `rate_limit.default_rps` of a lower one.
                let mut pending: Vec<(String, Value)> = map.into_iter().collect();
                while let Some((key, value)) = pending.pop() {
                    if known.contains_key(key.as_str()) {
                        set(&mut merged, &key, value);
                        sources.insert(key, source.clone());
                    } else if let (Value::Object(inner), true) = (
                        &value,
                        known.keys().any(|k| k.starts_with(&format!("{key}."))),
                    ) {
                        pending
                            .extend(inner.iter().map(|(k, v)| (format!("{key}.{k}"), v.clone())));
                    } else {
                        problems.push(Problem {
                            key,
                            value: None,
                            source: Some(source.clone()),
                            reason: "unknown key".into(),
                        });
                    }
                }
            }
            Ok(_) => {}
            Err(reason) => problems.push(Problem {
                key: "(file)".into(),
                value: None,
                source: Some(source),
                reason,
            }),
        }
    }

    let mut variables = std::collections::HashSet::new();
    for (key, prop) in props {
        let var = env_var(key);
        if let Some(text) = env(&var) {
            match convert(&text, prop) {
                Ok(value) => {
                    set(&mut merged, key, value);
                    sources.insert(key.clone(), var.clone());
                }
                Err(reason) => problems.push(text_problem(key, &text, var.clone(), reason)),
            }
        }
        variables.insert(var);
    }
    for name in env_names {
        let is_known = variables.contains(name);
        // ORDO_TEST_* belong to the test suite, not to the server.
        if name.starts_with("ORDO_") && !name.starts_with("ORDO_TEST_") && !is_known {
            warnings.push(format!("{name} is not a configuration variable; ignored"));
        }
    }

    for (key, text) in flags.given() {
        let flag = flag_name(key);
        let Some(prop) = known.get(key) else { continue };
        match convert(text, prop) {
            Ok(value) => {
                set(&mut merged, key, value);
                sources.insert(key.to_string(), flag);
            }
            Err(reason) => problems.push(text_problem(key, text, flag, reason)),
        }
    }

    for e in SchemaValidator::iter_errors(&merged) {
        let key = e
            .instance_path()
            .to_string()
            .trim_start_matches('/')
            .replace('/', ".");
        // The source of the key, or of the key the bad element belongs to.
        let source = sources
            .iter()
            .filter(|(k, _)| key == **k || key.starts_with(&format!("{k}.")))
            .map(|(_, s)| s.clone())
            .next();
        let reason = match e.kind() {
            jsonschema::error::ValidationErrorKind::Format { format } => {
                id_problem(format, e.instance()).unwrap_or_else(|| e.to_string())
            }
            _ => e.to_string(),
        };
        problems.push(Problem {
            value: Some(shown(&key, e.instance())),
            source,
            reason: if is_secret(&key) {
                "invalid value".to_string()
            } else {
                reason
            },
            key,
        });
    }
    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }
    let config: Config = serde_json::from_value(merged).map_err(|e| ConfigError {
        problems: vec![Problem {
            key: "(config)".into(),
            value: None,
            source: None,
            reason: e.to_string(),
        }],
    })?;
    let mut problems = config.check();
    for p in &mut problems {
        p.source = sources.get(&p.key).cloned();
    }
    if problems.is_empty() {
        Ok((config, warnings))
    } else {
        Err(ConfigError { problems })
    }
}

/// The values a key may take, when the schema lists them (an enum of strings, or
/// documented variants, one `const` each).
pub(super) fn enum_values(prop: &Value) -> Option<Vec<String>> {
    if let Some(values) = prop.get("enum").and_then(Value::as_array) {
        return Some(
            values
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        );
    }
    let variants = prop.get("oneOf").and_then(Value::as_array)?;
    variants
        .iter()
        .map(|v| v.get("const").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// The reference table of `docs/configuration.md`, generated from the schema.
pub fn docs_table() -> String {
    let defaults = serde_json::to_value(Config::default()).unwrap_or(Value::Null);
    let mut out = String::from(
        "| key | type | default | variable | flag | on reload | description |\n|---|---|---|---|---|---|---|\n",
    );
    for (key, prop) in leaves() {
        let mut ty: Vec<String> = types(prop).into_iter().filter(|t| t != "null").collect();
        if ty.is_empty() {
            ty.push("string".into());
        }
        if let Some(values) = enum_values(prop) {
            ty = vec![values.join(" \\| ")];
        }
        let default = match defaults.pointer(&pointer(key)) {
            None | Some(Value::Null) => "unset".to_string(),
            Some(Value::Array(a)) if a.is_empty() => "empty".to_string(),
            Some(v) => format!("`{v}`"),
        };
        let description = prop
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .replace('\n', " ");
        let reload = if super::RESTART_KEYS.contains(&key.as_str()) {
            "restart"
        } else {
            "live"
        };
        out.push_str(&format!(
            "| `{key}` | {} | {default} | `{}` | `{}` | {reload} | {description} |\n",
            ty.join(", "),
            env_var(key),
            flag_name(key)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_file_is_the_generated_schema() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.schema.json");
        let file: Value = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or(Value::Null);
        assert!(
            file == generated_schema() && schema() == file,
            "{} differs from the schema of the configuration's types; rewrite it with \
             `ordo-server config schema > crates/ordo-server/config.schema.json`",
            path.display()
        );
    }

    #[test]
    fn the_compiled_validator_enforces_the_schema() {
        use serde_json::json;
        let errors = |v: Value| -> Vec<(String, String)> {
            SchemaValidator::iter_errors(&v)
                .map(|e| (e.instance_path().to_string(), e.to_string()))
                .collect()
        };
        assert!(errors(json!({"role": "reader", "port": 8080})).is_empty());
        assert!(errors(serde_json::to_value(Config::default()).unwrap_or(Value::Null)).is_empty());
        // Every bad key is reported, each at its own path.
        let found =
            errors(json!({"role": "leader", "log_format": 7, "rate_limit": {"default_rps": 0}}));
        let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert!(paths.contains(&"/role"), "{found:?}");
        assert!(paths.contains(&"/log_format"), "{found:?}");
        assert!(paths.contains(&"/rate_limit/default_rps"), "{found:?}");
        // Unknown keys, at the top and in a section.
        let found = errors(json!({"nope": 1, "rate_limit": {"nope": 2}}));
        assert_eq!(found.len(), 2, "{found:?}");
    }
}
