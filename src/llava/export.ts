/**
 * `cxformer export RUN --format llava-hf --out DIR`: the model of a LLaVA run's last finished stage (`finetune/model/`,
 * else `align/model/`; or a LLaVA model folder given directly) written again as a transformers
 * LlavaForConditionalGeneration folder in the dtype asked for: config.json, generation_config.json,
 * model.safetensors, the tokenizer with `<image>`, preprocessor_config.json and processor_config.json, plus
 * cxformer-llava.json (the prompt and decoding `cxformer generate` uses) and, for prompts that carry a classifier's
 * findings, `classifier/` (its head and backbone). The LoRA adapters of a finetune stage stay
 * in `RUN/finetune/adapter/` (a PEFT folder).
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, stat } from 'node:fs/promises';
import path from 'node:path';

import { copyAtomic } from '../data/fsutil.js';
import { CxformerError } from '../native/load.js';
import { CLASSIFIER_DIR } from './classifier.js';
import { isLlavaFolder, LLAVA_MODEL_FILE } from './generate.js';
import { LlavaModel } from './native.js';

/** The model folder a run (or a model folder) stands for. */
export function llavaModelOf(source: string): string {
  if (isLlavaFolder(source)) return source;
  for (const stage of ['finetune', 'align']) {
    const d = path.join(source, stage, 'model');
    if (existsSync(path.join(d, LLAVA_MODEL_FILE))) return d;
  }
  throw new CxformerError('CXF_INPUT', `${source}: neither a LLaVA folder (config.json with model_type "llava") nor a run folder of cxformer finetune --task report --decoder llm with a finished stage (finetune/model/ or align/model/ holding ${LLAVA_MODEL_FILE})`);
}

export async function exportLlavaRun(source: string, out: string, o: { dtype?: 'f32' | 'bf16' | 'f16'; layout?: 'legacy' | 'nested' } = {}): Promise<{ source: string; out: string; files: string[] }> {
  const src = llavaModelOf(source);
  if (path.resolve(src) === path.resolve(out)) throw new CxformerError('CXF_ARG', `--out ${out} is the model folder itself; export elsewhere`);
  const model = await LlavaModel.load(src);
  const c = model.config;
  if (c.cxformer_patch_pool !== undefined || c.cxformer_projector !== undefined) {
    throw new CxformerError('CXF_ARG', `${src}: this LLaVA uses ${[c.cxformer_patch_pool !== undefined ? `patch pooling ${c.cxformer_patch_pool}×${c.cxformer_patch_pool}` : '', c.cxformer_projector !== undefined ? `the ${c.cxformer_projector} projector` : ''].filter(Boolean).join(' and ')}, which transformers' LlavaForConditionalGeneration does not compute: it cannot be exported for transformers (cxformer generate reads the folder as it is)`);
  }
  await mkdir(out, { recursive: true });
  await model.saveHf(out, { dtype: o.dtype ?? 'f32', layout: o.layout ?? 'legacy', tokenizerFrom: src });
  for (const f of [LLAVA_MODEL_FILE, 'processor_config.json']) if (existsSync(path.join(src, f))) await copyAtomic(path.join(src, f), path.join(out, f));
  // The classifier of a model whose prompts carry its findings (cxformer generate computes them with it).
  const cls = path.join(src, CLASSIFIER_DIR);
  if (existsSync(cls)) {
    for (const f of await readdir(cls, { recursive: true })) {
      const from = path.join(cls, f);
      if ((await stat(from)).isDirectory()) continue;
      await mkdir(path.dirname(path.join(out, CLASSIFIER_DIR, f)), { recursive: true });
      await copyAtomic(from, path.join(out, CLASSIFIER_DIR, f));
    }
  }
  const files = ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'preprocessor_config.json', 'processor_config.json', LLAVA_MODEL_FILE, CLASSIFIER_DIR].filter((f) => existsSync(path.join(out, f)));
  return { source: src, out, files };
}
