/**
 * The library API for feature extraction: load a backbone (HF / DINOv2 / cxformer weights, or a
 * random-initialised preset), run it on images or on NCHW float tensors, export it as an HF folder.
 *
 * @example
 * const model = await loadBackbone({ weights: 'models/cxformer-small' });
 * const out = await model.embedImages(['a.png', 'b.jpg']);
 * out.cls.shape; // [2, 384]
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { defaultPreprocess, resolvePreprocessOptions, type PreprocessOptions } from './image/options.js';
import { preprocessBatch } from './image/preprocess.js';
import { toHfConfig, type VitConfig } from './model/config.js';
import { writeHfConfig } from './model/hf-json.js';
import { resolveModel, type ResolvedModel, type ResolveOptions } from './model/weights.js';
import { call, callSync, CxformerError, native, type NativeBackbone } from './native/load.js';

/** A float32 tensor: row-major `data` with `shape`. */
export interface Tensor {
  shape: number[];
  data: Float32Array;
}

export interface LoadBackboneOptions extends ResolveOptions {
  /** "cpu" (default), "cuda" or "cuda:N". */
  device?: string;
  /** LibTorch intra-op threads (default: all cores, or CXFORMER_THREADS). */
  threads?: number;
  /** Seed of the random initialisation when no weights are given. @default 0 */
  seed?: number;
  /** An already resolved model (from {@link resolveModel}); skips resolving again. */
  resolved?: ResolvedModel;
  /** Load weights holding NaN / Inf values (refused by default, naming the tensors). @default false */
  allowNonFinite?: boolean;
}

export interface EmbedOptions {
  /** Block indices (negative from the end) whose outputs are returned as `layers`. */
  layers?: number[];
  /** Apply the final norm to `layers` (DINOv2 get_intermediate_layers(norm=True)). @default false */
  normLayers?: boolean;
  /** "f32" (default) or "bf16" (autocast). */
  precision?: 'f32' | 'bf16';
  /** (B, N) iBOT-style masks, 1 = replace the patch embedding by mask_token. */
  masks?: { data: Uint8Array; shape: [number, number] };
  /** Cancels work that has not started yet. */
  signal?: AbortSignal;
}

/** Outputs of one forward pass (HF / DINOv2 semantics, docs/recipe.md §2.5). */
export interface EmbedResult {
  /** (B, D) normed CLS token (HF pooler_output). */
  cls: Tensor;
  /** (B, R, D) normed register tokens. */
  registers: Tensor;
  /** (B, N, D) normed patch tokens, row-major over the patch grid. */
  patches: Tensor;
  /** (B, T, D) final norm over [CLS, registers, patches] (HF last_hidden_state). */
  lastHiddenState: Tensor;
  /** (B, T, D) sequence before the final norm. */
  prenorm: Tensor;
  /** Requested block outputs, (B, T, D) each, keyed by the index as requested. */
  layers: Map<number, Tensor>;
  /** Patch grid (H/p, W/p). */
  grid: [number, number];
}

/** Threads for LibTorch: explicit value, else CXFORMER_THREADS, else all cores (0). */
export function threadCount(explicit?: number): number {
  if (explicit !== undefined) return explicit;
  const env = process.env.CXFORMER_THREADS;
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 0) throw new CxformerError('CXF_CONFIG', `CXFORMER_THREADS: expected a non-negative integer, found '${env}'`);
    return n;
  }
  return 0;
}

export class Backbone {
  private constructor(
    private readonly handle: NativeBackbone,
    /** How the model was resolved (architecture source, weights files, layout). */
    readonly resolved: ResolvedModel,
    /** The architecture. */
    readonly config: VitConfig,
    /** Load report from the core: layout, ignored non-backbone keys, source dtypes. */
    readonly loadReport: Record<string, unknown>,
  ) {}

  /** Resolves the architecture (see {@link resolveModel}), loads LibTorch and builds the model. */
  static async load(opts: LoadBackboneOptions): Promise<Backbone> {
    const resolved = opts.resolved ?? (await resolveModel(opts));
    const bind = native();
    callSync('setThreads', () => bind.setThreads(threadCount(opts.threads)));
    const handle = await call('loadBackbone', () =>
      bind.loadBackbone(
        JSON.stringify({
          config: resolved.config,
          weights: resolved.weights?.file,
          seed: opts.seed ?? 0,
          device: opts.device ?? 'cpu',
          allowNonFinite: opts.allowNonFinite ?? false,
        }),
      ),
    );
    return new Backbone(handle, resolved, resolved.config, JSON.parse(handle.loadReport) as Record<string, unknown>);
  }

  get device(): string {
    return this.handle.device;
  }

  /** The preprocessing that fits these weights: their preprocessor_config.json, else the CXformer default. */
  get preprocess(): PreprocessOptions {
    return this.resolved.preprocess ?? { ...defaultPreprocess };
  }

  /**
   * Runs the backbone on a normalised NCHW float32 batch.
   * @param shape [B, C, H, W]; H and W multiples of the patch size.
   */
  async embed(pixelValues: Float32Array, shape: readonly number[], opts: EmbedOptions = {}): Promise<EmbedResult> {
    const layers = opts.layers ?? [];
    const outs = await call('embed', () =>
      this.handle.embed(
        pixelValues,
        [...shape],
        JSON.stringify({ intermediateLayers: layers, normIntermediates: opts.normLayers ?? false, precision: opts.precision ?? 'f32' }),
        opts.masks?.data,
        opts.masks ? [...opts.masks.shape] : undefined,
        opts.signal,
      ),
    );
    const byName = new Map(outs.map((o) => [o.name, { shape: o.shape, data: o.data } as Tensor]));
    const get = (n: string): Tensor => byName.get(n) as Tensor;
    const p = this.config.patch_size;
    return {
      cls: get('cls'),
      registers: get('registers'),
      patches: get('patches'),
      lastHiddenState: get('last_hidden_state'),
      prenorm: get('prenorm'),
      layers: new Map(layers.map((l) => [l, get(`layer_${l}`)])),
      grid: [Math.floor((shape[2] ?? 0) / p), Math.floor((shape[3] ?? 0) / p)],
    };
  }

  /** Decodes and preprocesses images (sharp; docs/recipe.md §2.8), then runs {@link embed}. */
  async embedImages(paths: readonly string[], opts: EmbedOptions & { preprocess?: Partial<PreprocessOptions> } = {}): Promise<EmbedResult> {
    const pre = resolvePreprocessOptions({ ...this.preprocess, ...opts.preprocess });
    const batch = await preprocessBatch(paths, pre);
    return this.embed(batch.data, batch.shape, opts);
  }

  /** Writes the weights as one safetensors file (atomic). */
  async save(file: string, opts: { layout?: 'hf' | 'original'; dtype?: 'f32' | 'bf16' | 'f16'; metadata?: Record<string, string> } = {}): Promise<void> {
    await call('save', () => this.handle.save(path.resolve(file), opts.layout ?? 'hf', opts.dtype ?? 'f32', opts.metadata));
  }

  /**
   * Exports a Hugging Face folder — config.json (Dinov2WithRegistersModel or Dinov2Model),
   * model.safetensors (HF names) and preprocessor_config.json — that transformers' AutoModel and
   * cxformer both load. Each file is written atomically.
   */
  async exportHf(dir: string, opts: { dtype?: 'f32' | 'bf16' | 'f16'; preprocess?: PreprocessOptions } = {}): Promise<void> {
    await mkdir(dir, { recursive: true });
    await this.save(path.join(dir, 'model.safetensors'), { layout: 'hf', dtype: opts.dtype ?? 'f32' });
    await writeHfConfig(path.join(dir, 'config.json'), toHfConfig(this.config));
    await writeJsonAtomic(path.join(dir, 'preprocessor_config.json'), toHfPreprocessorConfig(opts.preprocess ?? this.preprocess));
  }
}

/** `import { loadBackbone } from 'cxformer'`: shorthand for {@link Backbone.load}. */
export function loadBackbone(opts: LoadBackboneOptions): Promise<Backbone> {
  return Backbone.load(opts);
}

/** Writes JSON through a temp file + rename in the same folder. */
export async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  await writeFile(tmp, `${JSON.stringify(value, null, 2)}\n`);
  await rename(tmp, file);
}

/**
 * HF BitImageProcessor-style preprocessor_config.json for `p`, plus cxformer's own fields
 * (`do_grayscale`, `cxformer_equalize`), which transformers ignores and cxformer reads back.
 */
export function toHfPreprocessorConfig(p: PreprocessOptions): Record<string, unknown> {
  const size = p.resize === null ? undefined : typeof p.resize === 'number' ? { shortest_edge: p.resize } : { height: p.resize[0], width: p.resize[1] };
  const crop = p.crop === null ? undefined : typeof p.crop === 'number' ? { height: p.crop, width: p.crop } : { height: p.crop[0], width: p.crop[1] };
  return {
    image_processor_type: 'BitImageProcessor',
    do_resize: size !== undefined,
    ...(size ? { size } : {}),
    resample: p.resample === 'nearest' ? 0 : 3,
    do_center_crop: crop !== undefined,
    ...(crop ? { crop_size: crop } : {}),
    do_rescale: true,
    rescale_factor: p.rescale,
    do_normalize: true,
    image_mean: p.mean,
    image_std: p.std,
    do_convert_rgb: true,
    do_grayscale: p.grayscale,
    cxformer_equalize: p.equalize,
    cxformer_crop_rounding: p.cropRounding,
  };
}
