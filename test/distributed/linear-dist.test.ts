/**
 * Data-parallel linear probe (issue #6) on CPU with Gloo over 127.0.0.1, through
 * `cxformer launch --nproc-per-node 2 -- finetune …` (the linear mode): each rank computes the features of a share
 * of every split (here 22 train images: shares of 11, with extraction batches of 4, so the batch boundaries differ
 * from one process's), the shares are all-gathered, rank 0 alone fits the head, writes and evaluates. The features,
 * the head, its history and the report equal those of a 1-process run.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { synthDataset } from '../../src/data/synth.js';
import { readSafetensors } from '../../src/io/safetensors.js';
import { repoRoot } from '../unit/golden.js';
import { maxDiff } from '../helpers/safetensors-diff.js';

const MAIN = path.join(repoRoot, 'dist', 'cli', 'main.js');
let tmp: string;
let data: string;
const CLASSES = 'Cardiomegaly,Pleural Effusion,Nodule,Pneumothorax';

function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', env: { ...process.env, CXFORMER_THREADS: '1', ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const probe = (out: string) => [
  'finetune',
  '--arch',
  'vit_small',
  'model.depth=2',
  'model.img_size=56',
  '--resize',
  '56',
  '--crop',
  '56',
  '--cls-layers',
  '2',
  '--batch-size',
  '4',
  '--root',
  data,
  '--manifest',
  'labels.csv',
  '--classes',
  CLASSES,
  '--epochs',
  '20',
  '--lr',
  '1e-2',
  '--bootstrap',
  '0',
  '--out',
  out,
];


beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-lindist-'));
  data = path.join(tmp, 'data');
  await synthDataset({ out: data, n: 30, seed: 5, size: 96 });
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('cxformer launch -- finetune (linear mode, 2 ranks)', () => {
  it('features computed in shares and all-gathered; rank 0 fits and writes the head and report of a 1-process run', async () => {
    const two = path.join(tmp, 'two');
    const r = cli(['launch', '--nproc-per-node', '2', '--grace-s', '5', '--', ...probe(two)]);
    const said = r.stdout + r.stderr;
    expect(r.code, said).toBe(0);
    expect(said).toMatch(/\[rank 0\] distributed: 2 ranks, backend gloo: each rank computes the features of a share of every split/);
    expect(said).toMatch(/\[rank 0\] finetune: macro AUROC/);
    expect(said).not.toMatch(/\[rank 1\] (finetune|features|head|data)/);
    expect((await readdir(tmp)).sort()).toEqual(['data', 'two']);

    const one = path.join(tmp, 'one');
    const s = cli(probe(one));
    expect(s.code, s.stderr).toBe(0);
    // TensorBoard events files are named by time, host and process: rank 0 alone wrote one, the rest is the same.
    const named = async (dir: string) => (await readdir(dir)).filter((f) => !f.startsWith('events.out.tfevents.')).sort();
    const files = await named(one);
    expect(await named(two)).toEqual(files);
    expect((await readdir(two)).filter((f) => f.startsWith('events.out.tfevents.'))).toHaveLength(1);
    expect(files).toEqual(expect.arrayContaining(['features-train.safetensors', 'features-valid.safetensors', 'features-test.safetensors', 'head.safetensors', 'history.jsonl', 'eval']));
    // The gathered features are the single process's, row for row (ids in the same order), up to float32 noise of
    // other extraction batch boundaries.
    for (const split of ['train', 'valid', 'test']) {
      const f = (dir: string) => path.join(dir, `features-${split}.safetensors`);
      const [a, b] = await Promise.all([readSafetensors(f(two)), readSafetensors(f(one))]);
      expect(a.metadata!.ids, split).toBe(b.metadata!.ids);
      expect(a.tensors.get('features')!.shape, split).toEqual(b.tensors.get('features')!.shape);
      expect(await maxDiff(f(two), f(one)), split).toBeLessThan(1e-4);
    }
    expect(await maxDiff(path.join(two, 'head.safetensors'), path.join(one, 'head.safetensors'))).toBeLessThan(1e-4);
    const hist = async (dir: string) => (await readFile(path.join(dir, 'history.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
    const [h2, h1] = await Promise.all([hist(two), hist(one)]);
    expect(h2.length).toBe(h1.length);
    h2.forEach((e, i) => {
      expect([e.epoch, e.steps, e.trainEntries]).toEqual([h1[i]!.epoch, h1[i]!.steps, h1[i]!.trainEntries]);
      expect(Math.abs(e.trainLoss! - h1[i]!.trainLoss!)).toBeLessThan(1e-4);
    });
    const metrics = async (dir: string) => JSON.parse(await readFile(path.join(dir, 'eval', 'metrics.json'), 'utf8')) as { macro: { auroc: { value: number } } };
    const [m2, m1] = await Promise.all([metrics(two), metrics(one)]);
    expect(Math.abs(m2.macro.auroc.value - m1.macro.auroc.value)).toBeLessThan(1e-3);
    expect(existsSync(path.join(two, 'eval', 'predictions.csv'))).toBe(true);
  });
});
