//! A ruleset's `rate_limit.key_logic`: JSONLogic (datalogic-rs) computing a request's
//! rate-limit key from `{client_ip, tenant, ruleset, headers}`.

use std::sync::LazyLock;

use datalogic_rs::{Engine, ErrorKind, Logic};
use serde_json::{Map, Value};

static ENGINE: LazyLock<Engine> = LazyLock::new(Engine::new);

/// A compiled key rule.
pub struct KeyLogic {
    logic: Logic,
}

impl std::fmt::Debug for KeyLogic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyLogic")
    }
}

impl KeyLogic {
    /// Compiles `rule`. An unknown operator is found by evaluating it once on a request
    /// with nothing in it (the library resolves operators when it meets them).
    pub fn compile(rule: &Value) -> Result<KeyLogic, String> {
        let logic = ENGINE.compile(rule).map_err(|e| e.to_string())?;
        let probe = context("", "", "", Map::new());
        if let Err(e) = ENGINE.session().eval(&logic, &probe)
            && matches!(e.kind, ErrorKind::InvalidOperator(_))
        {
            return Err(e.to_string());
        }
        Ok(KeyLogic { logic })
    }

    /// The key of a request, or `None` when the rule gives nothing usable (null, an
    /// empty string, an error): the caller then keys by client IP.
    pub fn key(&self, data: &Value) -> Option<String> {
        let value = ENGINE.session().eval(&self.logic, data).ok()?;
        let json = serde_json::to_value(&value).ok()?;
        match json {
            Value::Null => None,
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(s),
            other => Some(other.to_string()),
        }
    }
}

/// The data a key rule reads.
pub fn context(client_ip: &str, tenant: &str, ruleset: &str, headers: Map<String, Value>) -> Value {
    serde_json::json!({
        "client_ip": client_ip,
        "tenant": tenant,
        "ruleset": ruleset,
        "headers": headers,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(pairs: &[(&str, &str)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect()
    }

    #[test]
    fn keys_come_from_the_request_and_a_missing_one_is_none() {
        let rule = KeyLogic::compile(&json!({"var": "headers.x-api-key"})).unwrap();
        let with = context("10.0.0.1", "t", "r", headers(&[("x-api-key", "k1")]));
        assert_eq!(rule.key(&with).as_deref(), Some("k1"));
        let without = context("10.0.0.1", "t", "r", Map::new());
        assert_eq!(rule.key(&without), None);
        let joined =
            KeyLogic::compile(&json!({"cat": [{"var": "tenant"}, "/", {"var": "client_ip"}]}))
                .unwrap();
        assert_eq!(joined.key(&with).as_deref(), Some("t/10.0.0.1"));
    }

    #[test]
    fn an_unknown_operator_is_refused_when_compiled() {
        let e = KeyLogic::compile(&json!({"no_such_op": [1]})).unwrap_err();
        assert!(e.contains("no_such_op"), "{e}");
    }
}
