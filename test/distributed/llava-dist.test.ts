/**
 * Data-parallel LLaVA training (issue #16) on CPU with Gloo over 127.0.0.1, through
 * `cxformer launch --nproc-per-node 2 -- finetune --task report --decoder llm …`: in the align stage (no dropout)
 * 2 ranks × b train the projector of 1 rank × 2b, including a last global batch of one report (rank 1 steps on a row
 * without labels) and micro-batches (rows filled up without labels); the ranks end bit-identical; rank 0 alone writes
 * the run folder and evaluates.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { synthDataset } from '../../src/data/synth.js';
import { maxDiff } from '../helpers/safetensors-diff.js';
import { goldenFile, repoRoot } from '../unit/golden.js';

const MAIN = path.join(repoRoot, 'dist', 'cli', 'main.js');
const TINY = path.dirname(goldenFile('vit_tiny_hf/config.json'));
const QWEN2 = path.dirname(goldenFile('lm/qwen2/config.json'));
let tmp: string;
let data: string;

function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', env: { ...process.env, CXFORMER_THREADS: '1', CXFORMER_REPORT: '0', ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const llava = (out: string, batch: number, extra: string[] = []) => [
  '--task', 'report', '--decoder', 'llm', '--lm', QWEN2, '--stage', 'align', '--root', data, '--weights', TINY, '--resize', '112', '--crop', '112',
  '--epochs', '2', '--lr', '0.01', '--bootstrap', '0', '--max-train', '33', '--max-report-tokens', '40', '--head-batch-size', String(batch), '--out', out, ...extra,
];

const jsonl = async (f: string) => (await readFile(f, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-llava-dist-'));
  data = path.join(tmp, 'data');
  await synthDataset({ out: data, n: 48, seed: 5, size: 112 });
}, 120_000);

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('cxformer launch -- finetune --task report --decoder llm (2 ranks)', () => {
  it('align: 2 ranks × 4 (2 micro-batches) train as 1 rank × 8; ranks identical; rank 0 alone writes', { timeout: 600_000 }, async () => {
    const two = path.join(tmp, 'two');
    const dumpTwo = path.join(tmp, 'dump-two');
    const r = cli(['launch', '--nproc-per-node', '2', '--grace-s', '5', '--', 'finetune', ...llava(two, 4, ['--micro-batches', '2'])], { CXFORMER_DIST_DUMP_DIR: dumpTwo });
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(await maxDiff(path.join(dumpTwo, 'rank-0.safetensors'), path.join(dumpTwo, 'rank-1.safetensors'))).toBe(0);

    const one = path.join(tmp, 'one');
    const dumpOne = path.join(tmp, 'dump-one');
    const s = cli(['finetune', ...llava(one, 8)], { CXFORMER_DIST_DUMP_DIR: dumpOne });
    expect(s.code, s.stderr).toBe(0);
    const [m2, m1] = [await jsonl(path.join(two, 'metrics.jsonl')), await jsonl(path.join(one, 'metrics.jsonl'))];
    // 33 training reports: the last global batch holds one, so rank 1 steps on a row without labels.
    expect(m2).toHaveLength(2 * Math.ceil(33 / 8));
    for (const [a, b] of m2.map((e, i) => [e, m1[i]!] as const)) {
      expect(a.tokens).toBe(b.tokens);
      expect(Math.abs(a.loss - b.loss)).toBeLessThan(1e-5 * (1 + Math.abs(b.loss)));
    }
    // The same projector and AdamW moments within float32 reduction-order noise.
    expect(await maxDiff(path.join(dumpTwo, 'rank-0.safetensors'), path.join(dumpOne, 'rank-0.safetensors'))).toBeLessThan(1e-4);

    const log = await readFile(path.join(two, 'train.log'), 'utf8');
    expect(log).toMatch(/distributed: 2 ranks, backend gloo/);
    expect(log.match(/align epoch 2\/2: validation loss/g)).toHaveLength(1);
    expect(r.stdout + r.stderr).toMatch(/\[rank 0\] test: label micro F1/);
    expect(r.stdout + r.stderr).not.toMatch(/\[rank 1\] (test|align epoch)/);
    for (const f of ['predictions.jsonl', 'eval/report.json', 'align/model/model.safetensors', 'align/model/cxformer-llava.json', 'align/state.safetensors']) expect(existsSync(path.join(two, f)), f).toBe(true);
    expect(JSON.parse(await readFile(path.join(two, 'settings.json'), 'utf8')).worldSize).toBe(2);
  });
});
