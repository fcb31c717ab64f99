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
import { ngramCounts } from './bleu.js';
import { pySplit } from './pystr.js';

const N = 4;
const SIGMA = 6.0;

interface CiderVec {
  /** Per order: n-gram → tf·idf weight, in the order pycoco's dict would iterate. */
  vec: Map<string, number>[];
  norm: number[];
  /** Number of bigram occurrences (pycoco `length`). */
  length: number;
}

function counts2vec(counts: readonly Map<string, number>[], df: ReadonlyMap<string, number>[], refLen: number): CiderVec {
  const vec: Map<string, number>[] = [];
  const norm: number[] = [];
  let length = 0;
  for (let n = 0; n < N; n++) {
    const v = new Map<string, number>();
    let s = 0.0;
    for (const [g, tf] of counts[n] as Map<string, number>) {
      const d = Math.log(Math.max(1.0, (df[n] as ReadonlyMap<string, number>).get(g) ?? 0));
      const w = tf * (refLen - d);
      v.set(g, w);
      s += w * w;
      if (n === 1) length += tf;
    }
    vec.push(v);
    norm.push(s);
  }
  return { vec, norm: norm.map((x) => Math.sqrt(x)), length };
}

function sim(h: CiderVec, r: CiderVec, val: Float64Array): void {
  const delta = h.length - r.length;
  const penalty = Math.E ** (-(delta * delta) / (2 * SIGMA ** 2));
  for (let n = 0; n < N; n++) {
    let v = 0.0;
    const rv = r.vec[n] as Map<string, number>;
    for (const [g, wh] of h.vec[n] as Map<string, number>) {
      const wr = rv.get(g) ?? 0.0;
      v += Math.min(wh, wr) * wr;
    }
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
  const crefs: Map<string, number>[][][] = [];
  const ctest: Map<string, number>[][] = [];
  for (let i = 0; i < hyps.length; i++) {
    const h = hyps[i];
    const r = refs[i];
    if (typeof h !== 'string') throw new TypeError(`ciderD: hyps[${i}] must be a string, got ${typeof h}`);
    if (!Array.isArray(r) || r.length === 0) throw new RangeError(`ciderD: refs[${i}] must be a non-empty array of reference strings`);
    crefs.push(
      r.map((s, j) => {
        if (typeof s !== 'string') throw new TypeError(`ciderD: refs[${i}][${j}] must be a string, got ${typeof s}`);
        return ngramCounts(pySplit(s), N);
      }),
    );
    ctest.push(ngramCounts(pySplit(h), N));
  }
  // compute_doc_freq: each segment counts once per n-gram found in any of its references.
  const df: Map<string, number>[] = Array.from({ length: N }, () => new Map());
  let anyRefNgram = false;
  for (const segRefs of crefs) {
    for (let n = 0; n < N; n++) {
      const seen = new Set<string>();
      for (const ref of segRefs) for (const g of (ref[n] as Map<string, number>).keys()) seen.add(g);
      const d = df[n] as Map<string, number>;
      for (const g of seen) d.set(g, (d.get(g) ?? 0) + 1);
      if (seen.size > 0) anyRefNgram = true;
    }
  }
  if (!anyRefNgram) {
    throw new RangeError(
      'ciderD: every reference in the corpus is empty (no tokens), so there are no document frequencies; ' +
        'pycocoevalcap raises here (max() of an empty sequence)',
    );
  }
  // compute_cider
  const refLen = Math.log(crefs.length);
  const segments: number[] = [];
  for (let i = 0; i < ctest.length; i++) {
    const h = counts2vec(ctest[i] as Map<string, number>[], df, refLen);
    const score = new Float64Array(N);
    const segRefs = crefs[i] as Map<string, number>[][];
    for (const ref of segRefs) sim(h, counts2vec(ref, df, refLen), score);
    let avg = mean(score);
    avg /= segRefs.length;
    avg *= 10.0;
    segments.push(avg);
  }
  return { corpus: mean(segments), segments };
}
