//! Segmentation (crates/core/src/seg/): head shapes and bilinear upsampling against a manual computation on the
//! tiny golden model, the ce_dice_loss on hand-computed cases, training steps that lower the loss, frozen vs
//! unfrozen backbones, strict save/load with optimizer state, and the error messages for bad inputs.
mod common;

use common::{golden, load_tiny, max_abs_diff, test_device};
use cxformer_core::seg::config::{SegConfig, SegHeadKind};
use cxformer_core::seg::loss::ce_dice_loss;
use cxformer_core::seg::model::SegModel;
use cxformer_core::{Error, ForwardOptions, Precision};
use std::collections::HashMap;
use std::sync::Mutex;
use tch::{Device, Kind, Tensor};

/// LibTorch's generator is process-global (head initialisation, stochastic depth seeded per step): the tests run
/// one at a time, so that no test draws between another's seeding and its draws.
static RNG: Mutex<()> = Mutex::new(());

/// On CXF_TEST_DEVICE (default cpu; scripts/gpu-check.sh style: CXF_TEST_DEVICE=cuda runs these on the GPU).
fn model(cfg: SegConfig) -> SegModel {
    SegModel::new(cfg, load_tiny(test_device())).expect("seg model")
}

fn cpu(t: Tensor) -> Tensor {
    t.to_device(Device::Cpu)
}

fn inputs() -> Tensor {
    golden("vit_tiny_inputs.safetensors", "pixel_values_56")
}

/// Bilinear resize of one (h, w) plane to (oh, ow), align_corners = false, written from the definition:
/// source coordinate s = (d + 0.5)·(in/out) − 0.5, clamped below at 0; neighbours ⌊s⌋ and min(⌊s⌋ + 1, in − 1).
fn bilinear(src: &[f64], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f64> {
    let coord = |d: usize, n_in: usize, n_out: usize| {
        let s = ((d as f64 + 0.5) * n_in as f64 / n_out as f64 - 0.5).max(0.0);
        let i0 = (s.floor() as usize).min(n_in - 1);
        let i1 = (i0 + 1).min(n_in - 1);
        (i0, i1, s - i0 as f64)
    };
    let mut out = vec![0.0; oh * ow];
    for y in 0..oh {
        let (y0, y1, fy) = coord(y, h, oh);
        for x in 0..ow {
            let (x0, x1, fx) = coord(x, w, ow);
            let v = |yy: usize, xx: usize| src[yy * w + xx];
            out[y * ow + x] = (1.0 - fy) * ((1.0 - fx) * v(y0, x0) + fx * v(y0, x1)) + fy * ((1.0 - fx) * v(y1, x0) + fx * v(y1, x1));
        }
    }
    out
}

#[test]
fn linear_head_matches_manual_conv_and_upsampling() {
    let _g = RNG.lock().unwrap_or_else(|p| p.into_inner());
    let m = model(SegConfig::default());
    let x = inputs(); // (2, 3, 56, 56): a 4×4 patch grid, D = 96
    let z = cpu(m.logits(&x, false).unwrap());
    assert_eq!(z.size(), [2, 4, 56, 56]);
    // Manual: normed patch tokens of the last block (golden reference output), 1×1 conv = W·t + b per patch,
    // then bilinear upsampling of each 4×4 class map to 56×56.
    let patches = golden("vit_tiny_outputs.safetensors", "x_norm_patchtokens_56"); // (2, 16, 96)
    let vars = m.head_vs.variables();
    let w = Vec::<f32>::try_from(cpu(vars["conv.weight"].reshape([4 * 96]))).unwrap();
    let b = Vec::<f32>::try_from(cpu(vars["conv.bias"].shallow_clone())).unwrap();
    assert_eq!(vars["conv.weight"].size(), [4, 96, 1, 1]);
    let p = Vec::<f32>::try_from(patches.flatten(0, -1)).unwrap();
    let zz = Vec::<f32>::try_from(z.flatten(0, -1)).unwrap();
    let mut worst = 0.0f64;
    for img in 0..2 {
        for c in 0..4 {
            let grid: Vec<f64> = (0..16)
                .map(|n| b[c] as f64 + (0..96).map(|d| w[c * 96 + d] as f64 * p[(img * 16 + n) * 96 + d] as f64).sum::<f64>())
                .collect();
            let up = bilinear(&grid, 4, 4, 56, 56);
            for (i, v) in up.iter().enumerate() {
                worst = worst.max((v - zz[(img * 4 + c) * 56 * 56 + i] as f64).abs());
            }
        }
    }
    assert!(worst < 1e-4, "max |manual − head| = {worst}");
}

#[test]
fn bilinear_reference_hand_case() {
    let _g = RNG.lock().unwrap_or_else(|p| p.into_inner());
    // 1×2 → 1×4, align_corners false: s = (d + 0.5)/2 − 0.5 = −0.25 (clamped 0), 0.25, 0.75, 1.25 (→ x0 = 1)
    // values [0, 4] → [0, 1, 3, 4]: checks the reference used above.
    assert_eq!(bilinear(&[0.0, 4.0], 1, 2, 1, 4), vec![0.0, 1.0, 3.0, 4.0]);
    let t = Tensor::from_slice(&[0.0f32, 4.0]).reshape([1, 1, 1, 2]).upsample_bilinear2d([1, 4], false, None, None);
    assert_eq!(Vec::<f32>::try_from(t.flatten(0, -1)).unwrap(), vec![0.0, 1.0, 3.0, 4.0]);
}

#[test]
fn progressive_head_shapes_and_layers() {
    let _g = RNG.lock().unwrap_or_else(|p| p.into_inner());
    let cfg = SegConfig { head: SegHeadKind::Progressive, layers: vec![-2, -1], hidden: 32, stages: 2, ..SegConfig::default() };
    let m = model(cfg);
    let vars = m.head_vs.variables();
    assert_eq!(vars["proj.weight"].size(), [32, 192, 1, 1]); // 2 blocks × D 96
    assert_eq!(vars["up.0.weight"].size(), [16, 32, 3, 3]);
    assert_eq!(vars["up.1.weight"].size(), [8, 16, 3, 3]);
    assert_eq!(vars["cls.weight"].size(), [4, 8, 1, 1]);
    let z = m.logits(&inputs(), false).unwrap();
    assert_eq!(z.size(), [2, 4, 56, 56]);
    // The features are the final-normed patch tokens of the chosen blocks (registers stripped): for the last
    // block they equal the golden `x_norm_patchtokens`.
    let bb = load_tiny(Device::Cpu);
    let out = bb.vit.forward(&inputs(), &ForwardOptions { intermediate_layers: vec![-1], norm_intermediates: true, ..Default::default() }).unwrap();
    let last = out.intermediates[0].narrow(1, 3, 16); // CLS + 2 registers (CPU: the reference is CPU f32)
    let reference = golden("vit_tiny_outputs.safetensors", "x_norm_patchtokens_56");
    assert!(max_abs_diff(&last, &reference) < 1e-4);
    // Default layers: the last min(4, depth) blocks, here all 3 of the tiny model (3 × 96 input channels).
    let d = model(SegConfig { head: SegHeadKind::Progressive, hidden: 8, stages: 1, ..SegConfig::default() });
    assert_eq!(d.cfg.layers, vec![-3, -2, -1]);
    assert_eq!(d.head_vs.variables()["proj.weight"].size(), [8, 288, 1, 1]);
    // Non-square input: 56×28 gives a 4×2 grid and logits at 56×28.
    let z = m.logits(&inputs().narrow(3, 0, 28).contiguous(), false).unwrap();
    assert_eq!(z.size(), [2, 4, 56, 28]);
}

#[test]
fn ce_dice_loss_hand_case() {
    let _g = RNG.lock().unwrap_or_else(|p| p.into_inner());
    // Uniform logits over 4 classes on a 2×2 image whose pixels are all class 0:
    // CE = ln 4; p = 1/4 everywhere; class 0: Σp·y = 1, Σp = 1, Σy = 4 → (2 + ε)/(5 + ε);
    // classes 1..3: (0 + ε)/(1 + ε). Loss = 0.5·ln 4 + 0.5·(1 − mean).
    let logits = Tensor::zeros([1, 4, 2, 2], (Kind::Float, Device::Cpu));
    let target = Tensor::zeros([1, 2, 2], (Kind::Int64, Device::Cpu));
    let (loss, ce, dice) = ce_dice_loss(&logits, &target, 1e-6).unwrap();
    let eps = 1e-6;
    let d = ((2.0 + eps) / (5.0 + eps) + 3.0 * eps / (1.0 + eps)) / 4.0;
    assert!((ce.double_value(&[]) - 4f64.ln()).abs() < 1e-6);
    assert!((dice.double_value(&[]) - d).abs() < 1e-6);
    assert!((loss.double_value(&[]) - (0.5 * 4f64.ln() + 0.5 * (1.0 - d))).abs() < 1e-6);
    // A confident correct prediction: CE ≈ 0, Dice of class 0 = 1, absent classes (ε/(0 + ε)) = 1 → loss ≈ 0.
    let sharp = Tensor::from_slice(&[50.0f32, 0.0, 0.0, 0.0]).reshape([1, 4, 1, 1]).expand([1, 4, 2, 2], false).contiguous();
    let (loss, _, _) = ce_dice_loss(&sharp, &target, 1e-6).unwrap();
    assert!(loss.double_value(&[]) < 1e-5, "{}", loss.double_value(&[]));
}

/// A learnable toy problem on the golden inputs: the label of each pixel is 1 where the first channel is above its
/// image mean (a pattern the patch tokens carry), else 0.
fn toy_labels(x: &Tensor) -> Tensor {
    let c0 = x.select(1, 0);
    let mean = c0.mean_dim(&[1i64, 2][..], true, Kind::Float);
    c0.gt_tensor(&mean).to_kind(Kind::Uint8)
}

#[test]
fn training_lowers_the_loss_and_frozen_backbone_stays() {
    let _g = RNG.lock().unwrap_or_else(|p| p.into_inner());
    let cfg = SegConfig { num_classes: 2, lr: 1e-2, ..SegConfig::default() };
    let mut m = model(cfg);
    let before = m.backbone.vs.variables()["blocks.0.attn.qkv.weight"].copy();
    let x = inputs();
    let y = toy_labels(&x);
    let first = m.train_step(&x, &y, 1e-2).unwrap();
    let mut last = first.clone();
    for _ in 0..40 {
        last = m.train_step(&x, &y, 1e-2).unwrap();
    }
    assert_eq!(m.steps(), 41);
    assert!(last.loss < 0.8 * first.loss, "loss {} → {}", first.loss, last.loss);
    assert!(last.soft_dice > first.soft_dice);
    let after = &m.backbone.vs.variables()["blocks.0.attn.qkv.weight"];
    assert_eq!(max_abs_diff(&before, after), 0.0, "a frozen backbone must not change");
    let (labels, logits) = m.predict(&x, true).unwrap();
    assert_eq!(labels.size(), [2, 56, 56]);
    assert_eq!(labels.kind(), Kind::Uint8);
    assert_eq!(logits.unwrap().argmax(1, false).to_kind(Kind::Uint8), labels);
}

#[test]
fn unfrozen_backbone_trains() {
    let _g = RNG.lock().unwrap_or_else(|p| p.into_inner());
    let cfg = SegConfig { num_classes: 2, unfreeze: true, lr: 1e-2, backbone_lr: 1e-3, ..SegConfig::default() };
    let mut m = model(cfg);
    let before = m.backbone.vs.variables()["blocks.0.attn.qkv.weight"].copy();
    let x = inputs();
    m.train_step(&x, &toy_labels(&x), 1e-2).unwrap();
    let after = &m.backbone.vs.variables()["blocks.0.attn.qkv.weight"];
    assert!(max_abs_diff(&before, after) > 0.0, "an unfrozen backbone must change");
}

#[test]
fn save_load_resumes_exactly() {
    let _g = RNG.lock().unwrap_or_else(|p| p.into_inner());
    let dir = common::tmpdir("seg");
    let file = dir.join("state.safetensors");
    let cfg = SegConfig { num_classes: 2, head: SegHeadKind::Progressive, layers: vec![-1], hidden: 16, stages: 1, ..SegConfig::default() };
    let x = inputs();
    let y = toy_labels(&x);
    let mut a = model(cfg.clone());
    for _ in 0..3 {
        a.train_step(&x, &y, 5e-3).unwrap();
    }
    a.save(&file, true, HashMap::from([("epoch".to_string(), "3".to_string())])).unwrap();
    // A model built with another seed, loaded from the file (with force: the seed is part of the config), continues
    // exactly like the original.
    let mut b = model(SegConfig { seed: 99, ..cfg.clone() });
    let e = b.load(&file, false).unwrap_err().to_string();
    assert!(e.contains("differing: seed") && e.contains("nothing was loaded"), "{e}");
    let md = b.load(&file, true).unwrap();
    assert_eq!(md["epoch"], "3");
    assert_eq!(b.steps(), 3);
    let ra = a.train_step(&x, &y, 5e-3).unwrap();
    let rb = b.train_step(&x, &y, 5e-3).unwrap();
    assert!((ra.loss - rb.loss).abs() < 1e-6, "{} vs {}", ra.loss, rb.loss);
    assert!(max_abs_diff(&a.logits(&x, false).unwrap(), &b.logits(&x, false).unwrap()) < 1e-5);
    // Without the optimizer: weights only, step count of the new model untouched.
    let best = dir.join("best.safetensors");
    a.save(&best, false, HashMap::new()).unwrap();
    let mut c = model(cfg.clone());
    c.load(&best, false).unwrap();
    assert_eq!(c.steps(), 0);
    assert!(max_abs_diff(&a.logits(&x, false).unwrap(), &c.logits(&x, false).unwrap()) < 1e-6);
    // Strictness: another head kind refuses the file, naming the mismatch.
    let mut d = model(SegConfig { num_classes: 2, ..SegConfig::default() });
    let e = d.load(&best, false).unwrap_err();
    assert!(matches!(e, Error::Weights { .. }) && e.to_string().contains("does not match"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn unfrozen_resume_with_stochastic_depth_is_exact() {
    let _g = RNG.lock().unwrap_or_else(|p| p.into_inner());
    // Drop path draws from LibTorch's generator; the step seeds it from (seed, step), so a reloaded model repeats
    // the uninterrupted run's draws.
    let mut vit = common::tiny_config();
    vit.drop_path_rate = 0.3;
    let make = || SegModel::new(SegConfig { num_classes: 2, unfreeze: true, backbone_lr: 1e-3, ..SegConfig::default() }, cxformer_core::Backbone::load(&vit, common::tiny_weights(), test_device()).unwrap().0).unwrap();
    let dir = common::tmpdir("seg-dp");
    let file = dir.join("s.safetensors");
    let x = inputs();
    let y = toy_labels(&x);
    let mut a = make();
    a.train_step(&x, &y, 1e-2).unwrap();
    a.save(&file, true, HashMap::new()).unwrap();
    let mut b = make();
    b.load(&file, false).unwrap();
    let (ra, rb) = (a.train_step(&x, &y, 1e-2).unwrap(), b.train_step(&x, &y, 1e-2).unwrap());
    assert_eq!(ra.loss, rb.loss);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_inputs_are_named() {
    let _g = RNG.lock().unwrap_or_else(|p| p.into_inner());
    let mut m = model(SegConfig::default());
    let x = inputs();
    let bad = Tensor::full([2, 56, 56], 7, (Kind::Uint8, Device::Cpu));
    let e = m.train_step(&x, &bad, 1e-3).unwrap_err().to_string();
    assert!(e.contains("class indices must be in 0..3") && e.contains("7..=7"), "{e}");
    let e = m.train_step(&x, &Tensor::zeros([2, 28, 28], (Kind::Uint8, Device::Cpu)), 1e-3).unwrap_err().to_string();
    assert!(e.contains("expected shape [2, 56, 56]"), "{e}");
    let e = SegModel::new(SegConfig { head: SegHeadKind::Progressive, layers: vec![5], ..SegConfig::default() }, load_tiny(test_device()))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("block 5 does not exist") && e.contains("3 blocks"), "{e}");
    let e = SegConfig::from_json(r#"{"hed":"linear"}"#).unwrap_err().to_string();
    assert!(e.contains("unknown field `hed`"), "{e}");
}

#[test]
fn bf16_autocast_stays_close_to_f32() {
    let _g = RNG.lock().unwrap_or_else(|p| p.into_inner());
    let x = inputs();
    let a = model(SegConfig::default());
    let b = SegModel::new(SegConfig { precision: Precision::Bf16, ..SegConfig::default() }, load_tiny(test_device())).unwrap();
    let (za, zb) = (a.logits(&x, false).unwrap(), b.logits(&x, false).unwrap());
    assert_eq!(zb.kind(), Kind::Float);
    let scale = za.abs().max().double_value(&[]);
    assert!(max_abs_diff(&za, &zb) < 0.05 * scale.max(1.0), "bf16 deviates by {}", max_abs_diff(&za, &zb));
}
