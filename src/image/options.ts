/**
 * Preprocessing options: the CXformer evaluation transform by default (docs/recipe.md §2.8), validated in one place.
 */
import { ImageError } from './errors.js';
import type { CenterCropRounding, ResampleFilter } from './resize.js';

/** ImageNet channel means (R, G, B). */
export const IMAGENET_MEAN: readonly [number, number, number] = Object.freeze([0.485, 0.456, 0.406]) as readonly [
  number,
  number,
  number,
];
/** ImageNet channel standard deviations (R, G, B). */
export const IMAGENET_STD: readonly [number, number, number] = Object.freeze([0.229, 0.224, 0.225]) as readonly [
  number,
  number,
  number,
];

/** Every knob of {@link preprocessImage}. Sizes are [height, width] when given as pairs. */
export interface PreprocessOptions {
  /** Convert to 8-bit gray like PIL `convert('L')`, then replicate to 3 channels. @default true */
  grayscale: boolean;
  /** OpenCV global histogram equalisation of the 8-bit image (each channel when `grayscale` is false). @default true */
  equalize: boolean;
  /**
   * A number: the shorter side becomes this size (torchvision `Resize(int)`, HF `shortest_edge`).
   * A pair [height, width]: resize to exactly that size (HF `size: {height, width}`). null: no resize.
   * @default 518
   */
  resize: number | [number, number] | null;
  /** Resampling filter (PIL semantics). @default 'bicubic' */
  resample: ResampleFilter;
  /** Center crop: a number for a square, [height, width], or null for none. @default 518 */
  crop: number | [number, number] | null;
  /** Offset rounding of the center crop: 'torchvision' (round half even) or 'hf' (floor). @default 'torchvision' */
  cropRounding: CenterCropRounding;
  /** Per-channel mean subtracted after rescaling. @default ImageNet (0.485, 0.456, 0.406) */
  mean: [number, number, number];
  /** Per-channel std divided by after subtracting the mean. @default ImageNet (0.229, 0.224, 0.225) */
  std: [number, number, number];
  /** Factor from 8-bit values to [0, 1]. @default 1/255 */
  rescale: number;
}

/** The CXformer evaluation transform: gray → equalise → resize shorter side 518 (bicubic) → crop 518 → ImageNet. */
export const defaultPreprocess: Readonly<PreprocessOptions> = Object.freeze({
  grayscale: true,
  equalize: true,
  resize: 518,
  resample: 'bicubic',
  crop: 518,
  cropRounding: 'torchvision',
  mean: [...IMAGENET_MEAN] as [number, number, number],
  std: [...IMAGENET_STD] as [number, number, number],
  rescale: 1 / 255,
});

function received(v: unknown): string {
  return `${v === undefined ? 'undefined' : JSON.stringify(v)} (${Array.isArray(v) ? 'array' : typeof v})`;
}

function invalid(key: string, expected: string, v: unknown): ImageError {
  return new ImageError(undefined, `Expected ${expected} for preprocess option "${key}" but received ${received(v)}`);
}

const isPosInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v > 0;

function sizeOption(key: string, v: unknown): number | [number, number] | null {
  if (v === null) return null;
  if (isPosInt(v)) return v;
  if (Array.isArray(v) && v.length === 2 && v.every(isPosInt)) return [v[0] as number, v[1] as number];
  throw invalid(key, 'a positive integer, [height, width] of positive integers, or null', v);
}

function triple(key: string, v: unknown, positive: boolean): [number, number, number] {
  if (Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number' && Number.isFinite(x) && (!positive || x > 0))) {
    return [v[0] as number, v[1] as number, v[2] as number];
  }
  throw invalid(key, `an array of 3 finite${positive ? ' positive' : ''} numbers`, v);
}

function bool(key: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw invalid(key, 'a boolean', v);
  return v;
}

/**
 * Merges `opts` over {@link defaultPreprocess} and validates every field.
 *
 * @throws ImageError naming the option, what was expected and what was received; unknown keys are rejected
 */
export function resolvePreprocessOptions(opts: Partial<PreprocessOptions> = {}): PreprocessOptions {
  for (const key of Object.keys(opts)) {
    if (!(key in defaultPreprocess)) {
      throw new ImageError(
        undefined,
        `Expected one of ${Object.keys(defaultPreprocess).join(', ')} as a preprocess option but received "${key}"`,
      );
    }
  }
  const m = { ...defaultPreprocess, ...stripUndefined(opts) };
  const resample = m.resample;
  if (resample !== 'bicubic' && resample !== 'nearest') throw invalid('resample', "'bicubic' or 'nearest'", resample);
  const cropRounding = m.cropRounding;
  if (cropRounding !== 'torchvision' && cropRounding !== 'hf') throw invalid('cropRounding', "'torchvision' or 'hf'", cropRounding);
  if (typeof m.rescale !== 'number' || !Number.isFinite(m.rescale) || m.rescale <= 0) {
    throw invalid('rescale', 'a finite positive number', m.rescale);
  }
  return {
    grayscale: bool('grayscale', m.grayscale),
    equalize: bool('equalize', m.equalize),
    resize: sizeOption('resize', m.resize),
    resample,
    crop: sizeOption('crop', m.crop),
    cropRounding,
    mean: triple('mean', m.mean, false),
    std: triple('std', m.std, true),
    rescale: m.rescale,
  };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
