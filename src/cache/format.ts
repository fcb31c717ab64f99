/**
 * The on-disk format of a prepared cache (see format.md next to this file for the full description):
 * constants, the JSON shapes of cache.json / index.jsonl / report.json, and their validation, shared by the
 * writer (prepare.ts, when resuming) and the reader (reader.ts).
 */
import { CacheError } from './errors.js';

/** `format` field of cache.json. */
export const CACHE_FORMAT = 'cxformer-prepared-cache';
/** `version` field of cache.json. Bumped on any change to the layout or to the pixel pipeline. */
export const CACHE_VERSION = 1;
/** Every record starts at a multiple of this many bytes of pixels.bin. */
export const ALIGNMENT = 64;
/** A single record may not exceed this many bytes (images that would are skipped as 'too-large'). */
export const MAX_RECORD_BYTES = 1024 * 1024 * 1024;

export const FILES = {
  info: 'cache.json',
  pixels: 'pixels.bin',
  index: 'index.jsonl',
  report: 'report.json',
  lock: 'prepare.lock',
} as const;

/** The fixed parts of the pixel pipeline, recorded in cache.json so that a future change is detected. */
export const PIPELINE = {
  /** RGB → gray: PIL `convert('L')` integer luma (R·19595 + G·38470 + B·7471 + 0x8000) >> 16, at the source depth. */
  gray: 'pil-luma-601',
  /** Pillow `Image.resize(…, BICUBIC)`: Keys a = −0.5, support scaled by the downsampling factor (antialiased). */
  filter: 'pil-bicubic',
  /** Horizontal pass first (Pillow ≤ 12). */
  passOrder: 'horizontal-first',
} as const;

/** How resampled values are rounded to the stored type (derived from the bit depth). */
export const ROUNDING = {
  8: 'pil-8bit-per-pass',
  16: 'float-round-half-up-clip-65535',
} as const;

/** The settings that determine the content of a cache. Two runs into one folder must agree on all of them. */
export interface CacheSettings {
  /** Shorter side of every stored image in px, or null to keep the decoded size. */
  shorterSide: number | null;
  /** Stored sample depth. */
  bitDepth: 8 | 16;
  /** Images whose shorter side (before resizing) is below this are skipped as 'too-small'. */
  minSide: number;
  gray: typeof PIPELINE.gray;
  filter: typeof PIPELINE.filter;
  passOrder: typeof PIPELINE.passOrder;
  rounding: (typeof ROUNDING)[8] | (typeof ROUNDING)[16];
}

/** cache.json. */
export interface CacheInfo {
  format: typeof CACHE_FORMAT;
  version: typeof CACHE_VERSION;
  settings: CacheSettings;
  alignment: typeof ALIGNMENT;
  byteOrder: 'little';
  /** Records in index.jsonl (exact when `complete`; written at the end of a run). */
  records: number;
  /** Items listed as skipped in report.json (when `complete`). */
  skipped: number;
  /** Items given to the last complete run. */
  items: number;
  /** True once a run has written every item (or skipped it) and the report; false while a run is going on or after it was interrupted or failed. */
  complete: boolean;
}

/** One line of index.jsonl. */
export interface CacheRecord {
  /** Record number: the line number in index.jsonl, from 0. */
  i: number;
  /** The item id (unique). */
  id: string;
  /** Byte offset of the pixels in pixels.bin (a multiple of {@link ALIGNMENT}). */
  offset: number;
  /** height · width · bitDepth/8. */
  byteLength: number;
  height: number;
  width: number;
  bitDepth: 8 | 16;
  /** Size of the decoded image. */
  originalHeight: number;
  originalWidth: number;
  /** Sample depth of the decoded image (8 or 16). */
  sourceBitDepth: 8 | 16;
  /** Channels of the decoded image (1 gray, 3 RGB). */
  sourceChannels: 1 | 3;
  /** CRC-32 (IEEE) of the record's pixel bytes as stored. */
  crc32: number;
  /** The item's metadata, verbatim (JSON). */
  meta: Record<string, unknown>;
}

/** Why an item was skipped. */
export type SkipReason = 'unreadable' | 'corrupt' | 'too-small' | 'too-large';
export const SKIP_REASONS: readonly SkipReason[] = ['unreadable', 'corrupt', 'too-small', 'too-large'];

/** An item that is not in the cache. */
export interface SkippedItem {
  id: string;
  path: string;
  reason: SkipReason;
  message: string;
}

/** report.json. */
export interface CacheReport {
  format: 'cxformer-prepared-cache-report';
  version: typeof CACHE_VERSION;
  /** Items given to the run. */
  items: number;
  /** Records in the cache. */
  records: number;
  /** Skipped items (count per reason, then the list in item order). */
  skippedCount: number;
  byReason: Record<SkipReason, number>;
  maxBadFraction: number;
  /** True when the run stopped because too many items were unusable. */
  failed: boolean;
  skipped: SkippedItem[];
}

/** The first multiple of {@link ALIGNMENT} at or after `n`. */
export function alignUp(n: number): number {
  return Math.ceil(n / ALIGNMENT) * ALIGNMENT;
}

/** The settings object for the given choices. */
export function makeSettings(shorterSide: number | null, bitDepth: 8 | 16, minSide: number): CacheSettings {
  return { shorterSide, bitDepth, minSide, ...PIPELINE, rounding: ROUNDING[bitDepth] };
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isPosInt = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 1;
const isNonNegInt = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

/** The setting names on which two settings objects differ, with both values, e.g. `bitDepth (cache 16, asked 8)`. */
export function settingsDiff(cache: CacheSettings, asked: CacheSettings): string[] {
  const keys = Object.keys(asked) as (keyof CacheSettings)[];
  return keys
    .filter((k) => JSON.stringify(cache[k]) !== JSON.stringify(asked[k]))
    .map((k) => `${k} (cache ${JSON.stringify(cache[k]) ?? 'missing'}, asked ${JSON.stringify(asked[k])})`);
}

/**
 * Parses and validates cache.json.
 * @throws CacheError naming the file and the offending field
 */
export function parseInfo(text: string, file: string): CacheInfo {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new CacheError(`expected JSON, found a malformed file (${(e as Error).message})`, file);
  }
  if (!isObject(v)) throw new CacheError('expected a JSON object', file);
  if (v.format !== CACHE_FORMAT) throw new CacheError(`expected format '${CACHE_FORMAT}', found ${JSON.stringify(v.format)}`, file);
  if (v.version !== CACHE_VERSION) {
    throw new CacheError(`expected format version ${CACHE_VERSION}, found ${JSON.stringify(v.version)} (prepare the cache again with this version of cxformer)`, file);
  }
  const s = v.settings;
  if (!isObject(s)) throw new CacheError('expected a settings object', file);
  if (!(s.shorterSide === null || isPosInt(s.shorterSide))) throw new CacheError(`settings.shorterSide: expected a positive integer or null, found ${JSON.stringify(s.shorterSide)}`, file);
  if (s.bitDepth !== 8 && s.bitDepth !== 16) throw new CacheError(`settings.bitDepth: expected 8 or 16, found ${JSON.stringify(s.bitDepth)}`, file);
  if (!isPosInt(s.minSide)) throw new CacheError(`settings.minSide: expected a positive integer, found ${JSON.stringify(s.minSide)}`, file);
  for (const k of ['gray', 'filter', 'passOrder', 'rounding'] as const) {
    if (typeof s[k] !== 'string') throw new CacheError(`settings.${k}: expected a string, found ${JSON.stringify(s[k])}`, file);
  }
  if (v.alignment !== ALIGNMENT) throw new CacheError(`expected alignment ${ALIGNMENT}, found ${JSON.stringify(v.alignment)}`, file);
  if (v.byteOrder !== 'little') throw new CacheError(`expected byteOrder 'little', found ${JSON.stringify(v.byteOrder)}`, file);
  for (const k of ['records', 'skipped', 'items'] as const) {
    if (!isNonNegInt(v[k])) throw new CacheError(`${k}: expected a non-negative integer, found ${JSON.stringify(v[k])}`, file);
  }
  if (typeof v.complete !== 'boolean') throw new CacheError(`complete: expected true or false, found ${JSON.stringify(v.complete)}`, file);
  return v as unknown as CacheInfo;
}

/** Serialises cache.json (stable key order, 2-space indent, final newline). */
export function formatInfo(info: CacheInfo): string {
  const ordered: CacheInfo = {
    format: info.format,
    version: info.version,
    settings: { ...info.settings },
    alignment: info.alignment,
    byteOrder: info.byteOrder,
    records: info.records,
    skipped: info.skipped,
    items: info.items,
    complete: info.complete,
  };
  return `${JSON.stringify(ordered, null, 2)}\n`;
}

/** Serialises one index line (stable key order, no spaces, final newline). */
export function formatRecord(r: CacheRecord): string {
  const ordered: CacheRecord = {
    i: r.i,
    id: r.id,
    offset: r.offset,
    byteLength: r.byteLength,
    height: r.height,
    width: r.width,
    bitDepth: r.bitDepth,
    originalHeight: r.originalHeight,
    originalWidth: r.originalWidth,
    sourceBitDepth: r.sourceBitDepth,
    sourceChannels: r.sourceChannels,
    crc32: r.crc32,
    meta: r.meta,
  };
  return `${JSON.stringify(ordered)}\n`;
}

/**
 * Checks one parsed index line. Returns the problem, or undefined when the record is well formed and consistent
 * with the settings, its position `i` and the previous record's end.
 */
function recordProblem(v: unknown, i: number, prevEnd: number, settings: CacheSettings): string | undefined {
  if (!isObject(v)) return 'expected a JSON object';
  if (v.i !== i) return `expected i ${i} (the line's position), found ${JSON.stringify(v.i)}`;
  if (typeof v.id !== 'string' || v.id === '') return `expected a non-empty string id, found ${JSON.stringify(v.id)}`;
  for (const k of ['height', 'width', 'originalHeight', 'originalWidth'] as const) {
    if (!isPosInt(v[k])) return `${k}: expected a positive integer, found ${JSON.stringify(v[k])}`;
  }
  if (!isNonNegInt(v.offset)) return `offset: expected a non-negative integer, found ${JSON.stringify(v.offset)}`;
  if (v.offset % ALIGNMENT !== 0) return `offset ${v.offset} is not a multiple of ${ALIGNMENT}`;
  if (v.offset < prevEnd) return `offset ${v.offset} overlaps the previous record, which ends at ${prevEnd}`;
  if (v.bitDepth !== settings.bitDepth) return `bitDepth: expected ${settings.bitDepth} (the cache setting), found ${JSON.stringify(v.bitDepth)}`;
  const h = v.height as number;
  const w = v.width as number;
  const expected = h * w * (settings.bitDepth / 8);
  if (v.byteLength !== expected) return `byteLength: expected ${expected} (${h}×${w}×${settings.bitDepth / 8}), found ${JSON.stringify(v.byteLength)}`;
  if (settings.shorterSide !== null && Math.min(h, w) !== settings.shorterSide) {
    return `expected a shorter side of ${settings.shorterSide} px (the cache setting), found ${h}×${w}`;
  }
  if (settings.shorterSide === null && (h !== v.originalHeight || w !== v.originalWidth)) {
    return `expected the original size ${JSON.stringify(v.originalHeight)}×${JSON.stringify(v.originalWidth)} (shorterSide null), found ${h}×${w}`;
  }
  if (v.sourceBitDepth !== 8 && v.sourceBitDepth !== 16) return `sourceBitDepth: expected 8 or 16, found ${JSON.stringify(v.sourceBitDepth)}`;
  if (v.sourceChannels !== 1 && v.sourceChannels !== 3) return `sourceChannels: expected 1 or 3, found ${JSON.stringify(v.sourceChannels)}`;
  if (!(isNonNegInt(v.crc32) && v.crc32 <= 0xffffffff)) return `crc32: expected an unsigned 32-bit integer, found ${JSON.stringify(v.crc32)}`;
  if (!isObject(v.meta)) return `meta: expected a JSON object, found ${JSON.stringify(v.meta)}`;
  return undefined;
}

/** What {@link parseIndex} found. */
export interface ParsedIndex {
  records: CacheRecord[];
  /** Bytes of index.jsonl holding the returned records (the rest was a torn tail, dropped in tolerant mode). */
  validBytes: number;
  /** Lines dropped in tolerant mode: a torn final line and records that do not fit in pixels.bin. */
  droppedLines: number;
}

/**
 * Parses and validates index.jsonl against the settings and the size of pixels.bin.
 *
 * Strict mode (the reader of a complete cache): every line must be a complete, valid record that lies inside
 * pixels.bin. Tolerant mode (resuming, or reading an incomplete cache): what an interrupted writer can leave
 * is dropped instead: a final line without its newline, trailing lines that are not JSON (as long as no
 * complete JSON line follows), and trailing records that extend past the end of pixels.bin. A complete JSON
 * line with an inconsistent record, a bad line followed by a complete one, or a duplicate id are errors in
 * both modes.
 *
 * @throws CacheError naming the file and the 1-based line
 */
export function parseIndex(bytes: Uint8Array, file: string, settings: CacheSettings, pixelsSize: number, tolerant: boolean): ParsedIndex {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const records: CacheRecord[] = [];
  /** Byte offset just past each record's line. */
  const lineEnds: number[] = [];
  const ids = new Map<string, number>();
  let pos = 0;
  let prevEnd = 0;
  let torn: { line: number; problem: string } | undefined;
  let lineNo = 0;
  while (pos < buf.length) {
    const nl = buf.indexOf(0x0a, pos);
    const end = nl < 0 ? buf.length : nl + 1;
    const line = buf.toString('utf8', pos, nl < 0 ? buf.length : nl);
    lineNo++;
    pos = end;
    let problem: string | undefined;
    let v: unknown;
    if (nl < 0) problem = 'the line is not terminated (a torn write)';
    else {
      try {
        v = JSON.parse(line);
      } catch (e) {
        problem = `expected a JSON record, found malformed JSON (${(e as Error).message})`;
      }
    }
    if (problem !== undefined) {
      // Unterminated or not JSON: what a torn write (or a power loss) leaves at the end.
      if (!tolerant) throw new CacheError(`line ${lineNo}: ${problem}`, file);
      torn ??= { line: lineNo, problem };
      continue;
    }
    if (torn !== undefined) {
      throw new CacheError(`line ${torn.line}: ${torn.problem}, but a complete line follows on line ${lineNo}: the index is corrupt`, file);
    }
    // A complete JSON line is never torn: any inconsistency is an error in both modes.
    problem = recordProblem(v, records.length, prevEnd, settings);
    if (problem !== undefined) throw new CacheError(`line ${lineNo}: ${problem}`, file);
    const r = v as CacheRecord;
    const dup = ids.get(r.id);
    if (dup !== undefined) throw new CacheError(`line ${lineNo}: id '${r.id}' is already on line ${dup}`, file);
    ids.set(r.id, lineNo);
    records.push(r);
    lineEnds.push(pos);
    prevEnd = r.offset + r.byteLength;
  }
  let droppedLines = lineNo - records.length;
  // Records past the end of pixels.bin: offsets increase, so they form a suffix.
  let keep = records.length;
  while (keep > 0) {
    const r = records[keep - 1]!;
    if (r.offset + r.byteLength <= pixelsSize) break;
    keep--;
  }
  if (keep < records.length) {
    const r = records[keep]!;
    const msg = `line ${keep + 1}: record '${r.id}' ends at byte ${r.offset + r.byteLength}, past the end of pixels.bin (${pixelsSize} bytes)`;
    if (!tolerant) throw new CacheError(msg, file);
    droppedLines += records.length - keep;
    records.length = keep;
  }
  return { records, validBytes: keep === 0 ? 0 : lineEnds[keep - 1]!, droppedLines };
}

/** Parses report.json; returns undefined when it is missing the expected shape (it is advisory). */
export function parseReport(text: string): CacheReport | undefined {
  try {
    const v = JSON.parse(text) as unknown;
    if (!isObject(v) || v.format !== 'cxformer-prepared-cache-report' || !Array.isArray(v.skipped)) return undefined;
    const ok = v.skipped.every(
      (s: unknown) => isObject(s) && typeof s.id === 'string' && typeof s.path === 'string' && SKIP_REASONS.includes(s.reason as SkipReason) && typeof s.message === 'string',
    );
    return ok ? (v as unknown as CacheReport) : undefined;
  } catch {
    return undefined;
  }
}

/** Whether this machine stores multi-byte integers little-endian (all supported platforms do). */
export const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The little-endian bytes of a sample array (a view on little-endian hosts, a swapped copy otherwise). */
export function toLittleEndianBytes(data: Uint8Array | Uint16Array): Uint8Array {
  if (data instanceof Uint8Array) return data;
  const view = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (LITTLE_ENDIAN) return view;
  const out = new Uint8Array(view.length);
  for (let k = 0; k < view.length; k += 2) {
    out[k] = view[k + 1]!;
    out[k + 1] = view[k]!;
  }
  return out;
}

/** Samples from little-endian bytes (takes ownership of `bytes`, which must start at an even offset). */
export function fromLittleEndianBytes(bytes: Uint8Array, bitDepth: 8 | 16): Uint8Array | Uint16Array {
  if (bitDepth === 8) return bytes;
  if (!LITTLE_ENDIAN) {
    for (let k = 0; k < bytes.length; k += 2) {
      const a = bytes[k]!;
      bytes[k] = bytes[k + 1]!;
      bytes[k + 1] = a;
    }
  }
  return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
}
