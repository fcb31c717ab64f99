import { describe, expect, it } from 'vitest';

import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../../src/io/half.js';

// Expected values are derived by hand from the bit layouts:
// binary16 = sign | 5-bit exponent (bias 15) | 10-bit mantissa; bfloat16 = the top 16 bits of a float32.
describe('f16 -> f32', () => {
  it.each([
    [0x0000, 0],
    [0x3c00, 1], // exp 15, mant 0
    [0xc000, -2], // sign, exp 16
    [0x3555, 0.333251953125], // 2^-2 · (1 + 341/1024)
    [0x7bff, 65504], // largest finite: 2^15 · (2 − 2^-10)
    [0x0400, 2 ** -14], // smallest normal
    [0x0001, 2 ** -24], // smallest subnormal: 1 · 2^-24
    [0x03ff, 1023 * 2 ** -24], // largest subnormal
    [0x8001, -(2 ** -24)],
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
  ])('decodes 0x%s exactly', (bits, value) => {
    expect(f16ToF32(bits)).toBe(value);
  });

  it('keeps the sign of zero and decodes NaNs', () => {
    expect(Object.is(f16ToF32(0x8000), -0)).toBe(true);
    expect(Number.isNaN(f16ToF32(0x7e00))).toBe(true);
    expect(Number.isNaN(f16ToF32(0xfc01))).toBe(true);
  });
});

describe('bf16 -> f32', () => {
  it.each([
    [0x3f80, 1],
    [0xc040, -3],
    [0x4049, 3.140625], // 2^1 · (1 + 73/128)
    [0x0080, 2 ** -126], // smallest normal
    [0x0001, 2 ** -133], // smallest subnormal: 2^-126 · 2^-7
    [0x7f80, Infinity],
    [0xff80, -Infinity],
  ])('decodes 0x%s exactly', (bits, value) => {
    expect(bf16ToF32(bits)).toBe(value);
  });

  it('decodes NaN and negative zero', () => {
    expect(Number.isNaN(bf16ToF32(0x7fc0))).toBe(true);
    expect(Object.is(bf16ToF32(0x8000), -0)).toBe(true);
  });
});

describe('f32 -> f16 (round to nearest, ties to even)', () => {
  it.each([
    [1, 0x3c00],
    [0.1, 0x2e66], // 0.1 = 2^-4 · 1.6 -> mantissa 614.4 rounds to 614 = 0x266
    [1 + 2 ** -11, 0x3c00], // exactly halfway between 1 and 1 + 2^-10: ties to the even mantissa 0
    [1 + 3 * 2 ** -11, 0x3c02], // halfway between mantissas 1 and 2: ties to 2
    [65504, 0x7bff],
    [65519.99, 0x7bff], // just below the halfway point to 2^16
    [65520, 0x7c00], // halfway between 65504 (odd mantissa) and 2^16: rounds to even = overflow to inf
    [2 ** -25, 0x0000], // half of the smallest subnormal: ties to 0
    [1.5 * 2 ** -25, 0x0001], // above half: rounds up to the smallest subnormal
    [3 * 2 ** -25, 0x0002], // 1.5 units: ties to even (2)
    [2 ** -14 - 2 ** -25, 0x0400], // rounds up into the smallest normal
    [-2, 0xc000],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
  ])('encodes %s as its nearest binary16', (value, bits) => {
    expect(f32ToF16(value)).toBe(bits);
  });

  it('encodes NaN as a quiet NaN and keeps -0', () => {
    const b = f32ToF16(NaN);
    expect(b & 0x7c00).toBe(0x7c00);
    expect(b & 0x3ff).not.toBe(0);
    expect(f32ToF16(-0)).toBe(0x8000);
  });

  it('round-trips every non-NaN binary16 pattern', () => {
    for (let b = 0; b < 0x10000; b++) {
      const v = f16ToF32(b);
      if (Number.isNaN(v)) continue;
      expect(f32ToF16(v)).toBe(b);
    }
  });
});

describe('f32 -> bf16 (round to nearest, ties to even)', () => {
  it.each([
    [1, 0x3f80],
    [3.140625, 0x4049],
    [Math.PI, 0x4049], // 3.14159… is nearer to 3.140625 than to 3.15625
    [1 + 2 ** -8, 0x3f80], // halfway between 1 and 1 + 2^-7: ties to even
    [1 + 3 * 2 ** -8, 0x3f82], // halfway between mantissas 1 and 2: ties to 2
    [3.4028234663852886e38, 0x7f80], // float32 max rounds up to inf in bf16
    [-Infinity, 0xff80],
  ])('encodes %s', (value, bits) => {
    expect(f32ToBf16(value)).toBe(bits);
  });

  it('encodes NaN as a quiet NaN', () => {
    expect(f32ToBf16(NaN)).toBe(0x7fc0);
  });

  it('round-trips every non-NaN bfloat16 pattern', () => {
    for (let b = 0; b < 0x10000; b++) {
      const v = bf16ToF32(b);
      if (Number.isNaN(v)) continue;
      expect(f32ToBf16(v)).toBe(b);
    }
  });
});
