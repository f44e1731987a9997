//! The deploy files agree with the binary: every variable they set is a configuration
//! key, the configuration they ship validates for each role, probes point at the health
//! endpoints, the grace period covers the shutdown timeout, no build flag is passed at
//! run time, and there is exactly one writer.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every document of every manifest, as JSON values.
fn manifests() -> Vec<Value> {
    let mut docs = Vec::new();
    for name in ["config.yaml", "nats.yaml", "writer.yaml", "reader.yaml"] {
        let text = std::fs::read_to_string(repo().join("deploy/k8s").join(name)).unwrap();
        for doc in serde_norway::Deserializer::from_str(&text) {
            docs.push(Value::deserialize(doc).unwrap());
        }
    }
    docs
}

fn deployment<'a>(docs: &'a [Value], name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no Deployment {name}"))
}

#[test]
fn the_kubernetes_manifests_match_the_binary() {
    let docs = manifests();
    let config_text = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .and_then(|d| d["data"]["ordo.yaml"].as_str())
        .expect("the ConfigMap holds ordo.yaml")
        .to_string();
    let config: Value = serde_norway::from_str(&config_text).unwrap();
    let shutdown = config["shutdown_timeout_secs"].as_u64().unwrap_or(30);
    let port = config["port"].as_u64().unwrap_or(8080);
    let variables: Vec<String> = ordo_server::config::keys()
        .iter()
        .map(|k| ordo_server::config::env_var(k))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("ordo.yaml");
    std::fs::write(&config_path, &config_text).unwrap();

    let writer = deployment(&docs, "ordo-writer");
    assert_eq!(writer["spec"]["replicas"], 1);
    assert_eq!(writer["spec"]["strategy"]["type"], "Recreate");
    for (name, role) in [("ordo-writer", "writer"), ("ordo-reader", "reader")] {
        let spec = &deployment(&docs, name)["spec"]["template"]["spec"];
        let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(
            grace > shutdown,
            "{name}: grace {grace} s <= shutdown {shutdown} s"
        );
        let container = &spec["containers"][0];
        let args: Vec<&str> = container["args"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        assert!(
            !args.iter().any(|a| a.contains("features")),
            "{name}: build flags passed at run time: {args:?}"
        );
        assert_eq!(container["ports"][0]["containerPort"], port);
        assert_eq!(
            container["readinessProbe"]["httpGet"]["path"],
            "/healthz/ready"
        );
        assert_eq!(
            container["livenessProbe"]["httpGet"]["path"],
            "/healthz/live"
        );
        // The variables are configuration keys, and with the shipped file they make a
        // valid configuration for this role.
        let mut env: Vec<(String, String)> = Vec::new();
        for var in container["env"].as_array().unwrap() {
            let key = var["name"].as_str().unwrap();
            assert!(
                variables.iter().any(|v| v == key),
                "{name}: {key} is not a configuration variable"
            );
            let value = match var["value"].as_str() {
                Some(v) => v.to_string(),
                // fieldRef: metadata.name, a pod name.
                None => format!("{name}-7d9f8b6c5-x2x4z"),
            };
            let value = if key == "ORDO_RULES_DIR" {
                dir.path().join("rules").display().to_string()
            } else {
                value
            };
            env.push((key.to_string(), value));
        }
        assert!(env.iter().any(|(k, v)| k == "ORDO_ROLE" && v == role));
        let mounted = container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == "/etc/ordo");
        assert!(
            mounted,
            "{name}: the ConfigMap is not mounted where -c points"
        );
        assert_eq!(args, ["-c", "/etc/ordo/ordo.yaml"]);
        let out = std::process::Command::new(common::BIN)
            .args(["config", "validate", "-c", config_path.to_str().unwrap()])
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_image_is_built_in_stages_from_the_locked_workspace() {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let stages = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(
        stages >= 2,
        "a multi-stage build keeps the toolchain out of the image"
    );
    // The binary as shipped: the workspace's `build-server` alias, a static release link.
    assert!(text.contains("cargo --locked build-server"), "{text}");
    let cargo = std::fs::read_to_string(repo().join(".cargo/config.toml")).unwrap();
    let alias = cargo
        .lines()
        .find(|l| l.starts_with("build-server"))
        .unwrap_or_default();
    for part in [
        "\"--release\"",
        "\"ordo-server\"",
        "target-feature=+crt-static",
    ] {
        assert!(alias.contains(part), "{alias}");
    }
    assert!(text.contains("COPY --from=build"));
    let ignored = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    assert!(ignored.lines().any(|l| l.trim() == "target"));
}
