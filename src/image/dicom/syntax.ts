/**
 * DICOM transfer syntaxes (PS3.5 §8, §10, Annex A): which ones we decode and how, plus the names of common
 * unsupported ones for error messages.
 */

/** How the data set and the pixel data of a transfer syntax are encoded. */
export interface SyntaxInfo {
  /** The transfer syntax UID. */
  uid: string;
  /** The standard's name (PS3.6 Table A-1). */
  name: string;
  /** Whether we can decode it. */
  supported: boolean;
  /** Explicit VR (false only for Implicit VR Little Endian). */
  explicit: boolean;
  /** Big-endian data set and native pixel data (Explicit VR Big Endian, retired). */
  bigEndian: boolean;
  /** The data set after the file meta group is deflated (RFC 1951). */
  deflated: boolean;
  /** Pixel data encapsulated in fragments (PS3.5 §A.4); the codec family when so. */
  codec: 'none' | 'jpeg' | 'jpeg-lossless' | 'jpeg-ls' | 'jpeg2000' | 'rle';
}

export const IMPLICIT_VR_LE = '1.2.840.10008.1.2';
export const EXPLICIT_VR_LE = '1.2.840.10008.1.2.1';
export const DEFLATED_EXPLICIT_VR_LE = '1.2.840.10008.1.2.1.99';
export const EXPLICIT_VR_BE = '1.2.840.10008.1.2.2';
export const JPEG_BASELINE = '1.2.840.10008.1.2.4.50';
export const JPEG_EXTENDED = '1.2.840.10008.1.2.4.51';
export const JPEG_LOSSLESS = '1.2.840.10008.1.2.4.57';
export const JPEG_LOSSLESS_SV1 = '1.2.840.10008.1.2.4.70';
export const JPEG_LS_LOSSLESS = '1.2.840.10008.1.2.4.80';
export const JPEG_LS_NEAR_LOSSLESS = '1.2.840.10008.1.2.4.81';
export const JPEG_2000_LOSSLESS = '1.2.840.10008.1.2.4.90';
export const JPEG_2000 = '1.2.840.10008.1.2.4.91';
export const RLE_LOSSLESS = '1.2.840.10008.1.2.5';

type Entry = [name: string, codec: SyntaxInfo['codec'], flags?: { implicit?: true; be?: true; deflated?: true }];

const SUPPORTED: Record<string, Entry> = {
  [IMPLICIT_VR_LE]: ['Implicit VR Little Endian', 'none', { implicit: true }],
  [EXPLICIT_VR_LE]: ['Explicit VR Little Endian', 'none'],
  [DEFLATED_EXPLICIT_VR_LE]: ['Deflated Explicit VR Little Endian', 'none', { deflated: true }],
  [EXPLICIT_VR_BE]: ['Explicit VR Big Endian (retired)', 'none', { be: true }],
  [JPEG_BASELINE]: ['JPEG Baseline (Process 1)', 'jpeg'],
  [JPEG_EXTENDED]: ['JPEG Extended (Process 2 & 4)', 'jpeg'],
  [JPEG_LOSSLESS]: ['JPEG Lossless, Non-Hierarchical (Process 14)', 'jpeg-lossless'],
  [JPEG_LOSSLESS_SV1]: ['JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])', 'jpeg-lossless'],
  [JPEG_LS_LOSSLESS]: ['JPEG-LS Lossless Image Compression', 'jpeg-ls'],
  [JPEG_LS_NEAR_LOSSLESS]: ['JPEG-LS Lossy (Near-Lossless) Image Compression', 'jpeg-ls'],
  [JPEG_2000_LOSSLESS]: ['JPEG 2000 Image Compression (Lossless Only)', 'jpeg2000'],
  [JPEG_2000]: ['JPEG 2000 Image Compression', 'jpeg2000'],
  [RLE_LOSSLESS]: ['RLE Lossless', 'rle'],
};

/** Names of transfer syntaxes we recognise but do not decode. */
const UNSUPPORTED: Record<string, string> = {
  '1.2.840.10008.1.2.1.98': 'Encapsulated Uncompressed Explicit VR Little Endian',
  '1.2.840.10008.1.2.4.52': 'JPEG Extended (Process 3 & 5) (retired)',
  '1.2.840.10008.1.2.4.53': 'JPEG Spectral Selection, Non-Hierarchical (Process 6 & 8) (retired)',
  '1.2.840.10008.1.2.4.54': 'JPEG Spectral Selection, Non-Hierarchical (Process 7 & 9) (retired)',
  '1.2.840.10008.1.2.4.55': 'JPEG Full Progression, Non-Hierarchical (Process 10 & 12) (retired)',
  '1.2.840.10008.1.2.4.56': 'JPEG Full Progression, Non-Hierarchical (Process 11 & 13) (retired)',
  '1.2.840.10008.1.2.4.58': 'JPEG Lossless, Non-Hierarchical (Process 15) (retired)',
  '1.2.840.10008.1.2.4.59': 'JPEG Extended, Hierarchical (Process 16 & 18) (retired)',
  '1.2.840.10008.1.2.4.60': 'JPEG Extended, Hierarchical (Process 17 & 19) (retired)',
  '1.2.840.10008.1.2.4.61': 'JPEG Spectral Selection, Hierarchical (Process 20 & 22) (retired)',
  '1.2.840.10008.1.2.4.62': 'JPEG Spectral Selection, Hierarchical (Process 21 & 23) (retired)',
  '1.2.840.10008.1.2.4.63': 'JPEG Full Progression, Hierarchical (Process 24 & 26) (retired)',
  '1.2.840.10008.1.2.4.64': 'JPEG Full Progression, Hierarchical (Process 25 & 27) (retired)',
  '1.2.840.10008.1.2.4.65': 'JPEG Lossless, Hierarchical (Process 28) (retired)',
  '1.2.840.10008.1.2.4.66': 'JPEG Lossless, Hierarchical (Process 29) (retired)',
  '1.2.840.10008.1.2.4.92': 'JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only)',
  '1.2.840.10008.1.2.4.93': 'JPEG 2000 Part 2 Multi-component Image Compression',
  '1.2.840.10008.1.2.4.94': 'JPIP Referenced',
  '1.2.840.10008.1.2.4.95': 'JPIP Referenced Deflate',
  '1.2.840.10008.1.2.4.100': 'MPEG2 Main Profile / Main Level',
  '1.2.840.10008.1.2.4.101': 'MPEG2 Main Profile / High Level',
  '1.2.840.10008.1.2.4.102': 'MPEG-4 AVC/H.264 High Profile / Level 4.1',
  '1.2.840.10008.1.2.4.103': 'MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1',
  '1.2.840.10008.1.2.4.104': 'MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video',
  '1.2.840.10008.1.2.4.105': 'MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video',
  '1.2.840.10008.1.2.4.106': 'MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2',
  '1.2.840.10008.1.2.4.107': 'HEVC/H.265 Main Profile / Level 5.1',
  '1.2.840.10008.1.2.4.108': 'HEVC/H.265 Main 10 Profile / Level 5.1',
  '1.2.840.10008.1.2.4.201': 'High-Throughput JPEG 2000 Image Compression (Lossless Only)',
  '1.2.840.10008.1.2.4.202': 'High-Throughput JPEG 2000 with RPCL Options Image Compression (Lossless Only)',
  '1.2.840.10008.1.2.4.203': 'High-Throughput JPEG 2000 Image Compression',
  '1.2.840.10008.1.2.4.204': 'JPIP HTJ2K Referenced',
  '1.2.840.10008.1.2.4.205': 'JPIP HTJ2K Referenced Deflate',
  '1.2.840.10008.1.2.6.1': 'RFC 2557 MIME encapsulation (retired)',
  '1.2.840.10008.1.2.6.2': 'XML Encoding (retired)',
  '1.2.840.10008.1.2.7.1': 'SMPTE ST 2110-20 Uncompressed Progressive Active Video',
  '1.2.840.10008.1.2.7.2': 'SMPTE ST 2110-20 Uncompressed Interlaced Active Video',
  '1.2.840.10008.1.2.7.3': 'SMPTE ST 2110-30 PCM Digital Audio',
  '1.2.840.10008.1.2.8.1': 'Deflated Image Frame Compression',
  '1.2.840.10008.1.2.4.110': 'JPEG XL Lossless',
  '1.2.840.10008.1.2.4.111': 'JPEG XL JPEG Recompression',
  '1.2.840.10008.1.2.4.112': 'JPEG XL',
};

/** The supported transfer syntax UIDs, in table order. */
export const SUPPORTED_SYNTAXES: readonly string[] = Object.keys(SUPPORTED);

/** Describes a transfer syntax UID (unsupported and unknown ones come back with `supported: false`). */
export function syntaxInfo(uid: string): SyntaxInfo {
  const entry = SUPPORTED[uid];
  if (entry !== undefined) {
    const [name, codec, flags] = entry;
    return {
      uid,
      name,
      supported: true,
      explicit: flags?.implicit !== true,
      bigEndian: flags?.be === true,
      deflated: flags?.deflated === true,
      codec,
    };
  }
  const name = UNSUPPORTED[uid] ?? 'an unknown transfer syntax';
  return { uid, name, supported: false, explicit: true, bigEndian: false, deflated: false, codec: 'none' };
}
