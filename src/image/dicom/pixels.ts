/**
 * Pixel semantics, in float64 per sample:
 * 1. stored value: (word >>> shift) masked to Bits Stored bits, sign-extended when Pixel Representation is 1;
 * 2. modality transform (C.11.1): the Modality LUT Sequence, else Rescale Slope/Intercept, else identity;
 * 3. VOI transform (C.11.2) to 0..1: the VOI LUT Sequence, else Window Center/Width with the VOI LUT Function,
 *    else the min–max of the modality values; or, with `voi: 'none'`, a linear map of the full range the
 *    modality values can take (not of the values found);
 * 4. MONOCHROME1 inverted (1 − y), so that the result always reads as MONOCHROME2 (higher = brighter).
 * RGB samples skip 2–4 and are scaled by 1 / (2^bits − 1).
 */
import type { FrameWords } from './frame.js';
import type { ImageHeader, Lut } from './header.js';

/** Which VOI transform produced the display values. */
export type VoiApplied = 'lut' | 'window' | 'minmax' | 'none';

/** Stored values (step 1), interleaved HWC whatever the planar configuration of the frame. */
export function storedValues(frame: FrameWords, header: ImageHeader): Float64Array {
  const spp = header.samplesPerPixel;
  const n = header.rows * header.columns;
  const { words, shift, bits } = frame;
  const signed = header.pixelRepresentation === 1;
  const range = 2 ** bits;
  const half = 2 ** (bits - 1);
  const out = new Float64Array(n * spp);
  for (let p = 0; p < n; p++) {
    for (let c = 0; c < spp; c++) {
      const w = words[frame.planar ? c * n + p : p * spp + c]!;
      // Division rather than >>> and & keeps 32-bit words exact and positive.
      let v = Math.floor(w / 2 ** shift) % range;
      if (signed && v >= half) v -= range;
      out[p * spp + c] = v;
    }
  }
  return out;
}

/** The smallest and largest stored value `bits` bits can hold. */
function storedRange(bits: number, signed: boolean): [number, number] {
  return signed ? [-(2 ** (bits - 1)), 2 ** (bits - 1) - 1] : [0, 2 ** bits - 1];
}

/** Looks a value up in a LUT: inputs below the first mapped value take the first entry, above the last. */
function lookup(lut: Lut, x: number): number {
  const i = Math.round(x) - lut.firstMapped;
  return lut.data[i < 0 ? 0 : i >= lut.entries ? lut.entries - 1 : i]!;
}

/** Step 2, in place. */
export function applyModality(values: Float64Array, header: ImageHeader): Float64Array {
  if (header.modalityLut !== undefined) {
    const lut = header.modalityLut;
    for (let i = 0; i < values.length; i++) values[i] = lookup(lut, values[i]!);
  } else if (header.rescale !== undefined) {
    const [slope, intercept] = header.rescale;
    for (let i = 0; i < values.length; i++) values[i] = values[i]! * slope + intercept;
  }
  return values;
}

/** The range of the modality values for stored values of `bits` bits (what `voi: 'none'` maps to 0..1). */
export function modalityRange(header: ImageHeader, bits: number): [number, number] {
  if (header.modalityLut !== undefined) return [0, 2 ** header.modalityLut.bits - 1];
  const [lo, hi] = storedRange(bits, header.pixelRepresentation === 1);
  const [slope, intercept] = header.rescale ?? [1, 0];
  const a = lo * slope + intercept;
  const b = hi * slope + intercept;
  return [Math.min(a, b), Math.max(a, b)];
}

/** Whether the window is usable with its function (C.11.2.1.2: width ≥ 1 for LINEAR, > 0 otherwise). */
export function windowValid(header: ImageHeader): boolean {
  if (header.window === undefined) return false;
  const [c, w] = header.window;
  if (!Number.isFinite(c) || !Number.isFinite(w)) return false;
  return header.voiFunction === 'LINEAR' ? w >= 1 : w > 0;
}

/**
 * Step 3 and 4: modality values → display values in 0..1, into `y` (a new array unless given; `y` may be
 * `modality` itself: every transform reads x[i] before writing y[i], and min–max scans all values first).
 *
 * Window formulas (C.11.2.1.2 and C.11.2.1.3), with ymin = 0 and ymax = 1:
 * - LINEAR: x ≤ c − 0.5 − (w−1)/2 → 0; x > c − 0.5 + (w−1)/2 → 1; else ((x − (c − 0.5)) / (w − 1) + 0.5);
 * - LINEAR_EXACT: x ≤ c − w/2 → 0; x > c + w/2 → 1; else (x − c) / w + 0.5;
 * - SIGMOID: 1 / (1 + exp(−4 (x − c) / w)).
 */
export function toDisplay(
  modality: Float64Array,
  header: ImageHeader,
  voi: 'auto' | 'none',
  bits: number,
  y: Float64Array = new Float64Array(modality.length),
): { display: Float64Array; applied: VoiApplied } {
  const n = modality.length;
  let applied: VoiApplied;
  if (voi === 'none') {
    applied = 'none';
    linear(modality, y, ...modalityRange(header, bits));
  } else if (header.voiLut !== undefined) {
    applied = 'lut';
    const lut = header.voiLut;
    const scale = 1 / (2 ** lut.bits - 1);
    for (let i = 0; i < n; i++) y[i] = lookup(lut, modality[i]!) * scale;
  } else if (windowValid(header)) {
    applied = 'window';
    const [c, w] = header.window!;
    if (header.voiFunction === 'LINEAR') {
      const lo = c - 0.5 - (w - 1) / 2;
      const hi = c - 0.5 + (w - 1) / 2;
      for (let i = 0; i < n; i++) {
        const x = modality[i]!;
        y[i] = x <= lo ? 0 : x > hi ? 1 : (x - (c - 0.5)) / (w - 1) + 0.5;
      }
    } else if (header.voiFunction === 'LINEAR_EXACT') {
      const lo = c - w / 2;
      const hi = c + w / 2;
      for (let i = 0; i < n; i++) {
        const x = modality[i]!;
        y[i] = x <= lo ? 0 : x > hi ? 1 : (x - c) / w + 0.5;
      }
    } else {
      for (let i = 0; i < n; i++) y[i] = 1 / (1 + Math.exp((-4 * (modality[i]! - c)) / w));
    }
  } else {
    applied = 'minmax';
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < n; i++) {
      const x = modality[i]!;
      if (x < lo) lo = x;
      if (x > hi) hi = x;
    }
    linear(modality, y, lo, hi);
  }
  if (header.photometric === 'MONOCHROME1') for (let i = 0; i < n; i++) y[i] = 1 - y[i]!;
  return { display: y, applied };
}

/** y = (x − lo) / (hi − lo) clamped to 0..1; all 0 when hi = lo. */
function linear(x: Float64Array, y: Float64Array, lo: number, hi: number): void {
  const span = hi - lo;
  for (let i = 0; i < x.length; i++) {
    const v = span > 0 ? (x[i]! - lo) / span : 0;
    y[i] = v < 0 ? 0 : v > 1 ? 1 : v;
  }
}

/** RGB (and YBR decoded to RGB) samples → 0..1. */
export function rgbToUnit(stored: Float64Array, bits: number): Float64Array {
  const scale = 1 / (2 ** bits - 1);
  const y = new Float64Array(stored.length);
  for (let i = 0; i < stored.length; i++) y[i] = Math.min(1, Math.max(0, stored[i]! * scale));
  return y;
}

/** 0..1 → 0..65535, rounded to nearest. */
export function quantize16(y: Float64Array): Uint16Array {
  const out = new Uint16Array(y.length);
  for (let i = 0; i < y.length; i++) out[i] = Math.round(y[i]! * 65535);
  return out;
}
