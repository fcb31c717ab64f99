//! Model pieces checked against manual computations: SwiGLU FFN and its HF key mapping, register-token
//! placement, drop path, presets.
mod common;
use common::*;
use cxformer_core::{Backbone, FfnKind, ForwardOptions, Precision, SaveLayout, VitConfig, WeightFile};
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

#[test]
fn swiglu_block_matches_manual_formula_and_round_trips() {
    let cfg = small_swiglu();
    // hidden' = ((int(48·4·2/3) + 7) / 8) · 8 = 128
    assert_eq!(cfg.ffn_hidden(), 128);
    let model = Backbone::random(&cfg, Device::Cpu, 7).unwrap();
    let vars = model.vs.variables();
    assert_eq!(vars["blocks.0.mlp.w12.weight"].size(), vec![256, 48]);
    assert_eq!(vars["blocks.0.mlp.w3.weight"].size(), vec![48, 128]);
    let x = Tensor::randn([2, 3, 28, 28], (Kind::Float, Device::Cpu));
    let out = model.embed(&x, &ForwardOptions { intermediate_layers: vec![0, 1], ..Default::default() }, Precision::F32).unwrap();

    // Manual block 1 from block 0's output: x + ls1·attn(norm1(x)); x + ls2·w3(silu(x1)·x2).
    let v = |n: &str| vars[&format!("blocks.1.{n}")].shallow_clone();
    let x0 = &out.intermediates[0];
    let ln = |t: &Tensor, p: &str| t.layer_norm([48], Some(&v(&format!("{p}.weight"))), Some(&v(&format!("{p}.bias"))), 1e-6, false);
    let (b, t, d) = x0.size3().unwrap();
    let qkv = ln(x0, "norm1").linear(&v("attn.qkv.weight"), Some(&v("attn.qkv.bias"))).reshape([b, t, 3, 2, 24]).permute([2, 0, 3, 1, 4]);
    let (q, k, vv) = (qkv.get(0), qkv.get(1), qkv.get(2));
    let att = (q.matmul(&k.transpose(-2, -1)) / (24f64).sqrt()).softmax(-1, Kind::Float).matmul(&vv);
    let att = att.transpose(1, 2).reshape([b, t, d]).linear(&v("attn.proj.weight"), Some(&v("attn.proj.bias")));
    let x1 = x0 + att * v("ls1.gamma");
    let h = ln(&x1, "norm2").linear(&v("mlp.w12.weight"), Some(&v("mlp.w12.bias")));
    let ffn = (h.narrow(-1, 0, 128).silu() * h.narrow(-1, 128, 128)).linear(&v("mlp.w3.weight"), Some(&v("mlp.w3.bias")));
    let want = &x1 + ffn * v("ls2.gamma");
    assert!(max_abs_diff(&out.intermediates[1], &want) < 1e-5);

    // HF names for SwiGLU are mlp.weights_in / mlp.weights_out; the file loads back to the same outputs.
    let dir = tmpdir("swiglu");
    let p = dir.join("m.safetensors");
    model.save(&p, SaveLayout::Hf, Kind::Float, HashMap::new()).unwrap();
    let names = WeightFile::open(&p).unwrap().names();
    assert!(names.contains(&"encoder.layer.1.mlp.weights_in.weight".to_string()), "{names:?}");
    assert!(names.contains(&"encoder.layer.1.mlp.weights_out.bias".to_string()));
    let (back, _) = Backbone::load(&cfg, &p, Device::Cpu).unwrap();
    let again = back.embed(&x, &ForwardOptions::default(), Precision::F32).unwrap();
    assert_eq!(max_abs_diff(&again.last_hidden_state, &out.last_hidden_state), 0.0);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn registers_carry_no_position_embedding() {
    // Token layout [CLS, REG×3, patches]: before block 0, each register token equals its learned value
    // (no position added), CLS equals cls_token + pos_embed[0].
    let cfg = small_swiglu();
    let model = Backbone::random(&cfg, Device::Cpu, 1).unwrap();
    let x = Tensor::randn([2, 3, 28, 28], (Kind::Float, Device::Cpu));
    let (tokens, grid) = tch::no_grad(|| model.vit.prepare_tokens(&x, None)).unwrap();
    assert_eq!(grid, (2, 2));
    assert_eq!(tokens.size(), vec![2, 1 + 3 + 4, 48]);
    let v = model.vs.variables();
    let reg = v["register_tokens"].get(0);
    assert_eq!(max_abs_diff(&tokens.get(1).narrow(0, 1, 3), &reg), 0.0);
    let cls = v["cls_token"].get(0).get(0) + v["pos_embed"].get(0).get(0);
    assert!(max_abs_diff(&tokens.get(0).get(0), &cls) < 1e-7);
}

#[test]
fn drop_path_only_in_training() {
    let mut cfg = small_swiglu();
    cfg.drop_path_rate = 0.5;
    let model = Backbone::random(&cfg, Device::Cpu, 3).unwrap();
    let x = Tensor::randn([16, 3, 28, 28], (Kind::Float, Device::Cpu));
    let eval1 = tch::no_grad(|| model.vit.forward(&x, &ForwardOptions::default())).unwrap();
    let eval2 = tch::no_grad(|| model.vit.forward(&x, &ForwardOptions::default())).unwrap();
    assert_eq!(max_abs_diff(&eval1.prenorm, &eval2.prenorm), 0.0);
    // Training: the stochastic-depth primitive zeroes whole samples with probability r and scales the rest
    // by 1/(1−r), so the expectation is unchanged.
    tch::manual_seed(0);
    let ones = Tensor::ones([4000, 3, 5], (Kind::Float, Device::Cpu));
    let y = cxformer_core::model::drop_path(ones.shallow_clone(), 0.25, true);
    let row_min = y.amin([1, 2], false);
    let row_max = y.amax([1, 2], false);
    assert_eq!(max_abs_diff(&row_min, &row_max), 0.0, "a sample is dropped or kept as a whole");
    let dropped = row_max.eq(0.0).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
    assert!((dropped - 0.25).abs() < 0.03, "dropped fraction {dropped}");
    let kept_value = row_max.max().double_value(&[]);
    assert!((kept_value - 1.0 / 0.75).abs() < 1e-6);
    assert_eq!(max_abs_diff(&cxformer_core::model::drop_path(ones.shallow_clone(), 0.25, false), &ones), 0.0);
    let train = tch::no_grad(|| model.vit.forward(&x, &ForwardOptions { train: true, ..Default::default() })).unwrap();
    assert!(max_abs_diff(&train.prenorm, &eval1.prenorm) > 1e-4);
}

#[test]
fn presets_build_and_run() {
    for name in ["vit_small", "vit_base"] {
        let mut cfg = VitConfig::from_preset(name).unwrap();
        cfg.depth = 1; // one block is enough to check the preset's shapes
        let m = Backbone::random(&cfg, Device::Cpu, 0).unwrap();
        let out = m.embed(&Tensor::randn([1, 3, 28, 28], (Kind::Float, Device::Cpu)), &ForwardOptions::default(), Precision::F32).unwrap();
        assert_eq!(out.last_hidden_state.size(), vec![1, 1 + 4 + 4, cfg.embed_dim]);
        assert!(out.last_hidden_state.isfinite().all().int64_value(&[]) == 1);
    }
    let g = VitConfig::from_preset("vit_giant2").unwrap();
    assert_eq!((g.embed_dim, g.depth, g.num_heads, g.ffn), (1536, 40, 24, FfnKind::Swiglu));
    let e = VitConfig::from_preset("vit_tiny").unwrap_err().to_string();
    assert!(e.contains("vit_tiny") && e.contains("vit_small"), "{e}");
}
