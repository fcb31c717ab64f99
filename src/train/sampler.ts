/**
 * Which dataset items a rank trains on at an iteration: position p = it·B + j of the rank's infinite stream
 * falls in pass ⌊p / count⌋ of DINOv2's sharded infinite sampler (src/data/sampler.ts). A function of
 * (seed, rank, world, iteration) only, so a resumed run reads exactly what the uninterrupted one read.
 */
import { shardIndices } from '../data/sampler.js';

export class IterationSampler {
  private cache = new Map<number, number[]>();
  readonly perPass: number;

  constructor(
    readonly n: number,
    readonly batchSize: number,
    readonly seed: number,
    readonly rank = 0,
    readonly world = 1,
  ) {
    this.perPass = Math.floor(n / world);
  }

  private pass(p: number): number[] {
    let idx = this.cache.get(p);
    if (!idx) {
      idx = shardIndices(this.n, this.rank, this.world, this.seed, p);
      if (this.cache.size > 4) this.cache.delete(this.cache.keys().next().value as number);
      this.cache.set(p, idx);
    }
    return idx;
  }

  /** Dataset index at stream position `pos` of this rank. */
  at(pos: number): number {
    const p = Math.floor(pos / this.perPass);
    return this.pass(p)[pos - p * this.perPass] as number;
  }

  /** Stream positions of iteration `it`: it·B … it·B + B − 1. */
  positions(it: number): number[] {
    return Array.from({ length: this.batchSize }, (_, j) => it * this.batchSize + j);
  }
}
