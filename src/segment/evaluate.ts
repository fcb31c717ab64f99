/**
 * Segmentation evaluation (docs/recipe.md §5.2): argmax predictions, Dice per structure **pooled over the whole set** (the
 * reference "global Dice") and per image (mean and distribution), a combined "lungs" structure (left ∪ right, see
 * src/eval/dice.ts), `dice_avg` = mean pooled Dice of the three classes, seeded bootstrap confidence intervals, and
 * the predictions as files.
 *
 * Bootstrap (our convention, as src/eval/bootstrap.ts for classification): `n` resamples of the images (or of the
 * patients with `patientIds`: a drawn patient brings all its images) with replacement, mulberry32(seed); each
 * resample pools the per-image counts (|P∩G|, |P|, |G|) of the drawn images; the interval is the numpy-linear
 * percentile interval [(1 − level)/2, (1 + level)/2] of the replicates, with their median.
 *
 * Files written into `out/`: `metrics.json`, `per_image.csv` (id, Dice per structure, pixel counts), `report.md`,
 * `dice_per_image.svg|png` (the per-image Dice distribution: box, whiskers, one dot per image),
 * `predictions/<stem>.png` (class-index PNGs at the model input size), `predictions.csv` (CheXmask-style RLE of
 * each prediction mapped back to the original image size: `Path` = record id, `Height`, `Width`, `Left Lung`,
 * `Right Lung`, `Heart`) and `overlays/<stem>.png` for a seeded sample of `overlays` images (or the ids given).
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { formatCsv } from '../data/csv.js';
import { writeFileAtomic } from '../data/fsutil.js';
import { mulberry32, shuffleInPlace } from '../data/random.js';
import { bootstrapProgressHook, drawResample, PERCENTILE_METHOD, resamplingUnits } from '../eval/bootstrap.js';
import { DiceAccumulator, diceFromCounts, type DiceReport } from '../eval/dice.js';
import { percentileSorted } from '../eval/stats.js';
import { normalizeBatch } from './augment.js';
import { classMapToRle, fileStem, SEG_CLASS_NAMES, toOriginal, type SegSample } from './data.js';
import type { Segmenter } from './native.js';
import { writePlot } from '../eval/plots.js';
import { diceDistributionSvg, writeMaskPng, writeOverlayPng } from './overlay.js';

/** Structures reported: the three classes, then "lungs" = classes 1 and 2. */
export const SEG_REPORT_STRUCTURES: readonly { name: string; classes: number[] }[] = [
  { name: 'left lung', classes: [1] },
  { name: 'right lung', classes: [2] },
  { name: 'heart', classes: [3] },
  { name: 'lungs', classes: [1, 2] },
];

/** Normalisation of the model input (the preprocessing's mean and std; default ImageNet). */
export interface InputNorm {
  mean?: readonly number[];
  std?: readonly number[];
}

/** Predicts class maps for samples (in order), `batchSize` images per forward pass. */
export async function predictSamples(model: Segmenter, samples: readonly SegSample[], batchSize = 8, onProgress?: (done: number, total: number) => void, norm: InputNorm = {}): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (let s = 0; s < samples.length; s += batchSize) {
    const batch = samples.slice(s, s + batchSize);
    const g = batch[0]!.geometry;
    for (const b of batch) {
      if (b.geometry.outWidth !== g.outWidth || b.geometry.outHeight !== g.outHeight) {
        throw new RangeError(`sample '${b.id}' is ${b.geometry.outWidth}×${b.geometry.outHeight}, the batch is ${g.outWidth}×${g.outHeight}: set a crop so all images have one size`);
      }
    }
    const hw = g.outWidth * g.outHeight;
    const x = normalizeBatch(batch.map((b) => b.image), g.outWidth, g.outHeight, norm.mean, norm.std);
    const { labels } = await model.predict(x, [batch.length, 3, g.outHeight, g.outWidth]);
    batch.forEach((_, i) => out.push(labels.slice(i * hw, (i + 1) * hw)));
    onProgress?.(Math.min(s + batchSize, samples.length), samples.length);
  }
  return out;
}

/** Dice report of predictions against the samples' masks (classes 1..3 plus "lungs"). */
export function diceReport(preds: readonly Uint8Array[], samples: readonly SegSample[]): DiceReport {
  const acc = new DiceAccumulator({ numClasses: 3, names: [...SEG_CLASS_NAMES], lungs: true });
  preds.forEach((p, i) => {
    const m = samples[i]!.mask;
    if (m === undefined) throw new RangeError(`sample '${samples[i]!.id}' has no mask to evaluate against`);
    acc.add(p, m);
  });
  return acc.result();
}

/** Per-image (|P∩G|, |P|, |G|) of each reported structure: counts[s][i] = [inter, pred, truth]. */
export function perImageCounts(preds: readonly Uint8Array[], truths: readonly Uint8Array[]): Float64Array[][] {
  return SEG_REPORT_STRUCTURES.map((s) => {
    const member = new Uint8Array(256);
    for (const c of s.classes) member[c] = 1;
    return preds.map((p, i) => {
      const t = truths[i]!;
      let inter = 0;
      let np = 0;
      let ng = 0;
      for (let k = 0; k < p.length; k++) {
        const a = member[p[k]!]!;
        const b = member[t[k]!]!;
        np += a;
        ng += b;
        inter += a & b;
      }
      return Float64Array.of(inter, np, ng);
    });
  });
}

export interface DiceInterval {
  point: number;
  median: number | null;
  lo: number | null;
  hi: number | null;
}

export interface DiceBootstrap {
  n: number;
  seed: number;
  level: number;
  unit: 'image' | 'patient';
  nUnits: number;
  percentile: string;
  /** Pooled Dice per structure (SEG_REPORT_STRUCTURES order) and dice_avg. */
  pooled: Record<string, DiceInterval>;
  /** Mean per-image Dice per structure. */
  meanPerImage: Record<string, DiceInterval>;
}

/** Seeded bootstrap of pooled and mean per-image Dice (see the module docs). */
export function bootstrapDice(
  counts: Float64Array[][],
  o: { n?: number; seed?: number; level?: number; patientIds?: readonly string[]; onProgress?: (done: number, total: number) => void } = {},
): DiceBootstrap {
  const n = o.n ?? 1000;
  // After each resample (the CLI's progress line through src/eval/bootstrap.ts's hook when none is given).
  const onProgress = o.onProgress ?? bootstrapProgressHook();
  const seed = o.seed ?? 0;
  const level = o.level ?? 0.95;
  const N = counts[0]?.length ?? 0;
  const units = resamplingUnits(N, o.patientIds);
  const rnd = mulberry32(seed);
  const w = new Float64Array(N);
  const S = SEG_REPORT_STRUCTURES.length;
  const pooled: number[][] = Array.from({ length: S + 1 }, () => []);
  const meanPer: number[][] = Array.from({ length: S }, () => []);
  const stat = (weights: Float64Array | null) => {
    const pool: number[] = [];
    const per: number[] = [];
    for (let s = 0; s < S; s++) {
      let i0 = 0;
      let p0 = 0;
      let g0 = 0;
      let sumD = 0;
      let cnt = 0;
      for (let i = 0; i < N; i++) {
        const k = weights ? weights[i]! : 1;
        if (k === 0) continue;
        const c = counts[s]![i]!;
        i0 += k * c[0]!;
        p0 += k * c[1]!;
        g0 += k * c[2]!;
        sumD += k * diceFromCounts(c[0]!, c[1]!, c[2]!);
        cnt += k;
      }
      pool.push(diceFromCounts(i0, p0, g0));
      per.push(cnt > 0 ? sumD / cnt : Number.NaN);
    }
    pool.push((pool[0]! + pool[1]! + pool[2]!) / 3);
    return { pool, per };
  };
  const point = stat(null);
  if (N > 0) {
    onProgress?.(0, n);
    for (let r = 0; r < n; r++) {
      drawResample(rnd, units, w);
      const v = stat(w);
      onProgress?.(r + 1, n);
      v.pool.forEach((x, s) => pooled[s]!.push(x));
      v.per.forEach((x, s) => meanPer[s]!.push(x));
    }
  }
  const summ = (p: number, reps: number[]): DiceInterval => {
    const sorted = Float64Array.from(reps.filter((x) => Number.isFinite(x))).sort();
    if (sorted.length === 0) return { point: p, median: null, lo: null, hi: null };
    return { point: p, median: percentileSorted(sorted, 50), lo: percentileSorted(sorted, ((1 - level) / 2) * 100), hi: percentileSorted(sorted, ((1 + level) / 2) * 100) };
  };
  const names = SEG_REPORT_STRUCTURES.map((s) => s.name);
  return {
    n,
    seed,
    level,
    unit: o.patientIds ? 'patient' : 'image',
    nUnits: units.length,
    percentile: PERCENTILE_METHOD,
    pooled: Object.fromEntries([...names, 'dice_avg'].map((nm, s) => [nm, summ(point.pool[s]!, pooled[s]!)])),
    meanPerImage: Object.fromEntries(names.map((nm, s) => [nm, summ(point.per[s]!, meanPer[s]!)])),
  };
}

export interface SegEvalOptions {
  out: string;
  /** Bootstrap resamples (0 = none). @default 1000 */
  bootstrap?: number;
  seed?: number;
  /** Resample patients (their images together) instead of images. @default true */
  byPatient?: boolean;
  /** Number of overlays (a seeded sample), or the ids to draw. @default 16 */
  overlays?: number | string[];
  /** Write the predicted masks (PNG + RLE CSV). @default true */
  writePredictions?: boolean;
  batchSize?: number;
  /** Input normalisation (the run's preprocessing mean/std). @default ImageNet */
  norm?: InputNorm;
  title?: string;
  log?: (msg: string) => void;
}

export interface SegEvaluation {
  metrics: SegMetricsJson;
  files: { metrics: string; perImage: string; report: string; distribution: string; predictions?: string; masks?: string; overlays: string[] };
}

export interface SegMetricsJson {
  title: string;
  nImages: number;
  /** Pooled (global) Dice per structure, and dice_avg (mean of the three classes). */
  pooled: Record<string, number>;
  /** Per-image Dice summaries per structure. */
  perImage: Record<string, { mean: number; min: number; q1: number; median: number; q3: number; max: number }>;
  pixels: Record<string, { intersection: number; predicted: number; truth: number }>;
  bootstrap: DiceBootstrap | null;
  conventions: string;
}

const fmt = (v: number | null | undefined) => (v === null || v === undefined || !Number.isFinite(v) ? 'n/a' : v.toFixed(4));

/** Predicts, measures and writes everything for an evaluation set (see the module docs). */
export async function evaluateSamples(model: Segmenter, samples: readonly SegSample[], o: SegEvalOptions): Promise<SegEvaluation> {
  const log = o.log ?? (() => undefined);
  if (samples.length === 0) throw new RangeError('segmentation evaluation: no images');
  await mkdir(o.out, { recursive: true });
  const preds = await predictSamples(model, samples, o.batchSize ?? 8, (d, t) => log(`predict ${d}/${t}`), o.norm ?? {});
  const rep = diceReport(preds, samples);
  const counts = perImageCounts(preds, samples.map((s) => s.mask!));
  const nb = o.bootstrap ?? 1000;
  const boot = nb > 0 ? bootstrapDice(counts, { n: nb, seed: o.seed ?? 0, ...((o.byPatient ?? true) ? { patientIds: samples.map((s) => s.patient) } : {}) }) : null;
  const title = o.title ?? 'Segmentation evaluation';
  const byName = new Map(rep.structures.map((s) => [s.name, s]));
  const metrics: SegMetricsJson = {
    title,
    nImages: samples.length,
    pooled: { ...Object.fromEntries(rep.structures.map((s) => [s.name, s.pooled])), dice_avg: rep.diceAvg },
    perImage: Object.fromEntries(rep.structures.map((s) => [s.name, { mean: s.mean, min: s.min, q1: s.q1, median: s.median, q3: s.q3, max: s.max }])),
    pixels: Object.fromEntries(rep.structures.map((s) => [s.name, { intersection: s.intersection, predicted: s.predPixels, truth: s.truePixels }])),
    bootstrap: boot,
    conventions:
      'argmax predictions at the model input size; pooled Dice = 2·Σ|P∩G| / Σ(|P|+|G|) over all pixels of the set (1 when both are empty); per-image Dice with empty union = 1; lungs = left ∪ right lung; dice_avg = mean pooled Dice of left lung, right lung, heart (docs/recipe.md §5.2)',
  };
  const files: SegEvaluation['files'] = { metrics: path.join(o.out, 'metrics.json'), perImage: path.join(o.out, 'per_image.csv'), report: path.join(o.out, 'report.md'), distribution: path.join(o.out, 'dice_per_image.svg'), overlays: [] };
  await writeFileAtomic(files.metrics, `${JSON.stringify(metrics, null, 2)}\n`);
  const names = SEG_REPORT_STRUCTURES.map((s) => s.name);
  const rows = samples.map((s, i) => [s.id, ...names.map((n) => String(byName.get(n)!.perImage[i])), ...names.flatMap((_, k) => [...counts[k]![i]!].map(String))]);
  await writeFileAtomic(files.perImage, formatCsv(['id', ...names.map((n) => `dice ${n}`), ...names.flatMap((n) => [`${n} intersection`, `${n} predicted`, `${n} truth`])], rows));

  await writePlot(o.out, 'dice_per_image', diceDistributionSvg(rep.structures.map((s) => ({ name: s.name, values: s.perImage, q1: s.q1, median: s.median, q3: s.q3, min: s.min, max: s.max })), `Per-image Dice (${samples.length} images)`));

  if (o.writePredictions ?? true) {
    const dir = path.join(o.out, 'predictions');
    await mkdir(dir, { recursive: true });
    const rle: string[][] = [];
    for (let i = 0; i < samples.length; i++) {
      const s = samples[i]!;
      const g = s.geometry;
      await writeMaskPng(path.join(dir, `${fileStem(s.id)}.png`), preds[i]!, g.outWidth, g.outHeight);
      const r = classMapToRle(toOriginal(preds[i]!, g), g.height, g.width);
      rle.push([s.id, String(g.height), String(g.width), r['Left Lung'], r['Right Lung'], r.Heart]);
    }
    files.masks = dir;
    files.predictions = path.join(o.out, 'predictions.csv');
    await writeFileAtomic(files.predictions, formatCsv(['Path', 'Height', 'Width', 'Left Lung', 'Right Lung', 'Heart'], rle));
  }

  const want = o.overlays ?? 16;
  let chosen: number[];
  if (Array.isArray(want)) {
    const idx = new Map(samples.map((s, i) => [s.id, i]));
    chosen = want.map((id) => {
      const i = idx.get(id);
      if (i === undefined) throw new RangeError(`overlay id '${id}' is not among the evaluated images`);
      return i;
    });
  } else {
    chosen = shuffleInPlace(samples.map((_, i) => i), mulberry32((o.seed ?? 0) ^ 0x5e6)).slice(0, Math.max(0, want)).sort((a, b) => a - b);
  }
  if (chosen.length) {
    const dir = path.join(o.out, 'overlays');
    await mkdir(dir, { recursive: true });
    for (const i of chosen) {
      const s = samples[i]!;
      const f = path.join(dir, `${fileStem(s.id)}.png`);
      await writeOverlayPng(f, s.image, s.geometry.outWidth, s.geometry.outHeight, preds[i]!, s.mask);
      files.overlays.push(f);
    }
  }
  await writeFileAtomic(files.report, renderSegReport(metrics, files.overlays.map((f) => path.relative(o.out, f))));
  log(`dice: ${names.map((n) => `${n} ${fmt(metrics.pooled[n])}`).join(', ')}, avg ${fmt(metrics.pooled.dice_avg)}`);
  return { metrics, files };
}

/** Markdown summary of a segmentation evaluation. */
export function renderSegReport(m: SegMetricsJson, overlays: readonly string[]): string {
  const names = SEG_REPORT_STRUCTURES.map((s) => s.name);
  const ci = (n: string, kind: 'pooled' | 'meanPerImage') => {
    const b = m.bootstrap?.[kind][n];
    return b && b.lo !== null ? ` [${fmt(b.lo)}, ${fmt(b.hi)}]` : '';
  };
  const lines = [
    `# ${m.title}`,
    '',
    `${m.nImages} images.${m.bootstrap ? ` ${Math.round(m.bootstrap.level * 100)} % bootstrap intervals over ${m.bootstrap.n} resamples of ${m.bootstrap.nUnits} ${m.bootstrap.unit}s (seed ${m.bootstrap.seed}).` : ''}`,
    '',
    '| structure | pooled Dice | mean per-image Dice | median | min |',
    '|---|---|---|---|---|',
    ...names.map((n) => `| ${n} | ${fmt(m.pooled[n])}${ci(n, 'pooled')} | ${fmt(m.perImage[n]?.mean)}${ci(n, 'meanPerImage')} | ${fmt(m.perImage[n]?.median)} | ${fmt(m.perImage[n]?.min)} |`),
    `| **dice_avg** (3 classes) | ${fmt(m.pooled.dice_avg)}${ci('dice_avg', 'pooled')} | | | |`,
    '',
    m.conventions,
    '',
    '![per-image Dice](dice_per_image.png)',
    '',
    ...(overlays.length ? ['## Overlays', '', 'Predicted contours: left lung blue, right lung green, heart red; ground truth yellow.', '', ...overlays.map((f) => `![${f}](${f})`)] : []),
    '',
  ];
  return lines.join('\n');
}
