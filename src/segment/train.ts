/**
 * `cxformer finetune --task segmentation`: trains a segmentation head on a (frozen by default) backbone, keeps the
 * epoch with the best validation `dice_avg` (docs/recipe.md §5.2) and evaluates it on the test split (the validation split
 * when there is no test split).
 *
 * Loop: every epoch visits the training images in a seeded permutation (mulberry32(hashSeed(seed, epoch))); each
 * image is augmented from its own stream (hashSeed(seed, epoch, index)) with src/segment/augment.ts; one native step
 * per batch (loss 0.5·CE + 0.5·(1 − soft Dice), AdamW, clipping) at the lr of the schedule: optional linear warm-up,
 * then cosine to 0 per optimizer step (HF `get_cosine_schedule_with_warmup`; docs/recipe.md §5.2: no warm-up). The backbone
 * features are recomputed at every step (the augmentations differ), under no_grad when frozen.
 *
 * Output folder:
 * - `run.json`: the resolved settings (data, preprocessing, head, schedule, backbone);
 * - `metrics.jsonl`: one `{"kind":"step",…}` line every `logEvery` steps and one `{"kind":"epoch",…}` line per
 *   epoch (train loss, validation Dice per structure, `dice_avg`, best so far, seconds); `events.out.tfevents.*`: the
 *   same numbers for TensorBoard, one file per start (src/run/tensorboard.ts; `tensorboard: false` turns them off);
 * - `last.safetensors` (weights + AdamW state, written atomically after every epoch, every `checkpointSteps` steps
 *   and when stopped; its metadata `seg_state` holds the epoch, step, position inside the epoch, best epoch/Dice
 *   and history), `best.safetensors` (weights of the best epoch, no optimizer);
 * - `eval/`: the evaluation of the best weights (src/segment/evaluate.ts).
 * Re-running the same command on the folder resumes from `last.safetensors` — after the last completed epoch, or
 * inside an epoch when it was written mid-epoch (Ctrl-C / `signal`, `checkpointSteps`) — as a bit-identical
 * continuation of the schedule, the permutations and the augmentations; different training settings are refused
 * unless `force`.
 *
 * Data parallel (docs/distributed.md, "cxformer finetune --task segmentation"): started as several ranks (cxformer
 * launch, torchrun, Slurm) the ranks join a process group; `batchSize` is per rank and the global batch G =
 * batchSize × W. Each epoch's permutation (the single-process one) is cut into ⌈N / G⌉ global batches; rank r takes
 * the r-th of W contiguous, disjoint, near-equal slices of each (possibly empty); the augmentation of an image is
 * keyed by (seed, epoch, image), whatever rank holds it, and the native step's gradient is that of the whole global
 * batch, so W ranks × b train as one process × W·b. Validation: each rank predicts a contiguous share, the class
 * maps are all-gathered and every rank computes the same Dice; rank 0's "best epoch" decision is broadcast. Rank 0
 * alone writes the folder and evaluates the best weights (predictions, overlays) after the other ranks left; every
 * rank loads `last.safetensors` to resume, then takes rank 0's state.
 */
import { existsSync } from 'node:fs';
import { appendFile, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { DatasetSpec } from '../datasets/index.js';
import { threadCount } from '../backbone.js';
import { writeFileAtomic } from '../data/fsutil.js';
import { hashSeed, mulberry32, shuffleInPlace } from '../data/random.js';
import { describeDistEnv, rankThreads, type DistEnv } from '../distributed/env.js';
import { allOrNothing, type DistSettings, type ProcessGroup, withProcessGroup } from '../distributed/group.js';
import { batchShare, stepsPerEpoch } from '../run/batches.js';
import { keepJsonl, withRunFolder, type RunFolder } from '../run/folder.js';
import { dumpRankState, gatherRows, onRankZero, rankZeroDecides, requireShared, stopTogether } from '../run/rank.js';
import { refuseChangedSettings, settingsDiff } from '../run/settings.js';
import { EventFile } from '../run/tensorboard.js';
import { resolvePreprocessOptions, type PreprocessOptions } from '../image/options.js';
import { resolveModel } from '../model/weights.js';
import type { BackboneChoice } from '../finetune/classify.js';
import { CxformerError } from '../native/load.js';
import { augmentPair, normalizeBatch, type SegAugmentOptions } from './augment.js';
import { loadSamples, loadSegRecords, SEG_NUM_CLASSES, type MaskSource, type SegSample } from './data.js';
import { diceReport, evaluateSamples, predictSamples, type SegEvaluation } from './evaluate.js';
import { Segmenter, type SegConfig, type SegStepRecord } from './native.js';
import { SEGMENTATION } from '../config/downstream.js';

/** The encoder of a segmentation run: the same choice as classification's (weights, or a seeded random preset). */
export type SegBackboneChoice = BackboneChoice;

export interface SegTrainOptions {
  backbone: SegBackboneChoice;
  dataset: DatasetSpec;
  masks: MaskSource;
  /** Preprocessing over the weights' own (default the CXformer 518 px transform). */
  preprocess?: Partial<PreprocessOptions>;
  /** Head and optimiser (docs/recipe.md §5.2 defaults: linear head, lr 5e-3, wd 1e-4, frozen backbone). */
  seg?: SegConfig;
  /** @default 5 */
  epochs?: number;
  /** Images per optimizer step (per rank in a data-parallel run: the global batch is batchSize × ranks). @default 64 (docs/recipe.md §5.2) */
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
  /**
   * TensorBoard event files beside metrics.jsonl (not a training setting: it may change on resume);
   * CXFORMER_TENSORBOARD=0 turns them off regardless. @default true (configs/downstream/defaults.json)
   */
  tensorboard?: boolean;
  log?: (msg: string) => void;
  /** A progress line; with `done` and `total`, a counted task (the CLI adds the percentage and ETA). */
  progress?: (msg: string, done?: number, total?: number, key?: string) => void;
  /**
   * Data parallel, when the process was started as one of several ranks (torchrun / Slurm / cxformer launch
   * variables): seconds to wait for the other ranks (rendezvous and every collective; default 600) and the backend
   * (default auto: gloo on cpu, nccl on cuda).
   */
  dist?: DistSettings;
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
  /** This process's rank and the number of ranks (0 and 1 for a single process); only rank 0 evaluates. */
  rank: number;
  worldSize: number;
}

/** The training-relevant settings recorded in run.json (compared on resume). */
function runSettings(o: SegTrainOptions, backbone: { config: unknown; weights: string | null }, pre: PreprocessOptions, seg: Required<SegConfig>, world = 1) {
  return {
    dataset: o.dataset,
    masks: o.masks,
    preprocess: pre,
    seg,
    epochs: o.epochs ?? SEGMENTATION.epochs,
    batchSize: o.batchSize ?? SEGMENTATION.batchSize,
    warmupEpochs: o.warmupEpochs ?? SEGMENTATION.warmupEpochs,
    augment: o.augment ?? {},
    seed: o.seed ?? SEGMENTATION.seed,
    maxTrain: o.maxTrain ?? null,
    backbone: { weights: backbone.weights, config: backbone.config, seed: o.backbone.seed ?? 0 },
    // The global batch is batchSize × ranks: another number of ranks is another run (unless force).
    ...(world > 1 ? { worldSize: world } : {}),
  };
}

/** The training, validation and held-out samples (one size, a multiple of the patch size). */
async function loadData(o: SegTrainOptions, pre: PreprocessOptions, patch: number, seed: number, log: (m: string) => void, prog: (m: string, done?: number, total?: number) => void) {
  const recs = await loadSegRecords(o.dataset, o.masks);
  let trainRecs = recs.train;
  if (o.maxTrain !== undefined && trainRecs.length > o.maxTrain) {
    const keep = new Set(shuffleInPlace(trainRecs.map((_, i) => i), mulberry32(hashSeed(seed, 0x2000))).slice(0, o.maxTrain));
    trainRecs = trainRecs.filter((_, i) => keep.has(i));
  }
  if (!trainRecs.length) throw new CxformerError('CXF_INPUT', `segmentation: no training images with masks (train ${recs.train.length}, valid ${recs.valid.length}, test ${recs.test.length})`);
  log(`data: train ${trainRecs.length}, valid ${recs.valid.length}, test ${recs.test.length} images with masks`);
  const load = (rs: typeof trainRecs, what: string) => {
    prog(`loading ${what}`, 0, rs.length); // starts the ETA clock
    return loadSamples(rs, pre, (d, t) => prog(`loading ${what}`, d, t));
  };
  const train = await load(trainRecs, 'train');
  const valid = await load(recs.valid, 'valid');
  const held = recs.test.length ? await load(recs.test, 'test') : valid;
  const g = train[0]!.geometry;
  const [W, H] = [g.outWidth, g.outHeight];
  if (H % patch || W % patch) {
    throw new CxformerError('CXF_ARG', `segmentation: the input size ${W}×${H} must be a multiple of the patch size ${patch} (set crop)`);
  }
  return { recs, train, valid, held, W, H };
}

/**
 * Trains (or resumes) and evaluates a segmentation head. Started as several ranks (torchrun / Slurm / cxformer launch
 * variables), it trains data parallel (see the top); only rank 0's result carries the evaluation.
 */
export async function trainSegmentation(o: SegTrainOptions): Promise<SegTrainResult> {
  checkOptions(o);
  return withProcessGroup(o.dist, o.backbone.device ?? 'cpu', (env, device, pg) => {
    // The run folder (src/run/folder.ts): rank 0 holds its lock, writes train.log, which also gets every rank's error.
    const folder = { dir: path.resolve(o.out), rank: env.rank, pg, command: 'cxformer finetune --task segmentation', report: o.log ?? (() => undefined) };
    return withRunFolder(folder, (run) => trainRanked(o, env, device, pg, run));
  });
}

function checkOptions(o: SegTrainOptions): void {
  const epochs = o.epochs ?? SEGMENTATION.epochs;
  const B = o.batchSize ?? SEGMENTATION.batchSize;
  for (const [k, v, min] of [['epochs', epochs, 1], ['batchSize', B, 1], ['warmupEpochs', o.warmupEpochs ?? SEGMENTATION.warmupEpochs, 0]] as const) {
    if (!(Number.isInteger(v) && v >= min)) throw new CxformerError('CXF_ARG', `segmentation: ${k} must be an integer ≥ ${min}, got ${v}`);
  }
  for (const [k, v] of Object.entries({ hflipP: o.augment?.hflipP, affineP: o.augment?.affineP, jitterP: o.augment?.jitterP })) {
    if (v !== undefined && !(v >= 0 && v <= 1)) throw new CxformerError('CXF_ARG', `segmentation: augmentation probability ${k} must be in [0, 1], got ${v}`);
  }
  if (o.maxTrain !== undefined && !(Number.isInteger(o.maxTrain) && o.maxTrain >= 1)) throw new CxformerError('CXF_ARG', `segmentation: maxTrain must be a positive integer, got ${o.maxTrain}`);
  if (o.overlays !== undefined && !(Number.isInteger(o.overlays) && o.overlays >= 0)) throw new CxformerError('CXF_ARG', `segmentation: overlays must be an integer ≥ 0, got ${o.overlays}`);
}

/** A class map's bytes, 3 per float32 (exact integers < 2^24): the all-gather carries float32 arrays. */
function packMaps(maps: readonly Uint8Array[], width: number): Float32Array {
  const out = new Float32Array(maps.length * width);
  maps.forEach((m, i) => {
    for (let k = 0; k < width; k++) out[i * width + k] = (m[3 * k] ?? 0) + 256 * (m[3 * k + 1] ?? 0) + 65536 * (m[3 * k + 2] ?? 0);
  });
  return out;
}

function unpackMaps(rows: Float32Array, width: number, hw: number): Uint8Array[] {
  return Array.from({ length: rows.length / width }, (_, i) => {
    const m = new Uint8Array(hw);
    for (let j = 0; j < hw; j++) m[j] = Math.floor((rows[i * width + Math.floor(j / 3)] as number) / 256 ** (j % 3)) % 256;
    return m;
  });
}

/** Class maps of every sample: data parallel, each rank predicts its share and every rank gets all of them. */
async function predictAll(model: Segmenter, samples: readonly SegSample[], batchSize: number, pre: PreprocessOptions, pg: ProcessGroup | null): Promise<Uint8Array[]> {
  if (!pg) return predictSamples(model, samples, batchSize, undefined, pre);
  const g = samples[0]!.geometry;
  const hw = g.outWidth * g.outHeight;
  const width = Math.ceil(hw / 3);
  const { rows } = await gatherRows(pg, samples.length, width, async (lo, hi) => ({ rows: packMaps(await predictSamples(model, samples.slice(lo, hi), batchSize, undefined, pre), width) }));
  return unpackMaps(rows, width, hw);
}

/** One rank's run: what every step below reads. */
interface Ctx {
  o: SegTrainOptions;
  env: DistEnv;
  device: string;
  pg: ProcessGroup | null;
  /** Rank 0 logs (train.log and o.log); the other ranks report only their errors (thrown). */
  log: (m: string) => void;
  progress: (m: string, done?: number, total?: number, key?: string) => void;
  /** Rank 0's TensorBoard events file of this start (src/run/tensorboard.ts), null elsewhere. */
  tb?: EventFile | null;
}

type Setup = Awaited<ReturnType<typeof prepare>>;

async function trainRanked(o: SegTrainOptions, env: DistEnv, device: string, pg: ProcessGroup | null, run: RunFolder): Promise<SegTrainResult> {
  const { rank, worldSize: world } = env;
  const lead = rank === 0;
  const x: Ctx = { o, env, device, pg, log: (m) => void run.log(m), progress: lead ? (o.progress ?? (() => undefined)) : () => undefined };
  const s = await prepare(x);
  const { files, settings, model } = s;
  const epochs = o.epochs ?? SEGMENTATION.epochs;

  // ---- the run folder: rank 0 decides whether this is a resume; every rank must then see the checkpoint ----
  const resuming = await rankZeroDecides(pg, lead && existsSync(files.run) && existsSync(files.last));
  if (resuming) await requireShared(pg, files.last);
  await onRankZero(pg, 'checking the run folder', async () => {
    if (!resuming) return;
    const prev = JSON.parse(await readFile(files.run, 'utf8')) as Record<string, unknown>;
    refuseChangedSettings(settingsDiff(prev, settings), { dir: files.out, file: 'run.json', what: 'segmentation run', force: o.force ?? false });
  });
  let state: SegState = resuming ? await resumeState(x, s) : { epoch: 0, step: 0, bestEpoch: null, bestDiceAvg: null, history: [] };
  await onRankZero(pg, 'writing the run folder', async () => {
    // The lines up to the resumed checkpoint (none for a fresh run): a killed run's later lines are written again.
    await keepJsonl(files.metrics, (r) => resuming && typeof r.step === 'number' && r.step <= state.step);
    await writeFileAtomic(files.run, `${JSON.stringify(settings, null, 2)}\n`);
    // A new events file beside metrics.jsonl; its START supersedes what a killed run logged after the checkpoint.
    x.tb = (o.tensorboard ?? SEGMENTATION.tensorboard) ? EventFile.create(files.out, { firstStep: resuming ? state.step + 1 : 0, config: JSON.stringify(settings, null, 2) }) : null;
  });
  if (world > 1) {
    x.log(`distributed: ${world} ranks, backend ${pg?.backend() ?? '?'}, this is ${describeDistEnv(env)}, device ${device}`);
    x.log(`global batch = ${s.B} per rank × ${world} ranks = ${s.G}; the lr is used as given (no scaling rule): another number of ranks changes the global batch at the same lr`);
  }

  // ---- epochs ----
  const result = (evaluation: SegEvaluation | null, partial: boolean, interrupted: boolean): SegTrainResult => ({
    history: state.history,
    bestEpoch: state.bestEpoch,
    evaluation,
    files,
    partial,
    interrupted,
    rank,
    worldSize: world,
  });
  let interrupted = false;
  const budget = { steps: 0 };
  for (let epoch = state.epoch, ran = 0; epoch < epochs; epoch++, ran++) {
    if (o.stopAfterEpochs !== undefined && ran >= o.stopAfterEpochs) break;
    const e = await trainEpoch(x, s, state, epoch, budget);
    interrupted = e.interrupted;
    // Stopped inside the epoch: its mid-epoch checkpoint is written, the run resumes there.
    if (e.stoppedInside) return result(null, true, interrupted);
    state = await endEpoch(x, s, state, epoch, e.sums);
    if (e.stop) break;
  }
  await dumpRankState(rank, (file) => model.save(file, true, { seg_state: JSON.stringify(state) }));
  // The other ranks leave together (rank 0 hosts the rendezvous store and leaves last).
  await pg?.barrier();
  if (state.epoch < epochs) {
    x.log(`${interrupted ? 'interrupted' : 'stopped'} after epoch ${state.epoch} of ${epochs}; re-run the same command to resume`);
    return result(null, true, interrupted);
  }
  if (!lead) return result(null, false, false);
  return result(await evaluateBest(x, s, state), false, false);
}

/** Model, preprocessing, data, native segmenter (collective: rank 0's initial state is broadcast), settings. */
async function prepare(x: Ctx) {
  const { o, env, pg } = x;
  const out = path.resolve(o.out);
  const resolved = await resolveModel(o.backbone);
  const pre = resolvePreprocessOptions({ ...(resolved.preprocess ?? {}), ...(o.preprocess ?? {}) });
  if (pre.crop === null && pre.resize === null) throw new CxformerError('CXF_ARG', 'segmentation needs images of one size: set crop (e.g. 518) or an exact resize HxW');
  // Every rank loads the data; a failure on one rank stops all.
  const seed = o.seed ?? SEGMENTATION.seed;
  const data = await allOrNothing(pg, 'loading the data', () => loadData(o, pre, resolved.config.patch_size, seed, x.log, x.progress));
  const model = await Segmenter.create({
    seg: { numClasses: SEG_NUM_CLASSES, ...(o.seg ?? {}) },
    backbone: resolved.config,
    ...(resolved.weights ? { weights: resolved.weights.file } : {}),
    seed: o.backbone.seed ?? 0,
    device: x.device,
    // Ranks sharing a node share its cores.
    threads: rankThreads(threadCount(o.backbone.threads), env),
    processGroup: pg,
  });
  const settings = runSettings(o, { config: resolved.config, weights: resolved.weights?.file ?? null }, pre, model.config, env.worldSize);
  const files = { out, run: path.join(out, 'run.json'), last: path.join(out, 'last.safetensors'), best: path.join(out, 'best.safetensors'), metrics: path.join(out, 'metrics.jsonl') };
  const B = o.batchSize ?? SEGMENTATION.batchSize;
  const G = B * env.worldSize;
  const spe = stepsPerEpoch(data.train.length, G);
  return { ...data, pre, seed, model, settings, files, B, G, spe, total: (o.epochs ?? SEGMENTATION.epochs) * spe };
}

/** Every rank reads last.safetensors, then takes rank 0's state (collective). */
async function resumeState(x: Ctx, s: Setup): Promise<SegState> {
  const state = await allOrNothing(x.pg, 'loading the checkpoint', async () => {
    // --force: the state's native configuration may differ from this run's (the user accepted the change).
    const md = await s.model.load(s.files.last, x.o.force ?? false);
    const st = JSON.parse(md.seg_state ?? 'null') as SegState | null;
    if (!st) throw new CxformerError('CXF_WEIGHTS', `${s.files.last}: no seg_state metadata; not a checkpoint of this command`);
    return st;
  });
  await s.model.syncFromRank0();
  x.log(state.inEpoch ? `resuming inside epoch ${state.epoch + 1} after batch ${state.inEpoch.batches} (step ${state.step})` : `resuming after epoch ${state.epoch} (step ${state.step})`);
  return state;
}

/** Running sums of an epoch (restored from a mid-epoch checkpoint). */
type EpochSums = NonNullable<SegState['inEpoch']> & { t0: number };

/** The last.safetensors of `state` (epoch = the epoch being trained, or the next one after an epoch end). */
const saveLast = (s: Setup, state: SegState, epoch: number) => s.model.save(s.files.last, true, { epoch: String(epoch), seg_state: JSON.stringify(state), run: JSON.stringify(s.settings) });

/**
 * The steps of one epoch from the saved position. After each step every rank agrees whether to stop (Ctrl-C /
 * signal, stopAfterSteps); a stop before the epoch's last step writes a mid-epoch checkpoint (`stoppedInside`).
 */
async function trainEpoch(x: Ctx, s: Setup, state: SegState, epoch: number, budget: { steps: number }) {
  const { o, pg } = x;
  const { rank, worldSize: world } = x.env;
  const { train, W, H, G, spe, model } = s;
  const resume = state.inEpoch ?? null;
  const sums: EpochSums = { batches: 0, sumLoss: 0, sumDice: 0, seen: 0, seconds: 0, lr: 0, ...(resume ?? {}), t0: Date.now() - (resume?.seconds ?? 0) * 1000 };
  const order = shuffleInPlace(train.map((_, i) => i), mulberry32(hashSeed(s.seed, epoch)));
  const warm = (o.warmupEpochs ?? SEGMENTATION.warmupEpochs) * spe;
  const logEvery = o.logEvery ?? 10;
  const epochs = o.epochs ?? SEGMENTATION.epochs;
  for (let b = sums.batches; b < spe; b++) {
    // This rank's contiguous share of global batch b (empty when it holds fewer images than ranks).
    const { idx, size } = batchShare(order, b, G, rank, world);
    const imgs: Uint8Array[] = [];
    const labels = new Uint8Array(idx.length * W * H);
    idx.forEach((i, k) => {
      const sample = train[i]!;
      const a = augmentPair(sample.image, sample.mask!, W, H, mulberry32(hashSeed(s.seed, epoch, i, 0x5e9)), o.augment);
      imgs.push(a.image);
      labels.set(a.mask, k * W * H);
    });
    const lr = segLr(model.config.lr, state.step, s.total, warm);
    const ts = Date.now();
    // The record holds the loss of the whole global batch (every rank the same).
    const rec: SegStepRecord = await model.step(normalizeBatch(imgs, W, H, s.pre.mean, s.pre.std), [idx.length, 3, H, W], labels, lr);
    state.step = rec.step;
    sums.sumLoss += rec.loss * size;
    sums.sumDice += rec.softDice * size;
    sums.seen += size;
    sums.lr = rec.lr;
    const ips = (size * 1000) / Math.max(1, Date.now() - ts);
    // Counted over the run's steps (the CLI adds percentage and ETA); the key keeps one task while the numbers change.
    x.progress(`training: epoch ${epoch + 1}/${epochs}, loss ${rec.loss.toFixed(4)}, lr ${lr.toExponential(2)}, ${ips.toFixed(1)} img/s, step`, state.step, s.total, 'segmentation training');
    if (rank === 0 && logEvery > 0 && (state.step % logEvery === 0 || b === spe - 1)) {
      await appendFile(s.files.metrics, `${JSON.stringify({ kind: 'step', epoch, ...rec, imagesPerS: ips })}\n`);
      x.tb?.metrics(rec.step, { epoch, ...rec, imagesPerS: ips }, ['step']);
    }
    budget.steps++;
    const byCount = o.stopAfterSteps !== undefined && budget.steps >= o.stopAfterSteps;
    const want = o.signal?.aborted === true || byCount;
    // Every rank stops at the same step (one all-reduce of the flag per step).
    const stop = await stopTogether(pg, want);
    const interrupted = stop && (o.signal?.aborted === true || !byCount);
    if (b < spe - 1 && (stop || (o.checkpointSteps && state.step % o.checkpointSteps === 0))) {
      // Mid-epoch checkpoint: the epoch's permutation, augmentation streams and lr all follow from (seed, epoch,
      // step), so the sums and the batch count are all a resume needs.
      const { t0, ...inEpoch } = sums;
      state.inEpoch = { ...inEpoch, batches: b + 1, seconds: (Date.now() - t0) / 1000 };
      await onRankZero(pg, `saving the checkpoint at step ${state.step}`, () => saveLast(s, state, epoch));
      if (stop) {
        x.log(`${interrupted ? 'interrupted' : 'stopped'} in epoch ${epoch + 1} after batch ${b + 1} (step ${state.step}); re-run the same command to resume`);
        await pg?.barrier();
        return { stop, interrupted, stoppedInside: true, sums };
      }
    }
    if (stop) return { stop, interrupted, stoppedInside: false, sums };
  }
  return { stop: false, interrupted: false, stoppedInside: false, sums };
}

/** End of an epoch: validation Dice, selection (rank 0 decides), best/last checkpoints and the metrics line. */
async function endEpoch(x: Ctx, s: Setup, state: SegState, epoch: number, sums: EpochSums): Promise<SegState> {
  const { o, pg } = x;
  let valDice: Record<string, number> | null = null;
  let avg: number | null = null;
  if (s.valid.length) {
    const rep = diceReport(await predictAll(s.model, s.valid, o.evalBatchSize ?? SEGMENTATION.evalBatchSize, s.pre, pg), s.valid);
    valDice = Object.fromEntries(rep.structures.map((st) => [st.name, st.pooled]));
    avg = rep.diceAvg;
  }
  // Every rank computed the same Dice from the same gathered maps; rank 0's decision is still the one taken.
  // Without validation the last epoch is kept.
  const improved = await rankZeroDecides(pg, avg !== null ? state.bestDiceAvg === null || avg > state.bestDiceAvg : true);
  const best = improved ? { bestEpoch: epoch, bestDiceAvg: avg } : { bestEpoch: state.bestEpoch, bestDiceAvg: state.bestDiceAvg };
  const er: SegEpochRecord = {
    kind: 'epoch',
    epoch,
    step: state.step,
    lr: sums.lr,
    trainLoss: sums.sumLoss / Math.max(1, sums.seen),
    trainSoftDice: sums.sumDice / Math.max(1, sums.seen),
    valDice,
    valDiceAvg: avg,
    ...best,
    seconds: (Date.now() - sums.t0) / 1000,
  };
  const next: SegState = { ...state, ...best, epoch: epoch + 1, inEpoch: null, history: [...state.history, er] };
  await onRankZero(pg, `saving epoch ${epoch + 1}`, async () => {
    if (improved) await s.model.save(s.files.best, false, { epoch: String(epoch + 1), best_dice_avg: String(avg ?? ''), run: JSON.stringify(s.settings) });
    // The line before the state that contains it: a kill in between resumes before the line and writes it again.
    await appendFile(s.files.metrics, `${JSON.stringify(er)}\n`);
    // The epoch's lr and number are already in its last step line (same step) when step lines are logged.
    x.tb?.metrics(er.step, er, (o.logEvery ?? 10) > 0 ? ['step', 'lr', 'epoch'] : ['step']);
    await saveLast(s, next, epoch + 1);
  });
  const epochs = o.epochs ?? SEGMENTATION.epochs;
  const dice = avg !== null ? `, valid dice_avg ${avg.toFixed(4)} (${Object.entries(valDice!).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(', ')})` : '';
  x.log(`epoch ${epoch + 1}/${epochs}: train loss ${er.trainLoss.toFixed(4)}${dice}${improved ? ' *best*' : ''}`);
  return next;
}

/** The best weights on the held-out split (rank 0 alone, as one process). */
async function evaluateBest(x: Ctx, s: Setup, state: SegState): Promise<SegEvaluation | null> {
  const { o } = x;
  if (!s.held.length) {
    x.log('no valid or test split: skipped the evaluation');
    return null;
  }
  await s.model.load(s.files.best);
  return evaluateSamples(s.model, s.held, {
    out: path.join(s.files.out, 'eval'),
    bootstrap: o.bootstrap ?? SEGMENTATION.bootstrap,
    seed: s.seed,
    overlays: o.overlays ?? SEGMENTATION.overlays,
    batchSize: o.evalBatchSize ?? SEGMENTATION.evalBatchSize,
    norm: s.pre,
    title: `Segmentation (${s.recs.test.length ? 'test' : 'valid'} split, best epoch ${(state.bestEpoch ?? 0) + 1})`,
    log: x.log,
  });
}

/** Loads a trained segmentation model (best.safetensors or last.safetensors of a run) with its backbone. */
export async function loadSegmenter(file: string, backbone: SegBackboneChoice): Promise<{ model: Segmenter; settings: ReturnType<typeof runSettings> | null }> {
  const { readSafetensorsHeader } = await import('../io/safetensors.js');
  const h = await readSafetensorsHeader(file);
  const md = h.metadata ?? {};
  // A training state (last.safetensors: crates/core/src/train/state.rs) or a model saved without its optimizer
  // (best.safetensors, and last.safetensors of runs before the one state format): `format: cxformer-seg`.
  const state = md.cxformer_state !== undefined;
  if (state ? md.cxformer_state !== 'seg' : md.format !== 'cxformer-seg') {
    const found = state ? `a ${md.cxformer_state} training state` : `metadata format is ${md.format ?? 'missing'}`;
    throw new CxformerError('CXF_INPUT', `${file}: not a cxformer segmentation model (${found})`);
  }
  const segConfig = state ? md.cxformer_train_config : md.config;
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
    seg: JSON.parse(segConfig ?? '{}') as SegConfig,
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
