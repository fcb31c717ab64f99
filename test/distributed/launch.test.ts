/**
 * The local launcher (src/distributed/launch.ts and `cxformer launch`) on small node scripts: rank variables, output
 * prefixing, a failing or killed rank stopping the others with a message naming it, SIGKILL after the grace
 * period, signal forwarding, exit codes, and argument errors. No LibTorch involved.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launch } from '../../src/distributed/launch.js';
import { repoRoot } from '../unit/golden.js';

const MAIN = path.join(repoRoot, 'dist', 'cli', 'main.js');
const PROBE = path.join(repoRoot, 'test', 'helpers', 'libtorch-probe.cjs');
let tmp: string;
const script = (name: string) => path.join(tmp, name);

const SCRIPTS: Record<string, string> = {
  // Prints its rank variables, then a line without a newline.
  'env.mjs': `const e = process.env;
console.log(['RANK','WORLD_SIZE','LOCAL_RANK','LOCAL_WORLD_SIZE','GROUP_RANK','MASTER_ADDR','MASTER_PORT'].map((k) => k + '=' + e[k]).join(' '));
process.stderr.write('no newline at the end');`,
  // Rank 1 fails with exit code 3 once rank 0 is up; rank 0 would run forever.
  'fail.mjs': `import { existsSync, writeFileSync } from 'node:fs';
const dir = process.argv[2];
if (process.env.RANK === '0') { writeFileSync(dir + '/up-0', ''); console.log('rank 0 waiting'); setInterval(() => {}, 1000); }
else { const t = setInterval(() => { if (existsSync(dir + '/up-0')) { clearInterval(t); console.error('rank 1 fails'); process.exit(3); } }, 20); }`,
  // Rank 1 kills itself with SIGKILL; rank 0 ignores SIGTERM (so the launcher must escalate to SIGKILL).
  'killed.mjs': `import { existsSync, writeFileSync } from 'node:fs';
const dir = process.argv[2];
if (process.env.RANK === '0') { process.on('SIGTERM', () => console.log('rank 0 ignores SIGTERM')); writeFileSync(dir + '/up-k0', ''); setInterval(() => {}, 1000); }
else { const t = setInterval(() => { if (existsSync(dir + '/up-k0')) { clearInterval(t); process.kill(process.pid, 'SIGKILL'); } }, 20); }`,
  // Waits for SIGINT, reports it, exits 130 (like cxformer train after its checkpoint).
  'sigint.mjs': `let n = 0;
process.on('SIGINT', () => { n++; console.log('got SIGINT ' + n); setTimeout(() => process.exit(130), 200); });
console.log('ready'); setInterval(() => {}, 1000);`,
};

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-launch-'));
  for (const [f, text] of Object.entries(SCRIPTS)) await writeFile(script(f), text);
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function sink() {
  const s = new PassThrough();
  let text = '';
  s.on('data', (d: Buffer) => (text += d.toString()));
  return { stream: s, text: () => text };
}

describe('launch (library)', () => {
  it('sets the rank variables of this node and prefixes every output line', async () => {
    const out = sink();
    const err = sink();
    const r = await launch({
      nprocPerNode: 2,
      nnodes: 2,
      nodeRank: 1,
      masterAddr: 'node0',
      masterPort: 29511,
      command: process.execPath,
      args: [script('env.mjs')],
      stdout: out.stream,
      stderr: err.stream,
      forwardSignals: false,
    });
    expect(r.code).toBe(0);
    expect(r.failed).toBeNull();
    expect(r.exits.map((e) => [e.rank, e.localRank, e.code])).toEqual([[2, 0, 0], [3, 1, 0]]);
    const lines = out.text().trim().split('\n').sort();
    expect(lines).toEqual([
      '[rank 2] RANK=2 WORLD_SIZE=4 LOCAL_RANK=0 LOCAL_WORLD_SIZE=2 GROUP_RANK=1 MASTER_ADDR=node0 MASTER_PORT=29511',
      '[rank 3] RANK=3 WORLD_SIZE=4 LOCAL_RANK=1 LOCAL_WORLD_SIZE=2 GROUP_RANK=1 MASTER_ADDR=node0 MASTER_PORT=29511',
    ]);
    expect(err.text().trim().split('\n').sort()).toEqual(['[rank 2] no newline at the end', '[rank 3] no newline at the end']);
  });

  it('picks a free port on one node when none is given', async () => {
    const out = sink();
    const r = await launch({ nprocPerNode: 1, command: process.execPath, args: [script('env.mjs')], stdout: out.stream, stderr: sink().stream, forwardSignals: false });
    expect(r.masterPort).toBeGreaterThan(0);
    expect(out.text()).toContain(`MASTER_ADDR=127.0.0.1 MASTER_PORT=${r.masterPort}`);
  });

  it('a failing rank stops the others and decides the exit code', async () => {
    const msgs: string[] = [];
    const out = sink();
    const r = await launch({
      nprocPerNode: 2,
      command: process.execPath,
      args: [script('fail.mjs'), tmp],
      stdout: out.stream,
      stderr: sink().stream,
      log: (m) => msgs.push(m),
      graceMs: 30_000,
      forwardSignals: false,
    });
    expect(r.code).toBe(3);
    expect(r.failed).toMatchObject({ rank: 1, code: 3, signal: null });
    expect(r.exits[0]).toMatchObject({ rank: 0, signal: 'SIGTERM', stopped: true });
    expect(msgs[0]).toBe('rank 1 (local rank 1) exited with code 3; stopping the other 1 rank(s)');
    expect(out.text()).toContain('[rank 0] rank 0 waiting');
  });

  it('a killed rank is reported by its signal; a rank ignoring SIGTERM gets SIGKILL after the grace period', async () => {
    const msgs: string[] = [];
    const out = sink();
    const r = await launch({
      nprocPerNode: 2,
      command: process.execPath,
      args: [script('killed.mjs'), tmp],
      stdout: out.stream,
      stderr: sink().stream,
      log: (m) => msgs.push(m),
      graceMs: 300,
      forwardSignals: false,
    });
    expect(r.failed).toMatchObject({ rank: 1, code: null, signal: 'SIGKILL' });
    expect(r.code).toBe(128 + 9);
    expect(r.exits[0]).toMatchObject({ rank: 0, signal: 'SIGKILL' });
    expect(msgs).toEqual(['rank 1 (local rank 1) was killed by SIGKILL; stopping the other 1 rank(s)', '1 rank(s) still running 0.3 s after SIGTERM: sending SIGKILL']);
    expect(out.text()).toContain('[rank 0] rank 0 ignores SIGTERM');
  });

  it('a program that cannot start fails with 127', async () => {
    const msgs: string[] = [];
    const r = await launch({ nprocPerNode: 1, command: path.join(tmp, 'no-such-program'), args: [], stdout: sink().stream, stderr: sink().stream, log: (m) => msgs.push(m), forwardSignals: false });
    expect(r.code).toBe(127);
    expect(msgs.join('\n')).toMatch(/rank 0: cannot start '.*no-such-program'/);
  });

  it('rejects a bad layout', async () => {
    const base = { command: process.execPath, args: [] };
    await expect(launch({ ...base, nprocPerNode: 0 })).rejects.toThrow(/--nproc-per-node: expected an integer >= 1, got 0/);
    await expect(launch({ ...base, nprocPerNode: 2, nnodes: 2 })).rejects.toThrow(/--nnodes 2: give --master-addr/);
    await expect(launch({ ...base, nprocPerNode: 2, nnodes: 2, nodeRank: 2, masterAddr: 'h', masterPort: 1 })).rejects.toThrow(/--node-rank: expected an integer in 0\.\.1, got 2/);
  });
});

describe('cxformer launch (CLI)', () => {
  const cli = (args: string[]) => {
    const r = spawnSync(process.execPath, ['--require', PROBE, MAIN, ...args], { encoding: 'utf8' });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr, libtorch: /libtorch_loaded=true/.test(r.stderr) };
  };

  it('--help and argument errors do not load LibTorch', () => {
    const h = cli(['launch', '--help']);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/--nproc-per-node/);
    expect(h.libtorch).toBe(false);
    const noCmd = cli(['launch', '--nproc-per-node', '2']);
    expect(noCmd.code).toBe(2);
    expect(noCmd.stderr).toMatch(/give the command to run after --/);
    const wrong = cli(['launch', '--nproc-per-node', '2', '--', 'embed', 'a.png']);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/must be train or finetune \(or pass --exec to run any program\), got 'embed'/);
    const multi = cli(['launch', '--nproc-per-node', '2', '--nnodes', '2', '--', 'train']);
    expect(multi.code).toBe(2);
    expect(multi.stderr).toMatch(/--nnodes > 1 give --master-addr/);
    expect(multi.libtorch).toBe(false);
  });

  it('passes the arguments after -- unchanged and names a failed rank', () => {
    const ok = cli(['launch', '--nproc-per-node', '2', '--exec', '--', process.execPath, '-e', 'console.log(process.argv.slice(1).join(" "))', '0.10', '1e3']);
    expect(ok.code).toBe(0);
    expect(ok.stdout.trim().split('\n').sort()).toEqual(['[rank 0] 0.10 1e3', '[rank 1] 0.10 1e3']);
    expect(ok.stderr).toMatch(/launch: all 2 rank\(s\) finished/);
    const bad = cli(['launch', '--nproc-per-node', '2', '--grace-s', '30', '--exec', '--', process.execPath, script('fail.mjs'), tmp]);
    expect(bad.code).toBe(3);
    expect(bad.stderr).toMatch(/launch: failed: rank 1 exited with code 3/);
  });

  it('forwards SIGINT to each rank once and exits with their code', async () => {
    const child = spawn(process.execPath, [MAIN, 'launch', '--nproc-per-node', '2', '--exec', '--', process.execPath, script('sigint.mjs')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let sent = false;
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (!sent && (out.match(/ready/g) ?? []).length === 2) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    expect(code).toBe(130);
    expect(out.split('\n').filter((l) => l.includes('got SIGINT')).sort()).toEqual(['[rank 0] got SIGINT 1', '[rank 1] got SIGINT 1']);
    expect(err).toMatch(/launch: stopped: rank 0 exited with code 130, rank 1 exited with code 130/);
  });
});
