/**
 * Data-parallel full fine-tuning (issue #6) on CPU with Gloo over 127.0.0.1, through
 * `cxformer launch --nproc-per-node 2 -- finetune --mode full …`: 2 ranks × b train the model of 1 rank × 2b (with
 * the §5.1 augmentations, keyed by the position in the global batch, and a last global batch of one image: one
 * rank pads), the ranks end bit-identical, rank 0 alone writes, a 2-rank run resumes to exactly the uninterrupted
 * result (at an epoch end through the CLI, mid-epoch through the library). The linear mode and segmentation:
 * test/distributed/linear-dist.test.ts, test/distributed/seg-dist.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { synthDataset } from '../../src/data/synth.js';
import { repoRoot } from '../unit/golden.js';
import { maxDiff } from '../helpers/safetensors-diff.js';

const MAIN = path.join(repoRoot, 'dist', 'cli', 'main.js');
let tmp: string;
let data: string;
const CLASSES = 'Cardiomegaly,Pleural Effusion,Nodule,Pneumothorax';
// A small random ViT (2 blocks) at 56 px, no stochastic depth (each rank would draw its own).
const BACKBONE = ['--arch', 'vit_small', 'model.depth=2', 'model.img_size=56', '--resize', '56', '--crop', '56', '--cls-layers', '2', '--drop-path', '0'];
const FULL = ['--mode', 'full', '--lr', '1e-3', '--backbone-lr', '1e-4', '--layer-decay', '0.8', '--weight-decay', '0.01', '--select-best', 'last', '--bootstrap', '0'];

function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', env: { ...process.env, CXFORMER_THREADS: '1', ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A 2-rank fine-tuning through the launcher. */
const launch2 = (args: string[], env: NodeJS.ProcessEnv = {}) => cli(['launch', '--nproc-per-node', '2', '--grace-s', '5', '--', 'finetune', ...args], env);

const ft = (out: string, batch: number, epochs: number, extra: string[] = []) => [
  ...BACKBONE,
  ...FULL,
  '--root',
  data,
  '--manifest',
  'odd.csv',
  '--classes',
  CLASSES,
  '--head-batch-size',
  String(batch),
  '--epochs',
  String(epochs),
  '--out',
  out,
  ...extra,
];


const jsonl = async (f: string) => (await readFile(f, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, number | null>);
/** metrics.jsonl without the wall-clock fields. */
const noTimes = (rows: Record<string, unknown>[]) => rows.map(({ seconds: _s, images_per_s: _i, ...r }) => r);

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-ftdist-'));
  data = path.join(tmp, 'data');
  await synthDataset({ out: data, n: 30, seed: 5, size: 96 });
  // 21 training images (one train row dropped): with 5 per rank the global batches hold 10, 10 and 1 images, so
  // rank 1 pads the last step.
  const rows = (await readFile(path.join(data, 'labels.csv'), 'utf8')).trim().split('\n');
  const iSplit = rows[0]!.split(',').indexOf('Split');
  const firstTrain = rows.findIndex((r, k) => k > 0 && r.split(',')[iSplit] === 'train');
  const kept = rows.filter((_, k) => k !== firstTrain);
  expect(kept.filter((r) => r.split(',')[iSplit] === 'train')).toHaveLength(21);
  await writeFile(path.join(data, 'odd.csv'), kept.join('\n') + '\n');
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('cxformer launch -- finetune --mode full (2 ranks)', () => {
  it('2 ranks × 5 train as 1 rank × 10; ranks identical; rank 0 alone writes; resume is exact', async () => {
    const two = path.join(tmp, 'two');
    const dumpTwo = path.join(tmp, 'dump-two');
    const r = launch2(ft(two, 5, 2), { CXFORMER_DIST_DUMP_DIR: dumpTwo });
    expect(r.code, r.stderr + r.stdout).toBe(0);
    // Bit-identical ranks (parameters, head, AdamW moments, step counters).
    expect(await maxDiff(path.join(dumpTwo, 'rank-0.safetensors'), path.join(dumpTwo, 'rank-1.safetensors'))).toBe(0);

    // Rank 0 alone wrote the folder: one line per epoch, one final report line, logs once.
    const m2 = await jsonl(path.join(two, 'metrics.jsonl'));
    expect(m2.map((e) => e.epoch)).toEqual([0, 1]);
    // ⌈21 / 10⌉ = 3 steps per epoch on every rank.
    expect(m2.map((e) => e.step)).toEqual([3, 6]);
    const log = await readFile(path.join(two, 'train.log'), 'utf8');
    expect(log.match(/epoch 1: train loss/g)).toHaveLength(1);
    expect(log).toMatch(/global batch = 5 per rank × 2 rank\(s\) = 10; learning rates are used as given/);
    expect(log).toMatch(/distributed: 2 ranks, backend gloo/);
    expect(r.stdout + r.stderr).toMatch(/\[rank 0\] finetune: test macro AUROC/);
    expect(r.stdout + r.stderr).not.toMatch(/\[rank 1\] (finetune|epoch|global batch)/);
    expect(r.stdout + r.stderr).toMatch(/\[rank 0\] epoch 1: train loss/);
    for (const f of ['finetune.json', 'checkpoints/state.safetensors', 'best/model/model.safetensors', 'best/head.safetensors', 'eval/metrics.json']) {
      expect(existsSync(path.join(two, f)), f).toBe(true);
    }
    expect(JSON.parse(await readFile(path.join(two, 'finetune.json'), 'utf8')).worldSize).toBe(2);
    // One TensorBoard events file: rank 0's.
    expect((await readdir(two)).filter((f) => f.startsWith('events.out.tfevents.'))).toHaveLength(1);
    expect((await readdir(tmp)).sort()).toEqual(['data', 'dump-two', 'two']);

    // One process with the global batch (10): the same model within float32 reduction-order noise.
    const one = path.join(tmp, 'one');
    const dumpOne = path.join(tmp, 'dump-one');
    const s = cli(['finetune', ...ft(one, 10, 2)], { CXFORMER_DIST_DUMP_DIR: dumpOne });
    expect(s.code, s.stderr).toBe(0);
    const m1 = await jsonl(path.join(one, 'metrics.jsonl'));
    expect(m1.map((e) => e.step)).toEqual([3, 6]);
    for (const [a, b] of m2.map((e, i) => [e, m1[i]!] as const)) {
      // Every image once per epoch: the global batches' supervised entries add up to the single process's.
      expect(a.train_entries).toBe(b.train_entries);
      expect(a.train_entries).toBeGreaterThan(21);
      expect(Math.abs(a.train_loss! - b.train_loss!)).toBeLessThan(1e-5 * (1 + Math.abs(b.train_loss!)));
      expect(Math.abs(a.val_loss! - b.val_loss!)).toBeLessThan(1e-4);
    }
    const params = (k: string) => k.startsWith('backbone.') || k.startsWith('head.');
    const dState = await maxDiff(path.join(dumpTwo, 'rank-0.safetensors'), path.join(dumpOne, 'rank-0.safetensors'), params);
    expect(dState).toBeLessThan(2e-5);
    expect(await maxDiff(path.join(two, 'best', 'model', 'model.safetensors'), path.join(one, 'best', 'model', 'model.safetensors'))).toBeLessThan(2e-5);
    expect(await maxDiff(path.join(two, 'best', 'head.safetensors'), path.join(one, 'best', 'head.safetensors'))).toBeLessThan(2e-5);
    // …and training moved the model well beyond that tolerance (a different batch split would not match).
    const fresh = path.join(tmp, 'fresh');
    const frozen = ft(fresh, 10, 1).map((x, i, all) => (all[i - 1] === '--lr' || all[i - 1] === '--backbone-lr' ? '1e-9' : x));
    const f0 = cli(['finetune', ...frozen]);
    expect(f0.code, f0.stderr).toBe(0);
    expect(await maxDiff(path.join(fresh, 'best', 'head.safetensors'), path.join(one, 'best', 'head.safetensors'))).toBeGreaterThan(1e-3);

    // Resume of a 2-rank run: 1 epoch, then the same command forced to 2 epochs; every rank loads rank 0's state.
    const res = path.join(tmp, 'resumed');
    const dumpRes = path.join(tmp, 'dump-res');
    const a = launch2(ft(res, 5, 1));
    expect(a.code, a.stderr + a.stdout).toBe(0);
    const b = launch2(ft(res, 5, 2, ['--force']), { CXFORMER_DIST_DUMP_DIR: dumpRes });
    expect(b.code, b.stderr + b.stdout).toBe(0);
    expect(await readFile(path.join(res, 'train.log'), 'utf8')).toMatch(/resuming from .*state\.safetensors at epoch 1, batch 0 \(step 3\) \(all 2 ranks\)/);
    expect(await maxDiff(path.join(dumpRes, 'rank-0.safetensors'), path.join(dumpRes, 'rank-1.safetensors'))).toBe(0);
    expect(await maxDiff(path.join(dumpRes, 'rank-0.safetensors'), path.join(dumpTwo, 'rank-0.safetensors'), params)).toBe(0);
    expect(noTimes(await jsonl(path.join(res, 'metrics.jsonl')))).toEqual(noTimes(m2));
  });

  it('a 2-rank run interrupted mid-epoch (library, stopAfterSteps) resumes to exactly the uninterrupted result', async () => {
    // 21 images, 3 per rank: global batches of 6, 6, 6 and 3 (the last split 1 / 2), 4 steps per epoch.
    const helper = path.join(repoRoot, 'test', 'distributed', 'helpers', 'finetune-rank.mjs');
    const run = (out: string, results: string, env: NodeJS.ProcessEnv, stop?: number) => {
      const r = cli(['launch', '--nproc-per-node', '2', '--grace-s', '5', '--exec', '--', process.execPath, helper, repoRoot, data, out, results, ...(stop ? [String(stop)] : [])], env);
      expect(r.code, r.stderr + r.stdout).toBe(0);
    };
    const results = async (dir: string) => [0, 1].map((k) => JSON.parse(readFileSync(path.join(dir, `result-${k}.json`), 'utf8')));
    const whole = path.join(tmp, 'lib-whole');
    run(whole, path.join(tmp, 'res-whole'), { CXFORMER_DIST_DUMP_DIR: path.join(tmp, 'dump-lib-whole') });
    expect(await results(path.join(tmp, 'res-whole'))).toEqual([0, 1].map((k) => ({ rank: k, worldSize: 2, interrupted: false, epochs: 2 })));
    const cut = path.join(tmp, 'lib-cut');
    // Step 5 = epoch 1, batch 1: both ranks stop there.
    run(cut, path.join(tmp, 'res-cut1'), {}, 5);
    expect(await results(path.join(tmp, 'res-cut1'))).toEqual([0, 1].map((k) => ({ rank: k, worldSize: 2, interrupted: true, epochs: 1 })));
    run(cut, path.join(tmp, 'res-cut2'), { CXFORMER_DIST_DUMP_DIR: path.join(tmp, 'dump-lib-cut') });
    expect(await readFile(path.join(cut, 'train.log'), 'utf8')).toMatch(/resuming from .*state\.safetensors at epoch 1, batch 1 \(step 5\) \(all 2 ranks\)/);
    const mw = await jsonl(path.join(whole, 'metrics.jsonl'));
    expect(mw.map((e) => e.step)).toEqual([4, 8]);
    expect(noTimes(await jsonl(path.join(cut, 'metrics.jsonl')))).toEqual(noTimes(mw));
    const dump = (name: string, k: number) => path.join(tmp, name, `rank-${k}.safetensors`);
    expect(await maxDiff(dump('dump-lib-cut', 0), dump('dump-lib-cut', 1))).toBe(0);
    expect(await maxDiff(dump('dump-lib-cut', 0), dump('dump-lib-whole', 0))).toBe(0);
    expect(await readFile(path.join(cut, 'eval', 'predictions.csv'), 'utf8')).toBe(await readFile(path.join(whole, 'eval', 'predictions.csv'), 'utf8'));
  });
});
