//! Decoding with a causal LM as transformers' `generate` does it (`generation/utils.py`: `_sample` for greedy
//! and sampling, `_beam_search`), on left-padded prompts.
//!
//! Shared rules (P = padded prompt length, one step = one new token per row):
//! - The prompt runs once through the model into a [`KvCache`] of P + `max_new_tokens` positions; each step
//!   then feeds the tokens just chosen, the attention mask grows by one real position, and the position of row
//!   r is its count of real prompt tokens + the step (transformers: cumsum(mask) − 1).
//! - A row finishes at any of `eos_token_ids` (kept in its output); afterwards it is fed and given
//!   `pad_token_id` (transformers' rule). Decoding stops when every row has finished or after
//!   `max_new_tokens`.
//! - Outputs: [`LmGeneration::sequences`] as transformers returns them (the prompt ids, then the new tokens,
//!   pads after an EOS; no prompt part for an embeddings prompt, as transformers does for `inputs_embeds`),
//!   and per row the new tokens up to their EOS.
//!
//! **Greedy**: argmax of the float32 logits (lowest id on ties). Score = sum of the chosen tokens' log-probs.
//!
//! **Sampling**: temperature then top-p on the log-softmax of the logits, one draw per row from the row's own
//! SplitMix64 stream seeded with `seed` (the convention of [`crate::rrg::generate`]: not LibTorch's generator,
//! every row starts the same stream; the same seed gives the same tokens on any device). No top-k (transformers'
//! default top_k = 50 is not applied). Score = sum of the chosen tokens' log-probs at T = 1.
//!
//! **Beam search** (transformers 4.57 `_beam_search`, K = `num_beams`, α = `length_penalty`), per row:
//! - Running beams: K, the first with score 0 and the others −1e9 (so that the first step expands one beam).
//!   Each step, log_softmax(logits) + running scores gives K·V candidates; the best
//!   max(2, 1 + number of EOS ids)·K are kept in order. A candidate "hits" when its token is an EOS id or the
//!   step is the last.
//! - The next running beams are the best K candidates after −1e9 is added to those that hit.
//! - Finished hypotheses: K slots, empty at −1e9. Candidates among the first K that hit enter with score =
//!   sum log-prob / Lᵅ (L = new tokens, EOS included); a candidate gets −1e9 more when it did not hit among
//!   the first K, when the row's slots are all filled and `early_stopping` is `Always` (transformers `True`), or
//!   when the row is done (below); slots and candidates are merged and the K best kept (earlier ones first on
//!   equal scores).
//! - The row is done once every slot is filled and the best running beam's score / Λᵅ cannot beat the worst
//!   slot, Λ = the new tokens so far (`Heuristic`, transformers' `early_stopping=False`), or Λ =
//!   `max_new_tokens` with α > 0 (`Never`, transformers' `"never"`).
//! - The output is the best slot; [`LmGeneration::scores`] holds its score (transformers' `sequences_scores`)
//!   and [`LmGeneration::beams`] every filled slot, best first. The prompt is run once per row and its cache
//!   repeated K times (equal to transformers' K copies).
use super::cache::KvCache;
use super::LanguageModel;
use crate::bail_shape;
use crate::error::{Error, Result};
use crate::rrg::generate::{SplitMix64, sample_row};
use tch::{Device, Kind, Tensor};

pub use crate::rrg::generate::{BeamOptions, EarlyStopping, Hypothesis, SampleOptions, Strategy};

/// What [`generate`] does.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateOptions {
    /// Greedy, beam search or sampling.
    pub strategy: Strategy,
    /// New tokens at most (≥ 1).
    pub max_new_tokens: i64,
    /// Ids that end a row (may be empty: rows then run to `max_new_tokens`).
    pub eos_token_ids: Vec<i64>,
    /// The id after a row's EOS (transformers: `pad_token_id`, else the first EOS id).
    pub pad_token_id: i64,
}

impl GenerateOptions {
    /// `strategy` with the ids of `generation` (pad: `pad_token_id`, else the first EOS id, else −1 as
    /// transformers' fill value).
    pub fn new(strategy: Strategy, max_new_tokens: i64, generation: &super::GenerationConfig) -> Self {
        GenerateOptions { strategy, max_new_tokens, eos_token_ids: generation.eos_token_ids.clone(), pad_token_id: generation.pad_or_eos().unwrap_or(-1) }
    }

    /// Greedy decoding.
    pub fn greedy(max_new_tokens: i64, generation: &super::GenerationConfig) -> Self {
        Self::new(Strategy::Greedy, max_new_tokens, generation)
    }

    /// Beam search with transformers' defaults (α = 1, `early_stopping=False`).
    pub fn beam(num_beams: i64, max_new_tokens: i64, generation: &super::GenerationConfig) -> Self {
        let b = BeamOptions { num_beams, length_penalty: 1.0, early_stopping: EarlyStopping::Heuristic };
        Self::new(Strategy::Beam(b), max_new_tokens, generation)
    }
}

/// The prompt of [`generate`].
#[derive(Clone, Copy, Debug)]
pub enum Prompt<'a> {
    /// (B, P) int64 token ids.
    Ids(&'a Tensor),
    /// (B, P, d) input embeddings (e.g. with image features spliced in).
    Embeds(&'a Tensor),
}

/// The result of [`generate`].
#[derive(Debug)]
pub struct LmGeneration {
    /// (B, P + N) int64 on the CPU: the prompt ids (absent for an embeddings prompt) then N new tokens, pad
    /// after a row's EOS; N = the steps run (greedy, sampling) or the longest best hypothesis (beam).
    pub sequences: Tensor,
    /// Per row, the new tokens up to and including the first EOS.
    pub tokens: Vec<Vec<i64>>,
    /// Greedy / sampling: sum of the chosen tokens' log-probs; beam: the best hypothesis's score.
    pub scores: Vec<f64>,
    /// Beam search: each row's finished hypotheses, best first (empty otherwise).
    pub beams: Vec<Vec<Hypothesis>>,
}

fn check_options(lm: &LanguageModel, opts: &GenerateOptions) -> Result<()> {
    let bad = |m: String| Err(Error::Config(format!("generate: {m}")));
    let v = lm.config().vocab_size;
    if opts.max_new_tokens < 1 {
        return bad(format!("max_new_tokens must be ≥ 1, got {}", opts.max_new_tokens));
    }
    if let Some(e) = opts.eos_token_ids.iter().find(|&&e| e < 0 || e >= v) {
        return bad(format!("eos id {e} is outside the vocabulary [0, {v})"));
    }
    match opts.strategy {
        Strategy::Greedy => {}
        Strategy::Beam(b) => {
            if b.num_beams < 1 {
                return bad(format!("num_beams must be ≥ 1, got {}", b.num_beams));
            }
            if !b.length_penalty.is_finite() {
                return bad(format!("length_penalty must be finite, got {}", b.length_penalty));
            }
        }
        Strategy::Sample(s) => {
            if !(s.temperature.is_finite() && s.temperature > 0.0) {
                return bad(format!("temperature must be a finite number > 0, got {}", s.temperature));
            }
            if !(s.top_p > 0.0 && s.top_p <= 1.0) {
                return bad(format!("top_p must lie in (0, 1], got {}", s.top_p));
            }
            if s.top_k < 0 {
                return bad(format!("top_k must be ≥ 0 (0 = off), got {}", s.top_k));
            }
        }
    }
    Ok(())
}

/// The prompt as embeddings on the model's device, its ids (CPU) if given as ids, and its (B, P) bool mask.
fn prepare(lm: &LanguageModel, prompt: Prompt<'_>, attention_mask: Option<&Tensor>) -> Result<(Tensor, Option<Tensor>, Tensor)> {
    let (embeds, ids) = match prompt {
        Prompt::Ids(ids) => (lm.embed(ids)?, Some(ids.f_to_device(Device::Cpu)?)),
        Prompt::Embeds(e) => (e.shallow_clone(), None),
    };
    if embeds.dim() != 3 {
        bail_shape!("prompt embeddings: expected (B, P, d), got {:?}", embeds.size());
    }
    let (b, p) = (embeds.size()[0], embeds.size()[1]);
    let mask = match attention_mask {
        Some(m) if m.size() != [b, p] => bail_shape!("attention_mask: expected shape [{b}, {p}] (the prompt's), got {:?}", m.size()),
        Some(m) => m.f_to_device(lm.device())?.f_ne(0)?,
        None => Tensor::f_ones([b, p], (Kind::Bool, lm.device()))?,
    };
    Ok((embeds, ids, mask))
}

/// Generates from a prompt (see the module docs). `on_token(row, token)` sees each new token of a row (EOS
/// included, pads not) when it is chosen (greedy, sampling) or, for beam search, the best hypothesis's tokens
/// after the search; returning false cancels ([`Error::Cancelled`]). Runs without gradients.
///
/// # Shapes
/// prompt: (B, P) ids or (B, P, d) embeddings; attention_mask: (B, P) (1 = real token, left padding), None =
/// all real
pub fn generate(
    lm: &LanguageModel,
    prompt: Prompt<'_>,
    attention_mask: Option<&Tensor>,
    opts: &GenerateOptions,
    mut on_token: impl FnMut(usize, i64) -> bool,
) -> Result<LmGeneration> {
    check_options(lm, opts)?;
    tch::no_grad(|| {
        let (embeds, ids, mask) = prepare(lm, prompt, attention_mask)?;
        let (tokens, scores, beams) = match opts.strategy {
            Strategy::Beam(bo) => {
                let (tokens, scores, beams) = beam_search(lm, &embeds, &mask, opts, &bo)?;
                for (r, toks) in tokens.iter().enumerate() {
                    for &t in toks {
                        if !on_token(r, t) {
                            return Err(Error::Cancelled);
                        }
                    }
                }
                (tokens, scores, beams)
            }
            _ => sequential(lm, &embeds, &mask, opts, &mut on_token)?,
        };
        let sequences = assemble(ids.as_ref(), &tokens, opts)?;
        let tokens = tokens.into_iter().map(|t| cut_at_eos(t, &opts.eos_token_ids)).collect();
        Ok(LmGeneration { sequences, tokens, scores, beams })
    })
}

/// The new tokens up to and including the first EOS.
fn cut_at_eos(mut t: Vec<i64>, eos: &[i64]) -> Vec<i64> {
    if let Some(i) = t.iter().position(|x| eos.contains(x)) {
        t.truncate(i + 1);
    }
    t
}

/// Prompt ids (if any) then each row's new tokens, padded with the pad id to the longest.
fn assemble(ids: Option<&Tensor>, tokens: &[Vec<i64>], opts: &GenerateOptions) -> Result<Tensor> {
    let n = tokens.iter().map(Vec::len).max().unwrap_or(0);
    let flat: Vec<i64> = tokens.iter().flat_map(|t| t.iter().copied().chain(std::iter::repeat_n(opts.pad_token_id, n - t.len()))).collect();
    let new = Tensor::from_slice(&flat).f_view([tokens.len() as i64, n as i64])?;
    match ids {
        Some(p) => Ok(Tensor::f_cat(&[p, &new], 1)?),
        None => Ok(new),
    }
}

/// The real prompt tokens of each row, on `device` (the first new token's position).
fn real_counts(mask: &Tensor) -> Result<Tensor> {
    Ok(mask.f_sum_dim_intlist([1i64].as_slice(), false, Kind::Int64)?)
}

/// Feeds `tokens` (one per row) after the cache and returns the next logits (R, V) float32; `mask` grows by one.
fn step(lm: &LanguageModel, cache: &mut KvCache, mask: &mut Tensor, counts: &Tensor, tokens: &[i64], s: i64) -> Result<Tensor> {
    let dev = lm.device();
    let r = tokens.len() as i64;
    *mask = Tensor::f_cat(&[&*mask, &Tensor::f_ones([r, 1], (Kind::Bool, dev))?], 1)?;
    let pos = counts.f_add_scalar(s)?.f_view([r, 1])?;
    let ids = Tensor::from_slice(tokens).f_to_device(dev)?.f_view([r, 1])?;
    Ok(lm.forward(&ids, Some(mask), Some(&pos), Some(cache))?.f_select(1, 0)?)
}

/// The prompt through the model into a fresh cache; the logits (B, V) of its last position.
fn prefill(lm: &LanguageModel, embeds: &Tensor, mask: &Tensor, max_new: i64) -> Result<(KvCache, Tensor)> {
    let (b, p) = (embeds.size()[0], embeds.size()[1]);
    let mut cache = lm.new_cache(b, p + max_new)?;
    let h = lm.hidden_states(embeds, Some(mask), None, Some(&mut cache))?;
    let logits = lm.logits(&h.f_select(1, p - 1)?)?;
    Ok((cache, logits))
}

type Decoded = (Vec<Vec<i64>>, Vec<f64>, Vec<Vec<Hypothesis>>);

/// Greedy or sampling: one token per row per step.
fn sequential(lm: &LanguageModel, embeds: &Tensor, mask: &Tensor, opts: &GenerateOptions, on_token: &mut impl FnMut(usize, i64) -> bool) -> Result<Decoded> {
    let b = embeds.size()[0] as usize;
    let (mut cache, mut logits) = prefill(lm, embeds, mask, opts.max_new_tokens)?;
    let mut mask = mask.shallow_clone();
    let counts = real_counts(&mask)?;
    let eos = &opts.eos_token_ids;
    let fallback = eos.first().copied().unwrap_or(0);
    let mut rngs: Vec<SplitMix64> = match opts.strategy {
        Strategy::Sample(s) => (0..b).map(|_| SplitMix64::new(s.seed, 0)).collect(),
        _ => Vec::new(),
    };
    let mut tokens: Vec<Vec<i64>> = vec![Vec::new(); b];
    let mut scores = vec![0.0; b];
    let mut done = vec![false; b];
    for s in 0..opts.max_new_tokens {
        let lp = logits.f_log_softmax(-1, Kind::Float)?;
        let chosen: Vec<i64> = match opts.strategy {
            Strategy::Sample(so) => {
                let rows: Vec<Vec<f64>> = Vec::<Vec<f64>>::try_from(&lp.f_to_kind(Kind::Double)?.f_to_device(Device::Cpu)?)?;
                rows.iter().zip(rngs.iter_mut()).map(|(row, rng)| sample_row(row, &so, rng, fallback)).collect()
            }
            _ => Vec::<i64>::try_from(&logits.f_argmax(-1, false)?.f_to_device(Device::Cpu)?)?,
        };
        let picked = lp.f_gather(1, &Tensor::from_slice(&chosen).f_to_device(lp.device())?.f_view([-1, 1])?, false)?;
        let picked: Vec<f64> = Vec::<f64>::try_from(&picked.f_view([-1])?.f_to_kind(Kind::Double)?.f_to_device(Device::Cpu)?)?;
        let mut next = Vec::with_capacity(b);
        for r in 0..b {
            if done[r] {
                tokens[r].push(opts.pad_token_id);
                next.push(opts.pad_token_id);
                continue;
            }
            let t = chosen[r];
            tokens[r].push(t);
            next.push(t);
            scores[r] += picked[r];
            if eos.contains(&t) {
                done[r] = true;
            }
            if !on_token(r, t) {
                return Err(Error::Cancelled);
            }
        }
        if done.iter().all(|&d| d) || s + 1 == opts.max_new_tokens {
            break;
        }
        logits = step(lm, &mut cache, &mut mask, &counts, &next, s)?;
    }
    Ok((tokens, scores, vec![Vec::new(); b]))
}

/// transformers' "very large negative" of beam search.
const NEG: f64 = -1.0e9;

/// One finished-hypothesis slot of a row.
#[derive(Clone, Debug)]
struct Slot {
    score: f64,
    sum_logprobs: f64,
    tokens: Vec<i64>,
    finished: bool,
}

fn beam_search(lm: &LanguageModel, embeds: &Tensor, mask: &Tensor, opts: &GenerateOptions, bo: &BeamOptions) -> Result<Decoded> {
    let dev = lm.device();
    let (b, k) = (embeds.size()[0] as usize, bo.num_beams as usize);
    let v = lm.config().vocab_size;
    let max_new = opts.max_new_tokens as usize;
    let eos = &opts.eos_token_ids;
    let keep = (2.max(1 + eos.len()) * k) as i64;
    let alpha = bo.length_penalty;
    let (mut cache, logits) = prefill(lm, embeds, mask, opts.max_new_tokens)?;
    // Row r·K + j is beam j of row r.
    let expand = Tensor::f_arange(b as i64, (Kind::Int64, dev))?.f_repeat_interleave_self_int(k as i64, 0, None::<i64>)?;
    cache.reorder(&expand)?;
    let mut logits = logits.f_index_select(0, &expand)?;
    let mut mask = mask.f_index_select(0, &expand)?;
    let counts = real_counts(&mask)?;
    let mut run_scores: Vec<f64> = (0..b * k).map(|i| if i % k == 0 { 0.0 } else { NEG }).collect();
    let mut seqs: Vec<Vec<i64>> = vec![Vec::new(); b * k];
    let empty = Slot { score: NEG, sum_logprobs: NEG, tokens: Vec::new(), finished: false };
    let mut slots: Vec<Vec<Slot>> = vec![vec![empty; k]; b];
    let mut unsatisfied = vec![true; b];
    for s in 0..max_new {
        let gen_len = (s + 1) as f64;
        let last = s + 1 == max_new;
        // (B·K, V) log-probs + running scores → (B, K·V) → the best `keep` per row.
        let lp = logits.f_log_softmax(-1, Kind::Float)?.f_to_kind(Kind::Double)?;
        let acc = lp.f_add(&Tensor::from_slice(&run_scores).f_to_device(dev)?.f_view([-1, 1])?)?.f_view([b as i64, k as i64 * v])?;
        let (top_v, top_i) = acc.f_topk(keep, -1, true, true)?;
        let top_v: Vec<Vec<f64>> = Vec::<Vec<f64>>::try_from(&top_v.f_to_device(Device::Cpu)?)?;
        let top_i: Vec<Vec<i64>> = Vec::<Vec<i64>>::try_from(&top_i.f_to_device(Device::Cpu)?)?;
        let mut origin = vec![0i64; b * k];
        let mut next_seqs: Vec<Vec<i64>> = Vec::with_capacity(b * k);
        let mut next_scores = vec![NEG; b * k];
        let mut all_hit = true;
        for r in 0..b {
            // Candidates (score, beam, token, hit), best first.
            let cands: Vec<(f64, usize, i64, bool)> = top_v[r]
                .iter()
                .zip(&top_i[r])
                .map(|(&sc, &ix)| {
                    let tok = ix % v;
                    (sc, (ix / v) as usize, tok, last || eos.contains(&tok))
                })
                .collect();
            all_hit &= cands.iter().all(|c| c.3);
            // Next running beams: the best K after −1e9 on those that hit (stable: earlier first on ties).
            let mut order: Vec<(f64, usize)> = cands.iter().enumerate().map(|(c, x)| (x.0 + if x.3 { NEG } else { 0.0 }, c)).collect();
            order.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
            for (slot, &(score, c)) in order.iter().take(k).enumerate() {
                let (_, j, tok, _) = cands[c];
                let from = r * k + j;
                origin[r * k + slot] = from as i64;
                let mut sq = seqs[from].clone();
                sq.push(tok);
                next_seqs.push(sq);
                next_scores[r * k + slot] = score;
            }
            // Finished slots: merge in the candidates (penalised unless they hit among the first K and may enter).
            let full = slots[r].iter().all(|x| x.finished);
            let mut merged = slots[r].clone();
            for (c, &(score, j, tok, hit)) in cands.iter().enumerate() {
                let top_hit = hit && c < k;
                let mut sc = score / gen_len.powf(alpha);
                if full && bo.early_stopping == EarlyStopping::Always {
                    sc += NEG;
                }
                if !unsatisfied[r] {
                    sc += NEG;
                }
                if !top_hit {
                    sc += NEG;
                }
                let mut toks = seqs[r * k + j].clone();
                toks.push(tok);
                merged.push(Slot { score: sc, sum_logprobs: score, tokens: toks, finished: top_hit });
            }
            merged.sort_by(|a, b| b.score.partial_cmp(&a.score).unwrap_or(std::cmp::Ordering::Equal));
            merged.truncate(k);
            slots[r] = merged;
        }
        seqs = next_seqs;
        run_scores = next_scores;
        // Rows that cannot improve any more (transformers `_check_early_stop_heuristic`).
        for r in 0..b {
            let horizon = match bo.early_stopping {
                EarlyStopping::Never if alpha > 0.0 => max_new as f64,
                _ => gen_len,
            };
            let best_running = run_scores[r * k] / horizon.powf(alpha);
            let worst = if slots[r].iter().all(|x| x.finished) { slots[r].iter().map(|x| x.score).fold(f64::INFINITY, f64::min) } else { NEG };
            unsatisfied[r] &= best_running > worst;
        }
        let all_full = slots.iter().all(|row| row.iter().all(|x| x.finished));
        let stop = !unsatisfied.iter().any(|&u| u) || (bo.early_stopping == EarlyStopping::Always && all_full) || all_hit;
        if last || stop {
            break;
        }
        cache.reorder(&Tensor::from_slice(&origin).f_to_device(dev)?)?;
        let cur: Vec<i64> = seqs.iter().map(|q| *q.last().expect("one token per step")).collect();
        logits = step(lm, &mut cache, &mut mask, &counts, &cur, s as i64)?;
    }
    let mut tokens = Vec::with_capacity(b);
    let mut scores = Vec::with_capacity(b);
    let mut beams = Vec::with_capacity(b);
    for row in slots {
        let best = row.first().filter(|x| x.finished).ok_or_else(|| Error::Shape("beam search finished no hypothesis".into()))?;
        tokens.push(best.tokens.clone());
        scores.push(best.score);
        beams.push(
            row.iter()
                .filter(|x| x.finished)
                .map(|x| Hypothesis { tokens: x.tokens.clone(), sum_logprobs: x.sum_logprobs, score: x.score })
                .collect(),
        );
    }
    Ok((tokens, scores, beams))
}
