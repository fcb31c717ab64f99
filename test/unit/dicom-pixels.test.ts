/**
 * DICOM pixel semantics against hand-computed values: Bits Stored / High Bit masking, sign extension, Modality LUT
 * (rescale and sequence), VOI (window LINEAR / LINEAR_EXACT / SIGMOID, VOI LUT sequence, min–max, none),
 * MONOCHROME1 inversion, RGB planar configurations, multi-frame. Files are written by test/helpers/dicom-writer.ts.
 *
 * Expected numbers were worked out by hand from the formulas of PS3.3 C.11.2.1.2 (y in 0..1, then
 * round(y · 65535)); the derivation is in the comment next to each.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { decodeDicom, decodeDicomFloat } from '../../src/image/dicom.js';
import { imagePixel, pixelData, TS, writeDicom, type El } from '../helpers/dicom-writer.js';

let dir: string;
const f = (name: string): string => path.join(dir, name);

/** Stored 12-bit values, written into 16-bit words with garbage in bits 12..15. */
const V12 = [0, 1000, 2000, 4095, 3000, 1];
const GARBAGE = [0xf000, 0xa000, 0x5000, 0x3000, 0xc000, 0x9000];
/** round(v · 65535 / 4095) for V12: 1000 → 16003.66, 2000 → 32007.33, 3000 → 48010.99, 1 → 16.004. */
const V12_DISPLAY = [0, 16004, 32007, 65535, 48011, 16];

/** CT-like signed stored values; with slope 0.5, intercept −260 the modality values are −760 −260 0 40 100 240 340. */
const CT_STORED = [-1000, 0, 520, 600, 720, 1000, 1200];
const CT_HU = [-760, -260, 0, 40, 100, 240, 340];
/**
 * Window C=40 W=400 LINEAR: x ≤ 39.5 − 199.5 = −160 → 0; x > 39.5 + 199.5 = 239 → 1; else (x − 39.5)/399 + 0.5:
 * 0 → 0.401002506 → 26279.70; 40 → 0.501253133 → 32849.62; 100 → 0.651629073 → 42704.51.
 */
const CT_WINDOWED = [0, 0, 26280, 32850, 42705, 65535, 65535];

const ctElements = (extra: El[] = []): El[] => [
  ...imagePixel({ rows: 1, columns: 7, bitsAllocated: 16, pixelRepresentation: 1 }),
  { tag: 0x00281052, vr: 'DS', value: '-260' },
  { tag: 0x00281053, vr: 'DS', value: '0.5' },
  pixelData(CT_STORED.map((v) => v & 0xffff), 16),
  ...extra,
];
const window = (c: string, w: string, fn?: string): El[] => [
  { tag: 0x00281050, vr: 'DS', value: c },
  { tag: 0x00281051, vr: 'DS', value: w },
  ...(fn === undefined ? [] : [{ tag: 0x00281056, vr: 'CS' as const, value: fn }]),
];

const RAMP8 = [0, 78, 79, 100, 127, 150, 178, 255];
const ramp8 = (extra: El[]): El[] => [...imagePixel({ rows: 2, columns: 4, bitsAllocated: 8 }), pixelData(RAMP8, 8), ...extra];

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cxf-dicom-px-'));
  const LE = TS.explicitLE;
  const w12 = V12.map((v, i) => v | GARBAGE[i]!);
  await writeDicom(f('m2-12.dcm'), { transferSyntax: LE, elements: [...imagePixel({ rows: 2, columns: 3, bitsAllocated: 16, bitsStored: 12 }), pixelData(w12, 16)] });
  await writeDicom(f('m1-12.dcm'), {
    transferSyntax: LE,
    elements: [...imagePixel({ rows: 2, columns: 3, bitsAllocated: 16, bitsStored: 12, photometric: 'MONOCHROME1' }), pixelData(w12, 16)],
  });
  // High Bit 15: the 12 stored bits are the top of the word, garbage in the low nibble.
  await writeDicom(f('hb15.dcm'), {
    transferSyntax: LE,
    elements: [...imagePixel({ rows: 2, columns: 3, bitsAllocated: 16, bitsStored: 12, highBit: 15 }), pixelData(V12.map((v, i) => (v << 4) | (i + 7)), 16)],
  });
  // Signed 12-bit in 16: bit patterns 0xFFF → −1, 0x800 → −2048, 0x7FF → 2047, 0xF9C → −100, with garbage on top.
  await writeDicom(f('s12.dcm'), {
    transferSyntax: LE,
    elements: [
      ...imagePixel({ rows: 1, columns: 6, bitsAllocated: 16, bitsStored: 12, pixelRepresentation: 1 }),
      pixelData([0xafff, 0x5800, 0x37ff, 0xf000, 0x9001, 0x6f9c], 16),
    ],
  });
  await writeDicom(f('ct-window.dcm'), { transferSyntax: LE, elements: ctElements(window('40', '400')) });
  await writeDicom(f('ct-window-multi.dcm'), { transferSyntax: LE, elements: ctElements(window('40\\100', '400\\50')) });
  await writeDicom(f('ct-nowindow.dcm'), { transferSyntax: LE, elements: ctElements() });
  await writeDicom(f('ct-window-m1.dcm'), {
    transferSyntax: LE,
    elements: [...ctElements(window('40', '400')).filter((e) => e.tag !== 0x00280004), { tag: 0x00280004, vr: 'CS', value: 'MONOCHROME1' }],
  });
  await writeDicom(f('exact.dcm'), { transferSyntax: LE, elements: ramp8(window('128', '100', 'LINEAR_EXACT')) });
  await writeDicom(f('sigmoid.dcm'), { transferSyntax: LE, elements: ramp8(window('128', '100', 'SIGMOID')) });
  await writeDicom(f('linear8.dcm'), { transferSyntax: LE, elements: ramp8(window('128', '100')) });
  // VOI LUT Sequence: 4 entries from input 10, 8 bits: 10→0, 11→100, 12→200, 13→255 (below 10 → 0, above 13 → 255).
  const voiLut: El = {
    tag: 0x00283010,
    vr: 'SQ',
    value: [[{ tag: 0x00283002, vr: 'US', value: [4, 10, 8] }, { tag: 0x00283006, vr: 'OW', value: [0, 100, 200, 255] }]],
  };
  await writeDicom(f('voilut.dcm'), {
    transferSyntax: LE,
    elements: [...imagePixel({ rows: 1, columns: 6, bitsAllocated: 8 }), pixelData([5, 10, 11, 12, 13, 20], 8), voiLut, ...window('100', '50')],
  });
  // Signed first mapped value (−2, read as SS because Pixel Representation is 1), 16-bit entries, undefined-length SQ.
  await writeDicom(f('voilut-signed.dcm'), {
    transferSyntax: LE,
    elements: [
      ...imagePixel({ rows: 1, columns: 5, bitsAllocated: 16, pixelRepresentation: 1 }),
      pixelData([-5, -2, -1, 0, 7].map((v) => v & 0xffff), 16),
      {
        tag: 0x00283010,
        vr: 'SQ',
        undefinedLength: true,
        value: [[{ tag: 0x00283002, vr: 'US', value: [3, 0xfffe, 16] }, { tag: 0x00283006, vr: 'OW', value: [0, 30000, 65535] }]],
      },
    ],
  });
  // Modality LUT Sequence: 3 entries from 0, 12 bits: 0→100, 1→2000, 2→4095 (3 → last entry, 4095).
  await writeDicom(f('modlut.dcm'), {
    transferSyntax: LE,
    elements: [
      ...imagePixel({ rows: 1, columns: 4, bitsAllocated: 8 }),
      pixelData([0, 1, 2, 3], 8),
      { tag: 0x00283000, vr: 'SQ', value: [[{ tag: 0x00283002, vr: 'US', value: [3, 0, 12] }, { tag: 0x00283006, vr: 'OW', value: [100, 2000, 4095] }]] },
    ],
  });
  const RGB = [255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30];
  await writeDicom(f('rgb0.dcm'), { transferSyntax: LE, elements: [...imagePixel({ rows: 2, columns: 2, bitsAllocated: 8, samplesPerPixel: 3 }), pixelData(RGB, 8)] });
  const planes = [0, 1, 2].flatMap((c) => [0, 1, 2, 3].map((p) => RGB[p * 3 + c]!));
  await writeDicom(f('rgb1.dcm'), {
    transferSyntax: LE,
    elements: [...imagePixel({ rows: 2, columns: 2, bitsAllocated: 8, samplesPerPixel: 3, planarConfiguration: 1 }), pixelData(planes, 8)],
  });
  await writeDicom(f('rgb16.dcm'), {
    transferSyntax: LE,
    elements: [...imagePixel({ rows: 1, columns: 1, bitsAllocated: 16, samplesPerPixel: 3 }), pixelData([0, 1000, 65535], 16)],
  });
  await writeDicom(f('frames.dcm'), {
    transferSyntax: LE,
    elements: [...imagePixel({ rows: 2, columns: 2, bitsAllocated: 8, frames: 2 }), pixelData([0, 50, 100, 200, 255, 255, 1, 2], 8)],
  });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('stored values', () => {
  it('masks garbage above Bits Stored 12 of 16 and scales min–max to 16 bits', async () => {
    const img = await decodeDicom(f('m2-12.dcm'));
    expect(img).toMatchObject({ width: 3, height: 2, channels: 1, bitDepth: 16, format: 'dicom' });
    expect(img.data).toBeInstanceOf(Uint16Array);
    expect([...img.data]).toEqual(V12_DISPLAY);
    expect(img.meta).toMatchObject({ bitsStored: 12, bitsAllocated: 16, photometric: 'MONOCHROME2', voi: 'minmax', rows: 2, columns: 3 });
    const raw = await decodeDicomFloat(f('m2-12.dcm'), { values: 'modality' });
    expect([...raw.data]).toEqual(V12);
  });

  it('takes the stored bits below High Bit 15 (shifted), dropping the low garbage', async () => {
    const raw = await decodeDicomFloat(f('hb15.dcm'), { values: 'modality' });
    expect([...raw.data]).toEqual(V12);
  });

  it('sign-extends 12-bit two’s complement values for Pixel Representation 1', async () => {
    const raw = await decodeDicomFloat(f('s12.dcm'), { values: 'modality' });
    expect([...raw.data]).toEqual([-1, -2048, 2047, 0, 1, -100]);
  });

  it('inverts MONOCHROME1 after VOI', async () => {
    const img = await decodeDicom(f('m1-12.dcm'));
    expect([...img.data]).toEqual(V12_DISPLAY.map((v) => 65535 - v));
    expect(img.meta.photometric).toBe('MONOCHROME1');
  });
});

describe('modality and VOI transforms', () => {
  it('applies rescale slope/intercept to signed values, then window 40/400 LINEAR', async () => {
    const raw = await decodeDicomFloat(f('ct-window.dcm'), { values: 'modality' });
    expect([...raw.data]).toEqual(CT_HU);
    const img = await decodeDicom(f('ct-window.dcm'));
    expect([...img.data]).toEqual(CT_WINDOWED);
    expect(img.meta).toMatchObject({ window: [40, 400], rescale: [0.5, -260], voi: 'window', voiFunction: 'LINEAR', pixelRepresentation: 1 });
  });

  it('returns unquantised display values as floats', async () => {
    const fl = await decodeDicomFloat(f('ct-window.dcm'));
    expect(fl.values).toBe('display');
    // (0 − 39.5)/399 + 0.5 = 0.4010025062656642; (40 − 39.5)/399 + 0.5 = 0.5012531328320802
    expect(fl.data[2]).toBeCloseTo(0.4010025062656642, 12);
    expect(fl.data[3]).toBeCloseTo(0.5012531328320802, 12);
    expect(fl.data[0]).toBe(0);
    expect(fl.data[6]).toBe(1);
  });

  it('uses the first of multiple window values', async () => {
    const img = await decodeDicom(f('ct-window-multi.dcm'));
    expect([...img.data]).toEqual(CT_WINDOWED);
    expect(img.meta.window).toEqual([40, 400]);
  });

  it('inverts a windowed MONOCHROME1 image', async () => {
    const img = await decodeDicom(f('ct-window-m1.dcm'));
    expect([...img.data]).toEqual(CT_WINDOWED.map((v) => 65535 - v));
  });

  it('falls back to the min–max of the modality values without a window', async () => {
    // y = (x + 760) / 1100: −260 → 29788.64, 0 → 45278.73, 40 → 47661.82, 100 → 51236.45, 240 → 59577.27
    const img = await decodeDicom(f('ct-nowindow.dcm'));
    expect([...img.data]).toEqual([0, 29789, 45279, 47662, 51236, 59577, 65535]);
    expect(img.meta.voi).toBe('minmax');
  });

  it("voi: 'none' maps the full modality range linearly, ignoring the window", async () => {
    // Stored range −32768..32767 → −16644..16123.5 (span 32767.5): −760 → 15884/32767.5 → 31768, −260 → 32768,
    // 0 → 33288, 40 → 33368, 100 → 33488, 240 → 33768, 340 → 33968 (all exact).
    const img = await decodeDicom(f('ct-window.dcm'), { voi: 'none' });
    expect([...img.data]).toEqual([31768, 32768, 33288, 33368, 33488, 33768, 33968]);
    expect(img.meta.voi).toBe('none');
    // Unsigned 12-bit, no rescale: 0..4095 → 0..65535, the same as min–max here because both ends occur.
    const u = await decodeDicom(f('m2-12.dcm'), { voi: 'none' });
    expect([...u.data]).toEqual(V12_DISPLAY);
  });

  it('implements LINEAR_EXACT', async () => {
    // C=128 W=100: x ≤ 78 → 0; x > 178 → 1; else (x − 128)/100 + 0.5:
    // 79 → 0.01 → 655.35; 100 → 0.22 → 14417.7; 127 → 0.49 → 32112.15; 150 → 0.72 → 47185.2; 178 → 1.
    const img = await decodeDicom(f('exact.dcm'));
    expect([...img.data]).toEqual([0, 0, 655, 14418, 32112, 47185, 65535, 65535]);
    expect(img.meta.voiFunction).toBe('LINEAR_EXACT');
  });

  it('implements LINEAR with the standard’s −0.5 / (w − 1) form', async () => {
    // C=128 W=100: x ≤ 78 → 0; x > 177 → 1; else (x − 127.5)/99 + 0.5:
    // 79 → 0.010101 → 661.97; 100 → 0.222222 → 14563.33; 127 → 0.494949 → 32436.52; 150 → 0.727273 → 47661.82.
    const img = await decodeDicom(f('linear8.dcm'));
    expect([...img.data]).toEqual([0, 0, 662, 14563, 32437, 47662, 65535, 65535]);
  });

  it('implements SIGMOID', async () => {
    // y = 1 / (1 + exp(−4 (x − 128) / 100)): 0 → 0.0059405 → 389.31; 78 → 0.1192029 → 7811.96;
    // 79 → 0.1234670 → 8091.41; 100 → 0.2460113 → 16122.35; 127 → 0.4900013 → 32112.24;
    // 150 → 0.7068222 → 46321.59; 178 → 0.8807971 → 57723.04; 255 → 0.9938185 → 65129.90.
    const img = await decodeDicom(f('sigmoid.dcm'));
    expect([...img.data]).toEqual([389, 7812, 8091, 16122, 32112, 46322, 57723, 65130]);
  });

  it('prefers the VOI LUT Sequence over the window, clamping outside the table', async () => {
    // 5 → first entry 0; 10 → 0; 11 → 100; 12 → 200; 13 → 255; 20 → last entry 255; ×65535/255 = ×257.
    const img = await decodeDicom(f('voilut.dcm'));
    expect([...img.data]).toEqual([0, 0, 25700, 51400, 65535, 65535]);
    expect(img.meta).toMatchObject({ voi: 'lut', voiLut: true, window: [100, 50] });
  });

  it('reads a signed first mapped value in the LUT descriptor', async () => {
    // first mapped −2: −5 → entry 0 (0); −2 → 0; −1 → 30000; 0 → 65535; 7 → 65535; 16-bit entries: ×1.
    const img = await decodeDicom(f('voilut-signed.dcm'));
    expect([...img.data]).toEqual([0, 0, 30000, 65535, 65535]);
  });

  it('applies a Modality LUT Sequence (and maps its 0..2^12−1 output range with voi none)', async () => {
    const raw = await decodeDicomFloat(f('modlut.dcm'), { values: 'modality' });
    expect([...raw.data]).toEqual([100, 2000, 4095, 4095]);
    // 100/4095 → 1600.37; 2000/4095 → 32007.33
    const img = await decodeDicom(f('modlut.dcm'), { voi: 'none' });
    expect([...img.data]).toEqual([1600, 32007, 65535, 65535]);
    expect(img.meta.modalityLut).toBe(true);
  });
});

describe('colour and frames', () => {
  it('decodes RGB with planar configuration 0 and 1 to interleaved 16-bit samples (×257)', async () => {
    for (const name of ['rgb0.dcm', 'rgb1.dcm']) {
      const img = await decodeDicom(f(name));
      expect(img, name).toMatchObject({ width: 2, height: 2, channels: 3, bitDepth: 16 });
      expect([...img.data], name).toEqual([65535, 0, 0, 0, 65535, 0, 0, 0, 65535, 2570, 5140, 7710]);
    }
  });

  it('keeps 16-bit RGB samples', async () => {
    const img = await decodeDicom(f('rgb16.dcm'));
    expect([...img.data]).toEqual([0, 1000, 65535]);
  });

  it('takes the first frame of a multi-frame image, or the one asked for', async () => {
    const first = await decodeDicom(f('frames.dcm'), { voi: 'none' });
    expect([...first.data]).toEqual([0, 50 * 257, 100 * 257, 200 * 257]);
    expect(first.meta).toMatchObject({ numberOfFrames: 2, frame: 0 });
    const second = await decodeDicomFloat(f('frames.dcm'), { frame: 1, values: 'modality' });
    expect([...second.data]).toEqual([255, 255, 1, 2]);
  });

  it('reports identifying attributes in meta', async () => {
    const img = await decodeDicom(f('ct-window.dcm'));
    expect(img.meta).toMatchObject({
      transferSyntax: '1.2.840.10008.1.2.1',
      transferSyntaxName: 'Explicit VR Little Endian',
      patientId: 'PAT-001',
      studyInstanceUid: '1.2.826.0.1.3680043.9.9999.2',
      sopInstanceUid: '1.2.826.0.1.3680043.9.9999.1',
      viewPosition: 'PA',
      modality: 'DX',
      form: 'part10',
      codec: 'native',
    });
  });
});
