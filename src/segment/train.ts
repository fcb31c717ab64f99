/**
 * `cxformer finetune --task segmentation`: trains a segmentation head on a (frozen by default) backbone, keeps the
 * epoch with the best validation `dice_avg` (spec §5.2) and evaluates it on the test split (the validation split
 * when there is no test split).
 *
 * Loop: every epoch visits the training images in a seeded permutation (mulberry32(hashSeed(seed, epoch))); each
 * image is augmented from its own stream (hashSeed(seed, epoch, index)) with src/segment/augment.ts; one native step
 * per batch (loss 0.5·CE + 0.5·(1 − soft Dice), AdamW, clipping) at the lr of the schedule: optional linear warm-up,
 * then cosine to 0 per optimizer step (HF `get_cosine_schedule_with_warmup`; spec §5.2: no warm-up). The backbone
 * features are recomputed at every step (the augmentations differ), under no_grad when frozen.
 *
 * Output folder:
 * - `run.json`: the resolved settings (data, preprocessing, head, schedule, backbone);
 * - `metrics.jsonl`: one `{"kind":"step",…}` line every `logEvery` steps and one `{"kind":"epoch",…}` line per
 *   epoch (train loss, validation Dice per structure, `dice_avg`, best so far, seconds);
 * - `last.safetensors` (weights + AdamW state, written atomically after every epoch, every `checkpointSteps` steps
 *   and when stopped; its metadata `seg_state` holds the epoch, step, position inside the epoch, best epoch/Dice
 *   and history), `best.safetensors` (weights of the best epoch, no optimizer);
 * - `eval/`: the evaluation of the best weights (src/segment/evaluate.ts).
 * Re-running the same command on the folder resumes from `last.safetensors` — after the last completed epoch, or
 * inside an epoch when it was written mid-epoch (Ctrl-C / `signal`, `checkpointSteps`) — as a bit-identical
 * continuation of the schedule, the permutations and the augmentations; different training settings are refused
 * unless `force`.
 */
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { DatasetSpec } from '../datasets/index.js';
import { writeFileAtomic } from '../data/fsutil.js';
import { hashSeed, mulberry32, shuffleInPlace } from '../data/random.js';
import { resolvePreprocessOptions, type PreprocessOptions } from '../image/options.js';
import { resolveModel } from '../model/weights.js';
import type { BackboneChoice } from '../finetune/classify.js';
import { CxformerError } from '../native/load.js';
import { augmentPair, normalizeBatch, type SegAugmentOptions } from './augment.js';
import { loadSamples, loadSegRecords, SEG_NUM_CLASSES, type MaskSource, type SegSample } from './data.js';
import { diceReport, evaluateSamples, predictSamples, type SegEvaluation } from './evaluate.js';
import { Segmenter, type SegConfig, type SegStepRecord } from './native.js';

/** The encoder of a segmentation run: the same choice as classification's (weights, or a seeded random preset). */
export type SegBackboneChoice = BackboneChoice;

export interface SegTrainOptions {
  backbone: SegBackboneChoice;
  dataset: DatasetSpec;
  masks: MaskSource;
  /** Preprocessing over the weights' own (default the CXformer 518 px transform). */
  preprocess?: Partial<PreprocessOptions>;
  /** Head and optimiser (spec §5.2 defaults: linear head, lr 5e-3, wd 1e-4, frozen backbone). */
  seg?: SegConfig;
  /** @default 5 */
  epochs?: number;
  /** @default 64 (spec §5.2) */
  batchSize?: number;
  /** Linear warm-up epochs before the cosine. @default 0 */
  warmupEpochs?: number;
  augment?: SegAugmentOptions;
  /** Permutation and augmentation seed. @default 0 */
  seed?: number;
  /** Use at most this many training images (a seeded sample; CXformer used a 2000-image MIMIC sample). */
  maxTrain?: number;
  out: string;
  /** Bootstrap resamples of the final evaluation. @default 1000 */
  bootstrap?: number;
  /** Overlays in the final evaluation. @default 16 */
  overlays?: number;
  /** Images per forward pass when predicting. @default 8 */
  evalBatchSize?: number;
  /** metrics.jsonl step lines every this many steps. @default 10 */
  logEvery?: number;
  /** Stop after this many epochs in this call (the run can be resumed); for tests of resuming. */
  stopAfterEpochs?: number;
  /** Stop after this many optimizer steps in this call, saving a mid-epoch checkpoint; for tests of resuming. */
  stopAfterSteps?: number;
  /** Also save `last.safetensors` every this many steps inside an epoch (0 = at epoch ends only). @default 0 */
  checkpointSteps?: number;
  /** Aborting stops after the current step with a mid-epoch checkpoint (the CLI aborts on Ctrl-C). */
  signal?: AbortSignal;
  /** Resume a folder whose run.json has other training settings. @default false */
  force?: boolean;
  log?: (msg: string) => void;
  progress?: (msg: string) => void;
}

/** Learning rate of optimizer step `step` (0-based) of `total`, `warmup` steps of linear warm-up, then cosine to 0. */
export function segLr(base: number, step: number, total: number, warmup = 0): number {
  if (step < warmup) return (base * (step + 1)) / warmup;
  if (step >= total) return 0;
  return 0.5 * base * (1 + Math.cos((Math.PI * (step - warmup)) / Math.max(1, total - warmup)));
}

export interface SegEpochRecord {
  kind: 'epoch';
  epoch: number;
  step: number;
  lr: number;
  trainLoss: number;
  trainSoftDice: number;
  valDice: Record<string, number> | null;
  valDiceAvg: number | null;
  bestEpoch: number | null;
  bestDiceAvg: number | null;
  seconds: number;
}

interface SegState {
  /** Completed epochs. */
  epoch: number;
  step: number;
  /** Progress inside epoch `epoch` when the checkpoint was written mid-epoch. */
  inEpoch?: { batches: number; sumLoss: number; sumDice: number; seen: number; seconds: number; lr: number } | null;
  bestEpoch: number | null;
  bestDiceAvg: number | null;
  history: SegEpochRecord[];
}

export interface SegTrainResult {
  history: SegEpochRecord[];
  bestEpoch: number | null;
  evaluation: SegEvaluation | null;
  files: { last: string; best: string; metrics: string; run: string };
  /** Whether the run stopped early (stopAfterEpochs/Steps, or aborted) and can be resumed. */
  partial: boolean;
  /** Whether it stopped because `signal` was aborted. */
  interrupted: boolean;
}

/** The training-relevant settings recorded in run.json (compared on resume). */
function runSettings(o: SegTrainOptions, backbone: { config: unknown; weights: string | null }, pre: PreprocessOptions, seg: Required<SegConfig>) {
  return {
    dataset: o.dataset,
    masks: o.masks,
    preprocess: pre,
    seg,
    epochs: o.epochs ?? 5,
    batchSize: o.batchSize ?? 64,
    warmupEpochs: o.warmupEpochs ?? 0,
    augment: o.augment ?? {},
    seed: o.seed ?? 0,
    maxTrain: o.maxTrain ?? null,
    backbone: { weights: backbone.weights, config: backbone.config, seed: o.backbone.seed ?? 0 },
  };
}

function diffKeys(a: Record<string, unknown>, b: Record<string, unknown>): string[] {
  return [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
}

/** Trains (or resumes) and evaluates a segmentation head. */
export async function trainSegmentation(o: SegTrainOptions): Promise<SegTrainResult> {
  const log = o.log ?? (() => undefined);
  const prog = o.progress ?? (() => undefined);
  const epochs = o.epochs ?? 5;
  const B = o.batchSize ?? 64;
  const seed = o.seed ?? 0;
  for (const [k, v, min] of [['epochs', epochs, 1], ['batchSize', B, 1], ['warmupEpochs', o.warmupEpochs ?? 0, 0]] as const) {
    if (!(Number.isInteger(v) && v >= min)) throw new CxformerError('CXF_ARG', `segmentation: ${k} must be an integer ≥ ${min}, got ${v}`);
  }
  for (const [k, v] of Object.entries({ hflipP: o.augment?.hflipP, affineP: o.augment?.affineP, jitterP: o.augment?.jitterP })) {
    if (v !== undefined && !(v >= 0 && v <= 1)) throw new CxformerError('CXF_ARG', `segmentation: augmentation probability ${k} must be in [0, 1], got ${v}`);
  }
  if (o.maxTrain !== undefined && !(Number.isInteger(o.maxTrain) && o.maxTrain >= 1)) throw new CxformerError('CXF_ARG', `segmentation: maxTrain must be a positive integer, got ${o.maxTrain}`);
  if (o.overlays !== undefined && !(Number.isInteger(o.overlays) && o.overlays >= 0)) throw new CxformerError('CXF_ARG', `segmentation: overlays must be an integer ≥ 0, got ${o.overlays}`);
  const out = path.resolve(o.out);
  await mkdir(out, { recursive: true });

  const resolved = await resolveModel(o.backbone);
  const pre = resolvePreprocessOptions({ ...(resolved.preprocess ?? {}), ...(o.preprocess ?? {}) });
  if (pre.crop === null && pre.resize === null) throw new CxformerError('CXF_ARG', 'segmentation needs images of one size: set crop (e.g. 518) or an exact resize HxW');

  // ---- data ----
  const recs = await loadSegRecords(o.dataset, o.masks);
  let trainRecs = recs.train;
  if (o.maxTrain !== undefined && trainRecs.length > o.maxTrain) {
    const keep = new Set(shuffleInPlace(trainRecs.map((_, i) => i), mulberry32(hashSeed(seed, 0x2000))).slice(0, o.maxTrain));
    trainRecs = trainRecs.filter((_, i) => keep.has(i));
  }
  const heldRecs = recs.test.length ? recs.test : recs.valid;
  if (!trainRecs.length) throw new CxformerError('CXF_INPUT', `segmentation: no training images with masks (train ${recs.train.length}, valid ${recs.valid.length}, test ${recs.test.length})`);
  log(`data: train ${trainRecs.length}, valid ${recs.valid.length}, test ${recs.test.length} images with masks`);
  const load = (rs: typeof trainRecs, what: string) => loadSamples(rs, pre, (d, t) => prog(`loading ${what} ${d}/${t}`));
  const train = await load(trainRecs, 'train');
  const valid = await load(recs.valid, 'valid');
  const held = recs.test.length ? await load(recs.test, 'test') : valid;
  const g = train[0]!.geometry;
  const [W, H] = [g.outWidth, g.outHeight];
  if (H % resolved.config.patch_size || W % resolved.config.patch_size) {
    throw new CxformerError('CXF_ARG', `segmentation: the input size ${W}×${H} must be a multiple of the patch size ${resolved.config.patch_size} (set crop)`);
  }

  // ---- model and run folder ----
  const model = await Segmenter.create({
    seg: { numClasses: SEG_NUM_CLASSES, ...(o.seg ?? {}) },
    backbone: resolved.config,
    ...(resolved.weights ? { weights: resolved.weights.file } : {}),
    seed: o.backbone.seed ?? 0,
    device: o.backbone.device ?? 'cpu',
    ...(o.backbone.threads !== undefined ? { threads: o.backbone.threads } : {}),
  });
  const segCfg = model.config;
  const settings = runSettings(o, { config: resolved.config, weights: resolved.weights?.file ?? null }, pre, segCfg);
  const files = { run: path.join(out, 'run.json'), last: path.join(out, 'last.safetensors'), best: path.join(out, 'best.safetensors'), metrics: path.join(out, 'metrics.jsonl') };
  let state: SegState = { epoch: 0, step: 0, bestEpoch: null, bestDiceAvg: null, history: [] };
  if (existsSync(files.run) && existsSync(files.last)) {
    const prev = JSON.parse(await readFile(files.run, 'utf8')) as Record<string, unknown>;
    const diff = diffKeys(prev, settings as unknown as Record<string, unknown>);
    if (diff.length && !o.force) {
      throw new CxformerError('CXF_CONFIG', `${out} holds a segmentation run with other settings (${diff.join(', ')} differ); choose another output folder, or pass --force to resume it with the new values`);
    }
    const md = await model.load(files.last);
    state = JSON.parse(md.seg_state ?? 'null') as SegState;
    if (!state) throw new CxformerError('CXF_WEIGHTS', `${files.last}: no seg_state metadata; not a checkpoint of this command`);
    log(state.inEpoch ? `resuming inside epoch ${state.epoch + 1} after batch ${state.inEpoch.batches} (step ${state.step})` : `resuming after epoch ${state.epoch} (step ${state.step})`);
    // Drop metric lines of the interrupted epoch.
    if (existsSync(files.metrics)) {
      const kept = (await readFile(files.metrics, 'utf8')).split('\n').filter((l) => l.trim() && (JSON.parse(l) as { step: number }).step <= state.step);
      await writeFileAtomic(files.metrics, kept.map((l) => `${l}\n`).join(''));
    }
  } else {
    await writeFile(files.metrics, '');
  }
  await writeFileAtomic(files.run, `${JSON.stringify(settings, null, 2)}\n`);

  // ---- training ----
  const spe = Math.ceil(train.length / B);
  const total = epochs * spe;
  const warm = (o.warmupEpochs ?? 0) * spe;
  const logEvery = o.logEvery ?? 10;
  let ran = 0;
  let steps = 0;
  let interrupted = false;
  let halt = false;
  const saveLast = (epoch: number) => model.save(files.last, true, { epoch: String(epoch), seg_state: JSON.stringify(state), run: JSON.stringify(settings) });
  for (let epoch = state.epoch; epoch < epochs && !halt; epoch++) {
    if (o.stopAfterEpochs !== undefined && ran >= o.stopAfterEpochs) break;
    const resume = state.inEpoch ?? null;
    const t0 = Date.now() - (resume?.seconds ?? 0) * 1000;
    const order = shuffleInPlace(train.map((_, i) => i), mulberry32(hashSeed(seed, epoch)));
    let sumLoss = resume?.sumLoss ?? 0;
    let sumDice = resume?.sumDice ?? 0;
    let seen = resume?.seen ?? 0;
    let lastLr = resume?.lr ?? 0;
    let rec: SegStepRecord | undefined;
    for (let b = resume?.batches ?? 0; b < spe; b++) {
      const idx = order.slice(b * B, (b + 1) * B);
      const imgs: Uint8Array[] = [];
      const labels = new Uint8Array(idx.length * W * H);
      idx.forEach((i, k) => {
        const s = train[i]!;
        const a = augmentPair(s.image, s.mask!, W, H, mulberry32(hashSeed(seed, epoch, i, 0x5e9)), o.augment);
        imgs.push(a.image);
        labels.set(a.mask, k * W * H);
      });
      const lr = segLr(segCfg.lr, state.step, total, warm);
      const ts = Date.now();
      rec = await model.step(normalizeBatch(imgs, W, H, pre.mean, pre.std), [idx.length, 3, H, W], labels, lr);
      state.step = rec.step;
      sumLoss += rec.loss * idx.length;
      sumDice += rec.softDice * idx.length;
      seen += idx.length;
      const ips = (idx.length * 1000) / Math.max(1, Date.now() - ts);
      prog(`epoch ${epoch + 1}/${epochs} step ${b + 1}/${spe} loss ${rec.loss.toFixed(4)} lr ${lr.toExponential(2)} ${ips.toFixed(1)} img/s`);
      lastLr = rec.lr;
      if (logEvery > 0 && (state.step % logEvery === 0 || b === spe - 1)) {
        await appendFile(files.metrics, `${JSON.stringify({ kind: 'step', epoch, ...rec, imagesPerS: ips })}\n`);
      }
      steps++;
      interrupted = o.signal?.aborted === true;
      const stop = interrupted || (o.stopAfterSteps !== undefined && steps >= o.stopAfterSteps);
      halt ||= stop;
      if (b < spe - 1 && (stop || (o.checkpointSteps && state.step % o.checkpointSteps === 0))) {
        // Mid-epoch checkpoint: the epoch's permutation, augmentation streams and lr all follow from (seed, epoch,
        // step), so the sums and the batch count are all a resume needs.
        state.inEpoch = { batches: b + 1, sumLoss, sumDice, seen, seconds: (Date.now() - t0) / 1000, lr: lastLr };
        await saveLast(epoch);
        if (stop) {
          log(`${interrupted ? 'interrupted' : 'stopped'} in epoch ${epoch + 1} after batch ${b + 1} (step ${state.step}); re-run the same command to resume`);
          return { history: state.history, bestEpoch: state.bestEpoch, evaluation: null, files, partial: true, interrupted };
        }
      }
      if (stop) break;
    }
    let valDice: Record<string, number> | null = null;
    let avg: number | null = null;
    if (valid.length) {
      const rep = diceReport(await predictSamples(model, valid, o.evalBatchSize ?? 8, undefined, pre), valid);
      valDice = Object.fromEntries(rep.structures.map((s) => [s.name, s.pooled]));
      avg = rep.diceAvg;
    }
    const improved = avg !== null ? state.bestDiceAvg === null || avg > state.bestDiceAvg : true; // no validation: keep the last
    if (improved) {
      state.bestEpoch = epoch;
      state.bestDiceAvg = avg;
    }
    const er: SegEpochRecord = {
      kind: 'epoch',
      epoch,
      step: state.step,
      lr: lastLr,
      trainLoss: sumLoss / Math.max(1, seen),
      trainSoftDice: sumDice / Math.max(1, seen),
      valDice,
      valDiceAvg: avg,
      bestEpoch: state.bestEpoch,
      bestDiceAvg: state.bestDiceAvg,
      seconds: (Date.now() - t0) / 1000,
    };
    state = { ...state, epoch: epoch + 1, inEpoch: null, history: [...state.history, er] };
    if (improved) await model.save(files.best, false, { epoch: String(epoch + 1), best_dice_avg: String(avg ?? ''), run: JSON.stringify(settings) });
    await saveLast(epoch + 1);
    await appendFile(files.metrics, `${JSON.stringify(er)}\n`);
    log(`epoch ${epoch + 1}/${epochs}: train loss ${er.trainLoss.toFixed(4)}${avg !== null ? `, valid dice_avg ${avg.toFixed(4)} (${Object.entries(valDice!).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(', ')})` : ''}${improved ? ' *best*' : ''}`);
    ran++;
  }
  if (state.epoch < epochs) {
    log(`${interrupted ? 'interrupted' : 'stopped'} after epoch ${state.epoch} of ${epochs}; re-run the same command to resume`);
    return { history: state.history, bestEpoch: state.bestEpoch, evaluation: null, files, partial: true, interrupted };
  }

  // ---- evaluation of the best weights ----
  let evaluation: SegEvaluation | null = null;
  if (held.length) {
    await model.load(files.best);
    evaluation = await evaluateSamples(model, held, {
      out: path.join(out, 'eval'),
      bootstrap: o.bootstrap ?? 1000,
      seed,
      overlays: o.overlays ?? 16,
      batchSize: o.evalBatchSize ?? 8,
      norm: pre,
      title: `Segmentation (${recs.test.length ? 'test' : 'valid'} split, best epoch ${(state.bestEpoch ?? 0) + 1})`,
      log,
    });
  } else {
    log('no valid or test split: skipped the evaluation');
  }
  return { history: state.history, bestEpoch: state.bestEpoch, evaluation, files, partial: false, interrupted: false };
}

/** Loads a trained segmentation model (best.safetensors or last.safetensors of a run) with its backbone. */
export async function loadSegmenter(file: string, backbone: SegBackboneChoice): Promise<{ model: Segmenter; settings: ReturnType<typeof runSettings> | null }> {
  const { readSafetensorsHeader } = await import('../io/safetensors.js');
  const h = await readSafetensorsHeader(file);
  const md = h.metadata ?? {};
  if (md.format !== 'cxformer-seg') throw new CxformerError('CXF_INPUT', `${file}: not a cxformer segmentation model (metadata format is ${md.format ?? 'missing'})`);
  const settings = md.run ? (JSON.parse(md.run) as ReturnType<typeof runSettings>) : null;
  let config: unknown;
  let weights: string | undefined;
  if (backbone.weights || backbone.arch) {
    const r = await resolveModel(backbone);
    config = r.config;
    weights = r.weights?.file;
  } else if (settings) {
    // The backbone the run trained on (a random-initialised one is rebuilt from its seed).
    config = settings.backbone.config;
    weights = settings.backbone.weights ?? undefined;
  } else {
    throw new CxformerError('CXF_ARG', `${file} does not record its backbone: give --weights (or --arch)`);
  }
  const model = await Segmenter.create({
    seg: JSON.parse(md.config ?? '{}') as SegConfig,
    backbone: config as Parameters<typeof Segmenter.create>[0]['backbone'],
    ...(weights ? { weights } : {}),
    seed: backbone.seed ?? settings?.backbone.seed ?? 0,
    device: backbone.device ?? 'cpu',
    ...(backbone.threads !== undefined ? { threads: backbone.threads } : {}),
  });
  await model.load(file);
  return { model, settings };
}

export type { SegSample };
