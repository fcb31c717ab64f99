//! The SSL training step of the reference configuration (BENCHMARKS.md, "Side by side with the official DINOv2 step":
//! ViT-S/14 with 4 registers, LayerScale 1e-5, batch 8 with 2 global crops of 98 px and 4 local crops of 42 px,
//! DINO head K 4096 shared with iBOT, KoLeo 0.1, centering, AdamW with DINOv2's groups, wd 0.04, clip 3.0, EMA
//! 0.992, float32) on fixed random crops, per stage: teacher, student forward + losses, backward, clip + AdamW,
//! EMA. Custom harness: median of BENCH_STEPS (default 10) steps after 2 warm-ups; threads from CXFORMER_THREADS
//! (default all cores). It times the model step only; `npm run bench` (dist/bench/train.js) adds decoding and
//! augmentation and the side-by-side ratio to the official code.
//! Run with `bash scripts/cargo.sh bench --locked -p cxformer-core --bench step`.
#[path = "../tests/common/mod.rs"]
mod common;
use cxformer_core::ssl::head::HeadConfig;
use cxformer_core::ssl::{SslBatch, SslConfig, SslModel, StepSchedule};
use cxformer_core::{PosInterp, VitConfig};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) }
}

fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).unwrap_or("unknown").trim();
    let flags = info.lines().find(|l| l.starts_with("flags")).unwrap_or("");
    let isa: Vec<&str> = ["avx2", "avx512f", "avx512_bf16", "amx_bf16"].into_iter().filter(|f| flags.split_whitespace().any(|x| x == *f)).collect();
    format!("{model} [{}]", isa.join(" "))
}

/// The reference configuration of the side-by-side comparison (BENCHMARKS.md): the tests' `small_ssl` (the
/// reference's loss weights, KoLeo 0.1, centering, clip 3, layer-wise decay 0.9, f32) on ViT-S/14 with 4 registers,
/// LayerScale 1e-5, DINOv2's position interpolation, 98-px training size, a 3-layer head K 4096 and 4 local crops.
pub fn reference_config() -> SslConfig {
    let mut model = VitConfig::vit_small();
    model.img_size = 98;
    model.layerscale_init = Some(1e-5);
    model.interpolation = PosInterp::ORIGINAL;
    let head = HeadConfig { in_dim: 384, out_dim: 4096, hidden_dim: 2048, bottleneck_dim: 256, nlayers: 3 };
    SslConfig { n_local_crops: 4, ..common::small_ssl(model, head) }
}

/// Random crops of batch `b` and iBOT masks like the reference's: every other global crop masked, with 10–50 % of
/// its 49 patches (≈ 118 masked patches per step, as logged by both programs).
fn batch(b: i64) -> SslBatch {
    let globals = Tensor::randn([2 * b, 3, 98, 98], (Kind::Float, Device::Cpu));
    let locals = Tensor::randn([4 * b, 3, 42, 42], (Kind::Float, Device::Cpu));
    let n = 49;
    let mut m = vec![false; (2 * b * n) as usize];
    for i in 0..2 * b {
        if i % 2 == 0 {
            let count = (n as f64 * (0.1 + 0.4 * i as f64 / (2 * b) as f64)).round() as i64 + 8;
            for j in 0..count.min(n) {
                m[(i * n + (j * 7) % n) as usize] = true;
            }
        }
    }
    let masks = Tensor::from_slice(&m).reshape([2 * b, n]);
    SslBatch { global_crops: globals, local_crops: Some(locals), masks }
}

fn main() {
    // BENCH_SPAWNED=1: run on a spawned thread (as the Node addon's compute thread does) instead of the main thread.
    if std::env::var("BENCH_SPAWNED").as_deref() == Ok("1") {
        std::thread::Builder::new().stack_size(16 << 20).spawn(run).unwrap().join().unwrap();
    } else {
        run();
    }
}

fn run() {
    let n = std::env::var("CXFORMER_THREADS").ok().and_then(|s| s.parse().ok());
    let threads = cxformer_core::runtime::set_threads(n);
    let steps: usize = std::env::var("BENCH_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let capability = cxformer_core::runtime::runtime_info().map(|r| r.cpu_capability).unwrap_or_default();
    println!("cpu: {} | LibTorch capability {capability} | threads {threads}", cpu_model());
    let mut model = SslModel::new(reference_config(), Device::Cpu, 0).unwrap();
    let lr = 0.004 * (8.0f64 / 1024.0).sqrt();
    let sched = StepSchedule { lr, wd: 0.04, momentum: 0.992, teacher_temp: 0.04, last_layer_lr: lr };
    let b = batch(8);
    let mut rows: Vec<[f64; 6]> = Vec::new();
    for i in 0..steps + 2 {
        let t = Instant::now();
        let r = model.step(&b, &sched, i as i64).unwrap();
        let total = t.elapsed().as_secs_f64();
        if i >= 2 {
            rows.push([total, r.ms_teacher / 1e3, r.ms_student / 1e3, r.ms_backward / 1e3, r.ms_optimizer / 1e3, r.ms_ema / 1e3]);
        }
    }
    let col = |j: usize| median(rows.iter().map(|r| r[j]).collect());
    println!("ssl_step reference configuration, fp32, batch 8 (2x98 + 4x42 px), K 4096: median of {steps} steps (s)");
    println!("  step {:.3} | teacher {:.3} | student fwd+losses {:.3} | backward {:.3} | clip+AdamW {:.3} | EMA {:.3}", col(0), col(1), col(2), col(3), col(4), col(5));
    println!("  forward+backward {:.3}", median(rows.iter().map(|r| r[1] + r[2] + r[3]).collect()));
}
