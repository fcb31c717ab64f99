/**
 * The training stream of each rank (src/train/sampler.ts over DINOv2's sharded sampler): what the ranks of a
 * data-parallel run read is disjoint, covers every sample exactly once per pass, reshuffles per pass, and is a
 * function of (seed, rank, world, position) only (so a resumed rank reads what it would have read).
 */
import { describe, expect, it } from 'vitest';
import { IterationSampler } from '../../src/train/sampler.js';

const range = (n: number) => Array.from({ length: n }, (_, i) => i);
const sorted = (a: number[]) => [...a].sort((x, y) => x - y);

describe('IterationSampler across ranks', () => {
  it('ranks read disjoint shards that together cover every sample exactly once per pass', () => {
    for (const [n, world, B] of [[24, 2, 4], [30, 3, 5], [16, 4, 2], [10, 2, 3]] as const) {
      const samplers = range(world).map((r) => new IterationSampler(n, B, 7, r, world));
      const perPass = n / world;
      for (const pass of [0, 1, 2]) {
        const shards = samplers.map((s) => range(perPass).map((j) => s.at(pass * perPass + j)));
        for (let a = 0; a < world; a++) for (let b = a + 1; b < world; b++) expect(shards[a]!.filter((i) => shards[b]!.includes(i))).toEqual([]);
        expect(sorted(shards.flat())).toEqual(range(n));
      }
    }
  });

  it('reshuffles each pass, keeps a rank on its shard, and is reproducible from (seed, rank, world)', () => {
    const s = new IterationSampler(40, 4, 3, 1, 2);
    const p0 = range(20).map((j) => s.at(j));
    const p1 = range(20).map((j) => s.at(20 + j));
    expect(p1).not.toEqual(p0);
    expect(sorted(p1)).toEqual(sorted(p0));
    const again = new IterationSampler(40, 4, 3, 1, 2);
    expect(range(60).map((j) => again.at(59 - j)).reverse()).toEqual(range(60).map((j) => s.at(j)));
    // Another seed or world size gives another stream.
    expect(range(20).map((j) => new IterationSampler(40, 4, 4, 1, 2).at(j))).not.toEqual(p0);
  });

  it('iterations take consecutive stream positions and cross pass boundaries without skipping', () => {
    // 10 samples, 2 ranks: 5 per pass each; batch 3 → iteration 1 reads positions 3, 4 (pass 0) and 5 (pass 1).
    const s = new IterationSampler(10, 3, 0, 0, 2);
    expect(s.positions(1)).toEqual([3, 4, 5]);
    const firstTwoPasses = range(4).flatMap((it) => s.positions(it)).slice(0, 10).map((p) => s.at(p));
    expect(sorted(firstTwoPasses.slice(0, 5))).toEqual(sorted(firstTwoPasses.slice(5, 10)));
    expect(new Set(firstTwoPasses.slice(0, 5)).size).toBe(5);
  });
});
