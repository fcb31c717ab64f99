/**
 * BLEU as two reference packages compute it, each reproduced with its own float order of operations.
 *
 * **pycocoevalcap 1.2** (salaniz/pycocoevalcap `bleu/bleu.py`, `bleu/bleu_scorer.py`; `Bleu(4).compute_score`):
 * - tokens = Python `str.split()` of the text as given (punctuation stays attached unless the text was
 *   pre-tokenised, e.g. by the PTB tokenizer);
 * - per segment: guess_k = max(0, len − k + 1), correct_k = Σ min(count_hyp, max over refs of count_ref); the
 *   reference length is the "closest" one (`min((|l − testlen|, l))`, so ties go to the shorter);
 * - segment score: bleu ← bleu · (correct_k + tiny) / (guess_k + small), BLEU-k = bleu^(1/k) (tiny = 1e-15,
 *   small = 1e-9), then each BLEU-k ×= exp(1 − 1/ratio) when ratio = (testlen + tiny)/(reflen + small) < 1;
 * - corpus score: the same on the summed counts and lengths. Scores are 0–1 and never exactly 1 (e.g. 0.9999999995
 *   for an identical pair); an empty hypothesis scores 0.
 *
 * **sacrebleu 2.6.0** (mjpost/sacrebleu `sacrebleu/metrics/bleu.py`, `metrics/base.py`, `metrics/helpers.py`):
 * - each segment is lower-cased (optional), `rstrip()`-ed and tokenised (`13a` by default, see `tok13a.ts`), then
 *   split on whitespace;
 * - per segment statistics [sys_len, ref_len, correct_1..N, total_1..N]: correct clipped by the maximum count over
 *   the references, ref_len the closest reference length (ties to the shorter);
 * - corpus: statistics summed over segments, then `compute_bleu`: bp = exp(1 − ref/sys) if sys < ref (0 if sys = 0);
 *   no correct n-gram at all → score 0; precisions 100·correct/total; smoothing `exp` (a zero precision becomes
 *   100/(2^m · total) for the m-th zero), `floor` (100·value/total; default 0.1), `add-k` (k added to correct and
 *   total for n > 1; default 1), `none`; an order with total 0 stops the loop; `effective_order` averages the logs
 *   over the orders reached; log(0) is taken as −9999999999; score = bp · exp(Σ log pₙ / order), 0–100;
 * - `corpus_bleu` defaults: smooth `exp`, effective order off; `sentence_bleu`: smooth `exp`, effective order on.
 *
 * References are given per segment (`refs[i]` = the references of hypothesis i), so a segment may have any number
 * of them; sacrebleu's reference streams with `None` for missing references are the transpose of this.
 */
import { pySplit, pyRstrip } from './pystr.js';
import { clippedMatches, maxCounts, NgramTable } from './ngram.js';
import { sacreTokenizer, type SacreTokenizer } from './tok13a.js';
import { checkCorpus } from './corpus.js';

// ---------------------------------------------------------------------------------------------------------------
// pycocoevalcap

export interface PycocoBleuResult {
  /** Cumulative BLEU-1..n over the corpus, 0–1. */
  corpus: number[];
  /** `segments[k][i]`: cumulative BLEU-(k+1) of segment i (pycoco's `bleu_list`). */
  segments: number[][];
  /** Σ hypothesis lengths and Σ closest reference lengths (BleuScorer `_testlen`, `_reflen`). */
  testlen: number;
  reflen: number;
}

/**
 * pycocoevalcap `Bleu(n).compute_score(gts, res)` with `gts[i] = refs[i]`, `res[i] = [hyps[i]]` (option
 * 'closest'). Throws for mismatched lengths, an empty corpus or a segment without references (pycoco asserts).
 */
export function pycocoBleu(hyps: readonly string[], refs: readonly (readonly string[])[], opts: { n?: number } = {}): PycocoBleuResult {
  const n = opts.n ?? 4;
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`pycocoBleu: n must be a positive integer, got ${n}`);
  checkCorpus(hyps, refs, 'pycocoBleu');
  const segments: number[][] = Array.from({ length: n }, () => []);
  const sum = new Array<number>(2 + 2 * n).fill(0);
  const table = new NgramTable();
  for (let i = 0; i < hyps.length; i++) {
    const st = segmentStats(hyps[i] as string, refs[i] as readonly string[], n, table);
    for (let j = 0; j < sum.length; j++) sum[j]! += st[j]!;
    // per image bleu score (pycoco's bleu_list)
    const bleu = pycocoBleuFromStats(st, n);
    for (let k = 0; k < n; k++) segments[k]!.push(bleu[k]!);
  }
  return { corpus: pycocoBleuFromStats(sum, n), segments, testlen: sum[0]!, reflen: sum[1]! };
}

/** cook_refs + cook_test of one segment: `[testlen, closest reflen, correct_1..n, guess_1..n]`. */
function segmentStats(hyp: string, refs: readonly string[], n: number, table: NgramTable): number[] {
  const refTokens = refs.map((r) => pySplit(r));
  const refMax = maxCounts(refTokens.map((t) => table.count(t, n)), n);
  const words = pySplit(hyp);
  const testlen = words.length;
  const correct = clippedMatches(table.count(words, n), refMax, n);
  const guess = Array.from({ length: n }, (_, k) => Math.max(0, testlen - k));
  // _single_reflen(option='closest'): min over (|l - testlen|, l) tuples
  let reflen = refTokens[0]!.length;
  for (const t of refTokens) {
    const l = t.length;
    const d = Math.abs(l - testlen);
    const bd = Math.abs(reflen - testlen);
    if (d < bd || (d === bd && l < reflen)) reflen = l;
  }
  return [testlen, reflen, ...correct, ...guess];
}

/**
 * pycocoevalcap's per-segment statistics `[testlen, reflen (closest), correct_1..n, guess_1..n]`: summed over segments
 * (with integer weights for a bootstrap resample) they give the corpus score through {@link pycocoBleuFromStats}.
 */
export function pycocoBleuStats(hyp: string, refs: readonly string[], n = 4): number[] {
  checkCorpus([hyp], [refs], 'pycocoBleuStats');
  return segmentStats(hyp, refs, n, new NgramTable());
}

/**
 * Cumulative BLEU-1..n from (summed) statistics, in BleuScorer.compute_score's order of operations: the product of
 * (correct + 1e-15)/(guess + 1e-9) up to each order, its (k+1)-th root, times exp(1 − 1/ratio) when the ratio
 * (testlen + 1e-15)/(reflen + 1e-9) is below 1.
 */
export function pycocoBleuFromStats(stats: readonly number[], n = 4): number[] {
  const small = 1e-9;
  const tiny = 1e-15;
  const out: number[] = [];
  let bleu = 1;
  for (let k = 0; k < n; k++) {
    bleu *= (stats[2 + k]! + tiny) / (stats[2 + n + k]! + small);
    out.push(bleu ** (1 / (k + 1)));
  }
  const ratio = (stats[0]! + tiny) / (stats[1]! + small);
  if (ratio < 1) {
    for (let k = 0; k < n; k++) out[k] = out[k]! * Math.exp(1 - 1 / ratio);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// sacrebleu

export type SmoothMethod = 'exp' | 'floor' | 'add-k' | 'none';

export interface SacreBleuOptions {
  /** Default '13a'. */
  tokenize?: SacreTokenizer;
  /** Default false (case-sensitive). */
  lowercase?: boolean;
  /** Default 'exp'. */
  smooth?: SmoothMethod;
  /** For 'floor' (default 0.1) and 'add-k' (default 1); ignored otherwise. */
  smoothValue?: number;
  /** Default 4. */
  maxNgramOrder?: number;
  /** Default false for the corpus score, true for the sentence score (sacrebleu's defaults). */
  effectiveOrder?: boolean;
}

/** sacrebleu `BLEUScore`: score and precisions 0–100. */
export interface BleuScore {
  score: number;
  /** Precision per order, 0–100 (0 where an order was not reached or had no match without smoothing). */
  precisions: number[];
  bp: number;
  /** sysLen / refLen, 0 when refLen is 0. */
  ratio: number;
  sysLen: number;
  refLen: number;
  /** Correct n-grams per order (with add-k: k added for n > 1, as sacrebleu reports them). */
  counts: number[];
  totals: number[];
}

const SMOOTH_DEFAULTS: Record<SmoothMethod, number | null> = { none: null, floor: 0.1, 'add-k': 1, exp: null };

interface ResolvedSacre {
  tokenize: (line: string) => string;
  tokenizeName: SacreTokenizer;
  lowercase: boolean;
  smooth: SmoothMethod;
  smoothValue: number | null;
  order: number;
  effectiveOrder: boolean;
}

function resolveSacre(opts: SacreBleuOptions, effectiveDefault: boolean, what: string): ResolvedSacre {
  const smooth = opts.smooth ?? 'exp';
  if (!(smooth in SMOOTH_DEFAULTS)) {
    throw new RangeError(`${what}: smooth must be one of 'exp', 'floor', 'add-k', 'none', got ${JSON.stringify(smooth)}`);
  }
  const order = opts.maxNgramOrder ?? 4;
  if (!Number.isInteger(order) || order < 1) throw new RangeError(`${what}: maxNgramOrder must be a positive integer, got ${order}`);
  if (opts.smoothValue !== undefined && !Number.isFinite(opts.smoothValue)) {
    throw new RangeError(`${what}: smoothValue must be a finite number, got ${opts.smoothValue}`);
  }
  const tokenizeName = opts.tokenize ?? '13a';
  return {
    tokenize: sacreTokenizer(tokenizeName),
    tokenizeName,
    lowercase: opts.lowercase ?? false,
    smooth,
    smoothValue: opts.smoothValue ?? SMOOTH_DEFAULTS[smooth],
    order,
    effectiveOrder: opts.effectiveOrder ?? effectiveDefault,
  };
}

/** sacrebleu `BLEU._preprocess_segment` then `extract_all_word_ngrams`' split. */
function sacreTokens(s: string, o: ResolvedSacre): string[] {
  return pySplit(o.tokenize(pyRstrip(o.lowercase ? s.toLowerCase() : s)));
}

/** Segment statistics `[sys_len, ref_len, correct_1..N, total_1..N]` (sacrebleu `_compute_segment_statistics`). */
function sacreSegmentStats(hyp: string, refs: readonly string[], o: ResolvedSacre, table: NgramTable): number[] {
  const n = o.order;
  const refTokens = refs.map((r) => sacreTokens(r, o));
  const refMax = maxCounts(refTokens.map((t) => table.count(t, n)), n);
  const words = sacreTokens(hyp, o);
  const hypLen = words.length;
  // _get_closest_ref_len
  let closestDiff = -1;
  let closestLen = -1;
  for (const t of refTokens) {
    const diff = Math.abs(hypLen - t.length);
    if (closestDiff === -1 || diff < closestDiff) {
      closestDiff = diff;
      closestLen = t.length;
    } else if (diff === closestDiff && t.length < closestLen) {
      closestLen = t.length;
    }
  }
  const hypCounts = table.count(words, n);
  const correct = clippedMatches(hypCounts, refMax, n);
  const total = hypCounts.map((m) => {
    let s = 0;
    for (const c of m.values()) s += c;
    return s;
  });
  return [hypLen, closestLen, ...correct, ...total];
}

/** sacrebleu `math.log` floored: log(0) = −9999999999 (`utils.my_log`). */
function myLog(x: number): number {
  return x === 0 ? -9999999999 : Math.log(x);
}

/** sacrebleu `BLEU.compute_bleu` on sufficient statistics (copies its inputs). */
export function computeBleu(
  correctIn: readonly number[],
  totalIn: readonly number[],
  sysLen: number,
  refLen: number,
  opts: { smooth?: SmoothMethod; smoothValue?: number; effectiveOrder?: boolean; maxNgramOrder?: number } = {},
): BleuScore {
  const smooth = opts.smooth ?? 'none';
  const smoothValue = opts.smoothValue ?? SMOOTH_DEFAULTS[smooth] ?? 0;
  const maxOrder = opts.maxNgramOrder ?? 4;
  const effectiveOrder = opts.effectiveOrder ?? false;
  const correct = correctIn.slice();
  const total = totalIn.slice();
  let bp = 1.0;
  if (sysLen < refLen) bp = sysLen > 0 ? Math.exp(1 - refLen / sysLen) : 0.0;
  const precisions = new Array<number>(maxOrder).fill(0);
  const result = (score: number): BleuScore => ({
    score,
    precisions,
    bp,
    ratio: refLen ? sysLen / refLen : 0,
    sysLen,
    refLen,
    counts: correct,
    totals: total,
  });
  if (!correct.some((c) => c !== 0)) return result(0.0);
  let smoothMteval = 1.0;
  let effOrder = maxOrder;
  for (let n = 1; n <= maxOrder; n++) {
    if (smooth === 'add-k' && n > 1) {
      correct[n - 1] = correct[n - 1]! + smoothValue;
      total[n - 1] = total[n - 1]! + smoothValue;
    }
    if (total[n - 1] === 0) break;
    if (effectiveOrder) effOrder = n;
    if (correct[n - 1] === 0) {
      if (smooth === 'exp') {
        smoothMteval *= 2;
        precisions[n - 1] = 100 / (smoothMteval * total[n - 1]!);
      } else if (smooth === 'floor') {
        precisions[n - 1] = (100 * smoothValue) / total[n - 1]!;
      }
    } else {
      precisions[n - 1] = (100 * correct[n - 1]!) / total[n - 1]!;
    }
  }
  let logSum = 0;
  for (let k = 0; k < effOrder; k++) logSum += myLog(precisions[k]!);
  return result(bp * Math.exp(logSum / effOrder));
}

function scoreFromStats(stats: readonly number[], o: ResolvedSacre): BleuScore {
  const n = o.order;
  return computeBleu(stats.slice(2, 2 + n), stats.slice(2 + n), stats[0]!, stats[1]!, {
    smooth: o.smooth,
    ...(o.smoothValue === null ? {} : { smoothValue: o.smoothValue }),
    effectiveOrder: o.effectiveOrder,
    maxNgramOrder: n,
  });
}

/**
 * sacrebleu `corpus_bleu(hyps, streams, ...)` where `refs[i]` lists the references of hypothesis i (any number ≥ 1
 * per segment). Default options as sacrebleu's: 13a, case-sensitive, smooth 'exp', effective order off.
 */
export function sacreBleu(hyps: readonly string[], refs: readonly (readonly string[])[], opts: SacreBleuOptions = {}): BleuScore {
  checkCorpus(hyps, refs, 'sacreBleu');
  const o = resolveSacre(opts, false, 'sacreBleu');
  const sum = new Array<number>(2 + 2 * o.order).fill(0);
  const table = new NgramTable();
  for (let i = 0; i < hyps.length; i++) {
    const s = sacreSegmentStats(hyps[i] as string, refs[i] as readonly string[], o, table);
    for (let j = 0; j < sum.length; j++) sum[j]! += s[j]!;
  }
  return scoreFromStats(sum, o);
}

/** sacrebleu `sentence_bleu(hyp, refs, ...)`: defaults 13a, case-sensitive, smooth 'exp', effective order on. */
export function sacreSentenceBleu(hyp: string, refs: readonly string[], opts: SacreBleuOptions = {}): BleuScore {
  checkCorpus([hyp], [refs], 'sacreSentenceBleu');
  const o = resolveSacre(opts, true, 'sacreSentenceBleu');
  return scoreFromStats(sacreSegmentStats(hyp, refs, o, new NgramTable()), o);
}

/** sacrebleu's per-segment statistics `[sys_len, ref_len, correct_1..N, total_1..N]` (for bootstrap or checks). */
export function sacreBleuStats(hyp: string, refs: readonly string[], opts: SacreBleuOptions = {}): number[] {
  checkCorpus([hyp], [refs], 'sacreBleuStats');
  return sacreSegmentStats(hyp, refs, resolveSacre(opts, false, 'sacreBleuStats'), new NgramTable());
}

/**
 * sacrebleu's reproducibility signature (`BLEU.get_signature()`, `BLEUSignature`), e.g.
 * `nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0`; `nrefs:var` when segments have different numbers of
 * references; `smooth:floor[0.10]` style for smoothing methods with a value.
 */
export function sacreBleuSignature(refs: readonly (readonly string[])[], opts: SacreBleuOptions = {}, sentence = false): string {
  const o = resolveSacre(opts, sentence, 'sacreBleuSignature');
  const counts = new Set(refs.map((r) => r.length));
  const nrefs = counts.size === 1 ? String([...counts][0]) : 'var';
  const smooth = o.smoothValue === null ? o.smooth : `${o.smooth}[${o.smoothValue.toFixed(2)}]`;
  return `nrefs:${nrefs}|case:${o.lowercase ? 'lc' : 'mixed'}|eff:${o.effectiveOrder ? 'yes' : 'no'}|tok:${o.tokenizeName}|smooth:${smooth}|version:2.6.0`;
}
