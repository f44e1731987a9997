#![allow(clippy::expect_used)] // a benchmark fails loudly on a broken fixture
//! Engine benchmarks: the reference discount rule (trace off and on), a 4-branch score
//! tier, decisions of 10/100/1000 branches, and compilation.
//!
//! Inputs are parsed once, outside the timed loops. Each iteration executes, hands the
//! outcome to `black_box` (so it must really be produced) and drops it, as a caller
//! that serializes the outcome in place would.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ordo_core::{ExecOptions, RuleSet, Value};

const DISCOUNT: &str = include_str!("data/discount.json");
const DISCOUNT_INPUT: &str = include_str!("data/discount-input.json");

fn discount_input() -> Value {
    let doc = Value::from_json_str(DISCOUNT_INPUT).expect("bench input is valid JSON");
    doc.get("input")
        .cloned()
        .expect("bench input has an `input` field")
}

fn discount(c: &mut Criterion) {
    let rules = RuleSet::from_json(DISCOUNT).expect("bench rule parses");
    let compiled = rules.compile().expect("bench rule compiles");
    let input = discount_input();
    assert_eq!(
        compiled.execute(&input).expect("executes").code(),
        "VIP_BIG"
    );

    let mut g = c.benchmark_group("discount");
    g.bench_function("trace_off", |b| {
        b.iter(|| black_box(&compiled.execute(black_box(&input))).is_ok())
    });
    let traced = ExecOptions {
        trace: true,
        ..ExecOptions::default()
    };
    g.bench_function("trace_on", |b| {
        b.iter(|| black_box(&compiled.execute_with(black_box(&input), &traced)).is_ok())
    });
    g.bench_function("compile", |b| b.iter(|| black_box(&rules).compile()));
    g.bench_function("parse_and_compile", |b| {
        b.iter(|| RuleSet::from_json(black_box(DISCOUNT)).map(|r| r.compile()))
    });
    g.finish();
}

fn score_tier(c: &mut Criterion) {
    let rules = RuleSet::from_json(
        r#"{
          "config": {"name": "score_tier", "entry_step": "tier"},
          "steps": {
            "tier": {"id": "tier", "type": "decision", "branches": [
                {"condition": "applicant.score >= 800", "next_step": "a"},
                {"condition": "applicant.score >= 650", "next_step": "b"},
                {"condition": "applicant.score >= 500", "next_step": "c"},
                {"condition": "applicant.score >= 300", "next_step": "d"}
              ], "default_next": "e"},
            "a": {"id": "a", "type": "terminal", "result": {"code": "A"}},
            "b": {"id": "b", "type": "terminal", "result": {"code": "B"}},
            "c": {"id": "c", "type": "terminal", "result": {"code": "C"}},
            "d": {"id": "d", "type": "terminal", "result": {"code": "D"}},
            "e": {"id": "e", "type": "terminal", "result": {"code": "E"}}
          }
        }"#,
    )
    .expect("parses");
    let compiled = rules.compile().expect("compiles");
    let input =
        Value::from_json_str(r#"{"applicant": {"id": "a-1", "score": 560}}"#).expect("json");
    assert_eq!(compiled.execute(&input).expect("executes").code(), "C");
    c.bench_function("score_tier_4/third_branch", |b| {
        b.iter(|| black_box(&compiled.execute(black_box(&input))).is_ok())
    });
}

/// A decision of `n` branches. `range` tests `amount >= threshold` (only a scan can
/// answer it); otherwise `tier == "t<i>"` (answered by a table lookup).
fn wide_rule(n: usize, range: bool) -> RuleSet {
    let mut branches = Vec::with_capacity(n);
    for i in 0..n {
        let condition = if range {
            format!("order.amount >= {}", (n - i) * 10)
        } else {
            format!("customer.tier == \"t{i}\"")
        };
        branches.push(format!(
            r#"{{"condition": {condition:?}, "next_step": "hit"}}"#
        ));
    }
    let text = format!(
        r#"{{"config": {{"name": "wide", "entry_step": "d"}},
            "steps": {{
              "d": {{"id": "d", "type": "decision", "branches": [{}], "default_next": "miss"}},
              "hit": {{"id": "hit", "type": "terminal", "result": {{"code": "HIT"}}}},
              "miss": {{"id": "miss", "type": "terminal", "result": {{"code": "MISS"}}}}
            }}}}"#,
        branches.join(",")
    );
    RuleSet::from_json(&text).expect("generated rule parses")
}

fn wide_decisions(c: &mut Criterion) {
    let mut g = c.benchmark_group("branches");
    for n in [10usize, 100, 1000] {
        let range = wide_rule(n, true).compile().expect("compiles");
        let switch = wide_rule(n, false).compile().expect("compiles");
        // Range: the first branch matches large amounts, the last one only amounts >= 10.
        let first = Value::from_json_str(&format!(r#"{{"order": {{"amount": {}}}}}"#, n * 10))
            .expect("json");
        let last = Value::from_json_str(r#"{"order": {"amount": 15}}"#).expect("json");
        let tier_last =
            Value::from_json_str(&format!(r#"{{"customer": {{"tier": "t{}"}}}}"#, n - 1))
                .expect("json");
        for (case, rule, input) in [
            ("range_first", &range, &first),
            ("range_last", &range, &last),
            ("equality_last", &switch, &tier_last),
        ] {
            assert_eq!(rule.execute(input).expect("executes").code(), "HIT");
            g.bench_with_input(BenchmarkId::new(case, n), input, |b, input| {
                b.iter(|| black_box(&rule.execute(black_box(input))).is_ok())
            });
        }
    }
    g.finish();
}

criterion_group!(benches, discount, score_tier, wide_decisions);
criterion_main!(benches);
