/**
 * The run-folder guarantees of `cxformer train`, from the CLI (tiny phantom runs): one run per folder, metrics.jsonl
 * equal to an uninterrupted run's after repeated kill -9 and resumes, no partial files left, a failed start that
 * does not block the corrected command, errors in train.log, and a second Ctrl-C that quits at once. The fine-tuning
 * and segmentation trainers share the same code (src/run/folder.ts); their resume tests live beside them.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { phantomFolder } from '../helpers/phantom-folder.js';
import { expectScalarsMatch, jsonlRecords } from '../helpers/tensorboard-match.js';
import { repoRoot } from '../unit/golden.js';
import { readRun } from '../unit/tfevents-reader.js';

const MAIN = path.join(repoRoot, 'dist', 'cli', 'main.js');
const dirs = phantomFolder('cxf-runfolder-cli-', { n: 16, seed: 5, size: 128 });

/** 24 iterations of a 2-block ViT on 56/28 px crops, a checkpoint every 3, a metrics line every iteration. */
const tiny = (out: string, extra: string[] = []) => [
  'train',
  '--config',
  'demo',
  `output=${out}`,
  `data.root=${dirs.data}`,
  'data.base_size=96',
  'model.depth=2',
  'crops.global_crops_size=56',
  'crops.local_crops_size=28',
  'crops.local_crops_number=2',
  'train.batch_size_per_gpu=4',
  'train.OFFICIAL_EPOCH_LENGTH=12',
  'optim.epochs=2',
  'optim.warmup_epochs=1',
  'dino.head_n_prototypes=256',
  'checkpoint.period_iterations=3',
  'checkpoint.keep_last=2',
  'log.period_iterations=1',
  'compute.threads=1',
  'probe.enabled=false',
  ...extra,
];

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [MAIN, ...args, '-q'], { encoding: 'utf8' });
  return { code: r.status, stderr: r.stderr };
}

/** Starts the CLI; resolves its exit (code, signal) and stderr. */
function start(args: string[]) {
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += String(d)));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, stderr })),
  );
  return { child, exit };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function metricLines(out: string): Promise<number> {
  const f = path.join(out, 'metrics.jsonl');
  return existsSync(f) ? (await readFile(f, 'utf8')).split('\n').filter((l) => l.trim()).length : 0;
}

async function waitUntil(cond: () => Promise<boolean>, what: string, ms = 60_000) {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** metrics.jsonl without the timing fields (they differ between any two runs). */
async function metrics(out: string): Promise<Array<Record<string, unknown>>> {
  const text = await readFile(path.join(out, 'metrics.jsonl'), 'utf8');
  return text
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .map((r) => Object.fromEntries(Object.entries(r).filter(([k]) => !k.startsWith('ms_') && k !== 'images_per_s' && k !== 'it_per_s')));
}

/** Every file under `dir`, relative. */
async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(path.relative(dir, path.join(e.parentPath, e.name)));
  }
  return out.sort();
}


describe('cxformer train run folder', () => {
  let reference: Array<Record<string, unknown>>;

  it('a second run on a folder in use is refused; the first one writes every iteration once', async () => {
    const out = path.join(dirs.tmp, 'ref');
    const first = start(tiny(out, ['-q']));
    await waitUntil(async () => (await metricLines(out)) >= 1, 'the first run to step');
    const second = cli(tiny(out));
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(new RegExp(`${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is in use by another cxformer run: pid ${first.child.pid} on .*cxformer train`));
    const done = await first.exit;
    expect(done.code, done.stderr).toBe(0);
    reference = await metrics(out);
    expect(reference.map((r) => r.iteration)).toEqual([...Array(24).keys()]);
    // The refused start left the running folder's log alone; the lock is gone.
    expect(await readFile(path.join(out, 'train.log'), 'utf8')).not.toMatch(/in use/);
    expect(existsSync(path.join(out, '.cxformer.lock'))).toBe(false);
  });

  it('after repeated kill -9 and resumes, metrics.jsonl equals the uninterrupted run and no partial file is left', async () => {
    const out = path.join(dirs.tmp, 'killed');
    // Kill after 1, 4, 9, … metric lines: inside steps, between a metrics line and its checkpoint, mid-write.
    let kills = 0;
    for (const after of [1, 4, 9, 13, 17]) {
      const run = start(tiny(out, ['-q']));
      const ok = await waitUntil(async () => (await metricLines(out)) >= after, `${after} metric lines`, 60_000).then(
        () => true,
        () => false,
      );
      run.child.kill('SIGKILL');
      const r = await run.exit;
      if (ok && r.signal === 'SIGKILL') kills++;
    }
    expect(kills).toBeGreaterThanOrEqual(4);
    const last = cli(tiny(out));
    expect(last.code, last.stderr).toBe(0);
    expect(await metrics(out)).toEqual(reference);
    // TensorBoard (#14): one events file per start, the killed ones cut anywhere, read back strictly: exactly the
    // numbers of metrics.jsonl (each start's SessionLog START superseded what the killed start logged after its checkpoint).
    expect(readRun(out).files.length).toBeGreaterThanOrEqual(kills + 1);
    expectScalarsMatch(out, await jsonlRecords(path.join(out, 'metrics.jsonl')), 'iteration');
    const log = await readFile(path.join(out, 'train.log'), 'utf8');
    expect(log).toMatch(/recovered the lock of a run that is gone: pid \d+/);
    expect((await files(out)).filter((f) => /\.tmp-|\.lock/.test(f))).toEqual([]);
  });

  it('a start that fails before its first step does not make the corrected command need --force', async () => {
    const out = path.join(dirs.tmp, 'failed-start');
    const bad = cli(tiny(out, [`data.root=${path.join(dirs.tmp, 'no-such-folder')}`]));
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/no-such-folder/);
    // The error is in train.log too.
    expect(await readFile(path.join(out, 'train.log'), 'utf8')).toMatch(/Z error: .*no-such-folder/);
    const good = cli(tiny(out, ['optim.epochs=1', 'optim.warmup_epochs=0']));
    expect(good.code, good.stderr).toBe(0);
    // -q: no progress, checkpoint or log lines; the result only.
    expect(good.stderr).toBe(`train: done (${out}); exported teacher: ${path.join(out, 'exported')}\n`);
    expect((await metrics(out)).map((r) => r.iteration)).toEqual([...Array(12).keys()]);
  });

  it('Ctrl-C stops with a checkpoint; a second Ctrl-C quits at once (SIGINT, lock released); the rerun resumes', async () => {
    const out = path.join(dirs.tmp, 'ctrl-c');
    const once = start(tiny(out, ['-q']));
    await waitUntil(async () => (await metricLines(out)) >= 2, 'two steps');
    once.child.kill('SIGINT');
    const r1 = await once.exit;
    expect(r1.code, r1.stderr).toBe(130);
    expect(await readFile(path.join(out, 'train.log'), 'utf8')).toMatch(/interrupted after iteration (\d+); re-run the same command to resume/);

    const twice = start(tiny(out, ['-q']));
    const before = await metricLines(out);
    await waitUntil(async () => (await metricLines(out)) > before, 'a resumed step');
    twice.child.kill('SIGINT');
    await sleep(20);
    twice.child.kill('SIGINT');
    const r2 = await twice.exit;
    // The default SIGINT action, not a clean exit after the step: the process died of the signal.
    expect(r2.signal, r2.stderr).toBe('SIGINT');
    expect(existsSync(path.join(out, '.cxformer.lock'))).toBe(false);
    const resumed = cli(tiny(out));
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(await metrics(out)).toEqual(reference);
  });
});
