/**
 * ROUGE-L as two reference packages compute it.
 *
 * **rouge-score 0.1.2** (google-research/google-research `rouge/rouge_scorer.py`, `rouge/tokenize.py`,
 * `rouge/scoring.py`; `RougeScorer(['rougeL'], use_stemmer).score(target, prediction)`):
 * - tokens: lower-case, every run of `[^a-z0-9]` → one space (so non-ASCII letters are dropped: `naïve` → `na ve`),
 *   split on whitespace; with the stemmer, tokens longer than 3 characters go through nltk's Porter stemmer
 *   (`porter.ts`); keep tokens matching `^[a-z0-9]+$`;
 * - L = LCS length; P = L/|hyp|, R = L/|ref|, F = 2PR/(P+R) (0 when P + R = 0); an empty side gives 0/0/0, so
 *   empty vs empty is 0;
 * - several references (`score_multi`): the score of the reference with the highest F, the first on ties
 *   (`np.argmax`);
 * - corpus: the mean of the per-pair F with numpy's summation (rouge-score's own `BootstrapAggregator` draws from
 *   an unseeded RNG and is not reproduced).
 *
 * **pycocoevalcap 1.2** (salaniz/pycocoevalcap `rouge/rouge.py`, `Rouge().compute_score`):
 * - tokens: `str.split(" ")` (single spaces: a double space gives an empty token, an empty string one empty token;
 *   so empty vs empty scores 1, not 0);
 * - per reference P = L/|hyp|, R = L/|ref|; P_max and R_max taken **separately** over the references;
 *   F_β = (1 + β²)·P_max·R_max / (R_max + β²·P_max) with β = 1.2, 0 when either maximum is 0;
 * - corpus: `np.mean` of the per-pair scores.
 */
import { mean } from '../stats.js';
import { porterStem } from './porter.js';
import { checkCorpus } from './corpus.js';

export interface PrfScore {
  precision: number;
  recall: number;
  fmeasure: number;
}

// ---------------------------------------------------------------------------------------------------------------
// LCS length

/** Interns tokens as small integers so the LCS inner loop compares numbers. */
function intern(tokens: readonly string[], ids: Map<string, number>): Int32Array {
  const out = new Int32Array(tokens.length);
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i] as string;
    let id = ids.get(t);
    if (id === undefined) {
      id = ids.size;
      ids.set(t, id);
    }
    out[i] = id;
  }
  return out;
}

/** Length of the longest common subsequence (dynamic programming over one rolling row). */
export function lcsLength(a: readonly string[], b: readonly string[]): number {
  if (a.length === 0 || b.length === 0) return 0;
  const ids = new Map<string, number>();
  const x = intern(a, ids);
  const y = intern(b, ids);
  const m = y.length;
  let prev = new Int32Array(m + 1);
  let cur = new Int32Array(m + 1);
  for (let i = 0; i < x.length; i++) {
    const xi = x[i];
    for (let j = 1; j <= m; j++) {
      if (xi === y[j - 1]) cur[j] = prev[j - 1]! + 1;
      else {
        const up = prev[j]!;
        const left = cur[j - 1]!;
        cur[j] = up > left ? up : left;
      }
    }
    const t = prev;
    prev = cur;
    cur = t;
  }
  return prev[m]!;
}

// ---------------------------------------------------------------------------------------------------------------
// rouge-score

/** Stems of recent words: the stemmer is pure, and reports repeat their vocabulary (bounded, cleared when full). */
const stemCache = new Map<string, string>();
const STEM_CACHE_MAX = 100_000;

function cachedStem(x: string): string {
  let s = stemCache.get(x);
  if (s === undefined) {
    s = porterStem(x);
    if (stemCache.size >= STEM_CACHE_MAX) stemCache.clear();
    stemCache.set(x, s);
  }
  return s;
}

const VALID_TOKEN = /^[a-z0-9]+$/;

/**
 * rouge-score `tokenize.tokenize(text, stemmer)`: lower-case, `[^a-z0-9]+` → ' ', split on whitespace, stem tokens
 * longer than 3 characters, keep tokens matching `^[a-z0-9]+$`. The first three steps leave exactly the maximal runs
 * of `[a-z0-9]` of the lower-cased text, which is how they are computed here.
 */
export function rougeScoreTokens(text: string, opts: { stemmer?: boolean } = {}): string[] {
  const t = text.toLowerCase();
  const out: string[] = [];
  const n = t.length;
  let i = 0;
  while (i < n) {
    let c = t.charCodeAt(i);
    if (!((c >= 97 && c <= 122) || (c >= 48 && c <= 57))) {
      i++;
      continue;
    }
    const start = i;
    do {
      i++;
      c = i < n ? t.charCodeAt(i) : 0;
    } while ((c >= 97 && c <= 122) || (c >= 48 && c <= 57));
    const x = t.slice(start, i);
    if (opts.stemmer && x.length > 3) {
      const st = cachedStem(x);
      if (VALID_TOKEN.test(st)) out.push(st);
    } else out.push(x);
  }
  return out;
}

/** rouge-score `_score_lcs(target_tokens, prediction_tokens)`. */
function scoreLcs(target: readonly string[], prediction: readonly string[]): PrfScore {
  if (target.length === 0 || prediction.length === 0) return { precision: 0, recall: 0, fmeasure: 0 };
  const l = lcsLength(target, prediction);
  const precision = l / prediction.length;
  const recall = l / target.length;
  const fmeasure = precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0.0;
  return { precision, recall, fmeasure };
}

/** rouge-score 0.1.2 `RougeScorer(['rougeL'], use_stemmer).score(ref, hyp)['rougeL']`. */
export function rougeScoreL(hyp: string, ref: string, opts: { stemmer?: boolean } = {}): PrfScore {
  return scoreLcs(rougeScoreTokens(ref, opts), rougeScoreTokens(hyp, opts));
}

/**
 * rouge-score `RougeScorer.score_multi(refs, hyp)['rougeL']`: the score against the reference with the highest F
 * (the first one on ties). Throws for an empty reference list (numpy's argmax of an empty sequence raises).
 */
export function rougeScoreLMulti(hyp: string, refs: readonly string[], opts: { stemmer?: boolean } = {}): PrfScore {
  if (refs.length === 0) throw new RangeError('rougeScoreLMulti: refs is empty (at least one reference expected)');
  const hypTokens = rougeScoreTokens(hyp, opts);
  let best: PrfScore | null = null;
  for (const r of refs) {
    const s = scoreLcs(rougeScoreTokens(r, opts), hypTokens);
    if (best === null || s.fmeasure > best.fmeasure) best = s;
  }
  return best as PrfScore;
}

/** Per-pair rouge-score ROUGE-L (multi-reference rule) and the mean F over the corpus (numpy summation). */
export function rougeScoreLCorpus(
  hyps: readonly string[],
  refs: readonly (readonly string[])[],
  opts: { stemmer?: boolean } = {},
): { meanF: number; segments: PrfScore[] } {
  checkCorpus(hyps, refs, 'rougeScoreLCorpus');
  const segments = hyps.map((h, i) => rougeScoreLMulti(h, refs[i] as readonly string[], opts));
  return { meanF: mean(segments.map((s) => s.fmeasure)), segments };
}

// ---------------------------------------------------------------------------------------------------------------
// pycocoevalcap

const BETA = 1.2;

/** pycocoevalcap `Rouge().calc_score([hyp], refs)`: ROUGE-L F_β (β = 1.2), P and R maximised over references. */
export function pycocoRougeL(hyp: string, refs: readonly string[]): number {
  if (refs.length === 0) throw new RangeError('pycocoRougeL: refs is empty (at least one reference expected)');
  const tokenC = hyp.split(' ');
  let precMax = -Infinity;
  let recMax = -Infinity;
  for (const reference of refs) {
    const tokenR = reference.split(' ');
    const lcs = lcsLength(tokenR, tokenC);
    const p = lcs / tokenC.length;
    const r = lcs / tokenR.length;
    if (p > precMax) precMax = p;
    if (r > recMax) recMax = r;
  }
  if (precMax !== 0 && recMax !== 0) {
    return ((1 + BETA ** 2) * precMax * recMax) / (recMax + BETA ** 2 * precMax);
  }
  return 0.0;
}

/** pycocoevalcap `Rouge().compute_score(gts, res)`: the mean (numpy summation) and the per-pair scores. */
export function pycocoRougeLCorpus(hyps: readonly string[], refs: readonly (readonly string[])[]): { corpus: number; segments: number[] } {
  checkCorpus(hyps, refs, 'pycocoRougeLCorpus');
  const segments = hyps.map((h, i) => pycocoRougeL(h, refs[i] as readonly string[]));
  return { corpus: mean(segments), segments };
}

