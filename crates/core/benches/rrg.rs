//! The report captioner (crates/core/src/rrg) at the phantom preset (d 256, 3 layers, 4 heads, 128 positions) on a
//! 100-token word vocabulary and ViT-S/14 memories at 224 px (1 CLS + 4 registers + 256 patches = 261 tokens of
//! width 384), float32 on the CPU, random weights and memories: one training step (batch 16, reports of 40
//! tokens), greedy decoding of 60 tokens for 8 images with the KV cache and by full recompute (the teacher-forced
//! forward of the whole prefix at each step, what decoding costs without a cache), and beam search (3 beams).
//! Custom harness: median of BENCH_STEPS (default 5) runs after 1 warm-up; threads from CXFORMER_THREADS
//! (default all cores). Run with `bash scripts/cargo.sh bench --locked -p cxformer-core --bench rrg`.
use cxformer_core::rrg::{GenerateOptions, ReportTrainer, RrgConfig, RrgTrainConfig, generate};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) }
}

fn time(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    median((0..runs).map(|_| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64()
    }).collect())
}

fn main() {
    let n = std::env::var("CXFORMER_THREADS").ok().and_then(|s| s.parse().ok());
    let threads = cxformer_core::runtime::set_threads(n);
    let runs: usize = std::env::var("BENCH_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    println!("threads {threads}, median of {runs}");
    tch::manual_seed(0);
    let cfg = RrgTrainConfig::new(RrgConfig::phantom(100, 384));
    let mut tr = ReportTrainer::create(cfg, Device::Cpu, 0).unwrap();
    let feats = Tensor::randn([16, 261, 384], (Kind::Float, Device::Cpu));
    let toks = Tensor::randint_low(3, 100, [16, 40], (Kind::Int64, Device::Cpu));
    let _ = toks.select(1, 0).fill_(1);
    let _ = toks.select(1, 39).fill_(2);
    let t = time(runs, || {
        tr.step(&feats, None, &toks).unwrap();
    });
    println!("train step, batch 16 × 40 tokens: {:.1} ms", t * 1e3);
    // Random weights: a row stops when it happens to draw EOS, so the tokens produced are counted.
    let m = &tr.model;
    let f8 = feats.narrow(0, 0, 8);
    let mut produced = 0usize;
    let mut longest = 0usize;
    let t = time(runs, || {
        let g = generate(m, &f8, None, &GenerateOptions::greedy(60), |_, _| true).unwrap();
        produced = g.tokens.iter().map(|t| t.len()).sum();
        longest = g.tokens.iter().map(|t| t.len()).max().unwrap_or(1);
    });
    println!("greedy with KV cache, 8 images: {:.1} ms ({produced} tokens, {:.0} tokens/s)", t * 1e3, produced as f64 / t);
    // The cached loop ran `longest` steps for the whole batch; the recompute loop runs as many.
    let steps = longest as i64;
    let t = time(runs, || {
        tch::no_grad(|| {
            let mut prefix = Tensor::ones([8, 1], (Kind::Int64, Device::Cpu));
            for _ in 0..steps {
                let logits = m.forward(&f8, None, &prefix, false).unwrap();
                let next = logits.select(1, -1).argmax(-1, true);
                prefix = Tensor::cat(&[prefix, next], 1);
            }
        });
    });
    println!("greedy by full recompute, 8 images × {steps} steps: {:.1} ms", t * 1e3);
    let t = time(runs, || {
        let g = generate(m, &f8, None, &GenerateOptions::beam(3, 60), |_, _| true).unwrap();
        produced = g.tokens.iter().map(|t| t.len()).sum();
    });
    println!("beam search (3 beams) with KV cache, 8 images: {:.1} ms ({produced} tokens out)", t * 1e3);
}
