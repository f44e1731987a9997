//! The configuration loader never panics, whatever the files, variables and flags hold:
//! it returns a configuration or a list of problems.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;

use ordo_server::config::{Flags, load};
use proptest::prelude::*;

fn keys() -> Vec<String> {
    ordo_server::config::keys()
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        Just(String::new()),
        Just("-1".to_string()),
        Just("18446744073709551616".to_string()),
        Just("true".to_string()),
        Just("[1, 2]".to_string()),
        Just("{a: b}".to_string()),
        Just("0.0.0.0".to_string()),
        "[0-9]{1,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn never_panics(
        file_text in ".{0,200}",
        ext in prop_oneof![Just("yaml"), Just("json"), Just("toml"), Just("txt")],
        env_values in proptest::collection::vec((0usize..64, any_text()), 0..6),
        flag_values in proptest::collection::vec((0usize..64, any_text()), 0..4),
    ) {
        let keys = keys();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("c.{ext}"));
        std::fs::write(&path, &file_text).unwrap();
        let env: BTreeMap<String, String> = env_values
            .into_iter()
            .map(|(i, v)| (ordo_server::config::env_var(&keys[i % keys.len()]), v))
            .collect();
        let names: Vec<String> = env.keys().cloned().collect();
        let mut flags = Flags::default();
        for (i, v) in flag_values {
            flags.set(&keys[i % keys.len()], &v);
        }
        match load(&[path], &|n| env.get(n).cloned(), &names, &flags) {
            Ok((config, _)) => prop_assert!(config.check().is_empty()),
            Err(e) => prop_assert!(!e.problems.is_empty()),
        }
    }
}
