//! Compile-time validation: every problem is reported, at once, naming step and field.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::rules;

/// The `(field, message)` of every error found in `text`.
fn errors(text: &str) -> Vec<(String, String)> {
    rules(text)
        .compile()
        .map(|_| panic!("compiled, but errors were expected"))
        .unwrap_err()
        .errors
        .into_iter()
        .map(|e| (e.field, e.message))
        .collect()
}

fn expect(text: &str, want: &[(&str, &str)]) {
    let got = errors(text);
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(f, m)| (f.to_string(), m.to_string()))
        .collect();
    assert_eq!(got, want);
}

const T: &str = r#""end": {"id": "end", "type": "terminal", "result": {"code": "E"}}"#;

#[test]
fn entry_step_and_references_must_exist() {
    expect(
        &format!(
            r#"{{"config": {{"name": "r", "entry_step": "nope"}}, "steps": {{
          "d": {{"id": "d", "type": "decision", "branches": [{{"condition": "true", "next_step": "ghost"}}], "default_next": "phantom"}},
          "a": {{"id": "a", "type": "action", "actions": [], "next_step": "void"}},
          {T}}}}}"#
        ),
        &[
            ("config.entry_step", "entry step 'nope' does not exist"),
            (
                "steps.d.branches[0].next_step",
                "step 'ghost' does not exist",
            ),
            ("steps.d.default_next", "step 'phantom' does not exist"),
            ("steps.a.next_step", "step 'void' does not exist"),
        ],
    );
}

#[test]
fn expressions_must_parse_and_compile_with_positions() {
    expect(
        &format!(
            r#"{{"config": {{"name": "r", "entry_step": "d"}}, "steps": {{
          "d": {{"id": "d", "type": "decision", "branches": [
            {{"condition": "amount >", "next_step": "end"}},
            {{"condition": "amount > 1 && foo(2)", "next_step": "end"}},
            {{"condition": "upper()", "next_step": "end"}},
            {{"condition": "$nobody > 1", "next_step": "end"}},
            {{"condition": {{"Call": {{"name": "bar", "args": []}}}}, "next_step": "end"}}
          ], "default_next": "end"}},
          "a": {{"id": "a", "type": "action", "actions": [
            {{"action": "set_variable", "name": "x y", "value": "1"}},
            {{"action": "set_variable", "name": "ok", "value": "regex_match('(', s)"}},
            {{"action": "metric", "name": "", "value": "1"}}
          ], "next_step": "end"}},
          {T}}}}}"#
        ),
        &[
            (
                "steps.d.branches[0].condition",
                "expected an expression, found end of input at character 9",
            ),
            (
                "steps.d.branches[1].condition",
                "unknown function 'foo' at character 15",
            ),
            (
                "steps.d.branches[2].condition",
                "function 'upper' expects 1 argument, got 0 at character 1",
            ),
            (
                "steps.d.branches[3].condition",
                "unknown variable '$nobody': no action sets it at character 1",
            ),
            ("steps.d.branches[4].condition", "unknown function 'bar'"),
            (
                "steps.a.actions[0].name",
                "'x y' is not a valid variable name",
            ),
            (
                "steps.a.actions[1].value",
                "regex_match: invalid regex: unclosed group at character 1",
            ),
            ("steps.a.actions[2].name", "a metric needs a name"),
        ],
    );
}

#[test]
fn structural_problems() {
    expect(
        &format!(
            r#"{{"config": {{"name": "bad name!", "entry_step": "d", "max_depth": 0, "timeout_ms": 99999999}}, "steps": {{
          "d": {{"id": "d", "type": "decision"}},
          "mismatch": {{"id": "other", "type": "terminal", "result": {{"code": "X"}}}},
          "dup": {{"id": "dup", "type": "terminal", "result": {{"output": [["k", "1"], ["k", "2"]]}}}},
          {T}}}}}"#
        ),
        &[
            (
                "config.name",
                "name may contain only letters, digits, '.', '_' and '-', found ' '",
            ),
            ("config.max_depth", "must be between 1 and 100000, got 0"),
            (
                "config.timeout_ms",
                "must be at most 3600000 (one hour), got 99999999",
            ),
            ("steps.d", "a decision needs branches or a default_next"),
            (
                "steps.mismatch.id",
                "id 'other' does not match the key 'mismatch' it is stored under",
            ),
            ("steps.dup.result.output[1]", "duplicate output key 'k'"),
        ],
    );
}

#[test]
fn names_follow_the_contract() {
    for (name, ok) in [
        ("discount", true),
        ("risk.v2_final-1", true),
        ("a..b", false),
        (".hidden", false),
        ("", false),
        ("with/slash", false),
        ("ünïcode", false),
        (&"x".repeat(129), false),
    ] {
        assert_eq!(ordo_core::validate_name(name).is_ok(), ok, "{name:?}");
    }
}

#[test]
fn loops_without_a_decision_are_rejected() {
    expect(
        &format!(
            r#"{{"config": {{"name": "r", "entry_step": "a"}}, "steps": {{
          "a": {{"id": "a", "type": "action", "actions": [], "next_step": "b"}},
          "b": {{"id": "b", "type": "action", "actions": [], "next_step": "c"}},
          "c": {{"id": "c", "type": "decision", "branches": [{{"condition": null, "next_step": "a"}}]}},
          "self": {{"id": "self", "type": "action", "actions": [], "next_step": "self"}},
          "goto": {{"id": "goto", "type": "decision", "default_next": "x"}},
          "x": {{"id": "x", "type": "decision", "branches": [{{"condition": "1 == 1", "next_step": "goto"}}]}},
          {T}}}}}"#
        ),
        &[
            (
                "steps.a",
                "steps a -> b -> c -> a loop without any decision that could leave the loop, so it can never end",
            ),
            (
                "steps.self",
                "steps self -> self loop without any decision that could leave the loop, so it can never end",
            ),
            (
                "steps.goto",
                "steps goto -> x -> goto loop without any decision that could leave the loop, so it can never end",
            ),
        ],
    );
    // A loop through a real decision is legal (bounded by max_depth at run time).
    let ok = format!(
        r#"{{"config": {{"name": "r", "entry_step": "a"}}, "steps": {{
          "a": {{"id": "a", "type": "action", "actions": [], "next_step": "d"}},
          "d": {{"id": "d", "type": "decision", "branches": [{{"condition": "go", "next_step": "a"}}], "default_next": "end"}},
          {T}}}}}"#
    );
    assert!(rules(&ok).compile().is_ok());
}

#[test]
fn sub_rule_references_outputs_and_cycles() {
    expect(
        &format!(
            r#"{{"config": {{"name": "r", "entry_step": "s"}}, "steps": {{
          "s": {{"id": "s", "type": "sub_rule", "ref_name": "one", "outputs": [["v", "nothing"]], "bindings": [["a.b", "1"]], "next_step": "t"}},
          "t": {{"id": "t", "type": "sub_rule", "ref_name": "missing", "next_step": "end"}},
          {T}}},
          "sub_rules": {{
            "one": {{"entry_step": "c", "steps": {{"c": {{"id": "c", "type": "sub_rule", "ref_name": "two", "next_step": "e"}}, "e": {{"id": "e", "type": "terminal", "result": {{}}}}}}}},
            "two": {{"entry_step": "c", "steps": {{"c": {{"id": "c", "type": "sub_rule", "ref_name": "one", "next_step": "e"}}, "e": {{"id": "e", "type": "terminal", "result": {{}}}}}}}},
            "three": {{"entry_step": "gone", "steps": {{"e": {{"id": "e", "type": "terminal", "result": {{}}}}}}}}
          }}}}"#
        ),
        &[
            (
                "steps.s.bindings[0]",
                "'a.b' is not a valid top-level field name",
            ),
            (
                "steps.s.outputs[0]",
                "sub-rule 'one' has no variable or output named 'nothing'",
            ),
            ("steps.t.ref_name", "sub-rule 'missing' does not exist"),
            (
                "sub_rules.three.entry_step",
                "entry step 'gone' does not exist",
            ),
            (
                "sub_rules.one",
                "sub-rules call each other in a cycle: one -> two -> one",
            ),
        ],
    );
}

#[test]
fn sub_rule_nesting_is_bounded() {
    let mut subs = Vec::new();
    for i in 0..20 {
        let body = if i == 19 {
            r#""e": {"id": "e", "type": "terminal", "result": {}}"#.to_string()
        } else {
            format!(
                r#""c": {{"id": "c", "type": "sub_rule", "ref_name": "s{}", "next_step": "e"}}, "e": {{"id": "e", "type": "terminal", "result": {{}}}}"#,
                i + 1
            )
        };
        let entry = if i == 19 { "e" } else { "c" };
        subs.push(format!(
            r#""s{i}": {{"entry_step": "{entry}", "steps": {{{body}}}}}"#
        ));
    }
    let text = format!(
        r#"{{"config": {{"name": "r", "entry_step": "s"}}, "steps": {{
          "s": {{"id": "s", "type": "sub_rule", "ref_name": "s0", "next_step": "end"}}, {T}}},
          "sub_rules": {{{}}}}}"#,
        subs.join(",")
    );
    expect(
        &text,
        &[("sub_rules", "sub-rules nest 20 deep; the limit is 16")],
    );
}

#[test]
fn every_error_names_its_step() {
    let e = rules(&format!(
        r#"{{"config": {{"name": "r", "entry_step": "d"}}, "steps": {{
          "d": {{"id": "d", "type": "decision", "branches": [{{"condition": "(", "next_step": "end"}}]}}, {T}}}}}"#
    ))
    .compile()
    .unwrap_err();
    assert_eq!(e.errors[0].step.as_deref(), Some("d"));
    assert_eq!(
        e.to_string(),
        "invalid ruleset (1 error): steps.d.branches[0].condition: expected an expression, found end of input at character 2"
    );
}
