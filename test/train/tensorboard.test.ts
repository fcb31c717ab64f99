/**
 * TensorBoard event files of every trainer (issue #14), read back with the strict independent reader of
 * test/unit/tfevents-reader.ts (both CRCs of every record, the Event protobuf decoded by hand): each run folder holds
 * events files whose scalars are exactly metrics.jsonl's numbers (same step, float32), tag by tag, also after an
 * interrupted run resumed (the new file's SessionLog START supersedes what the killed start logged after its last
 * checkpoint, as metrics.jsonl drops those lines), and the resolved settings as one text summary per start. Each
 * trainer's setting (pretraining `log.tensorboard`, the others' `tensorboard`, default true) turns the files off: a
 * start with it false writes none, and a downstream run may turn them on again when it resumes (not a training setting).
 * Tiny runs (2-block ViTs at 56 px, a few steps each) keep the file to about half a minute on 2 cores.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { synthDataset } from '../../src/data/synth.js';
import { linearProbe } from '../../src/finetune/classify.js';
import { fullFinetune, type FullFinetuneOptions } from '../../src/finetune/full.js';
import { trainSegmentation } from '../../src/segment/train.js';
import { train } from '../../src/train/run.js';
import { expectScalarsMatch, jsonlRecords } from '../helpers/tensorboard-match.js';
import { goldenFile } from '../unit/golden.js';
import { readEventFile, readRun } from '../unit/tfevents-reader.js';

let tmp: string;
let data: string;
const CLASSES = ['Cardiomegaly', 'Pleural Effusion', 'Nodule', 'Pneumothorax'];

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-tb-'));
  data = path.join(tmp, 'data');
  await synthDataset({ out: data, n: 60, seed: 5, size: 112 });
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const jsonl = jsonlRecords;

describe('TensorBoard events beside metrics.jsonl', () => {
  it('pretraining: every metrics.jsonl number (losses, schedules, gradient norms, timings, probes), across a resume', async () => {
    const out = path.join(tmp, 'pretrain');
    const overrides = [
      `output=${out}`, `data.root=${data}`, 'data.base_size=96', 'model.depth=2', 'crops.global_crops_size=56', 'crops.local_crops_size=28',
      'crops.local_crops_number=2', 'train.batch_size_per_gpu=4', 'train.OFFICIAL_EPOCH_LENGTH=4', 'optim.epochs=2', 'optim.warmup_epochs=1',
      'dino.head_n_prototypes=256', 'checkpoint.period_iterations=4', 'compute.threads=1', 'probe.enabled=true', 'probe.linear_epochs=2', 'probe.max_images=16', 'probe.k=5',
    ];
    // Stop after iteration 4, then lose its checkpoint (a kill after the step lines, before the checkpoint): the
    // resume starts at iteration 4 again from ckpt-3, and metrics.jsonl drops the killed start's line of iteration 4.
    const first = await train({ configs: ['demo'], overrides, stopAfter: 5 });
    expect(first.lastIteration).toBe(4);
    await rm(path.join(out, 'checkpoints', 'ckpt-0000004.safetensors'));
    await train({ configs: ['demo'], overrides });
    const lines = await jsonl(path.join(out, 'metrics.jsonl'));
    expect(lines.filter((l) => 'total_loss' in l).map((l) => l.iteration)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    const got = expectScalarsMatch(out, lines, 'iteration');
    for (const tag of ['train/total_loss', 'train/dino_local_crops_loss', 'train/ibot_loss', 'train/koleo_loss', 'schedule/lr', 'schedule/wd', 'schedule/momentum', 'schedule/teacherTemp', 'grad/grad_norm_backbone', 'time/ms_teacher', 'time/ms_data_wait', 'time/images_per_s', 'probe/probe_knn_macro_auroc', 'probe/probe_linear_macro_auroc']) {
      expect(got.has(tag), tag).toBe(true);
    }
    // The killed start's iteration 4 is in the first file but superseded by the resume's START at 4.
    const { files } = readRun(out);
    expect(files).toHaveLength(2);
    const [a, b] = files.map((f) => readEventFile(f).events);
    expect(a!.filter((e) => e.values?.some((v) => v.tag === 'train/total_loss')).map((e) => e.step)).toEqual([0, 1, 2, 3, 4]);
    expect(b![1]).toMatchObject({ sessionStatus: 1, step: 4 });
    // The resolved config, once per start.
    const texts = readRun(out).texts.get('config')!;
    expect(texts).toHaveLength(2);
    expect(texts[0]).toMatch(/^ {4}# cxformer pretraining config, fully resolved/);
    expect(texts[0]).toMatch(/\n {4}optim:\n/);
    // log.tensorboard=false: the same run writes metrics.jsonl and no events file.
    const off = path.join(tmp, 'pretrain-off');
    await train({ configs: ['demo'], overrides: [...overrides.map((o) => (o.startsWith('output=') ? `output=${off}` : o)), 'probe.enabled=false', 'log.tensorboard=false'], stopAfter: 2 });
    expect((await jsonl(path.join(off, 'metrics.jsonl'))).length).toBe(2);
    expect(readRun(off).files).toEqual([]);
  });

  it('full fine-tuning: the epoch lines at their step, across a resume', async () => {
    const out = path.join(tmp, 'full');
    const opts: FullFinetuneOptions = {
      backbone: { arch: 'vit_small', overrides: ['model.depth=2', 'model.img_size=56'], threads: 1 },
      dataset: { name: 'csv', root: data, manifest: 'labels.csv', pathColumn: 'Path', patientColumn: 'Patient', splitColumn: 'Split', labelColumns: CLASSES } as unknown as FullFinetuneOptions['dataset'],
      classes: CLASSES,
      features: { clsLayers: 1 },
      preprocess: { resize: 56, crop: 56 },
      train: { epochs: 2, batchSize: 16, headLr: 1e-3, backboneLr: 1e-4, warmupEpochs: 0 },
      out,
      bootstrap: 0,
    };
    const a = await fullFinetune({ ...opts, stopAfterSteps: 4 });
    expect(a.interrupted).toBe(true);
    await fullFinetune(opts);
    const lines = await jsonl(path.join(out, 'metrics.jsonl'));
    expect(lines.map((l) => l.epoch)).toEqual([0, 1]);
    const got = expectScalarsMatch(out, lines, 'step');
    for (const tag of ['train/train_loss', 'schedule/lr', 'val/val_loss', 'val/val_macro_auroc', 'progress/epoch', 'progress/best_epoch', 'time/images_per_s']) {
      expect(got.has(tag), tag).toBe(true);
    }
    const texts = readRun(out).texts.get('config')!;
    expect(texts).toHaveLength(2);
    expect(texts[1]).toMatch(/"headLr": 0\.001/);
    // tensorboard: false: a start writes its state and no events file; the resume with it on writes one.
    const off = path.join(tmp, 'full-off');
    expect((await fullFinetune({ ...opts, out: off, tensorboard: false, stopAfterSteps: 1 })).interrupted).toBe(true);
    expect(existsSync(path.join(off, 'checkpoints', 'state.safetensors'))).toBe(true);
    expect(readRun(off).files).toEqual([]);
    expect((await fullFinetune({ ...opts, out: off, tensorboard: true, stopAfterSteps: 2 })).interrupted).toBe(true);
    expect(readRun(off).files).toHaveLength(1);
    expect(readRun(off).texts.get('config')).toHaveLength(1);
  });

  it('linear probe: the head’s history.jsonl at its optimizer steps', async () => {
    const out = path.join(tmp, 'linear');
    const opts = {
      backbone: { arch: 'vit_small', overrides: ['model.depth=2', 'model.img_size=56'], threads: 1 },
      dataset: { name: 'csv', root: data, manifest: 'labels.csv', pathColumn: 'Path', patientColumn: 'Patient', splitColumn: 'Split', labelColumns: CLASSES } as never,
      classes: CLASSES,
      features: { clsLayers: 1, preprocess: { resize: 56, crop: 56 } },
      probe: { epochs: 3 },
      out,
      bootstrap: 0,
    };
    await linearProbe(opts);
    const lines = await jsonl(path.join(out, 'history.jsonl'));
    expect(lines).toHaveLength(3);
    const got = expectScalarsMatch(out, lines, 'steps');
    for (const tag of ['train/trainLoss', 'schedule/lr', 'val/valLoss', 'progress/epoch']) expect(got.has(tag), tag).toBe(true);
    expect(readRun(out).files).toHaveLength(1);
    expect(readRun(out).texts.get('config')![0]).toMatch(/"classes": \[/);
    // tensorboard: false: history.jsonl and no events file.
    const off = path.join(tmp, 'linear-off');
    await linearProbe({ ...opts, out: off, probe: { epochs: 1 }, tensorboard: false });
    expect(await jsonl(path.join(off, 'history.jsonl'))).toHaveLength(1);
    expect(readRun(off).files).toEqual([]);
  });

  it('segmentation: step and epoch lines (validation Dice per structure), across a mid-epoch stop', async () => {
    const out = path.join(tmp, 'seg');
    const common = {
      backbone: { weights: goldenFile('vit_tiny_hf'), threads: 1 },
      dataset: { name: 'csv', root: data, manifest: 'labels.csv', patientColumn: 'Patient', splitColumn: 'Split' } as never,
      masks: { source: 'csv' as const, root: data },
      preprocess: { resize: 56, crop: 56 },
      seg: { head: 'linear' as const, lr: 5e-3 },
      epochs: 2,
      batchSize: 16,
      logEvery: 1,
      bootstrap: 0,
      overlays: 0,
      out,
    };
    const part = await trainSegmentation({ ...common, stopAfterSteps: 4 });
    expect(part.partial).toBe(true);
    await trainSegmentation(common);
    const lines = await jsonl(path.join(out, 'metrics.jsonl'));
    expect(lines.filter((l) => l.kind === 'epoch')).toHaveLength(2);
    const got = expectScalarsMatch(out, lines, 'step');
    for (const tag of ['train/loss', 'train/ce', 'train/softDice', 'grad/gradNorm', 'schedule/lr', 'time/imagesPerS', 'train/trainLoss', 'val/valDiceAvg', 'val/valDice/lungs', 'progress/bestEpoch']) {
      expect(got.has(tag), tag).toBe(true);
    }
    expect(readRun(out).files).toHaveLength(2);
    // tensorboard: false: a start writes its step lines and no events file; the resume with it on writes one.
    const off = path.join(tmp, 'seg-off');
    expect((await trainSegmentation({ ...common, out: off, tensorboard: false, stopAfterSteps: 1 })).partial).toBe(true);
    expect((await jsonl(path.join(off, 'metrics.jsonl'))).map((l) => l.step)).toEqual([1]);
    expect(readRun(off).files).toEqual([]);
    expect((await trainSegmentation({ ...common, out: off, tensorboard: true, stopAfterSteps: 1 })).partial).toBe(true);
    expect(readRun(off).files).toHaveLength(1);
  });
});
