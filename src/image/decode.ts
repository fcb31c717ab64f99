/**
 * Image decoding with sharp (libvips): PNG (8- or 16-bit) and JPEG to raw pixels.
 *
 * What comes back is the stored pixel values, with no colour management and no EXIF rotation, like PIL's
 * `Image.open(path)` (which ignores ICC profiles and orientation tags):
 * - gray (with or without alpha) → 1 channel; RGB, RGBA and palette images → 3 channels (palette expanded);
 * - the alpha channel is dropped without compositing, as PIL's `convert('L')`/`convert('RGB')` do;
 * - 16-bit PNGs stay 16-bit (Uint16Array); everything else is 8-bit (Uint8Array); 1/2/4-bit PNGs are expanded
 *   to 8-bit by libpng (scaled to 0..255).
 */
import { readFile } from 'node:fs/promises';
import sharp, { type Metadata, type OutputInfo, type Sharp } from 'sharp';

import { decodeDicomBytes, looksLikeDicom } from './dicom.js';
import { ImageError } from './errors.js';
import { checkPixelLimit, resolveMaxPixels } from './limits.js';

/** A decoded image. */
export interface DecodedImage {
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
  /** 1 for gray, 3 for RGB. */
  channels: 1 | 3;
  /** Bits per sample: 8 (Uint8Array) or 16 (Uint16Array). */
  bitDepth: 8 | 16;
  /** Samples in row-major HWC order (channels fastest): `data[(y * width + x) * channels + c]`. */
  data: Uint8Array | Uint16Array;
  /** The container format. */
  format: 'png' | 'jpeg' | 'dicom';
}

const EXPECTED = 'a PNG (8- or 16-bit, gray or RGB, optional alpha) or JPEG image';

/** Recognises the container from its first bytes; names a few common unsupported formats for error messages. */
function sniff(bytes: Uint8Array): { format: 'png' | 'jpeg' } | { other: string } {
  const starts = (...sig: number[]): boolean => sig.every((b, i) => bytes[i] === b);
  if (starts(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return { format: 'png' };
  if (starts(0xff, 0xd8, 0xff)) return { format: 'jpeg' };
  if (bytes.length === 0) return { other: 'an empty file' };
  const ascii = (from: number, to: number): string => Buffer.from(bytes.subarray(from, to)).toString('latin1');
  if (ascii(0, 4) === 'GIF8') return { other: 'a GIF image' };
  if (ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') return { other: 'a WebP image' };
  if (starts(0x49, 0x49, 0x2a, 0x00) || starts(0x4d, 0x4d, 0x00, 0x2a)) return { other: 'a TIFF image' };
  if (ascii(0, 2) === 'BM') return { other: 'a BMP image' };
  if (ascii(128, 132) === 'DICM') return { other: 'a DICOM file (convert it to PNG first)' };
  if (starts(0x00, 0x00, 0x00, 0x0c, 0x6a, 0x50) || starts(0xff, 0x4f, 0xff, 0x51)) return { other: 'a JPEG 2000 image' };
  const head = Array.from(bytes.subarray(0, 8), (b) => b.toString(16).padStart(2, '0')).join(' ');
  return { other: `unrecognised data (first bytes ${head})` };
}

export interface DecodeOptions {
  /**
   * Refuse an image of more than this many pixels (width × height, one frame) before decoding it; 0 = no limit.
   * The same limit for PNG, JPEG and DICOM.
   * @default $CXFORMER_MAX_PIXELS, else 268402689 (sharp's `limitInputPixels`; see limits.ts)
   */
  maxPixels?: number;
}

/**
 * Decodes a PNG or JPEG file to raw samples (see {@link DecodedImage}); DICOM files go to dicom.ts.
 *
 * @throws ImageError (code `CXF_IMAGE`) naming the file when it is missing or unreadable, is not PNG/JPEG, is
 *   corrupt or truncated, has an unsupported colour space or sample depth, or is above the pixel limit.
 */
export async function decodeImage(path: string, options: DecodeOptions = {}): Promise<DecodedImage> {
  const maxPixels = resolveMaxPixels(options.maxPixels);
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const found = err.code === 'ENOENT' ? 'no such file' : err.code === 'EISDIR' ? 'a directory' : err.message;
    throw new ImageError(path, `expected ${EXPECTED}, found ${found}`);
  }
  // DICOM ("DICM" at byte 128, or a .dcm/.dicom name): 16-bit gray after the modality and VOI transforms (see dicom.ts).
  if (looksLikeDicom(path, bytes)) return decodeDicomBytes(bytes, path, { maxPixels });
  const kind = sniff(bytes);
  if ('other' in kind) throw new ImageError(path, `expected ${EXPECTED}, found ${kind.other}`);
  const format = kind.format;
  const name = format.toUpperCase();

  // ignoreIcc: take stored values as PIL does; failOn 'warning': truncated or damaged data is an error.
  // limitInputPixels: reading the header is always allowed, so that our check below names the size; decoding
  // keeps sharp's own check (false = none) as a backstop.
  const input = (limit: number | false = maxPixels === 0 ? false : maxPixels): Sharp =>
    sharp(bytes, { ignoreIcc: true, failOn: 'warning', limitInputPixels: limit });
  let meta: Metadata;
  try {
    meta = await input(false).metadata();
  } catch (e) {
    throw new ImageError(path, `expected a valid ${name} file, found a corrupt or truncated one (${oneLine(e)})`);
  }
  if (meta.format !== format) {
    throw new ImageError(path, `expected ${EXPECTED}, found a file that starts like ${name} but decodes as ${meta.format}`);
  }
  if (meta.width !== undefined && meta.height !== undefined) checkPixelLimit(path, meta.width, meta.height, maxPixels, `${name} header`);
  const depth = meta.depth;
  if (depth !== 'uchar' && depth !== 'ushort') {
    throw new ImageError(path, `expected 8- or 16-bit unsigned samples, found sample format ${depth}`);
  }
  const sixteen = depth === 'ushort';
  const space = meta.space;
  const gray = space === 'b-w' || space === 'grey16';
  if (!gray && space !== 'srgb' && space !== 'rgb16') {
    throw new ImageError(path, `expected a gray or RGB image, found colour space ${space} (${meta.channels} channels)`);
  }

  // toColourspace keeps gray as 1 channel and 16-bit as 16-bit (sharp otherwise emits 8-bit sRGB for raw output).
  const target = gray ? (sixteen ? 'grey16' : 'b-w') : sixteen ? 'rgb16' : 'srgb';
  let raw: { data: Buffer; info: OutputInfo };
  try {
    raw = await input()
      .removeAlpha()
      .toColourspace(target)
      .raw({ depth: sixteen ? 'ushort' : 'uchar' })
      .toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new ImageError(path, `expected a valid ${name} file, found a corrupt or truncated one (${oneLine(e)})`);
  }
  const { info } = raw;
  const channels = gray ? 1 : 3;
  const bytesPerSample = sixteen ? 2 : 1;
  if (info.channels !== channels || raw.data.byteLength !== info.width * info.height * channels * bytesPerSample) {
    throw new ImageError(
      path,
      `expected ${channels}-channel ${sixteen ? 16 : 8}-bit pixels from the decoder, found ${info.channels} channels ` +
        `and ${raw.data.byteLength} bytes for ${info.width}×${info.height}`,
    );
  }
  // Copy into a fresh, aligned buffer (the decoder's Buffer may sit at an odd offset of a shared pool).
  const copy = raw.data.buffer.slice(raw.data.byteOffset, raw.data.byteOffset + raw.data.byteLength) as ArrayBuffer;
  return {
    width: info.width,
    height: info.height,
    channels,
    bitDepth: sixteen ? 16 : 8,
    data: sixteen ? new Uint16Array(copy) : new Uint8Array(copy),
    format,
  };
}

function oneLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n').map((s) => s.trim()).filter((s) => s !== '').slice(0, 2).join('; ');
}
