//! Property tests: no text, tree, ruleset or input makes the engine panic, and printed
//! expressions read back as the same tree. Case counts follow `PROPTEST_CASES`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;

use proptest::prelude::*;

use ordo_core::expr::{BinaryOp, Expr, UnaryOp};
use ordo_core::model::{Action, Branch, ExprSource, RuleSet, RuleSetConfig, Step, TerminalResult};
use ordo_core::{ExecOptions, Expression, FieldMissing, Value};

const FIELDS: &[&str] = &[
    "a",
    "b",
    "x",
    "items",
    "a.b",
    "items.0",
    "items[1].x",
    "$v",
    "$w",
    "x.0.a",
];
/// Functions with a valid argument count, so generated calls usually compile.
const FUNCTIONS: &[(&str, usize)] = &[
    ("len", 1),
    ("upper", 1),
    ("substring", 2),
    ("split", 2),
    ("join", 2),
    ("pad_left", 3),
    ("format", 2),
    ("sprintf", 2),
    ("min", 2),
    ("max", 1),
    ("round", 1),
    ("sum", 1),
    ("avg", 1),
    ("sort", 1),
    ("unique", 1),
    ("slice", 2),
    ("range", 2),
    ("flatten", 1),
    ("group_by", 2),
    ("keys", 1),
    ("merge", 2),
    ("object_get", 3),
    ("to_int", 1),
    ("to_string", 1),
    ("to_bool", 1),
    ("parse_time", 1),
    ("format_time", 2),
    ("date_add", 3),
    ("regex_match", 2),
    ("regex_replace", 3),
    ("glob_match", 2),
    ("base64_decode", 1),
    ("url_decode", 1),
    ("json_unmarshal", 1),
    ("cidr_contains", 2),
    ("semver_compare", 2),
    ("contains", 2),
    ("index_of", 2),
    ("char_at", 2),
    ("now", 0),
    ("uuid_v4", 0),
];
const TOKENS: &[&str] = &[
    "a",
    "b",
    "x",
    "items",
    "$v",
    "1",
    "0",
    "-1",
    "2.5",
    "1e3",
    "'s'",
    "\"t\"",
    "true",
    "false",
    "null",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ".",
    ":",
    "+",
    "-",
    "*",
    "/",
    "%",
    "!",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "&&",
    "||",
    "and",
    "or",
    "not",
    "in",
    "contains",
    "if",
    "then",
    "else",
    "exists",
    "coalesce",
    "len",
    "upper",
    "[0]",
    ".0",
    "9223372036854775807",
];

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        (-1e6f64..1e6).prop_map(serde_json::Value::from),
        prop_oneof![
            Just(""),
            Just("a"),
            Just("US"),
            Just("2024-01-01T00:00:00Z"),
            Just("10.0.0.1"),
            Just("1.2.3"),
            Just("x,y")
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec!["a", "b", "x", "items", "0"]),
                inner,
                0..5
            )
            .prop_map(|m: BTreeMap<&str, serde_json::Value>| {
                serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

fn input() -> impl Strategy<Value = Value> {
    json_value().prop_map(|j| Value::from_json_str(&j.to_string()).unwrap())
}

fn binary_op() -> impl Strategy<Value = BinaryOp> {
    prop::sample::select(vec![
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Mod,
        BinaryOp::Eq,
        BinaryOp::Ne,
        BinaryOp::Lt,
        BinaryOp::Le,
        BinaryOp::Gt,
        BinaryOp::Ge,
        BinaryOp::And,
        BinaryOp::Or,
        BinaryOp::In,
        BinaryOp::NotIn,
        BinaryOp::Contains,
    ])
}

/// Expression trees, built directly (not through the parser).
fn expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        json_value().prop_map(|j| Expr::Literal(Value::from_json_str(&j.to_string()).unwrap())),
        prop::sample::select(FIELDS.to_vec()).prop_map(|f| Expr::Field(f.replace("[1]", ".1"))),
    ];
    leaf.prop_recursive(6, 48, 4, |inner| {
        prop_oneof![
            (binary_op(), inner.clone(), inner.clone())
                .prop_map(|(op, l, r)| Expr::binary(op, l, r)),
            (
                prop::sample::select(vec![UnaryOp::Not, UnaryOp::Neg]),
                inner.clone()
            )
                .prop_map(|(op, e)| Expr::Unary {
                    op,
                    operand: Box::new(e)
                }),
            (
                prop::sample::select(FUNCTIONS.to_vec()),
                prop::collection::vec(inner.clone(), 3)
            )
                .prop_map(|((name, arity), mut args)| {
                    args.truncate(arity);
                    Expr::Call {
                        name: name.to_string(),
                        args,
                    }
                }),
            (inner.clone(), inner.clone(), inner.clone()).prop_map(|(c, t, e)| Expr::Conditional {
                condition: Box::new(c),
                then_branch: Box::new(t),
                else_branch: Box::new(e),
            }),
            prop::collection::vec(inner.clone(), 0..4).prop_map(Expr::Array),
            prop::collection::vec(("[a-c]", inner.clone()), 0..3).prop_map(Expr::Object),
            prop::sample::select(FIELDS.to_vec())
                .prop_map(|f| Expr::Exists(f.replace("[1]", ".1"))),
            prop::collection::vec(inner, 1..4).prop_map(Expr::Coalesce),
        ]
    })
}

fn source() -> impl Strategy<Value = ExprSource> {
    prop_oneof![
        4 => expr().prop_map(ExprSource::Ast),
        4 => expr().prop_map(|e| ExprSource::Text(e.to_string())),
        1 => prop::collection::vec(prop::sample::select(TOKENS.to_vec()), 1..8)
            .prop_map(|t| ExprSource::Text(t.join(" "))),
    ]
}

/// Small rulesets: a few steps of every kind wired to each other (and sometimes to
/// steps that do not exist), loops included.
fn ruleset() -> impl Strategy<Value = RuleSet> {
    let n = 5usize;
    // Mostly existing steps, sometimes one that does not exist.
    let target = move || {
        prop_oneof![
            12 => prop::sample::select((0..n).map(|i| format!("s{i}")).collect::<Vec<_>>()),
            1 => Just("nowhere".to_string()),
        ]
    };
    let action = move || {
        prop_oneof![
            (prop::sample::select(vec!["v", "w"]), source()).prop_map(|(name, value)| {
                Action::SetVariable {
                    name: name.to_string(),
                    value,
                    description: None,
                }
            }),
            source().prop_map(|value| Action::Metric {
                name: "m".into(),
                value,
                tags: vec![],
                description: None
            }),
            Just(Action::Log {
                message: "l".into(),
                level: None,
                description: None
            }),
        ]
    };
    let step = move |id: String| {
        let id2 = id.clone();
        let id3 = id.clone();
        prop_oneof![
            (
                prop::collection::vec(
                    (
                        prop::option::of(source()),
                        target(),
                        prop::collection::vec(action(), 0..2)
                    ),
                    0..4
                ),
                prop_oneof![1 => Just(None), 4 => target().prop_map(Some)]
            )
                .prop_map(move |(bs, default_next)| Step::Decision {
                    id: id.clone(),
                    name: None,
                    branches: bs
                        .into_iter()
                        .map(|(condition, next_step, actions)| Branch {
                            condition,
                            next_step,
                            actions
                        })
                        .collect(),
                    default_next,
                }),
            (prop::collection::vec(action(), 0..3), target()).prop_map(
                move |(actions, next_step)| Step::Action {
                    id: id2.clone(),
                    name: None,
                    actions,
                    next_step,
                }
            ),
            prop::collection::vec(source(), 0..3).prop_map(move |output| {
                Step::Terminal {
                    id: id3.clone(),
                    name: Some("t".into()),
                    result: TerminalResult {
                        code: "T".into(),
                        message: None,
                        output: output
                            .into_iter()
                            .enumerate()
                            .map(|(i, e)| (format!("k{i}"), e))
                            .collect(),
                        data: None,
                    },
                }
            }),
        ]
    };
    (
        prop::collection::vec(any::<u8>(), n)
            .prop_flat_map(move |_| (0..n).map(|i| step(format!("s{i}"))).collect::<Vec<_>>()),
        prop::sample::select(vec!["lenient", "strict", "default"]),
        1u32..60,
    )
        .prop_map(|(steps, mode, max_depth)| {
            let mut rs = RuleSet {
                config: RuleSetConfig {
                    name: "prop".into(),
                    entry_step: Some("s0".into()),
                    max_depth: Some(max_depth),
                    field_missing: Some(match mode {
                        "strict" => FieldMissing::Strict,
                        "default" => FieldMissing::Default,
                        _ => FieldMissing::Lenient,
                    }),
                    ..RuleSetConfig::default()
                },
                steps: Default::default(),
                sub_rules: Default::default(),
            };
            for s in steps {
                rs.steps.insert(s.id().to_string(), s);
            }
            // An entry step that sets the variables expressions may read.
            let set = |name: &str| Action::SetVariable {
                name: name.into(),
                value: ExprSource::Text("1".into()),
                description: None,
            };
            rs.steps.insert(
                "init".into(),
                Step::Action {
                    id: "init".into(),
                    name: None,
                    actions: vec![set("v"), set("w")],
                    next_step: "s0".into(),
                },
            );
            rs.config.entry_step = Some("init".into());
            rs
        })
}

proptest! {
    #[test]
    fn parser_never_panics_on_any_text(s in "\\PC{0,80}") {
        let _ = ordo_core::expr::parse(&s);
        let _ = Expression::parse(&s);
    }

    #[test]
    fn token_soup_parses_or_fails_cleanly(tokens in prop::collection::vec(prop::sample::select(TOKENS.to_vec()), 0..24), ctx in input()) {
        let src = tokens.join(" ");
        if let Ok(ast) = ordo_core::expr::parse(&src) {
            let printed = ast.to_string();
            let again = ordo_core::expr::parse(&printed);
            prop_assert_eq!(again.as_ref().ok(), Some(&ast), "{} printed as {}", src, printed);
            if let Ok(e) = Expression::parse(&src) {
                for mode in [FieldMissing::Lenient, FieldMissing::Strict, FieldMissing::Default] {
                    let _ = e.eval_with(&ctx, mode);
                }
            }
        }
    }

    #[test]
    fn any_tree_compiles_and_evaluates_without_panicking(e in expr(), ctx in input()) {
        if let Ok(compiled) = Expression::from_ast(e.clone()) {
            let _ = compiled.eval_with(&ctx, FieldMissing::Strict);
            let _ = compiled.eval_with(&ctx, FieldMissing::Default);
        }
        // The tree also survives JSON.
        let text = serde_json::to_string(&e).unwrap();
        let back: Expr = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(back, e);
    }

    #[test]
    fn any_ruleset_compiles_or_explains_and_runs_without_panicking(rs in ruleset(), inputs in prop::collection::vec(input(), 1..4)) {
        // Whatever was generated reads back from its own JSON.
        let text = serde_json::to_string(&rs).unwrap();
        prop_assert_eq!(&RuleSet::from_json(&text).unwrap(), &rs);
        match rs.compile() {
            Ok(compiled) => {
                for input in &inputs {
                    let traced = ExecOptions { trace: true, ..ExecOptions::default() };
                    match compiled.execute_with(input, &traced) {
                        Ok(out) => {
                            prop_assert!(rs.steps.contains_key(out.terminal()));
                            let trace = out.trace().unwrap();
                            prop_assert!(trace.steps().len() as u32 <= rs.config.max_depth());
                            let _ = serde_json::to_string(&out).unwrap();
                        }
                        Err(e) => {
                            prop_assert!(rs.steps.contains_key(e.step()), "{}", e);
                            prop_assert!(!e.code().is_empty());
                        }
                    }
                }
            }
            Err(errors) => prop_assert!(!errors.errors.is_empty()),
        }
    }

    #[test]
    fn values_round_trip_through_json(j in json_value()) {
        let v = Value::from_json_str(&j.to_string()).unwrap();
        let again = Value::from_json_str(&v.to_json_string()).unwrap();
        prop_assert_eq!(again, v);
    }
}

#[test]
fn generated_rulesets_often_compile_and_run() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut compiled, mut ran_ok, mut ran_err) = (0, 0, 0);
    for _ in 0..300 {
        let rs = ruleset().new_tree(&mut runner).unwrap().current();
        let ctx = input().new_tree(&mut runner).unwrap().current();
        if let Ok(c) = rs.compile() {
            compiled += 1;
            match c.execute(&ctx) {
                Ok(_) => ran_ok += 1,
                Err(_) => ran_err += 1,
            }
        }
    }
    eprintln!("compiled {compiled}/300, ran ok {ran_ok}, errors {ran_err}");
    // The generator must exercise execution, not only validation.
    assert!(
        compiled >= 30 && ran_ok >= 10 && ran_err >= 10,
        "{compiled} {ran_ok} {ran_err}"
    );
}
