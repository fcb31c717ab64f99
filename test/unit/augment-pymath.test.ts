import { describe, expect, it } from 'vitest';

import { npLinspaceAt, pyRound, torchLinspaceF32 } from '../../src/augment/pymath.js';

describe('pyRound (Python 3 round)', () => {
  it('rounds halves to even and everything else to nearest', () => {
    expect([0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5].map(pyRound)).toEqual([0, 2, 2, 4, 0, -2, -2]); // int(round(−0.5)) == 0;
    expect([2.4999999, 2.5000001, -2.5000001, 7, 81.65, 61.24].map(pyRound)).toEqual([2, 3, -3, 7, 82, 61]);
  });
});

describe('npLinspaceAt (numpy.linspace, float64)', () => {
  it('is i·step + start with the exact stop at the end', () => {
    expect([0, 1, 2, 3].map((i) => npLinspaceAt(0, 1, 4, i))).toEqual([0, 1 / 3, 2 / 3, 1]);
    const step = (0.07 - 0.04) / 3;
    expect(npLinspaceAt(0.04, 0.07, 4, 2)).toBe(2 * step + 0.04);
    expect(npLinspaceAt(0.04, 0.07, 4, 3)).toBe(0.07);
    expect(npLinspaceAt(5, 9, 1, 0)).toBe(5); // one element: start
    expect(npLinspaceAt(2, 2, 5, 3)).toBe(2); // zero step
  });
});

describe('torchLinspaceF32 (torch.linspace, float32 CPU kernel)', () => {
  it('computes in float32 from both ends', () => {
    const p = torchLinspaceF32(0.1, 0.5, 9);
    expect(p.length).toBe(9);
    expect(p[0]).toBe(Math.fround(0.1));
    expect(p[8]).toBe(0.5);
    // By hand: step = f32(f32(0.5 − f32(0.1))/8) = 0.05000000074505806; index 5 is in the upper half:
    // 0.5 − f32(3·step) = 0.5 − 0.15000000596046448 = 0.3499999940395355 = f32(0.35).
    expect(p[5]).toBe(Math.fround(0.35));
    expect(p[5]).toBe(0.3499999940395355);
    // Three steps: 0.5 − step lands exactly between two float32 values and ties to the even one, f32(0.3).
    expect(torchLinspaceF32(0.1, 0.5, 3)).toEqual([Math.fround(0.1), Math.fround(0.3), 0.5]);
    expect(torchLinspaceF32(0.2, 0.9, 1)).toEqual([Math.fround(0.2)]);
  });
});
