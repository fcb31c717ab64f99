/**
 * Linear-probe head training (docs/recipe.md §5.1, §3.11 last sentence, §7.7) on precomputed, frozen-backbone features.
 *
 * The conventions live in the Rust core (crates/core/src/classify/probe.rs):
 * - features are used exactly as given: nothing is standardised (do it yourself with training-split statistics);
 * - `mask` nonzero = the entry is supervised, 0 = masked out (its target may be anything, even NaN);
 * - loss: BCE-with-logits averaged over the supervised entries (`multilabel`, `binary` with C = 1), or softmax
 *   cross-entropy for `multiclass` with the class index in column 0 of `targets` (C = its width, `mask[:, 0]`
 *   selects rows); a batch with nothing supervised takes no optimizer step;
 * - linear head init N(0, 0.01²) / 0; MLP hidden layers (GELU) use PyTorch's nn.Linear default init;
 * - AdamW (no decay on biases), per-step lr: DINOv2 warm-up linspace(0, lr, W) then cosine to 0 or constant;
 * - deterministic for a seed (initial weights and epoch permutations from a seeded SplitMix64).
 * Defaults follow the shipped recipe of docs/recipe.md §5.1: lr 5e-5, wd 0, batch 10, constant lr, clip 1.0, seed 7479,
 * 100 epochs.
 */
import { call, callSync, CxformerError, native, type NamedTensor } from '../native/load.js';

/** A row-major float32 matrix. */
export interface Matrix {
  data: Float32Array;
  /** [rows, columns] */
  shape: number[];
}

/** Head-training settings (camelCase mirror of the core's ProbeConfig; omitted = default). */
export interface ProbeConfig {
  /** Hidden layer widths: [] = linear head, else an MLP with GELU. @default [] */
  hidden?: number[];
  /** Peak learning rate. @default 5e-5 */
  lr?: number;
  /** AdamW weight decay (weights only, never biases). @default 0 */
  weightDecay?: number;
  /** @default 100 */
  epochs?: number;
  /** @default 10 */
  batchSize?: number;
  /** Linear warm-up from 0, in epochs. @default 0 */
  warmupEpochs?: number;
  /** Per-step schedule after the warm-up. @default 'constant' */
  schedule?: 'cosine' | 'constant';
  /** Initialisation and shuffling seed. @default 7479 */
  seed?: number;
  /** BCE positive weight per class (length C); multilabel/binary only. @default null */
  posWeight?: number[] | null;
  /** @default 'multilabel' */
  task?: 'multilabel' | 'binary' | 'multiclass';
  /** Max total gradient norm, 0 = off. @default 1.0 */
  clipGrad?: number;
  /** With validation data: keep the epoch with the best validation macro AUROC or loss. @default 'last' */
  selectBest?: 'last' | 'valAuroc' | 'valLoss';
  /** Stop after this many epochs without a better validation score (0 = never). @default 0 */
  patience?: number;
}

/** The config a head was actually trained with (every default filled in). */
export type ResolvedProbeConfig = Required<Omit<ProbeConfig, 'posWeight'>> & { posWeight: number[] | null };

/** One split: features (N, F), targets (N, C) and an optional mask (N·C bytes, default all supervised). */
export interface ProbeSplit {
  features: Matrix;
  targets: Matrix;
  /** Row-major (N, C), nonzero = supervised. @default all ones */
  mask?: Uint8Array;
}

export interface FitProbeOptions extends ProbeSplit {
  /** Validation split: its loss is reported after each epoch. */
  val?: ProbeSplit;
  config?: ProbeConfig;
  /** "cpu" (default), "cuda" or "cuda:N". */
  device?: string;
  /** Aborting stops after the current epoch; the promise rejects with code CXF_CANCELLED. */
  signal?: AbortSignal;
}

/** One epoch of training. */
export interface ProbeEpoch {
  /** 0-based. */
  epoch: number;
  /** Optimizer steps scheduled so far (batches without a supervised entry included). */
  steps: number;
  /** Learning rate of the epoch's last step. */
  lr: number;
  /** Loss over the epoch's supervised entries (each with the weights of its step). */
  trainLoss: number;
  /** Supervised entries (rows for multiclass) seen. */
  trainEntries: number;
  /** Batches without any supervised entry (no update taken). */
  skippedBatches: number;
  /** Validation loss after the epoch; null without validation data or supervised validation entries. */
  valLoss: number | null;
  /** Validation macro AUROC after the epoch (with selectBest 'valAuroc'). */
  valAuroc?: number | null;
}

/** A trained head: `head.<i>.weight` (out, in) and `head.<i>.bias` (out) per Linear layer, and its config. */
export interface ProbeHead {
  config: ResolvedProbeConfig;
  tensors: NamedTensor[];
}

export interface FitProbeResult {
  head: ProbeHead;
  history: ProbeEpoch[];
  /** The epoch whose weights `head` holds. */
  bestEpoch: number | null;
}

function checkMatrix(m: Matrix, what: string): void {
  if (!(m.data instanceof Float32Array)) throw new CxformerError('CXF_ARG', `${what}.data must be a Float32Array`);
  if (!Array.isArray(m.shape) || m.shape.length !== 2 || !m.shape.every((s) => Number.isSafeInteger(s) && s >= 0)) {
    throw new CxformerError('CXF_ARG', `${what}.shape must be [rows, columns] with integers ≥ 0, got ${JSON.stringify(m.shape)}`);
  }
}

function splitArgs(s: ProbeSplit, prefix: string): [Float32Array, number[], Float32Array, Uint8Array, number[]] {
  checkMatrix(s.features, `${prefix}features`);
  checkMatrix(s.targets, `${prefix}targets`);
  const n = s.targets.shape.reduce((a, b) => a * b, 1);
  const mask = s.mask ?? new Uint8Array(n).fill(1);
  if (!(mask instanceof Uint8Array)) throw new CxformerError('CXF_ARG', `${prefix}mask must be a Uint8Array`);
  return [s.features.data, s.features.shape, s.targets.data, mask, s.targets.shape];
}

/**
 * Trains a linear (or MLP) probe head on precomputed features, off the JS thread.
 * Errors: CXF_ARG (array lengths vs shapes, named), CXF_SHAPE (inconsistent sizes), CXF_CONFIG (settings),
 * CXF_NONFINITE (a training loss became NaN/∞), CXF_CANCELLED.
 */
export async function fitLinearProbe(opts: FitProbeOptions): Promise<FitProbeResult> {
  const train = splitArgs(opts, '');
  const val = opts.val ? splitArgs(opts.val, 'val.') : undefined;
  const options = JSON.stringify({ config: opts.config ?? {}, device: opts.device ?? 'cpu' });
  const cancelled = (cause?: unknown): CxformerError => new CxformerError('CXF_CANCELLED', 'fitHead: cancelled', { cause });
  if (opts.signal?.aborted) throw cancelled();
  let out;
  try {
    out = await call('fitHead', () =>
      native().fitHead(...train, options, val?.[0], val?.[1], val?.[2], val?.[3], val?.[4], opts.signal),
    );
  } catch (e) {
    // Aborted before the work started, napi rejects with its own AbortError: report it as a cancellation too.
    if (opts.signal?.aborted && !(e instanceof CxformerError && e.code === 'CXF_CANCELLED')) throw cancelled(e);
    throw e;
  }
  return {
    head: { config: JSON.parse(out.config) as ResolvedProbeConfig, tensors: out.head },
    history: JSON.parse(out.history) as ProbeEpoch[],
    bestEpoch: out.bestEpoch ?? null,
  };
}

/**
 * Class probabilities (N, C) for features (N, F): sigmoid (multilabel, binary) or softmax (multiclass).
 * Synchronous (a head is a few matrix products).
 */
export function predictProbe(head: ProbeHead, features: Matrix, opts: { device?: string } = {}): Matrix {
  checkMatrix(features, 'features');
  const out = callSync('predictHead', () =>
    native().predictHead(head.tensors, JSON.stringify(head.config), features.data, features.shape, opts.device),
  );
  return { data: out.data, shape: out.shape };
}
