/**
 * The native core through the binding: golden equivalence with the reference DINOv2 implementation,
 * HF export round trip, strict loading and the error path across N-API.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Backbone, loadBackbone, type Tensor } from '../../src/backbone.js';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.js';
import { native } from '../../src/native/load.js';
import { goldenFile } from '../unit/golden.js';

const TINY = path.dirname(goldenFile('vit_tiny_hf/config.json'));
let inputs: Awaited<ReturnType<typeof readSafetensors>>;
let outputs: Awaited<ReturnType<typeof readSafetensors>>;
let model: Backbone;
let tmp: string;

function maxAbsDiff(a: Tensor, name: string): number {
  const ref = outputs.tensors.get(name);
  if (!ref) throw new Error(`golden output ${name} missing`);
  expect(a.shape).toEqual(ref.shape);
  const r = ref.data as Float32Array;
  let m = 0;
  for (let i = 0; i < r.length; i++) m = Math.max(m, Math.abs((a.data[i] ?? NaN) - (r[i] ?? NaN)));
  return m;
}

beforeAll(async () => {
  inputs = await readSafetensors(goldenFile('vit_tiny_inputs.safetensors'));
  outputs = await readSafetensors(goldenFile('vit_tiny_outputs.safetensors'));
  model = await loadBackbone({ weights: TINY, threads: 1 });
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-native-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const px = () => inputs.tensors.get('pixel_values_56') as { data: Float32Array; shape: number[] };

describe('golden equivalence (tiny HF model, 1e-4 absolute)', () => {
  it('reproduces CLS, registers, patches, prenorm and last_hidden_state', async () => {
    const out = await model.embed(px().data, px().shape);
    expect(maxAbsDiff(out.cls, 'x_norm_clstoken_56')).toBeLessThan(1e-4);
    expect(maxAbsDiff(out.registers, 'x_norm_regtokens_56')).toBeLessThan(1e-4);
    expect(maxAbsDiff(out.patches, 'x_norm_patchtokens_56')).toBeLessThan(1e-4);
    expect(maxAbsDiff(out.prenorm, 'x_prenorm_56')).toBeLessThan(1e-4);
    expect(maxAbsDiff(out.lastHiddenState, 'hf_last_hidden_state_56')).toBeLessThan(1e-4);
    expect(maxAbsDiff(out.cls, 'hf_pooler_output_56')).toBeLessThan(1e-4);
    expect(out.grid).toEqual([4, 4]);
  });

  it('reproduces the masked outputs', async () => {
    const m = inputs.tensors.get('masks_56') as { data: Uint8Array; shape: number[] };
    const out = await model.embed(px().data, px().shape, { masks: { data: m.data, shape: [2, 16] } });
    expect(maxAbsDiff(out.patches, 'x_norm_patchtokens_56_masked')).toBeLessThan(1e-4);
    expect(maxAbsDiff(out.lastHiddenState, 'hf_last_hidden_state_56_masked')).toBeLessThan(1e-4);
  });

  it('returns chosen intermediate layers', async () => {
    const out = await model.embed(px().data, px().shape, { layers: [-1, 0], normLayers: true });
    expect(maxAbsDiff(out.layers.get(-1) as Tensor, 'hf_last_hidden_state_56')).toBeLessThan(1e-4);
    expect((out.layers.get(0) as Tensor).shape).toEqual([2, 19, 96]);
  });
});

describe('export', () => {
  it('writes an HF folder that loads back identically', async () => {
    const dir = path.join(tmp, 'export');
    await model.exportHf(dir);
    const cfg = JSON.parse(await readFile(path.join(dir, 'config.json'), 'utf8'));
    const orig = JSON.parse(await readFile(path.join(TINY, 'config.json'), 'utf8'));
    for (const k of ['model_type', 'hidden_size', 'num_hidden_layers', 'num_attention_heads', 'num_register_tokens', 'image_size', 'patch_size', 'layerscale_value']) {
      expect(cfg[k], k).toEqual(orig[k]);
    }
    // Fields transformers declares float are written with a decimal point (transformers 5 refuses `1`).
    const text = await readFile(path.join(dir, 'config.json'), 'utf8');
    expect(text).toMatch(/"layer_norm_eps": 1e-6\b|"layer_norm_eps": 0\.000001|"layer_norm_eps": 1\.0e-6/);
    expect(text).toMatch(/"hidden_dropout_prob": 0\.0\b/);
    const back = await loadBackbone({ weights: dir, threads: 1 });
    expect(back.config).toEqual(model.config);
    expect(back.preprocess.equalize).toBe(true);
    expect(back.preprocess.resize).toBe(518);
    const a = await model.embed(px().data, px().shape);
    const b = await back.embed(px().data, px().shape);
    expect(b.lastHiddenState.data).toEqual(a.lastHiddenState.data);
    const names = [...(await readSafetensors(path.join(dir, 'model.safetensors'))).tensors.keys()].sort();
    const refNames = [...(await readSafetensors(path.join(TINY, 'model.safetensors'))).tensors.keys()].sort();
    expect(names).toEqual(refNames);
  });
});

describe('errors cross the binding as JS Errors with codes', () => {
  it('a LibTorch shape error keeps its message', () => {
    const bind = native();
    let err: (Error & { code?: string }) | undefined;
    try {
      bind.matmul(new Float32Array(6), [2, 3], new Float32Array(8), [2, 4]);
    } catch (e) {
      err = e as Error;
    }
    expect(err).toBeInstanceOf(Error);
    expect(err?.message).toMatch(/\[CXF_TORCH\].*mat1 and mat2 shapes cannot be multiplied \(2x3 and 2x4\)/);
  });

  it('shape errors from embed name the problem', async () => {
    await expect(model.embed(new Float32Array(3 * 50 * 56), [1, 3, 50, 56])).rejects.toMatchObject({
      code: 'CXF_SHAPE',
      message: expect.stringMatching(/50x56.*multiple of the patch size 14/),
    });
    await expect(model.embed(new Float32Array(10), [1, 3, 56, 56])).rejects.toMatchObject({
      code: 'CXF_ARG',
      message: expect.stringMatching(/needs 9408 values but the Float32Array has 10/),
    });
  });

  it('a partial weight file is refused with the missing keys listed', async () => {
    const w = await readSafetensors(path.join(TINY, 'model.safetensors'));
    const keep: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
    for (const [k, t] of w.tensors) if (k !== 'encoder.layer.2.mlp.fc2.bias') keep[k] = { dtype: 'F32', shape: t.shape, data: t.data as Float32Array };
    const file = path.join(tmp, 'partial.safetensors');
    await writeSafetensors(file, keep);
    await expect(loadBackbone({ weights: file, threads: 1, overrides: ['model.num_heads=3'] })).rejects.toMatchObject({
      code: 'CXF_WEIGHTS',
      message: expect.stringMatching(/missing \(1\): encoder\.layer\.2\.mlp\.fc2\.bias/),
    });
  });
});
