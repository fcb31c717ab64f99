/**
 * The worker-thread path of prepare, which only exists in compiled JavaScript: the project is compiled into a
 * temporary folder (like dist/), and a child Node process runs prepareCache from there with mode 'threads'.
 * Its cache must be byte-identical to the in-process one, and a child killed with SIGKILL mid-run must leave a
 * cache that resumes to the same bytes.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, mkdir, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { openCache, prepareCache, type PrepareItem, threadsAvailable } from '../../src/cache/index.js';
import { writeColorPng, writeGray16Png, writeGray8Png, writeJpeg } from './fixtures.js';

const run = promisify(execFile);
const repo = path.resolve(import.meta.dirname, '..', '..');
let dir: string;
let runner: string;
let items: PrepareItem[];

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cxf-cache-threads-'));
  const build = path.join(dir, 'build');
  await mkdir(build);
  // Compile like `npm run build`, into build/dist. Type errors elsewhere in the tree do not stop the emit.
  await run(path.join(repo, 'node_modules', '.bin', 'tsc'), ['-p', path.join(repo, 'tsconfig.json'), '--outDir', path.join(build, 'dist'), '--declaration', 'false', '--sourceMap', 'false']).catch(
    () => undefined,
  );
  expect(existsSync(path.join(build, 'dist', 'cache', 'worker.js')), 'compiled worker').toBe(true);
  await writeFile(path.join(build, 'package.json'), '{"type":"module"}\n');
  await symlink(path.join(repo, 'node_modules'), path.join(build, 'node_modules'), 'dir');
  runner = path.join(build, 'runner.mjs');
  await writeFile(
    runner,
    `import { prepareCache } from './dist/cache/index.js';
const o = JSON.parse(process.argv[2]);
const r = await prepareCache({ ...o, onProgress: o.progress ? (p) => process.stdout.write(JSON.stringify(p) + '\\n') : undefined });
process.stdout.write(JSON.stringify({ result: { mode: r.mode, records: r.records, written: r.written, workers: r.workers } }) + '\\n');
`,
  );

  const src = path.join(dir, 'src');
  await mkdir(src);
  items = [];
  for (let k = 0; k < 24; k++) {
    const w = 70 + 5 * k;
    const h = 60 + 3 * (k % 5);
    const n = w * h;
    const file = path.join(src, `${k}.${k % 6 === 5 ? 'jpg' : 'png'}`);
    const v = (i: number, c = 0) => ((i % w) * 3 + Math.floor(i / w) * 2 + c * 40 + k * 17) % 256;
    if (k % 6 === 5) await writeJpeg(file, w, h, 3, Array.from({ length: n * 3 }, (_, j) => v(Math.floor(j / 3), j % 3)));
    else if (k % 3 === 0) await writeGray16Png(file, w, h, Array.from({ length: n }, (_, i) => (v(i) * 251 + i) % 65536));
    else if (k % 3 === 1) await writeColorPng(file, w, h, 3, Array.from({ length: n * 3 }, (_, j) => v(Math.floor(j / 3), j % 3)));
    else await writeGray8Png(file, w, h, Array.from({ length: n }, (_, i) => v(i)));
    items.push({ id: `t/${k}`, path: file, meta: { k } });
  }
  items.push({ id: 't/missing', path: path.join(src, 'missing.png') });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function sameFiles(a: string, b: string): Promise<void> {
  for (const f of ['cache.json', 'index.jsonl', 'pixels.bin', 'report.json']) {
    expect((await readFile(path.join(a, f))).equals(await readFile(path.join(b, f))), f).toBe(true);
  }
}

describe('worker threads (compiled)', () => {
  it('are not available from the TypeScript sources: auto runs in-process, threads refuses', async () => {
    expect(threadsAvailable()).toBe(false);
    await expect(prepareCache({ out: path.join(dir, 'no-threads'), items, shorterSide: 48, bitDepth: 8, mode: 'threads' })).rejects.toThrow(
      /mode 'threads' needs the compiled worker .*worker\.js/,
    );
  });

  for (const bitDepth of [8, 16] as const) {
    it(`write the same cache as the in-process path (${bitDepth}-bit)`, async () => {
      const inline = path.join(dir, `inline-${bitDepth}`);
      const threads = path.join(dir, `threads-${bitDepth}`);
      const a = await prepareCache({ out: inline, items, shorterSide: 48, bitDepth, workers: 2, maxBadFraction: 0.1 });
      expect(a.mode).toBe('inline');
      const { stdout } = await run(process.execPath, [runner, JSON.stringify({ out: threads, items, shorterSide: 48, bitDepth, workers: 3, maxBadFraction: 0.1, mode: 'auto' })]);
      const last = JSON.parse(stdout.trim().split('\n').pop()!) as { result: { mode: string; records: number; workers: number } };
      expect(last.result).toEqual({ mode: 'threads', records: 24, written: 24, workers: 3 });
      await sameFiles(inline, threads);
    });
  }

  it('leave a resumable cache when the process is killed (SIGKILL) mid-run', async () => {
    const N = 100;
    const big: PrepareItem[] = [];
    const src = path.join(dir, 'big');
    await mkdir(src);
    for (let k = 0; k < N; k++) {
      const file = path.join(src, `${k}.png`);
      await writeGray16Png(file, 320, 300, Array.from({ length: 320 * 300 }, (_, i) => (i * 13 + k * 977) % 65536));
      big.push({ id: `b/${k}`, path: file, meta: { k } });
    }
    const reference = path.join(dir, 'kill-ref');
    await prepareCache({ out: reference, items: big, shorterSide: 100, bitDepth: 16, workers: 2 });
    const out = path.join(dir, 'kill');
    const child = spawn(process.execPath, [runner, JSON.stringify({ out, items: big, shorterSide: 100, bitDepth: 16, workers: 2, progress: true })], { stdio: ['ignore', 'pipe', 'inherit'] });
    let buf = '';
    let killed = false;
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const l of lines) {
        const p = JSON.parse(l) as { written?: number };
        // Kill right after the first commit (index.jsonl no longer empty), with more records in flight.
        if (!killed && (p.written ?? 0) > 0 && statSync(path.join(out, 'index.jsonl')).size > 0) {
          killed = true;
          child.kill('SIGKILL');
        }
      }
    });
    const signal = await new Promise<string | null>((resolve) => child.on('exit', (_code, sig) => resolve(sig)));
    expect(signal).toBe('SIGKILL');
    const info = JSON.parse(await readFile(path.join(out, 'cache.json'), 'utf8')) as { complete: boolean };
    expect(info.complete).toBe(false);
    expect(await readdir(out)).toContain('prepare.lock'); // left behind by the killed process
    const partial = await openCache(out, { allowIncomplete: true });
    const had = partial.records.length;
    await partial.close();
    expect(had).toBeGreaterThan(0);
    expect(had).toBeLessThan(N);
    const res = await prepareCache({ out, items: big, shorterSide: 100, bitDepth: 16, workers: 2 });
    expect(res.cached).toBe(had);
    expect(res.written).toBe(N - had);
    await sameFiles(out, reference);
    expect((await readdir(out)).sort()).toEqual(['cache.json', 'index.jsonl', 'pixels.bin', 'report.json']);
  });
});
