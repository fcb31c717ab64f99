/**
 * Resuming an interrupted prepare: abort mid-run, a torn pixels.bin, a half-written index line, a pixels.bin
 * cut into an indexed record — each resumed cache must be byte-identical to an uninterrupted one.
 */
import { appendFile, copyFile, mkdtemp, mkdir, readFile, readdir, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { openCache, prepareCache, type PrepareItem, type PrepareOptions } from '../../src/cache/index.js';
import { writeGray16Png, writeGray8Png } from './fixtures.js';

let dir: string;
let items: PrepareItem[];
let reference: string;
const N = 14;
const FILES = ['cache.json', 'index.jsonl', 'pixels.bin', 'report.json'];

const opts = (out: string, extra: Partial<PrepareOptions> = {}): PrepareOptions => ({
  out,
  items,
  shorterSide: 24,
  bitDepth: 16,
  workers: 3,
  minSide: 8,
  maxBadFraction: 0.2,
  ...extra,
});

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cxf-cache-resume-'));
  const src = path.join(dir, 'src');
  await mkdir(src);
  items = [];
  for (let k = 0; k < N; k++) {
    const w = 30 + 3 * k;
    const h = 40 - k;
    const file = path.join(src, `${k}.png`);
    const vals = Array.from({ length: w * h }, (_, i) => ((i * 7919 + k * 104729) % 65536) >>> 0);
    if (k % 3 === 0) await writeGray8Png(file, w, h, vals.map((v) => v >> 8));
    else await writeGray16Png(file, w, h, vals);
    items.push({ id: `case/${k}`, path: file, meta: { k, note: k % 2 ? 'odd' : 'even' } });
  }
  // one unusable item, so the report has content
  await writeFile(path.join(src, 'broken.png'), 'not a png');
  items.splice(5, 0, { id: 'broken', path: path.join(src, 'broken.png') });
  reference = path.join(dir, 'reference');
  const r = await prepareCache(opts(reference));
  expect([r.records, r.skipped.length]).toEqual([N, 1]);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function expectSameAsReference(out: string): Promise<void> {
  for (const f of FILES) {
    const a = await readFile(path.join(out, f));
    const b = await readFile(path.join(reference, f));
    expect(a.equals(b), `${f} differs from the uninterrupted run`).toBe(true);
  }
  expect((await readdir(out)).sort()).toEqual(FILES);
  const c = await openCache(out);
  for (const r of c.records) await c.read(r.i, { verify: true });
  await c.close();
}

/** Runs prepare and aborts it once the cache holds `after` records. */
async function interrupted(out: string, after: number): Promise<void> {
  const ac = new AbortController();
  const run = prepareCache(
    opts(out, {
      signal: ac.signal,
      onProgress: (p) => {
        if (p.cached + p.written >= after) ac.abort(new Error('test abort'));
      },
    }),
  );
  await expect(run).rejects.toThrow('test abort');
}

describe('resume', () => {
  it('after an abort mid-run, continues where it stopped and ends identical to an uninterrupted run', async () => {
    const out = path.join(dir, 'abort');
    await interrupted(out, 4);
    const info = JSON.parse(await readFile(path.join(out, 'cache.json'), 'utf8')) as { complete: boolean };
    expect(info.complete).toBe(false);
    expect((await readdir(out)).includes('prepare.lock')).toBe(false);
    const partial = await openCache(out, { allowIncomplete: true });
    expect(partial.records.length).toBe(4); // everything written before the abort is indexed
    await partial.close();
    // abort again later, then finish
    const progress: number[] = [];
    await interrupted(out, 9);
    const res = await prepareCache(opts(out, { onProgress: (p) => progress.push(p.done) }));
    expect(res.cached).toBe(9);
    expect(res.written).toBe(N - 9);
    expect(res.repaired).toBe(false);
    expect(progress[0]).toBe(9); // the first report counts the cached records
    expect(progress[progress.length - 1]).toBe(N + 1);
    await expectSameAsReference(out);
  });

  it('drops a torn record at the end of pixels.bin', async () => {
    const out = path.join(dir, 'torn-pixels');
    await interrupted(out, 6);
    const size = (await stat(path.join(out, 'pixels.bin'))).size;
    // unindexed bytes: more than the rest of the cache will take, so overwriting them in place is not enough
    await appendFile(path.join(out, 'pixels.bin'), Buffer.alloc(100_000, 0xab));
    const res = await prepareCache(opts(out));
    expect(res.repaired).toBe(true);
    expect(res.cached).toBe(6);
    await expectSameAsReference(out);
    expect(size).toBeLessThan((await stat(path.join(out, 'pixels.bin'))).size);
  });

  it('drops a half-written index line (and the pixels it named)', async () => {
    const out = path.join(dir, 'torn-index');
    await interrupted(out, 5);
    const refLines = (await readFile(path.join(reference, 'index.jsonl'), 'utf8')).split('\n');
    const refPixels = await readFile(path.join(reference, 'pixels.bin'));
    const next = JSON.parse(refLines[5]!) as { offset: number; byteLength: number };
    // the next record's pixels made it to disk, its line only halfway
    const pix = path.join(out, 'pixels.bin');
    const have = (await stat(pix)).size;
    await appendFile(pix, refPixels.subarray(have, next.offset + next.byteLength));
    await appendFile(path.join(out, 'index.jsonl'), refLines[5]!.slice(0, 40));
    const partial = await openCache(out, { allowIncomplete: true });
    expect(partial.records.length).toBe(5);
    await partial.close();
    const res = await prepareCache(opts(out));
    expect(res.repaired).toBe(true);
    expect(res.cached).toBe(5);
    await expectSameAsReference(out);
  });

  it('redoes an indexed record whose pixels were cut off', async () => {
    const out = path.join(dir, 'cut');
    await interrupted(out, 7);
    const pix = path.join(out, 'pixels.bin');
    await truncate(pix, (await stat(pix)).size - 10);
    const res = await prepareCache(opts(out));
    expect(res.cached).toBe(6);
    expect(res.repaired).toBe(true);
    await expectSameAsReference(out);
  });

  it('repairs a complete cache that lost its tail, and finishes one killed while writing the report', async () => {
    const out = path.join(dir, 'complete-cut');
    await mkdir(out);
    for (const f of FILES) await copyFile(path.join(reference, f), path.join(out, f));
    const pix = path.join(out, 'pixels.bin');
    await truncate(pix, (await stat(pix)).size - 1);
    const res = await prepareCache(opts(out));
    expect([res.nothingToDo, res.cached, res.written]).toEqual([false, N - 1, 1]);
    await expectSameAsReference(out);
    // killed after the last record but before report.json and the final cache.json
    await rm(path.join(out, 'report.json'));
    const info = JSON.parse(await readFile(path.join(out, 'cache.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(path.join(out, 'cache.json'), `${JSON.stringify({ ...info, complete: false, records: 0 }, null, 2)}\n`);
    const fin = await prepareCache(opts(out));
    expect([fin.nothingToDo, fin.written, fin.cached]).toEqual([false, 0, N]);
    await expectSameAsReference(out);
  });

  it('refuses an index with a bad line in the middle (not a torn tail)', async () => {
    const out = path.join(dir, 'corrupt-middle');
    await interrupted(out, 5);
    const idx = path.join(out, 'index.jsonl');
    const lines = (await readFile(idx, 'utf8')).split('\n');
    lines[2] = lines[2]!.slice(0, 30);
    await writeFile(idx, lines.join('\n'));
    await expect(prepareCache(opts(out))).rejects.toThrow(/index\.jsonl: line 3: expected a JSON record.*but a complete line follows on line 4/);
  });

  it('replaces a stale lock left by a dead process, and refuses a live one', async () => {
    const out = path.join(dir, 'locks');
    await interrupted(out, 3);
    const lock = path.join(out, 'prepare.lock');
    const { hostname } = await import('node:os');
    await writeFile(lock, JSON.stringify({ pid: process.ppid, hostname: hostname(), started: 'now' }));
    await expect(prepareCache(opts(out))).rejects.toThrow(/prepare\.lock: another prepare run \(pid \d+ on /);
    await writeFile(lock, JSON.stringify({ pid: 2 ** 22 + 12345, hostname: hostname(), started: 'then' }));
    await prepareCache(opts(out));
    await expectSameAsReference(out);
  });
});
