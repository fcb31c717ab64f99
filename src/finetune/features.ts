/**
 * Frozen-backbone features for classification heads, as the DINOv2 linear protocol means them (docs/recipe.md §3.11,
 * §5.1): concat[CLS token of each of the last `clsLayers` blocks after the final norm] (+ the mean of the last
 * block's patch tokens after the final norm, registers excluded, with `avgpool`). Dimension (n + avgpool)·D.
 * CXformer's code takes the first patch token instead of the CLS (docs/recipe.md §7.7): not reproduced.
 */
import type { Backbone } from '../backbone.js';
import { CxformerError } from '../native/load.js';
import { resolvePreprocessOptions, type PreprocessOptions } from '../image/options.js';
import { preprocessBatch } from '../image/preprocess.js';
import { CLASSIFICATION } from '../config/downstream.js';

export interface FeatureOptions {
  /** CLS tokens of the last n blocks. @default 4 */
  clsLayers?: number;
  /** Append the mean of the last block's patch tokens. @default true */
  avgpool?: boolean;
  /** Images per forward pass. @default 8 */
  batchSize?: number;
  precision?: 'f32' | 'bf16';
  preprocess?: Partial<PreprocessOptions>;
  /** After each batch: images done, of all. @default the hook set by {@link setFeatureProgress}, if any */
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

let defaultProgress: ((done: number, total: number) => void) | undefined;

/**
 * The progress callback of every extraction that passes none (the CLI's progress line, set by `finetune` and
 * `evaluate`): library paths such as evaluateHead reach {@link extractFeatures} without an `onProgress` of their
 * own. Returns the previous hook; `undefined` removes it.
 */
export function setFeatureProgress(fn: ((done: number, total: number) => void) | undefined) {
  const was = defaultProgress;
  defaultProgress = fn;
  return was;
}

/** Feature width for a backbone of width `d`. */
export function featureDim(d: number, o: FeatureOptions = {}): number {
  return ((o.clsLayers ?? CLASSIFICATION.clsLayers) + ((o.avgpool ?? CLASSIFICATION.avgpool) ? 1 : 0)) * d;
}

/** Features of the images at `paths`, row-major (N, F). */
export async function extractFeatures(model: Backbone, paths: readonly string[], o: FeatureOptions = {}): Promise<{ data: Float32Array; shape: [number, number] }> {
  const n = o.clsLayers ?? CLASSIFICATION.clsLayers;
  const avg = o.avgpool ?? CLASSIFICATION.avgpool;
  if (!(Number.isInteger(n) && n >= 1 && n <= model.config.depth)) {
    throw new CxformerError('CXF_ARG', `--cls-layers (clsLayers) must be an integer in 1..${model.config.depth} (the model's depth), got ${n}`);
  }
  const D = model.config.embed_dim;
  const R = model.config.num_register_tokens;
  const F = featureDim(D, o);
  const B = o.batchSize ?? CLASSIFICATION.batchSize;
  const pre = resolvePreprocessOptions({ ...model.preprocess, ...o.preprocess });
  const out = new Float32Array(paths.length * F);
  const layers = Array.from({ length: n }, (_, k) => k - n); // -n … -1
  const onProgress = o.onProgress ?? defaultProgress;
  onProgress?.(0, paths.length);
  for (let start = 0; start < paths.length; start += B) {
    if (o.signal?.aborted) throw new Error('feature extraction cancelled');
    const batch = await preprocessBatch(paths.slice(start, start + B), pre);
    const res = await model.embed(batch.data, batch.shape, { layers, normLayers: true, precision: o.precision ?? 'f32' });
    const b = batch.shape[0];
    const T = res.lastHiddenState.shape[1] as number;
    for (let i = 0; i < b; i++) {
      const row = (start + i) * F;
      layers.forEach((l, k) => {
        const t = res.layers.get(l)?.data as Float32Array;
        out.set(t.subarray(i * T * D, i * T * D + D), row + k * D); // CLS = token 0
      });
      if (avg) {
        const last = res.layers.get(-1)?.data as Float32Array;
        const np = T - 1 - R;
        const dst = row + n * D;
        for (let p = 0; p < np; p++) {
          const off = (i * T + 1 + R + p) * D;
          for (let d = 0; d < D; d++) out[dst + d] = (out[dst + d] as number) + (last[off + d] as number) / np;
        }
      }
    }
    onProgress?.(Math.min(start + B, paths.length), paths.length);
  }
  return { data: out, shape: [paths.length, F] };
}
