/**
 * `cxformer finetune --task segmentation` (train + evaluate a segmentation head, src/segment/train.ts) and
 * `cxformer evaluate --task segmentation` (a saved model on a split, src/segment/evaluate.ts).
 *
 * The finetune options shared with classification (`--epochs`, `--lr`, `--batch-size`) have no parser defaults:
 * for segmentation, values not given on the command line or in the `--config` file take the segmentation defaults
 * of configs/downstream/defaults.json (docs/recipe.md §5.2: 5 epochs, lr 5e-3, batch 64).
 */
import path from 'node:path';
import { SEGMENTATION } from '../../config/downstream.js';
import type { ChexmaskSource, DatasetSpec } from '../../datasets/index.js';
import { CxformerError } from '../../native/load.js';
import type { MaskSource } from '../../segment/data.js';
import type { SegConfig } from '../../segment/native.js';
import { type Args, datasetSpec, list, onInterrupt, preprocessOverrides, progress, type Progress, splitPositionals, withLibraryProgress } from './common.js';
import { reportAtEnd } from './report.js';


/**
 * The value of an option that classification shares (`--epochs`, `--lr`, `--batch-size`): the value given (command
 * line or --config), else the segmentation default of configs/downstream/defaults.json. The parser declares no
 * defaults for them, so "not given" is simply undefined.
 */
export function segOption(a: Args, name: 'epochs' | 'lr' | 'batch-size'): number {
  const v = a[name];
  if (v !== undefined) return Number(v);
  return name === 'batch-size' ? SEGMENTATION.batchSize : SEGMENTATION[name];
}

/** The dataset of a segmentation run (csv: images only; the masks come from --masks). */
function segmentationData(a: Args, split?: string): DatasetSpec {
  return datasetSpec(a, { ...(split ? { split } : {}), csvHint: `${a['path-column']} and ${a['split-column']} columns, and --masks <CheXmask-style table>; or give --dataset mimic|chexpert|nih|padchest|vindr with --masks-root <CheXmask folder>` });
}

const SOURCES: readonly ChexmaskSource[] = ['mimic', 'chexpert', 'nih', 'padchest', 'vindr', 'csv'];

function maskSource(a: Args): MaskSource {
  const dataset = String(a.dataset);
  const source = (a['masks-source'] ?? (dataset === 'csv' ? 'csv' : dataset)) as ChexmaskSource;
  if (!SOURCES.includes(source)) {
    throw new CxformerError('CXF_ARG', `segmentation: CheXmask has no table for dataset '${dataset}'; give --masks-source (${SOURCES.join(', ')}) and --masks <table>`);
  }
  const root = path.resolve(String(a['masks-root'] ?? a.root));
  return {
    source,
    root,
    ...(a.masks !== undefined ? { csv: String(a.masks) } : {}),
    ...(a['min-dice-rca'] !== undefined ? { minDiceRca: Number(a['min-dice-rca']) } : {}),
  };
}

function backbone(a: Args) {
  const { overrides } = splitPositionals(a.overrides);
  return {
    ...(a.weights !== undefined ? { weights: String(a.weights) } : {}),
    ...(a.arch !== undefined ? { arch: String(a.arch) } : {}),
    overrides,
    device: String(a.device),
    ...(a.threads !== undefined ? { threads: Number(a.threads) } : {}),
    seed: Number(a.seed ?? 0),
  };
}

function segConfig(a: Args, lr: number): SegConfig {
  return {
    head: (a['seg-head'] ?? 'linear') as 'linear' | 'progressive',
    lr,
    ...(a['seg-layers'] !== undefined ? { layers: (list(a['seg-layers']) ?? []).map(Number) } : {}),
    ...(a['seg-hidden'] !== undefined ? { hidden: Number(a['seg-hidden']) } : {}),
    unfreeze: Boolean(a['seg-unfreeze']),
    ...(a['seg-backbone-lr'] !== undefined ? { backboneLr: Number(a['seg-backbone-lr']) } : {}),
    ...(a['seg-weight-decay'] !== undefined ? { weightDecay: Number(a['seg-weight-decay']) } : {}),
    ...(a['seg-precision'] !== undefined ? { precision: a['seg-precision'] as 'f32' | 'bf16' } : {}),
    seed: Number(a.seed ?? 0),
  };
}

/**
 * The library's log lines for the CLI: `predict 8/120` (one per predicted batch, src/segment/evaluate.ts) becomes
 * the progress line with an ETA; every other line is printed.
 */
function logTo(bar: Progress, what: string) {
  return (m: string) => {
    const c = /^predict (\d+)\/(\d+)$/.exec(m);
    if (c) bar.update(`${what}: predict`, Number(c[1]), Number(c[2]));
    else bar.done(m);
  };
}

const fmt = (v: number | undefined | null) => (v === undefined || v === null ? 'n/a' : v.toFixed(4));

export async function run(a: Args): Promise<number> {
  const { trainSegmentation } = await import('../../segment/train.js');
  const quiet = Boolean(a.quiet);
  const log = progress(quiet);
  // Ctrl-C: stop after the current step with a mid-epoch checkpoint; a second Ctrl-C quits at once.
  const interrupt = onInterrupt(() => log.done('Ctrl-C: stopping after the current step (press again to quit now)'));
  const res = await withLibraryProgress(log, 'finetune', () => trainSegmentation({
    signal: interrupt.signal,
    ...(a['checkpoint-steps'] !== undefined ? { checkpointSteps: Number(a['checkpoint-steps']) } : {}),
    backbone: backbone(a),
    dataset: segmentationData(a),
    masks: maskSource(a),
    preprocess: preprocessOverrides(a),
    seg: segConfig(a, segOption(a, 'lr')),
    epochs: segOption(a, 'epochs'),
    batchSize: segOption(a, 'batch-size'),
    ...(a['seg-warmup-epochs'] !== undefined ? { warmupEpochs: Number(a['seg-warmup-epochs']) } : {}),
    augment: { ...(a['seg-hflip'] !== undefined ? { hflipP: Number(a['seg-hflip']) } : {}), ...(a['seg-augment'] === false ? { affineP: 0, jitterP: 0 } : {}) },
    seed: Number(a.seed ?? 0),
    ...(a['seg-max-train'] !== undefined ? { maxTrain: Number(a['seg-max-train']) } : {}),
    out: String(a.out),
    bootstrap: Number(a.bootstrap),
    overlays: Number(a.overlays ?? SEGMENTATION.overlays),
    ...(a['eval-batch-size'] !== undefined ? { evalBatchSize: Number(a['eval-batch-size']) } : {}),
    force: Boolean(a.force),
    ...(a.tensorboard !== undefined ? { tensorboard: Boolean(a.tensorboard) } : {}),
    log: logTo(log, 'finetune'),
    progress: (m, done, total, key) => log.update(m, done, total, key),
  })).finally(() => interrupt.dispose());
  if (res.interrupted) return 130;
  // Data parallel: rank 0 alone writes the folder.
  if (res.rank === 0) await reportAtEnd(String(a.out), (msg) => log.done(msg));
  if (res.evaluation) {
    const p = res.evaluation.metrics.pooled;
    log.done(`finetune (segmentation): Dice lungs ${fmt(p.lungs)}, heart ${fmt(p.heart)}, dice_avg ${fmt(p.dice_avg)}; report ${res.evaluation.files.report}`);
  }
  return 0;
}

export async function evaluate(a: Args): Promise<number> {
  const { loadSegmenter } = await import('../../segment/train.js');
  const { loadSegRecords, loadSamples } = await import('../../segment/data.js');
  const { evaluateSamples } = await import('../../segment/evaluate.js');
  const log = progress(Boolean(a.quiet));
  const { model, settings } = await loadSegmenter(String(a.head), backbone(a));
  const split = String(a.split ?? 'test');
  const recs = await loadSegRecords(segmentationData(a, split), maskSource(a));
  // The run's preprocessing, with the flags given here on top.
  const { resolvePreprocessOptions } = await import('../../image/options.js');
  const pre = resolvePreprocessOptions({ ...(settings?.preprocess ?? {}), ...preprocessOverrides(a) });
  log.update('evaluate: loading', 0, recs.all.length);
  const samples = await loadSamples(recs.all, pre, (d, t) => log.update('evaluate: loading', d, t));
  const res = await withLibraryProgress(log, 'evaluate', () => evaluateSamples(model, samples, {
    out: String(a.out),
    bootstrap: Number(a.bootstrap),
    seed: Number(a.seed ?? 0),
    overlays: a['overlay-ids'] !== undefined ? (list(a['overlay-ids']) ?? []) : Number(a.overlays ?? SEGMENTATION.overlays),
    batchSize: Number(a['eval-batch-size'] ?? 8),
    norm: pre,
    title: `Segmentation evaluation (${split} split)`,
    log: logTo(log, 'evaluate'),
  }));
  await reportAtEnd(String(a.out), (msg) => log.done(msg));
  const p = res.metrics.pooled;
  log.done(`evaluate (segmentation): Dice lungs ${fmt(p.lungs)}, heart ${fmt(p.heart)}, dice_avg ${fmt(p.dice_avg)}; ${res.files.metrics}, ${res.files.report}`);
  return 0;
}
