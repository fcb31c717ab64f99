/**
 * DICOM transfer syntaxes: the same pixels through every supported encoding must give the same, hand-computed
 * values. Native syntaxes and RLE are written by test/helpers/dicom-writer.ts (RLE with our own PackBits
 * encoder, plus one frame assembled byte by byte); JPEG baseline frames are made with sharp; JPEG-LS and
 * JPEG 2000 frames with the CharLS / OpenJPEG encoders of the codec packages; JPEG Lossless is checked on the
 * reference DICOM files shipped in jpeg-lossless-decoder-js against the CRC-32s that package's tests publish.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { crc32 } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { decodeImage } from '../../src/image/decode.js';
import { decodeDicom, decodeDicomFloat } from '../../src/image/dicom.js';
import { ImageError } from '../../src/image/errors.js';
import {
  encodeDicom,
  encodeElements,
  encodeJ2k,
  encodeJpegLs,
  encodeRleFrame,
  imagePixel,
  pixelData,
  TS,
  writeDicom,
  type El,
} from '../helpers/dicom-writer.js';

let dir: string;
const f = (name: string): string => path.join(dir, name);

// The CT-like image of dicom-pixels.test.ts: stored → ×0.5 − 260 → window 40/400 LINEAR (values derived there).
const CT_STORED = [-1000, 0, 520, 600, 720, 1000, 1200];
const CT_HU = [-760, -260, 0, 40, 100, 240, 340];
const CT_WINDOWED = [0, 0, 26280, 32850, 42705, 65535, 65535];
const ctHeader = (rows: number, columns: number, extra: El[] = []): El[] => [
  ...imagePixel({ rows, columns, bitsAllocated: 16, pixelRepresentation: 1 }),
  { tag: 0x00281050, vr: 'DS', value: '40' },
  { tag: 0x00281051, vr: 'DS', value: '400' },
  { tag: 0x00281052, vr: 'DS', value: '-260' },
  { tag: 0x00281053, vr: 'DS', value: '0.5' },
  ...extra,
];
const ctNative = (extra: El[] = []): El[] => [...ctHeader(1, 7, extra), pixelData(CT_STORED.map((v) => v & 0xffff), 16)];
// A VOI LUT sequence is carried in some variants to exercise sequences in every encoding; the window is then
// ignored. 3 entries from −260: −260 → 0, −259 → 1000, −258 → 65535 (16-bit), so CT_HU → 0 0 65535 …
const voiSeq: El = {
  tag: 0x00283010,
  vr: 'SQ',
  value: [[{ tag: 0x00283002, vr: 'US', value: [3, 0xfefc, 16] }, { tag: 0x00283006, vr: 'OW', value: [0, 1000, 65535] }]],
};
const CT_VOILUT = [0, 0, 65535, 65535, 65535, 65535, 65535];

/** 8×8 tiles of the 7 CT values (codecs want a few pixels): pixel i holds CT_STORED[i % 7]. */
const N = 64;
const tile = <T>(a: T[]): T[] => Array.from({ length: N }, (_, i) => a[i % a.length]!);

/** 12-bit unsigned values with garbage in the high nibble (as in dicom-pixels.test.ts). */
const V12 = [0, 1000, 2000, 4095, 3000, 1];
const V12_DISPLAY = [0, 16004, 32007, 65535, 48011, 16];

const RGB = [255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30];
const RGB16 = RGB.map((v) => v * 257);

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cxf-dicom-ts-'));
  for (const [name, ts] of [
    ['implicit', TS.implicitLE],
    ['explicit', TS.explicitLE],
    ['big', TS.explicitBE],
    ['deflated', TS.deflatedLE],
  ] as const) {
    await writeDicom(f(`ct-${name}.dcm`), { transferSyntax: ts, elements: ctNative() });
    await writeDicom(f(`ctlut-${name}.dcm`), { transferSyntax: ts, elements: ctNative([voiSeq]) });
    await writeDicom(f(`rgb8-${name}.dcm`), {
      transferSyntax: ts,
      elements: [...imagePixel({ rows: 2, columns: 2, bitsAllocated: 8, samplesPerPixel: 3 }), pixelData(RGB, 8)],
    });
  }
  // Raw data sets: no preamble, no DICM, no meta group.
  await writeFile(f('raw-implicit.dcm'), encodeDicom({ transferSyntax: TS.implicitLE, elements: ctNative([voiSeq]), form: 'raw' }));
  await writeFile(f('raw-explicit.raw'), encodeDicom({ transferSyntax: TS.explicitLE, elements: ctNative(), form: 'raw' }));
  await writeFile(f('raw-big.dcm'), encodeDicom({ transferSyntax: TS.explicitBE, elements: ctNative(), form: 'raw' }));
  // A Part-10 file with its 128-byte preamble stripped (starts with "DICM").
  await writeFile(f('nopreamble.dcm'), encodeDicom({ transferSyntax: TS.explicitLE, elements: ctNative() }).subarray(128));

  // RLE Lossless.
  await writeDicom(f('rle-ct.dcm'), {
    transferSyntax: TS.rle,
    elements: ctHeader(1, 7),
    frames: [encodeRleFrame(CT_STORED.map((v) => v & 0xffff), 1, 7, 1, 16)],
  });
  await writeDicom(f('rle-12.dcm'), {
    transferSyntax: TS.rle,
    elements: imagePixel({ rows: 2, columns: 3, bitsAllocated: 16, bitsStored: 12 }),
    frames: [encodeRleFrame(V12.map((v, i) => v | [0xf000, 0xa000, 0x5000, 0x3000, 0xc000, 0x9000][i]!), 2, 3, 1, 16)],
  });
  await writeDicom(f('rle-rgb.dcm'), {
    transferSyntax: TS.rle,
    elements: imagePixel({ rows: 2, columns: 2, bitsAllocated: 8, samplesPerPixel: 3 }),
    frames: [encodeRleFrame(RGB, 2, 2, 3, 8)],
  });
  // Two frames, 8-bit, 4×4 with long runs (replicate runs of 4), one fragment each, with a Basic Offset Table.
  const f0 = Array.from({ length: 16 }, (_, i) => (i < 8 ? 7 : i));
  const f1 = Array.from({ length: 16 }, () => 200);
  await writeDicom(f('rle-frames.dcm'), {
    transferSyntax: TS.rle,
    elements: imagePixel({ rows: 4, columns: 4, bitsAllocated: 8, frames: 2 }),
    frames: [encodeRleFrame(f0, 4, 4, 1, 8), encodeRleFrame(f1, 4, 4, 1, 8)],
  });
  // An RLE frame assembled by hand (PS3.5 G.3.1): 4×2 8-bit, one segment at offset 64:
  // row 1 literal run (header 3 → 4 bytes 10 20 30 40), row 2 replicate run (header 0xFD = −3 → 4 × 99),
  // then a no-op byte 0x80.
  const hand = Buffer.alloc(64 + 8);
  hand.writeUInt32LE(1, 0);
  hand.writeUInt32LE(64, 4);
  Buffer.from([3, 10, 20, 30, 40, 0xfd, 99, 0x80]).copy(hand, 64);
  await writeDicom(f('rle-hand.dcm'), { transferSyntax: TS.rle, elements: imagePixel({ rows: 2, columns: 4, bitsAllocated: 8 }), frames: [hand] });

  // JPEG baseline (sharp, quality 100): a smooth 16×16 gray ramp and a flat RGB colour (YBR_FULL_422, as JPEG stores it).
  const ramp = Array.from({ length: 256 }, (_, i) => 40 + (i % 16) * 8 + Math.floor(i / 16) * 2);
  const gray = await sharp(Buffer.from(ramp), { raw: { width: 16, height: 16, channels: 1 } }).toColourspace('b-w').jpeg({ quality: 100 }).toBuffer();
  await writeDicom(f('jpeg-gray.dcm'), { transferSyntax: TS.jpegBaseline, elements: imagePixel({ rows: 16, columns: 16, bitsAllocated: 8 }), frames: [gray] });
  await writeDicom(f('jpeg-gray-ext.dcm'), {
    transferSyntax: TS.jpegExtended,
    elements: imagePixel({ rows: 16, columns: 16, bitsAllocated: 8 }),
    frames: [gray],
    splitFirstFragmentAt: 100, // one frame in two fragments, joined by the decoder
  });
  const flat = Buffer.from(Array.from({ length: 256 }, () => [200, 100, 50]).flat());
  const color = await sharp(flat, { raw: { width: 16, height: 16, channels: 3 } }).jpeg({ quality: 100 }).toBuffer();
  await writeDicom(f('jpeg-rgb.dcm'), {
    transferSyntax: TS.jpegBaseline,
    elements: imagePixel({ rows: 16, columns: 16, bitsAllocated: 8, samplesPerPixel: 3, photometric: 'YBR_FULL_422' }),
    frames: [color],
  });
  // A 12-bit JPEG Extended frame header (SOF1, precision 12), enough to be recognised and refused.
  const sof1 = Buffer.from([0xff, 0xd8, 0xff, 0xc1, 0x00, 0x0b, 12, 0x00, 0x04, 0x00, 0x04, 0x01, 0x01, 0x11, 0x00, 0xff, 0xd9]);
  await writeDicom(f('jpeg12.dcm'), {
    transferSyntax: TS.jpegExtended,
    elements: imagePixel({ rows: 4, columns: 4, bitsAllocated: 16, bitsStored: 12 }),
    frames: [sof1],
  });

  // JPEG-LS (CharLS encoder): the CT bit patterns as 16-bit unsigned samples (JPEG-LS has no sign; Pixel
  // Representation 1 restores it), 12-bit samples, RGB in the three interleave modes, and near-lossless.
  const ctWords = tile(CT_STORED).map((v) => v & 0xffff);
  await writeDicom(f('jls-ct.dcm'), { transferSyntax: TS.jpegLs, elements: ctHeader(8, 8), frames: [await encodeJpegLs(ctWords, 8, 8, 1, 16)] });
  await writeDicom(f('jls-12.dcm'), {
    transferSyntax: TS.jpegLs,
    elements: imagePixel({ rows: 2, columns: 3, bitsAllocated: 16, bitsStored: 12 }),
    frames: [await encodeJpegLs(V12, 3, 2, 1, 12)],
  });
  for (const mode of [0, 1, 2] as const) {
    const input = mode === 0 ? [0, 1, 2].flatMap((c) => [0, 1, 2, 3].map((p) => RGB[p * 3 + c]!)) : RGB;
    await writeDicom(f(`jls-rgb${mode}.dcm`), {
      transferSyntax: TS.jpegLs,
      elements: imagePixel({ rows: 2, columns: 2, bitsAllocated: 8, samplesPerPixel: 3 }),
      frames: [await encodeJpegLs(input, 2, 2, 3, 8, { interleave: mode })],
    });
  }
  const smooth = Array.from({ length: 64 }, (_, i) => 1000 + 10 * i);
  await writeDicom(f('jls-near.dcm'), {
    transferSyntax: TS.jpegLsNear,
    elements: imagePixel({ rows: 8, columns: 8, bitsAllocated: 16, bitsStored: 12 }),
    frames: [await encodeJpegLs(smooth, 8, 8, 1, 12, { near: 2 })],
  });

  // JPEG 2000 (OpenJPEG encoder, reversible): signed 16-bit CT, 12-bit, RGB, and RGB with the reversible colour
  // transform (YBR_RCT); two frames with a Basic Offset Table.
  const ctSigned = tile(CT_STORED);
  await writeDicom(f('j2k-ct.dcm'), {
    transferSyntax: TS.j2kLossless,
    elements: ctHeader(8, 8),
    frames: [await encodeJ2k(ctSigned.map((v) => v & 0xffff), 8, 8, 1, 16, { signed: true })],
  });
  const v12tile = tile(V12);
  await writeDicom(f('j2k-12.dcm'), {
    transferSyntax: TS.j2k,
    elements: imagePixel({ rows: 8, columns: 8, bitsAllocated: 16, bitsStored: 12 }),
    frames: [await encodeJ2k(v12tile, 8, 8, 1, 12)],
  });
  const rgbTile = Array.from({ length: N }, (_, i) => RGB.slice((i % 4) * 3, (i % 4) * 3 + 3)).flat();
  await writeDicom(f('j2k-rgb.dcm'), {
    transferSyntax: TS.j2kLossless,
    elements: imagePixel({ rows: 8, columns: 8, bitsAllocated: 8, samplesPerPixel: 3 }),
    frames: [await encodeJ2k(rgbTile, 8, 8, 3, 8)],
  });
  await writeDicom(f('j2k-rct.dcm'), {
    transferSyntax: TS.j2kLossless,
    elements: imagePixel({ rows: 8, columns: 8, bitsAllocated: 8, samplesPerPixel: 3, photometric: 'YBR_RCT' }),
    frames: [await encodeJ2k(rgbTile, 8, 8, 3, 8, { colorTransform: true })],
  });
  const second = tile([11, 22, 33, 44]);
  await writeDicom(f('j2k-frames.dcm'), {
    transferSyntax: TS.j2kLossless,
    elements: imagePixel({ rows: 8, columns: 8, bitsAllocated: 16, bitsStored: 12, frames: 2 }),
    frames: [await encodeJ2k(v12tile, 8, 8, 1, 12), await encodeJ2k(second, 8, 8, 1, 12)],
  });

  // Unsupported syntaxes: MPEG2 and an unknown UID.
  await writeDicom(f('mpeg2.dcm'), { transferSyntax: TS.mpeg2, elements: imagePixel({ rows: 2, columns: 2, bitsAllocated: 8 }), frames: [new Uint8Array(8)] });
  await writeDicom(f('unknown-ts.dcm'), { transferSyntax: '1.2.3.4.5.6', elements: ctNative() });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('native transfer syntaxes', () => {
  it.each(['implicit', 'explicit', 'big', 'deflated'])('%s: signed pixels, rescale and window', async (name) => {
    const img = await decodeDicom(f(`ct-${name}.dcm`));
    expect([...img.data]).toEqual(CT_WINDOWED);
    const raw = await decodeDicomFloat(f(`ct-${name}.dcm`), { values: 'modality' });
    expect([...raw.data]).toEqual(CT_HU);
  });

  it.each(['implicit', 'explicit', 'big', 'deflated'])('%s: VOI LUT sequence with a signed first mapped value', async (name) => {
    const img = await decodeDicom(f(`ctlut-${name}.dcm`));
    expect([...img.data]).toEqual(CT_VOILUT);
    expect(img.meta.voi).toBe('lut');
  });

  it.each(['implicit', 'explicit', 'big', 'deflated'])('%s: 8-bit RGB', async (name) => {
    const img = await decodeDicom(f(`rgb8-${name}.dcm`));
    expect([...img.data]).toEqual(RGB16);
  });

  it('names the transfer syntax in meta', async () => {
    expect((await decodeDicom(f('ct-big.dcm'))).meta).toMatchObject({ transferSyntax: TS.explicitBE, transferSyntaxName: 'Explicit VR Big Endian (retired)' });
    expect((await decodeDicom(f('ct-deflated.dcm'))).meta.transferSyntax).toBe(TS.deflatedLE);
    expect((await decodeDicom(f('ct-implicit.dcm'))).meta.transferSyntax).toBe(TS.implicitLE);
  });

  it('reads raw data sets without preamble (implicit LE, explicit LE, explicit BE guessed from the first element)', async () => {
    const imp = await decodeDicom(f('raw-implicit.dcm'));
    expect([...imp.data]).toEqual(CT_VOILUT);
    expect(imp.meta).toMatchObject({ form: 'raw', transferSyntax: TS.implicitLE });
    const exp = await decodeDicom(f('raw-explicit.raw'));
    expect([...exp.data]).toEqual(CT_WINDOWED);
    expect(exp.meta).toMatchObject({ form: 'raw', transferSyntax: TS.explicitLE });
    const big = await decodeDicom(f('raw-big.dcm'));
    expect([...big.data]).toEqual(CT_WINDOWED);
    expect(big.meta.transferSyntax).toBe(TS.explicitBE);
  });

  it('reads a Part-10 file whose preamble was stripped', async () => {
    const img = await decodeDicom(f('nopreamble.dcm'));
    expect([...img.data]).toEqual(CT_WINDOWED);
    expect(img.meta.form).toBe('part10');
  });
});

describe('RLE Lossless', () => {
  it('decodes 16-bit signed pixels (two byte segments)', async () => {
    const img = await decodeDicom(f('rle-ct.dcm'));
    expect([...img.data]).toEqual(CT_WINDOWED);
    expect(img.meta.codec).toBe('RLE');
  });

  it('masks the high bits of 12-bit samples after RLE decoding', async () => {
    const img = await decodeDicom(f('rle-12.dcm'));
    expect([...img.data]).toEqual(V12_DISPLAY);
  });

  it('decodes RGB (one segment per sample)', async () => {
    const img = await decodeDicom(f('rle-rgb.dcm'));
    expect([...img.data]).toEqual(RGB16);
  });

  it('decodes a hand-assembled frame (literal run, replicate run, no-op)', async () => {
    const raw = await decodeDicomFloat(f('rle-hand.dcm'), { values: 'modality' });
    expect([...raw.data]).toEqual([10, 20, 30, 40, 99, 99, 99, 99]);
  });

  it('takes the requested frame of a multi-frame RLE image', async () => {
    const a = await decodeDicomFloat(f('rle-frames.dcm'), { values: 'modality' });
    expect([...a.data]).toEqual([7, 7, 7, 7, 7, 7, 7, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    const b = await decodeDicomFloat(f('rle-frames.dcm'), { values: 'modality', frame: 1 });
    expect([...b.data]).toEqual(Array.from({ length: 16 }, () => 200));
  });
});

describe('JPEG baseline / extended (sharp)', () => {
  it('decodes an 8-bit gray frame close to the original (quality 100)', async () => {
    const raw = await decodeDicomFloat(f('jpeg-gray.dcm'), { values: 'modality' });
    const ramp = Array.from({ length: 256 }, (_, i) => 40 + (i % 16) * 8 + Math.floor(i / 16) * 2);
    const err = Math.max(...ramp.map((v, i) => Math.abs(v - raw.data[i]!)));
    expect(err).toBeLessThanOrEqual(2);
    const img = await decodeDicom(f('jpeg-gray.dcm'), { voi: 'none' });
    expect([...img.data]).toEqual([...raw.data].map((v) => v * 257));
    expect(img.meta.codec).toBe('JPEG (sharp)');
  });

  it('joins a frame split over two fragments (JPEG Extended, 8-bit)', async () => {
    const a = await decodeDicom(f('jpeg-gray.dcm'));
    const b = await decodeDicom(f('jpeg-gray-ext.dcm'));
    expect([...b.data]).toEqual([...a.data]);
  });

  it('converts a YBR_FULL_422 colour frame to RGB', async () => {
    const raw = await decodeDicomFloat(f('jpeg-rgb.dcm'), { values: 'modality' });
    expect(raw.channels).toBe(3);
    for (let i = 0; i < 256; i++) {
      expect(Math.abs(raw.data[3 * i]! - 200)).toBeLessThanOrEqual(2);
      expect(Math.abs(raw.data[3 * i + 1]! - 100)).toBeLessThanOrEqual(2);
      expect(Math.abs(raw.data[3 * i + 2]! - 50)).toBeLessThanOrEqual(2);
    }
  });

  it('refuses a 12-bit JPEG Extended frame with a clear error', async () => {
    const err = await decodeDicom(f('jpeg12.dcm')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageError);
    expect((err as Error).message).toMatch(/jpeg12\.dcm: JPEG Extended \(Process 2 & 4\) frame 1: expected an 8-bit .* found 12-bit samples: 12-bit JPEG Extended is not supported/);
  });
});

describe('JPEG Lossless (reference files shipped with jpeg-lossless-decoder-js)', () => {
  const data = path.join(path.dirname(createRequire(import.meta.url).resolve('jpeg-lossless-decoder-js/package.json')), 'tests', 'data');
  /** CRC-32 of the stored values as the decoder's output words (what the package's tests checksum). */
  const crcOf = (values: Float64Array, bytes: 1 | 2): number =>
    crc32(bytes === 2 ? new Uint8Array(Uint16Array.from(values, (v) => v & 0xffff).buffer) : Uint8Array.from(values));

  it.skipIf(!existsSync(data)).each([1, 2, 3, 4, 5, 6, 7])('selection value %i, 16-bit signed MR (.57)', async (sel) => {
    const file = path.join(data, `jpeg_lossless_sel${sel}.dcm`);
    const raw = await decodeDicomFloat(file, { values: 'modality' });
    expect(raw).toMatchObject({ width: 256, height: 256, channels: 1 });
    expect(raw.meta).toMatchObject({ transferSyntax: TS.jpegLossless, pixelRepresentation: 1, window: [1095, 84] });
    expect(crcOf(raw.data, 2)).toBe(3476557349);
  });

  it.skipIf(!existsSync(data))('first frame of a 12-frame 8-bit XA (.70, one fragment per frame)', async () => {
    const file = path.join(data, 'jpeg_lossless_sel1-8bit.dcm');
    const raw = await decodeDicomFloat(file, { values: 'modality' });
    expect(raw.meta).toMatchObject({ transferSyntax: TS.jpegLosslessSV1, numberOfFrames: 12, frame: 0 });
    expect(crcOf(raw.data, 1)).toBe(2307286885);
  });

  it.skipIf(!existsSync(data))('8-bit RGB (3072×2048)', async () => {
    const file = path.join(data, 'jpeg_lossless_sel1-rgb.dcm');
    const raw = await decodeDicomFloat(file, { values: 'modality' });
    expect(raw).toMatchObject({ width: 3072, height: 2048, channels: 3 });
    expect(crcOf(raw.data, 1)).toBe(1560195967);
  });

  it.skipIf(!existsSync(data))('windows the 16-bit MR with its Window Center/Width 1095/84', async () => {
    const file = path.join(data, 'jpeg_lossless_sel1.dcm');
    const raw = await decodeDicomFloat(file, { values: 'modality' });
    const img = await decodeDicom(file);
    // Spot-check the LINEAR formula on the decoded values: x ≤ 1094.5 − 41.5 = 1053 → 0, x > 1136 → 65535.
    for (let i = 0; i < raw.data.length; i += 97) {
      const x = raw.data[i]!;
      const y = x <= 1053 ? 0 : x > 1136 ? 1 : (x - 1094.5) / 83 + 0.5;
      expect(img.data[i]).toBe(Math.round(y * 65535));
    }
  });
});

describe('JPEG-LS (CharLS)', () => {
  it('decodes 16-bit words and restores the sign from Pixel Representation', async () => {
    const img = await decodeDicom(f('jls-ct.dcm'));
    expect([...img.data]).toEqual(tile(CT_WINDOWED));
    expect(img.meta.codec).toBe('JPEG-LS (CharLS)');
  });

  it('decodes 12-bit samples', async () => {
    const img = await decodeDicom(f('jls-12.dcm'));
    expect([...img.data]).toEqual(V12_DISPLAY);
  });

  it.each([0, 1, 2])('decodes RGB with interleave mode %i', async (mode) => {
    const img = await decodeDicom(f(`jls-rgb${mode}.dcm`));
    expect([...img.data]).toEqual(RGB16);
  });

  it('decodes near-lossless (.81) within the NEAR bound', async () => {
    const raw = await decodeDicomFloat(f('jls-near.dcm'), { values: 'modality' });
    const err = Math.max(...Array.from({ length: 64 }, (_, i) => Math.abs(raw.data[i]! - (1000 + 10 * i))));
    expect(err).toBeLessThanOrEqual(2);
    expect(raw.meta.transferSyntax).toBe(TS.jpegLsNear);
  });
});

describe('JPEG 2000 (OpenJPEG)', () => {
  it('decodes signed 16-bit samples', async () => {
    const img = await decodeDicom(f('j2k-ct.dcm'));
    expect([...img.data]).toEqual(tile(CT_WINDOWED));
    const raw = await decodeDicomFloat(f('j2k-ct.dcm'), { values: 'modality' });
    expect([...raw.data]).toEqual(tile(CT_HU));
  });

  it('decodes 12-bit samples (.91)', async () => {
    const raw = await decodeDicomFloat(f('j2k-12.dcm'), { values: 'modality' });
    expect([...raw.data]).toEqual(tile(V12));
  });

  it('decodes RGB, with and without the reversible colour transform (YBR_RCT)', async () => {
    for (const name of ['j2k-rgb.dcm', 'j2k-rct.dcm']) {
      const img = await decodeDicom(f(name));
      expect(img.channels, name).toBe(3);
      expect([...img.data], name).toEqual(Array.from({ length: N }, (_, i) => RGB16.slice((i % 4) * 3, (i % 4) * 3 + 3)).flat());
    }
  });

  it('uses the Basic Offset Table to pick a frame', async () => {
    const a = await decodeDicomFloat(f('j2k-frames.dcm'), { values: 'modality' });
    expect([...a.data]).toEqual(tile(V12));
    const b = await decodeDicomFloat(f('j2k-frames.dcm'), { values: 'modality', frame: 1 });
    expect([...b.data]).toEqual(tile([11, 22, 33, 44]));
  });
});

describe('unsupported transfer syntaxes', () => {
  it.each([
    ['mpeg2.dcm', /mpeg2\.dcm: expected one of the supported transfer syntaxes .* found 1\.2\.840\.10008\.1\.2\.4\.100 \(MPEG2 Main Profile \/ Main Level\)/],
    ['unknown-ts.dcm', /unknown-ts\.dcm: expected one of the supported .* found 1\.2\.3\.4\.5\.6 \(an unknown transfer syntax\)/],
  ])('%s', async (name, message) => {
    const err = await decodeDicom(f(name)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageError);
    expect((err as Error).message).toMatch(message);
  });
});

describe('decodeImage', () => {
  it.each(['ct-explicit.dcm', 'ct-big.dcm', 'rle-rgb.dcm', 'j2k-ct.dcm', 'jpeg-gray.dcm', 'raw-implicit.dcm'])(
    'returns what decodeDicom returns for %s',
    async (name) => {
      const a = await decodeImage(f(name));
      const b = await decodeDicom(f(name));
      expect(a).toEqual(b);
      expect(a).toMatchObject({ format: 'dicom', bitDepth: 16 });
    },
  );

  it('recognises DICM at byte 128 whatever the extension', async () => {
    const bytes = encodeDicom({ transferSyntax: TS.explicitLE, elements: ctNative() });
    await writeFile(f('ct-noext'), bytes);
    await writeFile(f('ct-named.png'), bytes);
    for (const name of ['ct-noext', 'ct-named.png']) {
      const img = await decodeImage(f(name));
      expect([...img.data], name).toEqual(CT_WINDOWED);
    }
  });

  it('leaves the encodeElements helper consistent with the file writer (sanity of the test writer)', () => {
    // Explicit VR LE element (0028,0010) US 7: tag 28 00 10 00, "US", length 02 00, value 07 00.
    expect([...encodeElements([{ tag: 0x00280010, vr: 'US', value: 7 }], { explicit: true, little: true })]).toEqual([
      0x28, 0x00, 0x10, 0x00, 0x55, 0x53, 0x02, 0x00, 0x07, 0x00,
    ]);
    // Big endian: 00 28 00 10 "US" 00 02 00 07; implicit LE: 28 00 10 00 02 00 00 00 07 00.
    expect([...encodeElements([{ tag: 0x00280010, vr: 'US', value: 7 }], { explicit: true, little: false })]).toEqual([
      0x00, 0x28, 0x00, 0x10, 0x55, 0x53, 0x00, 0x02, 0x00, 0x07,
    ]);
    expect([...encodeElements([{ tag: 0x00280010, vr: 'US', value: 7 }], { explicit: false, little: true })]).toEqual([
      0x28, 0x00, 0x10, 0x00, 0x02, 0x00, 0x00, 0x00, 0x07, 0x00,
    ]);
  });
});
