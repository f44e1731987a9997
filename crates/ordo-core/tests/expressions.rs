//! The expression language, case by case: every operator, literal, special form and
//! semantic rule, and the parse errors.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{check_table, err, eval, eval_with, json, ok};
use ordo_core::{Expr, Expression, FieldMissing};

const ORDER: &str = r#"{
  "user": {"id": "u-1", "vip": true, "country": "US", "tags": ["a", "b"], "nick": null},
  "order": {"total": 640.0, "count": 3},
  "items": [{"price": 10, "name": "pen"}, {"price": 2.5, "name": "cap"}],
  "matrix": [[1, 2], [3, 4]],
  "data": {"first-name": "Ada", "in": 1}
}"#;

#[test]
fn literals() {
    check_table(&[
        ("1", "{}", ok("1")),
        ("1.5", "{}", ok("1.5")),
        ("-3", "{}", ok("-3")),
        ("-1.5", "{}", ok("-1.5")),
        ("1e3", "{}", ok("1000.0")),
        ("2.5E-1", "{}", ok("0.25")),
        ("9223372036854775807", "{}", ok("9223372036854775807")),
        ("-9223372036854775808", "{}", ok("-9223372036854775808")),
        ("\"a\\\"b\"", "{}", ok(r#""a\"b""#)),
        ("'it\\'s'", "{}", ok(r#""it's""#)),
        ("\"\\n\\t\\r\\\\\"", "{}", ok(r#""\n\t\r\\""#)),
        ("'\\u0041'", "{}", ok(r#""A""#)),
        ("true", "{}", ok("true")),
        ("false", "{}", ok("false")),
        ("null", "{}", ok("null")),
        ("[1, \"a\", null]", "{}", ok(r#"[1, "a", null]"#)),
        ("[1, 2,]", "{}", ok("[1, 2]")),
        ("[]", "{}", ok("[]")),
        ("{\"k\": 1, v: [2]}", "{}", ok(r#"{"k": 1, "v": [2]}"#)),
        ("{}", "{}", ok("{}")),
        ("[order.count, user.id]", ORDER, ok(r#"[3, "u-1"]"#)),
    ]);
}

#[test]
fn arithmetic() {
    check_table(&[
        ("1 + 2", "{}", ok("3")),
        ("7 - 10", "{}", ok("-3")),
        ("6 * 7", "{}", ok("42")),
        ("10 / 4", "{}", ok("2")),
        ("10.0 / 4", "{}", ok("2.5")),
        ("-7 / 2", "{}", ok("-3")),
        ("10 % 3", "{}", ok("1")),
        ("-7 % 3", "{}", ok("-1")),
        ("7.5 % 2", "{}", ok("1.5")),
        ("1 + 1.5", "{}", ok("2.5")),
        ("2 * 3 + 4", "{}", ok("10")),
        ("2 * (3 + 4)", "{}", ok("14")),
        ("2 - -3", "{}", ok("5")),
        ("- 2 * 3", "{}", ok("-6")),
        ("-order.count", ORDER, ok("-3")),
        ("order.total * 0.8", ORDER, ok("512.0")),
        ("\"ab\" + \"cd\"", "{}", ok(r#""abcd""#)),
        (
            "9223372036854775807 + 1",
            "{}",
            err("integer overflow in addition"),
        ),
        (
            "-9223372036854775807 - 2",
            "{}",
            err("integer overflow in subtraction"),
        ),
        (
            "4611686018427387904 * 2",
            "{}",
            err("integer overflow in multiplication"),
        ),
        (
            "-(-9223372036854775808)",
            "{}",
            err("integer overflow in negation"),
        ),
        (
            "-9223372036854775808 / -1",
            "{}",
            err("integer overflow in division"),
        ),
        ("1 / 0", "{}", err("division by zero")),
        ("1.0 / 0", "{}", err("division by zero")),
        ("1 / 0.0", "{}", err("division by zero")),
        ("5 % 0", "{}", err("division by zero")),
        ("1e308 * 10", "{}", err("non-finite")),
        ("\"a\" + 1", "{}", err("cannot apply '+' to string and int")),
        ("true + 1", "{}", err("cannot apply '+' to bool and int")),
        ("\"a\" * 2", "{}", err("cannot apply '*' to string and int")),
        ("-\"a\"", "{}", err("cannot negate string")),
        ("null - 1", "{}", err("type error")),
    ]);
}

#[test]
fn comparison_is_strict() {
    check_table(&[
        ("1 == 1", "{}", ok("true")),
        ("1 == 1.0", "{}", ok("false")),
        ("1 == true", "{}", ok("false")),
        ("0 == false", "{}", ok("false")),
        ("\"1\" == 1", "{}", ok("false")),
        ("null == null", "{}", ok("true")),
        ("user.nick == null", ORDER, ok("true")),
        ("[1, 2] == [1, 2]", "{}", ok("true")),
        ("[1, 2] == [1, 2.0]", "{}", ok("false")),
        (
            "{\"a\": 1, \"b\": 2} == {\"b\": 2, \"a\": 1}",
            "{}",
            ok("true"),
        ),
        ("1 != 1.0", "{}", ok("true")),
        ("\"a\" != \"a\"", "{}", ok("false")),
        ("1 < 2", "{}", ok("true")),
        ("1 < 1.5", "{}", ok("true")),
        ("2.0 >= 2", "{}", ok("true")),
        ("2 <= 1.999", "{}", ok("false")),
        ("9007199254740993 > 9007199254740992.0", "{}", ok("true")),
        ("\"abc\" < \"abd\"", "{}", ok("true")),
        ("\"b\" > \"abc\"", "{}", ok("true")),
        ("false < true", "{}", ok("true")),
        ("order.total >= 500", ORDER, ok("true")),
        // A field compared with a constant takes a fast path; it stays exact past 2^53.
        (
            "x >= 9007199254740993",
            r#"{"x": 9007199254740992.0}"#,
            ok("false"),
        ),
        (
            "x > 9007199254740992",
            r#"{"x": 9007199254740992.0}"#,
            ok("false"),
        ),
        (
            "x >= 9007199254740992",
            r#"{"x": 9007199254740992.0}"#,
            ok("true"),
        ),
        ("x == 500", r#"{"x": 500.0}"#, ok("false")),
        (
            "x * 2",
            r#"{"x": 9007199254740993}"#,
            ok("18014398509481986"),
        ),
        ("x * 2", r#"{"x": 1.5}"#, ok("3.0")),
        (
            "1 < \"a\"",
            "{}",
            err("cannot compare int with string using '<'"),
        ),
        ("null < 1", "{}", err("cannot compare null with int")),
        ("[1] > [0]", "{}", err("cannot compare array with array")),
        ("true >= 1", "{}", err("type error")),
    ]);
}

#[test]
fn logic_and_truthiness() {
    check_table(&[
        ("true && false", "{}", ok("false")),
        ("true and true", "{}", ok("true")),
        ("false || true", "{}", ok("true")),
        ("false or false", "{}", ok("false")),
        ("true && 1", "{}", ok("true")),
        ("0 || \"\"", "{}", ok("false")),
        ("!true", "{}", ok("false")),
        ("not false", "{}", ok("true")),
        ("!!1", "{}", ok("true")),
        ("!0", "{}", ok("true")),
        ("!0.0", "{}", ok("true")),
        ("!\"\"", "{}", ok("true")),
        ("![]", "{}", ok("true")),
        ("!{}", "{}", ok("true")),
        ("!null", "{}", ok("true")),
        ("!\"x\"", "{}", ok("false")),
        ("![0]", "{}", ok("false")),
        ("!-1", "{}", ok("false")),
        // Short-circuit: the right side is never evaluated.
        ("false && nope.field", "{}", ok("false")),
        ("true || 1 / 0", "{}", ok("true")),
        ("false and 1 / 0", "{}", ok("false")),
        ("true && 1 / 0", "{}", err("division by zero")),
        // Precedence: || binds loosest, then &&, then comparisons.
        ("true || false && false", "{}", ok("true")),
        ("1 + 2 * 3 == 7 && true", "{}", ok("true")),
        ("!true == false", "{}", ok("true")),
        ("user.vip == true && order.total >= 500", ORDER, ok("true")),
    ]);
}

#[test]
fn membership() {
    check_table(&[
        ("2 in [1, 2, 3]", "{}", ok("true")),
        ("2.0 in [1, 2, 3]", "{}", ok("false")),
        ("\"US\" in [\"US\", \"CA\"]", "{}", ok("true")),
        ("user.country in [\"US\", \"CA\"]", ORDER, ok("true")),
        (
            "user.country in [\"FR\", \"DE\", \"IT\", \"ES\", \"NL\", \"BE\", \"AT\", \"PL\", \"US\"]",
            ORDER,
            ok("true"),
        ),
        ("user.country not in [\"FR\", \"DE\"]", ORDER, ok("true")),
        ("\"ell\" in \"hello\"", "{}", ok("true")),
        ("\"xyz\" in \"hello\"", "{}", ok("false")),
        ("\"k\" in {\"k\": 1}", "{}", ok("true")),
        ("\"b\" in user.tags", ORDER, ok("true")),
        ("4 not in [1, 2]", "{}", ok("true")),
        ("[1, 2] contains 2", "{}", ok("true")),
        ("user.tags contains \"z\"", ORDER, ok("false")),
        ("\"hello\" contains \"ell\"", "{}", ok("true")),
        ("[[1], [2]] contains [2]", "{}", ok("true")),
        ("1 + 1 in [2]", "{}", ok("true")),
        ("1 in 5", "{}", err("cannot test whether int is in int")),
        (
            "1 in \"123\"",
            "{}",
            err("cannot test whether int is in string"),
        ),
        ("1 in {\"1\": 1}", "{}", err("type error")),
    ]);
}

#[test]
fn conditionals_exists_coalesce() {
    check_table(&[
        ("if true then 1 else 2", "{}", ok("1")),
        ("if 0 then 1 else 2", "{}", ok("2")),
        ("if false then 1 else if true then 2 else 3", "{}", ok("2")),
        (
            "if order.total > 1000 then \"big\" else \"small\"",
            ORDER,
            ok(r#""small""#),
        ),
        ("(if true then 1 else 2) + 10", "{}", ok("11")),
        ("if true then 1 else 1 / 0", "{}", ok("1")),
        ("exists(user.id)", ORDER, ok("true")),
        ("exists(user.nick)", ORDER, ok("true")),
        ("exists(user.missing)", ORDER, ok("false")),
        ("exists(items[1].name)", ORDER, ok("true")),
        ("exists(items[9])", ORDER, ok("false")),
        ("!exists(a.b.c)", "{}", ok("true")),
        ("coalesce(user.missing, user.nick, 3)", ORDER, ok("3")),
        ("coalesce(null, \"x\")", "{}", ok(r#""x""#)),
        ("coalesce(user.id, \"anon\")", ORDER, ok(r#""u-1""#)),
        ("coalesce(nope)", "{}", ok("null")),
        ("coalesce(1 / 0, 2)", "{}", err("division by zero")),
    ]);
}

#[test]
fn field_paths() {
    check_table(&[
        ("items[0].price", ORDER, ok("10")),
        ("items.0.price", ORDER, ok("10")),
        ("items[1][\"name\"]", ORDER, ok(r#""cap""#)),
        ("items[1].price", ORDER, ok("2.5")),
        ("matrix.1.0", ORDER, ok("3")),
        ("matrix[0][1]", ORDER, ok("2")),
        ("data[\"first-name\"]", ORDER, ok(r#""Ada""#)),
        ("data.in", ORDER, ok("1")),
        (
            "user",
            ORDER,
            ok(r#"{"id": "u-1", "vip": true, "country": "US", "tags": ["a", "b"], "nick": null}"#),
        ),
        (
            "items[2].price",
            ORDER,
            err("missing field 'items.2.price'"),
        ),
        ("items.x", ORDER, err("missing field 'items.x'")),
        (
            "items.4294967295",
            ORDER,
            err("missing field 'items.4294967295'"),
        ),
        ("items[99999999999999999999]", ORDER, err("missing field")),
        ("order.total.x", ORDER, err("missing field")),
        ("nope", "{}", err("missing field 'nope'")),
        ("user.id.0", ORDER, err("missing field")),
    ]);
}

#[test]
fn missing_field_modes_outside_conditions() {
    assert!(
        eval_with("a.b", "{}", FieldMissing::Strict)
            .unwrap_err()
            .contains("missing field 'a.b'")
    );
    assert!(
        eval_with("a.b", "{}", FieldMissing::Lenient)
            .unwrap_err()
            .contains("missing field")
    );
    assert_eq!(
        eval_with("a.b", "{}", FieldMissing::Default).unwrap(),
        json("null")
    );
    assert_eq!(
        eval_with("coalesce(a.b, 1) + 1", "{}", FieldMissing::Strict).unwrap(),
        json("2")
    );
}

#[test]
fn variables_are_not_available_standalone() {
    let e = Expression::parse("1 + $x").unwrap_err().to_string();
    assert!(e.contains("unknown variable '$x'"), "{e}");
    assert!(e.contains("at character 5"), "{e}");
}

#[test]
fn parse_errors_say_what_and_where() {
    let cases: &[(&str, &str)] = &[
        (
            "1 +",
            "expected an expression, found end of input at character 4",
        ),
        ("(1 + 2", "expected ')', found end of input at character 7"),
        ("a = 1", "unexpected '=', did you mean '=='? at character 3"),
        ("a & b", "unexpected '&', did you mean '&&'? at character 3"),
        ("a | b", "unexpected '|', did you mean '||'? at character 3"),
        ("\"abc", "unterminated string at character 1"),
        (
            "1 2",
            "expected an operator or end of input, found number 2 at character 3",
        ),
        (
            "foo(",
            "expected an expression, found end of input at character 5",
        ),
        (
            "[1, 2",
            "expected ',' or ']', found end of input at character 6",
        ),
        ("{\"a\" 1}", "expected ':', found number 1 at character 6"),
        (
            "{1: 2}",
            "expected an object key or '}', found number 1 at character 2",
        ),
        ("$", "expected a variable name after '$' at character 2"),
        (
            "items[-1]",
            "expected a non-negative integer index or a quoted key, found '-' at character 7",
        ),
        (
            "items[a]",
            "expected a non-negative integer index or a quoted key",
        ),
        (
            "a[\"x.y\"]",
            "a key containing '.' cannot be used in a path at character 3",
        ),
        (
            "a.",
            "expected a field name or index after '.', found end of input at character 3",
        ),
        (
            "if a then b",
            "expected 'else', found end of input at character 12",
        ),
        ("if a b", "expected 'then', found 'b' at character 6"),
        (
            "1..2",
            "expected an operator or end of input, found '.' at character 2",
        ),
        ("a @ b", "unexpected character '@' at character 3"),
        ("'\\q'", "unknown escape '\\q' at character 2"),
        ("'\\u00'", "expected 4 hex digits"),
        (
            "99999999999999999999",
            "integer is out of range at character 1",
        ),
        ("1e999", "number is out of range at character 1"),
        ("12abc", "unexpected 'a' after number at character 3"),
        (
            "exists(1)",
            "expected a field path or variable, found number 1 at character 8",
        ),
        (
            "true.x",
            "expected an operator or end of input, found '.' at character 5",
        ),
        (")", "expected an expression, found ')' at character 1"),
        (
            "",
            "expected an expression, found end of input at character 1",
        ),
        ("héllo = 1", "unexpected character 'é' at character 2"),
        (
            "'é' + = 1",
            "unexpected '=', did you mean '=='? at character 7",
        ),
    ];
    let mut failures = Vec::new();
    for (src, want) in cases {
        match ordo_core::expr::parse(src) {
            Ok(e) => failures.push(format!("{src:?}: parsed as {e:?}")),
            Err(e) if !e.to_string().contains(want) => {
                failures.push(format!("{src:?}: got {:?}, want {want:?}", e.to_string()))
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn nesting_and_length_are_bounded() {
    let deep = "(".repeat(30_000) + "1" + &")".repeat(30_000);
    assert!(
        ordo_core::expr::parse(&deep)
            .unwrap_err()
            .to_string()
            .contains("nested deeper than the limit")
    );
    let bangs = "!".repeat(10_000) + "x";
    assert!(
        ordo_core::expr::parse(&bangs)
            .unwrap_err()
            .to_string()
            .contains("nested deeper")
    );
    let arrays = "[".repeat(10_000);
    assert!(
        ordo_core::expr::parse(&arrays)
            .unwrap_err()
            .to_string()
            .contains("nested deeper")
    );
    let calls = "f(".repeat(10_000);
    assert!(
        ordo_core::expr::parse(&calls)
            .unwrap_err()
            .to_string()
            .contains("nested deeper")
    );
    let ifs = "if ".repeat(10_000);
    assert!(
        ordo_core::expr::parse(&ifs)
            .unwrap_err()
            .to_string()
            .contains("nested deeper")
    );
    // A long chain has no brackets but still builds a deep tree.
    let chain = vec!["a"; 1_000].join(" || ");
    assert!(
        ordo_core::expr::parse(&chain)
            .unwrap_err()
            .to_string()
            .contains("tree is deeper")
    );
    let ok_chain = vec!["x == 1"; 200].join(" || ");
    assert_eq!(eval(&ok_chain, r#"{"x": 1}"#).unwrap(), json("true"));
    let long = "1 + ".repeat(20_000) + "1";
    assert!(
        ordo_core::expr::parse(&long)
            .unwrap_err()
            .to_string()
            .contains("longer than the limit")
    );
}

#[test]
fn parsed_trees_use_ordo_shapes() {
    let ast = ordo_core::expr::parse("user.vip == true && $rate * 2 > 1").unwrap();
    let text = serde_json::to_string(&ast).unwrap();
    assert_eq!(
        text,
        r#"{"Binary":{"op":"And","left":{"Binary":{"op":"Eq","left":{"Field":"user.vip"},"right":{"Literal":true}}},"right":{"Binary":{"op":"Gt","left":{"Binary":{"op":"Mul","left":{"Field":"$rate"},"right":{"Literal":2}}},"right":{"Literal":1}}}}}"#
    );
    let back: Expr = serde_json::from_str(&text).unwrap();
    assert_eq!(back, ast);
    let forms = ordo_core::expr::parse(
        "if exists(a) then coalesce(a, 1) else len([1, {\"k\": -x}]) not in [1] contains 2",
    )
    .unwrap();
    let text = serde_json::to_string(&forms).unwrap();
    for shape in [
        "Conditional",
        "Exists",
        "Coalesce",
        "Call",
        "Array",
        "Object",
        "Unary",
        "NotIn",
        "Contains",
        "Neg",
    ] {
        assert!(text.contains(shape), "{shape} missing from {text}");
    }
}

#[test]
fn display_prints_text_that_parses_back() {
    for src in [
        "a + b * c",
        "(a + b) * c",
        "a - (b - c)",
        "a - b - c",
        "-(a + 1)",
        "- -1",
        "!(a && b) || c",
        "if a then b else if c then d else e",
        "(if a then 1 else 2) + 3",
        "x in [1, 2] && y not in \"abc\"",
        "items[0][\"first-name\"].x",
        "f(g(1), [], {\"k\": 'v\\n'})",
        "exists($v.a) && coalesce(a, null)",
        "1.0 + 2.5e10 - -3",
        "a contains b contains c",
    ] {
        let first = ordo_core::expr::parse(src).unwrap();
        let printed = first.to_string();
        let second = ordo_core::expr::parse(&printed)
            .unwrap_or_else(|e| panic!("{src:?} printed as {printed:?}, which fails: {e}"));
        assert_eq!(first, second, "{src:?} printed as {printed:?}");
    }
}
