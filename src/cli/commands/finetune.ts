/** `cxformer finetune` (linear probe) and `cxformer evaluate`. */
import type { DatasetSpec } from '../../datasets/index.js';
import { CxformerError } from '../../native/load.js';
import { type Args, preprocessOverrides, progress, splitPositionals } from './common.js';

const list = (v: unknown) => (v === undefined ? undefined : String(v).split(',').map((s) => s.trim()).filter(Boolean));

function datasetSpec(a: Args, classes: string[], split?: string): DatasetSpec {
  const name = String(a.dataset);
  const common = {
    root: String(a.root),
    ...(a.views !== undefined ? { views: list(a.views) } : {}),
    ...(split ? { split } : {}),
  };
  if (name === 'csv') {
    if (a.manifest === undefined) {
      throw new CxformerError('CXF_ARG', `--dataset csv needs --manifest <file.csv> (relative to --root ${a.root}) with ${a['path-column']}, ${a['split-column']} and the label columns; or give --dataset chexpert|mimic|nih|padchest|brax|vindr|rsna`);
    }
    return {
      name: 'csv',
      ...common,
      manifest: String(a.manifest ?? ''),
      pathColumn: String(a['path-column']),
      patientColumn: String(a['patient-column']),
      splitColumn: String(a['split-column']),
      labelColumns: classes,
    } as unknown as DatasetSpec;
  }
  return { name, ...common } as unknown as DatasetSpec;
}

function backbone(a: Args) {
  const { overrides } = splitPositionals(a.overrides);
  return {
    weights: a.weights as string | undefined,
    arch: a.arch as string | undefined,
    overrides,
    device: String(a.device),
    threads: a.threads as number | undefined,
    seed: Number(a.seed),
  };
}

function policy(a: Args) {
  const p: Record<string, string> = {};
  if (a.uncertain) p.uncertain = String(a.uncertain);
  if (a.blank) p.blank = String(a.blank);
  return Object.keys(p).length ? p : undefined;
}

export async function run(a: Args): Promise<number> {
  if (a.task === 'segmentation') return (await import('./segment.js')).run(a);
  const { linearProbe } = await import('../../finetune/classify.js');
  const classes = list(a.classes) ?? [];
  const log = progress(false);
  const res = await linearProbe({
    backbone: backbone(a),
    dataset: datasetSpec(a, classes),
    classes,
    ...(policy(a) ? { policy: policy(a) } : {}),
    features: { clsLayers: Number(a['cls-layers']), avgpool: Boolean(a.avgpool), batchSize: Number(a['batch-size']), preprocess: preprocessOverrides(a) },
    probe: {
      epochs: Number(a.epochs),
      lr: Number(a.lr),
      batchSize: Number(a['head-batch-size']),
      selectBest: a['select-best'] as 'valAuroc' | 'valLoss' | 'last',
      patience: Number(a.patience),
      ...(a.hidden ? { hidden: (list(a.hidden) ?? []).map(Number) } : {}),
    },
    out: String(a.out),
    bootstrap: Number(a.bootstrap),
    log: (m) => log.done(m),
  });
  const m = res.metrics as unknown as { macro?: { auroc?: { value: number | null } } };
  log.done(`finetune: macro AUROC ${m.macro?.auroc?.value ?? 'n/a'}; report ${res.files.report}`);
  return 0;
}

export async function evaluate(a: Args): Promise<number> {
  if (a.task === 'segmentation') return (await import('./segment.js')).evaluate(a);
  const { evaluateHead } = await import('../../finetune/classify.js');
  const { loadHead } = await import('../../finetune/classify.js');
  const classes = (await loadHead(String(a.head))).classes;
  const res = await evaluateHead({
    backbone: backbone(a),
    head: String(a.head),
    dataset: datasetSpec(a, classes, String(a.split ?? 'test')),
    ...(policy(a) ? { policy: policy(a) } : {}),
    out: String(a.out),
    bootstrap: Number(a.bootstrap),
    preprocess: preprocessOverrides(a),
  });
  progress(false).done(`evaluate: ${res.files.metrics}, ${res.files.report}`);
  return 0;
}
