/**
 * Full fine-tuning end to end on phantom data (CLI and library): training reduces the loss, the exported best
 * model + head reproduce the held-out predictions through `cxformer evaluate`, an interrupted run resumes to exactly
 * the uninterrupted result, changed settings are refused without --force; label types (binary, multiclass) in
 * both modes, with TensorBoard files by default and none with --no-tensorboard; argument and label errors are named.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { synthDataset } from '../../src/data/synth.js';
import { fullFinetune, type FullFinetuneOptions } from '../../src/finetune/full.js';
import { readSafetensors } from '../../src/io/safetensors.js';
import { repoRoot } from '../unit/golden.js';

const MAIN = path.join(repoRoot, 'dist', 'cli', 'main.js');
let tmp: string;
let data: string;
const CLASSES = 'Cardiomegaly,Pleural Effusion,Nodule,Pneumothorax';
// A small random ViT (2 blocks) at 56 px keeps each run to seconds.
const BACKBONE = ['--arch', 'vit_small', 'model.depth=2', 'model.img_size=56', '--resize', '56', '--crop', '56', '--threads', '1', '--cls-layers', '2'];
const FULL = ['--mode', 'full', '--lr', '1e-3', '--backbone-lr', '1e-4', '--layer-decay', '0.8', '--weight-decay', '0.01', '--warmup-epochs', '1', '--schedule', 'cosine', '--head-batch-size', '8', '--bootstrap', '20', '-q'];

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The TensorBoard event files of a run folder. */
const eventFiles = async (dir: string) => (await readdir(dir)).filter((f) => f.startsWith('events.out.tfevents.'));
const jsonl = async (f: string) => (await readFile(f, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, number | null>);
/** metrics.jsonl without the wall-clock fields. */
const noTimes = (rows: Record<string, unknown>[]) => rows.map(({ seconds: _s, images_per_s: _i, ...r }) => r);

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-ftfull-'));
  data = path.join(tmp, 'data');
  await synthDataset({ out: data, n: 60, seed: 5, size: 96 });
  // Two mutually exclusive classes for the multiclass path: Normal (No Finding) vs Abnormal.
  const rows = (await readFile(path.join(data, 'labels.csv'), 'utf8')).trim().split('\n');
  const head = rows[0]!.split(',');
  const [iPath, iNo, iPat, iSplit] = ['Path', 'No Finding', 'Patient', 'Split'].map((c) => head.indexOf(c));
  const mc = rows.slice(1).map((r) => {
    const c = r.split(',');
    const normal = Number(c[iNo!]) === 1 ? 1 : 0;
    return [c[iPath!], normal, 1 - normal, c[iPat!], c[iSplit!]].join(',');
  });
  await writeFile(path.join(data, 'multiclass.csv'), ['Path,Normal,Abnormal,Patient,Split', ...mc].join('\n') + '\n');
  const twoPos = mc.map((l, k) => (k === 0 ? l.replace(/,(\d),(\d),/, ',1,1,') : l));
  await writeFile(path.join(data, 'multiclass-bad.csv'), ['Path,Normal,Abnormal,Patient,Split', ...twoPos].join('\n') + '\n');
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('cxformer finetune --mode full', () => {
  it('fine-tunes backbone + head, keeps the best epoch, and its export evaluates identically', async () => {
    const out = path.join(tmp, 'full');
    const r = cli(['finetune', ...BACKBONE, ...FULL, '--root', data, '--manifest', 'labels.csv', '--classes', CLASSES, '--out', out, '--epochs', '4']);
    expect(r.code, r.stderr).toBe(0);
    for (const f of ['finetune.json', 'metrics.jsonl', 'train.log', 'checkpoints/state.safetensors', 'best/model/config.json', 'best/model/model.safetensors', 'best/model/preprocessor_config.json', 'best/head.safetensors', 'eval/predictions.csv', 'eval/metrics.json', 'eval/report.md']) {
      expect(existsSync(path.join(out, f)), f).toBe(true);
    }
    const m = await jsonl(path.join(out, 'metrics.jsonl'));
    expect(m.map((e) => e.epoch)).toEqual([0, 1, 2, 3]);
    // 48 training images in batches of 8: 6 steps per epoch; warm-up of one epoch starts at lr 0.
    expect(m.map((e) => e.step)).toEqual([6, 12, 18, 24]);
    expect(m[3]!.train_loss!).toBeLessThan(m[0]!.train_loss!);
    expect(m.every((e) => e.val_loss !== null && Number.isFinite(e.val_loss))).toBe(true);
    // The kept epoch is the one with the best validation macro AUROC.
    const best = m.reduce((a, e) => ((e.val_macro_auroc ?? -1) > (a.val_macro_auroc ?? -1) ? e : a));
    expect(m[3]!.best_epoch).toBe(best.epoch);
    const head = await readSafetensors(path.join(out, 'best', 'head.safetensors'));
    expect(head.metadata?.best_epoch).toBe(String(best.epoch));
    expect(head.tensors.get('head.0.weight')?.shape).toEqual([4, 3 * 384]);
    const metrics = JSON.parse(await readFile(path.join(out, 'eval', 'metrics.json'), 'utf8'));
    expect(metrics.label_type).toBe('multilabel');
    expect(metrics.per_class).toHaveLength(4);
    expect(await readFile(path.join(out, 'train.log'), 'utf8')).toMatch(/epoch 3: train loss/);

    // `cxformer evaluate` with the exported model and head reproduces the held-out predictions.
    const ev = path.join(tmp, 'full-eval');
    const e = cli(['evaluate', '--weights', path.join(out, 'best', 'model'), '--head', path.join(out, 'best', 'head.safetensors'), '--threads', '1', '--root', data, '--manifest', 'labels.csv', '--classes', CLASSES, '--split', 'test', '--out', ev, '--bootstrap', '0']);
    expect(e.code, e.stderr).toBe(0);
    expect(await readFile(path.join(ev, 'predictions.csv'), 'utf8')).toBe(await readFile(path.join(out, 'eval', 'predictions.csv'), 'utf8'));

    // Re-running the finished run only re-evaluates; other settings are refused without --force.
    const again = cli(['finetune', ...BACKBONE, ...FULL, '--root', data, '--manifest', 'labels.csv', '--classes', CLASSES, '--out', out, '--epochs', '4']);
    expect(again.code, again.stderr).toBe(0);
    expect(await jsonl(path.join(out, 'metrics.jsonl'))).toHaveLength(4);
    const changed = cli(['finetune', ...BACKBONE, ...FULL, '--root', data, '--manifest', 'labels.csv', '--classes', CLASSES, '--out', out, '--epochs', '5', '--backbone-lr', '2e-4']);
    expect(changed.code).toBe(2);
    expect(changed.stderr).toMatch(/train\.epochs, train\.backboneLr differ.*--force/s);
    const forced = cli(['finetune', ...BACKBONE, ...FULL, '--root', data, '--manifest', 'labels.csv', '--classes', CLASSES, '--out', out, '--epochs', '5', '--force']);
    expect(forced.code, forced.stderr).toBe(0);
    expect((await jsonl(path.join(out, 'metrics.jsonl'))).map((x) => x.epoch)).toEqual([0, 1, 2, 3, 4]);
  });

  it('an interrupted run resumes to exactly the uninterrupted result', async () => {
    const opts = (out: string): FullFinetuneOptions => ({
      backbone: { arch: 'vit_small', overrides: ['model.depth=2', 'model.img_size=56', 'model.drop_path_rate=0.1'], threads: 1 },
      dataset: { name: 'csv', root: data, manifest: 'labels.csv', pathColumn: 'Path', patientColumn: 'Patient', splitColumn: 'Split', labelColumns: CLASSES.split(',') } as unknown as FullFinetuneOptions['dataset'],
      classes: CLASSES.split(','),
      features: { clsLayers: 2 },
      preprocess: { resize: 56, crop: 56 },
      train: { epochs: 3, batchSize: 8, headLr: 1e-3, backboneLr: 1e-4, layerwiseDecay: 0.8, warmupEpochs: 1, schedule: 'cosine', selectBest: 'valLoss' },
      out,
      bootstrap: 0,
    });
    const whole = await fullFinetune(opts(path.join(tmp, 'whole')));
    expect(whole.interrupted).toBe(false);
    // Stop mid-epoch (step 8 = epoch 1, batch 2), then again at an epoch boundary, then finish.
    const cut = path.join(tmp, 'cut');
    const a = await fullFinetune({ ...opts(cut), stopAfterSteps: 8 });
    expect(a.interrupted).toBe(true);
    expect(a.history).toHaveLength(1);
    const b = await fullFinetune({ ...opts(cut), stopAfterSteps: 12 });
    expect(b.interrupted && b.history.length === 2).toBe(true);
    const c = await fullFinetune(opts(cut));
    expect(c.interrupted).toBe(false);
    expect(noTimes(await jsonl(path.join(cut, 'metrics.jsonl')))).toEqual(noTimes(await jsonl(path.join(tmp, 'whole', 'metrics.jsonl'))));
    expect(c.bestEpoch).toBe(whole.bestEpoch);
    expect(await readFile(path.join(cut, 'eval', 'predictions.csv'), 'utf8')).toBe(await readFile(path.join(tmp, 'whole', 'eval', 'predictions.csv'), 'utf8'));
    expect(await readFile(path.join(cut, 'train.log'), 'utf8')).toMatch(/resuming from .*state\.safetensors at epoch 1, batch 2 \(step 8\)/);
  });
});

describe('label types', () => {
  it('binary and multiclass tasks through the linear and full modes', async () => {
    // binary: one class, its AUROC is the macro.
    const bin = path.join(tmp, 'bin');
    const r = cli(['finetune', ...BACKBONE, '--label-type', 'binary', '--root', data, '--manifest', 'labels.csv', '--classes', 'Cardiomegaly', '--out', bin, '--epochs', '3', '--lr', '1e-3', '--bootstrap', '0']);
    expect(r.code, r.stderr).toBe(0);
    const mb = JSON.parse(await readFile(path.join(bin, 'eval', 'metrics.json'), 'utf8'));
    expect(mb.label_type).toBe('binary');
    expect(mb.per_class).toHaveLength(1);
    expect(mb.macro.auroc.value).toBe(mb.per_class[0].auroc.value);
    expect(await readFile(path.join(bin, 'eval', 'report.md'), 'utf8')).toMatch(/Binary task/);
    expect(await eventFiles(bin)).toHaveLength(1);

    // multiclass, linear and full: softmax probabilities sum to 1 per row; accuracy recomputed from predictions.csv.
    // (--no-tensorboard: no TensorBoard files in either mode.)
    for (const mode of ['linear', 'full']) {
      const out = path.join(tmp, `mc-${mode}`);
      const extra = mode === 'full' ? ['--mode', 'full', '--backbone-lr', '1e-4', '--head-batch-size', '8', '-q'] : [];
      const m = cli(['finetune', ...BACKBONE, ...extra, '--label-type', 'multiclass', '--root', data, '--manifest', 'multiclass.csv', '--classes', 'Normal,Abnormal', '--out', out, '--epochs', '2', '--lr', '1e-3', '--bootstrap', '0', '--no-tensorboard']);
      expect(m.code, m.stderr).toBe(0);
      expect(await eventFiles(out), mode).toEqual([]);
      const mm = JSON.parse(await readFile(path.join(out, 'eval', 'metrics.json'), 'utf8'));
      expect(mm.label_type).toBe('multiclass');
      const rows = (await readFile(path.join(out, 'eval', 'predictions.csv'), 'utf8')).trim().split('\n').slice(1).map((l) => l.split(','));
      let right = 0;
      for (const c of rows) {
        const [p0, l0, p1] = [Number(c[2]), Number(c[3]), Number(c[4])];
        expect(Math.abs(p0 + p1 - 1)).toBeLessThan(1e-5);
        if ((p0 > p1 ? 0 : 1) === (l0 === 1 ? 0 : 1)) right++;
      }
      expect(mm.accuracy).toEqual({ value: right / rows.length, n: rows.length });
      if (mode === 'full') expect((await jsonl(path.join(out, 'metrics.jsonl')))[0]).toHaveProperty('val_accuracy');
    }
  });

  it('errors name the option, the class list or the image', () => {
    const base = ['finetune', ...BACKBONE, '--root', data, '--out', path.join(tmp, 'err')];
    const badType = cli([...base, '--manifest', 'labels.csv', '--classes', 'Nodule', '--label-type', 'ordinal']);
    expect(badType.code).not.toBe(0);
    expect(badType.stderr).toMatch(/label-type.*ordinal|ordinal.*label-type/s);
    const twoBinary = cli([...base, '--manifest', 'labels.csv', '--classes', 'Nodule,Cardiomegaly', '--label-type', 'binary']);
    expect(twoBinary.code).toBe(2);
    expect(twoBinary.stderr).toMatch(/binary needs exactly one class.*got 2: Nodule, Cardiomegaly/);
    const badMetric = cli([...base, '--manifest', 'labels.csv', '--classes', 'Nodule', '--mode', 'full', '--select-best', 'valF1']);
    expect(badMetric.code).not.toBe(0);
    expect(badMetric.stderr).toMatch(/select-best.*valF1|valF1.*select-best/s);
    const auprcLinear = cli([...base, '--manifest', 'labels.csv', '--classes', 'Nodule', '--select-best', 'valAuprc']);
    expect(auprcLinear.code).toBe(2);
    expect(auprcLinear.stderr).toMatch(/valAuprc is available with --mode full/);
    const twoPos = cli([...base, '--manifest', 'multiclass-bad.csv', '--classes', 'Normal,Abnormal', '--label-type', 'multiclass', '--mode', 'full']);
    expect(twoPos.code).toBe(2);
    expect(twoPos.stderr).toMatch(/image \S+ has 2 positive classes \(Normal, Abnormal\)/);
    const scale = cli([...base, '--manifest', 'labels.csv', '--classes', 'Nodule', '--mode', 'full', '--crop-scale', '0.5,1.5']);
    expect(scale.code).toBe(2);
    expect(scale.stderr).toMatch(/crop scale must be two numbers 0 < min ≤ max ≤ 1 \(docs\/recipe\.md §5\.1: 0\.08,1\), got 0\.5,1\.5/);
    const posWeight = cli([...base, '--manifest', 'labels.csv', '--classes', 'Nodule', '--mode', 'full', '--pos-weight', 'x']);
    expect(posWeight.code).toBe(2);
    expect(posWeight.stderr).toMatch(/--pos-weight: expected comma-separated numbers, got 'x'/);
  });
});
