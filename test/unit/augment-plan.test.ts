import { describe, expect, it } from 'vitest';

import {
  colorJitterParams,
  cxformerMultiCrop,
  planBatch,
  planImageCrops,
  randomAffineParams,
  randomResizedCrop,
  type CropParams,
  type ImageCrops,
} from '../../src/augment/plan.js';
import { Rng, rngFor } from '../../src/augment/rng.js';

/** An Rng fed a fixed list of uniforms (throws when exhausted), for hand-computed expectations. */
function scripted(values: number[]): Rng {
  let i = 0;
  return new Rng(() => {
    if (i >= values.length) throw new Error('scripted rng exhausted');
    return values[i++] as number;
  });
}

const mean = (xs: number[]) => xs.reduce((a, v) => a + v, 0) / xs.length;
const std = (xs: number[]) => {
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, v) => a + (v - m) ** 2, 0) / (xs.length - 1));
};
/** A frequency within 4 binomial standard errors of p. */
const freq = (flags: boolean[], p: number) =>
  expect(Math.abs(flags.filter(Boolean).length / flags.length - p)).toBeLessThanOrEqual(4 * Math.sqrt((p * (1 - p)) / flags.length) + 1e-12);

/**
 * Mean area fraction of a RandomResizedCrop box, by numerical integration (independent of the sampler): a try
 * (s ~ U(lo, hi), log r ~ U(−L, L)) is accepted iff s·r ≤ ρ and s/r ≤ 1/ρ with ρ = W/H, i.e. log r lies in
 * [log ρ + log s, log ρ − log s]; the accepted s has density ∝ P(accept | s). (Rounding of w, h ignored.)
 */
function expectedAreaFraction(lo: number, hi: number, rho: number, ratio = [3 / 4, 4 / 3]): number {
  const [a, b] = [Math.log(ratio[0]!), Math.log(ratio[1]!)];
  const accept = (s: number) => Math.max(0, Math.min(b, Math.log(rho) - Math.log(s)) - Math.max(a, Math.log(rho) + Math.log(s))) / (b - a);
  let num = 0;
  let den = 0;
  const n = 20000; // midpoint rule
  for (let k = 0; k < n; k++) {
    const s = lo + ((k + 0.5) / n) * (hi - lo);
    num += s * accept(s);
    den += accept(s);
  }
  return num / den;
}

describe('randomResizedCrop (torchvision get_params)', () => {
  it('rejects boxes that do not fit, then draws top before left', () => {
    // H = 100, W = 200. Try 1: area = 20000·U(0.32, 1)(u = 0.5) = 13200, aspect 1 → 115 × 115 > H → rejected.
    // Try 2: area = 6400 (u = 0), aspect 1 → 80 × 80; top = floor(0.5·21) = 10, left = floor(0.25·121) = 30.
    const box = randomResizedCrop(scripted([0.5, 0.5, 0, 0.5, 0.5, 0.25]), 100, 200, [0.32, 1]);
    expect(box).toEqual({ top: 10, left: 30, height: 80, width: 80 });
  });

  it('uses w = round(√(area·r)), h = round(√(area/r)) with the log-uniform ratio', () => {
    // u = 1 − 1e-12 → r ≈ 4/3; area = 0.5·100·100 = 5000: w = round(81.65) = 82, h = round(61.24) = 61.
    const box = randomResizedCrop(scripted([0.5, 1 - 1e-12, 0, 0.999999]), 100, 100, [0, 1]);
    expect(box).toEqual({ top: 0, left: 18, height: 61, width: 82 }); // left = floor(0.999999·19)
  });

  it('accepts a box exactly as tall as the image (0 < h ≤ H)', () => {
    // 100 × 120, area = 11000 (scale fixed), aspect ≈ 1.1: w = round(√12100) = 110, h = round(√10000) = 100 = H.
    // The fallback would be centred instead (ratio clamped to 1.1: left = 5).
    const box = randomResizedCrop(scripted([0, 1 - 1e-12, 0, 0]), 100, 120, [11000 / 12000, 11000 / 12000], [1, 1.1]);
    expect(box).toEqual({ top: 0, left: 0, height: 100, width: 110 });
  });

  it('falls back to a centred crop with the aspect clamped into the ratio range', () => {
    const fail = new Array<number>(20).fill(0.5); // area 1·H·W, aspect 1: never fits a 10:1 image
    // Too wide (W/H = 10 > 4/3): h = H, w = round(100·4/3) = 133, left = (1000 − 133)//2 = 433.
    expect(randomResizedCrop(scripted(fail), 100, 1000, [1, 1])).toEqual({ top: 0, left: 433, height: 100, width: 133 });
    // Too tall: w = W, h = round(100/(3/4)) = 133, top = 433.
    expect(randomResizedCrop(scripted(fail), 1000, 100, [1, 1])).toEqual({ top: 433, left: 0, height: 133, width: 100 });
    // In range but never accepted (scale > 1): the whole image.
    expect(randomResizedCrop(scripted(fail), 90, 100, [1.5, 1.5])).toEqual({ top: 0, left: 0, height: 90, width: 100 });
    // A 10 × 1000 strip can never hold a box with ratio ≤ 4/3 and area ≥ 0.32·10⁴: always the fallback.
    const rng = rngFor(0, 0, 0, 'test');
    for (let k = 0; k < 20; k++) expect(randomResizedCrop(rng, 10, 1000, [0.32, 1])).toEqual({ top: 0, left: 493, height: 10, width: 13 });
  });

  it('boxes lie inside the image with area and ratio in range; mean area matches the acceptance integral', () => {
    const rng = rngFor(1, 0, 0, 'rrc');
    const [H, W] = [400, 500];
    for (const [lo, hi] of [
      [0.32, 1],
      [0.05, 0.32],
    ] as const) {
      const area: number[] = [];
      const centreY: number[] = [];
      const centreX: number[] = [];
      for (let k = 0; k < 6000; k++) {
        const b = randomResizedCrop(rng, H, W, [lo, hi]);
        expect(b.top).toBeGreaterThanOrEqual(0);
        expect(b.left).toBeGreaterThanOrEqual(0);
        expect(b.top + b.height).toBeLessThanOrEqual(H);
        expect(b.left + b.width).toBeLessThanOrEqual(W);
        // Rounding moves each side by ≤ 0.5 px.
        const r = b.width / b.height;
        expect(r).toBeGreaterThanOrEqual((3 / 4) * (1 - 1 / b.height) - 1e-9);
        expect(r).toBeLessThanOrEqual((4 / 3) * (1 + 1 / b.height) + 1e-9);
        const f = (b.width * b.height) / (H * W);
        expect(f).toBeGreaterThanOrEqual(lo * (1 - 1 / Math.min(b.width, b.height)));
        expect(f).toBeLessThanOrEqual(hi * (1 + 1 / Math.min(b.width, b.height)));
        area.push(f);
        centreY.push(b.top + b.height / 2);
        centreX.push(b.left + b.width / 2);
      }
      const expected = expectedAreaFraction(lo, hi, W / H);
      expect(Math.abs(mean(area) - expected)).toBeLessThan(4 * (std(area) / Math.sqrt(area.length)) + 5e-4);
      // Positions are uniform, so box centres average to the image centre.
      expect(Math.abs(mean(centreY) - H / 2)).toBeLessThan(4 * (std(centreY) / Math.sqrt(6000)));
      expect(Math.abs(mean(centreX) - W / 2)).toBeLessThan(4 * (std(centreX) / Math.sqrt(6000)));
    }
    // Sanity of the integral itself: every local try is accepted (s ≤ 0.32 < 3/4), so the mean is (0.05 + 0.32)/2.
    expect(expectedAreaFraction(0.05, 0.32, 1)).toBeCloseTo(0.185, 6);
    // Globals on a square image: tries with s > 3/4 are partly rejected, so the mean is below (0.32 + 1)/2.
    expect(expectedAreaFraction(0.32, 1, 1)).toBeLessThan(0.64);
  });
});

describe('randomAffineParams (torchvision RandomAffine.get_params)', () => {
  it('draws angle, tx (from the width), ty (from the height), scale in that order', () => {
    const opts = { degrees: 20, translate: [0.1, 0.1] as [number, number], scale: [0.8, 1.2] as [number, number] };
    // angle −20 + 40·0.75 = 10; tx = round(−51.8 + 103.6·0.1) = round(−41.44) = −41; ty = round(−30 + 60·0.9) = 24;
    // scale 0.8 + 0.4·0.25 = 0.9.
    const a = randomAffineParams(scripted([0.75, 0.1, 0.9, 0.25]), opts, [518, 300]);
    expect(a.angle).toBeCloseTo(10, 12);
    expect(a.translate).toEqual([-41, 24]);
    expect(a.scale).toBeCloseTo(0.9, 12);
  });

  it("rounds translations like Python's round (half to even)", () => {
    // max 0.1·50 = 5: −5 + 10·0.75 = 2.5 → 2, −5 + 10·0.25 = −2.5 → −2, −5 + 10·0.35 = −1.5 → −2.
    const opts = { degrees: 0, translate: [0.1, 0.1] as [number, number], scale: [1, 1] as [number, number] };
    expect(randomAffineParams(scripted([0, 0.75, 0.25, 0]), opts, 50).translate).toEqual([2, -2]);
    expect(randomAffineParams(scripted([0, 0.35, 0.85, 0]), opts, 50).translate).toEqual([-2, 4]); // 3.5 → 4
  });
});

describe('colorJitterParams (torchvision ColorJitter.get_params)', () => {
  it('draws a permutation, then brightness, contrast, saturation, hue factors', () => {
    // randperm via Python-order Fisher–Yates: u 0.1, 0.9, 0.6 → [3, 1, 2, 0].
    const j = colorJitterParams(scripted([0.1, 0.9, 0.6, 0, 0.5, 0.75, 0.25]));
    expect(j.order).toEqual([3, 1, 2, 0]);
    expect(j.brightness).toBeCloseTo(0.6, 12); // U(0.6, 1.4) at 0
    expect(j.contrast).toBeCloseTo(1.0, 12); // at 0.5
    expect(j.saturation).toBeCloseTo(1.1, 12); // U(0.8, 1.2) at 0.75
    expect(j.hue).toBeCloseTo(-0.05, 12); // U(−0.1, 0.1) at 0.25
    // Strength ≥ 1 clamps the lower factor at 0: U(0, 2).
    const k = colorJitterParams(scripted([0, 0, 0, 0, 0, 0, 0]), { brightness: 1.5, contrast: 1, saturation: 0, hue: 0 });
    expect([k.brightness, k.contrast, k.saturation, k.hue]).toEqual([0, 0, 1, 0]);
  });
});

describe('planImageCrops: CXformer multi-crop statistics', () => {
  const n = 3000;
  const plans: ImageCrops[] = Array.from({ length: n }, (_, k) => planImageCrops(rngFor(3, 0, k, 'crops'), 512, 640));
  const g1 = plans.map((p) => p.globals[0]!);
  const g2 = plans.map((p) => p.globals[1]!);
  const locals = plans.flatMap((p) => p.locals);

  it('has 2 globals and 8 locals per image, boxes inside the image', () => {
    for (const p of plans) {
      expect(p.globals.length).toBe(2);
      expect(p.locals.length).toBe(8);
      for (const c of [...p.globals, ...p.locals]) {
        const [t, l, h, w] = c.box;
        expect(t >= 0 && l >= 0 && h > 0 && w > 0 && t + h <= 512 && l + w <= 640).toBe(true);
      }
    }
  });

  it('global and local area fractions follow their scale ranges', () => {
    const frac = (cs: CropParams[]) => cs.map((c) => (c.box[2] * c.box[3]) / (512 * 640));
    for (const [cs, lo, hi] of [
      [g1, 0.32, 1],
      [g2, 0.32, 1],
      [locals, 0.05, 0.32],
    ] as const) {
      const f = frac(cs);
      expect(Math.min(...f)).toBeGreaterThan(lo * 0.99);
      expect(Math.max(...f)).toBeLessThan(hi * 1.01);
      expect(Math.abs(mean(f) - expectedAreaFraction(lo, hi, 640 / 512))).toBeLessThan(4 * (std(f) / Math.sqrt(f.length)) + 5e-4);
    }
  });

  it('blur and solarize use the effective reference probabilities per crop type', () => {
    expect(g1.every((c) => c.blurSigma === null)).toBe(true); // nominal p 1.0 → effective 0
    expect(g1.every((c) => !c.solarize)).toBe(true);
    freq(g2.map((c) => c.blurSigma !== null), 0.9); // nominal 0.1 → 0.9
    freq(g2.map((c) => c.solarize), 0.2);
    freq(locals.map((c) => c.blurSigma !== null), 0.5);
    expect(locals.every((c) => !c.solarize)).toBe(true);
    const sigmas = [...g2, ...locals].flatMap((c) => (c.blurSigma === null ? [] : [c.blurSigma]));
    expect(Math.min(...sigmas)).toBeGreaterThanOrEqual(0.1);
    expect(Math.max(...sigmas)).toBeLessThan(2.0);
    expect(Math.abs(mean(sigmas) - 1.05)).toBeLessThan(4 * (1.9 / Math.sqrt(12) / Math.sqrt(sigmas.length)));
  });

  it('flip 0.5, jitter 0.8 and grayscale 0.2 on every crop type', () => {
    for (const cs of [g1, g2, locals]) {
      freq(cs.map((c) => c.flip), 0.5);
      freq(cs.map((c) => c.jitter !== null), 0.8);
      freq(cs.map((c) => c.grayscale), 0.2);
    }
  });

  it('jitter factors lie in the torchvision ranges and all 24 op orders are equally likely', () => {
    const js = [...g1, ...g2, ...locals].flatMap((c) => (c.jitter ? [c.jitter] : []));
    const counts = new Map<string, number>();
    for (const j of js) {
      expect([...j.order].sort()).toEqual([0, 1, 2, 3]);
      expect(j.brightness >= 0.6 && j.brightness <= 1.4 && j.contrast >= 0.6 && j.contrast <= 1.4).toBe(true);
      expect(j.saturation >= 0.8 && j.saturation <= 1.2 && Math.abs(j.hue) <= 0.1).toBe(true);
      counts.set(j.order.join(''), (counts.get(j.order.join('')) ?? 0) + 1);
    }
    expect(counts.size).toBe(24);
    const e = js.length / 24;
    const chi2 = [...counts.values()].reduce((a, c) => a + (c - e) ** 2 / e, 0);
    expect(chi2).toBeLessThan(49.7); // χ² 23 d.o.f., 0.999 quantile
  });

  it('affine on globals only, with angle ±20°, translation ±round(51.8) px and scale 0.8–1.2', () => {
    expect(locals.every((c) => c.affine === null)).toBe(true);
    const as = [...g1, ...g2].map((c) => c.affine!);
    expect(as.every((a) => a !== null)).toBe(true);
    const angles = as.map((a) => a.angle);
    expect(Math.min(...angles)).toBeGreaterThanOrEqual(-20);
    expect(Math.max(...angles)).toBeLessThanOrEqual(20);
    expect(Math.abs(mean(angles))).toBeLessThan(4 * Math.sqrt(400 / 3 / angles.length));
    expect(Math.abs(std(angles) ** 2 / (400 / 3) - 1)).toBeLessThan(0.06);
    const t = as.flatMap((a) => a.translate);
    expect(t.every((v) => Number.isInteger(v) && Math.abs(v) <= 52)).toBe(true);
    expect(t.some((v) => Math.abs(v) === 52)).toBe(true); // round(±51.8) reaches ±52
    expect(as.every((a) => a.scale >= 0.8 && a.scale <= 1.2)).toBe(true);
    // Without affine in the config, globals carry none.
    expect(planImageCrops(rngFor(0, 0, 0, 'crops'), 512, 512, { ...cxformerMultiCrop, affine: false }).globals.every((c) => c.affine === null)).toBe(true);
  });

  it('rejects unsupported global-crop counts and honours nGlobal = 1 and nLocal', () => {
    const one = planImageCrops(rngFor(0, 0, 0, 'crops'), 300, 300, { ...cxformerMultiCrop, nGlobal: 1, nLocal: 3 });
    expect(one.globals.length).toBe(1);
    expect(one.globals[0]!.solarize).toBe(false);
    expect(one.globals[0]!.blurSigma).toBeNull();
    expect(one.locals.length).toBe(3);
    expect(() => planImageCrops(rngFor(0, 0, 0, 'crops'), 300, 300, { ...cxformerMultiCrop, nGlobal: 3 })).toThrow(RangeError);
  });
});

describe('planBatch', () => {
  const sizes: Array<[number, number]> = [
    [512, 512],
    [400, 600],
    [700, 300],
  ];

  it('is deterministic for (seed, rank, iteration) and JSON-serialisable with the executor field names', () => {
    const a = planBatch(42, 0, 100, sizes);
    expect(planBatch(42, 0, 100, sizes)).toEqual(a);
    expect(JSON.parse(JSON.stringify(a))).toEqual(a);
    const c = a[0]!.globals[0]!;
    expect(Object.keys(c).sort()).toEqual(['affine', 'blurSigma', 'box', 'flip', 'grayscale', 'jitter', 'solarize']);
    expect(Object.keys(c.affine!).sort()).toEqual(['angle', 'scale', 'translate']);
  });

  it('differs across iterations, ranks and seeds, and does not depend on the order of computation', () => {
    const later = planBatch(42, 0, 101, sizes);
    const base = planBatch(42, 0, 100, sizes);
    expect(later).not.toEqual(base);
    expect(planBatch(42, 1, 100, sizes)).not.toEqual(base);
    expect(planBatch(43, 0, 100, sizes)).not.toEqual(base);
    expect(planBatch(42, 0, 101, sizes)).toEqual(later); // computed after iteration 100 and again after others
  });

  it("an image's plan depends only on its own index and size", () => {
    const full = planBatch(7, 2, 9, sizes);
    expect(planBatch(7, 2, 9, [sizes[0]!])[0]).toEqual(full[0]);
    expect(planBatch(7, 2, 9, [sizes[0]!, [100, 100], sizes[2]!])[2]).toEqual(full[2]);
    expect(full[1]).toEqual(planImageCrops(rngFor(7, 2, 9, 'crops', 1), 400, 600, cxformerMultiCrop));
    // Different images of a batch get different crops even at the same size.
    const same = planBatch(7, 2, 9, [
      [512, 512],
      [512, 512],
    ]);
    expect(same[0]).not.toEqual(same[1]);
  });
});
