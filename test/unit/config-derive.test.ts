import { describe, expect, it } from 'vitest';

import { derivePretrain, loadPretrainConfig, referenceMaxMaskPatches } from '../../src/config/pretrain.js';
import { ConfigError, numParams } from '../../src/model/config.js';

const OUT = 'output=runs/test';
const load = (overrides: string[] = [], world?: number) =>
  loadPretrainConfig({ overrides: [OUT, ...overrides], ...(world === undefined ? {} : { world }) });

describe('derived values of the CXformer(S) defaults', () => {
  it('iteration counts are epochs × OFFICIAL_EPOCH_LENGTH', async () => {
    const { derived: d } = await load();
    expect(d.total_iterations).toBe(61_100); // 100 × 611
    expect(d.warmup_iterations).toBe(6_110); // 10 × 611
    expect(d.freeze_last_layer_iterations).toBe(611);
    expect(d.teacher_temp_warmup_iterations).toBe(18_330); // 30 × 611
  });

  it('lr is base_lr without scaling, with the fork\'s log line', async () => {
    const { derived: d } = await load([], 8);
    expect(d.lr).toBe(3e-4);
    expect(d.min_lr).toBe(1e-6);
    expect(d.global_batch_size).toBe(512);
    expect(d.images_per_step).toBe(512);
    expect(d.lr_messages).toEqual(['IGNORING LR SCALING RULE: lr = base_lr = 0.0003 at global batch 512']);
  });

  it('patch grids, iBOT mask limit and backbone of a ViT-S/14 at 518/98', async () => {
    const { derived: d } = await load();
    expect([d.global_grid, d.local_grid, d.global_patches]).toEqual([37, 7, 1369]);
    expect(d.max_mask_patches).toBe(666);
    expect(d.n_global_crops).toBe(2);
    expect(d.world_size).toBe(1);
    expect(d.global_batch_size).toBe(64);
    // The spec's ViT-S/14 reg4 parameter count at 518 px (docs/recipe.md §2.1).
    expect(numParams(d.vit)).toBe(22_058_112);
    expect(d.vit).toMatchObject({ embed_dim: 384, depth: 12, num_heads: 6, ffn: 'mlp', img_size: 518, layerscale_init: 1e-5, drop_path_rate: 0 });
  });
});

describe('learning-rate rules', () => {
  it('sqrt_wrt_1024: base_lr · sqrt(batch · world / 1024)', async () => {
    const { derived: d } = await load(['optim.scaling_rule=sqrt_wrt_1024', 'optim.base_lr=4e-3'], 8);
    // 4e-3 · sqrt(512/1024) = 4e-3 / sqrt(2)
    expect(d.lr).toBeCloseTo(0.0028284271247461905, 15);
    expect(d.min_lr).toBe(1e-6); // min_lr is not scaled
    expect(d.lr_messages).toEqual(['sqrt scaling learning rate; base: 0.004, new: 0.00282842712475 (global batch 512)']);
    const at1024 = await load(['optim.scaling_rule=sqrt_wrt_1024', 'train.batch_size_per_gpu=32'], 32);
    expect(at1024.derived.lr).toBe(3e-4);
    const at256 = await load(['optim.scaling_rule=sqrt_wrt_1024', 'train.batch_size_per_gpu=64'], 4);
    expect(at256.derived.lr).toBeCloseTo(1.5e-4, 15); // sqrt(256/1024) = 1/2
  });

  it('accumulate_grad_batches multiplies lr and min_lr', async () => {
    const { derived: d } = await load(['optim.accumulate_grad_batches=2']);
    expect(d.lr).toBeCloseTo(6e-4, 15);
    expect(d.min_lr).toBeCloseTo(2e-6, 15);
    expect(d.global_batch_size).toBe(64);
    expect(d.images_per_step).toBe(128);
    expect(d.lr_messages[1]).toBe('accumulate_grad_batches 2: lr and min_lr multiplied by 2 (lr 0.0006, min_lr 0.000002)');
  });

  it('sqrt scaling uses the per-step batch, then accumulation multiplies', async () => {
    const { derived: d } = await load(['optim.scaling_rule=sqrt_wrt_1024', 'optim.accumulate_grad_batches=4', 'train.batch_size_per_gpu=16'], 4);
    expect(d.lr).toBeCloseTo(3e-4 * 0.25 * 4, 15); // sqrt(64/1024) = 1/4, × 4
  });
});

describe('iBOT max mask patches', () => {
  it('follows the reference formula evaluated left to right', () => {
    expect(referenceMaxMaskPatches(518, 14)).toBe(666); // not 0.5 · 1369
    expect(referenceMaxMaskPatches(224, 14)).toBe(128); // 0.5 · 256
    expect(referenceMaxMaskPatches(98, 14)).toBe(21); // 3 · 7
    expect(referenceMaxMaskPatches(224, 16)).toBe(98); // 7 · 14 = 0.5 · 196
  });

  it('comes from the global crop size, or from ibot.max_mask_patches when set', async () => {
    expect((await load(['crops.global_crops_size=224'])).derived.max_mask_patches).toBe(128);
    expect((await load(['ibot.max_mask_patches=100'])).derived.max_mask_patches).toBe(100);
    await expect(load(['ibot.max_mask_patches=1370'])).rejects.toThrow(
      'Expected ibot.max_mask_patches <= 1369 (patches of a 518 px crop) but received 1370',
    );
  });
});

describe('backbone from model.*', () => {
  it('img_size follows the global crop unless set', async () => {
    expect((await load(['crops.global_crops_size=224'])).derived.vit.img_size).toBe(224);
    expect((await load(['crops.global_crops_size=224', 'model.img_size=518'])).derived.vit.img_size).toBe(518);
  });

  it('null keys take the arch preset, set keys override it', async () => {
    const { derived: d } = await load(['model.arch=vit_giant2', 'model.depth=2']);
    expect(d.vit).toMatchObject({ embed_dim: 1536, num_heads: 24, depth: 2, ffn: 'swiglu', num_register_tokens: 4 });
    const mlp = await load(['model.arch=vit_giant2', 'model.ffn=mlp']);
    expect(mlp.derived.vit.ffn).toBe('mlp');
  });
});

describe('derivePretrain', () => {
  it('refuses a world size below 1', async () => {
    const { config } = await load();
    expect(() => derivePretrain(config, 0)).toThrow(ConfigError);
    expect(() => derivePretrain(config, 1.5)).toThrow('Expected an integer >= 1 for the world size but received 1.5');
  });
});
