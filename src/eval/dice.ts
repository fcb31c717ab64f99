/**
 * Segmentation metrics (docs/recipe.md §5.2).
 *
 * - Hard Dice from label maps (0 background, 1..K foreground structures; the CheXmask map is 1 left lung, 2 right lung,
 *   3 heart). Predictions are argmax label maps (`argmaxLabelMap`).
 *   - **Pooled** (the reference metric, "global Dice"): Dice_c = Σ_images 2|P∩G| / Σ_images (|P| + |G|) over all pixels
 *     of the evaluation set; when the pooled union is empty (Σ (|P| + |G|) = 0) Dice_c = 1. `dice_avg` = mean over the
 *     K foreground classes.
 *   - **Per image**: Dice of each image (empty union = 1), with the mean and the distribution (min, quartiles, median,
 *     max; numpy-linear percentiles).
 *   - **Merged structures**: a structure made of several classes (e.g. "lungs" = left ∪ right lung: P = pred ∈ {1, 2},
 *     G = truth ∈ {1, 2}), since how CXformer combined the lungs is UNVERIFIED (docs/recipe.md §5.2). Left/right confusions count
 *     as errors for the separate lungs but not for the merged structure.
 * - Soft Dice and the training loss `ce_dice_loss` = 0.5·CE + 0.5·(1 − mean_{b,c} Dice_soft(b, c)), Dice_soft(b, c) =
 *   (2 Σ p·y + ε) / (Σ p + Σ y + ε), ε = 1e-6, over the pixels of image b, all classes including background; p = softmax
 *   probabilities, y = one-hot targets; CE = mean over images and pixels of −log p(target) (PyTorch cross_entropy).
 */
import { percentileSorted } from './stats.js';

/** A flat label map (row-major H×W) of class indices. */
export type LabelMap = Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array | readonly number[];

/** The CheXmask class names for classes 1..3 (docs/recipe.md §5.2). */
export const DICE_STRUCTURES: readonly string[] = ['left lung', 'right lung', 'heart'];

export interface DiceOptions {
  /** Number of foreground classes K (classes 1..K). */
  numClasses: number;
  /** Names of classes 1..K (default DICE_STRUCTURES when K = 3, else "class k"). */
  names?: readonly string[];
  /** Extra merged structures: name → class indices (e.g. { lungs: [1, 2] }). */
  merged?: Readonly<Record<string, readonly number[]>>;
  /** Shorthand for merged { lungs: [1, 2] } (left + right lung). @default false */
  lungs?: boolean;
}

/** Dice of one structure over an evaluation set. */
export interface StructureDice {
  name: string;
  /** Class indices making up the structure. */
  classes: number[];
  /** Pooled Dice = 2·intersection / sizeSum (1 when sizeSum = 0). */
  pooled: number;
  /** Σ |P∩G| over the set. */
  intersection: number;
  /** Σ |P| over the set. */
  predPixels: number;
  /** Σ |G| over the set. */
  truePixels: number;
  /** Dice of each image, in the order added. */
  perImage: Float64Array;
  /** Mean per-image Dice. */
  mean: number;
  min: number;
  q1: number;
  median: number;
  q3: number;
  max: number;
}

export interface DiceReport {
  nImages: number;
  /** The K classes, then the merged structures. */
  structures: StructureDice[];
  /** Mean pooled Dice over the K foreground classes (the reference `dice_avg`). */
  diceAvg: number;
}

/** Dice of counts: 2i / (p + g), 1 for an empty union. */
export function diceFromCounts(intersection: number, predPixels: number, truePixels: number): number {
  const s = predPixels + truePixels;
  return s === 0 ? 1 : (2 * intersection) / s;
}

/**
 * Streaming Dice over an evaluation set: add one image at a time (memory independent of the set size apart from one
 * number per image and structure).
 */
export class DiceAccumulator {
  readonly numClasses: number;
  readonly names: string[];
  private readonly structs: { name: string; classes: number[]; member: Uint8Array }[];
  private readonly inter: Float64Array;
  private readonly pred: Float64Array;
  private readonly truth: Float64Array;
  private readonly perImage: number[][];
  private images = 0;

  constructor(opts: DiceOptions) {
    const K = opts.numClasses;
    if (!Number.isInteger(K) || K < 1 || K > 65535) throw new RangeError(`numClasses must be an integer in [1, 65535], got ${K}`);
    this.numClasses = K;
    const names = opts.names !== undefined ? [...opts.names] : K === DICE_STRUCTURES.length ? [...DICE_STRUCTURES] : Array.from({ length: K }, (_, k) => `class ${k + 1}`);
    if (names.length !== K) throw new RangeError(`names has ${names.length} entries, expected ${K}`);
    this.names = names;
    const merged: Record<string, readonly number[]> = { ...(opts.lungs === true ? { lungs: [1, 2] } : {}), ...(opts.merged ?? {}) };
    this.structs = names.map((name, k) => ({ name, classes: [k + 1], member: Uint8Array.from({ length: K + 1 }, (_, j) => (j === k + 1 ? 1 : 0)) }));
    for (const [name, cls] of Object.entries(merged)) {
      if (cls.length === 0) throw new RangeError(`merged structure '${name}' has no classes`);
      const member = new Uint8Array(K + 1);
      for (const c of cls) {
        if (!Number.isInteger(c) || c < 1 || c > K) throw new RangeError(`merged structure '${name}': class ${c} is not in 1..${K}`);
        member[c] = 1;
      }
      this.structs.push({ name, classes: [...cls], member });
    }
    const S = this.structs.length;
    this.inter = new Float64Array(S);
    this.pred = new Float64Array(S);
    this.truth = new Float64Array(S);
    this.perImage = this.structs.map(() => []);
  }

  /** Adds one image: prediction and ground truth label maps of the same size. Values must be in 0..K. */
  add(pred: LabelMap, truth: LabelMap): void {
    if (pred.length !== truth.length) throw new RangeError(`prediction (${pred.length} px) and ground truth (${truth.length} px) differ in size`);
    const K = this.numClasses;
    // confusion counts per (pred class, true class): (K+1)² bins
    const conf = new Float64Array((K + 1) * (K + 1));
    for (let i = 0; i < pred.length; i++) {
      const p = pred[i] as number;
      const g = truth[i] as number;
      if (!(Number.isInteger(p) && p >= 0 && p <= K)) throw new RangeError(`prediction pixel ${i} has class ${p}, expected 0..${K}`);
      if (!(Number.isInteger(g) && g >= 0 && g <= K)) throw new RangeError(`ground-truth pixel ${i} has class ${g}, expected 0..${K}`);
      conf[p * (K + 1) + g]!++;
    }
    this.structs.forEach((s, k) => {
      let inter = 0;
      let np = 0;
      let ng = 0;
      for (let p = 0; p <= K; p++) {
        for (let g = 0; g <= K; g++) {
          const v = conf[p * (K + 1) + g]!;
          if (v === 0) continue;
          const ip = s.member[p] === 1;
          const ig = s.member[g] === 1;
          if (ip) np += v;
          if (ig) ng += v;
          if (ip && ig) inter += v;
        }
      }
      this.inter[k] = this.inter[k]! + inter;
      this.pred[k] = this.pred[k]! + np;
      this.truth[k] = this.truth[k]! + ng;
      this.perImage[k]!.push(diceFromCounts(inter, np, ng));
    });
    this.images++;
  }

  /** The Dice report of the images added so far. */
  result(): DiceReport {
    const structures = this.structs.map((s, k): StructureDice => {
      const per = Float64Array.from(this.perImage[k]!);
      const sorted = Float64Array.from(per).sort();
      const n = per.length;
      let sum = 0;
      for (const v of per) sum += v;
      return {
        name: s.name,
        classes: s.classes,
        pooled: diceFromCounts(this.inter[k]!, this.pred[k]!, this.truth[k]!),
        intersection: this.inter[k]!,
        predPixels: this.pred[k]!,
        truePixels: this.truth[k]!,
        perImage: per,
        mean: n > 0 ? sum / n : Number.NaN,
        min: n > 0 ? sorted[0]! : Number.NaN,
        q1: percentileSorted(sorted, 25),
        median: percentileSorted(sorted, 50),
        q3: percentileSorted(sorted, 75),
        max: n > 0 ? sorted[n - 1]! : Number.NaN,
      };
    });
    let avg = 0;
    for (let k = 0; k < this.numClasses; k++) avg += structures[k]!.pooled;
    return { nImages: this.images, structures, diceAvg: avg / this.numClasses };
  }
}

/** Dice report of a set of (prediction, ground truth) label maps. */
export function diceEvaluate(preds: readonly LabelMap[], truths: readonly LabelMap[], opts: DiceOptions): DiceReport {
  if (preds.length !== truths.length) throw new RangeError(`${preds.length} predictions for ${truths.length} ground-truth maps`);
  const acc = new DiceAccumulator(opts);
  preds.forEach((p, i) => acc.add(p, truths[i]!));
  return acc.result();
}

/**
 * Argmax over channels of channel-first scores [batch, channels, pixels] (logits or probabilities) → label maps
 * [batch, pixels]. Ties go to the lowest channel index (torch.argmax / numpy.argmax).
 */
export function argmaxLabelMap(scores: Float32Array | Float64Array | readonly number[], channels: number, pixels: number, batch = 1): Uint8Array | Uint16Array {
  if (scores.length !== batch * channels * pixels) throw new RangeError(`scores has ${scores.length} values, expected ${batch}×${channels}×${pixels}`);
  const out = channels <= 256 ? new Uint8Array(batch * pixels) : new Uint16Array(batch * pixels);
  for (let b = 0; b < batch; b++) {
    const base = b * channels * pixels;
    for (let i = 0; i < pixels; i++) {
      let best = 0;
      let bv = scores[base + i] as number;
      for (let c = 1; c < channels; c++) {
        const v = scores[base + c * pixels + i] as number;
        if (v > bv) {
          bv = v;
          best = c;
        }
      }
      out[b * pixels + i] = best;
    }
  }
  return out;
}

/** Shape of a channel-first batch. */
export interface SegShape {
  batch: number;
  /** Number of classes including background (4 for CheXmask). */
  classes: number;
  pixels: number;
}

/** Softmax over channels of logits [batch, classes, pixels] (max-subtracted). */
export function softmaxChannels(logits: Float32Array | Float64Array | readonly number[], shape: SegShape): Float64Array {
  const { batch, classes, pixels } = shape;
  if (logits.length !== batch * classes * pixels) throw new RangeError(`logits has ${logits.length} values, expected ${batch}×${classes}×${pixels}`);
  const out = new Float64Array(logits.length);
  for (let b = 0; b < batch; b++) {
    const base = b * classes * pixels;
    for (let i = 0; i < pixels; i++) {
      let mx = Number.NEGATIVE_INFINITY;
      for (let c = 0; c < classes; c++) mx = Math.max(mx, logits[base + c * pixels + i] as number);
      let z = 0;
      for (let c = 0; c < classes; c++) {
        const e = Math.exp((logits[base + c * pixels + i] as number) - mx);
        out[base + c * pixels + i] = e;
        z += e;
      }
      for (let c = 0; c < classes; c++) out[base + c * pixels + i] = out[base + c * pixels + i]! / z;
    }
  }
  return out;
}

/**
 * Soft Dice per (image, class), including background: (2 Σ p·y + eps) / (Σ p + Σ y + eps) with y the one-hot of the
 * target label map [batch, pixels]. Returns [batch × classes] row-major.
 */
export function softDice(probs: Float32Array | Float64Array | readonly number[], targets: LabelMap, shape: SegShape, eps = 1e-6): Float64Array {
  const { batch, classes, pixels } = shape;
  if (probs.length !== batch * classes * pixels) throw new RangeError(`probs has ${probs.length} values, expected ${batch}×${classes}×${pixels}`);
  if (targets.length !== batch * pixels) throw new RangeError(`targets has ${targets.length} values, expected ${batch}×${pixels}`);
  const out = new Float64Array(batch * classes);
  for (let b = 0; b < batch; b++) {
    for (let c = 0; c < classes; c++) {
      let inter = 0;
      let sp = 0;
      let sy = 0;
      for (let i = 0; i < pixels; i++) {
        const p = probs[(b * classes + c) * pixels + i] as number;
        const y = (targets[b * pixels + i] as number) === c ? 1 : 0;
        inter += p * y;
        sp += p;
        sy += y;
      }
      out[b * classes + c] = (2 * inter + eps) / (sp + sy + eps);
    }
  }
  return out;
}

/** 1 − mean over images and classes of the soft Dice of probabilities. */
export function softDiceLoss(probs: Float32Array | Float64Array | readonly number[], targets: LabelMap, shape: SegShape, eps = 1e-6): number {
  const d = softDice(probs, targets, shape, eps);
  let s = 0;
  for (const v of d) s += v;
  return 1 - s / d.length;
}

/** Mean cross-entropy of logits [batch, classes, pixels] against a label map [batch, pixels] (log-sum-exp form). */
export function crossEntropy(logits: Float32Array | Float64Array | readonly number[], targets: LabelMap, shape: SegShape): number {
  const { batch, classes, pixels } = shape;
  if (logits.length !== batch * classes * pixels) throw new RangeError(`logits has ${logits.length} values, expected ${batch}×${classes}×${pixels}`);
  if (targets.length !== batch * pixels) throw new RangeError(`targets has ${targets.length} values, expected ${batch}×${pixels}`);
  let s = 0;
  for (let b = 0; b < batch; b++) {
    const base = b * classes * pixels;
    for (let i = 0; i < pixels; i++) {
      const t = targets[b * pixels + i] as number;
      if (!(Number.isInteger(t) && t >= 0 && t < classes)) throw new RangeError(`target pixel ${b * pixels + i} has class ${t}, expected 0..${classes - 1}`);
      let mx = Number.NEGATIVE_INFINITY;
      for (let c = 0; c < classes; c++) mx = Math.max(mx, logits[base + c * pixels + i] as number);
      let z = 0;
      for (let c = 0; c < classes; c++) z += Math.exp((logits[base + c * pixels + i] as number) - mx);
      s += mx + Math.log(z) - (logits[base + t * pixels + i] as number);
    }
  }
  return s / (batch * pixels);
}

/** The reference training loss `ce_dice_loss` = 0.5·CE + 0.5·(1 − mean soft Dice of softmax(logits)). */
export function ceDiceLoss(logits: Float32Array | Float64Array | readonly number[], targets: LabelMap, shape: SegShape, eps = 1e-6): number {
  return 0.5 * crossEntropy(logits, targets, shape) + 0.5 * softDiceLoss(softmaxChannels(logits, shape), targets, shape, eps);
}
