import { describe, expect, it } from 'vitest';

import { argmaxLabelMap, ceDiceLoss, crossEntropy, DiceAccumulator, diceEvaluate, diceFromCounts, softDice, softDiceLoss, softmaxChannels } from '../../src/eval/dice.js';

const u8 = (...v: number[]): Uint8Array => Uint8Array.from(v);
const byName = (r: ReturnType<typeof diceEvaluate>, name: string): ReturnType<typeof diceEvaluate>['structures'][number] => {
  const s = r.structures.find((x) => x.name === name);
  if (s === undefined) throw new Error(`no structure ${name}`);
  return s;
};

describe('hard Dice from label maps', () => {
  it('hand case: per class 2|P∩G|/(|P|+|G|), background excluded, an absent class counts 1', () => {
    // 2x3: pred [[1,1,0],[2,0,0]], truth [[1,0,0],[2,2,0]]
    const r = diceEvaluate([u8(1, 1, 0, 2, 0, 0)], [u8(1, 0, 0, 2, 2, 0)], { numClasses: 3, lungs: true });
    expect(r.structures.map((s) => s.name)).toEqual(['left lung', 'right lung', 'heart', 'lungs']);
    expect(byName(r, 'left lung')).toMatchObject({ intersection: 1, predPixels: 2, truePixels: 1 });
    expect(byName(r, 'left lung').pooled).toBeCloseTo(2 / 3, 15);
    expect(byName(r, 'right lung').pooled).toBeCloseTo(2 / 3, 15);
    expect(byName(r, 'heart').pooled).toBe(1);
    expect(byName(r, 'lungs')).toMatchObject({ classes: [1, 2], intersection: 2, predPixels: 3, truePixels: 3 });
    expect(r.diceAvg).toBeCloseTo((2 / 3 + 2 / 3 + 1) / 3, 15);
  });

  it('empty prediction → 0, empty ground truth → 0, both empty → 1', () => {
    const emptyPred = diceEvaluate([u8(0, 0, 0, 0)], [u8(1, 1, 0, 0)], { numClasses: 1 });
    expect(emptyPred.structures[0]!.pooled).toBe(0);
    expect(emptyPred.structures[0]!.perImage[0]).toBe(0);
    const emptyTruth = diceEvaluate([u8(1, 0, 0, 0)], [u8(0, 0, 0, 0)], { numClasses: 1 });
    expect(emptyTruth.structures[0]!.pooled).toBe(0);
    const both = diceEvaluate([u8(0, 0, 0, 0)], [u8(0, 0, 0, 0)], { numClasses: 1 });
    expect(both.structures[0]!.pooled).toBe(1);
    expect(both.structures[0]!.perImage[0]).toBe(1);
    expect(diceFromCounts(0, 0, 0)).toBe(1);
  });

  it('pooled Dice differs from the per-image mean (a small missed structure)', () => {
    // image A: 10 pixels of class 1, predicted perfectly; image B: 1 pixel of class 1, missed
    const a = new Uint8Array(10).fill(1);
    const b = new Uint8Array(10);
    const bt = new Uint8Array(10);
    bt[3] = 1;
    const r = diceEvaluate([a, b], [a, bt], { numClasses: 1, names: ['heart'] });
    const s = r.structures[0]!;
    expect(s.pooled).toBeCloseTo(20 / 21, 15);
    expect([...s.perImage]).toEqual([1, 0]);
    expect(s.mean).toBe(0.5);
    expect(s).toMatchObject({ min: 0, q1: 0.25, median: 0.5, q3: 0.75, max: 1 });
  });

  it('merged lungs ignore left/right confusions that the separate lungs count', () => {
    const r = diceEvaluate([u8(1, 1, 2, 2)], [u8(2, 2, 1, 1)], { numClasses: 3, lungs: true });
    expect(byName(r, 'left lung').pooled).toBe(0);
    expect(byName(r, 'right lung').pooled).toBe(0);
    expect(byName(r, 'lungs').pooled).toBe(1);
    const custom = diceEvaluate([u8(1, 3, 0)], [u8(1, 0, 3)], { numClasses: 3, merged: { 'lungs+heart': [1, 2, 3] } });
    expect(byName(custom, 'lungs+heart').pooled).toBeCloseTo((2 * 1) / (2 + 2), 15);
  });

  it('streams images: the accumulator matches a single big image for pooled Dice', () => {
    const preds = [u8(1, 2, 0, 3, 3), u8(0, 0, 1, 1, 2), u8(3, 3, 3, 0, 1)];
    const truth = [u8(1, 1, 0, 3, 0), u8(0, 2, 1, 1, 2), u8(3, 3, 0, 0, 1)];
    const acc = new DiceAccumulator({ numClasses: 3 });
    preds.forEach((p, i) => acc.add(p, truth[i]!));
    const streamed = acc.result();
    const one = diceEvaluate([u8(...preds.flatMap((p) => [...p]))], [u8(...truth.flatMap((t) => [...t]))], { numClasses: 3 });
    streamed.structures.forEach((s, k) => expect(s.pooled).toBe(one.structures[k]!.pooled));
    expect(streamed.nImages).toBe(3);
    // class 1 hand count: pred px {0, 7, 8, 14}, truth px {0, 1, 7, 8, 14}: I = 4 → 8 / 9
    expect(streamed.structures[0]!.pooled).toBeCloseTo(8 / 9, 15);
  });

  it('validates classes and sizes', () => {
    expect(() => diceEvaluate([u8(4)], [u8(0)], { numClasses: 3 })).toThrow(/class 4/);
    expect(() => diceEvaluate([u8(0, 1)], [u8(0)], { numClasses: 3 })).toThrow(/differ in size/);
    expect(() => diceEvaluate([u8(0)], [u8(0)], { numClasses: 3, merged: { x: [5] } })).toThrow(/not in 1..3/);
  });
});

describe('argmax label maps', () => {
  it('channel-first [batch, channels, pixels]; ties go to the lowest channel', () => {
    // batch 2, 3 channels, 2 pixels
    const s = Float32Array.from([
      // image 0: channel 0 = [0.1, 0.5], channel 1 = [0.7, 0.5], channel 2 = [0.2, 0]
      0.1, 0.5, 0.7, 0.5, 0.2, 0.0,
      // image 1: channel 0 = [1, 0], channel 1 = [1, 2], channel 2 = [1, 2]
      1, 0, 1, 2, 1, 2,
    ]);
    // pixel (0,0): channel 1; (0,1): tie 0/1 → 0; (1,0): three-way tie → 0; (1,1): tie 1/2 → 1
    expect([...argmaxLabelMap(s, 3, 2, 2)]).toEqual([1, 0, 0, 1]);
  });
});

describe('soft Dice and ce_dice_loss (docs/recipe.md §5.2)', () => {
  const eps = 1e-6;
  it('soft Dice per (image, class) including background', () => {
    // 1 image, 2 classes, 2 pixels; targets [0, 1]
    const probs = Float64Array.from([0.8, 0.3, 0.2, 0.7]);
    const d = softDice(probs, u8(0, 1), { batch: 1, classes: 2, pixels: 2 });
    expect(d[0]).toBeCloseTo((2 * 0.8 + eps) / (1.1 + 1 + eps), 14);
    expect(d[1]).toBeCloseTo((2 * 0.7 + eps) / (0.9 + 1 + eps), 14);
    const loss = softDiceLoss(probs, u8(0, 1), { batch: 1, classes: 2, pixels: 2 });
    expect(loss).toBeCloseTo(1 - (d[0]! + d[1]!) / 2, 14);
    // an absent class with zero probability has soft Dice (0 + eps) / (0 + eps) = 1
    expect(softDice(Float64Array.from([1, 1, 0, 0]), u8(0, 0), { batch: 1, classes: 2, pixels: 2 })[1]).toBe(1);
  });

  it('CE of uniform logits is ln C; ce_dice_loss = 0.5·CE + 0.5·(1 − mean soft Dice)', () => {
    const shape = { batch: 1, classes: 2, pixels: 2 };
    const logits = new Float64Array(4);
    expect(crossEntropy(logits, u8(0, 1), shape)).toBeCloseTo(Math.LN2, 14);
    // probabilities all 0.5: Dice of each class = (2·0.5 + eps) / (1 + 1 + eps)
    const dice = (1 + eps) / (2 + eps);
    expect(ceDiceLoss(logits, u8(0, 1), shape)).toBeCloseTo(0.5 * Math.LN2 + 0.5 * (1 - dice), 14);
    // a hand computed non-uniform case: logits (2, 0) at pixel 0, (0, 1) at pixel 1, targets [0, 0]
    const l2 = Float64Array.from([2, 0, 0, 1]);
    const p00 = Math.exp(2) / (Math.exp(2) + 1);
    const p01 = 1 / (1 + Math.E);
    expect(crossEntropy(l2, u8(0, 0), shape)).toBeCloseTo(-(Math.log(p00) + Math.log(p01)) / 2, 14);
    const sm = softmaxChannels(l2, shape);
    expect(sm[0]! + sm[2]!).toBeCloseTo(1, 15);
    expect(sm[0]).toBeCloseTo(p00, 15);
  });
});
