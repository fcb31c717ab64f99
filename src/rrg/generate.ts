/**
 * A trained captioner folder (`finetune --task report`'s `best/`) as a report generator: its frozen backbone
 * (`backbone/`, HF layout), the memory settings and preprocessing (`report-model.json`), the decoder
 * (`model.safetensors` + `config.json`) and the tokenizer (`tokenizer.json`).
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import { type Backbone, loadBackbone } from '../backbone.js';
import type { PreprocessOptions } from '../image/options.js';
import { CxformerError } from '../native/load.js';
import { extractMemory } from './memory.js';
import { type GenerateOptions, ReportModel, ReportTokenizer } from './native.js';

interface ReportModelJson {
  format: string;
  memory: { block: number; pool: number };
  preprocess: PreprocessOptions;
  decode: GenerateOptions;
}

/** One event of {@link ReportGenerator.stream}. */
export interface ReportStreamEvent {
  /** The image's position in the input list. */
  index: number;
  image: string;
  /** The token just generated (EOS is never handed out); absent on an image's closing event. */
  token?: number;
  /**
   * Text added since this image's previous event. Words are handed out whole (the text up to the last space so
   * far, as transformers' `TextStreamer` does), so it is often empty; the pieces of an image join to its report.
   */
  text: string;
  /** On the image's closing event only: the whole report, exactly what `generate` returns for the image. */
  report?: string;
}

export interface ReportGenerator {
  /** The folder's decoding defaults. */
  readonly decode: GenerateOptions;
  /** One report per image, in order. */
  generate(images: readonly string[], o?: GenerateOptions & { batchSize?: number; onProgress?: (done: number, total: number) => void }): Promise<string[]>;
  /**
   * The reports as they are decoded: for each image in turn (batch 1), an event per token as soon as the decoder
   * picks it (greedy and sampling; beam search knows its tokens only at the end, so they come at once), then a
   * closing event with the whole report. Same text as `generate`. Leaving the loop early (`break`) cancels the
   * decoding in progress.
   */
  stream(images: readonly string[], o?: GenerateOptions): AsyncIterable<ReportStreamEvent>;
}

/**
 * Text to hand out after `full` (the decoded tokens so far) when `shown` is already out: nothing unless `full`
 * extends `shown`, and only up to its last space or newline until the report is `finished`.
 */
export function streamPiece(full: string, shown: string, finished: boolean): string {
  if (!full.startsWith(shown)) return '';
  const rest = full.slice(shown.length);
  if (finished) return rest;
  const cut = Math.max(rest.lastIndexOf(' '), rest.lastIndexOf('\n'));
  return cut < 0 ? '' : rest.slice(0, cut + 1);
}

const FILES = ['report-model.json', 'model.safetensors', 'config.json', 'tokenizer.json', path.join('backbone', 'config.json')];

/** Loads a captioner folder; a missing file is an error naming the folder, the file and what makes such a folder. */
export async function loadReportGenerator(dir: string, o: { device?: string; threads?: number } = {}): Promise<ReportGenerator> {
  const missing = FILES.filter((f) => !existsSync(path.join(dir, f)));
  if (missing.length) {
    const other = existsSync(path.join(dir, 'head.safetensors')) || existsSync(path.join(dir, 'model.safetensors')) ? ' (a model folder of another task?)' : '';
    throw new CxformerError('CXF_INPUT', `${dir}: not a report captioner folder${other}: missing ${missing.join(', ')}; it is the best/ folder of cxformer finetune --task report`);
  }
  const meta = JSON.parse(await readFile(path.join(dir, 'report-model.json'), 'utf8')) as ReportModelJson;
  if (meta.format !== 'cxformer-report-model') throw new CxformerError('CXF_INPUT', `${path.join(dir, 'report-model.json')}: format is ${JSON.stringify(meta.format)}, expected "cxformer-report-model"`);
  const backbone: Backbone = await loadBackbone({ weights: path.join(dir, 'backbone'), ...(o.device ? { device: o.device } : {}), ...(o.threads ? { threads: o.threads } : {}) });
  const model = await ReportModel.load(dir, o);
  const tok = await ReportTokenizer.load(path.join(dir, 'tokenizer.json'));
  if (tok.vocabSize !== model.config.vocabSize) {
    throw new CxformerError('CXF_INPUT', `${dir}: tokenizer.json has ${tok.vocabSize} tokens but the model's vocabSize is ${model.config.vocabSize}`);
  }
  return {
    decode: meta.decode,
    async generate(images, g = {}) {
      const { batchSize = 16, onProgress, ...decode } = g;
      const out: string[] = [];
      for (let s = 0; s < images.length; s += batchSize) {
        const m = await extractMemory(backbone, images.slice(s, s + batchSize), { block: meta.memory.block, pool: meta.memory.pool, preprocess: meta.preprocess });
        const r = await model.generate({ data: m.data, shape: m.shape }, { ...meta.decode, ...decode });
        for (const t of r.tokens) out.push(tok.decode(t));
        onProgress?.(Math.min(s + batchSize, images.length), images.length);
      }
      return out;
    },
    async *stream(images, g = {}) {
      const { eos } = tok.specials;
      for (const [index, image] of images.entries()) {
        const m = await extractMemory(backbone, [image], { block: meta.memory.block, pool: meta.memory.pool, preprocess: meta.preprocess });
        yield* textEvents(index, image, (ids) => tok.decode(ids), streamTokens((onToken) => model.generateStream({ data: m.data, shape: m.shape }, { ...meta.decode, ...g }, onToken), (t) => t === eos));
      }
    },
  };
}

/**
 * The tokens of one streamed decoding (batch 1) as they are chosen: `start(onToken)` starts it (`onToken` returning
 * false cancels it), each token for which `skip` is false is yielded as soon as its call arrives, then those of the
 * result that had not arrived yet (the promise may settle before the last calls). Leaving the loop early cancels
 * the decoding at its next token.
 */
export async function* streamTokens(start: (onToken: (row: number, token: number) => boolean | void) => Promise<{ tokens: number[][] }>, skip: (token: number) => boolean): AsyncGenerator<number> {
  const queue: number[] = [];
  let wake: (() => void) | undefined;
  let stop = false;
  let settled = false;
  let result: { tokens: number[][] } | undefined;
  let failure: unknown;
  start((_row, t) => {
    if (stop) return false;
    queue.push(t);
    wake?.();
  })
    .then(
      (r) => (result = r),
      (e: unknown) => (failure = e),
    )
    .finally(() => {
      settled = true;
      wake?.();
    });
  let n = 0;
  try {
    for (;;) {
      for (let t = queue.shift(); t !== undefined; t = queue.shift()) {
        if (skip(t)) continue;
        n++;
        yield t;
      }
      if (settled) break;
      await new Promise<void>((r) => (wake = r));
      wake = undefined;
    }
    if (failure !== undefined) throw failure;
    for (const t of (result as { tokens: number[][] }).tokens[0]?.slice(n) ?? []) yield t;
  } finally {
    stop = true; // a consumer that left early: the decoder stops at its next token
  }
}

/**
 * The {@link ReportStreamEvent}s of image `index`: one per token (the text it completes, whole words), then the
 * closing event with the whole report (`report` of every token: what `generate` returns; default `decode`).
 */
export async function* textEvents(index: number, image: string, decode: (ids: number[]) => string, tokens: AsyncIterable<number>, report: (ids: number[]) => string = decode): AsyncGenerator<ReportStreamEvent> {
  const ids: number[] = [];
  let shown = '';
  for await (const token of tokens) {
    ids.push(token);
    const text = streamPiece(decode(ids), shown, false);
    shown += text;
    yield { index, image, token, text };
  }
  const whole = report(ids);
  yield { index, image, text: streamPiece(whole, shown, true), report: whole };
}
