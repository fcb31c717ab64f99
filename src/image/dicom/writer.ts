/**
 * A small writer of DICOM test files: 128-byte preamble, "DICM", the file meta group (always explicit VR little
 * endian, PS3.10 §7.1), then the data set in implicit VR LE, explicit VR LE, deflated explicit VR LE or explicit
 * VR big endian, with native or encapsulated pixel data (PS3.5 §A.4: Basic Offset Table item + fragments +
 * sequence delimiter), and an RLE Lossless encoder (PS3.5 Annex G). Written independently of the decoder.
 */
import { writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { deflateRawSync } from 'node:zlib';

export const TS = {
  implicitLE: '1.2.840.10008.1.2',
  explicitLE: '1.2.840.10008.1.2.1',
  deflatedLE: '1.2.840.10008.1.2.1.99',
  explicitBE: '1.2.840.10008.1.2.2',
  jpegBaseline: '1.2.840.10008.1.2.4.50',
  jpegExtended: '1.2.840.10008.1.2.4.51',
  jpegLossless: '1.2.840.10008.1.2.4.57',
  jpegLosslessSV1: '1.2.840.10008.1.2.4.70',
  jpegLs: '1.2.840.10008.1.2.4.80',
  jpegLsNear: '1.2.840.10008.1.2.4.81',
  j2kLossless: '1.2.840.10008.1.2.4.90',
  j2k: '1.2.840.10008.1.2.4.91',
  rle: '1.2.840.10008.1.2.5',
  mpeg2: '1.2.840.10008.1.2.4.100',
} as const;

export type Vr =
  | 'AE' | 'AS' | 'CS' | 'DA' | 'DS' | 'IS' | 'LO' | 'LT' | 'PN' | 'SH' | 'ST' | 'TM' | 'UI' | 'UT'
  | 'US' | 'SS' | 'UL' | 'SL' | 'FL' | 'FD' | 'OB' | 'OW' | 'SQ' | 'UN';

/** One data element. Numbers for US/SS/UL/SL/FL/FD (arrays for multiple values) and for OW (16-bit words) or
 * OB (bytes); a Uint8Array is written as is; SQ takes a list of items (each a list of elements). */
export interface El {
  tag: number;
  vr: Vr;
  value: string | number | number[] | Uint8Array | El[][];
  /** SQ only: write with undefined length and delimiters. */
  undefinedLength?: boolean;
}

const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);

interface Enc {
  explicit: boolean;
  little: boolean;
}

class Bytes {
  private parts: Buffer[] = [];
  u16(v: number, little: boolean): void {
    const b = Buffer.alloc(2);
    if (little) b.writeUInt16LE(v & 0xffff);
    else b.writeUInt16BE(v & 0xffff);
    this.parts.push(b);
  }
  u32(v: number, little: boolean): void {
    const b = Buffer.alloc(4);
    if (little) b.writeUInt32LE(v >>> 0);
    else b.writeUInt32BE(v >>> 0);
    this.parts.push(b);
  }
  raw(b: Uint8Array): void {
    this.parts.push(Buffer.from(b));
  }
  get(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function valueBytes(el: El, enc: Enc): Buffer {
  const { vr, value } = el;
  const nums = (): number[] => (typeof value === 'number' ? [value] : (value as number[]));
  if (value instanceof Uint8Array) return pad(Buffer.from(value), 0);
  if (typeof value === 'string') return pad(Buffer.from(value, 'latin1'), vr === 'UI' ? 0 : 0x20);
  const size = vr === 'US' || vr === 'SS' || vr === 'OW' ? 2 : vr === 'UL' || vr === 'SL' || vr === 'FL' ? 4 : vr === 'FD' ? 8 : 1;
  const list = nums();
  const b = Buffer.alloc(list.length * size);
  list.forEach((v, i) => {
    const o = i * size;
    const le = enc.little;
    if (vr === 'US' || vr === 'OW') le ? b.writeUInt16LE(v & 0xffff, o) : b.writeUInt16BE(v & 0xffff, o);
    else if (vr === 'SS') le ? b.writeInt16LE(v, o) : b.writeInt16BE(v, o);
    else if (vr === 'UL') le ? b.writeUInt32LE(v >>> 0, o) : b.writeUInt32BE(v >>> 0, o);
    else if (vr === 'SL') le ? b.writeInt32LE(v, o) : b.writeInt32BE(v, o);
    else if (vr === 'FL') le ? b.writeFloatLE(v, o) : b.writeFloatBE(v, o);
    else if (vr === 'FD') le ? b.writeDoubleLE(v, o) : b.writeDoubleBE(v, o);
    else b.writeUInt8(v & 0xff, o);
  });
  return pad(b, 0);
}

function pad(b: Buffer, fill: number): Buffer {
  return b.length % 2 === 0 ? b : Buffer.concat([b, Buffer.from([fill])]);
}

function header(out: Bytes, tag: number, vr: string, length: number, enc: Enc): void {
  out.u16(tag >>> 16, enc.little);
  out.u16(tag & 0xffff, enc.little);
  if (!enc.explicit) {
    out.u32(length, enc.little);
    return;
  }
  out.raw(Buffer.from(vr, 'latin1'));
  if (LONG_VRS.has(vr)) {
    out.u16(0, enc.little);
    out.u32(length, enc.little);
  } else {
    out.u16(length, enc.little);
  }
}

/** Encodes elements (sorted by tag) in the given encoding. */
export function encodeElements(elements: El[], enc: Enc): Buffer {
  const out = new Bytes();
  for (const el of [...elements].sort((a, b) => a.tag - b.tag)) {
    if (el.vr === 'SQ') {
      const items = el.value as El[][];
      const body = new Bytes();
      for (const item of items) {
        const content = encodeElements(item, enc);
        body.u16(0xfffe, enc.little);
        body.u16(0xe000, enc.little);
        body.u32(el.undefinedLength === true ? 0xffffffff : content.length, enc.little);
        body.raw(content);
        if (el.undefinedLength === true) {
          body.u16(0xfffe, enc.little);
          body.u16(0xe00d, enc.little);
          body.u32(0, enc.little);
        }
      }
      if (el.undefinedLength === true) {
        body.u16(0xfffe, enc.little);
        body.u16(0xe0dd, enc.little);
        body.u32(0, enc.little);
      }
      const bytes = body.get();
      header(out, el.tag, 'SQ', el.undefinedLength === true ? 0xffffffff : bytes.length, enc);
      out.raw(bytes);
      continue;
    }
    const v = valueBytes(el, enc);
    header(out, el.tag, el.vr, v.length, enc);
    out.raw(v);
  }
  return out.get();
}

/** Encapsulated Pixel Data: OB, undefined length, Basic Offset Table item, fragments, sequence delimiter. */
export function encapsulate(frames: Uint8Array[], options: { basicOffsetTable?: boolean; splitFirstFragmentAt?: number } = {}): Buffer {
  const le = true;
  const out = new Bytes();
  out.u16(0x7fe0, le);
  out.u16(0x0010, le);
  out.raw(Buffer.from('OB', 'latin1'));
  out.u16(0, le);
  out.u32(0xffffffff, le);
  const fragmentsOf = (f: Uint8Array, i: number): Buffer[] => {
    const b = pad(Buffer.from(f), 0);
    const at = options.splitFirstFragmentAt;
    if (i === 0 && at !== undefined) return [b.subarray(0, at), b.subarray(at)];
    return [b];
  };
  const perFrame = frames.map(fragmentsOf);
  const offsets: number[] = [];
  let pos = 0;
  for (const frags of perFrame) {
    offsets.push(pos);
    for (const f of frags) pos += 8 + f.length;
  }
  const withBot = options.basicOffsetTable ?? true;
  out.u16(0xfffe, le);
  out.u16(0xe000, le);
  out.u32(withBot ? 4 * frames.length : 0, le);
  if (withBot) for (const o of offsets) out.u32(o, le);
  for (const frags of perFrame) {
    for (const f of frags) {
      out.u16(0xfffe, le);
      out.u16(0xe000, le);
      out.u32(f.length, le);
      out.raw(f);
    }
  }
  out.u16(0xfffe, le);
  out.u16(0xe0dd, le);
  out.u32(0, le);
  return out.get();
}

export interface DicomFile {
  transferSyntax: string;
  /** Data set elements (not the file meta group); for encapsulated syntaxes leave Pixel Data out and give frames. */
  elements: El[];
  /** Encapsulated frames. */
  frames?: Uint8Array[];
  basicOffsetTable?: boolean;
  splitFirstFragmentAt?: number;
  /** 'part10' (default): preamble + DICM + meta; 'raw': the data set alone (implicit/explicit LE by syntax). */
  form?: 'part10' | 'raw';
}

const SECONDARY_CAPTURE = '1.2.840.10008.5.1.4.1.1.7';

/** Encodes a whole file. */
export function encodeDicom(file: DicomFile): Buffer {
  const ts = file.transferSyntax;
  const enc: Enc = { explicit: ts !== TS.implicitLE, little: ts !== TS.explicitBE };
  let dataSet = encodeElements(file.elements, enc);
  if (file.frames !== undefined) {
    const opts: { basicOffsetTable?: boolean; splitFirstFragmentAt?: number } = {};
    if (file.basicOffsetTable !== undefined) opts.basicOffsetTable = file.basicOffsetTable;
    if (file.splitFirstFragmentAt !== undefined) opts.splitFirstFragmentAt = file.splitFirstFragmentAt;
    dataSet = Buffer.concat([dataSet, encapsulate(file.frames, opts)]);
  }
  if (ts === TS.deflatedLE) dataSet = deflateRawSync(dataSet);
  if (file.form === 'raw') return dataSet;

  const sop = file.elements.find((e) => e.tag === 0x00080018)?.value;
  const metaEnc: Enc = { explicit: true, little: true };
  const meta = encodeElements(
    [
      { tag: 0x00020001, vr: 'OB', value: new Uint8Array([0, 1]) },
      { tag: 0x00020002, vr: 'UI', value: SECONDARY_CAPTURE },
      { tag: 0x00020003, vr: 'UI', value: typeof sop === 'string' ? sop : '1.2.3.4.5' },
      { tag: 0x00020010, vr: 'UI', value: ts },
      { tag: 0x00020012, vr: 'UI', value: '1.2.826.0.1.3680043.9.9999' },
    ],
    metaEnc,
  );
  const groupLength = encodeElements([{ tag: 0x00020000, vr: 'UL', value: meta.length }], metaEnc);
  return Buffer.concat([Buffer.alloc(128), Buffer.from('DICM', 'latin1'), groupLength, meta, dataSet]);
}

export async function writeDicom(path: string, file: DicomFile): Promise<void> {
  await writeFile(path, encodeDicom(file));
}

/** The Image Pixel module elements for a simple image. */
export function imagePixel(p: {
  rows: number;
  columns: number;
  bitsAllocated: number;
  bitsStored?: number;
  highBit?: number;
  pixelRepresentation?: 0 | 1;
  photometric?: string;
  samplesPerPixel?: number;
  planarConfiguration?: number;
  frames?: number;
}): El[] {
  const spp = p.samplesPerPixel ?? 1;
  const bs = p.bitsStored ?? p.bitsAllocated;
  const els: El[] = [
    { tag: 0x00080016, vr: 'UI', value: SECONDARY_CAPTURE },
    { tag: 0x00080018, vr: 'UI', value: '1.2.826.0.1.3680043.9.9999.1' },
    { tag: 0x00080060, vr: 'CS', value: 'DX' },
    { tag: 0x00100020, vr: 'LO', value: 'PAT-001' },
    { tag: 0x0020000d, vr: 'UI', value: '1.2.826.0.1.3680043.9.9999.2' },
    { tag: 0x00185101, vr: 'CS', value: 'PA' },
    { tag: 0x00280002, vr: 'US', value: spp },
    { tag: 0x00280004, vr: 'CS', value: p.photometric ?? (spp === 3 ? 'RGB' : 'MONOCHROME2') },
    { tag: 0x00280010, vr: 'US', value: p.rows },
    { tag: 0x00280011, vr: 'US', value: p.columns },
    { tag: 0x00280100, vr: 'US', value: p.bitsAllocated },
    { tag: 0x00280101, vr: 'US', value: bs },
    { tag: 0x00280102, vr: 'US', value: p.highBit ?? bs - 1 },
    { tag: 0x00280103, vr: 'US', value: p.pixelRepresentation ?? 0 },
  ];
  if (spp === 3) els.push({ tag: 0x00280006, vr: 'US', value: p.planarConfiguration ?? 0 });
  if (p.frames !== undefined) els.push({ tag: 0x00280008, vr: 'IS', value: String(p.frames) });
  return els;
}

/** Native Pixel Data from sample words (OW, 16-bit) or bytes (OB, 8-bit). */
export function pixelData(values: number[], bitsAllocated: 8 | 16): El {
  return bitsAllocated === 8 ? { tag: 0x7fe00010, vr: 'OB', value: values.map((v) => v & 0xff) } : { tag: 0x7fe00010, vr: 'OW', value: values };
}

/** PackBits (DICOM RLE) encoding of one row: replicate runs of 2..128 equal bytes, literal runs of up to 128. */
export function packBits(row: Uint8Array): Buffer {
  const out: number[] = [];
  let i = 0;
  while (i < row.length) {
    let run = 1;
    while (i + run < row.length && run < 128 && row[i + run] === row[i]) run += 1;
    if (run >= 2) {
      out.push(257 - run, row[i]!); // header byte −(run − 1)
      i += run;
      continue;
    }
    const start = i;
    while (i < row.length && i - start < 128 && !(i + 1 < row.length && row[i + 1] === row[i])) i += 1;
    if (i === start) i += 1; // a single byte before a run
    out.push(i - start - 1, ...row.subarray(start, i));
  }
  return Buffer.from(out);
}

/**
 * An RLE Lossless frame from interleaved samples (HWC): one segment per sample and byte (most significant byte
 * first), each row encoded separately, segments padded to an even length, 64-byte header of offsets.
 */
export function encodeRleFrame(values: number[], rows: number, columns: number, samples: number, bitsAllocated: 8 | 16): Buffer {
  const bytes = bitsAllocated / 8;
  const segments: Buffer[] = [];
  for (let s = 0; s < samples; s++) {
    for (let k = 0; k < bytes; k++) {
      const shift = 8 * (bytes - 1 - k);
      const rowsOut: Buffer[] = [];
      for (let r = 0; r < rows; r++) {
        const row = new Uint8Array(columns);
        for (let c = 0; c < columns; c++) row[c] = (values[(r * columns + c) * samples + s]! >>> shift) & 0xff;
        rowsOut.push(packBits(row));
      }
      segments.push(pad(Buffer.concat(rowsOut), 0x80)); // 0x80 = −128, a no-op byte
    }
  }
  const head = Buffer.alloc(64);
  head.writeUInt32LE(segments.length, 0);
  let offset = 64;
  segments.forEach((seg, i) => {
    head.writeUInt32LE(offset, 4 + 4 * i);
    offset += seg.length;
  });
  return Buffer.concat([head, ...segments]);
}

// ---- Compressed frames made with the codec packages' own encoders (WASM) ----

const require = createRequire(import.meta.url);

interface WasmEncoder {
  getDecodedBuffer(info: object): Uint8Array;
  getEncodedBuffer(): Uint8Array;
  encode(): void;
  delete(): void;
  setInterleaveMode?(mode: number): void;
  setNearLossless?(near: number): void;
  setDecompositions?(n: number): void;
  setQuality?(lossless: boolean, q: number): void;
}
type Factory = (opts?: object) => Promise<Record<string, unknown>>;
const modules = new Map<string, Promise<Record<string, unknown>>>();
function wasm(spec: string): Promise<Record<string, unknown>> {
  let m = modules.get(spec);
  if (m === undefined) {
    m = (require(spec) as Factory)({ print: () => {}, printErr: () => {} });
    modules.set(spec, m);
  }
  return m;
}

/** Sample words (HWC) as little-endian bytes of 1 or 2 bytes per sample. */
function sampleBytes(values: number[], bits: number): Uint8Array {
  if (bits <= 8) return Uint8Array.from(values, (v) => v & 0xff);
  const out = new Uint8Array(values.length * 2);
  values.forEach((v, i) => {
    out[2 * i] = v & 0xff;
    out[2 * i + 1] = (v >>> 8) & 0xff;
  });
  return out;
}

/** A JPEG-LS stream (CharLS). `interleave` 0 = none (planar input), 1 = line, 2 = sample (interleaved input). */
export async function encodeJpegLs(
  values: number[],
  width: number,
  height: number,
  components: number,
  bitsPerSample: number,
  options: { interleave?: 0 | 1 | 2; near?: number } = {},
): Promise<Uint8Array> {
  const m = await wasm('@cornerstonejs/codec-charls/wasmjs');
  const enc = new (m.JpegLSEncoder as new () => WasmEncoder)();
  try {
    const buf = enc.getDecodedBuffer({ width, height, bitsPerSample, componentCount: components, isSigned: false });
    buf.set(sampleBytes(values, bitsPerSample));
    if (components > 1) enc.setInterleaveMode!(options.interleave ?? 2);
    enc.setNearLossless!(options.near ?? 0);
    enc.encode();
    return Uint8Array.from(enc.getEncodedBuffer());
  } finally {
    enc.delete();
  }
}

/** A lossless (reversible 5/3) JPEG 2000 codestream (OpenJPEG). */
export async function encodeJ2k(
  values: number[],
  width: number,
  height: number,
  components: number,
  bitsPerSample: number,
  options: { signed?: boolean; colorTransform?: boolean } = {},
): Promise<Uint8Array> {
  const m = await wasm('@cornerstonejs/codec-openjpeg/wasmjs');
  const enc = new (m.J2KEncoder as new () => WasmEncoder)();
  try {
    const buf = enc.getDecodedBuffer({
      width,
      height,
      bitsPerSample,
      componentCount: components,
      isSigned: options.signed ?? false,
      isUsingColorTransform: options.colorTransform ?? false,
    });
    buf.set(sampleBytes(values, bitsPerSample));
    enc.setDecompositions!(1);
    enc.encode();
    return Uint8Array.from(enc.getEncodedBuffer());
  } finally {
    enc.delete();
  }
}
