//! The LLaVA trainer (crates/core/src/llava/train.rs) on the golden tiny LLaVA (fixtures/golden/lm/llava: a
//! Dinov2WithRegisters tower at 56 px, an mlp2x_gelu projector, a tiny Qwen2): align lowers the loss of a fixed
//! batch by ≥ 30 % within 200 steps changing the projector only (bitwise); LoRA finetuning changes the projector
//! and the adapters only; full finetuning leaves the tower alone; the same seed gives the same step reports;
//! save → load → continue equals the uninterrupted run bit for bit; states of another stage, base or config are
//! refused by name; 2 micro-batches of b = 1 batch of 2b and 2 Gloo thread-ranks × b = 1 process × 2b; the
//! merged export reloads with the trainer's logits; the config's defaults and refusals.
mod common;

use common::{golden_dir, tmpdir};
use cxformer_core::llava::train::{BASE_KEY, StepReport};
use cxformer_core::llava::{IGNORE_INDEX, LlavaBatch, LlavaModel, LlavaTrainConfig, LlavaTrainer, LmTuning, SaveOptions, TrainStage};
use cxformer_core::lm::LmLoadOptions;
use cxformer_core::model::sorted_vars;
use cxformer_core::train::state::{StateKind, TrainState};
use std::collections::{BTreeMap, HashMap};
use tch::{Tensor, nn};

const IMAGE: i64 = 500;
/// Collapsed prompt: 3 prompt ids, the image token, 6 report ids.
const T: i64 = 10;

fn golden() -> LlavaModel {
    LlavaModel::load(&golden_dir().join("lm/llava"), &LmLoadOptions::default()).unwrap().0
}

fn pixels() -> Tensor {
    common::golden("lm/llava.expected.safetensors", "pixel_values")
}

/// Sample `i` of a small data set: an image (1, 3, 56, 56) (the golden's, flipped or scaled), ids (1, T) with one
/// image token, labels (1, T) on the report tokens (the last 6 for even i, the last 3 for odd i).
fn sample(i: usize) -> (Tensor, Tensor, Tensor) {
    let px = pixels();
    let px = match i % 4 {
        0 => px,
        1 => px.flip([3]),
        2 => px.flip([2]),
        _ => px * 0.5,
    };
    let report: Vec<i64> = common::lcg_values(6, 40 + i as u64).iter().map(|v| 2 + ((v + 1.0) * 248.0) as i64).collect();
    let mut ids = vec![11, 57 + i as i64, 93, IMAGE];
    ids.extend(&report);
    let keep = if i.is_multiple_of(2) { 6 } else { 3 };
    let labels: Vec<i64> = ids.iter().enumerate().map(|(j, &x)| if j as i64 >= T - keep { x } else { IGNORE_INDEX }).collect();
    (px, Tensor::from_slice(&ids).view([1, T]), Tensor::from_slice(&labels).view([1, T]))
}

/// Samples `idx` as one batch.
fn batch(idx: &[usize]) -> (Tensor, Tensor, Tensor) {
    let s: Vec<_> = idx.iter().map(|&i| sample(i)).collect();
    let cat = |f: fn(&(Tensor, Tensor, Tensor)) -> &Tensor| Tensor::cat(&s.iter().map(f).collect::<Vec<_>>(), 0);
    (cat(|x| &x.0), cat(|x| &x.1), cat(|x| &x.2))
}

fn step(tr: &mut LlavaTrainer, b: &(Tensor, Tensor, Tensor)) -> StepReport {
    tr.step(&[LlavaBatch::new(&b.0, &b.1, None, &b.2)]).unwrap()
}

fn cfg(json: &str) -> LlavaTrainConfig {
    LlavaTrainConfig::from_json(json).unwrap()
}

/// LoRA finetuning, f32, constant lr after no warm-up.
fn lora_cfg(dropout: f64) -> LlavaTrainConfig {
    cfg(&format!(
        r#"{{"stage":"finetune","lr":2e-3,"lmLr":1e-3,"weightDecay":0.01,"warmupSteps":0,"totalSteps":100,"schedule":"constant",
            "precision":"f32","lora":{{"rank":4,"alpha":8,"dropout":{dropout}}}}}"#
    ))
}

fn values(vs: &nn::VarStore) -> BTreeMap<String, Tensor> {
    sorted_vars(vs).into_iter().map(|(n, t)| (n, t.detach().copy())).collect()
}

fn lora_values(m: &LlavaModel) -> BTreeMap<String, Tensor> {
    values(&m.lora().unwrap().vs)
}

fn snapshot(t: &LlavaTrainer) -> BTreeMap<String, Tensor> {
    t.state().unwrap().into_iter().map(|(k, v)| (k, v.copy())).collect()
}

use common::state_max_diff as max_diff;

#[test]
fn config_defaults_follow_llava_rad_and_refusals_name_the_field() {
    let a = LlavaTrainConfig::align();
    assert_eq!((a.stage, a.lr, a.lm_lr, a.weight_decay, a.warmup_steps, a.total_steps), (TrainStage::Align, 1e-3, None, 0.0, 30, 1000));
    assert_eq!((a.grad_accum_steps, a.train_vision, a.clip_grad, a.adamw_betas), (1, false, 1.0, [0.9, 0.999]));
    assert!(a.lora.is_none());
    let f = LlavaTrainConfig::finetune_lora();
    assert_eq!((f.lr, f.lm_lr), (1e-4, Some(1e-4)));
    let Some(LmTuning::Lora(l)) = &f.lora else { panic!("{:?}", f.lora) };
    assert_eq!((l.rank, l.alpha, l.dropout, l.target_modules.len()), (64, 128.0, 0.05, 0));
    assert_eq!(cfg(r#"{"stage":"finetune"}"#).lora, Some(LmTuning::Full), "absent lora = full finetuning");
    // The resolved JSON round-trips and holds every value.
    assert_eq!(cfg(&f.to_json()), f);
    assert!(f.to_json().contains("\"warmupSteps\":30") && f.to_json().contains("\"precision\":\"bf16\""), "{}", f.to_json());
    for (json, want) in [
        (r#"{"stage":"align","oops":1}"#, "oops"),
        (r#"{"stage":"align","trainVision":true}"#, "trainVision"),
        (r#"{"stage":"align","lora":{}}"#, "lora applies to the finetune stage only"),
        (r#"{"stage":"align","lmLr":1e-4}"#, "lmLr applies to the finetune stage only"),
        (r#"{"stage":"finetune","lora":"half"}"#, "lora: expected \"full\""),
        (r#"{"stage":"finetune","lora":{"rank":0}}"#, "lora: LoRA rank must be ≥ 1"),
        (r#"{"stage":"finetune","lora":{"rnak":4}}"#, "rnak"),
        (r#"{"stage":"finetune","gradAccumSteps":0}"#, "gradAccumSteps"),
        (r#"{"stage":"finetune","lr":-1}"#, "lr must be"),
        (r#"{"stage":"align","warmupSteps":20,"totalSteps":10}"#, "warmupSteps"),
        (r#"{"stage":"pretrain"}"#, "pretrain"),
    ] {
        let e = LlavaTrainConfig::from_json(json).unwrap_err().to_string();
        assert!(e.contains(want), "{json}: {e}");
    }
}

#[test]
fn align_lowers_the_loss_30_percent_and_changes_only_the_projector() {
    let mut tr = LlavaTrainer::new(golden(), cfg(r#"{"stage":"align","lr":1e-2,"warmupSteps":0,"totalSteps":200,"schedule":"constant","precision":"f32"}"#), 0).unwrap();
    assert_eq!(tr.trainable_names(), ["multi_modal_projector.linear_1.bias", "multi_modal_projector.linear_1.weight", "multi_modal_projector.linear_2.bias", "multi_modal_projector.linear_2.weight"]);
    let before = values(&tr.model.vs);
    let b = batch(&[0, 1, 2, 3]);
    let first = step(&mut tr, &b);
    assert_eq!(first.tokens, 6 + 3 + 6 + 3);
    let mut at = None;
    for s in 1..200 {
        let r = step(&mut tr, &b);
        if r.loss <= 0.7 * first.loss {
            at = Some((s, r.loss));
            break;
        }
    }
    eprintln!("align: loss {:.3} → {at:?}", first.loss);
    let (_, last) = at.unwrap_or_else(|| panic!("the align loss did not fall 30 % within 200 steps from {}", first.loss));
    let ev = tr.evaluate(&LlavaBatch::new(&b.0, &b.1, None, &b.2)).unwrap();
    assert!(ev.tokens == 18 && ev.loss < 0.75 * first.loss, "{ev:?} vs {last}");
    for (n, v) in values(&tr.model.vs) {
        if n.starts_with("multi_modal_projector.") {
            assert!(!v.equal(&before[&n]), "{n} did not change");
        } else {
            assert!(v.equal(&before[&n]), "{n} changed in the align stage");
        }
    }
    // A batch without report tokens takes no update.
    let (px, ids, lab) = batch(&[0]);
    let r = step(&mut tr, &(px, ids, lab.full_like(IGNORE_INDEX)));
    assert!(r.skipped && r.tokens == 0, "{r:?}");
}

#[test]
fn lora_finetuning_changes_only_the_projector_and_the_adapters() {
    let mut tr = LlavaTrainer::new(golden(), lora_cfg(0.1), 3).unwrap();
    let names = tr.trainable_names();
    assert_eq!(names.len(), 4 + 2 * 7 * 2, "projector + A/B of q/k/v/o/gate/up/down in 2 layers");
    assert!(names.contains(&"language_model.model.layers.1.mlp.down_proj.lora_B.weight".to_string()), "{names:?}");
    for (n, lr_mult, wd) in tr.groups() {
        assert_eq!(lr_mult, if n.starts_with("language_model.") { 0.5 } else { 1.0 }, "{n}");
        assert_eq!(wd, if n.ends_with(".bias") { 0.0 } else { 1.0 }, "{n}");
    }
    let (base, adapters) = (values(&tr.model.vs), lora_values(&tr.model));
    for i in 0..4 {
        let r = step(&mut tr, &batch(&[i % 4, (i + 1) % 4]));
        assert!(!r.skipped && r.lm_lr == 1e-3 && r.lr == 2e-3, "{r:?}");
    }
    for (n, v) in values(&tr.model.vs) {
        assert_eq!(!v.equal(&base[&n]), n.starts_with("multi_modal_projector."), "{n}: changed = {}", !v.equal(&base[&n]));
    }
    for (n, v) in lora_values(&tr.model) {
        assert!(!v.equal(&adapters[&n]), "adapter {n} did not change");
    }

    // Full finetuning: the projector and every LM weight; the tower never.
    let full = cfg(r#"{"stage":"finetune","lr":1e-3,"lora":"full","warmupSteps":0,"totalSteps":10,"precision":"f32"}"#);
    let mut tr = LlavaTrainer::new(golden(), full, 3).unwrap();
    let before = values(&tr.model.vs);
    assert_eq!(tr.trainable_names().len(), before.keys().filter(|n| !n.starts_with("vision_tower.")).count());
    step(&mut tr, &batch(&[0, 1]));
    step(&mut tr, &batch(&[2, 3]));
    for (n, v) in values(&tr.model.vs) {
        if n.starts_with("vision_tower.") {
            assert!(v.equal(&before[&n]), "{n} changed");
        }
    }
    assert!(!tr.model.vs.variables()["language_model.model.layers.0.mlp.up_proj.weight"].equal(&before["language_model.model.layers.0.mlp.up_proj.weight"]));
    // The wrong number of micro-batches is refused.
    let b = batch(&[0]);
    let one = LlavaBatch::new(&b.0, &b.1, None, &b.2);
    let e = tr.step(&[one, one]).unwrap_err().to_string();
    assert!(e.contains("gradAccumSteps = 1") && e.contains("got 2"), "{e}");
}

#[test]
fn same_seed_same_reports_exact_resume_and_strict_loading() {
    let batches: Vec<_> = (0..6).map(|i| batch(&[i % 4, (i + 2) % 4])).collect();
    let run = |tr: &mut LlavaTrainer, r: std::ops::Range<usize>| -> Vec<StepReport> { r.map(|i| step(tr, &batches[i])).collect() };
    // LoRA dropout 0.1: the draws matter.
    let mut a = LlavaTrainer::new(golden(), lora_cfg(0.1), 7).unwrap();
    let mut b = LlavaTrainer::new(golden(), lora_cfg(0.1), 7).unwrap();
    let ra = run(&mut a, 0..6);
    assert_eq!(ra, run(&mut b, 0..6), "same seed, different step reports");
    let mut c = LlavaTrainer::new(golden(), lora_cfg(0.1), 8).unwrap();
    assert_ne!(run(&mut c, 0..6)[5].loss, ra[5].loss);
    let e = |t: &LlavaTrainer| t.evaluate(&LlavaBatch::new(&batches[0].0, &batches[0].1, None, &batches[0].2)).unwrap();
    assert_eq!(e(&a), e(&a), "evaluation draws no dropout");

    // Interrupted after 3 steps; a trainer with ANOTHER seed (other adapters' init) loads and runs the last 3.
    let dir = tmpdir("llava-resume");
    let path = dir.join("state.safetensors");
    let mut d = LlavaTrainer::new(golden(), lora_cfg(0.1), 7).unwrap();
    let mut rd = run(&mut d, 0..3);
    d.save_state(&path, HashMap::from([("epoch".to_string(), "1".to_string())])).unwrap();
    let file = cxformer_core::WeightFile::open(&path).unwrap();
    assert!(!file.names().iter().any(|n| n.starts_with("vision_tower.") || n.ends_with("up_proj.weight")), "frozen tensors in the state");
    assert_eq!(file.names().len(), 3 * (4 + 28), "trainable tensors and their two moments only");
    assert_eq!(file.metadata()[BASE_KEY], d.base_fingerprint());
    let mut e2 = LlavaTrainer::new(golden(), lora_cfg(0.1), 99).unwrap();
    let md = e2.load_state(&path, false).unwrap();
    assert_eq!(md, HashMap::from([("epoch".to_string(), "1".to_string())]));
    assert_eq!((e2.step, e2.seed, e2.optimizer.step), (3, 7, 3));
    rd.extend(run(&mut e2, 3..6));
    assert_eq!(rd, ra, "the resumed run's reports differ from the uninterrupted run");
    let (diff, key) = max_diff(&snapshot(&e2), &snapshot(&a));
    assert!(diff == 0.0, "resumed state differs at {key} by {diff}");
    assert!(lora_values(&e2.model).iter().all(|(k, v)| v.equal(&lora_values(&a.model)[k])));

    // Another stage: refused by name, also when a config change is allowed.
    let mut al = LlavaTrainer::new(golden(), cfg(r#"{"stage":"align","precision":"f32"}"#), 7).unwrap();
    let err = al.load_state(&path, true).unwrap_err().to_string();
    assert!(err.contains("a state of the finetune (LoRA) stage; this trainer is in the align stage") && err.contains("nothing was loaded"), "{err}");
    let mut full = LlavaTrainer::new(golden(), cfg(r#"{"stage":"finetune","precision":"f32"}"#), 7).unwrap();
    let err = full.load_state(&path, true).unwrap_err().to_string();
    assert!(err.contains("finetune (LoRA) stage; this trainer is in the finetune (full) stage"), "{err}");
    // Another base (one LM weight nudged): refused by name.
    let other = golden();
    tch::no_grad(|| {
        let _ = other.vs.variables()["language_model.model.norm.weight"].shallow_clone().f_add_scalar_(1e-3).unwrap();
    });
    let mut ob = LlavaTrainer::new(other, lora_cfg(0.1), 7).unwrap();
    assert_ne!(ob.base_fingerprint(), d.base_fingerprint());
    let err = ob.load_state(&path, true).unwrap_err().to_string();
    assert!(err.contains("another base model") && err.contains(d.base_fingerprint()), "{err}");
    // Another config: named unless forced.
    let mut lr = lora_cfg(0.1);
    lr.lr = 1e-3;
    let mut f = LlavaTrainer::new(golden(), lr, 7).unwrap();
    let err = f.load_state(&path, false).unwrap_err().to_string();
    assert!(err.contains("differing: lr") && err.contains("nothing was loaded"), "{err}");
    f.load_state(&path, true).unwrap();
    let err = TrainState::read(&path, StateKind::Rrg).unwrap_err().to_string();
    assert!(err.contains("a LLaVA training state, not a report captioner one"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn two_micro_batches_of_b_equal_one_batch_of_2b() {
    // Dropout off; sample 1 has half as many report tokens as sample 0 (the loss is weighted by tokens).
    let mut acc = lora_cfg(0.0);
    acc.grad_accum_steps = 2;
    let mut two = LlavaTrainer::new(golden(), acc, 5).unwrap();
    let mut one = LlavaTrainer::new(golden(), lora_cfg(0.0), 5).unwrap();
    for s in 0..3 {
        let (i, j) = (s % 4, (s + 1) % 4);
        let (bi, bj) = (batch(&[i]), batch(&[j]));
        let ra = two.step(&[LlavaBatch::new(&bi.0, &bi.1, None, &bi.2), LlavaBatch::new(&bj.0, &bj.1, None, &bj.2)]).unwrap();
        let rb = step(&mut one, &batch(&[i, j]));
        assert_eq!((ra.step, ra.tokens), (rb.step, rb.tokens));
        // Float order only: the loss and the gradient norm within 1e-6 relative (float32 sums in another order).
        assert!((ra.loss - rb.loss).abs() < 1e-6 * rb.loss.abs() && (ra.grad_norm - rb.grad_norm).abs() < 1e-6 * rb.grad_norm, "{ra:?} vs {rb:?}");
    }
    // After 3 AdamW steps (lr 2e-3): float noise, which Adam's normalisation lifts to ~1e-6 on near-zero gradients;
    // a wrong micro-batch weighting would show at the scale of the lr.
    let (d, k) = max_diff(&snapshot(&two), &snapshot(&one));
    assert!(d < 1e-5, "{k} differs by {d}");
}

#[test]
fn two_gloo_ranks_of_b_equal_one_process_of_2b() {
    let steps: Vec<[usize; 2]> = vec![[0, 1], [2, 3], [1, 2]];
    let mut single = LlavaTrainer::new(golden(), lora_cfg(0.0), 5).unwrap();
    let reports: Vec<StepReport> = steps.iter().map(|s| step(&mut single, &batch(s))).collect();
    let want = snapshot(&single);
    let port = common::free_port();
    let out: Vec<(Vec<StepReport>, BTreeMap<String, Tensor>)> = std::thread::scope(|scope| {
        let hs: Vec<_> = (0..2)
            .map(|rank| {
                let steps = steps.clone();
                scope.spawn(move || {
                    let pg = common::gloo_group(rank, 2, port);
                    // Rank 1 starts from another seed (other adapters): set_dist gives it rank 0's.
                    let mut tr = LlavaTrainer::new(golden(), lora_cfg(0.0), 5 + rank).unwrap();
                    tr.set_dist(Box::new(pg)).unwrap();
                    let rs: Vec<StepReport> = steps.iter().map(|s| step(&mut tr, &batch(&[s[rank as usize]]))).collect();
                    (rs, snapshot(&tr))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (rank, (rs, st)) in out.iter().enumerate() {
        for (a, b) in rs.iter().zip(&reports) {
            assert_eq!((a.step, a.tokens), (b.step, b.tokens), "rank {rank}");
            assert!((a.loss - b.loss).abs() < 1e-5 && (a.grad_norm - b.grad_norm).abs() < 1e-5, "rank {rank}: {a:?} vs {b:?}");
        }
        let (d, k) = max_diff(st, &want);
        assert!(d < 1e-5, "rank {rank}: {k} differs by {d}");
    }
}

#[test]
fn merged_export_reloads_with_the_trainers_logits_and_peft_export() {
    let mut tr = LlavaTrainer::new(golden(), lora_cfg(0.0), 11).unwrap();
    for i in 0..3 {
        step(&mut tr, &batch(&[i, i + 1]));
    }
    let (px, ids, _) = batch(&[0, 1]);
    let unmerged = tch::no_grad(|| tr.model.forward(&px, &ids, None)).unwrap();
    let dir = tmpdir("llava-train-export");
    let opts = SaveOptions { tokenizer_from: Some(golden_dir().join("lm/llava")), ..SaveOptions::default() };
    tr.save_hf(&dir.join("merged"), &opts).unwrap();
    assert!(tr.model.lora().is_some(), "the trainer keeps its adapters");
    let back = LlavaModel::load(&dir.join("merged"), &LmLoadOptions::default()).unwrap().0;
    assert!(back.lora().is_none());
    let merged = tch::no_grad(|| back.forward(&px, &ids, None)).unwrap();
    // (W + s·BA)x against Wx + s·B(Ax) in float32: the difference is rounding, which grows with the logits'
    // scale (|logit| ≈ 15 here after 3 steps): within 1e-5 relative to it.
    let d = common::max_abs_diff(&merged, &unmerged);
    let scale = unmerged.abs().max().double_value(&[]).max(1.0);
    eprintln!("merged vs unmerged: {d:.2e}, max |logit| {scale:.2}");
    assert!(d < 1e-5 * scale, "merged export's logits differ from the trainer's by {d:.2e} (max |logit| {scale:.2})");
    assert!(dir.join("merged/tokenizer.json").exists());
    // The adapters changed the model: the export is not the base.
    let base = tch::no_grad(|| golden().forward(&px, &ids, None)).unwrap();
    assert!(common::max_abs_diff(&merged, &base) > 1e-4);
    // Training goes on after the export.
    step(&mut tr, &batch(&[2, 3]));
    tr.save_peft(&dir.join("peft"), Some("cxformer/llava-tiny")).unwrap();
    let f = cxformer_core::WeightFile::open(dir.join("peft/adapter_model.safetensors")).unwrap();
    assert_eq!(f.names().len(), 28);
    assert!(f.names().contains(&"base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight".to_string()));
    // Align has no adapters to export.
    let al = LlavaTrainer::new(golden(), cfg(r#"{"stage":"align"}"#), 0).unwrap();
    assert!(al.save_peft(&dir.join("none"), None).unwrap_err().to_string().contains("no LoRA adapters"));
    al.save_hf(&dir.join("aligned"), &SaveOptions::default()).unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_model_must_match_the_stage() {
    let mut m = golden();
    m.attach_lora(&cxformer_core::llava::LoraConfig::new(2, 4.0)).unwrap();
    let e = LlavaTrainer::new(m, cfg(r#"{"stage":"align"}"#), 0).unwrap_err().to_string();
    assert!(e.contains("has LoRA adapters but the align stage"), "{e}");
    let mut m = golden();
    m.attach_lora(&cxformer_core::llava::LoraConfig::new(2, 4.0)).unwrap();
    let e = LlavaTrainer::new(m, lora_cfg(0.0), 0).unwrap_err().to_string();
    assert!(e.contains("differ from the config's lora"), "{e}");
}
