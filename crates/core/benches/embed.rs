//! Criterion benches of the core kernels on CPU (threads: CXFORMER_THREADS or all cores):
//! ViT-S/14 (4 registers) forward at 224 (batch 8) and 518 (batch 1) in f32 and bf16 autocast,
//! fused SDPA vs. manual softmax attention at the 518-px sequence length, and 1024³ matmul.
//! Run with `npm run bench` (or `bash scripts/cargo.sh bench -p cxformer-core --bench embed`).
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use cxformer_core::{Backbone, ForwardOptions, Precision, VitConfig};
use std::time::Duration;
use tch::{Device, Kind, Tensor};

fn threads() -> usize {
    let n = std::env::var("CXFORMER_THREADS").ok().and_then(|s| s.parse().ok());
    cxformer_core::runtime::set_threads(n)
}

fn vit_forward(c: &mut Criterion) {
    let n = threads();
    let model = Backbone::random(&VitConfig::vit_small(), Device::Cpu, 0).unwrap();
    let mut g = c.benchmark_group(format!("vit_small_reg4_forward/threads={n}"));
    g.sample_size(10).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(8));
    for (size, batch) in [(224i64, 8i64), (518, 1)] {
        let x = Tensor::randn([batch, 3, size, size], (Kind::Float, Device::Cpu));
        g.throughput(Throughput::Elements(batch as u64));
        for p in [Precision::F32, Precision::Bf16] {
            g.bench_function(format!("{size}px_b{batch}_{p:?}"), |b| {
                b.iter(|| model.embed(&x, &ForwardOptions::default(), p).unwrap())
            });
        }
    }
    g.finish();
}

fn attention(c: &mut Criterion) {
    let n = threads();
    // ViT-S at 518 px: B=1, H=6, T=1374, Dh=64.
    let (b, h, t, d) = (1, 6, 1374, 64);
    let q = Tensor::randn([b, h, t, d], (Kind::Float, Device::Cpu));
    let k = Tensor::randn([b, h, t, d], (Kind::Float, Device::Cpu));
    let v = Tensor::randn([b, h, t, d], (Kind::Float, Device::Cpu));
    let mut g = c.benchmark_group(format!("attention_T1374_H6/threads={n}"));
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.bench_function("fused_sdpa_f32", |bch| {
        bch.iter(|| tch::no_grad(|| Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, false, None, false)))
    });
    g.bench_function("manual_softmax_f32", |bch| {
        bch.iter(|| tch::no_grad(|| (q.matmul(&k.transpose(-2, -1)) / (d as f64).sqrt()).softmax(-1, Kind::Float).matmul(&v)))
    });
    g.finish();
}

fn matmul(c: &mut Criterion) {
    let n = threads();
    let mut g = c.benchmark_group(format!("matmul_1024/threads={n}"));
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    // 2·1024³ FLOP per product: criterion's "elements" here are FLOPs.
    g.throughput(Throughput::Elements(2 * 1024u64.pow(3)));
    for kind in [Kind::Float, Kind::BFloat16] {
        let a = Tensor::randn([1024, 1024], (kind, Device::Cpu));
        let bm = Tensor::randn([1024, 1024], (kind, Device::Cpu));
        g.bench_function(format!("{kind:?}"), |bch| bch.iter(|| a.matmul(&bm)));
    }
    g.finish();
}

criterion_group!(benches, matmul, attention, vit_forward);
criterion_main!(benches);
