//! The example rulesets in `examples/rules`, with the inputs the README shows.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use ordo_core::{RuleSet, Value};

fn example(name: &str) -> RuleSet {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/rules")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    if name.ends_with(".yaml") {
        RuleSet::from_yaml(&text).unwrap()
    } else {
        RuleSet::from_json(&text).unwrap()
    }
}

fn outcome(name: &str, input: &str) -> serde_json::Value {
    let compiled = example(name).compile().unwrap();
    let out = compiled
        .execute(&Value::from_json_str(input).unwrap())
        .unwrap();
    serde_json::to_value(&out).unwrap()
}

#[test]
fn every_example_compiles() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/rules");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let rules = example(&name);
        assert_eq!(
            format!("{}.", rules.config.name),
            name.split_inclusive('.').next().unwrap()
        );
        rules.compile().unwrap_or_else(|e| panic!("{name}: {e}"));
        count += 1;
    }
    assert!(count >= 3);
}

#[test]
fn discount_example() {
    let out = outcome(
        "discount.json",
        r#"{"user": {"vip": true, "country": "US"}, "order": {"total": 640}}"#,
    );
    assert_eq!(
        out,
        serde_json::json!({"code": "VIP_BIG", "message": "20% VIP discount", "output": {"discount_rate": 0.2, "final_total": 512.0}})
    );
}

#[test]
fn loan_example() {
    let good = r#"{"applicant": {"age": 34, "annual_income": 84000, "monthly_debt": 900, "credit_score": 790}, "loan": {"amount": 12000, "term_months": 36}}"#;
    let out = outcome("loan-approval.yaml", good);
    assert_eq!(out["code"], "APPROVED");
    assert_eq!(
        out["output"],
        serde_json::json!({"rate": 0.049, "dti": 0.176})
    );
    let weak = r#"{"applicant": {"age": 34, "annual_income": 30000, "monthly_debt": 900, "credit_score": 600}, "loan": {"amount": 12000, "term_months": 36}}"#;
    let out = outcome("loan-approval.yaml", weak);
    assert_eq!(out["code"], "DECLINED");
    assert_eq!(out["output"]["reason"], "score 600 with ratio 0.49");
    let minor = r#"{"applicant": {"age": 17, "annual_income": 30000, "monthly_debt": 0, "credit_score": 800}, "loan": {"amount": 1000, "term_months": 12}}"#;
    assert_eq!(
        outcome("loan-approval.yaml", minor)["output"]["reason"],
        "applicant is under 18"
    );
}

#[test]
fn fraud_example() {
    let card = r#"{"payment": {"amount": 1500, "country": "FR"}, "card": {"issuer_country": "US"}, "account": {"age_days": 400}, "device": {"ip": "198.51.100.7", "seen_before": true}}"#;
    let out = outcome("fraud-score.json", card);
    assert_eq!(out["code"], "CHALLENGE");
    assert_eq!(
        out["output"],
        serde_json::json!({"score": 55, "method": "3ds"})
    );
    assert_eq!(out["metrics"][0]["value"], 55);
    let blocked = r#"{"payment": {"amount": 5, "country": "FR"}, "device": {"ip": "203.0.113.9"}}"#;
    assert_eq!(outcome("fraud-score.json", blocked)["code"], "BLOCK");
    let quiet = r#"{"payment": {"amount": 20, "country": "US"}, "card": {"issuer_country": "US"}, "account": {"age_days": 900}, "device": {"seen_before": true}}"#;
    assert_eq!(outcome("fraud-score.json", quiet)["output"]["score"], 0);
}
