/**
 * `cxformer export`: an HF folder (config.json, model.safetensors, preprocessor_config.json, README.md; with
 * --head or classification weights, a *ForImageClassification folder or backbone + head files:
 * src/model/hf-export.ts) or one original-layout file.
 */
import path from 'node:path';
import { resolveModel } from '../../model/weights.js';
import { CxformerError } from '../../native/load.js';
import { type Args, loadBackboneFromArgs, progress, splitPositionals } from './common.js';

export async function run(a: Args): Promise<number> {
  const { inputs, overrides } = splitPositionals(a.overrides);
  const dtype = a.dtype as 'f32' | 'bf16' | 'f16';
  if (a.format === 'llava-hf') {
    // A LLaVA run of finetune --task report --decoder llm: its last stage's model, as transformers' folder.
    const { exportLlavaRun } = await import('../../llava/export.js');
    if (inputs[0] === undefined) throw new CxformerError('CXF_ARG', '--format llava-hf exports a LLaVA run folder of cxformer finetune --task report --decoder llm.\nExample usage: cxformer export runs/llava --format llava-hf --out exported-llava/');
    const r = await exportLlavaRun(inputs[0], path.resolve(String(a.out)), { dtype });
    progress(false).done(`export: ${r.source} -> ${r.out} (LlavaForConditionalGeneration, ${dtype}: ${r.files.join(', ')})`);
    return 0;
  }
  if (inputs[0] !== undefined) {
    // A training run or checkpoint: teacher backbone (HF) + dino_head.safetensors.
    const { exportRun, checkpointOf } = await import('../../train/export.js');
    const ckpt = await checkpointOf(inputs[0]);
    const out = path.resolve(String(a.out));
    await exportRun(ckpt, out, { dtype });
    progress(false).done(`export: teacher of ${ckpt} -> ${out} (config.json, model.safetensors, preprocessor_config.json, dino_head.safetensors, README.md)`);
    return 0;
  }
  const resolved = await resolveModel({ weights: a.weights as string | undefined, arch: a.arch as string | undefined, overrides });
  const out = path.resolve(String(a.out));
  if (a.format === 'original') {
    if (!out.endsWith('.safetensors')) throw new CxformerError('CXF_ARG', `--out ${a.out}: --format original writes one file; expected a name ending in .safetensors`);
    if (a.head) throw new CxformerError('CXF_ARG', `--head ${a.head}: the original DINOv2 layout has no classifier; export with --format hf (the default)`);
    const prefix = resolved.layout?.prefix ?? '';
    const classifier = resolved.header ? [...resolved.header.tensors.keys()].filter((n) => !n.startsWith(prefix) && n.startsWith('classifier.')) : [];
    if (classifier.length && !a['backbone-only']) {
      throw new CxformerError(
        'CXF_ARG',
        `--weights ${a.weights}: holds a classifier (${classifier.join(', ')}), which the original DINOv2 layout has no place for; export --format hf to keep it, or give --backbone-only to drop it`,
      );
    }
  }
  const model = await loadBackboneFromArgs(a, resolved);
  const from = resolved.weights ? resolved.weights.file : `random ${a.arch} (seed ${a.seed})`;
  if (a.format === 'hf') {
    const { exportHfFolder } = await import('../../model/hf-export.js');
    const r = await exportHfFolder(model, {
      out,
      dtype,
      ...(a.head ? { head: path.resolve(String(a.head)) } : {}),
      backboneOnly: Boolean(a['backbone-only']),
      source: from,
    });
    for (const n of r.notes) process.stderr.write(`export: ${n}\n`);
    progress(false).done(`export: ${from} -> ${out} (${r.architecture}, ${dtype}: ${r.files.join(', ')})`);
  } else {
    await model.save(out, { layout: 'original', dtype });
    progress(false).done(`export: ${from} -> ${out} (original, ${dtype})`);
  }
  return 0;
}
