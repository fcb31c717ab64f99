//! Equivalence with the reference DINOv2 implementation on the tiny HF-layout model
//! (../shared/fixtures/golden, produced by facebookresearch/dinov2; README there).
mod common;
use common::*;
use cxformer_core::{ForwardOptions, Precision};
use tch::{Device, Kind};

const TOL: f64 = 1e-4;

fn check(suffix: &str, masks: bool) {
    let model = load_tiny(test_device());
    let x = golden("vit_tiny_inputs.safetensors", "pixel_values_56");
    let opts = ForwardOptions {
        masks: masks.then(|| golden("vit_tiny_inputs.safetensors", "masks_56")),
        ..Default::default()
    };
    let out = model.embed(&x, &opts, Precision::F32).unwrap();
    let o = |n: &str| golden("vit_tiny_outputs.safetensors", &format!("{n}{suffix}"));
    for (name, got) in [
        ("x_norm_clstoken", &out.cls),
        ("x_norm_regtokens", &out.registers),
        ("x_norm_patchtokens", &out.patches),
        ("x_prenorm", &out.prenorm),
        ("hf_last_hidden_state", &out.last_hidden_state),
        ("hf_pooler_output", &out.cls),
    ] {
        let d = max_abs_diff(got, &o(name));
        assert!(d < TOL, "{name}{suffix}: max |diff| {d:e} >= {TOL:e}");
    }
    if !masks {
        let d = max_abs_diff(&out.cls, &o("forward_eval"));
        assert!(d < TOL, "forward_eval: {d:e}");
    }
}

#[test]
fn tiny_hf_matches_reference() {
    check("_56", false);
}

#[test]
fn tiny_hf_matches_reference_with_masks() {
    check("_56_masked", true);
}

#[test]
fn masks_change_only_what_they_should() {
    // Image 1 of the golden masks: masked outputs differ from unmasked ones; an all-false mask changes nothing.
    let model = load_tiny(test_device());
    let x = golden("vit_tiny_inputs.safetensors", "pixel_values_56");
    let plain = model.embed(&x, &ForwardOptions::default(), Precision::F32).unwrap();
    let none = tch::Tensor::zeros([2, 16], (Kind::Bool, Device::Cpu));
    let same = model.embed(&x, &ForwardOptions { masks: Some(none), ..Default::default() }, Precision::F32).unwrap();
    assert!(max_abs_diff(&plain.last_hidden_state, &same.last_hidden_state) < 1e-6);
}

#[test]
fn intermediate_layers_are_block_outputs() {
    let model = load_tiny(test_device());
    let x = golden("vit_tiny_inputs.safetensors", "pixel_values_56");
    let opts = ForwardOptions { intermediate_layers: vec![-1, 0], norm_intermediates: false, ..Default::default() };
    let out = model.embed(&x, &opts, Precision::F32).unwrap();
    // The last block's output is the pre-norm sequence.
    assert!(max_abs_diff(&out.intermediates[0], &out.prenorm) < 1e-7);
    assert_eq!(out.intermediates[1].size(), vec![2, 19, 96]);
    assert!(max_abs_diff(&out.intermediates[1], &out.prenorm) > 1e-3);
    let opts = ForwardOptions { intermediate_layers: vec![2], norm_intermediates: true, ..Default::default() };
    let out = model.embed(&x, &opts, Precision::F32).unwrap();
    assert!(max_abs_diff(&out.intermediates[0], &out.last_hidden_state) < 1e-7);
    let bad = ForwardOptions { intermediate_layers: vec![3], ..Default::default() };
    let err = model.embed(&x, &bad, Precision::F32).unwrap_err().to_string();
    assert!(err.contains("intermediate layer 3") && err.contains("3 blocks"), "{err}");
}

#[test]
fn bf16_autocast_close_to_f32() {
    let model = load_tiny(test_device());
    let x = golden("vit_tiny_inputs.safetensors", "pixel_values_56");
    let f = model.embed(&x, &ForwardOptions::default(), Precision::F32).unwrap();
    let b = model.embed(&x, &ForwardOptions::default(), Precision::Bf16).unwrap();
    let d = max_abs_diff(&f.last_hidden_state, &b.last_hidden_state);
    // bf16 has 8 mantissa bits: values up to ~4 give errors of a few 1e-2 after 3 blocks, never more.
    assert!(d < 0.15, "bf16 vs f32 max |diff| {d}");
    assert!(d > 0.0, "bf16 autocast had no effect");
    assert_eq!(b.last_hidden_state.kind(), Kind::Float);
}

#[test]
fn bad_inputs_are_clear_errors() {
    let model = load_tiny(test_device());
    let opts = ForwardOptions::default();
    let e = |x: tch::Tensor| model.embed(&x, &opts, Precision::F32).unwrap_err().to_string();
    let msg = e(tch::Tensor::zeros([1, 3, 50, 56], (Kind::Float, Device::Cpu)));
    assert!(msg.contains("50x56") && msg.contains("patch size 14"), "{msg}");
    let msg = e(tch::Tensor::zeros([1, 1, 56, 56], (Kind::Float, Device::Cpu)));
    assert!(msg.contains("1 channels") && msg.contains("expects 3"), "{msg}");
    let msg = e(tch::Tensor::zeros([3, 56, 56], (Kind::Float, Device::Cpu)));
    assert!(msg.contains("4 dimensions"), "{msg}");
    let msg = e(tch::Tensor::zeros([1, 3, 10, 10], (Kind::Float, Device::Cpu)));
    assert!(msg.contains("10x10"), "{msg}");
    let x = golden("vit_tiny_inputs.safetensors", "pixel_values_56");
    let bad = ForwardOptions { masks: Some(tch::Tensor::zeros([2, 15], (Kind::Bool, Device::Cpu))), ..Default::default() };
    let msg = model.embed(&x, &bad, Precision::F32).unwrap_err().to_string();
    assert!(msg.contains("[2, 16]"), "{msg}");
}

#[test]
fn other_resolutions_interpolate_and_run() {
    // 70x42 px: a 5x3 grid, non-square, so the position embedding is interpolated (antialiased bicubic for
    // the with-registers family). Shapes and finiteness; the interpolation values are tested in interp.rs.
    let model = load_tiny(test_device());
    let x = tch::Tensor::randn([1, 3, 70, 42], (Kind::Float, Device::Cpu));
    let out = model.embed(&x, &ForwardOptions::default(), Precision::F32).unwrap();
    assert_eq!(out.patches.size(), vec![1, 15, 96]);
    assert_eq!(out.grid, (5, 3));
    assert!(out.last_hidden_state.isfinite().all().int64_value(&[]) == 1);
}
