//! Every configuration key is documented in docs/configuration.md with its default and a
//! range column, found by walking the serialized default configuration (every table, at
//! any depth), so a key added anywhere fails here until it is documented; and every key the
//! reference documents exists. Every doctor rule id has a row in docs/doctor.md.
// Test helpers may panic: a panic is a failing test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

fn reference() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md")).unwrap()
}

/// Every leaf key of the default configuration as (dotted key, value).
fn leaves(t: &toml::Table, path: &str, out: &mut Vec<(String, toml::Value)>) {
    for (k, v) in t {
        let dotted = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
        match v {
            toml::Value::Table(sub) => leaves(sub, &dotted, out),
            v => out.push((dotted, v.clone())),
        }
    }
}

fn default_keys() -> Vec<(String, toml::Value)> {
    let defaults: toml::Table = toml::from_str(&thrashguard_core::config::Config::default_toml()).unwrap();
    let mut keys = Vec::new();
    leaves(&defaults, "", &mut keys);
    assert!(keys.len() > 20, "the walk found only {} keys", keys.len());
    keys
}

#[test]
fn every_config_key_is_documented_with_its_default() {
    let doc = reference();
    let mut missing = Vec::new();
    for (key, value) in default_keys() {
        let row = doc.lines().find(|l| l.starts_with(&format!("| `{key}` |")));
        match row {
            None => missing.push(format!("{key}: no row `| `{key}` | default | range | meaning |`")),
            Some(row) => {
                let shown = match &value {
                    toml::Value::Array(a) if a.is_empty() => "`[]`".to_string(),
                    v => format!("`{v}`"),
                };
                // | key | default | range | meaning |, with `\|` inside a cell
                let unescaped = row.replace("\\|", "\u{1}");
                let cells: Vec<&str> = unescaped.split('|').map(str::trim).collect();
                if cells.get(2).is_none_or(|c| !c.contains(&shown)) {
                    missing.push(format!("{key}: default {shown} not in the default column of {row:?}"));
                }
                if cells.get(4).is_none_or(|m| m.is_empty()) {
                    missing.push(format!("{key}: no meaning in {row:?}"));
                }
                let numeric = matches!(value, toml::Value::Integer(_) | toml::Value::Float(_));
                if numeric && cells.get(3).is_none_or(|r| r.is_empty()) {
                    missing.push(format!("{key}: a number without its range in {row:?}"));
                }
            }
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
}

#[test]
fn every_documented_key_exists() {
    let keys: Vec<String> = default_keys().into_iter().map(|(k, _)| k).collect();
    let doc = reference();
    let stale: Vec<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split_once("` |").map(|(k, _)| k))
        .filter(|k| k.contains('.') && !keys.iter().any(|d| d == k))
        .collect();
    assert!(stale.is_empty(), "documented but not in the configuration: {stale:?}");
}

#[test]
fn every_doctor_rule_is_documented() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/doctor.md")).unwrap();
    // Every rule runs on every doctor run: as a finding, clear or not checked.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_thrashguard"))
        .args(["doctor", "--json", "--window", "0"])
        .env_remove("THRASHGUARD_CONFIG")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut ids = Vec::new();
    for key in ["findings", "clear", "not_checked"] {
        ids.extend(v[key].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap().to_string()));
    }
    assert!(ids.len() > 25, "only {} rules ran: {v:#}", ids.len());
    let missing: Vec<&String> = ids.iter().filter(|id| !doc.contains(&format!("| `{id}` |"))).collect();
    assert!(missing.is_empty(), "rules without a row in docs/doctor.md: {missing:?}");
}
