/** `cxformer finetune` (linear probe or full fine-tuning) and `cxformer evaluate`. */
import { CLASSIFICATION } from '../../config/downstream.js';
import type { DatasetSpec } from '../../datasets/index.js';
import { CxformerError } from '../../native/load.js';
import { type Args, datasetSpec, formatDuration, list, onInterrupt, preprocessOverrides, progress, splitPositionals, withLibraryProgress } from './common.js';
import { reportAtEnd } from './report.js';

/** The labelled dataset of a classification run (csv: the class names are its label columns). */
function classificationData(a: Args, classes: string[], split?: string): DatasetSpec {
  return datasetSpec(a, {
    ...(split ? { split } : {}),
    labelColumns: classes,
    csvHint: `${a['path-column']}, ${a['split-column']} and the label columns; or give --dataset chexpert|mimic|nih|padchest|brax|vindr|rsna`,
  });
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

function numbers(name: string, v: unknown): number[] | undefined {
  const l = list(v);
  if (l === undefined) return undefined;
  const n = l.map(Number);
  if (n.some((x) => !Number.isFinite(x))) throw new CxformerError('CXF_ARG', `--${name}: expected comma-separated numbers, got '${v}'`);
  return n;
}

/** A numeric option's value, undefined when it was not given (command line or --config). */
const num = (a: Args, name: string): number | undefined => (a[name] === undefined ? undefined : Number(a[name]));

/** `o` without its undefined fields. */
const defined = <T extends object>(o: T): T => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;


/** `--mode full`: fine-tunes backbone + head with a progress bar; Ctrl-C saves the state (re-run to resume). */
async function runFull(a: Args, classes: string[]): Promise<number> {
  const { fullFinetune } = await import('../../finetune/full.js');
  const quiet = Boolean(a.quiet);
  const bar = progress(quiet);
  const interrupt = onInterrupt(() => bar.done('interrupt: saving the fine-tuning state… (Ctrl-C again to quit at once)'));
  let lastLine = 0;
  try {
    // (The evaluation at the end extracts features and bootstraps: their progress on the same line.)
    const res = await withLibraryProgress(bar, 'finetune', () => fullFinetune({
      backbone: backbone(a),
      dataset: classificationData(a, classes),
      classes,
      labelType: a['label-type'] as 'multilabel' | 'binary' | 'multiclass',
      ...(policy(a) ? { policy: policy(a) } : {}),
      features: { clsLayers: num(a, 'cls-layers'), avgpool: a.avgpool as boolean | undefined },
      preprocess: preprocessOverrides(a),
      // Options not given (command line or --config) are left out: fullFinetune takes them from
      // configs/downstream/defaults.json.
      train: {
        epochs: num(a, 'epochs'),
        batchSize: num(a, 'head-batch-size'),
        headLr: num(a, 'lr'),
        backboneLr: num(a, 'backbone-lr'),
        layerwiseDecay: num(a, 'layer-decay'),
        patchEmbedLrMult: num(a, 'patch-embed-lr-mult'),
        weightDecay: num(a, 'weight-decay'),
        warmupEpochs: num(a, 'warmup-epochs'),
        schedule: a.schedule as 'constant' | 'cosine' | undefined,
        clipGrad: num(a, 'clip-grad'),
        ...(a.precision !== undefined ? { precision: a.precision as 'f32' | 'bf16' } : {}),
        ...(a['drop-path'] !== undefined ? { dropPath: Number(a['drop-path']) } : {}),
        ...(a['crop-scale'] !== undefined ? { cropScale: numbers('crop-scale', a['crop-scale']) as [number, number] } : {}),
        ...(a.augment !== undefined ? { augment: a.augment as 'spec' | 'light' | 'none' } : {}),
        seed: num(a, 'train-seed'),
        ...(a.hidden ? { hidden: numbers('hidden', a.hidden) } : {}),
        ...(a['pos-weight'] !== undefined ? { posWeight: numbers('pos-weight', a['pos-weight']) } : {}),
        selectBest: a['select-best'] as 'valAuroc' | 'valAuprc' | 'valLoss' | 'last' | undefined,
        patience: num(a, 'patience'),
        evalBatchSize: num(a, 'batch-size'),
        checkpointSteps: num(a, 'checkpoint-steps'),
      },
      out: String(a.out),
      bootstrap: Number(a.bootstrap),
      force: Boolean(a.force),
      ...(a.tensorboard !== undefined ? { tensorboard: Boolean(a.tensorboard) } : {}),
      signal: interrupt.signal,
      onEvent: (e) => {
        if (e.kind === 'step' && e.totalSteps) {
          const done = (e.step ?? 0) + 1;
          // Without a terminal: one line every 2 s at most (and the last step), as `train`.
          if (!process.stderr.isTTY && Date.now() - lastLine < 2000 && done !== e.totalSteps) return;
          lastLine = Date.now();
          const w = 24;
          const fill = Math.round((done / e.totalSteps) * w);
          bar.update(
            `[${'#'.repeat(fill)}${'.'.repeat(w - fill)}] step ${done}/${e.totalSteps} epoch ${e.epoch} loss ${e.loss?.toFixed(4)} lr ${e.lr?.toExponential(2)} ` +
              `${e.imagesPerS?.toFixed(1)} img/s ETA ${formatDuration(e.etaSeconds ?? NaN)}`,
          );
        } else if (e.kind === 'log' && e.message) bar.done(e.message);
      },
    }));
    if (res.interrupted) {
      if (res.rank === 0) bar.done(`finetune: interrupted; state in ${res.out}/checkpoints — re-run the same command to resume`);
      return 130;
    }
    // Data parallel: rank 0 writes the outputs and evaluates; the other ranks are done after training.
    if (res.rank > 0) return 0;
    await reportAtEnd(res.out, (msg) => bar.done(msg));
    const m = res.report?.metrics as unknown as { macro?: { auroc?: { value: number | null } }; accuracy?: { value: number | null } } | undefined;
    bar.done(
      `finetune: ${res.report?.split} macro AUROC ${m?.macro?.auroc?.value ?? 'n/a'}${m?.accuracy ? `, accuracy ${m.accuracy.value ?? 'n/a'}` : ''} (best epoch ${res.bestEpoch ?? 'last'}); ` +
        `model ${res.bestModel}, head ${res.bestHead}; report ${res.report?.files.report}`,
    );
    return 0;
  } finally {
    interrupt.dispose();
  }
}

export async function run(a: Args): Promise<number> {
  if (a.task === 'segmentation') return (await import('./segment.js')).run(a);
  if (a.task === 'report') return (await import('./report-task.js')).run(a);
  const classes = list(a.classes) ?? [];
  if (a.mode === 'full') return runFull(a, classes);
  const { linearProbe } = await import('../../finetune/classify.js');
  const log = progress(Boolean(a.quiet));
  const res = await withLibraryProgress(log, 'finetune', () => linearProbe({
    backbone: backbone(a),
    dataset: classificationData(a, classes),
    classes,
    labelType: a['label-type'] as 'multilabel' | 'binary' | 'multiclass',
    ...(policy(a) ? { policy: policy(a) } : {}),
    features: {
      clsLayers: num(a, 'cls-layers') ?? CLASSIFICATION.clsLayers,
      avgpool: (a.avgpool as boolean | undefined) ?? CLASSIFICATION.avgpool,
      batchSize: num(a, 'batch-size') ?? CLASSIFICATION.batchSize,
      preprocess: preprocessOverrides(a),
    },
    // Options not given are left out: linearProbe takes them from configs/downstream/defaults.json.
    probe: defined({
      epochs: num(a, 'epochs'),
      lr: num(a, 'lr'),
      batchSize: num(a, 'head-batch-size'),
      selectBest: a['select-best'] as 'valAuroc' | 'valLoss' | 'last' | undefined,
      patience: num(a, 'patience'),
      seed: num(a, 'train-seed'),
      weightDecay: num(a, 'weight-decay'),
      warmupEpochs: num(a, 'warmup-epochs'),
      schedule: a.schedule as 'constant' | 'cosine' | undefined,
      clipGrad: num(a, 'clip-grad'),
      ...(a.hidden ? { hidden: numbers('hidden', a.hidden) } : {}),
    }),
    out: String(a.out),
    bootstrap: Number(a.bootstrap),
    ...(a.tensorboard !== undefined ? { tensorboard: Boolean(a.tensorboard) } : {}),
    log: (m) => log.done(m),
  }));
  // Data parallel: only rank 0 fits the head and reports.
  if (!res) return 0;
  await reportAtEnd(String(a.out), (msg) => log.done(msg));
  const m = res.metrics as unknown as { macro?: { auroc?: { value: number | null } } };
  log.done(`finetune: macro AUROC ${m.macro?.auroc?.value ?? 'n/a'}; report ${res.files.report}`);
  return 0;
}

export async function evaluate(a: Args): Promise<number> {
  if (a.task === 'segmentation') return (await import('./segment.js')).evaluate(a);
  if (a.task === 'report') return (await import('./evaluate-report.js')).run(a);
  const { evaluateHead, loadHead } = await import('../../finetune/classify.js');
  const { selectClasses } = await import('../../eval/classes.js');
  // --classes: report only those of the head's classes (checked here, before LibTorch loads); default all.
  const head = await loadHead(String(a.head));
  const wanted = list(a.classes);
  const classes = selectClasses(head.classes, wanted, String(a.head), head.head.config.task).map((i) => head.classes[i] as string);
  const log = progress(Boolean(a.quiet));
  const res = await withLibraryProgress(log, 'evaluate', () => evaluateHead({
    backbone: backbone(a),
    head: String(a.head),
    ...(wanted ? { classes } : {}),
    dataset: classificationData(a, classes, String(a.split ?? 'test')),
    ...(policy(a) ? { policy: policy(a) } : {}),
    out: String(a.out),
    bootstrap: Number(a.bootstrap),
    preprocess: preprocessOverrides(a),
  }));
  await reportAtEnd(String(a.out), (msg) => log.done(msg));
  // The result is printed even with -q (as finetune's), which silences the progress lines only.
  progress(false).done(`evaluate: ${res.files.metrics}, ${res.files.report}`);
  return 0;
}
