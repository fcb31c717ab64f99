/**
 * Probes of the teacher during pretraining (issue #5): at each checkpoint, the teacher backbone (read from the
 * checkpoint file just written) embeds a labelled CSV's train and valid splits; a weighted kNN classifier and a
 * linear probe are fitted on train and scored on valid (macro AUROC). Representation collapse shows up as both
 * falling towards 0.5.
 */
import path from 'node:path';
import { loadBackbone } from '../backbone.js';
import type { PretrainConfig } from '../config/pretrain.js';
import type { DatasetSpec } from '../datasets/index.js';
import { knnScores } from '../eval/knn.js';
import { multiLabelRocAuc } from '../eval/metrics.js';
import { labelled, subset, type Labelled } from '../finetune/classify.js';
import { extractFeatures } from '../finetune/features.js';
import { fitLinearProbe, predictProbe } from '../finetune/probe.js';

export interface ProbeResult {
  probe_knn_macro_auroc: number | null;
  probe_linear_macro_auroc: number | null;
  probe_train_images: number;
  probe_valid_images: number;
  probe_seconds: number;
}

export interface Prober {
  run(checkpoint: string): Promise<ProbeResult>;
}

/** Loads the probe data once; `run` scores a checkpoint. */
export async function createProber(c: PretrainConfig, dataRoot: string): Promise<Prober> {
  const p = c.probe;
  const root = p.root ?? dataRoot;
  const spec = {
    name: 'csv',
    root,
    manifest: p.manifest,
    pathColumn: p.path_column,
    patientColumn: p.patient_column,
    splitColumn: p.split_column,
    labelColumns: p.classes,
  } as unknown as DatasetSpec;
  const all = await labelled(spec, p.classes);
  const C = p.classes.length;
  const cap = (l: Labelled) => subset(l, ((count) => () => count++ < p.max_images)(0), C);
  const train = cap(subset(all, (r) => r.split === 'train', C));
  const valid = cap(subset(all, (r) => r.split === 'valid' || r.split === 'test', C));
  if (train.records.length < 2 || valid.records.length < 2) {
    throw new Error(`probe: ${path.join(root, p.manifest)} needs train and valid rows in '${p.split_column}', found ${train.records.length} and ${valid.records.length}`);
  }
  const size = c.crops.global_crops_size;
  const features = { clsLayers: 1, avgpool: true, preprocess: { grayscale: true, equalize: c.data.equalize, resize: size, crop: size } };
  const labels = (l: Labelled) => l.targets.map((v, i) => (l.mask[i] ? v : Number.NaN));
  return {
    async run(checkpoint: string): Promise<ProbeResult> {
      const t0 = performance.now();
      const model = await loadBackbone({ weights: checkpoint, threads: c.compute.threads || undefined, device: c.compute.device });
      const ft = await extractFeatures(model, train.records.map((r) => r.path), features);
      const fv = await extractFeatures(model, valid.records.map((r) => r.path), features);
      const macro = (scores: Float32Array) => multiLabelRocAuc({ numClasses: C, scores, labels: labels(valid) }).macro.value;
      const knn = macro(knnScores(ft, train.targets, train.mask, C, fv, { k: p.k, temperature: p.temperature }));
      const fit = await fitLinearProbe({
        features: ft,
        targets: { data: train.targets, shape: [train.records.length, C] },
        mask: train.mask,
        config: { epochs: p.linear_epochs, lr: p.linear_lr, batchSize: 32, schedule: 'cosine', seed: c.seed },
        device: c.compute.device,
      });
      const lin = macro(predictProbe(fit.head, fv).data);
      return {
        probe_knn_macro_auroc: knn,
        probe_linear_macro_auroc: lin,
        probe_train_images: train.records.length,
        probe_valid_images: valid.records.length,
        probe_seconds: (performance.now() - t0) / 1000,
      };
    },
  };
}
