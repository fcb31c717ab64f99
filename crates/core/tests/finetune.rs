//! Full fine-tuning (crates/core/src/classify/finetune.rs): layer-wise lr multipliers and weight-decay rules against
//! hand-computed values, the all-masked batch, learning, exact resume from a saved state, the export read back
//! by the linear mode's loaders, and the configuration errors.
mod common;

use cxformer_core::classify::config::{FinetuneConfig, ProbeTask, Schedule};
use cxformer_core::classify::finetune::FineTuner;
use cxformer_core::classify::head::FittedHead;
use cxformer_core::{Backbone, Error, VitConfig};
use std::collections::HashMap;
use std::sync::Mutex;
use tch::{Device, Kind, Tensor};

/// LibTorch's generator is process-global (initialisation, stochastic depth seeded per step): the tests run one at
/// a time, so that no test draws between another's seeding and its draws.
static RNG: Mutex<()> = Mutex::new(());

/// A 2-block ViT with 1 register at 28 px (2×2 patches), D 32.
fn tiny_vit() -> VitConfig {
    common::small_vit(32, 2, 28, 1)
}

fn cfg_json(extra: &str) -> FinetuneConfig {
    let model = tiny_vit().to_json();
    FinetuneConfig::from_json(&format!(r#"{{"model": {model}, "numClasses": 2, "clsLayers": 2 {extra}}}"#)).unwrap()
}

/// Deterministic pixels without LibTorch's global generator (tests run in parallel threads).
fn pixels(b: i64, seed: u64) -> Tensor {
    let mut s = seed;
    let v: Vec<f32> = (0..b * 3 * 28 * 28)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_slice(&v).reshape([b, 3, 28, 28])
}

/// A fresh scratch folder under the system temp dir (unique per process and test).
fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("cxf-finetune-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1.0)
}

#[test]
fn layerwise_decay_groups_are_hand_computed() {
    let _g = RNG.lock().unwrap_or_else(|p| p.into_inner());
    // head lr 1e-3, backbone lr 1e-4, decay 0.5, patch-embed ×0.2, depth 2:
    // layer 0 (tokens, pos, patch embed): 0.5³; blocks.0: 0.5²; blocks.1: 0.5; final norm: 1 — times 1e-4/1e-3 = 0.1.
    let cfg = cfg_json(r#", "headLr": 1e-3, "backboneLr": 1e-4, "layerwiseDecay": 0.5, "patchEmbedLrMult": 0.2, "weightDecay": 0.05"#);
    let (ft, report) = FineTuner::new(cfg, Device::Cpu, None, 0).unwrap();
    assert!(report.is_none());
    let g: HashMap<String, (f64, f64)> = ft.groups().into_iter().map(|(n, l, w)| (n, (l, w))).collect();
    let expect = [
        ("backbone.cls_token", 0.1 * 0.125, 0.0),
        ("backbone.register_tokens", 0.1 * 0.125, 0.0),
        ("backbone.pos_embed", 0.1 * 0.125, 0.0),
        ("backbone.mask_token", 0.1 * 0.125, 0.0),
        ("backbone.patch_embed.proj.weight", 0.1 * 0.125 * 0.2, 1.0),
        ("backbone.patch_embed.proj.bias", 0.1 * 0.125 * 0.2, 0.0),
        ("backbone.blocks.0.attn.qkv.weight", 0.1 * 0.25, 1.0),
        ("backbone.blocks.0.attn.qkv.bias", 0.1 * 0.25, 0.0),
        ("backbone.blocks.0.norm1.weight", 0.1 * 0.25, 0.0),
        ("backbone.blocks.0.ls1.gamma", 0.1 * 0.25, 0.0),
        ("backbone.blocks.1.mlp.fc2.weight", 0.1 * 0.5, 1.0),
        ("backbone.blocks.1.ls2.gamma", 0.1 * 0.5, 0.0),
        ("backbone.norm.weight", 0.1, 0.0),
        ("backbone.norm.bias", 0.1, 0.0),
        ("head.0.weight", 1.0, 1.0),
        ("head.0.bias", 1.0, 0.0),
    ];
    for (name, lr, wd) in expect {
        let (l, w) = g.get(name).unwrap_or_else(|| panic!("no parameter {name}: {:?}", g.keys().collect::<Vec<_>>()));
        assert!(close(*l, lr), "{name}: lr multiplier {l}, expected {lr}");
        assert_eq!(*w, wd, "{name}: weight-decay multiplier");
    }
    // Every backbone parameter and the head are optimised: 2 blocks × 14 tensors (incl. LayerScale), 8 others
    // (cls, register, pos, mask token, patch embed weight/bias, final norm weight/bias), head weight/bias.
    assert_eq!(g.len(), 2 * 14 + 8 + 2, "{:?}", g.keys().collect::<Vec<_>>());
}

#[test]
fn all_masked_batch_is_a_finite_zero_loss_without_update() {
    let _g = RNG.lock().unwrap_or_else(|p| p.into_inner());
    let cfg = cfg_json(r#", "headLr": 1e-2, "backboneLr": 1e-3, "weightDecay": 0.1"#);
    let (mut ft, _) = FineTuner::new(cfg, Device::Cpu, None, 1).unwrap();
    let before = ft.state().unwrap();
    // Masked targets may be NaN: they never reach the loss.
    let y = Tensor::from_slice(&[f32::NAN, 1.0, 0.0, f32::NAN]).reshape([2, 2]);
    let m = Tensor::zeros([2, 2], (Kind::Uint8, Device::Cpu));
    let r = ft.train_step(&pixels(2, 3), &y, &m).unwrap();
    assert!(r.skipped && r.loss == 0.0 && r.entries == 0 && r.grad_norm == 0.0, "{r:?}");
    assert_eq!(ft.step, 1, "the schedule advances");
    assert_eq!(ft.optimizer.step, 0, "no optimizer update");
    let after = ft.state().unwrap();
    for (k, v) in &before {
        if k == "finetune.step" {
            continue;
        }
        assert!(v.equal(&after[k]), "{k} changed on an all-masked batch");
    }
    // Validation loss over nothing supervised: sum 0 over 0 entries, finite.
    let p = ft.predict(&pixels(2, 3), Some((&y, &m))).unwrap();
    assert_eq!((p.loss_sum, p.entries), (Some(0.0), Some(0)));
}

/// Two classes that depend on the mean brightness of the image: the fine-tuned model must learn them.
fn brightness_batch(b: i64, seed: u64) -> (Tensor, Tensor) {
    let x = pixels(b, seed);
    let shift: Vec<f32> = (0..b).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
    let x = x * 0.3 + Tensor::from_slice(&shift).reshape([b, 1, 1, 1]);
    let y: Vec<f32> = (0..b).flat_map(|i| if i % 2 == 0 { [1.0, 0.0] } else { [0.0, 1.0] }).collect();
    (x, Tensor::from_slice(&y).reshape([b, 2]))
}

#[test]
fn learns_and_resumes_exactly() {
    let _g = RNG.lock().unwrap_or_else(|p| p.into_inner());
    let cfg = cfg_json(r#", "headLr": 1e-2, "backboneLr": 1e-3, "layerwiseDecay": 0.8, "weightDecay": 0.01, "epochs": 2, "stepsPerEpoch": 6, "warmupEpochs": 1, "schedule": "cosine""#);
    let mut v = cfg.clone();
    v.model.drop_path_rate = 0.2; // stochastic depth must resume identically too
    let (mut a, _) = FineTuner::new(v.clone(), Device::Cpu, None, 7).unwrap();
    let m = Tensor::ones([8, 2], (Kind::Uint8, Device::Cpu));
    let (xv, yv) = brightness_batch(8, 99);
    let loss0 = a.predict(&xv, Some((&yv, &m))).unwrap().loss_sum.unwrap();
    let dir = scratch("resume");
    let file = dir.join("state.safetensors");
    let mut lrs = Vec::new();
    for s in 0..12u64 {
        let (x, y) = brightness_batch(8, s);
        let r = a.train_step(&x, &y, &m).unwrap();
        assert!(r.loss.is_finite() && !r.skipped);
        lrs.push(r.lr);
        if s == 5 {
            a.save_state(&file, HashMap::from([("epoch".to_string(), "1".to_string())])).unwrap();
        }
    }
    // Warm-up linspace(0, 1e-2, 6), then cosine over 6 steps.
    assert_eq!(lrs[0], 0.0);
    assert!(close(lrs[3], 1e-2 * 3.0 / 5.0) && close(lrs[5], 1e-2), "{lrs:?}");
    assert!(close(lrs[6], 1e-2) && close(lrs[9], 1e-2 * 0.5 * (1.0 + (std::f64::consts::PI * 3.0 / 6.0).cos())), "{lrs:?}");
    let loss1 = a.predict(&xv, Some((&yv, &m))).unwrap().loss_sum.unwrap();
    assert!(loss1 < 0.5 * loss0, "validation loss {loss0} → {loss1}");

    // A fresh tuner loaded from the state after step 5 and run on the same batches ends bit-identical.
    let (mut b, _) = FineTuner::new(v, Device::Cpu, None, 7).unwrap();
    let md = b.load_state(&file, false).unwrap();
    assert_eq!(md.get("epoch").map(String::as_str), Some("1"));
    assert_eq!((b.step, b.optimizer.step), (6, 6));
    for s in 6..12u64 {
        let (x, y) = brightness_batch(8, s);
        b.train_step(&x, &y, &m).unwrap();
    }
    let (sa, sb) = (a.state().unwrap(), b.state().unwrap());
    assert_eq!(sa.len(), sb.len());
    for (k, t) in &sa {
        assert!(t.equal(&sb[k]), "{k} differs after resume");
    }

    // A state of another configuration is refused, naming the difference.
    let (mut c, _) = FineTuner::new(cfg_json(r#", "headLr": 2e-2"#), Device::Cpu, None, 7).unwrap();
    let e = c.load_state(&file, false).unwrap_err().to_string();
    assert!(e.contains("another fine-tuning configuration") && e.contains("state.safetensors"), "{e}");
    // … unless asked to (the shapes still have to match: a head of another width is refused).
    c.load_state(&file, true).unwrap();
    assert_eq!(c.step, 6);
    let (mut d, _) = FineTuner::new(cfg_json(r#", "hidden": [4]"#), Device::Cpu, None, 7).unwrap();
    let e = d.load_state(&file, true).unwrap_err().to_string();
    assert!(e.contains("nothing was loaded") && e.contains("head.0.weight"), "{e}");
}

#[test]
fn export_is_read_back_by_the_linear_mode_loaders() {
    let _g = RNG.lock().unwrap_or_else(|p| p.into_inner());
    let cfg = cfg_json(r#", "headLr": 1e-2, "backboneLr": 1e-3, "hidden": [8]"#);
    let (mut ft, _) = FineTuner::new(cfg.clone(), Device::Cpu, None, 3).unwrap();
    let m = Tensor::ones([4, 2], (Kind::Uint8, Device::Cpu));
    for s in 0..3 {
        let (x, y) = brightness_batch(4, s);
        ft.train_step(&x, &y, &m).unwrap();
    }
    let dir = scratch("export");
    let (bf, hf) = (dir.join("model.safetensors"), dir.join("head.safetensors"));
    ft.export(&bf, &hf, HashMap::from([("classes".to_string(), "[\"a\",\"b\"]".to_string())])).unwrap();
    let (bb, _) = Backbone::load(&cfg.model, &bf, Device::Cpu).unwrap();
    let head = FittedHead::load(&hf).unwrap();
    assert_eq!(head.config.hidden, vec![8]);
    // Features as the linear mode computes them: normed CLS of the last 2 blocks + mean of the normed patches.
    let x = pixels(3, 11);
    let out = bb
        .embed(&x, &cxformer_core::ForwardOptions { intermediate_layers: vec![-2, -1], norm_intermediates: true, ..Default::default() }, cxformer_core::Precision::F32)
        .unwrap();
    let f = Tensor::cat(&[out.intermediates[0].select(1, 0), out.intermediates[1].select(1, 0), out.patches.mean_dim(1, false, Kind::Float)], 1);
    let p_linear = head.predict(&f).unwrap();
    let p_ft = ft.predict(&x, None).unwrap().probs;
    let d = (&p_linear - &p_ft).abs().max().double_value(&[]);
    assert!(d < 1e-5, "exported model predicts differently: max |Δp| = {d}");
}

#[test]
fn multiclass_and_configuration_errors() {
    let _g = RNG.lock().unwrap_or_else(|p| p.into_inner());
    let (mut ft, _) = FineTuner::new(cfg_json(r#", "task": "multiclass", "headLr": 1e-2"#), Device::Cpu, None, 0).unwrap();
    let y = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 0.0]).reshape([2, 2]);
    let m = Tensor::from_slice(&[1u8, 0, 1, 0]).reshape([2, 2]);
    let r = ft.train_step(&pixels(2, 1), &y, &m).unwrap();
    assert_eq!(r.entries, 2);
    let p = ft.predict(&pixels(2, 1), None).unwrap().probs;
    let rows = p.sum_dim_intlist(1, false, Kind::Float);
    assert!((rows - 1.0).abs().max().double_value(&[]) < 1e-6, "softmax rows sum to 1");
    let bad = Tensor::from_slice(&[2.0f32, 0.0, 0.0, 0.0]).reshape([2, 2]);
    let e = ft.train_step(&pixels(2, 1), &bad, &m).unwrap_err().to_string();
    assert!(e.contains("class 2") && e.contains("0..2"), "{e}");

    let err_cfg = |c: FinetuneConfig| match FineTuner::new(c, Device::Cpu, None, 0) {
        Err(Error::Config(m)) => m,
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("accepted"),
    };
    let err = |extra: &str| err_cfg(cfg_json(extra));
    let mut deep = cfg_json("");
    deep.cls_layers = 3;
    assert!(err_cfg(deep).contains("clsLayers must be in 1..=2"));
    assert!(err(r#", "headLr": 0"#).contains("headLr"));
    assert!(err(r#", "layerwiseDecay": 1.5"#).contains("layerwiseDecay"));
    assert!(err(r#", "task": "binary""#).contains("1 column"));
    assert!(FinetuneConfig::from_json(r#"{"model": {}, "numClasses": 2, "lr": 1}"#).unwrap_err().to_string().contains("finetune config"));
    let e = ft.train_step(&pixels(2, 1), &Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)), &Tensor::ones([2, 3], (Kind::Uint8, Device::Cpu)));
    assert!(e.unwrap_err().to_string().contains("[2, 2]"));
    let _ = (ProbeTask::Binary, Schedule::Cosine);
}
