/** validateConfig (src/model/config.ts): the bounds and types that the CLI tests do not reach through config.json. */
import { describe, expect, it } from 'vitest';
import { applyOverrides, expectedShapes, presetConfig, validateConfig, type VitConfig } from '../../src/model/config.js';

const small = (): VitConfig => ({ ...presetConfig('vit_small'), depth: 2, img_size: 56 });
const refuse = (patch: Partial<VitConfig> | Record<string, unknown>, message: RegExp) =>
  expect(() => validateConfig({ ...small(), ...patch } as VitConfig, 'src.json')).toThrow(message);

describe('validateConfig bounds', () => {
  it('names the key, the range and the value', () => {
    refuse({ num_heads: 385 }, /^src\.json: model\.num_heads must be an integer in \[1, 384\], got 385$/);
    refuse({ in_chans: 65 }, /model\.in_chans must be an integer in \[1, 64\], got 65/);
    refuse({ patch_size: 1, img_size: 400 }, /at most 316 position cells per side, got 400\/1/);
    refuse({ layerscale_init: 1e7 }, /model\.layerscale_init must be null \(no LayerScale\) or a finite number of magnitude <= 1000000, got 10000000/);
    refuse({ interpolation: { offset: 1.5, antialias: false } }, /model\.interpolation\.offset must be a number in \[0, 1\)/);
    refuse({ interpolation: { offset: 0.1, antialias: 'yes' } }, /model\.interpolation\.antialias must be true or false, got "yes"/);
    refuse({ qkv_bias: 'true' }, /model\.qkv_bias must be true or false, got "true"/);
    // Each value within its bound, the whole too large: 512 blocks of width 16384.
    refuse({ embed_dim: 16384, num_heads: 128, depth: 512 }, /the architecture has 1\.\d\de\+12 parameters, more than the 4e\+9/);
  });

  it('overrides go through the same checks', () => {
    expect(() => applyOverrides(small(), ['model.layer_norm_eps=0.5'])).toThrow(/^overrides: model\.layer_norm_eps must be a number in \(0, 0\.1\], got 0\.5$/);
  });

  it('expectedShapes lists every variable of the architecture once, with the fused qkv', () => {
    const s = expectedShapes(small());
    expect(s.get('pos_embed')).toEqual([1, 1 + 16, 384]);
    expect(s.get('blocks.1.attn.qkv.weight')).toEqual([1152, 384]);
    expect(s.get('blocks.1.mlp.fc1.weight')).toEqual([1536, 384]);
    expect(s.get('register_tokens')).toEqual([1, 4, 384]);
    expect(s.has('blocks.2.norm1.weight')).toBe(false);
    // cls, pos, registers, mask, patch weight + bias; final norm 2; per block: 2 norms × 2, qkv 2, proj 2, LayerScale 2, fc1 2, fc2 2.
    expect(s.size).toBe(6 + 2 + 2 * 14);
  });
});
