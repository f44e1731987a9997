//! Runs every `curl` line of the README's walk-through against the real server started
//! on a copy of `examples/rules`, as the README's first command does.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::Command;

use common::Server;

fn walkthrough() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = readme
        .split("## Walk-through")
        .nth(1)
        .expect("walk-through section");
    let block = section
        .split("```sh")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    block
        .lines()
        .filter(|l| l.starts_with("curl "))
        .map(str::to_string)
        .collect()
}

#[test]
fn readme_walkthrough_works() {
    if Command::new("curl").arg("--version").output().is_err() {
        assert!(
            std::env::var("ORDO_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "curl is required (ORDO_TEST_REQUIRE_SERVICES=1)"
        );
        println!("SKIP readme_walkthrough_works: curl not installed");
        return;
    }
    let dir = common::rules_dir_with(&["discount.json", "loan-approval.yaml", "fraud-score.json"]);
    let s = Server::start(&["--rules-dir", dir.path().to_str().unwrap()]);
    let addr = s.base.trim_start_matches("http://").to_string();
    let lines = walkthrough();
    assert!(lines.len() >= 15, "{lines:?}");
    let mut outputs = Vec::new();
    for line in &lines {
        let cmd = format!(
            "{} -w '\\n%{{http_code}}'",
            line.replace("localhost:8080", &addr)
        );
        let out = Command::new("sh").args(["-c", &cmd]).output().unwrap();
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, status) = text.rsplit_once('\n').unwrap();
        let status: u16 = status.parse().unwrap();
        assert!((200..300).contains(&status), "{line}\n=> {status} {body}");
        outputs.push((line.clone(), body.to_string()));
    }
    let find = |needle: &str| {
        outputs
            .iter()
            .find(|(l, _)| l.contains(needle))
            .map(|(_, b)| b.clone())
            .unwrap_or_else(|| panic!("no README line with {needle}"))
    };
    assert!(find("\"total\": 640").contains("\"code\":\"VIP_BIG\""));
    assert!(find("\"trace\": true").contains("\"path\":\"check_tier -> "));
    assert!(find("execute/loan-approval").contains("\"code\":\"APPROVED\""));
    assert!(find("execute/fraud-score").contains("\"code\":\"CHALLENGE\""));
    assert!(find("/batch").contains("\"success\":2"));
    assert!(find("/rollback").contains("\"to_version\":\"1.0.0\""));
    assert!(find("/test").contains("\"passed\":2"));
    assert!(find("/api/v1/eval").contains("\"result\":12"));
    assert!(find("admin/reload").contains("\"rules_loaded\":3"));
    // The walk-through leaves the rules directory as it found it.
    assert!(!dir.path().join("age-check.json").exists());
}
