/**
 * Full fine-tuning of the backbone for classification (docs/recipe.md §5.1 with the backbone actually trained; §7.7): the
 * native fine-tuner (crates/core/src/classify/finetune.rs) holds backbone + head (the linear mode's feature layout and head)
 * and AdamW with separate head / backbone learning rates and layer-wise decay; TypeScript owns the data, the epoch
 * order, the §5.1 train augmentations (src/finetune/augment.ts, executed natively), validation, model selection,
 * early stopping, checkpoints and the final report.
 *
 * Output folder (`out`):
 *   finetune.json                 the resolved settings (a re-run with other values refuses unless `force`)
 *   checkpoints/state.safetensors the whole training state (model, AdamW moments, step) + position, best, history
 *   best/model/                   HF folder of the selected backbone (config.json, model.safetensors, preprocessor)
 *   best/head.safetensors         its head (`cxformer evaluate --weights best/model --head best/head.safetensors`)
 *   metrics.jsonl, train.log      one line per epoch; log
 *   events.out.tfevents.*         the same numbers for TensorBoard, one file per start (src/run/tensorboard.ts;
 *                                 `tensorboard: false` turns them off)
 *   eval/                         test (else validation) report of the selected model, as the linear mode's
 * Re-running the same command resumes from the state (mid-epoch positions included) and ends exactly as an
 * uninterrupted run: the epoch order comes from (seed, epoch), the augmentations from (seed, step), stochastic depth
 * from (seed, step).
 *
 * Data parallel (docs/distributed.md, "cxformer finetune --mode full"): started as several ranks (cxformer launch,
 * torchrun, Slurm) the ranks join a process group; `batchSize` is per rank and the global batch G = batchSize × W.
 * Each epoch's permutation (the single-process one) is cut into ⌈N / G⌉ global batches; rank r takes the r-th of W
 * contiguous, disjoint, near-equal slices of each; a slice that would be empty (fewer images left than ranks) is one
 * padding image with no supervised entry, which contributes nothing. Every rank therefore takes the same number of
 * steps, every image is seen once per epoch, and the augmentation of an image is keyed by its position in the
 * global batch; with the native fine-tuner's gradient (the mean over every supervised entry of the global batch)
 * W ranks × b train as one process × W·b (stochastic depth aside: each rank draws its own). Validation: each rank
 * predicts a contiguous share of the validation split, the predictions are all-gathered, every rank computes the
 * same metrics, and rank 0's selection / early-stop decision is broadcast. Rank 0 alone writes the folder and
 * evaluates the selected model on the held-out split (after the other ranks left).
 */
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { rngFor } from '../augment/rng.js';
import { threadCount, toHfPreprocessorConfig, writeJsonAtomic } from '../backbone.js';
import { writeFileAtomic } from '../data/fsutil.js';
import { CLASSIFICATION } from '../config/downstream.js';
import type { DatasetSpec, LabelPolicy } from '../datasets/index.js';
import { multiLabelAveragePrecision, multiLabelRocAuc } from '../eval/metrics.js';
import type { EvaluationReport } from '../eval/report.js';
import { resolvePreprocessOptions, type PreprocessOptions } from '../image/options.js';
import { preprocessBatch, type PreprocessedBatch } from '../image/preprocess.js';
import { describeDistEnv, rankThreads, type DistEnv } from '../distributed/env.js';
import { type DistSettings, type ProcessGroup, withProcessGroup } from '../distributed/group.js';
import { batchShare, packPlanes, stepsPerEpoch } from '../run/batches.js';
import { withRunFolder, type RunFolder } from '../run/folder.js';
import { dumpRankState, gatherRows, onRankZero, rankZeroDecides, requireShared, stopTogether } from '../run/rank.js';
import { refuseChangedSettings, settingsDiff } from '../run/settings.js';
import { EventFile } from '../run/tensorboard.js';
import { INTERP_HF_SIZE, INTERP_REGISTERS_AA, toHfConfig } from '../model/config.js';
import { writeHfConfig } from '../model/hf-json.js';
import { resolveModel } from '../model/weights.js';
import type { NativeFinetuner } from '../native/binding/binding.js';
import { call, callSync, CxformerError, native } from '../native/load.js';
import { loadTrainImage, type GrayImage } from '../cache/planes.js';
import { FINETUNE_AUGMENTS, planFinetuneBatch, type FinetuneAugment } from './augment.js';
import { evaluateHead, labelled, reportLabels, subset, type BackboneChoice, type Labelled } from './classify.js';
import { checkLabelType, multiclassAccuracy, nativeTargets, type LabelType } from './labels.js';

/** Training settings of the full mode (omitted = default; defaults: docs/recipe.md §5.1 with the backbone trained). */
export interface FullTrainConfig {
  /** @default 100 */
  epochs?: number;
  /** Images per optimizer step. @default 10 */
  batchSize?: number;
  /** Head learning rate. @default 5e-5 */
  headLr?: number;
  /** Backbone base learning rate (before layer-wise decay); 0 freezes it. @default 5e-7 */
  backboneLr?: number;
  /** Layer-wise lr decay (1 = off; BEiT/DINOv2 fine-tuning uses 0.65–0.9). @default 1 */
  layerwiseDecay?: number;
  /** Extra lr multiplier of the patch embedding. @default 1 */
  patchEmbedLrMult?: number;
  /** Decoupled weight decay of weight matrices (never biases, norms, tokens, pos_embed). @default 0 */
  weightDecay?: number;
  /** Linear warm-up from 0, in epochs. @default 0 */
  warmupEpochs?: number;
  /** @default 'constant' */
  schedule?: 'cosine' | 'constant';
  /** Max total gradient norm, 0 = off. @default 1 */
  clipGrad?: number;
  /** 'bf16' autocast or 'f32'. @default bf16 on CUDA, f32 on the CPU */
  precision?: 'f32' | 'bf16';
  /** Head init, data order, augmentation and stochastic-depth seed. @default 7479 */
  seed?: number;
  /** Hidden widths of an MLP head. @default [] */
  hidden?: number[];
  /** BCE positive-class weights (one per class; multilabel/binary). @default null */
  posWeight?: number[] | null;
  /** Stochastic depth rate of the backbone during fine-tuning. @default the model's (0 for released weights) */
  dropPath?: number;
  /** Area range of the train RandomResizedCrop (docs/recipe.md §5.1: [0.08, 1]). @default [0.08, 1] */
  cropScale?: [number, number];
  /** Train transform: §5.1 ('spec'), without its RandomAffine ('light'), or none (src/finetune/augment.ts). @default 'spec' */
  augment?: FinetuneAugment;
  /** Model selection on the validation split: macro AUROC / AUPRC (higher) or loss (lower), or the last epoch. @default 'valAuroc' */
  selectBest?: 'valAuroc' | 'valAuprc' | 'valLoss' | 'last';
  /** Stop after this many epochs without a better validation score (0 = never). @default 0 */
  patience?: number;
  /** Images per evaluation forward pass. @default 8 */
  evalBatchSize?: number;
  /** Also save the state every this many steps (0 = at epoch ends only). @default 0 */
  checkpointSteps?: number;
}

export interface FullFinetuneEvent {
  kind: 'start' | 'step' | 'epoch' | 'log' | 'done';
  epoch?: number;
  step?: number;
  totalSteps?: number;
  loss?: number;
  lr?: number;
  imagesPerS?: number;
  etaSeconds?: number;
  record?: EpochRecord;
  message?: string;
}

export interface FullFinetuneOptions {
  backbone: BackboneChoice;
  dataset: DatasetSpec;
  classes: string[];
  labelType?: LabelType;
  policy?: Partial<LabelPolicy>;
  /** Feature layout of the head (as the linear mode). */
  features?: { clsLayers?: number; avgpool?: boolean };
  /** Evaluation transform on top of the weights' own preprocessing; its crop side is the training crop side. */
  preprocess?: Partial<PreprocessOptions>;
  train?: FullTrainConfig;
  out: string;
  /** Bootstrap resamples of the final report (0 = point estimates). @default 1000 */
  bootstrap?: number;
  /** Resume into a folder whose finetune.json has other values. */
  force?: boolean;
  /**
   * TensorBoard event files beside metrics.jsonl (not a training setting: it may change on resume);
   * CXFORMER_TENSORBOARD=0 turns them off regardless. @default true (configs/downstream/defaults.json)
   */
  tensorboard?: boolean;
  onEvent?: (e: FullFinetuneEvent) => void;
  signal?: AbortSignal;
  /** Stop (saving the state) once this many steps have been taken in total: tests of interruption. */
  stopAfterSteps?: number;
  /** Data parallel runs (started as several ranks): collective timeout and backend. @default {timeoutS: 600, backend: 'auto'} */
  dist?: DistSettings;
}

/** One epoch in metrics.jsonl. */
export interface EpochRecord {
  epoch: number;
  /** Scheduled steps so far. */
  step: number;
  /** Head lr of the epoch's last step. */
  lr: number;
  train_loss: number | null;
  train_entries: number;
  skipped_batches: number;
  val_loss: number | null;
  val_macro_auroc: number | null;
  val_macro_auprc: number | null;
  val_accuracy?: number | null;
  /** The selected epoch so far. */
  best_epoch: number | null;
  images_per_s: number;
  seconds: number;
}

export interface FullFinetuneResult {
  out: string;
  interrupted: boolean;
  history: EpochRecord[];
  bestEpoch: number | null;
  /** The held-out report (null when interrupted). */
  report: (EvaluationReport & { split: 'test' | 'valid' }) | null;
  bestModel: string;
  bestHead: string;
  /** This process's rank and the number of data-parallel ranks (1 without a launcher); only rank 0 has a report. */
  rank: number;
  worldSize: number;
}

/** Position and bookkeeping stored with the state. */
interface Progress {
  epoch: number;
  batch: number;
  done: boolean;
  /** Training ended by early stopping (patience). */
  stopped?: boolean;
  best: { epoch: number; score: number } | null;
  history: EpochRecord[];
  running: { sum: number; entries: number; skipped: number; images: number; seconds: number; lr: number };
}

const STATE = 'state.safetensors';

type ResolvedTrain = Required<Omit<FullTrainConfig, 'dropPath'>> & { dropPath: number | null };

function resolvedTrain(t: FullTrainConfig, device: string): ResolvedTrain {
  // The defaults: configs/downstream/defaults.json (the CLI declares none of its own).
  const d = CLASSIFICATION;
  return {
    epochs: t.epochs ?? d.epochs,
    batchSize: t.batchSize ?? d.headBatchSize,
    headLr: t.headLr ?? d.lr,
    backboneLr: t.backboneLr ?? d.backboneLr,
    layerwiseDecay: t.layerwiseDecay ?? d.layerwiseDecay,
    patchEmbedLrMult: t.patchEmbedLrMult ?? d.patchEmbedLrMult,
    weightDecay: t.weightDecay ?? d.weightDecay,
    warmupEpochs: t.warmupEpochs ?? d.warmupEpochs,
    schedule: t.schedule ?? d.schedule,
    clipGrad: t.clipGrad ?? d.clipGrad,
    precision: t.precision ?? (device.startsWith('cuda') ? 'bf16' : 'f32'),
    seed: t.seed ?? d.seed,
    hidden: t.hidden ?? [...d.hidden],
    posWeight: t.posWeight ?? d.posWeight,
    dropPath: t.dropPath ?? null,
    cropScale: t.cropScale ?? [...d.cropScale],
    augment: t.augment ?? d.augment,
    selectBest: t.selectBest ?? d.selectBest,
    patience: t.patience ?? d.patience,
    evalBatchSize: t.evalBatchSize ?? d.batchSize,
    checkpointSteps: t.checkpointSteps ?? d.checkpointSteps,
  };
}

const SELECT = ['valAuroc', 'valAuprc', 'valLoss', 'last'] as const;

function checkTrain(t: ResolvedTrain): void {
  const int = (name: string, v: number, min: number) => {
    if (!(Number.isInteger(v) && v >= min)) throw new CxformerError('CXF_ARG', `${name} must be an integer ≥ ${min}, got ${v}`);
  };
  int('epochs', t.epochs, 1);
  int('batch size', t.batchSize, 1);
  int('patience', t.patience, 0);
  int('eval batch size', t.evalBatchSize, 1);
  int('checkpoint steps', t.checkpointSteps, 0);
  if (!(SELECT as readonly string[]).includes(t.selectBest)) {
    throw new CxformerError('CXF_ARG', `--select-best: expected one of ${SELECT.join(', ')}, got '${t.selectBest}'`);
  }
  if (t.dropPath !== null && !(t.dropPath >= 0 && t.dropPath < 1)) throw new CxformerError('CXF_ARG', `drop path must be in [0, 1), got ${t.dropPath}`);
  if (!(FINETUNE_AUGMENTS as readonly string[]).includes(t.augment)) {
    throw new CxformerError('CXF_ARG', `--augment: expected one of ${FINETUNE_AUGMENTS.join(', ')}, got '${t.augment}'`);
  }
  const [lo, hi] = t.cropScale;
  if (!(t.cropScale.length === 2 && lo > 0 && lo <= hi && hi <= 1)) {
    throw new CxformerError('CXF_ARG', `crop scale must be two numbers 0 < min ≤ max ≤ 1 (docs/recipe.md §5.1: 0.08,1), got ${t.cropScale.join(',')}`);
  }
}

/** Squared-side crop size of the evaluation transform (also the training crop side). */
function cropSide(p: PreprocessOptions): number {
  const c = p.crop;
  if (typeof c === 'number') return c;
  if (Array.isArray(c) && c[0] === c[1]) return c[0];
  throw new CxformerError('CXF_ARG', `full fine-tuning trains on square crops: give --crop <side> (the evaluation crop, e.g. 518), got ${JSON.stringify(c)}`);
}

/** Validation / test probabilities and loss of the current model, in batches of preprocessed images. */
class EvalSet {
  private cache = new Map<number, PreprocessedBatch>();
  constructor(
    readonly l: Labelled,
    readonly native: { targets: Float32Array; mask: Uint8Array },
    readonly pre: PreprocessOptions,
    readonly batch: number,
    readonly keep: boolean,
  ) {}

  /** Records lo..hi − 1 (default all): their probabilities, summed loss and supervised entries. */
  async run(ft: NativeFinetuner, C: number, signal?: AbortSignal, lo = 0, hi = this.l.records.length): Promise<{ probs: Float32Array; sum: number; entries: number }> {
    const probs = new Float32Array((hi - lo) * C);
    let sum = 0;
    let entries = 0;
    for (let s = lo, k = 0; s < hi; s += this.batch, k++) {
      if (signal?.aborted) throw new CxformerError('CXF_CANCELLED', 'evaluation cancelled');
      let b = this.cache.get(k);
      if (!b) {
        b = await preprocessBatch(this.l.records.slice(s, Math.min(hi, s + this.batch)).map((r) => r.path), this.pre);
        if (this.keep) this.cache.set(k, b);
      }
      const rows = b.shape[0];
      const p = await call('finetune predict', () =>
        ft.predict(b.data, [...b.shape], this.native.targets.subarray(s * C, (s + rows) * C), [rows, C], this.native.mask.subarray(s * C, (s + rows) * C)),
      );
      probs.set(p.probs.data, (s - lo) * C);
      sum += p.lossSum ?? 0;
      entries += p.entries ?? 0;
    }
    return { probs, sum, entries };
  }
}


/** Validation over every rank (each predicts its share; every rank gets the whole split's probabilities). */
async function runValidation(set: EvalSet, ft: NativeFinetuner, C: number, pg: ProcessGroup | null, signal?: AbortSignal): Promise<{ probs: Float32Array; loss: number | null }> {
  const g = await gatherRows(pg, set.l.records.length, C, async (lo, hi) => {
    const r = await set.run(ft, C, signal, lo, hi);
    return { rows: r.probs, tail: [r.sum, r.entries] };
  });
  const sum = g.tails.reduce((a, t) => a + (t[0] ?? 0), 0);
  const entries = g.tails.reduce((a, t) => a + (t[1] ?? 0), 0);
  return { probs: g.rows, loss: entries > 0 ? sum / entries : null };
}

/** Validation metrics of probabilities on a labelled split. */
function valMetrics(probs: Float32Array, l: Labelled, C: number, labelType: LabelType) {
  const data = { numClasses: C, scores: probs, labels: reportLabels(l) };
  const auroc = multiLabelRocAuc(data).macro.value;
  const auprc = multiLabelAveragePrecision(data).macro.value;
  const acc = labelType === 'multiclass' ? multiclassAccuracy(probs, l.targets, l.mask, C).value : undefined;
  return { auroc, auprc, acc };
}

/**
 * Fine-tunes backbone + head, keeps the best epoch, evaluates it on the held-out split. Resumes automatically.
 * Started as several ranks (torchrun / Slurm / cxformer launch variables), it trains data parallel (see the top).
 */
export async function fullFinetune(o: FullFinetuneOptions): Promise<FullFinetuneResult> {
  // Bad settings are refused before the run folder is touched.
  const t = resolvedTrain(o.train ?? {}, o.backbone.device ?? 'cpu');
  checkTrain(t);
  const emit = o.onEvent ?? (() => undefined);
  return withProcessGroup(o.dist, o.backbone.device ?? 'cpu', (env, device, pg) => {
    // The run folder (src/run/folder.ts): rank 0 holds its lock, train.log gets every rank's error.
    const folder = { dir: path.resolve(o.out), rank: env.rank, pg, command: 'cxformer finetune --mode full', report: (message: string) => emit({ kind: 'log', message }) };
    return withRunFolder(folder, (run) => finetuneRanked({ o, t, env, device, pg, log: run.log, emit }));
  });
}

/** One rank's run: what every step below reads. */
interface Ctx {
  o: FullFinetuneOptions;
  t: ResolvedTrain;
  env: DistEnv;
  device: string;
  pg: ProcessGroup | null;
  log: RunFolder['log'];
  emit: (e: FullFinetuneEvent) => void;
}

/** What follows from the options before anything is trained: model, preprocessing, data, batch geometry. */
type Setup = Awaited<ReturnType<typeof prepare>>;

/** Run-folder paths. */
function folderPaths(out: string) {
  const bestModel = path.join(out, 'best', 'model');
  return {
    out,
    ckDir: path.join(out, 'checkpoints'),
    state: path.join(out, 'checkpoints', STATE),
    settings: path.join(out, 'finetune.json'),
    metrics: path.join(out, 'metrics.jsonl'),
    bestModel,
    bestHead: path.join(out, 'best', 'head.safetensors'),
  };
}

async function finetuneRanked(x: Ctx): Promise<FullFinetuneResult> {
  const { o, t, env, pg, log, emit } = x;
  const { rank, worldSize: world } = env;
  const lead = rank === 0;
  const files = folderPaths(path.resolve(o.out));
  const s = await prepare(x);

  // ---- the run folder: rank 0 decides whether this is a resume; every rank must then see the state ----
  const resuming = await rankZeroDecides(pg, lead && existsSync(files.state));
  if (resuming) await requireShared(pg, files.state);
  await onRankZero(pg, 'checking the run folder', async () => {
    await mkdir(files.ckDir, { recursive: true });
    if (resuming && existsSync(files.settings)) {
      const prev = JSON.parse(await readFile(files.settings, 'utf8')) as Record<string, unknown>;
      const names = settingsDiff(prev, s.settings, { nested: ['train'], free: ['train.evalBatchSize', 'train.checkpointSteps'], recordedDefaults: { 'train.augment': 'spec' } });
      refuseChangedSettings(names, { dir: files.out, file: 'finetune.json', what: 'fine-tuning run', force: o.force ?? false });
    }
    await writeJsonAtomic(files.settings, s.settings);
    await log(`data: train ${s.N}, valid ${s.valid.records.length}, test ${s.test.records.length}; ${s.labelType} over ${o.classes.join(', ')}`);
  });
  if (world > 1) {
    await log(`distributed: ${world} ranks, backend ${pg?.backend() ?? '?'}, this is ${describeDistEnv(env)}, device ${x.device}`);
    await log(`data: each rank takes a disjoint share of every global batch (${s.B} images per rank), ${s.S} steps per epoch on every rank`);
  }
  await log(
    `global batch = ${s.B} per rank × ${world} rank(s) = ${s.G}; learning rates are used as given (head ${t.headLr}, backbone ${t.backboneLr}): ` +
      'fine-tuning applies no lr scaling rule, so another number of ranks changes the global batch at the same lr',
  );

  // ---- native fine-tuner, fresh or resumed ----
  const ft = await createNative(x, s, resuming);
  const prog = resuming ? await resumeProgress(x, s, ft, files) : await freshProgress(x, s, files);
  // TensorBoard (src/run/tensorboard.ts): each start opens a new events file beside metrics.jsonl; its START after
  // the last epoch kept supersedes what a killed run logged later, as metrics.jsonl is rewritten from the history.
  let tb = null as EventFile | null;
  await onRankZero(pg, 'starting the events file', async () => {
    tb = (o.tensorboard ?? CLASSIFICATION.tensorboard) ? EventFile.create(files.out, { firstStep: (prog.history.at(-1)?.step ?? -1) + 1, config: JSON.stringify(s.settings, null, 2) }) : null;
  });

  /**
   * Rank 0 writes the state (after `before`, e.g. the export of a new best, so that a state never names a best epoch
   * whose export is missing; then `after`); every rank learns whether that went well.
   */
  const saveState = (w: { before?: () => Promise<void>; after?: () => Promise<void> } = {}) =>
    onRankZero(pg, `saving the state at step ${ft.steps}`, async () => {
      await w.before?.();
      await call('saveState', () => ft.saveState(files.state, { cxformer_progress: JSON.stringify(prog), cxformer_world_size: String(world) }));
      await w.after?.();
    });
  const exportBest = (epoch: number) => exportModel(x, s, ft, files, epoch);

  // ---- epochs: train, validate, select, stop early, save ----
  // Validation images are preprocessed once and kept when they fit in 1 GiB.
  const keep = s.valid.records.length * 3 * s.size * s.size * 4 <= 2 ** 30;
  const valSet = s.valid.records.length ? new EvalSet(s.valid, s.nValid, s.pre, t.evalBatchSize, keep) : null;
  const total = t.epochs * s.S;
  if (lead) emit({ kind: 'start', epoch: prog.epoch, step: ft.steps, totalSteps: total });
  const clock = { t0: performance.now(), step0: ft.steps, total };
  let interrupted = false;
  while (!prog.done && prog.epoch < t.epochs) {
    interrupted = await trainEpoch(x, s, ft, prog, clock, saveState);
    if (interrupted) break;
    const { record, improved, stop } = await endEpoch(x, s, ft, prog, valSet);
    await saveState({
      ...(improved ? { before: () => exportBest(record.epoch) } : {}),
      after: async () => {
        await appendFile(files.metrics, `${JSON.stringify(record)}\n`);
        tb?.metrics(record.step, record, ['step']);
        await log(epochLine(record, s.labelType, stop ? t.patience : 0));
      },
    });
    if (lead) emit({ kind: 'epoch', epoch: record.epoch, record });
  }
  await dumpRankState(rank, (file) => call('saveState', () => ft.saveState(file, { cxformer_progress: JSON.stringify(prog) })));
  const result = { out: files.out, interrupted, history: prog.history, bestEpoch: prog.best?.epoch ?? null, report: null, bestModel: files.bestModel, bestHead: files.bestHead, rank, worldSize: world };
  if (interrupted) {
    await saveState({ after: () => log(`interrupted at epoch ${prog.epoch}, batch ${prog.batch} (step ${ft.steps}); re-run the same command to resume`) });
    await pg?.barrier();
    if (lead) emit({ kind: 'done', message: 'interrupted' });
    return result;
  }
  // Training is over on every rank: the others leave (rank 0 hosts the rendezvous store and leaves last); rank 0
  // evaluates the selected model alone, as one process.
  await pg?.barrier();
  if (!lead) return result;
  if (!existsSync(files.bestHead)) {
    // No epoch had a defined validation score: keep the final model.
    await log(`no epoch had a defined validation ${s.selectBest}: keeping the last epoch`);
    await exportBest(prog.history.at(-1)?.epoch ?? 0);
  }
  const report = await evaluateHeldOut(x, s, files, prog);
  return { ...result, report };
}

/** Model, preprocessing, labelled splits and the batch geometry of the run (no side effects). */
async function prepare(x: Ctx) {
  const { o, t } = x;
  const world = x.env.worldSize;
  const C = o.classes.length;
  const labelType = checkLabelType(o.labelType ?? 'multilabel', o.classes);
  const clsLayers = o.features?.clsLayers ?? CLASSIFICATION.clsLayers;
  const avgpool = o.features?.avgpool ?? CLASSIFICATION.avgpool;
  const resolved = await resolveModel({ weights: o.backbone.weights, arch: o.backbone.arch, overrides: o.backbone.overrides ?? [] });
  // The position-embedding interpolation of the exported HF family (with registers: antialiased bicubic to the
  // size; without: bicubic to the size), so `cxformer evaluate` on best/model computes what was trained. It differs
  // from a checkpoint's original DINOv2 rule only when --crop differs from the model's img_size.
  const family = resolved.config.num_register_tokens > 0 ? INTERP_REGISTERS_AA : INTERP_HF_SIZE;
  const vit = { ...resolved.config, interpolation: { ...family }, ...(t.dropPath !== null ? { drop_path_rate: t.dropPath } : {}) };
  const pre = resolvePreprocessOptions({ ...(resolved.preprocess ?? {}), ...o.preprocess });
  const size = cropSide(pre);
  if (size % vit.patch_size !== 0) throw new CxformerError('CXF_ARG', `--crop ${size} must be a multiple of the patch size ${vit.patch_size}`);

  const all = await labelled(o.dataset, o.classes, o.policy);
  const train = subset(all, (r) => r.split === 'train' || r.split === undefined, C);
  const valid = subset(all, (r) => r.split === 'valid', C);
  const test = subset(all, (r) => r.split === 'test', C);
  if (!train.records.length || !(valid.records.length || test.records.length)) {
    throw new CxformerError(
      'CXF_INPUT',
      `full fine-tuning: need train and valid/test records, found train ${train.records.length}, valid ${valid.records.length}, test ${test.records.length} (give splits in the data, e.g. a Split column)`,
    );
  }
  const ids = (l: Labelled) => l.records.map((r) => r.id);
  const nTrain = nativeTargets(labelType, train.targets, train.mask, C, ids(train), o.classes);
  const nValid = nativeTargets(labelType, valid.targets, valid.mask, C, ids(valid), o.classes);
  const selectBest = valid.records.length ? t.selectBest : 'last';
  // The global batch G (one optimizer step) and the S steps per epoch every rank takes.
  const N = train.records.length;
  const B = t.batchSize;
  const G = B * world;
  const S = stepsPerEpoch(N, G);
  const settings: Record<string, unknown> = {
    format: 'cxformer-finetune/1',
    classes: o.classes,
    labelType,
    dataset: o.dataset,
    policy: o.policy ?? null,
    backbone: { weights: resolved.weights?.file ?? null, arch: o.backbone.arch ?? null, overrides: o.backbone.overrides ?? [], seed: o.backbone.seed ?? 0 },
    features: { clsLayers, avgpool },
    preprocess: pre,
    train: t,
    // The global batch is batchSize × ranks: another number of ranks is another run (unless --force).
    ...(world > 1 ? { worldSize: world } : {}),
  };
  return { C, labelType, clsLayers, avgpool, resolved, family, vit, pre, size, train, valid, test, nTrain, nValid, selectBest, N, B, G, S, settings };
}

/** The native fine-tuner (collective with a process group: rank 0's initial state is broadcast to every rank). */
async function createNative(x: Ctx, s: Setup, resuming: boolean): Promise<NativeFinetuner> {
  const { t } = x;
  const bind = native();
  // Ranks sharing a node share its cores.
  callSync('setThreads', () => bind.setThreads(rankThreads(threadCount(x.o.backbone.threads), x.env)));
  const config = {
    model: s.vit,
    numClasses: s.C,
    clsLayers: s.clsLayers,
    avgpool: s.avgpool,
    hidden: t.hidden,
    task: s.labelType,
    posWeight: t.posWeight,
    headLr: t.headLr,
    backboneLr: t.backboneLr,
    layerwiseDecay: t.layerwiseDecay,
    patchEmbedLrMult: t.patchEmbedLrMult,
    weightDecay: t.weightDecay,
    epochs: t.epochs,
    warmupEpochs: t.warmupEpochs,
    schedule: t.schedule,
    stepsPerEpoch: s.S,
    clipGrad: t.clipGrad,
    precision: t.precision,
    seed: t.seed,
  };
  const init = resuming ? {} : s.resolved.weights ? { initWeights: s.resolved.weights.file } : {};
  return call('createFinetuner', () => bind.createFinetuner(JSON.stringify({ config, device: x.device, seed: x.o.backbone.seed ?? 0, ...init }), x.pg ?? undefined));
}

const emptyRunning = (): Progress['running'] => ({ sum: 0, entries: 0, skipped: 0, images: 0, seconds: 0, lr: 0 });

/** A fresh run: empty metrics.jsonl, the settings in train.log. */
async function freshProgress(x: Ctx, s: Setup, files: ReturnType<typeof folderPaths>): Promise<Progress> {
  const { log, t } = x;
  await onRankZero(x.pg, 'starting metrics.jsonl', () => writeFileAtomic(files.metrics, ''));
  const r = s.resolved;
  await log(`backbone: ${r.configSource}; ${r.weights ? `weights ${r.weights.file}` : `random initialisation (seed ${x.o.backbone.seed ?? 0})`}`);
  await log(`settings: ${JSON.stringify(t)}; crop ${s.size} px, ${s.S} steps per epoch`);
  const was = r.config.interpolation;
  if (s.size !== s.vit.img_size && (was.offset !== s.family.offset || was.antialias !== s.family.antialias)) {
    await log(`position embeddings: interpolated with the exported HF family's rule (offset ${s.family.offset}, antialias ${s.family.antialias}) instead of the weights' (offset ${was.offset}, antialias ${was.antialias})`);
  }
  return { epoch: 0, batch: 0, done: false, best: null, history: [], running: emptyRunning() };
}

/** A resume: the state (collective: every rank reads it, rank 0's is broadcast), metrics.jsonl from its history. */
async function resumeProgress(x: Ctx, s: Setup, ft: NativeFinetuner, files: ReturnType<typeof folderPaths>): Promise<Progress> {
  const md = await call('loadState', () => ft.loadState(files.state, x.o.force ?? false));
  const prog = JSON.parse(md.cxformer_progress ?? 'null') as Progress | null;
  if (!prog) throw new CxformerError('CXF_WEIGHTS', `${files.state}: no cxformer_progress metadata (not written by cxformer finetune --mode full)`);
  // Forced to more epochs: a run that ended by its epoch count (not by early stopping) continues.
  if (prog.done && !prog.stopped && prog.epoch < x.t.epochs) prog.done = false;
  // Lines written after the state are dropped: the resumed epochs write them again.
  await onRankZero(x.pg, 'rewriting metrics.jsonl', () => writeFileAtomic(files.metrics, prog.history.map((h) => `${JSON.stringify(h)}\n`).join('')));
  const world = x.env.worldSize;
  await x.log(
    `resuming from ${files.state} at epoch ${prog.epoch}, batch ${prog.batch} (step ${ft.steps})${world > 1 ? ` (all ${world} ranks)` : ''}${prog.done ? ': training is complete' : ''}`,
  );
  return prog;
}

/**
 * The steps of one epoch from the saved position (prog.batch); false at its end, true when the run is to stop
 * (Ctrl-C / signal, or stopAfterSteps), decided by every rank together.
 */
async function trainEpoch(
  x: Ctx,
  s: Setup,
  ft: NativeFinetuner,
  prog: Progress,
  clock: { t0: number; step0: number; total: number },
  saveState: () => Promise<void>,
): Promise<boolean> {
  const { o, t, pg, emit } = x;
  const { rank, worldSize: world } = x.env;
  const { C, S, G, size, train, nTrain } = s;
  const epoch = prog.epoch;
  const order = rngFor(t.seed, 0, epoch, 'finetune-order').permutation(s.N);
  const imgOpts = { equalize: s.pre.equalize, baseSize: null };
  // An empty share is one stand-in image without supervised entries (every rank takes every step).
  const part = (b: number) => {
    const p = batchShare(order, b, G, rank, world);
    return p.idx.length ? { ...p, pad: false } : { idx: [order[b * G] as number], first: G + rank, size: p.size, pad: true };
  };
  const load = (b: number): Promise<GrayImage[]> => Promise.all(part(b).idx.map((i) => loadTrainImage((train.records[i] as Labelled['records'][number]).path, imgOpts)));
  let next: Promise<GrayImage[]> | null = prog.batch < S ? load(prog.batch) : null;
  next?.catch(() => undefined);
  for (let b = prog.batch; b < S; b++) {
    const stopHere = (o.signal?.aborted ?? false) || (o.stopAfterSteps !== undefined && ft.steps >= o.stopAfterSteps);
    // Every rank stops at the same step (one all-reduce of the flag per step).
    if (await stopTogether(pg, stopHere)) return true;
    const tb = performance.now();
    const { idx, first, size: globalSize, pad } = part(b);
    const images = await (next as Promise<GrayImage[]>);
    next = b + 1 < S ? load(b + 1) : null;
    next?.catch(() => undefined);
    const step = ft.steps;
    // Image k of the global batch is augmented from rngFor(seed, 0, step, crops, k) whatever rank holds it: the plan
    // of the first `first` positions (other ranks' images) is drawn with stand-in sizes and dropped.
    const hw = images.map((im) => [im.height, im.width] as [number, number]);
    const crops = planFinetuneBatch(t.seed, step, [...Array<[number, number]>(first).fill(hw[0] as [number, number]), ...hw], size, t.cropScale, t.augment).slice(first);
    const { planes, sizes } = packPlanes(images);
    const targets = new Float32Array(idx.length * C);
    const mask = new Uint8Array(idx.length * C);
    idx.forEach((i, k) => {
      targets.set(nTrain.targets.subarray(i * C, (i + 1) * C), k * C);
      if (!pad) mask.set(nTrain.mask.subarray(i * C, (i + 1) * C), k * C);
    });
    const rec = JSON.parse(
      await call(`finetune step ${step}`, () => ft.stepImages(planes, sizes, JSON.stringify(crops), size, targets, [idx.length, C], mask)),
    ) as { step: number; loss: number; entries: number; lr: number; gradNorm: number; skipped: boolean };
    // The step's loss and entries are those of the global batch (every rank holds the same values).
    const dt = (performance.now() - tb) / 1000;
    const r = prog.running;
    r.sum += rec.loss * rec.entries;
    r.entries += rec.entries;
    r.skipped += rec.skipped ? 1 : 0;
    r.images += globalSize;
    r.seconds += dt;
    r.lr = rec.lr;
    prog.batch = b + 1;
    const eta = ((performance.now() - clock.t0) / 1000 / Math.max(1, ft.steps - clock.step0)) * (clock.total - ft.steps);
    if (rank === 0) emit({ kind: 'step', epoch, step, totalSteps: clock.total, loss: rec.loss, lr: rec.lr, imagesPerS: globalSize / dt, etaSeconds: eta });
    if (t.checkpointSteps > 0 && ft.steps % t.checkpointSteps === 0 && b + 1 < S) await saveState();
  }
  return false;
}

/** End of an epoch: validation, selection (rank 0 decides), early stopping; advances `prog` to the next epoch. */
async function endEpoch(x: Ctx, s: Setup, ft: NativeFinetuner, prog: Progress, valSet: EvalSet | null) {
  const { t, pg } = x;
  const epoch = prog.epoch;
  const r = prog.running;
  let val: { probs: Float32Array; loss: number | null } = { probs: new Float32Array(0), loss: null };
  let vm: { auroc: number | null; auprc: number | null; acc?: number | null } = { auroc: null, auprc: null };
  if (valSet) {
    val = await runValidation(valSet, ft, s.C, pg, x.o.signal);
    vm = valMetrics(val.probs, s.valid, s.C, s.labelType);
  }
  const score = { valAuroc: vm.auroc, valAuprc: vm.auprc, valLoss: val.loss === null ? null : -val.loss, last: null }[s.selectBest];
  // Every rank computed the same metrics from the same gathered predictions; rank 0's decision is still the one taken.
  const improved = await rankZeroDecides(pg, s.selectBest === 'last' || (score !== null && (prog.best === null || score > prog.best.score)));
  if (improved) prog.best = { epoch, score: score ?? 0 };
  const record: EpochRecord = {
    epoch,
    step: ft.steps,
    lr: r.lr,
    train_loss: r.entries > 0 ? r.sum / r.entries : null,
    train_entries: r.entries,
    skipped_batches: r.skipped,
    val_loss: val.loss,
    val_macro_auroc: vm.auroc,
    val_macro_auprc: vm.auprc,
    ...(s.labelType === 'multiclass' ? { val_accuracy: vm.acc ?? null } : {}),
    best_epoch: prog.best?.epoch ?? null,
    images_per_s: r.seconds > 0 ? r.images / r.seconds : 0,
    seconds: r.seconds,
  };
  prog.history.push(record);
  prog.epoch = epoch + 1;
  prog.batch = 0;
  prog.running = emptyRunning();
  const stop = t.patience > 0 && s.selectBest !== 'last' && prog.best !== null && epoch - prog.best.epoch >= t.patience;
  if (stop || prog.epoch >= t.epochs) prog.done = true;
  if (stop) prog.stopped = true;
  return { record, improved, stop };
}

/** The train.log line of an epoch (`patience` > 0: it stopped early). */
function epochLine(r: EpochRecord, labelType: LabelType, patience: number): string {
  const f = (v: number | null | undefined) => (v === null || v === undefined ? 'n/a' : v.toFixed(4));
  return (
    `epoch ${r.epoch}: train loss ${f(r.train_loss)}, val loss ${f(r.val_loss)}, val macro AUROC ${f(r.val_macro_auroc)}, AUPRC ${f(r.val_macro_auprc)}` +
    `${labelType === 'multiclass' ? `, accuracy ${f(r.val_accuracy)}` : ''}; best epoch ${r.best_epoch ?? 'n/a'}${patience ? ` — early stop (patience ${patience})` : ''}`
  );
}

/** Writes the current model as best/: an HF folder and its head (read by `cxformer evaluate`). */
async function exportModel(x: Ctx, s: Setup, ft: NativeFinetuner, files: ReturnType<typeof folderPaths>, epoch: number): Promise<void> {
  await mkdir(files.bestModel, { recursive: true });
  const meta = {
    classes: JSON.stringify(x.o.classes),
    feature_options: JSON.stringify({ clsLayers: s.clsLayers, avgpool: s.avgpool }),
    backbone: 'best/model (fine-tuned)',
    best_epoch: String(epoch),
    label_type: s.labelType,
  };
  await call('exportModel', () => ft.exportModel(path.join(files.bestModel, 'model.safetensors'), files.bestHead, meta));
  await writeHfConfig(path.join(files.bestModel, 'config.json'), toHfConfig(s.vit));
  await writeJsonAtomic(path.join(files.bestModel, 'preprocessor_config.json'), toHfPreprocessorConfig(s.pre));
}

/** The selected model on the held-out split (test, else validation), through the same path as `cxformer evaluate`. */
async function evaluateHeldOut(x: Ctx, s: Setup, files: ReturnType<typeof folderPaths>, prog: Progress): Promise<FullFinetuneResult['report']> {
  const { o } = x;
  const split = s.test.records.length ? 'test' : 'valid';
  await x.log(`evaluating the model of epoch ${prog.best?.epoch ?? 'last'} on the ${split} split`);
  const rep = await evaluateHead({
    backbone: { weights: files.bestModel, device: x.device, threads: o.backbone.threads },
    head: files.bestHead,
    dataset: { ...o.dataset, split } as DatasetSpec,
    ...(o.policy ? { policy: o.policy } : {}),
    out: path.join(files.out, 'eval'),
    bootstrap: o.bootstrap ?? CLASSIFICATION.bootstrap,
    preprocess: s.pre,
    title: `Full fine-tuning (${split} split)`,
  });
  x.emit({ kind: 'done', message: rep.files.report });
  return { ...rep, split };
}
