//! The native defaults of the downstream configs (ProbeConfig, FinetuneConfig, SegConfig) equal the one table that
//! the CLI and the library read: configs/downstream/defaults.json, read here from the file itself.
use cxformer_core::classify::config::{FinetuneConfig, ProbeConfig};
use cxformer_core::seg::config::SegConfig;
use cxformer_core::VitConfig;
use serde_json::Value;

fn table() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/downstream/defaults.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// JSON values equal, numbers compared as numbers (the table writes 1 where the config writes 1.0).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q)),
        _ => a == b,
    }
}

/// Every field of `config` (its JSON) equals the table entry of `section` under the same name, or under the name
/// `renamed` gives; the fields `not_in_table` are the documented exceptions. Returns the number of fields compared.
fn check(config: &Value, section: &str, renamed: &[(&str, &str)], not_in_table: &[&str]) -> usize {
    let table = table();
    let mut compared = 0;
    for (key, value) in config.as_object().unwrap() {
        if not_in_table.contains(&key.as_str()) {
            continue;
        }
        let name = renamed.iter().find(|(k, _)| k == key).map(|(_, t)| *t).unwrap_or(key.as_str());
        let want = table[section].get(name).unwrap_or_else(|| panic!("{section}.{name} is not in the table"));
        assert!(same(value, want), "{key}: native default {value}, table {section}.{name} = {want}");
        compared += 1;
    }
    compared
}

#[test]
fn probe_defaults_are_the_table() {
    let c = serde_json::to_value(ProbeConfig::default()).unwrap();
    assert_eq!(ProbeConfig::from_json("{}").unwrap(), ProbeConfig::default());
    assert_eq!(check(&c, "classification", &[("batchSize", "headBatchSize")], &["selectBest"]), 12);
}

#[test]
fn finetune_defaults_are_the_table() {
    let json = format!(r#"{{"model": {}, "numClasses": 2}}"#, VitConfig::vit_small().to_json());
    let c = serde_json::to_value(FinetuneConfig::from_json(&json).unwrap()).unwrap();
    assert_eq!(check(&c, "classification", &[("headLr", "lr")], &["model", "numClasses", "stepsPerEpoch"]), 18);
}

#[test]
fn seg_defaults_are_the_table() {
    let c = serde_json::to_value(SegConfig::default()).unwrap();
    assert_eq!(check(&c, "segmentation", &[("seed", "headSeed")], &[]), 12);
}
