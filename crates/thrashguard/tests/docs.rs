//! Every configuration key is documented in docs/configuration.md with its default.
// Test helpers may panic: a panic is a failing test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

#[test]
fn every_config_key_is_documented_with_its_default() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md")).unwrap();
    let defaults: toml::Table = toml::from_str(&thrashguard_core::config::Config::default_toml()).unwrap();
    let mut missing = Vec::new();
    for (table, keys) in &defaults {
        for (key, value) in keys.as_table().expect("tables only") {
            let row = doc.lines().find(|l| l.starts_with(&format!("| `{table}.{key}` |")));
            match row {
                None => missing.push(format!("{table}.{key}: no row")),
                Some(row) => {
                    let shown = match value {
                        toml::Value::Array(a) if a.is_empty() => "`[]`".to_string(),
                        v => format!("`{v}`"),
                    };
                    if !row.contains(&shown) {
                        missing.push(format!("{table}.{key}: default {shown} not in {row:?}"));
                    }
                }
            }
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
}
