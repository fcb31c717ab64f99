/**
 * Hardening (#13): the pixel limit is the same for PNG, JPEG and DICOM and is checked before decoding (a header
 * claiming 65535 × 65535 is refused at once, naming the file); Pixel Data that runs past the end of the file is
 * refused with its declared and available lengths. End to end, both exit 2 with the file named and no stack.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { decodeImage } from '../../src/image/decode.js';
import { decodeDicom } from '../../src/image/dicom.js';
import { ImageError } from '../../src/image/errors.js';
import { DEFAULT_MAX_PIXELS, resolveMaxPixels } from '../../src/image/limits.js';
import { encodeDicom, encodeRleFrame, imagePixel, pixelData, TS } from '../helpers/dicom-writer.js';
import { goldenFile, repoRoot } from './golden.js';

let dir: string;
const f = (name: string): string => path.join(dir, name);

/** What decoding threw (fails the test when nothing was thrown). */
async function failure(p: Promise<unknown>): Promise<ImageError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(ImageError);
    return e as ImageError;
  }
  throw new Error('expected the decoder to refuse the file');
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cxf-dicom-limits-'));
  // An RLE DICOM whose header claims 65535 × 65535 (4.3 G pixels); its only frame holds 2 × 2.
  const rle = (rows: number, columns: number): Buffer =>
    encodeDicom({ transferSyntax: TS.rle, elements: imagePixel({ rows, columns, bitsAllocated: 16 }), frames: [encodeRleFrame([1, 2, 3, 4], 2, 2, 1, 16)] });
  await writeFile(f('huge-rle.dcm'), rle(65535, 65535));
  await writeFile(f('small-rle.dcm'), rle(2, 2));
  // The same header on native (uncompressed) data.
  await writeFile(f('huge-native.dcm'), encodeDicom({ transferSyntax: TS.explicitLE, elements: [...imagePixel({ rows: 20000, columns: 20000, bitsAllocated: 16 }), pixelData([1, 2, 3, 4], 16)] }));
  // Pixel Data whose declared length (1000 bytes) runs past the end of the file; the 7 × 1 frame itself fits.
  const good = encodeDicom({ transferSyntax: TS.explicitLE, elements: [...imagePixel({ rows: 1, columns: 7, bitsAllocated: 16 }), pixelData([0, 100, 200, 300, 400, 500, 600], 16)] });
  const at = good.lastIndexOf(Buffer.from([0xe0, 0x7f, 0x10, 0x00])); // (7FE0,0010) OW, reserved, 32-bit length
  const long = Buffer.from(good);
  long.writeUInt32LE(1000, at + 8);
  await writeFile(f('long-pixels.dcm'), long);
  await writeFile(f('good.dcm'), good);
  await writeFile(f('wide.png'), await sharp(Buffer.alloc(40 * 30), { raw: { width: 40, height: 30, channels: 1 } }).png().toBuffer());
  await writeFile(f('wide.jpg'), await sharp(Buffer.alloc(40 * 30 * 3, 80), { raw: { width: 40, height: 30, channels: 3 } }).jpeg().toBuffer());
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('pixel limit', () => {
  it('defaults to sharp\'s limitInputPixels and reads CXFORMER_MAX_PIXELS', () => {
    expect(DEFAULT_MAX_PIXELS).toBe(268402689);
    expect(resolveMaxPixels(undefined, {})).toBe(DEFAULT_MAX_PIXELS);
    expect(resolveMaxPixels(undefined, { CXFORMER_MAX_PIXELS: '1000' })).toBe(1000);
    expect(resolveMaxPixels(undefined, { CXFORMER_MAX_PIXELS: '0' })).toBe(0);
    expect(resolveMaxPixels(50, { CXFORMER_MAX_PIXELS: '1000' })).toBe(50);
    expect(() => resolveMaxPixels(undefined, { CXFORMER_MAX_PIXELS: 'lots' })).toThrow(/Expected an integer >= 0 \(0 = no limit\) for CXFORMER_MAX_PIXELS but received 'lots'/);
    expect(() => resolveMaxPixels(-1)).toThrow(/"maxPixels" but received -1/);
  });

  it('refuses an RLE DICOM claiming 65535×65535 before decoding, naming the file', async () => {
    const t0 = performance.now();
    const e = await failure(decodeImage(f('huge-rle.dcm')));
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(e.code).toBe('CXF_IMAGE');
    expect(e.message).toContain(f('huge-rle.dcm'));
    expect(e.message).toMatch(/expected at most 268402689 pixels per image \(the pixel limit; CXFORMER_MAX_PIXELS changes it, 0 = none\), found 65535×65535 = 4294836225 \(Columns × Rows\); refused before decoding/);
    await expect(decodeDicom(f('huge-rle.dcm'))).rejects.toThrow(/found 65535×65535/);
  });

  it('refuses 20000×20000 native data the same way', async () => {
    const e = await failure(decodeDicom(f('huge-native.dcm')));
    expect(e.message).toMatch(/huge-native\.dcm: expected at most 268402689 pixels .* found 20000×20000 = 400000000/);
  });

  it('applies one configurable limit to DICOM, PNG and JPEG', async () => {
    await expect(decodeDicom(f('small-rle.dcm'), { maxPixels: 4 })).resolves.toMatchObject({ width: 2, height: 2 });
    await expect(decodeDicom(f('small-rle.dcm'), { maxPixels: 3 })).rejects.toThrow(/small-rle\.dcm: expected at most 3 pixels .* found 2×2 = 4/);
    await expect(decodeImage(f('wide.png'), { maxPixels: 1000 })).rejects.toThrow(/wide\.png: expected at most 1000 pixels .* found 40×30 = 1200 \(PNG header\)/);
    await expect(decodeImage(f('wide.jpg'), { maxPixels: 1000 })).rejects.toThrow(/wide\.jpg: expected at most 1000 pixels .* found 40×30 = 1200 \(JPEG header\)/);
    await expect(decodeImage(f('wide.png'), { maxPixels: 1200 })).resolves.toMatchObject({ width: 40, height: 30 });
    await expect(decodeImage(f('small-rle.dcm'), { maxPixels: 3 })).rejects.toThrow(/found 2×2 = 4/);
    // 0 = no limit: the claimed size goes on to the frame check, which finds the frame too small.
    await expect(decodeDicom(f('huge-native.dcm'), { maxPixels: 0 })).rejects.toThrow(/expected 800000000 bytes of Pixel Data/);
  });
});

describe('pixel data past the end of the file', () => {
  it('refuses a declared length the file does not hold, naming both lengths', async () => {
    await expect(decodeDicom(f('good.dcm'))).resolves.toMatchObject({ width: 7, height: 1 });
    const e = await failure(decodeDicom(f('long-pixels.dcm')));
    expect(e.message).toMatch(
      /long-pixels\.dcm: expected the Pixel Data element's declared length of 1000 bytes to lie within the file, found 14 bytes from its start \(offset \d+\) to the end of the file \(truncated file or wrong length\)/,
    );
  });
});

describe('end to end (dist/cli/main.js)', () => {
  const MAIN = path.join(repoRoot, 'dist', 'cli', 'main.js');
  const TINY = path.dirname(goldenFile('vit_tiny_hf/config.json'));
  const embed = (file: string, env: Record<string, string> = {}) =>
    spawnSync(process.execPath, [MAIN, 'embed', '--weights', TINY, file, '--out', f('out.safetensors'), '-q'], {
      encoding: 'utf8',
      env: { ...process.env, CXFORMER_THREADS: '1', ...env },
    });

  it.each([
    ['huge-rle.dcm', {}, /huge-rle\.dcm: expected at most 268402689 pixels .* found 65535×65535/],
    ['long-pixels.dcm', {}, /long-pixels\.dcm: expected the Pixel Data element's declared length of 1000 bytes .* found 14 bytes/],
    ['wide.png', { CXFORMER_MAX_PIXELS: '1000' }, /wide\.png: expected at most 1000 pixels .* found 40×30 = 1200/],
  ] as const)('embed %s exits 2 naming the file', (name, env, message) => {
    const r = embed(f(name), env);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no JS stack
    expect(r.status).toBe(2);
  });
});
