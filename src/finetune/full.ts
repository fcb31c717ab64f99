/**
 * Full fine-tuning of the backbone for classification (docs/recipe.md §5.1 with the backbone actually trained; §7.7): the
 * native fine-tuner (crates/core/src/finetune.rs) holds backbone + head (the linear mode's feature layout and head)
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
import { agreeStop, allOrNothing, broadcastInt, type DistSettings, type ProcessGroup, withProcessGroup } from '../distributed/group.js';
import { share } from '../distributed/shard.js';
import { withRunFolder, type RunFolder } from '../run/folder.js';
import { ConfigError, INTERP_HF_SIZE, INTERP_REGISTERS_AA, toHfConfig } from '../model/config.js';
import { resolveModel } from '../model/weights.js';
import type { NativeFinetuner } from '../native/binding/binding.js';
import { call, callSync, CxformerError, native } from '../native/load.js';
import { loadTrainImage, type GrayImage } from '../train/images.js';
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

/**
 * Validation over every rank: each predicts its share, the shares are all-gathered (padded to one length: the
 * native all-gather needs equal lengths), so every rank holds the probabilities of the whole split in order.
 */
async function runValidation(set: EvalSet, ft: NativeFinetuner, C: number, pg: ProcessGroup | null, signal?: AbortSignal): Promise<{ probs: Float32Array; loss: number | null }> {
  const n = set.l.records.length;
  if (!pg) {
    const r = await set.run(ft, C, signal);
    return { probs: r.probs, loss: r.entries > 0 ? r.sum / r.entries : null };
  }
  const W = pg.worldSize;
  const [lo, hi] = share(n, pg.rank, W);
  const part = await allOrNothing(pg, 'validation', () => set.run(ft, C, signal, lo, hi));
  const rows = Math.ceil(n / W);
  const buf = new Float32Array(rows * C + 2);
  buf.set(part.probs);
  buf[rows * C] = part.sum;
  buf[rows * C + 1] = part.entries;
  const all = await call('gather validation predictions', () => pg.allGather(buf));
  const probs = new Float32Array(n * C);
  let sum = 0;
  let entries = 0;
  all.forEach((g, r) => {
    const [a, b] = share(n, r, W);
    probs.set(g.subarray(0, (b - a) * C), a * C);
    sum += g[rows * C] as number;
    entries += g[rows * C + 1] as number;
  });
  return { probs, loss: entries > 0 ? sum / entries : null };
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
    return withRunFolder(folder, (run) => finetuneRanked(o, t, env, device, pg, run.log));
  });
}

async function finetuneRanked(
  o: FullFinetuneOptions,
  t: ResolvedTrain,
  env: DistEnv,
  device: string,
  pg: ProcessGroup | null,
  log: RunFolder['log'],
): Promise<FullFinetuneResult> {
  const emit = o.onEvent ?? (() => undefined);
  const { rank, worldSize: world } = env;
  const lead = rank === 0;
  const out = path.resolve(o.out);
  const ckDir = path.join(out, 'checkpoints');
  const bestDir = path.join(out, 'best');
  const bestModel = path.join(bestDir, 'model');
  const bestHead = path.join(bestDir, 'head.safetensors');
  const statePath = path.join(ckDir, STATE);

  // ---- settings ----
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

  // ---- data ----
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
  const N = train.records.length;
  const B = t.batchSize;
  // The global batch (one optimizer step) and the steps per epoch; every rank takes S steps.
  const G = B * world;
  const S = Math.ceil(N / G);

  // ---- the run folder ----
  const settings = {
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
  const settingsPath = path.join(out, 'finetune.json');
  // Rank 0 decides whether this is a resume; every rank must then see the same state file.
  const resuming = pg ? (await broadcastInt(pg, lead && existsSync(statePath) ? 1 : 0)) === 1 : existsSync(statePath);
  await allOrNothing(pg, 'checking the run folder', async () => {
    if (!lead) {
      if (resuming && !existsSync(statePath)) {
        throw new CxformerError('CXF_DIST', `rank ${rank} cannot see ${statePath} found by rank 0: put the output folder on a file system shared by all nodes`);
      }
      return;
    }
    await mkdir(ckDir, { recursive: true });
    await checkSettings();
    await writeJsonAtomic(settingsPath, settings);
    await log(`data: train ${N}, valid ${valid.records.length}, test ${test.records.length}; ${labelType} over ${o.classes.join(', ')}`);
  });
  async function checkSettings() {
    if (!(resuming && existsSync(settingsPath))) return;
    const prev = JSON.parse(await readFile(settingsPath, 'utf8')) as Record<string, unknown>;
    const diff = Object.keys(settings).filter((k) => JSON.stringify(prev[k]) !== JSON.stringify((settings as Record<string, unknown>)[k]));
    // The evaluation batch and the checkpoint period do not change the result.
    const free = new Set(['evalBatchSize', 'checkpointSteps']);
    // Runs written before --augment existed trained with the §5.1 transform.
    const prevTrain: Record<string, unknown> = { augment: 'spec', ...(prev.train as Record<string, unknown> | undefined) };
    const trainDiff = diff.includes('train')
      ? Object.keys(t)
          .filter((k) => !free.has(k) && JSON.stringify(prevTrain[k]) !== JSON.stringify((t as Record<string, unknown>)[k]))
          .map((k) => `train.${k}`)
      : [];
    const names = [...diff.filter((d) => d !== 'train'), ...trainDiff];
    if (names.length && !o.force) {
      throw new ConfigError(
        `${out} holds a fine-tuning run with other settings (${names.join(', ')} differ from its finetune.json). ` +
          'Choose another --out folder, or pass --force to resume it with the new values.',
      );
    }
  }
  if (world > 1) {
    await log(`distributed: ${world} ranks, backend ${pg?.backend() ?? '?'}, this is ${describeDistEnv(env)}, device ${device}`);
    await log(`data: each rank takes a disjoint share of every global batch (${B} images per rank), ${S} steps per epoch on every rank`);
  }
  await log(
    `global batch = ${B} per rank × ${world} rank(s) = ${G}; learning rates are used as given (head ${t.headLr}, backbone ${t.backboneLr}): ` +
      'fine-tuning applies no lr scaling rule, so another number of ranks changes the global batch at the same lr',
  );

  // ---- native fine-tuner ----
  const bind = native();
  // Ranks sharing a node share its cores.
  callSync('setThreads', () => bind.setThreads(rankThreads(threadCount(o.backbone.threads), env)));
  const config = {
    model: vit,
    numClasses: C,
    clsLayers,
    avgpool,
    hidden: t.hidden,
    task: labelType,
    posWeight: t.posWeight,
    headLr: t.headLr,
    backboneLr: t.backboneLr,
    layerwiseDecay: t.layerwiseDecay,
    patchEmbedLrMult: t.patchEmbedLrMult,
    weightDecay: t.weightDecay,
    epochs: t.epochs,
    warmupEpochs: t.warmupEpochs,
    schedule: t.schedule,
    stepsPerEpoch: S,
    clipGrad: t.clipGrad,
    precision: t.precision,
    seed: t.seed,
  };
  // Collective with a process group: rank 0's initial state is broadcast to every rank.
  const ft: NativeFinetuner = await call('createFinetuner', () =>
    bind.createFinetuner(JSON.stringify({ config, device, seed: o.backbone.seed ?? 0, ...(resuming ? {} : resolved.weights ? { initWeights: resolved.weights.file } : {}) }), pg ?? undefined),
  );
  let prog: Progress = { epoch: 0, batch: 0, done: false, best: null, history: [], running: { sum: 0, entries: 0, skipped: 0, images: 0, seconds: 0, lr: 0 } };
  if (resuming) {
    // Collective with a process group: every rank reads the file, then rank 0's state is broadcast.
    const md = await call('loadState', () => ft.loadState(statePath, o.force ?? false));
    prog = JSON.parse(md.cxformer_progress ?? 'null') as Progress;
    if (!prog) throw new CxformerError('CXF_WEIGHTS', `${statePath}: no cxformer_progress metadata (not written by cxformer finetune --mode full)`);
    // Forced to more epochs: a run that ended by its epoch count (not by early stopping) continues.
    if (prog.done && !prog.stopped && prog.epoch < t.epochs) prog.done = false;
    // metrics.jsonl is rewritten from the state's history: lines written after the state are dropped.
    if (lead) await writeFileAtomic(path.join(out, 'metrics.jsonl'), prog.history.map((h) => `${JSON.stringify(h)}\n`).join(''));
    await log(
      `resuming from ${statePath} at epoch ${prog.epoch}, batch ${prog.batch} (step ${ft.steps})${world > 1 ? ` (all ${world} ranks)` : ''}${prog.done ? ': training is complete' : ''}`,
    );
  } else {
    if (lead) await writeFileAtomic(path.join(out, 'metrics.jsonl'), '');
    await log(`backbone: ${resolved.configSource}; ${resolved.weights ? `weights ${resolved.weights.file}` : `random initialisation (seed ${o.backbone.seed ?? 0})`}`);
    await log(`settings: ${JSON.stringify(t)}; crop ${size} px, ${S} steps per epoch`);
    const was = resolved.config.interpolation;
    if (size !== vit.img_size && (was.offset !== family.offset || was.antialias !== family.antialias)) {
      await log(`position embeddings: interpolated with the exported HF family's rule (offset ${family.offset}, antialias ${family.antialias}) instead of the weights' (offset ${was.offset}, antialias ${was.antialias})`);
    }
  }

  /**
   * Rank 0 writes the state (after `before`, e.g. the export of a new best, so that a state never names a best epoch
   * whose export is missing; then `after`); every rank learns whether that went well.
   */
  const saveState = (w: { before?: () => Promise<void>; after?: () => Promise<void> } = {}) =>
    allOrNothing(pg, `saving the state at step ${ft.steps}`, async () => {
      if (!lead) return;
      await w.before?.();
      await call('saveState', () => ft.saveState(statePath, { cxformer_progress: JSON.stringify(prog), cxformer_world_size: String(world) }));
      await w.after?.();
    });
  const headMeta = (epoch: number) => ({
    classes: JSON.stringify(o.classes),
    feature_options: JSON.stringify({ clsLayers, avgpool }),
    backbone: 'best/model (fine-tuned)',
    best_epoch: String(epoch),
    label_type: labelType,
  });
  const exportBest = async (epoch: number) => {
    await mkdir(bestModel, { recursive: true });
    await call('exportModel', () => ft.exportModel(path.join(bestModel, 'model.safetensors'), bestHead, headMeta(epoch)));
    await writeJsonAtomic(path.join(bestModel, 'config.json'), toHfConfig(vit));
    await writeJsonAtomic(path.join(bestModel, 'preprocessor_config.json'), toHfPreprocessorConfig(pre));
  };

  // Validation images are preprocessed once and kept when they fit in 1 GiB.
  const keep = valid.records.length * 3 * size * size * 4 <= 2 ** 30;
  const valSet = valid.records.length ? new EvalSet(valid, nValid, pre, t.evalBatchSize, keep) : null;
  const imgOpts = { equalize: pre.equalize, baseSize: null };

  const total = t.epochs * S;
  if (lead) emit({ kind: 'start', epoch: prog.epoch, step: ft.steps, totalSteps: total });
  let interrupted = false;
  const t0 = performance.now();
  const step0 = ft.steps;
  const loadBatch = (idx: number[]): Promise<GrayImage[]> => Promise.all(idx.map((i) => loadTrainImage((train.records[i] as Labelled['records'][number]).path, imgOpts)));
  outer: while (!prog.done && prog.epoch < t.epochs) {
    const epoch = prog.epoch;
    const perm = rngFor(t.seed, 0, epoch, 'finetune-order').permutation(N);
    /**
     * This rank's part of global batch b: its contiguous share of perm[b·G …], `first` = the position of its first
     * image in the global batch (keys the augmentation), `size` = the global batch's images. An empty share is one
     * padding image without supervised entries.
     */
    const part = (b: number) => {
      const lo = b * G;
      const size = Math.min(N, lo + G) - lo;
      const [x, y] = share(size, rank, world);
      return y > x ? { idx: perm.slice(lo + x, lo + y), first: x, size, pad: false } : { idx: [perm[lo] as number], first: G + rank, size, pad: true };
    };
    const batchIdx = (b: number) => part(b).idx;
    let next: Promise<GrayImage[]> | null = prog.batch < S ? loadBatch(batchIdx(prog.batch)) : null;
    next?.catch(() => undefined);
    for (let b = prog.batch; b < S; b++) {
      const stopHere = (o.signal?.aborted ?? false) || (o.stopAfterSteps !== undefined && ft.steps >= o.stopAfterSteps);
      // Every rank stops at the same step (one all-reduce of the flag per step).
      if (pg ? await agreeStop(pg, stopHere) : stopHere) {
        interrupted = true;
        break outer;
      }
      const tb = performance.now();
      const { idx, first, size: globalSize, pad } = part(b);
      const images = await (next as Promise<GrayImage[]>);
      next = b + 1 < S ? loadBatch(batchIdx(b + 1)) : null;
      next?.catch(() => undefined);
      const step = ft.steps;
      // Image k of the global batch is augmented from rngFor(seed, 0, step, crops, k) whatever rank holds it: the plan
      // of the first `first` positions (other ranks' images) is drawn with stand-in sizes and dropped.
      const sizes = images.map((im) => [im.height, im.width] as [number, number]);
      const crops = planFinetuneBatch(t.seed, step, [...Array<[number, number]>(first).fill(sizes[0] as [number, number]), ...sizes], size, t.cropScale, t.augment).slice(first);
      const planes = new Uint8Array(images.reduce((a, im) => a + im.data.length, 0));
      let off = 0;
      for (const im of images) {
        planes.set(im.data, off);
        off += im.data.length;
      }
      const targets = new Float32Array(idx.length * C);
      const mask = new Uint8Array(idx.length * C);
      idx.forEach((i, k) => {
        targets.set(nTrain.targets.subarray(i * C, (i + 1) * C), k * C);
        if (!pad) mask.set(nTrain.mask.subarray(i * C, (i + 1) * C), k * C);
      });
      const rec = JSON.parse(
        await call(`finetune step ${step}`, () =>
          ft.stepImages(planes, images.flatMap((im) => [im.height, im.width]), JSON.stringify(crops), size, targets, [idx.length, C], mask),
        ),
      ) as { step: number; loss: number; entries: number; lr: number; gradNorm: number; skipped: boolean };
      const dt = (performance.now() - tb) / 1000;
      const r = prog.running;
      r.sum += rec.loss * rec.entries;
      r.entries += rec.entries;
      r.skipped += rec.skipped ? 1 : 0;
      // The step's loss and entries are those of the global batch (every rank holds the same values).
      r.images += globalSize;
      r.seconds += dt;
      r.lr = rec.lr;
      prog.batch = b + 1;
      const doneSteps = ft.steps - step0;
      const eta = ((performance.now() - t0) / 1000 / Math.max(1, doneSteps)) * (total - ft.steps);
      if (lead) emit({ kind: 'step', epoch, step, totalSteps: total, loss: rec.loss, lr: rec.lr, imagesPerS: globalSize / dt, etaSeconds: eta });
      if (t.checkpointSteps > 0 && ft.steps % t.checkpointSteps === 0 && b + 1 < S) await saveState();
    }

    // ---- end of epoch: validation, selection, early stopping, state ----
    const r = prog.running;
    let val: { probs: Float32Array; loss: number | null } = { probs: new Float32Array(0), loss: null };
    let vm: { auroc: number | null; auprc: number | null; acc?: number | null } = { auroc: null, auprc: null };
    if (valSet) {
      val = await runValidation(valSet, ft, C, pg, o.signal);
      vm = valMetrics(val.probs, valid, C, labelType);
    }
    const score = selectBest === 'valAuroc' ? vm.auroc : selectBest === 'valAuprc' ? vm.auprc : selectBest === 'valLoss' ? (val.loss === null ? null : -val.loss) : null;
    let improved = selectBest === 'last' || (score !== null && (prog.best === null || score > prog.best.score));
    if (pg) {
      // Every rank computed the same metrics from the same gathered predictions; rank 0's decision is still the one taken.
      const d = await call('broadcast the epoch decision', () => pg.broadcast(Float32Array.of(improved ? 1 : 0), 0));
      improved = d[0] === 1;
    }
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
      ...(labelType === 'multiclass' ? { val_accuracy: vm.acc ?? null } : {}),
      best_epoch: prog.best?.epoch ?? null,
      images_per_s: r.seconds > 0 ? r.images / r.seconds : 0,
      seconds: r.seconds,
    };
    prog.history.push(record);
    prog.epoch = epoch + 1;
    prog.batch = 0;
    prog.running = { sum: 0, entries: 0, skipped: 0, images: 0, seconds: 0, lr: 0 };
    const f = (v: number | null | undefined) => (v === null || v === undefined ? 'n/a' : v.toFixed(4));
    // The same on every rank: prog.best follows rank 0's broadcast decision.
    const stop = t.patience > 0 && selectBest !== 'last' && prog.best !== null && epoch - prog.best.epoch >= t.patience;
    if (stop || prog.epoch >= t.epochs) prog.done = true;
    if (stop) prog.stopped = true;
    await saveState({
      ...(improved ? { before: () => exportBest(epoch) } : {}),
      after: async () => {
        await appendFile(path.join(out, 'metrics.jsonl'), `${JSON.stringify(record)}\n`);
        await log(
          `epoch ${epoch}: train loss ${f(record.train_loss)}, val loss ${f(val.loss)}, val macro AUROC ${f(vm.auroc)}, AUPRC ${f(vm.auprc)}` +
            `${labelType === 'multiclass' ? `, accuracy ${f(vm.acc)}` : ''}; best epoch ${record.best_epoch ?? 'n/a'}${stop ? ` — early stop (patience ${t.patience})` : ''}`,
        );
      },
    });
    if (lead) emit({ kind: 'epoch', epoch, record });
  }
  // Debugging aid (docs/distributed.md): every rank writes its own final state, to compare ranks.
  const dumpDir = process.env.CXFORMER_DIST_DUMP_DIR;
  if (dumpDir) {
    await mkdir(dumpDir, { recursive: true });
    await call('saveState', () => ft.saveState(path.join(dumpDir, `rank-${rank}.safetensors`), { cxformer_progress: JSON.stringify(prog) }));
  }
  const result = { out, interrupted, history: prog.history, bestEpoch: prog.best?.epoch ?? null, report: null, bestModel, bestHead, rank, worldSize: world };
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
  if (!existsSync(bestHead)) {
    // No epoch had a defined validation score: keep the final model.
    await log(`no epoch had a defined validation ${selectBest}: keeping the last epoch`);
    await exportBest(prog.history.at(-1)?.epoch ?? 0);
  }

  // ---- held-out evaluation of the selected model, through the same path as `cxformer evaluate` ----
  const heldSplit = test.records.length ? 'test' : 'valid';
  await log(`evaluating the model of epoch ${prog.best?.epoch ?? 'last'} on the ${heldSplit} split`);
  const rep = await evaluateHead({
    backbone: { weights: bestModel, device, threads: o.backbone.threads },
    head: bestHead,
    dataset: { ...o.dataset, split: heldSplit } as DatasetSpec,
    ...(o.policy ? { policy: o.policy } : {}),
    out: path.join(out, 'eval'),
    bootstrap: o.bootstrap ?? CLASSIFICATION.bootstrap,
    preprocess: pre,
    title: `Full fine-tuning (${heldSplit} split)`,
  });
  emit({ kind: 'done', message: rep.files.report });
  return { ...result, report: { ...rep, split: heldSplit } };
}
