/**
 * Label F1 of generated reports (CheXbert F1-14 / F1-5 and the phantom CE-F1): the arithmetic of scikit-learn's
 * `classification_report` / `precision_recall_fscore_support` on a multilabel indicator matrix, as f1chexbert 0.0.2
 * (`f1chexbert.py`, also LLaVA-Rad `rrg_eval/chexbert.py` and RadEval) calls it: `y_true` = the labels of the reference
 * reports, `y_pred` = the labels of the generated reports, one row per report pair.
 *
 * Conventions:
 * - Binarisation: positive → 1; blank (not mentioned) and negative → 0; uncertain → 1 with `uncertain: 'positive'`
 *   (f1chexbert `mode="rrg"`, LLaVA-Rad "rrg+") or 0 with `'negative'` (LLaVA-Rad `map_to_binary("rrg")`).
 * - Per class: precision = TP/(TP+FP), recall = TP/(TP+FN), F1 = 2TP/(2TP+FP+FN) (scikit-learn ≥ 1.3 computes F from
 *   the counts, so F1 is defined whenever TP+FP+FN > 0), support = TP+FN.
 * - A ratio with a zero denominator is `zeroDivision` (default 0, scikit-learn's `zero_division="warn"` value; 1; or
 *   'nan', which averages leave out, as scikit-learn's `_nanaverage` does; all left out → NaN).
 * - micro: the same ratios on the counts pooled over classes (and reports). macro: unweighted mean of the per-class
 *   values, so a class with no support and no prediction counts 0 (f1chexbert's macro F1-14 = (1.0 + 0.667)/14 on its own
 *   test). weighted: mean weighted by support (all supports 0: the unweighted mean, as `_nanaverage` falls back).
 *   samples: the ratios per report (example-based F1, RGRG's "ex"), then their mean.
 * - accuracy: subset accuracy (scikit-learn `accuracy_score` on the indicator matrix): the fraction of reports whose
 *   binarised cells all match over the evaluated classes; f1chexbert reports it on the 5 classes. `exactMatch` is its
 *   per-report vector (f1chexbert's `pe_accuracy`).
 * Means use numpy's pairwise summation (src/eval/stats.ts), so the values match scikit-learn to the last bits.
 */
import { pairwiseSum } from '../stats.js';
import type { LabelCell } from '../labelers/types.js';

/** Precision, recall, F1 and support (the number of positive reference cells counted). */
export interface PRF {
  precision: number;
  recall: number;
  f1: number;
  support: number;
}

export interface ClassPRF extends PRF {
  name: string;
}

export interface LabelF1Options {
  /** Column names of every row of `refs` and `hyps`. */
  classes: readonly string[];
  /** The classes to evaluate, in output order (e.g. CHEXBERT_5); default all of `classes`. */
  subset?: readonly string[];
  /** Where uncertain (-1) cells go. */
  uncertain: 'positive' | 'negative';
  /** Value of a ratio whose denominator is 0. @default 0 */
  zeroDivision?: 0 | 1 | 'nan';
}

export interface LabelF1Result {
  /** The evaluated classes, in order. */
  classes: string[];
  /** Number of report pairs. */
  n: number;
  micro: PRF;
  macro: PRF;
  weighted: PRF;
  samples: PRF;
  perClass: ClassPRF[];
  /** Subset accuracy over the evaluated classes. */
  accuracy: number;
  /** Per report: 1 when every evaluated cell matches after binarisation, else 0. */
  exactMatch: number[];
}

function checkRows(rows: readonly (readonly LabelCell[])[], name: string, width: number): void {
  rows.forEach((r, i) => {
    if (!Array.isArray(r) || r.length !== width) {
      throw new RangeError(`labelF1: ${name}[${i}] must have ${width} cells (one per class), got ${Array.isArray(r) ? r.length : typeof r}`);
    }
    r.forEach((c, j) => {
      if (!(c === 1 || c === 0 || c === -1 || c === null)) {
        throw new RangeError(`labelF1: ${name}[${i}][${j}] must be 1, 0, -1 or null, got ${JSON.stringify(c)}`);
      }
    });
  });
}

/** 1 for positive, and for uncertain under `uncertain: 'positive'`; else 0. */
export function binarize(c: LabelCell, uncertain: 'positive' | 'negative'): 0 | 1 {
  return c === 1 || (c === -1 && uncertain === 'positive') ? 1 : 0;
}

/** numpy's average of the non-NaN values (weights optional, all-zero weights → unweighted); all NaN → NaN. */
function nanAverage(values: readonly number[], weights?: readonly number[]): number {
  const keep = values.map((v, i) => i).filter((i) => !Number.isNaN(values[i]));
  if (keep.length === 0) return Number.NaN;
  const a = keep.map((i) => values[i] as number);
  if (weights) {
    const w = keep.map((i) => weights[i] as number);
    const sw = pairwiseSum(w);
    if (sw !== 0) return pairwiseSum(a.map((v, k) => v * (w[k] as number))) / sw;
  }
  return pairwiseSum(a) / a.length;
}

/**
 * Label F1 of `hyps` against `refs` (rows = reports, columns = `opts.classes`).
 * @throws RangeError when the matrices differ in length, a row has the wrong width, a cell is not 1/0/-1/null, or a
 *   subset class is not among `classes`
 */
export function labelF1(refs: readonly (readonly LabelCell[])[], hyps: readonly (readonly LabelCell[])[], opts: LabelF1Options): LabelF1Result {
  const { classes, uncertain } = opts;
  if (uncertain !== 'positive' && uncertain !== 'negative') throw new RangeError(`labelF1: uncertain must be 'positive' or 'negative', got ${JSON.stringify(uncertain)}`);
  const zd = opts.zeroDivision ?? 0;
  if (!(zd === 0 || zd === 1 || zd === 'nan')) throw new RangeError(`labelF1: zeroDivision must be 0, 1 or 'nan', got ${JSON.stringify(zd)}`);
  const zero = zd === 'nan' ? Number.NaN : zd;
  if (refs.length !== hyps.length) throw new RangeError(`labelF1: ${refs.length} reference rows but ${hyps.length} hypothesis rows`);
  if (refs.length === 0) throw new RangeError('labelF1: no reports to evaluate');
  checkRows(refs, 'refs', classes.length);
  checkRows(hyps, 'hyps', classes.length);
  const subset = opts.subset ?? classes;
  const cols = subset.map((name) => {
    const j = classes.indexOf(name);
    if (j < 0) throw new RangeError(`labelF1: subset class '${name}' is not one of the classes (${classes.join(', ')})`);
    return j;
  });
  const div = (a: number, b: number) => (b === 0 ? zero : a / b);
  const n = refs.length;
  const K = cols.length;

  // Counts per class and per report.
  const tp = new Array<number>(K).fill(0);
  const predSum = new Array<number>(K).fill(0);
  const trueSum = new Array<number>(K).fill(0);
  const sampleP: number[] = [];
  const sampleR: number[] = [];
  const sampleF: number[] = [];
  const exactMatch: number[] = [];
  for (let i = 0; i < n; i++) {
    let t = 0;
    let p = 0;
    let y = 0;
    let same = 1;
    cols.forEach((j, k) => {
      const yt = binarize(refs[i]![j]!, uncertain);
      const yp = binarize(hyps[i]![j]!, uncertain);
      if (yt !== yp) same = 0;
      if (yt && yp) {
        tp[k]!++;
        t++;
      }
      if (yp) {
        predSum[k]!++;
        p++;
      }
      if (yt) {
        trueSum[k]!++;
        y++;
      }
    });
    sampleP.push(div(t, p));
    sampleR.push(div(t, y));
    sampleF.push(div(2 * t, y + p));
    exactMatch.push(same);
  }

  const perClass: ClassPRF[] = cols.map((_, k) => ({
    name: subset[k] as string,
    precision: div(tp[k]!, predSum[k]!),
    recall: div(tp[k]!, trueSum[k]!),
    f1: div(2 * tp[k]!, trueSum[k]! + predSum[k]!),
    support: trueSum[k]!,
  }));
  const support = trueSum.reduce((a, b) => a + b, 0);
  const TP = tp.reduce((a, b) => a + b, 0);
  const PRED = predSum.reduce((a, b) => a + b, 0);
  const avg = (w?: number[]): PRF => ({
    precision: nanAverage(perClass.map((c) => c.precision), w),
    recall: nanAverage(perClass.map((c) => c.recall), w),
    f1: nanAverage(perClass.map((c) => c.f1), w),
    support,
  });
  return {
    classes: [...subset],
    n,
    micro: { precision: div(TP, PRED), recall: div(TP, support), f1: div(2 * TP, support + PRED), support },
    macro: avg(),
    weighted: avg(trueSum),
    samples: { precision: nanAverage(sampleP), recall: nanAverage(sampleR), f1: nanAverage(sampleF), support },
    perClass,
    accuracy: pairwiseSum(exactMatch) / n,
    exactMatch,
  };
}
