//! Safetensors round trips in both layouts, strict-load refusals and malformed-file rejection.
mod common;
use common::*;
use cxformer_core::weights::write_safetensors;
use cxformer_core::{Backbone, ForwardOptions, Layout, Precision, SaveLayout, VitConfig, WeightFile};
use std::collections::{BTreeMap, HashMap};
use tch::{Device, Kind, Tensor};

fn outputs(b: &Backbone) -> Tensor {
    let x = golden("vit_tiny_inputs.safetensors", "pixel_values_56");
    b.embed(&x, &ForwardOptions::default(), Precision::F32).unwrap().last_hidden_state
}

#[test]
fn round_trip_both_layouts_and_bf16() {
    let dir = tmpdir("rt");
    let model = load_tiny(Device::Cpu);
    let reference = outputs(&model);
    for (layout, kind, tol) in [
        (SaveLayout::Hf, Kind::Float, 0.0),
        (SaveLayout::Original, Kind::Float, 0.0),
        // bf16 weights are converted back to f32 on load: close, not equal.
        (SaveLayout::Hf, Kind::BFloat16, 0.1),
    ] {
        let path = dir.join(format!("{layout:?}-{kind:?}.safetensors"));
        model.save(&path, layout, kind, HashMap::new()).unwrap();
        let file = WeightFile::open(&path).unwrap();
        assert_eq!(file.metadata().get("format").map(String::as_str), Some("pt"));
        let cfg = VitConfig::from_json(&file.metadata()["cxformer_config"]).unwrap();
        assert_eq!(cfg, tiny_config());
        let (back, report) = Backbone::load(&cfg, &path, Device::Cpu).unwrap();
        match layout {
            SaveLayout::Hf => assert_eq!(report.layout, Layout::Hf { prefix: String::new() }),
            SaveLayout::Original => assert_eq!(report.layout, Layout::Original { prefix: String::new() }),
        }
        let d = max_abs_diff(&outputs(&back), &reference);
        assert!(d <= tol, "{layout:?} {kind:?}: {d}");
    }
    // HF export keeps the exact key set of the golden HF file.
    let hf = WeightFile::open(dir.join("Hf-Float.safetensors")).unwrap();
    assert_eq!(hf.names(), WeightFile::open(tiny_weights()).unwrap().names());
    std::fs::remove_dir_all(dir).ok();
}

fn golden_tensors() -> BTreeMap<String, Tensor> {
    WeightFile::open(tiny_weights()).unwrap().tensors().unwrap()
}

fn load_err(tensors: &BTreeMap<String, Tensor>, tag: &str) -> String {
    let dir = tmpdir(tag);
    let path = dir.join("w.safetensors");
    write_safetensors(&path, tensors, HashMap::new()).unwrap();
    let e = match Backbone::load(&tiny_config(), &path, Device::Cpu) {
        Ok(_) => panic!("load of {tag} must fail"),
        Err(e) => e.to_string(),
    };
    std::fs::remove_dir_all(dir).ok();
    e
}

#[test]
fn partial_and_mismatched_loads_are_refused() {
    let mut t = golden_tensors();
    t.remove("encoder.layer.1.attention.attention.key.bias");
    t.remove("layernorm.weight");
    let e = load_err(&t, "missing");
    assert!(e.contains("nothing was loaded") && e.contains("missing (2)"), "{e}");
    assert!(e.contains("encoder.layer.1.attention.attention.key.bias") && e.contains("layernorm.weight"), "{e}");

    let mut t = golden_tensors();
    t.insert("encoder.layer.7.norm1.weight".into(), Tensor::ones([96], (Kind::Float, Device::Cpu)));
    t.insert("pooler.weight".into(), Tensor::ones([2], (Kind::Float, Device::Cpu)));
    let e = load_err(&t, "unexpected");
    assert!(e.contains("unexpected (2)") && e.contains("encoder.layer.7.norm1.weight") && e.contains("pooler.weight"), "{e}");

    let mut t = golden_tensors();
    t.insert("embeddings.position_embeddings".into(), Tensor::zeros([1, 26, 96], (Kind::Float, Device::Cpu)));
    let e = load_err(&t, "shape");
    assert!(e.contains("shape mismatch (1)") && e.contains("[1, 26, 96]") && e.contains("[1, 17, 96]"), "{e}");

    let mut t = golden_tensors();
    t.insert("layernorm.bias".into(), Tensor::zeros([96], (Kind::Int64, Device::Cpu)));
    let e = load_err(&t, "dtype");
    assert!(e.contains("layernorm.bias") && e.contains("I64"), "{e}");

    // A model with a different architecture than the file: every block-3+ key missing etc.
    let mut cfg = tiny_config();
    cfg.depth = 4;
    let e = match Backbone::load(&cfg, tiny_weights(), Device::Cpu) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("depth mismatch must fail"),
    };
    assert!(e.contains("encoder.layer.3."), "{e}");
}

#[test]
fn classification_and_ssl_prefixes_load() {
    let dir = tmpdir("prefix");
    let reference = outputs(&load_tiny(Device::Cpu));
    // HF *ForImageClassification: prefixed backbone + classifier head (ignored, reported).
    let mut t: BTreeMap<String, Tensor> =
        golden_tensors().into_iter().map(|(k, v)| (format!("dinov2_with_registers.{k}"), v)).collect();
    t.insert("classifier.weight".into(), Tensor::zeros([5, 192], (Kind::Float, Device::Cpu)));
    let p = dir.join("cls.safetensors");
    write_safetensors(&p, &t, HashMap::new()).unwrap();
    let (b, report) = Backbone::load(&tiny_config(), &p, Device::Cpu).unwrap();
    assert_eq!(report.ignored, vec!["classifier.weight".to_string()]);
    assert!(max_abs_diff(&outputs(&b), &reference) == 0.0);
    // SSL checkpoint in original names with backbone. / dino_head. prefixes.
    let orig = dir.join("orig.safetensors");
    load_tiny(Device::Cpu).save(&orig, SaveLayout::Original, Kind::Float, HashMap::new()).unwrap();
    let mut t: BTreeMap<String, Tensor> = WeightFile::open(&orig)
        .unwrap()
        .tensors()
        .unwrap()
        .into_iter()
        .map(|(k, v)| (format!("backbone.{k}"), v))
        .collect();
    t.insert("dino_head.last_layer.weight_g".into(), Tensor::ones([8, 1], (Kind::Float, Device::Cpu)));
    let p = dir.join("ssl.safetensors");
    write_safetensors(&p, &t, HashMap::new()).unwrap();
    let (b, report) = Backbone::load(&tiny_config(), &p, Device::Cpu).unwrap();
    assert_eq!(report.layout, Layout::Original { prefix: "backbone.".into() });
    assert_eq!(report.ignored, vec!["dino_head.last_layer.weight_g".to_string()]);
    assert!(max_abs_diff(&outputs(&b), &reference) == 0.0);
    std::fs::remove_dir_all(dir).ok();
}

fn write_raw(tag: &str, bytes: &[u8]) -> (std::path::PathBuf, String) {
    let dir = tmpdir(tag);
    let p = dir.join("bad.safetensors");
    std::fs::write(&p, bytes).unwrap();
    let e = match WeightFile::open(&p) {
        Ok(_) => panic!("{tag}: malformed file accepted"),
        Err(e) => e.to_string(),
    };
    (dir, e)
}

fn with_header(header: &str, data_len: usize) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend(std::iter::repeat_n(0u8, data_len));
    v
}

#[test]
fn malformed_files_are_rejected() {
    let good = std::fs::read(tiny_weights()).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() - 100].to_vec()),
        ("tiny", vec![1, 2, 3]),
        ("oversized-header", { let mut v = u64::MAX.to_le_bytes().to_vec(); v.extend_from_slice(b"{}"); v }),
        ("header-past-end", { let mut v = 1000u64.to_le_bytes().to_vec(); v.extend_from_slice(b"{}"); v }),
        ("not-json", with_header("{not json", 0)),
        ("offsets-out-of-range", with_header(r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, 8)),
        ("size-mismatch", with_header(r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}"#, 16)),
        ("gap", with_header(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#, 16)),
        ("bad-dtype", with_header(r#"{"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}"#, 8)),
        // Repeated tensor names: the safetensors crate alone would keep the last one silently.
        ("duplicate", with_header(r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, 4)),
    ];
    for (tag, bytes) in cases {
        let (dir, e) = write_raw(tag, &bytes);
        assert!(e.contains("bad.safetensors"), "{tag}: error must name the file: {e}");
        std::fs::remove_dir_all(dir).ok();
    }
    let e = WeightFile::open("/nonexistent/w.safetensors").err().unwrap().to_string();
    assert!(e.contains("/nonexistent/w.safetensors"), "{e}");
}

#[test]
fn random_init_follows_dinov2() {
    let b = Backbone::random(&tiny_config(), Device::Cpu, 0).unwrap();
    let v = b.vs.variables();
    let std = |n: &str| v[n].std(true).double_value(&[]);
    assert!((std("pos_embed") - 0.02).abs() < 0.003, "pos_embed std {}", std("pos_embed"));
    assert!((std("blocks.0.attn.qkv.weight") - 0.02).abs() < 0.002);
    assert_eq!(v["blocks.0.attn.qkv.bias"].abs().sum(Kind::Float).double_value(&[]), 0.0);
    assert!(std("cls_token") < 1e-5);
    assert_eq!(v["mask_token"].abs().sum(Kind::Float).double_value(&[]), 0.0);
    assert!((v["blocks.1.ls1.gamma"].mean(Kind::Float).double_value(&[]) - 1e-5).abs() < 1e-9);
    // Seeded: same seed, same weights.
    let c = Backbone::random(&tiny_config(), Device::Cpu, 0).unwrap();
    assert_eq!(max_abs_diff(&c.vs.variables()["pos_embed"], &v["pos_embed"]), 0.0);
}
