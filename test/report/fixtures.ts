/**
 * Hand-made run folders for the report page tests, shaped as the trainers write them (src/train/run.ts,
 * src/finetune/full.ts, src/segment/train.ts, src/finetune/classify.ts, src/eval/report.ts,
 * src/segment/evaluate.ts), small enough to reason about: every count below is what the tests expect.
 */
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';

export const PRETRAIN_ITERATIONS = 12;
/** Probe lines of the pretraining fixture (the baseline at iteration 0, then iterations 3, 7, 11). */
export const PRETRAIN_PROBES = 4;
export const FT_EPOCHS = 4;
export const SEG_STEPS = 6;
export const SEG_EPOCHS = 2;
/** A class name that needs escaping in HTML. */
export const NASTY_CLASS = '<b>Effusion & "fluid"</b>';

export async function tempDir(prefix = 'cxf-report-'): Promise<string> {
  return mkdtemp(path.join(tmpdir(), prefix));
}

const jsonl = (rows: object[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';

/** A pretraining run: resolved.yaml, train.log, metrics.jsonl (12 iterations, 3 probe lines, a torn last line). */
export async function pretrainRun(dir: string): Promise<string> {
  await mkdir(path.join(dir, 'checkpoints'), { recursive: true });
  await mkdir(path.join(dir, 'exported'), { recursive: true });
  await writeFile(path.join(dir, 'resolved.yaml'), 'model:\n  arch: vit_small\n  depth: 4\ndino:\n  head_n_prototypes: 2048\ncompute:\n  device: cpu\n  threads: 2\n');
  await writeFile(
    path.join(dir, 'train.log'),
    '2026-01-02T10:00:00.000Z data: 256 images\n2026-01-02T10:01:00.000Z probe at iteration 3\n2026-01-02T10:03:30.500Z exported\n',
  );
  await writeFile(path.join(dir, 'events.out.tfevents.1767348000.testhost.123.0'), '');
  // src/train/run.ts: a fresh run first probes the encoder it starts from (iteration 0, probe_baseline)
  const rows: object[] = [{ iteration: 0, probe_baseline: true, probe_knn_macro_auroc: 0.5, probe_linear_macro_auroc: 0.51, probe_train_images: 208, probe_valid_images: 48, probe_seconds: 30 }];
  for (let it = 0; it < PRETRAIN_ITERATIONS; it++) {
    rows.push({
      iteration: it,
      total_loss: 13 - it * 0.1,
      dino_local_crops_loss: 5.7,
      dino_global_crops_loss: 1.4,
      ibot_loss: 3.8,
      koleo_loss: it === 5 ? null : 2 - it * 0.05,
      teacher_entropy: 7 + it * 0.05,
      teacher_entropy_ratio: 0.9 + it * 0.008,
      grad_norm_backbone: 900 / (it + 1),
      grad_norm_dino_head: 1.5,
      ms_augment: 600,
      ms_teacher: 900,
      ms_backward: 3000,
      lr: it * 1e-5,
      wd: 0.04,
      momentum: 0.992 + it * 0.0005,
      teacherTemp: 0.04,
      images_per_s: 1.2,
    });
    if (it % 4 === 3) rows.push({ iteration: it, probe_knn_macro_auroc: 0.55 + it * 0.01, probe_linear_macro_auroc: 0.52 + it * 0.01, probe_train_images: 208, probe_valid_images: 48, probe_seconds: 30 });
  }
  await writeFile(path.join(dir, 'metrics.jsonl'), jsonl(rows) + '{"iteration":12,"total_lo');
  return dir;
}

/** A classification metrics.json (src/eval/report.ts MetricsJson) with bootstrap medians and CIs. */
export function classificationMetrics(classes: string[] = ['Cardiomegaly', NASTY_CLASS]): object {
  const m = (v: number) => ({ value: v, median: v + 0.001, ci: [v - 0.05, v + 0.04], n_valid: 100, n_skipped: 0 });
  return {
    format: 'cxformer-eval/1',
    n: 60,
    n_patients: 30,
    n_classes: classes.length,
    classes,
    threshold: 0.5,
    n_bootstrap: 100,
    seed: 0,
    bootstrap_unit: 'patient',
    ci_level: 0.95,
    percentile: 'linear',
    per_class: classes.map((c, i) => ({
      class: c,
      n: 60,
      n_pos: 10 + i,
      threshold: 0.5,
      auroc: m(0.8 + i * 0.05),
      auprc: m(0.6),
      sensitivity: { value: 0.7 },
      specificity: { value: 0.9 },
      brier: { value: 0.12 },
      tp: 7,
      fp: 5,
      tn: 45,
      fn: 3,
    })),
    macro: { auroc: { ...m(0.8123), classes }, auprc: { ...m(0.6), classes }, brier: { value: 0.12, classes }, excluded: [], note: '' },
    micro: { auroc: m(0.81), auprc: m(0.61) },
    undefined: [],
  };
}

const ROC_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" width="200" height="100" viewBox="0 0 200 100"><rect width="200" height="100" fill="#fff"/><polyline class="curve" points="0,100 50,20 200,0" stroke="#1f77b4" fill="none"/></svg>\n';

/** A full fine-tuning run: finetune.json, metrics.jsonl (4 epochs), eval/ with metrics.json, roc.svg and pr.png. */
export async function fullFinetuneRun(dir: string): Promise<string> {
  await mkdir(path.join(dir, 'eval'), { recursive: true });
  await mkdir(path.join(dir, 'best', 'model'), { recursive: true });
  await writeFile(path.join(dir, 'finetune.json'), JSON.stringify({ mode: 'full', backbone: { device: 'cpu', threads: 2 }, classes: ['Cardiomegaly', NASTY_CLASS] }));
  const rows = [];
  for (let e = 0; e < FT_EPOCHS; e++) {
    rows.push({ epoch: e, step: (e + 1) * 10, lr: 1e-3, train_loss: 0.7 - e * 0.1, train_entries: 320, skipped_batches: 0, val_loss: 0.65 - e * 0.05, val_macro_auroc: 0.6 + e * 0.05, val_macro_auprc: 0.4 + e * 0.02, best_epoch: e, images_per_s: 20, seconds: 12.5 });
  }
  await writeFile(path.join(dir, 'metrics.jsonl'), jsonl(rows));
  await writeFile(path.join(dir, 'train.log'), '2026-01-03T08:00:00.000Z start\n2026-01-03T08:01:05.000Z done\n');
  await writeFile(path.join(dir, 'eval', 'metrics.json'), JSON.stringify(classificationMetrics(), null, 2));
  await writeFile(path.join(dir, 'eval', 'roc.svg'), ROC_SVG);
  await writeFile(path.join(dir, 'eval', 'pr.png'), await sharp({ create: { width: 40, height: 30, channels: 3, background: '#ff0000' } }).png().toBuffer());
  return dir;
}

/** A segmentation run: run.json, metrics.jsonl (6 step lines, 2 epoch lines with nested valDice), eval/ with overlays. */
export async function segmentationRun(dir: string): Promise<string> {
  await mkdir(path.join(dir, 'eval', 'overlays'), { recursive: true });
  await writeFile(path.join(dir, 'run.json'), JSON.stringify({ seg: { head: 'linear' }, epochs: SEG_EPOCHS }));
  const rows: object[] = [];
  for (let s = 1; s <= SEG_STEPS; s++) {
    rows.push({ kind: 'step', epoch: s <= 3 ? 0 : 1, step: s, loss: 1 - s * 0.1, softDice: 0.2 + s * 0.1, lr: 5e-3, imagesPerS: 8 });
    if (s % 3 === 0) {
      const e = s / 3 - 1;
      rows.push({ kind: 'epoch', epoch: e, step: s, lr: 5e-3, trainLoss: 0.8 - e * 0.2, trainSoftDice: 0.5, valDice: { 'left lung': 0.8 + e * 0.05, 'right lung': 0.82, heart: 0.7, lungs: 0.81 }, valDiceAvg: 0.77 + e * 0.03, bestEpoch: e, bestDiceAvg: 0.77 + e * 0.03, seconds: 30 });
    }
  }
  await writeFile(path.join(dir, 'metrics.jsonl'), jsonl(rows));
  await writeFile(path.join(dir, 'eval', 'metrics.json'), JSON.stringify(segmentationMetrics(), null, 2));
  await writeFile(path.join(dir, 'eval', 'dice_per_image.svg'), ROC_SVG.replace('<svg', '<?xml version="1.0"?>\n<svg'));
  for (const n of ['a', 'b']) {
    await writeFile(path.join(dir, 'eval', 'overlays', `${n}.png`), await sharp({ create: { width: 64, height: 64, channels: 3, background: '#303030' } }).png().toBuffer());
  }
  return dir;
}

export function segmentationMetrics(): object {
  const names = ['left lung', 'right lung', 'heart', 'lungs'];
  const iv = (v: number) => ({ lo: v - 0.02, hi: v + 0.01, median: v });
  return {
    title: 'Segmentation evaluation (test split)',
    nImages: 20,
    pooled: { 'left lung': 0.91, 'right lung': 0.92, heart: 0.85, lungs: 0.915, dice_avg: 0.8933 },
    perImage: Object.fromEntries(names.map((n) => [n, { mean: 0.9, min: 0.7, q1: 0.85, median: 0.91, q3: 0.95, max: 0.98 }])),
    pixels: Object.fromEntries(names.map((n) => [n, { intersection: 100, predicted: 110, truth: 105 }])),
    bootstrap: {
      n: 50,
      seed: 0,
      level: 0.95,
      unit: 'patient',
      nUnits: 20,
      percentile: 'linear',
      pooled: Object.fromEntries([...names, 'dice_avg'].map((n) => [n, iv(0.9)])),
      meanPerImage: Object.fromEntries(names.map((n) => [n, iv(0.9)])),
    },
    conventions: 'pooled Dice = 2·Σ|P∩G| / Σ(|P|+|G|)',
  };
}

/** A linear-probe run: history.jsonl (4 epochs), head.safetensors (a stand-in), eval/metrics.json. */
export async function linearProbeRun(dir: string): Promise<string> {
  await mkdir(path.join(dir, 'eval'), { recursive: true });
  await writeFile(path.join(dir, 'head.safetensors'), '');
  const rows = [];
  for (let e = 0; e < FT_EPOCHS; e++) rows.push({ epoch: e, steps: (e + 1) * 5, lr: 1e-3, trainLoss: 0.6 - e * 0.05, trainEntries: 100, skippedBatches: 0, valLoss: 0.6, valAuroc: 0.6 + e * 0.02 });
  await writeFile(path.join(dir, 'history.jsonl'), jsonl(rows));
  await writeFile(path.join(dir, 'eval', 'metrics.json'), JSON.stringify(classificationMetrics(['Nodule']), null, 2));
  return dir;
}

/** An evaluation folder of `cxformer evaluate`: metrics.json, report.md, a calibration plot. */
export async function evaluationFolder(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'metrics.json'), JSON.stringify(classificationMetrics(), null, 2));
  await writeFile(path.join(dir, 'report.md'), '# Evaluation report\n');
  await writeFile(path.join(dir, 'calibration.svg'), ROC_SVG);
  return dir;
}
