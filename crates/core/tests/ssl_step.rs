//! The SSL training step on a tiny model: finite losses, learning on a fixed batch, EMA arithmetic,
//! frozen last layer, NaN refusal, and exact resume from a checkpoint.
mod common;

use cxformer_core::ssl::head::HeadConfig;
use cxformer_core::ssl::{CenteringKind, SslBatch, SslConfig, SslModel, StepSchedule};
use cxformer_core::Precision;
use tch::{Device, Kind, Tensor};

fn cfg(centering: CenteringKind, separate_ibot: bool) -> SslConfig {
    let model = common::small_vit(48, 2, 28, 2);
    let head = HeadConfig { in_dim: 48, out_dim: 32, hidden_dim: 64, bottleneck_dim: 16, nlayers: 3 };
    SslConfig { ibot_head: separate_ibot.then_some(HeadConfig { out_dim: 24, ..head }), centering, ..common::small_ssl(model, head) }
}

fn batch(seed: i64, b: i64) -> SslBatch {
    tch::manual_seed(seed);
    let masks = Tensor::rand([2 * b, 4], (Kind::Float, Device::Cpu)).lt(0.4);
    SslBatch {
        global_crops: Tensor::randn([2 * b, 3, 28, 28], (Kind::Float, Device::Cpu)),
        local_crops: Some(Tensor::randn([2 * b, 3, 14, 14], (Kind::Float, Device::Cpu))),
        masks,
    }
}

const SCHED: StepSchedule = StepSchedule { lr: 1e-3, wd: 0.04, momentum: 0.9, teacher_temp: 0.04, last_layer_lr: 1e-3 };

#[test]
fn steps_are_finite_and_learn_a_fixed_batch() {
    for (centering, sep) in [(CenteringKind::Centering, true), (CenteringKind::SinkhornKnopp, false)] {
        let mut m = SslModel::new(cfg(centering, sep), Device::Cpu, 0).unwrap();
        let bt = batch(1, 6);
        let mut losses = vec![];
        for it in 0..12 {
            let r = m.step(&bt, &SCHED, it).unwrap();
            assert!(r.total_loss.is_finite() && r.grad_norm_backbone > 0.0 && r.grad_norm_dino_head > 0.0);
            // The collapse indicator is an entropy over K = 32 prototypes, and the DINO global term is a mean
            // cross-entropy against those same targets, logged as CE·2/terms (terms = 2·1 + 2·2 = 6 here):
            // 0 < H(p) <= ln K and H(p) <= CE(p, q) (Gibbs).
            let ln_k = 32f64.ln();
            let ce = r.dino_global_crops_loss * 6.0 / 2.0;
            assert!(r.teacher_entropy > 0.0 && r.teacher_entropy <= ln_k + 1e-9, "{centering:?} it {it}: {}", r.teacher_entropy);
            assert!(r.teacher_entropy <= ce + 1e-5, "{centering:?} it {it}: H {} > CE {ce}", r.teacher_entropy);
            if sep {
                assert!(r.grad_norm_ibot_head > 0.0);
            }
            losses.push(r.total_loss);
        }
        assert!(losses[11] < losses[0], "{centering:?}: loss did not fall on a fixed batch: {losses:?}");
    }
}

#[test]
fn ema_and_frozen_last_layer() {
    let mut m = SslModel::new(cfg(CenteringKind::Centering, true), Device::Cpu, 0).unwrap();
    let name = "blocks.0.attn.qkv.weight";
    let t0 = m.teacher.backbone_vs.variables()[name].copy();
    let s0 = m.student.backbone_vs.variables()[name].copy();
    assert_eq!((&t0 - &s0).abs().max().double_value(&[]), 0.0, "teacher starts as a copy of the student");
    let g0 = m.student.dino_vs.variables()["last_layer.weight_g"].copy();
    let sched = StepSchedule { last_layer_lr: 0.0, ..SCHED };
    m.step(&batch(2, 4), &sched, 0).unwrap();
    let s1 = m.student.backbone_vs.variables()[name].copy();
    let t1 = m.teacher.backbone_vs.variables()[name].copy();
    let want = &t0 * 0.9 + &s1 * 0.1;
    assert!((&t1 - want).abs().max().double_value(&[]) < 1e-7, "θ_t ← m·θ_t + (1−m)·θ_s");
    assert!((&s1 - &s0).abs().max().double_value(&[]) > 0.0);
    let g1 = m.student.dino_vs.variables()["last_layer.weight_g"].copy();
    assert_eq!((&g1 - &g0).abs().max().double_value(&[]), 0.0, "last layer frozen while its lr is 0");
}

#[test]
fn non_finite_loss_is_refused_before_any_update() {
    let mut m = SslModel::new(cfg(CenteringKind::Centering, true), Device::Cpu, 0).unwrap();
    let mut bt = batch(3, 4);
    bt.global_crops = bt.global_crops.fill_(f64::NAN);
    let before = m.student.backbone_vs.variables()["pos_embed"].copy();
    let e = m.step(&bt, &SCHED, 17).unwrap_err().to_string();
    assert!(e.contains("iteration 17") && e.contains("not finite"), "{e}");
    let after = m.student.backbone_vs.variables()["pos_embed"].copy();
    assert_eq!((after - before).abs().max().double_value(&[]), 0.0);
    assert_eq!(m.optimizer.step, 0);
    assert!(m.dino_center.pending().is_none(), "a failed step records no centre statistic");
}

#[test]
fn masks_that_do_not_fit_the_global_crops_are_refused_before_any_update() {
    // 28-px crops with patch 14 have 4 patches; masks with 9 columns describe 42-px crops.
    let mut m = SslModel::new(cfg(CenteringKind::Centering, false), Device::Cpu, 0).unwrap();
    let mut bt = batch(5, 2);
    bt.masks = Tensor::zeros([4, 9], (Kind::Bool, Device::Cpu));
    let e = m.step(&bt, &SCHED, 3).unwrap_err().to_string();
    assert!(e.contains("masks have 9 patches per crop") && e.contains("28x28 px global_crops have 4"), "{e}");
    assert_eq!(m.optimizer.step, 0);
}

#[test]
fn resume_from_state_is_exact() {
    let c = cfg(CenteringKind::Centering, true);
    let mut a = SslModel::new(c.clone(), Device::Cpu, 0).unwrap();
    for it in 0..3 {
        a.step(&batch(10 + it, 4), &SCHED, it).unwrap();
    }
    let dir = std::env::temp_dir().join(format!("cxf-ssl-step-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("ckpt.safetensors");
    a.save_checkpoint(&file, 2, Default::default()).unwrap();
    assert!(a.state().contains_key("center.dino_pending"), "the lagged centre statistic is part of the state");
    let mut b = SslModel::new(c, Device::Cpu, 99).unwrap();
    let md = b.load_checkpoint(&file, false).unwrap();
    assert_eq!((md["cxformer_iteration"].as_str(), b.optimizer.step), ("2", 3));
    for it in 3..5 {
        // One batch for both: LibTorch's generator is shared with the other tests running in parallel.
        let bt = batch(10 + it, 4);
        let ra = a.step(&bt, &SCHED, it).unwrap();
        let rb = b.step(&bt, &SCHED, it).unwrap();
        assert_eq!(ra.total_loss, rb.total_loss, "iteration {it}");
    }
    let (sa, sb) = (a.state(), b.state());
    for (k, v) in &sa {
        assert_eq!((v - &sb[k]).abs().max().double_value(&[]), 0.0, "{k}");
    }
    // A checkpoint from another architecture is refused whole.
    let mut other = cfg(CenteringKind::Centering, false);
    other.dino_head.out_dim = 40;
    let mut o = SslModel::new(other, Device::Cpu, 0).unwrap();
    let e = o.load_checkpoint(&file, false).unwrap_err().to_string();
    assert!(e.contains("ckpt.safetensors") && e.contains("nothing was loaded"), "{e}");
    let e = o.load_checkpoint(&file, true).unwrap_err().to_string();
    assert!(e.contains("ckpt.safetensors") && e.contains("nothing was loaded") && e.contains("dino_head"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn dino_head_matches_manual_weight_norm() {
    use cxformer_core::ssl::head::DinoHead;
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let cfg = HeadConfig { in_dim: 6, out_dim: 5, hidden_dim: 7, bottleneck_dim: 4, nlayers: 3 };
    let head = DinoHead::new(vs.root(), &cfg);
    let v = vs.variables();
    assert_eq!(v["last_layer.weight_g"].size(), vec![5, 1]);
    assert_eq!(v["last_layer.weight_g"].min().double_value(&[]), 1.0, "g starts at 1");
    let x = Tensor::randn([3, 6], (Kind::Float, Device::Cpu));
    let lin = |h: &Tensor, i: usize| h.linear(&v[&format!("mlp.{i}.weight")], Some(&v[&format!("mlp.{i}.bias")]));
    let h = lin(&lin(&lin(&x, 0).gelu("none"), 2).gelu("none"), 4);
    let h = &h / h.norm_scalaropt_dim(2, [1i64].as_slice(), true);
    let w = &v["last_layer.weight_v"] / v["last_layer.weight_v"].norm_scalaropt_dim(2, [1i64].as_slice(), true) * &v["last_layer.weight_g"];
    let want = h.matmul(&w.transpose(0, 1));
    let got = tch::no_grad(|| head.forward(&x));
    assert!((got - want).abs().max().double_value(&[]) < 1e-6);
    // g is trainable: scaling g scales the logits of that prototype.
    tch::no_grad(|| {
        let _ = v["last_layer.weight_g"].get(2).fill_(3.0);
    });
    let scaled = tch::no_grad(|| head.forward(&x));
    let base = h.matmul(&w.transpose(0, 1));
    assert!((scaled.select(1, 2) - base.select(1, 2) * 3.0).abs().max().double_value(&[]) < 1e-5);
}

#[test]
fn bf16_autocast_step_on_cpu() {
    let mut c = cfg(CenteringKind::Centering, true);
    c.precision = Precision::Bf16;
    let mut m = SslModel::new(c, Device::Cpu, 0).unwrap();
    let r = m.step(&batch(4, 4), &SCHED, 0).unwrap();
    assert!(r.total_loss.is_finite());
    // Parameters and optimizer state stay float32 under autocast.
    assert_eq!(m.student.backbone_vs.variables()["pos_embed"].kind(), Kind::Float);
    assert_eq!(m.optimizer.slots[0].exp_avg.kind(), Kind::Float);
}
