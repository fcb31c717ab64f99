/**
 * Training planes (pretraining and full fine-tuning): decode (sharp / DICOM) → 8-bit gray (PIL 'L') → optional resize of the shorter side to
 * `data.base_size` (PIL-compatible bicubic, the conversion `cxformer prepare` stores) → optional OpenCV histogram
 * equalisation → a uint8 plane that the native multi-crop executor turns into crops on the training device.
 * Reading a prepared cache made with the same shorter side gives exactly the same planes.
 * With base_size null, equalisation runs at full resolution, CXformer's order.
 */
import { convertForCache } from './convert.js';
import type { PreparedCache } from './reader.js';
import { decodeImage } from '../image/decode.js';
import { equalizeHist } from '../image/equalize.js';
import { to8Bit } from '../image/gray.js';

/** One decoded training image: row-major uint8 gray, height × width. */
export interface GrayImage {
  data: Uint8Array;
  height: number;
  width: number;
}

export interface TrainImageOptions {
  equalize: boolean;
  /** Shorter side after decoding, or null to keep the decoded size. */
  baseSize: number | null;
}

function finish(data: Uint8Array, height: number, width: number, o: TrainImageOptions): GrayImage {
  return { data: o.equalize ? equalizeHist(data) : data, height, width };
}

/** Decodes one training image. Throws an ImageError naming the file when it cannot be read. */
export async function loadTrainImage(path: string, o: TrainImageOptions): Promise<GrayImage> {
  const img = await decodeImage(path);
  const c = convertForCache(img, { shorterSide: o.baseSize, bitDepth: 8, minSide: 1 });
  return finish(c.data as Uint8Array, c.height, c.width, o);
}

/** Reads one record of a prepared cache (8- or 16-bit) as a training image. */
export async function loadCachedImage(cache: PreparedCache, index: number, o: TrainImageOptions): Promise<GrayImage> {
  const r = await cache.read(index);
  const data = r.data instanceof Uint16Array ? to8Bit(r.data) : r.data;
  return finish(data, r.height, r.width, o);
}
