/**
 * `finetune --task report --decoder llm`: the LLaVA recipe (docs/report-generation.md, "LLaVA mode") end to end —
 * records → the LM's tokenizer with `<image>` → stage `align` (the projector alone, plain prompts) → stage
 * `finetune` (projector + LoRA adapters or the whole LM, the LM's chat template) → each stage's model as a
 * transformers LlavaForConditionalGeneration folder → test reports decoded by the last one, evaluated under the
 * protocol. The vision tower is frozen throughout. One flat loop per stage (nanoGPT style).
 *
 * Run folder (`out`):
 * - `settings.json` (a resume with other settings is refused, naming them, unless `force`), `train.log`,
 *   `metrics.jsonl` (one line per step, with its stage), `history.jsonl` (one line per epoch: validation loss),
 *   TensorBoard events;
 * - `tokenizer/`: the LM's tokenizer files with `<image>` added once (tokenizer.json, tokenizer_config.json,
 *   special_tokens_map.json, the chat template) and the processor files (preprocessor_config.json,
 *   processor_config.json); they are copied into every model folder;
 * - `<stage>/state.safetensors`: the stage's training state after each epoch (atomic; the trainable tensors only,
 *   the frozen base is rebuilt from its folders and checked by fingerprint); a re-run of the same command resumes
 *   from it, bit for bit; `<stage>/model/`: the stage's model (adapters merged) with `cxformer-llava.json` (prompt,
 *   preprocessing, decoding) — everything `cxformer generate` needs; `<stage>/adapter/`: the LoRA adapters as a
 *   PEFT folder (finetune with LoRA). A stage whose model folder is complete is not run again;
 * - `predictions.jsonl` (test split: id, image, patient, reference, generated) and `eval/` (report.json, report.md,
 *   pairs.jsonl under the protocol).
 *
 * The finetune stage starts from `align/model/` when it exists (an earlier `--stage align` run in the same folder),
 * else from the LM and the vision tower with a freshly drawn projector. The model kept is the last epoch's (as
 * LLaVA-Rad); the validation loss of every epoch is in history.jsonl. Randomness: the projector's initial values,
 * LoRA's A and the dropout from `seed`; the epoch order from mulberry32(hash(seed, stage, epoch)).
 */
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';

import { LLAVA_STAGE_DEFAULTS } from '../config/downstream.js';
import { type LoadBackboneOptions, threadCount, toHfPreprocessorConfig, writeJsonAtomic } from '../backbone.js';
import { copyAtomic, writeFileAtomic } from '../data/fsutil.js';
import { hashSeed, mulberry32, shuffleInPlace } from '../data/random.js';
import { describeDistEnv, type DistEnv, rankThreads } from '../distributed/env.js';
import { type DistSettings, type ProcessGroup, withProcessGroup } from '../distributed/group.js';
import { share } from '../distributed/shard.js';
import { labelerFromSpec } from '../eval/labelers/index.js';
import { resolvePreprocessOptions, type PreprocessOptions } from '../image/options.js';
import { preprocessBatch } from '../image/preprocess.js';
import type { VitConfig } from '../model/config.js';
import { resolveModel } from '../model/weights.js';
import { CxformerError } from '../native/load.js';
import { keepJsonl, withRunFolder } from '../run/folder.js';
import { dumpRankState, onRankZero, rankZeroDecides, requireShared, stopTogether } from '../run/rank.js';
import { settingsDiff } from '../run/settings.js';
import { EventFile } from '../run/tensorboard.js';
import { type ReportRecord, type ReportSourceSpec, trainingSplits } from '../rrg/data.js';
import { evaluateReports, type ReportEvaluation } from '../rrg/evaluate.js';
import type { GenerateOptions } from '../rrg/native.js';
import type { ProtocolName } from '../rrg/protocol.js';
import { writeReportEvaluation } from '../rrg/write.js';
import { IGNORE_INDEX, type LlavaBase, LlavaModel, type LlavaStepRecord, type LlavaTrainConfig, LlavaTrainer, LmTokenizer } from './native.js';
import { DEFAULT_INSTRUCTION, type EncodedExample, encodeExamples, IMAGE_TOKEN, leftPad, type PromptField, type PromptKind, type PromptSpec, readChatTemplate, targetText } from './prompt.js';
import { cachedFindings, checkedHead, type FindingsClassifier, runClassifier } from './classifier.js';
import { readJsonObject } from './folder.js';
import { decodeReports, LLAVA_MODEL_FILE, type LlavaModelJson } from './generate.js';

export type LlavaStage = 'align' | 'finetune';


export interface LlavaRunOptions {
  /** The vision tower (frozen): its weights or preset, overrides, device and threads. */
  backbone: LoadBackboneOptions;
  /** A Hugging Face causal LM folder (llama, mistral, qwen2, qwen3, gpt2). */
  lm: string;
  data: ReportSourceSpec;
  out: string;
  /** @default ['align', 'finetune'] */
  stages?: readonly LlavaStage[];
  /**
   * The visual tokens: hidden_states index (default −2), token selection (default 'full': CLS and registers kept),
   * k×k pooling of the patch grid (default 1 = off) and the projector (default 'mlp2x_gelu'; 'linear', 'mlpNx_gelu').
   * Pooling or another projector makes models that transformers' LLaVA does not compute (written with cxformer's keys).
   */
  vision?: { featureLayer?: number; select?: 'default' | 'full'; pool?: number; projector?: string; preprocess?: Partial<PreprocessOptions> };
  /**
   * finetune's prompt: 'auto' (the LM's chat template when it has one, else plain), 'chat' or 'plain'; the
   * instruction; the record fields added to the chat prompt (`indication`: MIMIC-CXR's INDICATION section, when the
   * record has one; `classifier`: the findings the head `classifier` predicts, src/llava/classifier.ts); the most
   * report tokens.
   */
  prompt?: { finetune?: 'auto' | PromptKind; instruction?: string; fields?: PromptField[]; maxReportTokens?: number; classifier?: string };
  /** Epochs of each stage run (default: align 1, finetune 3). */
  epochs?: number;
  /** Reports per optimizer step and rank. @default 16 */
  batchSize?: number;
  /** Micro-batches each step is split into (gradient accumulation, to save memory). @default 1 */
  microBatches?: number;
  /** The projector's peak lr (default: align 1e-3, finetune 1e-4, full 2e-5). */
  lr?: number;
  /** finetune: the LM's (LoRA or full) peak lr (default 1e-4, full 2e-5). */
  lmLr?: number;
  /** @default 0 */
  weightDecay?: number;
  /** Warm-up as a fraction of a stage's steps. @default 0.03 */
  warmup?: number;
  /** finetune: LoRA settings, or 'full' (every LM weight). @default { rank: 64, alpha: 128, dropout: 0.05 } */
  lora?: { rank?: number; alpha?: number; dropout?: number } | 'full';
  /** bf16 autocast on CUDA (the CPU computes f32). @default 'bf16' */
  precision?: 'f32' | 'bf16';
  /** Decoding of the test reports (greedy by default). */
  decode?: GenerateOptions;
  /** @default 'phantom' */
  labeler?: string;
  /** @default 'cxformer' */
  protocol?: ProtocolName;
  /** @default 1000 */
  bootstrap?: number;
  /** @default 0 */
  seed?: number;
  /** Use at most this many training records (a seeded sample). */
  maxTrain?: number;
  /** Resume although the settings changed. @default false */
  force?: boolean;
  /** @default true */
  tensorboard?: boolean;
  log?: (message: string) => void;
  onStep?: (record: LlavaStepRecord & { stage: LlavaStage; epoch: number; epochs: number; stepsPerEpoch: number; stepInEpoch: number }) => void;
  onProgress?: (what: string, done: number, total: number) => void;
  signal?: AbortSignal;
  dist?: DistSettings;
}

export interface LlavaRunResult {
  rank: number;
  worldSize: number;
  /** Each stage run: its last validation loss and its model folder. */
  stages: { stage: LlavaStage; valLoss: number | null; model: string }[];
  evaluation: ReportEvaluation | null;
  files: { model: string; predictions: string; report: string };
}

/** Trains the stages, exports, decodes and evaluates the test split (see the module comment). */
export async function finetuneLlava(o: LlavaRunOptions): Promise<LlavaRunResult> {
  if (o.labeler !== undefined && o.labeler !== 'phantom' && o.labeler !== 'rules') {
    throw new CxformerError('CXF_ARG', `--labeler for report training must be phantom or rules, got '${o.labeler}'; score imported labels afterwards with cxformer evaluate --task report --labeler labels:…`);
  }
  const stages = o.stages ?? ['align', 'finetune'];
  if (!stages.length || stages.some((s) => s !== 'align' && s !== 'finetune') || new Set(stages).size !== stages.length || (stages.length === 2 && stages[0] !== 'align')) {
    throw new CxformerError('CXF_ARG', `--stage must be align, finetune or align,finetune, got ${stages.join(',')}`);
  }
  // The classifier field's head, checked before the run folder is touched.
  const wantsClassifier = Boolean(o.prompt?.fields?.includes('classifier'));
  if (stages.includes('finetune') && wantsClassifier !== Boolean(o.prompt?.classifier)) {
    throw new CxformerError('CXF_ARG', wantsClassifier ? '--condition classifier needs --classifier HEAD (a head.safetensors of cxformer finetune on the same --weights)' : '--classifier HEAD is read by --condition classifier only');
  }
  if (stages.includes('finetune') && o.prompt?.classifier) await checkedHead(o.prompt.classifier);
  const dir = path.resolve(o.out);
  await mkdir(dir, { recursive: true });
  const log = o.log ?? (() => undefined);
  return withProcessGroup(o.dist, o.backbone.device ?? 'cpu', (env, device, pg) =>
    withRunFolder({ dir, rank: env.rank, pg, command: 'cxformer finetune --task report --decoder llm', report: log }, (run) =>
      runInFolder({ ...o, stages, backbone: { ...o.backbone, device, threads: rankThreads(threadCount(o.backbone.threads), env) } }, dir, (m) => void run.log(m), env, pg),
    ),
  );
}

/** The LM tokenizer with `<image>` (added once), its config files and the processor files, in `tokDir`. */
async function prepareTokenizer(lmDir: string, tokDir: string, pre: PreprocessOptions, vit: VitConfig, select: 'default' | 'full', log: (m: string) => void): Promise<void> {
  const src = path.join(lmDir, 'tokenizer.json');
  if (!existsSync(src)) throw new CxformerError('CXF_INPUT', `${lmDir}: no tokenizer.json (the LM folder must hold its Hugging Face fast tokenizer)`);
  await mkdir(tokDir, { recursive: true });
  const tok = await LmTokenizer.load(src);
  const { id, added } = tok.addSpecialToken(IMAGE_TOKEN);
  log(added ? `tokenizer: ${IMAGE_TOKEN} added as token ${id} (${tok.vocabSize} tokens)` : `tokenizer: ${IMAGE_TOKEN} is token ${id} already`);
  await tok.save(path.join(tokDir, 'tokenizer.json'));
  const readJson = async (f: string): Promise<Record<string, unknown>> => (existsSync(path.join(lmDir, f)) ? readJsonObject(path.join(lmDir, f)) : {});
  const entry = { content: IMAGE_TOKEN, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true };
  const cfg = await readJson('tokenizer_config.json');
  const decoder = { ...((cfg.added_tokens_decoder as Record<string, unknown> | undefined) ?? {}) };
  if (!Object.values(decoder).some((v) => (v as { content?: string }).content === IMAGE_TOKEN)) decoder[String(id)] = entry;
  const extra = (cfg.additional_special_tokens as string[] | undefined) ?? [];
  await writeJsonAtomic(path.join(tokDir, 'tokenizer_config.json'), {
    ...cfg,
    added_tokens_decoder: decoder,
    additional_special_tokens: extra.includes(IMAGE_TOKEN) ? extra : [...extra, IMAGE_TOKEN],
    ...(cfg.tokenizer_class === undefined ? { tokenizer_class: 'PreTrainedTokenizerFast' } : {}),
  });
  const map = await readJson('special_tokens_map.json');
  const mapExtra = (map.additional_special_tokens as unknown[] | undefined) ?? [];
  await writeJsonAtomic(path.join(tokDir, 'special_tokens_map.json'), { ...map, additional_special_tokens: mapExtra.some((t) => t === IMAGE_TOKEN || (t as { content?: string })?.content === IMAGE_TOKEN) ? mapExtra : [...mapExtra, IMAGE_TOKEN] });
  for (const f of ['chat_template.jinja', 'chat_template.json']) if (existsSync(path.join(lmDir, f))) await copyAtomic(path.join(lmDir, f), path.join(tokDir, f));
  await writeJsonAtomic(path.join(tokDir, 'preprocessor_config.json'), toHfPreprocessorConfig(pre));
  // transformers' LlavaProcessor: tokens per image = patches + the CLS and register tokens, minus one for 'default'.
  await writeJsonAtomic(path.join(tokDir, 'processor_config.json'), {
    image_token: IMAGE_TOKEN,
    num_additional_image_tokens: 1 + vit.num_register_tokens,
    patch_size: vit.patch_size,
    processor_class: 'LlavaProcessor',
    vision_feature_select_strategy: select,
  });
}

/** Records `idx` as a training batch: their images (preprocessed now) and their examples, left-padded. */
async function batchOf(recs: readonly ReportRecord[], ex: readonly EncodedExample[], idx: readonly number[], pre: PreprocessOptions, pad: number) {
  const px = await preprocessBatch(idx.map((i) => recs[i]!.image), pre);
  return { pixels: { data: px.data, shape: px.shape }, ...leftPad(idx.map((i) => ex[i]!), pad) };
}

async function runInFolder(o: LlavaRunOptions & { stages: readonly LlavaStage[] }, dir: string, log: (m: string) => void, env: DistEnv, pg: ProcessGroup | null): Promise<LlavaRunResult> {
  const { rank, worldSize: W } = env;
  const lead = rank === 0;
  const seed = o.seed ?? 0;
  const { train, test, held } = await trainingSplits(o.data, seed, o.maxTrain, log);

  const lmDir = path.resolve(o.lm);
  if (!existsSync(path.join(lmDir, 'config.json'))) throw new CxformerError('CXF_INPUT', `--lm ${o.lm}: no config.json; give a Hugging Face causal LM folder (config.json, model.safetensors or its sharded index, tokenizer.json)`);
  const resolved = await resolveModel({ weights: o.backbone.weights, arch: o.backbone.arch, overrides: o.backbone.overrides ?? [] });
  const pre = resolvePreprocessOptions({ ...(resolved.preprocess ?? {}), ...(o.vision?.preprocess ?? {}) });
  const select = o.vision?.select ?? 'full';
  const vision = { featureLayer: o.vision?.featureLayer ?? -2, select, pool: o.vision?.pool ?? 1, projector: o.vision?.projector ?? 'mlp2x_gelu' };
  // transformers' LLaVA computes neither pooled patch tokens nor other projectors: such models are cxformer's only.
  const hfCompatible = vision.pool === 1 && vision.projector === 'mlp2x_gelu';
  if (!hfCompatible) log(`vision: ${vision.pool > 1 ? `patch tokens pooled ${vision.pool}×${vision.pool}` : ''}${vision.pool > 1 && vision.projector !== 'mlp2x_gelu' ? ', ' : ''}${vision.projector !== 'mlp2x_gelu' ? `projector ${vision.projector}` : ''}: the models are written with cxformer's config keys, for cxformer (transformers' LLaVA does not compute them)`);
  const maxReportTokens = o.prompt?.maxReportTokens ?? LLAVA_STAGE_DEFAULTS.maxReportTokens;
  const settings = {
    data: { kind: o.data.kind, root: path.resolve(o.data.root) },
    backbone: { weights: o.backbone.weights ?? null, arch: o.backbone.arch ?? null, seed: o.backbone.seed ?? 0, overrides: o.backbone.overrides ?? [] },
    lm: lmDir,
    vision,
    preprocess: o.vision?.preprocess ?? {},
    prompt: {
      finetune: o.prompt?.finetune ?? 'auto',
      instruction: o.prompt?.instruction ?? DEFAULT_INSTRUCTION,
      ...(o.prompt?.fields?.length ? { fields: o.prompt.fields } : {}),
      ...(o.prompt?.classifier ? { classifier: path.resolve(o.prompt.classifier) } : {}),
      maxReportTokens,
    },
    epochs: o.epochs ?? null,
    batchSize: o.batchSize ?? LLAVA_STAGE_DEFAULTS.batchSize,
    microBatches: o.microBatches ?? 1,
    lr: o.lr ?? null,
    lmLr: o.lmLr ?? null,
    weightDecay: o.weightDecay ?? 0,
    warmup: o.warmup ?? LLAVA_STAGE_DEFAULTS.warmup,
    lora: o.lora ?? LLAVA_STAGE_DEFAULTS.lora,
    precision: o.precision ?? 'bf16',
    seed,
    maxTrain: o.maxTrain ?? null,
    ...(W > 1 ? { worldSize: W } : {}),
  };
  if (settings.batchSize % settings.microBatches !== 0) throw new CxformerError('CXF_ARG', `--head-batch-size ${settings.batchSize} must be a multiple of --micro-batches ${settings.microBatches}`);
  const settingsFile = path.join(dir, 'settings.json');
  // A run has started once a stage saved a state or finished its model: only then must a re-run keep its settings
  // (a start that failed before, e.g. on a wrong --lm, leaves settings.json behind and must not block the fix).
  const progress = (['align', 'finetune'] as const).some((st) => existsSync(path.join(dir, st, 'state.safetensors')) || existsSync(path.join(dir, st, 'model', LLAVA_MODEL_FILE)));
  const started = await rankZeroDecides(pg, lead && progress && existsSync(settingsFile));
  await onRankZero(pg, 'checking the settings', async () => {
    if (started) {
      const prev = JSON.parse(await readFile(settingsFile, 'utf8')) as Record<string, unknown>;
      const diff = settingsDiff(prev, settings as unknown as Record<string, unknown>);
      if (diff.length && !o.force) throw new CxformerError('CXF_CONFIG', `${dir} holds a LLaVA training started with other settings (${diff.join('; ')}); use another --out, or --force to go on with the new ones`);
    }
    await writeJsonAtomic(settingsFile, settings);
  });
  if (W > 1) log(`distributed: ${W} ranks, backend ${pg?.backend() ?? '?'}, this is ${describeDistEnv(env)}; global batch = ${settings.batchSize} reports per rank × ${W}`);

  const tokDir = path.join(dir, 'tokenizer');
  await onRankZero(pg, 'preparing the tokenizer', async () => {
    if (!existsSync(path.join(tokDir, 'processor_config.json'))) await prepareTokenizer(lmDir, tokDir, pre, resolved.config, select, log);
  });
  const tok = await LmTokenizer.load(path.join(tokDir, 'tokenizer.json'));
  const imageTokenIndex = tok.tokenToId(IMAGE_TOKEN) as number;
  const chat = await readChatTemplate(tokDir).then(async (t) => (t.template ? t : { ...(await readChatTemplate(lmDir)), specialTokens: t.specialTokens }));
  const finetunePrompt: PromptKind = settings.prompt.finetune === 'auto' ? (chat.template ? 'chat' : 'plain') : settings.prompt.finetune;
  const promptOf = (stage: LlavaStage): PromptSpec => ({
    kind: stage === 'align' ? 'plain' : finetunePrompt,
    instruction: settings.prompt.instruction,
    ...(chat.template ? { chatTemplate: chat.template } : {}),
    specialTokens: chat.specialTokens,
    maxReportTokens,
    ...(stage === 'finetune' && settings.prompt.fields ? { fields: settings.prompt.fields } : {}),
  });
  // The classifier field: every record's predicted findings (rank 0 computes them once into the run folder).
  const wantsClassifier = o.stages.includes('finetune') && Boolean(settings.prompt.fields?.includes('classifier'));
  let classifier: FindingsClassifier | null = null;
  let findings = new Map<string, string[]>();
  if (wantsClassifier) {
    const head = settings.prompt.classifier as string;
    const cache = path.join(dir, 'classifier-findings.json');
    const all = [...train, ...held, ...(held === test ? [] : test)];
    // Rank 0 alone loads the classifier: it computes the findings and writes it into the model folders.
    await onRankZero(pg, 'predicting the findings of the classifier', async () => {
      classifier = await runClassifier(head, o.backbone);
      findings = await cachedFindings(cache, head, classifier, all, pre, (d, t) => o.onProgress?.('classifier findings', d, t));
      log(`classifier: ${classifier.classes.length} classes (${classifier.classes.join(', ')}), findings of ${all.length} images`);
    });
    if (!lead) findings = new Map(Object.entries((JSON.parse(await readFile(cache, 'utf8')) as { findings: Record<string, string[]> }).findings));
  }
  const contexts = (recs: readonly ReportRecord[]) => recs.map((r) => ({ ...r, ...(wantsClassifier ? { classifier: findings.get(r.id) ?? [] } : {}) }));
  if (o.stages.includes('finetune') && finetunePrompt === 'chat') {
    // The template renders (and the report is told apart) before any stage trains; errors name its file.
    try {
      targetText(promptOf('finetune'), 'The heart is normal.', { indication: 'Cough.', classifier: [] });
    } catch (e) {
      throw new CxformerError((e as CxformerError).code ?? 'CXF_INPUT', `${chat.source}: ${(e as Error).message}`);
    }
  }
  if (o.stages.includes('finetune')) log(`finetune prompt: ${finetunePrompt}${finetunePrompt === 'plain' && settings.prompt.finetune === 'auto' ? ' (the LM has no chat template)' : ''}`);

  const results: LlavaRunResult['stages'] = [];
  let lastModel = '';
  for (const stage of o.stages) {
    const stageDir = path.join(dir, stage);
    const modelDir = path.join(stageDir, 'model');
    lastModel = modelDir;
    await mkdir(stageDir, { recursive: true });
    if (existsSync(path.join(modelDir, LLAVA_MODEL_FILE))) {
      log(`${stage}: done already (${modelDir}); skipped`);
      const md = JSON.parse(await readFile(path.join(modelDir, LLAVA_MODEL_FILE), 'utf8')) as LlavaModelJson;
      results.push({ stage, valLoss: md.valLoss ?? null, model: modelDir });
      continue;
    }
    const prompt = promptOf(stage);
    const full = stage === 'finetune' && settings.lora === 'full';
    const defaults = stage === 'align' ? LLAVA_STAGE_DEFAULTS.align : full ? { ...LLAVA_STAGE_DEFAULTS.finetune, ...LLAVA_STAGE_DEFAULTS.full } : LLAVA_STAGE_DEFAULTS.finetune;
    const epochs = settings.epochs ?? defaults.epochs;
    const G = settings.batchSize * W;
    const stepsPerEpoch = Math.ceil(train.length / G);
    const totalSteps = epochs * stepsPerEpoch;
    const aligned = path.join(dir, 'align', 'model');
    const base: LlavaBase =
      stage === 'finetune' && existsSync(path.join(aligned, LLAVA_MODEL_FILE))
        ? { llava: aligned }
        : {
            lm: lmDir,
            vision: { config: resolved.config, ...(resolved.weights ? { weights: resolved.weights.file } : {}) },
            imageTokenIndex,
            featureLayers: [vision.featureLayer],
            select,
            pool: vision.pool,
            projector: vision.projector,
            projectorSeed: seed,
          };
    if (stage === 'finetune' && !('llava' in base)) log('finetune: no aligned projector in align/model/; the projector starts from its initial draw');
    const lora = settings.lora === 'full' ? 'full' : { rank: settings.lora.rank ?? LLAVA_STAGE_DEFAULTS.lora.rank, alpha: settings.lora.alpha ?? LLAVA_STAGE_DEFAULTS.lora.alpha, dropout: settings.lora.dropout ?? LLAVA_STAGE_DEFAULTS.lora.dropout };
    const trainCfg: LlavaTrainConfig = {
      stage,
      lr: settings.lr ?? defaults.lr,
      ...(stage === 'finetune' ? { lmLr: settings.lmLr ?? (defaults as { lmLr: number }).lmLr, lora } : {}),
      weightDecay: settings.weightDecay,
      warmupSteps: Math.ceil(settings.warmup * totalSteps),
      totalSteps,
      schedule: 'cosine',
      precision: settings.precision,
      gradAccumSteps: settings.microBatches,
    };
    const trainer = await LlavaTrainer.create({ base, train: trainCfg, seed, ...(o.backbone.device ? { device: o.backbone.device } : {}), ...(o.backbone.threads ? { threads: o.backbone.threads } : {}), processGroup: pg });
    const grown = (trainer.baseReport.lm as { vocab_grown?: { from: number; to: number } | null } | undefined)?.vocab_grown;
    if (grown) log(`${stage}: the LM's vocabulary grew from ${grown.from} to ${grown.to} rows for ${IMAGE_TOKEN} (new rows: the mean of the others)`);
    const [H, Wd] = Array.isArray(pre.crop) ? pre.crop : [pre.crop ?? resolved.config.img_size, pre.crop ?? resolved.config.img_size];
    log(`${stage}: ${(trainer.numTrainable / 1e6).toFixed(3)} M of ${(trainer.numParameters / 1e6).toFixed(2)} M parameters trained (${trainer.trainableNames.length} tensors); ${trainer.tokensPerImage(H as number, Wd as number)} visual tokens per image; prompt ${prompt.kind}; ${epochs} epochs × ${stepsPerEpoch} steps of ${G} reports; lr ${trainCfg.lr}${trainCfg.lmLr !== undefined ? `, LM ${trainCfg.lmLr} (${lora === 'full' ? 'full' : `LoRA r ${lora.rank}, α ${lora.alpha}`})` : ''}`);

    const gen = trainer.generation;
    const eos = gen.eosTokenIds[0] ?? gen.padTokenId ?? 0;
    const pad = gen.padTokenId ?? eos;
    const exTrain = encodeExamples(tok, prompt, contexts(train), eos);
    const exHeld = encodeExamples(tok, prompt, contexts(held), eos);

    const statePath = path.join(stageDir, 'state.safetensors');
    let startEpoch = 0;
    const resuming = await rankZeroDecides(pg, lead && existsSync(statePath));
    if (resuming) {
      await requireShared(pg, statePath);
      const md = await trainer.loadState(statePath, Boolean(o.force));
      startEpoch = Number(md.epoch ?? 0);
      log(`${stage}: resume at epoch ${startEpoch} of ${epochs}`);
      await onRankZero(pg, 'trimming the logs', async () => {
        for (const f of ['metrics.jsonl', 'history.jsonl']) if (existsSync(path.join(dir, f))) await keepJsonl(path.join(dir, f), (r) => r.stage !== stage || Number(r.epoch) <= startEpoch);
      });
    }
    // TensorBoard: one step axis for the run, the finetune stage's steps after the align stage's (when it ran in
    // this folder); each start's file supersedes older files' events from its first step on (a resume).
    const stepBase = stage === 'finetune' && 'llava' in base ? (settings.epochs ?? LLAVA_STAGE_DEFAULTS.align.epochs) * stepsPerEpoch : 0;
    const tb = lead && (o.tensorboard ?? true) ? EventFile.create(dir, { firstStep: stepBase + startEpoch * stepsPerEpoch + 1 }) : null;
    let valLoss: number | null = null;
    for (let epoch = startEpoch; epoch < epochs; epoch++) {
      const order = train.map((_, i) => i);
      shuffleInPlace(order, mulberry32(hashSeed(seed, stage === 'align' ? 1 : 2, epoch)));
      const batchIdx = (s: number) => {
        const g = order.slice(s * G, (s + 1) * G);
        const [lo, hi] = share(g.length, rank, W);
        // A rank without reports this step takes one row without labels (no loss, no gradient).
        return { idx: hi > lo ? g.slice(lo, hi) : [g[0]!], empty: hi === lo };
      };
      const fetch = (s: number) => {
        const { idx, empty } = batchIdx(s);
        // The micro-batches split the rows evenly: a short batch is filled up with rows without labels (no loss,
        // no gradient), as is the one row of a rank without reports.
        const k = settings.microBatches;
        const rows = [...idx, ...Array.from({ length: (k - (idx.length % k)) % k }, () => idx[0]!)];
        const p = batchOf(train, exTrain, rows, pre, pad).then((b) => {
          const T = b.shape[1];
          b.labels.fill(IGNORE_INDEX, (empty ? 0 : idx.length) * T);
          return b;
        });
        p.catch(() => undefined);
        return p;
      };
      const lines: string[] = [];
      let next = fetch(0);
      for (let s = 0; s < stepsPerEpoch; s++) {
        if (await stopTogether(pg, Boolean(o.signal?.aborted))) {
          throw new CxformerError('CXF_CANCELLED', `LLaVA ${stage} interrupted in epoch ${epoch + 1}; re-run the command to resume from the last finished epoch`);
        }
        const b = await next;
        if (s + 1 < stepsPerEpoch) next = fetch(s + 1); // the next batch's images decode while this step runs
        const rec = await trainer.step(b, settings.microBatches);
        lines.push(JSON.stringify({ stage, epoch: epoch + 1, ...rec }));
        tb?.metrics(stepBase + rec.step + 1, { [`${stage}/loss`]: rec.loss, [`${stage}/lr`]: rec.lr, [`${stage}/grad_norm`]: rec.gradNorm });
        o.onStep?.({ ...rec, stage, epoch, epochs, stepsPerEpoch, stepInEpoch: s });
      }
      if (lead) await appendFile(path.join(dir, 'metrics.jsonl'), `${lines.join('\n')}\n`);
      // Validation loss (rank 0; the other ranks wait at the next collective).
      if (lead) {
        let lossSum = 0;
        let tokSum = 0;
        const EB = settings.batchSize;
        for (let s = 0; s < held.length; s += EB) {
          const idx = Array.from({ length: Math.min(EB, held.length - s) }, (_, i) => s + i);
          const e = await trainer.evaluate(await batchOf(held, exHeld, idx, pre, pad));
          lossSum += e.loss * e.tokens;
          tokSum += e.tokens;
          o.onProgress?.(`${stage} validation`, s + idx.length, held.length);
        }
        valLoss = tokSum ? lossSum / tokSum : null;
        await appendFile(path.join(dir, 'history.jsonl'), `${JSON.stringify({ stage, epoch: epoch + 1, step: (epoch + 1) * stepsPerEpoch, valLoss })}\n`);
        tb?.metrics(stepBase + (epoch + 1) * stepsPerEpoch, { [`${stage}/val_loss`]: valLoss ?? Number.NaN });
        log(`${stage} epoch ${epoch + 1}/${epochs}: validation loss ${valLoss === null ? 'n/a' : valLoss.toFixed(4)}`);
      }
      await onRankZero(pg, `saving ${stage} epoch ${epoch + 1}`, () => trainer.saveState(statePath, { epoch: String(epoch + 1) }));
    }
    await dumpRankState(rank, (file) => trainer.saveState(file));
    // The stage's model: merged LLaVA folder (+ the PEFT adapters), then the cxformer file that marks it complete.
    await onRankZero(pg, `exporting the ${stage} model`, async () => {
      await trainer.saveHf(modelDir, { tokenizerFrom: tokDir, cxformerExtensions: !hfCompatible });
      if (prompt.fields?.includes('classifier')) await (classifier as FindingsClassifier).save(modelDir);
      // saveHf copies the tokenizer files and preprocessor_config.json; the processor's config is ours to add.
      await copyAtomic(path.join(tokDir, 'processor_config.json'), path.join(modelDir, 'processor_config.json'));
      if (stage === 'finetune' && lora !== 'full') await trainer.savePeft(path.join(stageDir, 'adapter'), lmDir);
      const md: LlavaModelJson = {
        format: 'cxformer-llava',
        stage,
        prompt,
        preprocess: pre,
        decode: { strategy: 'greedy', maxNewTokens: maxReportTokens, ...o.decode },
        labeler: o.labeler ?? 'phantom',
        valLoss,
      };
      await writeJsonAtomic(path.join(modelDir, LLAVA_MODEL_FILE), md);
    });
    log(`${stage}: model → ${modelDir}`);
    results.push({ stage, valLoss, model: modelDir });
  }

  if (!lead) return { rank, worldSize: W, stages: results, evaluation: null, files: { model: lastModel, predictions: '', report: '' } };
  // Test: the last stage's exported model decodes the test split (what cxformer generate computes).
  // On CUDA with bf16 the test split decodes with bf16 weights (as `generate --dtype bf16`); float32 elsewhere.
  const cudaBf16 = (o.backbone.device ?? 'cpu').startsWith('cuda') && settings.precision === 'bf16';
  const model = await LlavaModel.load(lastModel, { ...(o.backbone.device ? { device: o.backbone.device } : {}), ...(cudaBf16 ? { dtype: 'bf16' as const } : {}) });
  const generated = await decodeReports(model, lastModel, test.map((r) => r.image), { contexts: contexts(test), onProgress: (d, t) => o.onProgress?.('test decoding', d, t) });
  const predFile = path.join(dir, 'predictions.jsonl');
  await writeFileAtomic(predFile, `${test.map((r, i) => JSON.stringify({ id: r.id, image: r.image, patient: r.patient, reference: r.report, generated: generated[i] })).join('\n')}\n`);
  const evaluation = evaluateReports(
    test.map((r, i) => ({ id: r.id, hypothesis: generated[i] as string, references: [r.report], patient: r.patient })),
    { protocol: o.protocol ?? 'cxformer', labels: { labeler: labelerFromSpec(o.labeler ?? 'phantom') }, bootstrap: o.bootstrap ?? 1000, seed, onProgress: (d, t) => o.onProgress?.('bootstrap', d, t) },
  );
  const files = await writeReportEvaluation(path.join(dir, 'eval'), evaluation, undefined, `Report generation (LLaVA, ${o.stages.join(' + ')}): the test split`);
  const k = Object.fromEntries(evaluation.metrics.map((m) => [m.key, m.value]));
  const fmt = (v: unknown) => (typeof v === 'number' ? v.toFixed(2) : 'n/a');
  log(`test: label micro F1 ${fmt(k.f1_findings_micro ?? k.f1_14_micro)}, ROUGE-L ${fmt(k.rougeL)}, BLEU-4 ${fmt(k.bleu4)} (${test.length} reports)`);
  return { rank, worldSize: W, stages: results, evaluation, files: { model: lastModel, predictions: predFile, report: files.markdown } };
}
