/**
 * The segmentation model across N-API (crates/node/src/seg.rs → crates/core/src/seg/): a backbone with a
 * segmentation head, its AdamW state, training steps, prediction and safetensors state.
 */
import path from 'node:path';
import { threadCount } from '../backbone.js';
import type { ProcessGroup } from '../distributed/group.js';
import type { VitConfig } from '../model/config.js';
import { call, callSync, native, type NativeBinding } from '../native/load.js';

type NativeSegmenter = Awaited<ReturnType<NativeBinding['createSegmenter']>>;

/** Head and optimisation settings (crates/core/src/seg/config.rs `SegConfig`, camelCase). */
export interface SegConfig {
  /** 'linear' (CXformer: 1×1 conv on the last block + bilinear upsampling) or 'progressive'. @default 'linear' */
  head?: 'linear' | 'progressive';
  /** Classes including background. @default 4 */
  numClasses?: number;
  /** progressive: blocks used (negative from the end); [] = the last min(4, depth). @default [] */
  layers?: number[];
  /** progressive: channels after the projection. @default 256 */
  hidden?: number;
  /** progressive: ×2 upsampling stages. @default 2 */
  stages?: number;
  /** Train the backbone too. @default false */
  unfreeze?: boolean;
  /** Head lr (docs/recipe.md §5.2: 5e-3). @default 5e-3 */
  lr?: number;
  /** Backbone lr with `unfreeze`. @default 1e-5 */
  backboneLr?: number;
  /** AdamW weight decay on weights. @default 1e-4 */
  weightDecay?: number;
  /** Gradient-norm clipping (0 = off). @default 1 */
  clipGrad?: number;
  /** 'f32' or 'bf16' autocast. @default 'f32' */
  precision?: 'f32' | 'bf16';
  /** Head initialisation seed. @default 0 */
  seed?: number;
}

export interface SegStepRecord {
  step: number;
  lr: number;
  loss: number;
  ce: number;
  softDice: number;
  gradNorm: number;
}

export interface SegmenterOptions {
  seg: SegConfig;
  backbone: VitConfig;
  /** Backbone weights (a safetensors file); absent = random initialisation with `seed`. */
  weights?: string;
  seed?: number;
  device?: string;
  threads?: number;
  /**
   * Data parallel (docs/distributed.md): the process group of the run. Creating the segmenter is then collective
   * (rank 0's initial state is broadcast) and so is every {@link Segmenter.step}.
   */
  processGroup?: ProcessGroup | null;
}

export class Segmenter {
  private constructor(private readonly handle: NativeSegmenter) {}

  static async create(o: SegmenterOptions): Promise<Segmenter> {
    const bind = native();
    callSync('setThreads', () => bind.setThreads(threadCount(o.threads)));
    const h = await call('createSegmenter', () =>
      bind.createSegmenter(
        JSON.stringify({ seg: o.seg, backbone: o.backbone, ...(o.weights ? { weights: o.weights } : {}), seed: o.seed ?? 0, device: o.device ?? 'cpu' }),
        o.processGroup ?? undefined,
      ),
    );
    return new Segmenter(h);
  }

  /** The configuration in use, defaults filled in. */
  get config(): Required<SegConfig> {
    return JSON.parse(this.handle.config) as Required<SegConfig>;
  }

  /** Ranks of the data-parallel group (1 without one). */
  get worldSize(): number {
    return Number(this.handle.worldSize);
  }

  /** Optimizer steps taken. */
  get steps(): number {
    return Number(this.handle.steps);
  }

  /**
   * One training step: `pixels` NCHW normalised [B, 3, H, W], `labels` B·H·W class indices, head lr `lr`. Data
   * parallel: collective, this rank's share of the global batch (B may be 0 on a rank); the record is the global
   * batch's.
   */
  async step(pixels: Float32Array, shape: [number, number, number, number], labels: Uint8Array, lr: number): Promise<SegStepRecord> {
    return JSON.parse(await call('segmentation step', () => this.handle.step(pixels, shape, labels, lr))) as SegStepRecord;
  }

  /** Argmax class maps (B·H·W bytes) and optionally the logits (B, C, H, W). */
  async predict(pixels: Float32Array, shape: [number, number, number, number], withLogits = false): Promise<{ labels: Uint8Array; logits?: Float32Array }> {
    const p = await call('segmentation predict', () => this.handle.predict(pixels, shape, withLogits));
    return { labels: p.labels, ...(p.logits ? { logits: p.logits } : {}) };
  }

  /**
   * Writes the state atomically: with the optimizer, the training state to resume (crates/core/src/train/state.rs:
   * `cxformer_state: seg`, `cxformer_train_config`, `cxformer_step`); without, the model alone (a best/final model,
   * `format: cxformer-seg`). `metadata` passes through.
   */
  async save(file: string, withOptimizer: boolean, metadata: Record<string, string> = {}): Promise<void> {
    await call('segmentation save', () => this.handle.save(path.resolve(file), withOptimizer, metadata));
  }

  /**
   * Loads a file written by {@link save} (strict; also one written before the one training-state format); returns
   * its metadata. A training state is loaded collectively in a data-parallel run (every rank reads it, then holds rank
   * 0's state; one of another segmentation configuration only with `force`); a model saved without its optimizer,
   * locally.
   */
  async load(file: string, force = false): Promise<Record<string, string>> {
    return call('segmentation load', () => this.handle.load(path.resolve(file), force));
  }

  /** Collective: every rank takes rank 0's state ({@link load} of a training state already does); no-op alone. */
  async syncFromRank0(): Promise<void> {
    await call('segmentation sync from rank 0', () => this.handle.syncFromRank0());
  }
}
