//! Data-parallel segmentation training (crates/core/src/seg/) with 2 thread-ranks over Gloo on 127.0.0.1:
//! 2 ranks with their shares of each global batch give the model of 1 process on the whole batch (also for unequal
//! shares and a rank with an empty share), the step records are the global batch's, a rank that starts from other
//! weights is overwritten by rank 0's state at `set_dist` and by the collective load of a training state.
mod common;

use common::free_port;
use cxformer_core::dist::ProcessGroup;
use cxformer_core::seg::config::SegConfig;
use cxformer_core::seg::model::{SegModel, SegStepRecord};
use cxformer_core::{Backbone, VitConfig};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tch::{Device, Kind, Tensor};

/// LibTorch's generator is process-global: the tests run one at a time.
static RNG: Mutex<()> = Mutex::new(());

const W: i64 = 2;
const S: i64 = 28; // image side: a 2×2 patch grid

fn vit() -> VitConfig {
    common::small_vit(32, 2, S, 1)
}

fn model(unfreeze: bool, backbone_seed: i64, head_seed: i64) -> SegModel {
    let cfg = SegConfig::from_json(&format!(
        r#"{{"head": "progressive", "layers": [-2, -1], "hidden": 16, "stages": 1, "unfreeze": {unfreeze}, "lr": 1e-2,
            "backboneLr": 2e-3, "weightDecay": 0.05, "clipGrad": 0.5, "seed": {head_seed}}}"#
    ))
    .unwrap();
    SegModel::new(cfg, Backbone::random(&vit(), Device::Cpu, backbone_seed).unwrap()).unwrap()
}

fn values(n: i64, seed: u64) -> Vec<f32> {
    common::lcg_values(n, seed)
}

/// A global batch of `n` images and class maps (4 classes), and rank 0's share (the first `k` images).
struct Batch {
    x: Tensor,
    y: Tensor,
    k: i64,
}

fn batch(seed: u64, n: i64, k: i64) -> Batch {
    let x = Tensor::from_slice(&values(n * 3 * S * S, seed)).reshape([n, 3, S, S]);
    let y: Vec<u8> = values(n * S * S, seed + 1).into_iter().map(|v| ((v + 1.0) * 2.0).floor().clamp(0.0, 3.0) as u8).collect();
    Batch { x, y: Tensor::from_slice(&y).reshape([n, S, S]), k }
}

/// Rank r's share of a global batch: rank 0 the first k images, rank 1 the rest (possibly none).
fn share(t: &Tensor, b: &Batch, r: i64) -> Tensor {
    let n = t.size()[0];
    if r == 0 { t.narrow(0, 0, b.k) } else { t.narrow(0, b.k, n - b.k) }
}

fn batches() -> Vec<Batch> {
    vec![
        batch(11, 6, 3), // equal shares
        batch(12, 5, 4), // unequal: 4 + 1
        batch(13, 1, 1), // rank 1's share is empty
        batch(14, 4, 1), // 1 + 3
    ]
}

fn pg(rank: i64, port: u16) -> ProcessGroup {
    common::gloo_group(rank, W, port)
}

/// Copies of the whole state (with the optimizer moments) and of every backbone variable (frozen ones included).
fn snapshot(m: &SegModel) -> BTreeMap<String, Tensor> {
    let mut s: BTreeMap<String, Tensor> = m.state(true).into_iter().map(|(k, t)| (k, t.copy())).collect();
    for (k, t) in m.backbone.vs.variables() {
        s.insert(format!("all_backbone.{k}"), t.detach().copy());
    }
    s
}

use common::state_max_diff as max_diff;

fn two_ranks_equal_one(unfreeze: bool) {
    let _g = RNG.lock().unwrap_or_else(|p| p.into_inner());
    let data = batches();
    let lrs = [1e-2, 8e-3, 5e-3, 2e-3];
    // one process, the whole global batch
    let mut single = model(unfreeze, 3, 1);
    let start = snapshot(&single);
    let one: Vec<SegStepRecord> = data.iter().zip(lrs).map(|(b, lr)| single.train_step(&b.x, &b.y, lr).unwrap()).collect();
    let want = snapshot(&single);
    // two ranks; rank 1 starts from another backbone and head and must be overwritten by rank 0's
    let port = free_port();
    let results: Vec<(BTreeMap<String, Tensor>, BTreeMap<String, Tensor>, Vec<SegStepRecord>)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..W)
            .map(|r| {
                let mine: Vec<(Tensor, Tensor)> = data.iter().map(|b| (share(&b.x, b, r), share(&b.y, b, r))).collect();
                s.spawn(move || {
                    let mut m = if r == 0 { model(unfreeze, 3, 1) } else { model(unfreeze, 8, 9) };
                    m.set_dist(Box::new(Arc::new(pg(r, port)))).unwrap();
                    assert_eq!(m.world(), W);
                    let synced = snapshot(&m);
                    let reps = mine.iter().zip(lrs).map(|((x, y), lr)| m.train_step(x, y, lr).unwrap()).collect();
                    (synced, snapshot(&m), reps)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("rank thread")).collect()
    });
    for (r, (synced, got, reps)) in results.iter().enumerate() {
        let (d0, k0) = max_diff(synced, &start);
        assert_eq!(d0, 0.0, "rank {r}: state after set_dist differs from rank 0's at {k0}");
        let (d, k) = max_diff(got, &want);
        assert!(d < 1e-5, "rank {r}: after {} steps max |2 ranks − 1 process| = {d} at {k}", data.len());
        for (i, (a, b)) in reps.iter().zip(&one).enumerate() {
            for (what, x, y) in [("loss", a.loss, b.loss), ("ce", a.ce, b.ce), ("soft dice", a.soft_dice, b.soft_dice)] {
                assert!((x - y).abs() <= 2e-6 * (1.0 + y.abs()), "step {i}: {what} {x} (2 ranks) vs {y} (1 process)");
            }
            assert!((a.grad_norm - b.grad_norm).abs() <= 2e-5 * (1.0 + b.grad_norm), "step {i}: grad norm {} vs {}", a.grad_norm, b.grad_norm);
            assert_eq!((a.step, a.lr), (b.step, b.lr));
        }
    }
    let (d01, k01) = max_diff(&results[0].1, &results[1].1);
    assert_eq!(d01, 0.0, "ranks 0 and 1 differ at {k01}");
    // The model moved (the comparison is not between untouched models); a frozen backbone did not.
    let moved = max_diff(&start, &want).0;
    assert!(moved > 1e-3, "the model did not move ({moved})");
    let backbone = |s: &BTreeMap<String, Tensor>| s.iter().filter(|(k, _)| k.starts_with("all_backbone.")).map(|(k, t)| (k.clone(), t.shallow_clone())).collect::<BTreeMap<_, _>>();
    let bb_moved = max_diff(&backbone(&start), &backbone(&want)).0;
    if unfreeze {
        assert!(bb_moved > 1e-4, "the unfrozen backbone did not move ({bb_moved})");
    } else {
        assert_eq!(bb_moved, 0.0, "the frozen backbone moved");
    }
}

#[test]
fn two_ranks_equal_one_process_frozen_backbone() {
    two_ranks_equal_one(false);
}

#[test]
fn two_ranks_equal_one_process_unfrozen_backbone() {
    two_ranks_equal_one(true);
}

#[test]
fn an_empty_batch_is_refused_in_one_process() {
    let mut m = model(false, 3, 1);
    let e = m.train_step(&Tensor::zeros([0, 3, S, S], (Kind::Float, Device::Cpu)), &Tensor::zeros([0, S, S], (Kind::Uint8, Device::Cpu)), 1e-3).unwrap_err();
    assert!(e.to_string().contains("the batch is empty"), "{e}");
}

#[test]
fn a_state_load_gives_every_rank_rank_0s_state() {
    let _g = RNG.lock().unwrap_or_else(|p| p.into_inner());
    let dir = std::env::temp_dir().join(format!("cxf-dist-seg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Rank 0 loads A (after 2 steps), rank 1 loads B (1 step, other head seed): the load is collective, both hold A.
    let data = batches();
    let mut a = model(true, 3, 4);
    for b in &data[..2] {
        a.train_step(&b.x, &b.y, 1e-2).unwrap();
    }
    let (file_a, file_b) = (dir.join("a.safetensors"), dir.join("b.safetensors"));
    a.save(&file_a, true, HashMap::new()).unwrap();
    let mut b = model(true, 3, 5);
    b.train_step(&data[3].x, &data[3].y, 1e-2).unwrap();
    b.save(&file_b, true, HashMap::new()).unwrap();
    let want = snapshot(&a);
    let missing = dir.join("missing.safetensors");
    let port = free_port();
    let got: Vec<(BTreeMap<String, Tensor>, BTreeMap<String, Tensor>, i64, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..W)
            .map(|r| {
                let file = if r == 0 { file_a.clone() } else { file_b.clone() };
                let missing = missing.clone();
                s.spawn(move || {
                    let mut m = model(true, 3, 6);
                    m.set_dist(Box::new(Arc::new(pg(r, port)))).unwrap();
                    // The files hold other head seeds than this model's: force.
                    m.load(&file, true).unwrap();
                    let loaded = snapshot(&m);
                    m.sync_from_rank0().unwrap();
                    // A rank that cannot read its state makes every rank fail, nothing loaded anywhere.
                    let e = m.load_state(if r == 0 { &file } else { &missing }, true).unwrap_err().to_string();
                    (loaded, snapshot(&m), m.steps(), e)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("rank thread")).collect()
    });
    for (r, (loaded, st, steps, _)) in got.iter().enumerate() {
        let (d, k) = max_diff(loaded, &want);
        assert_eq!(d, 0.0, "rank {r}: differs from rank 0's state after the load at {k}");
        assert_eq!(max_diff(st, &want).0, 0.0, "rank {r}: the second sync and the failed load change nothing");
        assert_eq!(*steps, 2, "rank {r}: optimizer steps of rank 0's state");
    }
    assert!(got[0].3.contains("failed on rank 1"), "{}", got[0].3);
    assert!(got[1].3.contains("missing.safetensors"), "{}", got[1].3);
    let _ = std::fs::remove_dir_all(&dir);
}
