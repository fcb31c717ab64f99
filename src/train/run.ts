/**
 * `cxformer train`: the pretraining loop (docs/recipe.md §3, style habit 7). TypeScript owns the config, the data, the
 * sampler, the per-iteration schedule values, crop plans and iBOT masks (all from (seed, rank, iteration));
 * the native trainer runs augmentation + step. Output folder:
 *   resolved.yaml, metrics.jsonl (and events.out.tfevents.*: its numbers for TensorBoard, src/run/tensorboard.ts),
 *   train.log, checkpoints/ckpt-<iteration>.safetensors, exported/ (HF + dino_head).
 * Re-running on the same folder resumes from the newest checkpoint (identical to an uninterrupted run).
 */
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { collateMasks } from '../augment/masking.js';
import { planBatch, type MultiCropConfig } from '../augment/plan.js';
import { PURPOSE, rngFor } from '../augment/rng.js';
import type { ScheduleValues } from '../augment/schedule.js';
import { threadCount } from '../backbone.js';
import { loadPretrainConfig, sameRunConfig, writeResolvedConfig, type PretrainConfig, type PretrainDerived } from '../config/pretrain.js';
import { synthDataset } from '../data/synth.js';
import { describeDistEnv, rankDevice, rankThreads, resolveDistEnv } from '../distributed/env.js';
import { allOrNothing, joinProcessGroup, namePeer, type ProcessGroup } from '../distributed/group.js';
import { ConfigError } from '../model/config.js';
import { call, callSync, CxformerError, native, type NativeTrainer } from '../native/load.js';
import { packPlanes } from '../run/batches.js';
import { keepJsonl, withRunFolder } from '../run/folder.js';
import { dumpRankState, onRankZero, rankZeroInt, requireShared, stopTogether } from '../run/rank.js';
import { refuseChangedSettings } from '../run/settings.js';
import { EventFile } from '../run/tensorboard.js';
import { BatchLoader, openTrainingData, type TrainingData } from './data.js';
import type { GrayImage } from '../cache/planes.js';
import { CollapseMonitor } from './collapse.js';
import { createProber, type Prober, type ProbeResult } from './probe.js';
import { backboneConfig, runSchedules, sslConfig } from './ssl-options.js';

/**
 * Images generated into <output>/data when data.root is null (at data.base_size, at least 64 px, else 512 px):
 * enough that the probes' valid + test rows (20 %) score the findings on 400 images.
 */
export const PHANTOM_IMAGES = 2000;

/** The loss terms and gradient norms of one step (native StepRecord). */
export interface StepRecord {
  total_loss: number;
  dino_local_crops_loss: number;
  dino_global_crops_loss: number;
  ibot_loss: number;
  koleo_loss: number;
  /** Mean entropy (nats) of the teacher's DINO targets: ln K = uniform outputs, ~0 = one prototype (src/train/collapse.ts). */
  teacher_entropy: number;
  grad_norm_backbone: number;
  grad_norm_dino_head: number;
  grad_norm_ibot_head: number;
  n_masked: number;
  /** Milliseconds per stage of the step (native), and waiting for decoded data (TypeScript). */
  ms_augment: number;
  ms_teacher: number;
  ms_student: number;
  ms_backward: number;
  ms_optimizer: number;
  ms_ema: number;
  ms_data_wait: number;
}

export interface TrainEvent {
  kind: 'start' | 'step' | 'checkpoint' | 'done' | 'log';
  iteration?: number;
  total?: number;
  record?: StepRecord & ScheduleValues & { teacher_entropy_ratio: number; images_per_s: number; it_per_s: number };
  message?: string;
  etaSeconds?: number;
}

export interface TrainOptions {
  /** Config files (paths or preset names), merged over configs/pretrain/default.yaml. */
  configs?: string[];
  /** Dotted key=value overrides. */
  overrides?: string[];
  /** Resume into a folder whose resolved.yaml differs in training keys. */
  force?: boolean;
  onEvent?: (e: TrainEvent) => void;
  signal?: AbortSignal;
  /** Stop after this iteration (exclusive upper bound), for tests of interruption. */
  stopAfter?: number;
  /** Synchronise CUDA between stages so the per-stage timings are exact (benchmarks). */
  profile?: boolean;
}

export interface TrainResult {
  output: string;
  lastIteration: number;
  interrupted: boolean;
  /** Rank 0 only (null on the other ranks). */
  exported: string | null;
  /** This process's rank and the number of data-parallel ranks (1 without a launcher). */
  rank: number;
  worldSize: number;
}

const CKPT_RE = /^ckpt-(\d+)\.safetensors$/;
const ckptPath = (dir: string, it: number) => path.join(dir, `ckpt-${String(it).padStart(7, '0')}.safetensors`);

async function checkpoints(dir: string): Promise<Array<{ it: number; file: string }>> {
  if (!existsSync(dir)) return [];
  return (await readdir(dir))
    .map((f) => ({ m: CKPT_RE.exec(f), f }))
    .filter((x): x is { m: RegExpExecArray; f: string } => x.m !== null)
    .map((x) => ({ it: Number(x.m[1]), file: path.join(dir, x.f) }))
    .sort((a, b) => a.it - b.it);
}

/** Runs (or resumes) a pretraining run. */
export async function train(o: TrainOptions): Promise<TrainResult> {
  const emit = o.onEvent ?? (() => undefined);
  // Data parallel (docs/distributed.md): the ranks come from the environment (cxformer launch, torchrun, Slurm).
  const dist = resolveDistEnv();
  const { rank, worldSize: world } = dist;
  const lead = rank === 0;
  const { config: c, derived: d } = await loadPretrainConfig({ files: o.configs ?? [], overrides: o.overrides ?? [], world });
  const out = path.resolve(c.output);
  const ckDir = path.join(out, 'checkpoints');
  const device = rankDevice(c.compute.device, dist);
  // Ranks sharing a node share its cores: compute.threads 0 means cores / local ranks, not all cores each.
  const threads = rankThreads(c.compute.threads, dist);
  const pg: ProcessGroup | null = await joinProcessGroup({ env: dist, timeoutS: c.dist.timeout_s, backend: c.dist.backend, device });
  try {
    // The run folder (src/run/folder.ts): rank 0 holds its lock, train.log gets every rank's error.
    const folder = { dir: out, rank, pg, command: 'cxformer train', report: (message: string) => emit({ kind: 'log', message }) };
    const res = await withRunFolder(folder, (run) =>
      trainRanked(o, { c, d, out, ckDir, log: run.log, emit, rank, world, lead, device, threads, pg, describe: describeDistEnv(dist), force: o.force ?? false }),
    );
    // Rank 0 hosts the rendezvous store: nobody leaves before everyone is done with the group.
    await pg?.barrier();
    return res;
  } catch (e) {
    throw namePeer(e, pg);
  } finally {
    pg?.destroy();
  }
}

interface RankContext {
  c: PretrainConfig;
  d: PretrainDerived;
  out: string;
  ckDir: string;
  log: (msg: string, everyRank?: boolean) => Promise<void>;
  emit: (e: TrainEvent) => void;
  rank: number;
  world: number;
  lead: boolean;
  device: string;
  threads: number;
  pg: ProcessGroup | null;
  describe: string;
  /** Resume a checkpoint whose configuration differs (--force). */
  force: boolean;
}

async function trainRanked(o: TrainOptions, x: RankContext): Promise<TrainResult> {
  const { c, d, out, ckDir, log, world, lead, pg } = x;

  // ---- the run folder: new, or a resume of the same configuration ----
  // Rank 0 picks the newest checkpoint and every rank loads that same file (the output folder must be on a file
  // system all nodes share). -1 = a fresh run.
  const newest = lead ? ((await checkpoints(ckDir)).at(-1)?.it ?? -1) : -1;
  const resumeIt = (await rankZeroInt(pg, newest + 1)) - 1;
  const resumeFile = resumeIt >= 0 ? ckptPath(ckDir, resumeIt) : null;
  await onRankZero(pg, 'checking the run folder', () => checkFolder(o, x, resumeFile));
  if (world > 1) {
    await log(`distributed: ${world} ranks, backend ${pg?.backend() ?? '?'}, this is ${x.describe}, device ${x.device}`);
    await log(
      `global batch = ${c.train.batch_size_per_gpu} per rank × ${world} ranks = ${d.global_batch_size}` +
        (c.optim.accumulate_grad_batches > 1 ? ` (× ${c.optim.accumulate_grad_batches} accumulated = ${d.images_per_step} images per step)` : ''),
    );
  }
  for (const m of d.lr_messages) await log(m);

  // ---- data: a prepared cache, or image files (folder / CSV manifest / built-in phantoms) ----
  const B = c.train.batch_size_per_gpu;
  // What the data holds open (a prepared cache's pixels.bin) is closed on every way out, this rank's errors, another
  // rank's and the end of the run alike: a handle left to the garbage collector makes Node print a warning.
  let opened: TrainingData | undefined;
  const data = await allOrNothing(pg, 'loading the data', async () => {
    const data = (opened = await openTrainingData(c, out, log));
    if (data.n < B * world) {
      const each = world > 1 ? ` × ${world} ranks (each rank reads its own ${Math.floor(data.n / world)} per pass)` : '';
      throw new CxformerError('CXF_INPUT', `${data.source}: ${data.n} images, fewer than train.batch_size_per_gpu=${B}${each}`);
    }
    await log(`data: ${data.n} images from ${data.source}` + (world > 1 ? `; each rank reads a disjoint shard of ${Math.floor(data.n / world)} per pass` : ''));
    return data;
  }).catch(async (e: unknown) => {
    await opened?.close();
    throw e;
  });
  try {
    return await trainOnData(o, x, data, resumeIt, resumeFile);
  } finally {
    await data.close();
  }
}

/** The rest of a rank's run, once its data is open: run folder files, native trainer, the loop, the end. */
async function trainOnData(o: TrainOptions, x: RankContext, data: TrainingData, resumeIt: number, resumeFile: string | null): Promise<TrainResult> {
  const { c, d, out, log, emit, rank, world, lead, pg } = x;
  const B = c.train.batch_size_per_gpu;
  const metrics = path.join(out, 'metrics.jsonl');
  // The settings are recorded once they passed every check; metrics.jsonl keeps the lines up to the resumed
  // checkpoint (none for a fresh run): lines a killed run wrote after its last checkpoint are written again.
  // TensorBoard (src/run/tensorboard.ts): each start opens a new events file beside metrics.jsonl; its START at the
  // first iteration to run supersedes what a killed run logged after the checkpoint, as keepJsonl does.
  let tb = null as EventFile | null;
  await onRankZero(pg, 'writing the run folder', async () => {
    const resolved = await writeResolvedConfig(out, c, d);
    await keepJsonl(metrics, (r) => typeof r.iteration === 'number' && r.iteration <= resumeIt);
    tb = c.log.tensorboard ? EventFile.create(out, { firstStep: resumeIt + 1, config: await readFile(resolved, 'utf8') }) : null;
  });

  // ---- native trainer (with a process group: rank 0's parameters are broadcast at creation, gradients and the
  // centering / Sinkhorn-Knopp statistics all-reduced, losses averaged over the ranks) ----
  const trainer = await createNativeTrainer(x, resumeFile);
  const start = resumeFile ? await resume(x, trainer, resumeFile) : 0;
  const total = d.total_iterations;
  const sched = runSchedules(c, d);
  const mc = multiCropConfig(c);
  const accum = c.optim.accumulate_grad_batches;
  const stopAt = Math.min(total, o.stopAfter ?? total);
  // Each micro-batch of an iteration reads its own part of the stream; each rank its own shard of every pass.
  const loader = new BatchLoader(
    data,
    { batch: B, seed: c.seed, rank, world, workers: c.data.decode_workers, prefetch: c.data.prefetch_batches, lastSlot: stopAt * accum, maxBadFraction: c.data.max_bad_fraction, logFile: path.join(out, 'train.log') },
    log,
  );
  const ckpt = await checkpointer(x, trainer, data, metrics, resumeIt, tb);
  if (!resumeFile) await ckpt.baseline();

  // ---- the loop ----
  if (lead) emit({ kind: 'start', iteration: start, total });
  let last = start - 1;
  let interrupted = false;
  const t0 = performance.now();
  const collapse = new CollapseMonitor(c.dino.head_n_prototypes);
  for (let it = start; it < stopAt; it++) {
    // Every rank stops at the same iteration (one all-reduce of the flag per step).
    if (await stopTogether(pg, o.signal?.aborted ?? false)) {
      interrupted = true;
      break;
    }
    const values = sched.at(it);
    const tStep = performance.now();
    let rec: StepRecord | undefined;
    let waited = 0;
    for (let micro = 0; micro < accum; micro++) {
      const slot = it * accum + micro;
      const tw = performance.now();
      const images = await loader.fetch(slot);
      waited += performance.now() - tw;
      rec = { ...(await stepImages(o, x, trainer, images, { it, slot, micro, accum, values, mc })), ms_data_wait: waited };
    }
    last = it;
    const dt = (performance.now() - tStep) / 1000;
    // Losses come back averaged over the ranks; images_per_s counts every rank's images.
    const r0 = rec as StepRecord;
    const record = { ...r0, teacher_entropy_ratio: collapse.ratio(r0.teacher_entropy), ...values, images_per_s: (B * accum * world) / dt, it_per_s: 1 / dt };
    if (lead && (it % c.log.period_iterations === 0 || it === total - 1)) {
      await appendFile(metrics, `${JSON.stringify({ iteration: it, ...record })}\n`);
      tb?.metrics(it, record);
    }
    const collapsed = collapse.observe(it, record.teacher_entropy, [record.dino_global_crops_loss, record.dino_local_crops_loss]);
    if (lead && collapsed) await log(collapsed);
    const eta = ((performance.now() - t0) / 1000 / (it - start + 1)) * (total - it - 1);
    if (lead) emit({ kind: 'step', iteration: it, total, record, etaSeconds: eta });
    if ((it + 1) % c.checkpoint.period_iterations === 0 && it + 1 < total) await ckpt.save(it);
  }

  // ---- the end: final (or interruption) checkpoint, unless the periodic one just wrote it; export ----
  if (last >= 0 && ckpt.last() !== last) await ckpt.save(last, !interrupted);
  if (last >= 0) await dumpRankState(rank, (file) => call('saveCheckpoint', () => trainer.saveCheckpoint(file, last, { cxformer_run_config: JSON.stringify(c) })));
  let exported: string | null = null;
  if (lead && !interrupted && last === total - 1) {
    const { exportRun } = await import('./export.js');
    exported = await exportRun(out, path.join(out, 'exported'));
    await log(`exported the teacher to ${exported}`);
  }
  if (interrupted) await log(`interrupted after iteration ${last}; re-run the same command to resume`);
  emit({ kind: 'done', iteration: last, total, message: exported ?? undefined });
  return { output: out, lastIteration: last, interrupted, exported, rank, worldSize: world };
}

/**
 * Rank 0, before anything is written: a folder with a checkpoint resumes only the same configuration (unless
 * --force); the built-in phantoms are generated once, before any rank reads them.
 */
async function checkFolder(o: TrainOptions, x: RankContext, resumeFile: string | null): Promise<void> {
  const { c, out } = x;
  await mkdir(x.ckDir, { recursive: true });
  // Only a checkpoint binds the folder to its configuration: a start that failed (or was killed) before its first
  // checkpoint left nothing to resume, and its resolved.yaml is simply rewritten.
  const resolvedPath = path.join(out, 'resolved.yaml');
  if (resumeFile && existsSync(resolvedPath)) {
    const prev = await loadPretrainConfig({ files: [resolvedPath], overrides: [`output=${c.output}`] });
    refuseChangedSettings(sameRunConfig(prev.config, c), { dir: out, file: 'resolved.yaml', what: 'pretraining run', force: o.force ?? false });
  }
  if (!c.data.cache && !c.data.datasets && c.data.root === null) {
    const root = path.join(out, 'data');
    if (!existsSync(path.join(root, 'dataset.json'))) {
      await x.log(`data.root is null: generating ${PHANTOM_IMAGES} phantom chest radiographs into ${root}`);
      await synthDataset({ out: root, n: PHANTOM_IMAGES, seed: c.seed, size: Math.max(64, c.data.base_size ?? 512) });
    }
  }
}

/** The native trainer of this rank, initialised from init.weights / init.heads unless it resumes. */
async function createNativeTrainer(x: RankContext, resumeFile: string | null): Promise<NativeTrainer> {
  const { c, d, pg } = x;
  const { vit, initFile } = await allOrNothing(pg, 'reading init.weights', () => backboneConfig(c, d));
  const bind = native();
  callSync('setThreads', () => bind.setThreads(threadCount(x.threads)));
  const options = JSON.stringify({
    ssl: sslConfig(c, d, vit),
    device: x.device,
    seed: c.seed,
    initWeights: resumeFile ? undefined : initFile ?? undefined,
    initHeads: resumeFile ? undefined : c.init.heads ?? undefined,
  });
  const trainer: NativeTrainer = await call('createTrainer', () => bind.createTrainer(options, pg));
  if (!resumeFile && initFile) await x.log(`initialised from ${initFile}: ${trainer.initReport}`);
  return trainer;
}

/** Loads the checkpoint (collective: every rank reads it, rank 0's state is broadcast); the first iteration to run. */
async function resume(x: RankContext, trainer: NativeTrainer, file: string): Promise<number> {
  const { c, d, world } = x;
  await requireShared(x.pg, file);
  // --force: the checkpoint's native configuration may differ from this run's (the user accepted the change).
  const md = await call('loadCheckpoint', () => trainer.loadCheckpoint(file, x.force));
  const start = Number(md.cxformer_iteration) + 1;
  await x.log(`resuming from ${file} at iteration ${start}` + (world > 1 ? ` (all ${world} ranks)` : ''));
  const before = Number(md.cxformer_world_size ?? 1);
  if (before !== world) {
    await x.log(
      `warning: the checkpoint was written by a run of ${before} rank(s), this run has ${world}: the global batch changes from ` +
        `${c.train.batch_size_per_gpu * before} to ${d.global_batch_size} (lr by the scaling rule above) and the data order differs from an uninterrupted run`,
    );
  }
  return start;
}

function multiCropConfig(c: PretrainConfig): MultiCropConfig {
  return {
    globalSize: c.crops.global_crops_size,
    localSize: c.crops.local_crops_size,
    nGlobal: 2,
    nLocal: c.crops.local_crops_number,
    globalScale: c.crops.global_crops_scale,
    localScale: c.crops.local_crops_scale,
    affine: c.crops.global_affine,
  };
}

/** One micro-batch: crop plans and iBOT masks from (seed, rank, slot), then the native augmentation and step. */
async function stepImages(
  o: TrainOptions,
  x: RankContext,
  trainer: NativeTrainer,
  images: GrayImage[],
  s: { it: number; slot: number; micro: number; accum: number; values: ScheduleValues; mc: MultiCropConfig },
): Promise<StepRecord> {
  const { c, d } = x;
  const B = images.length;
  const crops = planBatch(c.seed, x.rank, s.slot, images.map((im) => [im.height, im.width] as [number, number]), s.mc);
  const masks = collateMasks(rngFor(c.seed, x.rank, s.slot, PURPOSE.masks), 2 * B, d.global_grid, d.global_grid, {
    maskProbability: c.ibot.loss_weight > 0 ? c.ibot.mask_sample_probability : 0,
    ratioMin: c.ibot.mask_ratio_min_max[0],
    ratioMax: c.ibot.mask_ratio_min_max[1],
    maxNumPatches: d.max_mask_patches,
  });
  const { planes, sizes } = packPlanes(images);
  const options = JSON.stringify({ iteration: s.it, schedule: s.values, micro: s.micro, of: s.accum, profile: o.profile ?? false });
  const json = await call(`step ${s.it}`, () =>
    trainer.stepImages(planes, sizes, JSON.stringify(crops), s.mc.globalSize, s.mc.localSize, masks.masks, [2 * B, d.global_patches], options),
  );
  return JSON.parse(json) as StepRecord;
}

/** The baseline probe a resumed run logged at its start (metrics.jsonl), if any. */
async function readBaseline(metrics: string): Promise<ProbeResult | null> {
  if (!existsSync(metrics)) return null;
  for (const line of (await readFile(metrics, 'utf8')).split('\n')) {
    if (!line.includes('"probe_baseline"')) continue;
    try {
      const r = JSON.parse(line) as ProbeResult & { probe_baseline?: boolean };
      if (r.probe_baseline === true) return r;
    } catch {
      // A torn last line of a killed run: keepJsonl drops it.
    }
  }
  return null;
}

/**
 * Checkpoints: rank 0 writes (keeping the last checkpoint.keep_last) and runs the probe on it, if enabled (a failed
 * probe is logged, never stops training); every rank waits until that went well (within dist.timeout_s).
 */
async function checkpointer(x: RankContext, trainer: NativeTrainer, data: TrainingData, metrics: string, resumeIt: number, tb: EventFile | null) {
  const { c, lead, log, out } = x;
  let prober: Prober | null = null;
  if (c.probe.enabled && lead) {
    const root = c.probe.root ?? data.dataRoot;
    if (root === null) throw new ConfigError('probe.enabled needs probe.root when the training data come from data.cache or data.datasets');
    prober = await createProber(c, root);
  }
  let lastSaved = resumeIt;
  const f = (v: number | null) => (v === null ? 'n/a' : v.toFixed(3));
  // The probe of the encoder the run starts from (random weights, or init.weights), same geometry as every later
  // probe: the baseline each later probe line is compared with. Logged once, as iteration 0 with probe_baseline.
  let base: ProbeResult | null = prober ? await readBaseline(metrics) : null;
  const vsBase = (v: number | null, b: number | null | undefined) => (v === null || b === null || b === undefined ? '' : ` (${v - b >= 0 ? '+' : ''}${(v - b).toFixed(3)})`);
  const baseline = async () => {
    if (!prober) return;
    // A run killed while probing left its file; the run after it starts fresh (no checkpoint yet) and removes it.
    for (const n of await readdir(out)) if (/^\.baseline-\d+\.safetensors$/.test(n)) await rm(path.join(out, n), { force: true });
    const file = path.join(out, `.baseline-${process.pid}.safetensors`);
    try {
      await call('saveCheckpoint', () => trainer.saveCheckpoint(file, 0, { cxformer_run_config: JSON.stringify(c), cxformer_world_size: String(x.world) }));
      base = await prober.run(file);
    } catch (e) {
      await log(`probe of the starting encoder failed: ${(e as Error).message}`);
      return;
    } finally {
      await rm(file, { force: true });
    }
    await appendFile(metrics, `${JSON.stringify({ iteration: 0, probe_baseline: true, ...base })}\n`);
    tb?.metrics(0, base);
    const what = c.init.weights ? 'the initial weights' : 'the untrained (random) encoder';
    await log(`probe of ${what}, the baseline: kNN macro AUROC ${f(base.probe_knn_macro_auroc)}, linear macro AUROC ${f(base.probe_linear_macro_auroc)} (${base.probe_train_images}/${base.probe_valid_images} images, ${base.probe_seconds.toFixed(1)} s)`);
  };
  const write = async (it: number, probe: boolean) => {
    const file = ckptPath(x.ckDir, it);
    await call('saveCheckpoint', () => trainer.saveCheckpoint(file, it, { cxformer_run_config: JSON.stringify(c), cxformer_world_size: String(x.world) }));
    const all = await checkpoints(x.ckDir);
    if (c.checkpoint.keep_last > 0) for (const old of all.slice(0, -c.checkpoint.keep_last)) await rm(old.file, { force: true });
    x.emit({ kind: 'checkpoint', iteration: it, message: file });
    if (!prober || !probe) return;
    let r;
    try {
      r = await prober.run(file);
    } catch (e) {
      // E.g. features of a diverging model.
      await log(`probe at iteration ${it} failed: ${(e as Error).message}`);
      return;
    }
    await appendFile(metrics, `${JSON.stringify({ iteration: it, ...r })}\n`);
    tb?.metrics(it, r);
    await log(
      `probe at iteration ${it}: kNN macro AUROC ${f(r.probe_knn_macro_auroc)}${vsBase(r.probe_knn_macro_auroc, base?.probe_knn_macro_auroc)}, ` +
        `linear macro AUROC ${f(r.probe_linear_macro_auroc)}${vsBase(r.probe_linear_macro_auroc, base?.probe_linear_macro_auroc)}` +
        `${base ? ' vs the baseline' : ''} (${r.probe_train_images}/${r.probe_valid_images} images, ${r.probe_seconds.toFixed(1)} s)`,
    );
  };
  return {
    /** Fresh runs only: the baseline probe (collective, like save). */
    baseline: () => onRankZero(x.pg, 'probe of the starting encoder', baseline),
    save: (it: number, probe = true) => {
      lastSaved = it;
      return onRankZero(x.pg, `checkpoint at iteration ${it}`, () => write(it, probe));
    },
    last: () => lastSaved,
  };
}
