import { describe, expect, it } from 'vitest';

import { equalizeHist, equalizeHistLut, histogram256 } from '../../src/image/equalize.js';

// cv::equalizeHist: i = first non-empty bin, scale = 255.f / (total − hist[i]) (float32),
// lut[v] = cvRound(float32(C(v) − hist[i]) · scale) with cvRound = round half to even.
describe('equalizeHist (OpenCV semantics)', () => {
  it('leaves a constant image unchanged', () => {
    expect([...equalizeHist(new Uint8Array(9).fill(7))]).toEqual(new Array(9).fill(7));
    expect([...equalizeHist(new Uint8Array(4))]).toEqual([0, 0, 0, 0]);
    expect([...equalizeHist(new Uint8Array(4).fill(255))]).toEqual([255, 255, 255, 255]);
  });

  it('maps a two-level image to 0 and 255', () => {
    // total 5, hist[50] = 2 -> scale 255/3 = 85; lut[200] = 3·85 = 255
    expect([...equalizeHist(Uint8Array.from([50, 200, 50, 200, 200]))]).toEqual([0, 255, 0, 255, 255]);
  });

  it('rounds exact ties half to even', () => {
    // total 7, hist[0] = 1 -> scale = 255/6 = 42.5 exactly (float32 too).
    // lut: 10 -> 42.5 -> 42, 20 -> 85, 30 -> 127.5 -> 128, 40 -> 170, 50 -> 212.5 -> 212, 60 -> 255.
    expect([...equalizeHist(Uint8Array.from([0, 10, 20, 30, 40, 50, 60]))]).toEqual([0, 42, 85, 128, 170, 212, 255]);
  });

  it('computes in float32 like OpenCV (not with the real-number formula)', () => {
    // total 15, hist[0] = 1 -> scale = float32(255/14) = 18.214284896850586 (below 255/14 = 18.2142857…),
    // 7 · scale = 127.49999237 in float32 -> 127, whereas round(255·7/14) = round(127.5) would give 128.
    const img = Uint8Array.from([0, ...new Array(7).fill(100), ...new Array(7).fill(200)]);
    const out = equalizeHist(img);
    expect(out[0]).toBe(0);
    expect(out[1]).toBe(127);
    expect(out[14]).toBe(255);
  });

  it('matches cv2.equalizeHist on a recorded 5x7 image', () => {
    // Recorded with opencv-python-headless 5.0.0:
    //   a = np.random.default_rng(7).integers(0, 256, (5, 7), dtype=np.uint8); cv2.equalizeHist(a)
    const a = [
      [139, 74, 229, 241, 169, 65, 6], [160, 149, 106, 38, 175, 188, 205], [175, 229, 98, 249, 10, 148, 95],
      [86, 147, 198, 66, 39, 106, 213], [171, 45, 167, 57, 69, 81, 55],
    ].flat();
    const expected = [
      [128, 75, 240, 248, 172, 52, 0], [158, 150, 120, 15, 195, 202, 218], [195, 240, 105, 255, 8, 142, 98],
      [90, 135, 210, 60, 22, 120, 225], [180, 30, 165, 45, 68, 82, 38],
    ].flat();
    expect([...equalizeHist(Uint8Array.from(a))]).toEqual(expected);
  });

  it('stays within half a level of the real-number formula and is monotone on random images', () => {
    // mulberry32, a small deterministic PRNG
    let seed = 12345;
    const rand = (): number => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    for (let trial = 0; trial < 20; trial++) {
      const n = 1 + Math.floor(rand() * 3000);
      const lo = Math.floor(rand() * 200);
      const img = Uint8Array.from({ length: n }, () => lo + Math.floor(rand() ** 2 * (256 - lo)));
      const hist = histogram256(img);
      const lut = equalizeHistLut(hist);
      let vmin = 0;
      while (hist[vmin] === 0) vmin++;
      const out = equalizeHist(img);
      if (hist[vmin] === n) {
        expect(out.every((v, k) => v === img[k])).toBe(true);
        continue;
      }
      let c = 0;
      let prev = -1;
      for (let v = vmin; v < 256; v++) {
        c += hist[v]!;
        const ideal = (255 * (c - hist[vmin]!)) / (n - hist[vmin]!);
        expect(Math.abs(lut[v]! - ideal)).toBeLessThanOrEqual(0.5 + 1e-4);
        expect(lut[v]!).toBeGreaterThanOrEqual(prev);
        prev = lut[v]!;
      }
      expect(lut[vmin]).toBe(0);
      expect(Math.max(...out)).toBe(255);
      expect(out.every((v, k) => v === lut[img[k]!])).toBe(true);
    }
  });

  it('handles empty input and rejects bad histograms', () => {
    expect(equalizeHist(new Uint8Array(0)).length).toBe(0);
    expect(() => equalizeHistLut(new Array(255).fill(1))).toThrow(/expected 256 bins, found 255/);
    expect(() => equalizeHistLut(new Array(256).fill(0))).toThrow(/non-empty histogram/);
  });
});
