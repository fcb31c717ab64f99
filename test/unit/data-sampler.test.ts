import { describe, expect, it } from 'vitest';

import { globalPermutation, shardIndices } from '../../src/data/manifest.js';
import { hashSeed, mulberry32, shuffleInPlace } from '../../src/data/random.js';

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const sorted = (a: number[]) => [...a].sort((x, y) => x - y);

describe('shardIndices (DINOv2 sharded infinite sampler, one pass at a time)', () => {
  it('covers every index exactly once per pass across ranks when the world size divides n', () => {
    for (const [n, world] of [[12, 3], [100, 4], [7, 1], [64, 8]] as const) {
      for (const pass of [0, 1, 5]) {
        const all = range(world).flatMap((r) => shardIndices(n, r, world, 42, pass));
        expect(sorted(all)).toEqual(range(n));
        for (let r = 0; r < world; r++) expect(shardIndices(n, r, world, 42, pass)).toHaveLength(n / world);
      }
    }
  });

  it('drops the same n mod W permuted indices every pass (upstream count = floor(n / W))', () => {
    const n = 10;
    const world = 4;
    const perm = globalPermutation(n, 3);
    const dropped = sorted(perm.slice(8));
    for (const pass of [0, 1, 2]) {
      const all = range(world).flatMap((r) => shardIndices(n, r, world, 3, pass));
      expect(all).toHaveLength(8);
      expect(new Set(all).size).toBe(8);
      expect(sorted(range(n).filter((i) => !all.includes(i)))).toEqual(dropped);
    }
  });

  it('gives rank r the strided slice perm[r::W] of one global permutation, reshuffled per pass', () => {
    const n = 50;
    const world = 5;
    const perm = globalPermutation(n, 9);
    expect(sorted(perm)).toEqual(range(n));
    for (let r = 0; r < world; r++) {
      const slice = range(n / world).map((i) => perm[r + i * world] as number);
      const p0 = shardIndices(n, r, world, 9, 0);
      const p1 = shardIndices(n, r, world, 9, 1);
      expect(sorted(p0)).toEqual(sorted(slice));
      expect(sorted(p1)).toEqual(sorted(slice));
      expect(p0).not.toEqual(p1);
    }
  });

  it('reshuffles with the re-seed seed + rank + (pass << 24): an inside-out Fisher-Yates from mulberry32', () => {
    // Independent re-implementation of the documented construction for rank 1, pass 2.
    const n = 20;
    const world = 2;
    const perm = shuffleInPlace(range(n), mulberry32(hashSeed(5)));
    const rnd = mulberry32(hashSeed(5 + 1 + 2 * 2 ** 24));
    const out: number[] = [];
    for (let i = 0; i < n / world; i++) {
      const j = Math.floor(rnd() * (i + 1));
      out[i] = out[j] as number;
      out[j] = perm[1 + i * world] as number;
    }
    expect(shardIndices(n, 1, world, 5, 2)).toEqual(out);
  });

  it('is deterministic, depends on the seed, and does not wrap at pass 256 (a 32-bit pass << 24 would)', () => {
    expect(shardIndices(30, 1, 3, 7, 4)).toEqual(shardIndices(30, 1, 3, 7, 4));
    expect(globalPermutation(30, 7)).not.toEqual(globalPermutation(30, 8));
    expect(shardIndices(300, 0, 1, 7, 256)).not.toEqual(shardIndices(300, 0, 1, 7, 0));
    const passes = range(6).map((p) => shardIndices(40, 0, 2, 1, p).join(','));
    expect(new Set(passes).size).toBe(6);
  });

  it('validates its arguments', () => {
    expect(() => shardIndices(10, 2, 2, 0, 0)).toThrow(/rank 2 out of range for world size 2 \(0\.\.1\)/);
    expect(() => shardIndices(3, 0, 4, 0, 0)).toThrow(/3 samples cannot be sharded over 4 ranks/);
    expect(() => shardIndices(10, 0, 2, 0, -1)).toThrow(/integer pass >= 0, got -1/);
    expect(() => shardIndices(10, 0, 2, 0.5, 0)).toThrow(/integer seed, got 0\.5/);
    expect(() => shardIndices(0, 0, 1, 0, 0)).toThrow(/integer n >= 1, got 0/);
  });
});

describe('hashSeed', () => {
  it('separates values that collide modulo 2^32 and orders of parts', () => {
    expect(hashSeed(1)).not.toBe(hashSeed(1 + 2 ** 32));
    expect(hashSeed(1, 2)).not.toBe(hashSeed(2, 1));
    expect(hashSeed(-1)).not.toBe(hashSeed(2 ** 32 - 1));
    expect(hashSeed(3, 4)).toBe(hashSeed(3, 4));
    expect(Number.isInteger(hashSeed(123)) && hashSeed(123) >= 0 && hashSeed(123) < 2 ** 32).toBe(true);
  });
});
