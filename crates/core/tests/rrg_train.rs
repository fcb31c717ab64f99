//! The report-captioner trainer (crates/core/src/rrg/train.rs) on the shared harness: it memorises 32 random
//! (memory, report) pairs until greedy decoding reproduces every report; the same seed gives the same losses
//! (dropout on); save_state → load_state → continue equals the uninterrupted run bit for bit; the strict
//! export/load round trip and its errors; 2 thread-ranks × b over Gloo equal 1 process × 2b; weight-decay groups,
//! warm-up lr, NaN and bad-input refusals; an encoder trained end to end (frozen blocks stay put, its lr groups,
//! exact resume, export = memory).
mod common;

use cxformer_core::Error;
use cxformer_core::rrg::{EncoderTrainConfig, GenerateOptions, ReportModel, ReportTrainer, RrgConfig, RrgTrainConfig, StepReport, generate, memory_tokens};
use cxformer_core::train::schedule::Schedule;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

const DV: i64 = 16;
const M: i64 = 4;

fn cfg(dropout: f64) -> RrgTrainConfig {
    let model = RrgConfig {
        d_model: 64,
        num_layers: 2,
        num_heads: 4,
        ffn_dim: 128,
        max_positions: 12,
        dropout,
        ..RrgConfig::phantom(24, DV)
    };
    RrgTrainConfig { lr: 3e-3, weight_decay: 0.01, warmup_steps: 10, total_steps: 400, schedule: Schedule::Cosine, ..RrgTrainConfig::new(model) }
}

/// `n` memories (n, M, DV) and reports (n, 8): [BOS] + 3..=6 random words (ids 3..23) + [EOS], padded with 0.
/// Words come from a 64-bit LCG, reports are distinct.
fn dataset(n: usize, seed: u64) -> (Tensor, Tensor, Vec<Vec<i64>>) {
    let feats = Tensor::from_slice(&common::lcg_values(n as i64 * M * DV, seed)).reshape([n as i64, M, DV]) * 2.0;
    let mut s = seed.wrapping_add(17);
    let mut next = |k: u64| {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (s >> 33) % k
    };
    let mut reports: Vec<Vec<i64>> = Vec::new();
    while reports.len() < n {
        let len = 3 + next(4) as usize;
        let mut r: Vec<i64> = (0..len).map(|_| 3 + next(21) as i64).collect();
        r.push(2);
        if !reports.contains(&r) {
            reports.push(r);
        }
    }
    let mut flat = Vec::new();
    for r in &reports {
        let mut row = vec![1];
        row.extend(r);
        row.resize(8, 0);
        flat.extend(row);
    }
    (feats, Tensor::from_slice(&flat).reshape([n as i64, 8]), reports)
}

fn snapshot(t: &ReportTrainer) -> BTreeMap<String, Tensor> {
    t.state().unwrap().into_iter().map(|(k, v)| (k, v.copy())).collect()
}

use common::state_max_diff as max_diff;

#[test]
fn memorises_32_reports_until_greedy_reproduces_them() {
    let (feats, toks, reports) = dataset(32, 5);
    let mut tr = ReportTrainer::create(cfg(0.0), Device::Cpu, 1).unwrap();
    let t0 = std::time::Instant::now();
    let mut solved_at = None;
    let mut first = 0.0;
    for step in 0..400 {
        let r = tr.step(&feats, None, &toks).unwrap();
        assert_eq!(r.tokens, reports.iter().map(|r| r.len() as i64).sum::<i64>());
        if step == 0 {
            first = r.loss;
        }
        if (step + 1) % 25 == 0 {
            let g = generate(&tr.model, &feats, None, &GenerateOptions::greedy(7), |_, _| true).unwrap();
            if g.tokens == reports {
                solved_at = Some(step + 1);
                break;
            }
        }
    }
    let ev = tr.evaluate(&feats, None, &toks).unwrap();
    eprintln!("solved at {solved_at:?} in {:.1} s; loss {first:.3} → eval {:.3}", t0.elapsed().as_secs_f64(), ev.loss);
    assert!(solved_at.is_some(), "greedy decoding did not reproduce the 32 reports within 400 steps");
    // Label smoothing 0.1 over 24 tokens keeps the loss above its floor, but far below the start (≈ ln 24 + …).
    assert!(first > 2.5 && ev.loss < 0.9, "{first} → {}", ev.loss);
}

#[test]
fn same_seed_same_losses_and_exact_resume() {
    let (feats, toks, _) = dataset(6, 9);
    let batches: Vec<(Tensor, Tensor)> = (0..6).map(|i| (feats.narrow(0, i % 3 * 2, 2), toks.narrow(0, i % 3 * 2, 2))).collect();
    let run = |tr: &mut ReportTrainer, range: std::ops::Range<usize>| -> Vec<StepReport> {
        range.map(|i| tr.step(&batches[i].0, None, &batches[i].1).unwrap()).collect()
    };
    // Dropout 0.3: the draws matter.
    let mut a = ReportTrainer::create(cfg(0.3), Device::Cpu, 7).unwrap();
    let mut b = ReportTrainer::create(cfg(0.3), Device::Cpu, 7).unwrap();
    let ra = run(&mut a, 0..6);
    let rb = run(&mut b, 0..6);
    assert_eq!(ra, rb, "same seed, different step reports");
    let mut c = ReportTrainer::create(cfg(0.3), Device::Cpu, 8).unwrap();
    assert_ne!(run(&mut c, 0..6)[5].loss, ra[5].loss);
    // Dropout is on in training only: two evaluations agree, and differ from the training loss of the same batch.
    let e1 = a.evaluate(&batches[0].0, None, &batches[0].1).unwrap();
    assert_eq!(e1, a.evaluate(&batches[0].0, None, &batches[0].1).unwrap());

    // Interrupted: 3 steps, save, a new trainer with ANOTHER seed loads and runs the last 3.
    let dir = common::tmpdir("rrg-resume");
    let path = dir.join("state.safetensors");
    let mut d = ReportTrainer::create(cfg(0.3), Device::Cpu, 7).unwrap();
    let mut rd = run(&mut d, 0..3);
    d.save_state(&path, HashMap::from([("epoch".to_string(), "1".to_string())])).unwrap();
    let mut e = ReportTrainer::create(cfg(0.3), Device::Cpu, 99).unwrap();
    let md = e.load_state(&path, false).unwrap();
    assert_eq!(md.get("epoch").map(String::as_str), Some("1"));
    assert_eq!((e.step, e.seed, e.optimizer.step), (3, 7, 3));
    rd.extend(run(&mut e, 3..6));
    assert_eq!(rd, ra, "resumed run's reports differ from the uninterrupted run");
    let (diff, key) = max_diff(&snapshot(&e), &snapshot(&a));
    assert!(diff == 0.0, "resumed state differs at {key} by {diff}");

    // Strict loading: another configuration is refused by name unless forced; another trainer kind is refused.
    let mut other = cfg(0.3);
    other.lr = 1e-3;
    let mut f = ReportTrainer::create(other, Device::Cpu, 7).unwrap();
    let err = f.load_state(&path, false).unwrap_err().to_string();
    assert!(err.contains("differing: lr") && err.contains("nothing was loaded"), "{err}");
    f.load_state(&path, true).unwrap();
    let mut small = cfg(0.3);
    small.model.num_layers = 1;
    let mut g = ReportTrainer::create(small, Device::Cpu, 7).unwrap();
    let err = g.load_state(&path, true).unwrap_err().to_string();
    assert!(err.contains("unexpected") && err.contains("decoder.layers.1."), "{err}");
    let err = cxformer_core::train::state::TrainState::read(&path, cxformer_core::train::state::StateKind::Finetune).unwrap_err().to_string();
    assert!(err.contains("report captioner training state, not a fine-tuning one"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn export_and_strict_load_round_trip() {
    let (feats, toks, _) = dataset(4, 13);
    let mut tr = ReportTrainer::create(cfg(0.1), Device::Cpu, 3).unwrap();
    for _ in 0..3 {
        tr.step(&feats, None, &toks).unwrap();
    }
    let dir = common::tmpdir("rrg-export");
    tr.export(&dir, HashMap::from([("run".to_string(), "test".to_string())])).unwrap();
    let back = ReportModel::load(&dir, Device::Cpu).unwrap();
    assert_eq!(back.cfg, tr.model.cfg);
    let (a, b) = (tr.model.named_tensors().unwrap(), back.named_tensors().unwrap());
    assert_eq!(max_diff(&a, &b).0, 0.0);
    // Tied embeddings: no lm_head; the key layout of the module docs.
    assert!(!a.contains_key("lm_head.weight"));
    for k in ["memory.norm.weight", "memory.proj.weight", "decoder.embed_tokens.weight", "decoder.embed_positions.weight",
        "decoder.layers.1.self_attn.q_proj.weight", "decoder.layers.0.cross_attn.v_proj.bias", "decoder.layers.1.mlp.fc2.weight",
        "decoder.layers.0.mlp_norm.bias", "decoder.final_norm.weight"] {
        assert!(a.contains_key(k), "{k} missing from {:?}", a.keys().collect::<Vec<_>>());
    }
    let md = cxformer_core::WeightFile::open(dir.join("model.safetensors")).unwrap().metadata();
    assert_eq!((md["cxformer_kind"].as_str(), md["run"].as_str(), md["cxformer_step"].as_str()), ("rrg", "test", "3"));
    let o = GenerateOptions::beam(3, 8);
    let g1 = generate(&tr.model, &feats, None, &o, |_, _| true).unwrap();
    let g2 = generate(&back, &feats, None, &o, |_, _| true).unwrap();
    assert_eq!(g1.tokens, g2.tokens);

    // A file with a key missing and one extra: both named, nothing loaded.
    let mut t: BTreeMap<String, Tensor> = a.iter().map(|(k, v)| (k.clone(), v.copy())).collect();
    t.remove("decoder.layers.0.mlp.fc1.bias");
    t.insert("decoder.extra.weight".into(), Tensor::zeros([2], (Kind::Float, Device::Cpu)));
    cxformer_core::weights::write_safetensors(&dir.join("model.safetensors"), &t, HashMap::new()).unwrap();
    let e = ReportModel::load(&dir, Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("model.safetensors") && e.contains("decoder.layers.0.mlp.fc1.bias") && e.contains("decoder.extra.weight"), "{e}");
    // A config.json that does not parse names the file.
    std::fs::write(dir.join("config.json"), "{\"vocabSize\": 24, \"dModel\": 64, \"oops\": 1}").unwrap();
    let e = ReportModel::load(&dir, Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("config.json") && e.contains("oops"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn groups_schedule_and_refusals() {
    let mut tr = ReportTrainer::create(cfg(0.0), Device::Cpu, 3).unwrap();
    for (name, wd) in tr.groups() {
        let matrix = !(name.ends_with(".bias") || name.contains("norm"));
        assert_eq!(wd, if matrix { 1.0 } else { 0.0 }, "{name}");
    }
    let (feats, toks, _) = dataset(2, 3);
    // Warm-up: linspace(0, lr, 10).
    let r0 = tr.step(&feats, None, &toks).unwrap();
    let r1 = tr.step(&feats, None, &toks).unwrap();
    assert_eq!((r0.lr, r1.step), (0.0, 1));
    assert!((r1.lr - 3e-3 / 9.0).abs() < 1e-12);
    assert!(r1.grad_norm > 0.0 && !r1.skipped);
    // All-pad targets: no update, the schedule advances.
    let before = snapshot(&tr);
    let pads = Tensor::from_slice(&[1i64, 0, 0, 1, 0, 0]).reshape([2, 3]);
    let r = tr.step(&feats, None, &pads).unwrap();
    assert!(r.skipped && r.tokens == 0 && tr.step == 3);
    assert_eq!(max_diff(&before, &snapshot(&tr)).0, 0.0);
    // NaN features: NonFinite, nothing modified, the step not counted.
    let bad = feats.copy();
    let _ = bad.get(0).get(0).get(0).fill_(f64::NAN);
    let e = tr.step(&bad, None, &toks).unwrap_err();
    assert!(matches!(e, Error::NonFinite { iteration: 3, .. }), "{e}");
    assert_eq!(tr.step, 3);
    assert_eq!(max_diff(&before, &snapshot(&tr)).0, 0.0);
    // Shapes: tokens as int32, too long, wrong width.
    assert!(tr.step(&feats, None, &toks.to_kind(Kind::Int)).unwrap_err().to_string().contains("int64"));
    let long = Tensor::ones([2, 14], (Kind::Int64, Device::Cpu));
    assert!(tr.step(&feats, None, &long).unwrap_err().to_string().contains("maxPositions"));
    let e = tr.step(&feats.narrow(2, 0, 8), None, &toks).unwrap_err().to_string();
    assert!(e.contains("dVit"), "{e}");
    assert!(RrgTrainConfig::from_json(r#"{"model": {"vocabSize": 8, "dModel": 30, "numLayers": 1, "numHeads": 4, "ffnDim": 8, "maxPositions": 8, "dVit": 4}}"#)
        .unwrap_err()
        .to_string()
        .contains("not divisible"));
}

#[test]
fn two_ranks_of_b_equal_one_process_of_2b() {
    // Dropout off (each rank draws its own stream); unequal target counts per rank; in the last step rank 1's
    // report is all padding (no target: it contributes nothing, and its missing gradients become zeros).
    let (feats, toks, _) = dataset(8, 21);
    let _ = toks.get(7).narrow(0, 1, 7).fill_(0);
    let steps: Vec<[i64; 2]> = vec![[0, 1], [2, 3], [4, 5], [6, 7]];
    let mut single = ReportTrainer::create(cfg(0.0), Device::Cpu, 5).unwrap();
    let mut reports = Vec::new();
    for s in &steps {
        let idx = Tensor::from_slice(&s[..]);
        reports.push(single.step(&feats.index_select(0, &idx), None, &toks.index_select(0, &idx)).unwrap());
    }
    let want = snapshot(&single);
    let port = common::free_port();
    // Tensors are not Sync: each thread rebuilds them from plain values.
    let fv = Arc::new(Vec::<f32>::try_from(&feats.reshape([-1])).unwrap());
    let tv = Arc::new(Vec::<i64>::try_from(&toks.reshape([-1])).unwrap());
    let out: Vec<(Vec<StepReport>, BTreeMap<String, Tensor>)> = std::thread::scope(|scope| {
        let hs: Vec<_> = (0..2)
            .map(|rank| {
                let (fv, tv, steps) = (fv.clone(), tv.clone(), steps.clone());
                scope.spawn(move || {
                    let feats = Tensor::from_slice(&fv[..]).reshape([8, M, DV]);
                    let toks = Tensor::from_slice(&tv[..]).reshape([8, 8]);
                    let pg = common::gloo_group(rank, 2, port);
                    // Rank 1 starts from another seed: set_dist gives it rank 0's state.
                    let mut tr = ReportTrainer::create(cfg(0.0), Device::Cpu, 5 + rank).unwrap();
                    tr.set_dist(Box::new(pg)).unwrap();
                    let mut rs = Vec::new();
                    for s in &steps {
                        let i = s[rank as usize];
                        rs.push(tr.step(&feats.narrow(0, i, 1), None, &toks.narrow(0, i, 1)).unwrap());
                    }
                    (rs, snapshot(&tr))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (rank, (rs, st)) in out.iter().enumerate() {
        for (a, b) in rs.iter().zip(&reports) {
            assert_eq!((a.step, a.tokens), (b.step, b.tokens), "rank {rank}");
            assert!((a.loss - b.loss).abs() < 1e-5 && (a.grad_norm - b.grad_norm).abs() < 1e-4, "rank {rank}: {a:?} vs {b:?}");
        }
        let (d, k) = max_diff(st, &want);
        assert!(d < 1e-5, "rank {rank}: {k} differs by {d}");
    }
}

/// A trainer whose encoder (a 2-block ViT at 28 px: 2×2 patches + CLS + 1 register) is trained end to end, the
/// memory taken from block `block`.
fn encoder_cfg(block: i64) -> RrgTrainConfig {
    let mut vit = common::small_vit(DV, 2, 28, 1);
    vit.patch_size = 14;
    let mut c = cfg(0.0);
    c.encoder = Some(EncoderTrainConfig { block, backbone_lr: 1e-3, layerwise_decay: 0.5, patch_embed_lr_mult: 0.2, ..EncoderTrainConfig::new(vit) });
    c
}

fn pixels(n: i64, seed: u64) -> Tensor {
    Tensor::from_slice(&common::lcg_values(n * 3 * 28 * 28, seed)).reshape([n, 3, 28, 28])
}

#[test]
fn encoder_trained_end_to_end_groups_resume_and_export() {
    let (_, toks, _) = dataset(4, 3);
    let x = pixels(4, 21);
    // Memory of block 0 of 2: block 1 gets no gradient and stays put, bit for bit; block 0, the final norm and the
    // patch embedding move, and so does the decoder.
    let mut a = ReportTrainer::create(encoder_cfg(0), Device::Cpu, 5).unwrap();
    let before = snapshot(&a);
    let r = (0..3).map(|_| a.step_pixels(&x, &toks).unwrap()).collect::<Vec<_>>();
    assert!(r[2].loss < r[0].loss, "{r:?}");
    let after = snapshot(&a);
    let moved = |k: &str| !before[k].equal(&after[k]);
    for k in before.keys().filter(|k| !k.starts_with("optim.")) {
        // No masks in report training: the iBOT mask token is never read either.
        let unused = k.starts_with("backbone.blocks.1.") || k == "backbone.mask_token";
        assert_eq!(moved(k), !unused, "{k}");
    }
    assert!(moved("backbone.patch_embed.proj.weight") && moved("backbone.norm.weight") && moved("decoder.embed_tokens.weight"));
    // Groups: full fine-tuning's rule relative to the decoder lr (1e-3 / 3e-3 = 1/3; layer ids: patch_embed 0 →
    // 0.5³ × 0.2, blocks.0 → 0.5², norm 3 → 1), weight decay on backbone weight matrices only.
    let groups: HashMap<String, (f64, f64)> = a.optimizer.slots.iter().map(|s| (s.name.clone(), (s.group.lr_mult, s.group.wd_mult))).collect();
    let close = |name: &str, lr: f64, wd: f64| {
        let (l, w) = groups[name];
        assert!((l - lr).abs() < 1e-12 && w == wd, "{name}: {l} {w} vs {lr} {wd}");
    };
    close("backbone.patch_embed.proj.weight", 0.125 * 0.2 / 3.0, 1.0);
    close("backbone.blocks.0.attn.qkv.weight", 0.25 / 3.0, 1.0);
    close("backbone.blocks.0.attn.qkv.bias", 0.25 / 3.0, 0.0);
    close("backbone.norm.weight", 1.0 / 3.0, 0.0);
    close("decoder.embed_tokens.weight", 1.0, 1.0);

    // Exact resume: 3 steps, save, a fresh trainer (other seed) loads and continues = 6 uninterrupted steps.
    let dir = common::tmpdir("rrg-encoder");
    let state = dir.join("state.safetensors");
    let mut b = ReportTrainer::create(encoder_cfg(0), Device::Cpu, 5).unwrap();
    for _ in 0..3 {
        b.step_pixels(&x, &toks).unwrap();
    }
    b.save_state(&state, HashMap::new()).unwrap();
    let mut c = ReportTrainer::create(encoder_cfg(0), Device::Cpu, 11).unwrap();
    c.load_state(&state, false).unwrap();
    let rc: Vec<StepReport> = (0..3).map(|_| c.step_pixels(&x, &toks).unwrap()).collect();
    let ra: Vec<StepReport> = (0..3).map(|_| a.step_pixels(&x, &toks).unwrap()).collect();
    assert_eq!(rc, ra);
    let (diff, key) = max_diff(&snapshot(&c), &snapshot(&a));
    assert!(diff == 0.0, "resumed state differs at {key} by {diff}");
    // A frozen-encoder state does not fit, and says which keys.
    let mut frozen = ReportTrainer::create(cfg(0.0), Device::Cpu, 5).unwrap();
    let err = frozen.load_state(&state, true).unwrap_err().to_string();
    assert!(err.contains("backbone.blocks.0."), "{err}");

    // The exported encoder, loaded strictly into a fresh ViT, gives the trainer's memory.
    let enc = dir.join("encoder.safetensors");
    a.export_encoder(&enc).unwrap();
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let vit = cxformer_core::model::Vit::new(&vs.root(), &a.cfg.encoder.as_ref().unwrap().model).unwrap();
    cxformer_core::weights::load_backbone(&vs, &cxformer_core::weights::WeightFile::open(&enc).unwrap()).unwrap();
    let want = tch::no_grad(|| memory_tokens(&vit, &x, 0, 1, false)).unwrap();
    assert!(a.memory(&x).unwrap().equal(&want));
    // ... and a trainer created from it starts with those weights.
    let (d, rep) = ReportTrainer::create_with(encoder_cfg(0), Device::Cpu, 5, Some(&enc)).unwrap();
    assert!(rep.is_some());
    assert!(d.memory(&x).unwrap().equal(&want));

    // Refusals: features to a trainer with an encoder, pixels to a frozen one, weights without an encoder.
    let (feats, _, _) = dataset(4, 3);
    assert!(a.step(&feats, None, &toks).unwrap_err().to_string().contains("give it pixels"));
    assert!(frozen.step_pixels(&x, &toks).unwrap_err().to_string().contains("need an encoder"));
    assert!(ReportTrainer::create_with(cfg(0.0), Device::Cpu, 5, Some(&enc)).is_err());
    let mut wide = encoder_cfg(0);
    wide.model.d_vit = DV * 2;
    assert!(ReportTrainer::create(wide, Device::Cpu, 5).err().unwrap().to_string().contains("dVit"));
    // A frozen trainer's config JSON has no encoder key (its states keep their configuration text).
    assert!(!cfg(0.0).to_json().contains("encoder") && encoder_cfg(-1).to_json().contains("\"encoder\""));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn frozen_encoder_inside_the_trainer_equals_training_on_its_cached_memories() {
    let (_, toks, _) = dataset(4, 3);
    let x = pixels(4, 21);
    let mut c = encoder_cfg(-1);
    c.encoder.as_mut().unwrap().backbone_lr = 0.0;
    let mut a = ReportTrainer::create(c, Device::Cpu, 5).unwrap();
    assert!(a.optimizer.slots.iter().all(|s| !s.name.starts_with("backbone.")));
    let before = snapshot(&a);
    let cached = a.memory(&x).unwrap();
    let mut b = ReportTrainer::create(cfg(0.0), Device::Cpu, 5).unwrap();
    for _ in 0..3 {
        assert_eq!(a.step_pixels(&x, &toks).unwrap(), b.step(&cached, None, &toks).unwrap());
    }
    let (sa, sb) = (snapshot(&a), snapshot(&b));
    for (k, t) in &sb {
        assert!(t.equal(&sa[k]), "{k}");
    }
    // The encoder is part of the state but never moves.
    for k in sa.keys().filter(|k| k.starts_with("backbone.")) {
        assert!(sa[k].equal(&before[k]), "{k}");
    }
    assert!(a.memory(&x).unwrap().equal(&cached));
}
