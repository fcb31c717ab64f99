/**
 * Export of a pretraining run or checkpoint: the TEACHER backbone as a Hugging Face
 * Dinov2WithRegisters folder (config.json, model.safetensors, preprocessor_config.json, README.md) plus
 * dino_head.safetensors (teacher heads, keys dino_head.* / ibot_head.*) for further continual pretraining.
 */
import { existsSync, statSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { loadBackbone } from '../backbone.js';
import { defaultPreprocess } from '../image/options.js';
import { readSafetensors, writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { exportHfFolder } from '../model/hf-export.js';
import { CxformerError } from '../native/load.js';

/** The newest checkpoint of a run folder, or the file itself. */
export async function checkpointOf(source: string): Promise<string> {
  const p = path.resolve(source);
  if (!existsSync(p)) throw new CxformerError('CXF_INPUT', `${source}: no such run folder or checkpoint`);
  if (statSync(p).isFile()) return p;
  const dir = existsSync(path.join(p, 'checkpoints')) ? path.join(p, 'checkpoints') : p;
  const files = (await readdir(dir)).filter((f) => /^ckpt-\d+\.safetensors$/.test(f)).sort();
  const last = files[files.length - 1];
  if (!last) throw new CxformerError('CXF_INPUT', `${source}: no checkpoints (expected ${dir}/ckpt-<iteration>.safetensors)`);
  return path.join(dir, last);
}

/** Writes the export folder and returns it. */
export async function exportRun(source: string, outDir: string, opts: { dtype?: 'f32' | 'bf16' | 'f16' } = {}): Promise<string> {
  const ckpt = await checkpointOf(source);
  const model = await loadBackbone({ weights: ckpt });
  const run = JSON.parse(model.resolved.header?.metadata?.cxformer_run_config ?? 'null') as {
    crops?: { global_crops_size?: number };
    data?: { equalize?: boolean };
  } | null;
  const size = run?.crops?.global_crops_size ?? model.config.img_size;
  // The evaluation transform that matches the training data: gray, equalised as trained, shorter side = the
  // global crop size, centre crop.
  // config.json typed as transformers declares it, and a README.md with the transformers preprocessing recipe.
  await exportHfFolder(model, {
    out: outDir,
    dtype: opts.dtype ?? 'f32',
    preprocess: { ...defaultPreprocess, equalize: run?.data?.equalize ?? true, resize: size, crop: size },
    source: `the teacher of ${ckpt}`,
    dinoHead: true,
  });
  // Only the teacher heads are read from the checkpoint (not the student, teacher backbone and optimizer moments).
  const headKey = /^teacher\.((dino|ibot)_head\..+)$/;
  const st = await readSafetensors(ckpt, { select: (name) => headKey.test(name) });
  const heads: Record<string, TensorToWrite> = {};
  for (const [name, t] of st.tensors) {
    const m = headKey.exec(name);
    if (m) heads[m[1] as string] = { dtype: t.dtype, shape: t.shape, data: t.data as Float32Array };
  }
  await writeSafetensors(path.join(outDir, 'dino_head.safetensors'), heads, {
    format: 'pt',
    source: ckpt,
    iteration: st.metadata?.cxformer_iteration ?? '',
  });
  return outDir;
}
