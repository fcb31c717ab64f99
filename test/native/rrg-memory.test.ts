/**
 * The captioner's visual memory (src/rrg/memory.ts): the block's tokens as the backbone returns them, pooled patch
 * grids equal to a hand-written average over each window (partial windows at the edge averaged over what they hold).
 */
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import { Backbone, loadBackbone } from '../../src/backbone.js';
import { preprocessBatch } from '../../src/image/preprocess.js';
import { resolvePreprocessOptions } from '../../src/image/options.js';
import { extractMemory, memoryLength, poolSequence } from '../../src/rrg/memory.js';
import { phantomFolder } from '../helpers/phantom-folder.js';
import { goldenFile } from '../unit/golden.js';

const TINY = path.dirname(goldenFile('vit_tiny_hf/config.json'));
const ph = phantomFolder('cxf-rrg-memory-', { n: 5, seed: 2, size: 64 });
let model: Backbone;
const preprocess = { resize: 56, crop: 56 } as const;

beforeAll(async () => {
  model = await loadBackbone({ weights: TINY, threads: 1 });
});

describe('poolSequence', () => {
  it('copies CLS and registers and averages k×k windows, partial edge windows over what they hold', () => {
    // T = 1 CLS + 1 register + a 3×3 grid, D = 2; token t has values (t, 10t).
    const D = 2;
    const src = Float32Array.from({ length: 11 * D }, (_, i) => (i % 2 === 0 ? i / 2 : 5 * i - 5));
    const dst = new Float32Array(memoryLength(1, [3, 3], 2) * D);
    poolSequence(src, 0, 1, [3, 3], 2, D, dst, 0);
    // patch p (0..8) is token 2 + p; windows: {0,1,3,4}, {2,5}, {6,7}, {8}.
    const tok = (p: number) => 2 + p;
    const avg = (ps: number[]) => ps.reduce((s, p) => s + tok(p), 0) / ps.length;
    const want = [0, 0, 1, 10, avg([0, 1, 3, 4]), 10 * avg([0, 1, 3, 4]), avg([2, 5]), 10 * avg([2, 5]), avg([6, 7]), 10 * avg([6, 7]), avg([8]), 10 * avg([8])];
    expect(Array.from(dst)).toEqual(want.map((v) => Math.fround(v)));
  });
});

describe('extractMemory', () => {
  it('returns the block output of every image, pooled or not', async () => {
    const paths = ['P00001_01', 'P00002_01', 'P00003_01'].map((id) => path.join(ph.data, 'images', `${id}.png`));
    const D = model.config.embed_dim;
    const R = model.config.num_register_tokens;
    const batch = await preprocessBatch(paths, resolvePreprocessOptions({ ...model.preprocess, ...preprocess }));
    const ref = await model.embed(batch.data, batch.shape, { layers: [-2], normLayers: true });
    const t = ref.layers.get(-2)!;
    const full = await extractMemory(model, paths, { block: -2, preprocess, batchSize: 2 });
    expect(full.shape).toEqual([3, 1 + R + 16, D]);
    expect(full.grid).toEqual([4, 4]);
    expect(Array.from(full.data)).toEqual(Array.from(t.data));
    const pooled = await extractMemory(model, paths, { block: -2, pool: 2, preprocess });
    expect(pooled.shape).toEqual([3, 1 + R + 4, D]);
    const T = t.shape[1]!;
    for (let i = 0; i < 3; i++) {
      for (let py = 0; py < 2; py++) {
        for (let px = 0; px < 2; px++) {
          for (const d of [0, 7, D - 1]) {
            let s = 0;
            for (const [y, x] of [[0, 0], [0, 1], [1, 0], [1, 1]] as const) s += t.data[(i * T + 1 + R + (2 * py + y) * 4 + 2 * px + x) * D + d]!;
            expect(pooled.data[(i * pooled.shape[1] + 1 + R + py * 2 + px) * D + d]).toBeCloseTo(s / 4, 6);
          }
        }
      }
    }
    await expect(extractMemory(model, paths, { block: 3 })).rejects.toThrow(/memory block must be an integer in -3..2 \(the model has 3 blocks\), got 3/);
  });
});
