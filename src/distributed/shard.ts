/**
 * How a data-parallel run cuts work into per-rank shares (used by `finetune --mode full` and
 * `finetune --task segmentation`, docs/distributed.md).
 */

/** Rank r's contiguous share lo..hi − 1 of n items over W ranks (near-equal; empty when n < W for some ranks). */
export function share(n: number, r: number, W: number): [number, number] {
  return [Math.floor((r * n) / W), Math.floor(((r + 1) * n) / W)];
}
