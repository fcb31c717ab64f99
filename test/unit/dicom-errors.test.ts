/**
 * DICOM error paths: every failure is an ImageError (code CXF_IMAGE) whose message names the file and says what
 * was expected and what was found.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { decodeImage } from '../../src/image/decode.js';
import { decodeDicom } from '../../src/image/dicom.js';
import { ImageError } from '../../src/image/errors.js';
import { encodeDicom, encodeJ2k, imagePixel, pixelData, TS, type El } from '../helpers/dicom-writer.js';

let dir: string;
const f = (name: string): string => path.join(dir, name);

const VALUES = [0, 100, 200, 300, 400, 500, 600];
const base = (extra: El[] = [], drop: number[] = []): El[] =>
  [...imagePixel({ rows: 1, columns: 7, bitsAllocated: 16 }), pixelData(VALUES, 16), ...extra].filter((e) => !drop.includes(e.tag));
const replace = (tag: number, el: El | undefined): El[] => [...base([], [tag]), ...(el === undefined ? [] : [el])];

/** Offset of the Pixel Data value in an explicit VR LE file made by the writer (after its 12-byte header). */
function pixelValueOffset(bytes: Buffer): number {
  const at = bytes.lastIndexOf(Buffer.from([0xe0, 0x7f, 0x10, 0x00]));
  return at + 12;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cxf-dicom-err-'));
  const good = encodeDicom({ transferSyntax: TS.explicitLE, elements: base() });
  await writeFile(f('good.dcm'), good);
  await writeFile(f('text.dcm'), 'this is not an image');
  await writeFile(f('empty.dcm'), '');
  await mkdir(f('folder.dcm'));
  await writeFile(f('png.dcm'), await sharp(Buffer.alloc(4), { raw: { width: 2, height: 2, channels: 1 } }).png().toBuffer());
  // Truncations: inside the file meta group, inside the data set before Pixel Data, inside the pixel data.
  await writeFile(f('cut-meta.dcm'), good.subarray(0, 150));
  await writeFile(f('cut-dicm.dcm'), good.subarray(0, 132));
  const px = pixelValueOffset(good);
  await writeFile(f('cut-dataset.dcm'), good.subarray(0, px - 40));
  await writeFile(f('cut-pixels.dcm'), good.subarray(0, px + 5));
  const implicit = encodeDicom({ transferSyntax: TS.implicitLE, elements: base() });
  await writeFile(f('cut-pixels-implicit.dcm'), implicit.subarray(0, implicit.length - 4));
  // Pixel Data complete as an element but shorter than Rows × Columns × 2 bytes.
  await writeFile(f('short-pixels.dcm'), encodeDicom({ transferSyntax: TS.explicitLE, elements: replace(0x7fe00010, pixelData([1, 2, 3], 16)) }));
  // Encapsulated: cut inside the fragment; a frame that is not a valid codestream.
  const j2k = await encodeJ2k(Array.from({ length: 64 }, (_, i) => i * 10), 8, 8, 1, 12);
  const j2kFile = encodeDicom({ transferSyntax: TS.j2kLossless, elements: imagePixel({ rows: 8, columns: 8, bitsAllocated: 16, bitsStored: 12 }), frames: [j2k] });
  await writeFile(f('cut-fragment.dcm'), j2kFile.subarray(0, j2kFile.length - 30));
  const badJ2k = Uint8Array.from([...j2k.subarray(0, 40), ...new Uint8Array(40)]);
  await writeFile(f('bad-j2k.dcm'), encodeDicom({ transferSyntax: TS.j2kLossless, elements: imagePixel({ rows: 8, columns: 8, bitsAllocated: 16, bitsStored: 12 }), frames: [badJ2k] }));
  const noise = Buffer.from(Array.from({ length: 64 * 64 }, (_, i) => (i * 37 + ((i * i) % 101)) % 256));
  const jpeg = await sharp(noise, { raw: { width: 64, height: 64, channels: 1 } }).toColourspace('b-w').jpeg().toBuffer();
  await writeFile(
    f('bad-jpeg.dcm'),
    encodeDicom({ transferSyntax: TS.jpegBaseline, elements: imagePixel({ rows: 64, columns: 64, bitsAllocated: 8 }), frames: [jpeg.subarray(0, Math.floor(jpeg.length * 0.6))] }),
  );
  const rgbJpeg = await sharp(Buffer.alloc(8 * 8 * 3, 90), { raw: { width: 8, height: 8, channels: 3 } }).jpeg().toBuffer();
  await writeFile(f('jpeg-components.dcm'), encodeDicom({ transferSyntax: TS.jpegBaseline, elements: imagePixel({ rows: 8, columns: 8, bitsAllocated: 8 }), frames: [rgbJpeg] }));
  await writeFile(f('jpeg-size.dcm'), encodeDicom({ transferSyntax: TS.jpegBaseline, elements: imagePixel({ rows: 4, columns: 8, bitsAllocated: 8, samplesPerPixel: 3, photometric: 'YBR_FULL_422' }), frames: [rgbJpeg] }));
  await writeFile(f('not-jpeg.dcm'), encodeDicom({ transferSyntax: TS.jpegLossless, elements: imagePixel({ rows: 2, columns: 2, bitsAllocated: 8 }), frames: [Uint8Array.from([1, 2, 3, 4, 5, 6])] }));
  // Wrong pixel data form for the syntax.
  await writeFile(f('native-in-j2k.dcm'), encodeDicom({ transferSyntax: TS.j2kLossless, elements: base() }));
  await writeFile(f('rle-bad.dcm'), encodeDicom({ transferSyntax: TS.rle, elements: imagePixel({ rows: 1, columns: 7, bitsAllocated: 16 }), frames: [new Uint8Array(64)] }));
  // Missing and inconsistent attributes.
  await writeFile(f('no-rows.dcm'), encodeDicom({ transferSyntax: TS.explicitLE, elements: replace(0x00280010, undefined) }));
  await writeFile(f('no-columns.dcm'), encodeDicom({ transferSyntax: TS.explicitLE, elements: replace(0x00280011, undefined) }));
  await writeFile(f('no-bits.dcm'), encodeDicom({ transferSyntax: TS.explicitLE, elements: replace(0x00280100, undefined) }));
  await writeFile(f('no-pixels.dcm'), encodeDicom({ transferSyntax: TS.explicitLE, elements: replace(0x7fe00010, undefined) }));
  await writeFile(f('bits1.dcm'), encodeDicom({ transferSyntax: TS.explicitLE, elements: replace(0x00280100, { tag: 0x00280100, vr: 'US', value: 1 }) }));
  await writeFile(f('stored17.dcm'), encodeDicom({ transferSyntax: TS.explicitLE, elements: replace(0x00280101, { tag: 0x00280101, vr: 'US', value: 17 }) }));
  await writeFile(f('palette.dcm'), encodeDicom({ transferSyntax: TS.explicitLE, elements: replace(0x00280004, { tag: 0x00280004, vr: 'CS', value: 'PALETTE COLOR' }) }));
  await writeFile(
    f('ybr-native.dcm'),
    encodeDicom({
      transferSyntax: TS.explicitLE,
      elements: [...imagePixel({ rows: 1, columns: 2, bitsAllocated: 8, samplesPerPixel: 3, photometric: 'YBR_FULL' }), pixelData([1, 2, 3, 4, 5, 6], 8)],
    }),
  );
  await writeFile(f('mono-3.dcm'), encodeDicom({ transferSyntax: TS.explicitLE, elements: replace(0x00280002, { tag: 0x00280002, vr: 'US', value: 3 }) }));
  // Deflated syntax whose data set is not deflate data (0xFF: final block of the reserved type 3).
  const deflated = encodeDicom({ transferSyntax: TS.deflatedLE, elements: base() });
  await writeFile(f('bad-deflate.dcm'), Buffer.concat([deflated.subarray(0, dataSetStart(deflated)), Buffer.alloc(64, 0xff)]));
});

/** Start of the data set (after the file meta group) in a Part-10 file made by the writer. */
function dataSetStart(bytes: Buffer): number {
  // (0002,0000) UL group length at 132: 4 tag + 2 VR + 2 length + 4 value, the group follows.
  return 132 + 12 + bytes.readUInt32LE(140);
}

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('decodeDicom errors', () => {
  it('decodes the intact file (control)', async () => {
    const img = await decodeDicom(f('good.dcm'), { voi: 'none' });
    expect(img.data.length).toBe(7);
  });

  it.each([
    ['missing.dcm', /missing\.dcm: expected a DICOM file \(Part 10: .*\), found no such file/],
    ['folder.dcm', /folder\.dcm: expected a DICOM file .* found a directory/],
    ['text.dcm', /text\.dcm: expected a DICOM file .* found 20 bytes without "DICM" at byte 128 that do not start like a DICOM data set \(first bytes 74 68 69 73/],
    ['empty.dcm', /empty\.dcm: expected a DICOM file .* found an empty file/],
    ['png.dcm', /png\.dcm: expected a DICOM file .* \(first bytes 89 50 4e 47/],
    ['cut-meta.dcm', /cut-meta\.dcm: expected .*(file meta group|Transfer Syntax UID).* found/],
    ['cut-dicm.dcm', /cut-dicm\.dcm: expected a file meta group \(0002,xxxx\) after "DICM", found 0 bytes \(truncated file\)/],
    ['cut-dataset.dcm', /cut-dataset\.dcm: expected a complete DICOM data set \(Explicit VR Little Endian\), found a truncated or corrupt one/],
    ['cut-pixels.dcm', /cut-pixels\.dcm: expected 14 bytes of Pixel Data for frame 1 of 1 \(7×1, 1 sample\(s\), 16 bits allocated\), found 5 \(truncated file\)/],
    ['cut-pixels-implicit.dcm', /cut-pixels-implicit\.dcm: expected 14 bytes of Pixel Data .* found 10 \(truncated file\)/],
    ['short-pixels.dcm', /short-pixels\.dcm: expected 14 bytes of Pixel Data for frame 1 of 1 .* found 6$/],
    ['cut-fragment.dcm', /cut-fragment\.dcm: expected \d+ bytes in pixel data fragment 1 of 1, found \d+ \(truncated file\)/],
    ['bad-j2k.dcm', /bad-j2k\.dcm: JPEG 2000 Image Compression \(Lossless Only\) frame 1: expected a valid JPEG 2000 frame, found/],
    ['bad-jpeg.dcm', /bad-jpeg\.dcm: JPEG Baseline \(Process 1\) frame 1: expected a valid JPEG frame, found a corrupt or truncated one/],
    ['jpeg-components.dcm', /jpeg-components\.dcm: .* expected a 8×8 frame with 1 component\(s\) .* found 8×8 with 3/],
    ['jpeg-size.dcm', /jpeg-size\.dcm: .* expected a 8×4 frame with 3 component\(s\) .* found 8×8 with 3/],
    ['not-jpeg.dcm', /not-jpeg\.dcm: .* expected a JPEG, JPEG-LS or JPEG 2000 stream, found 6 bytes starting 01 02 03 04/],
    ['native-in-j2k.dcm', /native-in-j2k\.dcm: expected encapsulated Pixel Data .* for JPEG 2000 Image Compression \(Lossless Only\), found native data of 14 bytes/],
    ['rle-bad.dcm', /rle-bad\.dcm: RLE Lossless frame 1: expected 2 RLE segments \(1 sample\(s\) × 2 byte\(s\)\), found 0/],
    ['no-rows.dcm', /no-rows\.dcm: expected Rows \(0028,0010\) in the DICOM data set, found none/],
    ['no-columns.dcm', /no-columns\.dcm: expected Columns \(0028,0011\) in the DICOM data set, found none/],
    ['no-bits.dcm', /no-bits\.dcm: expected Bits Allocated \(0028,0100\) in the DICOM data set, found none/],
    ['no-pixels.dcm', /no-pixels\.dcm: expected Pixel Data \(7FE0,0010\) in the DICOM data set, found none/],
    ['bits1.dcm', /bits1\.dcm: expected Bits Allocated 8, 16 or 32, found 1 \(1-bit images are not supported\)/],
    ['stored17.dcm', /stored17\.dcm: expected 1 ≤ Bits Stored ≤ Bits Allocated .* found Bits Allocated 16, Bits Stored 17, High Bit 15/],
    ['palette.dcm', /palette\.dcm: expected Photometric Interpretation MONOCHROME1, MONOCHROME2 or RGB .* found PALETTE COLOR with 1 sample\(s\) per pixel in Explicit VR Little Endian/],
    ['ybr-native.dcm', /ybr-native\.dcm: expected Photometric Interpretation .* found YBR_FULL with 3 sample\(s\) per pixel in Explicit VR Little Endian/],
    ['mono-3.dcm', /mono-3\.dcm: expected Samples per Pixel 1 for MONOCHROME2, found 3/],
    ['bad-deflate.dcm', /bad-deflate\.dcm: expected a deflated \(RFC 1951\) data set for Deflated Explicit VR Little Endian, found data that does not inflate/],
  ])('%s', async (name, message) => {
    const err = await decodeDicom(f(name)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageError);
    expect((err as ImageError).code).toBe('CXF_IMAGE');
    expect((err as ImageError).path).toBe(f(name));
    expect((err as Error).message).toMatch(message);
  });

  it('rejects a frame index beyond Number of Frames', async () => {
    const err = await decodeDicom(f('good.dcm'), { frame: 1 }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/good\.dcm: expected a frame index in 0\.\.0, found 1/);
  });

  it('decodeImage passes DICOM errors through (by extension or by DICM magic)', async () => {
    const byExt = await decodeImage(f('text.dcm')).catch((e: unknown) => e);
    expect((byExt as Error).message).toMatch(/text\.dcm: expected a DICOM file/);
    const byMagic = await decodeImage(f('no-rows.dcm')).catch((e: unknown) => e);
    expect(byMagic).toBeInstanceOf(ImageError);
    expect((byMagic as Error).message).toMatch(/expected Rows \(0028,0010\)/);
  });
});
