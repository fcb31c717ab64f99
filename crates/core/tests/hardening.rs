//! Issue #13 in the core: architecture bounds and header checks before any allocation, q/k/v part shapes,
//! non-finite weights, DINOv2's init of every parameter and KoLeo outside autocast.
mod common;
use common::*;
use cxformer_core::shim::{AutocastDevice, AutocastGuard};
use cxformer_core::ssl::loss::{koleo, koleo_similarities};
use cxformer_core::weights::{LoadOptions, check_weights, write_safetensors};
use cxformer_core::{Backbone, FfnKind, VitConfig, WeightFile};
use std::collections::{BTreeMap, HashMap};
use tch::{Device, Kind, Tensor, nn};

fn golden_tensors() -> BTreeMap<String, Tensor> {
    WeightFile::open(tiny_weights()).unwrap().tensors().unwrap()
}

fn write(tag: &str, tensors: &BTreeMap<String, Tensor>) -> std::path::PathBuf {
    let p = tmpdir(tag).join("w.safetensors");
    write_safetensors(&p, tensors, HashMap::new()).unwrap();
    p
}

fn err<T>(r: cxformer_core::Result<T>, what: &str) -> String {
    match r {
        Ok(_) => panic!("{what} must fail"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn expected_shapes_equal_the_built_model_for_every_variant() {
    let mut variants = vec![tiny_config(), small_swiglu(), small_vit(64, 3, 42, 0)];
    let mut bare = small_vit(48, 2, 28, 2);
    (bare.qkv_bias, bare.proj_bias, bare.ffn_bias, bare.layerscale_init, bare.use_mask_token) = (false, false, false, None, false);
    bare.in_chans = 1;
    variants.push(bare);
    let mut sw = small_swiglu();
    sw.ffn_bias = false;
    sw.ffn = FfnKind::Swiglu;
    variants.push(sw);
    for cfg in variants {
        let vs = nn::VarStore::new(Device::Cpu);
        cxformer_core::Vit::new(&vs.root(), &cfg).unwrap();
        let built: BTreeMap<String, Vec<i64>> = vs.variables().into_iter().map(|(k, v)| (k, v.size())).collect();
        assert_eq!(cfg.expected_shapes(), built, "{cfg:?}");
    }
}

#[test]
fn hostile_architecture_values_fail_before_allocation_naming_the_key() {
    let cases: Vec<(&str, Box<dyn Fn(&mut VitConfig)>)> = vec![
        ("depth", Box::new(|c| c.depth = 1_000_000)),
        ("img_size", Box::new(|c| c.img_size = 140_000)),
        ("num_register_tokens", Box::new(|c| c.num_register_tokens = 1_000_000_000)),
        ("mlp_ratio", Box::new(|c| c.mlp_ratio = 1e9)),
        ("layer_norm_eps", Box::new(|c| c.layer_norm_eps = 1e300)),
        ("embed_dim", Box::new(|c| c.embed_dim = 1 << 40)),
        ("layerscale_init", Box::new(|c| c.layerscale_init = Some(f64::NAN))),
        ("parameters", Box::new(|c| (c.embed_dim, c.num_heads, c.depth) = (16384, 128, 512))),
    ];
    for (key, mutate) in cases {
        let mut cfg = tiny_config();
        mutate(&mut cfg);
        let e = err(cfg.validate(), key);
        assert!(e.contains(key), "{key}: {e}");
        // Through the loader: refused before the model exists (a 1e6-block model would take GBs).
        let e = err(Backbone::load(&cfg, tiny_weights(), Device::Cpu), key);
        assert!(e.contains(key), "{key} via load: {e}");
        let e = err(Backbone::random(&cfg, Device::Cpu, 0), key);
        assert!(e.contains(key), "{key} via random: {e}");
    }
}

#[test]
fn header_shapes_are_checked_before_allocation_and_qkv_parts_by_shape() {
    // A query bias of shape [1, 96] used to reach Tensor::cat and panic.
    let mut t = golden_tensors();
    t.insert("encoder.layer.0.attention.attention.query.bias".into(), Tensor::zeros([1, 96], (Kind::Float, Device::Cpu)));
    let p = write("qbias", &t);
    let e = err(Backbone::load(&tiny_config(), &p, Device::Cpu), "query bias [1, 96]");
    assert!(e.contains("shape mismatch (1)") && e.contains("encoder.layer.0.attention.attention.query.bias (file [1, 96], model [96])"), "{e}");
    assert!(e.contains("w.safetensors"), "{e}");
    // A file whose pos_embed says 1e4 x 1e4 cells against a config claiming it: the config is bounded first,
    // and a config within bounds that the shapes contradict fails in check_weights without building anything.
    let mut cfg = tiny_config();
    cfg.img_size = 14 * 300;
    let file = WeightFile::open(tiny_weights()).unwrap();
    let e = err(check_weights(&file, &cfg), "pos grid mismatch");
    assert!(e.contains("embeddings.position_embeddings") && e.contains("[1, 90001, 96]"), "{e}");
    let mut cfg = tiny_config();
    cfg.depth = 500;
    let e = err(check_weights(&file, &cfg), "depth 500");
    assert!(e.contains("missing (6958): encoder.layer.3."), "{e}");
}

#[test]
fn non_finite_weights_are_refused_by_default_naming_tensor_and_count() {
    let mut t = golden_tensors();
    let w = t["layernorm.weight"].copy();
    let _ = w.get(3).fill_(f64::NAN);
    let _ = w.get(7).fill_(f64::INFINITY);
    t.insert("layernorm.weight".into(), w);
    let q = t["encoder.layer.1.attention.attention.key.weight"].copy();
    let _ = q.get(0).get(0).fill_(f64::NEG_INFINITY);
    t.insert("encoder.layer.1.attention.attention.key.weight".into(), q);
    let p = write("nan", &t);
    let e = err(Backbone::load(&tiny_config(), &p, Device::Cpu), "NaN weights");
    assert!(e.contains("2 tensor(s) hold NaN or infinite values"), "{e}");
    assert!(e.contains("layernorm.weight (2 of 96)"), "{e}");
    assert!(e.contains("encoder.layer.1.attention.attention.key.weight"), "{e}");
    assert!(e.contains("--allow-nonfinite"), "{e}");
    let (b, _) = Backbone::load_with(&tiny_config(), &p, Device::Cpu, LoadOptions { allow_non_finite: true }).unwrap();
    assert!(b.vs.variables()["norm.weight"].isnan().any().int64_value(&[]) == 1);
}

#[test]
fn from_scratch_init_matches_dinov2_for_every_parameter() {
    // vit_small-like widths so that the sample statistics are tight.
    let mut cfg = small_vit(384, 2, 56, 4);
    cfg.layerscale_init = Some(1e-5);
    let b = Backbone::random(&cfg, Device::Cpu, 3).unwrap();
    let v = b.vs.variables();
    let f = |n: &str, op: &dyn Fn(&Tensor) -> Tensor| op(&v[n]).double_value(&[]);
    let std = |n: &str| f(n, &|t| t.std(true));
    let (min, max) = (|n: &str| f(n, &|t| t.min()), |n: &str| f(n, &|t| t.max()));
    // patch_embed: PyTorch's Conv2d default (kaiming_uniform a=sqrt(5)): U(±1/sqrt(fan_in)) for weight and bias.
    let fan_in = 3.0 * 14.0 * 14.0;
    let bound = 1.0 / f64::sqrt(fan_in);
    assert!(max("patch_embed.proj.weight") <= bound && min("patch_embed.proj.weight") >= -bound);
    let s = std("patch_embed.proj.weight");
    assert!((s - bound / 3f64.sqrt()).abs() < 0.02 * bound, "patch weight std {s}, expected {}", bound / 3f64.sqrt());
    assert!(max("patch_embed.proj.bias") <= bound && min("patch_embed.proj.bias") >= -bound);
    let sb = std("patch_embed.proj.bias");
    assert!((sb - bound / 3f64.sqrt()).abs() < 0.15 * bound, "patch bias std {sb}");
    for (name, t) in &v {
        let std = t.std(true).double_value(&[]);
        let absmax = t.abs().max().double_value(&[]);
        let mean = t.mean(Kind::Float).double_value(&[]);
        let block_linear = name.starts_with("blocks.") && (name.contains(".attn.") || name.contains(".mlp."));
        if block_linear && name.ends_with(".weight") || name == "pos_embed" {
            assert!((std - 0.02).abs() < 0.001, "{name}: std {std}, expected trunc_normal(0.02)");
        } else if block_linear && name.ends_with(".bias") || name == "mask_token" {
            assert_eq!(absmax, 0.0, "{name}: expected zeros");
        } else if name.contains("norm") && name.ends_with(".weight") {
            assert_eq!((mean, std), (1.0, 0.0), "{name}: LayerNorm weight 1");
        } else if name.contains("norm") && name.ends_with(".bias") {
            assert_eq!(absmax, 0.0, "{name}: LayerNorm bias 0");
        } else if name.ends_with(".gamma") {
            assert!((mean - 1e-5).abs() < 1e-12 && std < 1e-12, "{name}: LayerScale init");
        } else if name == "cls_token" || name == "register_tokens" {
            assert!(std > 1e-7 && std < 2e-6, "{name}: N(0, 1e-6²), std {std}");
        } else {
            assert!(name.starts_with("patch_embed."), "{name}: no expectation for this parameter");
        }
    }
}

#[test]
fn koleo_neighbour_search_stays_float32_under_bf16_autocast() {
    // Row 0's nearest neighbour is row 2 in float32 (cos 0.999950 vs 0.999948), a tie in bf16 (both 1.0), where
    // argmax takes row 1: the loss tells which precision the search ran in.
    let x = Tensor::from_slice(&[1f32, 0., 0., 0., 1., 0.0102, 0., 0., 1., -0.0100, 0., 0., 0., 0., 1., 0., 0., 0., 0., 1.]).reshape([5, 4]);
    let unit = &x / x.norm_scalaropt_dim(2, [-1i64].as_slice(), true);
    let reference = koleo(&x).unwrap().double_value(&[]);
    assert_eq!(koleo_similarities(&unit).argmax(1, false).int64_value(&[0]), 2);
    let _bf16 = AutocastGuard::bf16(AutocastDevice::Cpu).unwrap();
    // The search as it would run under the step's autocast: bf16, and another neighbour.
    let in_bf16 = koleo_similarities(&unit);
    assert_eq!(in_bf16.kind(), Kind::BFloat16);
    assert_eq!(in_bf16.argmax(1, false).int64_value(&[0]), 1, "the input must separate the two precisions");
    // koleo leaves autocast itself: float32 search, the float32 value, and autocast is back afterwards.
    let inside = koleo(&x).unwrap();
    assert_eq!(inside.kind(), Kind::Float);
    assert_eq!(inside.double_value(&[]), reference);
    assert_eq!(koleo_similarities(&unit).kind(), Kind::BFloat16, "autocast restored after koleo");
    {
        let _off = AutocastGuard::disabled(Device::Cpu).unwrap();
        assert_eq!(koleo_similarities(&unit).kind(), Kind::Float);
    }
}
