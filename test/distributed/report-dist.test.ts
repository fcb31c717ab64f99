/**
 * Data-parallel report training (issue #15) on CPU with Gloo over 127.0.0.1, through
 * `cxformer launch --nproc-per-node 2 -- finetune --task report …`, with the frozen encoder's cached memories and
 * with the encoder trained end to end (`--mode full`): 2 ranks × b train the captioner of 1 rank × 2b (dropout 0:
 * each rank draws its own dropout masks), including a last global batch of one report (one rank steps on a row
 * without a target); the ranks end bit-identical; rank 0 alone writes the run folder; the global batch is part of
 * the settings, so resuming with another number of ranks is refused.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { synthDataset } from '../../src/data/synth.js';
import { goldenFile, repoRoot } from '../unit/golden.js';
import { maxDiff } from '../helpers/safetensors-diff.js';

const MAIN = path.join(repoRoot, 'dist', 'cli', 'main.js');
const TINY = path.dirname(goldenFile('vit_tiny_hf/config.json'));
let tmp: string;
let data: string;

function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', env: { ...process.env, CXFORMER_THREADS: '1', CXFORMER_REPORT: '0', ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const launch2 = (args: string[], env: NodeJS.ProcessEnv = {}) => cli(['launch', '--nproc-per-node', '2', '--grace-s', '5', '--', 'finetune', ...args], env);

const rrg = (out: string, batch: number, extra: string[] = []) => [
  '--task', 'report', '--root', data, '--weights', TINY, '--resize', '112', '--crop', '112', '--memory-pool', '2',
  '--tokenizer', 'word-cased:1', '--epochs', '2', '--lr', '0.001', '--dropout', '0', '--bootstrap', '0', '--max-train', '33', '--head-batch-size', String(batch), '--out', out, ...extra,
];


const jsonl = async (f: string) => (await readFile(f, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-report-dist-'));
  data = path.join(tmp, 'data');
  await synthDataset({ out: data, n: 48, seed: 5, size: 112 });
}, 120_000);

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('cxformer launch -- finetune --task report (2 ranks)', () => {
  for (const mode of ['frozen', 'full'] as const) {
    it(`${mode} encoder: 2 ranks × 4 train as 1 rank × 8; ranks identical; rank 0 alone writes`, { timeout: 600_000 }, async () => {
      const extra = mode === 'full' ? ['--mode', 'full', '--backbone-lr', '0.001'] : [];
      const two = path.join(tmp, `${mode}-two`);
      const dumpTwo = path.join(tmp, `${mode}-dump-two`);
      const r = launch2(rrg(two, 4, extra), { CXFORMER_DIST_DUMP_DIR: dumpTwo });
      expect(r.code, r.stderr + r.stdout).toBe(0);
      expect(await maxDiff(path.join(dumpTwo, 'rank-0.safetensors'), path.join(dumpTwo, 'rank-1.safetensors'))).toBe(0);

      const one = path.join(tmp, `${mode}-one`);
      const dumpOne = path.join(tmp, `${mode}-dump-one`);
      const s = cli(['finetune', ...rrg(one, 8, extra)], { CXFORMER_DIST_DUMP_DIR: dumpOne });
      expect(s.code, s.stderr).toBe(0);
      const [m2, m1] = [await jsonl(path.join(two, 'metrics.jsonl')), await jsonl(path.join(one, 'metrics.jsonl'))];
      // 33 training reports (--max-train): the last global batch holds one, so rank 1 steps on a row without a target.
      expect(m2).toHaveLength(2 * Math.ceil(33 / 8));
      expect(m2.map((m) => m.step)).toEqual(m1.map((m) => m.step));
      for (const [a, b] of m2.map((e, i) => [e, m1[i]!] as const)) {
        expect(a.tokens).toBe(b.tokens);
        expect(Math.abs(a.loss - b.loss)).toBeLessThan(1e-5 * (1 + Math.abs(b.loss)));
      }
      // The same model within float32 reduction-order noise (parameters and AdamW moments).
      expect(await maxDiff(path.join(dumpTwo, 'rank-0.safetensors'), path.join(dumpOne, 'rank-0.safetensors'))).toBeLessThan(1e-4);

      // Rank 0 alone wrote the folder; the settings record the number of ranks.
      const log = await readFile(path.join(two, 'train.log'), 'utf8');
      expect(log).toMatch(/distributed: 2 ranks, backend gloo/);
      expect(log.match(/epoch 2\/2: validation loss/g)).toHaveLength(1);
      expect(r.stdout + r.stderr).toMatch(/\[rank 0\] test: label micro F1/);
      expect(r.stdout + r.stderr).not.toMatch(/\[rank 1\] (test|epoch)/);
      for (const f of ['predictions.jsonl', 'eval/report.json', 'best/model.safetensors', 'best/backbone/model.safetensors', 'checkpoints/state.safetensors']) {
        expect(existsSync(path.join(two, f)), f).toBe(true);
      }
      expect(JSON.parse(await readFile(path.join(two, 'settings.json'), 'utf8')).worldSize).toBe(2);
      expect((await readdir(two)).filter((f) => f.startsWith('events.out.tfevents.'))).toHaveLength(1);
      expect((await jsonl(path.join(two, 'history.jsonl'))).map((h) => h.epoch)).toEqual([1, 2]);

      // One process cannot resume the 2-rank run without --force: its global batch would differ.
      const again = cli(['finetune', ...rrg(two, 4, extra)]);
      expect(again.code).toBe(2);
      expect(again.stderr).toMatch(/other settings \(.*worldSize.*\)/);
    });
  }
});
