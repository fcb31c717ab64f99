//! Linear-probe head training (crates/core/src/classify/): learning a separable multi-label problem, masked
//! entries having no effect, all-masked batches, determinism, the lr schedule, the multiclass path, save/load
//! and the error messages for bad shapes.
mod common;

use cxformer_core::Error;
use cxformer_core::classify::config::{EpochRecord, ProbeConfig, ProbeTask, Schedule};
use cxformer_core::classify::head::FittedHead;
use cxformer_core::classify::loss::masked_loss;
use cxformer_core::classify::probe::{epoch_permutation, fit, lr_at, steps_per_epoch};
use std::collections::{BTreeMap, HashMap};
use tch::{Device, Kind, Tensor};

/// Deterministic test data without LibTorch's global generator (tests run in parallel threads).
struct Lcg(u64);
impl Lcg {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// N×F Gaussian features and C labels y_c = [x·w_c + b_c > 0] (linearly separable), with a margin: rows
/// closer than 0.1 to any hyperplane are pushed away so the problem is cleanly separable.
fn separable(n: usize, f: usize, c: usize, seed: u64) -> (Tensor, Tensor) {
    let mut r = Lcg(seed);
    let w: Vec<Vec<f64>> = (0..c).map(|_| (0..f).map(|_| r.normal()).collect()).collect();
    let b: Vec<f64> = (0..c).map(|_| 0.3 * r.normal()).collect();
    let mut xs = Vec::with_capacity(n * f);
    let mut ys = Vec::with_capacity(n * c);
    for _ in 0..n {
        let x: Vec<f64> = (0..f).map(|_| r.normal()).collect();
        for j in 0..c {
            let s: f64 = x.iter().zip(&w[j]).map(|(a, b)| a * b).sum::<f64>() + b[j];
            ys.push(if s > 0.0 { 1.0f32 } else { 0.0 });
        }
        xs.extend(x.iter().map(|&v| v as f32));
    }
    (Tensor::from_slice(&xs).reshape([n as i64, f as i64]), Tensor::from_slice(&ys).reshape([n as i64, c as i64]))
}

fn ones_mask(t: &Tensor) -> Tensor {
    Tensor::ones(t.size(), (Kind::Uint8, Device::Cpu))
}

fn cfg(epochs: i64, lr: f64) -> ProbeConfig {
    ProbeConfig { lr, epochs, batch_size: 32, schedule: Schedule::Cosine, clip_grad: 0.0, ..ProbeConfig::default() }
}

/// AUROC of one score column against 0/1 labels (Mann–Whitney, ties count ½).
fn auroc(scores: &[f32], labels: &[f32]) -> f64 {
    let pos: Vec<f32> = scores.iter().zip(labels).filter(|(_, l)| **l > 0.5).map(|(s, _)| *s).collect();
    let neg: Vec<f32> = scores.iter().zip(labels).filter(|(_, l)| **l <= 0.5).map(|(s, _)| *s).collect();
    let mut wins = 0.0;
    for p in &pos {
        for q in &neg {
            wins += if p > q { 1.0 } else if p == q { 0.5 } else { 0.0 };
        }
    }
    wins / (pos.len() * neg.len()) as f64
}

fn column(t: &Tensor, j: i64) -> Vec<f32> {
    Vec::<f32>::try_from(t.select(1, j).contiguous()).unwrap()
}

fn same_weights(a: &FittedHead, b: &FittedHead) -> bool {
    a.layers.len() == b.layers.len()
        && a.layers.iter().zip(&b.layers).all(|((wa, ba), (wb, bb))| wa.equal(wb) && ba.equal(bb))
}

fn all_epochs(_: EpochRecord) -> bool {
    true
}

#[test]
fn separable_multilabel_problem_is_learnt() {
    let dev = common::test_device();
    let (x, y) = separable(400, 16, 3, 11);
    let (vx, vy) = separable(200, 16, 3, 11); // the first 200 training rows: only the val-loss plumbing is tested here
    let mut seen = Vec::new();
    let head = fit(&x, &y, &ones_mask(&y), Some((&vx, &vy, &ones_mask(&vy))), &cfg(40, 0.05), dev, |r| {
        seen.push(r);
        true
    })
    .unwrap();
    assert_eq!(head.history.len(), 40);
    assert_eq!(seen, head.history);
    let first = &head.history[0];
    let last = &head.history[39];
    assert!(last.train_loss < 0.5 * first.train_loss, "{first:?} → {last:?}");
    assert!(last.val_loss.unwrap().is_finite());
    assert_eq!(last.train_entries, 400 * 3);
    assert_eq!(last.steps, 40 * steps_per_epoch(400, 32));

    let p = head.predict(&x).unwrap();
    assert_eq!(p.size(), vec![400, 3]);
    for j in 0..3 {
        let (s, l) = (column(&p, j), column(&y, j));
        let a = auroc(&s, &l);
        let acc = s.iter().zip(&l).filter(|(s, l)| (**s > 0.5) == (**l > 0.5)).count() as f64 / s.len() as f64;
        assert!(a > 0.95, "class {j}: train AUROC {a}");
        assert!(acc > 0.95, "class {j}: train accuracy {acc}");
    }
    let pmin = p.min().double_value(&[]);
    let pmax = p.max().double_value(&[]);
    assert!((0.0..=1.0).contains(&pmin) && (0.0..=1.0).contains(&pmax));
}

#[test]
fn mlp_head_and_pos_weight_learn_too() {
    let (x, y) = separable(300, 8, 2, 5);
    let c = ProbeConfig { hidden: vec![32], pos_weight: Some(vec![2.0, 0.5]), weight_decay: 0.01, clip_grad: 1.0, ..cfg(30, 0.01) };
    let head = fit(&x, &y, &ones_mask(&y), None, &c, Device::Cpu, all_epochs).unwrap();
    assert_eq!(head.layers.len(), 2);
    assert_eq!(head.layers[0].0.size(), vec![32, 8]);
    assert_eq!(head.layers[1].0.size(), vec![2, 32]);
    assert_eq!((head.in_features(), head.out_features()), (8, 2));
    assert!(head.history.iter().all(|r| r.val_loss.is_none() && r.train_loss.is_finite()));
    let p = head.predict(&x).unwrap();
    for j in 0..2 {
        let a = auroc(&column(&p, j), &column(&y, j));
        assert!(a > 0.95, "class {j}: train AUROC {a}");
    }
}

#[test]
fn linear_head_init_follows_spec() {
    // 1 epoch at lr 0: the returned head is the initial one: weight N(0, 0.01²), bias 0 (docs/recipe.md §5.1).
    let (x, y) = separable(64, 200, 50, 3);
    let c = ProbeConfig { lr: 0.0, epochs: 1, ..ProbeConfig::default() };
    let head = fit(&x, &y, &ones_mask(&y), None, &c, Device::Cpu, all_epochs).unwrap();
    let (w, b) = &head.layers[0];
    assert_eq!(w.size(), vec![50, 200]);
    let std = w.std(true).double_value(&[]);
    let mean = w.mean(Kind::Float).double_value(&[]);
    assert!((std - 0.01).abs() < 0.0005, "std {std}");
    assert!(mean.abs() < 0.0005, "mean {mean}");
    assert_eq!(b.abs().sum(Kind::Float).double_value(&[]), 0.0);
}

#[test]
fn masked_entries_have_no_effect() {
    let dev = common::test_device();
    let (x, y) = separable(150, 10, 4, 21);
    // Mask about a third of the entries; then change every masked target (flip, and a few NaN).
    let mut r = Lcg(99);
    let mask: Vec<u8> = (0..150 * 4).map(|_| (r.uniform() > 0.33) as u8).collect();
    let mask = Tensor::from_slice(&mask).reshape([150, 4]);
    let mut y2 = Vec::<f32>::try_from(y.flatten(0, -1)).unwrap();
    let mv = Vec::<u8>::try_from(mask.flatten(0, -1)).unwrap();
    for (i, v) in y2.iter_mut().enumerate() {
        if mv[i] == 0 {
            *v = if i % 7 == 0 { f32::NAN } else { 1.0 - *v };
        }
    }
    let y2 = Tensor::from_slice(&y2).reshape([150, 4]);
    assert!(!y.equal(&y2));
    let c = ProbeConfig { weight_decay: 0.05, clip_grad: 1.0, ..cfg(5, 0.02) };
    let a = fit(&x, &y, &mask, Some((&x, &y, &mask)), &c, dev, all_epochs).unwrap();
    let b = fit(&x, &y2, &mask, Some((&x, &y2, &mask)), &c, dev, all_epochs).unwrap();
    assert!(same_weights(&a, &b), "masked targets changed the fitted weights");
    assert_eq!(a.history, b.history);
    // A bool mask is the same as the uint8 one.
    let c2 = fit(&x, &y, &mask.to_kind(Kind::Bool), None, &c, dev, all_epochs).unwrap();
    assert!(same_weights(&a, &c2));
    // ...and unmasking changes them.
    let d = fit(&x, &y, &ones_mask(&y), None, &c, dev, all_epochs).unwrap();
    assert!(!same_weights(&a, &d));
}

#[test]
fn all_masked_batches_give_zero_loss_and_zero_gradient() {
    let logits = Tensor::from_slice(&[0.3f32, -2.0, 5.0, 1.0, 0.0, -0.5]).reshape([2, 3]).set_requires_grad(true);
    let targets = Tensor::from_slice(&[f32::NAN, 1.0, 0.0, 1.0, f32::NAN, 0.0]).reshape([2, 3]);
    let none = Tensor::zeros([2, 3], (Kind::Bool, Device::Cpu));
    let pw = Tensor::from_slice(&[2.0f32, 1.0, 3.0]);
    for (task, pw) in [(ProbeTask::Multilabel, Some(&pw)), (ProbeTask::Multilabel, None), (ProbeTask::Multiclass, None)] {
        let (loss, count) = masked_loss(&logits, &targets, &none, task, pw).unwrap();
        assert_eq!(count, 0);
        assert_eq!(loss.double_value(&[]), 0.0, "{task:?}");
        loss.backward();
        let g = logits.grad();
        assert!(bool::try_from(g.isfinite().all()).unwrap(), "{task:?}: gradient {g:?}");
        assert_eq!(g.abs().sum(Kind::Float).double_value(&[]), 0.0, "{task:?}");
        let _ = logits.grad().zero_();
    }
    // Partly masked: the mean over the supervised entries only, matching the hand-computed BCE.
    let some = Tensor::from_slice(&[0u8, 1, 1, 1, 0, 0]).reshape([2, 3]).to_kind(Kind::Bool);
    let (loss, count) = masked_loss(&logits, &targets, &some, ProbeTask::Multilabel, None).unwrap();
    let bce = |z: f64, t: f64| -(t * (1.0 / (1.0 + (-z).exp())).ln() + (1.0 - t) * (1.0 - 1.0 / (1.0 + (-z).exp())).ln());
    let want = (bce(-2.0, 1.0) + bce(5.0, 0.0) + bce(1.0, 1.0)) / 3.0;
    assert_eq!(count, 3);
    assert!((loss.double_value(&[]) - want).abs() < 1e-5, "{} vs {want}", loss.double_value(&[]));
    // With pos_weight: positives weighted per class.
    let (loss, _) = masked_loss(&logits, &targets, &some, ProbeTask::Multilabel, Some(&pw)).unwrap();
    let want = (1.0 * bce(-2.0, 1.0) + bce(5.0, 0.0) + 2.0 * bce(1.0, 1.0)) / 3.0;
    assert!((loss.double_value(&[]) - want).abs() < 1e-5);

    // A fit whose batches are all fully masked: every batch skipped, finite, weights untouched.
    let (x, y) = separable(40, 6, 2, 4);
    let zero = Tensor::zeros([40, 2], (Kind::Uint8, Device::Cpu));
    let c = ProbeConfig { epochs: 3, batch_size: 8, lr: 0.1, weight_decay: 0.1, ..ProbeConfig::default() };
    let h = fit(&x, &y, &zero, Some((&x, &y, &zero)), &c, Device::Cpu, all_epochs).unwrap();
    let init = fit(&x, &y, &ones_mask(&y), None, &ProbeConfig { lr: 0.0, weight_decay: 0.0, ..c.clone() }, Device::Cpu, all_epochs).unwrap();
    assert!(same_weights(&h, &init));
    for r in &h.history {
        assert_eq!((r.train_loss, r.train_entries, r.skipped_batches, r.val_loss), (0.0, 0, 5, None));
    }
    // Mixed: only rows 0 and 1 are supervised, so at least 3 of the 5 batches are all-masked; losses stay finite.
    let mut m = vec![0u8; 80];
    m[..4].iter_mut().for_each(|v| *v = 1);
    let m = Tensor::from_slice(&m).reshape([40, 2]);
    let h = fit(&x, &y, &m, Some((&x, &y, &m)), &c, Device::Cpu, all_epochs).unwrap();
    for r in &h.history {
        assert!(r.train_loss.is_finite() && r.val_loss.unwrap().is_finite());
        assert_eq!(r.train_entries, 4);
        assert!((3..=4).contains(&r.skipped_batches), "{r:?}");
    }
}

#[test]
fn fits_are_deterministic_for_a_seed() {
    let dev = common::test_device();
    let (x, y) = separable(120, 12, 3, 8);
    let m = ones_mask(&y);
    let c = ProbeConfig { hidden: vec![16], warmup_epochs: 1, ..cfg(4, 0.01) };
    // Interleave with other threads drawing from LibTorch's global generator: it must not matter.
    let noise = std::thread::spawn(|| {
        for i in 0..200 {
            tch::manual_seed(i);
            let _ = Tensor::randn([64, 64], (Kind::Float, Device::Cpu)).sum(Kind::Float);
        }
    });
    let a = fit(&x, &y, &m, None, &c, dev, all_epochs).unwrap();
    let b = fit(&x, &y, &m, None, &c, dev, all_epochs).unwrap();
    noise.join().unwrap();
    assert!(same_weights(&a, &b));
    assert_eq!(a.history, b.history);
    let other = fit(&x, &y, &m, None, &ProbeConfig { seed: c.seed + 1, ..c.clone() }, dev, all_epochs).unwrap();
    assert!(!same_weights(&a, &other));
    // Permutations: a permutation of 0..n, seeded, different per epoch.
    let p0 = epoch_permutation(50, 7, 0);
    let mut sorted = p0.clone();
    sorted.sort();
    assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    assert_eq!(p0, epoch_permutation(50, 7, 0));
    assert_ne!(p0, epoch_permutation(50, 7, 1));
    assert_ne!(p0, epoch_permutation(50, 8, 0));
}

#[test]
fn warmup_and_cosine_lr_match_hand_computation() {
    // epochs 10, warm-up 2, 5 steps per epoch: T = 50, W = 10, lr 0.1.
    let c = ProbeConfig { lr: 0.1, epochs: 10, warmup_epochs: 2, schedule: Schedule::Cosine, ..ProbeConfig::default() };
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    assert_eq!(lr_at(&c, 0, 5), 0.0);
    assert!(close(lr_at(&c, 3, 5), 0.1 * 3.0 / 9.0)); // numpy.linspace(0, 0.1, 10)[3]
    assert!(close(lr_at(&c, 9, 5), 0.1));
    assert!(close(lr_at(&c, 10, 5), 0.1)); // cosine starts at the peak
    assert!(close(lr_at(&c, 30, 5), 0.05)); // half-way: ½·0.1·(1 + cos(π/2))
    assert!(close(lr_at(&c, 20, 5), 0.05 * (1.0 + (std::f64::consts::PI / 4.0).cos())));
    assert!(close(lr_at(&c, 49, 5), 0.05 * (1.0 + (std::f64::consts::PI * 39.0 / 40.0).cos())));
    assert_eq!(lr_at(&c, 50, 5), 0.0);
    // No warm-up = torch's CosineAnnealingLR(T, 0).
    let nw = ProbeConfig { warmup_epochs: 0, ..c.clone() };
    assert!(close(lr_at(&nw, 0, 5), 0.1));
    assert!(close(lr_at(&nw, 25, 5), 0.05));
    // Constant after the warm-up.
    let k = ProbeConfig { schedule: Schedule::Constant, ..c.clone() };
    assert!(close(lr_at(&k, 5, 5), 0.1 * 5.0 / 9.0));
    assert!(close(lr_at(&k, 10, 5), 0.1));
    assert!(close(lr_at(&k, 49, 5), 0.1));
    // A single warm-up step is linspace(0, lr, 1) = [0].
    let one = ProbeConfig { epochs: 3, warmup_epochs: 1, ..c.clone() };
    assert_eq!(lr_at(&one, 0, 1), 0.0);
    assert!(close(lr_at(&one, 1, 1), 0.1));
    // The history reports the lr of each epoch's last step (23 rows, batch 5 → S = 5).
    assert_eq!(steps_per_epoch(23, 5), 5);
    let (x, y) = separable(23, 4, 1, 2);
    let f = ProbeConfig { batch_size: 5, ..c.clone() };
    let h = fit(&x, &y, &ones_mask(&y), None, &f, Device::Cpu, all_epochs).unwrap();
    for r in &h.history {
        assert_eq!(r.steps, 5 * (r.epoch + 1));
        assert!(close(r.lr, lr_at(&f, r.steps - 1, 5)), "{r:?}");
    }
}

/// Three Gaussian blobs; class id in column 0, C = 3 columns.
fn blobs(n: usize, seed: u64) -> (Tensor, Tensor, Vec<i64>) {
    let mut r = Lcg(seed);
    let centres = [[3.0, 0.0, 0.0, 1.0], [0.0, 3.0, 0.0, -1.0], [0.0, 0.0, 3.0, 0.0]];
    let (mut xs, mut ys, mut ids) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let k = i % 3;
        xs.extend(centres[k].iter().map(|c| (c + 0.5 * r.normal()) as f32));
        ys.extend([k as f32, f32::NAN, -7.0]); // columns 1.. are ignored, even where the mask is 1
        ids.push(k as i64);
    }
    (Tensor::from_slice(&xs).reshape([n as i64, 4]), Tensor::from_slice(&ys).reshape([n as i64, 3]), ids)
}

#[test]
fn multiclass_softmax_path() {
    let (x, y, ids) = blobs(150, 31);
    let mask = ones_mask(&y);
    let c = ProbeConfig { task: ProbeTask::Multiclass, ..cfg(30, 0.05) };
    let head = fit(&x, &y, &mask, Some((&x, &y, &mask)), &c, Device::Cpu, all_epochs).unwrap();
    assert_eq!(head.history[0].train_entries, 150); // rows, not entries
    let p = head.predict(&x).unwrap();
    assert_eq!(p.size(), vec![150, 3]);
    let sums = p.sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
    assert!((sums - 1.0).abs().max().double_value(&[]) < 1e-5, "softmax rows sum to 1");
    let pred = Vec::<i64>::try_from(p.argmax(1, false)).unwrap();
    let acc = pred.iter().zip(&ids).filter(|(a, b)| a == b).count() as f64 / 150.0;
    assert!(acc > 0.95, "multiclass accuracy {acc}");
    assert!(head.history.last().unwrap().val_loss.unwrap() < head.history[0].val_loss.unwrap());

    // Masked rows (column 0) may hold anything; supervised rows must hold a class index in 0..C.
    let mut bad = Vec::<f32>::try_from(y.flatten(0, -1)).unwrap();
    bad[3 * 5] = 1.5;
    let bad = Tensor::from_slice(&bad).reshape([150, 3]);
    match fit(&x, &bad, &mask, None, &c, Device::Cpu, all_epochs) {
        Err(Error::Shape(m)) => assert!(m.contains("row 5") && m.contains("1.5") && m.contains("0..3"), "{m}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a fractional class id must be rejected"),
    }
    let mut m2 = Vec::<u8>::try_from(mask.flatten(0, -1)).unwrap();
    m2[3 * 5] = 0;
    let m2 = Tensor::from_slice(&m2).reshape([150, 3]);
    let mut nan = Vec::<f32>::try_from(bad.flatten(0, -1)).unwrap();
    nan[3 * 7] = f32::NAN;
    let nan = Tensor::from_slice(&nan).reshape([150, 3]);
    match fit(&x, &nan, &m2, None, &c, Device::Cpu, all_epochs) {
        Err(Error::Shape(m)) => assert!(m.contains("row 7") && m.contains("NaN"), "{m}"),
        _ => panic!("a NaN class id must be rejected"),
    }
    assert!(fit(&x, &bad, &m2, None, &ProbeConfig { epochs: 1, ..c.clone() }, Device::Cpu, all_epochs).is_ok());
}

#[test]
fn early_stop_from_the_callback() {
    let (x, y) = separable(50, 4, 2, 1);
    let h = fit(&x, &y, &ones_mask(&y), None, &cfg(10, 0.01), Device::Cpu, |r| r.epoch < 2).unwrap();
    assert_eq!(h.history.len(), 3);
}

#[test]
fn save_load_round_trip() {
    let dir = common::tmpdir("probe");
    let (x, y) = separable(60, 5, 2, 13);
    let c = ProbeConfig { hidden: vec![7, 3], pos_weight: Some(vec![1.5, 1.0]), ..cfg(3, 0.01) };
    let head = fit(&x, &y, &ones_mask(&y), None, &c, Device::Cpu, all_epochs).unwrap();
    let path = dir.join("head.safetensors");
    head.save(&path, HashMap::from([("dataset".to_string(), "synthetic".to_string())])).unwrap();
    let file = cxformer_core::WeightFile::open(&path).unwrap();
    assert_eq!(
        file.names(),
        vec!["head.0.bias", "head.0.weight", "head.1.bias", "head.1.weight", "head.2.bias", "head.2.weight"]
    );
    let md = file.metadata();
    assert_eq!(md["dataset"], "synthetic");
    assert_eq!(md["format"], "cxformer-probe-head");
    assert_eq!(ProbeConfig::from_json(&md["config"]).unwrap(), c);
    let back = FittedHead::load(&path).unwrap();
    assert_eq!(back.config, c);
    assert_eq!(back.history, head.history);
    assert!(same_weights(&head, &back));
    assert!(head.predict(&x).unwrap().equal(&back.predict(&x).unwrap()));

    // from_tensors checks the layer structure.
    let mut t = head.tensors();
    t.remove("head.2.bias");
    match FittedHead::from_tensors(c.clone(), &t) {
        Err(Error::Shape(m)) => assert!(m.contains("head.2.bias"), "{m}"),
        _ => panic!("missing tensor accepted"),
    }
    let t = head.tensors();
    let wrong = ProbeConfig { hidden: vec![7, 4], ..c.clone() };
    match FittedHead::from_tensors(wrong, &t) {
        Err(Error::Shape(m)) => assert!(m.contains("hidden[1] = 4"), "{m}"),
        _ => panic!("mismatched hidden accepted"),
    }
    // A safetensors file without the config metadata is not a head.
    let plain = dir.join("plain.safetensors");
    cxformer_core::weights::write_safetensors(&plain, &BTreeMap::from([("head.0.weight".to_string(), Tensor::zeros([2, 5], (Kind::Float, Device::Cpu)))]), HashMap::new())
        .unwrap();
    match FittedHead::load(&plain) {
        Err(Error::Weights { msg, .. }) => assert!(msg.contains("config"), "{msg}"),
        _ => panic!("file without config accepted"),
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn shape_err(r: cxformer_core::Result<FittedHead>) -> String {
    match r {
        Err(Error::Shape(m)) => m,
        Err(e) => panic!("expected a shape error, got {e}"),
        Ok(_) => panic!("expected a shape error"),
    }
}

fn config_err(r: cxformer_core::Result<FittedHead>) -> String {
    match r {
        Err(Error::Config(m)) => m,
        Err(e) => panic!("expected a config error, got {e}"),
        Ok(_) => panic!("expected a config error"),
    }
}

#[test]
fn bad_shapes_and_settings_are_errors_with_the_numbers() {
    let (x, y) = separable(20, 6, 3, 1);
    let m = ones_mask(&y);
    let c = cfg(1, 0.01);
    let run = |x: &Tensor, y: &Tensor, m: &Tensor, c: &ProbeConfig| fit(x, y, m, None, c, Device::Cpu, all_epochs);

    let msg = shape_err(run(&x.flatten(0, -1), &y, &m, &c));
    assert!(msg.contains("2-D") && msg.contains("[120]"), "{msg}");
    let msg = shape_err(run(&x.narrow(0, 0, 15), &y, &m, &c));
    assert!(msg.contains("15") && msg.contains("20"), "{msg}");
    let msg = shape_err(run(&x, &y, &m.narrow(1, 0, 2), &c));
    assert!(msg.contains("mask") && msg.contains("[20, 2]") && msg.contains("[20, 3]"), "{msg}");
    let msg = shape_err(run(&x.narrow(0, 0, 0), &y.narrow(0, 0, 0), &m.narrow(0, 0, 0), &c));
    assert!(msg.contains("no rows"), "{msg}");
    let msg = shape_err(run(&x.to_kind(Kind::Int64), &y, &m, &c));
    assert!(msg.contains("floating"), "{msg}");
    // Validation split with another width.
    let (vx, vy) = separable(10, 5, 3, 1);
    let msg = shape_err(fit(&x, &y, &m, Some((&vx, &vy, &ones_mask(&vy))), &c, Device::Cpu, all_epochs));
    assert!(msg.contains("val") && msg.contains("F = 5") && msg.contains("F = 6"), "{msg}");
    // Unmasked NaN targets / NaN features.
    let mut yn = Vec::<f32>::try_from(y.flatten(0, -1)).unwrap();
    yn[4] = f32::NAN;
    let yn = Tensor::from_slice(&yn).reshape([20, 3]);
    let msg = shape_err(run(&x, &yn, &m, &c));
    assert!(msg.contains("1 supervised"), "{msg}");
    let xn = x.copy();
    let _ = xn.get(2).get(3).fill_(f64::INFINITY);
    assert!(shape_err(run(&xn, &y, &m, &c)).contains("1 values are NaN or infinite"));

    // Settings.
    let msg = config_err(run(&x, &y, &m, &ProbeConfig { pos_weight: Some(vec![1.0, 2.0]), ..c.clone() }));
    assert!(msg.contains("2 values") && msg.contains("C = 3"), "{msg}");
    let msg = config_err(run(&x, &y, &m, &ProbeConfig { task: ProbeTask::Binary, ..c.clone() }));
    assert!(msg.contains("binary") && msg.contains("got 3"), "{msg}");
    let msg = config_err(run(&x, &y, &m, &ProbeConfig { batch_size: 0, ..c.clone() }));
    assert!(msg.contains("batchSize"), "{msg}");
    let msg = config_err(run(&x, &y, &m, &ProbeConfig { warmup_epochs: 2, ..c.clone() }));
    assert!(msg.contains("warmupEpochs") && msg.contains("got 2"), "{msg}");
    let msg = config_err(run(&x, &y, &m, &ProbeConfig { hidden: vec![4, 0], ..c.clone() }));
    assert!(msg.contains("hidden[1]"), "{msg}");

    // predict checks F.
    let head = run(&x, &y, &m, &c).unwrap();
    match head.predict(&vx) {
        Err(Error::Shape(m)) => assert!(m.contains("F = 5") && m.contains("F = 6"), "{m}"),
        _ => panic!("wrong width accepted"),
    }
}

#[test]
fn config_json_is_camel_case_with_defaults() {
    let c = ProbeConfig::from_json(r#"{"hidden":[8],"lr":0.001,"weightDecay":0.01,"warmupEpochs":1,"schedule":"cosine","posWeight":[1,2],"task":"binary","clipGrad":0,"batchSize":4,"epochs":3,"seed":1}"#).unwrap();
    assert_eq!(c.hidden, vec![8]);
    assert_eq!((c.weight_decay, c.warmup_epochs, c.batch_size, c.clip_grad), (0.01, 1, 4, 0.0));
    assert_eq!((c.schedule, c.task), (Schedule::Cosine, ProbeTask::Binary));
    assert_eq!(c.pos_weight, Some(vec![1.0, 2.0]));
    assert_eq!(ProbeConfig::from_json(&c.to_json()).unwrap(), c);
    let d = ProbeConfig::from_json("{}").unwrap();
    assert_eq!(d, ProbeConfig::default());
    assert_eq!((d.lr, d.batch_size, d.epochs, d.seed, d.clip_grad), (5e-5, 10, 100, 7479, 1.0));
    assert_eq!((d.schedule, d.task, d.hidden.len()), (Schedule::Constant, ProbeTask::Multilabel, 0));
    let e = ProbeConfig::from_json(r#"{"learningRate":0.1}"#).unwrap_err().to_string();
    assert!(e.contains("learningRate"), "{e}");
    assert!(ProbeConfig::from_json(r#"{"schedule":"linear"}"#).is_err());
}

#[test]
fn auroc_matches_sklearn_hand_cases() {
    use cxformer_core::classify::select::auroc as rank_auroc;
    // scikit-learn's roc_auc_score docstring example: 0.75.
    assert_eq!(rank_auroc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]), Some(0.75));
    // A tied positive/negative pair counts 1/2; all-equal scores give 0.5; one label value → undefined.
    assert_eq!(rank_auroc(&[0.5, 0.5, 0.9], &[true, false, true]), Some(0.75));
    assert_eq!(rank_auroc(&[0.3, 0.3, 0.3, 0.3], &[true, false, true, false]), Some(0.5));
    assert_eq!(rank_auroc(&[0.3, 0.4], &[true, true]), None);
}

#[test]
fn best_epoch_by_validation_auroc_and_patience() {
    let (x, y) = separable(200, 8, 2, 11);
    let (vx, vy) = separable(80, 8, 2, 12);
    let (m, vm) = (ones_mask(&y), ones_mask(&vy));
    let mut c = cfg(12, 0.05);
    c.select_best = cxformer_core::classify::config::SelectBest::ValAuroc;
    let head = fit(&x, &y, &m, Some((&vx, &vy, &vm)), &c, Device::Cpu, all_epochs).unwrap();
    let aurocs: Vec<f64> = head.history.iter().map(|r| r.val_auroc.expect("valAuroc recorded")).collect();
    let best = aurocs.iter().cloned().fold(f64::MIN, f64::max);
    let first_best = aurocs.iter().position(|&a| a == best).unwrap() as i64;
    assert_eq!(head.best_epoch, Some(first_best), "{aurocs:?}");
    // The returned weights are that epoch's: their validation AUROC equals the recorded best.
    let probs = head.predict(&vx).unwrap();
    let mean = (auroc(&column(&probs, 0), &column(&vy, 0)) + auroc(&column(&probs, 1), &column(&vy, 1))) / 2.0;
    assert!((mean - best).abs() < 1e-9, "{mean} vs {best}");
    // Patience 1 with an impossible-to-beat first epoch stops after two epochs.
    c.select_best = cxformer_core::classify::config::SelectBest::ValLoss;
    c.patience = 1;
    c.lr = 0.0; // nothing changes: epoch 0 stays the best, epoch 1 does not improve → stop
    let still = fit(&x, &y, &m, Some((&vx, &vy, &vm)), &c, Device::Cpu, all_epochs).unwrap();
    assert_eq!(still.history.len(), 2);
    assert_eq!(still.best_epoch, Some(0));
}
