import { describe, expect, it } from 'vitest';

import { mulberry32 } from '../../src/data/random.js';
import { bootstrapMultiLabel, drawResample, resamplingUnits } from '../../src/eval/bootstrap.js';
import { averagePrecision, rocAuc } from '../../src/eval/metrics.js';

/** A well-behaved binary case: Gaussian-ish scores shifted by the label. */
function synth(n: number, seed: number, classes = 1, prevalence = 0.4): { scores: Float64Array; labels: number[] } {
  const rnd = mulberry32(seed);
  const scores = new Float64Array(n * classes);
  const labels: number[] = [];
  for (let i = 0; i < n * classes; i++) {
    const y = rnd() < prevalence ? 1 : 0;
    scores[i] = y + (rnd() + rnd() + rnd() - 1.5) * 1.2;
    labels.push(y);
  }
  return { scores, labels };
}

/** numpy's linear percentile written out plainly (a + (b − a)·γ). */
function npPercentile(values: number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  const h = (s.length - 1) * (q / 100);
  const lo = Math.floor(h);
  if (lo + 1 >= s.length) return s[s.length - 1]!;
  return s[lo]! + (s[lo + 1]! - s[lo]!) * (h - lo);
}

describe('bootstrapMultiLabel', () => {
  it('is deterministic for a seed and changes with the seed', () => {
    const d = synth(120, 1, 2);
    const data = { numClasses: 2, scores: d.scores, labels: d.labels };
    const a = bootstrapMultiLabel(data, { n: 200, seed: 42 });
    const b = bootstrapMultiLabel(data, { n: 200, seed: 42 });
    const c = bootstrapMultiLabel(data, { n: 200, seed: 43 });
    expect(a).toEqual(b);
    expect(a.auroc.perClass[0]!.lo).not.toBe(c.auroc.perClass[0]!.lo);
    expect(a).toMatchObject({ n: 200, seed: 42, level: 0.95, unit: 'sample', nUnits: 120 });
  });

  it('each replicate equals scikit-learn-style metrics recomputed on the explicitly resampled data', () => {
    const N = 60;
    const d = synth(N, 5, 1);
    // quantise to create ties
    const s = Array.from(d.scores, (v) => Math.round(v * 4) / 4);
    const res = bootstrapMultiLabel({ numClasses: 1, scores: s, labels: d.labels }, { n: 25, seed: 9, keepReplicates: true });
    const rnd = mulberry32(9);
    for (let r = 0; r < 25; r++) {
      const idx = Array.from({ length: N }, () => Math.floor(rnd() * N));
      const rs = idx.map((i) => s[i]!);
      const ry = idx.map((i) => d.labels[i]!);
      const a = rocAuc(rs, ry);
      const p = averagePrecision(rs, ry);
      const ra = res.auroc.perClass[0]!.replicates![r]!;
      const rp = res.ap.perClass[0]!.replicates![r]!;
      if (a.value === null) {
        expect(Number.isNaN(ra)).toBe(true);
        continue;
      }
      expect(Math.abs(ra - a.value)).toBeLessThan(1e-12);
      expect(Math.abs(rp - p.value!)).toBeLessThan(1e-12);
      // one class: micro and macro are that class
      expect(res.auroc.micro.replicates![r]).toBeCloseTo(ra, 12);
      expect(res.auroc.macro.replicates![r]).toBe(ra);
    }
  });

  it('median and interval are numpy-linear percentiles (2.5, 50, 97.5) of the valid replicates', () => {
    const d = synth(80, 11, 1);
    const res = bootstrapMultiLabel({ numClasses: 1, scores: d.scores, labels: d.labels }, { n: 137, seed: 3, keepReplicates: true });
    const iv = res.auroc.perClass[0]!;
    const reps = Array.from(iv.replicates!).filter((v) => !Number.isNaN(v));
    expect(reps).toHaveLength(iv.nValid);
    expect(iv.median).toBeCloseTo(npPercentile(reps, 50), 14);
    expect(iv.lo).toBeCloseTo(npPercentile(reps, 2.5), 14);
    expect(iv.hi).toBeCloseTo(npPercentile(reps, 97.5), 14);
    const i90 = bootstrapMultiLabel({ numClasses: 1, scores: d.scores, labels: d.labels }, { n: 137, seed: 3, level: 0.9 }).auroc.perClass[0]!;
    expect(i90.lo).toBeCloseTo(npPercentile(reps, 5), 14);
    expect(i90.hi).toBeCloseTo(npPercentile(reps, 95), 14);
  });

  it('coverage sanity: the CI contains the point estimate and its width matches the Hanley–McNeil standard error', () => {
    const d = synth(600, 21, 1, 0.3);
    const res = bootstrapMultiLabel({ numClasses: 1, scores: d.scores, labels: d.labels }, { n: 1000, seed: 1 });
    const iv = res.auroc.perClass[0]!;
    const A = iv.point!;
    expect(A).toBeGreaterThan(0.65);
    expect(A).toBeLessThan(0.95);
    expect(iv.lo!).toBeLessThan(A);
    expect(iv.hi!).toBeGreaterThan(A);
    expect(iv.lo!).toBeLessThan(iv.median!);
    expect(iv.median!).toBeLessThan(iv.hi!);
    expect(Math.abs(iv.median! - A)).toBeLessThan(0.01);
    const P = d.labels.filter((y) => y === 1).length;
    const Nn = d.labels.length - P;
    const q1 = A / (2 - A);
    const q2 = (2 * A * A) / (1 + A);
    const se = Math.sqrt((A * (1 - A) + (P - 1) * (q1 - A * A) + (Nn - 1) * (q2 - A * A)) / (P * Nn));
    const ratio = (iv.hi! - iv.lo!) / (2 * 1.96 * se);
    expect(ratio).toBeGreaterThan(0.6);
    expect(ratio).toBeLessThan(1.4);
    const ap = res.ap.perClass[0]!;
    expect(ap.lo!).toBeLessThan(ap.point!);
    expect(ap.hi!).toBeGreaterThan(ap.point!);
    expect(res.auroc.perClass[0]!.nSkipped).toBe(0);
  });

  it('skips and counts resamples where a class is undefined; macro skips them too; a never-defined class is excluded', () => {
    const N = 30;
    const d = synth(N, 8, 3);
    // class 1: a single positive; class 2: only negatives
    for (let i = 0; i < N; i++) {
      d.labels[i * 3 + 1] = i === 4 ? 1 : 0;
      d.labels[i * 3 + 2] = 0;
    }
    const res = bootstrapMultiLabel({ numClasses: 3, scores: d.scores, labels: d.labels }, { n: 1000, seed: 2 });
    const c1 = res.auroc.perClass[1]!;
    expect(c1.nValid + c1.nSkipped).toBe(1000);
    // P(the single positive is never drawn) = (1 − 1/30)^30 ≈ 0.362
    expect(c1.nSkipped / 1000).toBeGreaterThan(0.3);
    expect(c1.nSkipped / 1000).toBeLessThan(0.43);
    expect(res.auroc.perClass[2]).toMatchObject({ point: null, reason: 'only negatives', median: null, lo: null, hi: null, nValid: 0, nSkipped: 1000 });
    // macro over classes 0 and 1 (class 2 excluded); skipped exactly when class 1 (or 0) is undefined
    const c0 = res.auroc.perClass[0]!;
    expect(c0.nSkipped).toBe(0);
    expect(res.auroc.macro.nSkipped).toBe(c1.nSkipped);
    expect(res.auroc.macro.point).toBeCloseTo((c0.point! + c1.point!) / 2, 15);
  });

  it('patient resampling keeps a patient’s samples together', () => {
    const pids = ['a', 'b', 'a', 'c', 'b', 'a', 'd'];
    const units = resamplingUnits(7, pids);
    expect(units).toEqual([[0, 2, 5], [1, 4], [3], [6]]);
    const rnd = mulberry32(5);
    const counts = new Float64Array(7);
    for (let r = 0; r < 200; r++) {
      const drawn = drawResample(rnd, units, counts);
      expect(drawn).toHaveLength(4);
      for (const u of units) for (const i of u) expect(counts[i]).toBe(counts[u[0]!]);
      const expected = [0, 0, 0, 0];
      for (const u of drawn) expected[u]!++;
      units.forEach((u, k) => expect(counts[u[0]!]).toBe(expected[k]));
    }
  });

  it('patients with identical copies of a sample give exactly the sample bootstrap of the de-duplicated data', () => {
    // each sample appears 4 times as one patient: resampling patients = resampling the original samples
    const N = 50;
    const d = synth(N, 13, 2);
    const scores: number[] = [];
    const labels: number[] = [];
    const pids: string[] = [];
    for (let i = 0; i < N; i++) {
      for (let k = 0; k < 4; k++) {
        scores.push(d.scores[i * 2]!, d.scores[i * 2 + 1]!);
        labels.push(d.labels[i * 2]!, d.labels[i * 2 + 1]!);
        pids.push(`p${i}`);
      }
    }
    const byPatient = bootstrapMultiLabel({ numClasses: 2, scores, labels }, { n: 300, seed: 77, patientIds: pids, keepReplicates: true });
    const bySample = bootstrapMultiLabel({ numClasses: 2, scores: d.scores, labels: d.labels }, { n: 300, seed: 77, keepReplicates: true });
    expect(byPatient.unit).toBe('patient');
    expect(byPatient.nUnits).toBe(N);
    expect(Array.from(byPatient.auroc.perClass[0]!.replicates!)).toEqual(Array.from(bySample.auroc.perClass[0]!.replicates!));
    expect(Array.from(byPatient.ap.perClass[1]!.replicates!)).toEqual(Array.from(bySample.ap.perClass[1]!.replicates!));
    expect(Array.from(byPatient.auroc.macro.replicates!)).toEqual(Array.from(bySample.auroc.macro.replicates!));
    // ...whereas resampling the 4N copies as independent samples gives a much narrower (wrong) interval
    const naive = bootstrapMultiLabel({ numClasses: 2, scores, labels }, { n: 300, seed: 77 });
    const w = (iv: { lo: number | null; hi: number | null }): number => iv.hi! - iv.lo!;
    expect(w(byPatient.auroc.perClass[0]!)).toBeGreaterThan(1.5 * w(naive.auroc.perClass[0]!));
  });

  it('masked labels are excluded per class in every resample', () => {
    const d = synth(40, 17, 1);
    const labels: (number | null)[] = [...d.labels];
    labels[0] = null;
    labels[1] = Number.NaN;
    const mask = labels.map((_, i) => (i === 2 ? 0 : 1));
    const res = bootstrapMultiLabel({ numClasses: 1, scores: d.scores, labels, mask }, { n: 5, seed: 4, keepReplicates: true });
    const rnd = mulberry32(4);
    const keep = (i: number): boolean => i > 2;
    for (let r = 0; r < 5; r++) {
      const idx = Array.from({ length: 40 }, () => Math.floor(rnd() * 40)).filter(keep);
      const a = rocAuc(idx.map((i) => d.scores[i]!), idx.map((i) => d.labels[i]!));
      expect(res.auroc.perClass[0]!.replicates![r]).toBeCloseTo(a.value!, 12);
    }
  });

  it('validates options', () => {
    const data = { numClasses: 1, scores: [0.1, 0.9], labels: [0, 1] };
    expect(() => bootstrapMultiLabel(data, { n: 0 })).toThrow(/positive integer/);
    expect(() => bootstrapMultiLabel(data, { level: 1 })).toThrow(/level/);
    expect(() => bootstrapMultiLabel(data, { patientIds: ['a'] })).toThrow(/one entry per sample/);
  });
});
