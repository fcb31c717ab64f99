import { describe, expect, it } from 'vitest';

import { DataError } from '../../src/data/errors.js';
import { mulberry32 } from '../../src/data/phantom.js';
import { rleDecode, rleEncode, rleEncodeLabel } from '../../src/data/rle.js';

const m = (...rows: number[][]): Uint8Array => Uint8Array.from(rows.flat());

describe('rleEncode (CheXmask: 1-based starts, row-major)', () => {
  it('encodes the 3x4 hand case', () => {
    // index: 0  1  2  3 | 4 5 6 7 | 8 9 10 11 -> pixels 1..3 (start 2, length 3) and pixel 8 (start 9, length 1)
    const mask = m([0, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0]);
    expect(rleEncode(mask, 3, 4)).toBe('2 3 9 1');
    expect([...rleDecode('2 3 9 1', 3, 4)]).toEqual([...mask]);
  });

  it('lets runs cross row ends (one flat sequence)', () => {
    // 2x3: pixels 2, 3, 4 (0-based) -> one run starting at 3
    expect(rleEncode(m([0, 0, 1], [1, 1, 0]), 2, 3)).toBe('3 3');
  });

  it('encodes empty, full and single-pixel masks', () => {
    expect(rleEncode(new Uint8Array(6), 2, 3)).toBe('');
    expect(rleEncode(new Uint8Array(4).fill(1), 2, 2)).toBe('1 4');
    expect(rleEncode(m([0, 0], [0, 1]), 2, 2)).toBe('4 1');
    expect(rleEncode(m([1, 0], [0, 0]), 2, 2)).toBe('1 1');
  });

  it('treats any non-zero value as foreground; rleEncodeLabel picks one class', () => {
    expect(rleEncode(m([0, 7, 255, 0]), 1, 4)).toBe('2 2');
    const labels = m([1, 1, 2, 3], [3, 2, 2, 0]);
    expect(rleEncodeLabel(labels, 2, 4, 1)).toBe('1 2');
    expect(rleEncodeLabel(labels, 2, 4, 2)).toBe('3 1 6 2');
    expect(rleEncodeLabel(labels, 2, 4, 3)).toBe('4 2');
  });

  it('round-trips random masks, and the run lengths add up to the foreground count', () => {
    const rnd = mulberry32(99);
    for (let trial = 0; trial < 50; trial++) {
      const h = 1 + Math.floor(rnd() * 20);
      const w = 1 + Math.floor(rnd() * 20);
      const p = rnd();
      const mask = Uint8Array.from({ length: h * w }, () => (rnd() < p ? 1 : 0));
      const rle = rleEncode(mask, h, w);
      expect([...rleDecode(rle, h, w)]).toEqual([...mask]);
      const nums = rle === '' ? [] : rle.split(' ').map(Number);
      const lengths = nums.filter((_, k) => k % 2 === 1);
      expect(lengths.reduce((a, b) => a + b, 0)).toBe(mask.reduce((a, b) => a + b, 0));
      // runs are maximal: consecutive runs never touch
      for (let k = 2; k < nums.length; k += 2) expect((nums[k] as number) - 1).toBeGreaterThan((nums[k - 2] as number) - 1 + (nums[k - 1] as number));
    }
  });

  it('rejects a mask of the wrong length', () => {
    expect(() => rleEncode(new Uint8Array(5), 2, 3)).toThrow(/5 values, expected 2×3 = 6/);
  });
});

describe('rleDecode', () => {
  it('decodes blank strings to an empty mask and accepts any whitespace', () => {
    expect([...rleDecode('', 2, 2)]).toEqual([0, 0, 0, 0]);
    expect([...rleDecode('   ', 2, 2)]).toEqual([0, 0, 0, 0]);
    expect([...rleDecode(' 1\t1\n 4  1 ', 2, 2)]).toEqual([1, 0, 0, 1]);
  });

  it('accepts touching runs', () => {
    expect([...rleDecode('1 2 3 1', 1, 4)]).toEqual([1, 1, 1, 0]);
  });

  const bad: [string, RegExp][] = [
    ['2 3 9', /3 values, an odd number/],
    ['0 2', /run 1 \(start 0, length 2\): start out of range 1\.\.12/],
    ['13 1', /start out of range 1\.\.12 for a 3×4 mask/],
    ['2 3 4 1', /run 2 \(start 4, length 1\) overlaps or is out of order: the previous run \(start 2, length 3\) ends at pixel 4/],
    ['9 1 2 3', /run 2 \(start 2, length 3\) overlaps or is out of order/],
    ['11 3', /run 1 \(start 11, length 3\) runs past the end of the 3×4 mask \(12 pixels\): its last pixel would be 13/],
    ['2 x', /value 2 \('x', the length of run 1\) is not a non-negative integer/],
    ['2.5 1', /value 1 \('2\.5', the start of run 1\)/],
    ['-1 2', /is not a non-negative integer/],
    ['3 0', /run 1 \(start 3, length 0\): length must be at least 1/],
  ];
  for (const [rle, msg] of bad) {
    it(`rejects '${rle}'`, () => {
      let err: unknown;
      try {
        rleDecode(rle, 3, 4);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(DataError);
      expect((err as DataError).code).toBe('CXF_INPUT');
      expect((err as Error).message).toMatch(msg);
    });
  }

  it('rejects bad dimensions', () => {
    expect(() => rleDecode('1 1', 0, 4)).toThrow(/positive integer height and width, got 0×4/);
  });
});
