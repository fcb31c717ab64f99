import { readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import { mulberry32 } from '../../src/data/random.js';
import {
  averagePrecision,
  brierScore,
  calibrationCurve,
  multiLabelAveragePrecision,
  multiLabelRocAuc,
  precisionRecallCurve,
  rocAuc,
  rocCurve,
  sensitivitySpecificity,
  type MetricResult,
} from '../../src/eval/metrics.js';
import { pairwiseSum, percentile, percentileSorted } from '../../src/eval/stats.js';
import { goldenFile } from './golden.js';

interface GoldenCase {
  name: string;
  n_samples: number;
  n_classes: number;
  targets: number[][];
  scores: number[][];
  per_class_auroc: number[];
  macro_auroc: number;
  micro_auroc: number;
  per_class_average_precision: number[];
  macro_average_precision: number;
  micro_average_precision: number;
}

const golden = JSON.parse(readFileSync(goldenFile('auroc.json'), 'utf8')) as { cases: GoldenCase[] };

const val = (r: MetricResult): number => {
  if (r.value === null) throw new Error(`expected a value, got undefined (${r.reason})`);
  return r.value;
};
const close = (a: number, b: number, tol = 1e-12): void => {
  expect(Math.abs(a - b), `${a} vs ${b}`).toBeLessThanOrEqual(tol);
};

/** Independent AUROC: Mann–Whitney pair count, ties 1/2. */
function mannWhitney(s: number[], y: number[]): number {
  let num = 0;
  let pairs = 0;
  for (let i = 0; i < s.length; i++) {
    if (y[i] !== 1) continue;
    for (let j = 0; j < s.length; j++) {
      if (y[j] !== 0) continue;
      pairs++;
      if (s[i]! > s[j]!) num += 1;
      else if (s[i] === s[j]) num += 0.5;
    }
  }
  return num / pairs;
}

/** Independent AP: Σ (R_t − R_prev)·P_t over distinct thresholds t, decreasing, predicted positive when s ≥ t. */
function bruteAp(s: number[], y: number[]): number {
  const P = y.filter((v) => v === 1).length;
  const ts = [...new Set(s)].sort((a, b) => b - a);
  let prevR = 0;
  let ap = 0;
  for (const t of ts) {
    let tp = 0;
    let fp = 0;
    s.forEach((v, i) => {
      if (v >= t) {
        if (y[i] === 1) tp++;
        else fp++;
      }
    });
    const R = tp / P;
    ap += (R - prevR) * (tp / (tp + fp));
    prevR = R;
  }
  return ap;
}

describe('golden auroc.json (scikit-learn 1.2.1)', () => {
  it('has the three documented cases', () => {
    expect(golden.cases.map((c) => c.name)).toEqual(['continuous_single_positive', 'quantised_ties', 'three_level_ties']);
  });

  for (const g of golden.cases) {
    describe(g.name, () => {
      const data = { numClasses: g.n_classes, scores: Float64Array.from(g.scores.flat()), labels: g.targets.flat() };

      it('per-class AUROC and AP match roc_auc_score / average_precision_score', () => {
        for (let c = 0; c < g.n_classes; c++) {
          const s = g.scores.map((r) => r[c]!);
          const y = g.targets.map((r) => r[c]!);
          close(val(rocAuc(s, y)), g.per_class_auroc[c]!);
          close(val(averagePrecision(s, y)), g.per_class_average_precision[c]!);
        }
      });

      it('macro and micro AUROC and AP match, and the per-class values are bit-identical', () => {
        const a = multiLabelRocAuc(data);
        const p = multiLabelAveragePrecision(data);
        expect(a.perClass.map(val)).toEqual(g.per_class_auroc);
        expect(p.perClass.map(val)).toEqual(g.per_class_average_precision);
        close(val({ value: a.macro.value! }), g.macro_auroc);
        close(val(a.micro), g.micro_auroc);
        close(val({ value: p.macro.value! }), g.macro_average_precision);
        close(val(p.micro), g.micro_average_precision);
        expect(a.macro.excluded).toEqual([]);
        expect(a.macro.note).toBe('');
      });

      it('gives the same results from Float32Array scores', () => {
        const a = multiLabelRocAuc({ ...data, scores: Float32Array.from(g.scores.flat()) });
        for (let c = 0; c < g.n_classes; c++) close(val(a.perClass[c]!), g.per_class_auroc[c]!);
        close(val(a.micro), g.micro_auroc);
      });
    });
  }

  it('the golden cases really contain ties and single positives', () => {
    const q = golden.cases[1]!;
    expect(new Set(q.scores.map((r) => r[1])).size).toBeLessThan(q.n_samples / 2);
    expect(golden.cases[2]!.targets.filter((r) => r[2] === 1)).toHaveLength(1);
  });
});

describe('AUROC and AP against independent definitions', () => {
  it('random cases with many ties: AUROC = Mann–Whitney, AP = step-wise sum over distinct thresholds', () => {
    const rnd = mulberry32(7);
    for (let trial = 0; trial < 200; trial++) {
      const n = 2 + Math.floor(rnd() * 40);
      const levels = 1 + Math.floor(rnd() * 8);
      const s = Array.from({ length: n }, () => Math.floor(rnd() * levels) / levels);
      const y = Array.from({ length: n }, () => (rnd() < 0.4 ? 1 : 0));
      y[0] = 1;
      y[1] = 0;
      close(val(rocAuc(s, y)), mannWhitney(s, y));
      close(val(averagePrecision(s, y)), bruteAp(s, y));
    }
  });

  it('hand cases: all-equal scores, one positive, a tied single positive', () => {
    expect(rocAuc([0.3, 0.3, 0.3, 0.3], [1, 0, 0, 1]).value).toBe(0.5);
    // all tied: one threshold, precision = prevalence, recall 1
    expect(averagePrecision([0.3, 0.3, 0.3, 0.3, 0.3], [1, 0, 0, 1, 0]).value).toBeCloseTo(0.4, 15);
    // one positive ranked above 1 of 3 negatives
    expect(rocAuc([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 0]).value).toBeCloseTo(1 / 3, 15);
    expect(averagePrecision([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 0]).value).toBeCloseTo(1 / 3, 15);
    // the positive ties with one negative and beats the other: (0.5 + 1) / 2
    expect(rocAuc([0.5, 0.5, 0.2], [1, 0, 0]).value).toBe(0.75);
    expect(averagePrecision([0.5, 0.5, 0.2], [1, 0, 0]).value).toBe(0.5);
    // perfect and inverted rankings
    expect(rocAuc([0.9, 0.8, 0.1], [1, 1, 0]).value).toBe(1);
    expect(rocAuc([0.1, 0.2, 0.9], [1, 1, 0]).value).toBe(0);
    // scikit-learn's docstring example
    expect(averagePrecision([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]).value).toBeCloseTo(0.8333333333333333, 15);
  });

  it('masks NaN and null labels (and a mask array) as if the samples were absent', () => {
    const s = [0.9, 0.1, 0.8, 0.4, 0.35, 0.7];
    const y = [1, Number.NaN, 0, null, 1, 0];
    expect(rocAuc(s, y)).toEqual(rocAuc([0.9, 0.8, 0.35, 0.7], [1, 0, 1, 0]));
    expect(averagePrecision(s, y)).toEqual(averagePrecision([0.9, 0.8, 0.35, 0.7], [1, 0, 1, 0]));
    expect(rocAuc(s, [1, 1, 0, 0, 1, 0], [1, 0, 1, 0, 1, 1])).toEqual(rocAuc([0.9, 0.8, 0.35, 0.7], [1, 0, 1, 0]));
    // scores of masked entries may be NaN
    expect(rocAuc([0.9, Number.NaN, 0.1], [1, Number.NaN, 0]).value).toBe(1);
  });

  it('reports a single label value as undefined with a reason, never NaN', () => {
    expect(rocAuc([0.1, 0.2], [1, 1])).toEqual({ value: null, reason: 'only positives' });
    expect(rocAuc([0.1, 0.2], [0, 0])).toEqual({ value: null, reason: 'only negatives' });
    expect(averagePrecision([0.1, 0.2], [0, Number.NaN])).toEqual({ value: null, reason: 'only negatives' });
    expect(averagePrecision([0.1, 0.2], [null, Number.NaN])).toEqual({ value: null, reason: 'no labelled samples' });
    expect(rocAuc([], [])).toEqual({ value: null, reason: 'no labelled samples' });
    expect(rocCurve([0.1, 0.2], [1, 1])).toEqual({ value: null, reason: 'only positives' });
    expect(precisionRecallCurve([0.1, 0.2], [0, 0])).toEqual({ value: null, reason: 'only negatives' });
  });

  it('rejects labels other than 0/1/NaN/null, non-finite labelled scores and length mismatches', () => {
    expect(() => rocAuc([0.1, 0.2], [1, -1])).toThrow(/label\[1\]/);
    expect(() => rocAuc([0.1, 0.2], [1, 2])).toThrow(RangeError);
    expect(() => rocAuc([0.1, Number.NaN], [1, 0])).toThrow(/score\[1\]/);
    expect(() => rocAuc([0.1, Number.POSITIVE_INFINITY], [1, 0])).toThrow(/finite/);
    expect(() => rocAuc([0.1], [1, 0])).toThrow(/length/);
  });
});

describe('curves (scikit-learn threshold conventions)', () => {
  it('roc_curve docstring example: a (0, 0) point with threshold +inf, then one point per distinct score', () => {
    const r = rocCurve([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]).value!;
    expect([...r.fpr]).toEqual([0, 0, 0.5, 0.5, 1]);
    expect([...r.tpr]).toEqual([0, 0.5, 0.5, 1, 1]);
    expect([...r.thresholds]).toEqual([Number.POSITIVE_INFINITY, 0.8, 0.4, 0.35, 0.1]);
  });

  it('drop_intermediate removes collinear points exactly as scikit-learn’s tests expect', () => {
    const a = rocCurve([0, 0.2, 0.5, 0.6, 0.7, 1.0], [0, 0, 0, 0, 1, 1]).value!;
    expect([...a.thresholds]).toEqual([Number.POSITIVE_INFINITY, 1, 0.7, 0]);
    const y = [0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 1];
    const s = [0, 0.1, 0.6, 0.6, 0.7, 0.8, 0.9, 0.9, 0.9, 0.9, 1.0, 1.0];
    const b = rocCurve(s, y).value!;
    expect([...b.thresholds]).toEqual([Number.POSITIVE_INFINITY, 1, 0.9, 0.7, 0.6, 0]);
    // without dropping: one point per distinct score (7) plus the +inf point
    const full = rocCurve(s, y, { dropIntermediate: false }).value!;
    expect([...full.thresholds]).toEqual([Number.POSITIVE_INFINITY, 1, 0.9, 0.8, 0.7, 0.6, 0.1, 0]);
    expect([...full.fpr]).toEqual([0, 0, 3 / 7, 3 / 7, 3 / 7, 5 / 7, 6 / 7, 1]);
    expect([...full.tpr]).toEqual([0, 2 / 5, 3 / 5, 4 / 5, 1, 1, 1, 1]);
  });

  it('precision_recall_curve docstring example (all thresholds, recall decreasing, final (1, 0))', () => {
    const p = precisionRecallCurve([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]).value!;
    const approx = (a: Float64Array, b: number[]): void => b.forEach((v, i) => expect(a[i]).toBeCloseTo(v, 15));
    expect(p.precision).toHaveLength(5);
    approx(p.precision, [0.5, 2 / 3, 0.5, 1, 1]);
    expect([...p.recall]).toEqual([1, 1, 0.5, 0.5, 0]);
    expect([...p.thresholds]).toEqual([0.1, 0.35, 0.4, 0.8]);
  });

  it('precision_recall_curve drop_intermediate keeps the end points and the points where tps changes', () => {
    // decreasing scores 0.9..0.4 with labels 1,1,0,0,1,0: tps 1,2,2,2,3,3
    const s = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4];
    const y = [1, 1, 0, 0, 1, 0];
    const p = precisionRecallCurve(s, y, { dropIntermediate: true }).value!;
    // kept curve indices 0 (0.9), 1 (0.8, tps changes), 3 (0.6, before a change), 4 (0.5), 5 (0.4); 0.7 dropped
    expect([...p.thresholds]).toEqual([0.4, 0.5, 0.6, 0.8, 0.9]);
    const all = precisionRecallCurve(s, y).value!;
    expect(all.thresholds).toHaveLength(6);
    // AP integrates the same steps either way
    const ap = (c: typeof p): number => {
      let a = 0;
      for (let k = 0; k < c.recall.length - 1; k++) a -= (c.recall[k + 1]! - c.recall[k]!) * c.precision[k]!;
      return a;
    };
    close(ap(p), val(averagePrecision(s, y)));
    close(ap(all), val(averagePrecision(s, y)));
  });
});

describe('threshold metrics, Brier, calibration', () => {
  it('sensitivity/specificity count score ≥ threshold as positive', () => {
    const r = sensitivitySpecificity([0.9, 0.5, 0.4, 0.5, 0.1, 0.7], [1, 1, 1, 0, 0, Number.NaN], 0.5);
    expect(r).toMatchObject({ tp: 2, fn: 1, fp: 1, tn: 1 });
    expect(r.sensitivity.value).toBeCloseTo(2 / 3, 15);
    expect(r.specificity.value).toBe(0.5);
    const onlyNeg = sensitivitySpecificity([0.2, 0.7], [0, 0], 0.5);
    expect(onlyNeg.sensitivity).toEqual({ value: null, reason: 'only negatives' });
    expect(onlyNeg.specificity).toEqual({ value: 0.5 });
    expect(sensitivitySpecificity([0.2], [1], 0.5).specificity).toEqual({ value: null, reason: 'only positives' });
  });

  it('Brier score = mean squared error of probabilities (scikit-learn docstring: 0.0375)', () => {
    expect(brierScore([0.1, 0.9, 0.8, 0.3], [0, 1, 1, 0]).value).toBeCloseTo(0.0375, 15);
    expect(brierScore([0.1, 0.9, 0.8, 0.3, 0.5], [0, 1, 1, 0, null]).value).toBeCloseTo(0.0375, 15);
    expect(brierScore([0.2, 0.4], [1, 1]).value).toBeCloseTo((0.64 + 0.36) / 2, 15);
    expect(brierScore([0.2], [Number.NaN])).toEqual({ value: null, reason: 'no labelled samples' });
    expect(() => brierScore([1.2], [1])).toThrow(/\[0, 1\]/);
  });

  it('calibration_curve (uniform bins, right-closed, first bin holds 0; docstring example)', () => {
    const c = calibrationCurve([0.1, 0.2, 0.3, 0.4, 0.65, 0.7, 0.8, 0.9, 1.0], [0, 0, 0, 0, 1, 1, 1, 1, 1], 3);
    expect([...c.probTrue]).toEqual([0, 0.5, 1]);
    [0.2, 0.525, 0.85].forEach((v, i) => expect(c.probPred[i]).toBeCloseTo(v, 15));
    expect([...c.counts]).toEqual([3, 2, 4]);
    const d = calibrationCurve([0, 0.1, 0.1000001, 0.95, 1], [0, 1, 0, 1, 1], 10);
    expect([...d.counts]).toEqual([2, 1, 0, 0, 0, 0, 0, 0, 0, 2]);
    expect([...d.bins]).toEqual([0, 1, 9]);
    expect([...d.probTrue]).toEqual([0.5, 0, 1]);
  });
});

describe('multi-label helpers', () => {
  // 6 samples x 3 classes; class 1 has only negatives among its labelled cells; one cell masked by the mask array
  const scores = Float32Array.from([0.9, 0.2, 0.1, 0.3, 0.4, 0.8, 0.6, 0.1, 0.7, 0.2, 0.3, 0.2, 0.8, 0.9, 0.6, 0.1, 0.5, 0.3]);
  const labels = [1, 0, 0, 0, 0, 1, 1, Number.NaN, 1, 0, 0, 0, 1, 0, 0, null, 0, 1];
  const mask = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0];
  const col = (c: number): { s: number[]; y: (number | null)[] } => ({
    s: [0, 1, 2, 3, 4, 5].map((i) => scores[i * 3 + c]!),
    y: [0, 1, 2, 3, 4, 5].map((i) => (mask[i * 3 + c] ? labels[i * 3 + c]! : null)),
  });

  it('per-class results, macro over defined classes with a note, micro over the labelled cells', () => {
    const r = multiLabelRocAuc({ numClasses: 3, scores, labels, mask }, ['A', 'B', 'C']);
    expect(r.perClass[1]).toEqual({ value: null, reason: 'only negatives' });
    const a0 = mannWhitney(col(0).s, col(0).y as number[]);
    const c2 = col(2);
    const keep = c2.y.map((v, i) => (v === null ? -1 : i)).filter((i) => i >= 0);
    const a2 = mannWhitney(keep.map((i) => c2.s[i]!), keep.map((i) => c2.y[i] as number));
    close(r.perClass[0]!.value!, a0);
    close(r.perClass[2]!.value!, a2);
    close(r.macro.value!, (a0 + a2) / 2);
    expect(r.macro.included).toEqual([0, 2]);
    expect(r.macro.excluded).toEqual([{ index: 1, name: 'B', reason: 'only negatives' }]);
    expect(r.macro.note).toBe('macro over 2 of 3 classes; excluded: B (only negatives)');
    // micro: all labelled, unmasked cells pooled
    const ms: number[] = [];
    const my: number[] = [];
    for (let k = 0; k < 18; k++) {
      const l = labels[k];
      if (!mask[k] || l === null || Number.isNaN(l)) continue;
      ms.push(scores[k]!);
      my.push(l!);
    }
    expect(ms).toHaveLength(15);
    close(r.micro.value!, mannWhitney(ms, my));
    const p = multiLabelAveragePrecision({ numClasses: 3, scores, labels, mask }, ['A', 'B', 'C']);
    close(p.micro.value!, bruteAp(ms, my));
    close(p.macro.value!, (bruteAp(col(0).s, col(0).y as number[]) + bruteAp(keep.map((i) => c2.s[i]!), keep.map((i) => c2.y[i] as number))) / 2);
  });

  it('macro is null when no class is defined', () => {
    const r = multiLabelRocAuc({ numClasses: 2, scores: [0.1, 0.2, 0.3, 0.4], labels: [1, 0, 1, 0] });
    expect(r.macro.value).toBeNull();
    expect(r.macro.note).toBe('macro over 0 of 2 classes; excluded: class 0 (only positives), class 1 (only negatives)');
    close(r.micro.value!, mannWhitney([0.1, 0.2, 0.3, 0.4], [1, 0, 1, 0]));
  });

  it('checks shapes', () => {
    expect(() => multiLabelRocAuc({ numClasses: 3, scores: [0.1, 0.2, 0.3, 0.4], labels: [1, 0, 1, 0] })).toThrow(/multiple of 3/);
    expect(() => multiLabelRocAuc({ numClasses: 2, scores: [0.1, 0.2, 0.3, 0.4], labels: [1, 0, 1, 0], mask: [1] })).toThrow(/mask/);
  });
});

describe('numpy-compatible statistics', () => {
  it('percentile uses numpy’s default linear method', () => {
    expect(percentile([10, 7, 4, 3, 2, 1], 50)).toBe(3.5);
    expect(percentile([1, 2, 3, 4], 25)).toBe(1.75);
    expect(percentile([1, 2, 3, 4], 100)).toBe(4);
    expect(percentile([1, 2, 3, 4], 0)).toBe(1);
    expect(percentile([5], 97.5)).toBe(5);
    // 1000 values 0..999: h = 999·0.025 = 24.975
    const v = Float64Array.from({ length: 1000 }, (_, i) => i);
    expect(percentileSorted(v, 2.5)).toBeCloseTo(24.975, 12);
    expect(percentileSorted(v, 97.5)).toBeCloseTo(974.025, 12);
    expect(Number.isNaN(percentile([], 50))).toBe(true);
  });

  it('pairwise summation reproduces numpy (np.sum of ten 0.1 is exactly 1.0, a plain loop is not)', () => {
    const a = new Float64Array(10).fill(0.1);
    let naive = 0;
    for (const x of a) naive += x;
    expect(naive).not.toBe(1);
    expect(pairwiseSum(a)).toBe(1);
    const big = Float64Array.from({ length: 1000 }, (_, i) => i);
    expect(pairwiseSum(big)).toBe(499500);
  });
});
