import { readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import { blockMask, collateMasks, defaultMaxMaskPatches, generateBlockMask } from '../../src/augment/masking.js';
import { Rng, rngFor } from '../../src/augment/rng.js';
import { goldenFile } from './golden.js';

/** An Rng fed a fixed list of uniforms (throws when exhausted), for hand-computed expectations. */
function scripted(values: number[]): Rng {
  let i = 0;
  return new Rng(() => {
    if (i >= values.length) throw new Error('scripted rng exhausted');
    return values[i++] as number;
  });
}

const ones = (m: Uint8Array) => [...m.keys()].filter((k) => m[k] === 1);
const mean = (xs: number[]) => xs.reduce((a, v) => a + v, 0) / xs.length;
const std = (xs: number[]) => {
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, v) => a + (v - m) ** 2, 0) / (xs.length - 1));
};
/** |a − b| within k standard errors of the difference of two sample means. */
const withinSE = (a: number, sa: number, na: number, b: number, sb: number, nb: number, k = 3) =>
  expect(Math.abs(a - b)).toBeLessThanOrEqual(k * Math.sqrt((sa * sa) / na + (sb * sb) / nb));

/** Number of 4-connected components of the set cells. */
function components(m: Uint8Array, h: number, w: number): number {
  const seen = new Uint8Array(m.length);
  let n = 0;
  for (let s = 0; s < m.length; s++) {
    if (m[s] !== 1 || seen[s]) continue;
    n++;
    const stack = [s];
    seen[s] = 1;
    while (stack.length) {
      const c = stack.pop()!;
      const [i, j] = [Math.floor(c / w), c % w];
      for (const [di, dj] of [[1, 0], [-1, 0], [0, 1], [0, -1]] as const) {
        const [a, b] = [i + di, j + dj];
        const k = a * w + b;
        if (a >= 0 && a < h && b >= 0 && b < w && m[k] === 1 && !seen[k]) {
          seen[k] = 1;
          stack.push(k);
        }
      }
    }
  }
  return n;
}

describe('defaultMaxMaskPatches', () => {
  it("reproduces the reference's ((0.5·S)//p · S)//p", () => {
    expect(defaultMaxMaskPatches(224, 14)).toBe(128); // = N/2 = 256/2 only here
    expect(defaultMaxMaskPatches(518, 14)).toBe(666); // 259//14 = 18; 18·518 = 9324; 9324//14 = 666 (N/2 = 684.5)
    expect(defaultMaxMaskPatches(98, 14)).toBe(21); // 49//14 = 3; 294//14 = 21
  });
});

describe('blockMask: hand-traced draws', () => {
  // aspect = exp(log 0.3 + u·(log(1/0.3) − log 0.3)): u = 0.5 → 1 (square blocks), u → 1 → 1/0.3.
  it('places one 2×2 block at (top, left) drawn after the shape', () => {
    // area U(4,4) = 4, aspect 1 → h = w = 2; top = floor(0.5·3) = 1, left = floor(0·3) = 0.
    const r = generateBlockMask(scripted([0, 0.5, 0.5, 0]), 4, 4, 4);
    expect(ones(r.mask)).toEqual([4, 5, 8, 9]);
    expect(r).toMatchObject({ count: 4, placements: 1 });
  });

  it('rejects a block that adds nothing, then fills the remaining budget of 1 with a 1×1 block', () => {
    const r = generateBlockMask(
      scripted([
        ...[0, 0.5, 0.5, 0], // call 1, budget 5: 2×2 at (1, 0)
        ...[0, 0.5, 0.5, 0], // call 2, budget 1: area U(4, 1) = 4 → the same 2×2 again, 0 new cells → rejected
        ...[0.999999999, 0.5, 0, 0.9], // area ≈ 1 → 1×1; top = 0, left = floor(0.9·4) = 3 → accepted
      ]),
      4,
      4,
      5,
    );
    expect(ones(r.mask)).toEqual([3, 4, 5, 8, 9]);
    expect(r).toMatchObject({ count: 5, placements: 2 });
  });

  it('skips shapes not strictly smaller than the grid without drawing a position', () => {
    // aspect ≈ 1/0.3: h = round(√(4·3.33)) = 4, not < 4 → rejected; then 2×2 at top floor(0.99·3) = 2, left 0.
    const r = generateBlockMask(scripted([0, 0.99999999, 0, 0.5, 0.99, 0.2]), 4, 4, 4);
    expect(ones(r.mask)).toEqual([8, 9, 12, 13]);
  });

  it('rejects blocks with more new cells than the budget', () => {
    const r = generateBlockMask(
      scripted([
        ...[0, 0.5, 0.1, 0.1], // target 3: area U(4, 3) = 4 → 2×2 = 4 new cells > 3 → rejected
        ...[0.99999999, 0.99999999, 0.5, 0.5], // area ≈ 3, aspect ≈ 3.33: h = round(√10) = 3, w = round(√0.9) = 1
      ]),
      4,
      4,
      3,
    );
    // top = floor(0.5·2) = 1, left = floor(0.5·4) = 2: column 2, rows 1..3.
    expect(ones(r.mask)).toEqual([6, 10, 14]);
    expect(r).toMatchObject({ count: 3, placements: 1 });
  });

  it('stops when a whole call adds nothing (no possible block on a 2×2 grid)', () => {
    // area 4 needs h·w ≈ 4 with h, w < 2: impossible for aspects in [0.3, 3.33].
    const r = generateBlockMask(rngFor(0, 0, 0, 'test'), 2, 2, 4);
    expect(r).toMatchObject({ count: 0, placements: 0 });
    expect(ones(r.mask)).toEqual([]);
  });

  it('a request of 0 draws nothing', () => {
    expect(ones(blockMask(scripted([]), 5, 5, 0))).toEqual([]);
  });
});

describe('blockMask: distribution against the reference generator (golden masking_stats.json)', () => {
  const golden = JSON.parse(readFileSync(goldenFile('masking_stats.json'), 'utf8'));
  const ps = golden.per_sample;
  const n = 10000;
  const rng = rngFor(2024, 0, 0, 'masking-golden');
  const masked: number[] = [];
  const requested: number[] = [];
  const blocks: number[] = [];
  const comps: number[] = [];
  for (let s = 0; s < n; s++) {
    const req = Math.trunc(256 * rng.uniform(0.1, 0.5));
    const r = generateBlockMask(rng, 16, 16, req, { minNumPatches: 4, maxNumPatches: 128, minAspect: 0.3, maxAspect: 1 / 0.3 });
    expect(r.count).toBe(ones(r.mask).length);
    requested.push(req);
    masked.push(r.count);
    blocks.push(r.placements);
    comps.push(components(r.mask, 16, 16));
  }

  it('uses the same generator settings as the golden run', () => {
    expect(golden.generator).toMatchObject({ input_size: [16, 16], min_num_patches: 4, max_num_patches: 128 });
    expect(ps.n_samples).toBe(n);
  });

  it('never masks more than requested, and exactly the request about as often', () => {
    expect(masked.every((m, i) => m <= requested[i]!)).toBe(true);
    expect(ps['p(masked > requested)']).toBe(0);
    const pEq = mean(masked.map((m, i) => (m === requested[i] ? 1 : 0)));
    const pRef = ps['p(masked == requested)'];
    withinSE(pEq, Math.sqrt(pEq * (1 - pEq)), n, pRef, Math.sqrt(pRef * (1 - pRef)), n);
    const short = masked.map((m, i) => requested[i]! - m);
    const sRef = ps['shortfall_count(requested-masked)'];
    withinSE(mean(short), std(short), n, sRef.mean, sRef.std, n);
    // Golden: p95 = 1, max 3. A call whose 10 tries all fail ends the mask early, so rare larger shortfalls occur
    // (about 1 in 10^4 here); they must stay rare.
    expect(short.filter((x) => x > 3).length / n).toBeLessThan(1e-3);
    expect(short.filter((x) => x >= 2).length / n).toBeLessThan(0.01);
  });

  it('matches the masked fraction, block-count and connected-component statistics', () => {
    const frac = masked.map((m) => m / 256);
    const fRef = ps.masked_fraction;
    withinSE(mean(frac), std(frac), n, fRef.mean, fRef.std, n);
    expect(std(frac) / fRef.std).toBeGreaterThan(0.95);
    expect(std(frac) / fRef.std).toBeLessThan(1.05);
    const bRef = ps['n_blocks(successful _mask placements)'];
    withinSE(mean(blocks), std(blocks), n, bRef.mean, bRef.std, n);
    expect(std(blocks) / bRef.std).toBeGreaterThan(0.93);
    expect(std(blocks) / bRef.std).toBeLessThan(1.07);
    const cRef = ps['n_connected_components(4-conn)'];
    withinSE(mean(comps), std(comps), n, cRef.mean, cRef.std, n);
  });

  it('matches the histogram of block counts (χ² over pooled bins)', () => {
    const ref: Record<string, number> = ps.n_blocks_histogram;
    // Pool into 1–2, 3, 4, …, 9, ≥ 10 so that every expected count is large.
    const bin = (k: number) => (k <= 2 ? 0 : k >= 10 ? 8 : k - 2);
    const exp = new Array<number>(9).fill(0);
    for (const [k, c] of Object.entries(ref)) exp[bin(Number(k))]! += c;
    const obs = new Array<number>(9).fill(0);
    for (const b of blocks) obs[bin(b)]!++;
    // Two-sample χ² (equal sizes): Σ (o − e)² / (o + e), 8 d.o.f.; 26.1 is the 0.999 quantile.
    const chi2 = obs.reduce((a, o, i) => a + (o - exp[i]!) ** 2 / (o + exp[i]!), 0);
    expect(chi2).toBeLessThan(26.1);
  });
});

describe('collateMasks', () => {
  it('upper bound is Σ int(N·probs[i+1]) with float32 probs (663 for 16 rows of 16×16, golden)', () => {
    const golden = JSON.parse(readFileSync(goldenFile('masking_stats.json'), 'utf8'));
    const c = collateMasks(rngFor(0, 0, 0, 'masks'), 16, 16, 16, { maxNumPatches: 128 });
    expect(c.upperBound).toBe(golden.collate_level.upperbound_per_batch.mean);
    expect(c.upperBound).toBe(38 + 51 + 64 + 76 + 89 + 102 + 115 + 128); // 256 × 0.15, 0.2, …, 0.5 truncated
    // 4 rows of 4×4: probs (0.1, 0.3, 0.5); 16 × float32(0.3) = 4.8000002 → 4, 16 × 0.5 = 8.
    expect(collateMasks(rngFor(0, 0, 0, 'masks'), 4, 4, 4, { maxNumPatches: 8 }).upperBound).toBe(12);
    // float32 matters: 16 rows of 12×15 = 180 cells, probs[5] = f32(0.35) = 0.34999999404, and the float32 product
    // 180·0.34999999404 = 62.9999989 rounds to 63.0, so that row contributes 63 (float64 arithmetic would give 62):
    // 27 + 36 + 45 + 54 + 63 + 72 + 81 + 90.
    expect(collateMasks(rngFor(0, 0, 0, 'masks'), 16, 12, 15, { maxNumPatches: 90 }).upperBound).toBe(468);
    // CXformer per GPU: 2 × 64 crops on the 37×37 grid, 64 masked rows with ratios 0.1 + 0.4·i/64.
    let ub = 0;
    for (let i = 1; i <= 64; i++) ub += Math.trunc(1369 * (0.1 + (0.4 * i) / 64));
    const big = collateMasks(rngFor(0, 0, 0, 'masks'), 128, 37, 37, { maxNumPatches: 666 });
    expect(big.upperBound).toBe(ub);
    expect(big.maskIndices.length).toBeLessThanOrEqual(ub);
  });

  it('indices, weights and layout follow the masks', () => {
    const c = collateMasks(rngFor(5, 1, 77, 'masks'), 12, 5, 6, { maxNumPatches: 15 });
    const N = 30;
    expect(c.masks.length).toBe(12 * N);
    expect([...c.maskIndices]).toEqual(ones(c.masks));
    const counts = Array.from({ length: 12 }, (_, r) => c.masks.subarray(r * N, (r + 1) * N).reduce((a, v) => a + v, 0));
    c.maskIndices.forEach((idx, k) => expect(c.weights[k]).toBe(Math.fround(1 / counts[Math.floor(idx / N)]!)));
    // Each masked row's weights sum to 1, so the total is the number of masked rows.
    const total = c.weights.reduce((a, v) => a + v, 0);
    expect(total).toBeCloseTo(counts.filter((x) => x > 0).length, 5);
    expect(counts.filter((x) => x === 0).length).toBeGreaterThanOrEqual(6); // int(12·0.5) rows get no mask
  });

  it('is deterministic for a stream key and changes with the iteration', () => {
    const a = collateMasks(rngFor(9, 0, 10, 'masks'), 16, 16, 16, { maxNumPatches: 128 });
    const b = collateMasks(rngFor(9, 0, 10, 'masks'), 16, 16, 16, { maxNumPatches: 128 });
    const c = collateMasks(rngFor(9, 0, 11, 'masks'), 16, 16, 16, { maxNumPatches: 128 });
    expect(b).toEqual(a);
    expect(c.masks).not.toEqual(a.masks);
  });

  it('matches the golden collate-level statistics (1250 batches of 16 rows, 16×16)', () => {
    const golden = JSON.parse(readFileSync(goldenFile('masking_stats.json'), 'utf8')).collate_level;
    const nb = golden.n_batches as number;
    const rng = rngFor(31, 0, 0, 'collate-golden');
    const perBatch: number[] = [];
    const rowFrac: number[] = [];
    const unmaskedAt = new Array<number>(16).fill(0);
    const ub = [38, 51, 64, 76, 89, 102, 115, 128];
    for (let b = 0; b < nb; b++) {
      const c = collateMasks(rng, 16, 16, 16, { maxNumPatches: 128, maskProbability: 0.5, ratioMin: 0.1, ratioMax: 0.5 });
      const counts = Array.from({ length: 16 }, (_, r) => c.masks.subarray(r * 256, (r + 1) * 256).reduce((a, v) => a + v, 0));
      expect(counts.filter((x) => x === 0).length).toBe(8);
      counts.forEach((x, r) => (x === 0 ? unmaskedAt[r]!++ : rowFrac.push(x / 256)));
      // Stratified ratios: the k-th smallest masked count is at most int(256·probs[k+1]).
      const sorted = counts.filter((x) => x > 0).sort((p, q) => p - q);
      sorted.forEach((x, k) => expect(x).toBeLessThanOrEqual(ub[k]!));
      perBatch.push(c.maskIndices.length);
    }
    withinSE(mean(perBatch), std(perBatch), nb, golden.n_masked_patches_per_batch.mean, golden.n_masked_patches_per_batch.std, nb);
    expect(std(perBatch) / golden.n_masked_patches_per_batch.std).toBeGreaterThan(0.85);
    expect(std(perBatch) / golden.n_masked_patches_per_batch.std).toBeLessThan(1.15);
    const rf = golden.masked_row_fraction;
    withinSE(mean(rowFrac), std(rowFrac), rowFrac.length, rf.mean, rf.std, 8 * nb);
    // The shuffle puts the unmasked rows anywhere: each row is unmasked with probability 1/2.
    for (const u of unmaskedAt) expect(Math.abs(u / nb - 0.5)).toBeLessThan(4.5 * Math.sqrt(0.25 / nb));
  });
});
