//! Data parallelism of the SSL step: 2 ranks × batch b give the same model as 1 rank × batch 2b (KoLeo off: it is
//! per rank by design, docs/recipe.md §3.7), for both teacher-target modes; the step records hold the global losses; a rank
//! that starts from other weights is overwritten by rank 0's state (at creation and after a checkpoint load).
mod common;

use common::free_port;
use cxformer_core::dist::ProcessGroup;
use cxformer_core::ssl::head::HeadConfig;
use cxformer_core::ssl::{CenteringKind, SslBatch, SslConfig, SslModel, StepRecord, StepSchedule};
use cxformer_core::train::state::{StateKind, TrainState};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tch::{Device, Kind, Tensor};

/// LibTorch's generator is process-global: tests that draw from it run one at a time.
static RNG: Mutex<()> = Mutex::new(());

fn cfg(centering: CenteringKind, separate_ibot: bool) -> SslConfig {
    let model = common::small_vit(48, 2, 28, 2);
    let head = HeadConfig { in_dim: 48, out_dim: 32, hidden_dim: 64, bottleneck_dim: 16, nlayers: 3 };
    SslConfig { ibot_head: separate_ibot.then_some(HeadConfig { out_dim: 24, ..head }), koleo_loss_weight: 0.0, centering, ..common::small_ssl(model, head) }
}

const B: i64 = 2; // images per rank
const W: i64 = 2;
const SCHED: StepSchedule = StepSchedule { lr: 1e-3, wd: 0.04, momentum: 0.9, teacher_temp: 0.05, last_layer_lr: 1e-3 };

/// A global batch of W·B images (crop-major). The iBOT masks give each rank the same number of masked patches
/// (4 of 16), spread differently over its crops: the reference's iBOT centre is a mean of per-rank means, which
/// equals the global mean only for equal counts.
fn global_batch(seed: i64) -> SslBatch {
    tch::manual_seed(seed);
    let n = W * B;
    // rows: crop 1 of images 0..3, then crop 2 of images 0..3; rank r owns images 2r, 2r+1
    let rows: [[u8; 4]; 8] = [
        [1, 1, 0, 0], // c1 i0 (rank 0)
        [0, 0, 0, 0], // c1 i1 (rank 0)
        [1, 0, 0, 0], // c1 i2 (rank 1)
        [0, 1, 0, 0], // c1 i3 (rank 1)
        [0, 0, 1, 0], // c2 i0 (rank 0)
        [0, 0, 0, 1], // c2 i1 (rank 0)
        [0, 0, 1, 1], // c2 i2 (rank 1)
        [0, 0, 0, 0], // c2 i3 (rank 1)
    ];
    let flat: Vec<u8> = rows.iter().flatten().copied().collect();
    SslBatch {
        global_crops: Tensor::randn([2 * n, 3, 28, 28], (Kind::Float, Device::Cpu)),
        local_crops: Some(Tensor::randn([2 * n, 3, 14, 14], (Kind::Float, Device::Cpu))),
        masks: Tensor::from_slice(&flat).reshape([2 * n, 4]).to_kind(Kind::Bool),
    }
}

/// Rank r's share: images r·B..(r+1)·B of every crop, crop-major.
fn shard(b: &SslBatch, rank: i64) -> SslBatch {
    let n = W * B;
    let pick = |crops: i64| {
        let idx: Vec<i64> = (0..crops).flat_map(|c| (0..B).map(move |i| c * n + rank * B + i)).collect();
        Tensor::from_slice(&idx)
    };
    SslBatch {
        global_crops: b.global_crops.index_select(0, &pick(2)),
        local_crops: b.local_crops.as_ref().map(|l| l.index_select(0, &pick(2))),
        masks: b.masks.index_select(0, &pick(2)),
    }
}

fn pg(rank: i64, port: u16) -> ProcessGroup {
    common::gloo_group(rank, W, port)
}

fn params(m: &SslModel) -> BTreeMap<String, Tensor> {
    // copies: state() shares storage with the live CPU parameters
    m.state()
        .into_iter()
        .filter(|(k, _)| k.starts_with("student.") || k.starts_with("teacher.") || k.starts_with("center."))
        .map(|(k, t)| (k, t.copy()))
        .collect()
}

use common::state_max_diff as max_diff;

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() <= 2e-5 * (1.0 + b.abs()), "{what}: {a} (2 ranks) vs {b} (1 rank)");
}

fn check_records(two: &[StepRecord], one: &StepRecord, step: usize) {
    for r in two {
        close(r.total_loss, one.total_loss, &format!("step {step} total_loss"));
        close(r.dino_local_crops_loss, one.dino_local_crops_loss, &format!("step {step} dino_local"));
        close(r.dino_global_crops_loss, one.dino_global_crops_loss, &format!("step {step} dino_global"));
        close(r.ibot_loss, one.ibot_loss, &format!("step {step} ibot"));
        close(r.grad_norm_backbone, one.grad_norm_backbone, &format!("step {step} grad_norm_backbone"));
        close(r.grad_norm_dino_head, one.grad_norm_dino_head, &format!("step {step} grad_norm_dino_head"));
        assert_eq!(r.n_masked, one.n_masked, "step {step}: masked count summed over ranks");
    }
}

#[test]
fn two_ranks_of_b_equal_one_rank_of_2b() {
    let _g = RNG.lock().unwrap_or_else(|p| p.into_inner());
    for (centering, separate) in [(CenteringKind::Centering, true), (CenteringKind::SinkhornKnopp, false)] {
        let batches: Vec<SslBatch> = (0..3).map(|s| global_batch(100 + s)).collect();
        // one rank, batch 2b
        let mut single = SslModel::new(cfg(centering, separate), Device::Cpu, 0).unwrap();
        let start = params(&single);
        let one: Vec<StepRecord> = batches.iter().enumerate().map(|(i, b)| single.step(b, &SCHED, i as i64).unwrap()).collect();
        let want = params(&single);
        // two ranks, batch b each; rank 1 starts from other weights (seed 7) and must be overwritten by rank 0's
        let port = free_port();
        let mut shards: Vec<Vec<SslBatch>> = (0..W).map(|r| batches.iter().map(|b| shard(b, r)).collect()).collect();
        let results: Vec<(BTreeMap<String, Tensor>, BTreeMap<String, Tensor>, Vec<StepRecord>)> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..W)
                .map(|r| {
                    let mine = std::mem::take(&mut shards[r as usize]);
                    s.spawn(move || {
                        let group = Arc::new(pg(r, port));
                        let mut m = SslModel::new(cfg(centering, separate), Device::Cpu, if r == 0 { 0 } else { 7 }).unwrap();
                        m.set_dist(Box::new(group.clone())).unwrap();
                        let after_sync = params(&m);
                        let recs = mine.iter().enumerate().map(|(i, b)| m.step(b, &SCHED, i as i64).unwrap()).collect();
                        (after_sync, params(&m), recs)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("rank thread")).collect()
        });
        for (r, (synced, got, recs)) in results.iter().enumerate() {
            let (d0, k0) = max_diff(synced, &start);
            assert_eq!(d0, 0.0, "{centering:?} rank {r}: state after set_dist differs from rank 0's at {k0}");
            let (d, k) = max_diff(got, &want);
            assert!(d < 1e-5, "{centering:?} rank {r}: after 3 steps max |2 ranks − 1 rank| = {d} at {k}");
            for (i, rec) in recs.iter().enumerate() {
                check_records(std::slice::from_ref(rec), &one[i], i);
            }
        }
        // the model moved (the comparison is not between two untouched models)
        let moved = start.iter().map(|(k, t)| (t - &want[k]).abs().max().double_value(&[])).fold(0.0, f64::max);
        assert!(moved > 1e-4, "{centering:?}: the model did not move ({moved})");
    }
}

#[test]
fn checkpoint_load_is_synchronised_from_rank_0() {
    let _g = RNG.lock().unwrap_or_else(|p| p.into_inner());
    let c = cfg(CenteringKind::Centering, true);
    // Two different "checkpoints": rank 0 loads A, rank 1 loads B; afterwards both hold A (centres included).
    let mut a = SslModel::new(c.clone(), Device::Cpu, 1).unwrap();
    a.step(&global_batch(5), &SCHED, 0).unwrap();
    let state_a = a.state();
    let b = SslModel::new(c.clone(), Device::Cpu, 2).unwrap();
    let state_b = b.state();
    let (step_a, step_b) = (a.optimizer.step, b.optimizer.step);
    let config = serde_json::to_string(&c).unwrap();
    let port = free_port();
    let got: Vec<BTreeMap<String, Tensor>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..W)
            .map(|r| {
                let c = c.clone();
                let tensors: BTreeMap<String, Tensor> =
                    (if r == 0 { &state_a } else { &state_b }).iter().map(|(k, v)| (k.clone(), v.copy())).collect();
                let st = TrainState::new(StateKind::Ssl, config.clone(), if r == 0 { step_a } else { step_b }, tensors);
                s.spawn(move || {
                    let mut m = SslModel::new(c, Device::Cpu, 3).unwrap();
                    m.set_dist(Box::new(Arc::new(pg(r, port)))).unwrap();
                    m.restore(st, false).unwrap();
                    assert_eq!(m.optimizer.step, step_a, "rank {r}: optimizer step of rank 0's checkpoint");
                    m.state()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("rank thread")).collect()
    });
    for (r, st) in got.iter().enumerate() {
        assert_eq!(st.keys().collect::<Vec<_>>(), state_a.keys().collect::<Vec<_>>(), "rank {r}: same entries (pending stats too)");
        let (d, k) = max_diff(st, &state_a);
        assert_eq!(d, 0.0, "rank {r}: differs from rank 0's checkpoint at {k}");
    }
}
