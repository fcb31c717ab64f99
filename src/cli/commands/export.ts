/** `cxformer export`: an HF folder (config.json, model.safetensors, preprocessor_config.json) or one original-layout file. */
import path from 'node:path';
import { Backbone } from '../../backbone.js';
import { resolveModel } from '../../model/weights.js';
import { CxformerError } from '../../native/load.js';
import { type Args, progress, splitPositionals } from './common.js';

export async function run(a: Args): Promise<number> {
  const { inputs, overrides } = splitPositionals(a.overrides);
  if (inputs[0] !== undefined) {
    // A training run or checkpoint: teacher backbone (HF) + dino_head.safetensors.
    const { exportRun, checkpointOf } = await import('../../train/export.js');
    const ckpt = await checkpointOf(inputs[0]);
    const out = path.resolve(String(a.out));
    await exportRun(ckpt, out, { dtype: a.dtype as 'f32' | 'bf16' | 'f16' });
    progress(false).done(`export: teacher of ${ckpt} -> ${out} (config.json, model.safetensors, preprocessor_config.json, dino_head.safetensors)`);
    return 0;
  }
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
