/**
 * The captioner's visual memory from a frozen backbone: every token of one block — [CLS, registers, patches], the
 * order of the backbone's sequence — optionally after the final norm, with the patch grid optionally average-pooled
 * in non-overlapping k×k windows (CLS and registers are kept as they are). At 224 px a ViT-S/14 with 4 registers gives
 * 1 + 4 + 256 = 261 tokens; with k = 2, 1 + 4 + 64 = 69. Like the linear probe's features, the memory of a frozen
 * encoder is computed once per image and cached; the decoder projects it to its width (LayerNorm + Linear).
 *
 * Pooling (k × k, like torch's `avg_pool2d(kernel=k, stride=k)` on the (H/p, W/p) grid): a grid side that is not a
 * multiple of k keeps its last partial window, averaged over the tokens it has (`ceil_mode=True` with
 * `count_include_pad=False`), so no patch is dropped.
 */
import type { Backbone } from '../backbone.js';
import { CxformerError } from '../native/load.js';
import { resolvePreprocessOptions, type PreprocessOptions } from '../image/options.js';
import { preprocessBatch } from '../image/preprocess.js';

export interface MemoryOptions {
  /** Block whose output is the memory (negative from the end). @default -1 */
  block?: number;
  /** Apply the backbone's final norm to the block output (DINOv2 get_intermediate_layers(norm=True)). @default true */
  norm?: boolean;
  /** Average-pool the patch grid in pool×pool windows (1 = off). @default 1 */
  pool?: number;
  /** Images per forward pass. @default 8 */
  batchSize?: number;
  precision?: 'f32' | 'bf16';
  preprocess?: Partial<PreprocessOptions>;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

/** The memory of N images: (N, M, D) row-major, M = 1 + R + pooled patches. */
export interface Memory {
  data: Float32Array;
  shape: [number, number, number];
  /** Patch grid before and after pooling. */
  grid: [number, number];
  pooledGrid: [number, number];
}

/** The pooled grid side: ceil(n / k). */
export function pooledSide(n: number, k: number): number {
  return Math.ceil(n / k);
}

/**
 * Pools the patch tokens of one sequence (T = 1 + R + gh·gw tokens of width D, at `src` offset `off`) into `dst` at
 * `dstOff`: CLS and registers copied, then the pooled grid row-major.
 */
export function poolSequence(src: Float32Array, off: number, R: number, grid: [number, number], k: number, D: number, dst: Float32Array, dstOff: number): void {
  const [gh, gw] = grid;
  const head = (1 + R) * D;
  dst.set(src.subarray(off, off + head), dstOff);
  if (k === 1) {
    dst.set(src.subarray(off + head, off + head + gh * gw * D), dstOff + head);
    return;
  }
  const ph = pooledSide(gh, k);
  const pw = pooledSide(gw, k);
  for (let py = 0; py < ph; py++) {
    for (let px = 0; px < pw; px++) {
      const o = dstOff + head + (py * pw + px) * D;
      const y1 = Math.min(gh, (py + 1) * k);
      const x1 = Math.min(gw, (px + 1) * k);
      const count = (y1 - py * k) * (x1 - px * k);
      for (let y = py * k; y < y1; y++) {
        for (let x = px * k; x < x1; x++) {
          const s = off + head + (y * gw + x) * D;
          for (let d = 0; d < D; d++) dst[o + d] = (dst[o + d] as number) + (src[s + d] as number);
        }
      }
      for (let d = 0; d < D; d++) dst[o + d] = (dst[o + d] as number) / count;
    }
  }
}

/** Tokens per image of the memory for a backbone with R registers on a grid, pooled by k. */
export function memoryLength(R: number, grid: [number, number], k: number): number {
  return 1 + R + pooledSide(grid[0], k) * pooledSide(grid[1], k);
}

/** The memory of the images at `paths` (decoded and preprocessed as the backbone's preprocessing says). */
export async function extractMemory(model: Backbone, paths: readonly string[], o: MemoryOptions = {}): Promise<Memory> {
  const depth = model.config.depth;
  const block = o.block ?? -1;
  if (!(Number.isInteger(block) && block >= -depth && block < depth)) {
    throw new CxformerError('CXF_ARG', `memory block must be an integer in -${depth}..${depth - 1} (the model has ${depth} blocks), got ${block}`);
  }
  const k = o.pool ?? 1;
  if (!(Number.isInteger(k) && k >= 1)) throw new CxformerError('CXF_ARG', `memory pool must be an integer ≥ 1, got ${k}`);
  const D = model.config.embed_dim;
  const R = model.config.num_register_tokens;
  const B = o.batchSize ?? 8;
  const pre = resolvePreprocessOptions({ ...model.preprocess, ...o.preprocess });
  let out: Float32Array | undefined;
  let grid: [number, number] = [0, 0];
  let M = 0;
  o.onProgress?.(0, paths.length);
  for (let start = 0; start < paths.length; start += B) {
    if (o.signal?.aborted) throw new CxformerError('CXF_CANCELLED', 'memory extraction cancelled');
    const batch = await preprocessBatch(paths.slice(start, start + B), pre);
    const res = await model.embed(batch.data, batch.shape, { layers: [block], normLayers: o.norm ?? true, precision: o.precision ?? 'f32', ...(o.signal ? { signal: o.signal } : {}) });
    const t = res.layers.get(block) as { data: Float32Array; shape: number[] };
    const T = t.shape[1] as number;
    if (out === undefined) {
      grid = res.grid;
      M = memoryLength(R, grid, k);
      out = new Float32Array(paths.length * M * D);
    }
    for (let i = 0; i < batch.shape[0]; i++) poolSequence(t.data, i * T * D, R, grid, k, D, out, (start + i) * M * D);
    o.onProgress?.(Math.min(start + B, paths.length), paths.length);
  }
  if (out === undefined) throw new CxformerError('CXF_ARG', 'no images to extract a memory from');
  return { data: out, shape: [paths.length, M, D], grid, pooledGrid: [pooledSide(grid[0], k), pooledSide(grid[1], k)] };
}
