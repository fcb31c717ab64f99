/**
 * Classification on a frozen backbone (linear probe; docs/recipe.md §5.1 and the DINOv2 linear protocol): features are
 * computed once (src/finetune/features.ts), a head is trained natively (src/finetune/probe.ts) on the train
 * split with the validation split monitored, and the test split (or validation when there is none) is
 * evaluated with per-class and macro AUROC/AUPRC, bootstrap CIs, curves and predictions (src/eval).
 * Outputs in `out/`: features-<split>.safetensors, head.safetensors, history.jsonl (and its numbers for TensorBoard:
 * events.out.tfevents.*, src/run/tensorboard.ts; `tensorboard: false` turns them off), eval/ (report).
 *
 * Data parallel (docs/distributed.md, "cxformer finetune (linear mode)"): started as several ranks (cxformer launch,
 * torchrun, Slurm) the ranks join a process group, each rank computes the features of a contiguous share of every
 * split, the shares are all-gathered (every rank then holds the features a single process computes, in order), and
 * rank 0 alone fits the head, writes the folder and evaluates, as one process, after the other ranks left.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { loadBackbone, threadCount, type Backbone } from '../backbone.js';
import { loadDataset, type CxrRecord, type DatasetSpec, type LabelPolicy } from '../datasets/index.js';
import { pickColumns, selectClasses } from '../eval/classes.js';
import { writeEvaluationReport, type EvaluationReport } from '../eval/report.js';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import { rankThreads, type DistEnv } from '../distributed/env.js';
import { resolvePreprocessOptions } from '../image/options.js';
import { allOrNothing, type DistSettings, type ProcessGroup, withProcessGroup } from '../distributed/group.js';
import { share } from '../distributed/shard.js';
import { call, CxformerError } from '../native/load.js';
import { extractFeatures, type FeatureOptions } from './features.js';
import { annotateReport, checkLabelType, multiclassAccuracy, nativeTargets, type LabelType } from './labels.js';
import { fitLinearProbe, predictProbe, type ProbeConfig, type ProbeHead } from './probe.js';
import { CLASSIFICATION } from '../config/downstream.js';
import { withRunFolder } from '../run/folder.js';
import { EventFile } from '../run/tensorboard.js';

export interface BackboneChoice {
  weights?: string;
  arch?: string;
  overrides?: string[];
  device?: string;
  threads?: number;
  seed?: number;
}

export interface LinearProbeOptions {
  backbone: BackboneChoice;
  /** Dataset with labels (adapters or csv); its records' `split` decides train / valid / test. */
  dataset: DatasetSpec;
  classes: string[];
  /** multilabel (default), binary (one class) or multiclass (one-hot, mutually exclusive classes). */
  labelType?: LabelType;
  policy?: Partial<LabelPolicy>;
  features?: FeatureOptions;
  probe?: ProbeConfig;
  out: string;
  /** Bootstrap resamples of the report (0 = point estimates). @default 1000 */
  bootstrap?: number;
  /** TensorBoard event files beside history.jsonl; CXFORMER_TENSORBOARD=0 turns them off regardless. @default true (configs/downstream/defaults.json) */
  tensorboard?: boolean;
  log?: (msg: string) => void;
  /**
   * Data parallel feature extraction, when the process was started as one of several ranks (torchrun / Slurm /
   * cxformer launch variables): seconds to wait for the other ranks (default 600) and the backend (default auto).
   */
  dist?: DistSettings;
}

/** The report of the held-out split with the head's training history; `rank` / `worldSize` say which process. */
export type LinearProbeResult = EvaluationReport & { history: unknown[]; rank: number; worldSize: number };

export interface Labelled {
  records: CxrRecord[];
  targets: Float32Array;
  mask: Uint8Array;
}

export async function labelled(spec: DatasetSpec, classes: string[], policy?: Partial<LabelPolicy>): Promise<Labelled> {
  const ds = await loadDataset({ ...spec, classes, ...(policy ? { policy } : {}) } as DatasetSpec);
  if (!ds.targets || !ds.mask) throw new CxformerError('CXF_INPUT', 'the dataset returned no targets for the class list');
  return { records: ds.records, targets: ds.targets, mask: ds.mask };
}

export function subset(l: Labelled, keep: (r: CxrRecord) => boolean, C: number): Labelled {
  const idx = l.records.map((r, i) => (keep(r) ? i : -1)).filter((i) => i >= 0);
  const targets = new Float32Array(idx.length * C);
  const mask = new Uint8Array(idx.length * C);
  idx.forEach((i, k) => {
    targets.set(l.targets.subarray(i * C, (i + 1) * C), k * C);
    mask.set(l.mask.subarray(i * C, (i + 1) * C), k * C);
  });
  return { records: idx.map((i) => l.records[i] as CxrRecord), targets, mask };
}

/** Labels as the report wants them: 1 / 0 / NaN (masked). */
export function reportLabels(l: Labelled): Float32Array {
  return l.targets.map((v, i) => (l.mask[i] ? v : Number.NaN));
}

/**
 * Features of a split (written to `file` by rank 0). Data parallel: this rank extracts its contiguous share, the
 * shares are all-gathered (padded to one length), so every rank holds the features of the whole split in order.
 */
async function features(model: Backbone, l: Labelled, o: FeatureOptions, file: string, log: (m: string) => void, pg: ProcessGroup | null) {
  log(`features: ${l.records.length} images → ${file}${pg ? ` (a share on each of ${pg.worldSize} ranks, all-gathered)` : ''}`);
  const paths = l.records.map((r) => r.path);
  let f: { data: Float32Array; shape: [number, number] };
  if (!pg) {
    f = await extractFeatures(model, paths, o);
  } else {
    const n = paths.length;
    const W = pg.worldSize;
    const [lo, hi] = share(n, pg.rank, W);
    const mine = await allOrNothing(pg, `features of ${path.basename(file)}`, () => (hi > lo ? extractFeatures(model, paths.slice(lo, hi), o) : Promise.resolve(null)));
    // The feature width: every rank with a share knows it; a rank with an empty share learns it from the others.
    const widths = await call('gather the feature width', () => pg.allGather(Float32Array.of(mine ? mine.shape[1] : 0)));
    const D = Math.max(...widths.map((w) => w[0] as number));
    const rows = Math.ceil(n / W);
    const buf = new Float32Array(rows * D);
    if (mine) buf.set(mine.data);
    const all = await call(`gather the features of ${path.basename(file)}`, () => pg.allGather(buf));
    const data = new Float32Array(n * D);
    all.forEach((g, r) => {
      const [a, b] = share(n, r, W);
      data.set(g.subarray(0, (b - a) * D), a * D);
    });
    f = { data, shape: [n, D] };
  }
  // Rank 0 writes; every rank learns whether that went well.
  await allOrNothing(pg, `writing ${path.basename(file)}`, async () => {
    if (!pg || pg.rank === 0) await writeSafetensors(file, { features: { dtype: 'F32', shape: f.shape, data: f.data } }, { ids: JSON.stringify(l.records.map((r) => r.id)) });
  });
  return f;
}

/**
 * Writes head.safetensors: tensors `head.<i>.weight` [out, in] / `head.<i>.bias` (Linear layers in order, exact GELU
 * between them); metadata `format` "cxformer-probe-head", `config` (the head config JSON: hidden, task, …), `classes`
 * (JSON list, the output order), `feature_options` ({clsLayers, avgpool}: the feature layout of src/finetune/features.ts),
 * `label_type`, `preprocess` (the resolved preprocessing of the features), `backbone`, `best_epoch`. README "Classification
 * heads and transformers" documents the layout; `cxformer export --head` reads it.
 */
async function saveHead(file: string, head: ProbeHead, meta: Record<string, string>): Promise<void> {
  const tensors: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
  for (const t of head.tensors) tensors[t.name] = { dtype: 'F32', shape: t.shape, data: t.data };
  await writeSafetensors(file, tensors, { format: 'cxformer-probe-head', config: JSON.stringify(head.config), ...meta });
}

/** Reads a head written by {@link linearProbe}. */
export async function loadHead(file: string): Promise<{ head: ProbeHead; classes: string[]; features: FeatureOptions }> {
  const st = await readSafetensors(file);
  const md = st.metadata ?? {};
  if (md.format !== 'cxformer-probe-head') throw new CxformerError('CXF_INPUT', `${file}: not a cxformer classification head (metadata format is ${md.format ?? 'missing'})`);
  const tensors = [...st.tensors.entries()].map(([name, t]) => ({ name, shape: t.shape, data: t.data as Float32Array }));
  return {
    head: { config: JSON.parse(md.config ?? '{}'), tensors } as ProbeHead,
    classes: JSON.parse(md.classes ?? '[]') as string[],
    features: JSON.parse(md.feature_options ?? '{}') as FeatureOptions,
  };
}

async function report(dir: string, head: ProbeHead, f: { data: Float32Array; shape: [number, number] }, l: Labelled, classes: string[], bootstrap: number, title: string, columns?: number[]): Promise<EvaluationReport> {
  const probs = predictProbe(head, f);
  const scores = columns ? pickColumns(probs.data, probs.shape[1] as number, columns) : probs.data;
  return writeClassificationReport(dir, scores, l, classes, (head.config.task ?? 'multilabel') as LabelType, bootstrap, title);
}

/**
 * The evaluation report of probabilities (N, C) on a labelled split (src/eval), with the label type recorded and,
 * for multiclass, the accuracy.
 */
export async function writeClassificationReport(
  dir: string,
  probs: Float32Array,
  l: Labelled,
  classes: string[],
  labelType: LabelType,
  bootstrap: number,
  title: string,
): Promise<EvaluationReport> {
  const rep = await writeEvaluationReport(dir, {
    classes,
    scores: probs,
    labels: reportLabels(l),
    ids: l.records.map((r) => r.id),
    patientIds: l.records.map((r) => r.patient),
    bootstrap: bootstrap > 0 ? { n: bootstrap, seed: 0 } : false,
    title,
  });
  const acc = labelType === 'multiclass' ? multiclassAccuracy(probs, l.targets, l.mask, classes.length) : undefined;
  const m = await annotateReport(rep.files, labelType, acc);
  return { ...rep, metrics: m as unknown as EvaluationReport['metrics'] };
}

/**
 * Trains and evaluates a linear probe; returns the evaluation report of the held-out split. Started as several ranks
 * (torchrun / Slurm / cxformer launch variables) the features are computed data parallel (see the top); only rank 0
 * fits, writes and reports: the other ranks resolve to null once the features are gathered.
 */
export async function linearProbe(o: LinearProbeOptions): Promise<LinearProbeResult | null> {
  checkLabelType(o.labelType ?? 'multilabel', o.classes);
  if ((o.probe?.selectBest as string | undefined) === 'valAuprc') {
    throw new CxformerError('CXF_ARG', '--select-best valAuprc is available with --mode full; the linear mode keeps the best valAuroc, valLoss or the last epoch');
  }
  return withProcessGroup(o.dist, o.backbone.device ?? 'cpu', (env, device, pg) => {
    // The run folder (src/run/folder.ts): rank 0 holds its lock and writes train.log, which also gets every rank's error.
    const folder = { dir: path.resolve(o.out), rank: env.rank, pg, command: 'cxformer finetune --mode linear', report: o.log ?? (() => undefined) };
    return withRunFolder(folder, (run) => probeRanked(o, env, device, pg, (m) => void run.log(m)));
  });
}

async function probeRanked(o: LinearProbeOptions, env: DistEnv, device: string, pg: ProcessGroup | null, log: (m: string) => void): Promise<LinearProbeResult | null> {
  const lead = env.rank === 0;
  const C = o.classes.length;
  const labelType = checkLabelType(o.labelType ?? 'multilabel', o.classes);
  const all = await labelled(o.dataset, o.classes, o.policy);
  const train = subset(all, (r) => r.split === 'train' || r.split === undefined, C);
  const valid = subset(all, (r) => r.split === 'valid', C);
  const test = subset(all, (r) => r.split === 'test', C);
  const held = test.records.length ? test : valid;
  if (!train.records.length || !held.records.length) {
    throw new CxformerError(
      'CXF_INPUT',
      `linear probe: need train and valid/test records, found train ${train.records.length}, valid ${valid.records.length}, test ${test.records.length} (give splits in the data, e.g. a Split column, or splitFractions)`,
    );
  }
  log(`data: train ${train.records.length}, valid ${valid.records.length}, test ${test.records.length}; classes ${o.classes.join(', ')}`);
  if (pg) log(`distributed: ${pg.worldSize} ranks, backend ${pg.backend()}: each rank computes the features of a share of every split; rank 0 fits the head`);
  // Ranks sharing a node share its cores.
  const model = await allOrNothing(pg, 'loading the backbone', () => loadBackbone({ ...o.backbone, device, threads: rankThreads(threadCount(o.backbone.threads), env) }));
  const fo = o.features ?? {};
  const fTrain = await features(model, train, fo, path.join(o.out, 'features-train.safetensors'), log, pg);
  const fValid = valid.records.length ? await features(model, valid, fo, path.join(o.out, 'features-valid.safetensors'), log, pg) : null;
  const fHeld = held === valid && fValid ? fValid : await features(model, held, fo, path.join(o.out, 'features-test.safetensors'), log, pg);
  // The features are everywhere: the other ranks leave (rank 0 hosts the rendezvous store and leaves last); rank 0
  // fits and evaluates alone, as one process.
  await pg?.barrier();
  if (!lead) return null;
  const nt = (l: Labelled) => nativeTargets(labelType, l.targets, l.mask, C, l.records.map((r) => r.id), o.classes);
  const tTrain = nt(train);
  const tValid = fValid ? nt(valid) : null;
  const fit = await fitLinearProbe({
    features: fTrain,
    targets: { data: tTrain.targets, shape: [train.records.length, C] },
    mask: tTrain.mask,
    ...(fValid && tValid ? { val: { features: fValid, targets: { data: tValid.targets, shape: [valid.records.length, C] }, mask: tValid.mask } } : {}),
    // Keep the epoch with the best validation macro AUROC (docs/recipe.md §5.1: best model by val macro_auroc).
    // Every field is sent: what the caller left out comes from configs/downstream/defaults.json.
    config: {
      epochs: CLASSIFICATION.epochs,
      lr: CLASSIFICATION.lr,
      batchSize: CLASSIFICATION.headBatchSize,
      weightDecay: CLASSIFICATION.weightDecay,
      warmupEpochs: CLASSIFICATION.warmupEpochs,
      schedule: CLASSIFICATION.schedule,
      seed: CLASSIFICATION.seed,
      clipGrad: CLASSIFICATION.clipGrad,
      patience: CLASSIFICATION.patience,
      hidden: [...CLASSIFICATION.hidden],
      selectBest: fValid ? ('valAuroc' as const) : ('last' as const),
      ...o.probe,
      task: labelType,
    },
    device,
  });
  log(`head: ${fit.history.length} epochs, kept epoch ${fit.bestEpoch ?? 'last'}${fValid ? ' (best validation macro AUROC)' : ''}`);
  await writeFile(path.join(o.out, 'history.jsonl'), fit.history.map((h) => JSON.stringify(h)).join('\n') + '\n');
  // TensorBoard (src/run/tensorboard.ts): the head's epochs at their optimizer step, in a new events file whose START
  // at step 0 supersedes an earlier run's in this folder (history.jsonl is rewritten too).
  const settings = { backbone: o.backbone, dataset: o.dataset, classes: o.classes, labelType, policy: o.policy ?? null, features: fo, head: fit.head.config, bestEpoch: fit.bestEpoch };
  const tb = (o.tensorboard ?? CLASSIFICATION.tensorboard) ? EventFile.create(path.resolve(o.out), { config: JSON.stringify(settings, null, 2) }) : null;
  for (const h of fit.history) tb?.metrics(h.steps, h, ['steps']);
  await saveHead(path.join(o.out, 'head.safetensors'), fit.head, {
    classes: JSON.stringify(o.classes),
    feature_options: JSON.stringify({ clsLayers: fo.clsLayers ?? CLASSIFICATION.clsLayers, avgpool: fo.avgpool ?? CLASSIFICATION.avgpool }),
    backbone: model.resolved.weights?.file ?? `random:${o.backbone.arch}`,
    best_epoch: String(fit.bestEpoch ?? ''),
    label_type: labelType,
    // The preprocessing the features were computed with (`cxformer export --head` writes it to preprocessor_config.json).
    preprocess: JSON.stringify(resolvePreprocessOptions({ ...model.preprocess, ...fo.preprocess })),
  });
  const rep = await report(path.join(o.out, 'eval'), fit.head, fHeld, held, o.classes, o.bootstrap ?? CLASSIFICATION.bootstrap, `Linear probe (${held === test ? 'test' : 'valid'} split)`);
  return { ...rep, history: fit.history, rank: env.rank, worldSize: env.worldSize };
}

/** Evaluates a saved head on a dataset split with the same backbone. */
export async function evaluateHead(o: {
  backbone: BackboneChoice;
  head: string;
  dataset: DatasetSpec;
  policy?: Partial<LabelPolicy>;
  out: string;
  bootstrap?: number;
  /** Preprocessing on top of the weights' own (use what the head was trained with). */
  preprocess?: FeatureOptions['preprocess'];
  /** Report title. @default 'Evaluation' */
  title?: string;
  /** Evaluate only these of the head's classes, in this order (a multiclass head: all of them). @default all */
  classes?: string[];
}): Promise<EvaluationReport> {
  const h = await loadHead(o.head);
  const columns = selectClasses(h.classes, o.classes, o.head, h.head.config.task);
  const classes = columns.map((i) => h.classes[i] as string);
  const l = await labelled(o.dataset, classes, o.policy);
  if (!l.records.length) throw new CxformerError('CXF_INPUT', 'evaluate: the dataset selection is empty');
  const model = await loadBackbone(o.backbone);
  const f = await extractFeatures(model, l.records.map((r) => r.path), { ...h.features, ...(o.preprocess ? { preprocess: o.preprocess } : {}) });
  return report(o.out, h.head, f, l, classes, o.bootstrap ?? CLASSIFICATION.bootstrap, o.title ?? 'Evaluation', columns);
}
