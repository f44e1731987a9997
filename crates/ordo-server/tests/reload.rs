//! Live configuration reload through the watched config file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Server, ruleset, wait_for};
use serde_json::json;

/// How long a change may take to be seen.
const WAIT: Duration = Duration::from_secs(10);

/// Replaces a file the way editors and config tools do: write aside, rename over.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn executes(s: &Server) -> u16 {
    s.post("/api/v1/execute/r", &json!({"input": {}})).status
}

#[test]
fn limits_reload_live_and_bad_or_restart_only_changes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ordo.yaml");
    std::fs::write(&cfg, "request_timeout_ms: 30000\n").unwrap();
    let s = Server::start(&["-c", cfg.to_str().unwrap()]);
    s.post("/api/v1/rulesets", &ruleset("r", "1", "R"));
    assert_eq!(executes(&s), 200);

    // A limit, applied without a restart.
    replace(&cfg, "default_tenant_qps: 1\ndefault_tenant_burst: 1\n");
    wait_for("the new limit", WAIT, || executes(&s) == 429);
    wait_for("the log line", WAIT, || {
        s.log_text().contains("configuration reloaded")
    });
    assert_eq!(s.get("/api/v1/tenants/default").json()["qps_limit"], 1);

    // An invalid change is rejected; the limit stays.
    replace(&cfg, "default_tenant_qps: 0\n");
    wait_for("the rejection", WAIT, || {
        s.log_text().contains("configuration change rejected")
    });
    assert!(s.log_text().contains("default_tenant_qps = 0"));
    assert_eq!(s.get("/api/v1/tenants/default").json()["qps_limit"], 1);

    // A key that needs a restart is refused by name.
    replace(
        &cfg,
        "default_tenant_qps: 1\ndefault_tenant_burst: 1\nworker_threads: 3\n",
    );
    wait_for("the refusal", WAIT, || {
        s.log_text().contains("configuration change refused")
    });
    let log = s.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("configuration change refused"))
        .unwrap();
    assert!(line.contains("worker_threads"), "{line}");
    assert_eq!(s.get("/api/v1/tenants/default").json()["qps_limit"], 1);

    // Tokens too: the API now needs one, health does not.
    replace(&cfg, "api_token: [t0ken]\n");
    wait_for("the token", WAIT, || {
        s.get("/api/v1/rulesets").status == 401
    });
    assert_eq!(
        s.get_as("/api/v1/rulesets", &[("authorization", "Bearer t0ken")])
            .status,
        200
    );
    assert_eq!(s.get("/healthz/ready").status, 200);
    // ... and the limit is gone with it.
    assert_eq!(
        s.send_json_as(
            "POST",
            "/api/v1/execute/r",
            &json!({"input": {}}),
            &[("x-api-token", "t0ken")]
        )
        .status,
        200
    );
    let metrics = s.get("/metrics").text;
    for outcome in ["applied", "invalid", "refused"] {
        assert!(
            metrics.contains(&format!(
                "ordo_config_reloads_total{{outcome=\"{outcome}\"}}"
            )),
            "{outcome}: {metrics}"
        );
    }
    assert!(
        !s.log_text().contains("t0ken"),
        "a token leaked into the logs"
    );
}

#[test]
fn a_configmap_style_symlink_swap_is_picked_up() {
    // Kubernetes mounts ConfigMaps as ordo.yaml -> ..data/ordo.yaml, ..data -> ..v1, and
    // updates by pointing ..data at a new directory in one rename.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("..v1")).unwrap();
    std::fs::write(d.join("..v1/ordo.yaml"), "request_timeout_ms: 30000\n").unwrap();
    std::os::unix::fs::symlink("..v1", d.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/ordo.yaml", d.join("ordo.yaml")).unwrap();
    let s = Server::start(&["-c", d.join("ordo.yaml").to_str().unwrap()]);
    s.post("/api/v1/rulesets", &ruleset("r", "1", "R"));
    assert_eq!(executes(&s), 200);

    std::fs::create_dir(d.join("..v2")).unwrap();
    std::fs::write(
        d.join("..v2/ordo.yaml"),
        "default_tenant_qps: 1\ndefault_tenant_burst: 1\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("..v2", d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    wait_for("the swapped limit", WAIT, || executes(&s) == 429);
}
