/**
 * Getting one frame's sample words out of the Pixel Data element: native (uncompressed, PS3.5 §8.1.1) or
 * encapsulated (PS3.5 §A.4: an item with the Basic Offset Table, then fragments, then a sequence delimiter).
 */
import type { Element } from 'dicom-parser';

import { ImageError } from '../errors.js';
import { CodecError, decodeCompressedFrame } from './codecs.js';
import type { ImageHeader } from './header.js';
import { dicomParser, type ParsedDicom } from './parse.js';
import { decodeRleFrame } from './rle.js';

/** One frame's samples as unsigned words, and how to turn a word into a stored value. */
export interface FrameWords {
  /** rows · columns · samplesPerPixel unsigned words. */
  words: Uint8Array | Uint16Array | Uint32Array;
  /** Stored value = (word >>> shift) masked to `bits` bits (then sign-extended when Pixel Representation is 1). */
  shift: number;
  bits: number;
  /** Sample planes one after another (RRR…GGG…BBB) rather than interleaved. */
  planar: boolean;
  /** The codec that decoded the frame ('native' for uncompressed data). */
  codec: string;
}

/** Reads frame `index` (0-based) of the image. */
export async function readFrame(parsed: ParsedDicom, header: ImageHeader, index: number): Promise<FrameWords> {
  const { path, dataSet, syntax } = parsed;
  if (!Number.isInteger(index) || index < 0 || index >= header.numberOfFrames) {
    throw new ImageError(path, `expected a frame index in 0..${header.numberOfFrames - 1}, found ${index}`);
  }
  const element = dataSet.elements.x7fe00010!;
  const { rows, columns, samplesPerPixel: spp, bitsAllocated: ba } = header;
  const nativeShift = header.highBit + 1 - header.bitsStored;

  if (syntax.codec === 'none') {
    if (element.encapsulatedPixelData === true || element.hadUndefinedLength === true) {
      throw new ImageError(path, `expected native (uncompressed) Pixel Data for ${syntax.name}, found encapsulated fragments`);
    }
    const frameBytes = (rows * columns * spp * ba) / 8;
    const start = element.dataOffset + index * frameBytes;
    const needed = (index + 1) * frameBytes;
    const available = Math.max(0, Math.min(element.length, dataSet.byteArray.length - element.dataOffset));
    if (available < needed) {
      const truncated = element.dataOffset + element.length > dataSet.byteArray.length;
      throw new ImageError(
        path,
        `expected ${needed} bytes of Pixel Data for frame ${index + 1} of ${header.numberOfFrames} (${columns}×${rows}, ` +
          `${spp} sample(s), ${ba} bits allocated), found ${available}${truncated ? ' (truncated file)' : ''}`,
      );
    }
    // The frame fits, but the element claims more than the file holds: a cut file or a wrong length, not data to trust.
    const inFile = dataSet.byteArray.length - element.dataOffset;
    if (element.length > inFile) {
      throw new ImageError(
        path,
        `expected the Pixel Data element's declared length of ${element.length} bytes to lie within the file, found ` +
          `${inFile} bytes from its start (offset ${element.dataOffset}) to the end of the file (truncated file or wrong length)`,
      );
    }
    const words = nativeWords(dataSet.byteArray, start, rows * columns * spp, ba, syntax.bigEndian, element.vr === 'OW', element.dataOffset);
    return { words, shift: nativeShift, bits: header.bitsStored, planar: header.planarConfiguration === 1, codec: 'native' };
  }

  if (element.encapsulatedPixelData !== true) {
    throw new ImageError(
      path,
      `expected encapsulated Pixel Data (undefined length, Basic Offset Table and fragments) for ${syntax.name}, found ` +
        `native data of ${element.length} bytes`,
    );
  }
  const frame = encapsulatedFrame(parsed, element, header.numberOfFrames, index);
  try {
    if (syntax.codec === 'rle') {
      const words = decodeRleFrame(frame, rows, columns, spp, ba);
      return { words, shift: nativeShift, bits: header.bitsStored, planar: true, codec: 'RLE' };
    }
    const decoded = await decodeCompressedFrame(frame);
    if (decoded.width !== columns || decoded.height !== rows || decoded.components !== spp) {
      throw new CodecError(
        `expected a ${columns}×${rows} frame with ${spp} component(s) (Columns, Rows, Samples per Pixel), found ` +
          `${decoded.width}×${decoded.height} with ${decoded.components} from the ${decoded.codec} decoder`,
      );
    }
    // Decoded samples sit in the low bits; masking to the smaller of the coded precision and Bits Stored and
    // sign-extending from there is right whether a signed codec returned sign-extended words or P-bit patterns.
    return {
      words: decoded.words,
      shift: 0,
      bits: Math.min(decoded.precision, header.bitsStored),
      planar: decoded.planar,
      codec: decoded.codec,
    };
  } catch (e) {
    if (e instanceof CodecError) throw new ImageError(path, `${syntax.name} frame ${index + 1}: ${e.message}`);
    throw e;
  }
}

/** Native samples as unsigned words; big-endian OW data is byte-swapped per word. */
function nativeWords(
  bytes: Uint8Array,
  start: number,
  n: number,
  ba: number,
  bigEndian: boolean,
  isOw: boolean,
  elementStart: number,
): Uint8Array | Uint16Array | Uint32Array {
  if (ba === 8) {
    if (bigEndian && isOw) {
      // 8-bit samples in big-endian OW: bytes are swapped within each 16-bit word of the element.
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = bytes[elementStart + ((start - elementStart + i) ^ 1)]!;
      return out;
    }
    return bytes.slice(start, start + n);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset + start, (n * ba) / 8);
  if (ba === 16) {
    const out = new Uint16Array(n);
    for (let i = 0; i < n; i++) out[i] = view.getUint16(2 * i, !bigEndian);
    return out;
  }
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = view.getUint32(4 * i, !bigEndian);
  return out;
}

/**
 * The bytes of one compressed frame. One frame: all fragments joined. Several frames: the Basic Offset Table
 * when present; else one fragment per frame when the counts match; else, for JPEG-family data, frame
 * boundaries found from the JPEG markers (dicom-parser's createJPEGBasicOffsetTable).
 */
function encapsulatedFrame(parsed: ParsedDicom, element: Element, frames: number, index: number): Uint8Array {
  const { path, dataSet, syntax } = parsed;
  const fragments = element.fragments ?? [];
  if (fragments.length === 0) throw new ImageError(path, `expected at least one pixel data fragment for ${syntax.name}, found none`);
  const size = dataSet.byteArray.length;
  for (const [i, f] of fragments.entries()) {
    if (f.position + f.length > size) {
      throw new ImageError(
        path,
        `expected ${f.length} bytes in pixel data fragment ${i + 1} of ${fragments.length}, found ${Math.max(0, size - f.position)} (truncated file)`,
      );
    }
  }
  const join = (from: number, count: number): Uint8Array => {
    const parts = fragments.slice(from, from + count).map((f) => dataSet.byteArray.subarray(f.position, f.position + f.length));
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  };
  if (frames === 1) return join(0, fragments.length);
  const bot = element.basicOffsetTable ?? [];
  if (bot.length === frames) {
    const begin = fragments.findIndex((f) => f.offset === bot[index]);
    const endOffset = index + 1 < frames ? bot[index + 1]! : Infinity;
    if (begin < 0) throw new ImageError(path, `expected a fragment at Basic Offset Table offset ${bot[index]} for frame ${index + 1}, found none`);
    let count = 0;
    while (begin + count < fragments.length && fragments[begin + count]!.offset < endOffset) count += 1;
    return join(begin, count);
  }
  if (fragments.length === frames) return join(index, 1);
  if (syntax.codec === 'rle') {
    throw new ImageError(path, `expected one RLE fragment per frame (${frames}), found ${fragments.length} fragments and no Basic Offset Table`);
  }
  try {
    const table = dicomParser.createJPEGBasicOffsetTable(dataSet, element);
    return dicomParser.readEncapsulatedImageFrame(dataSet, element, index, table) as Uint8Array;
  } catch (e) {
    throw new ImageError(path, `expected to find frame ${index + 1} of ${frames} among ${fragments.length} fragments without a Basic Offset Table, found no frame boundary (${String(e)})`);
  }
}
