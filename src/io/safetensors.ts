/**
 * A validating safetensors reader and an atomic writer, in pure TypeScript.
 *
 * File layout (https://github.com/huggingface/safetensors):
 *
 *   [ u64 little-endian N ][ N bytes of UTF-8 JSON header ][ data section ]
 *
 * The header maps tensor names to `{ dtype, shape, data_offsets: [begin, end] }` (offsets relative to the start
 * of the data section) plus an optional `"__metadata__": { string: string }`. Tensor data is raw little-endian,
 * C order (row-major). A valid file's tensors tile the data section exactly: no gaps, no overlaps, and the data
 * section ends at the end of the file.
 */
import { randomBytes } from 'node:crypto';
import { endianness } from 'node:os';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import * as nodePath from 'node:path';

import { bf16ArrayToF32, f16ArrayToF32, f32ArrayToBf16, f32ArrayToF16 } from './half.js';

/** Element types this project reads and writes (the safetensors names). */
export type DType = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

/** Bytes per element of each dtype. BOOL is one byte (0 or 1). */
export const DTYPE_SIZE: Readonly<Record<DType, number>> = Object.freeze({
  F64: 8,
  I64: 8,
  F32: 4,
  I32: 4,
  F16: 2,
  BF16: 2,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
});

/** Every known dtype name. */
export const DTYPES: readonly DType[] = Object.freeze(Object.keys(DTYPE_SIZE) as DType[]);

/** Largest header accepted by the reader (100 MiB), a guard against absurd allocations. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** A typed array that can hold tensor data. */
export type TypedArray =
  | Float32Array
  | Float64Array
  | BigInt64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint8Array
  | Uint16Array;

/** One tensor entry of a header. `dataOffsets` are byte offsets relative to the start of the data section. */
export interface TensorInfo {
  dtype: DType;
  shape: number[];
  dataOffsets: [number, number];
}

/** A validated safetensors header. */
export interface SafetensorsHeader {
  /** The file the header was read from. */
  path: string;
  /** Size of the whole file in bytes. */
  fileSize: number;
  /** N, the JSON header length in bytes (including any padding). */
  headerSize: number;
  /** Absolute byte offset of the data section: 8 + N. */
  dataStart: number;
  /** Tensors in file order (by data offset; ties by end offset). */
  tensors: Map<string, TensorInfo>;
  /** The `__metadata__` object, or null when absent. */
  metadata: Record<string, string> | null;
}

/**
 * A tensor as returned by {@link readSafetensors}. `data` is C-order, in the JS type of its dtype:
 * F32, F16 and BF16 → Float32Array (half types are widened exactly); F64 → Float64Array; I64 → BigInt64Array;
 * I32 → Int32Array; I16 → Int16Array; I8 → Int8Array; U8 and BOOL → Uint8Array (BOOL holds 0 or 1).
 */
export interface LoadedTensor {
  dtype: DType;
  shape: number[];
  data: Float32Array | Float64Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array;
}

/** The content of a safetensors file. */
export interface SafetensorsContents {
  header: SafetensorsHeader;
  tensors: Map<string, LoadedTensor>;
  metadata: Record<string, string> | null;
}

/**
 * A tensor to write. `data.length` must equal the product of `shape`. Accepted data types per dtype:
 * F32 Float32Array; F64 Float64Array; I64 BigInt64Array; I32 Int32Array; I16 Int16Array; I8 Int8Array;
 * U8 Uint8Array; BOOL Uint8Array of 0/1; F16 and BF16 either a Uint16Array of raw bit patterns or a
 * Float32Array/Float64Array of values (rounded to nearest even).
 */
export interface TensorToWrite {
  dtype: DType;
  shape: number[];
  data: TypedArray;
}

/** Error raised for an invalid safetensors file or an invalid write request. */
export class SafetensorsError extends Error {
  /** Stable error code. */
  readonly code = 'CXF_SAFETENSORS';
  /** The file concerned. */
  readonly path: string;
  /** The tensor key concerned, if any. */
  readonly key: string | undefined;

  constructor(path: string, message: string, key?: string) {
    super(`${path}: ${key === undefined ? '' : `tensor ${JSON.stringify(key)}: `}${message}`);
    this.name = 'SafetensorsError';
    this.path = path;
    this.key = key;
  }
}

const METADATA_KEY = '__metadata__';
const TENSOR_FIELDS = new Set(['dtype', 'shape', 'data_offsets']);

function assertLittleEndianHost(path: string): void {
  if (endianness() !== 'LE') {
    throw new SafetensorsError(path, 'expected a little-endian host (safetensors data is little-endian), found a big-endian one');
  }
}

function isDType(x: unknown): x is DType {
  return typeof x === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_SIZE, x);
}

function describe(x: unknown): string {
  if (x === null) return 'null';
  if (Array.isArray(x)) return `array ${truncate(JSON.stringify(x))}`;
  if (typeof x === 'object') return 'an object';
  return `${typeof x} ${truncate(JSON.stringify(x) ?? String(x))}`;
}

function truncate(s: string, max = 60): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

/** Product of a shape's dimensions (1 for a scalar), or -1 if it exceeds Number.MAX_SAFE_INTEGER. */
function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (!Number.isSafeInteger(n)) return -1;
  }
  return n;
}

function validShapeMessage(shape: unknown): string | null {
  if (!Array.isArray(shape)) return `expected "shape" to be an array of non-negative integers, found ${describe(shape)}`;
  for (const [i, d] of shape.entries()) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      return `expected shape[${i}] to be a non-negative integer, found ${describe(d)}`;
    }
  }
  return null;
}

// ---------------------------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------------------------

/**
 * Parses and validates the JSON header bytes of a file of `fileSize` bytes whose header is `headerSize` bytes.
 * Checks everything except the tensor bytes themselves (BOOL values are checked when the data is read).
 */
function parseHeader(path: string, fileSize: number, headerSize: number, headerBytes: Uint8Array): SafetensorsHeader {
  if (headerBytes[0] === 0xef && headerBytes[1] === 0xbb && headerBytes[2] === 0xbf) {
    // TextDecoder would drop it silently; the Rust reader (serde_json) refuses it: one rule for both.
    throw new SafetensorsError(path, 'expected the header to start with \'{\', found a UTF-8 byte-order mark (EF BB BF)');
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch {
    throw new SafetensorsError(path, `expected the ${headerSize}-byte header to be UTF-8 text, found invalid UTF-8`);
  }
  const structure = headerStructureProblem(text);
  if (structure !== null) throw new SafetensorsError(path, structure);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError(
      path,
      `expected the header to be a JSON object, found invalid JSON (${(e as Error).message}): ${truncate(text.trim(), 80)}`,
    );
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new SafetensorsError(path, `expected the header to be a JSON object, found ${describe(json)}`);
  }

  const dataStart = 8 + headerSize;
  const dataSize = fileSize - dataStart;
  let metadata: Record<string, string> | null = null;
  const tensors = new Map<string, TensorInfo>();

  for (const [key, value] of Object.entries(json as Record<string, unknown>)) {
    if (key === METADATA_KEY) {
      metadata = parseMetadata(path, value);
      continue;
    }
    tensors.set(key, parseTensorEntry(path, key, value, dataSize));
  }

  // The tensors must tile [0, dataSize) exactly. Sort by (begin, end) and walk a cursor.
  const byOffset = [...tensors.entries()].sort(
    ([, a], [, b]) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1],
  );
  let cursor = 0;
  let previous: string | null = null;
  for (const [key, info] of byOffset) {
    const [begin, end] = info.dataOffsets;
    if (begin < cursor) {
      throw new SafetensorsError(
        path,
        `expected data to start at byte ${cursor} of the data section (after tensor ${JSON.stringify(previous)}), ` +
          `found data_offsets [${begin}, ${end}] overlapping it`,
        key,
      );
    }
    if (begin > cursor) {
      throw new SafetensorsError(
        path,
        `expected data to start at byte ${cursor} of the data section` +
          `${previous === null ? '' : ` (right after tensor ${JSON.stringify(previous)})`}, ` +
          `found data_offsets [${begin}, ${end}], leaving a gap of ${begin - cursor} bytes`,
        key,
      );
    }
    cursor = end;
    previous = key;
  }
  if (cursor !== dataSize) {
    throw new SafetensorsError(
      path,
      `expected the data section (${dataSize} bytes after the ${headerSize}-byte header) to end where the last tensor ` +
        `ends (byte ${cursor}), found ${dataSize - cursor} trailing bytes`,
    );
  }

  return { path, fileSize, headerSize, dataStart, tensors: new Map(byOffset), metadata };
}

/** Deepest nesting a header may have: root object > tensor entry > shape array is 3; metadata is 2. */
export const MAX_HEADER_DEPTH = 8;

/**
 * Scans the header text for what JSON.parse accepts or cannot report well: a key repeated in one object (JSON.parse
 * keeps the last one silently; a repeated tensor name would hide a tensor) and nesting deeper than
 * {@link MAX_HEADER_DEPTH} (JSON.parse recurses and would overflow the stack on a crafted header). Returns the
 * problem, or null (the text may still be invalid JSON, which JSON.parse then reports).
 */
function headerStructureProblem(text: string): string | null {
  const keys: (Set<string> | null)[] = []; // one entry per open container: a key set for objects, null for arrays
  let expectKey = false;
  let topKey = ''; // the last key of the root object: the tensor whose entry is being scanned
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch === 0x7b /* { */ || ch === 0x5b /* [ */) {
      keys.push(ch === 0x7b ? new Set() : null);
      if (keys.length > MAX_HEADER_DEPTH) {
        return `expected a header nested at most ${MAX_HEADER_DEPTH} levels deep (tensor entries need 3), found deeper nesting at byte ${i}`;
      }
      expectKey = ch === 0x7b;
    } else if (ch === 0x7d /* } */ || ch === 0x5d /* ] */) {
      keys.pop();
      expectKey = false;
    } else if (ch === 0x2c /* , */) {
      expectKey = keys.length > 0 && keys[keys.length - 1] !== null;
    } else if (ch === 0x22 /* " */) {
      let j = i + 1;
      while (j < text.length && text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c /* \ */ ? 2 : 1;
      if (expectKey) {
        let key: string;
        try {
          key = JSON.parse(text.slice(i, j + 1)) as string;
        } catch {
          return null; // malformed string: JSON.parse reports it
        }
        const seen = keys[keys.length - 1] as Set<string>;
        if (seen.has(key)) {
          const where = keys.length === 1 ? 'the header' : `the entry of ${JSON.stringify(truncate(topKey))}`;
          return `expected each key once in ${where}, found ${JSON.stringify(truncate(key))} more than once`;
        }
        seen.add(key);
        if (keys.length === 1) topKey = key;
        expectKey = false;
      }
      i = j;
    }
  }
  return null;
}

function parseMetadata(path: string, value: unknown): Record<string, string> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new SafetensorsError(path, `expected "${METADATA_KEY}" to be an object of strings, found ${describe(value)}`);
  }
  const entries = Object.entries(value as Record<string, unknown>);
  for (const [k, v] of entries) {
    if (typeof v !== 'string') {
      throw new SafetensorsError(path, `expected "${METADATA_KEY}"."${k}" to be a string, found ${describe(v)}`);
    }
  }
  // fromEntries defines own properties, so a "__proto__" key stays data.
  return Object.fromEntries(entries) as Record<string, string>;
}

function parseTensorEntry(path: string, key: string, value: unknown, dataSize: number): TensorInfo {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new SafetensorsError(path, `expected an object {dtype, shape, data_offsets}, found ${describe(value)}`, key);
  }
  const entry = value as Record<string, unknown>;
  for (const field of Object.keys(entry)) {
    if (!TENSOR_FIELDS.has(field)) {
      throw new SafetensorsError(path, `expected only the fields dtype, shape, data_offsets, found ${JSON.stringify(field)}`, key);
    }
  }
  const { dtype, shape, data_offsets: offsets } = entry;
  if (!isDType(dtype)) {
    throw new SafetensorsError(path, `expected dtype to be one of ${DTYPES.join(', ')}, found ${describe(dtype)}`, key);
  }
  const shapeProblem = validShapeMessage(shape);
  if (shapeProblem !== null) throw new SafetensorsError(path, shapeProblem, key);
  const dims = shape as number[];

  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((o) => typeof o === 'number' && Number.isSafeInteger(o) && o >= 0)
  ) {
    throw new SafetensorsError(
      path,
      `expected data_offsets to be [begin, end] with non-negative integers, found ${describe(offsets)}`,
      key,
    );
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end) {
    throw new SafetensorsError(path, `expected data_offsets [begin, end] with begin <= end, found [${begin}, ${end}]`, key);
  }
  const count = numel(dims);
  const expectedBytes = count < 0 ? -1 : count * DTYPE_SIZE[dtype];
  if (expectedBytes < 0 || !Number.isSafeInteger(expectedBytes)) {
    throw new SafetensorsError(path, `shape [${dims.join(', ')}] is too large to address`, key);
  }
  if (end - begin !== expectedBytes) {
    throw new SafetensorsError(
      path,
      `expected ${expectedBytes} bytes (shape [${dims.join(', ')}] × ${DTYPE_SIZE[dtype]}-byte ${dtype}), ` +
        `found data_offsets [${begin}, ${end}] spanning ${end - begin} bytes`,
      key,
    );
  }
  if (end > dataSize) {
    throw new SafetensorsError(
      path,
      `expected data_offsets within the ${dataSize}-byte data section, found [${begin}, ${end}] ` +
        `(${end - dataSize} bytes past the end of the file)`,
      key,
    );
  }
  return { dtype, shape: [...dims], dataOffsets: [begin, end] };
}

/** Reads exactly `length` bytes at `position` into a fresh buffer, or throws naming what was missing. */
async function readExactly(fh: FileHandle, path: string, position: number, length: number, what: string): Promise<Uint8Array> {
  const buf = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    // A single read() is capped at 2 GiB - 1; loop in chunks.
    const chunk = Math.min(length - done, 0x40000000);
    const { bytesRead } = await fh.read(buf, done, chunk, position + done);
    if (bytesRead === 0) {
      throw new SafetensorsError(path, `expected ${length} bytes of ${what} at byte ${position}, found only ${done} (file truncated while reading?)`);
    }
    done += bytesRead;
  }
  return buf;
}

async function openForRead(path: string): Promise<FileHandle> {
  try {
    return await open(path, 'r');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'ENOENT' ? 'no such file' : err.code === 'EISDIR' ? 'it is a directory' : err.message;
    throw new SafetensorsError(path, `expected a readable safetensors file, found ${why}`);
  }
}

async function readHeaderFrom(fh: FileHandle, path: string): Promise<SafetensorsHeader> {
  const stat = await fh.stat();
  if (!stat.isFile()) throw new SafetensorsError(path, 'expected a regular file, found something else');
  const fileSize = stat.size;
  if (fileSize < 8) {
    throw new SafetensorsError(path, `expected at least 8 bytes (the header length), found a ${fileSize}-byte file`);
  }
  const lenBytes = await readExactly(fh, path, 0, 8, 'header length');
  const headerLen = new DataView(lenBytes.buffer).getBigUint64(0, true);
  if (headerLen > BigInt(MAX_HEADER_BYTES)) {
    throw new SafetensorsError(path, `expected a header of at most ${MAX_HEADER_BYTES} bytes, found a header length of ${headerLen}`);
  }
  const headerSize = Number(headerLen);
  if (8 + headerSize > fileSize) {
    throw new SafetensorsError(
      path,
      `expected the ${headerSize}-byte header to fit in the file (8 + ${headerSize} <= ${fileSize} bytes), found a ${fileSize}-byte file`,
    );
  }
  const headerBytes = await readExactly(fh, path, 8, headerSize, 'header');
  return parseHeader(path, fileSize, headerSize, headerBytes);
}

/**
 * Reads and validates the header of a safetensors file. Only the first 8 bytes and the header are read, never the
 * tensor data.
 *
 * @throws SafetensorsError (code `CXF_SAFETENSORS`) naming the file, the tensor key where relevant, what was
 *   expected and what was found.
 */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  const fh = await openForRead(path);
  try {
    return await readHeaderFrom(fh, path);
  } finally {
    await fh.close();
  }
}

/**
 * Reads a safetensors file: the validated header plus one typed array per tensor (see {@link LoadedTensor} for the
 * array type of each dtype). Each tensor is read into its own freshly allocated, aligned buffer, so unaligned
 * offsets in the file are fine and the arrays share no memory.
 *
 * `opts.select` reads only the tensors whose names it accepts (the whole header is still validated), e.g. the heads
 * of a multi-GB training checkpoint.
 *
 * @throws SafetensorsError for any malformed header or data (e.g. a BOOL byte other than 0 or 1).
 */
export async function readSafetensors(path: string, opts: { select?: (name: string) => boolean } = {}): Promise<SafetensorsContents> {
  assertLittleEndianHost(path);
  const fh = await openForRead(path);
  try {
    const header = await readHeaderFrom(fh, path);
    const tensors = new Map<string, LoadedTensor>();
    for (const [key, info] of header.tensors) {
      if (opts.select && !opts.select(key)) continue;
      const [begin, end] = info.dataOffsets;
      const bytes = await readExactly(fh, path, header.dataStart + begin, end - begin, `tensor ${JSON.stringify(key)}`);
      tensors.set(key, { dtype: info.dtype, shape: [...info.shape], data: decodeTensorBytes(path, key, info.dtype, bytes) });
    }
    return { header, tensors, metadata: header.metadata };
  } finally {
    await fh.close();
  }
}

/** Interprets the little-endian bytes of one tensor. `bytes` starts at offset 0 of its own ArrayBuffer. */
function decodeTensorBytes(path: string, key: string, dtype: DType, bytes: Uint8Array): LoadedTensor['data'] {
  const buf = bytes.buffer as ArrayBuffer;
  const n = bytes.byteLength / DTYPE_SIZE[dtype];
  switch (dtype) {
    case 'F32':
      return new Float32Array(buf, 0, n);
    case 'F64':
      return new Float64Array(buf, 0, n);
    case 'I64':
      return new BigInt64Array(buf, 0, n);
    case 'I32':
      return new Int32Array(buf, 0, n);
    case 'I16':
      return new Int16Array(buf, 0, n);
    case 'I8':
      return new Int8Array(buf, 0, n);
    case 'U8':
      return bytes;
    case 'BOOL': {
      const bad = bytes.findIndex((b) => b > 1);
      if (bad >= 0) {
        throw new SafetensorsError(path, `expected BOOL bytes to be 0 or 1, found ${bytes[bad]} at element ${bad}`, key);
      }
      return bytes;
    }
    case 'F16':
      return f16ArrayToF32(new Uint16Array(buf, 0, n));
    case 'BF16':
      return bf16ArrayToF32(new Uint16Array(buf, 0, n));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------------------------

/** The array class each dtype must be written from (F16/BF16 also accept float arrays, converted on write). */
const WRITE_TYPES: Readonly<Record<DType, readonly string[]>> = {
  F32: ['Float32Array'],
  F64: ['Float64Array'],
  I64: ['BigInt64Array'],
  I32: ['Int32Array'],
  I16: ['Int16Array'],
  I8: ['Int8Array'],
  U8: ['Uint8Array'],
  BOOL: ['Uint8Array'],
  F16: ['Uint16Array', 'Float32Array', 'Float64Array'],
  BF16: ['Uint16Array', 'Float32Array', 'Float64Array'],
};

function typeName(data: unknown): string {
  if (data === null || data === undefined) return String(data);
  if (typeof data !== 'object') return typeof data;
  return (data as object).constructor?.name ?? 'object';
}

/** Byte-wise UTF-8 order, the order the reference Rust implementation sorts names in. */
function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Validates one tensor to write and returns its little-endian bytes. */
function tensorBytes(path: string, key: string, t: TensorToWrite): Uint8Array {
  if (t === null || typeof t !== 'object') {
    throw new SafetensorsError(path, `expected {dtype, shape, data}, found ${describe(t)}`, key);
  }
  if (!isDType(t.dtype)) {
    throw new SafetensorsError(path, `expected dtype to be one of ${DTYPES.join(', ')}, found ${describe(t.dtype)}`, key);
  }
  const shapeProblem = validShapeMessage(t.shape);
  if (shapeProblem !== null) throw new SafetensorsError(path, shapeProblem, key);
  const allowed = WRITE_TYPES[t.dtype];
  const found = typeName(t.data);
  if (!ArrayBuffer.isView(t.data) || !allowed.includes(found)) {
    throw new SafetensorsError(path, `expected data of type ${allowed.join(' or ')} for dtype ${t.dtype}, found ${found}`, key);
  }
  const count = numel(t.shape);
  if (count !== t.data.length) {
    throw new SafetensorsError(
      path,
      `expected ${count < 0 ? 'a representable number of' : count} elements for shape [${t.shape.join(', ')}], found ${t.data.length}`,
      key,
    );
  }
  let data: TypedArray = t.data;
  if (t.dtype === 'BOOL') {
    const bad = (data as Uint8Array).findIndex((b) => b > 1);
    if (bad >= 0) throw new SafetensorsError(path, `expected BOOL values 0 or 1, found ${data[bad]} at element ${bad}`, key);
  }
  if ((t.dtype === 'F16' || t.dtype === 'BF16') && !(data instanceof Uint16Array)) {
    const values = data as Float32Array | Float64Array;
    data = t.dtype === 'F16' ? f32ArrayToF16(values) : f32ArrayToBf16(values);
  }
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * Writes tensors (and optional string metadata) to a safetensors file, atomically: the bytes go to
 * `${path}.tmp-<pid>-<random>` in the same folder, which is fsynced and then renamed over `path`; on any failure
 * the temporary file is removed and `path` is untouched.
 *
 * Tensors are laid out in byte-wise name order; the JSON header is padded with spaces to a multiple of 8 bytes
 * (as the reference implementation does), so the data section starts 8-byte aligned.
 *
 * @throws SafetensorsError for an invalid request (unknown dtype, bad shape, data length or type mismatch, a tensor
 *   named `__metadata__`, non-string metadata); I/O errors propagate after cleanup.
 */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
): Promise<void> {
  assertLittleEndianHost(path);
  if (tensors === null || typeof tensors !== 'object') {
    throw new SafetensorsError(path, `expected an object mapping names to tensors, found ${describe(tensors)}`);
  }
  const names = Object.keys(tensors).sort(compareUtf8);
  if (names.includes(METADATA_KEY)) {
    throw new SafetensorsError(path, `expected tensor names other than the reserved "${METADATA_KEY}", found it as a tensor name`);
  }

  // Validate everything and lay out the data section before touching the disk.
  const blobs: Uint8Array[] = [];
  const headerParts: string[] = [];
  if (metadata !== undefined) {
    if (metadata === null || typeof metadata !== 'object' || Array.isArray(metadata)) {
      throw new SafetensorsError(path, `expected metadata to be an object of strings, found ${describe(metadata)}`);
    }
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new SafetensorsError(path, `expected metadata "${k}" to be a string, found ${describe(v)}`);
    }
    headerParts.push(`${JSON.stringify(METADATA_KEY)}:${JSON.stringify(metadata)}`);
  }
  let offset = 0;
  for (const name of names) {
    const t = tensors[name]!;
    const bytes = tensorBytes(path, name, t);
    const entry = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.byteLength] };
    // Built by hand (not JSON.stringify of one object) so integer-like names keep the sorted order.
    headerParts.push(`${JSON.stringify(name)}:${JSON.stringify(entry)}`);
    blobs.push(bytes);
    offset += bytes.byteLength;
  }
  const json = Buffer.from(`{${headerParts.join(',')}}`, 'utf8');
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const header = Buffer.alloc(8 + padded, 0x20); // spaces
  header.writeBigUInt64LE(BigInt(padded), 0);
  json.copy(header, 8);

  const dir = nodePath.dirname(nodePath.resolve(path));
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  let fh: FileHandle | null = null;
  try {
    fh = await open(tmp, 'wx');
    await writeAll(fh, header);
    for (const blob of blobs) await writeAll(fh, blob);
    await fh.sync();
    await fh.close();
    fh = null;
    await rename(tmp, path);
  } catch (e) {
    if (fh !== null) await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  // Persist the rename itself (best effort: not every platform can fsync a directory).
  try {
    const d = await open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch {
    /* directory fsync unsupported */
  }
}

async function writeAll(fh: FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.byteLength) {
    const chunk = Math.min(bytes.byteLength - done, 0x40000000);
    const { bytesWritten } = await fh.write(bytes, done, chunk);
    done += bytesWritten;
  }
}
