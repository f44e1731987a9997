//! Multi-tenancy: isolation, tenant CRUD, quotas, rate limits and timeouts; API tokens.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Server, ruleset};
use serde_json::json;

const MT: &[&str] = &["--multi-tenancy-enabled"];

fn as_tenant(t: &str) -> [(&str, &str); 1] {
    [("x-tenant-id", t)]
}

#[test]
fn rules_are_isolated_per_tenant() {
    let s = Server::start(MT);
    let r = s.post("/api/v1/tenants", &json!({"id": "acme", "name": "Acme"}));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["enabled"], true);
    assert_eq!(
        s.post("/api/v1/tenants", &json!({"id": "globex"})).status,
        201
    );
    assert_eq!(
        s.post("/api/v1/tenants", &json!({"id": "acme"})).status,
        409
    );

    let r = s.send_json_as(
        "POST",
        "/api/v1/rulesets",
        &ruleset("r", "1.0.0", "ACME"),
        &as_tenant("acme"),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = s.send_json(
        "POST",
        "/api/v1/rulesets?tenant_id=globex",
        &ruleset("r", "1.0.0", "GLOBEX"),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        s.post("/api/v1/rulesets", &ruleset("r", "1.0.0", "DEFAULT"))
            .status,
        201
    );

    let code = |h: &[(&str, &str)], q: &str| {
        s.send_json_as(
            "POST",
            &format!("/api/v1/execute/r{q}"),
            &json!({"input": {"x": 1}}),
            h,
        )
        .json()["code"]
            .clone()
    };
    assert_eq!(code(&as_tenant("acme"), ""), "ACME");
    assert_eq!(code(&[], "?tenant_id=globex"), "GLOBEX");
    assert_eq!(code(&[], ""), "DEFAULT");
    // The header wins over the query.
    assert_eq!(code(&as_tenant("acme"), "?tenant_id=globex"), "ACME");
    assert_eq!(
        s.get_as("/api/v1/rulesets/r", &as_tenant("acme")).json()["config"]["tenant_id"],
        "acme"
    );

    // Deleting in one tenant leaves the others.
    assert_eq!(
        s.request("DELETE", "/api/v1/rulesets/r", &as_tenant("acme"), None)
            .status,
        204
    );
    assert_eq!(
        s.get_as("/api/v1/rulesets/r", &as_tenant("acme")).status,
        404
    );
    assert_eq!(code(&[], "?tenant_id=globex"), "GLOBEX");

    // Unknown tenants are a JSON 404; so are disabled ones.
    let r = s.get_as("/api/v1/rulesets", &as_tenant("nobody"));
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], "NOT_FOUND");
    let r = s.send_json(
        "PUT",
        "/api/v1/tenants/globex",
        &json!({"id": "globex", "enabled": false}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = s.send_json_as(
        "POST",
        "/api/v1/execute/r",
        &json!({"input": {}}),
        &as_tenant("globex"),
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], "NOT_FOUND");

    // Tenant CRUD.
    let list = s.get("/api/v1/tenants").json();
    let ids: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!("acme"), json!("default"), json!("globex")]);
    assert_eq!(s.get("/api/v1/tenants/acme").json()["name"], "Acme");
    assert_eq!(s.get("/api/v1/tenants/none").status, 404);
    // A tenant that still has rules cannot be deleted.
    let r = s.delete("/api/v1/tenants/globex");
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["code"], "CONFLICT");
    assert_eq!(s.delete("/api/v1/tenants/acme").status, 204);
    assert_eq!(s.delete("/api/v1/tenants/acme").status, 404);
    assert_eq!(s.delete("/api/v1/tenants/default").status, 409);
    // Invalid tenant bodies.
    for bad in [
        json!({"id": "../x"}),
        json!({"id": "a", "qps_limit": 0}),
        json!({"id": "a", "colour": 1}),
    ] {
        let r = s.post("/api/v1/tenants", &bad);
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
    }
    let r = s.send_json("PUT", "/api/v1/tenants/a", &json!({"id": "b"}));
    assert_eq!(r.status, 400);
    let r = s.send_json("PUT", "/api/v1/tenants/fresh", &json!({"id": "fresh"}));
    assert_eq!(r.status, 201);
}

#[test]
fn without_multi_tenancy_the_tenant_header_is_ignored() {
    let s = Server::start(&[]);
    s.post("/api/v1/rulesets", &ruleset("r", "1.0.0", "ONE"));
    let r = s.send_json_as(
        "POST",
        "/api/v1/execute/r",
        &json!({"input": {}}),
        &as_tenant("whoever"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["code"], "ONE");
}

#[test]
fn max_rules_is_enforced() {
    let s = Server::start(MT);
    s.post("/api/v1/tenants", &json!({"id": "small", "max_rules": 2}));
    let h = as_tenant("small");
    assert_eq!(
        s.send_json_as("POST", "/api/v1/rulesets", &ruleset("a", "1", "A"), &h)
            .status,
        201
    );
    assert_eq!(
        s.send_json_as("POST", "/api/v1/rulesets", &ruleset("b", "1", "B"), &h)
            .status,
        201
    );
    let r = s.send_json_as("POST", "/api/v1/rulesets", &ruleset("c", "1", "C"), &h);
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.json()["code"], "FORBIDDEN");
    // Updating an existing one is still allowed.
    assert_eq!(
        s.send_json_as("POST", "/api/v1/rulesets", &ruleset("a", "2", "A2"), &h)
            .status,
        200
    );
    assert_eq!(
        s.get_as("/api/v1/rulesets", &h)
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(s.get_as("/api/v1/rulesets/c", &h).status, 404);
}

#[test]
fn tenant_rate_limits_answer_429_but_never_health() {
    let s = Server::start(MT);
    s.post(
        "/api/v1/tenants",
        &json!({"id": "slow", "qps_limit": 1, "burst_limit": 3}),
    );
    let h = as_tenant("slow");
    s.send_json_as("POST", "/api/v1/rulesets", &ruleset("r", "1", "R"), &h);
    let statuses: Vec<u16> = (0..6)
        .map(|_| {
            s.send_json_as("POST", "/api/v1/execute/r", &json!({"input": {}}), &h)
                .status
        })
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        3,
        "{statuses:?}"
    );
    let r = s.send_json_as("POST", "/api/v1/execute/r", &json!({"input": {}}), &h);
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["code"], "RATE_LIMITED");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    // Other tenants are not affected.
    s.post("/api/v1/rulesets", &ruleset("r", "1", "D"));
    assert_eq!(
        s.post("/api/v1/execute/r", &json!({"input": {}})).status,
        200
    );
    // Health, readiness and metrics stay open, even naming the limited tenant.
    for path in ["/health", "/healthz/live", "/healthz/ready", "/metrics"] {
        assert_eq!(s.get_as(path, &h).status, 200, "{path}");
    }
    // Rewriting the tenant with the same quota does not refill its bucket.
    s.send_json(
        "PUT",
        "/api/v1/tenants/slow",
        &json!({"id": "slow", "name": "renamed", "qps_limit": 1, "burst_limit": 3}),
    );
    assert_eq!(
        s.send_json_as("POST", "/api/v1/execute/r", &json!({"input": {}}), &h)
            .status,
        429
    );
}

#[test]
fn default_tenant_flags_apply() {
    let s = Server::start(&["--default-tenant-qps", "1", "--default-tenant-burst", "2"]);
    s.post("/api/v1/rulesets", &ruleset("r", "1", "R"));
    let ok = (0..4)
        .filter(|_| s.post("/api/v1/execute/r", &json!({"input": {}})).status == 200)
        .count();
    assert_eq!(ok, 2);
    let t = s.get("/api/v1/tenants/default").json();
    assert_eq!(t["qps_limit"], 1);
    assert_eq!(t["burst_limit"], 2);
}

#[test]
fn tenant_execution_timeout_bounds_executions() {
    let s = Server::start(&["--default-tenant-timeout-ms", "20"]);
    // A loop through a decision, bounded only by max_depth and time.
    let spin = json!({
        "config": {"name": "spin", "entry_step": "d", "max_depth": 100000, "timeout_ms": 60000},
        "steps": {
            "d": {"id": "d", "type": "decision",
                   "branches": [{"condition": "len(regex_find_all('a+', text)) >= 0", "next_step": "a"}]},
            "a": {"id": "a", "type": "action", "actions": [], "next_step": "d"}
        }
    });
    assert_eq!(s.post("/api/v1/rulesets", &spin).status, 201);
    let text = "a b ".repeat(2000);
    let r = s.post("/api/v1/execute/spin", &json!({"input": {"text": text}}));
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.json()["error_code"], "TIMEOUT");
}

#[test]
fn api_token_guards_the_api_only() {
    let s = Server::start(&["--api-token", "s3cret,second"]);
    let body = ruleset("r", "1", "R");
    let r = s.post("/api/v1/rulesets", &body);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["code"], "UNAUTHORIZED");
    assert_eq!(r.header("www-authenticate").as_deref(), Some("Bearer"));
    let r = s.send_json_as(
        "POST",
        "/api/v1/rulesets",
        &body,
        &[("authorization", "Bearer wrong")],
    );
    assert_eq!(r.status, 401);
    let r = s.send_json_as(
        "POST",
        "/api/v1/rulesets",
        &body,
        &[("authorization", "Bearer s3cret")],
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let r = s.send_json_as(
        "POST",
        "/api/v1/execute/r",
        &json!({"input": {}}),
        &[("x-api-token", "second")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(s.get("/api/v1/rulesets").status, 401);
    assert_eq!(s.get("/api/v1/tenants").status, 401);
    for path in ["/health", "/healthz/live", "/healthz/ready", "/metrics"] {
        assert_eq!(s.get(path).status, 200, "{path}");
    }
}

#[test]
fn invalid_flags_stop_the_server() {
    for args in [
        &["--default-tenant", "../x"][..],
        &["--default-tenant-burst", "5"][..],
        &["--default-tenant-qps", "0"][..],
    ] {
        let err = Server::try_start(args).err().expect("must not start");
        assert!(err.contains("exit status: 2"), "{args:?}: {err}");
    }
}

// The same tests with the commit log on PostgreSQL.
on_postgres!(
    rules_are_isolated_per_tenant,
    without_multi_tenancy_the_tenant_header_is_ignored,
    max_rules_is_enforced,
    tenant_rate_limits_answer_429_but_never_health,
    default_tenant_flags_apply,
    tenant_execution_timeout_bounds_executions,
    api_token_guards_the_api_only,
);
