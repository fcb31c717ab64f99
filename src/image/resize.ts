/**
 * PIL-compatible resampling of single-channel planes, plus torchvision-style shorter-side resize and center crop.
 *
 * Planes are row-major Float32Arrays: `plane[y * width + x]`.
 *
 * Bicubic follows Pillow's src/libImaging/Resample.c (`Image.resize(size, BICUBIC)`):
 * - Keys cubic with a = −0.5 and support 2. When downsampling by a factor s = in/out > 1 the kernel is stretched
 *   by s (support 2s, argument divided by s): an antialiasing, area-aware filter, unlike cv2.resize or
 *   torch interpolate without `antialias=True`.
 * - Output pixel i is centred at (i + 0.5)·s in input coordinates; taps run from
 *   xmin = trunc(center − support + 0.5) (clamped to 0) to xmax = trunc(center + support + 0.5) (clamped to the
 *   input size); weights are normalised to sum to 1 over the taps that fall inside the image (no padding).
 * - Separable: a horizontal pass, then a vertical pass; a pass whose size does not change is skipped. (Pillow 13
 *   sometimes runs the vertical pass first: see {@link ResizeOptions.passOrder}.)
 * - For 8-bit images ("L"), PIL quantises the normalised weights to 22-bit fixed point and rounds + clips to
 *   0..255 after *each* pass. `roundToUint8: true` (the default) reproduces that bit for bit and requires the
 *   input to hold integers 0..255. `roundToUint8: false` is PIL's float ("F") path: double accumulation,
 *   float32 results, no clipping.
 *
 * Checked bit for bit against Pillow 11.2.1 (default pass order) and 13.0.0 (`passOrder: 'pillow13'`), 8-bit and
 * float, on random images resized up, down and mixed.
 *
 * Nearest follows Pillow's `ImagingScaleAffine`: source index = trunc(x_o) with x_o starting at s/2 and
 * incremented by s per output pixel (accumulated in double, like the C loop).
 */
import { ImageError } from './errors.js';

/** Resampling filter. */
export type ResampleFilter = 'bicubic' | 'nearest';

/** Options for {@link resizePlane}. */
export interface ResizeOptions {
  /** @default 'bicubic' */
  filter?: ResampleFilter;
  /**
   * Round and clip to 0..255 after each pass with PIL's 8-bit fixed-point arithmetic (input must hold integers
   * 0..255). Set false to resample in float like PIL mode "F". Irrelevant for 'nearest'.
   * @default true
   */
  roundToUint8?: boolean;
  /**
   * Order of the two bicubic passes. 'horizontal-first': Pillow up to 12.x (the versions current when the
   * CXformer reference was released, 2025). 'pillow13': Pillow 13's rule, which runs the vertical pass first when the height shrinks by more than
   * twice as many pixels as the width does (`inH − outH > 0 && inH − outH > 2·(inW − outW)`); results then differ
   * by rounding (±1 grey level on some pixels with roundToUint8). Both agree for any aspect-preserving resize of
   * an image whose height is at most twice its width.
   * @default 'horizontal-first'
   */
  passOrder?: 'horizontal-first' | 'pillow13';
}

/** A single-channel plane with its size. */
export interface Plane {
  /** Row-major samples, length width·height. */
  data: Float32Array;
  width: number;
  height: number;
}

/** Keys cubic convolution kernel with a = −0.5, written exactly as Pillow's `bicubic_filter`. */
function bicubic(x: number): number {
  const a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}
const BICUBIC_SUPPORT = 2.0;

/** Fixed-point precision of Pillow's 8-bit resampling (32 − 8 − 2). */
const PRECISION_BITS = 22;

/** Per-output-pixel taps: input start index, tap count, and normalised weights (ksize slots per pixel). */
interface Coeffs {
  ksize: number;
  start: Int32Array;
  count: Int32Array;
  weights: Float64Array;
}

/** Pillow's `precompute_coeffs` for the box [0, inSize) → outSize with the bicubic filter. */
function precomputeCoeffs(inSize: number, outSize: number): Coeffs {
  const scale = inSize / outSize;
  const filterscale = scale < 1.0 ? 1.0 : scale;
  const support = BICUBIC_SUPPORT * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Float64Array(outSize * ksize);
  const ss = 1.0 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0.0;
    const base = xx * ksize;
    for (let x = 0; x < xmax; x++) {
      const w = bicubic((x + xmin - center + 0.5) * ss);
      weights[base + x] = w;
      ww += w;
    }
    if (ww !== 0.0) for (let x = 0; x < xmax; x++) weights[base + x] = weights[base + x]! / ww;
    start[xx] = xmin;
    count[xx] = xmax;
  }
  return { ksize, start, count, weights };
}

/** Pillow's `normalize_coeffs_8bpc`: weights to 22-bit fixed point, rounded half away from zero. */
function fixedPointWeights(c: Coeffs): Float64Array {
  const out = new Float64Array(c.weights.length);
  const one = 2 ** PRECISION_BITS;
  for (let k = 0; k < c.weights.length; k++) {
    const w = c.weights[k]!;
    out[k] = w < 0 ? Math.trunc(-0.5 + w * one) : Math.trunc(0.5 + w * one);
  }
  return out;
}

/** Pillow's `clip8`: the fixed-point sum (already offset by half) shifted down and clipped to 0..255. */
function clip8(ss: number): number {
  const v = Math.floor(ss / 2 ** PRECISION_BITS);
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/**
 * Horizontal bicubic pass (Pillow `ImagingResampleHorizontal_*`).
 *
 * # Shapes
 * src: [height, inWidth] → [height, outWidth]
 */
function horizontalPass(src: Float32Array, inWidth: number, outWidth: number, height: number, roundToUint8: boolean): Float32Array {
  const c = precomputeCoeffs(inWidth, outWidth);
  const k = roundToUint8 ? fixedPointWeights(c) : c.weights;
  const half = roundToUint8 ? 2 ** (PRECISION_BITS - 1) : 0; // fixed-point rounding offset
  const out = new Float32Array(outWidth * height);
  for (let y = 0; y < height; y++) {
    const row = y * inWidth;
    for (let xx = 0; xx < outWidth; xx++) {
      const first = row + c.start[xx]!;
      const n = c.count[xx]!;
      const base = xx * c.ksize;
      let ss = half;
      for (let t = 0; t < n; t++) ss += src[first + t]! * k[base + t]!;
      out[y * outWidth + xx] = roundToUint8 ? clip8(ss) : ss;
    }
  }
  return out;
}

/**
 * Vertical bicubic pass (Pillow `ImagingResampleVertical_*`).
 *
 * # Shapes
 * src: [inHeight, width] → [outHeight, width]
 */
function verticalPass(src: Float32Array, width: number, inHeight: number, outHeight: number, roundToUint8: boolean): Float32Array {
  const c = precomputeCoeffs(inHeight, outHeight);
  const k = roundToUint8 ? fixedPointWeights(c) : c.weights;
  const half = roundToUint8 ? 2 ** (PRECISION_BITS - 1) : 0;
  const out = new Float32Array(width * outHeight);
  for (let yy = 0; yy < outHeight; yy++) {
    const first = c.start[yy]! * width;
    const n = c.count[yy]!;
    const base = yy * c.ksize;
    for (let x = 0; x < width; x++) {
      let ss = half;
      for (let t = 0; t < n; t++) ss += src[first + t * width + x]! * k[base + t]!;
      out[yy * width + x] = roundToUint8 ? clip8(ss) : ss;
    }
  }
  return out;
}

/** Source indices for PIL's nearest-neighbour scaling (−1 where the index falls outside the image). */
function nearestIndices(inSize: number, outSize: number): Int32Array {
  const a = inSize / outSize;
  const idx = new Int32Array(outSize);
  let xo = 0 + a * 0.5;
  for (let x = 0; x < outSize; x++) {
    const xin = xo < 0.0 ? -1 : Math.trunc(xo);
    idx[x] = xin >= 0 && xin < inSize ? xin : -1;
    xo += a;
  }
  return idx;
}

function checkSize(what: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 1) {
    throw new ImageError(undefined, `Expected a positive integer for ${what} but received ${String(v)}`);
  }
}

/**
 * Resizes a plane to `outWidth`×`outHeight` like PIL's `Image.resize((outWidth, outHeight), filter)`.
 *
 * # Shapes
 * plane: [height, width] row-major → returns [outHeight, outWidth] row-major (a new array, even when the size
 * is unchanged).
 *
 * @throws ImageError on non-positive sizes, a length mismatch, or (with roundToUint8) samples that are not
 *   integers in 0..255
 */
export function resizePlane(
  plane: Float32Array,
  width: number,
  height: number,
  outWidth: number,
  outHeight: number,
  opts: ResizeOptions = {},
): Float32Array {
  checkSize('width', width);
  checkSize('height', height);
  checkSize('output width', outWidth);
  checkSize('output height', outHeight);
  if (plane.length !== width * height) {
    throw new ImageError(undefined, `Expected a plane of ${width}×${height} = ${width * height} samples but received ${plane.length}`);
  }
  const filter = opts.filter ?? 'bicubic';
  if (filter === 'nearest') {
    const xs = nearestIndices(width, outWidth);
    const ys = nearestIndices(height, outHeight);
    const out = new Float32Array(outWidth * outHeight); // out-of-range taps (never for plain scaling) stay 0
    for (let y = 0; y < outHeight; y++) {
      const sy = ys[y]!;
      if (sy < 0) continue;
      for (let x = 0; x < outWidth; x++) {
        const sx = xs[x]!;
        if (sx >= 0) out[y * outWidth + x] = plane[sy * width + sx]!;
      }
    }
    return out;
  }
  if (filter !== 'bicubic') {
    throw new ImageError(undefined, `Expected resampling filter 'bicubic' or 'nearest' but received ${String(filter)}`);
  }
  const roundToUint8 = opts.roundToUint8 ?? true;
  if (roundToUint8) {
    for (let k = 0; k < plane.length; k++) {
      const v = plane[k]!;
      if (!(v >= 0 && v <= 255 && Number.isInteger(v))) {
        throw new ImageError(
          undefined,
          `Expected 8-bit samples (integers 0..255) for roundToUint8 resampling but received ${v} at index ${k}; ` +
            'pass roundToUint8: false to resample floats',
        );
      }
    }
  }
  const passOrder = opts.passOrder ?? 'horizontal-first';
  if (passOrder !== 'horizontal-first' && passOrder !== 'pillow13') {
    throw new ImageError(undefined, `Expected passOrder 'horizontal-first' or 'pillow13' but received ${String(passOrder)}`);
  }
  const dh = height - outHeight;
  const verticalFirst = passOrder === 'pillow13' && dh > 0 && dh > (width - outWidth) * 2;
  // Each pass runs only when its size changes (as Pillow does).
  let cur = plane;
  if (verticalFirst) {
    cur = verticalPass(cur, width, height, outHeight, roundToUint8); // [outHeight, width]
    if (outWidth !== width) cur = horizontalPass(cur, width, outWidth, outHeight, roundToUint8);
  } else {
    let w = width;
    if (outWidth !== width) {
      cur = horizontalPass(cur, width, outWidth, height, roundToUint8); // [height, outWidth]
      w = outWidth;
    }
    if (outHeight !== height) cur = verticalPass(cur, w, height, outHeight, roundToUint8);
  }
  return cur === plane ? Float32Array.from(plane) : cur;
}

/**
 * The output size of torchvision's `Resize(size)` (int): the shorter side becomes `size` and the longer side
 * `int(size · long / short)` (truncated), preserving orientation. Hugging Face's `shortest_edge` is the same.
 */
export function shorterSideSize(width: number, height: number, size: number): { width: number; height: number } {
  checkSize('width', width);
  checkSize('height', height);
  checkSize('resize size', size);
  if (width <= height) return { width: size, height: Math.trunc((size * height) / width) };
  return { width: Math.trunc((size * width) / height), height: size };
}

/**
 * Resizes so the shorter side equals `size` (see {@link shorterSideSize}), like torchvision `Resize(size)` on a
 * PIL image. An image already at that size is returned as a copy.
 */
export function resizeShorterSide(plane: Float32Array, width: number, height: number, size: number, opts: ResizeOptions = {}): Plane {
  const out = shorterSideSize(width, height, size);
  return { data: resizePlane(plane, width, height, out.width, out.height, opts), width: out.width, height: out.height };
}

/** How the center-crop offset is rounded when (size − crop) is odd. */
export type CenterCropRounding = 'torchvision' | 'hf';

/** Python's `round()`: half to even. */
function pyRound(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d !== 0.5) return Math.round(x);
  return f % 2 === 0 ? f : f + 1;
}

/**
 * Top-left corner of a centered crop: torchvision uses `int(round((size − crop) / 2))` (Python round, half to
 * even: an excess of 1 gives 0, 3 gives 2, 5 gives 2); Hugging Face image processors use `(size − crop) // 2`.
 *
 * @throws ImageError if the crop is larger than the image
 */
export function centerCropOffsets(
  width: number,
  height: number,
  cropWidth: number,
  cropHeight: number,
  rounding: CenterCropRounding = 'torchvision',
): { left: number; top: number } {
  checkSize('crop width', cropWidth);
  checkSize('crop height', cropHeight);
  if (cropWidth > width || cropHeight > height) {
    throw new ImageError(
      undefined,
      `Expected a center crop no larger than the image (${width}×${height}) but received ${cropWidth}×${cropHeight}`,
    );
  }
  const offset = (excess: number): number => (rounding === 'hf' ? Math.floor(excess / 2) : pyRound(excess / 2));
  return { left: offset(width - cropWidth), top: offset(height - cropHeight) };
}

/**
 * Crops the centered `cropWidth`×`cropHeight` window (see {@link centerCropOffsets}).
 *
 * # Shapes
 * plane: [height, width] → [cropHeight, cropWidth], row-major.
 *
 * @throws ImageError if the crop is larger than the image
 */
export function centerCrop(
  plane: Float32Array,
  width: number,
  height: number,
  cropWidth: number,
  cropHeight: number,
  rounding: CenterCropRounding = 'torchvision',
): Plane {
  if (plane.length !== width * height) {
    throw new ImageError(undefined, `Expected a plane of ${width}×${height} = ${width * height} samples but received ${plane.length}`);
  }
  const { left, top } = centerCropOffsets(width, height, cropWidth, cropHeight, rounding);
  const out = new Float32Array(cropWidth * cropHeight);
  for (let y = 0; y < cropHeight; y++) {
    const from = (top + y) * width + left;
    out.set(plane.subarray(from, from + cropWidth), y * cropWidth);
  }
  return { data: out, width: cropWidth, height: cropHeight };
}
