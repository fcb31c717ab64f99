//! Data-parallel full fine-tuning (crates/core/src/classify/finetune.rs) with 2 thread-ranks over Gloo on 127.0.0.1:
//! 2 ranks × b give the model of 1 rank × 2b, also when the ranks' batches hold different numbers of supervised
//! entries (the gradient is the mean over every supervised entry of the global batch, not a mean of per-rank
//! means), a rank with no supervised entry contributes nothing, the step reports are the global batch's, a rank
//! that starts from other weights is overwritten by rank 0's state at `set_dist` and after `load_state`.
mod common;

use common::free_port;
use cxformer_core::dist::ProcessGroup;
use cxformer_core::classify::config::FinetuneConfig;
use cxformer_core::classify::finetune::{FineTuner, StepReport};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tch::{Device, Tensor};

/// LibTorch's generator is process-global: the tests run one at a time.
static RNG: Mutex<()> = Mutex::new(());

const W: i64 = 2;
const B: i64 = 3; // images per rank
const C: i64 = 3;

fn cfg() -> FinetuneConfig {
    let model = common::small_vit(32, 2, 28, 1).to_json();
    FinetuneConfig::from_json(&format!(
        r#"{{"model": {model}, "numClasses": {C}, "clsLayers": 2, "headLr": 1e-2, "backboneLr": 2e-3, "layerwiseDecay": 0.8,
            "weightDecay": 0.05, "epochs": 2, "warmupEpochs": 1, "schedule": "cosine", "stepsPerEpoch": 2, "clipGrad": 0.5}}"#
    ))
    .unwrap()
}

fn values(n: i64, seed: u64) -> Vec<f32> {
    common::lcg_values(n, seed)
}

/// A global batch of W·B images: pixels, 0/1 targets and a mask whose supervised entries differ per rank.
/// `masks[r]` gives rank r's rows (B per rank) as bit patterns over the C classes.
fn global_batch(seed: u64, masks: [[u8; 3]; 2]) -> (Tensor, Tensor, Tensor) {
    let n = W * B;
    let x = Tensor::from_slice(&values(n * 3 * 28 * 28, seed)).reshape([n, 3, 28, 28]);
    let y: Vec<f32> = values(n * C, seed + 1).into_iter().map(|v| if v > 0.0 { 1.0 } else { 0.0 }).collect();
    let m: Vec<u8> = masks.iter().flatten().flat_map(|bits| (0..C).map(move |c| (bits >> c) & 1)).collect();
    (x, Tensor::from_slice(&y).reshape([n, C]), Tensor::from_slice(&m).reshape([n, C]))
}

fn batches() -> Vec<(Tensor, Tensor, Tensor)> {
    vec![
        // rank 0: 9 supervised entries, rank 1: 3
        global_batch(11, [[0b111, 0b111, 0b111], [0b001, 0b010, 0b100]]),
        // rank 0: 2, rank 1: 7
        global_batch(12, [[0b000, 0b011, 0b000], [0b111, 0b110, 0b011]]),
        // rank 0: none at all (contributes nothing), rank 1: 5
        global_batch(13, [[0b000, 0b000, 0b000], [0b101, 0b111, 0b000]]),
        global_batch(14, [[0b111, 0b101, 0b010], [0b111, 0b111, 0b110]]),
    ]
}

fn shard(t: &Tensor, rank: i64) -> Tensor {
    t.narrow(0, rank * B, B)
}

fn pg(rank: i64, port: u16) -> ProcessGroup {
    common::gloo_group(rank, W, port)
}

/// Copies of the whole training state (state() shares storage with the live CPU parameters).
fn snapshot(ft: &FineTuner) -> BTreeMap<String, Tensor> {
    ft.state().unwrap().into_iter().map(|(k, t)| (k, t.copy())).collect()
}

use common::state_max_diff as max_diff;

#[test]
fn two_ranks_of_b_equal_one_rank_of_2b() {
    let _g = RNG.lock().unwrap_or_else(|p| p.into_inner());
    let data = batches();
    // one process, batch 2b
    let (mut single, _) = FineTuner::new(cfg(), Device::Cpu, None, 3).unwrap();
    let start = snapshot(&single);
    let one: Vec<StepReport> = data.iter().map(|(x, y, m)| single.train_step(x, y, m).unwrap()).collect();
    let want = snapshot(&single);
    // two ranks, batch b each; rank 1 starts from other weights (seed 9) and must be overwritten by rank 0's
    let port = free_port();
    let results: Vec<(BTreeMap<String, Tensor>, BTreeMap<String, Tensor>, Vec<StepReport>)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..W)
            .map(|r| {
                let mine: Vec<(Tensor, Tensor, Tensor)> = data.iter().map(|(x, y, m)| (shard(x, r), shard(y, r), shard(m, r))).collect();
                s.spawn(move || {
                    let (mut ft, _) = FineTuner::new(cfg(), Device::Cpu, None, if r == 0 { 3 } else { 9 }).unwrap();
                    ft.set_dist(Box::new(Arc::new(pg(r, port)))).unwrap();
                    let synced = snapshot(&ft);
                    let reps = mine.iter().map(|(x, y, m)| ft.train_step(x, y, m).unwrap()).collect();
                    (synced, snapshot(&ft), reps)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("rank thread")).collect()
    });
    for (r, (synced, got, reps)) in results.iter().enumerate() {
        let (d0, k0) = max_diff(synced, &start);
        assert_eq!(d0, 0.0, "rank {r}: state after set_dist differs from rank 0's at {k0}");
        let (d, k) = max_diff(got, &want);
        assert!(d < 1e-5, "rank {r}: after {} steps max |2 ranks − 1 rank| = {d} at {k}", data.len());
        for (i, (a, b)) in reps.iter().zip(&one).enumerate() {
            assert_eq!(a.entries, b.entries, "step {i}: entries of the global batch");
            assert!((a.loss - b.loss).abs() <= 2e-6 * (1.0 + b.loss.abs()), "step {i}: loss {} (2 ranks) vs {} (1 rank)", a.loss, b.loss);
            assert!((a.grad_norm - b.grad_norm).abs() <= 2e-5 * (1.0 + b.grad_norm), "step {i}: grad norm {} vs {}", a.grad_norm, b.grad_norm);
            assert_eq!((a.step, a.skipped), (b.step, b.skipped));
            assert_eq!(a.lr, b.lr);
        }
    }
    // The ranks are bit-identical, and the model moved (the comparison is not between untouched models).
    let (d01, k01) = max_diff(&results[0].1, &results[1].1);
    assert_eq!(d01, 0.0, "ranks 0 and 1 differ at {k01}");
    let moved = max_diff(&start, &want).0;
    assert!(moved > 1e-3, "the model did not move ({moved})");
    // Hand check of the entry counts: 12, 9, 5, 14 supervised entries in the four global batches.
    assert_eq!(one.iter().map(|r| r.entries).collect::<Vec<_>>(), vec![12, 9, 5, 14]);
}

#[test]
fn a_global_batch_without_supervision_is_skipped_on_every_rank() {
    let _g = RNG.lock().unwrap_or_else(|p| p.into_inner());
    let (x, y, m) = global_batch(21, [[0, 0, 0], [0, 0, 0]]);
    let port = free_port();
    let reps: Vec<(StepReport, i64)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..W)
            .map(|r| {
                let (x, y, m) = (shard(&x, r), shard(&y, r), shard(&m, r));
                s.spawn(move || {
                    let (mut ft, _) = FineTuner::new(cfg(), Device::Cpu, None, 3).unwrap();
                    ft.set_dist(Box::new(Arc::new(pg(r, port)))).unwrap();
                    let rep = ft.train_step(&x, &y, &m).unwrap();
                    (rep, ft.optimizer.step)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("rank thread")).collect()
    });
    for (rep, opt_steps) in reps {
        assert!(rep.skipped);
        assert_eq!((rep.entries, rep.loss, opt_steps), (0, 0.0, 0));
    }
}

#[test]
fn load_state_is_synchronised_from_rank_0() {
    let _g = RNG.lock().unwrap_or_else(|p| p.into_inner());
    let dir = std::env::temp_dir().join(format!("cxf-dist-finetune-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Two different states: rank 0 loads A (after 2 steps), rank 1 loads B (fresh, other seed); both end with A.
    let data = batches();
    let (mut a, _) = FineTuner::new(cfg(), Device::Cpu, None, 4).unwrap();
    for (x, y, m) in &data[..2] {
        a.train_step(x, y, m).unwrap();
    }
    let (file_a, file_b) = (dir.join("a.safetensors"), dir.join("b.safetensors"));
    a.save_state(&file_a, HashMap::new()).unwrap();
    FineTuner::new(cfg(), Device::Cpu, None, 5).unwrap().0.save_state(&file_b, HashMap::new()).unwrap();
    let want = snapshot(&a);
    let port = free_port();
    let got: Vec<(BTreeMap<String, Tensor>, i64, i64)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..W)
            .map(|r| {
                let file = if r == 0 { file_a.clone() } else { file_b.clone() };
                s.spawn(move || {
                    let (mut ft, _) = FineTuner::new(cfg(), Device::Cpu, None, 6).unwrap();
                    ft.set_dist(Box::new(Arc::new(pg(r, port)))).unwrap();
                    ft.load_state(&file, false).unwrap();
                    (snapshot(&ft), ft.step, ft.optimizer.step)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("rank thread")).collect()
    });
    for (r, (st, step, opt)) in got.iter().enumerate() {
        let (d, k) = max_diff(st, &want);
        assert_eq!(d, 0.0, "rank {r}: differs from rank 0's state at {k}");
        assert_eq!((*step, *opt), (2, 2), "rank {r}: step counters of rank 0's state");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
