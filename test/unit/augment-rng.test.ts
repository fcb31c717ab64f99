import { describe, expect, it } from 'vitest';

import { Rng, rngFor, seedFor } from '../../src/augment/rng.js';
import { mulberry32 } from '../../src/data/phantom.js';

/** An Rng fed a fixed list of uniforms (throws when exhausted), for hand-computed expectations. */
function scripted(values: number[]): Rng {
  let i = 0;
  return new Rng(() => {
    if (i >= values.length) throw new Error('scripted rng exhausted');
    return values[i++] as number;
  });
}

const take = (r: Rng, n: number) => Array.from({ length: n }, () => r.next());

describe('Rng helpers on a scripted source', () => {
  it('uniform is a + (b − a)·u, also for a > b', () => {
    const r = scripted([0.5, 0.25, 0.75]);
    expect(r.uniform(2, 6)).toBe(4);
    expect(r.uniform(-1, 1)).toBe(-0.5);
    expect(r.uniform(4, 0)).toBe(1); // 4 + (0 − 4)·0.75
  });

  it('int(a, b) is inclusive of a, exclusive of b', () => {
    const r = scripted([0, 0.999999, 0.5, 0.3]);
    expect(r.int(3, 7)).toBe(3);
    expect(r.int(3, 7)).toBe(6);
    expect(r.int(0, 5)).toBe(2); // floor(2.5)
    expect(r.int(-2, 2)).toBe(-1); // −2 + floor(1.2)
    expect(() => r.int(2, 2)).toThrow(RangeError);
    expect(() => r.int(0, 1.5)).toThrow(RangeError);
  });

  it('bernoulli is u < p', () => {
    const r = scripted([0.3, 0.29, 0, 0.999]);
    expect(r.bernoulli(0.3)).toBe(false);
    expect(r.bernoulli(0.3)).toBe(true);
    expect(r.bernoulli(0)).toBe(false);
    expect(r.bernoulli(1)).toBe(true);
  });

  it('logUniform maps u to exp(log a + u·(log b − log a))', () => {
    const r = scripted([0.5, 0, 1]);
    expect(r.logUniform(0.3, 1 / 0.3)).toBeCloseTo(1, 14); // geometric midpoint
    expect(r.logUniform(2, 8)).toBeCloseTo(2, 14);
    expect(r.logUniform(2, 8)).toBeCloseTo(8, 14);
    expect(() => r.logUniform(0, 1)).toThrow(RangeError);
  });

  it("shuffle follows Python's random.shuffle order (i = n−1..1, j = int(0, i + 1))", () => {
    // i=3: j=floor(0.1·4)=0 → [d,b,c,a]; i=2: j=floor(0.9·3)=2 → unchanged; i=1: j=floor(0.6·2)=1 → unchanged.
    expect(scripted([0.1, 0.9, 0.6]).shuffle(['a', 'b', 'c', 'd'])).toEqual(['d', 'b', 'c', 'a']);
    // i=2: j=floor(0.5·3)=1 → [0,2,1]; i=1: j=floor(0.2·2)=0 → [2,0,1].
    expect(scripted([0.5, 0.2]).permutation(3)).toEqual([2, 0, 1]);
  });

  it('normal is Box–Muller on (1 − u1, u2)', () => {
    const r = scripted([1 - Math.exp(-0.5), 0]); // √(−2 ln e^−0.5)·cos 0 = 1
    expect(r.normal()).toBeCloseTo(1, 12);
  });
});

describe('keyed streams', () => {
  it('feed mulberry32 with seedFor(key) and are reproducible', () => {
    const s = seedFor(7, 1, 42, 'crops', 3);
    expect(Number.isInteger(s) && s >= 0 && s < 2 ** 32).toBe(true);
    const ref = mulberry32(s);
    expect(take(rngFor(7, 1, 42, 'crops', 3), 5)).toEqual([ref(), ref(), ref(), ref(), ref()]);
    expect(take(rngFor(7, 1, 42, 'crops', 3), 20)).toEqual(take(rngFor(7, 1, 42, 'crops', 3), 20));
  });

  it('every key component changes the stream', () => {
    const base = seedFor(0, 0, 0, 'masks');
    const variants = [
      seedFor(1, 0, 0, 'masks'),
      seedFor(-1, 0, 0, 'masks'),
      seedFor(2 ** 32, 0, 0, 'masks'), // differs only in the high word
      seedFor(0, 1, 0, 'masks'),
      seedFor(0, 0, 1, 'masks'),
      seedFor(0, 0, 0, 'crops'),
      seedFor(0, 0, 0, 'masks', 0), // an extra index, even 0
      seedFor(0, 1, 0, 'masks', 0),
    ];
    expect(new Set([base, ...variants]).size).toBe(variants.length + 1);
    // Swapping rank and iteration is a different key.
    expect(seedFor(5, 2, 3, 'crops')).not.toBe(seedFor(5, 3, 2, 'crops'));
  });

  it('values of a purpose do not depend on the call order across purposes', () => {
    const draw = (order: string[]) => {
      const streams = new Map(order.map((p) => [p, rngFor(3, 0, 9, p)] as const));
      const out: Record<string, number[]> = {};
      for (let round = 0; round < 4; round++) for (const p of order) (out[p] ??= []).push(streams.get(p)!.next());
      return out;
    };
    const a = draw(['crops', 'masks', 'other']);
    const b = draw(['other', 'masks', 'crops']);
    expect(a).toEqual(b);
    // Consuming one stream heavily leaves another untouched.
    const m1 = rngFor(3, 0, 9, 'masks').next();
    take(rngFor(3, 0, 9, 'crops'), 1000);
    expect(rngFor(3, 0, 9, 'masks').next()).toBe(m1);
  });

  it('rejects keys that are not safe non-negative integers', () => {
    expect(() => seedFor(0, -1, 0, 'x')).toThrow(RangeError);
    expect(() => seedFor(0, 0, 1.5, 'x')).toThrow(RangeError);
    expect(() => seedFor(0, 0, 0, 'x', -2)).toThrow(RangeError);
    expect(() => seedFor(2 ** 53, 0, 0, 'x')).toThrow(RangeError);
  });

  it('mixes well: neighbouring iterations flip about half of the seed bits', () => {
    let bits = 0;
    const n = 2000;
    for (let it = 0; it < n; it++) {
      let x = (seedFor(0, 0, it, 'crops') ^ seedFor(0, 0, it + 1, 'crops')) >>> 0;
      while (x) {
        bits += x & 1;
        x >>>= 1;
      }
    }
    // Binomial(32·2000, 1/2): mean 16 per pair, SE of the mean ≈ 2.83/√2000 = 0.063.
    expect(Math.abs(bits / n - 16)).toBeLessThan(0.3);
  });

  it('streams of consecutive iterations are uncorrelated and uniform', () => {
    const n = 20000;
    const first: number[] = [];
    const second: number[] = [];
    for (let it = 0; it < n; it++) {
      first.push(rngFor(11, 0, it, 'crops').next());
      second.push(rngFor(11, 0, it + 1, 'crops').next());
    }
    const mean = first.reduce((a, v) => a + v, 0) / n;
    expect(Math.abs(mean - 0.5)).toBeLessThan(4 * Math.sqrt(1 / 12 / n));
    let cov = 0;
    for (let i = 0; i < n; i++) cov += (first[i]! - 0.5) * (second[i]! - 0.5);
    const corr = cov / n / (1 / 12);
    expect(Math.abs(corr)).toBeLessThan(4 / Math.sqrt(n));
    // Deciles are equally filled (χ² with 9 d.o.f.; 27.9 is the 0.999 quantile).
    const bins = new Array<number>(10).fill(0);
    for (const v of first) bins[Math.floor(v * 10)]!++;
    const chi2 = bins.reduce((a, c) => a + (c - n / 10) ** 2 / (n / 10), 0);
    expect(chi2).toBeLessThan(27.9);
  });

  it('normal() has mean 0 and variance 1; int() is uniform', () => {
    const r = rngFor(1, 0, 0, 'test');
    const n = 40000;
    let s = 0;
    let s2 = 0;
    for (let i = 0; i < n; i++) {
      const z = r.normal();
      s += z;
      s2 += z * z;
    }
    expect(Math.abs(s / n)).toBeLessThan(4 / Math.sqrt(n));
    expect(Math.abs(s2 / n - 1)).toBeLessThan(4 * Math.sqrt(2 / n));
    const counts = new Array<number>(7).fill(0);
    for (let i = 0; i < 7000; i++) counts[r.int(0, 7)]!++;
    const chi2 = counts.reduce((a, c) => a + (c - 1000) ** 2 / 1000, 0);
    expect(chi2).toBeLessThan(22.5); // χ² 6 d.o.f., 0.999 quantile
  });
});
