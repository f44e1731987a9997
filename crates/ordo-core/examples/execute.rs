//! Executes a ruleset file (JSON or YAML) against one input and prints the outcome.
//!
//! ```text
//! cargo run -p ordo-core --example execute -- examples/rules/discount.json '{"user": {"vip": true}, "order": {"total": 640}}'
//! ```
//! Add `--trace` to include the trace. Exits 1 on an invalid ruleset or input, 2 on an
//! execution error.

use std::process::ExitCode;

use ordo_core::{ExecOptions, RuleSet, Value};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let trace = args.iter().any(|a| a == "--trace");
    let positional: Vec<&String> = args.iter().filter(|a| *a != "--trace").collect();
    let [path, input] = positional.as_slice() else {
        eprintln!("usage: execute <ruleset.json|.yaml> '<input JSON>' [--trace]");
        return ExitCode::from(1);
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read {path}: {e}");
            return ExitCode::from(1);
        }
    };
    let yaml = path.ends_with(".yaml") || path.ends_with(".yml");
    let loaded = if yaml {
        RuleSet::from_yaml(&text)
    } else {
        RuleSet::from_json(&text)
    };
    let compiled = match loaded
        .map_err(|e| e.to_string())
        .and_then(|r| r.compile().map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(1);
        }
    };
    let input = match Value::from_json_str(input) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("invalid input JSON: {e}");
            return ExitCode::from(1);
        }
    };
    let opts = ExecOptions {
        trace,
        ..ExecOptions::default()
    };
    match compiled.execute_with(&input, &opts) {
        Ok(outcome) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&outcome).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{} ({})", e, e.code());
            ExitCode::from(2)
        }
    }
}
