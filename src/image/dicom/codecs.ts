/**
 * Decoders for encapsulated DICOM frames (PS3.5 Annex A.4): JPEG baseline/extended 8-bit (sharp/libjpeg),
 * JPEG lossless process 14 (jpeg-lossless-decoder-js), JPEG-LS (CharLS, WASM), JPEG 2000 (OpenJPEG, WASM) and
 * RLE lossless (ours, see rle.ts). The codec is chosen from the frame's own markers, so a frame whose transfer
 * syntax label is slightly off (e.g. a lossless JPEG under .4.51) still decodes.
 *
 * Every decoder returns the samples as unsigned bit patterns of `precision` bits (signed codecs are
 * reinterpreted as unsigned words); sign extension and masking happen in pixels.ts.
 */
import { createRequire } from 'node:module';

import sharp, { type OutputInfo } from 'sharp';

const require = createRequire(import.meta.url);

/** A decoded frame. */
export interface CodecFrame {
  width: number;
  height: number;
  /** Components (samples per pixel). */
  components: number;
  /** Sample precision in bits, as coded in the stream. */
  precision: number;
  /** Unsigned sample words. */
  words: Uint8Array | Uint16Array;
  /** true: component planes one after the other; false: components interleaved per pixel. */
  planar: boolean;
  /** Name of the codec, for messages. */
  codec: string;
}

/** A codec failure: what was expected and what was found, without the file name (the caller adds it). */
export class CodecError extends Error {}

/** What a JPEG-family stream (ITU T.81 / T.87) declares in its start-of-frame marker. */
export interface JpegFrameInfo {
  /** SOFn marker (0xc0..0xcf) or 0xf7 (JPEG-LS SOF55). */
  marker: number;
  precision: number;
  height: number;
  width: number;
  components: number;
}

/** Finds the start-of-frame segment of a JPEG or JPEG-LS stream. */
export function readJpegFrameInfo(bytes: Uint8Array): JpegFrameInfo | undefined {
  if (bytes[0] !== 0xff || bytes[1] !== 0xd8) return undefined;
  let i = 2;
  while (i + 4 <= bytes.length) {
    if (bytes[i] !== 0xff) return undefined;
    const marker = bytes[i + 1]!;
    if (marker === 0xff) {
      i += 1; // fill byte
      continue;
    }
    if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      i += 2;
      continue;
    }
    const len = (bytes[i + 2]! << 8) | bytes[i + 3]!;
    const isSof = (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) || marker === 0xf7;
    if (isSof) {
      if (i + 10 > bytes.length) return undefined;
      return {
        marker,
        precision: bytes[i + 4]!,
        height: (bytes[i + 5]! << 8) | bytes[i + 6]!,
        width: (bytes[i + 7]! << 8) | bytes[i + 8]!,
        components: bytes[i + 9]!,
      };
    }
    if (marker === 0xda || marker === 0xd9) return undefined; // scan or end before a frame header
    i += 2 + len;
  }
  return undefined;
}

const SOF_NAMES: Record<number, string> = {
  0xc0: 'baseline DCT (SOF0)',
  0xc1: 'extended sequential DCT (SOF1)',
  0xc2: 'progressive DCT (SOF2)',
  0xc3: 'lossless (SOF3)',
  0xc5: 'differential sequential DCT (SOF5)',
  0xc6: 'differential progressive DCT (SOF6)',
  0xc7: 'differential lossless (SOF7)',
  0xc9: 'arithmetic extended sequential DCT (SOF9)',
  0xca: 'arithmetic progressive DCT (SOF10)',
  0xcb: 'arithmetic lossless (SOF11)',
  0xcd: 'arithmetic differential sequential DCT (SOF13)',
  0xce: 'arithmetic differential progressive DCT (SOF14)',
  0xcf: 'arithmetic differential lossless (SOF15)',
  0xf7: 'JPEG-LS (SOF55)',
};

/** Decodes one encapsulated JPEG / JPEG-LS / JPEG 2000 frame, choosing the codec from the stream itself. */
export async function decodeCompressedFrame(frame: Uint8Array): Promise<CodecFrame> {
  if (frame[0] === 0xff && frame[1] === 0x4f && frame[2] === 0xff && frame[3] === 0x51) return decodeJpeg2000(frame);
  if (frame.length >= 12 && frame[4] === 0x6a && frame[5] === 0x50 && frame[6] === 0x20 && frame[7] === 0x20) {
    throw new CodecError('expected a JPEG 2000 codestream (FF 4F FF 51), found a JP2 file wrapper, which DICOM does not allow');
  }
  const info = readJpegFrameInfo(frame);
  if (info === undefined) {
    if (frame[0] === 0xff && frame[1] === 0xd8) {
      throw new CodecError(`expected a JPEG frame header (SOFn) before the scan data, found none in ${frame.length} bytes (truncated or corrupt stream)`);
    }
    const head = Array.from(frame.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ');
    throw new CodecError(`expected a JPEG, JPEG-LS or JPEG 2000 stream, found ${frame.length} bytes starting ${head}`);
  }
  const kind = SOF_NAMES[info.marker] ?? `SOF marker ff ${info.marker.toString(16)}`;
  if (info.marker === 0xf7) return decodeJpegLs(frame);
  if (info.marker === 0xc3) return decodeJpegLossless(frame, info);
  if (info.marker === 0xc0 || info.marker === 0xc1 || info.marker === 0xc2) {
    if (info.precision !== 8) {
      throw new CodecError(
        `expected an 8-bit ${kind} JPEG frame (sharp/libjpeg decodes 8-bit DCT JPEG only), found ${info.precision}-bit ` +
          'samples: 12-bit JPEG Extended is not supported',
      );
    }
    return decodeJpegDct(frame, info);
  }
  throw new CodecError(`expected a baseline, extended, lossless (SOF3) or JPEG-LS frame, found a ${kind} JPEG frame, which is not supported`);
}

/** 8-bit DCT JPEG with sharp (libjpeg-turbo). YCbCr frames come back as RGB (libjpeg's colour conversion). */
async function decodeJpegDct(frame: Uint8Array, info: JpegFrameInfo): Promise<CodecFrame> {
  let raw: { data: Buffer; info: OutputInfo };
  try {
    // toColourspace: keep a one-component JPEG as one channel (sharp's raw output is otherwise sRGB).
    raw = await sharp(frame, { failOn: 'warning', ignoreIcc: true })
      .toColourspace(info.components === 1 ? 'b-w' : 'srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new CodecError(`expected a valid JPEG frame, found a corrupt or truncated one (${firstLine(e)})`);
  }
  const { width, height, channels } = raw.info;
  const components = info.components;
  if (channels !== components || raw.data.byteLength !== width * height * components) {
    throw new CodecError(`expected ${components} channel(s) from the JPEG decoder, found ${channels}`);
  }
  return { width, height, components, precision: 8, words: new Uint8Array(raw.data), planar: false, codec: 'JPEG (sharp)' };
}

interface LosslessDecoder {
  decode(buffer: ArrayBuffer, offset: number, length: number, numBytes?: number): Uint8Array | Uint16Array;
  frame: { dimX: number; dimY: number; numComp: number; precision: number };
}

/** JPEG lossless, process 14, any predictor (selection values 1–7). */
function decodeJpegLossless(frame: Uint8Array, info: JpegFrameInfo): CodecFrame {
  const { Decoder } = require('jpeg-lossless-decoder-js') as { Decoder: new () => LosslessDecoder };
  if (info.components !== 1 && !(info.components === 3 && info.precision <= 8)) {
    throw new CodecError(`expected a 1-component (≤16-bit) or 3-component 8-bit lossless JPEG frame, found ${info.components} components of ${info.precision} bits`);
  }
  const copy = new Uint8Array(frame); // a copy: the decoder reads from the ArrayBuffer at offset 0
  const decoder = new Decoder();
  let out: Uint8Array | Uint16Array;
  try {
    out = decoder.decode(copy.buffer, 0, copy.byteLength);
  } catch (e) {
    throw new CodecError(`expected a valid lossless JPEG frame, found a corrupt or truncated one (${firstLine(e)})`);
  }
  const { dimX, dimY, numComp, precision } = decoder.frame;
  if (out.length !== dimX * dimY * numComp) {
    throw new CodecError(`expected ${dimX * dimY * numComp} samples from the lossless JPEG decoder, found ${out.length}`);
  }
  return { width: dimX, height: dimY, components: numComp, precision, words: out, planar: false, codec: 'JPEG lossless' };
}

interface EmscriptenModule {
  [key: string]: unknown;
}
interface FrameInfo {
  width: number;
  height: number;
  bitsPerSample: number;
  componentCount: number;
  isSigned?: boolean;
}
interface WasmDecoder {
  getEncodedBuffer(length: number): Uint8Array;
  getDecodedBuffer(): Uint8Array;
  decode(): void;
  getFrameInfo(): FrameInfo;
  getInterleaveMode?(): number;
  delete(): void;
}

let charls: Promise<{ module: EmscriptenModule; log: string[] }> | undefined;
let openjpeg: Promise<{ module: EmscriptenModule; log: string[] }> | undefined;

/** Instantiates an Emscripten codec once, collecting what it prints (OpenJPEG reports errors only there). */
function loadWasm(specifier: string): Promise<{ module: EmscriptenModule; log: string[] }> {
  let factory: (opts: object) => Promise<EmscriptenModule>;
  try {
    factory = require(specifier) as (opts: object) => Promise<EmscriptenModule>;
  } catch (e) {
    return Promise.reject(new CodecError(`expected the ${specifier} package to be installed, found an error (${firstLine(e)})`));
  }
  const log: string[] = [];
  const keep = (s: string): void => {
    log.push(String(s));
    if (log.length > 50) log.shift();
  };
  return factory({ print: keep, printErr: keep }).then(
    (module) => ({ module, log }),
    (e: unknown) => {
      throw new CodecError(`expected the ${specifier} WebAssembly decoder to load, found an error (${firstLine(e)})`);
    },
  );
}

function wasmFrame(
  decoder: WasmDecoder,
  frame: Uint8Array,
  name: string,
  log: string[],
): FrameInfo & { data: Uint8Array; interleave: number | undefined } {
  log.length = 0;
  try {
    decoder.getEncodedBuffer(frame.length).set(frame);
    decoder.decode();
    const info = decoder.getFrameInfo();
    const interleave = decoder.getInterleaveMode?.();
    const data = decoder.getDecodedBuffer().slice(); // copy out of WASM memory before delete()
    return { ...info, data, interleave };
  } catch (e) {
    const detail = typeof e === 'number' ? `${name} decoder exception` : firstLine(e);
    throw new CodecError(`expected a valid ${name} frame, found a corrupt or truncated one (${detail})`);
  } finally {
    decoder.delete();
  }
}

function toWords(data: Uint8Array, info: FrameInfo, name: string, log: string[]): Uint8Array | Uint16Array {
  const n = info.width * info.height * info.componentCount;
  const bytesPerSample = info.bitsPerSample <= 8 ? 1 : 2;
  if (n === 0 || data.byteLength !== n * bytesPerSample) {
    const why = log.filter((l) => /error/i.test(l)).slice(-2).join('; ');
    throw new CodecError(
      `expected a valid ${name} frame, found one that does not decode (${why || `decoded ${data.byteLength} bytes for ${info.width}×${info.height}×${info.componentCount}`})`,
    );
  }
  if (bytesPerSample === 1) return data;
  const words = new Uint16Array(n);
  for (let i = 0, j = 0; i < n; i++, j += 2) words[i] = data[j]! | (data[j + 1]! << 8); // WASM memory is little endian
  return words;
}

/** Decodes one frame with a WASM decoder class of a cornerstone codec package. */
async function decodeWithWasm(
  loaded: Promise<{ module: Record<string, unknown>; log: string[] }>,
  className: string,
  kind: string,
  codec: string,
  planar: (r: ReturnType<typeof wasmFrame>) => boolean,
  frame: Uint8Array,
): Promise<CodecFrame> {
  const { module, log } = await loaded;
  const Ctor = module[className] as new () => WasmDecoder;
  const r = wasmFrame(new Ctor(), frame, kind, log);
  const words = toWords(r.data, r, kind, log);
  return { width: r.width, height: r.height, components: r.componentCount, precision: r.bitsPerSample, words, planar: planar(r), codec };
}

/** JPEG-LS (lossless and near-lossless) with CharLS. */
async function decodeJpegLs(frame: Uint8Array): Promise<CodecFrame> {
  charls ??= loadWasm('@cornerstonejs/codec-charls/decodewasmjs');
  // CharLS returns interleave mode "none" (0) component by component, line and sample modes pixel-interleaved.
  return decodeWithWasm(charls, 'JpegLSDecoder', 'JPEG-LS', 'JPEG-LS (CharLS)', (r) => r.componentCount > 1 && r.interleave === 0, frame);
}

/** JPEG 2000 codestreams (reversible or irreversible; the inverse component transform is OpenJPEG's). */
async function decodeJpeg2000(frame: Uint8Array): Promise<CodecFrame> {
  openjpeg ??= loadWasm('@cornerstonejs/codec-openjpeg/decodewasmjs');
  return decodeWithWasm(openjpeg, 'J2KDecoder', 'JPEG 2000', 'JPEG 2000 (OpenJPEG)', () => false, frame);
}

function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n').map((s) => s.trim()).filter((s) => s !== '').slice(0, 2).join('; ');
}
