//! All-reduce bandwidth of the c10d Gloo backend for gradient-sized buffers: 2 ranks as 2 threads of this
//! process over loopback (127.0.0.1), float32 sums of 1 MiB, 16 MiB and 88 MiB (≈ ViT-S/14's gradients) in one
//! tensor, and the DDP helper `all_reduce_mean_grads` on the real ViT-S/14 (4 registers) parameter list
//! (25 MB buckets, issued together). Custom harness (both ranks must run the same number of collectives):
//! median of N timed repetitions after 2 warm-ups, timed on rank 0 between barriers.
//! Run with `bash scripts/cargo.sh bench --locked -p cxformer-core --bench dist` (BENCH_DIST_REPS overrides N).
use cxformer_core::VitConfig;
use cxformer_core::dist::{BackendChoice, PgOptions, ProcessGroup, ReduceOp};
use cxformer_core::train::collective::all_reduce_mean_grads;
use cxformer_core::model::Vit;
use std::net::TcpListener;
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor, nn};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) }
}

/// Runs `f` `reps` times on both ranks after 2 warm-ups; rank 0's per-repetition seconds.
fn timed(pg: &ProcessGroup, reps: usize, mut f: impl FnMut()) -> Vec<f64> {
    let mut out = Vec::with_capacity(reps);
    for i in 0..reps + 2 {
        pg.barrier().unwrap();
        let t = Instant::now();
        f();
        let s = t.elapsed().as_secs_f64();
        if i >= 2 {
            out.push(s);
        }
    }
    out
}

/// ViT-S/14 (4 registers) parameters with gradients of ones.
fn vit_small_grads() -> Vec<Tensor> {
    let mut cfg = VitConfig::vit_small();
    cfg.num_register_tokens = 4;
    let vs = nn::VarStore::new(Device::Cpu);
    let _model = Vit::new(&vs.root(), &cfg).unwrap();
    let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    params
        .into_iter()
        .map(|(_, p)| {
            let loss = (&p * 1.0).sum(Kind::Float);
            loss.backward();
            p
        })
        .collect()
}

fn main() {
    // `cargo bench` passes --bench; nothing else is parsed.
    let reps: usize = std::env::var("BENCH_DIST_REPS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let threads = cxformer_core::runtime::set_threads(std::env::var("CXFORMER_THREADS").ok().and_then(|s| s.parse().ok()));
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let sizes_mb = [1usize, 16, 88];
    let results: Vec<Vec<(String, f64, f64)>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|rank| {
                s.spawn(move || {
                    let pg = ProcessGroup::new(&PgOptions {
                        rank,
                        world: 2,
                        master_addr: "127.0.0.1".into(),
                        master_port: port,
                        timeout: Duration::from_secs(120),
                        backend: BackendChoice::Gloo,
                        device: Device::Cpu,
                    })
                    .unwrap();
                    let mut rows = Vec::new();
                    for mb in sizes_mb {
                        let n = (mb * 1024 * 1024 / 4) as i64;
                        let t = Tensor::ones([n], (Kind::Float, Device::Cpu));
                        let secs = timed(&pg, reps, || pg.all_reduce(&t, ReduceOp::Sum).unwrap());
                        rows.push((format!("all_reduce sum, 1 tensor, {mb} MiB f32"), median(secs), (n * 4) as f64));
                    }
                    let grads = vit_small_grads();
                    let bytes: i64 = grads.iter().map(|p| p.numel() as i64 * 4).sum();
                    let secs = timed(&pg, reps, || all_reduce_mean_grads(&pg, &grads).unwrap());
                    rows.push((
                        format!("all_reduce_mean_grads, ViT-S/14 reg4 ({} tensors, 25 MB buckets)", grads.len()),
                        median(secs),
                        bytes as f64,
                    ));
                    rows
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    println!("c10d Gloo all-reduce, 2 ranks (threads of one process) over 127.0.0.1, LibTorch threads {threads}, {reps} reps");
    println!("| operation | size | median time | algorithm bandwidth |");
    println!("|---|---|---|---|");
    for (what, secs, bytes) in &results[0] {
        println!("| {what} | {:.1} MB | {:.1} ms | {:.2} GB/s |", bytes / 1e6, secs * 1e3, bytes / secs / 1e9);
    }
}
