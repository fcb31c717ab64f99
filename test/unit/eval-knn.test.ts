import { describe, expect, it } from 'vitest';
import { knnScores } from '../../src/eval/knn.js';

describe('knnScores', () => {
  it('weights the nearest neighbours by exp(cos/T) and skips masked labels', () => {
    // Train: two clusters along x (class 0 positive) and y (class 0 negative).
    const train = { data: Float32Array.from([1, 0, 0.9, 0.1, 0, 1, 0.1, 0.9]), shape: [4, 2] as [number, number] };
    const targets = Float32Array.from([1, 0, 1, 1, 0, 1, 0, 0]); // (4, 2)
    const mask = Uint8Array.from([1, 1, 1, 0, 1, 1, 1, 1]); // row 1 class 1 masked
    const query = { data: Float32Array.from([2, 0.1, 0.05, 3]), shape: [2, 2] as [number, number] };
    const s = knnScores(train, targets, mask, 2, query, { k: 2, temperature: 0.07 });
    // Query 0's two nearest are rows 0 and 1: class 0 = 1; class 1 only row 0 is supervised → 0.
    expect(s[0]).toBeCloseTo(1, 6);
    expect(s[1]).toBeCloseTo(0, 6);
    // Query 1's nearest are rows 2 and 3 → class 0 = 0; class 1 = weighted mean of 1 (row 2) and 0 (row 3).
    const cos = (x: number[], y: number[]) => (x[0]! * y[0]! + x[1]! * y[1]!) / Math.hypot(...x) / Math.hypot(...y);
    const w2 = Math.exp(cos([0.05, 3], [0, 1]) / 0.07);
    const w3 = Math.exp(cos([0.05, 3], [0.1, 0.9]) / 0.07);
    expect(s[2]).toBeCloseTo(0, 6);
    expect(s[3]).toBeCloseTo(w2 / (w2 + w3), 5);
    expect(() => knnScores(train, targets, mask, 2, { data: new Float32Array(3), shape: [1, 3] })).toThrow(/columns/);
  });
});
