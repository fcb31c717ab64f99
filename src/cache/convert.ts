/**
 * The per-image work of `prepare`: decode → gray at the stored depth → shorter-side resize → CRC-32.
 * Runs inside the worker threads (worker.ts) or in-process (see prepare.ts); pure apart from reading the file.
 *
 * Exact pixel rules (format.md repeats them):
 * - 8-bit cache: `grayPlane8` (PIL `convert('L')` for 8-bit sources; 16-bit sources are gray-converted at 16 bits
 *   and reduced once with round(v / 257)), then, when the size changes, Pillow's 8-bit bicubic
 *   (`resizeShorterSide(…, { roundToUint8: true })`: 22-bit fixed-point weights, round + clip to 0..255 after each
 *   pass) — the same bytes as PIL `img.convert('L').resize(size, BICUBIC)`.
 * - 16-bit cache: gray at the source depth (`rgbToGray` for RGB, else the samples); 8-bit sources are expanded
 *   by ×257 (0 → 0, 255 → 65535, the inverse of the 16 → 8 rule); 16-bit sources keep their values as decoded
 *   (a 12-bit image stored in a 16-bit PNG stays 0..4095). When the size changes: Pillow's float ("F") bicubic
 *   (`roundToUint8: false`: double accumulation, float32 between the passes), then once, at the end,
 *   `min(65535, max(0, Math.round(v)))` (halves round up).
 * - Shorter side: `shorterSideSize` (torchvision `Resize(int)`: the shorter side becomes S and the longer
 *   `trunc(S · long / short)`); an image whose shorter side already equals S (or shorterSide null) is stored as is.
 */
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';

import { decodeImage, type DecodedImage } from '../image/decode.js';
import { grayPlane8, rgbToGray } from '../image/gray.js';
import { resizeShorterSide, shorterSideSize } from '../image/resize.js';
import { crc32 } from './crc32.js';
import { MAX_RECORD_BYTES, PIPELINE, type SkipReason, toLittleEndianBytes } from './format.js';

/** What the per-image work needs to know. */
export interface ConvertSettings {
  shorterSide: number | null;
  bitDepth: 8 | 16;
  minSide: number;
}

/** A converted image, ready to be appended. */
export interface ConvertedImage {
  /** Row-major gray samples, height × width. */
  data: Uint8Array | Uint16Array;
  height: number;
  width: number;
  originalHeight: number;
  originalWidth: number;
  sourceBitDepth: 8 | 16;
  sourceChannels: 1 | 3;
}

/** Outcome of one item: the stored bytes (little-endian) and their CRC, or why it was skipped. */
export type ItemOutcome =
  | ({ ok: true; bytes: Uint8Array; crc32: number } & Omit<ConvertedImage, 'data'>)
  | { ok: false; reason: SkipReason; message: string };

/** Why a decoded image cannot be stored under these settings, or undefined when it can. */
export function sizeProblem(width: number, height: number, s: ConvertSettings): { reason: SkipReason; message: string } | undefined {
  if (Math.min(width, height) < s.minSide) {
    return { reason: 'too-small', message: `expected a shorter side of at least ${s.minSide} px (minSide), found ${width}×${height}` };
  }
  const out = s.shorterSide === null ? { width, height } : shorterSideSize(width, height, s.shorterSide);
  const bytes = out.width * out.height * (s.bitDepth / 8);
  if (bytes > MAX_RECORD_BYTES) {
    return { reason: 'too-large', message: `the stored image would be ${out.width}×${out.height} (${bytes} bytes), more than the ${MAX_RECORD_BYTES}-byte record limit` };
  }
  return undefined;
}

/** The gray plane at 16 bits (see the module comment). */
function grayPlane16(img: DecodedImage): Uint16Array {
  const gray = img.channels === 3 ? rgbToGray(img.data) : img.data;
  if (gray instanceof Uint16Array) return gray; // decodeImage's array is ours to keep
  const out = new Uint16Array(gray.length);
  for (let k = 0; k < gray.length; k++) out[k] = gray[k]! * 257;
  return out;
}

/**
 * Converts a decoded image to the stored gray plane (see the module comment for the exact rules).
 *
 * @throws RangeError when the size does not satisfy the settings (check {@link sizeProblem} first)
 */
export function convertForCache(img: DecodedImage, s: ConvertSettings): ConvertedImage {
  const problem = sizeProblem(img.width, img.height, s);
  if (problem) throw new RangeError(problem.message);
  const { width, height } = img;
  const base = { originalHeight: height, originalWidth: width, sourceBitDepth: img.bitDepth, sourceChannels: img.channels };
  const resize = s.shorterSide !== null && Math.min(width, height) !== s.shorterSide;
  if (s.bitDepth === 8) {
    const gray = grayPlane8(img);
    if (!resize) return { data: gray, height, width, ...base };
    const r = resizeShorterSide(Float32Array.from(gray), width, height, s.shorterSide!, { filter: 'bicubic', roundToUint8: true, passOrder: PIPELINE.passOrder });
    return { data: Uint8Array.from(r.data), height: r.height, width: r.width, ...base };
  }
  const gray = grayPlane16(img);
  if (!resize) return { data: gray, height, width, ...base };
  const r = resizeShorterSide(Float32Array.from(gray), width, height, s.shorterSide!, { filter: 'bicubic', roundToUint8: false, passOrder: PIPELINE.passOrder });
  const out = new Uint16Array(r.data.length);
  for (let k = 0; k < out.length; k++) {
    const v = Math.round(r.data[k]!);
    out[k] = v < 0 ? 0 : v > 65535 ? 65535 : v;
  }
  return { data: out, height: r.height, width: r.width, ...base };
}

function message(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n').map((x) => x.trim()).filter((x) => x !== '').slice(0, 3).join('; ');
}

/**
 * Reads, decodes and converts one file. Problems with the file are returned as a skip ('unreadable': the file
 * cannot be opened; 'corrupt': the decoder rejected it — corrupt, truncated or an unsupported format;
 * 'too-small' / 'too-large': see {@link sizeProblem}). Anything else (a bug) is thrown.
 */
export async function processFile(path: string, s: ConvertSettings): Promise<ItemOutcome> {
  try {
    const st = await stat(path);
    if (!st.isFile()) return { ok: false, reason: 'unreadable', message: `${path}: expected a file, found ${st.isDirectory() ? 'a directory' : 'something else'}` };
    await access(path, constants.R_OK);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    return { ok: false, reason: 'unreadable', message: err.code === 'ENOENT' ? `${path}: no such file` : message(e) };
  }
  let img: DecodedImage;
  try {
    img = await decodeImage(path);
  } catch (e) {
    return { ok: false, reason: 'corrupt', message: message(e) };
  }
  const problem = sizeProblem(img.width, img.height, s);
  if (problem) return { ok: false, ...problem, message: `${path}: ${problem.message}` };
  const { data, ...rest } = convertForCache(img, s);
  const bytes = toLittleEndianBytes(data);
  return { ok: true, bytes, crc32: crc32(bytes), ...rest };
}
