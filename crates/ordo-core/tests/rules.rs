//! Rule-level behaviour through the public API: compile a ruleset, execute inputs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{json, rules};
use ordo_core::{CompiledRuleSet, ExecErrorKind, ExecOptions, RuleSet, Value};

const DISCOUNT: &str = include_str!("../benches/data/discount.json");

fn compile(text: &str) -> CompiledRuleSet {
    rules(text).compile().unwrap_or_else(|e| panic!("{e}"))
}

fn run(rule: &CompiledRuleSet, input: &str) -> Result<(String, Value), String> {
    rule.execute(&json(input))
        .map(|o| (o.code().to_string(), o.output().to_value()))
        .map_err(|e| format!("{} {}", e.code(), e))
}

#[test]
fn discount_rule_takes_each_path() {
    let rule = compile(DISCOUNT);
    let cases = [
        (
            r#"{"user": {"vip": true, "country": "US"}, "order": {"total": 640.0}}"#,
            "VIP_BIG",
            r#"{"discount_rate": 0.2, "final_total": 512.0}"#,
        ),
        (
            r#"{"user": {"vip": true, "country": "FR"}, "order": {"total": 100}}"#,
            "VIP",
            r#"{"discount_rate": 0.1, "final_total": 90.0}"#,
        ),
        (
            r#"{"user": {"vip": false, "country": "CA"}, "order": {"total": 250}}"#,
            "BIG_ORDER",
            r#"{"discount_rate": 0.05, "final_total": 237.5}"#,
        ),
        (
            r#"{"user": {"vip": false, "country": "FR"}, "order": {"total": 250}}"#,
            "NONE",
            r#"{"discount_rate": 0, "final_total": 250}"#,
        ),
        // Lenient: a missing field makes its condition false, not the execution fail.
        (
            r#"{"order": {"total": 250}}"#,
            "NONE",
            r#"{"discount_rate": 0, "final_total": 250}"#,
        ),
    ];
    for (input, code, output) in cases {
        let (got_code, got_output) = run(&rule, input).unwrap();
        assert_eq!(got_code, code, "{input}");
        assert_eq!(got_output, json(output), "{input}");
    }
    // Output keys keep their declared order.
    let out = rule.execute(&json(cases[0].0)).unwrap();
    let keys: Vec<&str> = out.output().iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["discount_rate", "final_total"]);
    assert_eq!(
        serde_json::to_string(&out.output()).unwrap(),
        r#"{"discount_rate":0.2,"final_total":512.0}"#
    );
    // A missing field in an output is an error naming the step.
    let err = run(&rule, r#"{"user": {"vip": true}}"#).unwrap_err();
    assert!(
        err.starts_with("MISSING_FIELD step 'vip': missing field 'order.total'"),
        "{err}"
    );
}

const TWO_WAY: &str = r#"{
  "config": {"name": "two", "entry_step": "d"},
  "steps": {
    "d": {"id": "d", "type": "decision", "branches": [
      {"condition": "x > 1", "next_step": "first"},
      {"condition": "x > 0", "next_step": "second"}
    ]},
    "first": {"id": "first", "type": "terminal", "result": {"code": "FIRST"}},
    "second": {"id": "second", "type": "terminal", "result": {"code": "SECOND"}}
  }
}"#;

#[test]
fn first_matching_branch_wins() {
    let rule = compile(TWO_WAY);
    assert_eq!(run(&rule, r#"{"x": 5}"#).unwrap().0, "FIRST");
    assert_eq!(run(&rule, r#"{"x": 1}"#).unwrap().0, "SECOND");
}

#[test]
fn no_match_without_default_is_an_error_with_the_step() {
    let rule = compile(TWO_WAY);
    let err = rule.execute(&json(r#"{"x": 0}"#)).unwrap_err();
    assert_eq!(err.kind(), &ExecErrorKind::NoMatchingBranch);
    assert_eq!(err.step(), "d");
    assert_eq!(err.code(), "NO_MATCHING_BRANCH");
    assert_eq!(
        err.to_string(),
        "step 'd': no branch matched and the step has no default_next"
    );
}

const COUNTER: &str = r#"{
  "config": {"name": "counter", "entry_step": "init", "max_depth": 50},
  "steps": {
    "init": {"id": "init", "type": "action", "actions": [{"action": "set_variable", "name": "n", "value": "0"}], "next_step": "check"},
    "check": {"id": "check", "type": "decision", "branches": [{"condition": "$n < limit", "next_step": "inc"}], "default_next": "done"},
    "inc": {"id": "inc", "type": "action", "actions": [{"action": "set_variable", "name": "n", "value": "$n + 1"}], "next_step": "check"},
    "done": {"id": "done", "type": "terminal", "result": {"code": "DONE", "output": [["n", "$n"]]}}
  }
}"#;

#[test]
fn loops_through_a_decision_are_bounded_by_max_depth() {
    let rule = compile(COUNTER);
    // 1 init + 2 per round + final check + terminal.
    let (code, out) = run(&rule, r#"{"limit": 10}"#).unwrap();
    assert_eq!((code.as_str(), out), ("DONE", json(r#"{"n": 10}"#)));
    let err = rule.execute(&json(r#"{"limit": 1000}"#)).unwrap_err();
    assert_eq!(err.kind(), &ExecErrorKind::MaxDepthExceeded { limit: 50 });
    assert_eq!(err.code(), "MAX_DEPTH_EXCEEDED");
    assert!(["check", "inc"].contains(&err.step()));
}

fn missing_rule(mode: &str) -> CompiledRuleSet {
    compile(&format!(
        r#"{{
      "config": {{"name": "m", "entry_step": "d", "field_missing": "{mode}"}},
      "steps": {{
        "d": {{"id": "d", "type": "decision", "branches": [
          {{"condition": "user.age == null", "next_step": "unknown"}},
          {{"condition": "user.age >= 18 || user.guardian == true", "next_step": "adult"}}
        ], "default_next": "minor"}},
        "adult": {{"id": "adult", "type": "terminal", "result": {{"code": "ADULT", "output": [["name", "user.name"]]}}}},
        "unknown": {{"id": "unknown", "type": "terminal", "result": {{"code": "UNKNOWN"}}}},
        "minor": {{"id": "minor", "type": "terminal", "result": {{"code": "MINOR"}}}}
      }}
    }}"#
    ))
}

#[test]
fn missing_field_modes() {
    let lenient = missing_rule("lenient");
    let strict = missing_rule("strict");
    let default = missing_rule("default");
    // Present fields: all modes agree.
    for rule in [&lenient, &strict, &default] {
        let (code, out) = run(rule, r#"{"user": {"age": 30, "name": "Ann"}}"#).unwrap();
        assert_eq!((code.as_str(), out), ("ADULT", json(r#"{"name": "Ann"}"#)));
        assert_eq!(
            run(rule, r#"{"user": {"age": 10, "guardian": false}}"#)
                .unwrap()
                .0,
            "MINOR"
        );
    }
    // Lenient: a condition reading a missing field is false as a whole, and the next
    // branch is tried; `guardian` does not rescue the second branch.
    assert_eq!(run(&lenient, r#"{"user": {}}"#).unwrap().0, "MINOR");
    assert_eq!(
        run(&lenient, r#"{"user": {"guardian": true}}"#).unwrap().0,
        "MINOR"
    );
    // Strict: a missing field is an error, naming the field and step.
    let err = run(&strict, r#"{"user": {}}"#).unwrap_err();
    assert!(
        err.contains("MISSING_FIELD step 'd': missing field 'user.age'"),
        "{err}"
    );
    // Default: a missing field reads as null.
    assert_eq!(run(&default, r#"{"user": {}}"#).unwrap().0, "UNKNOWN");
    assert_eq!(
        run(&default, r#"{"user": {"age": null}}"#).unwrap().0,
        "UNKNOWN"
    );
    // Outside conditions, lenient does not hide a missing field.
    let err = run(&lenient, r#"{"user": {"age": 30}}"#).unwrap_err();
    assert!(
        err.contains("step 'adult': missing field 'user.name'"),
        "{err}"
    );
    assert_eq!(
        run(&default, r#"{"user": {"age": 30}}"#).unwrap().1,
        json(r#"{"name": null}"#)
    );
}

#[test]
fn type_errors_in_conditions_are_errors_in_every_mode() {
    let rule = missing_rule("lenient");
    let err = run(&rule, r#"{"user": {"age": "old"}}"#).unwrap_err();
    assert!(err.starts_with("TYPE_ERROR step 'd'"), "{err}");
}

#[test]
fn actions_variables_logs_and_metrics() {
    let rule = compile(
        r#"{
      "config": {"name": "acts", "entry_step": "a"},
      "steps": {
        "a": {"id": "a", "name": "Prepare", "type": "action", "actions": [
          {"action": "set_variable", "name": "base", "value": "order.total * 2"},
          {"action": "set_variable", "name": "$label", "value": {"Literal": "x"}},
          {"action": "log", "message": "prepared", "level": "warn"},
          {"action": "metric", "name": "order_total", "value": "order.total", "tags": [["region", "eu"]]}
        ], "next_step": "d"},
        "d": {"id": "d", "type": "decision", "branches": [
          {"condition": "$base > 100", "next_step": "t", "actions": [
            {"action": "set_variable", "name": "base", "value": "$base + 1"},
            {"action": "log", "message": "big"}
          ]}
        ], "default_next": "t"},
        "t": {"id": "t", "type": "terminal", "result": {"code": "OK", "message": "done",
              "output": [["base", "$base"], ["label", "$label"]]}}
      }
    }"#,
    );
    let out = rule.execute(&json(r#"{"order": {"total": 60}}"#)).unwrap();
    assert_eq!(out.code(), "OK");
    assert_eq!(out.message(), "done");
    assert_eq!(out.terminal(), "t");
    assert_eq!(
        out.output().to_value(),
        json(r#"{"base": 121, "label": "x"}"#)
    );
    let logs: Vec<(&str, &str)> = out.logs().iter().map(|l| (l.step, l.message)).collect();
    assert_eq!(logs, [("a", "prepared"), ("d", "big")]);
    assert_eq!(
        serde_json::to_value(&out.logs()[0]).unwrap()["level"],
        "warn"
    );
    assert_eq!(out.metrics().len(), 1);
    let m = &out.metrics()[0];
    assert_eq!(
        (m.step, m.name, &m.value),
        ("a", "order_total", &json("60"))
    );
    assert_eq!(
        serde_json::to_value(m).unwrap(),
        serde_json::json!({"step": "a", "name": "order_total", "value": 60, "tags": {"region": "eu"}})
    );
    // Reading a variable no path has set yet is a missing field.
    let err = compile(
        r#"{"config": {"name": "v", "entry_step": "d"}, "steps": {
        "d": {"id": "d", "type": "decision", "branches": [{"condition": "go", "next_step": "set"}], "default_next": "t"},
        "set": {"id": "set", "type": "action", "actions": [{"action": "set_variable", "name": "v", "value": "1"}], "next_step": "t"},
        "t": {"id": "t", "type": "terminal", "result": {"code": "T", "output": [["v", "$v"]]}}}}"#,
    )
    .execute(&json(r#"{"go": false}"#))
    .unwrap_err();
    assert_eq!(err.to_string(), "step 't': missing field '$v'");
    // A path into a variable names the variable and the fields as written.
    let rule = compile(
        r#"{"config": {"name": "v", "entry_step": "set"}, "steps": {
        "set": {"id": "set", "type": "action", "actions": [{"action": "set_variable", "name": "v", "value": "{'a': {'b': 1}}"}], "next_step": "t"},
        "t": {"id": "t", "type": "terminal", "result": {"code": "T", "output": [["b", "$v.a.b"], ["c", "$v.a.c"]]}}}}"#,
    );
    let err = rule.execute(&json("{}")).unwrap_err();
    assert_eq!(err.to_string(), "step 't': missing field '$v.a.c'");
}

#[test]
fn terminal_data_is_merged_over_output() {
    let rule = compile(
        r#"{"config": {"name": "t", "entry_step": "t"}, "steps": {
        "t": {"id": "t", "type": "terminal", "result": {"code": "OK",
          "output": [["a", "x"], ["b", "x + 1"], ["c", "'c'"]],
          "data": {"b": "fixed", "d": {"nested": [1, 2]}}}}}}"#,
    );
    let out = rule.execute(&json(r#"{"x": 1}"#)).unwrap();
    assert_eq!(
        serde_json::to_string(&out.output()).unwrap(),
        r#"{"a":1,"b":"fixed","c":"c","d":{"nested":[1,2]}}"#
    );
    // A data key overriding an output expression means that expression never runs.
    let out = rule.execute(&json(r#"{"x": "s"}"#));
    assert!(out.is_ok());
}

const SUB_RULES: &str = r#"{
  "config": {"name": "loan", "entry_step": "score"},
  "steps": {
    "score": {"id": "score", "name": "Score applicant", "type": "sub_rule", "ref_name": "risk",
              "bindings": [["income", "applicant.income * 12"], ["debt", "applicant.debt"]],
              "outputs": [["risk", "level"], ["$ratio", "ratio"]],
              "next_step": "decide"},
    "decide": {"id": "decide", "type": "decision", "branches": [
      {"condition": "$risk == 'low'", "next_step": "approve"}
    ], "default_next": "review"},
    "approve": {"id": "approve", "type": "terminal", "result": {"code": "APPROVED", "output": [["ratio", "$ratio"]]}},
    "review": {"id": "review", "type": "terminal", "result": {"code": "REVIEW", "output": [["risk", "$risk"], ["ratio", "$ratio"]]}}
  },
  "sub_rules": {
    "risk": {"entry_step": "ratio", "steps": {
      "ratio": {"id": "ratio", "type": "action", "actions": [
        {"action": "set_variable", "name": "ratio", "value": "debt / income"},
        {"action": "log", "message": "ratio computed"}
      ], "next_step": "level"},
      "level": {"id": "level", "type": "decision", "branches": [
        {"condition": "$ratio < 0.3 && applicant.age >= 21", "next_step": "low"}
      ], "default_next": "high"},
      "low": {"id": "low", "type": "terminal", "result": {"code": "LOW", "output": [["level", "'low'"]]}},
      "high": {"id": "high", "type": "terminal", "result": {"code": "HIGH", "output": [["level", "'high'"]]}}
    }}
  }
}"#;

#[test]
fn sub_rules_bind_inputs_and_return_outputs() {
    let rule = compile(SUB_RULES);
    let low = rule
        .execute_with(
            &json(r#"{"applicant": {"income": 5000.0, "debt": 6000.0, "age": 30}}"#),
            &ExecOptions {
                trace: true,
                ..ExecOptions::default()
            },
        )
        .unwrap();
    assert_eq!(low.code(), "APPROVED");
    assert_eq!(low.output().to_value(), json(r#"{"ratio": 0.1}"#));
    assert_eq!(low.logs()[0].step, "ratio");
    let trace = low.trace().unwrap();
    assert_eq!(
        trace.path(),
        "score -> risk::ratio -> risk::level -> risk::low -> decide -> approve"
    );
    let high = run(
        &rule,
        r#"{"applicant": {"income": 100.0, "debt": 6000.0, "age": 30}}"#,
    )
    .unwrap();
    assert_eq!(
        high,
        (
            "REVIEW".to_string(),
            json(r#"{"risk": "high", "ratio": 5.0}"#)
        )
    );
    // An error inside the sub-rule names the sub-rule and its step.
    let err = rule
        .execute(&json(r#"{"applicant": {"income": 0, "debt": 1}}"#))
        .unwrap_err();
    assert_eq!(err.step(), "ratio");
    assert_eq!(err.sub_rule(), Some("risk"));
    assert_eq!(
        err.to_string(),
        "step 'ratio' of sub-rule 'risk': division by zero"
    );
    // Sub-rule steps count toward max_depth.
    let mut tight = rules(SUB_RULES);
    tight.config.max_depth = Some(3);
    let err = tight
        .compile()
        .unwrap()
        .execute(&json(
            r#"{"applicant": {"income": 1.0, "debt": 0.0, "age": 30}}"#,
        ))
        .unwrap_err();
    assert_eq!(err.kind(), &ExecErrorKind::MaxDepthExceeded { limit: 3 });
}

#[test]
fn trace_records_path_names_durations_and_branches() {
    let rule = compile(DISCOUNT);
    let input = json(r#"{"user": {"vip": false, "country": "FR"}, "order": {"total": 10}}"#);
    let plain = rule.execute(&input).unwrap();
    assert!(plain.trace().is_none());
    let out = rule
        .execute_with(
            &input,
            &ExecOptions {
                trace: true,
                ..ExecOptions::default()
            },
        )
        .unwrap();
    let trace = out.trace().unwrap();
    assert_eq!(trace.path(), "check_tier -> no_discount");
    assert_eq!(trace.steps().len(), 2);
    let (d, t) = (&trace.steps()[0], &trace.steps()[1]);
    assert_eq!(
        (d.id, d.name, d.branch, d.next),
        (
            "check_tier",
            Some("Check customer tier and order size"),
            None,
            Some("no_discount")
        )
    );
    assert_eq!((t.id, t.next), ("no_discount", None));
    let v = serde_json::to_value(&out).unwrap();
    assert_eq!(v["trace"]["path"], "check_tier -> no_discount");
    assert_eq!(v["trace"]["steps"][0]["branch"], "default");
    assert!(v["trace"]["steps"][0]["duration_us"].as_f64().unwrap() >= 0.0);
    let vip = rule
        .execute_with(
            &json(r#"{"user": {"vip": true}, "order": {"total": 10}}"#),
            &ExecOptions {
                trace: true,
                ..ExecOptions::default()
            },
        )
        .unwrap();
    assert_eq!(vip.trace().unwrap().steps()[0].branch, Some(1));
    // enable_trace in the ruleset turns tracing on for every call.
    let mut always = rules(DISCOUNT);
    always.config.enable_trace = Some(true);
    assert!(
        always
            .compile()
            .unwrap()
            .execute(&input)
            .unwrap()
            .trace()
            .is_some()
    );
    // A step without a name shows its id as name.
    let two_way = compile(TWO_WAY);
    let unnamed = two_way
        .execute_with(
            &json(r#"{"x": 3}"#),
            &ExecOptions {
                trace: true,
                ..ExecOptions::default()
            },
        )
        .unwrap();
    assert_eq!(
        serde_json::to_value(&unnamed).unwrap()["trace"]["steps"][0]["name"],
        "d"
    );
}

/// A loop whose every round hashes a 1 MiB string: far slower than its time limit.
fn slow_loop(timeout_ms: u64) -> CompiledRuleSet {
    compile(&format!(
        r#"{{
      "config": {{"name": "slow", "entry_step": "init", "max_depth": 100000, "timeout_ms": {timeout_ms}}},
      "steps": {{
        "init": {{"id": "init", "type": "action", "actions": [{{"action": "set_variable", "name": "i", "value": "0"}}], "next_step": "check"}},
        "check": {{"id": "check", "type": "decision", "branches": [{{"condition": "$i < 40000", "next_step": "work"}}], "default_next": "done"}},
        "work": {{"id": "work", "type": "action", "actions": [
          {{"action": "set_variable", "name": "h", "value": "sha256(blob)"}},
          {{"action": "set_variable", "name": "i", "value": "$i + 1"}}], "next_step": "check"}},
        "done": {{"id": "done", "type": "terminal", "result": {{"code": "DONE"}}}}
      }}
    }}"#
    ))
}

fn blob_input() -> Value {
    Value::object_from([("blob", Value::from("x".repeat(1 << 20)))])
}

#[test]
fn long_executions_time_out() {
    let err = slow_loop(20).execute(&blob_input()).unwrap_err();
    assert_eq!(err.kind(), &ExecErrorKind::Timeout { limit_ms: 20 });
    assert_eq!(err.code(), "TIMEOUT");
    // The caller can cap the limit (a tenant's execution timeout, say).
    let err = slow_loop(5000)
        .execute_with(
            &blob_input(),
            &ExecOptions {
                timeout: Some(Duration::from_millis(10)),
                ..ExecOptions::default()
            },
        )
        .unwrap_err();
    assert_eq!(err.kind(), &ExecErrorKind::Timeout { limit_ms: 10 });
}

#[test]
fn a_short_flow_with_a_slow_step_times_out() {
    // Three steps: the first hashes 1 MiB sixty times, the limit is 2 ms.
    let heavy: Vec<String> = (0..60)
        .map(|i| {
            format!(r#"{{"action": "set_variable", "name": "h{i}", "value": "sha256(blob)"}}"#)
        })
        .collect();
    let rule = compile(&format!(
        r#"{{
      "config": {{"name": "short", "entry_step": "heavy", "timeout_ms": 2}},
      "steps": {{
        "heavy": {{"id": "heavy", "type": "action", "actions": [{}], "next_step": "d"}},
        "d": {{"id": "d", "type": "decision", "branches": [], "default_next": "t"}},
        "t": {{"id": "t", "type": "terminal", "result": {{"code": "T"}}}}
      }}
    }}"#,
        heavy.join(",")
    ));
    let err = rule.execute(&blob_input()).unwrap_err();
    assert_eq!(err.kind(), &ExecErrorKind::Timeout { limit_ms: 2 });
    assert_eq!(err.step(), "d");
}

/// Ten equality branches on one field (answered by a table), with a duplicate value, an
/// `in` list, and ordinary branches before and after.
fn switch_rule(mode: &str) -> CompiledRuleSet {
    let mut branches = vec![r#"{"condition": "vip == true", "next_step": "vip"}"#.to_string()];
    for (i, tier) in ["bronze", "silver", "gold", "silver", "plat"]
        .iter()
        .enumerate()
    {
        branches.push(format!(
            r#"{{"condition": "tier == '{tier}'", "next_step": "t{i}"}}"#
        ));
    }
    branches.push(r#"{"condition": "tier in ['a', 'b', 'gold']", "next_step": "t5"}"#.into());
    branches.push(r#"{"condition": "tier == 7", "next_step": "t6"}"#.into());
    branches.push(r#"{"condition": "tier == null", "next_step": "t7"}"#.into());
    branches.push(r#"{"condition": "7.0 == tier", "next_step": "t8"}"#.into());
    branches.push(r#"{"condition": "len(tier) > 3", "next_step": "long"}"#.into());
    let mut steps = vec![format!(
        r#""d": {{"id": "d", "type": "decision", "branches": [{}], "default_next": "none"}}"#,
        branches.join(",")
    )];
    for t in [
        "vip", "t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "long", "none",
    ] {
        steps.push(format!(
            r#""{t}": {{"id": "{t}", "type": "terminal", "result": {{"code": "{t}"}}}}"#
        ));
    }
    compile(&format!(
        r#"{{"config": {{"name": "sw", "entry_step": "d", "field_missing": "{mode}"}}, "steps": {{{}}}}}"#,
        steps.join(",")
    ))
}

#[test]
fn equality_runs_answered_by_lookup_keep_first_match_semantics() {
    let lenient = switch_rule("lenient");
    let strict = switch_rule("strict");
    let default = switch_rule("default");
    let cases: &[(&str, &str, &str, &str)] = &[
        // input, lenient, strict, default
        (r#"{"vip": true, "tier": "gold"}"#, "vip", "vip", "vip"),
        (r#"{"vip": false, "tier": "silver"}"#, "t1", "t1", "t1"),
        (r#"{"vip": false, "tier": "gold"}"#, "t2", "t2", "t2"),
        (r#"{"vip": false, "tier": "plat"}"#, "t4", "t4", "t4"),
        (r#"{"vip": false, "tier": "a"}"#, "t5", "t5", "t5"),
        (r#"{"vip": false, "tier": 7}"#, "t6", "t6", "t6"),
        (r#"{"vip": false, "tier": 7.0}"#, "t8", "t8", "t8"),
        (r#"{"vip": false, "tier": null}"#, "t7", "t7", "t7"),
        (
            r#"{"vip": false, "tier": "unknown"}"#,
            "long",
            "long",
            "long",
        ),
        (r#"{"vip": false, "tier": "xy"}"#, "none", "none", "none"),
        (r#"{"vip": false}"#, "none", "ERR", "t7"),
        (r#"{"tier": "silver"}"#, "t1", "ERR", "t1"),
    ];
    for (input, want_lenient, want_strict, want_default) in cases {
        for (rule, want) in [
            (&lenient, want_lenient),
            (&strict, want_strict),
            (&default, want_default),
        ] {
            let got = match rule.execute(&json(input)) {
                Ok(o) => o.code().to_string(),
                Err(e) if e.code() == "MISSING_FIELD" => "ERR".to_string(),
                Err(e) => format!("unexpected {e}"),
            };
            assert_eq!(&got, want, "{input}");
        }
    }
}

#[test]
fn compiled_rulesets_are_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CompiledRuleSet>();
    let rule = Arc::new(compile(DISCOUNT));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let rule = Arc::clone(&rule);
            std::thread::spawn(move || {
                let input = json(&format!(
                    r#"{{"user": {{"vip": {}, "country": "US"}}, "order": {{"total": {}}}}}"#,
                    i % 2 == 0,
                    100 * i + 50
                ));
                let mut code = None;
                for _ in 0..2000 {
                    code = Some(rule.execute(&input).unwrap().code().to_string());
                }
                code
            })
        })
        .collect();
    let codes: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    assert_eq!(codes, ["VIP", "NONE", "VIP", "BIG_ORDER"]);
}

#[test]
fn inputs_of_different_shapes_read_correctly() {
    // Paths remember where they found a key; inputs with other key orders, other
    // types and more keys than a short object holds must still read the right field.
    let rule = compile(DISCOUNT);
    let mut wide = String::from(r#"{"order": {"total": 640.0}, "user": {"#);
    for i in 0..20 {
        wide.push_str(&format!(r#""k{i}": {i}, "#));
    }
    wide.push_str(r#""country": "US", "vip": true}}"#);
    for input in [
        r#"{"user": {"vip": true, "country": "US"}, "order": {"total": 640.0}}"#,
        r#"{"order": {"id": 1, "total": 640.0}, "user": {"country": "US", "id": 7, "vip": true}}"#,
        wide.as_str(),
        r#"{"order": [640.0], "user": {"vip": true}}"#,
    ] {
        let first = run(&rule, input);
        let second = run(&rule, input);
        assert_eq!(first, second, "{input}");
    }
    assert_eq!(run(&rule, &wide).unwrap().0, "VIP_BIG");
    assert!(
        run(&rule, r#"{"order": [640.0], "user": {"vip": true}}"#)
            .unwrap_err()
            .contains("missing field 'order.total'")
    );
}

#[test]
fn yaml_rulesets_execute_like_json_ones() {
    let yaml = r#"
config:
  name: yaml_rule
  entry_step: check
steps:
  check:
    id: check
    type: decision
    branches:
      - condition: "amount > 100"
        next_step: high
    default_next: low
  high:
    id: high
    type: terminal
    result: {code: HIGH, output: [[double, "amount * 2"]]}
  low:
    id: low
    type: terminal
    result: {code: LOW}
"#;
    let rule = RuleSet::from_yaml(yaml).unwrap().compile().unwrap();
    assert_eq!(
        run(&rule, r#"{"amount": 150}"#).unwrap(),
        ("HIGH".into(), json(r#"{"double": 300}"#))
    );
    assert_eq!(run(&rule, r#"{"amount": 5}"#).unwrap().0, "LOW");
}
