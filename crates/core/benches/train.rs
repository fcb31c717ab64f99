//! Criterion benches of the hot pieces of the SSL training step at the reference configuration's sizes
//! (BENCHMARKS.md, "Side by side with the official DINOv2 step"), each next to the alternative it replaced:
//! - `optimizer`: clip + AdamW over the ViT-S/14 (4 registers) + DINO head parameters (28.1 M) in DINOv2's groups:
//!   the fused path (ATen `_fused_adamw_` + foreach norm, `AdamW::update`) vs torch's foreach sequence op by op
//!   (what `torch.optim.AdamW(foreach=True)` runs on CPU, and this crate ran before);
//! - `dino_head`: forward + backward of the shared DINO/iBOT head (K 4096, hidden 2048, bottleneck 256) on the
//!   student's 16 global CLS + 32 local CLS + 118 masked patch rows, one call on their concatenation vs three;
//! - `block_54_tokens`: one ViT-S block forward + backward at 54 tokens (98-px crops with 4 registers), batch 16,
//!   all rows vs the 134 rows the heads read (`Block::forward_rows`, the last block of the step).
//! Threads: CXFORMER_THREADS or all cores. Run with `bash scripts/cargo.sh bench --locked -p cxformer-core --bench train`.
use criterion::{Criterion, criterion_group, criterion_main};
use cxformer_core::VitConfig;
use cxformer_core::model::{Block, Vit, sorted_vars};
use cxformer_core::ssl::head::{DinoHead, HeadConfig};
use cxformer_core::train::optim::{AdamW, backbone_group, clip_grad_norm, head_group};
use std::time::Duration;
use tch::{Device, Kind, Tensor, nn};

fn threads() -> usize {
    let n = std::env::var("CXFORMER_THREADS").ok().and_then(|s| s.parse().ok());
    cxformer_core::runtime::set_threads(n)
}

fn head_config() -> HeadConfig {
    HeadConfig { in_dim: 384, out_dim: 4096, hidden_dim: 2048, bottleneck_dim: 256, nlayers: 3 }
}

fn optimizer(c: &mut Criterion) {
    let n = threads();
    let mut cfg = VitConfig::vit_small();
    cfg.img_size = 98;
    let vs = nn::VarStore::new(Device::Cpu);
    let _vit = Vit::new(&vs.root(), &cfg).unwrap();
    let hvs = nn::VarStore::new(Device::Cpu);
    let _head = DinoHead::new(hvs.root(), &head_config());
    let mut params = Vec::new();
    for (name, t) in sorted_vars(&vs) {
        params.push((format!("backbone.{name}"), t.shallow_clone(), backbone_group(&name, 12, 0.9, 0.2)));
    }
    for (name, t) in sorted_vars(&hvs) {
        params.push((format!("dino_head.{name}"), t.shallow_clone(), head_group(&name)));
    }
    let grads: Vec<Tensor> = params.iter().map(|(_, p, _)| p.detach().randn_like() * 1e-3).collect();
    let set_grads = |ps: &[Tensor]| {
        for (p, g) in ps.iter().zip(&grads) {
            let mut pg = p.grad();
            if pg.defined() {
                pg.copy_(g);
            } else {
                // A first backward materialises the gradient; later iterations copy into it.
                (p * g).sum(Kind::Float).backward();
            }
        }
    };
    let mut g = c.benchmark_group(format!("optimizer_vit_s_reg4_plus_head_28M/threads={n}"));
    g.sample_size(20).measurement_time(Duration::from_secs(6));
    let mut opt = AdamW::new(params.iter().map(|(a, b, c)| (a.clone(), b.shallow_clone(), c.clone())).collect(), 0.9, 0.999, 1e-8);
    let ps = opt.params();
    g.bench_function("clip_3.0_and_fused_adamw", |b| {
        b.iter_batched(
            || set_grads(&ps),
            |_| {
                let refs: Vec<&Tensor> = ps.iter().collect();
                clip_grad_norm(&refs, 3.0).unwrap();
                opt.update(3.5e-4, 3.5e-4, 0.04).unwrap();
            },
            criterion::BatchSize::PerIteration,
        )
    });
    // torch's foreach sequence, op by op (torch/optim/adamw.py `_multi_tensor_adamw`, clip_grad.py): the same
    // kernels per tensor, one pass each.
    let moments: Vec<(Tensor, Tensor)> = ps.iter().map(|p| (p.detach().zeros_like(), p.detach().zeros_like())).collect();
    let mults: Vec<(f64, f64)> = params.iter().map(|(_, _, grp)| (grp.lr_mult, grp.wd_mult)).collect();
    let mut step = 0;
    g.bench_function("clip_3.0_and_foreach_adamw_sequence", |b| {
        b.iter_batched(
            || set_grads(&ps),
            |_| {
                tch::no_grad(|| {
                    step += 1;
                    let gs: Vec<Tensor> = ps.iter().map(|p| p.grad()).collect();
                    let norms: Vec<Tensor> = gs.iter().map(|g| g.norm()).collect();
                    let total = Tensor::stack(&norms, 0).norm();
                    let coef = ((&total + 1e-6).reciprocal() * 3.0).clamp_max(1.0);
                    for g in &gs {
                        let _ = g.shallow_clone().f_mul_(&coef).unwrap();
                    }
                    let (lr, wd, b1, b2, eps) = (3.5e-4, 0.04, 0.9f64, 0.999f64, 1e-8);
                    let (bc1, bc2) = (1.0 - b1.powi(step), 1.0 - b2.powi(step));
                    for ((p, g), ((m, v), (lm, wm))) in ps.iter().zip(&gs).zip(moments.iter().zip(&mults)) {
                        let (mut p, mut m, mut v) = (p.shallow_clone(), m.shallow_clone(), v.shallow_clone());
                        let _ = p.f_mul_scalar_(1.0 - lr * lm * wd * wm).unwrap();
                        let _ = m.lerp_(g, 1.0 - b1);
                        let _ = v.f_mul_scalar_(b2).unwrap().addcmul_(g, &(g * (1.0 - b2)));
                        let denom = (v.sqrt() / bc2.sqrt()) + eps;
                        let _ = p.addcdiv_(&(&m * (-lr * lm / bc1)), &denom);
                    }
                })
            },
            criterion::BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn dino_head(c: &mut Criterion) {
    let n = threads();
    let vs = nn::VarStore::new(Device::Cpu);
    let head = DinoHead::new(vs.root(), &head_config());
    let opts = (Kind::Float, Device::Cpu);
    let (global, local, patches) = (Tensor::randn([16, 384], opts), Tensor::randn([32, 384], opts), Tensor::randn([118, 384], opts));
    let mut g = c.benchmark_group(format!("dino_head_k4096_fwd_bwd_166_rows/threads={n}"));
    g.sample_size(20).measurement_time(Duration::from_secs(6));
    g.bench_function("one_call_concatenated", |b| {
        b.iter(|| {
            let out = head.forward(&Tensor::cat(&[&local, &global, &patches], 0));
            out.split_with_sizes([32i64, 16, 118].as_slice(), 0).iter().map(|t| t.square().sum(Kind::Float)).fold(Tensor::zeros([], opts), |a, t| a + t).backward();
            cxformer_core::shim::clear_grads(&vs.trainable_variables()).unwrap();
        })
    });
    g.bench_function("three_calls", |b| {
        b.iter(|| {
            let l = [&local, &global, &patches].map(|x| head.forward(x).square().sum(Kind::Float));
            (&l[0] + &l[1] + &l[2]).backward();
            cxformer_core::shim::clear_grads(&vs.trainable_variables()).unwrap();
        })
    });
    g.finish();
}

fn block_54_tokens(c: &mut Criterion) {
    let n = threads();
    let cfg = VitConfig::vit_small();
    let vs = nn::VarStore::new(Device::Cpu);
    let block = Block::new(vs.root() / "blocks" / 0, &cfg, 0.0);
    let x = Tensor::randn([16, 54, 384], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    // The rows the SSL heads read from a student global forward: 16 CLS + 118 masked patches.
    let mut rows: Vec<i64> = (0..16).map(|i| i * 54).collect();
    rows.extend((0..118).map(|k| (k % 8) * 2 * 54 + 5 + (k / 8) * 3 % 49));
    let rows = Tensor::from_slice(&rows);
    let mut g = c.benchmark_group(format!("vit_s_block_54_tokens_batch16_fwd_bwd/threads={n}"));
    g.sample_size(20).measurement_time(Duration::from_secs(6));
    g.bench_function("all_rows", |b| {
        b.iter(|| {
            block.forward(&x, true).unwrap().reshape([16 * 54, 384]).index_select(0, &rows).square().sum(Kind::Float).backward();
            cxformer_core::shim::clear_grads(&vs.trainable_variables()).unwrap();
        })
    });
    g.bench_function("forward_rows_134", |b| {
        b.iter(|| {
            block.forward_rows(&x, true, &rows).unwrap().square().sum(Kind::Float).backward();
            cxformer_core::shim::clear_grads(&vs.trainable_variables()).unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, optimizer, dino_head, block_54_tokens);
criterion_main!(benches);
