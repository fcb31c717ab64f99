import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { decodeImage } from '../../src/image/decode.js';
import { ImageError } from '../../src/image/errors.js';
import { writeColorPng, writeGray16Png, writeGray8Png, writeJpeg, writeRgb16Png } from './fixtures.js';

let dir: string;
const f = (name: string): string => path.join(dir, name);

const RGB = [255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30, 40, 50, 60, 70, 80, 90];

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cxf-decode-'));
  await writeGray8Png(f('g8.png'), 3, 2, [0, 10, 20, 30, 40, 255]);
  await writeGray16Png(f('g16.png'), 3, 2, [0, 1000, 30000, 65535, 257, 12345]);
  await writeColorPng(f('rgb.png'), 3, 2, 3, RGB);
  await writeColorPng(f('rgba.png'), 3, 2, 4, [255, 0, 0, 10, 0, 255, 0, 20, 0, 0, 255, 30, 10, 20, 30, 0, 40, 50, 60, 255, 70, 80, 90, 128]);
  await writeColorPng(f('ga.png'), 3, 2, 2, [0, 1, 50, 2, 100, 3, 150, 4, 200, 5, 250, 6]);
  await writeColorPng(f('pal.png'), 3, 2, 3, RGB, true);
  await writeRgb16Png(f('rgb16.png'), 2, 1, [65535, 0, 1000, 2000, 3000, 4000]);
  const ramp = Array.from({ length: 32 * 16 }, (_, i) => (i % 32) * 8);
  await writeJpeg(f('gray.jpg'), 32, 16, 1, ramp);
  await writeJpeg(f('rgb.jpg'), 16, 16, 3, Array.from({ length: 16 * 16 }, () => [200, 100, 50]).flat());

  // Broken inputs.
  const big = Array.from({ length: 64 * 64 }, (_, i) => (i * 37) % 256);
  await writeGray8Png(f('big.png'), 64, 64, big);
  await writeJpeg(f('big.jpg'), 64, 64, 1, big);
  for (const name of ['big.png', 'big.jpg']) {
    const bytes = await readFile(f(name));
    await writeFile(f(`trunc-${name}`), bytes.subarray(0, Math.floor(bytes.length / 2)));
  }
  await writeFile(f('garbage.png'), Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(40, 7)]));
  await writeFile(f('text.png'), 'this is not an image');
  await writeFile(f('empty.png'), '');
  await sharp(Buffer.from(big), { raw: { width: 64, height: 64, channels: 1 } }).webp().toFile(f('x.webp'));
  await sharp(Buffer.from(big), { raw: { width: 64, height: 64, channels: 1 } }).tiff().toFile(f('x.tif'));
  await mkdir(f('folder.png'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('decodeImage', () => {
  it('decodes an 8-bit gray PNG exactly, 1 channel', async () => {
    const img = await decodeImage(f('g8.png'));
    expect(img).toMatchObject({ width: 3, height: 2, channels: 1, bitDepth: 8, format: 'png' });
    expect(img.data).toBeInstanceOf(Uint8Array);
    expect([...img.data]).toEqual([0, 10, 20, 30, 40, 255]);
  });

  it('keeps a 16-bit gray PNG at 16 bits', async () => {
    const img = await decodeImage(f('g16.png'));
    expect(img).toMatchObject({ width: 3, height: 2, channels: 1, bitDepth: 16 });
    expect(img.data).toBeInstanceOf(Uint16Array);
    expect([...img.data]).toEqual([0, 1000, 30000, 65535, 257, 12345]);
  });

  it('decodes RGB, RGBA (alpha dropped, not composited) and palette PNGs to 3 channels', async () => {
    for (const name of ['rgb.png', 'rgba.png', 'pal.png']) {
      const img = await decodeImage(f(name));
      expect(img, name).toMatchObject({ width: 3, height: 2, channels: 3, bitDepth: 8 });
      expect([...img.data], name).toEqual(RGB);
    }
  });

  it('decodes gray + alpha to 1 channel', async () => {
    const img = await decodeImage(f('ga.png'));
    expect(img.channels).toBe(1);
    expect([...img.data]).toEqual([0, 50, 100, 150, 200, 250]);
  });

  it('keeps a 16-bit RGB PNG at 16 bits, interleaved', async () => {
    const img = await decodeImage(f('rgb16.png'));
    expect(img).toMatchObject({ width: 2, height: 1, channels: 3, bitDepth: 16 });
    expect([...img.data]).toEqual([65535, 0, 1000, 2000, 3000, 4000]);
  });

  it('decodes gray and colour JPEGs (lossy: values close to the source)', async () => {
    const g = await decodeImage(f('gray.jpg'));
    expect(g).toMatchObject({ width: 32, height: 16, channels: 1, bitDepth: 8, format: 'jpeg' });
    const maxErr = Math.max(...[...g.data].map((v, i) => Math.abs(v - (i % 32) * 8)));
    expect(maxErr).toBeLessThanOrEqual(4);
    const c = await decodeImage(f('rgb.jpg'));
    expect(c.channels).toBe(3);
    expect(Math.abs(c.data[0]! - 200) + Math.abs(c.data[1]! - 100) + Math.abs(c.data[2]! - 50)).toBeLessThanOrEqual(6);
  });

  it.each([
    ['missing.png', /missing\.png: expected a PNG \(8- or 16-bit, gray or RGB, optional alpha\) or JPEG image, found no such file/],
    ['folder.png', /folder\.png: expected a PNG .* or JPEG image, found a directory/],
    ['text.png', /text\.png: expected a PNG .* found unrecognised data \(first bytes 74 68 69 73/],
    ['empty.png', /empty\.png: expected a PNG .* found an empty file/],
    ['x.webp', /x\.webp: expected a PNG .* found a WebP image/],
    ['x.tif', /x\.tif: expected a PNG .* found a TIFF image/],
    ['garbage.png', /garbage\.png: expected a valid PNG file, found a corrupt or truncated one/],
    ['trunc-big.png', /trunc-big\.png: expected a valid PNG file, found a corrupt or truncated one/],
    ['trunc-big.jpg', /trunc-big\.jpg: expected a valid JPEG file, found a corrupt or truncated one/],
  ])('rejects %s with a message naming the file', async (name, message) => {
    const err = await decodeImage(f(name)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageError);
    expect((err as ImageError).code).toBe('CXF_IMAGE');
    expect((err as ImageError).path).toBe(f(name));
    expect((err as Error).message).toMatch(message);
  });
});
