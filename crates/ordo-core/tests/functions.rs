//! Every built-in function: results, and errors that name the function.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{check_table, err, eval, json, ok};
use ordo_core::Expression;

/// The functions the public contract lists, all of which must exist.
const CONTRACT: &str = "len upper lower trim starts_with ends_with contains_str substring \
replace split join pad_left pad_right char_at index_of format sprintf abs min max floor ceil round \
sum avg count first last sort reverse unique slice range flatten array_concat map_extract filter_by \
group_by keys values has_key merge object_get type is_null is_number is_string is_array is_bool \
is_object to_int to_float to_string to_bool now now_millis parse_time format_time time_diff date_add \
time_of_day day_of_week regex_match regex_find regex_find_all regex_replace regex_split \
base64_encode base64_decode base64url_encode base64url_decode hex_encode hex_decode url_encode \
url_decode md5 sha256 hmac_sha256 uuid_v4 json_marshal json_unmarshal glob_match cidr_contains \
cidr_intersects semver_compare semver_is_valid contains";

#[test]
fn every_contract_function_exists() {
    let have: Vec<&str> = ordo_core::function_names().collect();
    let missing: Vec<&str> = CONTRACT
        .split_whitespace()
        .filter(|f| !have.contains(f))
        .collect();
    assert!(missing.is_empty(), "missing functions: {missing:?}");
}

#[test]
fn strings() {
    check_table(&[
        ("len('héllo')", "{}", ok("5")),
        ("len([1, 2])", "{}", ok("2")),
        ("len({\"a\": 1})", "{}", ok("1")),
        (
            "len(5)",
            "{}",
            err("len: expects a string, array or object as argument 1, got int"),
        ),
        ("upper('abc')", "{}", ok(r#""ABC""#)),
        ("lower('ÀB')", "{}", ok(r#""àb""#)),
        ("trim('  x ')", "{}", ok(r#""x""#)),
        (
            "upper(1)",
            "{}",
            err("upper: expects a string as argument 1, got int"),
        ),
        ("starts_with('hello', 'he')", "{}", ok("true")),
        ("ends_with('hello', 'lo')", "{}", ok("true")),
        ("contains_str('hello', 'ell')", "{}", ok("true")),
        ("contains('hello', 'ell')", "{}", ok("true")),
        ("contains([1, 2], 2)", "{}", ok("true")),
        ("contains({\"k\": 1}, 'k')", "{}", ok("true")),
        ("contains(1, 2)", "{}", err("type error")),
        ("substring('hello', 1, 3)", "{}", ok(r#""el""#)),
        ("substring('hello', 2)", "{}", ok(r#""llo""#)),
        ("substring('héllo', -3)", "{}", ok(r#""llo""#)),
        ("substring('hello', 3, 1)", "{}", ok(r#""""#)),
        ("substring('hello', 1, 99)", "{}", ok(r#""ello""#)),
        (
            "substring('hello', 'a')",
            "{}",
            err("substring: expects an int as argument 2, got string"),
        ),
        ("replace('a-b-c', '-', '+')", "{}", ok(r#""a+b+c""#)),
        ("replace('ab', '', '-')", "{}", ok(r#""-a-b-""#)),
        ("split('a,b,,c', ',')", "{}", ok(r#"["a", "b", "", "c"]"#)),
        ("split('abc', '')", "{}", ok(r#"["a", "b", "c"]"#)),
        (
            "join(['a', 1, 2.5, true], '-')",
            "{}",
            ok(r#""a-1-2.5-true""#),
        ),
        (
            "join(['a', null], '-')",
            "{}",
            err("join: cannot join element 2 of type null"),
        ),
        ("pad_left('7', 3, '0')", "{}", ok(r#""007""#)),
        ("pad_right('ab', 4)", "{}", ok(r#""ab  ""#)),
        ("pad_left('abcd', 2, '0')", "{}", ok(r#""abcd""#)),
        (
            "pad_left('a', 3, 'xy')",
            "{}",
            err("pad_left: the padding must be exactly one character"),
        ),
        ("pad_left('a', 100000000, '0')", "{}", err("limit exceeded")),
        ("char_at('héllo', 1)", "{}", ok(r#""é""#)),
        ("char_at('abc', -1)", "{}", ok(r#""c""#)),
        ("char_at('abc', 5)", "{}", ok("null")),
        ("index_of('héllo', 'l')", "{}", ok("2")),
        ("index_of('abc', 'z')", "{}", ok("-1")),
        ("index_of([1, 2, 3], 3)", "{}", ok("2")),
        (
            "format('{} owes {}', 'Ann', 12.5)",
            "{}",
            ok(r#""Ann owes 12.5""#),
        ),
        ("format('{1}-{0}-{1}', 'a', 'b')", "{}", ok(r#""b-a-b""#)),
        ("format('{{}} {}', 1)", "{}", ok(r#""{} 1""#)),
        (
            "format('{} {}', 1)",
            "{}",
            err("format: placeholder {1} has no argument"),
        ),
        (
            "format('{x}', 1)",
            "{}",
            err("format: placeholders must be {} or {N}"),
        ),
        ("sprintf('%s is %d', 'x', 5)", "{}", ok(r#""x is 5""#)),
        ("sprintf('%s/%v', ['a', 1])", "{}", ok(r#""a/1""#)),
        (
            "sprintf('%.2f|%05.1f|%+d|%x|%X|%%', 3.14159, 2.25, 7, 255, 255)",
            "{}",
            ok(r#""3.14|002.2|+7|ff|FF|%""#),
        ),
        (
            "sprintf('%-4s|%4s|', 'ab', 'cd')",
            "{}",
            ok(r#""ab  |  cd|""#),
        ),
        (
            "sprintf('%d', 1.5)",
            "{}",
            err("sprintf: %d needs an int, got float"),
        ),
        (
            "sprintf('%s %s', 'a')",
            "{}",
            err("sprintf: the format needs more than 1 argument(s)"),
        ),
        (
            "sprintf('%s', 'a', 'b')",
            "{}",
            err("sprintf: 2 argument(s) given but the format uses 1"),
        ),
        ("sprintf('%q', 1)", "{}", err("sprintf: unknown verb '%q'")),
    ]);
}

#[test]
fn math() {
    check_table(&[
        ("abs(-3)", "{}", ok("3")),
        ("abs(-2.5)", "{}", ok("2.5")),
        (
            "abs(-9223372036854775808)",
            "{}",
            err("integer overflow in abs"),
        ),
        (
            "abs('x')",
            "{}",
            err("abs: expects a number as argument 1, got string"),
        ),
        ("min(3, 1, 2)", "{}", ok("1")),
        ("max(3, 1.5, 2)", "{}", ok("3")),
        ("min([4, 2, 8])", "{}", ok("2")),
        ("max([4, 2, 8])", "{}", ok("8")),
        ("max(['b', 'c', 'a'])", "{}", ok(r#""c""#)),
        ("min([])", "{}", err("min: needs at least one value")),
        (
            "min(1, 'a')",
            "{}",
            err("min: cannot compare string with int"),
        ),
        ("floor(2.7)", "{}", ok("2")),
        ("floor(-2.5)", "{}", ok("-3")),
        ("ceil(2.1)", "{}", ok("3")),
        ("round(2.5)", "{}", ok("3")),
        ("round(-2.5)", "{}", ok("-3")),
        ("round(7)", "{}", ok("7")),
        ("round(3.14159, 2)", "{}", ok("3.14")),
        ("round(2.675, 0)", "{}", ok("3.0")),
        (
            "round(1.5, 99)",
            "{}",
            err("round: the number of decimals must be between 0 and 15"),
        ),
        (
            "floor(1e300)",
            "{}",
            err("floor: 1e300 is outside the int range"),
        ),
        ("ceil('1')", "{}", err("ceil: expects a number")),
    ]);
}

#[test]
fn collections() {
    check_table(&[
        ("sum([1, 2, 3])", "{}", ok("6")),
        ("sum([1, 2.5])", "{}", ok("3.5")),
        ("sum([])", "{}", ok("0")),
        (
            "sum([9223372036854775807, 1])",
            "{}",
            err("integer overflow in sum"),
        ),
        (
            "sum([1, 'a'])",
            "{}",
            err("sum: cannot add string to a sum"),
        ),
        ("avg([1, 2])", "{}", ok("1.5")),
        ("avg([])", "{}", ok("null")),
        ("count([1, 2, 3])", "{}", ok("3")),
        (
            "count('abc')",
            "{}",
            err("count: expects an array as argument 1, got string"),
        ),
        ("first([1, 2])", "{}", ok("1")),
        ("last([1, 2])", "{}", ok("2")),
        ("first([])", "{}", ok("null")),
        ("sort([3, 1.5, 2])", "{}", ok("[1.5, 2, 3]")),
        ("sort(['b', 'a'])", "{}", ok(r#"["a", "b"]"#)),
        (
            "sort([1, 'a'])",
            "{}",
            err("sort: cannot sort string together with int"),
        ),
        ("reverse([1, 2, 3])", "{}", ok("[3, 2, 1]")),
        ("reverse('abc')", "{}", ok(r#""cba""#)),
        (
            "unique([1, 2, 1, 2.0, 'a', 'a'])",
            "{}",
            ok(r#"[1, 2, 2.0, "a"]"#),
        ),
        ("slice([1, 2, 3, 4], 1, 3)", "{}", ok("[2, 3]")),
        ("slice([1, 2, 3, 4], -2)", "{}", ok("[3, 4]")),
        ("slice([1, 2], 5)", "{}", ok("[]")),
        ("range(3)", "{}", ok("[0, 1, 2]")),
        ("range(2, 5)", "{}", ok("[2, 3, 4]")),
        ("range(5, 0, -2)", "{}", ok("[5, 3, 1]")),
        ("range(0, 10, 0)", "{}", err("range: step cannot be zero")),
        (
            "range(0, 100000000)",
            "{}",
            err("range: result of 100000000 elements exceeds the limit"),
        ),
        (
            "range(-9223372036854775808, 9223372036854775807)",
            "{}",
            err("exceeds the limit"),
        ),
        ("flatten([[1, 2], 3, [[4]]])", "{}", ok("[1, 2, 3, [4]]")),
        ("array_concat([1], [2, 3], [])", "{}", ok("[1, 2, 3]")),
        (
            "array_concat([1], 2)",
            "{}",
            err("array_concat: expects an array as argument 2, got int"),
        ),
        (
            "map_extract([{\"a\": {\"b\": 1}}, {\"a\": 2}], 'a.b')",
            "{}",
            ok("[1, null]"),
        ),
        (
            "filter_by([{\"t\": 'x', \"v\": 1}, {\"t\": 'y'}, {\"t\": 'x', \"v\": 2}], 't', 'x')",
            "{}",
            ok(r#"[{"t": "x", "v": 1}, {"t": "x", "v": 2}]"#),
        ),
        (
            "group_by([{\"t\": 'x', \"v\": 1}, {\"t\": 2}, {\"t\": 'x'}, {}], 't')",
            "{}",
            ok(r#"{"x": [{"t": "x", "v": 1}, {"t": "x"}], "2": [{"t": 2}], "null": [{}]}"#),
        ),
    ]);
}

#[test]
fn objects_and_types() {
    check_table(&[
        ("keys({\"b\": 1, \"a\": 2})", "{}", ok(r#"["b", "a"]"#)),
        ("values({\"b\": 1, \"a\": 2})", "{}", ok("[1, 2]")),
        ("has_key({\"a\": null}, 'a')", "{}", ok("true")),
        ("has_key({}, 'a')", "{}", ok("false")),
        (
            "merge({\"a\": 1, \"b\": 1}, {\"b\": 2}, {\"c\": 3})",
            "{}",
            ok(r#"{"a": 1, "b": 2, "c": 3}"#),
        ),
        (
            "merge({}, [])",
            "{}",
            err("merge: expects an object as argument 2, got array"),
        ),
        ("object_get({\"a\": {\"b\": 5}}, 'a.b')", "{}", ok("5")),
        ("object_get({\"a\": 1}, 'z', 'dflt')", "{}", ok(r#""dflt""#)),
        ("object_get({\"a\": 1}, 'z')", "{}", ok("null")),
        ("type(1)", "{}", ok(r#""int""#)),
        ("type(1.0)", "{}", ok(r#""float""#)),
        ("type('s')", "{}", ok(r#""string""#)),
        ("type(null)", "{}", ok(r#""null""#)),
        ("type([])", "{}", ok(r#""array""#)),
        ("type({})", "{}", ok(r#""object""#)),
        ("type(true)", "{}", ok(r#""bool""#)),
        ("is_null(null)", "{}", ok("true")),
        ("is_number(1.5)", "{}", ok("true")),
        ("is_number('1')", "{}", ok("false")),
        ("is_string('1')", "{}", ok("true")),
        ("is_array([])", "{}", ok("true")),
        ("is_bool(false)", "{}", ok("true")),
        ("is_object({})", "{}", ok("true")),
        ("to_int(3.9)", "{}", ok("3")),
        ("to_int(-3.9)", "{}", ok("-3")),
        ("to_int(' 42 ')", "{}", ok("42")),
        ("to_int(true)", "{}", ok("1")),
        (
            "to_int('4.5')",
            "{}",
            err("to_int: cannot convert \"4.5\" to an int"),
        ),
        (
            "to_int(1e20)",
            "{}",
            err("to_int: 1e20 is outside the int range"),
        ),
        (
            "to_int(null)",
            "{}",
            err("to_int: expects a number, string or bool"),
        ),
        ("to_float(2)", "{}", ok("2.0")),
        ("to_float('2.5')", "{}", ok("2.5")),
        ("to_float('inf')", "{}", err("to_float: cannot convert")),
        ("to_string(12)", "{}", ok(r#""12""#)),
        ("to_string(1.5)", "{}", ok(r#""1.5""#)),
        ("to_string([1, 'a'])", "{}", ok(r#""[1,\"a\"]""#)),
        ("to_string('x')", "{}", ok(r#""x""#)),
        ("to_bool('TRUE')", "{}", ok("true")),
        ("to_bool('0')", "{}", ok("false")),
        ("to_bool(2)", "{}", ok("true")),
        ("to_bool(null)", "{}", ok("false")),
        (
            "to_bool('maybe')",
            "{}",
            err("to_bool: cannot convert \"maybe\" to a bool"),
        ),
    ]);
}

#[test]
fn time() {
    check_table(&[
        ("parse_time('2024-03-01T12:30:00Z')", "{}", ok("1709296200")),
        (
            "parse_time('2024-03-01T12:30:00+01:00')",
            "{}",
            ok("1709292600"),
        ),
        (
            "parse_time('2024-03-01 12:30', '%Y-%m-%d %H:%M')",
            "{}",
            ok("1709296200"),
        ),
        (
            "parse_time('2024-03-01', '%Y-%m-%d')",
            "{}",
            ok("1709251200"),
        ),
        (
            "parse_time('yesterday')",
            "{}",
            err("parse_time: cannot parse \"yesterday\" as an RFC 3339 time"),
        ),
        (
            "parse_time('2024', '%Y-%m')",
            "{}",
            err("parse_time: cannot parse"),
        ),
        (
            "format_time(1709296200)",
            "{}",
            ok(r#""2024-03-01T12:30:00Z""#),
        ),
        (
            "format_time(1709296200, '%d/%m/%Y')",
            "{}",
            ok(r#""01/03/2024""#),
        ),
        (
            "format_time(1709296200, '%Q')",
            "{}",
            err("format_time: invalid format"),
        ),
        (
            "format_time(99999999999999999)",
            "{}",
            err("format_time: timestamp 99999999999999999 is out of range"),
        ),
        ("time_diff(7200, 0, 'hours')", "{}", ok("2")),
        ("time_diff(100, 160)", "{}", ok("-60")),
        ("time_diff(0, 86400 * 3, 'd')", "{}", ok("-3")),
        (
            "time_diff(0, 1, 'fortnights')",
            "{}",
            err("time_diff: unknown unit \"fortnights\""),
        ),
        ("date_add(0, 2, 'days')", "{}", ok("172800")),
        ("date_add(0, -1, 'hours')", "{}", ok("-3600")),
        (
            "format_time(date_add(parse_time('2024-01-31T00:00:00Z'), 1, 'month'))",
            "{}",
            ok(r#""2024-02-29T00:00:00Z""#),
        ),
        (
            "format_time(date_add(parse_time('2024-02-29T00:00:00Z'), 1, 'years'))",
            "{}",
            ok(r#""2025-02-28T00:00:00Z""#),
        ),
        (
            "date_add(0, 9223372036854775807, 'days')",
            "{}",
            err("date_add: result is out of range"),
        ),
        ("time_of_day(1709296200)", "{}", ok(r#""12:30:00""#)),
        ("day_of_week(1709296200)", "{}", ok("5")),
        ("day_of_week(0)", "{}", ok("4")),
        ("now() > 1700000000", "{}", ok("true")),
        ("now_millis() > now()", "{}", ok("true")),
    ]);
}

#[test]
fn patterns() {
    check_table(&[
        (
            "regex_match('^[a-z]+@x\\\\.com$', 'ann@x.com')",
            "{}",
            ok("true"),
        ),
        ("regex_match('^\\\\d+$', s)", r#"{"s": "12a"}"#, ok("false")),
        ("regex_match(p, 'abc')", r#"{"p": "b+"}"#, ok("true")),
        (
            "regex_match(p, 'abc')",
            r#"{"p": "("}"#,
            err("regex_match: invalid regex"),
        ),
        ("regex_find('\\\\d+', 'ab12cd345')", "{}", ok(r#""12""#)),
        ("regex_find('z', 'abc')", "{}", ok("null")),
        (
            "regex_find_all('\\\\d+', 'ab12cd345')",
            "{}",
            ok(r#"["12", "345"]"#),
        ),
        (
            "regex_replace('(\\\\w+)@(\\\\w+)', 'ann@x bob@y', '$2:$1')",
            "{}",
            ok(r#""x:ann y:bob""#),
        ),
        (
            "regex_split('\\\\s*,\\\\s*', 'a , b,c')",
            "{}",
            ok(r#"["a", "b", "c"]"#),
        ),
        (
            "regex_match(1, 'a')",
            r#"{}"#,
            err("regex_match: expects a string pattern, got int"),
        ),
        ("glob_match('*.pdf', 'report.pdf')", "{}", ok("true")),
        ("glob_match('img_??.png', 'img_01.png')", "{}", ok("true")),
        ("glob_match('*.pdf', 'report.doc')", "{}", ok("false")),
        ("glob_match('*.{jpg,png}', 'a.png')", "{}", ok("true")),
        (
            "glob_match(p, 'x')",
            r#"{"p": "a[b"}"#,
            err("glob_match: invalid glob"),
        ),
    ]);
}

#[test]
fn encoding_and_digests() {
    check_table(&[
        ("base64_encode('hello?')", "{}", ok(r#""aGVsbG8/""#)),
        ("base64_decode('aGVsbG8/')", "{}", ok(r#""hello?""#)),
        (
            "base64_decode('!!!')",
            "{}",
            err("base64_decode: invalid base64"),
        ),
        (
            "base64_decode('/w==')",
            "{}",
            err("base64_decode: decoded bytes are not valid UTF-8"),
        ),
        ("base64url_encode('hello?')", "{}", ok(r#""aGVsbG8_""#)),
        ("base64url_decode('aGVsbG8_')", "{}", ok(r#""hello?""#)),
        ("base64url_decode('aGk=')", "{}", ok(r#""hi""#)),
        ("hex_encode('hi')", "{}", ok(r#""6869""#)),
        ("hex_decode('6869')", "{}", ok(r#""hi""#)),
        ("hex_decode('zz')", "{}", err("hex_decode: invalid hex")),
        (
            "url_encode('a b&c=d/é~')",
            "{}",
            ok(r#""a%20b%26c%3Dd%2F%C3%A9~""#),
        ),
        ("url_decode('a%20b%26c')", "{}", ok(r#""a b&c""#)),
        (
            "url_decode('%FF')",
            "{}",
            err("url_decode: decoded bytes are not valid UTF-8"),
        ),
        (
            "md5('abc')",
            "{}",
            ok(r#""900150983cd24fb0d6963f7d28e17f72""#),
        ),
        (
            "sha256('abc')",
            "{}",
            ok(r#""ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad""#),
        ),
        (
            "hmac_sha256('key', 'The quick brown fox jumps over the lazy dog')",
            "{}",
            ok(r#""f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8""#),
        ),
        ("len(uuid_v4())", "{}", ok("36")),
        ("uuid_v4() != uuid_v4()", "{}", ok("true")),
        (
            "json_marshal({\"a\": [1, 2.5, null]})",
            "{}",
            ok(r#""{\"a\":[1,2.5,null]}""#),
        ),
        (
            "json_unmarshal('{\"a\": [1, 2.5]}').a[1]",
            "{}",
            err("expected an operator"),
        ),
        (
            "object_get(json_unmarshal('{\"a\": [1, 2.5]}'), 'a.1')",
            "{}",
            ok("2.5"),
        ),
        (
            "json_unmarshal('{')",
            "{}",
            err("json_unmarshal: invalid JSON"),
        ),
    ]);
}

#[test]
fn networks_and_versions() {
    check_table(&[
        ("cidr_contains('10.0.0.0/8', '10.1.2.3')", "{}", ok("true")),
        ("cidr_contains('10.0.0.0/8', '11.1.2.3')", "{}", ok("false")),
        (
            "cidr_contains('2001:db8::/32', '2001:db8::1')",
            "{}",
            ok("true"),
        ),
        (
            "cidr_contains('192.168.1.1', '192.168.1.1')",
            "{}",
            ok("true"),
        ),
        (
            "cidr_contains(net, ip)",
            r#"{"net": "192.168.0.0/16", "ip": "192.168.4.4"}"#,
            ok("true"),
        ),
        (
            "cidr_contains('10.0.0.0/8', 'nope')",
            "{}",
            err("cidr_contains: invalid IP address \"nope\""),
        ),
        (
            "cidr_contains(n, '1.1.1.1')",
            r#"{"n": "10.0.0.0/99"}"#,
            err("cidr_contains: invalid CIDR range"),
        ),
        (
            "cidr_intersects('10.0.0.0/8', '10.5.0.0/16')",
            "{}",
            ok("true"),
        ),
        (
            "cidr_intersects('10.0.0.0/16', '10.1.0.0/16')",
            "{}",
            ok("false"),
        ),
        ("semver_compare('1.2.3', '1.10.0')", "{}", ok("-1")),
        ("semver_compare('2.0.0', '2.0.0-rc.1')", "{}", ok("1")),
        ("semver_compare('1.0.0', '1.0.0')", "{}", ok("0")),
        (
            "semver_compare('1.0', '1.0.0')",
            "{}",
            err("semver_compare: invalid version \"1.0\""),
        ),
        ("semver_is_valid('1.2.3-beta+build.5')", "{}", ok("true")),
        ("semver_is_valid('v1.2')", "{}", ok("false")),
    ]);
}

#[test]
fn constant_bad_patterns_are_compile_errors() {
    for (src, want) in [
        ("regex_match('(', s)", "regex_match: invalid regex"),
        ("glob_match('a[', s)", "glob_match: invalid glob"),
        (
            "cidr_contains('300.0.0.0/8', s)",
            "cidr_contains: invalid CIDR range",
        ),
    ] {
        let e = Expression::parse(src).unwrap_err().to_string();
        assert!(e.contains(want), "{src}: {e}");
    }
}

#[test]
fn arity_and_unknown_functions_fail_at_compile_time() {
    for (src, want) in [
        (
            "upper()",
            "function 'upper' expects 1 argument, got 0 at character 1",
        ),
        (
            "substring('a')",
            "function 'substring' expects 2 or 3 arguments, got 1 at character 1",
        ),
        (
            "range()",
            "function 'range' expects 1 to 3 arguments, got 0 at character 1",
        ),
        (
            "merge({})",
            "function 'merge' expects at least 2 arguments, got 1 at character 1",
        ),
        ("1 + nope(2)", "unknown function 'nope' at character 5"),
        (
            "now(1)",
            "function 'now' expects 0 arguments, got 1 at character 1",
        ),
    ] {
        let e = Expression::parse(src).unwrap_err().to_string();
        assert_eq!(e, want, "{src}");
    }
}

#[test]
fn pure_constant_calls_fold_and_impure_ones_do_not() {
    // A folded constant still evaluates to the same value.
    assert_eq!(
        eval("upper('a') + lower('B')", "{}").unwrap(),
        json(r#""Ab""#)
    );
    // uuid_v4() must not be folded: two evaluations differ.
    let e = Expression::parse("uuid_v4()").unwrap();
    let (a, b) = (e.eval(&json("{}")).unwrap(), e.eval(&json("{}")).unwrap());
    assert_ne!(a, b);
    // A constant expression that fails is not folded away; it fails when evaluated.
    let e = Expression::parse("if x then 1 / 0 else 2").unwrap();
    assert_eq!(e.eval(&json(r#"{"x": false}"#)).unwrap(), json("2"));
    assert!(e.eval(&json(r#"{"x": true}"#)).is_err());
}
