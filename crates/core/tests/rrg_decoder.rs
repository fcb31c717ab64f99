//! The report captioner's model and decoding (crates/core/src/rrg/{decoder,generate,memory}.rs) against
//! independent expectations: greedy with the KV cache = greedy by full recompute through the teacher-forced
//! forward (ids, and step logits within 1e-5); beam width 1 = greedy; beam search = a brute-force search over
//! every sequence of ≤ 3 tokens of a 5-token vocabulary (scores recomputed by teacher forcing, n-gram bans as
//! exclusions); padded batches = rows alone; seeded sampling reproducible and degenerating to greedy; the
//! label-smoothed loss against PyTorch's value on a 2×3 example; streaming callback and cancellation; the 2×2
//! pooled memory against a hand pooling of the ViT's tokens.
mod common;

use cxformer_core::Error;
use cxformer_core::model::Vit;
use cxformer_core::rrg::generate::strip_eos;
use cxformer_core::rrg::{
    BeamOptions, EarlyStopping, GenerateOptions, ReportModel, RrgConfig, SampleOptions, Strategy, generate, label_smoothed_ce,
    memory_tokens,
};
use tch::{Device, Kind, Tensor, nn};

const PAD: i64 = 0;
const BOS: i64 = 1;
const EOS: i64 = 2;

fn tiny_cfg(vocab: i64) -> RrgConfig {
    RrgConfig {
        vocab_size: vocab,
        d_model: 32,
        num_layers: 2,
        num_heads: 4,
        ffn_dim: 64,
        max_positions: 16,
        d_vit: 24,
        dropout: 0.1,
        ..RrgConfig::phantom(vocab, 24)
    }
}

/// A model with weights ~ N(0, std²) (decisive, varied distributions instead of the near-uniform N(0, 0.02²)).
fn model(vocab: i64, seed: i64, std: f64) -> ReportModel {
    let m = ReportModel::new(tiny_cfg(vocab), Device::Cpu, seed).unwrap();
    let mut vars: Vec<(String, Tensor)> = m.vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let vals = common::lcg_values(vars.iter().map(|(_, t)| t.numel() as i64).sum(), seed as u64);
    let mut at = 0usize;
    tch::no_grad(|| {
        for (name, t) in vars {
            let n = t.numel();
            if !name.contains("norm") {
                let v = Tensor::from_slice(&vals[at..at + n]).reshape(t.size()) * (std * 3f64.sqrt());
                t.shallow_clone().copy_(&v);
            }
            at += n;
        }
    });
    m
}

fn features(b: i64, m: i64, seed: u64) -> Tensor {
    Tensor::from_slice(&common::lcg_values(b * m * 24, seed)).reshape([b, m, 24])
}

/// Next-token log-probs of `prefix` (starting with BOS) by the full teacher-forced forward, PAD/BOS banned
/// before the log_softmax, as f64.
fn full_logprobs(m: &ReportModel, feats: &Tensor, mask: Option<&Tensor>, prefix: &[i64]) -> (Vec<f64>, Tensor) {
    let toks = Tensor::from_slice(prefix).unsqueeze(0);
    let logits = tch::no_grad(|| m.forward(feats, mask, &toks, false).unwrap()).get(0).get(prefix.len() as i64 - 1);
    let mut l = Vec::<f64>::try_from(&logits.to_kind(Kind::Double)).unwrap();
    l[PAD as usize] = f64::NEG_INFINITY;
    l[BOS as usize] = f64::NEG_INFINITY;
    let max = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = max + l.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
    (l.iter().map(|x| x - lse).collect(), logits)
}

fn argmax(v: &[f64]) -> i64 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as i64
}

#[test]
fn kv_cache_greedy_equals_full_recompute() {
    let m = model(20, 3, 0.3);
    let feats = features(3, 7, 11);
    let opts = GenerateOptions { return_step_logits: true, ..GenerateOptions::greedy(12) };
    let g = generate(&m, &feats, None, &opts, |_, _| true).unwrap();
    let mut max_diff = 0f64;
    let mut lengths = Vec::new();
    for r in 0..3 {
        let row = feats.narrow(0, r, 1);
        let mut prefix = vec![BOS];
        let mut score = 0.0;
        for s in 0..12 {
            let (lp, logits) = full_logprobs(&m, &row, None, &prefix);
            max_diff = max_diff.max((&g.step_logits[s].get(r) - &logits).abs().max().double_value(&[]));
            let t = argmax(&lp);
            score += lp[t as usize];
            prefix.push(t);
            if t == EOS {
                break;
            }
        }
        assert_eq!(g.tokens[r as usize], prefix[1..].to_vec(), "row {r}");
        assert!((g.scores[r as usize] - score).abs() < 1e-5, "row {r}: {} vs {score}", g.scores[r as usize]);
        lengths.push(prefix.len() - 1);
    }
    assert!(max_diff < 1e-5, "cached vs recomputed logits differ by {max_diff}");
    assert_eq!(g.step_logits.len(), *lengths.iter().max().unwrap());
    assert!(g.step_logits[0].size() == [3, 20]);
}

#[test]
fn beam_width_one_is_greedy() {
    for seed in [3, 4, 5] {
        let m = model(20, seed, 0.3);
        let feats = features(2, 6, seed as u64 + 1);
        let greedy = generate(&m, &feats, None, &GenerateOptions::greedy(10), |_, _| true).unwrap();
        for alpha in [0.0, 1.0] {
            let b = BeamOptions { num_beams: 1, length_penalty: alpha, early_stopping: EarlyStopping::Heuristic };
            let o = GenerateOptions { strategy: Strategy::Beam(b), ..GenerateOptions::greedy(10) };
            let beam = generate(&m, &feats, None, &o, |_, _| true).unwrap();
            assert_eq!(beam.tokens, greedy.tokens, "seed {seed}, α {alpha}");
            for r in 0..2 {
                let len = beam.tokens[r].len() as f64;
                assert!((beam.scores[r] - greedy.scores[r] / len.powf(alpha)).abs() < 1e-5);
            }
        }
    }
}

/// Every sequence of 1..=3 generated tokens over {EOS, 3, 4} (EOS only last) with its sum of log-probs by
/// teacher forcing; sequences repeating an n-gram of [BOS] + tokens are excluded (their last token is banned).
fn brute_force(m: &ReportModel, feats: &Tensor, ngram: usize) -> Vec<(Vec<i64>, f64)> {
    let mut out = Vec::new();
    let mut stack: Vec<(Vec<i64>, f64)> = vec![(vec![], 0.0)];
    while let Some((seq, lp)) = stack.pop() {
        let mut prefix = vec![BOS];
        prefix.extend(&seq);
        let (next, _) = full_logprobs(m, feats, None, &prefix);
        for t in [EOS, 3, 4] {
            let mut s = seq.clone();
            s.push(t);
            let mut full = vec![BOS];
            full.extend(&s);
            if ngram > 0 && full.len() >= ngram {
                let grams: Vec<&[i64]> = full.windows(ngram).collect();
                if grams[..grams.len() - 1].contains(grams.last().unwrap()) {
                    continue;
                }
            }
            let score = lp + next[t as usize];
            if t == EOS || s.len() == 3 {
                out.push((s, score));
            } else {
                stack.push((s, score));
            }
        }
    }
    out
}

#[test]
fn beam_search_equals_brute_force_over_all_short_sequences() {
    let mut checked = 0;
    for seed in [7, 8, 9, 10] {
        let m = model(5, seed, 0.5);
        let feats = features(1, 4, seed as u64 * 3);
        for (alpha, stop, ngram) in [
            (0.0, EarlyStopping::Heuristic, 0),
            (0.0, EarlyStopping::Never, 0),
            (1.0, EarlyStopping::Never, 0),
            (2.0, EarlyStopping::Never, 0),
            (-0.5, EarlyStopping::Never, 0),
            (1.0, EarlyStopping::Never, 2),
        ] {
            let mut all: Vec<(Vec<i64>, f64)> = brute_force(&m, &feats, ngram)
                .into_iter()
                .map(|(s, lp)| {
                    let l = s.len() as f64;
                    (s, lp / l.powf(alpha))
                })
                .collect();
            all.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap());
            let k = 12;
            let b = BeamOptions { num_beams: k, length_penalty: alpha, early_stopping: stop };
            let o = GenerateOptions { strategy: Strategy::Beam(b), max_new_tokens: 3, no_repeat_ngram_size: ngram as i64, return_step_logits: false };
            let g = generate(&m, &feats, None, &o, |_, _| true).unwrap();
            let kept = &g.beams[0];
            assert_eq!(kept.len(), (k as usize).min(all.len()), "seed {seed} α {alpha}");
            for (h, (s, score)) in kept.iter().zip(&all) {
                assert_eq!(&h.tokens, s, "seed {seed} α {alpha} n {ngram}: beam {kept:?}\nbrute force {all:?}");
                // f32 logits of magnitude ~10: relative 1e-5.
                assert!((h.score - score).abs() < 1e-5 * score.abs().max(1.0), "seed {seed} α {alpha}: {} vs {score}", h.score);
            }
            assert_eq!(g.tokens[0], all[0].0);
            checked += 1;
        }
    }
    assert_eq!(checked, 24);
}

#[test]
fn padded_batch_gives_each_row_its_result_alone() {
    let m = model(20, 21, 0.3);
    let lens = [5i64, 9, 7];
    let mmax = 9;
    let rows: Vec<Tensor> = lens.iter().enumerate().map(|(i, &l)| features(1, l, 100 + i as u64)).collect();
    // Padding rows hold large garbage: the mask must keep them out.
    let batch = Tensor::cat(
        &rows.iter().map(|r| Tensor::cat(&[r.shallow_clone(), Tensor::full([1, mmax - r.size()[1], 24], 50.0, (Kind::Float, Device::Cpu))], 1)).collect::<Vec<_>>(),
        0,
    );
    let mask = Tensor::stack(&lens.iter().map(|&l| Tensor::arange(mmax, (Kind::Int64, Device::Cpu)).lt(l)).collect::<Vec<_>>(), 0);
    let beam = BeamOptions { num_beams: 3, length_penalty: 1.0, early_stopping: EarlyStopping::Heuristic };
    let sample = SampleOptions { temperature: 1.0, top_p: 0.9, top_k: 0, seed: 5 };
    for strategy in [Strategy::Greedy, Strategy::Beam(beam), Strategy::Sample(sample)] {
        let o = GenerateOptions { strategy, max_new_tokens: 12, no_repeat_ngram_size: 3, return_step_logits: false };
        let together = generate(&m, &batch, Some(&mask), &o, |_, _| true).unwrap();
        for (i, r) in rows.iter().enumerate() {
            let alone = generate(&m, r, None, &o, |_, _| true).unwrap();
            assert_eq!(together.tokens[i], alone.tokens[0], "{strategy:?} row {i}");
            assert!((together.scores[i] - alone.scores[0]).abs() < 1e-5, "{strategy:?} row {i}");
        }
        // The mask matters: without it the padded rows read the garbage.
        let unmasked = generate(&m, &batch, None, &o, |_, _| true).unwrap();
        assert!((unmasked.scores[0] - together.scores[0]).abs() > 1e-4, "{strategy:?}");
    }
    // Teacher forcing too: the logits of a row in the padded batch are those of the row alone.
    let toks = Tensor::from_slice(&[BOS, 5, 6, 7, EOS, 9, 3, 4, 5, EOS, 3, 3, 4, 4, EOS]).reshape([3, 5]);
    let lb = m.forward(&batch, Some(&mask), &toks, false).unwrap();
    for (i, r) in rows.iter().enumerate() {
        let la = m.forward(r, None, &toks.narrow(0, i as i64, 1), false).unwrap();
        assert!((lb.narrow(0, i as i64, 1) - la).abs().max().double_value(&[]) < 1e-5);
    }
}

#[test]
fn sampling_is_reproducible_and_degenerates_to_greedy() {
    let m = model(20, 31, 0.3);
    let feats = features(3, 6, 32);
    let run = |s: SampleOptions| {
        let o = GenerateOptions { strategy: Strategy::Sample(s), ..GenerateOptions::greedy(14) };
        generate(&m, &feats, None, &o, |_, _| true).unwrap()
    };
    let a = run(SampleOptions { temperature: 1.0, top_p: 1.0, top_k: 0, seed: 42 });
    let b = run(SampleOptions { temperature: 1.0, top_p: 1.0, top_k: 0, seed: 42 });
    assert_eq!(a.tokens, b.tokens);
    assert_eq!(a.scores, b.scores);
    let others: Vec<Vec<Vec<i64>>> = (0..5).map(|s| run(SampleOptions { temperature: 1.5, top_p: 1.0, top_k: 0, seed: s }).tokens).collect();
    assert!(others.iter().any(|t| *t != a.tokens), "five other seeds all gave the same text");
    let greedy = generate(&m, &feats, None, &GenerateOptions::greedy(14), |_, _| true).unwrap();
    // A nucleus that keeps only the most probable token, or a vanishing temperature, is greedy.
    assert_eq!(run(SampleOptions { temperature: 1.0, top_p: 1e-9, top_k: 0, seed: 1 }).tokens, greedy.tokens);
    assert_eq!(run(SampleOptions { temperature: 1e-6, top_p: 1.0, top_k: 0, seed: 2 }).tokens, greedy.tokens);
    // Top-k 1 keeps only the most probable token: greedy, at any temperature and nucleus.
    assert_eq!(run(SampleOptions { temperature: 1.5, top_p: 1.0, top_k: 1, seed: 3 }).tokens, greedy.tokens);
}

#[test]
fn callback_streams_every_token_and_cancels() {
    let m = model(20, 41, 0.3);
    let feats = features(2, 5, 42);
    let mut seen: Vec<Vec<i64>> = vec![vec![], vec![]];
    for o in [GenerateOptions::greedy(10), GenerateOptions::beam(3, 10)] {
        seen.iter_mut().for_each(|s| s.clear());
        let g = generate(&m, &feats, None, &o, |r, t| {
            seen[r].push(t);
            true
        })
        .unwrap();
        assert_eq!(seen, g.tokens);
        for t in &g.tokens {
            assert!(t.len() <= 10 && !t.contains(&PAD) && !t.contains(&BOS));
            assert!(!strip_eos(t, EOS).contains(&EOS));
        }
    }
    let mut n = 0;
    let r = generate(&m, &feats, None, &GenerateOptions::greedy(10), |_, _| {
        n += 1;
        n < 3
    });
    assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
    assert_eq!(n, 3);
    // Bad options are refused before anything runs.
    let e = generate(&m, &feats, None, &GenerateOptions::greedy(16), |_, _| true).unwrap_err().to_string();
    assert!(e.contains("maxNewTokens") && e.contains("1..=15"), "{e}");
}

#[test]
fn label_smoothed_loss_matches_pytorch_on_a_2x3_example() {
    // Reference: torch.nn.functional.cross_entropy(logits, targets, ignore_index=0, label_smoothing=ε) in
    // float64 (PyTorch 2.11). By hand: log Σ exp(1, 2, 3) = 3.40760596, so −log p = (2.4076, 1.4076, 0.4076) for
    // row 0 and (0.4076, 1.4076, 2.4076) for row 1 (logits 1, 0, −1); each target costs (1 − ε)(−log p_y) +
    // ε·mean(−log p) = −log p_y·0.9 + 0.14076.
    let logits = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 1.0, 0.0, -1.0]).reshape([2, 3]);
    let cases = [([2i64, 0], 0.1, 0.5076059644443804, 1), ([2, 1], 0.1, 0.9576059644443804, 2), ([2, 1], 0.0, 0.9076059644443804, 2)];
    for (targets, eps, want, n) in cases {
        let (loss, k) = label_smoothed_ce(&logits, &Tensor::from_slice(&targets), PAD, eps).unwrap();
        assert_eq!(k, n);
        assert!((loss.double_value(&[]) - want).abs() < 1e-6, "{targets:?} ε {eps}: {} vs {want}", loss.double_value(&[]));
    }
    let (loss, k) = label_smoothed_ce(&logits, &Tensor::from_slice(&[0i64, 0]), PAD, 0.1).unwrap();
    assert_eq!((k, loss.double_value(&[])), (0, 0.0));
    // The model's loss: shifted targets, pads ignored: a padded row costs what it costs alone.
    let m = model(20, 51, 0.3);
    let feats = features(2, 4, 52);
    let toks = Tensor::from_slice(&[BOS, 5, 6, 7, EOS, BOS, 8, EOS, PAD, PAD]).reshape([2, 5]);
    let (both, k) = m.loss(&feats, None, &toks, false).unwrap();
    assert_eq!(k, 4 + 2);
    let (l0, _) = m.loss(&feats.narrow(0, 0, 1), None, &toks.narrow(0, 0, 1), false).unwrap();
    let (l1, _) = m.loss(&feats.narrow(0, 1, 1), None, &toks.narrow(0, 1, 1).narrow(1, 0, 3), false).unwrap();
    let want = (l0.double_value(&[]) * 4.0 + l1.double_value(&[]) * 2.0) / 6.0;
    assert!((both.double_value(&[]) - want).abs() < 1e-5);
}

#[test]
fn memory_tokens_pool_the_patch_grid_kxk() {
    let cfg = common::small_vit(32, 2, 56, 2);
    let vs = nn::VarStore::new(Device::Cpu);
    let vit = Vit::new(&vs.root(), &cfg).unwrap();
    cxformer_core::model::init_from_scratch(&vs);
    let x = Tensor::from_slice(&common::lcg_values(2 * 3 * 56 * 56, 9)).reshape([2, 3, 56, 56]);
    let full = tch::no_grad(|| memory_tokens(&vit, &x, -1, 1, false)).unwrap();
    // 1 CLS + 2 registers + 4×4 patches, last block after the final norm = last_hidden_state.
    assert_eq!(full.size(), [2, 19, 32]);
    let out = tch::no_grad(|| vit.forward(&x, &Default::default())).unwrap();
    assert!((&full - &out.last_hidden_state).abs().max().double_value(&[]) < 1e-6);
    let pooled = tch::no_grad(|| memory_tokens(&vit, &x, -1, 2, false)).unwrap();
    assert_eq!(pooled.size(), [2, 3 + 4, 32]);
    assert!((pooled.narrow(1, 0, 3) - full.narrow(1, 0, 3)).abs().max().double_value(&[]) == 0.0);
    // Pooled cell (i, j) = mean of patches (2i, 2j), (2i, 2j+1), (2i+1, 2j), (2i+1, 2j+1) of the 4×4 grid.
    for (cell, (i, j)) in [(0, 0), (0, 1), (1, 0), (1, 1)].into_iter().enumerate() {
        let p = |r: i64, c: i64| full.select(1, 3 + r * 4 + c);
        let want = (p(2 * i, 2 * j) + p(2 * i, 2 * j + 1) + p(2 * i + 1, 2 * j) + p(2 * i + 1, 2 * j + 1)) / 4.0;
        assert!((pooled.select(1, 3 + cell as i64) - want).abs().max().double_value(&[]) < 1e-6);
    }
    // An odd grid (70 px: 5×5) keeps its partial windows: 3×3 cells, an edge cell averages 2 patches, the corner 1.
    let x5 = Tensor::from_slice(&common::lcg_values(3 * 70 * 70, 10)).reshape([1, 3, 70, 70]);
    let full5 = tch::no_grad(|| memory_tokens(&vit, &x5, -1, 1, false)).unwrap();
    let pooled5 = tch::no_grad(|| memory_tokens(&vit, &x5, -1, 2, false)).unwrap();
    assert_eq!((full5.size()[1], pooled5.size()[1]), (3 + 25, 3 + 9));
    let p5 = |r: i64, c: i64| full5.select(1, 3 + r * 5 + c);
    let cell = |i: i64, j: i64| pooled5.select(1, 3 + i * 3 + j);
    let checks = [
        (cell(0, 0), (p5(0, 0) + p5(0, 1) + p5(1, 0) + p5(1, 1)) / 4.0),
        (cell(0, 2), (p5(0, 4) + p5(1, 4)) / 2.0),
        (cell(2, 1), (p5(4, 2) + p5(4, 3)) / 2.0),
        (cell(2, 2), p5(4, 4)),
    ];
    for (got, want) in checks {
        assert!((got - want).abs().max().double_value(&[]) < 1e-6);
    }
    // Block 0: that block's normed output, also reachable as block −2 of 2.
    let b0 = tch::no_grad(|| memory_tokens(&vit, &x, 0, 1, false)).unwrap();
    let bm2 = tch::no_grad(|| memory_tokens(&vit, &x, -2, 1, false)).unwrap();
    assert!(b0.equal(&bm2) && !b0.equal(&full));
    assert!(memory_tokens(&vit, &x, 2, 1, false).is_err());
    // k = 3 on the 5×5 grid: 2×2 cells; the first holds a 3×3 window, the corner 2×2, an edge 3×2.
    let pooled3 = tch::no_grad(|| memory_tokens(&vit, &x5, -1, 3, false)).unwrap();
    assert_eq!(pooled3.size()[1], 3 + 4);
    let mean = |cells: &[(i64, i64)]| cells.iter().map(|&(r, c)| p5(r, c)).reduce(|a, b| a + b).unwrap() / cells.len() as f64;
    let win = |r0: i64, r1: i64, c0: i64, c1: i64| (r0..r1).flat_map(|r| (c0..c1).map(move |c| (r, c))).collect::<Vec<_>>();
    for (cell, want) in [(0, mean(&win(0, 3, 0, 3))), (1, mean(&win(0, 3, 3, 5))), (3, mean(&win(3, 5, 3, 5)))] {
        assert!((pooled3.select(1, 3 + cell) - want).abs().max().double_value(&[]) < 1e-6);
    }
    assert!(memory_tokens(&vit, &x, -1, 5, false).is_err() && memory_tokens(&vit, &x, -1, 0, false).is_err());
}
