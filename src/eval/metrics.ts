/**
 * Classification metrics (docs/recipe.md §5.1), reproducing scikit-learn exactly.
 *
 * Conventions (scikit-learn's `sklearn/metrics/_ranking.py`):
 * - `_binary_clf_curve`: samples sorted by decreasing score; one curve point per **distinct** score (the last index of
 *   each run of equal scores), tps = cumulative positives, fps = (index + 1) − tps, thresholds = those scores. Tied
 *   samples therefore always enter together.
 * - `roc_curve`: with `drop_intermediate` (default true) interior points where both the fps and the tps second
 *   differences are zero (collinear points) are dropped; then a first point (0, 0) is prepended with threshold +∞
 *   (scikit-learn ≥ 1.3; versions ≤ 1.2 used max(score) + 1); fpr = fps / fps[-1], tpr = tps / tps[-1].
 * - `roc_auc_score` (binary) = `auc(fpr, tpr)` = numpy's trapezoid over that curve, so a tied positive/negative pair
 *   counts 1/2 (equal to the Mann–Whitney U / (P·N) with mid-ranks).
 * - `precision_recall_curve` (scikit-learn ≥ 1.3): precision = tps / (tps + fps), recall = tps / tps[-1], over **all**
 *   distinct thresholds, reversed so that recall decreases and thresholds increase, then a final point
 *   (precision 1, recall 0) with no threshold. Optional `drop_intermediate` (default false, added in 1.3) drops
 *   interior points whose tps equals both neighbours'. (scikit-learn ≤ 1.0 stopped at the first threshold reaching
 *   full recall; the extra points have zero recall steps, so average precision is the same.)
 * - `average_precision_score` = −Σ diff(recall) · precision[:-1] = Σₙ (Rₙ − Rₙ₋₁) Pₙ over distinct thresholds in
 *   decreasing order with R₀ = 0 — step-wise, **no interpolation**. Computed term by term on the same arrays with
 *   numpy's pairwise summation, so scikit-learn's values are reproduced to the last bit or nearly so.
 * - `average='macro'` = unweighted mean of the per-class scores; `average='micro'` = the binary score of all label
 *   cells flattened (`y_true.ravel()`, `y_score.ravel()`).
 *
 * Differences from scikit-learn (deliberate): masked labels (NaN, null, or mask 0) are excluded first; a class with a
 * single label value (or none) is not an error but `{ value: null, reason }`, and macro averages skip such classes
 * and list them in a note.
 */
import { mean, pairwiseSum } from './stats.js';

/** Scores of one class (any real numbers; probabilities for the Brier score and calibration). */
export type ScoreArray = Float64Array | Float32Array | readonly number[];
/** Labels: 1 positive, 0 negative, NaN or null masked (excluded). Any other value is an error. */
export type LabelArray = readonly (number | null)[] | Float64Array | Float32Array | Uint8Array | Int8Array | Int32Array;
/** Mask: truthy (1 / true) = labelled and used, falsy = excluded. */
export type MaskArray = readonly (number | boolean)[] | Uint8Array | Int8Array | Float32Array | Float64Array;

/** Why a metric has no value. */
export type UndefinedReason = 'only positives' | 'only negatives' | 'no labelled samples';

/** A metric value, or null with the reason (never NaN). */
export type MetricResult<T = number> = { value: T; reason?: undefined } | { value: null; reason: UndefinedReason };

/** Binary curve counts at each distinct threshold (scikit-learn's `_binary_clf_curve`). */
export interface BinaryClfCurve {
  fps: Float64Array;
  tps: Float64Array;
  /** Distinct scores in decreasing order. */
  thresholds: Float64Array;
}

export interface RocCurve {
  fpr: Float64Array;
  tpr: Float64Array;
  /** Decreasing; thresholds[0] = +Infinity (no sample predicted positive). */
  thresholds: Float64Array;
}

export interface PrCurve {
  /** Precision, last element 1. */
  precision: Float64Array;
  /** Decreasing recall, last element 0. */
  recall: Float64Array;
  /** Increasing thresholds; one fewer than precision/recall. */
  thresholds: Float64Array;
}

/** The labelled part of one class: finite scores and 0/1 labels. */
export interface Labelled {
  scores: Float64Array;
  labels: Uint8Array;
  nPos: number;
  nNeg: number;
}

/** Converts one label value: 1 → 1, 0 → 0, NaN/null → −1 (masked); anything else throws. */
function labelValue(v: number | null | undefined, i: number): number {
  if (v === null || (typeof v === 'number' && Number.isNaN(v))) return -1;
  if (v === 1) return 1;
  if (v === 0) return 0;
  throw new RangeError(`label[${i}] must be 0, 1, NaN or null (masked), got ${String(v)}`);
}

/**
 * Keeps the labelled entries of one class (label 0/1 and, when a mask is given, mask truthy). Scores of kept entries
 * must be finite (scikit-learn rejects NaN and infinite scores); scores of masked entries are ignored.
 */
export function selectLabelled(scores: ScoreArray, labels: LabelArray, mask?: MaskArray): Labelled {
  if (scores.length !== labels.length) throw new RangeError(`scores (${scores.length}) and labels (${labels.length}) differ in length`);
  if (mask !== undefined && mask.length !== labels.length) throw new RangeError(`mask (${mask.length}) and labels (${labels.length}) differ in length`);
  const n = labels.length;
  const s: number[] = [];
  const y: number[] = [];
  let nPos = 0;
  for (let i = 0; i < n; i++) {
    if (mask !== undefined && !mask[i]) continue;
    const l = labelValue(labels[i], i);
    if (l < 0) continue;
    const v = scores[i] as number;
    if (!Number.isFinite(v)) throw new RangeError(`score[${i}] must be finite, got ${v}`);
    s.push(v);
    y.push(l);
    nPos += l;
  }
  return { scores: Float64Array.from(s), labels: Uint8Array.from(y), nPos, nNeg: s.length - nPos };
}

/** The reason a ranking metric is undefined for these counts, or undefined when it is defined. */
export function undefinedReason(nPos: number, nNeg: number): UndefinedReason | undefined {
  if (nPos === 0 && nNeg === 0) return 'no labelled samples';
  if (nNeg === 0) return 'only positives';
  if (nPos === 0) return 'only negatives';
  return undefined;
}

/** Sample order by decreasing score (ties keep their relative order; it does not matter). */
export function orderByScoreDesc(scores: Float64Array): Uint32Array {
  const idx = new Uint32Array(scores.length);
  for (let i = 0; i < idx.length; i++) idx[i] = i;
  idx.sort((a, b) => (scores[b] as number) - (scores[a] as number));
  return idx;
}

/**
 * scikit-learn's `_binary_clf_curve` over samples visited in `order` (decreasing score), with optional non-negative
 * sample weights indexed like `scores` (integer weights = duplicated samples, as in a bootstrap resample). A run of
 * equal scores whose total weight is zero produces no point: with duplicated samples that score would not occur.
 */
export function binaryClfCurveOrdered(
  scores: ArrayLike<number>,
  labels: ArrayLike<number>,
  order: ArrayLike<number>,
  weights?: ArrayLike<number>,
): BinaryClfCurve {
  const m = order.length;
  const s = new Float64Array(m);
  const y = new Uint8Array(m);
  const w = weights === undefined ? undefined : new Float64Array(m);
  for (let j = 0; j < m; j++) {
    const i = order[j] as number;
    s[j] = scores[i] as number;
    y[j] = labels[i] as number;
    if (w !== undefined) w[j] = weights![i] as number;
  }
  return binaryClfCurveSorted(s, y, w);
}

/**
 * `_binary_clf_curve` of samples already sorted by decreasing score, with optional weights in the same order (see
 * binaryClfCurveOrdered). Sequential access: the fast path of the bootstrap. `distinct`, when given, must be the
 * number of distinct scores (it sizes the output buffers).
 */
export function binaryClfCurveSorted(scores: ArrayLike<number>, labels: ArrayLike<number>, weights?: ArrayLike<number>, distinct?: number): BinaryClfCurve {
  const m = scores.length;
  // `distinct` (the number of distinct scores, when known) bounds the number of points
  const cap = distinct ?? m;
  const fps = new Float64Array(cap);
  const tps = new Float64Array(cap);
  const thr = new Float64Array(cap);
  let k = 0;
  let tp = 0;
  let fp = 0;
  let groupWeight = 0;
  for (let j = 0; j < m; j++) {
    const w = weights === undefined ? 1 : (weights[j] as number);
    if (w !== 0) {
      if (labels[j] === 1) tp += w;
      else fp += w;
      groupWeight += w;
    }
    const sj = scores[j] as number;
    if (j === m - 1 || (scores[j + 1] as number) !== sj) {
      if (groupWeight > 0) {
        fps[k] = fp;
        tps[k] = tp;
        thr[k] = sj;
        k++;
      }
      groupWeight = 0;
    }
  }
  return { fps: fps.subarray(0, k), tps: tps.subarray(0, k), thresholds: thr.subarray(0, k) };
}

/** scikit-learn's `_binary_clf_curve` of labelled data. */
export function binaryClfCurve(d: Labelled): BinaryClfCurve {
  return binaryClfCurveOrdered(d.scores, d.labels, orderByScoreDesc(d.scores));
}

/** roc_curve from `_binary_clf_curve` output; needs at least one positive and one negative. */
export function rocFromCurve(c: BinaryClfCurve, dropIntermediate = true): RocCurve {
  const { fps, tps, thresholds } = c;
  const m = fps.length;
  const fpr = new Float64Array(m + 1);
  const tpr = new Float64Array(m + 1);
  const th = new Float64Array(m + 1);
  th[0] = Number.POSITIVE_INFINITY;
  const fN = fps[m - 1]!;
  const tN = tps[m - 1]!;
  const drop = dropIntermediate && m > 2;
  let n = 1;
  for (let i = 0; i < m; i++) {
    if (drop && i > 0 && i < m - 1) {
      // np.diff(x, 2) at i − 1: (x[i+1] − x[i]) − (x[i] − x[i−1]); drop when both are zero (collinear point)
      const d2f = fps[i + 1]! - fps[i]! - (fps[i]! - fps[i - 1]!);
      const d2t = tps[i + 1]! - tps[i]! - (tps[i]! - tps[i - 1]!);
      if (d2f === 0 && d2t === 0) continue;
    }
    fpr[n] = fps[i]! / fN;
    tpr[n] = tps[i]! / tN;
    th[n] = thresholds[i]!;
    n++;
  }
  return { fpr: fpr.subarray(0, n), tpr: tpr.subarray(0, n), thresholds: th.subarray(0, n) };
}

/** numpy's `trapezoid(y, x)`: Σ (x[i+1] − x[i])·(y[i+1] + y[i]) / 2 with pairwise summation. */
export function trapezoid(y: ArrayLike<number>, x: ArrayLike<number>): number {
  const n = x.length;
  if (n < 2) return 0;
  const t = new Float64Array(n - 1);
  for (let i = 0; i < n - 1; i++) t[i] = ((x[i + 1] as number) - (x[i] as number)) * ((y[i + 1] as number) + (y[i] as number)) / 2;
  return pairwiseSum(t);
}

/** AUROC from `_binary_clf_curve` output (roc_curve with drop_intermediate, then the trapezoid). */
export function rocAucFromCurve(c: BinaryClfCurve): number {
  const r = rocFromCurve(c, true);
  return trapezoid(r.tpr, r.fpr);
}

/**
 * Average precision from `_binary_clf_curve` output: −Σ diff(recall)·precision[:-1] on precision_recall_curve's
 * reversed arrays (every distinct threshold, lowest first, then the appended (P=1, R=0)), numpy summation.
 */
export function averagePrecisionFromCurve(c: BinaryClfCurve): number {
  const { fps, tps } = c;
  const m = tps.length;
  const total = tps[m - 1]!;
  // reversed arrays: index k <-> curve index m-1-k; recall at k+1 = m is the appended 0
  const terms = new Float64Array(m);
  for (let k = 0; k < m; k++) {
    const i = m - 1 - k;
    const ps = tps[i]! + fps[i]!;
    const precision = ps !== 0 ? tps[i]! / ps : 0;
    const recallHere = tps[i]! / total;
    const recallNext = k + 1 < m ? tps[i - 1]! / total : 0;
    terms[k] = (recallNext - recallHere) * precision;
  }
  return -pairwiseSum(terms);
}

function undef<T>(reason: UndefinedReason): MetricResult<T> {
  return { value: null, reason };
}

/** Area under the ROC curve, identical to `sklearn.metrics.roc_auc_score` (binary) on the labelled entries. */
export function rocAuc(scores: ScoreArray, labels: LabelArray, mask?: MaskArray): MetricResult {
  const d = selectLabelled(scores, labels, mask);
  const why = undefinedReason(d.nPos, d.nNeg);
  if (why !== undefined) return undef(why);
  return { value: rocAucFromCurve(binaryClfCurve(d)) };
}

/** Average precision, identical to `sklearn.metrics.average_precision_score` (binary; step-wise, no interpolation). */
export function averagePrecision(scores: ScoreArray, labels: LabelArray, mask?: MaskArray): MetricResult {
  const d = selectLabelled(scores, labels, mask);
  const why = undefinedReason(d.nPos, d.nNeg);
  if (why !== undefined) return undef(why);
  return { value: averagePrecisionFromCurve(binaryClfCurve(d)) };
}

/** `sklearn.metrics.roc_curve` (see the module comment for the threshold conventions). */
export function rocCurve(scores: ScoreArray, labels: LabelArray, opts: { dropIntermediate?: boolean; mask?: MaskArray } = {}): MetricResult<RocCurve> {
  const d = selectLabelled(scores, labels, opts.mask);
  const why = undefinedReason(d.nPos, d.nNeg);
  if (why !== undefined) return undef(why);
  return { value: rocFromCurve(binaryClfCurve(d), opts.dropIntermediate ?? true) };
}

/** `sklearn.metrics.precision_recall_curve` of scikit-learn ≥ 1.3 (all thresholds; optional drop_intermediate). */
export function precisionRecallCurve(
  scores: ScoreArray,
  labels: LabelArray,
  opts: { dropIntermediate?: boolean; mask?: MaskArray } = {},
): MetricResult<PrCurve> {
  const d = selectLabelled(scores, labels, opts.mask);
  const why = undefinedReason(d.nPos, d.nNeg);
  if (why !== undefined) return undef(why);
  let { fps, tps, thresholds } = binaryClfCurve(d);
  const m0 = tps.length;
  if ((opts.dropIntermediate ?? false) && m0 > 2) {
    const keep: number[] = [0];
    for (let i = 1; i < m0 - 1; i++) if (tps[i]! !== tps[i - 1]! || tps[i + 1]! !== tps[i]!) keep.push(i);
    keep.push(m0 - 1);
    fps = Float64Array.from(keep, (i) => fps[i]!);
    tps = Float64Array.from(keep, (i) => tps[i]!);
    thresholds = Float64Array.from(keep, (i) => thresholds[i]!);
  }
  const m = tps.length;
  const total = tps[m - 1]!;
  const precision = new Float64Array(m + 1);
  const recall = new Float64Array(m + 1);
  const th = new Float64Array(m);
  for (let k = 0; k < m; k++) {
    const i = m - 1 - k;
    const ps = tps[i]! + fps[i]!;
    precision[k] = ps !== 0 ? tps[i]! / ps : 0;
    recall[k] = tps[i]! / total;
    th[k] = thresholds[i]!;
  }
  precision[m] = 1;
  recall[m] = 0;
  return { value: { precision, recall, thresholds: th } };
}

export interface SensSpec {
  /** TP / (TP + FN); null without positives. */
  sensitivity: MetricResult;
  /** TN / (TN + FP); null without negatives. */
  specificity: MetricResult;
  tp: number;
  fp: number;
  tn: number;
  fn: number;
}

/**
 * Sensitivity and specificity of the rule "positive when score ≥ threshold" (the convention of scikit-learn's curves:
 * point i of roc_curve is the rate of samples with score ≥ thresholds[i]).
 */
export function sensitivitySpecificity(scores: ScoreArray, labels: LabelArray, threshold: number, mask?: MaskArray): SensSpec {
  if (Number.isNaN(threshold)) throw new RangeError('threshold must not be NaN');
  const d = selectLabelled(scores, labels, mask);
  let tp = 0;
  let fp = 0;
  for (let i = 0; i < d.scores.length; i++) {
    if (d.scores[i]! >= threshold) {
      if (d.labels[i] === 1) tp++;
      else fp++;
    }
  }
  const fn = d.nPos - tp;
  const tn = d.nNeg - fp;
  const empty = d.nPos + d.nNeg === 0;
  const sensitivity: MetricResult = d.nPos > 0 ? { value: tp / d.nPos } : undef(empty ? 'no labelled samples' : 'only negatives');
  const specificity: MetricResult = d.nNeg > 0 ? { value: tn / d.nNeg } : undef(empty ? 'no labelled samples' : 'only positives');
  return { sensitivity, specificity, tp, fp, tn, fn };
}

function checkProbabilities(s: Float64Array, what: string): void {
  for (let i = 0; i < s.length; i++) {
    const v = s[i]!;
    if (!(v >= 0 && v <= 1)) throw new RangeError(`${what}: probabilities must be in [0, 1], got ${v}`);
  }
}

/**
 * Brier score = mean (p − y)² over the labelled entries (`sklearn.metrics.brier_score_loss`, numpy summation).
 * Defined with a single label value too; null only without labelled samples. Scores must be probabilities in [0, 1].
 */
export function brierScore(scores: ScoreArray, labels: LabelArray, mask?: MaskArray): MetricResult {
  const d = selectLabelled(scores, labels, mask);
  if (d.scores.length === 0) return undef('no labelled samples');
  checkProbabilities(d.scores, 'brierScore');
  const sq = new Float64Array(d.scores.length);
  for (let i = 0; i < sq.length; i++) sq[i] = (d.labels[i]! - d.scores[i]!) ** 2;
  return { value: mean(sq) };
}

export interface CalibrationCurve {
  /** Bin edges, numpy's linspace(0, 1, nBins + 1). */
  edges: Float64Array;
  /** Samples per bin (all bins, empty ones included). */
  counts: Uint32Array;
  /** Fraction of positives per non-empty bin (`prob_true`). */
  probTrue: Float64Array;
  /** Mean predicted probability per non-empty bin (`prob_pred`). */
  probPred: Float64Array;
  /** Index of each non-empty bin. */
  bins: Uint32Array;
}

/**
 * Reliability curve, `sklearn.calibration.calibration_curve(strategy='uniform')`: bin = searchsorted(edges[1:-1], p,
 * side='left'), so bin b covers (edges[b], edges[b+1]] and the first bin also holds 0; empty bins are omitted from
 * probTrue/probPred. Works with a single label value (it is a calibration statistic, not a ranking one).
 */
export function calibrationCurve(scores: ScoreArray, labels: LabelArray, nBins = 10, mask?: MaskArray): CalibrationCurve {
  if (!Number.isInteger(nBins) || nBins < 1) throw new RangeError(`nBins must be a positive integer, got ${nBins}`);
  const d = selectLabelled(scores, labels, mask);
  checkProbabilities(d.scores, 'calibrationCurve');
  const edges = new Float64Array(nBins + 1);
  const step = 1 / nBins;
  for (let i = 0; i <= nBins; i++) edges[i] = i * step;
  edges[nBins] = 1;
  const counts = new Uint32Array(nBins);
  const sumP = new Float64Array(nBins);
  const sumY = new Float64Array(nBins);
  for (let i = 0; i < d.scores.length; i++) {
    const p = d.scores[i]!;
    // searchsorted(edges[1:-1], p, 'left') = number of inner edges strictly below p
    let lo = 0;
    let hi = nBins - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (edges[mid + 1]! < p) lo = mid + 1;
      else hi = mid;
    }
    counts[lo]!++;
    sumP[lo] = sumP[lo]! + p;
    sumY[lo] = sumY[lo]! + d.labels[i]!;
  }
  const bins: number[] = [];
  for (let b = 0; b < nBins; b++) if (counts[b]! > 0) bins.push(b);
  return {
    edges,
    counts,
    probTrue: Float64Array.from(bins, (b) => sumY[b]! / counts[b]!),
    probPred: Float64Array.from(bins, (b) => sumP[b]! / counts[b]!),
    bins: Uint32Array.from(bins),
  };
}

// ---------------------------------------------------------------------------------------------------------------------
// Multi-label (N×C, row-major)

/** N samples × C classes, row-major (`scores[i·C + c]`). */
export interface MultiLabelData {
  /** Number of classes C. */
  numClasses: number;
  scores: ScoreArray;
  /** 0/1 labels; NaN or null = masked. */
  labels: LabelArray;
  /** Optional N×C mask: truthy = labelled (used), falsy = excluded (as `datasets/policy.ts` produces). */
  mask?: MaskArray;
}

/** Number of rows of a multi-label matrix, after checking the shapes. */
export function numRows(d: MultiLabelData): number {
  const C = d.numClasses;
  if (!Number.isInteger(C) || C < 1) throw new RangeError(`numClasses must be a positive integer, got ${C}`);
  if (d.scores.length % C !== 0) throw new RangeError(`scores length ${d.scores.length} is not a multiple of ${C} classes`);
  if (d.labels.length !== d.scores.length) throw new RangeError(`labels (${d.labels.length}) and scores (${d.scores.length}) differ in length`);
  if (d.mask !== undefined && d.mask.length !== d.scores.length) throw new RangeError(`mask (${d.mask.length}) and scores (${d.scores.length}) differ in length`);
  return d.scores.length / C;
}

/** Column c of a multi-label matrix: scores and labels, with masked entries as NaN labels. */
export function classColumn(d: MultiLabelData, c: number): { scores: Float64Array; labels: Float64Array } {
  const N = numRows(d);
  const C = d.numClasses;
  const scores = new Float64Array(N);
  const labels = new Float64Array(N);
  for (let i = 0; i < N; i++) {
    const k = i * C + c;
    scores[i] = d.scores[k] as number;
    const l = d.labels[k];
    labels[i] = d.mask !== undefined && !d.mask[k] ? Number.NaN : l === null || l === undefined ? Number.NaN : l;
  }
  return { scores, labels };
}

/** All labelled cells, flattened in row-major order (scikit-learn's `average='micro'`). */
export function flattenLabelled(d: MultiLabelData): Labelled & { cells: Uint32Array } {
  numRows(d);
  const s: number[] = [];
  const y: number[] = [];
  const cells: number[] = [];
  let nPos = 0;
  for (let k = 0; k < d.scores.length; k++) {
    if (d.mask !== undefined && !d.mask[k]) continue;
    const l = labelValue(d.labels[k], k);
    if (l < 0) continue;
    const v = d.scores[k] as number;
    if (!Number.isFinite(v)) throw new RangeError(`score[${k}] must be finite, got ${v}`);
    s.push(v);
    y.push(l);
    cells.push(k);
    nPos += l;
  }
  return { scores: Float64Array.from(s), labels: Uint8Array.from(y), nPos, nNeg: s.length - nPos, cells: Uint32Array.from(cells) };
}

/** A class left out of a macro average. */
export interface ExcludedClass {
  index: number;
  name: string;
  reason: UndefinedReason;
}

/** Macro average: unweighted mean over the classes where the metric is defined. */
export interface MacroResult {
  /** null when no class is defined. */
  value: number | null;
  /** Indices of the classes averaged. */
  included: number[];
  excluded: ExcludedClass[];
  /** Human-readable note, e.g. "macro over 3 of 4 classes; excluded: Edema (only negatives)". Empty when none excluded. */
  note: string;
}

export interface MultiLabelResult {
  perClass: MetricResult[];
  macro: MacroResult;
  micro: MetricResult;
}

/** Macro average of per-class results (numpy mean of the defined values). */
export function macroAverage(perClass: readonly MetricResult[], names?: readonly string[]): MacroResult {
  const included: number[] = [];
  const values: number[] = [];
  const excluded: ExcludedClass[] = [];
  perClass.forEach((r, c) => {
    const name = names?.[c] ?? `class ${c}`;
    if (r.value === null) excluded.push({ index: c, name, reason: r.reason });
    else {
      included.push(c);
      values.push(r.value);
    }
  });
  const note =
    excluded.length === 0
      ? ''
      : `macro over ${included.length} of ${perClass.length} classes; excluded: ${excluded.map((e) => `${e.name} (${e.reason})`).join(', ')}`;
  return { value: values.length > 0 ? mean(values) : null, included, excluded, note };
}

function multiLabel(d: MultiLabelData, fromCurve: (c: BinaryClfCurve) => number, names?: readonly string[]): MultiLabelResult {
  const perClass: MetricResult[] = [];
  for (let c = 0; c < d.numClasses; c++) {
    const col = classColumn(d, c);
    const l = selectLabelled(col.scores, col.labels);
    const why = undefinedReason(l.nPos, l.nNeg);
    perClass.push(why !== undefined ? undef(why) : { value: fromCurve(binaryClfCurve(l)) });
  }
  const flat = flattenLabelled(d);
  const why = undefinedReason(flat.nPos, flat.nNeg);
  const micro: MetricResult = why !== undefined ? undef(why) : { value: fromCurve(binaryClfCurve(flat)) };
  return { perClass, macro: macroAverage(perClass, names), micro };
}

/** Per-class, macro and micro AUROC of an N×C matrix (`roc_auc_score` with average=None / 'macro' / 'micro'). */
export function multiLabelRocAuc(d: MultiLabelData, names?: readonly string[]): MultiLabelResult {
  return multiLabel(d, rocAucFromCurve, names);
}

/** Per-class, macro and micro average precision of an N×C matrix (`average_precision_score`). */
export function multiLabelAveragePrecision(d: MultiLabelData, names?: readonly string[]): MultiLabelResult {
  return multiLabel(d, averagePrecisionFromCurve, names);
}
