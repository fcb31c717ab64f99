/**
 * A LLaVA folder of `finetune --task report --decoder llm` (`<stage>/model/`: transformers'
 * LlavaForConditionalGeneration files, the tokenizer with `<image>`, and `cxformer-llava.json` with the prompt,
 * preprocessing and decoding) as a report generator with the interface of the captioner's (src/rrg/generate.ts):
 * the same prompt as in training, decoding stopped at the LM's EOS ids and the chat template's end of turn.
 * A transformers LLaVA folder without `cxformer-llava.json` is prompted plainly (`<image>` then the report) with the
 * image processor of its preprocessor_config.json.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';

import { preprocessorFromHfConfig } from '../image/hf-config.js';
import { resolvePreprocessOptions, type PreprocessOptions } from '../image/options.js';
import { preprocessBatch } from '../image/preprocess.js';
import { CxformerError } from '../native/load.js';
import { type ReportGenerator, type ReportStreamEvent, streamTokens, textEvents } from '../rrg/generate.js';
import type { GenerateOptions } from '../rrg/native.js';
import { type FindingsClassifier, folderClassifier } from './classifier.js';
import { LLAVA_MODEL_FILE, readJsonObject } from './folder.js';

export { isLlavaFolder, LLAVA_MODEL_FILE } from './folder.js';
import { type LlavaGenerateOptions, type LlavaGenerator, LlavaModel, LmTokenizer } from './native.js';
import { encodePrompts, leftPad, type PromptContext, type PromptField, type PromptSpec, stopIds } from './prompt.js';

export interface LlavaModelJson {
  format: 'cxformer-llava';
  stage: 'align' | 'finetune';
  prompt: PromptSpec;
  preprocess: PreprocessOptions;
  decode: GenerateOptions;
  labeler: string;
  /** The stage's last validation loss. */
  valLoss: number | null;
}


/** The folder's cxformer settings, or plain prompting with its preprocessor_config.json for a foreign folder. */
async function settingsOf(dir: string): Promise<LlavaModelJson> {
  const f = path.join(dir, LLAVA_MODEL_FILE);
  if (existsSync(f)) {
    const md = (await readJsonObject(f)) as unknown as LlavaModelJson;
    if (md.format !== 'cxformer-llava') throw new CxformerError('CXF_INPUT', `${f}: format is ${JSON.stringify(md.format)}, expected "cxformer-llava"`);
    return md;
  }
  const pp = path.join(dir, 'preprocessor_config.json');
  const preprocess = existsSync(pp) ? preprocessorFromHfConfig(await readJsonObject(pp), pp) : resolvePreprocessOptions({});
  return { format: 'cxformer-llava', stage: 'align', prompt: { kind: 'plain', instruction: '', maxReportTokens: 256 }, preprocess, decode: { strategy: 'greedy', maxNewTokens: 256 }, labeler: 'phantom', valLoss: null };
}

/** The prompt batch of `images`: their pixels and their prompts, left-padded with `pad`. */
async function promptBatch(images: readonly string[], prompts: readonly number[][], pre: PreprocessOptions, pad: number) {
  const px = await preprocessBatch(images, pre);
  const { inputIds, attentionMask, shape } = leftPad(prompts.map((ids) => ({ ids, labels: ids })), pad);
  return { pixels: { data: px.data, shape: px.shape }, inputIds, attentionMask, shape };
}

/** `generate` / `stream` options of a LLaVA: the decoding, and each image's prompt fields (e.g. its indication). */
export type LlavaDecodeOptions = LlavaGenerateOptions & { contexts?: readonly PromptContext[] };

/** A model folder's decoding settings, read once: its cxformer settings, tokenizer, and classifier when needed. */
interface DecodeFolder {
  dir: string;
  md: LlavaModelJson;
  tok: LmTokenizer;
  /** The folder's classifier (`classifier/`), loaded on first use. */
  classifier: () => Promise<FindingsClassifier>;
}

async function decodeFolder(dir: string, o: { device?: string; threads?: number } = {}): Promise<DecodeFolder> {
  const md = await settingsOf(dir);
  const tok = await LmTokenizer.load(path.join(dir, 'tokenizer.json'));
  let classifier: Promise<FindingsClassifier> | undefined;
  return { dir, md, tok, classifier: () => (classifier ??= folderClassifier(dir, o)) };
}

/** The ids that end a report: the LM's EOS ids and the chat template's end of turn. */
function stopsOf(f: DecodeFolder, gen: LlavaGenerator): number[] {
  return [...new Set([...gen.generation.eosTokenIds, ...stopIds(f.tok, f.md.prompt)])];
}

/**
 * Each image's prompt ids; for a model whose prompts carry a classifier's findings, the images without them get them
 * from the folder's classifier.
 */
async function promptsOf(f: DecodeFolder, images: readonly string[], contexts: readonly PromptContext[] | undefined): Promise<number[][]> {
  const ctx = images.map((_, i) => contexts?.[i] ?? {});
  const missing = f.md.prompt.fields?.includes('classifier') ? ctx.flatMap((c, i) => (c.classifier === undefined ? [i] : [])) : [];
  if (missing.length) {
    const found = await (await f.classifier()).findings(missing.map((i) => images[i] as string), f.md.preprocess);
    missing.forEach((i, k) => (ctx[i] = { ...ctx[i], classifier: found[k] as string[] }));
  }
  return encodePrompts(f.tok, f.md.prompt, ctx);
}

type DecodeCall = LlavaDecodeOptions & { batchSize?: number; onProgress?: (done: number, total: number) => void };

async function decodeWith(gen: LlavaGenerator, f: DecodeFolder, images: readonly string[], o: DecodeCall): Promise<string[]> {
  const { batchSize = 8, onProgress, contexts, ...decode } = o;
  const prompts = await promptsOf(f, images, contexts);
  const g = gen.generation;
  const opts = { ...f.md.decode, ...decode, eosTokenIds: stopsOf(f, gen) };
  const out: string[] = [];
  for (let s = 0; s < images.length; s += batchSize) {
    const r = await gen.generate(await promptBatch(images.slice(s, s + batchSize), prompts.slice(s, s + batchSize), f.md.preprocess, g.padTokenId ?? g.eosTokenIds[0] ?? 0), opts);
    for (const t of r.tokens) out.push(f.tok.decode(t).trim());
    onProgress?.(Math.min(s + batchSize, images.length), images.length);
  }
  return out;
}

/** Decodes reports for `images` with a model of `dir`'s settings (the trainer's or the folder's own). */
export async function decodeReports(gen: LlavaGenerator, dir: string, images: readonly string[], o: DecodeCall = {}): Promise<string[]> {
  return decodeWith(gen, await decodeFolder(dir), images, o);
}

/** A LLaVA folder as a report generator: the captioner's interface, with each image's prompt fields. */
export interface LlavaReportGenerator extends ReportGenerator {
  /** The record fields the model's prompts carry (`--condition` at training). */
  readonly fields: readonly PromptField[];
  generate(images: readonly string[], o?: DecodeCall): Promise<string[]>;
  stream(images: readonly string[], o?: LlavaDecodeOptions): AsyncIterable<ReportStreamEvent>;
}

/** Loads a LLaVA folder as a report generator (see the module comment). */
export async function loadLlavaGenerator(dir: string, o: { device?: string; threads?: number; dtype?: 'f32' | 'bf16' } = {}): Promise<LlavaReportGenerator> {
  if (!existsSync(path.join(dir, 'tokenizer.json'))) throw new CxformerError('CXF_INPUT', `${dir}: a LLaVA folder without tokenizer.json; export it with its tokenizer (cxformer export RUN --format llava-hf)`);
  const f = await decodeFolder(dir, { ...(o.device ? { device: o.device } : {}), ...(o.threads ? { threads: o.threads } : {}) });
  const model = await LlavaModel.load(dir, o);
  const image = model.config.image_token_index;
  if (f.tok.idToToken(image) === null) throw new CxformerError('CXF_INPUT', `${dir}: the image token id ${image} (config.json image_token_index) is not in tokenizer.json (${f.tok.vocabSize} tokens)`);
  const stops = stopsOf(f, model);
  return {
    decode: f.md.decode,
    fields: f.md.prompt.fields ?? [],
    generate: (images, g: DecodeCall = {}) => decodeWith(model, f, images, g),
    async *stream(images, g: LlavaDecodeOptions = {}): AsyncIterable<ReportStreamEvent> {
      const { contexts, ...decode } = g;
      const opts = { ...f.md.decode, ...decode, eosTokenIds: stops };
      const prompts = await promptsOf(f, images, contexts);
      for (const [index, img] of images.entries()) {
        const batch = await promptBatch([img], [prompts[index]!], f.md.preprocess, 0);
        const tokens = streamTokens((onToken) => model.generateStream(batch, opts, onToken), (t) => stops.includes(t));
        yield* textEvents(index, img, (ids) => f.tok.decode(ids).trimStart(), tokens, (ids) => f.tok.decode(ids).trim());
      }
    },
  };
}
