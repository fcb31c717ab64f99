//! The one training-state format (crates/core/src/train/state.rs) and its version-1 readers: each fixture of
//! tests/fixtures/state-v1/ (written by the three trainers before the format, see its README) loads with the
//! current code; the parameters, moments, counters and caller metadata read back equal the file's; the version-2
//! file saved from that state holds the same state; the next step from the v1 file equals the next step from the
//! v2 file bit for bit, and equals (to rounding) the step the old code took (expected.json).
mod common;

use cxformer_core::classify::config::FinetuneConfig;
use cxformer_core::classify::finetune::FineTuner;
use cxformer_core::seg::config::SegConfig;
use cxformer_core::seg::model::SegModel;
use cxformer_core::ssl::head::HeadConfig;
use cxformer_core::ssl::{SslBatch, SslConfig, SslModel, StepSchedule};
use cxformer_core::train::state::{self, StateKind, TrainState};
use cxformer_core::{Backbone, VitConfig, WeightFile};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use tch::{Device, Kind, Tensor};

/// LibTorch's generator is process-global (stochastic depth is seeded per step): the tests run one at a time.
static RNG: Mutex<()> = Mutex::new(());

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state-v1").join(name)
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cxf-state-v1-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

// ---- the fixtures' configurations and batches (as in tests/fixtures/state-v1/generate.rs) ----

/// A 1-block ViT/14 at 28 px (2×2 patches), D 32, 1 register.
fn vit(drop_path_rate: f64) -> VitConfig {
    VitConfig { drop_path_rate, ..common::small_vit(32, 1, 28, 1) }
}

fn values(n: i64, seed: u64) -> Vec<f32> {
    common::lcg_values(n, seed)
}

fn pixels(b: i64, side: i64, seed: u64) -> Tensor {
    Tensor::from_slice(&values(b * 3 * side * side, seed)).reshape([b, 3, side, side])
}

fn ssl_cfg() -> SslConfig {
    let head = HeadConfig { in_dim: 32, out_dim: 16, hidden_dim: 32, bottleneck_dim: 8, nlayers: 2 };
    SslConfig { ibot_head: Some(HeadConfig { out_dim: 12, ..head }), n_local_crops: 1, ..common::small_ssl(vit(0.0), head) }
}

fn ssl_batch(seed: u64) -> SslBatch {
    let b = 2;
    let masks: Vec<bool> = values(2 * b * 4, seed + 7).into_iter().map(|v| v < -0.2).collect();
    SslBatch {
        global_crops: pixels(2 * b, 28, seed),
        local_crops: Some(pixels(b, 14, seed + 1)),
        masks: Tensor::from_slice(&masks).reshape([2 * b, 4]),
    }
}

const SCHED: StepSchedule = StepSchedule { lr: 1e-3, wd: 0.04, momentum: 0.9, teacher_temp: 0.04, last_layer_lr: 1e-3 };

fn ft_cfg() -> FinetuneConfig {
    let model = vit(0.1).to_json();
    FinetuneConfig::from_json(&format!(
        r#"{{"model": {model}, "numClasses": 2, "clsLayers": 1, "headLr": 1e-2, "backboneLr": 1e-3, "layerwiseDecay": 0.8,
            "weightDecay": 0.01, "epochs": 2, "stepsPerEpoch": 3, "warmupEpochs": 1, "schedule": "cosine", "seed": 11}}"#
    ))
    .unwrap()
}

fn ft_batch(s: u64) -> (Tensor, Tensor, Tensor) {
    let x = pixels(4, 28, 100 + s);
    let y: Vec<f32> = values(8, 200 + s).into_iter().map(|v| if v > 0.0 { 1.0 } else { 0.0 }).collect();
    let m = if s == 1 { Tensor::zeros([4, 2], (Kind::Uint8, Device::Cpu)) } else { Tensor::ones([4, 2], (Kind::Uint8, Device::Cpu)) };
    (x, Tensor::from_slice(&y).reshape([4, 2]), m)
}

fn seg_cfg() -> SegConfig {
    SegConfig::from_json(
        r#"{"head": "progressive", "numClasses": 3, "layers": [-1], "hidden": 8, "stages": 1, "unfreeze": true, "lr": 1e-2,
            "backboneLr": 1e-3, "weightDecay": 0.05, "clipGrad": 0.5, "seed": 5}"#,
    )
    .unwrap()
}

fn seg_batch(s: u64) -> (Tensor, Tensor) {
    let y: Vec<u8> = values(2 * 28 * 28, 300 + s).into_iter().map(|v| ((v + 1.0) * 1.5).floor().clamp(0.0, 2.0) as u8).collect();
    (pixels(2, 28, 400 + s), Tensor::from_slice(&y).reshape([2, 28, 28]))
}

fn seg_model(backbone_seed: i64) -> SegModel {
    SegModel::new(seg_cfg(), Backbone::random(&vit(0.1), Device::Cpu, backbone_seed).unwrap()).unwrap()
}

// ---- checks ----

/// Σ of every floating-point tensor of a state (f64), as expected.json records it.
fn checksum(state: &BTreeMap<String, Tensor>) -> f64 {
    state.values().filter(|t| t.is_floating_point()).map(|t| t.to_kind(Kind::Double).sum(Kind::Double).double_value(&[])).sum()
}

/// The loss and checksum the code that wrote the fixture got for the step after the saved state.
fn expected(trainer: &str) -> (f64, f64) {
    let text = std::fs::read_to_string(fixture("expected.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    (v[trainer]["loss"].as_f64().unwrap(), v[trainer]["checksum"].as_f64().unwrap())
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1.0)
}

/// Every tensor of `state` equals the file's tensor of that name, bit for bit, and the file holds nothing else but
/// the version-1 counters `skip`.
fn equals_file(state: &BTreeMap<String, Tensor>, file: &str, skip: &[&str]) {
    let raw = WeightFile::open(fixture(file)).unwrap().tensors().unwrap();
    let names: Vec<&String> = raw.keys().filter(|k| !skip.contains(&k.as_str())).collect();
    assert_eq!(names, state.keys().collect::<Vec<_>>(), "{file}: the state's tensors are the file's");
    for (k, t) in state {
        assert!(t.equal(&raw[k]), "{file}: {k} read back differs from the file");
    }
    let moments = state.iter().filter(|(k, _)| k.starts_with("optim.exp_avg_sq.")).map(|(_, t)| t.abs().max().double_value(&[])).fold(0.0, f64::max);
    assert!(moments > 0.0, "{file}: the fixture's moments are non-zero");
}

fn same_state(a: &BTreeMap<String, Tensor>, b: &BTreeMap<String, Tensor>, what: &str) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "{what}");
    for (k, t) in a {
        assert!(t.equal(&b[k]), "{what}: {k} differs");
    }
}

fn copies(state: BTreeMap<String, Tensor>) -> BTreeMap<String, Tensor> {
    state.into_iter().map(|(k, t)| (k, t.copy())).collect()
}

fn metadata(path: &std::path::Path) -> HashMap<String, String> {
    WeightFile::open(path).unwrap().metadata()
}

#[test]
fn ssl_v1_checkpoint_resumes() {
    let _g = RNG.lock().unwrap_or_else(|p| p.into_inner());
    let v1 = fixture("ssl-ckpt-2.safetensors");
    let mut a = SslModel::new(ssl_cfg(), Device::Cpu, 9).unwrap();
    let md = a.load_checkpoint(&v1, false).unwrap();
    // The caller's metadata and the SSL writer's own pass through; the v1 convention keys do not.
    assert_eq!(md["cxformer_iteration"], "2");
    assert_eq!(md["cxformer_world_size"], "1");
    assert_eq!(md["cxformer_run_config"], r#"{"fixture":"state-v1"}"#);
    assert!(!md.contains_key("cxformer_checkpoint") && !md.contains_key("cxformer_ssl_config"), "{md:?}");
    assert_eq!(a.optimizer.step, 3);
    equals_file(&a.state(), "ssl-ckpt-2.safetensors", &["optim.step"]);

    // Version 2 of the same state: still read by embed/export (format pt, the backbone config, the iteration).
    let dir = scratch("ssl");
    let v2 = dir.join("ckpt-2.safetensors");
    a.save_checkpoint(&v2, 2, md.clone()).unwrap();
    let m2 = metadata(&v2);
    assert_eq!((m2["cxformer_state"].as_str(), m2["cxformer_state_version"].as_str(), m2["cxformer_step"].as_str()), ("ssl", "2", "3"));
    assert_eq!((m2["format"].as_str(), m2["cxformer_iteration"].as_str()), ("pt", "2"));
    assert_eq!(m2["cxformer_config"], ssl_cfg().model.to_json());
    assert_eq!(m2["cxformer_train_config"], serde_json::to_string(&ssl_cfg()).unwrap());
    let mut b = SslModel::new(ssl_cfg(), Device::Cpu, 10).unwrap();
    assert_eq!(b.load_checkpoint(&v2, false).unwrap(), md);
    assert_eq!(b.optimizer.step, 3);
    same_state(&a.state(), &b.state(), "v2 read back");

    // The next step: v1 = v2 bit for bit, and the old code's step to rounding.
    let (ra, rb) = (a.step(&ssl_batch(13), &SCHED, 3).unwrap(), b.step(&ssl_batch(13), &SCHED, 3).unwrap());
    assert_eq!(ra.total_loss, rb.total_loss);
    let (sa, sb) = (copies(a.state()), copies(b.state()));
    same_state(&sa, &sb, "after the next step");
    let (loss, sum) = expected("ssl");
    assert!(close(ra.total_loss, loss, 1e-6) && close(checksum(&sa), sum, 1e-6), "{} vs {loss}, {} vs {sum}", ra.total_loss, checksum(&sa));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn finetune_v1_state_resumes() {
    let _g = RNG.lock().unwrap_or_else(|p| p.into_inner());
    let v1 = fixture("finetune-state.safetensors");
    let (mut a, _) = FineTuner::new(ft_cfg(), Device::Cpu, None, 9).unwrap();
    let md = a.load_state(&v1, false).unwrap();
    assert_eq!(md["cxformer_progress"], r#"{"epoch":1,"batch":1,"fixture":"state-v1"}"#);
    assert_eq!(md["cxformer_world_size"], "1");
    assert!(!md.contains_key("format") && !md.contains_key("cxformer_finetune_config"), "{md:?}");
    assert_eq!((a.step, a.optimizer.step), (4, 3), "scheduled and optimizer steps (one batch was skipped)");
    equals_file(&a.state().unwrap(), "finetune-state.safetensors", &["optim.step", "finetune.step"]);

    let dir = scratch("finetune");
    let v2 = dir.join("state.safetensors");
    a.save_state(&v2, md.clone()).unwrap();
    let m2 = metadata(&v2);
    assert_eq!((m2["cxformer_state"].as_str(), m2["cxformer_step"].as_str(), m2["cxformer_counters"].as_str()), ("finetune", "3", r#"{"scheduled_steps":4}"#));
    assert_eq!(m2["cxformer_train_config"], ft_cfg().to_json());
    let (mut b, _) = FineTuner::new(ft_cfg(), Device::Cpu, None, 10).unwrap();
    assert_eq!(b.load_state(&v2, false).unwrap(), md);
    assert_eq!((b.step, b.optimizer.step), (4, 3));
    same_state(&a.state().unwrap(), &b.state().unwrap(), "v2 read back");

    // The next step (stochastic depth seeded from the scheduled step): v1 = v2 bit for bit, and the old code's.
    let (x, y, m) = ft_batch(4);
    let (ra, rb) = (a.train_step(&x, &y, &m).unwrap(), b.train_step(&x, &y, &m).unwrap());
    assert_eq!(ra, rb);
    let (sa, sb) = (copies(a.state().unwrap()), copies(b.state().unwrap()));
    same_state(&sa, &sb, "after the next step");
    let (loss, sum) = expected("finetune");
    assert!(close(ra.loss, loss, 1e-6) && close(checksum(&sa), sum, 1e-6), "{} vs {loss}, {} vs {sum}", ra.loss, checksum(&sa));

    // A v1 state of another configuration is refused, naming the keys, unless forced.
    let mut other = ft_cfg();
    other.head_lr = 2e-2;
    let (mut c, _) = FineTuner::new(other, Device::Cpu, None, 9).unwrap();
    let e = c.load_state(&v1, false).unwrap_err().to_string();
    assert!(e.contains("differing: headLr") && e.contains("nothing was loaded"), "{e}");
    c.load_state(&v1, true).unwrap();
    assert_eq!(c.step, 4);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn seg_v1_last_state_resumes() {
    let _g = RNG.lock().unwrap_or_else(|p| p.into_inner());
    let v1 = fixture("seg-last.safetensors");
    let mut a = seg_model(7);
    let md = a.load(&v1, false).unwrap();
    assert_eq!((md["epoch"].as_str(), md["run"].as_str()), ("1", r#"{"fixture":"state-v1"}"#));
    assert_eq!(md["seg_state"], r#"{"epoch":1,"step":3,"fixture":"state-v1"}"#);
    assert!(!md.contains_key("optim_step") && !md.contains_key("format"), "{md:?}");
    assert_eq!(a.steps(), 3);
    equals_file(&copies(a.state(true)), "seg-last.safetensors", &[]);

    let dir = scratch("seg");
    let v2 = dir.join("last.safetensors");
    a.save(&v2, true, md.clone()).unwrap();
    let m2 = metadata(&v2);
    assert_eq!((m2["cxformer_state"].as_str(), m2["cxformer_step"].as_str()), ("seg", "3"));
    assert_eq!(m2["cxformer_train_config"], a.cfg.to_json());
    let mut b = seg_model(8);
    assert_eq!(b.load(&v2, false).unwrap(), md);
    assert_eq!(b.steps(), 3);
    same_state(&copies(a.state(true)), &copies(b.state(true)), "v2 read back");

    // The next step (unfrozen backbone, stochastic depth seeded from the step): v1 = v2 bit for bit, and the old code's.
    let (x, y) = seg_batch(3);
    let (ra, rb) = (a.train_step(&x, &y, 1e-2).unwrap(), b.train_step(&x, &y, 1e-2).unwrap());
    assert_eq!((ra.loss, ra.grad_norm, ra.step), (rb.loss, rb.grad_norm, rb.step));
    let (sa, sb) = (copies(a.state(true)), copies(b.state(true)));
    same_state(&sa, &sb, "after the next step");
    let (loss, sum) = expected("seg");
    assert!(close(ra.loss, loss, 1e-6) && close(checksum(&sa), sum, 1e-6), "{} vs {loss}, {} vs {sum}", ra.loss, checksum(&sa));

    // The model saved without its optimizer keeps its own format and loads locally, weights only.
    let best = dir.join("best.safetensors");
    a.save(&best, false, HashMap::new()).unwrap();
    assert_eq!(metadata(&best)["format"], "cxformer-seg");
    let mut c = seg_model(9);
    c.load(&best, false).unwrap();
    assert_eq!(c.steps(), 0);
    same_state(&copies(a.state(false)), &copies(c.state(false)), "weights only");
    let e = c.load_state(&best, false).unwrap_err().to_string();
    assert!(e.contains("without its optimizer"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_v1_file_of_another_trainer_is_named() {
    let e = TrainState::read(&fixture("ssl-ckpt-2.safetensors"), StateKind::Finetune).unwrap_err().to_string();
    assert!(e.contains("not a cxformer fine-tuning state"), "{e}");
    let e = TrainState::read(&fixture("finetune-state.safetensors"), StateKind::Ssl).unwrap_err().to_string();
    assert!(e.contains("not a cxformer training checkpoint"), "{e}");
    let st = TrainState::read(&fixture("seg-last.safetensors"), StateKind::Seg).unwrap();
    assert_eq!((st.kind, st.step, st.config.as_str()), (StateKind::Seg, 3, seg_cfg().to_json().as_str()));
    assert_eq!(state::config_diff(&st.config, &SegConfig { seed: 6, ..seg_cfg() }.to_json()), vec!["seed"]);
}
