//! The source model: rulesets come back exactly as written, from JSON or YAML.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::rules;
use ordo_core::RuleSet;
use ordo_core::model::{ExprSource, Step};

const DISCOUNT: &str = include_str!("../benches/data/discount.json");

/// A ruleset using every construct, with strings and expression objects mixed.
const EVERYTHING: &str = r#"{
  "config": {
    "name": "everything", "version": "2.1.0", "description": "all constructs",
    "entry_step": "start", "tenant_id": "acme", "field_missing": "strict",
    "max_depth": 40, "timeout_ms": 250, "enable_trace": true,
    "metadata": {"owner": "risk-team", "tags": ["a", "b"], "weight": 1.5}
  },
  "steps": {
    "start": {"id": "start", "type": "decision", "branches": [
      {"condition": "user.age >= 18", "next_step": "prep", "actions": [
        {"action": "set_variable", "name": "adult", "value": {"Literal": true}, "description": "flag"}
      ]},
      {"condition": {"Binary": {"op": "In", "left": {"Field": "user.country"}, "right": {"Literal": ["US", "CA"]}}}, "next_step": "prep"},
      {"condition": null, "next_step": "prep"}
    ], "default_next": "prep"},
    "prep": {"id": "prep", "name": "Prepare", "type": "action", "actions": [
      {"action": "set_variable", "name": "total", "value": {"Call": {"name": "sum", "args": [{"Field": "items"}]}}},
      {"action": "log", "message": "ready", "level": "debug"},
      {"action": "metric", "name": "total", "value": "$total", "tags": [["k", "v"]]}
    ], "next_step": "sub"},
    "sub": {"id": "sub", "type": "sub_rule", "ref_name": "helper",
            "bindings": [["x", "$total"]], "outputs": [["y", "y"]], "next_step": "end"},
    "end": {"id": "end", "type": "terminal", "result": {
      "code": "OK", "message": "done",
      "output": [["z", "$y"], ["w", {"Conditional": {"condition": {"Exists": "user.age"}, "then_branch": {"Literal": 1}, "else_branch": {"Coalesce": [{"Field": "a"}, {"Literal": 2}]}}}], ["a", "user.age"]],
      "data": {"static": {"k": [1, 2.0, null]}, "w": 9}
    }}
  },
  "sub_rules": {
    "helper": {"entry_step": "h", "steps": {
      "h": {"id": "h", "type": "terminal", "result": {"code": "H", "output": [["y", {"Unary": {"op": "Neg", "operand": {"Field": "x"}}}]]}}
    }}
  }
}"#;

fn as_json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn rulesets_round_trip_exactly() {
    for text in [DISCOUNT, EVERYTHING] {
        let model = rules(text);
        let written = serde_json::to_string(&model).unwrap();
        assert_eq!(as_json(&written), as_json(text), "{written}");
        assert_eq!(RuleSet::from_json(&written).unwrap(), model);
        assert!(model.compile().is_ok());
    }
}

#[test]
fn expression_strings_stay_strings_and_objects_stay_objects() {
    let model = rules(DISCOUNT);
    let Step::Decision { branches, .. } = &model.steps["check_tier"] else {
        panic!("decision expected");
    };
    assert_eq!(
        branches[0].condition,
        Some(ExprSource::Text(
            "user.vip == true && order.total >= 500".into()
        ))
    );
    let Step::Terminal { result, .. } = &model.steps["vip_big"] else {
        panic!("terminal expected");
    };
    assert!(matches!(result.output[1].1, ExprSource::Ast(_)));
    let written = serde_json::to_value(&model).unwrap();
    assert_eq!(
        written["steps"]["check_tier"]["branches"][0]["condition"],
        "user.vip == true && order.total >= 500"
    );
    assert_eq!(
        written["steps"]["vip_big"]["result"]["output"][0][1],
        serde_json::json!({"Field": "$rate"})
    );
}

#[test]
fn optional_fields_stay_absent_and_defaults_apply() {
    let model = rules(
        r#"{"config": {"name": "min"}, "steps": {"start": {"id": "start", "type": "terminal", "result": {"code": "X"}}}}"#,
    );
    let written = serde_json::to_string(&model).unwrap();
    assert_eq!(
        written,
        r#"{"config":{"name":"min"},"steps":{"start":{"type":"terminal","id":"start","result":{"code":"X"}}}}"#
    );
    assert_eq!(model.config.version(), "1.0.0");
    assert_eq!(model.config.entry_step(), "start");
    assert_eq!(model.config.max_depth(), 100);
    assert_eq!(model.config.timeout_ms(), 5000);
    assert_eq!(
        model.config.field_missing(),
        ordo_core::FieldMissing::Lenient
    );
    assert_eq!(model.steps["start"].name(), None);
    let compiled = model.compile().unwrap();
    assert_eq!(
        (compiled.name(), compiled.version(), compiled.step_count()),
        ("min", "1.0.0", 1)
    );
}

#[test]
fn steps_keep_their_order() {
    let model = rules(DISCOUNT);
    let ids: Vec<&str> = model.steps.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        ["check_tier", "vip_big", "vip", "big_order", "no_discount"]
    );
}

#[test]
fn yaml_is_read_and_written() {
    let yaml = rules(EVERYTHING).to_yaml().unwrap();
    let back = RuleSet::from_yaml(&yaml).unwrap();
    assert_eq!(back, rules(EVERYTHING));
    let hand_written = r#"
config:
  name: y
steps:
  start:
    id: start
    type: decision
    branches:
      - condition: "score >= 700"
        next_step: ok
      - condition: {Binary: {op: Lt, left: {Field: score}, right: {Literal: 0}}}
        next_step: ok
    default_next: ok
  ok:
    id: ok
    type: terminal
    result:
      code: OK
      output:
        - [doubled, "score * 2"]
"#;
    let model = RuleSet::from_yaml(hand_written).unwrap();
    assert!(model.compile().is_ok());
    let json = serde_json::to_value(&model).unwrap();
    assert_eq!(
        json["steps"]["start"]["branches"][0]["condition"],
        "score >= 700"
    );
    assert_eq!(
        json["steps"]["start"]["branches"][1]["condition"]["Binary"]["op"],
        "Lt"
    );
}

#[test]
fn malformed_documents_are_clear_errors() {
    let cases = [
        (
            r#"{"config": {"name": "x"}, "steps": {}, "extra": 1}"#,
            "unknown field `extra`",
        ),
        (
            r#"{"config": {"name": "x", "entrystep": "a"}, "steps": {}}"#,
            "unknown field `entrystep`",
        ),
        (
            r#"{"config": {"name": "x"}, "steps": {"a": {"id": "a", "type": "terminal", "result": {}, "nxt": 1}}}"#,
            "unknown field `nxt`",
        ),
        (
            r#"{"config": {"name": "x"}, "steps": {"a": {"id": "a", "type": "decison"}}}"#,
            "unknown variant `decison`",
        ),
        (
            r#"{"config": {"name": "x"}, "steps": {"a": {"id": "a", "type": "terminal", "result": {"code": "A"}}, "a": {"id": "a", "type": "terminal", "result": {"code": "B"}}}}"#,
            "duplicate key 'a'",
        ),
        (
            r#"{"config": {"name": "x"}, "steps": {"a": {"id": "a", "type": "action", "actions": [{"action": "set_variable", "name": "v", "value": 5}], "next_step": "a"}}}"#,
            "an expression string or an expression object",
        ),
        (
            r#"{"config": {"name": "x"}, "steps": {"a": {"id": "a", "type": "action", "actions": [{"action": "jump"}], "next_step": "a"}}}"#,
            "unknown variant `jump`",
        ),
        (
            r#"{"config": {"name": "x"}, "steps": {"a": {"id": "a", "type": "terminal", "result": {"output": [["k", {"Literl": 1}]]}}}}"#,
            "unknown variant `Literl`",
        ),
        (
            r#"{"config": {"name": "x", "field_missing": "loose"}, "steps": {}}"#,
            "unknown variant `loose`",
        ),
        (r#"{"config": {}, "steps": {}}"#, "missing field `name`"),
        (
            r#"{"config": {"name": "x"}, "steps": {"a": {"type": "terminal", "result": {}}}}"#,
            "missing field `id`",
        ),
        (
            r#"{"config": {"name": "x"}, "steps": {}"#,
            "EOF while parsing",
        ),
        (
            r#"{"config": {"name": "x", "max_depth": -1}, "steps": {}}"#,
            "invalid value",
        ),
    ];
    for (text, want) in cases {
        let e = RuleSet::from_json(text).unwrap_err().to_string();
        assert!(e.starts_with("invalid ruleset JSON: "), "{e}");
        assert!(e.contains(want), "{text}\n  got: {e}\n  want: {want}");
    }
    let e = RuleSet::from_yaml("config: [").unwrap_err().to_string();
    assert!(e.starts_with("invalid ruleset YAML: "), "{e}");
}

#[test]
fn deeply_nested_documents_are_refused_not_crashed() {
    // JSON: 1,000 nested expression objects.
    let mut expr = String::from(r#"{"Literal": 1}"#);
    for _ in 0..1_000 {
        expr = format!(r#"{{"Unary": {{"op": "Neg", "operand": {expr}}}}}"#);
    }
    let text = format!(
        r#"{{"config": {{"name": "d"}}, "steps": {{"start": {{"id": "start", "type": "terminal", "result": {{"output": [["x", {expr}]]}}}}}}}}"#
    );
    let e = RuleSet::from_json(&text).unwrap_err().to_string();
    assert!(e.contains("recursion limit"), "{e}");
    // YAML: the same depth in flow style.
    let mut yexpr = String::from("{Literal: 1}");
    for _ in 0..1_000 {
        yexpr = format!("{{Unary: {{op: Neg, operand: {yexpr}}}}}");
    }
    let ytext = format!(
        "config: {{name: d}}\nsteps:\n  start: {{id: start, type: terminal, result: {{output: [[x, {yexpr}]]}}}}\n"
    );
    let e = RuleSet::from_yaml(&ytext).unwrap_err().to_string();
    assert!(e.contains("recursion limit"), "{e}");
    // Within the parser's limit but past the compiler's: refused at compile time.
    let mut expr = String::from(r#"{"Field": "x"}"#);
    for _ in 0..40 {
        expr = format!(r#"{{"Unary": {{"op": "Not", "operand": {expr}}}}}"#);
    }
    let text = format!(
        r#"{{"config": {{"name": "d"}}, "steps": {{"start": {{"id": "start", "type": "terminal", "result": {{"output": [["x", {expr}]]}}}}}}}}"#
    );
    assert!(RuleSet::from_json(&text).unwrap().compile().is_ok());
}

#[test]
fn input_values_keep_ints_floats_and_key_order() {
    let v =
        ordo_core::Value::from_json_str(r#"{"b": 1, "a": 1.0, "c": [18446744073709551615, -0.0]}"#)
            .unwrap();
    assert_eq!(
        v.to_json_string(),
        r#"{"b":1,"a":1.0,"c":[1.8446744073709552e+19,-0.0]}"#
    );
    assert!(ordo_core::Value::from_json_str(&"[".repeat(200)).is_err());
}
