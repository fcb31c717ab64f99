/**
 * Data-parallel training on CPU with Gloo over 127.0.0.1 (issue #6), through `cxformer launch`:
 * the process group's collectives; 2 ranks × b = 1 rank × 2b through the Trainer API on explicit batches
 * (centering and Sinkhorn-Knopp; KoLeo off, as it is per rank in the reference); `cxformer train` on 2 ranks
 * (identical states on both ranks, rank 0 alone writes, exact resume of a 2-rank run); faults: a killed rank,
 * a port in use, a world-size mismatch.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cp, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { synthDataset } from '../../src/data/synth.js';
import { freePort } from '../../src/distributed/launch.js';
import { repoRoot } from '../unit/golden.js';
import { maxDiff } from '../helpers/safetensors-diff.js';

const MAIN = path.join(repoRoot, 'dist', 'cli', 'main.js');
const HELPERS = path.join(repoRoot, 'test', 'distributed', 'helpers');
let tmp: string;
let data: string;

function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', env: { ...process.env, CXFORMER_THREADS: '1', ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}


/** Tiny run: 2 blocks, 56/28 px crops, batch 2 per rank, 12 iterations, checkpoints every 4. */
const tiny = (out: string, extra: string[] = []) => [
  `output=${out}`,
  `data.root=${data}`,
  'data.base_size=96',
  'model.depth=2',
  'crops.global_crops_size=56',
  'crops.local_crops_size=28',
  'crops.local_crops_number=2',
  'train.batch_size_per_gpu=2',
  'train.OFFICIAL_EPOCH_LENGTH=6',
  'optim.epochs=2',
  'optim.warmup_epochs=1',
  'dino.head_n_prototypes=256',
  'checkpoint.period_iterations=4',
  'checkpoint.keep_last=0',
  'compute.device=cpu',
  'compute.threads=1',
  'dist.timeout_s=30',
  'probe.enabled=false',
  ...extra,
];

/** Starts one rank directly (no launcher) with torchrun variables. */
function rank(r: number, world: number, port: number, args: string[], extraEnv: NodeJS.ProcessEnv = {}): { child: ChildProcess; done: Promise<{ code: number | null; stderr: string }> } {
  const child = spawn(process.execPath, args, {
    env: { ...process.env, CXFORMER_THREADS: '1', RANK: String(r), WORLD_SIZE: String(world), LOCAL_RANK: String(r), LOCAL_WORLD_SIZE: String(world), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout?.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<{ code: number | null; stderr: string }>((resolve) => child.on('close', (code) => resolve({ code, stderr })));
  return { child, done };
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-dist-'));
  data = path.join(tmp, 'data');
  await synthDataset({ out: data, n: 16, seed: 3, size: 128 });
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('process group (Gloo, 2 ranks on 127.0.0.1)', () => {
  it('all-reduce, broadcast, all-gather and barrier give every rank the same results', () => {
    const out = path.join(tmp, 'pg');
    const r = cli(['launch', '--nproc-per-node', '2', '--exec', '--', process.execPath, path.join(HELPERS, 'pg-rank.mjs'), tmp, repoRoot]);
    expect(r.code, r.stderr).toBe(0);
    for (const k of [0, 1]) {
      const j = JSON.parse(readFileSync(path.join(tmp, `pg-${k}.json`), 'utf8'));
      expect(j).toEqual({ rank: k, worldSize: 2, backend: 'gloo', sum: [3, 30], avg: [1.5], bc: [42, 7], gathered: [[0, 0], [1, 1]] });
    }
    void out;
  });

  it('a port already in use is a clear error', async () => {
    const srv = createServer();
    const port = await new Promise<number>((resolve) => srv.listen(0, '127.0.0.1', () => resolve((srv.address() as { port: number }).port)));
    try {
      const r = cli(['launch', '--nproc-per-node', '2', '--master-port', String(port), '--grace-s', '5', '--exec', '--', process.execPath, path.join(HELPERS, 'pg-rank.mjs'), tmp, repoRoot, '10']);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/\[rank 0\].*CXF_DIST|\[rank 0\].*process group/);
      expect(r.stderr).toMatch(new RegExp(`${port}`));
      expect(r.stderr).toMatch(/in use/i);
    } finally {
      srv.close();
    }
  });

  it('an unreachable master is a clear error naming the address', async () => {
    const port = await freePort();
    const r = rank(1, 2, port, [path.join(HELPERS, 'pg-rank.mjs'), tmp, repoRoot, '2']);
    const res = await r.done;
    expect(res.code).not.toBe(0);
    expect(res.stderr).toMatch(new RegExp(`CXF_DIST.*could not reach the master 127\\.0\\.0\\.1:${port} within 2 s \\(rank 1;`));
  });

  it('a rank that never joins is named by rank 0 after the timeout', async () => {
    const port = await freePort();
    const res = await rank(0, 2, port, [path.join(HELPERS, 'pg-rank.mjs'), tmp, repoRoot, '2']).done;
    expect(res.code).not.toBe(0);
    expect(res.stderr).toMatch(new RegExp(`CXF_DIST.*timed out after 2 s waiting for rank\\(s\\) 1 of worldSize 2 to join 127\\.0\\.0\\.1:${port}`));
  });

  it('a world-size mismatch is a clear error on both ranks', async () => {
    const port = await freePort();
    const script = [path.join(HELPERS, 'pg-rank.mjs'), tmp, repoRoot, '10'];
    const a = rank(0, 2, port, script);
    const b = rank(1, 3, port, script, { LOCAL_WORLD_SIZE: '3' });
    const [ra, rb] = await Promise.all([a.done, b.done]);
    expect(ra.code).not.toBe(0);
    expect(rb.code).not.toBe(0);
    expect(`${ra.stderr}\n${rb.stderr}`).toMatch(/world-size mismatch: rank 1 has worldSize 3 but rank 0 has worldSize 2/);
  });
});

describe('2 ranks × b = 1 rank × 2b (Trainer API on explicit batches, KoLeo off)', () => {
  for (const centering of ['centering', 'sinkhorn_knopp']) {
    it(`${centering}: equal states across ranks, and equal to one rank on the whole batch`, async () => {
      const one = path.join(tmp, `eq-${centering}-1`);
      const two = path.join(tmp, `eq-${centering}-2`);
      const script = path.join(HELPERS, 'trainer-rank.mjs');
      const steps = '3';
      const r1 = spawnSync(process.execPath, [script, one, centering, steps, '4', repoRoot], { encoding: 'utf8', env: { ...process.env, CXFORMER_THREADS: '1' } });
      expect(r1.status, r1.stderr).toBe(0);
      const r2 = cli(['launch', '--nproc-per-node', '2', '--exec', '--', process.execPath, script, two, centering, steps, '4', repoRoot]);
      expect(r2.code, r2.stderr).toBe(0);
      // Ranks hold the same state (parameters broadcast at start, gradients all-reduced, same optimizer steps).
      expect(await maxDiff(path.join(two, 'rank-0.safetensors'), path.join(two, 'rank-1.safetensors'))).toBe(0);
      // And the same as one process on the whole batch, up to float32 summation order.
      expect(await maxDiff(path.join(one, 'rank-0.safetensors'), path.join(two, 'rank-0.safetensors'))).toBeLessThan(1e-4);
      const l1 = JSON.parse(await readFile(path.join(one, 'losses-0.json'), 'utf8'));
      const l2a = JSON.parse(await readFile(path.join(two, 'losses-0.json'), 'utf8'));
      const l2b = JSON.parse(await readFile(path.join(two, 'losses-1.json'), 'utf8'));
      for (let s = 0; s < 3; s++) {
        for (const k of ['total_loss', 'dino_local_crops_loss', 'dino_global_crops_loss', 'ibot_loss']) {
          expect(l2a[s][k], `${k} step ${s}: ranks report the averaged loss`).toBe(l2b[s][k]);
          expect(Math.abs(l2a[s][k] - l1[s][k]), `${k} step ${s}`).toBeLessThan(1e-4 * Math.max(1, Math.abs(l1[s][k])));
        }
      }
    }, 240_000);
  }
});

describe('cxformer launch -- train on 2 CPU ranks', () => {
  it('trains with identical ranks, rank 0 alone writing, and resumes exactly', async () => {
    const out = path.join(tmp, 'run2');
    const dump = path.join(tmp, 'dump');
    const r = cli(['launch', '--nproc-per-node', '2', '--', 'train', '--config', 'demo', ...tiny(out), '-q'], { CXFORMER_DIST_DUMP_DIR: dump });
    expect(r.code, r.stderr).toBe(0);
    expect(await maxDiff(path.join(dump, 'rank-0.safetensors'), path.join(dump, 'rank-1.safetensors'))).toBe(0);
    const lines = (await readFile(path.join(out, 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.iteration)).toEqual([...Array(12).keys()]);
    const log = await readFile(path.join(out, 'train.log'), 'utf8');
    expect(log).toMatch(/distributed: 2 ranks, backend gloo/);
    expect(log).toMatch(/global batch = 2 per rank × 2 ranks = 4/);
    expect(log).toMatch(/IGNORING LR SCALING RULE: lr = base_lr = [\d.e-]+ at global batch 4/);
    expect(log).not.toMatch(/rank 1:/);
    expect((await readdir(path.join(out, 'checkpoints'))).sort()).toEqual(['ckpt-0000003.safetensors', 'ckpt-0000007.safetensors', 'ckpt-0000011.safetensors']);
    expect(existsSync(path.join(out, 'exported', 'model.safetensors'))).toBe(true);
    // One TensorBoard events file: rank 0's.
    expect((await readdir(out)).filter((f) => f.startsWith('events.out.tfevents.'))).toHaveLength(1);

    // Resume: drop the last checkpoint and the export; both ranks continue from iteration 8 and end equal.
    const again = path.join(tmp, 'run2-resumed');
    await cp(out, again, { recursive: true });
    await rm(path.join(again, 'checkpoints', 'ckpt-0000011.safetensors'));
    await rm(path.join(again, 'exported'), { recursive: true });
    const dump2 = path.join(tmp, 'dump2');
    const r2 = cli(['launch', '--nproc-per-node', '2', '--', 'train', '--config', 'demo', ...tiny(again), '-q'], { CXFORMER_DIST_DUMP_DIR: dump2 });
    expect(r2.code, r2.stderr).toBe(0);
    expect(await readFile(path.join(again, 'train.log'), 'utf8')).toMatch(/resuming from .*ckpt-0000007\.safetensors at iteration 8 \(all 2 ranks\)/);
    expect(await maxDiff(path.join(dump2, 'rank-0.safetensors'), path.join(dump2, 'rank-1.safetensors'))).toBe(0);
    expect(await maxDiff(path.join(out, 'checkpoints', 'ckpt-0000011.safetensors'), path.join(again, 'checkpoints', 'ckpt-0000011.safetensors'))).toBe(0);
    expect(await readFile(path.join(again, 'train.log'), 'utf8')).not.toMatch(/warning: the checkpoint was written by/);

    // The same folder on one process: allowed, with a warning about the changed global batch.
    const single = cli(['train', '--config', 'demo', ...tiny(again), '-q']);
    expect(single.code, single.stderr).toBe(0);
    expect(await readFile(path.join(again, 'train.log'), 'utf8')).toMatch(
      /warning: the checkpoint was written by a run of 2 rank\(s\), this run has 1: the global batch changes from 4 to 2/,
    );
  }, 300_000);

  it('Ctrl-C: the ranks agree on the iteration to stop at, rank 0 checkpoints it, all exit 130', async () => {
    const out = path.join(tmp, 'sigint');
    const launcher = spawn(process.execPath, [MAIN, 'launch', '--nproc-per-node', '2', '--', 'train', '--config', 'demo', ...tiny(out, ['optim.epochs=1000'])], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, CXFORMER_THREADS: '1' },
    });
    let text = '';
    let sent = false;
    const onData = (d: Buffer) => {
      text += d.toString();
      // A step line of rank 0: both ranks are inside the training loop.
      if (!sent && /\[rank 0\] train: loss [^\n]*iteration \d+\/6000/.test(text)) {
        sent = true;
        launcher.kill('SIGINT');
      }
    };
    launcher.stdout.on('data', onData);
    launcher.stderr.on('data', onData);
    const code = await new Promise<number | null>((resolve) => launcher.on('close', resolve));
    expect(sent).toBe(true);
    expect(code).toBe(130);
    // Neither rank failed in a collective (that would be exit 1): the stop was agreed.
    expect(text).toMatch(/launch: stopped: rank 0 exited with code 130, rank 1 exited with code 130/);
    const m = /\[rank 0\] train: interrupted after iteration (\d+)/.exec(text);
    expect(m, text).not.toBeNull();
    expect(text).not.toMatch(/\[rank 1\] train: interrupted/);
    expect(await readdir(path.join(out, 'checkpoints'))).toContain(`ckpt-${m![1]!.padStart(7, '0')}.safetensors`);
  }, 240_000);

  it('ranks stop by themselves when their launcher is SIGKILLed', async () => {
    const out = path.join(tmp, 'kill-launcher');
    const launcher = spawn(process.execPath, [MAIN, 'launch', '--nproc-per-node', '2', '--', 'train', '--config', 'demo', ...tiny(out, ['optim.epochs=1000'])], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, CXFORMER_THREADS: '1' },
    });
    let text = '';
    const ranks: number[] = [];
    await new Promise<void>((resolve) => {
      const onData = (d: Buffer) => {
        text += d.toString();
        if (!ranks.length && /\[rank 0\] train: iterations/.test(text)) {
          ranks.push(...spawnSync('pgrep', ['-P', String(launcher.pid)], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map(Number));
          launcher.kill('SIGKILL');
          resolve();
        }
      };
      launcher.stdout.on('data', onData);
      launcher.stderr.on('data', onData);
    });
    expect(ranks).toHaveLength(2);
    // Gone = no /proc entry, or a zombie waiting for a reaper.
    const alive = (pid: number) => existsSync(`/proc/${pid}/stat`) && !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    while (ranks.some(alive)) await new Promise((r) => setTimeout(r, 200));
    expect(ranks.filter(alive)).toEqual([]);
  }, 240_000);

  it('a SIGKILLed rank ends the run with an error naming it (launcher and direct ranks)', async () => {
    // Through the launcher: it reports the killed rank and stops the other.
    const out = path.join(tmp, 'kill-launch');
    const launcher = spawn(process.execPath, [MAIN, 'launch', '--nproc-per-node', '2', '--grace-s', '5', '--', 'train', '--config', 'demo', ...tiny(out, ['optim.epochs=1000'])], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, CXFORMER_THREADS: '1' },
    });
    let text = '';
    let killed = false;
    const onData = (d: Buffer) => {
      text += d.toString();
      if (!killed && /\[rank 0\] train: iterations/.test(text)) {
        killed = true;
        // rank 1 = the launcher's child whose environment says RANK=1
        for (const pid of spawnSync('pgrep', ['-P', String(launcher.pid)], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean)) {
          const env = readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0');
          if (env.includes('RANK=1')) process.kill(Number(pid), 'SIGKILL');
        }
      }
    };
    launcher.stdout.on('data', onData);
    launcher.stderr.on('data', onData);
    const code = await new Promise<number | null>((resolve) => launcher.on('close', resolve));
    expect(killed).toBe(true);
    expect(code).toBe(137);
    expect(text).toMatch(/launch: rank 1 \(local rank 1\) was killed by SIGKILL; stopping the other 1 rank\(s\)/);

    // Without a launcher: rank 0 itself notices that rank 1 is gone and fails naming it (within dist.timeout_s).
    const port = await freePort();
    const args = [MAIN, 'train', '--config', 'demo', ...tiny(path.join(tmp, 'kill-direct'), ['optim.epochs=1000', 'dist.timeout_s=20'])];
    const r0 = rank(0, 2, port, args);
    const r1 = rank(1, 2, port, args);
    let r0text = '';
    await new Promise<void>((resolve) => {
      r0.child.stderr?.on('data', (d: Buffer) => {
        r0text += d.toString();
        if (/train: iterations/.test(r0text)) resolve();
      });
    });
    r1.child.kill('SIGKILL');
    const res0 = await r0.done;
    await r1.done;
    expect(res0.code).not.toBe(0);
    expect(res0.stderr).toMatch(/^cxformer train: .*\brank 1\b/m);
  }, 240_000);
});
