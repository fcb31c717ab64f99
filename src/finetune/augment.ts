/**
 * The classification fine-tuning train transform of docs/recipe.md §5.1, as crop plans for the native augmentation executor
 * (crates/core/src/augment/), which applies them on the training device. After decoding to 8-bit gray (PIL "L")
 * and the optional histogram equalisation (src/cache/planes.ts):
 *   RandomResizedCrop(S, scale (0.08, 1), ratio (3/4, 4/3), bicubic) → RandomHorizontalFlip(0.5) →
 *   RandomAffine(degrees 20, translate (0.1, 0.1), scale (0.8, 1.2); nearest, fill 0) →
 *   RandomApply(ColorJitter(0.4, 0.4, 0.2, 0.1), p 0.5) → RandomApply(GaussianBlur(9, σ ~ U(0.1, 2)), p 0.5)
 *   (standard semantics here, unlike pretraining's inverted blur) → Grayscale(3) → ToTensor → ImageNet Normalize.
 * No RandomGrayscale and no solarisation. Every draw comes from rngFor(seed, 0, step, 'crops', k) for image k of
 * scheduled step `step`, so a resumed run augments exactly as the uninterrupted one.
 */
import { AUGMENT, colorJitterParams, randomAffineParams, randomResizedCrop, type CropParams, type ImageCrops } from '../augment/plan.js';
import { pyRound } from '../augment/pymath.js';
import { PURPOSE, rngFor, type Rng } from '../augment/rng.js';

/** docs/recipe.md §5.1 train-transform constants. */
export const FINETUNE_AUGMENT = {
  scale: [0.08, 1.0] as [number, number],
  flip: 0.5,
  affine: { degrees: 20, translate: [0.1, 0.1] as [number, number], scale: [0.8, 1.2] as [number, number] },
  jitter: 0.5,
  jitterStrength: { brightness: 0.4, contrast: 0.4, saturation: 0.2, hue: 0.1 },
  blur: 0.5,
  blurSigma: [0.1, 2.0] as [number, number],
} as const;

/**
 * One §5.1 train crop of an imgH × imgW source at side `size`, drawn in the transform's order. `scale` replaces
 * RandomResizedCrop's area range (§5.1: 0.08–1).
 */
export function planFinetuneCrop(rng: Rng, imgH: number, imgW: number, size: number, scale: [number, number] = FINETUNE_AUGMENT.scale): CropParams {
  const b = randomResizedCrop(rng, imgH, imgW, scale, AUGMENT.ratio);
  const flip = rng.bernoulli(FINETUNE_AUGMENT.flip);
  const affine = randomAffineParams(rng, FINETUNE_AUGMENT.affine, size);
  const jitter = rng.bernoulli(FINETUNE_AUGMENT.jitter) ? colorJitterParams(rng, FINETUNE_AUGMENT.jitterStrength) : null;
  const blurSigma = rng.bernoulli(FINETUNE_AUGMENT.blur) ? rng.uniform(FINETUNE_AUGMENT.blurSigma[0], FINETUNE_AUGMENT.blurSigma[1]) : null;
  return { box: [b.top, b.left, b.height, b.width], flip, affine, jitter, grayscale: false, blurSigma, solarize: false };
}

/**
 * Train-transform variants (`--augment`):
 * - `spec`: the §5.1 transform above;
 * - `light`: the same without the RandomAffine (crop, flip, colour jitter, blur; the same draws otherwise);
 * - `none`: no random op: the centred square of side min(H, W) (offsets rounded as torchvision's CenterCrop)
 *   resized to S — the evaluation transform's resize-shorter-side + centre crop up to resampling order; for sanity
 *   checks (the loop must fit a small train set) and ablations.
 */
export const FINETUNE_AUGMENTS = ['spec', 'light', 'none'] as const;
export type FinetuneAugment = (typeof FINETUNE_AUGMENTS)[number];

/** The whole-image (centred square) plan of `none`. */
export function centreCrop(imgH: number, imgW: number): CropParams {
  const side = Math.min(imgH, imgW);
  const top = pyRound((imgH - side) / 2);
  const left = pyRound((imgW - side) / 2);
  return { box: [top, left, side, side], flip: false, affine: null, jitter: null, grayscale: false, blurSigma: null, solarize: false };
}

/** The crop plans of one training batch (one global crop per image, no locals). */
export function planFinetuneBatch(
  seed: number,
  step: number,
  sizes: Array<[number, number]>,
  size: number,
  scale: [number, number] = FINETUNE_AUGMENT.scale,
  augment: FinetuneAugment = 'spec',
): ImageCrops[] {
  return sizes.map(([h, w], k) => {
    if (augment === 'none') return { globals: [centreCrop(h, w)], locals: [] };
    const c = planFinetuneCrop(rngFor(seed, 0, step, PURPOSE.crops, k), h, w, size, scale);
    return { globals: [augment === 'light' ? { ...c, affine: null } : c], locals: [] };
  });
}
