/** `cxformer export`: an HF folder (config.json, model.safetensors, preprocessor_config.json) or one original-layout file. */
import path from 'node:path';
import { Backbone } from '../../backbone.js';
import { resolveModel } from '../../model/weights.js';
import { CxformerError } from '../../native/load.js';
import { type Args, progress, splitPositionals } from './common.js';

export async function run(a: Args): Promise<number> {
  const { overrides } = splitPositionals(a.overrides);
  const resolved = await resolveModel({ weights: a.weights as string | undefined, arch: a.arch as string | undefined, overrides });
  const out = path.resolve(String(a.out));
  if (a.format === 'original' && !out.endsWith('.safetensors')) {
    throw new CxformerError('CXF_ARG', `--out ${a.out}: --format original writes one file; expected a name ending in .safetensors`);
  }
  const model = await Backbone.load({ resolved, device: String(a.device), threads: a.threads as number | undefined, seed: Number(a.seed) });
  const dtype = a.dtype as 'f32' | 'bf16' | 'f16';
  if (a.format === 'hf') await model.exportHf(out, { dtype });
  else await model.save(out, { layout: 'original', dtype });
  progress(false).done(`export: ${resolved.weights ? resolved.weights.file : `random ${a.arch} (seed ${a.seed})`} -> ${out} (${a.format}, ${dtype})`);
  return 0;
}
