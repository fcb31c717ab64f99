/**
 * Pure pieces of classification fine-tuning: the §5.1 train-crop planner (parameter ranges and frequencies,
 * determinism per (seed, step, image)), the label-type checks, multiclass targets for the native heads and the
 * multiclass accuracy (hand-computed cases).
 */
import { describe, expect, it } from 'vitest';
import { planFinetuneBatch, planFinetuneCrop } from '../../src/finetune/augment.js';
import { rngFor } from '../../src/augment/rng.js';
import { checkLabelType, multiclassAccuracy, nativeTargets } from '../../src/finetune/labels.js';

describe('§5.1 train crops', () => {
  it('draw RandomResizedCrop(0.08–1), flip 0.5, affine always, jitter 0.5, blur 0.5 (σ 0.1–2), never solarize/grayscale', () => {
    const n = 4000;
    let flips = 0;
    let jit = 0;
    let blur = 0;
    for (let k = 0; k < n; k++) {
      const c = planFinetuneCrop(rngFor(1, 0, k, 'crops', 0), 300, 400, 224);
      const [top, left, h, w] = c.box;
      expect(top >= 0 && left >= 0 && top + h <= 300 && left + w <= 400).toBe(true);
      // Accepted boxes have area in [0.08, 1]·H·W up to rounding; the centre fallback keeps the whole height.
      const frac = (h * w) / (300 * 400);
      expect(frac).toBeGreaterThan(0.07);
      expect(frac).toBeLessThanOrEqual(1);
      expect(c.affine).not.toBeNull();
      const a = c.affine!;
      expect(Math.abs(a.angle) <= 20 && a.scale >= 0.8 && a.scale <= 1.2 && Math.abs(a.translate[0]) <= 22.4 + 0.5 && Math.abs(a.translate[1]) <= 22.4 + 0.5).toBe(true);
      if (c.jitter) {
        jit++;
        expect(c.jitter.brightness >= 0.6 && c.jitter.brightness <= 1.4 && Math.abs(c.jitter.hue) <= 0.1).toBe(true);
      }
      if (c.blurSigma !== null) {
        blur++;
        expect(c.blurSigma >= 0.1 && c.blurSigma <= 2).toBe(true);
      }
      if (c.flip) flips++;
      expect(c.solarize || c.grayscale).toBe(false);
    }
    // Binomial(4000, 0.5): ±4 standard deviations is ±126.
    for (const count of [flips, jit, blur]) expect(Math.abs(count - n / 2)).toBeLessThan(126);
  });

  it('a batch plan depends only on (seed, step, image index, size) and honours a custom scale', () => {
    const sizes: Array<[number, number]> = [[128, 128], [200, 150]];
    const a = planFinetuneBatch(7, 3, sizes, 98);
    expect(planFinetuneBatch(7, 3, sizes, 98)).toEqual(a);
    expect(planFinetuneBatch(7, 4, sizes, 98)).not.toEqual(a);
    expect(planFinetuneBatch(7, 3, [sizes[0]!], 98)[0]).toEqual(a[0]);
    expect(a.every((c) => c.globals.length === 1 && c.locals.length === 0)).toBe(true);
    for (let s = 0; s < 200; s++) {
      const [, , h, w] = planFinetuneBatch(7, s, [[128, 128]], 98, [0.6, 1])[0]!.globals[0]!.box;
      expect((h * w) / (128 * 128)).toBeGreaterThan(0.58);
    }
  });
});

describe('label types', () => {
  it('checks the class count of binary and multiclass tasks', () => {
    expect(checkLabelType('binary', ['Pneumonia'])).toBe('binary');
    expect(() => checkLabelType('binary', ['A', 'B'])).toThrow(/exactly one class .* got 2: A, B/);
    expect(() => checkLabelType('multiclass', ['A'])).toThrow(/at least two .* got 1: A/);
    expect(() => checkLabelType('ordinal', ['A'])).toThrow(/multilabel, binary, multiclass, got 'ordinal'/);
  });

  it('converts one-hot rows to class indices and leaves partly labelled rows out', () => {
    const C = 3;
    // rows: class 2; class 0; a missing label (left out); class 1
    const t = new Float32Array([0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 1, 0]);
    const m = new Uint8Array([1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1]);
    const r = nativeTargets('multiclass', t, m, C, ['a', 'b', 'c', 'd'], ['x', 'y', 'z']);
    expect([...r.targets]).toEqual([2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]);
    expect([...r.mask]).toEqual([1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0]);
    expect(nativeTargets('multilabel', t, m, C, ['a', 'b', 'c', 'd'], ['x', 'y', 'z']).targets).toBe(t);
    const none = new Float32Array([0, 0, 0]);
    expect(() => nativeTargets('multiclass', none, new Uint8Array([1, 1, 1]), C, ['img7'], ['x', 'y', 'z'])).toThrow(/image img7 has 0 positive classes; expected exactly one of x, y, z/);
  });

  it('multiclass accuracy: argmax against the labelled class, partly labelled rows skipped', () => {
    const probs = new Float32Array([0.2, 0.7, 0.1, 0.5, 0.3, 0.2, 0.1, 0.1, 0.8, 0.3, 0.3, 0.4]);
    const t = new Float32Array([0, 1, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0]);
    const m = new Uint8Array([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1]);
    // rows 0 (right), 1 (wrong: argmax 0, truth 1), 2 (right); row 3 skipped → 2 / 3.
    expect(multiclassAccuracy(probs, t, m, 3)).toEqual({ value: 2 / 3, n: 3 });
    expect(multiclassAccuracy(new Float32Array(0), new Float32Array(0), new Uint8Array(0), 3)).toEqual({ value: null, n: 0 });
  });
});

describe('feature extraction arguments', () => {
  it('--cls-layers beyond the model depth is an argument error naming the flag and the range (exit 2), before any work', async () => {
    const { extractFeatures } = await import('../../src/finetune/features.js');
    const model = { config: { depth: 2, embed_dim: 8, num_register_tokens: 0 } } as unknown as Parameters<typeof extractFeatures>[0];
    const e = await extractFeatures(model, ['a.png'], { clsLayers: 4 }).catch((x: unknown) => x as Error & { code?: string });
    expect(e).toBeInstanceOf(Error);
    expect((e as { code?: string }).code).toBe('CXF_ARG');
    expect((e as Error).message).toBe("--cls-layers (clsLayers) must be an integer in 1..2 (the model's depth), got 4");
  });
});
