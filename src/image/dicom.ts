/**
 * DICOM decoding: a DICOM file (Part 10, or a raw data set) to pixels ready for the model's preprocessing.
 *
 * Supported transfer syntaxes: Implicit VR Little Endian, Explicit VR Little Endian, Deflated Explicit VR Little
 * Endian, Explicit VR Big Endian, JPEG Baseline and Extended (8-bit frames, via sharp), JPEG Lossless process 14
 * (.57 and .70), JPEG-LS (.80, .81), JPEG 2000 (.90, .91) and RLE Lossless. Any other → an error naming it.
 *
 * Pixel semantics (see dicom/pixels.ts): stored values (Bits Stored / High Bit masking, sign extension for
 * Pixel Representation 1) → Modality LUT (Sequence, else Rescale Slope/Intercept) → VOI (VOI LUT Sequence, else
 * the first Window Center/Width with VOI LUT Function LINEAR / LINEAR_EXACT / SIGMOID, else the min–max of the
 * modality values) → MONOCHROME1 inverted, all in float64, then scaled once to 0..65535. RGB is scaled from its
 * sample range. Multi-frame files: the first frame unless `frame` says otherwise.
 *
 * Photometric interpretations: MONOCHROME1/2 (1 sample) and RGB (3 samples, planar configuration 0 or 1); in
 * JPEG also YBR_FULL / YBR_FULL_422 and in JPEG 2000 YBR_RCT / YBR_ICT (the codec converts them to RGB).
 * PALETTE COLOR, YBR in native data and the rest are rejected.
 */
import { readFile } from 'node:fs/promises';

import type { DecodedImage } from './decode.js';
import { ImageError } from './errors.js';
import { readFrame } from './dicom/frame.js';
import { readHeader, type ImageHeader, type VoiFunction } from './dicom/header.js';
import { DICOM_EXPECTED, hasDicmMagic, parseDicomBytes } from './dicom/parse.js';
import { applyModality, quantize16, rgbToUnit, storedValues, toDisplay, type VoiApplied } from './dicom/pixels.js';
import { checkPixelLimit, resolveMaxPixels } from './limits.js';

export { SUPPORTED_SYNTAXES, syntaxInfo, type SyntaxInfo } from './dicom/syntax.js';
export type { VoiApplied, VoiFunction };

/** What was read from the file besides the pixels. */
export interface DicomMeta {
  /** Transfer Syntax UID (for a raw data set: the encoding that was guessed). */
  transferSyntax: string;
  /** Its name, e.g. "JPEG 2000 Image Compression (Lossless Only)". */
  transferSyntaxName: string;
  /** Photometric Interpretation as written (e.g. MONOCHROME1; the output is always MONOCHROME2-like or RGB). */
  photometric: string;
  bitsAllocated: number;
  bitsStored: number;
  highBit: number;
  pixelRepresentation: 0 | 1;
  samplesPerPixel: 1 | 3;
  rows: number;
  columns: number;
  /** Number of Frames (1 when absent), and the 0-based frame that was decoded. */
  numberOfFrames: number;
  frame: number;
  /** 'part10' (preamble + DICM, or a file meta group) or 'raw' (a bare data set). */
  form: 'part10' | 'raw';
  patientId?: string;
  studyInstanceUid?: string;
  sopInstanceUid?: string;
  viewPosition?: string;
  modality?: string;
  /** The first Window Center / Window Width values, when both are present (whether or not they were used). */
  window?: [center: number, width: number];
  /** VOI LUT Function (LINEAR when absent or not one of the defined terms). */
  voiFunction: VoiFunction;
  /** Rescale Slope / Intercept, when either is present. */
  rescale?: [slope: number, intercept: number];
  /** Whether a Modality LUT Sequence / VOI LUT Sequence was present. */
  modalityLut: boolean;
  voiLut: boolean;
  /** The VOI transform applied: 'lut', 'window', 'minmax' or 'none' (`voi: 'none'`, and always for RGB). */
  voi: VoiApplied;
  /** The codec that decoded the frame ('native' for uncompressed pixel data). */
  codec: string;
}

/** A decoded DICOM image: 16-bit, gray (MONOCHROME1 already inverted) or interleaved RGB. */
export type DicomImage = DecodedImage & { format: 'dicom'; bitDepth: 16; data: Uint16Array; meta: DicomMeta };

/** A decoded DICOM image as float64 values (see {@link DicomFloatOptions.values}). */
export interface DicomFloatImage {
  width: number;
  height: number;
  channels: 1 | 3;
  /** HWC order, like {@link DecodedImage.data}. */
  data: Float64Array;
  /** What the values are: 'display' (0..1) or 'modality' (e.g. Hounsfield units). */
  values: 'display' | 'modality';
  meta: DicomMeta;
}

export interface DicomDecodeOptions {
  /**
   * 'auto' (default): VOI LUT Sequence, else Window Center/Width, else min–max of the modality values.
   * 'none': skip VOI; the modality values are mapped linearly from the full range they can take — the stored
   * range for Bits Stored and Pixel Representation through Rescale Slope/Intercept, or 0 .. 2^bits − 1 of a
   * Modality LUT — so that files with the same encoding map the same way (no per-image contrast stretch).
   * MONOCHROME1 is inverted either way.
   */
  voi?: 'auto' | 'none';
  /** 0-based frame of a multi-frame image (default 0, the first frame). */
  frame?: number;
  /**
   * Refuse a frame of more than this many pixels (Rows × Columns) before decoding it; 0 = no limit.
   * @default $CXFORMER_MAX_PIXELS, else 268402689 (sharp's limit for PNG/JPEG; see limits.ts)
   */
  maxPixels?: number;
}

export interface DicomFloatOptions extends DicomDecodeOptions {
  /**
   * 'display' (default): the 0..1 values before the final quantisation to 16 bits (VOI and MONOCHROME1
   * inversion applied, per `voi`). 'modality': the modality LUT output (e.g. HU for CT) with no VOI and no
   * inversion; for RGB, the stored samples.
   */
  values?: 'display' | 'modality';
}

/** Whether a file should be decoded as DICOM: "DICM" at byte 128, or a .dcm / .dicom extension. */
export function looksLikeDicom(path: string, bytes: Uint8Array): boolean {
  return hasDicmMagic(bytes) || /\.(dcm|dicom)$/i.test(path);
}

async function readDicomFile(path: string): Promise<Uint8Array> {
  try {
    return await readFile(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const found = err.code === 'ENOENT' ? 'no such file' : err.code === 'EISDIR' ? 'a directory' : err.message;
    throw new ImageError(path, `expected ${DICOM_EXPECTED}, found ${found}`);
  }
}

interface Decoded {
  header: ImageHeader;
  meta: DicomMeta;
  /** Modality values (gray) or stored samples (RGB), HWC. */
  values: Float64Array;
  bits: number;
}

async function decodeValues(bytes: Uint8Array, path: string, options: DicomDecodeOptions): Promise<Decoded> {
  const parsed = parseDicomBytes(bytes, path);
  const header = readHeader(parsed);
  // Before the frame is decoded or its output allocated: a header can claim 65535 × 65535.
  checkPixelLimit(path, header.columns, header.rows, resolveMaxPixels(options.maxPixels), 'Columns × Rows');
  const frameIndex = options.frame ?? 0;
  const frame = await readFrame(parsed, header, frameIndex);
  const stored = storedValues(frame, header);
  const gray = header.samplesPerPixel === 1;
  const values = gray ? applyModality(stored, header) : stored;
  const meta: DicomMeta = {
    transferSyntax: parsed.syntax.uid,
    transferSyntaxName: parsed.syntax.name,
    photometric: header.photometric,
    bitsAllocated: header.bitsAllocated,
    bitsStored: header.bitsStored,
    highBit: header.highBit,
    pixelRepresentation: header.pixelRepresentation,
    samplesPerPixel: header.samplesPerPixel,
    rows: header.rows,
    columns: header.columns,
    numberOfFrames: header.numberOfFrames,
    frame: frameIndex,
    form: parsed.form,
    voiFunction: header.voiFunction,
    modalityLut: header.modalityLut !== undefined,
    voiLut: header.voiLut !== undefined,
    voi: 'none',
    codec: frame.codec,
  };
  for (const key of ['patientId', 'studyInstanceUid', 'sopInstanceUid', 'viewPosition', 'modality'] as const) {
    const v = header[key];
    if (v !== undefined) meta[key] = v;
  }
  if (header.window !== undefined) meta.window = header.window;
  if (header.rescale !== undefined) meta.rescale = header.rescale;
  return { header, meta, values, bits: frame.bits };
}

/** Display values 0..1; `inPlace` overwrites d.values (saves a full-size float64 array). */
function display(d: Decoded, voi: 'auto' | 'none', inPlace = false): Float64Array {
  if (d.header.samplesPerPixel === 3) return rgbToUnit(d.values, d.bits);
  const { display: y, applied } = toDisplay(d.values, d.header, voi, d.bits, inPlace ? d.values : undefined);
  d.meta.voi = applied;
  return y;
}

/**
 * Decodes DICOM bytes (see {@link decodeDicom}); `path` is used in error messages.
 */
export async function decodeDicomBytes(bytes: Uint8Array, path: string, options: DicomDecodeOptions = {}): Promise<DicomImage> {
  const d = await decodeValues(bytes, path, options);
  const y = display(d, options.voi ?? 'auto', true);
  return {
    width: d.header.columns,
    height: d.header.rows,
    channels: d.header.samplesPerPixel,
    bitDepth: 16,
    data: quantize16(y),
    format: 'dicom',
    meta: d.meta,
  };
}

/**
 * Decodes a DICOM file to 16-bit pixels: gray (one channel, MONOCHROME1 inverted so that higher is brighter)
 * after the modality and VOI transforms, or RGB scaled from its sample range; `round(y · 65535)` of the
 * float64 result, so that ≥12-bit precision is kept for later normalisation.
 *
 * @throws ImageError (code `CXF_IMAGE`) naming the file and what was expected vs found: missing file, not DICOM,
 *   truncated file or pixel data, missing Rows/Columns/Bits Allocated/Pixel Data, unsupported transfer syntax or
 *   photometric interpretation, corrupt compressed frame.
 */
export async function decodeDicom(path: string, options: DicomDecodeOptions = {}): Promise<DicomImage> {
  return decodeDicomBytes(await readDicomFile(path), path, options);
}

/** Like {@link decodeDicom} but returns float64 values: display values (0..1) or modality values. */
export async function decodeDicomFloat(path: string, options: DicomFloatOptions = {}): Promise<DicomFloatImage> {
  const d = await decodeValues(await readDicomFile(path), path, options);
  const values = options.values ?? 'display';
  const data = values === 'modality' ? d.values : display(d, options.voi ?? 'auto');
  return { width: d.header.columns, height: d.header.rows, channels: d.header.samplesPerPixel, data, values, meta: d.meta };
}
