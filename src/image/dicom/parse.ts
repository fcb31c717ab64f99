/**
 * Reading a DICOM file into a data set with dicom-parser: Part-10 files (128-byte preamble, "DICM", file meta
 * group) and, as a fallback, raw data sets without preamble or meta group, whose encoding is then guessed.
 */
import { createRequire } from 'node:module';
import { inflateRawSync } from 'node:zlib';

import type { DataSet, Element } from 'dicom-parser';

import { ImageError } from '../errors.js';
import { EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE, syntaxInfo, type SyntaxInfo } from './syntax.js';

const require = createRequire(import.meta.url);
/** dicom-parser is a UMD bundle: load it through require so that its named exports are there. */
export const dicomParser = require('dicom-parser') as typeof import('dicom-parser');

/** A parsed data set with the transfer syntax it is encoded in. */
export interface ParsedDicom {
  /** The file name, for error messages. */
  path: string;
  /** All elements, file meta group included (Part 10). */
  dataSet: DataSet;
  /** The transfer syntax (from the file meta group, or guessed for a raw data set). */
  syntax: SyntaxInfo;
  /** 'part10' when the file has the DICM prefix (or a file meta group), 'raw' for a bare data set. */
  form: 'part10' | 'raw';
}

export const DICOM_EXPECTED = 'a DICOM file (Part 10: 128-byte preamble + "DICM" + file meta group, or a raw data set)';

/** Tags whose VR matters for implicit VR parsing (sequences are otherwise detected by peeking at the next tag). */
const IMPLICIT_VRS: Record<string, string> = {
  x00283000: 'SQ', // Modality LUT Sequence
  x00283010: 'SQ', // VOI LUT Sequence
  x00282000: 'OB', // ICC Profile
  x7fe00010: 'OW', // Pixel Data
};

/** A short printable description of what the first bytes of a file are. */
export function describeBytes(bytes: Uint8Array): string {
  if (bytes.length === 0) return 'an empty file';
  const head = Array.from(bytes.subarray(0, 8), (b) => b.toString(16).padStart(2, '0')).join(' ');
  return `${bytes.length} bytes without "DICM" at byte 128 that do not start like a DICOM data set (first bytes ${head})`;
}

/** Whether the bytes carry the Part-10 "DICM" magic at byte 128. */
export function hasDicmMagic(bytes: Uint8Array): boolean {
  return bytes.length >= 132 && bytes[128] === 0x44 && bytes[129] === 0x49 && bytes[130] === 0x43 && bytes[131] === 0x4d;
}

const VRS = new Set(
  'AE AS AT CS DA DS DT FL FD IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV'.split(' '),
);

function isVr(bytes: Uint8Array, at: number): boolean {
  if (at + 2 > bytes.length) return false;
  return VRS.has(String.fromCharCode(bytes[at]!, bytes[at + 1]!));
}

/**
 * Guesses the encoding of a data set without preamble from its first element: its group must be a plausible
 * first group of an image data set (0002 meta, 0008 identifying, …, up to 0028 image pixel) and even.
 * Returns 'meta' when it starts with a file meta group (a Part-10 file whose preamble and DICM were stripped).
 */
function guessRawEncoding(bytes: Uint8Array): 'meta' | string | undefined {
  if (bytes.length < 8) return undefined;
  const groupLe = bytes[0]! | (bytes[1]! << 8);
  const groupBe = (bytes[0]! << 8) | bytes[1]!;
  const plausible = (g: number): boolean => g % 2 === 0 && g >= 0x0002 && g <= 0x0028;
  if (plausible(groupLe)) {
    if (groupLe === 0x0002 && isVr(bytes, 4)) return 'meta';
    if (isVr(bytes, 4)) return EXPLICIT_VR_LE;
    // Implicit VR: a 32-bit length that fits in the file.
    const len = (bytes[4]! | (bytes[5]! << 8) | (bytes[6]! << 16)) + bytes[7]! * 2 ** 24;
    if (len !== 0xffffffff && 8 + len <= bytes.length) return IMPLICIT_VR_LE;
    return undefined;
  }
  if (plausible(groupBe) && isVr(bytes, 4)) return EXPLICIT_VR_BE;
  return undefined;
}

/** What dicom-parser threw, as one line. */
export function parserMessage(e: unknown): string {
  if (e instanceof Error) return e.message.split('\n')[0] ?? e.message;
  if (typeof e === 'string') return e;
  if (typeof e === 'object' && e !== null && 'exception' in e) return parserMessage((e as { exception: unknown }).exception);
  return String(e);
}

class InflateError extends Error {}

/**
 * Parses DICOM bytes. Accepts a Part-10 file, a Part-10 file whose preamble (or preamble and DICM) was stripped,
 * or a raw data set in implicit/explicit VR little endian or explicit VR big endian.
 *
 * @throws ImageError when the bytes are not DICOM, the transfer syntax is unsupported, or the data set is
 *   truncated or corrupt before the pixel data
 */
export function parseDicomBytes(input: Uint8Array, path: string): ParsedDicom {
  let bytes = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  let form: 'part10' | 'raw' = 'part10';
  let rawSyntax: string | undefined;
  if (!hasDicmMagic(bytes)) {
    const startsWithDicm = bytes.length >= 4 && bytes.subarray(0, 4).toString('latin1') === 'DICM';
    const guess = startsWithDicm ? 'dicm' : guessRawEncoding(bytes);
    if (guess === undefined) throw new ImageError(path, `expected ${DICOM_EXPECTED}, found ${describeBytes(bytes)}`);
    if (guess === 'dicm' || guess === 'meta') {
      // Put back the missing preamble (and prefix) so that dicom-parser reads the file meta group.
      const prefix = Buffer.alloc(guess === 'dicm' ? 128 : 132);
      if (guess === 'meta') prefix.write('DICM', 128, 'latin1');
      bytes = Buffer.concat([prefix, bytes]);
    } else {
      form = 'raw';
      rawSyntax = guess;
    }
  }

  let syntax: SyntaxInfo;
  if (form === 'part10') {
    let uid: string | undefined;
    let metaCount = 0;
    try {
      const meta = dicomParser.readPart10Header(bytes);
      metaCount = Object.keys(meta.elements).length;
      uid = meta.elements.x00020010 === undefined ? undefined : cleanUid(meta.string('x00020010'));
    } catch (e) {
      throw new ImageError(path, `expected a complete DICOM file meta group (0002,xxxx), found a truncated or corrupt one (${parserMessage(e)})`);
    }
    if (metaCount === 0) {
      throw new ImageError(path, `expected a file meta group (0002,xxxx) after "DICM", found ${bytes.length - 132} bytes (truncated file)`);
    }
    if (uid === undefined || uid === '') {
      throw new ImageError(path, 'expected a Transfer Syntax UID (0002,0010) in the file meta group, found none');
    }
    syntax = syntaxInfo(uid);
  } else {
    syntax = syntaxInfo(rawSyntax!);
  }
  if (!syntax.supported) throw unsupportedSyntax(path, syntax);

  const options: import('dicom-parser').ParseDicomOptions = {
    vrCallback: (tag: string) => IMPLICIT_VRS[tag],
    inflater: (arr: Uint8Array, position: number) => {
      try {
        const inflated = inflateRawSync(arr.subarray(position));
        return Buffer.concat([Buffer.from(arr.buffer, arr.byteOffset, position), inflated]);
      } catch (e) {
        throw new InflateError((e as Error).message);
      }
    },
  };
  if (form === 'raw') options.TransferSyntaxUID = syntax.uid;

  let dataSet: DataSet;
  try {
    dataSet = dicomParser.parseDicom(bytes, options);
  } catch (e) {
    if (e instanceof InflateError) {
      throw new ImageError(path, `expected a deflated (RFC 1951) data set for ${syntax.name}, found data that does not inflate (${e.message})`);
    }
    // dicom-parser throws { exception, dataSet } with what it read before the error. Reading past the end while
    // in the pixel data (the last element) is a truncated pixel data element, reported precisely later.
    const partial = typeof e === 'object' && e !== null && 'dataSet' in e ? (e as { dataSet: DataSet }).dataSet : undefined;
    if (partial?.elements.x7fe00010 === undefined) {
      throw new ImageError(
        path,
        `expected a complete ${form === 'raw' ? 'raw DICOM data set' : 'DICOM data set'} (${syntax.name}), ` +
          `found a truncated or corrupt one (${parserMessage(e)})`,
      );
    }
    dataSet = partial;
  }
  if (form === 'raw' && Object.keys(dataSet.elements).length < 2) {
    throw new ImageError(path, `expected ${DICOM_EXPECTED}, found ${describeBytes(bytes)}`);
  }
  return { path, dataSet, syntax, form };
}

/** UIDs are padded with NUL to an even length; some writers also leave spaces. */
function cleanUid(s: string | undefined): string | undefined {
  return s?.replace(/[\0\s]+$/g, '').trim();
}

export function unsupportedSyntax(path: string, syntax: SyntaxInfo): ImageError {
  return new ImageError(
    path,
    `expected one of the supported transfer syntaxes (implicit/explicit VR little endian, deflated, explicit VR big ` +
      `endian, JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000, RLE lossless), found ${syntax.uid} (${syntax.name})`,
  );
}

/** True when the element's value lies entirely inside the byte array. */
export function elementComplete(dataSet: DataSet, element: Element): boolean {
  return element.dataOffset + element.length <= dataSet.byteArray.length;
}
