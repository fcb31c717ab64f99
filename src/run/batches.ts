/**
 * Global batches and this rank's part of them, shared by the trainers that cut an epoch's order into batches
 * (full fine-tuning, segmentation), plus packing decoded planes for the native augmenter.
 *
 * Global batch b of an epoch is order[b·G … (b+1)·G) with G = batch per rank × W. Rank r takes the r-th of W
 * contiguous, disjoint, near-equal slices of it, so every image is seen once per epoch and W ranks × b images see
 * what one process × W·b sees; a rank's slice is empty when fewer images than ranks are left.
 */
import { share } from '../distributed/shard.js';

export interface BatchShare {
  /** This rank's indices into the dataset (empty when its slice is empty). */
  idx: number[];
  /** Position of its first image in the global batch (keys per-image random streams). */
  first: number;
  /** Images in the whole global batch. */
  size: number;
}

/** Global batches of `n` images at `G` per step: ⌈n / G⌉. */
export const stepsPerEpoch = (n: number, G: number): number => Math.ceil(n / G);

/** This rank's share of global batch `b` of `order`. */
export function batchShare(order: readonly number[], b: number, G: number, rank: number, world: number): BatchShare {
  const lo = b * G;
  const size = Math.min(order.length, lo + G) - lo;
  const [x, y] = share(size, rank, world);
  return { idx: order.slice(lo + x, lo + y), first: x, size };
}

/** The gray planes of decoded images, back to back (the native augmenter reads them with their sizes). */
export function packPlanes(images: ReadonlyArray<{ data: Uint8Array; height: number; width: number }>): { planes: Uint8Array; sizes: number[] } {
  const planes = new Uint8Array(images.reduce((n, im) => n + im.data.length, 0));
  let off = 0;
  for (const im of images) {
    planes.set(im.data, off);
    off += im.data.length;
  }
  return { planes, sizes: images.flatMap((im) => [im.height, im.width]) };
}

/** Runs at most `n` of the given async jobs at once. */
export function limiter(n: number) {
  let active = 0;
  const waiting: Array<() => void> = [];
  return async <T>(job: () => Promise<T>): Promise<T> => {
    if (active >= n) await new Promise<void>((resolve) => waiting.push(resolve));
    active++;
    try {
      return await job();
    } finally {
      active--;
      waiting.shift()?.();
    }
  };
}
