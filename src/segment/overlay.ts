/**
 * Pictures of segmentations: class maps as PNG and overlays (the gray image with coloured contours).
 *
 * - Mask PNG: 8-bit gray, pixel value = class index (0 background, 1 left lung, 2 right lung, 3 heart), at the
 *   model's input size; machine-readable (it looks almost black in a viewer).
 * - Overlay PNG: RGB; the contour of each predicted structure in its colour (left lung blue, right lung green, heart
 *   red), 2 px wide, and the ground-truth contours 1 px in yellow where a ground truth exists. A contour pixel of
 *   class c is a pixel of class c with a 4-neighbour of another class (or on the image border).
 */
import sharp from 'sharp';
import { writeFileAtomic } from '../data/fsutil.js';

/** RGB colours of classes 1..3. */
export const CLASS_COLOURS: readonly [number, number, number][] = [
  [40, 120, 255], // left lung
  [40, 220, 80], // right lung
  [255, 50, 50], // heart
];
export const TRUTH_COLOUR: [number, number, number] = [255, 230, 0];

/** Contour pixels (1) of the classes ≥ 1 of a class map. */
export function contours(map: Uint8Array, w: number, h: number): Uint8Array {
  const out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const k = y * w + x;
      const c = map[k]!;
      if (c === 0) continue;
      if (x === 0 || y === 0 || x === w - 1 || y === h - 1 || map[k - 1] !== c || map[k + 1] !== c || map[k - w] !== c || map[k + w] !== c) out[k] = 1;
    }
  }
  return out;
}

/** Overlay RGB (row-major HWC) of a gray image with predicted and (optional) ground-truth contours. */
export function overlayRgb(image: Uint8Array, w: number, h: number, pred: Uint8Array, truth?: Uint8Array): Uint8Array {
  const rgb = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) rgb.fill(image[i]!, i * 3, i * 3 + 3);
  const paint = (k: number, c: readonly number[]) => {
    rgb[k * 3] = c[0]!;
    rgb[k * 3 + 1] = c[1]!;
    rgb[k * 3 + 2] = c[2]!;
  };
  const edge = contours(pred, w, h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const k = y * w + x;
      if (!edge[k]) continue;
      const col = CLASS_COLOURS[pred[k]! - 1] ?? [255, 255, 255];
      paint(k, col);
      // thicken inwards/outwards by one pixel to the right and below for visibility
      if (x + 1 < w) paint(k + 1, col);
      if (y + 1 < h) paint(k + w, col);
    }
  }
  if (truth) {
    const t = contours(truth, w, h);
    for (let k = 0; k < w * h; k++) if (t[k]) paint(k, TRUTH_COLOUR);
  }
  return rgb;
}

/** Encodes raw 8-bit gray or RGB as PNG. */
export async function encodePng(data: Uint8Array, w: number, h: number, channels: 1 | 3): Promise<Buffer> {
  let s = sharp(Buffer.from(data.buffer, data.byteOffset, data.byteLength), { raw: { width: w, height: h, channels } });
  if (channels === 1) s = s.toColourspace('b-w');
  return s.png().toBuffer();
}

/** Writes a class map as an 8-bit PNG of class indices (atomically). */
export async function writeMaskPng(file: string, map: Uint8Array, w: number, h: number): Promise<void> {
  await writeFileAtomic(file, await encodePng(map, w, h, 1));
}

/** Writes an overlay PNG (atomically). */
export async function writeOverlayPng(file: string, image: Uint8Array, w: number, h: number, pred: Uint8Array, truth?: Uint8Array): Promise<void> {
  await writeFileAtomic(file, await encodePng(overlayRgb(image, w, h, pred, truth), w, h, 3));
}
