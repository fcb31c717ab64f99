import { describe, expect, it } from 'vitest';

import { centerCrop, centerCropOffsets, resizePlane, resizeShorterSide, shorterSideSize } from '../../src/image/resize.js';

const plane = (rows: number[][]): Float32Array => Float32Array.from(rows.flat());

// Keys cubic, a = −0.5, evaluated by hand at the offsets that occur below:
//   k(0.25) = 111/128, k(0.75) = 29/128, k(1.25) = −9/128, k(1.75) = −3/128 (k(x) = k(−x)).
describe('resizePlane bicubic (PIL semantics)', () => {
  it('downsamples 4 -> 2 with the kernel stretched by 2', () => {
    // scale 2, support 4. Output 0: center 1, taps x = 0..3 at (x − 0.5)/2 = −0.25, 0.25, 0.75, 1.25
    //   weights 111, 111, 29, −9 (/242). Output 1: center 3, taps at −1.25, −0.75, −0.25, 0.25 -> −9, 29, 111, 111.
    const row = plane([[10, 20, 30, 40]]);
    const f = resizePlane(row, 4, 1, 2, 1, { roundToUint8: false });
    expect(f[0]).toBeCloseTo((111 * 10 + 111 * 20 + 29 * 30 - 9 * 40) / 242, 5); // 15.8678
    expect(f[1]).toBeCloseTo((-9 * 10 + 29 * 20 + 111 * 30 + 111 * 40) / 242, 5); // 34.1322
    expect([...resizePlane(row, 4, 1, 2, 1)]).toEqual([16, 34]);
  });

  it('upsamples 2 -> 4 with normalised border taps (and clips in 8-bit)', () => {
    // scale 0.5, support 2. Centers 0.25, 0.75, 1.25, 1.75; only the 2 input pixels are taps:
    //   out0: k(0.25), k(1.25) = 111, −9 (/102); out1: k(−0.25), k(0.75) = 111, 29 (/140);
    //   out2: k(−0.75), k(0.25) = 29, 111 (/140); out3: k(−1.25), k(−0.25) = −9, 111 (/102).
    const row = plane([[0, 100]]);
    const f = resizePlane(row, 2, 1, 4, 1, { roundToUint8: false });
    const expected = [(-9 * 100) / 102, (29 * 100) / 140, (111 * 100) / 140, (111 * 100) / 102];
    f.forEach((v, i) => expect(v).toBeCloseTo(expected[i]!, 4));
    expect([...resizePlane(row, 2, 1, 4, 1)]).toEqual([0, 21, 79, 109]); // −8.8 clips to 0
  });

  it('is separable: a vertical resize of a column equals the horizontal resize of the row', () => {
    const v = [3, 250, 17, 90, 141, 8, 77];
    const asRow = resizePlane(plane([v]), 7, 1, 3, 1);
    const asCol = resizePlane(plane(v.map((x) => [x])), 1, 7, 1, 3);
    expect([...asCol]).toEqual([...asRow]);
  });

  it('keeps a constant image constant at any size', () => {
    for (const c of [0, 77, 255]) {
      const img = new Float32Array(13 * 9).fill(c);
      for (const [w, h] of [[5, 4], [13, 20], [40, 3], [1, 1]] as const) {
        expect(resizePlane(img, 13, 9, w, h).every((x) => x === c)).toBe(true);
        expect(resizePlane(img, 13, 9, w, h, { roundToUint8: false }).every((x) => Math.abs(x - c) < 1e-4)).toBe(true);
      }
    }
  });

  it('reproduces a linear ramp away from the borders (upsampling, and integer downsampling factors)', () => {
    // Pixel x of the input holds x, i.e. the value at position p is p − 0.5. Output i is centred at c = (i + 0.5)·s.
    // Upsampling: Keys' a = −0.5 cubic reproduces polynomials up to degree 2, so the output is exactly c − 0.5.
    // Integer downsampling factors: the taps sit symmetrically around c (c is an integer or half-integer), so
    // the normalised, symmetric weights have zero first moment and again give c − 0.5.
    const w = 60;
    const ramp = Float32Array.from({ length: w }, (_, x) => x);
    for (const out of [20, 30, 90, 137, 240]) {
      const s = w / out;
      const support = 2 * Math.max(s, 1);
      const r = resizePlane(ramp, w, 1, out, 1, { roundToUint8: false });
      let checked = 0;
      for (let i = 0; i < out; i++) {
        const c = (i + 0.5) * s;
        if (c - support < 0 || c + support > w) continue; // border: taps are cut off and renormalised
        expect(r[i]).toBeCloseTo(c - 0.5, 4);
        checked++;
      }
      expect(checked).toBeGreaterThan(out / 2);
    }
  });

  it('returns an equal copy when the size is unchanged', () => {
    const img = plane([[1, 2, 3], [4, 5, 6]]);
    const out = resizePlane(img, 3, 2, 3, 2);
    expect([...out]).toEqual([...img]);
    expect(out).not.toBe(img);
  });

  it('matches Pillow on a recorded 7x5 image, in 8-bit and float', () => {
    // Recorded with Pillow 11.2.1 (and 13.0.0 where noted):
    //   a = np.random.default_rng(7).integers(0, 256, (5, 7), dtype=np.uint8)
    //   Image.fromarray(a, 'L').resize(size, Image.BICUBIC); Image.fromarray(a.astype(np.float32), 'F').resize(...)
    const a = plane([
      [139, 74, 229, 241, 169, 65, 6], [160, 149, 106, 38, 175, 188, 205], [175, 229, 98, 249, 10, 148, 95],
      [86, 147, 198, 66, 39, 106, 213], [171, 45, 167, 57, 69, 81, 55],
    ]);
    expect([...resizePlane(a, 7, 5, 3, 4)]).toEqual([129, 189, 90, 164, 115, 160, 161, 116, 114, 119, 87, 80]);
    expect([...resizePlane(a, 7, 5, 7, 2)]).toEqual([154, 145, 148, 159, 133, 137, 115, 137, 134, 160, 100, 42, 111, 136]);
    expect([...resizePlane(a, 7, 5, 12, 9)].slice(0, 12)).toEqual([143, 108, 67, 157, 249, 255, 240, 181, 115, 52, 6, 0]);
    const f = resizePlane(a, 7, 5, 3, 4, { roundToUint8: false });
    expect([...f]).toEqual(
      [129.32229614257812, 188.55262756347656, 89.74231719970703, 163.64361572265625, 114.1541748046875,
        160.35289001464844, 160.57366943359375, 116.60960388183594, 114.42709350585938, 119.57472229003906,
        86.74525451660156, 79.41992950439453],
    );
    // Width up, height down by more than twice the width change: Pillow 13 runs the vertical pass first.
    expect([...resizePlane(a, 7, 5, 10, 3)]).toEqual([
      153, 121, 117, 173, 164, 163, 174, 133, 101, 86, 148, 183, 187, 119, 151, 124, 50, 129, 161, 156,
      136, 103, 107, 183, 105, 48, 53, 79, 106, 122,
    ]);
    expect([...resizePlane(a, 7, 5, 10, 3, { passOrder: 'pillow13' })]).toEqual([
      153, 122, 117, 173, 163, 163, 175, 133, 101, 86, 148, 184, 187, 119, 150, 124, 50, 129, 161, 156,
      136, 102, 106, 183, 105, 48, 53, 79, 106, 123,
    ]);
  });

  it('rejects non-8-bit samples when rounding to uint8, and bad sizes', () => {
    expect(() => resizePlane(Float32Array.from([0.5, 1]), 2, 1, 1, 1)).toThrow(/integers 0\.\.255.*0\.5 at index 0/);
    expect(() => resizePlane(Float32Array.from([256, 1]), 2, 1, 1, 1)).toThrow(/256 at index 0/);
    expect(() => resizePlane(new Float32Array(3), 2, 1, 1, 1)).toThrow(/2×1 = 2 samples but received 3/);
    expect(() => resizePlane(new Float32Array(2), 2, 1, 0, 1)).toThrow(/positive integer for output width but received 0/);
  });
});

describe('resizePlane nearest (PIL semantics)', () => {
  it('picks trunc((i + 0.5)·scale)', () => {
    const row = plane([[10, 20, 30, 40]]);
    expect([...resizePlane(row, 4, 1, 2, 1, { filter: 'nearest' })]).toEqual([20, 40]); // 1, 3
    expect([...resizePlane(plane([[10, 20]]), 2, 1, 4, 1, { filter: 'nearest' })]).toEqual([10, 10, 20, 20]);
    expect([...resizePlane(plane([[10, 20, 30]]), 3, 1, 2, 1, { filter: 'nearest' })]).toEqual([10, 30]); // 0.75, 2.25
    // Works on floats (no rounding).
    expect([...resizePlane(plane([[0.25], [0.5]]), 1, 2, 1, 4, { filter: 'nearest' })]).toEqual([0.25, 0.25, 0.5, 0.5]);
  });

  it('matches Pillow on the recorded image', () => {
    const a = plane([
      [139, 74, 229, 241, 169, 65, 6], [160, 149, 106, 38, 175, 188, 205], [175, 229, 98, 249, 10, 148, 95],
      [86, 147, 198, 66, 39, 106, 213], [171, 45, 167, 57, 69, 81, 55],
    ]);
    expect([...resizePlane(a, 7, 5, 10, 3, { filter: 'nearest' })]).toEqual([
      139, 74, 74, 229, 241, 241, 169, 65, 65, 6, 175, 229, 229, 98, 249, 249, 10, 148, 148, 95,
      171, 45, 45, 167, 57, 57, 69, 81, 81, 55,
    ]);
  });
});

describe('shorterSideSize / resizeShorterSide (torchvision Resize(int))', () => {
  it('sets the shorter side and truncates the longer one', () => {
    expect(shorterSideSize(2544, 3056, 518)).toEqual({ width: 518, height: 622 }); // 518·3056/2544 = 622.2
    expect(shorterSideSize(3056, 2544, 518)).toEqual({ width: 622, height: 518 });
    expect(shorterSideSize(100, 100, 518)).toEqual({ width: 518, height: 518 });
    expect(shorterSideSize(300, 599, 100)).toEqual({ width: 100, height: 199 }); // 199.67 truncates
  });

  it('resizes and reports the new size', () => {
    const img = new Float32Array(40 * 20).fill(9);
    const out = resizeShorterSide(img, 40, 20, 10);
    expect(out.width).toBe(20);
    expect(out.height).toBe(10);
    expect(out.data.length).toBe(200);
    expect(out.data.every((v) => v === 9)).toBe(true);
  });
});

describe('centerCrop (torchvision)', () => {
  const cols = (w: number, h: number): Float32Array => Float32Array.from({ length: w * h }, (_, i) => i % w);
  const rows = (w: number, h: number): Float32Array => Float32Array.from({ length: w * h }, (_, i) => Math.floor(i / w));

  it('rounds the offset half to even like Python round()', () => {
    expect(centerCropOffsets(20, 14, 14, 14)).toEqual({ left: 3, top: 0 }); // 6/2 = 3
    expect(centerCropOffsets(17, 15, 14, 14)).toEqual({ left: 2, top: 0 }); // 1.5 -> 2, 0.5 -> 0
    expect(centerCropOffsets(19, 21, 14, 14)).toEqual({ left: 2, top: 4 }); // 2.5 -> 2, 3.5 -> 4
    expect(centerCropOffsets(17, 15, 14, 14, 'hf')).toEqual({ left: 1, top: 0 }); // floor
  });

  it('extracts the centred window', () => {
    const a = centerCrop(cols(17, 16), 17, 16, 14, 14);
    expect(a.width).toBe(14);
    expect(a.height).toBe(14);
    expect([...a.data.subarray(0, 14)]).toEqual(Array.from({ length: 14 }, (_, i) => i + 2));
    const b = centerCrop(rows(16, 17), 16, 17, 14, 14);
    expect(b.data[0]).toBe(2);
    expect(b.data[14 * 13]).toBe(15);
    const c = centerCrop(cols(17, 16), 17, 16, 14, 14, 'hf');
    expect(c.data[0]).toBe(1);
  });

  it('is the identity at full size and rejects crops larger than the image', () => {
    const img = cols(5, 4);
    expect([...centerCrop(img, 5, 4, 5, 4).data]).toEqual([...img]);
    expect(() => centerCrop(img, 5, 4, 6, 4)).toThrow(/no larger than the image \(5×4\) but received 6×4/);
  });
});
