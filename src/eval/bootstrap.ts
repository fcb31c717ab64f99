/**
 * Seeded bootstrap confidence intervals for the multi-label classification metrics (docs/recipe.md §5.1: the CXformer card
 * reports "median [95 % CI]" over bootstrap resamples; its resampling code is not published, so this is our
 * convention, documented here).
 *
 * Resampling
 * - Unit = sample (default) or patient (when `patientIds` is given). A resample draws as many units as there are, with
 *   replacement, uniformly: unit = ⌊rnd()·U⌋ with `rnd = mulberry32(seed)` (src/data/random.ts), consuming U draws per
 *   resample in order, resample after resample. Patient units are the distinct patient ids in order of first
 *   appearance; a drawn patient contributes **all** of its samples (a patient drawn twice contributes them twice), so
 *   a patient's images stay together and the number of samples per resample varies.
 * - A resample is represented by integer sample weights (how often each sample was drawn); the metrics with integer
 *   weights equal scikit-learn's metrics on the duplicated samples (ties are grouped per distinct score either way).
 *
 * Statistics per resample: per-class AUROC and AP, macro AUROC and AP, micro AUROC and AP.
 * - A class whose resample has a single label value (or none) is skipped **for that class** and counted (`nSkipped`).
 * - The macro average of a resample is the mean over the classes defined on the full data (the point estimate's
 *   classes); when one of them is undefined in the resample, the macro value of that resample is skipped and counted,
 *   so that every macro replicate averages the same classes.
 *
 * Summary: point estimate (full data), median and the percentile interval [(1−level)/2, (1+level)/2] (2.5 and 97.5 for
 * the default 95 %) of the valid replicates, with numpy's default percentile definition ("linear", Hyndman–Fan
 * type 7: h = (m − 1)·q, linear interpolation between the order statistics ⌊h⌋ and ⌊h⌋ + 1).
 */
import { mulberry32 } from '../data/random.js';
import {
  averagePrecisionFromCurve,
  binaryClfCurveSorted,
  classColumn,
  flattenLabelled,
  numRows,
  orderByScoreDesc,
  rocAucFromCurve,
  selectLabelled,
  undefinedReason,
  type MetricResult,
  type MultiLabelData,
} from './metrics.js';
import { mean, percentileSorted } from './stats.js';

export interface BootstrapOptions {
  /** Number of resamples. @default 1000 */
  n?: number;
  /** PRNG seed (mulberry32). @default 0 */
  seed?: number;
  /** Confidence level of the percentile interval. @default 0.95 */
  level?: number;
  /** One patient id per sample (row): resample patients instead of samples. */
  patientIds?: readonly string[];
  /** Keep every replicate value (NaN = skipped) in the result, for inspection and tests. @default false */
  keepReplicates?: boolean;
  /** After each resample: resamples done, of `n`. @default the hook set by {@link setBootstrapProgress}, if any */
  onProgress?: (done: number, total: number) => void;
}

let defaultProgress: ((done: number, total: number) => void) | undefined;

/**
 * The progress callback of every bootstrap that passes none (the CLI's progress line, set by `finetune` and
 * `evaluate`: the report code calls {@link bootstrapMultiLabel} without one). Returns the previous hook.
 */
export function setBootstrapProgress(fn: ((done: number, total: number) => void) | undefined) {
  const was = defaultProgress;
  defaultProgress = fn;
  return was;
}

/** The hook set by {@link setBootstrapProgress}, for other resampling loops (segmentation's Dice bootstrap). */
export function bootstrapProgressHook(): ((done: number, total: number) => void) | undefined {
  return defaultProgress;
}

/** Bootstrap summary of one statistic. */
export interface BootstrapInterval {
  /** Value on the full data (null with a reason when undefined there). */
  point: number | null;
  reason?: string;
  /** Median of the valid replicates (null when there are none). */
  median: number | null;
  /** Lower percentile bound ((1 − level)/2). */
  lo: number | null;
  /** Upper percentile bound ((1 + level)/2). */
  hi: number | null;
  /** Replicates where the statistic was defined. */
  nValid: number;
  /** Replicates skipped because the statistic was undefined in them. */
  nSkipped: number;
  /** All replicate values in resample order, NaN where skipped (only with `keepReplicates`). */
  replicates?: Float64Array;
}

export interface BootstrapMetric {
  perClass: BootstrapInterval[];
  macro: BootstrapInterval;
  micro: BootstrapInterval;
}

export interface BootstrapResult {
  n: number;
  seed: number;
  level: number;
  unit: 'sample' | 'patient';
  /** Number of resampling units (samples, or distinct patients). */
  nUnits: number;
  /** Percentile definition used. */
  percentile: string;
  auroc: BootstrapMetric;
  ap: BootstrapMetric;
}

/** Percentile definition used for the intervals (stored in reports). */
export const PERCENTILE_METHOD = 'numpy linear (Hyndman-Fan type 7): h = (m-1)*q, interpolate between order statistics floor(h) and floor(h)+1';

/** Resampling units: groups of sample indices (one per sample, or one per patient in order of first appearance). */
export function resamplingUnits(numSamples: number, patientIds?: readonly string[]): number[][] {
  if (patientIds === undefined) return Array.from({ length: numSamples }, (_, i) => [i]);
  if (patientIds.length !== numSamples) throw new RangeError(`patientIds (${patientIds.length}) must have one entry per sample (${numSamples})`);
  const groups = new Map<string, number[]>();
  patientIds.forEach((p, i) => {
    const g = groups.get(p);
    if (g === undefined) groups.set(p, [i]);
    else g.push(i);
  });
  return [...groups.values()];
}

/**
 * Draws one resample: adds to `counts` (zeroed first) how often each sample is drawn. Consumes `units.length` values
 * of `rnd`. Returns the drawn unit indices.
 */
export function drawResample(rnd: () => number, units: readonly (readonly number[])[], counts: Float64Array): Uint32Array {
  counts.fill(0);
  const U = units.length;
  const drawn = new Uint32Array(U);
  for (let k = 0; k < U; k++) {
    const u = Math.floor(rnd() * U);
    drawn[k] = u;
    for (const i of units[u]!) counts[i] = counts[i]! + 1;
  }
  return drawn;
}

/** One class (or the flattened micro data) prepared for weighted evaluation, sorted by decreasing score. */
interface Prepared {
  scores: Float64Array;
  labels: Uint8Array;
  /** Sample (row) index of each entry, to look up its weight. */
  rows: Uint32Array;
  /** Number of distinct scores. */
  distinct: number;
  point: { auroc: MetricResult; ap: MetricResult };
}

function prepare(scores: Float64Array, labels: Uint8Array, rows: Uint32Array, nPos: number, nNeg: number): Prepared {
  const order = orderByScoreDesc(scores);
  const s = Float64Array.from(order, (i) => scores[i]!);
  const y = Uint8Array.from(order, (i) => labels[i]!);
  const r = Uint32Array.from(order, (i) => rows[i]!);
  let distinct = 0;
  for (let j = 0; j < s.length; j++) if (j === 0 || s[j] !== s[j - 1]) distinct++;
  const why = undefinedReason(nPos, nNeg);
  let point: Prepared['point'];
  if (why !== undefined) point = { auroc: { value: null, reason: why }, ap: { value: null, reason: why } };
  else {
    const c = binaryClfCurveSorted(s, y);
    point = { auroc: { value: rocAucFromCurve(c) }, ap: { value: averagePrecisionFromCurve(c) } };
  }
  return { scores: s, labels: y, rows: r, distinct, point };
}

/** Weighted AUROC and AP of a prepared class; null when the resample has a single label value. */
function evalWeighted(p: Prepared, counts: Float64Array, w: Float64Array): { auroc: number; ap: number } | null {
  let pos = 0;
  let total = 0;
  const rows = p.rows;
  const labels = p.labels;
  const m = rows.length;
  for (let j = 0; j < m; j++) {
    const c = counts[rows[j]!]!;
    w[j] = c;
    total += c;
    pos += labels[j]! * c;
  }
  const neg = total - pos;
  if (pos === 0 || neg === 0) return null;
  const curve = binaryClfCurveSorted(p.scores, p.labels, w.subarray(0, m), p.distinct);
  return { auroc: rocAucFromCurve(curve), ap: averagePrecisionFromCurve(curve) };
}

function summarise(point: MetricResult | { value: number | null; reason?: string }, reps: Float64Array, level: number, keep: boolean): BootstrapInterval {
  const valid = Float64Array.from(reps.filter((v) => !Number.isNaN(v)));
  valid.sort();
  const m = valid.length;
  const out: BootstrapInterval = {
    point: point.value,
    median: m > 0 ? percentileSorted(valid, 50) : null,
    lo: m > 0 ? percentileSorted(valid, (100 * (1 - level)) / 2) : null,
    hi: m > 0 ? percentileSorted(valid, (100 * (1 + level)) / 2) : null,
    nValid: m,
    nSkipped: reps.length - m,
  };
  if (point.reason !== undefined) out.reason = point.reason;
  if (keep) out.replicates = reps;
  return out;
}

/**
 * Bootstrap of per-class, macro and micro AUROC and AP of an N×C multi-label matrix (see the module comment for the
 * exact conventions).
 */
export function bootstrapMultiLabel(d: MultiLabelData, opts: BootstrapOptions = {}): BootstrapResult {
  const n = opts.n ?? 1000;
  const seed = opts.seed ?? 0;
  const level = opts.level ?? 0.95;
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`bootstrap n must be a positive integer, got ${n}`);
  if (!(level > 0 && level < 1)) throw new RangeError(`bootstrap level must be in (0, 1), got ${level}`);
  const N = numRows(d);
  const C = d.numClasses;
  const units = resamplingUnits(N, opts.patientIds);
  if (units.length === 0) throw new RangeError('bootstrap: no samples');

  // per class: the labelled rows
  const classes: Prepared[] = [];
  for (let c = 0; c < C; c++) {
    const col = classColumn(d, c);
    const rows: number[] = [];
    for (let i = 0; i < N; i++) if (!Number.isNaN(col.labels[i]!)) rows.push(i);
    const sel = selectLabelled(col.scores, col.labels);
    classes.push(prepare(sel.scores, sel.labels, Uint32Array.from(rows), sel.nPos, sel.nNeg));
  }
  const flat = flattenLabelled(d);
  const micro = prepare(flat.scores, flat.labels, Uint32Array.from(flat.cells, (k) => Math.floor(k / C)), flat.nPos, flat.nNeg);
  const macroClasses = classes.map((p, c) => (p.point.auroc.value !== null ? c : -1)).filter((c) => c >= 0);

  const aurocReps = classes.map(() => new Float64Array(n).fill(Number.NaN));
  const apReps = classes.map(() => new Float64Array(n).fill(Number.NaN));
  const macroAuroc = new Float64Array(n).fill(Number.NaN);
  const macroAp = new Float64Array(n).fill(Number.NaN);
  const microAuroc = new Float64Array(n).fill(Number.NaN);
  const microAp = new Float64Array(n).fill(Number.NaN);

  const rnd = mulberry32(seed);
  const counts = new Float64Array(N);
  const w = new Float64Array(Math.max(N, flat.cells.length));
  const va = new Float64Array(C);
  const vp = new Float64Array(C);
  const onProgress = opts.onProgress ?? defaultProgress;
  onProgress?.(0, n);
  for (let r = 0; r < n; r++) {
    drawResample(rnd, units, counts);
    for (let c = 0; c < C; c++) {
      const res = evalWeighted(classes[c]!, counts, w);
      va[c] = res === null ? Number.NaN : res.auroc;
      vp[c] = res === null ? Number.NaN : res.ap;
      aurocReps[c]![r] = va[c]!;
      apReps[c]![r] = vp[c]!;
    }
    if (macroClasses.length > 0 && macroClasses.every((c) => !Number.isNaN(va[c]!))) {
      macroAuroc[r] = mean(macroClasses.map((c) => va[c]!));
      macroAp[r] = mean(macroClasses.map((c) => vp[c]!));
    }
    const m = evalWeighted(micro, counts, w);
    if (m !== null) {
      microAuroc[r] = m.auroc;
      microAp[r] = m.ap;
    }
    onProgress?.(r + 1, n);
  }

  const keep = opts.keepReplicates ?? false;
  const macroPoint = (get: (p: Prepared) => MetricResult): { value: number | null; reason?: string } => {
    if (macroClasses.length === 0) return { value: null, reason: 'no class defined' };
    return { value: mean(macroClasses.map((c) => get(classes[c]!).value as number)) };
  };
  return {
    n,
    seed,
    level,
    unit: opts.patientIds === undefined ? 'sample' : 'patient',
    nUnits: units.length,
    percentile: PERCENTILE_METHOD,
    auroc: {
      perClass: classes.map((p, c) => summarise(p.point.auroc, aurocReps[c]!, level, keep)),
      macro: summarise(macroPoint((p) => p.point.auroc), macroAuroc, level, keep),
      micro: summarise(micro.point.auroc, microAuroc, level, keep),
    },
    ap: {
      perClass: classes.map((p, c) => summarise(p.point.ap, apReps[c]!, level, keep)),
      macro: summarise(macroPoint((p) => p.point.ap), macroAp, level, keep),
      micro: summarise(micro.point.ap, microAp, level, keep),
    },
  };
}
