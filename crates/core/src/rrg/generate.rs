//! Decoding for the captioner: greedy, beam search and seeded sampling, with the decoder's KV cache
//! ([`crate::rrg::DecoderCache`]: self-attention keys/values preallocated and filled one position per step;
//! cross-attention keys/values of the memory computed once per image) and a per-token callback for streaming.
//!
//! Rules shared by every strategy (per row, one step = one generated token):
//! - Every sequence starts with `[BOS]`; at most `max_new_tokens` tokens follow (BOS + tokens ≤ maxPositions).
//! - Next-token log-probabilities: log_softmax of the logits with `[PAD]` and `[BOS]` set to −∞ first (they are
//!   never generated), then, with `no_repeat_ngram_size` n > 0, −∞ on every token that would repeat an n-gram
//!   of the sequence so far, `[BOS]` included (HF `NoRepeatNGramLogitsProcessor`, applied to the log-probs as HF
//!   does in beam search). If every token is banned, `[EOS]` is taken.
//! - A row stops at `[EOS]` (kept as the last token of its output) or after `max_new_tokens`.
//! - The callback `on_token(row, token)` sees each generated token (EOS included) as soon as it is chosen
//!   (greedy and sampling); returning false cancels: [`generate`] returns `Error::Cancelled`. Beam search can only
//!   know its tokens at the end: it calls the callback with the best hypothesis's tokens, row by row, after the
//!   search (cancelling then still returns `Error::Cancelled`).
//! - Rows are independent: a batch (memories padded to one length with a memory mask) gives each row what it
//!   gives alone (up to float rounding of batched matmuls).
//!
//! **Greedy**: argmax (lowest id on ties). Score = the sum of the chosen tokens' log-probs.
//!
//! **Sampling** (HF order: temperature, then top-p, Holtzman et al. 2020): p ∝ exp(logit/T) over the allowed
//! tokens, then the smallest set of most probable tokens (ties by id) whose mass reaches `top_p` (at least one)
//! is renormalised and one token drawn by inverse CDF with a uniform from the row's own SplitMix64 stream
//! seeded with `seed` (not LibTorch's generator: the same seed gives the same text on any device and thread;
//! every row starts the same stream, so a row's text does not depend on its batch — draw several samples of one
//! image with several seeds). Score = the sum of the chosen tokens' log-probs at T = 1.
//!
//! **Beam search** (HF transformers 5.x `_beam_search`, K = `num_beams`, α = `length_penalty`):
//! - Running beams start as one `[BOS]` beam with score 0 (the other K − 1 at −∞). Each step, every running
//!   beam's cumulative log-prob + next-token log-prob gives K·V candidates; the best 2K are taken in order
//!   (−∞ candidates are dropped).
//! - A candidate "finishes" when its token is `[EOS]` or the step is the last (`max_new_tokens`). Finished
//!   candidates among the first K of the 2K become hypotheses with score = sum log-prob / Lᵅ, L = generated tokens
//!   including the EOS; the K best hypotheses are kept (earlier ones first on equal scores). No hypothesis is added
//!   once the row is done (below), nor with `EarlyStopping::Always` once K are kept.
//! - The next running beams are the first K unfinished candidates (fewer → dead beams at −∞).
//! - A row is done when K hypotheses are kept and the best running beam cannot beat the worst of them: its sum
//!   log-prob / Λᵅ ≤ the worst hypothesis score, Λ = the tokens generated so far (`Heuristic`, HF's default
//!   `early_stopping=False`), or Λ = `max_new_tokens` when α > 0 (`Never`, HF's `"never"`: an exact bound, the
//!   canonical beam search); `Always` (HF `True`): done as soon as K hypotheses are kept. Once done, always done.
//! - The output of a row is its best hypothesis; [`Generation::beams`] lists all kept, best first.
use super::ReportModel;
use crate::error::{Error, Result};
use tch::{Device, Kind, Tensor};

/// When a row of beam search stops (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EarlyStopping {
    /// HF `early_stopping=False` (default): the best running beam is judged at the current length.
    Heuristic,
    /// HF `early_stopping="never"`: with α > 0 judged at the maximum length, an exact bound.
    Never,
    /// HF `early_stopping=True`: stop as soon as K hypotheses are kept.
    Always,
}

/// Beam-search settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BeamOptions {
    /// K ≥ 1 (3 in R2Gen).
    pub num_beams: i64,
    /// α in score / Lᵅ (HF default 1.0).
    pub length_penalty: f64,
    /// When a row stops.
    pub early_stopping: EarlyStopping,
}

/// Sampling settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleOptions {
    /// T > 0.
    pub temperature: f64,
    /// Nucleus mass in (0, 1] (1 = off), over the top-k tokens when `top_k` is on.
    pub top_p: f64,
    /// Keep only the k most probable tokens before the nucleus (0 = off), as transformers' TopKLogitsWarper (applied
    /// after the temperature, before top-p).
    pub top_k: i64,
    /// Seed of each row's SplitMix64 stream.
    pub seed: u64,
}

/// The decoding strategy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Strategy {
    /// Most probable token at each step.
    Greedy,
    /// Beam search.
    Beam(BeamOptions),
    /// Temperature / top-p sampling.
    Sample(SampleOptions),
}

/// What [`generate`] does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GenerateOptions {
    /// Greedy, beam or sampling.
    pub strategy: Strategy,
    /// Tokens after BOS, at most maxPositions − 1.
    pub max_new_tokens: i64,
    /// 0 = off.
    pub no_repeat_ngram_size: i64,
    /// Keep the step logits (greedy and sampling): [`Generation::step_logits`].
    pub return_step_logits: bool,
}

impl GenerateOptions {
    /// Greedy decoding of up to `max_new_tokens` tokens.
    pub fn greedy(max_new_tokens: i64) -> Self {
        GenerateOptions { strategy: Strategy::Greedy, max_new_tokens, no_repeat_ngram_size: 0, return_step_logits: false }
    }

    /// Beam search (HF defaults: α 1, `Heuristic`).
    pub fn beam(num_beams: i64, max_new_tokens: i64) -> Self {
        let b = BeamOptions { num_beams, length_penalty: 1.0, early_stopping: EarlyStopping::Heuristic };
        GenerateOptions { strategy: Strategy::Beam(b), ..Self::greedy(max_new_tokens) }
    }
}

/// One finished beam hypothesis.
#[derive(Clone, Debug, PartialEq)]
pub struct Hypothesis {
    /// Generated tokens (no BOS; ends with EOS unless cut at max_new_tokens).
    pub tokens: Vec<i64>,
    /// Sum of the tokens' log-probs.
    pub sum_logprobs: f64,
    /// sum_logprobs / Lᵅ.
    pub score: f64,
}

/// The result of [`generate`], one entry per row.
#[derive(Debug)]
pub struct Generation {
    /// Generated tokens of each row (no BOS; ends with EOS unless cut at max_new_tokens).
    pub tokens: Vec<Vec<i64>>,
    /// Greedy / sampling: sum of the chosen tokens' log-probs; beam: the best hypothesis's score.
    pub scores: Vec<f64>,
    /// Beam search: the kept hypotheses of each row, best first (empty otherwise).
    pub beams: Vec<Vec<Hypothesis>>,
    /// With `return_step_logits` (greedy, sampling): one (B, V) float32 CPU tensor per step, the raw logits
    /// of every row (rows already finished included).
    pub step_logits: Vec<Tensor>,
}

/// SplitMix64 (Steele et al. 2014): the sampling stream of one row (also [`crate::lm::generate`]'s).
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64, row: u64) -> Self {
        let mut r = SplitMix64(seed ^ row.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next_u64();
        r
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Tokens that would repeat an n-gram of `seq` (HF `_get_ngrams` / `_calc_banned_ngram_tokens`).
fn banned_ngram_tokens(seq: &[i64], n: usize) -> Vec<i64> {
    if n == 0 || seq.len() + 1 < n {
        return Vec::new();
    }
    let prefix = &seq[seq.len() + 1 - n..];
    seq.windows(n).filter(|w| &w[..n - 1] == prefix).map(|w| w[n - 1]).collect()
}

/// Next-token log-probs (R, V) as f64 rows on the CPU: PAD and BOS at −∞ before the log_softmax, n-gram bans
/// after it (see the module docs).
fn next_logprobs(logits: &Tensor, seqs: &[&[i64]], pad: i64, bos: i64, ngram: usize) -> Result<Vec<Vec<f64>>> {
    let v = logits.size()[1];
    let ban = Tensor::zeros([v], (Kind::Float, logits.device()));
    let _ = ban.get(pad).fill_(f64::NEG_INFINITY);
    let _ = ban.get(bos).fill_(f64::NEG_INFINITY);
    let lp = (logits.to_kind(Kind::Float) + ban.unsqueeze(0)).log_softmax(-1, Kind::Double).to_device(Device::Cpu);
    let mut rows: Vec<Vec<f64>> = Vec::<Vec<f64>>::try_from(&lp)?;
    for (row, seq) in rows.iter_mut().zip(seqs) {
        for t in banned_ngram_tokens(seq, ngram) {
            row[t as usize] = f64::NEG_INFINITY;
        }
    }
    Ok(rows)
}

/// Index of the max (lowest index on ties); EOS when every entry is −∞.
fn argmax(row: &[f64], eos: i64) -> i64 {
    let mut best = (f64::NEG_INFINITY, eos);
    for (i, &x) in row.iter().enumerate() {
        if x > best.0 {
            best = (x, i as i64);
        }
    }
    best.1
}

/// One draw from softmax(logits/T) restricted to the top-p nucleus (see the module docs); −∞ entries excluded.
pub(crate) fn sample_row(logprobs: &[f64], opts: &SampleOptions, rng: &mut SplitMix64, eos: i64) -> i64 {
    let scaled: Vec<(usize, f64)> = logprobs.iter().enumerate().filter(|(_, x)| x.is_finite()).map(|(i, &x)| (i, x / opts.temperature)).collect();
    if scaled.is_empty() {
        return eos;
    }
    let max = scaled.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let mut probs: Vec<(usize, f64)> = scaled.into_iter().map(|(i, x)| (i, (x - max).exp())).collect();
    let z: f64 = probs.iter().map(|p| p.1).sum();
    for p in &mut probs {
        p.1 /= z;
    }
    // Most probable first, ties by id (a stable sort of the id order).
    probs.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
    // Top-k, then the nucleus over the k kept, renormalised (transformers filters the logits, then softmaxes).
    if opts.top_k > 0 && (opts.top_k as usize) < probs.len() {
        probs.truncate(opts.top_k as usize);
        let zk: f64 = probs.iter().map(|p| p.1).sum();
        for p in &mut probs {
            p.1 /= zk;
        }
    }
    let mut keep = 0;
    let mut mass = 0.0;
    while keep < probs.len() {
        mass += probs[keep].1;
        keep += 1;
        if mass >= opts.top_p {
            break;
        }
    }
    probs.truncate(keep);
    let u = rng.uniform() * mass;
    let mut acc = 0.0;
    for &(i, p) in &probs {
        acc += p;
        if u < acc {
            return i as i64;
        }
    }
    probs.last().map_or(eos, |p| p.0 as i64)
}

fn check_options(model: &ReportModel, opts: &GenerateOptions) -> Result<()> {
    let bad = |m: String| Err(Error::Config(format!("generate: {m}")));
    let maxp = model.cfg.max_positions;
    if opts.max_new_tokens < 1 || opts.max_new_tokens > maxp - 1 {
        return bad(format!("maxNewTokens must lie in 1..={} (maxPositions − 1 for BOS), got {}", maxp - 1, opts.max_new_tokens));
    }
    if opts.no_repeat_ngram_size < 0 {
        return bad(format!("noRepeatNgramSize must be ≥ 0, got {}", opts.no_repeat_ngram_size));
    }
    match opts.strategy {
        Strategy::Greedy => {}
        Strategy::Beam(b) => {
            if b.num_beams < 1 {
                return bad(format!("numBeams must be ≥ 1, got {}", b.num_beams));
            }
            if !b.length_penalty.is_finite() {
                return bad(format!("lengthPenalty must be finite, got {}", b.length_penalty));
            }
        }
        Strategy::Sample(s) => {
            if !(s.temperature.is_finite() && s.temperature > 0.0) {
                return bad(format!("temperature must be a finite number > 0, got {}", s.temperature));
            }
            if !(s.top_p > 0.0 && s.top_p <= 1.0) {
                return bad(format!("topP must lie in (0, 1], got {}", s.top_p));
            }
            if s.top_k < 0 {
                return bad(format!("topK must be ≥ 0 (0 = off), got {}", s.top_k));
            }
        }
    }
    Ok(())
}

/// Generates a report for each row of encoder features (see the module docs for the rules). Runs without
/// gradients, in eval mode, float32.
///
/// # Shapes
/// features: (B, M, D_vit) float; memory_mask: (B, M) bool (true = a real token; for memories padded to one
/// length), or None
pub fn generate(
    model: &ReportModel,
    features: &Tensor,
    memory_mask: Option<&Tensor>,
    opts: &GenerateOptions,
    mut on_token: impl FnMut(usize, i64) -> bool,
) -> Result<Generation> {
    check_options(model, opts)?;
    tch::no_grad(|| {
        let memory = model.project_memory(features, memory_mask)?;
        let mask = memory_mask.map(|m| m.to_device(memory.device()));
        match opts.strategy {
            Strategy::Beam(b) => {
                let g = beam_search(model, &memory, mask.as_ref(), opts, &b)?;
                for (row, toks) in g.tokens.iter().enumerate() {
                    for &t in toks {
                        if !on_token(row, t) {
                            return Err(Error::Cancelled);
                        }
                    }
                }
                Ok(g)
            }
            _ => sequential(model, &memory, mask.as_ref(), opts, &mut on_token),
        }
    })
}

/// Greedy or sampling: one token per row per step.
fn sequential(
    model: &ReportModel,
    memory: &Tensor,
    mask: Option<&Tensor>,
    opts: &GenerateOptions,
    on_token: &mut impl FnMut(usize, i64) -> bool,
) -> Result<Generation> {
    let cfg = &model.cfg;
    let b = memory.size()[0] as usize;
    let dev = memory.device();
    let mut cache = model.decoder.new_cache(memory, mask, opts.max_new_tokens + 1)?;
    let mut seqs: Vec<Vec<i64>> = vec![vec![cfg.bos_id]; b];
    let mut scores = vec![0.0; b];
    let mut done = vec![false; b];
    let mut rngs: Vec<SplitMix64> = match opts.strategy {
        Strategy::Sample(s) => (0..b).map(|_| SplitMix64::new(s.seed, 0)).collect(),
        _ => Vec::new(),
    };
    let mut step_logits = Vec::new();
    let mut cur = vec![cfg.bos_id; b];
    for _ in 0..opts.max_new_tokens {
        let logits = model.decoder.step(&mut cache, &Tensor::from_slice(&cur).to_device(dev))?;
        if opts.return_step_logits {
            step_logits.push(logits.to_device(Device::Cpu));
        }
        let views: Vec<&[i64]> = seqs.iter().map(|s| s.as_slice()).collect();
        let lp = next_logprobs(&logits, &views, cfg.pad_id, cfg.bos_id, opts.no_repeat_ngram_size as usize)?;
        for r in 0..b {
            if done[r] {
                cur[r] = cfg.pad_id;
                continue;
            }
            let tok = match opts.strategy {
                Strategy::Sample(s) => {
                    // The model's distribution at T = 1 for the score; sampling from the tempered one.
                    sample_row(&lp[r], &s, &mut rngs[r], cfg.eos_id)
                }
                _ => argmax(&lp[r], cfg.eos_id),
            };
            scores[r] += lp[r][tok as usize];
            seqs[r].push(tok);
            cur[r] = tok;
            if tok == cfg.eos_id {
                done[r] = true;
            }
            if !on_token(r, tok) {
                return Err(Error::Cancelled);
            }
        }
        if done.iter().all(|&d| d) {
            break;
        }
    }
    let tokens = seqs.into_iter().map(|s| s[1..].to_vec()).collect();
    Ok(Generation { tokens, scores, beams: vec![Vec::new(); b], step_logits })
}

/// The kept hypotheses of one row.
struct Finished {
    k: usize,
    alpha: f64,
    hyps: Vec<Hypothesis>,
}

impl Finished {
    fn full(&self) -> bool {
        self.hyps.len() >= self.k
    }
    fn worst(&self) -> f64 {
        self.hyps.last().map_or(f64::NEG_INFINITY, |h| h.score)
    }
    /// Inserts a hypothesis after those of equal or better score; keeps the K best.
    fn add(&mut self, tokens: Vec<i64>, sum_logprobs: f64) {
        let score = sum_logprobs / (tokens.len() as f64).powf(self.alpha);
        if self.full() && score <= self.worst() {
            return;
        }
        let at = self.hyps.iter().position(|h| h.score < score).unwrap_or(self.hyps.len());
        self.hyps.insert(at, Hypothesis { tokens, sum_logprobs, score });
        self.hyps.truncate(self.k);
    }
}

fn beam_search(model: &ReportModel, memory: &Tensor, mask: Option<&Tensor>, opts: &GenerateOptions, bo: &BeamOptions) -> Result<Generation> {
    let cfg = &model.cfg;
    let (b, k) = (memory.size()[0] as usize, bo.num_beams as usize);
    let dev = memory.device();
    let v = cfg.vocab_size as usize;
    let max_new = opts.max_new_tokens as usize;
    // Row r·K + j is beam j of row r.
    let expand = Tensor::arange(b as i64, (Kind::Int64, dev)).repeat_interleave_self_int(k as i64, 0, None::<i64>);
    let mut cache = model.decoder.new_cache(memory, mask, opts.max_new_tokens + 1)?;
    cache.reorder(&expand)?;
    let mut seqs: Vec<Vec<i64>> = vec![vec![cfg.bos_id]; b * k];
    let mut run_scores: Vec<f64> = (0..b * k).map(|i| if i % k == 0 { 0.0 } else { f64::NEG_INFINITY }).collect();
    let mut finished: Vec<Finished> = (0..b).map(|_| Finished { k, alpha: bo.length_penalty, hyps: Vec::new() }).collect();
    let mut done = vec![false; b];
    let mut cur = vec![cfg.bos_id; b * k];
    for step in 0..max_new {
        let gen_len = step + 1;
        let last = gen_len == max_new;
        let logits = model.decoder.step(&mut cache, &Tensor::from_slice(&cur).to_device(dev))?;
        let views: Vec<&[i64]> = seqs.iter().map(|s| s.as_slice()).collect();
        let lp = next_logprobs(&logits, &views, cfg.pad_id, cfg.bos_id, opts.no_repeat_ngram_size as usize)?;
        let mut origin = vec![0i64; b * k];
        let mut next_seqs: Vec<Vec<i64>> = Vec::with_capacity(b * k);
        let mut next_scores = vec![f64::NEG_INFINITY; b * k];
        for r in 0..b {
            // Candidates (score, beam, token) of the row, best first; ties by flat index (beam·V + token).
            let mut cands: Vec<(f64, usize, usize)> = Vec::new();
            if !done[r] {
                for j in 0..k {
                    let base = run_scores[r * k + j];
                    if base == f64::NEG_INFINITY {
                        continue;
                    }
                    for (t, &x) in lp[r * k + j].iter().enumerate() {
                        if x > f64::NEG_INFINITY {
                            cands.push((base + x, j, t));
                        }
                    }
                }
                cands.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal).then((a.1 * v + a.2).cmp(&(b.1 * v + b.2))));
                cands.truncate(2 * k);
            }
            let was_full = finished[r].full();
            let mut running = Vec::with_capacity(k);
            for (rank, &(score, j, t)) in cands.iter().enumerate() {
                let hits = t as i64 == cfg.eos_id || last;
                if hits {
                    let may_add = rank < k && !(bo.early_stopping == EarlyStopping::Always && was_full);
                    if may_add {
                        let mut toks = seqs[r * k + j][1..].to_vec();
                        toks.push(t as i64);
                        finished[r].add(toks, score);
                    }
                } else if running.len() < k {
                    running.push((score, j, t));
                }
            }
            for slot in 0..k {
                let i = r * k + slot;
                match running.get(slot) {
                    Some(&(score, j, t)) => {
                        origin[i] = (r * k + j) as i64;
                        let mut s = seqs[r * k + j].clone();
                        s.push(t as i64);
                        next_seqs.push(s);
                        next_scores[i] = score;
                    }
                    None => {
                        origin[i] = (r * k) as i64;
                        let mut s = seqs[r * k].clone();
                        s.push(cfg.pad_id);
                        next_seqs.push(s);
                    }
                }
            }
            // Done: K kept and the best running beam cannot beat the worst kept.
            if !done[r] && finished[r].full() {
                let best = next_scores[r * k];
                let horizon = match bo.early_stopping {
                    EarlyStopping::Never if bo.length_penalty > 0.0 => max_new,
                    _ => gen_len,
                };
                let attainable = best / (horizon as f64).powf(bo.length_penalty);
                // NaN cannot arise (−∞ is the only non-finite score); ≤ is "cannot beat".
                done[r] = bo.early_stopping == EarlyStopping::Always || attainable <= finished[r].worst();
            }
        }
        seqs = next_seqs;
        run_scores = next_scores;
        cur = seqs.iter().map(|s| *s.last().expect("non-empty")).collect();
        if last || done.iter().all(|&d| d) {
            break;
        }
        cache.reorder(&Tensor::from_slice(&origin).to_device(dev))?;
    }
    let mut tokens = Vec::with_capacity(b);
    let mut scores = Vec::with_capacity(b);
    let mut beams = Vec::with_capacity(b);
    for f in finished {
        let best = f.hyps.first().cloned().ok_or_else(|| Error::Shape("beam search kept no hypothesis".into()))?;
        tokens.push(best.tokens);
        scores.push(best.score);
        beams.push(f.hyps);
    }
    Ok(Generation { tokens, scores, beams, step_logits: Vec::new() })
}

/// The tokens of a generated row before its first EOS (the text part).
pub fn strip_eos(tokens: &[i64], eos: i64) -> &[i64] {
    match tokens.iter().position(|&t| t == eos) {
        Some(i) => &tokens[..i],
        None => tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ngram_bans_follow_hf() {
        // HF: with n = 2 and sequence [1, 5, 6, 5], the 2-grams starting with 5 are (5, 6): ban 6.
        assert_eq!(banned_ngram_tokens(&[1, 5, 6, 5], 2), vec![6]);
        assert_eq!(banned_ngram_tokens(&[1, 5, 6, 5, 6], 3), vec![5]);
        assert!(banned_ngram_tokens(&[1, 5], 3).is_empty());
        assert_eq!(banned_ngram_tokens(&[1, 1], 1), vec![1, 1]);
    }

    #[test]
    fn top_p_keeps_the_smallest_nucleus() {
        // probs 0.5, 0.3, 0.2 (ids 0, 1, 2): top_p 0.7 keeps ids 0 and 1 only.
        let lp = [0.5f64.ln(), 0.3f64.ln(), 0.2f64.ln()];
        let o = SampleOptions { temperature: 1.0, top_p: 0.7, top_k: 0, seed: 1 };
        let mut rng = SplitMix64::new(3, 0);
        let mut seen = [0usize; 3];
        for _ in 0..2000 {
            seen[sample_row(&lp, &o, &mut rng, 9) as usize] += 1;
        }
        assert_eq!(seen[2], 0);
        let f0 = seen[0] as f64 / 2000.0;
        assert!((f0 - 0.625).abs() < 0.04, "{seen:?}");
    }

    #[test]
    fn top_k_keeps_the_k_best_then_the_nucleus_over_them_renormalised() {
        // probs 0.4, 0.3, 0.2, 0.1: top_k 2 draws ids 0 and 1 only, 4 : 3.
        let lp = [0.4f64.ln(), 0.3f64.ln(), 0.2f64.ln(), 0.1f64.ln()];
        let draw = |top_k: i64, top_p: f64| {
            let o = SampleOptions { temperature: 1.0, top_p, top_k, seed: 1 };
            let mut rng = SplitMix64::new(5, 0);
            let mut seen = [0usize; 4];
            for _ in 0..4000 {
                seen[sample_row(&lp, &o, &mut rng, 9) as usize] += 1;
            }
            seen
        };
        let k2 = draw(2, 1.0);
        assert_eq!((k2[2], k2[3]), (0, 0), "{k2:?}");
        assert!((k2[0] as f64 / 4000.0 - 4.0 / 7.0).abs() < 0.03, "{k2:?}");
        // The nucleus after top-k is over the renormalised pair (0.571, 0.429): top_p 0.55 keeps id 0 alone, although
        // 0.4 < 0.55 of the whole distribution.
        assert_eq!(draw(2, 0.55), [4000, 0, 0, 0]);
        // k ≥ the vocabulary is off.
        assert!(draw(9, 1.0)[3] > 0);
    }
}
