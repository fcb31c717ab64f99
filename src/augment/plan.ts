/**
 * Multi-crop augmentation plans (docs/recipe.md §4; CXformer dinov2/data/augmentations.py with torchvision semantics).
 * The planner draws every random parameter of every crop; the native executor applies them, per crop, in the
 * reference order:
 *   crop `box` of the 3-channel gray source → bicubic resize to the crop size → horizontal flip → affine
 *   (globals only; nearest, fill 0) → colour jitter (ops in `order`) → grayscale → Gaussian blur (9×9, σ) →
 *   solarize (threshold 128) → ToTensor/Normalize.
 */
import { pyRound } from './pymath.js';
import { PURPOSE, rngFor, type Rng } from './rng.js';

/** Parameters of one crop. Field names are a contract with the Rust executor (serde camelCase). */
export interface CropParams {
  /** top, left, height, width in source pixels (RandomResizedCrop.get_params order i, j, h, w). */
  box: [number, number, number, number];
  flip: boolean;
  /** RandomAffine: angle in degrees, translate (tx, ty) in output pixels, scale; no shear. null = not applied. */
  affine: null | { angle: number; translate: [number, number]; scale: number };
  /** ColorJitter, null when RandomApply(p 0.8) skipped it. order: op ids 0 brightness, 1 contrast, 2 saturation, 3 hue. */
  jitter: null | { order: number[]; brightness: number; contrast: number; saturation: number; hue: number };
  grayscale: boolean;
  /** Gaussian blur σ, null = no blur. */
  blurSigma: number | null;
  solarize: boolean;
}

export interface ImageCrops {
  globals: CropParams[];
  locals: CropParams[];
}

export interface MultiCropConfig {
  globalSize: number;
  localSize: number;
  /** 1 or 2: global crop 1 and global crop 2 have different blur/solarize rules. */
  nGlobal: number;
  nLocal: number;
  globalScale: [number, number];
  localScale: [number, number];
  /** RandomAffine on the global crops (CXformer: on). */
  affine: boolean;
}

/** CXformer multi-crop: 2 × 518 px (scale 0.32–1) and 8 × 98 px (scale 0.05–0.32), affine on globals. */
export const cxformerMultiCrop: MultiCropConfig = {
  globalSize: 518,
  localSize: 98,
  nGlobal: 2,
  nLocal: 8,
  globalScale: [0.32, 1.0],
  localScale: [0.05, 0.32],
  affine: true,
};

/**
 * Fixed probabilities and ranges of the reference pipeline. The blur probabilities are the EFFECTIVE ones: the
 * reference's `GaussianBlur(p)` passes 1 − p to RandomApply, so its nominal 1.0 / 0.1 / 0.5 become 0 / 0.9 / 0.5
 * (docs/recipe.md §4 CODE-QUIRK, §7 item 5).
 */
export const AUGMENT = {
  flip: 0.5,
  jitter: 0.8,
  grayscale: 0.2,
  blurGlobal1: 0,
  blurGlobal2: 0.9,
  blurLocal: 0.5,
  blurSigma: [0.1, 2.0] as const,
  solarizeGlobal2: 0.2,
  jitterStrength: { brightness: 0.4, contrast: 0.4, saturation: 0.2, hue: 0.1 },
  affine: { degrees: 20, translate: [0.1, 0.1] as [number, number], scale: [0.8, 1.2] as [number, number] },
  ratio: [3 / 4, 4 / 3] as [number, number],
} as const;

export interface CropBox {
  top: number;
  left: number;
  height: number;
  width: number;
}

/**
 * torchvision `RandomResizedCrop.get_params`: up to 10 tries of area = U(scale)·H·W, aspect = exp(U(log ratio)),
 * w = round(√(area·aspect)), h = round(√(area/aspect)) (Python round); accepted if 0 < w ≤ W and 0 < h ≤ H, then
 * top ∈ [0, H − h] and left ∈ [0, W − w] uniform (top drawn first). Fallback: a centred crop of the whole image,
 * with its aspect clamped into `ratio` (w = W, h = round(W / min ratio) if too tall; h = H, w = round(H·max ratio)
 * if too wide), top = (H − h)//2, left = (W − w)//2.
 */
export function randomResizedCrop(
  rng: Rng,
  imgH: number,
  imgW: number,
  scale: [number, number],
  ratio: [number, number] = AUGMENT.ratio,
): CropBox {
  if (!Number.isSafeInteger(imgH) || !Number.isSafeInteger(imgW) || imgH < 1 || imgW < 1) {
    throw new RangeError(`randomResizedCrop: image size must be positive integers, got ${imgH}×${imgW}`);
  }
  const area = imgH * imgW;
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * rng.uniform(scale[0], scale[1]);
    const aspect = rng.logUniform(ratio[0], ratio[1]);
    const width = pyRound(Math.sqrt(targetArea * aspect));
    const height = pyRound(Math.sqrt(targetArea / aspect));
    if (width > 0 && width <= imgW && height > 0 && height <= imgH) {
      const top = rng.int(0, imgH - height + 1);
      const left = rng.int(0, imgW - width + 1);
      return { top, left, height, width };
    }
  }
  const inRatio = imgW / imgH;
  let width = imgW;
  let height = imgH;
  if (inRatio < Math.min(...ratio)) height = pyRound(width / Math.min(...ratio));
  else if (inRatio > Math.max(...ratio)) width = pyRound(height * Math.max(...ratio));
  return { top: Math.floor((imgH - height) / 2), left: Math.floor((imgW - width) / 2), height, width };
}

export interface AffineOptions {
  /** Angle range ±degrees. */
  degrees: number;
  /** Maximum translation as fractions of (width, height). */
  translate: [number, number];
  scale: [number, number];
}

/**
 * torchvision `RandomAffine.get_params` without shear, drawn in its order: angle ~ U(−d, d);
 * tx = round(U(−t₀·W, t₀·W)), ty = round(U(−t₁·H, t₁·H)) (Python round); scale ~ U(scale).
 * `outSize` is the crop side, or [width, height] as torchvision's `img_size`.
 */
export function randomAffineParams(
  rng: Rng,
  opts: AffineOptions = AUGMENT.affine,
  outSize: number | [number, number] = cxformerMultiCrop.globalSize,
): { angle: number; translate: [number, number]; scale: number } {
  const [w, h] = typeof outSize === 'number' ? [outSize, outSize] : outSize;
  const angle = rng.uniform(-opts.degrees, opts.degrees);
  const maxDx = opts.translate[0] * w;
  const maxDy = opts.translate[1] * h;
  const tx = pyRound(rng.uniform(-maxDx, maxDx));
  const ty = pyRound(rng.uniform(-maxDy, maxDy));
  const scale = rng.uniform(opts.scale[0], opts.scale[1]);
  return { angle, translate: [tx + 0, ty + 0], scale }; // + 0 turns −0 into 0
}

/**
 * torchvision `ColorJitter.get_params`: a random order of the four ops, then brightness, contrast and saturation
 * factors ~ U(max(0, 1 − s), 1 + s) and hue ~ U(−h, h).
 */
export function colorJitterParams(
  rng: Rng,
  s: { brightness: number; contrast: number; saturation: number; hue: number } = AUGMENT.jitterStrength,
): NonNullable<CropParams['jitter']> {
  const order = rng.permutation(4);
  const factor = (v: number) => rng.uniform(Math.max(0, 1 - v), 1 + v);
  const brightness = factor(s.brightness);
  const contrast = factor(s.contrast);
  const saturation = factor(s.saturation);
  const hue = rng.uniform(-s.hue, s.hue);
  return { order, brightness, contrast, saturation, hue };
}

type CropKind = 'global1' | 'global2' | 'local';

/** One crop: geometry (RRC, flip, affine) then colour (jitter, grayscale), blur and solarize, in pipeline order. */
function planCrop(rng: Rng, imgH: number, imgW: number, kind: CropKind, cfg: MultiCropConfig): CropParams {
  const isGlobal = kind !== 'local';
  const b = randomResizedCrop(rng, imgH, imgW, isGlobal ? cfg.globalScale : cfg.localScale);
  const flip = rng.bernoulli(AUGMENT.flip);
  const affine = isGlobal && cfg.affine ? randomAffineParams(rng, AUGMENT.affine, cfg.globalSize) : null;
  const jitter = rng.bernoulli(AUGMENT.jitter) ? colorJitterParams(rng) : null;
  const grayscale = rng.bernoulli(AUGMENT.grayscale);
  const pBlur = kind === 'global1' ? AUGMENT.blurGlobal1 : kind === 'global2' ? AUGMENT.blurGlobal2 : AUGMENT.blurLocal;
  const blurSigma = rng.bernoulli(pBlur) ? rng.uniform(AUGMENT.blurSigma[0], AUGMENT.blurSigma[1]) : null;
  const solarize = kind === 'global2' ? rng.bernoulli(AUGMENT.solarizeGlobal2) : false;
  return { box: [b.top, b.left, b.height, b.width], flip, affine, jitter, grayscale, blurSigma, solarize };
}

/**
 * All crops of one source image of imgH × imgW pixels, drawn from `rng` in the reference order: global crop 1,
 * global crop 2, then the locals.
 */
export function planImageCrops(rng: Rng, imgH: number, imgW: number, cfg: MultiCropConfig = cxformerMultiCrop): ImageCrops {
  if (cfg.nGlobal !== 1 && cfg.nGlobal !== 2) throw new RangeError(`nGlobal must be 1 or 2 (DINOv2 layout), got ${cfg.nGlobal}`);
  if (!Number.isSafeInteger(cfg.nLocal) || cfg.nLocal < 0) throw new RangeError(`nLocal must be an integer ≥ 0, got ${cfg.nLocal}`);
  const kinds: CropKind[] = ['global1', 'global2'];
  const globals = kinds.slice(0, cfg.nGlobal).map((k) => planCrop(rng, imgH, imgW, k, cfg));
  const locals = Array.from({ length: cfg.nLocal }, () => planCrop(rng, imgH, imgW, 'local', cfg));
  return { globals, locals };
}

/**
 * The crops of a per-rank batch at one iteration. Image k uses its own stream rngFor(seed, rank, iteration,
 * 'crops', k), so a plan depends only on (seed, rank, iteration, k, its size, cfg): not on other images,
 * other iterations or the order of computation. `sizes[k]` is [height, width] of source image k.
 */
export function planBatch(
  seed: number,
  rank: number,
  iteration: number,
  sizes: Array<[number, number]>,
  cfg: MultiCropConfig = cxformerMultiCrop,
): ImageCrops[] {
  return sizes.map(([h, w], k) => planImageCrops(rngFor(seed, rank, iteration, PURPOSE.crops, k), h, w, cfg));
}
