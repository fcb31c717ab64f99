/**
 * The SSL trainer as a library, for users who bring their own loaders: build it from a pretraining config,
 * call `step()` with an explicit batch (crop-major global and local crops, iBOT masks) and get every loss term
 * and gradient norm back. `cxformer train` (src/train/run.ts) drives the same native trainer.
 *
 * @example
 * const t = await Trainer.create({ configs: ['demo'], overrides: ['output=runs/x'] });
 * const rec = await t.step({ globals, locals, masks }, 0);
 */
import type { ScheduleValues, Schedules } from '../augment/schedule.js';
import { threadCount } from '../backbone.js';
import { loadPretrainConfig, type PretrainConfig, type PretrainDerived } from '../config/pretrain.js';
import { call, callSync, CxformerError, native, type NativeTrainer } from '../native/load.js';
import type { StepRecord } from './run.js';
import { runSchedules, sslConfig } from './ssl-options.js';
import type { ProcessGroup } from '../distributed/group.js';
import { rankDevice, rankThreads, resolveDistEnv } from '../distributed/env.js';

/** float32 NCHW data with its shape. */
export interface Crops {
  data: Float32Array;
  shape: [number, number, number, number];
}

export interface TrainerBatch {
  /** (2·B, 3, G, G), crop-major: row = crop·B + image. */
  globals: Crops;
  /** (n_local·B, 3, L, L), crop-major; omit when crops.local_crops_number is 0. */
  locals?: Crops;
  /** (2·B, N) iBOT masks, 1 = masked patch, N = (G/patch)². */
  masks: Uint8Array;
}

export class Trainer {
  private constructor(
    private readonly handle: NativeTrainer,
    readonly config: PretrainConfig,
    readonly derived: PretrainDerived,
    readonly schedules: Schedules,
  ) {}

  /**
   * Resolves the config (files + overrides over configs/pretrain/default.yaml) and builds the native trainer.
   * With `processGroup` (from `joinProcessGroup`, docs/distributed.md) the trainer is one data-parallel rank:
   * rank 0's parameters are broadcast at creation, gradients and centering / Sinkhorn-Knopp statistics are
   * all-reduced, and `step` returns losses averaged over the ranks; each rank passes its own part of the batch.
   * Such a rank trains on `device` (default: compute.device, `cuda` meaning cuda:<LOCAL_RANK>) with compute.threads 0
   * meaning cores / local ranks.
   */
  static async create(o: { configs?: string[]; overrides?: string[]; processGroup?: ProcessGroup | null; device?: string }): Promise<Trainer> {
    const pg = o.processGroup ?? null;
    const { config: c, derived: d } = await loadPretrainConfig({ files: o.configs ?? [], overrides: o.overrides ?? [], world: pg?.worldSize ?? 1 });
    if (c.init.weights) {
      throw new CxformerError('CXF_CONFIG', 'Trainer.create: init.weights is handled by `cxformer train`; load weights there or start from scratch');
    }
    const bind = native();
    const dist = pg ? resolveDistEnv() : null;
    callSync('setThreads', () => bind.setThreads(threadCount(dist ? rankThreads(c.compute.threads, dist) : c.compute.threads)));
    const options = JSON.stringify({ ssl: sslConfig(c, d, d.vit), device: o.device ?? (dist ? rankDevice(c.compute.device, dist) : c.compute.device), seed: c.seed, initHeads: c.init.heads ?? undefined });
    const handle = await call('createTrainer', () => bind.createTrainer(options, pg));
    const schedules = runSchedules(c, d);
    return new Trainer(handle, c, d, schedules);
  }

  /**
   * One optimisation step at `iteration` (schedule values from the config unless given). Resolves to the
   * loss terms (total, DINO local/global, iBOT, KoLeo) and the gradient norms per student submodule.
   */
  async step(batch: TrainerBatch, iteration: number, schedule?: ScheduleValues): Promise<StepRecord> {
    const values = schedule ?? this.schedules.at(iteration);
    const rows = batch.globals.shape[0];
    const json = await call(`step ${iteration}`, () =>
      this.handle.stepCrops(
        batch.globals.data,
        [...batch.globals.shape],
        batch.locals?.data,
        batch.locals ? [...batch.locals.shape] : undefined,
        batch.masks,
        [rows, rows ? batch.masks.length / rows : 0],
        JSON.stringify({ iteration, schedule: values }),
      ),
    );
    return JSON.parse(json) as StepRecord;
  }

  /** Writes a checkpoint (atomic); `iteration` = the last completed iteration. */
  async save(file: string, iteration: number): Promise<void> {
    await call('saveCheckpoint', () => this.handle.saveCheckpoint(file, iteration, { cxformer_run_config: JSON.stringify(this.config) }));
  }

  /** Restores a checkpoint; resolves to the iteration it completed. */
  async load(file: string): Promise<number> {
    const md = await call('loadCheckpoint', () => this.handle.loadCheckpoint(file));
    return Number(md.cxformer_iteration);
  }
}
