import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { equalizeHist } from '../../src/image/equalize.js';
import { ImageError } from '../../src/image/errors.js';
import { defaultPreprocess, preprocessBatch, preprocessImage, resolvePreprocessOptions } from '../../src/image/preprocess.js';
import { centerCrop, resizePlane } from '../../src/image/resize.js';
import { readSafetensors } from '../../src/io/safetensors.js';
import { writeColorPng, writeGray16Png, writeGray8Png, writeJpeg } from './fixtures.js';
import { goldenFile } from './golden.js';

const MEAN = [0.485, 0.456, 0.406];
const STD = [0.229, 0.224, 0.225];
/** The expected normalised value of 8-bit level v in channel c. */
const norm = (v: number, c: number): number => (v / 255 - MEAN[c]!) / STD[c]!;
/** No equalisation, no resize, no crop: only gray/8-bit conversion and normalisation remain. */
const PLAIN = { equalize: false, resize: null, crop: null } as const;

let dir: string;
const f = (name: string): string => path.join(dir, name);

/** Asserts a CHW output equals norm(levels[c][i], c) for every channel and pixel. */
function expectLevels(data: Float32Array, levels: number[][], tol = 1e-5): void {
  const hw = levels[0]!.length;
  expect(data.length).toBe(3 * hw);
  let maxErr = 0;
  for (let c = 0; c < 3; c++) {
    const lv = levels[Math.min(c, levels.length - 1)]!;
    for (let i = 0; i < hw; i++) maxErr = Math.max(maxErr, Math.abs(data[c * hw + i]! - norm(lv[i]!, c)));
  }
  expect(maxErr).toBeLessThan(tol);
}

const ramp16 = Array.from({ length: 16 * 16 }, (_, i) => i % 256);
const halves = Array.from({ length: 14 * 14 }, (_, i) => (i % 14 < 7 ? 50 : 200));
const fourLevels = Array.from({ length: 14 * 14 }, (_, i) => [10, 20, 30, 40][Math.floor(i / 49)]!);
const rgbPattern = Array.from({ length: 14 * 14 }, (_, i) => [(i * 7) % 256, (i * 13 + 5) % 256, (i * 29 + 11) % 256]);

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cxf-pre-'));
  await writeGray8Png(f('ramp.png'), 16, 16, ramp16);
  await writeGray8Png(f('ramp-b.png'), 16, 16, ramp16.map((v) => 255 - v));
  await writeGray8Png(f('halves.png'), 14, 14, halves);
  await writeGray8Png(f('four.png'), 14, 14, fourLevels);
  await writeGray8Png(f('const.png'), 42, 28, new Array(42 * 28).fill(77));
  await writeGray8Png(f('cols.png'), 17, 14, Array.from({ length: 17 * 14 }, (_, i) => (i % 17) * 10));
  await writeGray8Png(f('small.png'), 10, 10, new Array(100).fill(1));
  await writeGray8Png(f('wide.png'), 20, 16, new Array(320).fill(3));
  await writeGray8Png(f('natural.png'), 40, 60, Array.from({ length: 40 * 60 }, (_, i) => Math.round(128 + 100 * Math.sin(i / 37))));
  await writeGray16Png(f('g16.png'), 14, 14, Array.from({ length: 196 }, (_, i) => i * 300));
  await writeColorPng(f('rgb.png'), 14, 14, 3, rgbPattern.flat());
  await writeColorPng(f('rgba.png'), 14, 14, 4, rgbPattern.map((p, i) => [...p, i % 256]).flat());
  await writeColorPng(
    f('rgb-halves.png'),
    14,
    14,
    3,
    halves.map((v) => [v, 9, 255 - v]).flat(),
  );
  await writeJpeg(f('gray.jpg'), 14, 14, 1, halves);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('preprocessImage', () => {
  it('normalises an 8-bit gray image: (v/255 − mean_c)/std_c, replicated to 3 channels', async () => {
    const out = await preprocessImage(f('ramp.png'), PLAIN);
    expect(out.width).toBe(16);
    expect(out.height).toBe(16);
    expect(out.source).toEqual({ width: 16, height: 16, channels: 1, bitDepth: 8 });
    expectLevels(out.data, [ramp16]);
  });

  it('equalises with OpenCV semantics before normalising', async () => {
    // Two levels -> 0 and 255.
    const a = await preprocessImage(f('halves.png'), { ...PLAIN, equalize: true });
    expectLevels(a.data, [halves.map((v) => (v === 50 ? 0 : 255))]);
    // Four levels of 49 pixels each: scale = 255/147, lut = 0, 85, 170, 255.
    const b = await preprocessImage(f('four.png'), { ...PLAIN, equalize: true });
    expectLevels(b.data, [fourLevels.map((v) => ({ 10: 0, 20: 85, 30: 170, 40: 255 })[v]!)]);
  });

  it('resizes the shorter side and center-crops (a constant image stays constant)', async () => {
    // 42×28 -> shorter side 14 -> 21×14 -> crop 14×14.
    const out = await preprocessImage(f('const.png'), { equalize: false, resize: 14, crop: 14 });
    expect([out.width, out.height]).toEqual([14, 14]);
    expect(out.source).toMatchObject({ width: 42, height: 28 });
    expectLevels(out.data, [new Array(196).fill(77)]);
    const exact = await preprocessImage(f('const.png'), { equalize: false, resize: [20, 30], crop: null });
    expect([out.width, out.height, exact.width, exact.height]).toEqual([14, 14, 30, 20]);
  });

  it('crops with torchvision rounding by default and HF floor rounding on request', async () => {
    // 17 columns holding x·10, crop 14: excess 3 -> left round(1.5) = 2 (torchvision) or 1 (HF).
    const tv = await preprocessImage(f('cols.png'), { ...PLAIN, crop: 14 });
    expectLevels(tv.data, [Array.from({ length: 196 }, (_, i) => ((i % 14) + 2) * 10)]);
    const hf = await preprocessImage(f('cols.png'), { ...PLAIN, crop: 14, cropRounding: 'hf' });
    expectLevels(hf.data, [Array.from({ length: 196 }, (_, i) => ((i % 14) + 1) * 10)]);
    const rect = await preprocessImage(f('cols.png'), { ...PLAIN, crop: [14, 15] });
    expect([rect.width, rect.height]).toEqual([15, 14]);
  });

  it('converts RGB to gray with the PIL formula, or keeps the channels when grayscale is off', async () => {
    const gray = rgbPattern.map(([r, g, b]) => Math.floor((r! * 19595 + g! * 38470 + b! * 7471 + 0x8000) / 65536));
    const a = await preprocessImage(f('rgb.png'), PLAIN);
    expect(a.source.channels).toBe(3);
    expectLevels(a.data, [gray]);
    const b = await preprocessImage(f('rgb.png'), { ...PLAIN, grayscale: false });
    expectLevels(b.data, [0, 1, 2].map((c) => rgbPattern.map((p) => p[c]!)));
    // RGBA: the alpha channel is dropped.
    const c = await preprocessImage(f('rgba.png'), { ...PLAIN, grayscale: false });
    expect([...c.data]).toEqual([...b.data]);
  });

  it('equalises each channel separately when grayscale is off', async () => {
    const out = await preprocessImage(f('rgb-halves.png'), { ...PLAIN, grayscale: false, equalize: true });
    // R: 50/200 -> 0/255; G constant 9 stays 9; B: 205/55 -> 255/0.
    expectLevels(out.data, [halves.map((v) => (v === 50 ? 0 : 255)), new Array(196).fill(9), halves.map((v) => (v === 50 ? 255 : 0))]);
  });

  it('reduces 16-bit PNGs with round(v/257)', async () => {
    const out = await preprocessImage(f('g16.png'), PLAIN);
    expect(out.source).toEqual({ width: 14, height: 14, channels: 1, bitDepth: 16 });
    expectLevels(out.data, [Array.from({ length: 196 }, (_, i) => Math.round((i * 300) / 257))]);
  });

  it('accepts JPEG input', async () => {
    const out = await preprocessImage(f('gray.jpg'), { ...PLAIN, equalize: true });
    expect(out.source).toEqual({ width: 14, height: 14, channels: 1, bitDepth: 8 });
    // JPEG ringing blurs the two levels a little, but equalisation still spans the full range.
    const ch0 = out.data.subarray(0, 196);
    expect(Math.min(...ch0)).toBeCloseTo(norm(0, 0), 5);
    expect(Math.max(...ch0)).toBeCloseTo(norm(255, 0), 5);
  });

  it('runs the default CXformer pipeline: equalise -> shorter side 518 -> crop 518', async () => {
    const out = await preprocessImage(f('natural.png'));
    expect([out.width, out.height]).toEqual([518, 518]);
    expect(out.data.length).toBe(3 * 518 * 518);
    // The same steps composed by hand from the primitives: 40×60 -> 518×777 -> crop rows from round(259/2) = 130.
    const src = Array.from({ length: 40 * 60 }, (_, i) => Math.round(128 + 100 * Math.sin(i / 37)));
    const eq = Float32Array.from(equalizeHist(Uint8Array.from(src)));
    const resized = resizePlane(eq, 40, 60, 518, 777);
    const cropped = centerCrop(resized, 518, 777, 518, 518).data;
    expect(cropped[0]).toBe(resized[130 * 518]);
    expectLevels(out.data, [[...cropped]]);
  });

  it('rejects results smaller than one patch and crops larger than the image, naming the file', async () => {
    await expect(preprocessImage(f('small.png'), PLAIN)).rejects.toThrow(
      `${f('small.png')}: expected a preprocessed image of at least 14×14 px (one patch), found 10×10 (source 10×10)`,
    );
    const err = await preprocessImage(f('wide.png'), { ...PLAIN, crop: 18 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageError);
    expect((err as Error).message).toMatch(/wide\.png: expected the image \(20×16, 20×16 after resizing\) to be at least as large as the center crop 18×18/);
    await expect(preprocessImage(f('missing.png'))).rejects.toThrow(/missing\.png: .*found no such file/);
  });

  it('validates options before decoding', async () => {
    await expect(preprocessImage(f('missing.png'), { resize: -1 })).rejects.toThrow(
      'Expected a positive integer, [height, width] of positive integers, or null for preprocess option "resize" but received -1 (number)',
    );
    expect(() => resolvePreprocessOptions({ std: [1, 0, 1] })).toThrow(/"std" but received \[1,0,1\]/);
    expect(() => resolvePreprocessOptions({ mean: [1, 2] as never })).toThrow(/array of 3 finite numbers for preprocess option "mean"/);
    expect(() => resolvePreprocessOptions({ sizes: 3 } as never)).toThrow(/as a preprocess option but received "sizes"/);
    expect(() => resolvePreprocessOptions({ resample: 'bilinear' as never })).toThrow(/'bicubic' or 'nearest' for preprocess option "resample"/);
    expect(resolvePreprocessOptions()).toEqual(defaultPreprocess);
    expect(defaultPreprocess).toMatchObject({ grayscale: true, equalize: true, resize: 518, crop: 518, rescale: 1 / 255 });
  });
});

describe('preprocessBatch', () => {
  it('stacks images into NCHW in input order', async () => {
    const batch = await preprocessBatch([f('ramp.png'), f('ramp-b.png'), f('ramp.png')], PLAIN);
    expect(batch.shape).toEqual([3, 3, 16, 16]);
    const one = await preprocessImage(f('ramp.png'), PLAIN);
    const two = await preprocessImage(f('ramp-b.png'), PLAIN);
    const chw = 3 * 256;
    expect([...batch.data.subarray(0, chw)]).toEqual([...one.data]);
    expect([...batch.data.subarray(chw, 2 * chw)]).toEqual([...two.data]);
    expect([...batch.data.subarray(2 * chw)]).toEqual([...one.data]);
    expect(batch.sources).toHaveLength(3);
  });

  it('rejects images that end up with different sizes, naming the file', async () => {
    await expect(preprocessBatch([f('ramp.png'), f('halves.png')], PLAIN)).rejects.toThrow(
      new RegExp(`halves\\.png: expected every image of the batch to preprocess to 16×16 .* found 14×14`),
    );
    await expect(preprocessBatch([], PLAIN)).rejects.toThrow(/non-empty list of image paths/);
  });
});

describe('golden consistency', () => {
  it('gray_56 saved as 8-bit PNGs reproduces pixel_values_56', async () => {
    const { tensors } = await readSafetensors(goldenFile('vit_tiny_inputs.safetensors'));
    const gray = tensors.get('gray_56')!.data as Float32Array;
    const px = tensors.get('pixel_values_56')!.data as Float32Array;
    const hw = 56 * 56;
    const paths: string[] = [];
    for (let n = 0; n < 2; n++) {
      const levels = Array.from(gray.subarray(n * hw, (n + 1) * hw), (g) => Math.round(g * 255));
      // The golden planes are exact 8-bit levels / 255.
      expect(Math.max(...levels.map((v, i) => Math.abs(v / 255 - gray[n * hw + i]!)))).toBeLessThan(1e-6);
      paths.push(f(`golden-${n}.png`));
      await writeGray8Png(paths[n]!, 56, 56, levels);
    }
    const batch = await preprocessBatch(paths, PLAIN);
    expect(batch.shape).toEqual([2, 3, 56, 56]);
    let maxErr = 0;
    for (let i = 0; i < px.length; i++) maxErr = Math.max(maxErr, Math.abs(batch.data[i]! - px[i]!));
    expect(maxErr).toBeLessThan(1 / 255 / 0.229); // the brief's bound: one 8-bit level
    expect(maxErr).toBeLessThan(1e-5); // in fact float32-exact up to rounding
  });
});
