/**
 * The attributes that describe the pixels (PS3.3 C.7.6.3 Image Pixel, C.11.1 Modality LUT, C.11.2 VOI LUT),
 * read and checked once.
 */
import type { DataSet } from 'dicom-parser';

import { ImageError } from '../errors.js';
import type { ParsedDicom } from './parse.js';

/** A lookup table (LUT Descriptor (0028,3002) + LUT Data (0028,3006)). */
export interface Lut {
  /** Number of entries (a descriptor value of 0 means 65536). */
  entries: number;
  /** The input value mapped to the first entry; inputs below map to the first entry, above to the last. */
  firstMapped: number;
  /** Bits per entry (8..16): the output range is 0 .. 2^bits − 1. */
  bits: number;
  data: Uint16Array;
}

/** The VOI LUT functions of C.11.2.1.3. */
export type VoiFunction = 'LINEAR' | 'LINEAR_EXACT' | 'SIGMOID';

export interface ImageHeader {
  rows: number;
  columns: number;
  samplesPerPixel: 1 | 3;
  photometric: string;
  bitsAllocated: number;
  bitsStored: number;
  highBit: number;
  pixelRepresentation: 0 | 1;
  planarConfiguration: 0 | 1;
  numberOfFrames: number;
  /** Rescale Slope and Intercept (0028,1053)/(0028,1052) when either is present. */
  rescale?: [slope: number, intercept: number];
  /** The first item of the Modality LUT Sequence (0028,3000). */
  modalityLut?: Lut;
  /** The first item of the VOI LUT Sequence (0028,3010). */
  voiLut?: Lut;
  /** The first Window Center / Window Width pair (0028,1050)/(0028,1051). */
  window?: [center: number, width: number];
  /** VOI LUT Function (0028,1056); LINEAR when absent. */
  voiFunction: VoiFunction;
  /** The VOI LUT Function as written when it is not one of the three defined terms (LINEAR is used). */
  voiFunctionUnknown?: string;
  patientId?: string;
  studyInstanceUid?: string;
  sopInstanceUid?: string;
  viewPosition?: string;
  modality?: string;
}

const TAG = {
  samplesPerPixel: 'x00280002',
  photometric: 'x00280004',
  planarConfiguration: 'x00280006',
  numberOfFrames: 'x00280008',
  rows: 'x00280010',
  columns: 'x00280011',
  bitsAllocated: 'x00280100',
  bitsStored: 'x00280101',
  highBit: 'x00280102',
  pixelRepresentation: 'x00280103',
  windowCenter: 'x00281050',
  windowWidth: 'x00281051',
  rescaleIntercept: 'x00281052',
  rescaleSlope: 'x00281053',
  voiFunction: 'x00281056',
  modalityLutSequence: 'x00283000',
  lutDescriptor: 'x00283002',
  lutData: 'x00283006',
  voiLutSequence: 'x00283010',
  pixelData: 'x7fe00010',
} as const;

/** The first value of a US element, or undefined when absent or empty. */
function us(ds: DataSet, tag: string): number | undefined {
  const el = ds.elements[tag];
  if (el === undefined || el.length < 2) return undefined;
  return ds.uint16(tag);
}

function str(ds: DataSet, tag: string): string | undefined {
  const el = ds.elements[tag];
  if (el === undefined || el.length === 0) return undefined;
  const s = ds.string(tag)?.replace(/\0+$/g, '').trim();
  return s === '' ? undefined : s;
}

/** The first value of a DS element (multi-valued elements: the first one). */
function ds0(ds: DataSet, tag: string, path: string): number | undefined {
  const el = ds.elements[tag];
  if (el === undefined || el.length === 0) return undefined;
  const s = ds.string(tag, 0)?.trim();
  if (s === undefined || s === '') return undefined;
  const v = Number(s);
  if (!Number.isFinite(v)) {
    throw new ImageError(path, `expected a decimal number in (${tag.slice(1, 5)},${tag.slice(5)}), found "${s}"`);
  }
  return v;
}

/** Reads and checks the Image Pixel module and the LUT attributes. */
export function readHeader(parsed: ParsedDicom): ImageHeader {
  const { dataSet: ds, path, syntax } = parsed;
  const required = (tag: string, name: string): number => {
    const v = us(ds, tag);
    if (v === undefined) {
      throw new ImageError(path, `expected ${name} (${tag.slice(1, 5)},${tag.slice(5)}) in the DICOM data set, found none`);
    }
    return v;
  };
  const rows = required(TAG.rows, 'Rows');
  const columns = required(TAG.columns, 'Columns');
  const bitsAllocated = required(TAG.bitsAllocated, 'Bits Allocated');
  if (ds.elements[TAG.pixelData] === undefined) {
    const other = ds.elements.x7fe00008 !== undefined ? 'only Float Pixel Data (7FE0,0008), which is not supported' : ds.elements.x7fe00009 !== undefined ? 'only Double Float Pixel Data (7FE0,0009), which is not supported' : 'none';
    throw new ImageError(path, `expected Pixel Data (7FE0,0010) in the DICOM data set, found ${other}`);
  }
  if (rows === 0 || columns === 0) throw new ImageError(path, `expected a non-empty image, found Rows ${rows} and Columns ${columns}`);
  if (bitsAllocated !== 8 && bitsAllocated !== 16 && bitsAllocated !== 32) {
    throw new ImageError(path, `expected Bits Allocated 8, 16 or 32, found ${bitsAllocated}${bitsAllocated === 1 ? ' (1-bit images are not supported)' : ''}`);
  }
  const bitsStored = us(ds, TAG.bitsStored) ?? bitsAllocated;
  const highBit = us(ds, TAG.highBit) ?? bitsStored - 1;
  if (bitsStored < 1 || bitsStored > bitsAllocated || highBit >= bitsAllocated || highBit < bitsStored - 1) {
    throw new ImageError(
      path,
      `expected 1 ≤ Bits Stored ≤ Bits Allocated and Bits Stored − 1 ≤ High Bit < Bits Allocated, found Bits Allocated ` +
        `${bitsAllocated}, Bits Stored ${bitsStored}, High Bit ${highBit}`,
    );
  }
  const pr = us(ds, TAG.pixelRepresentation) ?? 0;
  if (pr !== 0 && pr !== 1) throw new ImageError(path, `expected Pixel Representation 0 or 1, found ${pr}`);
  const spp = us(ds, TAG.samplesPerPixel) ?? 1;
  if (spp !== 1 && spp !== 3) throw new ImageError(path, `expected Samples per Pixel 1 or 3, found ${spp}`);
  const photometric = (str(ds, TAG.photometric) ?? (spp === 1 ? 'MONOCHROME2' : '')).toUpperCase();
  if (photometric === '') throw new ImageError(path, 'expected Photometric Interpretation (0028,0004) for a 3-sample image, found none');
  checkPhotometric(path, photometric, spp, syntax.codec, syntax.name);
  const planar = spp === 3 ? (us(ds, TAG.planarConfiguration) ?? 0) : 0;
  if (planar !== 0 && planar !== 1) throw new ImageError(path, `expected Planar Configuration 0 or 1, found ${planar}`);
  const framesText = str(ds, TAG.numberOfFrames);
  const numberOfFrames = framesText === undefined ? 1 : Number.parseInt(framesText, 10);
  if (!Number.isInteger(numberOfFrames) || numberOfFrames < 1) {
    throw new ImageError(path, `expected Number of Frames (0028,0008) ≥ 1, found "${framesText}"`);
  }

  const header: ImageHeader = {
    rows,
    columns,
    samplesPerPixel: spp,
    photometric,
    bitsAllocated,
    bitsStored,
    highBit,
    pixelRepresentation: pr,
    planarConfiguration: planar,
    numberOfFrames,
    voiFunction: 'LINEAR',
  };

  const slope = ds0(ds, TAG.rescaleSlope, path);
  const intercept = ds0(ds, TAG.rescaleIntercept, path);
  if (slope !== undefined || intercept !== undefined) header.rescale = [slope ?? 1, intercept ?? 0];
  const modalityItem = firstItem(ds, TAG.modalityLutSequence);
  if (modalityItem !== undefined) header.modalityLut = readLut(parsed, modalityItem, 'Modality LUT Sequence', pr === 1);
  const voiItem = firstItem(ds, TAG.voiLutSequence);
  if (voiItem !== undefined) header.voiLut = readLut(parsed, voiItem, 'VOI LUT Sequence', pr === 1);
  const center = ds0(ds, TAG.windowCenter, path);
  const width = ds0(ds, TAG.windowWidth, path);
  if (center !== undefined && width !== undefined) header.window = [center, width];
  const fn = str(ds, TAG.voiFunction)?.toUpperCase();
  if (fn === 'LINEAR' || fn === 'LINEAR_EXACT' || fn === 'SIGMOID') header.voiFunction = fn;
  else if (fn !== undefined) header.voiFunctionUnknown = fn;

  const ids: [keyof ImageHeader, string][] = [
    ['patientId', 'x00100020'],
    ['studyInstanceUid', 'x0020000d'],
    ['sopInstanceUid', 'x00080018'],
    ['viewPosition', 'x00185101'],
    ['modality', 'x00080060'],
  ];
  for (const [key, tag] of ids) {
    const v = str(ds, tag);
    if (v !== undefined) (header as unknown as Record<string, string>)[key] = v;
  }
  return header;
}

function firstItem(ds: DataSet, tag: string): DataSet | undefined {
  return ds.elements[tag]?.items?.[0]?.dataSet;
}

/**
 * Photometric interpretations we can turn into gray or RGB, per codec: monochrome and RGB everywhere; YBR_FULL
 * and YBR_FULL_422 only in DCT JPEG (libjpeg converts to RGB); YBR_RCT / YBR_ICT only in JPEG 2000 (OpenJPEG
 * applies the inverse component transform).
 */
function checkPhotometric(path: string, photometric: string, spp: number, codec: string, syntaxName: string): void {
  const mono = photometric === 'MONOCHROME1' || photometric === 'MONOCHROME2';
  if (mono || photometric === 'RGB') {
    const want = mono ? 1 : 3;
    if (spp !== want) throw new ImageError(path, `expected Samples per Pixel ${want} for ${photometric}, found ${spp}`);
    return;
  }
  const ybrJpeg = (photometric === 'YBR_FULL_422' || photometric === 'YBR_FULL') && codec === 'jpeg';
  const ybrJ2k = (photometric === 'YBR_RCT' || photometric === 'YBR_ICT') && codec === 'jpeg2000';
  if ((ybrJpeg || ybrJ2k) && spp === 3) return;
  throw new ImageError(
    path,
    `expected Photometric Interpretation MONOCHROME1, MONOCHROME2 or RGB (YBR_FULL/YBR_FULL_422 in JPEG, ` +
      `YBR_RCT/YBR_ICT in JPEG 2000), found ${photometric} with ${spp} sample(s) per pixel in ${syntaxName}`,
  );
}

/** Reads the LUT of a Modality or VOI LUT Sequence item. */
function readLut(parsed: ParsedDicom, item: DataSet, what: string, signedInput: boolean): Lut {
  const { path, syntax } = parsed;
  const desc = item.elements[TAG.lutDescriptor];
  const data = item.elements[TAG.lutData];
  if (desc === undefined || desc.length < 6 || data === undefined) {
    throw new ImageError(path, `expected LUT Descriptor (0028,3002) and LUT Data (0028,3006) in the ${what} item, found ${desc === undefined ? 'no descriptor' : data === undefined ? 'no LUT Data' : `a ${desc.length}-byte descriptor`}`);
  }
  const entries = item.uint16(TAG.lutDescriptor, 0)! || 65536;
  let firstMapped = item.uint16(TAG.lutDescriptor, 1)!;
  // The second value is US or SS (C.11.1.1.1 / C.11.2.1.1): signed when the VR says SS or, as pydicom resolves
  // the ambiguous "US or SS" VR (implicit VR, or a US label on signed data), when Pixel Representation is 1.
  if ((desc.vr === 'SS' || signedInput) && firstMapped >= 0x8000) firstMapped -= 0x10000;
  const bits = item.uint16(TAG.lutDescriptor, 2)!;
  if (bits < 1 || bits > 16) throw new ImageError(path, `expected 8 to 16 bits per LUT entry in the ${what}, found ${bits}`);
  const bytes = item.byteArray;
  if (data.dataOffset + data.length > bytes.length) {
    throw new ImageError(path, `expected ${data.length} bytes of LUT Data in the ${what}, found a truncated file`);
  }
  const out = new Uint16Array(entries);
  const view = new DataView(bytes.buffer, bytes.byteOffset + data.dataOffset, data.length);
  if (data.length >= 2 * entries) {
    for (let i = 0; i < entries; i++) out[i] = view.getUint16(2 * i, !syntax.bigEndian);
  } else if (bits <= 8 && data.length >= entries) {
    for (let i = 0; i < entries; i++) out[i] = view.getUint8(i); // 8-bit entries packed one per byte
  } else {
    throw new ImageError(path, `expected ${entries} LUT entries in the ${what}, found ${data.length} bytes of LUT Data`);
  }
  const mask = bits >= 16 ? 0xffff : (1 << bits) - 1;
  for (let i = 0; i < entries; i++) out[i] = out[i]! & mask;
  return { entries, firstMapped, bits, data: out };
}
