/**
 * Training images: decode (sharp, off the main thread) → 8-bit gray (PIL 'L') → optional OpenCV histogram
 * equalisation → optional one-time resize of the shorter side (sharp, cubic) → a uint8 plane that the native
 * multi-crop executor turns into crops on the training device.
 */
import sharp from 'sharp';
import { decodeImage } from '../image/decode.js';
import { equalizeHist } from '../image/equalize.js';
import { grayPlane8 } from '../image/gray.js';

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

/** Decodes one training image. Throws an ImageError naming the file when it cannot be read. */
export async function loadTrainImage(path: string, o: TrainImageOptions): Promise<GrayImage> {
  const img = await decodeImage(path);
  let data = grayPlane8(img);
  if (o.equalize) data = equalizeHist(data);
  let { height, width } = img;
  if (o.baseSize !== null && Math.min(height, width) !== o.baseSize) {
    const s = o.baseSize / Math.min(height, width);
    const w = Math.max(1, Math.round(width * s));
    const h = Math.max(1, Math.round(height * s));
    const out = await sharp(data, { raw: { width, height, channels: 1 } })
      .resize(w, h, { kernel: 'cubic', fit: 'fill' })
      .extractChannel(0)
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (out.info.channels !== 1 || out.data.length !== out.info.width * out.info.height) {
      throw new Error(`${path}: resize returned ${out.info.channels} channels, expected 1`);
    }
    data = new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.byteLength);
    height = out.info.height;
    width = out.info.width;
  }
  return { data, height, width };
}
