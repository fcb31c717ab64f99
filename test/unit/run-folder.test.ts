/**
 * The run-folder pieces shared by every trainer (src/run/): the folder lock (atomic, refused while held, stale
 * locks of dead processes recovered, other hosts named), removal of partial files of killed writers, and the
 * JSON-lines cut used on resume. Pure TypeScript: no native addon.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keepJsonl, removePartialFiles, withRunFolder } from '../../src/run/folder.js';
import { acquireRunLock, LOCK_FILE } from '../../src/run/lock.js';
import { repoRoot } from './golden.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-runfolder-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A pid that certainly belongs to no process: one that just exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => child.on('exit', resolve));
  return child.pid as number;
}

describe('run folder lock', () => {
  it('is refused while another process holds it, and free once that process releases it', async () => {
    const dir = path.join(tmp, 'held');
    // The holder is a separate Node process (through the built module: dist/ is built before the tests run).
    const mod = pathToFileURL(path.join(repoRoot, 'dist', 'run', 'lock.js')).href;
    const holder = spawn(process.execPath, [
      '--input-type=module',
      '-e',
      `const { acquireRunLock } = await import(${JSON.stringify(mod)});
       const l = await acquireRunLock(${JSON.stringify(dir)}, 'holder');
       console.log('locked');
       process.stdin.once('data', async () => { await l.release(); console.log('released'); });`,
    ]);
    let out = '';
    holder.stdout.on('data', (d) => (out += String(d)));
    const waitFor = async (word: string) => {
      for (let i = 0; i < 200 && !out.includes(word); i++) await new Promise((r) => setTimeout(r, 50));
      expect(out).toContain(word);
    };
    await waitFor('locked');
    const record = JSON.parse(await readFile(path.join(dir, LOCK_FILE), 'utf8'));
    expect(record).toMatchObject({ pid: holder.pid, host: hostname(), command: 'holder' });
    await expect(acquireRunLock(dir, 'second')).rejects.toMatchObject({ code: 'CXF_LOCKED', message: expect.stringMatching(new RegExp(`in use by another cxformer run: pid ${holder.pid} on `)) });
    holder.stdin.write('go\n');
    await waitFor('released');
    holder.kill();
    expect(existsSync(path.join(dir, LOCK_FILE))).toBe(false);
    const l = await acquireRunLock(dir, 'third');
    expect(l.recovered).toBeNull();
    await l.release();
  });

  it('recovers the stale lock of a dead process and reports it; a recycled pid is not the holder', async () => {
    const dir = path.join(tmp, 'stale');
    await mkdir(dir, { recursive: true });
    const dead = { pid: await deadPid(), host: hostname(), procStart: null, command: 'cxformer train', since: '2026-01-01T00:00:00.000Z' };
    await writeFile(path.join(dir, LOCK_FILE), JSON.stringify(dead));
    const l = await acquireRunLock(dir, 'next');
    expect(l.recovered).toEqual(dead);
    await l.release();
    // A live pid whose start tick differs from the record is another process that got the same pid.
    const recycled = { pid: process.pid, host: hostname(), procStart: '1', command: 'cxformer train', since: '2026-01-01T00:00:00.000Z' };
    await writeFile(path.join(dir, LOCK_FILE), JSON.stringify(recycled));
    const l2 = await acquireRunLock(dir, 'next');
    expect(l2.recovered?.pid).toBe(process.pid);
    // Held by this very process (same start tick): refused.
    await expect(acquireRunLock(dir, 'again')).rejects.toMatchObject({ code: 'CXF_LOCKED' });
    await l2.release();
    expect(await readdir(dir)).toEqual([]);
  });

  it('names the host of a lock it cannot check, and the file to delete', async () => {
    const dir = path.join(tmp, 'remote');
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, LOCK_FILE);
    await writeFile(file, JSON.stringify({ pid: 1234, host: 'gpu-node-17', procStart: null, command: 'cxformer train', since: '2026-01-01T00:00:00.000Z' }));
    await expect(acquireRunLock(dir, 'x')).rejects.toThrow(`pid 1234 on gpu-node-17 (cxformer train, since 2026-01-01T00:00:00.000Z); if that run is gone, delete ${file}`);
    await writeFile(file, 'garbage');
    await expect(acquireRunLock(dir, 'x')).rejects.toThrow(/not a cxformer lock record .*found "garbage"/);
  });
});

describe('withRunFolder', () => {
  it('removes partial files of killed writers, logs to train.log, records an error there and releases the lock', async () => {
    const dir = path.join(tmp, 'run');
    await mkdir(path.join(dir, 'checkpoints'), { recursive: true });
    const partial = [
      'checkpoints/.ckpt-0000003.safetensors.tmp-4242', // Rust atomic writer
      'metrics.jsonl.tmp-4242-0', // src/data/fsutil.ts
      'best/model/config.json.tmp-4242-k3j9x', // JSON writer
      '.cxformer.lock.tmp-4242', // a start killed while taking the lock
    ];
    const kept = ['checkpoints/ckpt-0000002.safetensors', 'notes.tmp', 'tmp-4242', 'metrics.jsonl'];
    for (const f of [...partial, ...kept]) {
      await mkdir(path.dirname(path.join(dir, f)), { recursive: true });
      await writeFile(path.join(dir, f), 'x'.repeat(1000));
    }
    const reported: string[] = [];
    await expect(
      withRunFolder({ dir, rank: 0, pg: null, command: 'test', report: (m) => reported.push(m) }, async (run) => {
        expect(existsSync(path.join(dir, LOCK_FILE))).toBe(true);
        await run.log('hello');
        throw new Error('disk full (simulated)');
      }),
    ).rejects.toThrow('disk full (simulated)');
    for (const f of partial) expect(existsSync(path.join(dir, f)), f).toBe(false);
    for (const f of kept) expect(existsSync(path.join(dir, f)), f).toBe(true);
    expect(existsSync(path.join(dir, LOCK_FILE))).toBe(false);
    const log = await readFile(path.join(dir, 'train.log'), 'utf8');
    expect(log).toMatch(/removed 4 partial file\(s\) of an interrupted writer \(0\.0 MiB\): .*\.ckpt-0000003\.safetensors\.tmp-4242/);
    expect(log).toMatch(/Z hello\n/);
    expect(log).toMatch(/Z error: disk full \(simulated\)\n$/);
    expect(reported).toEqual([expect.stringMatching(/^removed 4 partial/), 'hello']);
    expect((await removePartialFiles(dir)).files).toEqual([]);
  });
});

describe('keepJsonl', () => {
  it('keeps the accepted records in order and drops a torn last line', async () => {
    const f = path.join(tmp, 'm.jsonl');
    await writeFile(f, '{"iteration":0}\n{"iteration":1}\n\n{"iteration":2}\n{"iteration":3}\n{"itera');
    expect(await keepJsonl(f, (r) => (r.iteration as number) <= 2)).toBe(3);
    expect(await readFile(f, 'utf8')).toBe('{"iteration":0}\n{"iteration":1}\n{"iteration":2}\n');
    expect(await keepJsonl(path.join(tmp, 'new.jsonl'), () => true)).toBe(0);
    expect(await readFile(path.join(tmp, 'new.jsonl'), 'utf8')).toBe('');
  });
});
