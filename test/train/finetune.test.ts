/**
 * Linear probe end to end through the CLI on phantom data: features, head, report files with the expected
 * columns and metrics, `evaluate` reproducing the held-out predictions from the saved head, bad input.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { synthDataset } from '../../src/data/synth.js';
import { readSafetensors } from '../../src/io/safetensors.js';
import { repoRoot } from '../unit/golden.js';

const MAIN = path.join(repoRoot, 'dist', 'cli', 'main.js');
let tmp: string;
let data: string;
const CLASSES = 'Cardiomegaly,Pleural Effusion,Nodule,Pneumothorax';
// A small random ViT (2 blocks) at 56 px keeps the run to seconds.
const BACKBONE = ['--arch', 'vit_small', 'model.depth=2', 'model.img_size=56', '--resize', '56', '--crop', '56', '--threads', '1'];

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-ft-'));
  data = path.join(tmp, 'data');
  await synthDataset({ out: data, n: 60, seed: 5, size: 96 });
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('cxformer finetune / evaluate (linear probe)', () => {
  it('trains a head on frozen features and evaluates it with CIs, curves and predictions', async () => {
    const out = path.join(tmp, 'probe');
    const r = cli(['finetune', ...BACKBONE, '--root', data, '--manifest', 'labels.csv', '--classes', CLASSES, '--out', out, '--epochs', '5', '--lr', '1e-3', '--bootstrap', '50', '--cls-layers', '2']);
    expect(r.code, r.stderr).toBe(0);
    for (const f of ['features-train.safetensors', 'head.safetensors', 'history.jsonl', 'eval/predictions.csv', 'eval/metrics.json', 'eval/report.md', 'eval/roc.png', 'eval/pr.svg', 'eval/calibration.png']) {
      expect(existsSync(path.join(out, f)), f).toBe(true);
    }
    // Features: concat of 2 CLS tokens + the patch-token mean = 3 × 384.
    expect((await readSafetensors(path.join(out, 'features-train.safetensors'))).tensors.get('features')?.shape[1]).toBe(3 * 384);
    const history = (await readFile(path.join(out, 'history.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(history).toHaveLength(5);
    expect(history.every((h) => Number.isFinite(h.trainLoss))).toBe(true);
    const m = JSON.parse(await readFile(path.join(out, 'eval', 'metrics.json'), 'utf8'));
    expect(m.classes).toEqual(CLASSES.split(','));
    expect(m.n_bootstrap).toBe(50);
    expect(m.per_class).toHaveLength(4);
    const csv = (await readFile(path.join(out, 'eval', 'predictions.csv'), 'utf8')).trim().split('\n');
    expect(csv[0]).toBe('image_id,patient_id,prob_Cardiomegaly,label_Cardiomegaly,prob_Pleural Effusion,label_Pleural Effusion,prob_Nodule,label_Nodule,prob_Pneumothorax,label_Pneumothorax');
    expect(csv.length - 1).toBe(m.n);

    // evaluate with the saved head on the same split gives the same predictions.
    const ev = path.join(tmp, 'eval');
    const e = cli(['evaluate', ...BACKBONE, '--head', path.join(out, 'head.safetensors'), '--root', data, '--manifest', 'labels.csv', '--classes', CLASSES, '--split', 'test', '--out', ev, '--bootstrap', '0']);
    expect(e.code, e.stderr).toBe(0);
    expect(await readFile(path.join(ev, 'predictions.csv'), 'utf8')).toBe(await readFile(path.join(out, 'eval', 'predictions.csv'), 'utf8'));
  });

  it('pretraining probes (kNN and linear) are logged at each checkpoint', async () => {
    const out = path.join(tmp, 'pretrain');
    // What a run killed while probing its baseline leaves behind: the next (fresh) run removes it.
    await mkdir(out, { recursive: true });
    await writeFile(path.join(out, '.baseline-1.safetensors'), 'stale');
    const r = cli([
      'train', '--config', 'demo', `output=${out}`, `data.root=${data}`, 'data.base_size=96', 'model.depth=2',
      'crops.global_crops_size=56', 'crops.local_crops_size=28', 'crops.local_crops_number=2', 'train.batch_size_per_gpu=4',
      'train.OFFICIAL_EPOCH_LENGTH=4', 'optim.epochs=2', 'optim.warmup_epochs=1', 'dino.head_n_prototypes=256',
      'checkpoint.period_iterations=4', 'compute.threads=1', 'probe.enabled=true', 'probe.linear_epochs=3', '-q',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const lines = (await readFile(path.join(out, 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    const probes = lines.filter((l) => 'probe_knn_macro_auroc' in l);
    // The baseline (the untrained encoder, before the first step), then one probe per checkpoint.
    expect(probes.map((p) => p.iteration)).toEqual([0, 3, 7]);
    expect(probes.map((p) => p.probe_baseline ?? false)).toEqual([true, false, false]);
    for (const p of probes) {
      expect(p.probe_knn_macro_auroc).toBeGreaterThanOrEqual(0);
      expect(p.probe_knn_macro_auroc).toBeLessThanOrEqual(1);
      expect(p.probe_linear_macro_auroc).toBeGreaterThanOrEqual(0);
      expect(p.probe_train_images).toBeGreaterThan(p.probe_valid_images);
    }
    const log = await readFile(path.join(out, 'train.log'), 'utf8');
    expect(log).toMatch(/probe of the untrained \(random\) encoder, the baseline: kNN macro AUROC \d\.\d{3}, linear macro AUROC \d\.\d{3}/);
    // Each later probe shows its difference to the baseline, computed from the logged numbers.
    const m = /probe at iteration 7: kNN macro AUROC (\d\.\d{3}) \(([+-]\d\.\d{3})\), linear macro AUROC (\d\.\d{3}) \(([+-]\d\.\d{3})\) vs the baseline/.exec(log);
    expect(m, log).not.toBeNull();
    const [b, p7] = [probes[0], probes[2]];
    expect(Number(m![2])).toBeCloseTo(p7.probe_knn_macro_auroc - b.probe_knn_macro_auroc, 3);
    expect(Number(m![4])).toBeCloseTo(p7.probe_linear_macro_auroc - b.probe_linear_macro_auroc, 3);
    // The run report page is written at the end, with the probe curve starting from the baseline.
    const page = await readFile(path.join(out, 'report.html'), 'utf8');
    expect(page).toMatch(/id="curves"/);
    expect(page).toMatch(/baseline/);
    expect(r.stderr).not.toMatch(/report page/); // -q
    expect((await readdir(out)).filter((n) => n.startsWith('.baseline-'))).toEqual([]);
  });

  it('bad input is named', () => {
    const r = cli(['finetune', ...BACKBONE, '--root', data, '--manifest', 'labels.csv', '--classes', 'Cardiomegaly,Fracture', '--out', path.join(tmp, 'x')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/Fracture/);
    const noManifest = cli(['finetune', ...BACKBONE, '--root', data, '--classes', 'Nodule', '--out', path.join(tmp, 'x2')]);
    expect(noManifest.code).toBe(2);
    expect(noManifest.stderr).toMatch(/--dataset csv needs --manifest/);
    const h = cli(['evaluate', ...BACKBONE, '--head', path.join(data, 'labels.csv'), '--root', data, '--manifest', 'labels.csv', '--classes', 'Nodule', '--out', path.join(tmp, 'y')]);
    expect(h.code).not.toBe(0);
    expect(h.stderr).toMatch(/labels\.csv/);
  });
});
