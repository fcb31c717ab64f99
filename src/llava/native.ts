/**
 * The LLaVA recipe across N-API (crates/node/src/llava.rs → crates/core/src/llava/, crates/core/src/lm/): the
 * tokenizer of a Hugging Face causal LM, a trainer of the two stages (align, finetune) and an exported LLaVA folder
 * for decoding. Token conventions are the LM's own: ids from its `tokenizer.json`, the image placeholder `<image>`
 * added once as a special token when the tokenizer lacks it, left padding with an attention mask, labels −100 where
 * no loss is taken.
 */
import path from 'node:path';

import { threadCount } from '../backbone.js';
import { writeFileAtomic } from '../data/fsutil.js';
import type { ProcessGroup } from '../distributed/group.js';
import type { VitConfig } from '../model/config.js';
import { call, callSync, native, type NativeBinding } from '../native/load.js';
import { type GenerateOptions, readTokenizerFile, splitEncoded } from '../rrg/native.js';

type NativeTokenizer = ReturnType<NativeBinding['NativeLmTokenizer']['fromJson']>;
type NativeTrainer = Awaited<ReturnType<NativeBinding['createLlavaTrainer']>>;
type NativeModel = Awaited<ReturnType<NativeBinding['loadLlavaModel']>>;

/** The label of positions without a loss (transformers' ignore index). */
export const IGNORE_INDEX = -100;

/** A causal LM's tokenizer (`tokenizer.json`, Hugging Face tokenizers). */
export class LmTokenizer {
  private constructor(
    private readonly handle: NativeTokenizer,
    /** The file it was read from. */
    readonly source: string,
  ) {}

  static fromJson(json: string, source: string): LmTokenizer {
    return new LmTokenizer(callSync('tokenizer.json', () => native().NativeLmTokenizer.fromJson(json, source)), source);
  }

  static async load(file: string): Promise<LmTokenizer> {
    return LmTokenizer.fromJson(await readTokenizerFile(file), file);
  }

  /** Tokens, added ones included. */
  get vocabSize(): number {
    return Number(this.handle.vocabSize);
  }

  tokenToId(token: string): number | null {
    const id = this.handle.tokenToId(token);
    return id === null || id === undefined ? null : Number(id);
  }

  idToToken(id: number): string | null {
    return this.handle.idToToken(id) ?? null;
  }

  /** Adds `content` as a special token unless the vocabulary has it; its id either way. */
  addSpecialToken(content: string): { id: number; added: boolean } {
    const r = callSync('tokenizer addSpecialToken', () => this.handle.addSpecialToken(content));
    return { id: Number(r.id), added: r.added };
  }

  /** Token ids per text; `addSpecialTokens` as transformers' (e.g. Llama's BOS). */
  encode(texts: readonly string[], addSpecialTokens: boolean): number[][] {
    return splitEncoded(callSync('tokenizer encode', () => this.handle.encodeBatch([...texts], addSpecialTokens)));
  }

  decode(ids: readonly number[], skipSpecialTokens = true): string {
    return callSync('tokenizer decode', () => this.handle.decode(ids.map(Number), skipSpecialTokens));
  }

  toJson(): string {
    return callSync('tokenizer.json', () => this.handle.toJson());
  }

  async save(file: string): Promise<void> {
    await writeFileAtomic(file, this.toJson());
  }
}

/** The LLaVA training values (crates/core/src/llava/train.rs `LlavaTrainConfig`, camelCase). */
export interface LlavaTrainConfig {
  stage: 'align' | 'finetune';
  lr?: number;
  lmLr?: number;
  weightDecay?: number;
  warmupSteps?: number;
  totalSteps?: number;
  schedule?: 'cosine' | 'constant';
  clipGrad?: number;
  precision?: 'f32' | 'bf16';
  adamwBetas?: [number, number];
  adamwEps?: number;
  /** finetune: LoRA adapters, or 'full' (every LM weight). */
  lora?: { rank?: number; alpha?: number; dropout?: number; targetModules?: string[] } | 'full';
  gradAccumSteps?: number;
}

/** What the trainer starts from: an earlier stage's LLaVA folder, or a vision tower + an LM folder. */
export type LlavaBase =
  | { llava: string }
  | {
      lm: string;
      vision: { config: VitConfig; weights?: string };
      imageTokenIndex: number;
      featureLayers?: number[];
      select?: 'default' | 'full';
      pool?: number;
      projector?: string;
      projectorSeed?: number;
    };

export interface LlavaStepRecord {
  step: number;
  loss: number;
  tokens: number;
  lr: number;
  gradNorm: number;
  skipped: boolean;
}

/** The LM's generation ids (generation_config.json, else config.json). */
export interface GenerationIds {
  bosTokenId: number | null;
  eosTokenIds: number[];
  padTokenId: number | null;
}

/** One batch: normalised pixels (N, 3, H, W), one image per row, and (B = N, T) ids, mask and labels. */
export interface LlavaBatch {
  pixels: { data: Float32Array; shape: readonly number[] };
  inputIds: Int32Array;
  attentionMask: Int32Array;
  labels: Int32Array;
  shape: [number, number];
}

/** Prompts for decoding: (B, P) ids and mask, left-padded. */
export interface LlavaPrompt {
  pixels: { data: Float32Array; shape: readonly number[] };
  inputIds: Int32Array;
  attentionMask: Int32Array;
  shape: [number, number];
}

/** Decoding options of the LM decoder: the captioner's, and the ids that end a row (default: the LM's EOS ids). */
export type LlavaGenerateOptions = GenerateOptions & { eosTokenIds?: number[] };

/** A model for decoding: the trainer's or an exported folder's. */
export interface LlavaGenerator {
  readonly generation: GenerationIds;
  generate(p: LlavaPrompt, o?: LlavaGenerateOptions): Promise<{ tokens: number[][]; scores: number[] }>;
}

/**
 * How a LLaVA folder is written: the weights' dtype, transformers' key layout, the folder whose tokenizer files are
 * copied, and `cxformerExtensions`: also a model transformers does not compute (patch pooling, another projector),
 * with cxformer's config keys (otherwise refused).
 */
export interface SaveHfOptions {
  dtype?: 'f32' | 'bf16' | 'f16';
  layout?: 'legacy' | 'nested';
  tokenizerFrom?: string;
  cxformerExtensions?: boolean;
}

/** The LLaVA config.json object (transformers' LlavaConfig) as far as cxformer reads it. */
export interface LlavaHfConfig {
  image_token_index: number;
  vision_feature_layer: number | number[];
  vision_feature_select_strategy: 'default' | 'full';
  image_seq_length: number;
  text_config: { model_type: string; vocab_size: number; hidden_size: number; [k: string]: unknown };
  /** cxformer's keys of a model transformers does not compute. */
  cxformer_patch_pool?: number;
  cxformer_projector?: string;
  vision_config: { image_size: number; patch_size: number; hidden_size: number; [k: string]: unknown };
  [k: string]: unknown;
}

export class LlavaTrainer implements LlavaGenerator {
  private constructor(private readonly handle: NativeTrainer) {}

  static async create(o: { base: LlavaBase; train: LlavaTrainConfig; seed?: number; device?: string; dtype?: 'f32' | 'bf16'; threads?: number; processGroup?: ProcessGroup | null }): Promise<LlavaTrainer> {
    const bind = native();
    callSync('setThreads', () => bind.setThreads(threadCount(o.threads)));
    const base = 'llava' in o.base ? { llava: path.resolve(o.base.llava) } : { ...o.base, lm: path.resolve(o.base.lm), vision: { ...o.base.vision, ...(o.base.vision.weights ? { weights: path.resolve(o.base.vision.weights) } : {}) } };
    const opts = { base, train: o.train, seed: o.seed ?? 0, device: o.device ?? 'cpu', ...(o.dtype ? { dtype: o.dtype } : {}) };
    return new LlavaTrainer(await call('createLlavaTrainer', () => bind.createLlavaTrainer(JSON.stringify(opts), o.processGroup ?? undefined)));
  }

  /** The resolved training values. */
  get config(): Required<Omit<LlavaTrainConfig, 'lmLr' | 'lora'>> & Pick<LlavaTrainConfig, 'lmLr' | 'lora'> {
    return JSON.parse(this.handle.config);
  }

  /** The LLaVA's config.json object. */
  get llavaConfig(): LlavaHfConfig {
    return JSON.parse(this.handle.llavaConfig) as LlavaHfConfig;
  }

  get generation(): GenerationIds {
    return JSON.parse(this.handle.generation) as GenerationIds;
  }

  get steps(): number {
    return Number(this.handle.steps);
  }

  get numParameters(): number {
    return Number(this.handle.numParameters);
  }

  get numTrainable(): number {
    return Number(this.handle.numTrainable);
  }

  get trainableNames(): string[] {
    return this.handle.trainableNames;
  }

  get baseFingerprint(): string {
    return this.handle.baseFingerprint;
  }

  /** What building or loading the base did (vocabulary grown, keys loaded). */
  get baseReport(): Record<string, unknown> {
    return JSON.parse(this.handle.baseReport) as Record<string, unknown>;
  }

  tokensPerImage(height: number, width: number): number {
    return Number(this.handle.tokensPerImage(height, width));
  }

  /** One optimizer step over the batch, split into `microBatches` equal consecutive micro-batches. */
  async step(b: LlavaBatch, microBatches = 1): Promise<LlavaStepRecord> {
    return JSON.parse(await call('llava step', () => this.handle.step(b.pixels.data, [...b.pixels.shape], b.inputIds, b.attentionMask, b.labels, b.shape, microBatches))) as LlavaStepRecord;
  }

  /** Eval-mode loss of a batch: mean over its report tokens, and their number. */
  async evaluate(b: LlavaBatch): Promise<{ loss: number; tokens: number }> {
    return JSON.parse(await call('llava evaluate', () => this.handle.evaluate(b.pixels.data, [...b.pixels.shape], b.inputIds, b.attentionMask, b.labels, b.shape)));
  }

  /** New tokens per row (EOS and after removed). */
  async generate(p: LlavaPrompt, o: LlavaGenerateOptions = {}): Promise<{ tokens: number[][]; scores: number[] }> {
    return JSON.parse(await call('llava generate', () => this.handle.generate(p.pixels.data, [...p.pixels.shape], p.inputIds, p.attentionMask, p.shape, JSON.stringify(o))));
  }

  async saveState(file: string, metadata: Record<string, string> = {}): Promise<void> {
    await call('llava saveState', () => this.handle.saveState(path.resolve(file), metadata));
  }

  async loadState(file: string, force = false): Promise<Record<string, string>> {
    return call('llava loadState', () => this.handle.loadState(path.resolve(file), force));
  }

  /** A transformers LlavaForConditionalGeneration folder (adapters merged into the copy written). */
  async saveHf(dir: string, o: SaveHfOptions = {}): Promise<void> {
    const opts = { ...o, ...(o.tokenizerFrom ? { tokenizerFrom: path.resolve(o.tokenizerFrom) } : {}) };
    await call('llava saveHf', () => this.handle.saveHf(path.resolve(dir), JSON.stringify(opts)));
  }

  /** The LoRA adapters as a PEFT folder (adapter_config.json + adapter_model.safetensors). */
  async savePeft(dir: string, baseModel?: string): Promise<void> {
    await call('llava savePeft', () => this.handle.savePeft(path.resolve(dir), baseModel));
  }
}

/** An exported LLaVA folder (transformers layout), for decoding. */
export class LlavaModel implements LlavaGenerator {
  private constructor(private readonly handle: NativeModel) {}

  static async load(dir: string, o: { device?: string; threads?: number; dtype?: 'f32' | 'bf16' } = {}): Promise<LlavaModel> {
    const bind = native();
    callSync('setThreads', () => bind.setThreads(threadCount(o.threads)));
    const opts = { device: o.device ?? 'cpu', ...(o.dtype ? { dtype: o.dtype } : {}) };
    return new LlavaModel(await call('loadLlavaModel', () => bind.loadLlavaModel(path.resolve(dir), JSON.stringify(opts))));
  }

  get config(): LlavaHfConfig {
    return JSON.parse(this.handle.config) as LlavaHfConfig;
  }

  get generation(): GenerationIds {
    return JSON.parse(this.handle.generation) as GenerationIds;
  }

  tokensPerImage(height: number, width: number): number {
    return Number(this.handle.tokensPerImage(height, width));
  }

  /** Writes the model again as a transformers folder (another dtype or key layout). */
  async saveHf(dir: string, o: SaveHfOptions = {}): Promise<void> {
    const opts = { ...o, ...(o.tokenizerFrom ? { tokenizerFrom: path.resolve(o.tokenizerFrom) } : {}) };
    await call('llava saveHf', () => this.handle.saveHf(path.resolve(dir), JSON.stringify(opts)));
  }

  async generate(p: LlavaPrompt, o: LlavaGenerateOptions = {}): Promise<{ tokens: number[][]; scores: number[] }> {
    return JSON.parse(await call('llava generate', () => this.handle.generate(p.pixels.data, [...p.pixels.shape], p.inputIds, p.attentionMask, p.shape, JSON.stringify(o))));
  }

  /**
   * `generate` that also calls `onToken(row, token)` for each token as soon as the decoder chooses it (beam search
   * hands its tokens over at the end; EOS included); `false` cancels (the promise rejects with CXF_CANCELLED).
   */
  async generateStream(p: LlavaPrompt, o: LlavaGenerateOptions, onToken: (row: number, token: number) => boolean | void): Promise<{ tokens: number[][]; scores: number[] }> {
    return JSON.parse(await call('llava generate', () => this.handle.generateStream(p.pixels.data, [...p.pixels.shape], p.inputIds, p.attentionMask, p.shape, JSON.stringify(o), onToken)));
  }
}
