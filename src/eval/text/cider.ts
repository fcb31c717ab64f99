/**
 * CIDEr-D as pycocoevalcap 1.2 computes it (salaniz/pycocoevalcap `cider/cider.py`, `cider/cider_scorer.py`;
 * Vedantam et al., "CIDEr: Consensus-based Image Description Evaluation", CVPR 2015), with its float order:
 * - tokens = Python `str.split()`; n-grams n = 1..4 counted per sentence;
 * - document frequency df(g) = the number of segments whose references (any of them) contain g — computed from
 *   the references of the corpus being scored, so a score depends on the whole corpus; ref_len = log(#segments);
 * - vector of a sentence: per order, g ↦ tf(g) · (ref_len − log(max(1, df(g)))), in first-occurrence order;
 *   norm = √Σ value²; "length" = the number of **bigrams** of the sentence (pycoco's `if n == 1` counts order-2
 *   terms: a quirk kept for exactness);
 * - similarity per order: Σ_g min(v_hyp, v_ref) · v_ref (clipping, the "-D"), divided by ‖v_hyp‖·‖v_ref‖ when
 *   both are non-zero, times the Gaussian length penalty e^(−δ²/(2σ²)), σ = 6, δ = length_hyp − length_ref;
 * - segment score = 10 · mean over the 4 orders of (Σ over references of the similarity) / #references;
 *   corpus = `np.mean` of the segment scores.
 * Consequences: a one-segment corpus scores 0 (every df = 1 = #segments, idf 0); n-grams in every segment's
 * references carry no weight.
 *
 * pycoco raises when no reference in the corpus has a token (`max()` of an empty document-frequency table); here
 * that is a RangeError saying so.
 */
import { mean } from '../stats.js';
import { NgramTable } from './ngram.js';
import { pySplit } from './pystr.js';

const N = 4;
const SIGMA = 6.0;

/** A sentence's tf-idf vector: per order, parallel arrays of n-gram ids and weights in pycoco's dict order. */
interface CiderVec {
  ids: number[][];
  w: number[][];
  norm: number[];
  /** Number of bigram occurrences (pycoco `length`). */
  length: number;
}

/** pycoco `counts2vec`: weight tf · (ref_len − log(max(1, df))), norm √Σw², length = bigram count. */
function counts2vec(counts: readonly Map<number, number>[], df: Float64Array, refLen: number): CiderVec {
  const ids: number[][] = [];
  const w: number[][] = [];
  const norm: number[] = [];
  let length = 0;
  for (let n = 0; n < N; n++) {
    const gi: number[] = [];
    const gw: number[] = [];
    let s = 0.0;
    for (const [g, tf] of counts[n] as Map<number, number>) {
      const d = Math.log(Math.max(1.0, df[g] as number));
      const v = tf * (refLen - d);
      gi.push(g);
      gw.push(v);
      s += v * v;
      if (n === 1) length += tf;
    }
    ids.push(gi);
    w.push(gw);
    norm.push(Math.sqrt(s));
  }
  return { ids, w, norm, length };
}

/**
 * pycoco `sim`, added into `val` (pycoco: `score += sim(...)`). `scratch` is all zeros on entry and on exit; it holds
 * the reference weights by n-gram id meanwhile (a missing n-gram weighs 0, as in pycoco's defaultdict).
 */
function sim(h: CiderVec, r: CiderVec, val: Float64Array, scratch: Float64Array): void {
  const delta = h.length - r.length;
  const penalty = Math.E ** (-(delta * delta) / (2 * SIGMA ** 2));
  for (let n = 0; n < N; n++) {
    const rIds = r.ids[n] as number[];
    const rW = r.w[n] as number[];
    for (let j = 0; j < rIds.length; j++) scratch[rIds[j] as number] = rW[j] as number;
    let v = 0.0;
    const hIds = h.ids[n] as number[];
    const hW = h.w[n] as number[];
    for (let j = 0; j < hIds.length; j++) {
      const wr = scratch[hIds[j] as number] as number;
      const wh = hW[j] as number;
      v += (wh < wr ? wh : wr) * wr;
    }
    for (let j = 0; j < rIds.length; j++) scratch[rIds[j] as number] = 0;
    const nh = h.norm[n] as number;
    const nr = r.norm[n] as number;
    if (nh !== 0 && nr !== 0) v /= nh * nr;
    if (Number.isNaN(v)) throw new Error('ciderD: NaN similarity (pycoco asserts not isnan)');
    v *= penalty;
    val[n] = (val[n] as number) + v;
  }
}

/**
 * pycocoevalcap `Cider().compute_score(gts, res)` with `gts[i] = refs[i]`, `res[i] = [hyps[i]]`: the corpus mean
 * and the per-segment scores (0–10 scale as pycoco reports them, 10 for a perfect match in a larger corpus).
 */
export function ciderD(hyps: readonly string[], refs: readonly (readonly string[])[]): { corpus: number; segments: number[] } {
  if (hyps.length !== refs.length) {
    throw new RangeError(`ciderD: ${hyps.length} hypotheses but ${refs.length} reference lists (one list per hypothesis expected)`);
  }
  if (hyps.length === 0) throw new RangeError('ciderD: the corpus is empty (no hypotheses)');
  const table = new NgramTable();
  const crefs: Map<number, number>[][][] = [];
  const ctest: Map<number, number>[][] = [];
  for (let i = 0; i < hyps.length; i++) {
    const h = hyps[i];
    const r = refs[i];
    if (typeof h !== 'string') throw new TypeError(`ciderD: hyps[${i}] must be a string, got ${typeof h}`);
    if (!Array.isArray(r) || r.length === 0) throw new RangeError(`ciderD: refs[${i}] must be a non-empty array of reference strings`);
    crefs.push(
      r.map((s, j) => {
        if (typeof s !== 'string') throw new TypeError(`ciderD: refs[${i}][${j}] must be a string, got ${typeof s}`);
        return table.count(pySplit(s), N);
      }),
    );
    ctest.push(table.count(pySplit(h), N));
  }
  // compute_doc_freq: each segment counts once per n-gram found in any of its references.
  const df = new Float64Array(table.size);
  const lastSeen = new Int32Array(table.size).fill(-1);
  let anyRefNgram = false;
  crefs.forEach((segRefs, i) => {
    for (const ref of segRefs) {
      for (const m of ref) {
        for (const g of m.keys()) {
          anyRefNgram = true;
          if (lastSeen[g] !== i) {
            lastSeen[g] = i;
            df[g] = (df[g] as number) + 1;
          }
        }
      }
    }
  });
  if (!anyRefNgram) {
    throw new RangeError(
      'ciderD: every reference in the corpus is empty (no tokens), so there are no document frequencies; ' +
        'pycocoevalcap raises here (max() of an empty sequence)',
    );
  }
  // compute_cider
  const refLen = Math.log(crefs.length);
  const scratch = new Float64Array(table.size);
  const segments: number[] = [];
  for (let i = 0; i < ctest.length; i++) {
    const h = counts2vec(ctest[i] as Map<number, number>[], df, refLen);
    const score = new Float64Array(N);
    const segRefs = crefs[i] as Map<number, number>[][];
    for (const ref of segRefs) sim(h, counts2vec(ref, df, refLen), score, scratch);
    let avg = mean(score);
    avg /= segRefs.length;
    avg *= 10.0;
    segments.push(avg);
  }
  return { corpus: mean(segments), segments };
}
