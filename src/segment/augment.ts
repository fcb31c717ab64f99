/**
 * Joint augmentation of a gray image and its class map (docs/recipe.md §5.2's train transform, on 8-bit planes at the model
 * input size), then normalisation to the model's 3-channel float input.
 *
 * Per sample, from a seeded stream (mulberry32), in this order:
 * 1. **Affine** with probability `affineP` (0.5): scale U(0.75, 1.25), translation U(−0.1, 0.1)·size per axis,
 *    rotation U(−10°, 10°) about the image centre (albumentations `Affine(scale, translate_percent, rotate)`).
 *    Output pixel centres are mapped back through the inverse transform; the image is sampled bilinearly, the class
 *    map with nearest neighbour; outside the source: 0 (black, background), as albumentations' constant border.
 * 2. **Horizontal flip** with probability `hflipP` (**0 by default**): a mirrored PA radiograph has its heart on the
 *    wrong side (a dextrocardia look-alike), so anatomy does not allow a plain flip. When enabled, the flip also
 *    **swaps left and right lung labels** (1 ↔ 2), so that "left" stays the patient's left as seen in the image.
 * 3. **Intensity jitter** with probability `jitterP` (0.5): brightness ×U(0.8, 1.2), then contrast about the image
 *    mean ×U(0.8, 1.2), clipped to 0..255 (ColorJitter(0.8–1.2) on a gray image: saturation and hue do nothing).
 *
 * Not reproduced: the reference's ElasticTransform(α 1, σ 10), whose displacement (≤ about 1 px) is negligible.
 */
import { IMAGENET_MEAN, IMAGENET_STD } from '../image/options.js';

export interface SegAugmentOptions {
  /** @default 0.5 */
  affineP?: number;
  /** [min, max] scale. @default [0.75, 1.25] */
  scale?: [number, number];
  /** Max translation as a fraction of the size. @default 0.1 */
  translate?: number;
  /** Max rotation in degrees. @default 10 */
  rotate?: number;
  /** Horizontal flip probability (with left/right lung label swap). @default 0 */
  hflipP?: number;
  /** @default 0.5 */
  jitterP?: number;
  /** Brightness and contrast factor range. @default [0.8, 1.2] */
  jitter?: [number, number];
}

export const DEFAULT_SEG_AUGMENT: Required<SegAugmentOptions> = {
  affineP: 0.5,
  scale: [0.75, 1.25],
  translate: 0.1,
  rotate: 10,
  hflipP: 0,
  jitterP: 0.5,
  jitter: [0.8, 1.2],
};

/** Left lung ↔ right lung (classes 1 and 2), others unchanged. */
export const FLIP_LABELS: readonly number[] = [0, 2, 1, 3];

/**
 * Augments one (image, class map) pair of size w×h with `rnd`; returns new planes.
 * @param flipLabels class permutation applied with a horizontal flip (default: swap 1 and 2)
 */
export function augmentPair(
  image: Uint8Array,
  mask: Uint8Array,
  w: number,
  h: number,
  rnd: () => number,
  opts: SegAugmentOptions = {},
  flipLabels: readonly number[] = FLIP_LABELS,
): { image: Uint8Array; mask: Uint8Array } {
  const o = { ...DEFAULT_SEG_AUGMENT, ...opts };
  let img = image;
  let m = mask;
  const u = (lo: number, hi: number) => lo + (hi - lo) * rnd();
  if (rnd() < o.affineP) {
    const s = u(o.scale[0], o.scale[1]);
    const tx = u(-o.translate, o.translate) * w;
    const ty = u(-o.translate, o.translate) * h;
    const a = (u(-o.rotate, o.rotate) * Math.PI) / 180;
    ({ image: img, mask: m } = affinePair(img, m, w, h, s, a, tx, ty));
  }
  if (rnd() < o.hflipP) {
    const fi = new Uint8Array(w * h);
    const fm = new Uint8Array(w * h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        fi[y * w + x] = img[y * w + (w - 1 - x)]!;
        fm[y * w + x] = flipLabels[m[y * w + (w - 1 - x)]!] ?? m[y * w + (w - 1 - x)]!;
      }
    }
    img = fi;
    m = fm;
  }
  if (rnd() < o.jitterP) {
    const b = u(o.jitter[0], o.jitter[1]);
    const c = u(o.jitter[0], o.jitter[1]);
    let sum = 0;
    for (let i = 0; i < img.length; i++) sum += Math.min(255, img[i]! * b);
    const mean = sum / img.length;
    const out = new Uint8Array(img.length);
    for (let i = 0; i < img.length; i++) {
      const v = Math.min(255, img[i]! * b);
      out[i] = Math.max(0, Math.min(255, Math.round(mean + (v - mean) * c)));
    }
    img = out;
  }
  return { image: img === image ? image.slice() : img, mask: m === mask ? mask.slice() : m };
}

/**
 * Affine warp about the centre: forward map p' = R(a)·s·(p − c) + c + t, sampled by inverting it at each output
 * pixel centre (x + 0.5, y + 0.5). Image bilinear, mask nearest; outside = 0.
 */
export function affinePair(image: Uint8Array, mask: Uint8Array, w: number, h: number, s: number, a: number, tx: number, ty: number): { image: Uint8Array; mask: Uint8Array } {
  const cx = w / 2;
  const cy = h / 2;
  const cos = Math.cos(a) / s;
  const sin = Math.sin(a) / s;
  const oi = new Uint8Array(w * h);
  const om = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const dx = x + 0.5 - cx - tx;
      const dy = y + 0.5 - cy - ty;
      // inverse rotation by a and scale 1/s
      const sx = cos * dx + sin * dy + cx;
      const sy = -sin * dx + cos * dy + cy;
      const k = y * w + x;
      // nearest for the mask
      const nx = Math.floor(sx);
      const ny = Math.floor(sy);
      if (nx >= 0 && ny >= 0 && nx < w && ny < h) om[k] = mask[ny * w + nx]!;
      // bilinear for the image (pixel centres at i + 0.5)
      const fx = sx - 0.5;
      const fy = sy - 0.5;
      const x0 = Math.floor(fx);
      const y0 = Math.floor(fy);
      const ax = fx - x0;
      const ay = fy - y0;
      let v = 0;
      const tap = (xx: number, yy: number) => (xx >= 0 && yy >= 0 && xx < w && yy < h ? image[yy * w + xx]! : 0);
      if (x0 >= -1 && y0 >= -1 && x0 < w && y0 < h) {
        v = (1 - ay) * ((1 - ax) * tap(x0, y0) + ax * tap(x0 + 1, y0)) + ay * ((1 - ax) * tap(x0, y0 + 1) + ax * tap(x0 + 1, y0 + 1));
      }
      oi[k] = Math.round(v);
    }
  }
  return { image: oi, mask: om };
}

/**
 * Gray 8-bit planes → normalised NCHW float32 (gray replicated to 3 channels; ·1/255, then (x − mean_c)/std_c in
 * float32, as src/image/preprocess.ts).
 */
export function normalizeBatch(planes: readonly Uint8Array[], w: number, h: number, mean: readonly number[] = IMAGENET_MEAN, std: readonly number[] = IMAGENET_STD): Float32Array {
  const hw = w * h;
  const out = new Float32Array(planes.length * 3 * hw);
  const lut = [0, 1, 2].map((c) => {
    const t = new Float32Array(256);
    const m = Math.fround(mean[c]!);
    const sd = Math.fround(std[c]!);
    for (let v = 0; v < 256; v++) t[v] = Math.fround(Math.fround(v * (1 / 255)) - m) / sd;
    return t;
  });
  planes.forEach((p, n) => {
    for (let c = 0; c < 3; c++) {
      const t = lut[c]!;
      const base = (n * 3 + c) * hw;
      for (let i = 0; i < hw; i++) out[base + i] = t[p[i]!]!;
    }
  });
  return out;
}
