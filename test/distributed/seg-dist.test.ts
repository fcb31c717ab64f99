/**
 * Data-parallel segmentation training (issue #6) on CPU with Gloo over 127.0.0.1, through
 * `cxformer launch --nproc-per-node 2 -- finetune --task segmentation …` on phantom data with the tiny golden
 * backbone at 56 px: 2 ranks × b train the head of 1 process × 2b (13 training images: global batches of 6, 6 and 1,
 * so rank 1's last share is empty), the ranks end bit-identical, rank 0 alone writes the folder and the evaluation
 * (predictions, overlays), and a 2-rank run interrupted mid-epoch (library, stopAfterSteps) resumes to exactly the
 * uninterrupted result.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { synthDataset } from '../../src/data/synth.js';
import { readSafetensors } from '../../src/io/safetensors.js';
import { goldenFile, repoRoot } from '../unit/golden.js';
import { maxDiff } from '../helpers/safetensors-diff.js';

const MAIN = path.join(repoRoot, 'dist', 'cli', 'main.js');
const WEIGHTS = () => goldenFile('vit_tiny_hf');
let tmp: string;
let data: string;

function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', env: { ...process.env, CXFORMER_THREADS: '1', ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const seg = (out: string, batch: number, epochs: number, extra: string[] = []) => [
  'finetune',
  '--task',
  'segmentation',
  '--dataset',
  'csv',
  '--root',
  data,
  '--manifest',
  'odd.csv',
  '--masks',
  'masks.csv',
  '--masks-source',
  'csv',
  '--weights',
  WEIGHTS(),
  '--resize',
  '56',
  '--crop',
  '56',
  '--seg-head',
  'linear',
  '--lr',
  '0.02',
  '--seg-warmup-epochs',
  '1',
  '--epochs',
  String(epochs),
  '--batch-size',
  String(batch),
  '--bootstrap',
  '0',
  '--overlays',
  '2',
  '--out',
  out,
  ...extra,
];

const launch2 = (args: string[], env: NodeJS.ProcessEnv = {}) => cli(['launch', '--nproc-per-node', '2', '--grace-s', '5', '--', ...args], env);


type Row = Record<string, unknown> & { kind: string; step: number };
const jsonl = async (f: string) => (await readFile(f, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Row);
/** metrics.jsonl without the wall-clock fields. */
const noTimes = (rows: Row[]) => rows.map(({ seconds: _s, imagesPerS: _i, ...r }) => r);
const epochsOf = (rows: Row[]) => rows.filter((r) => r.kind === 'epoch') as (Row & { trainLoss: number; trainSoftDice: number; valDiceAvg: number })[];

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-segdist-'));
  data = path.join(tmp, 'data');
  await synthDataset({ out: data, n: 36, seed: 5, size: 96, splitFractions: { train: 0.5, valid: 0.25, test: 0.25 } });
  // Exactly 13 training images: with 3 per rank the global batches hold 6, 6 and 1 images (rank 1's last share is
  // empty); a single process with batch 6 takes the same 3 steps per epoch.
  const rows = (await readFile(path.join(data, 'labels.csv'), 'utf8')).trim().split('\n');
  const iSplit = rows[0]!.split(',').indexOf('Split');
  const trainRows = rows.map((r, k) => (k > 0 && r.split(',')[iSplit] === 'train' ? k : -1)).filter((k) => k > 0);
  expect(trainRows.length).toBeGreaterThanOrEqual(13);
  const drop = new Set(trainRows.slice(13));
  const kept = rows.filter((_, k) => !drop.has(k));
  expect(kept.filter((r) => r.split(',')[iSplit] === 'train')).toHaveLength(13);
  expect(kept.filter((r) => r.split(',')[iSplit] === 'valid').length).toBeGreaterThanOrEqual(3);
  await writeFile(path.join(data, 'odd.csv'), kept.join('\n') + '\n');
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('cxformer launch -- finetune --task segmentation (2 ranks)', () => {
  it('2 ranks × 3 train as 1 process × 6; ranks identical; rank 0 alone writes and evaluates', async () => {
    const two = path.join(tmp, 'two');
    const dumpTwo = path.join(tmp, 'dump-two');
    const r = launch2(seg(two, 3, 2), { CXFORMER_DIST_DUMP_DIR: dumpTwo });
    const said = r.stdout + r.stderr;
    expect(r.code, said).toBe(0);
    // Bit-identical ranks (head, AdamW moments, step).
    expect(await maxDiff(path.join(dumpTwo, 'rank-0.safetensors'), path.join(dumpTwo, 'rank-1.safetensors'))).toBe(0);

    // Rank 0 alone wrote the folder and reported.
    const m2 = await jsonl(path.join(two, 'metrics.jsonl'));
    // ⌈13 / 6⌉ = 3 steps per epoch on every rank.
    expect(epochsOf(m2).map((e) => [e.epoch, e.step])).toEqual([
      [0, 3],
      [1, 6],
    ]);
    expect(said).toMatch(/\[rank 0\] distributed: 2 ranks, backend gloo/);
    expect(said).toMatch(/\[rank 0\] global batch = 3 per rank × 2 ranks = 6/);
    expect(said).toMatch(/\[rank 0\] finetune \(segmentation\): Dice lungs/);
    expect(said.match(/epoch 2\/2: train loss/g)).toHaveLength(1);
    expect(said).not.toMatch(/\[rank 1\] (finetune|epoch|data|global batch)/);
    for (const f of ['run.json', 'last.safetensors', 'best.safetensors', 'eval/metrics.json', 'eval/per_image.csv', 'eval/predictions.csv']) {
      expect(existsSync(path.join(two, f)), f).toBe(true);
    }
    expect((await readdir(path.join(two, 'eval', 'overlays'))).length).toBe(2);
    expect(JSON.parse(await readFile(path.join(two, 'run.json'), 'utf8')).worldSize).toBe(2);
    // One TensorBoard events file: rank 0's.
    expect((await readdir(two)).filter((f) => f.startsWith('events.out.tfevents.'))).toHaveLength(1);
    expect((await readdir(tmp)).sort()).toEqual(['data', 'dump-two', 'two']);

    // One process with the global batch (6): the same head within float32 reduction-order noise.
    const one = path.join(tmp, 'one');
    const dumpOne = path.join(tmp, 'dump-one');
    const s = cli(seg(one, 6, 2), { CXFORMER_DIST_DUMP_DIR: dumpOne });
    expect(s.code, s.stderr).toBe(0);
    const m1 = await jsonl(path.join(one, 'metrics.jsonl'));
    expect(epochsOf(m1).map((e) => e.step)).toEqual([3, 6]);
    for (const [a, b] of epochsOf(m2).map((e, i) => [e, epochsOf(m1)[i]!] as const)) {
      expect(Math.abs(a.trainLoss - b.trainLoss)).toBeLessThan(1e-5 * (1 + Math.abs(b.trainLoss)));
      expect(Math.abs(a.trainSoftDice - b.trainSoftDice)).toBeLessThan(1e-5);
      expect(Math.abs(a.valDiceAvg - b.valDiceAvg)).toBeLessThan(1e-3);
      expect(a.lr).toBe(b.lr);
    }
    const dState = await maxDiff(path.join(dumpTwo, 'rank-0.safetensors'), path.join(dumpOne, 'rank-0.safetensors'));
    expect(dState).toBeLessThan(2e-5);
    expect(await maxDiff(path.join(two, 'best.safetensors'), path.join(one, 'best.safetensors'))).toBeLessThan(2e-5);
    // …and training moved the head well beyond that tolerance.
    const fresh = path.join(tmp, 'fresh');
    const still = seg(fresh, 6, 1).map((x, i, all) => (all[i - 1] === '--lr' ? '1e-9' : x));
    const f0 = cli(still);
    expect(f0.code, f0.stderr).toBe(0);
    expect(await maxDiff(path.join(fresh, 'best.safetensors'), path.join(one, 'best.safetensors'))).toBeGreaterThan(1e-3);
  });

  it('a 2-rank run interrupted mid-epoch (library, stopAfterSteps) resumes to exactly the uninterrupted result', async () => {
    const helper = path.join(repoRoot, 'test', 'distributed', 'helpers', 'seg-rank.mjs');
    const run = (out: string, results: string, env: NodeJS.ProcessEnv, stop?: number) => {
      const r = cli(['launch', '--nproc-per-node', '2', '--grace-s', '5', '--exec', '--', process.execPath, helper, repoRoot, data, WEIGHTS(), out, results, ...(stop ? [String(stop)] : [])], env);
      expect(r.code, r.stderr + r.stdout).toBe(0);
    };
    const results = (dir: string) => [0, 1].map((k) => JSON.parse(readFileSync(path.join(dir, `result-${k}.json`), 'utf8')) as Record<string, unknown>);
    const whole = path.join(tmp, 'lib-whole');
    run(whole, path.join(tmp, 'res-whole'), { CXFORMER_DIST_DUMP_DIR: path.join(tmp, 'dump-lib-whole') });
    expect(results(path.join(tmp, 'res-whole'))).toEqual([0, 1].map((k) => ({ rank: k, worldSize: 2, interrupted: false, partial: false, epochs: 2, evaluated: k === 0 })));
    const cut = path.join(tmp, 'lib-cut');
    // Step 4 = epoch 2, batch 1 (3 steps per epoch): both ranks stop there.
    run(cut, path.join(tmp, 'res-cut1'), {}, 4);
    expect(results(path.join(tmp, 'res-cut1'))).toEqual([0, 1].map((k) => ({ rank: k, worldSize: 2, interrupted: false, partial: true, epochs: 1, evaluated: false })));
    const st = JSON.parse((await readSafetensors(path.join(cut, 'last.safetensors'))).metadata!.seg_state!) as { epoch: number; step: number; inEpoch: { batches: number } };
    expect([st.epoch, st.step, st.inEpoch.batches]).toEqual([1, 4, 1]);
    run(cut, path.join(tmp, 'res-cut2'), { CXFORMER_DIST_DUMP_DIR: path.join(tmp, 'dump-lib-cut') });
    expect(results(path.join(tmp, 'res-cut2'))).toEqual([0, 1].map((k) => ({ rank: k, worldSize: 2, interrupted: false, partial: false, epochs: 2, evaluated: k === 0 })));
    const dump = (name: string, k: number) => path.join(tmp, name, `rank-${k}.safetensors`);
    expect(await maxDiff(dump('dump-lib-cut', 0), dump('dump-lib-cut', 1))).toBe(0);
    const params = (k: string) => k.startsWith('head.') || k.startsWith('optim.');
    expect(await maxDiff(dump('dump-lib-cut', 0), dump('dump-lib-whole', 0), params)).toBe(0);
    const mw = await jsonl(path.join(whole, 'metrics.jsonl'));
    expect(epochsOf(mw).map((e) => e.step)).toEqual([3, 6]);
    expect(noTimes(await jsonl(path.join(cut, 'metrics.jsonl')))).toEqual(noTimes(mw));
    expect(JSON.parse(await readFile(path.join(cut, 'eval', 'metrics.json'), 'utf8')).pooled).toEqual(JSON.parse(await readFile(path.join(whole, 'eval', 'metrics.json'), 'utf8')).pooled);
  });
});
