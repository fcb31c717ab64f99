/**
 * Pictures of segmentations: class maps as PNG and overlays (the gray image with coloured contours).
 *
 * - Mask PNG: 8-bit gray, pixel value = class index (0 background, 1 left lung, 2 right lung, 3 heart), at the
 *   model's input size; machine-readable (it looks almost black in a viewer).
 * - Overlay PNG: RGB, enlarged to at least 512 px on the longer side; the contour of each predicted structure in its
 *   colour (left lung blue, right lung green, heart red), 2 px wide, and the ground-truth contours 1 px in yellow
 *   where a ground truth exists; a legend strip below names the colours. A contour pixel of
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

/** Overlays are drawn at least this many pixels on their longer side (a 112-px model input is too small to judge a contour). */
export const OVERLAY_MIN_SIDE = 512;
/** Height of the legend strip under an overlay. */
export const OVERLAY_LEGEND_HEIGHT = 28;

/** A class map enlarged `k` times by repeating pixels (class indices must not be interpolated). */
export function upscaleNearest(map: Uint8Array, w: number, h: number, k: number): Uint8Array {
  if (k === 1) return map;
  const W = w * k;
  const out = new Uint8Array(W * h * k);
  for (let y = 0; y < h * k; y++) {
    const row = Math.floor(y / k) * w;
    for (let x = 0; x < W; x++) out[y * W + x] = map[row + Math.floor(x / k)]!;
  }
  return out;
}

/** SVG legend strip: a swatch per structure and one for the ground truth. */
function legendSvg(width: number, withTruth: boolean): string {
  const names = ['left lung', 'right lung', 'heart'];
  const items = names.map((n, i) => ({ n: `${n} (predicted)`, c: CLASS_COLOURS[i]! }));
  if (withTruth) items.push({ n: 'ground truth', c: TRUTH_COLOUR });
  const step = Math.floor(width / items.length);
  const parts = items.map(
    (it, i) =>
      `<rect x="${8 + i * step}" y="9" width="14" height="10" fill="rgb(${it.c.join(',')})"/>` +
      `<text x="${28 + i * step}" y="18.5" font-size="12">${it.n}</text>`,
  );
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${OVERLAY_LEGEND_HEIGHT}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">${parts.join('')}</svg>`;
}

/**
 * Writes an overlay PNG (atomically): enlarged by the smallest integer factor that makes the longer side at least
 * {@link OVERLAY_MIN_SIDE} (image bicubic, class maps nearest), contours drawn at that size, and a legend strip below.
 */
export async function writeOverlayPng(file: string, image: Uint8Array, w: number, h: number, pred: Uint8Array, truth?: Uint8Array): Promise<void> {
  const k = Math.max(1, Math.ceil(OVERLAY_MIN_SIDE / Math.max(w, h)));
  const [W, H] = [w * k, h * k];
  const big =
    k === 1
      ? image
      : new Uint8Array(
          await sharp(Buffer.from(image.buffer, image.byteOffset, image.byteLength), { raw: { width: w, height: h, channels: 1 } })
            .resize(W, H, { kernel: 'cubic' })
            .extractChannel(0)
            .raw()
            .toBuffer(),
        );
  const rgb = overlayRgb(big, W, H, upscaleNearest(pred, w, h, k), truth && upscaleNearest(truth, w, h, k));
  const png = await sharp(Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength), { raw: { width: W, height: H, channels: 3 } })
    .extend({ bottom: OVERLAY_LEGEND_HEIGHT, background: { r: 255, g: 255, b: 255 } })
    .composite([{ input: Buffer.from(legendSvg(W, truth !== undefined)), top: H, left: 0 }])
    .png()
    .toBuffer();
  await writeFileAtomic(file, png);
}

/**
 * SVG of the per-image Dice distribution: one row per structure on a 0–1 axis, a box from the first to the third
 * quartile with the median, whiskers to min and max, and every image as a dot (deterministic vertical jitter).
 */
export function diceDistributionSvg(rows: readonly { name: string; values: ArrayLike<number>; q1: number; median: number; q3: number; min: number; max: number }[], title = 'Per-image Dice'): string {
  const W = 560;
  const left = 110;
  const right = 20;
  const rowH = 48;
  const top = 36;
  const H = top + rows.length * rowH + 40;
  const x = (v: number) => left + Math.max(0, Math.min(1, v)) * (W - left - right);
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const colours = ['#2878ff', '#28dc50', '#ff3232', '#9467bd', '#8c564b'];
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(title)}</text>`,
  ];
  for (let t = 0; t <= 10; t += 2) {
    const xx = x(t / 10).toFixed(1);
    parts.push(`<line x1="${xx}" y1="${top - 6}" x2="${xx}" y2="${H - 34}" stroke="#ddd"/>`, `<text x="${xx}" y="${H - 18}" text-anchor="middle">${(t / 10).toFixed(1)}</text>`);
  }
  rows.forEach((r, k) => {
    const cy = top + k * rowH + rowH / 2;
    const c = colours[k % colours.length]!;
    parts.push(`<text x="${left - 8}" y="${cy + 4}" text-anchor="end">${esc(r.name)}</text>`);
    if (Number.isFinite(r.median)) {
      parts.push(
        `<line x1="${x(r.min).toFixed(1)}" y1="${cy}" x2="${x(r.max).toFixed(1)}" y2="${cy}" stroke="${c}"/>`,
        `<rect x="${x(r.q1).toFixed(1)}" y="${cy - 12}" width="${Math.max(1, x(r.q3) - x(r.q1)).toFixed(1)}" height="24" fill="${c}" fill-opacity="0.25" stroke="${c}"/>`,
        `<line x1="${x(r.median).toFixed(1)}" y1="${cy - 12}" x2="${x(r.median).toFixed(1)}" y2="${cy + 12}" stroke="${c}" stroke-width="2"/>`,
      );
    }
    for (let i = 0; i < r.values.length; i++) {
      const jitter = (((i * 2654435761) >>> 0) / 2 ** 32 - 0.5) * 16;
      parts.push(`<circle cx="${x(r.values[i]!).toFixed(1)}" cy="${(cy + jitter).toFixed(1)}" r="2" fill="${c}" fill-opacity="0.7"/>`);
    }
  });
  parts.push(`<text x="${(left + W - right) / 2}" y="${H - 4}" text-anchor="middle">Dice</text>`, '</svg>');
  return parts.join('\n');
}
