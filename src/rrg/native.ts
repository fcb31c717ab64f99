/**
 * The report captioner across N-API (crates/node/src/rrg.rs → crates/core/src/rrg/, crates/core/src/text/): a
 * tokenizer (Hugging Face tokenizer.json), a trainer on visual-memory features, and an exported model for decoding.
 * Token conventions: a report is `[BOS] w₁ … wₙ [EOS]`, right-padded with `[PAD]` = 0.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import { threadCount } from '../backbone.js';
import type { ProcessGroup } from '../distributed/group.js';
import type { VitConfig } from '../model/config.js';
import { writeFileAtomic } from '../data/fsutil.js';
import { call, callSync, CxformerError, native, type NativeBinding } from '../native/load.js';

type NativeTokenizer = ReturnType<NativeBinding['NativeReportTokenizer']['fromJson']>;
type NativeTrainer = Awaited<ReturnType<NativeBinding['createReportTrainer']>>;
type NativeModel = Awaited<ReturnType<NativeBinding['loadReportModel']>>;

/** How a tokenizer is made: trained on the training reports, or read from a file. */
export type TokenizerSpec = { kind: 'word'; minCount?: number; lowercase?: boolean } | { kind: 'bpe'; vocabSize?: number } | { kind: 'file'; file: string };

/**
 * Parses `word[:MIN_COUNT]` (lowercased, as R2Gen), `word-cased[:MIN_COUNT]` (case kept), `bpe[:VOCAB]` or a
 * tokenizer.json path.
 */
export function parseTokenizerSpec(s: string): TokenizerSpec {
  const m = /^(word|word-cased|bpe)(?::(\d+))?$/.exec(s);
  if (!m) return { kind: 'file', file: s };
  if (m[1] === 'bpe') return m[2] ? { kind: 'bpe', vocabSize: Number(m[2]) } : { kind: 'bpe' };
  return { kind: 'word', ...(m[2] ? { minCount: Number(m[2]) } : {}), lowercase: m[1] === 'word' };
}

/** A `tokenizer.json`'s text; an unreadable file is an input error naming it. */
export async function readTokenizerFile(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    throw new CxformerError('CXF_INPUT', `${file}: cannot read the tokenizer (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

/** The ids of several texts, back to back with each text's length (a native `encodeBatch`), one list per text. */
export function splitEncoded(e: { ids: Int32Array; lengths: number[] }): number[][] {
  const out: number[][] = [];
  let at = 0;
  for (const n of e.lengths) {
    out.push(Array.from(e.ids.subarray(at, at + n)));
    at += n;
  }
  return out;
}

export class ReportTokenizer {
  private constructor(
    private readonly handle: NativeTokenizer,
    /** Where it came from (a file, or "trained"). */
    readonly source: string,
  ) {}

  static fromJson(json: string, source: string): ReportTokenizer {
    return new ReportTokenizer(callSync('tokenizer.json', () => native().NativeReportTokenizer.fromJson(json, source)), source);
  }

  static async load(file: string): Promise<ReportTokenizer> {
    return ReportTokenizer.fromJson(await readTokenizerFile(file), file);
  }

  /** Trains on `texts` (word level: R2Gen-like, lowercased, punctuation split, rare words → [UNK]; or byte-level BPE). */
  static async train(texts: readonly string[], spec: Exclude<TokenizerSpec, { kind: 'file' }>): Promise<ReportTokenizer> {
    const json = await call('trainReportTokenizer', () => native().trainReportTokenizer([...texts], JSON.stringify(spec)));
    return ReportTokenizer.fromJson(json, `trained (${spec.kind})`);
  }

  static async make(spec: TokenizerSpec, texts: readonly string[]): Promise<ReportTokenizer> {
    return spec.kind === 'file' ? ReportTokenizer.load(spec.file) : ReportTokenizer.train(texts, spec);
  }

  get vocabSize(): number {
    return Number(this.handle.vocabSize);
  }

  get specials(): { pad: number; bos: number; eos: number; unk: number } {
    return JSON.parse(this.handle.specials) as { pad: number; bos: number; eos: number; unk: number };
  }

  /** Token ids per text (with `[BOS] … [EOS]` by default). */
  encode(texts: readonly string[], withSpecial = true): number[][] {
    return splitEncoded(callSync('tokenizer encode', () => this.handle.encodeBatch([...texts], withSpecial)));
  }

  decode(ids: readonly number[]): string {
    return callSync('tokenizer decode', () => this.handle.decode(ids.map(Number)));
  }

  toJson(): string {
    return callSync('tokenizer.json', () => this.handle.toJson());
  }

  async save(file: string): Promise<void> {
    await writeFileAtomic(file, this.toJson());
  }
}

/** The captioner's architecture (crates/core/src/rrg/config.rs `RrgConfig`, camelCase). */
export interface RrgConfig {
  vocabSize: number;
  dModel: number;
  numLayers: number;
  numHeads: number;
  ffnDim: number;
  maxPositions: number;
  dVit: number;
  dropout?: number;
  labelSmoothing?: number;
  tieEmbeddings?: boolean;
  layerNormEps?: number;
  padId?: number;
  bosId?: number;
  eosId?: number;
}

/** Model + training values (`RrgTrainConfig`). */
export interface RrgTrainConfig {
  model: RrgConfig;
  lr?: number;
  weightDecay?: number;
  warmupSteps?: number;
  totalSteps?: number;
  schedule?: 'cosine' | 'constant';
  clipGrad?: number;
  precision?: 'f32' | 'bf16';
  /** The encoder trained end to end (crates/core/src/rrg/config.rs `EncoderTrainConfig`); absent: frozen. */
  encoder?: EncoderTrainConfig;
}

/** The ViT trained with the captioner: its config (snake_case VitConfig), memory block and pooling, optimizer values. */
export interface EncoderTrainConfig {
  model: VitConfig;
  block?: number;
  pool?: number;
  backboneLr?: number;
  layerwiseDecay?: number;
  patchEmbedLrMult?: number;
}

export interface RrgStepRecord {
  step: number;
  loss: number;
  tokens: number;
  lr: number;
  gradNorm: number;
  skipped: boolean;
}

/** Decoding settings. */
export interface GenerateOptions {
  strategy?: 'greedy' | 'beam' | 'sample';
  maxNewTokens?: number;
  numBeams?: number;
  lengthPenalty?: number;
  earlyStopping?: 'heuristic' | 'never' | 'always';
  noRepeatNgramSize?: number;
  temperature?: number;
  topP?: number;
  /** sample: keep the k most probable tokens before the nucleus (0 = off). */
  topK?: number;
  seed?: number;
}

/** Right-padded token matrix (B, T) of encoded reports, truncated to `maxLen` tokens (the last kept is EOS). */
export function padTokens(rows: readonly (readonly number[])[], maxLen: number, eos: number): { data: Int32Array; shape: [number, number] } {
  const T = Math.max(1, Math.min(maxLen, Math.max(...rows.map((r) => r.length))));
  const data = new Int32Array(rows.length * T);
  rows.forEach((r, i) => {
    const n = Math.min(r.length, T);
    for (let t = 0; t < n; t++) data[i * T + t] = r[t] as number;
    if (r.length > T) data[i * T + T - 1] = eos;
  });
  return { data, shape: [rows.length, T] };
}

type Features = { data: Float32Array; shape: [number, number, number] };
type Pixels = { data: Float32Array; shape: readonly number[] };

export class ReportTrainer {
  private constructor(private readonly handle: NativeTrainer) {}

  /** `encoderWeights`: the initial weights of the encoder of `config.encoder` (a safetensors file; absent: DINOv2's init). */
  static async create(o: { config: RrgTrainConfig; seed?: number; device?: string; threads?: number; processGroup?: ProcessGroup | null; encoderWeights?: string | null }): Promise<ReportTrainer> {
    const bind = native();
    callSync('setThreads', () => bind.setThreads(threadCount(o.threads)));
    const opts = { config: o.config, seed: o.seed ?? 0, device: o.device ?? 'cpu', ...(o.encoderWeights ? { encoderWeights: path.resolve(o.encoderWeights) } : {}) };
    const h = await call('createReportTrainer', () => bind.createReportTrainer(JSON.stringify(opts), o.processGroup ?? undefined));
    return new ReportTrainer(h);
  }

  get config(): Required<RrgTrainConfig> & { model: Required<RrgConfig> } {
    return JSON.parse(this.handle.config);
  }

  get steps(): number {
    return Number(this.handle.steps);
  }

  get numParameters(): number {
    return Number(this.handle.numParameters);
  }

  async step(f: Features, tokens: { data: Int32Array; shape: [number, number] }): Promise<RrgStepRecord> {
    return JSON.parse(await call('report step', () => this.handle.step(f.data, f.shape, tokens.data, tokens.shape))) as RrgStepRecord;
  }

  async evaluate(f: Features, tokens: { data: Int32Array; shape: [number, number] }): Promise<{ loss: number; tokens: number }> {
    return JSON.parse(await call('report evaluate', () => this.handle.evaluate(f.data, f.shape, tokens.data, tokens.shape)));
  }

  /** A step of a trainer with an encoder: normalised pixels (B, 3, H, W) instead of memory features. */
  async stepPixels(x: Pixels, tokens: { data: Int32Array; shape: [number, number] }): Promise<RrgStepRecord> {
    return JSON.parse(await call('report step', () => this.handle.stepPixels(x.data, [...x.shape], tokens.data, tokens.shape))) as RrgStepRecord;
  }

  async evaluatePixels(x: Pixels, tokens: { data: Int32Array; shape: [number, number] }): Promise<{ loss: number; tokens: number }> {
    return JSON.parse(await call('report evaluate', () => this.handle.evaluatePixels(x.data, [...x.shape], tokens.data, tokens.shape)));
  }

  /** The memory of normalised pixels under the encoder being trained (eval mode). */
  async memory(x: Pixels): Promise<Features> {
    const t = await call('report memory', () => this.handle.memory(x.data, [...x.shape]));
    return { data: t.data, shape: t.shape.map(Number) as [number, number, number] };
  }

  /** Writes the encoder being trained (safetensors, HF names, float32). */
  async exportEncoder(file: string): Promise<void> {
    await call('report exportEncoder', () => this.handle.exportEncoder(path.resolve(file)));
  }

  async generate(f: Features, o: GenerateOptions = {}): Promise<{ tokens: number[][]; scores: number[] }> {
    return JSON.parse(await call('report generate', () => this.handle.generate(f.data, f.shape, JSON.stringify(o))));
  }

  async saveState(file: string, metadata: Record<string, string> = {}): Promise<void> {
    await call('report saveState', () => this.handle.saveState(path.resolve(file), metadata));
  }

  async loadState(file: string, force = false): Promise<Record<string, string>> {
    return call('report loadState', () => this.handle.loadState(path.resolve(file), force));
  }

  async export(dir: string, metadata: Record<string, string> = {}): Promise<void> {
    await call('report export', () => this.handle.export(path.resolve(dir), metadata));
  }
}

/** An exported captioner (model.safetensors + config.json), for decoding. */
export class ReportModel {
  private constructor(private readonly handle: NativeModel) {}

  static async load(dir: string, o: { device?: string; threads?: number } = {}): Promise<ReportModel> {
    const bind = native();
    callSync('setThreads', () => bind.setThreads(threadCount(o.threads)));
    return new ReportModel(await call('loadReportModel', () => bind.loadReportModel(path.resolve(dir), o.device ?? 'cpu')));
  }

  get config(): Required<RrgConfig> {
    return JSON.parse(this.handle.config) as Required<RrgConfig>;
  }

  async generate(f: Features, o: GenerateOptions = {}): Promise<{ tokens: number[][]; scores: number[] }> {
    return JSON.parse(await call('report generate', () => this.handle.generate(f.data, f.shape, JSON.stringify(o))));
  }

  /**
   * `generate` that also calls `onToken(row, token)` for each token as soon as the decoder chooses it (greedy and
   * sampling; beam search hands its tokens over at the end; EOS included). Calls arrive in order but may still
   * arrive after the promise settles; the result holds every token. `onToken` returning `false` cancels (a few
   * tokens later): the promise rejects with code CXF_CANCELLED.
   */
  async generateStream(f: Features, o: GenerateOptions, onToken: (row: number, token: number) => boolean | void): Promise<{ tokens: number[][]; scores: number[] }> {
    return JSON.parse(await call('report generate', () => this.handle.generateStream(f.data, f.shape, JSON.stringify(o), onToken)));
  }
}
