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

export interface ReportGenerator {
  /** The folder's decoding defaults. */
  readonly decode: GenerateOptions;
  /** One report per image, in order. */
  generate(images: readonly string[], o?: GenerateOptions & { batchSize?: number; onProgress?: (done: number, total: number) => void }): Promise<string[]>;
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
  };
}
