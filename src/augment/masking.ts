/**
 * iBOT block masking (docs/recipe.md §3.6): DINOv2's `MaskingGenerator` (dinov2/data/masking.py) and the mask part of
 * `collate_data_and_cast` (dinov2/data/collate.py), driven by a seeded `Rng` instead of Python's `random`.
 */
import { pyRound, torchLinspaceF32 } from './pymath.js';
import type { Rng } from './rng.js';

export interface BlockMaskOptions {
  /** Smallest block area drawn. @default 4 */
  minNumPatches?: number;
  /** Largest number of new cells per block. @default numMasking (the reference's `max_num_patches = None`) */
  maxNumPatches?: number;
  /** @default 0.3 */
  minAspect?: number;
  /** @default 1 / minAspect */
  maxAspect?: number;
}

export interface BlockMaskResult {
  /** gridH·gridW cells, row-major, 1 = masked. */
  mask: Uint8Array;
  /** Number of masked cells (≤ the request). */
  count: number;
  /** Number of rectangles placed (successful `_mask` calls). */
  placements: number;
}

/**
 * `MaskingGenerator(input_size=(gridH, gridW), ...)(numMasking)` with its statistics. While masked < target:
 * budget = min(target − masked, maxNumPatches); up to 10 tries of area ~ U(minNumPatches, budget) (Python's
 * a + (b − a)·u, so budget < min works), aspect = exp(U(log minAspect, log maxAspect)), h = round(√(area·aspect)),
 * w = round(√(area/aspect)) (Python round, ties to even); if h < gridH and w < gridW: top ∈ [0, gridH − h],
 * left ∈ [0, gridW − w] uniform, and the rectangle is marked if 0 < (new cells) ≤ budget; the tries end at the
 * first rectangle that adds cells. If a whole call adds nothing, generation stops short of the target.
 */
export function generateBlockMask(rng: Rng, gridH: number, gridW: number, numMasking: number, opts: BlockMaskOptions = {}): BlockMaskResult {
  for (const [name, v] of [['gridH', gridH], ['gridW', gridW]] as const) {
    if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`blockMask: ${name} must be a positive integer, got ${v}`);
  }
  if (!Number.isSafeInteger(numMasking) || numMasking < 0) {
    throw new RangeError(`blockMask: numMasking must be an integer ≥ 0, got ${numMasking}`);
  }
  const minNum = opts.minNumPatches ?? 4;
  const maxNum = opts.maxNumPatches ?? numMasking;
  const minAspect = opts.minAspect ?? 0.3;
  const logAspect: [number, number] = [Math.log(minAspect), Math.log(opts.maxAspect ?? 1 / minAspect)];
  const mask = new Uint8Array(gridH * gridW);
  let count = 0;
  let placements = 0;

  // One `_mask` call: returns the number of newly masked cells (0 if all 10 tries failed).
  const placeBlock = (budget: number): number => {
    let delta = 0;
    for (let attempt = 0; attempt < 10; attempt++) {
      const area = rng.uniform(minNum, budget);
      const aspect = Math.exp(rng.uniform(logAspect[0], logAspect[1]));
      const h = pyRound(Math.sqrt(area * aspect));
      const w = pyRound(Math.sqrt(area / aspect));
      if (w < gridW && h < gridH) {
        const top = rng.int(0, gridH - h + 1);
        const left = rng.int(0, gridW - w + 1);
        let already = 0;
        for (let i = top; i < top + h; i++) for (let j = left; j < left + w; j++) already += mask[i * gridW + j] as number;
        const fresh = h * w - already;
        if (fresh > 0 && fresh <= budget) {
          for (let i = top; i < top + h; i++) for (let j = left; j < left + w; j++) mask[i * gridW + j] = 1;
          delta += fresh;
        }
      }
      if (delta > 0) break;
    }
    return delta;
  };

  while (count < numMasking) {
    const delta = placeBlock(Math.min(numMasking - count, maxNum));
    if (delta === 0) break;
    count += delta;
    placements++;
  }
  return { mask, count, placements };
}

/** The block mask alone (see `generateBlockMask`): Uint8Array(gridH·gridW), row-major, 1 = masked. */
export function blockMask(rng: Rng, gridH: number, gridW: number, numMasking: number, opts: BlockMaskOptions = {}): Uint8Array {
  return generateBlockMask(rng, gridH, gridW, numMasking, opts).mask;
}

/**
 * The reference's default block-size cap: `max_num_patches = 0.5 * img_size // patch_size * img_size // patch_size`,
 * which Python evaluates left to right as ((0.5·S)//p · S)//p. This equals N/2 only for 224/14 (128); it is
 * 666 for 518/14 (N = 1369) and 21 for 98/14 (docs/recipe.md §7.6). Keep it a config value; this is its default.
 */
export { referenceMaxMaskPatches as defaultMaxMaskPatches } from '../config/pretrain-derive.js';

export interface CollateMaskOptions {
  /** Fraction of the images that get a mask. @default 0.5 */
  maskProbability?: number;
  /** @default 0.1 */
  ratioMin?: number;
  /** @default 0.5 */
  ratioMax?: number;
  /** Block-size cap of the generator; required because the reference derives it from the crop size, use
   *  `defaultMaxMaskPatches(globalSize, patch)` for its value (666 for 518/14). */
  maxNumPatches: number;
  /** @default 4 */
  minNumPatches?: number;
}

export interface CollatedMasks {
  /** nImages·N cells (N = gridH·gridW): row r = global-crop row r of the batch, cells row-major. */
  masks: Uint8Array;
  /** Flat indices (into `masks`) of the masked cells, ascending (`collated_masks.flatten().nonzero()`). */
  maskIndices: Int32Array;
  /** Per masked index: 1 / max(1, masked cells of its image) (float32 as in the reference). */
  weights: Float32Array;
  /** Σ int(N·probs[i+1]) over the masked images: a static bound on maskIndices.length. */
  upperBound: number;
}

/**
 * The masks of `collate_data_and_cast` for `nImages` global-crop rows (2B per GPU): n = int(nImages·maskProbability);
 * probs = torch.linspace(ratioMin, ratioMax, n + 1) (float32); row i < n gets a block mask with target
 * int(N·U(probs[i], probs[i+1])), the others none; then the list of masks is shuffled (Python's random.shuffle order).
 * The ratio arithmetic is float32 as in the reference, where the bounds are float32 tensors (Math.fround emulates it).
 */
export function collateMasks(rng: Rng, nImages: number, gridH: number, gridW: number, opts: CollateMaskOptions): CollatedMasks {
  if (!Number.isSafeInteger(nImages) || nImages < 0) throw new RangeError(`collateMasks: nImages must be an integer ≥ 0, got ${nImages}`);
  if (!Number.isSafeInteger(gridH) || !Number.isSafeInteger(gridW) || gridH < 1 || gridW < 1) {
    throw new RangeError(`collateMasks: grid must be positive integers, got ${gridH}×${gridW}`);
  }
  const f = Math.fround;
  const N = gridH * gridW;
  const nMasked = Math.trunc(nImages * (opts.maskProbability ?? 0.5));
  const probs = torchLinspaceF32(opts.ratioMin ?? 0.1, opts.ratioMax ?? 0.5, nMasked + 1);
  const genOpts: BlockMaskOptions = { maxNumPatches: opts.maxNumPatches, minNumPatches: opts.minNumPatches ?? 4 };
  const list: Uint8Array[] = [];
  let upperBound = 0;
  for (let i = 0; i < nMasked; i++) {
    const lo = probs[i] as number;
    const hi = probs[i + 1] as number;
    const ratio = f(lo + f(f(hi - lo) * f(rng.next()))); // random.uniform(lo, hi) on float32 tensors
    list.push(blockMask(rng, gridH, gridW, Math.trunc(f(N * ratio)), genOpts));
    upperBound += Math.trunc(f(N * hi));
  }
  for (let i = nMasked; i < nImages; i++) list.push(new Uint8Array(N));
  rng.shuffle(list);

  const masks = new Uint8Array(nImages * N);
  const counts = list.map((m, r) => {
    masks.set(m, r * N);
    return m.reduce((a, v) => a + v, 0);
  });
  const total = counts.reduce((a, c) => a + c, 0);
  const maskIndices = new Int32Array(total);
  const weights = new Float32Array(total);
  let k = 0;
  for (let idx = 0; idx < masks.length; idx++) {
    if (masks[idx] === 1) {
      maskIndices[k] = idx;
      weights[k] = 1 / Math.max(1, counts[Math.floor(idx / N)] as number);
      k++;
    }
  }
  return { masks, maskIndices, weights, upperBound };
}
