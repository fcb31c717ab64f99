/**
 * `finetune --task report`: the native captioner (crates/core/src/rrg/) trained on a frozen backbone's visual memory,
 * end to end — records → tokenizer → cached memories → teacher-forced epochs → per-epoch validation by decoding and
 * labelling → best model → test predictions, evaluation and baselines. One flat loop (nanoGPT style).
 *
 * Run folder (`out`):
 * - `settings.json` (what the run was started with; a resume with other training settings is refused, naming them),
 *   `tokenizer.json`, `train.log`, `metrics.jsonl` (one line per step), `history.jsonl` (one line per epoch:
 *   validation loss and label F1), TensorBoard events;
 * - `memory-{train,valid,test}.safetensors`: the frozen backbone's memories (ids in the metadata), reused on resume;
 * - `checkpoints/state.safetensors`: the whole training state after each validated epoch (every `valEvery`, atomic),
 *   with the epoch and the best score in its metadata; a re-run of the same command resumes from it, bit for bit;
 * - `best/`: the model of the best validation epoch (`model.safetensors`, `config.json`), `tokenizer.json`,
 *   `report-model.json` (memory settings, preprocessing, decoding defaults) and `backbone/` (the frozen backbone, HF
 *   layout): everything `cxformer generate` needs;
 * - `predictions.jsonl` (test split: id, image, patient, reference, generated) and `eval/` (report.json, report.md,
 *   pairs.jsonl under the protocol), `baselines.json` (the most frequent training report and the 1-nearest-neighbour
 *   training report by memory CLS token, scored the same way).
 *
 * Model selection: the validation label micro F1 of greedy decoding (the phantom findings with the phantom labeler,
 * CheXbert's 14 with the rules labeler); ties and an undefined F1 fall back to the lower validation loss.
 * Randomness: the trainer's initialisation and dropout from `seed`; the epoch order from mulberry32(hash(seed, epoch)).
 */
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';

import { type Backbone, loadBackbone, type LoadBackboneOptions, threadCount, toHfPreprocessorConfig, writeJsonAtomic } from '../backbone.js';
import { REPORT_ENCODER } from '../config/downstream.js';
import { describeDistEnv, type DistEnv, rankThreads } from '../distributed/env.js';
import { type DistSettings, type ProcessGroup, withProcessGroup } from '../distributed/group.js';
import { share } from '../distributed/shard.js';
import { writeFileAtomic } from '../data/fsutil.js';
import { hashSeed, mulberry32, shuffleInPlace } from '../data/random.js';
import { labelerFromSpec } from '../eval/labelers/index.js';
import { CHEXBERT_14 } from '../eval/labelers/types.js';
import { labelF1 } from '../eval/text/label-f1.js';
import { resolvePreprocessOptions, type PreprocessOptions } from '../image/options.js';
import { preprocessBatch } from '../image/preprocess.js';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import { INTERP_HF_SIZE, INTERP_REGISTERS_AA, toHfConfig, type VitConfig } from '../model/config.js';
import { writeHfConfig } from '../model/hf-json.js';
import { resolveModel } from '../model/weights.js';
import { CxformerError } from '../native/load.js';
import { keepJsonl, withRunFolder } from '../run/folder.js';
import { dumpRankState, gatherRows, onRankZero, rankZeroDecides, requireShared, stopTogether } from '../run/rank.js';
import { EventFile } from '../run/tensorboard.js';
import { settingsDiff } from '../run/settings.js';
import { type ReportRecord, type ReportSourceSpec, trainingSplits } from './data.js';
import { evaluateReports, isPhantomColumns, PHANTOM_FINDINGS, type ReportEvaluation } from './evaluate.js';
import { extractMemory, type Memory } from './memory.js';
import { type EncoderTrainConfig, type GenerateOptions, padTokens, ReportModel, ReportTokenizer, ReportTrainer, type RrgConfig, type RrgStepRecord, type TokenizerSpec } from './native.js';
import type { ReportPair } from './pairs.js';
import type { ProtocolName } from './protocol.js';
import { writeReportEvaluation } from './write.js';

/** Decoder sizes of the presets (crates/core/src/rrg/config.rs `phantom()` / `mimic()`). */
export const DECODER_PRESETS = {
  phantom: { dModel: 256, numLayers: 3, numHeads: 4, ffnDim: 1024, maxPositions: 128 },
  mimic: { dModel: 512, numLayers: 3, numHeads: 8, ffnDim: 2048, maxPositions: 160 },
} as const;

export interface ReportTrainOptions {
  backbone: LoadBackboneOptions;
  data: ReportSourceSpec;
  out: string;
  /** @default { kind: 'word', minCount: 3 } */
  tokenizer?: TokenizerSpec;
  /**
   * The visual memory. `cache`: keep the frozen encoder's memories of every split in the run folder (and in RAM);
   * false computes them at every step instead (the encoder frozen inside the trainer); 'auto' (default) caches when
   * they take at most {@link MEMORY_CACHE_LIMIT} bytes. With `encoder` (end to end) nothing is cached.
   */
  memory?: { block?: number; pool?: number; batchSize?: number; preprocess?: Partial<PreprocessOptions>; cache?: boolean | 'auto' };
  /** @default 'phantom' */
  decoder?: keyof typeof DECODER_PRESETS | Partial<Pick<RrgConfig, 'dModel' | 'numLayers' | 'numHeads' | 'ffnDim' | 'maxPositions' | 'dropout' | 'labelSmoothing'>>;
  /**
   * Train the encoder end to end with the decoder (`--mode full`) with these optimizer values; absent: the encoder
   * is frozen and its memories are cached. `backboneLr` is the last block's peak lr (layer-wise decay below it).
   */
  encoder?: { backboneLr?: number; layerwiseDecay?: number; patchEmbedLrMult?: number };
  /** @default 20 */
  epochs?: number;
  /** Reports per step. @default 32 */
  batchSize?: number;
  /** Peak learning rate. @default 5e-4 */
  lr?: number;
  /** @default 0.01 */
  weightDecay?: number;
  /** Warm-up as a fraction of all steps. @default 0.05 */
  warmup?: number;
  /** Decoding of the validation and test reports. @default greedy, 100 new tokens */
  decode?: GenerateOptions;
  /** For model selection and the evaluation: 'phantom' or 'rules' (or labels:FILE for the evaluation only). @default 'phantom' */
  labeler?: string;
  /** @default 'cxformer' */
  protocol?: ProtocolName;
  /** @default 1000 */
  bootstrap?: number;
  /** @default 0 */
  seed?: number;
  /** Use at most this many training records (a seeded sample). */
  maxTrain?: number;
  /** Resume although the training settings changed. @default false */
  force?: boolean;
  /** Validate (decode and label the validation split), keep the best model and save the training state every N epochs (and after the last). @default 1 */
  valEvery?: number;
  /** TensorBoard events beside metrics.jsonl. @default true */
  tensorboard?: boolean;
  log?: (message: string) => void;
  onStep?: (record: RrgStepRecord & { epoch: number; epochs: number; stepsPerEpoch: number; stepInEpoch: number }) => void;
  onProgress?: (what: string, done: number, total: number) => void;
  signal?: AbortSignal;
  /** Data parallel runs (started as several ranks): collective timeout and backend. @default {timeoutS: 600, backend: 'auto'} */
  dist?: DistSettings;
}

export interface ReportTrainResult {
  /** This process's rank and the number of ranks; only rank 0 evaluates (the others' `evaluation` is null). */
  rank: number;
  worldSize: number;
  bestEpoch: number;
  best: { valF1: number | null; valLoss: number };
  evaluation: ReportEvaluation | null;
  baselines: Record<string, { f1Micro: number | null; rougeL: number | null; bleu4: number | null }>;
  files: { best: string; predictions: string; report: string };
}

const STATE = path.join('checkpoints', 'state.safetensors');

/** Memories of one split, cached in the run folder (reused when the ids match). */
async function memoryOf(model: Backbone, split: string, recs: readonly ReportRecord[], o: ReportTrainOptions, dir: string, log: (m: string) => void): Promise<Memory> {
  const file = path.join(dir, `memory-${split}.safetensors`);
  const ids = JSON.stringify(recs.map((r) => r.id));
  // The backbone is part of the key: a resume with --force and other weights must not reuse the old memories.
  const settings = JSON.stringify({ block: o.memory?.block ?? -1, pool: o.memory?.pool ?? 1, preprocess: o.memory?.preprocess ?? {}, backbone: { weights: o.backbone.weights ?? null, arch: o.backbone.arch ?? null, seed: o.backbone.seed ?? 0, overrides: o.backbone.overrides ?? [] } });
  if (existsSync(file)) {
    const f = await readSafetensors(file);
    const t = f.tensors.get('memory');
    const md = f.metadata ?? {};
    if (t && md.ids === ids && md.settings === settings) {
      log(`memory: ${split} ${recs.length} images from ${file}`);
      const g = JSON.parse(md.grid ?? '[0,0]') as [number, number];
      const pg = JSON.parse(md.pooled_grid ?? '[0,0]') as [number, number];
      return { data: t.data as Float32Array, shape: t.shape as [number, number, number], grid: g, pooledGrid: pg };
    }
  }
  log(`memory: ${split} ${recs.length} images → ${file}`);
  const m = await extractMemory(model, recs.map((r) => r.image), {
    block: o.memory?.block ?? -1,
    pool: o.memory?.pool ?? 1,
    batchSize: o.memory?.batchSize ?? 8,
    ...(o.memory?.preprocess ? { preprocess: o.memory.preprocess } : {}),
    onProgress: (d, t) => o.onProgress?.(`memory ${split}`, d, t),
    ...(o.signal ? { signal: o.signal } : {}),
  });
  await writeSafetensors(file, { memory: { dtype: 'F32', shape: m.shape, data: m.data } }, { ids, settings, grid: JSON.stringify(m.grid), pooled_grid: JSON.stringify(m.pooledGrid) });
  return m;
}

/** The largest memory cache `memory.cache: 'auto'` keeps (8 GiB): above it the memories are computed at every step. */
export const MEMORY_CACHE_LIMIT = 8 * 2 ** 30;

/** Bytes of the float32 memories of `n` images for a ViT `cfg` at preprocessing `pre`, patch grid pooled k×k. */
export function memoryCacheBytes(n: number, cfg: VitConfig, pre: PreprocessOptions, k: number): number {
  const side = (v: PreprocessOptions['crop'] | PreprocessOptions['resize'], i: number) => (v === null || v === undefined ? null : typeof v === 'number' ? v : v[i]!);
  const [h, w] = [0, 1].map((i) => side(pre.crop, i) ?? side(pre.resize, i) ?? cfg.img_size) as [number, number];
  const tokens = 1 + cfg.num_register_tokens + Math.ceil(Math.floor(h / cfg.patch_size) / k) * Math.ceil(Math.floor(w / cfg.patch_size) / k);
  return n * tokens * cfg.embed_dim * 4;
}

/** The CLS token (token 0) of every row of a memory, as a memory of one token. */
function rowsCls(m: Memory): Memory {
  const [n, M, D] = m.shape;
  const data = new Float32Array(n * D);
  for (let i = 0; i < n; i++) data.set(m.data.subarray(i * M * D, i * M * D + D), i * D);
  return { data, shape: [n, 1, D], grid: m.grid, pooledGrid: m.pooledGrid };
}

/** Memories of one length joined row-wise, in order. */
function joinRows(parts: readonly Memory[]): Memory {
  const [, M, D] = parts[0]!.shape;
  const n = parts.reduce((a, p) => a + p.shape[0], 0);
  const data = new Float32Array(n * M * D);
  let at = 0;
  for (const p of parts) {
    data.set(p.data, at);
    at += p.data.length;
  }
  return { data, shape: [n, M, D], grid: parts[0]!.grid, pooledGrid: parts[0]!.pooledGrid };
}

/** Rows `idx` of a memory as one batch. */
function rows(m: Memory, idx: readonly number[]): { data: Float32Array; shape: [number, number, number] } {
  const [, M, D] = m.shape;
  const data = new Float32Array(idx.length * M * D);
  idx.forEach((r, i) => data.set(m.data.subarray(r * M * D, (r + 1) * M * D), i * M * D));
  return { data, shape: [idx.length, M, D] };
}

/** Decodes every row of a memory in batches. */
async function decodeAll(gen: { generate(f: ReturnType<typeof rows>, o: GenerateOptions): Promise<{ tokens: number[][] }> }, tok: ReportTokenizer, m: Memory, o: GenerateOptions, onProgress?: (d: number, t: number) => void): Promise<string[]> {
  const n = m.shape[0];
  const out: string[] = [];
  const B = 64;
  for (let s = 0; s < n; s += B) {
    const idx = Array.from({ length: Math.min(B, n - s) }, (_, i) => s + i);
    const g = await gen.generate(rows(m, idx), o);
    for (const t of g.tokens) out.push(tok.decode(t));
    onProgress?.(Math.min(s + B, n), n);
  }
  return out;
}

/** Micro F1 of generated vs reference texts under the selection labeler (null when undefined). */
function selectionF1(labeler: ReturnType<typeof labelerFromSpec>, refs: readonly string[], hyps: readonly string[]): number | null {
  const subset = isPhantomColumns(labeler.classes) ? PHANTOM_FINDINGS : CHEXBERT_14;
  const r = labelF1(labeler.label(refs), labeler.label(hyps), { classes: labeler.classes, subset, uncertain: 'negative', zeroDivision: 'nan' });
  return Number.isFinite(r.micro.f1) ? r.micro.f1 : null;
}

/** Trains, selects, predicts and evaluates (see the module comment). */
export async function finetuneReport(o: ReportTrainOptions): Promise<ReportTrainResult> {
  // The labeler reads the generated text of every validation: it must label text, not look labels up.
  if (o.labeler !== undefined && o.labeler !== 'phantom' && o.labeler !== 'rules') {
    throw new CxformerError('CXF_ARG', `--labeler for report training must be phantom or rules (it labels the reports generated at each validation), got '${o.labeler}'; score imported labels afterwards with cxformer evaluate --task report --labeler labels:…`);
  }
  const dir = path.resolve(o.out);
  await mkdir(path.join(dir, 'checkpoints'), { recursive: true });
  const log = o.log ?? (() => undefined);
  // Started as several ranks (cxformer launch, torchrun, Slurm) the ranks join a process group (docs/distributed.md).
  return withProcessGroup(o.dist, o.backbone.device ?? 'cpu', (env, device, pg) =>
    withRunFolder({ dir, rank: env.rank, pg, command: 'cxformer finetune --task report', report: log }, (run) =>
      trainInFolder({ ...o, backbone: { ...o.backbone, device, threads: rankThreads(threadCount(o.backbone.threads), env) } }, dir, (m) => void run.log(m), env, pg),
    ),
  );
}

async function trainInFolder(o: ReportTrainOptions, dir: string, log: (m: string) => void, env: DistEnv, pg: ProcessGroup | null): Promise<ReportTrainResult> {
  const { rank, worldSize: W } = env;
  const lead = rank === 0;
  const seed = o.seed ?? 0;
  const { train, valid, test, held } = await trainingSplits(o.data, seed, o.maxTrain, log);

  // The encoder and its preprocessing; whether the frozen encoder's memories are cached (they must fit).
  const resolved = await resolveModel({ weights: o.backbone.weights, arch: o.backbone.arch, overrides: o.backbone.overrides ?? [] });
  const pre = resolvePreprocessOptions({ ...(resolved.preprocess ?? {}), ...(o.memory?.preprocess ?? {}) });
  const cacheBytes = memoryCacheBytes(train.length + valid.length + test.length, resolved.config, pre, o.memory?.pool ?? 1);
  const wantCache = o.memory?.cache ?? 'auto';
  const cache = !o.encoder && (wantCache === 'auto' ? cacheBytes <= MEMORY_CACHE_LIMIT : wantCache);

  // Settings: a resume must train the same way.
  const preset = typeof o.decoder === 'string' || o.decoder === undefined ? DECODER_PRESETS[o.decoder ?? 'phantom'] : { ...DECODER_PRESETS.phantom, ...o.decoder };
  const settings = {
    data: { kind: o.data.kind, root: path.resolve(o.data.root) },
    backbone: { weights: o.backbone.weights ?? null, arch: o.backbone.arch ?? null, seed: o.backbone.seed ?? 0 },
    tokenizer: o.tokenizer ?? { kind: 'word', minCount: 3 },
    memory: { block: o.memory?.block ?? -1, pool: o.memory?.pool ?? 1, preprocess: o.memory?.preprocess ?? {} },
    decoder: preset,
    epochs: o.epochs ?? 20,
    batchSize: o.batchSize ?? 32,
    lr: o.lr ?? 5e-4,
    weightDecay: o.weightDecay ?? 0.01,
    warmup: o.warmup ?? 0.05,
    seed,
    maxTrain: o.maxTrain ?? null,
    // The global batch is batchSize × ranks: another number of ranks is another run (unless --force).
    ...(W > 1 ? { worldSize: W } : {}),
    ...(!o.encoder && !cache ? { memoryCache: false } : {}),
    // Only in --mode full runs, so that a frozen run's settings.json stays what earlier versions wrote.
    ...(o.encoder ? { encoder: { backboneLr: o.encoder.backboneLr ?? REPORT_ENCODER.backboneLr, layerwiseDecay: o.encoder.layerwiseDecay ?? REPORT_ENCODER.layerwiseDecay, patchEmbedLrMult: o.encoder.patchEmbedLrMult ?? REPORT_ENCODER.patchEmbedLrMult } } : {}),
  };
  const settingsFile = path.join(dir, 'settings.json');
  const statePath = path.join(dir, STATE);
  // Rank 0 decides whether this is a resume; every rank must then see the state (a shared file system).
  const resuming = await rankZeroDecides(pg, lead && existsSync(statePath));
  if (resuming) await requireShared(pg, statePath);
  await onRankZero(pg, 'checking the settings', async () => {
    if (resuming && existsSync(settingsFile)) {
      const prev = JSON.parse(await readFile(settingsFile, 'utf8')) as Record<string, unknown>;
      const diff = settingsDiff(prev, settings as unknown as Record<string, unknown>);
      if (diff.length && !o.force) {
        throw new CxformerError('CXF_CONFIG', `${dir} holds a report training started with other settings (${diff.join('; ')}); use another --out, or --force to resume with the new ones`);
      }
    }
    await writeJsonAtomic(settingsFile, settings);
  });
  if (W > 1) log(`distributed: ${W} ranks, backend ${pg?.backend() ?? '?'}, this is ${describeDistEnv(env)}; global batch = ${settings.batchSize} reports per rank × ${W}`);

  // Tokenizer: trained once on the training reports (rank 0), kept in the run folder, read by every rank.
  const tokFile = path.join(dir, 'tokenizer.json');
  await onRankZero(pg, 'making the tokenizer', async () => {
    if (!existsSync(tokFile)) await (await ReportTokenizer.make(settings.tokenizer as TokenizerSpec, train.map((r) => r.report))).save(tokFile);
  });
  const tok = await ReportTokenizer.load(tokFile);
  const sp = tok.specials;
  log(`tokenizer: ${tok.vocabSize} tokens (${tok.source})`);

  // Frozen: the backbone's memories, cached. Full: the encoder is trained, so the memories are computed each step.
  const memSettings = settings.memory;
  let frozen: { backbone: Backbone; mTrain: Memory; mHeld: Memory; mTest: Memory } | null = null;
  let full: { encoder: EncoderTrainConfig; pre: PreprocessOptions; weights: string | null } | null = null;
  let dVit: number;
  const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;
  if (cache) {
    const backbone = await loadBackbone(o.backbone);
    // Rank 0 extracts (or reads) and caches the memories; the other ranks then read its files.
    const all = async () => {
      const mTrain = await memoryOf(backbone, 'train', train, o, dir, log);
      const mHeld = await memoryOf(backbone, held === valid ? 'valid' : 'test', held, o, dir, log);
      const mTest = held === test ? mHeld : await memoryOf(backbone, 'test', test, o, dir, log);
      return { mTrain, mHeld, mTest };
    };
    let mine: Awaited<ReturnType<typeof all>> | undefined;
    await onRankZero(pg, 'extracting the memories', async () => {
      mine = await all();
    });
    const { mTrain, mHeld, mTest } = mine ?? (await all());
    frozen = { backbone, mTrain, mHeld, mTest };
    dVit = mTrain.shape[2];
  } else {
    // The encoder inside the trainer: trained end to end, or frozen with its memories computed at every step. The
    // position-embedding rule of the HF folder best/backbone/ is written as (src/finetune/full.ts does the same),
    // so that generate computes the memory that was trained.
    const family = resolved.config.num_register_tokens > 0 ? INTERP_REGISTERS_AA : INTERP_HF_SIZE;
    const vit = { ...resolved.config, interpolation: { ...family } };
    const depth = vit.depth;
    if (!(Number.isInteger(memSettings.block) && memSettings.block >= -depth && memSettings.block < depth)) {
      throw new CxformerError('CXF_ARG', `memory block must be an integer in -${depth}..${depth - 1} (the model has ${depth} blocks), got ${memSettings.block}`);
    }
    const opt = settings.encoder ?? { backboneLr: 0, layerwiseDecay: 1, patchEmbedLrMult: 1 };
    full = { encoder: { model: vit, block: memSettings.block, pool: memSettings.pool, ...opt }, pre, weights: resolved.weights?.file ?? null };
    dVit = vit.embed_dim;
    if (settings.encoder) log(`encoder: trained end to end (${resolved.configSource}), lr ${settings.encoder.backboneLr} at the last block, layer-wise decay ${settings.encoder.layerwiseDecay}`);
    else log(`memory: computed at every step by the frozen encoder (cached it would take ${gib(cacheBytes)}${wantCache === 'auto' ? `, over the ${gib(MEMORY_CACHE_LIMIT)} limit` : ''})`);
  }

  const encTrain = tok.encode(train.map((r) => r.report));
  const encHeld = tok.encode(held.map((r) => r.report));
  // A token row [BOS] … [EOS] of length T occupies T − 1 positions (the model reads 0..T−2, predicts 1..T−1).
  const maxLen = preset.maxPositions + 1;
  const cut = encTrain.filter((e) => e.length > maxLen).length;
  if (cut) log(`tokenizer: ${cut} training reports longer than ${maxLen - 2} tokens are cut (maxPositions ${preset.maxPositions})`);

  // The global batch G = B per rank × W ranks; rank r takes the r-th of W contiguous near-equal slices of each.
  const B = settings.batchSize;
  const G = B * W;
  const stepsPerEpoch = Math.ceil(train.length / G);
  const totalSteps = settings.epochs * stepsPerEpoch;
  const model: RrgConfig = { vocabSize: tok.vocabSize, dVit, padId: sp.pad, bosId: sp.bos, eosId: sp.eos, ...preset };
  const trainer = await ReportTrainer.create({
    config: { model, lr: settings.lr, weightDecay: settings.weightDecay, warmupSteps: Math.round(settings.warmup * totalSteps), totalSteps, ...(full ? { encoder: full.encoder } : {}) },
    seed,
    ...(o.backbone.device ? { device: o.backbone.device } : {}),
    ...(o.backbone.threads ? { threads: o.backbone.threads } : {}),
    // A frozen encoder inside the trainer starts from its weights on a resume too (its state holds them as well).
    ...(full && (!resuming || !settings.encoder) ? { encoderWeights: full.weights } : {}),
    processGroup: pg,
  });
  // What a step, an evaluation or a decoding reads for records `idx` of a split: cached memory rows (frozen), or
  // the images preprocessed now (full).
  const pixels = (recs: readonly ReportRecord[], idx: readonly number[]) => {
    const p = preprocessBatch(idx.map((i) => recs[i]!.image), (full as NonNullable<typeof full>).pre);
    p.catch(() => undefined); // a prefetched batch that fails is reported where it is awaited
    return p;
  };
  log(`captioner: ${(trainer.numParameters / 1e6).toFixed(2)} M parameters (d ${preset.dModel}, ${preset.numLayers} layers, ${preset.numHeads} heads${full ? ', encoder included' : ''}), memory ${frozen ? `${frozen.mTrain.shape[1]} tokens` : 'tokens'} × ${dVit}; ${settings.epochs} epochs × ${stepsPerEpoch} steps`);

  let startEpoch = 0;
  let best = { epoch: -1, valF1: null as number | null, valLoss: Number.POSITIVE_INFINITY };
  if (resuming) {
    const md = await trainer.loadState(statePath, Boolean(o.force));
    startEpoch = Number(md.epoch ?? 0);
    best = JSON.parse(md.best ?? JSON.stringify(best)) as typeof best;
    if (best.valLoss === null) best.valLoss = Number.POSITIVE_INFINITY;
    log(`resume: epoch ${startEpoch} of ${settings.epochs} (best so far: epoch ${best.epoch + 1})`);
    // Lines of an epoch after the saved state (a kill between the appends and the state) are written again.
    await onRankZero(pg, 'trimming the logs', async () => {
      for (const f of ['metrics.jsonl', 'history.jsonl']) if (existsSync(path.join(dir, f))) await keepJsonl(path.join(dir, f), (r) => Number(r.epoch) <= startEpoch);
    });
  }
  const tb = lead && (o.tensorboard ?? true) ? EventFile.create(dir, { firstStep: startEpoch * stepsPerEpoch + 1 }) : null;
  const labeler = labelerFromSpec(o.labeler ?? 'phantom');
  const decode: GenerateOptions = { strategy: 'greedy', maxNewTokens: preset.maxPositions - 1, ...o.decode };
  const bestDir = path.join(dir, 'best');

  for (let epoch = startEpoch; epoch < settings.epochs; epoch++) {
    const order = train.map((_, i) => i);
    shuffleInPlace(order, mulberry32(hashSeed(seed, 1, epoch)));
    const lines: string[] = [];
    // This rank's slice of global batch s; an empty slice (fewer reports left than ranks) is one row without a
    // target ([BOS][PAD]), which adds nothing to the global batch's loss or gradient.
    const batchIdx = (s: number) => {
      const g = order.slice(s * G, (s + 1) * G);
      const [lo, hi] = share(g.length, rank, W);
      return { idx: hi > lo ? g.slice(lo, hi) : [g[0]!], empty: hi === lo };
    };
    // Full: the next batch's images are decoded while the current step runs.
    let next = full ? pixels(train, batchIdx(0).idx) : null;
    for (let s = 0; s < stepsPerEpoch; s++) {
      if (await stopTogether(pg, Boolean(o.signal?.aborted))) {
        throw new CxformerError('CXF_CANCELLED', `report training interrupted in epoch ${epoch + 1}; re-run the command to resume from the last finished epoch`);
      }
      const { idx, empty } = batchIdx(s);
      const tokens = empty ? { data: Int32Array.of(sp.bos, sp.pad), shape: [1, 2] as [number, number] } : padTokens(idx.map((i) => encTrain[i]!), maxLen, sp.eos);
      let rec: RrgStepRecord;
      if (frozen) rec = await trainer.step(rows(frozen.mTrain, idx), tokens);
      else {
        const x = await (next as ReturnType<typeof pixels>);
        next = s + 1 < stepsPerEpoch ? pixels(train, batchIdx(s + 1).idx) : null;
        rec = await trainer.stepPixels(x, tokens);
      }
      lines.push(JSON.stringify({ epoch: epoch + 1, ...rec }));
      tb?.metrics(rec.step + 1, { loss: rec.loss, lr: rec.lr, grad_norm: rec.gradNorm });
      o.onStep?.({ ...rec, epoch, epochs: settings.epochs, stepsPerEpoch, stepInEpoch: s });
    }
    // One append per epoch: a run killed mid-epoch resumes from the last state, whose epoch's lines are all here.
    if (lead) await appendFile(path.join(dir, 'metrics.jsonl'), `${lines.join('\n')}\n`);

    // Validation (every valEvery epochs and after the last): loss, then greedy decoding labelled against the references.
    if ((epoch + 1) % (o.valEvery ?? 1) !== 0 && epoch + 1 < settings.epochs) continue;
    // Each rank scores and decodes its share of the held-out split; the shares are gathered, so every rank computes
    // the same F1 and takes the same decision.
    const width = 1 + (decode.maxNewTokens ?? preset.maxPositions - 1) + 1;
    const shares = await gatherRows(pg, held.length, width, async (lo, hi) => {
      let lossSum = 0;
      let tokSum = 0;
      const out = new Float32Array((hi - lo) * width);
      const EB = frozen ? 64 : 16;
      for (let s = lo; s < hi; s += EB) {
        const idx = Array.from({ length: Math.min(EB, hi - s) }, (_, i) => s + i);
        const tokens = padTokens(idx.map((i) => encHeld[i]!), maxLen, sp.eos);
        let e: { loss: number; tokens: number };
        let f: { data: Float32Array; shape: [number, number, number] };
        if (frozen) {
          f = rows(frozen.mHeld, idx);
          e = await trainer.evaluate(f, tokens);
        } else {
          const x = await pixels(held, idx);
          e = await trainer.evaluatePixels(x, tokens);
          f = await trainer.memory(x);
        }
        lossSum += e.loss * e.tokens;
        tokSum += e.tokens;
        const g = await trainer.generate(f, decode);
        g.tokens.forEach((t, k) => {
          const at = (s - lo + k) * width;
          out[at] = t.length;
          out.set(t.slice(0, width - 1), at + 1);
        });
        o.onProgress?.('validation', s + idx.length - lo, hi - lo);
      }
      return { rows: out, tail: [lossSum, tokSum] };
    });
    const lossSum = shares.tails.reduce((a, t) => a + (t[0] ?? 0), 0);
    const tokSum = shares.tails.reduce((a, t) => a + (t[1] ?? 0), 0);
    const valLoss = tokSum ? lossSum / tokSum : Number.NaN;
    const hyps = held.map((_, i) => tok.decode(Array.from(shares.rows.subarray(i * width + 1, i * width + 1 + (shares.rows[i * width] as number)))));
    const valF1 = selectionF1(labeler, held.map((r) => r.report), hyps);
    const better = best.epoch < 0 || (valF1 ?? -1) > (best.valF1 ?? -1) || ((valF1 ?? -1) === (best.valF1 ?? -1) && valLoss < best.valLoss);
    if (lead) await appendFile(path.join(dir, 'history.jsonl'), `${JSON.stringify({ epoch: epoch + 1, step: (epoch + 1) * stepsPerEpoch, valLoss, valF1, example: hyps[0] ?? '' })}\n`);
    tb?.metrics((epoch + 1) * stepsPerEpoch, { val_loss: valLoss, ...(valF1 !== null ? { val_f1_micro: valF1 } : {}) });
    log(`epoch ${epoch + 1}/${settings.epochs}: validation loss ${valLoss.toFixed(4)}, label micro F1 ${valF1 === null ? 'n/a' : valF1.toFixed(3)}${better ? ' (best)' : ''}`);
    if (better) best = { epoch, valF1, valLoss };
    await onRankZero(pg, `saving epoch ${epoch + 1}`, async () => {
      if (better) await saveBest(epoch);
      await trainer.saveState(statePath, { epoch: String(epoch + 1), best: JSON.stringify({ ...best, valLoss: Number.isFinite(best.valLoss) ? best.valLoss : null }) });
    });
  }

  await dumpRankState(rank, (file) => trainer.saveState(file));
  // Data parallel: rank 0 alone decodes and evaluates the test split; the other ranks are done.
  if (!lead) return { rank, worldSize: W, bestEpoch: best.epoch + 1, best: { valF1: best.valF1, valLoss: best.valLoss }, evaluation: null, baselines: {}, files: { best: bestDir, predictions: path.join(dir, 'predictions.jsonl'), report: '' } };
  return testAndBaselines();

  /** Writes best/ from the trainer (rank 0). */
  async function saveBest(epoch: number): Promise<void> {
    await trainer.export(bestDir, { epoch: String(epoch + 1) });
    await tok.save(path.join(bestDir, 'tokenizer.json'));
    await writeJsonAtomic(path.join(bestDir, 'report-model.json'), {
      format: 'cxformer-report-model',
      memory: settings.memory,
      preprocess: frozen ? { ...frozen.backbone.preprocess, ...(o.memory?.preprocess ?? {}) } : (full as NonNullable<typeof full>).pre,
      decode,
      labeler: o.labeler ?? 'phantom',
      epoch: epoch + 1,
      encoder: settings.encoder ? 'trained' : 'frozen',
    });
    const bb = path.join(bestDir, 'backbone');
    if (frozen) {
      if (!existsSync(path.join(bb, 'config.json'))) await frozen.backbone.exportHf(bb);
    } else {
      // The encoder of this epoch, as an HF folder that loadBackbone and transformers read.
      const f = full as NonNullable<typeof full>;
      await mkdir(bb, { recursive: true });
      await trainer.exportEncoder(path.join(bb, 'model.safetensors'));
      await writeHfConfig(path.join(bb, 'config.json'), toHfConfig(f.encoder.model));
      await writeJsonAtomic(path.join(bb, 'preprocessor_config.json'), toHfPreprocessorConfig(f.pre));
    }
  }

  async function testAndBaselines(): Promise<ReportTrainResult> {
    // Test: the best model's reports, evaluated under the protocol, and the two baselines. Without a cache: the
    // memories of best/backbone/ (the best epoch's encoder, as cxformer generate computes them), a chunk at a time;
    // the 1-NN baseline keeps their CLS tokens only.
    const bestModel = await ReportModel.load(bestDir, o.backbone.device ? { device: o.backbone.device } : {});
    let generated: string[];
    let trainCls: Memory;
    let testCls: Memory;
    if (frozen) {
      generated = await decodeAll(bestModel, tok, frozen.mTest, decode, (d, t) => o.onProgress?.('test decoding', d, t));
      ({ mTrain: trainCls, mTest: testCls } = frozen);
    } else {
      const bestBackbone = await loadBackbone({ ...o.backbone, weights: path.join(bestDir, 'backbone'), arch: undefined, overrides: [] });
      const mo = { block: memSettings.block, pool: memSettings.pool, batchSize: o.memory?.batchSize ?? 8, preprocess: (full as NonNullable<typeof full>).pre };
      const chunks = async (recs: readonly ReportRecord[], what: string, each?: (m: Memory) => Promise<void>): Promise<Memory> => {
        const cls: Memory[] = [];
        for (let s = 0; s < recs.length; s += 64) {
          const m = await extractMemory(bestBackbone, recs.slice(s, s + 64).map((r) => r.image), mo);
          await each?.(m);
          cls.push(rowsCls(m));
          o.onProgress?.(what, Math.min(s + 64, recs.length), recs.length);
        }
        return joinRows(cls);
      };
      generated = [];
      testCls = await chunks(test, 'test decoding', async (m) => {
        generated.push(...(await decodeAll(bestModel, tok, m, decode)));
      });
      trainCls = await chunks(train, 'memory train (1-NN baseline)');
    }
    const predFile = path.join(dir, 'predictions.jsonl');
    await writeFileAtomic(predFile, `${test.map((r, i) => JSON.stringify({ id: r.id, image: r.image, patient: r.patient, reference: r.report, generated: generated[i] })).join('\n')}\n`);
    const pairsOf = (texts: readonly string[]): ReportPair[] => test.map((r, i) => ({ id: r.id, hypothesis: texts[i] as string, references: [r.report], patient: r.patient }));
    const evalOpts = { protocol: o.protocol ?? 'cxformer', labels: { labeler }, bootstrap: o.bootstrap ?? 1000, seed } as const;
    const evaluation = evaluateReports(pairsOf(generated), { ...evalOpts, onProgress: (d, t) => o.onProgress?.('bootstrap', d, t) });
    const files = await writeReportEvaluation(path.join(dir, 'eval'), evaluation, undefined, 'Report generation: the best model on the test split');

    // Baselines: the most frequent training report; the training report of the nearest memory CLS token (cosine).
    const counts = new Map<string, number>();
    for (const r of train) counts.set(r.report, (counts.get(r.report) ?? 0) + 1);
    const constant = [...counts.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0]![0];
    const nn = nearestReports(trainCls, testCls, train.map((r) => r.report));
    const baselines: ReportTrainResult['baselines'] = {};
    const summary = (e: ReportEvaluation) => {
      const k = Object.fromEntries(e.metrics.map((m) => [m.key, m.value]));
      return { f1Micro: (k.f1_findings_micro ?? k.f1_14_micro ?? null) as number | null, rougeL: (k.rougeL ?? null) as number | null, bleu4: (k.bleu4 ?? null) as number | null };
    };
    baselines.model = summary(evaluation);
    for (const [name, texts] of [['most_frequent_report', test.map(() => constant)], ['nearest_neighbour_report', nn]] as const) {
      const e = evaluateReports(pairsOf(texts), { ...evalOpts, bootstrap: 0 });
      baselines[name] = summary(e);
    }
    await writeJsonAtomic(path.join(dir, 'baselines.json'), { note: 'scores on the test split (protocol scale); f1Micro = label micro F1 (phantom findings, or CheXbert 14)', mostFrequentReport: constant, ...baselines });
    log(`test: label micro F1 ${fmt(baselines.model.f1Micro)} (most frequent report ${fmt(baselines.most_frequent_report!.f1Micro)}, 1-NN report ${fmt(baselines.nearest_neighbour_report!.f1Micro)}); ROUGE-L ${fmt(baselines.model.rougeL)} (${fmt(baselines.most_frequent_report!.rougeL)}, ${fmt(baselines.nearest_neighbour_report!.rougeL)})`);
    return {
      rank,
      worldSize: W,
      bestEpoch: best.epoch + 1,
      best: { valF1: best.valF1, valLoss: best.valLoss },
      evaluation,
      baselines,
      files: { best: bestDir, predictions: predFile, report: files.markdown },
    };
  }
}

const fmt = (v: number | null | undefined) => (v === null || v === undefined ? 'n/a' : v.toFixed(2));

/** For each query row, the report of the training row whose memory CLS token (token 0) is nearest by cosine. */
export function nearestReports(train: Memory, query: Memory, reports: readonly string[]): string[] {
  const [n, M, D] = train.shape;
  const unit = (m: Memory, i: number): Float32Array => {
    const v = m.data.slice(i * M * D, i * M * D + D);
    let s = 0;
    for (const x of v) s += x * x;
    const r = 1 / Math.sqrt(s || 1);
    for (let d = 0; d < D; d++) v[d] = (v[d] as number) * r;
    return v;
  };
  const T = Array.from({ length: n }, (_, i) => unit(train, i));
  return Array.from({ length: query.shape[0] }, (_, q) => {
    const v = unit(query, q);
    let bi = 0;
    let bs = Number.NEGATIVE_INFINITY;
    T.forEach((t, i) => {
      let s = 0;
      for (let d = 0; d < D; d++) s += (t[d] as number) * (v[d] as number);
      if (s > bs) {
        bs = s;
        bi = i;
      }
    });
    return reports[bi] as string;
  });
}
