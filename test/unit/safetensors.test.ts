import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  readSafetensors,
  readSafetensorsHeader,
  SafetensorsError,
  writeSafetensors,
  type TensorToWrite,
} from '../../src/io/safetensors.js';
import { goldenFile } from './golden.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cxf-st-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Hand-builds a safetensors file: u64 LE header length, header text, data bytes. */
function stBytes(header: string | object | Buffer, data: Uint8Array | number = 0, lenOverride?: bigint): Buffer {
  const h = Buffer.isBuffer(header) ? header : Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lenOverride ?? BigInt(h.length));
  const d = typeof data === 'number' ? Buffer.alloc(data) : Buffer.from(data);
  return Buffer.concat([len, h, d]);
}

let counter = 0;
async function put(bytes: Uint8Array, name = `f${counter++}.safetensors`): Promise<string> {
  const p = path.join(dir, name);
  await writeFile(p, bytes);
  return p;
}

/** Raw bytes of a typed array, for bit-exact comparisons (NaN, -0). */
const rawBytes = (a: ArrayBufferView): number[] => Array.from(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));

describe('golden vit_tiny_inputs.safetensors', () => {
  it('has the tensors the golden README documents', async () => {
    const file = goldenFile('vit_tiny_inputs.safetensors');
    const h = await readSafetensorsHeader(file);
    expect(h.headerSize % 8).toBe(0);
    expect(h.metadata).toBeNull();
    const summary = Object.fromEntries([...h.tensors].map(([k, t]) => [k, { dtype: t.dtype, shape: t.shape }]));
    expect(summary).toEqual({
      pixel_values_56: { dtype: 'F32', shape: [2, 3, 56, 56] },
      gray_56: { dtype: 'F32', shape: [2, 1, 56, 56] },
      masks_56: { dtype: 'BOOL', shape: [2, 16] },
    });
  });

  it('pixel_values_56 is gray_56 replicated and normalised with ImageNet mean/std', async () => {
    const { tensors } = await readSafetensors(goldenFile('vit_tiny_inputs.safetensors'));
    const px = tensors.get('pixel_values_56')!;
    const gray = tensors.get('gray_56')!;
    const masks = tensors.get('masks_56')!;
    expect(px.data).toBeInstanceOf(Float32Array);
    expect(masks.data).toBeInstanceOf(Uint8Array);
    expect([...masks.data].every((b) => b === 0 || b === 1)).toBe(true);
    expect(masks.data.length).toBe(32);

    const mean = [0.485, 0.456, 0.406];
    const std = [0.229, 0.224, 0.225];
    const hw = 56 * 56;
    let maxErr = 0;
    for (let n = 0; n < 2; n++) {
      for (let c = 0; c < 3; c++) {
        for (let i = 0; i < hw; i++) {
          const g = gray.data[n * hw + i] as number;
          const expected = (g - mean[c]!) / std[c]!;
          maxErr = Math.max(maxErr, Math.abs((px.data[(n * 3 + c) * hw + i] as number) - expected));
        }
      }
    }
    expect(maxErr).toBeLessThan(1e-5);
  });
});

describe('other golden files written by the reference implementation', () => {
  it('validate, and the tiny HF model has 62 tensors and format metadata', async () => {
    const model = await readSafetensorsHeader(goldenFile('vit_tiny_hf/model.safetensors'));
    expect(model.tensors.size).toBe(62);
    expect(model.metadata).toEqual({ format: 'pt' });
    expect(model.tensors.get('embeddings.position_embeddings')?.shape).toEqual([1, 17, 96]);
    for (const name of ['vit_tiny_outputs.safetensors', 'losses.safetensors']) {
      const got = await readSafetensors(goldenFile(name));
      expect(got.tensors.size).toBeGreaterThan(0);
    }
  });
});

describe('writeSafetensors -> readSafetensors round trip', () => {
  const tensors: Record<string, TensorToWrite> = {
    b_f32: { dtype: 'F32', shape: [2, 3], data: Float32Array.from([0, -0, 1.5, -2.25, 3.4028234663852886e38, NaN]) },
    a_f64: { dtype: 'F64', shape: [3], data: Float64Array.from([Math.PI, -1e-300, Infinity]) },
    '10': { dtype: 'I64', shape: [2], data: BigInt64Array.from([-(2n ** 63n), 2n ** 63n - 1n]) },
    '2': { dtype: 'I32', shape: [1, 2], data: Int32Array.from([-2147483648, 2147483647]) },
    Z_i16: { dtype: 'I16', shape: [3], data: Int16Array.from([-32768, 0, 32767]) },
    i8: { dtype: 'I8', shape: [2], data: Int8Array.from([-128, 127]) },
    u8: { dtype: 'U8', shape: [3], data: Uint8Array.from([0, 128, 255]) },
    mask: { dtype: 'BOOL', shape: [2, 2], data: Uint8Array.from([1, 0, 0, 1]) },
    half_bits: { dtype: 'F16', shape: [3], data: Uint16Array.from([0x3c00, 0x0001, 0xfc00]) },
    half_vals: { dtype: 'F16', shape: [4], data: Float32Array.from([1, 0.1, 65520, -1.5 * 2 ** -25]) },
    bhalf: { dtype: 'BF16', shape: [4], data: Float32Array.from([1, 3.140625, 1 + 2 ** -8, 1 + 3 * 2 ** -8]) },
    scalar: { dtype: 'F32', shape: [], data: Float32Array.from([42]) },
    empty: { dtype: 'I32', shape: [0, 4], data: new Int32Array(0) },
  };
  const metadata = { format: 'pt', 'ünïcode': 'välue ✓', config: '{"a":1}' };
  let file: string;

  beforeAll(async () => {
    file = path.join(dir, 'roundtrip.safetensors');
    await writeSafetensors(file, tensors, metadata);
  });

  it('reads back the same dtypes, shapes, values and metadata', async () => {
    const got = await readSafetensors(file);
    expect(got.metadata).toEqual(metadata);
    expect(new Set(got.tensors.keys())).toEqual(new Set(Object.keys(tensors)));
    for (const key of ['b_f32', 'a_f64', '10', '2', 'Z_i16', 'i8', 'u8', 'mask', 'scalar', 'empty']) {
      const t = got.tensors.get(key)!;
      const want = tensors[key]!;
      expect(t.dtype).toBe(want.dtype);
      expect(t.shape).toEqual(want.shape);
      expect(t.data.constructor).toBe(want.data.constructor);
      expect(rawBytes(t.data)).toEqual(rawBytes(want.data));
    }
    // Half types come back as float32 values (bits -> values derived by hand, see half.test.ts).
    expect([...got.tensors.get('half_bits')!.data]).toEqual([1, 2 ** -24, -Infinity]);
    expect([...got.tensors.get('half_vals')!.data]).toEqual([1, 0.0999755859375, Infinity, -(2 ** -24)]);
    expect([...got.tensors.get('bhalf')!.data]).toEqual([1, 3.140625, 1, 1.015625]);
    expect(got.tensors.get('half_vals')!.data).toBeInstanceOf(Float32Array);
  });

  it('pads the header with spaces to a multiple of 8 and lays tensors out in byte-wise name order', async () => {
    const bytes = await readFile(file);
    const n = Number(bytes.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const text = bytes.subarray(8, 8 + n).toString('utf8');
    expect(text).toMatch(/^\{.*\} *$/s);
    expect(text.trimEnd().length).toBeGreaterThan(n - 8);
    const json = JSON.parse(text) as Record<string, { data_offsets: [number, number] }>;
    expect(text.startsWith('{"__metadata__":{')).toBe(true);
    const order = Object.entries(json)
      .filter(([k]) => k !== '__metadata__')
      .sort(([, a], [, b]) => a.data_offsets[0] - b.data_offsets[0] || a.data_offsets[1] - b.data_offsets[1])
      .map(([k]) => k);
    // UTF-8 byte order: digits < uppercase < underscore < lowercase; "10" < "2".
    expect(order.filter((k) => k !== 'empty')).toEqual(
      ['10', '2', 'Z_i16', 'a_f64', 'b_f32', 'bhalf', 'half_bits', 'half_vals', 'i8', 'mask', 'scalar', 'u8'],
    );
    const last = Math.max(...Object.values(json).flatMap((v) => (v.data_offsets ? [v.data_offsets[1]] : [])));
    expect(bytes.length).toBe(8 + n + last);
  });

  it('leaves no temporary file behind', async () => {
    expect((await readdir(dir)).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('writes an empty file with no tensors and no metadata', async () => {
    const p = path.join(dir, 'empty.safetensors');
    await writeSafetensors(p, {});
    const bytes = await readFile(p);
    expect(bytes.length).toBe(16);
    expect(bytes.subarray(8).toString()).toBe('{}      ');
    const got = await readSafetensors(p);
    expect(got.tensors.size).toBe(0);
    expect(got.metadata).toBeNull();
  });
});

describe('writeSafetensors validation and atomicity', () => {
  it.each<[string, Record<string, TensorToWrite>, RegExp]>([
    ['unknown dtype', { x: { dtype: 'F8' as never, shape: [1], data: new Uint8Array(1) } }, /tensor "x": expected dtype to be one of .* found string "F8"/],
    ['length mismatch', { x: { dtype: 'F32', shape: [2, 2], data: new Float32Array(3) } }, /tensor "x": expected 4 elements for shape \[2, 2\], found 3/],
    ['wrong array type', { x: { dtype: 'F32', shape: [2], data: new Float64Array(2) } }, /expected data of type Float32Array for dtype F32, found Float64Array/],
    ['bool value', { m: { dtype: 'BOOL', shape: [2], data: Uint8Array.from([0, 2]) } }, /tensor "m": expected BOOL values 0 or 1, found 2 at element 1/],
    ['negative dim', { x: { dtype: 'U8', shape: [-1], data: new Uint8Array(0) } }, /expected shape\[0\] to be a non-negative integer, found number -1/],
    ['reserved name', { __metadata__: { dtype: 'U8', shape: [1], data: new Uint8Array(1) } }, /reserved "__metadata__"/],
  ])('rejects %s and leaves nothing on disk', async (_name, tensors, message) => {
    const p = path.join(dir, `bad-${counter++}.safetensors`);
    const err = await writeSafetensors(p, tensors).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SafetensorsError);
    expect((err as SafetensorsError).code).toBe('CXF_SAFETENSORS');
    expect((err as Error).message).toContain(p);
    expect((err as Error).message).toMatch(message);
    expect((await readdir(dir)).filter((f) => f.startsWith(path.basename(p)))).toEqual([]);
  });

  it('rejects non-string metadata', async () => {
    const p = path.join(dir, 'meta.safetensors');
    await expect(writeSafetensors(p, {}, { step: 3 as unknown as string })).rejects.toThrow(/metadata "step" to be a string, found number 3/);
  });

  it('keeps the old file when a write fails, and removes the temp file on an I/O failure', async () => {
    const p = path.join(dir, 'keep.safetensors');
    await writeSafetensors(p, { a: { dtype: 'U8', shape: [2], data: Uint8Array.from([1, 2]) } });
    const before = await readFile(p);
    await expect(writeSafetensors(p, { a: { dtype: 'U8', shape: [3], data: Uint8Array.from([1, 2]) } })).rejects.toThrow(SafetensorsError);
    expect(await readFile(p)).toEqual(before);

    // rename() onto a non-empty directory fails after the temp file was written: it must be cleaned up.
    const sub = path.join(dir, 'occupied');
    await mkdir(path.join(sub, 'child'), { recursive: true });
    await expect(writeSafetensors(sub, { a: { dtype: 'U8', shape: [1], data: Uint8Array.from([1]) } })).rejects.toThrow();
    expect((await readdir(dir)).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });
});

describe('readSafetensors rejects malformed files', () => {
  const f32 = (n: number, offsets: [number, number]) => ({ dtype: 'F32', shape: [n], data_offsets: offsets });

  it.each<[string, () => Buffer, RegExp]>([
    ['a file shorter than 8 bytes', () => Buffer.from([1, 2, 3, 4, 5]), /expected at least 8 bytes \(the header length\), found a 5-byte file/],
    ['a header length beyond the file', () => stBytes('{}', 0, 1000n), /expected the 1000-byte header to fit in the file \(8 \+ 1000 <= 10 bytes\), found a 10-byte file/],
    ['an oversized header', () => stBytes('{}', 0, 200n * 1024n * 1024n), /expected a header of at most 104857600 bytes, found a header length of 209715200/],
    ['invalid JSON', () => stBytes('{"a": [1, 2'), /expected the header to be a JSON object, found invalid JSON/],
    ['a JSON array header', () => stBytes('[1, 2]'), /expected the header to be a JSON object, found array \[1,2\]/],
    ['invalid UTF-8', () => stBytes(Buffer.from([0x7b, 0xff, 0xfe, 0x7d])), /expected the 4-byte header to be UTF-8 text, found invalid UTF-8/],
    ['an unknown dtype', () => stBytes({ w: { dtype: 'F8_E4M3', shape: [4], data_offsets: [0, 4] } }, 4), /tensor "w": expected dtype to be one of F64, I64, F32, I32, F16, BF16, I16, I8, U8, BOOL, found string "F8_E4M3"/],
    ['offsets out of range', () => stBytes({ w: f32(4, [0, 16]) }, 8), /tensor "w": expected data_offsets within the 8-byte data section, found \[0, 16\] \(8 bytes past the end of the file\)/],
    ['overlapping tensors', () => stBytes({ a: f32(2, [0, 8]), b: f32(2, [4, 12]) }, 12), /tensor "b": expected data to start at byte 8 of the data section \(after tensor "a"\), found data_offsets \[4, 12\] overlapping it/],
    ['a gap between tensors', () => stBytes({ a: f32(2, [0, 8]), b: f32(2, [12, 20]) }, 20), /tensor "b": expected data to start at byte 8 of the data section \(right after tensor "a"\), found data_offsets \[12, 20\], leaving a gap of 4 bytes/],
    ['a size that does not match the shape', () => stBytes({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8), /tensor "w": expected 12 bytes \(shape \[3\] × 4-byte F32\), found data_offsets \[0, 8\] spanning 8 bytes/],
    ['trailing bytes', () => stBytes({ w: f32(2, [0, 8]) }, 12), /expected the data section \(12 bytes after the \d+-byte header\) to end where the last tensor ends \(byte 8\), found 4 trailing bytes/],
    ['begin > end', () => stBytes({ w: f32(0, [8, 0]) }, 8), /tensor "w": expected data_offsets \[begin, end\] with begin <= end, found \[8, 0\]/],
    ['a fractional dimension', () => stBytes({ w: { dtype: 'U8', shape: [1.5], data_offsets: [0, 1] } }, 1), /tensor "w": expected shape\[0\] to be a non-negative integer, found number 1.5/],
    ['non-string metadata', () => stBytes({ __metadata__: { step: 3 } }), /expected "__metadata__"."step" to be a string, found number 3/],
    ['an unknown tensor field', () => stBytes({ w: { ...f32(1, [0, 4]), extra: 1 } }, 4), /tensor "w": expected only the fields dtype, shape, data_offsets, found "extra"/],
    ['malformed data_offsets', () => stBytes({ w: { dtype: 'U8', shape: [1], data_offsets: [0] } }, 1), /tensor "w": expected data_offsets to be \[begin, end\] with non-negative integers, found array \[0\]/],
  ])('rejects %s', async (_name, build, message) => {
    const p = await put(build());
    const err = await readSafetensors(p).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SafetensorsError);
    expect((err as SafetensorsError).code).toBe('CXF_SAFETENSORS');
    expect((err as Error).message.startsWith(`${p}: `)).toBe(true);
    expect((err as Error).message).toMatch(message);
    // The header-only reader applies the same checks.
    await expect(readSafetensorsHeader(p)).rejects.toThrow(message);
  });

  it('names a missing file', async () => {
    const p = path.join(dir, 'nope.safetensors');
    await expect(readSafetensors(p)).rejects.toThrow(`${p}: expected a readable safetensors file, found no such file`);
  });

  it('checks BOOL bytes only when reading data (the header reader never touches tensor bytes)', async () => {
    const p = await put(stBytes({ m: { dtype: 'BOOL', shape: [3], data_offsets: [0, 3] } }, Uint8Array.from([1, 7, 0])));
    const h = await readSafetensorsHeader(p);
    expect(h.tensors.get('m')).toEqual({ dtype: 'BOOL', shape: [3], dataOffsets: [0, 3] });
    await expect(readSafetensors(p)).rejects.toThrow(/tensor "m": expected BOOL bytes to be 0 or 1, found 7 at element 1/);
  });

  it('select reads only the chosen tensors, after validating the whole header', async () => {
    const data = Buffer.alloc(12);
    data.writeFloatLE(2.5, 0);
    data.set([1, 9, 0, 0], 4); // a bad BOOL tensor that a selective read never decodes
    data.writeFloatLE(-1, 8);
    const p = await put(stBytes({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, m: { dtype: 'BOOL', shape: [4], data_offsets: [4, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }, data));
    const got = await readSafetensors(p, { select: (k) => k !== 'm' });
    expect([...got.tensors.keys()].sort()).toEqual(['a', 'b']);
    expect([...(got.tensors.get('b')?.data as Float32Array)]).toEqual([-1]);
    await expect(readSafetensors(p)).rejects.toThrow(/tensor "m": expected BOOL bytes/);
    // the header is still checked in full
    const bad = await put(stBytes({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, c: { dtype: 'F32', shape: [2], data_offsets: [4, 99] } }, 12));
    await expect(readSafetensors(bad, { select: (k) => k === 'a' })).rejects.toThrow(/c/);
  });
});

describe('readSafetensors layout handling', () => {
  it('reads tensors at unaligned offsets and zero-size tensors', async () => {
    // u8 [3] at [0, 3) puts the F32 tensor at byte 3 of the data section: not 4-byte aligned.
    let header = JSON.stringify({
      z: { dtype: 'F32', shape: [0], data_offsets: [3, 3] },
      v: { dtype: 'F32', shape: [2], data_offsets: [3, 11] },
      u: { dtype: 'U8', shape: [3], data_offsets: [0, 3] },
      i: { dtype: 'I64', shape: [1], data_offsets: [11, 19] },
    });
    header += ' '.repeat((8 - (header.length % 8)) % 8); // data section starts 8-byte aligned
    const data = Buffer.alloc(19);
    data.set([9, 8, 7], 0);
    data.writeFloatLE(1.25, 3);
    data.writeFloatLE(-3.5, 7);
    data.writeBigInt64LE(-5n, 11);
    const p = await put(stBytes(header, data));
    const got = await readSafetensors(p);
    expect([...got.tensors.get('u')!.data]).toEqual([9, 8, 7]);
    expect([...got.tensors.get('v')!.data]).toEqual([1.25, -3.5]);
    expect([...got.tensors.get('i')!.data]).toEqual([-5n]);
    expect(got.tensors.get('z')!.data.length).toBe(0);
    // Tensors are listed in file order (by data offset, then end offset).
    expect([...got.header.tensors.keys()]).toEqual(['u', 'z', 'v', 'i']);
    expect(got.header.dataStart).toBe(8 + got.header.headerSize);
    expect(got.header.fileSize).toBe(8 + got.header.headerSize + 19);
  });
});
