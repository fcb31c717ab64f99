/**
 * `cxformer train`: the pretraining loop (docs/recipe.md §3, style habit 7). TypeScript owns the config, the data, the
 * sampler, the per-iteration schedule values, crop plans and iBOT masks (all from (seed, rank, iteration));
 * the native trainer runs augmentation + step. Output folder:
 *   resolved.yaml, metrics.jsonl, train.log, checkpoints/ckpt-<iteration>.safetensors, exported/ (HF + dino_head).
 * Re-running on the same folder resumes from the newest checkpoint (identical to an uninterrupted run).
 */
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readdir, rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { collateMasks } from '../augment/masking.js';
import { planBatch, type MultiCropConfig } from '../augment/plan.js';
import { PURPOSE, rngFor } from '../augment/rng.js';
import { buildSchedules, type ScheduleValues, type Schedules } from '../augment/schedule.js';
import { threadCount } from '../backbone.js';
import { loadPretrainConfig, sameRunConfig, writeResolvedConfig, type PretrainConfig, type PretrainDerived } from '../config/pretrain.js';
import { loadImageDataset, type DatasetItem } from '../data/manifest.js';
import { synthDataset } from '../data/synth.js';
import { ConfigError, type VitConfig } from '../model/config.js';
import { resolveModel } from '../model/weights.js';
import { call, callSync, CxformerError, native, type NativeTrainer } from '../native/load.js';
import { loadCachedImage, loadTrainImage, type GrayImage } from './images.js';
import { openCache } from '../cache/reader.js';
import { loadDataset, mixDatasets, planRecords, type CxrRecord, type DatasetSpec } from '../datasets/index.js';
import { createProber, type Prober } from './probe.js';
import { IterationSampler } from './sampler.js';
import { describeDistEnv, rankDevice, rankThreads, resolveDistEnv } from '../distributed/env.js';
import { agreeStop, allOrNothing, broadcastInt, joinProcessGroup, namePeer, type ProcessGroup } from '../distributed/group.js';
import { keepJsonl, withRunFolder } from '../run/folder.js';

/** Runs at most `n` of the given async jobs at once. */
function limiter(n: number) {
  let active = 0;
  const waiting: Array<() => void> = [];
  return async <T>(job: () => Promise<T>): Promise<T> => {
    if (active >= n) await new Promise<void>((resolve) => waiting.push(resolve));
    active++;
    try {
      return await job();
    } finally {
      active--;
      waiting.shift()?.();
    }
  };
}

/** Images generated into <output>/data when data.root is null. */
export const PHANTOM_IMAGES = 256;

/** The loss terms and gradient norms of one step (native StepRecord). */
export interface StepRecord {
  total_loss: number;
  dino_local_crops_loss: number;
  dino_global_crops_loss: number;
  ibot_loss: number;
  koleo_loss: number;
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
  record?: StepRecord & ScheduleValues & { images_per_s: number; it_per_s: number };
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

/** The native SSL configuration from the resolved YAML config. */
export function sslConfig(c: PretrainConfig, d: PretrainDerived, vit: VitConfig): Record<string, unknown> {
  const head = (k: 'dino' | 'ibot') => ({
    in_dim: vit.embed_dim,
    out_dim: c[k].head_n_prototypes,
    hidden_dim: c[k].head_hidden_dim,
    bottleneck_dim: c[k].head_bottleneck_dim,
    nlayers: c[k].head_nlayers,
  });
  return {
    model: vit,
    dino_head: head('dino'),
    ibot_head: c.ibot.separate_head ? head('ibot') : null,
    dino_loss_weight: c.dino.loss_weight,
    ibot_loss_weight: c.ibot.loss_weight,
    koleo_loss_weight: c.dino.koleo_loss_weight,
    centering: c.train.centering,
    center_momentum: c.train.center_momentum,
    student_temp: c.train.student_temp,
    sinkhorn_iterations: 3,
    n_global_crops: d.n_global_crops,
    n_local_crops: c.crops.local_crops_number,
    clip_grad: c.optim.clip_grad,
    layerwise_decay: c.optim.layerwise_decay,
    patch_embed_lr_mult: c.optim.patch_embed_lr_mult,
    adamw_betas: c.optim.adamw_betas,
    adamw_eps: c.optim.adamw_eps,
    precision: c.compute.precision === 'bf16' ? 'bf16' : 'f32',
  };
}

/** The per-iteration schedules of a run (lr and min lr after the scaling rule and accumulation). */
export function runSchedules(c: PretrainConfig, d: PretrainDerived): Schedules {
  return buildSchedules({
    epochs: c.optim.epochs,
    epochLength: c.train.OFFICIAL_EPOCH_LENGTH,
    baseLr: d.lr,
    minLr: d.min_lr,
    warmupEpochs: c.optim.warmup_epochs,
    weightDecay: c.optim.weight_decay,
    weightDecayEnd: c.optim.weight_decay_end,
    momentumTeacher: c.teacher.momentum_teacher,
    finalMomentumTeacher: c.teacher.final_momentum_teacher,
    warmupTeacherTemp: c.teacher.warmup_teacher_temp,
    teacherTemp: c.teacher.teacher_temp,
    warmupTeacherTempEpochs: c.teacher.warmup_teacher_temp_epochs,
    freezeLastLayerEpochs: c.optim.freeze_last_layer_epochs,
  });
}

/** Backbone architecture: from init.weights when continuing (their config wins), else from the config. */
async function backboneConfig(c: PretrainConfig, d: PretrainDerived): Promise<{ vit: VitConfig; initFile: string | null }> {
  if (!c.init.weights) return { vit: d.vit, initFile: null };
  const r = await resolveModel({ weights: c.init.weights });
  // Training behaviour comes from the run's config; the structure from the weights.
  const vit: VitConfig = {
    ...r.config,
    drop_path_rate: c.model.drop_path_rate,
    drop_path_uniform: c.model.drop_path_uniform,
    interpolation: { ...c.model.interpolation },
  };
  return { vit, initFile: r.weights?.file ?? null };
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
      trainRanked(o, { c, d, out, ckDir, log: run.log, emit, rank, world, lead, device, threads, pg, describe: describeDistEnv(dist) }),
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
}

async function trainRanked(o: TrainOptions, x: RankContext): Promise<TrainResult> {
  const { c, d, out, ckDir, log, emit, rank, world, lead, pg } = x;

  // ---- the run folder: new, or a resume of the same configuration ----
  // Resume: rank 0 picks the newest checkpoint and every rank loads that same file (the output folder must be
  // on a file system all nodes share). -1 = a fresh run.
  const newest = lead ? ((await checkpoints(ckDir)).at(-1)?.it ?? -1) : -1;
  const resumeIt = pg ? (await broadcastInt(pg, newest + 1)) - 1 : newest;
  const resumeFile = resumeIt >= 0 ? ckptPath(ckDir, resumeIt) : null;
  const resolvedPath = path.join(out, 'resolved.yaml');
  await allOrNothing(pg, 'checking the run folder', async () => {
    if (lead) await mkdir(ckDir, { recursive: true });
    // Only a checkpoint binds the folder to its configuration: a start that failed (or was killed) before its
    // first checkpoint left nothing to resume, and its resolved.yaml is simply rewritten.
    if (lead && resumeFile && existsSync(resolvedPath)) {
      const prev = await loadPretrainConfig({ files: [resolvedPath], overrides: [`output=${c.output}`] });
      const diff = sameRunConfig(prev.config, c);
      if (diff.length && !o.force) {
        throw new ConfigError(
          `${out} holds a run with a different configuration (${diff.join(', ')} differ from its resolved.yaml). ` +
            'Choose another output folder, or pass --force to resume it with the new values.',
        );
      }
    }
    // The built-in phantoms are generated once, by rank 0, before any rank reads them.
    if (lead && !c.data.cache && !c.data.datasets && c.data.root === null) {
      const root = path.join(out, 'data');
      if (!existsSync(path.join(root, 'dataset.json'))) {
        await log(`data.root is null: generating ${PHANTOM_IMAGES} phantom chest radiographs into ${root}`);
        await synthDataset({ out: root, n: PHANTOM_IMAGES, seed: c.seed, size: 512 });
      }
    }
  });
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
  const data = await allOrNothing(pg, 'loading the data', async () => {
    const imgOpts = { equalize: c.data.equalize, baseSize: c.data.base_size };
    let n: number;
    let source: string;
    let describe: (idx: number) => string;
    let readImage: (idx: number) => Promise<GrayImage>;
    let dataRoot: string | null = null;
    if (c.data.cache) {
      const cache = await openCache(c.data.cache);
      if (c.data.base_size !== null && cache.settings.shorterSide !== c.data.base_size) {
        throw new ConfigError(
          `data.cache ${cache.dir} was prepared with shorter side ${cache.settings.shorterSide ?? 'none'}, but data.base_size is ${c.data.base_size}; ` +
            'set data.base_size to the same value (or null), or prepare another cache',
        );
      }
      n = cache.records.length;
      source = `${cache.dir} (prepared cache, ${cache.settings.bitDepth}-bit)`;
      describe = (idx) => `${cache.dir} record ${idx} (${cache.records[idx]?.id})`;
      readImage = (idx) => loadCachedImage(cache, idx, imgOpts);
    } else if (c.data.datasets) {
      // Public datasets in their official layouts, mixed for pretraining (docs/recipe.md §1: concatenated = proportional).
      const sources = [];
      const equalize: boolean[] = [];
      for (const [k, entry] of c.data.datasets.entries()) {
        // Per-entry `equalize` overrides data.equalize (CXformer: on for every dataset but RSNA).
        const { weight, equalize: eq, ...rest } = entry;
        if (eq !== undefined && typeof eq !== 'boolean') throw new ConfigError(`data.datasets[${k}].equalize: expected true or false, got ${JSON.stringify(eq)}`);
        equalize.push(eq ?? c.data.equalize);
        const spec = Object.fromEntries(Object.entries(rest).map(([key, v]) => [key.replace(/_([a-z])/g, (_m, ch: string) => ch.toUpperCase()), v]));
        const ds = await loadDataset({ seed: c.seed, ...spec } as unknown as DatasetSpec);
        await log(`data.datasets[${k}]: ${entry.name} at ${entry.root}: ${ds.records.length} images`);
        sources.push({ records: ds.records, weight });
      }
      const plan = mixDatasets(sources, { mode: c.data.mixture, seed: c.seed });
      const records = planRecords(plan, sources);
      n = records.length;
      source = `${c.data.datasets.length} dataset(s), ${c.data.mixture} mixture`;
      describe = (idx) => (records[idx] as CxrRecord).path;
      readImage = (idx) => loadTrainImage((records[idx] as CxrRecord).path, { ...imgOpts, equalize: equalize[plan.source[idx] as number] as boolean });
    } else {
      const root = c.data.root ?? path.join(out, 'data');
      dataRoot = root;
      const dataset = await loadImageDataset({ root, manifest: c.data.manifest ?? undefined, pathColumn: c.data.path_column });
      const items: DatasetItem[] = dataset.items;
      n = items.length;
      source = dataset.source;
      describe = (idx) => (items[idx] as DatasetItem).path;
      readImage = (idx) => loadTrainImage((items[idx] as DatasetItem).path, imgOpts);
    }
    if (n < B * world) {
      throw new CxformerError(
        'CXF_INPUT',
        world > 1
          ? `${source}: ${n} images, fewer than train.batch_size_per_gpu=${B} × ${world} ranks (each rank reads its own ${Math.floor(n / world)} per pass)`
          : `${source}: ${n} images, fewer than train.batch_size_per_gpu=${B}`,
      );
    }
    await log(`data: ${n} images from ${source}` + (world > 1 ? `; each rank reads a disjoint shard of ${Math.floor(n / world)} per pass` : ''));
    return { n, describe, readImage, dataRoot };
  });
  const { n, describe, readImage, dataRoot } = data;
  const metrics = path.join(out, 'metrics.jsonl');
  // The settings are recorded once they passed every check; metrics.jsonl keeps the lines up to the resumed
  // checkpoint (none for a fresh run): lines a killed run wrote after its last checkpoint are written again.
  await allOrNothing(pg, 'writing the run folder', async () => {
    if (!lead) return;
    await writeResolvedConfig(out, c, d);
    await keepJsonl(metrics, (r) => typeof r.iteration === 'number' && r.iteration <= resumeIt);
  });

  // ---- native trainer ----
  const { vit, initFile } = await allOrNothing(pg, 'reading init.weights', () => backboneConfig(c, d));
  const bind = native();
  callSync('setThreads', () => bind.setThreads(threadCount(x.threads)));
  // With a process group, the native trainer broadcasts rank 0's parameters at creation, all-reduces gradients
  // and the centering / Sinkhorn-Knopp statistics, and returns losses averaged over the ranks.
  const options = JSON.stringify({
    ssl: sslConfig(c, d, vit),
    device: x.device,
    seed: c.seed,
    initWeights: resumeFile ? undefined : initFile ?? undefined,
    initHeads: resumeFile ? undefined : c.init.heads ?? undefined,
  });
  const trainer: NativeTrainer = await call('createTrainer', () => bind.createTrainer(options, pg));
  let start = 0;
  if (resumeFile) {
    await allOrNothing(pg, `finding ${resumeFile}`, async () => {
      if (!existsSync(resumeFile)) {
        throw new CxformerError('CXF_DIST', `rank ${rank} cannot see ${resumeFile} chosen by rank 0: put the output folder on a file system shared by all nodes`);
      }
    });
    // Collective with a process group: every rank reads the file, then rank 0's state is broadcast.
    const md = await call('loadCheckpoint', () => trainer.loadCheckpoint(resumeFile));
    start = Number(md.cxformer_iteration) + 1;
    await log(`resuming from ${resumeFile} at iteration ${start}` + (world > 1 ? ` (all ${world} ranks)` : ''));
    const before = Number(md.cxformer_world_size ?? 1);
    if (before !== world) {
      await log(
        `warning: the checkpoint was written by a run of ${before} rank(s), this run has ${world}: the global batch changes from ` +
          `${c.train.batch_size_per_gpu * before} to ${d.global_batch_size} (lr by the scaling rule above) and the data order differs from an uninterrupted run`,
      );
    }
  } else if (initFile) {
    await log(`initialised from ${initFile}: ${trainer.initReport}`);
  }

  const total = d.total_iterations;
  const sched = runSchedules(c, d);
  const mc: MultiCropConfig = {
    globalSize: c.crops.global_crops_size,
    localSize: c.crops.local_crops_size,
    nGlobal: 2,
    nLocal: c.crops.local_crops_number,
    globalScale: c.crops.global_crops_scale,
    localScale: c.crops.local_crops_scale,
    affine: c.crops.global_affine,
  };
  const accum = c.optim.accumulate_grad_batches;
  // Each micro-batch of an iteration reads its own part of the stream; each rank its own shard of every pass.
  const sampler = new IterationSampler(n, B, c.seed, rank, world);
  const bad = new Set<number>();

  // At most data.decode_workers decodes in flight (0 = one per core); sharp decodes on libuv's pool.
  const limit = limiter(c.data.decode_workers > 0 ? c.data.decode_workers : availableParallelism());

  /** The B images of stream slot `slot` (iteration·accum + micro); unreadable ones are replaced by the next position. */
  const loadBatch = async (slot: number): Promise<GrayImage[]> => {
    const positions = sampler.positions(slot);
    return Promise.all(
      positions.map((pos) => limit(async () => {
        for (let probe = 0; ; probe++) {
          // Probe 0 is the sampled image; an unreadable one is replaced by the next dataset index (deterministic).
          const idx = (sampler.at(pos) + probe) % n;
          if (bad.has(idx)) continue;
          try {
            return await readImage(idx);
          } catch (e) {
            bad.add(idx);
            await log(`skipping unreadable image ${describe(idx)}: ${(e as Error).message}`, true);
            if (bad.size > c.data.max_bad_fraction * n) {
              throw new CxformerError(
                'CXF_INPUT',
                `${bad.size} of ${n} images are unreadable, more than data.max_bad_fraction=${c.data.max_bad_fraction}; see ${path.join(out, 'train.log')}`,
              );
            }
          }
        }
      })),
    );
  };

  let prober: Prober | null = null;
  // Probes run on rank 0 only, while the other ranks wait at the checkpoint (within dist.timeout_s).
  if (c.probe.enabled && lead) {
    const root = c.probe.root ?? dataRoot;
    if (root === null) throw new ConfigError('probe.enabled needs probe.root when the training data come from data.cache or data.datasets');
    prober = await createProber(c, root);
  }
  let lastSaved = resumeIt;
  /** Rank 0 writes the checkpoint (and probes it); every rank waits until that went well. */
  const saveCkpt = (it: number, probe = true) =>
    allOrNothing(pg, `checkpoint at iteration ${it}`, async () => {
      lastSaved = it;
      if (lead) await writeCkpt(it, probe);
    });
  const writeCkpt = async (it: number, probe: boolean) => {
    const file = ckptPath(ckDir, it);
    await call('saveCheckpoint', () => trainer.saveCheckpoint(file, it, { cxformer_run_config: JSON.stringify(c), cxformer_world_size: String(world) }));
    const all = await checkpoints(ckDir);
    if (c.checkpoint.keep_last > 0) for (const old of all.slice(0, -c.checkpoint.keep_last)) await rm(old.file, { force: true });
    emit({ kind: 'checkpoint', iteration: it, message: file });
    if (prober && probe) {
      let r;
      try {
        r = await prober.run(file);
      } catch (e) {
        // A probe never stops training (e.g. features of a diverging model): log it and go on.
        await log(`probe at iteration ${it} failed: ${(e as Error).message}`);
        return file;
      }
      await appendFile(metrics, `${JSON.stringify({ iteration: it, ...r })}\n`);
      const f = (v: number | null) => (v === null ? 'n/a' : v.toFixed(3));
      await log(`probe at iteration ${it}: kNN macro AUROC ${f(r.probe_knn_macro_auroc)}, linear macro AUROC ${f(r.probe_linear_macro_auroc)} (${r.probe_train_images}/${r.probe_valid_images} images, ${r.probe_seconds.toFixed(1)} s)`);
    }
    return file;
  };

  if (lead) emit({ kind: 'start', iteration: start, total });
  let last = start - 1;
  let interrupted = false;
  const stopAt = Math.min(total, o.stopAfter ?? total);
  // Prefetch: micro-batches up to data.prefetch_batches ahead are decoded while the native step runs.
  const ahead = new Map<number, Promise<GrayImage[]>>();
  const lastSlot = stopAt * accum;
  const fetchSlot = (slot: number): Promise<GrayImage[]> => {
    for (let s = slot; s <= Math.min(slot + c.data.prefetch_batches, lastSlot - 1); s++) {
      if (!ahead.has(s)) {
        const p = loadBatch(s);
        p.catch(() => undefined); // surfaced when awaited
        ahead.set(s, p);
      }
    }
    const p = ahead.get(slot) ?? loadBatch(slot);
    ahead.delete(slot);
    return p;
  };
  const t0 = performance.now();
  for (let it = start; it < stopAt; it++) {
    // Every rank stops at the same iteration (one all-reduce of the flag per step).
    if (pg ? await agreeStop(pg, o.signal?.aborted ?? false) : o.signal?.aborted) {
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
      const images = await fetchSlot(slot);
      waited += performance.now() - tw;
      const crops = planBatch(c.seed, rank, slot, images.map((im) => [im.height, im.width] as [number, number]), mc);
      const masks = collateMasks(rngFor(c.seed, rank, slot, PURPOSE.masks), 2 * B, d.global_grid, d.global_grid, {
        maskProbability: c.ibot.loss_weight > 0 ? c.ibot.mask_sample_probability : 0,
        ratioMin: c.ibot.mask_ratio_min_max[0],
        ratioMax: c.ibot.mask_ratio_min_max[1],
        maxNumPatches: d.max_mask_patches,
      });
      const planes = new Uint8Array(images.reduce((n, im) => n + im.data.length, 0));
      let off = 0;
      for (const im of images) {
        planes.set(im.data, off);
        off += im.data.length;
      }
      const json = await call(`step ${it}`, () =>
        trainer.stepImages(
          planes,
          images.flatMap((im) => [im.height, im.width]),
          JSON.stringify(crops),
          mc.globalSize,
          mc.localSize,
          masks.masks,
          [2 * B, d.global_patches],
          JSON.stringify({ iteration: it, schedule: values, micro, of: accum, profile: o.profile ?? false }),
        ),
      );
      rec = { ...(JSON.parse(json) as StepRecord), ms_data_wait: waited };
    }
    last = it;
    const dt = (performance.now() - tStep) / 1000;
    // Losses come back averaged over the ranks; images_per_s counts every rank's images.
    const record = { ...(rec as StepRecord), ...values, images_per_s: (B * accum * world) / dt, it_per_s: 1 / dt };
    if (lead && (it % c.log.period_iterations === 0 || it === total - 1)) {
      await appendFile(metrics, `${JSON.stringify({ iteration: it, ...record })}\n`);
    }
    const done = it - start + 1;
    const eta = ((performance.now() - t0) / 1000 / done) * (total - it - 1);
    if (lead) emit({ kind: 'step', iteration: it, total, record, etaSeconds: eta });
    if ((it + 1) % c.checkpoint.period_iterations === 0 && it + 1 < total) await saveCkpt(it);
  }
  // Final (or interruption) checkpoint, unless the periodic one just wrote it.
  if (last >= 0 && lastSaved !== last) await saveCkpt(last, !interrupted);
  // Debugging aid (docs/distributed.md): every rank writes its own final state, to compare ranks.
  const dumpDir = process.env.CXFORMER_DIST_DUMP_DIR;
  if (dumpDir && last >= 0) {
    await mkdir(dumpDir, { recursive: true });
    await call('saveCheckpoint', () => trainer.saveCheckpoint(path.join(dumpDir, `rank-${rank}.safetensors`), last, { cxformer_run_config: JSON.stringify(c) }));
  }
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
