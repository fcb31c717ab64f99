/** `cxformer prepare` command module: arguments, the manifest rows as metadata, progress and summary lines. */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { openCache } from '../../src/cache/index.js';
import { formatProgress, parsePrepareArgs, run } from '../../src/cli/commands/prepare.js';
import { parseCsv } from '../../src/data/csv.js';
import { synthDataset } from '../../src/data/synth.js';
import { decodeImage } from '../../src/image/decode.js';
import { resizeShorterSide } from '../../src/image/resize.js';

let dir: string;
let root: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cxf-cache-cli-'));
  root = path.join(dir, 'synth');
  await synthDataset({ out: root, n: 7, seed: 3, size: 64 });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs the command, capturing stderr. */
async function capture(a: Record<string, unknown>): Promise<{ code: number; err: string }> {
  let err = '';
  const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    err += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    return true;
  });
  try {
    return { code: await run(a), err };
  } finally {
    spy.mockRestore();
  }
}

describe('cxformer prepare (command)', () => {
  it('prepares a manifest dataset with the rows as metadata, then finds nothing to do', async () => {
    const out = path.join(dir, 'c1');
    const first = await capture({ out, root, manifest: 'labels.csv', size: '40', 'bit-depth': '8', workers: 2 });
    expect(first.code).toBe(0);
    expect(first.err).toMatch(/prepare: 7 items → 7 records in .*c1 \(7 written, 0 already cached\), 0 skipped; shorter side 40 px, 8-bit/);
    const table = parseCsv(await readFile(path.join(root, 'labels.csv'), 'utf8'), 'labels.csv');
    const c = await openCache(out);
    expect(c.records).toHaveLength(7);
    for (const [k, cells] of table.rows.entries()) {
      const row = Object.fromEntries(table.header.map((h, j) => [h, cells[j]]));
      const rec = c.get(row.Path!)!;
      expect(rec, row.Path).toBeDefined();
      expect(rec.meta).toEqual(row);
      if (k < 2) {
        const img = await decodeImage(path.join(root, row.Path!));
        const exp = resizeShorterSide(Float32Array.from(img.data), img.width, img.height, 40);
        expect((await c.read(rec.i, { verify: true })).data).toEqual(Uint8Array.from(exp.data));
      }
    }
    await c.close();
    const second = await capture({ out, root, manifest: 'labels.csv', size: 40, bitDepth: 8, workers: 2 });
    expect(second.code).toBe(0);
    expect(second.err).toMatch(/is complete and up to date \(7 records, 0 skipped, shorter side 40 px, 8-bit\); nothing to do/);
    const quiet = await capture({ out, root, manifest: 'labels.csv', size: 40, workers: 2, quiet: true });
    expect([quiet.code, quiet.err]).toEqual([0, '']);
  });

  it('lists a folder without a manifest, keeps the size with --size none, 16-bit', async () => {
    const out = path.join(dir, 'c2');
    const r = await capture({ out, root: path.join(root, 'images'), size: 'none', 'bit-depth': 16, workers: 1, quiet: true });
    expect(r.code).toBe(0);
    const c = await openCache(out);
    expect(c.settings).toMatchObject({ shorterSide: null, bitDepth: 16 });
    expect(c.records.map((x) => [x.width, x.height, x.bitDepth])).toEqual(new Array(7).fill([64, 64, 16]));
    expect(c.records[0]!.meta).toEqual({});
    await c.close();
    // a different setting is refused with the setting named, and --overwrite rebuilds
    await expect(run({ out, root: path.join(root, 'images'), size: '32', quiet: true })).rejects.toMatchObject({ code: 'CXF_DATA', message: expect.stringMatching(/shorterSide \(cache null, asked 32\).*--overwrite/) });
    expect((await capture({ out, root: path.join(root, 'images'), size: '32', overwrite: true, quiet: true })).code).toBe(0);
    const c2 = await openCache(out);
    expect(c2.settings).toMatchObject({ shorterSide: 32, bitDepth: 8 });
    await c2.close();
  });

  it('parses the arguments with defaults and rejects bad ones with CXF_ARG', () => {
    expect(parsePrepareArgs({ out: 'o', root: 'r' })).toMatchObject({ shorterSide: 518, bitDepth: 8, overwrite: false, manifest: undefined });
    expect(parsePrepareArgs({ out: 'o', root: 'r', size: 'none', 'bit-depth': '16', 'max-bad-fraction': '0.05', 'min-side': '64', overwrite: true, manifest: 'm.csv', 'path-column': 'File' })).toMatchObject({
      shorterSide: null,
      bitDepth: 16,
      maxBadFraction: 0.05,
      minSide: 64,
      overwrite: true,
      pathColumn: 'File',
    });
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ root: 'r' }, /--out is required/],
      [{ out: 'o' }, /--root is required/],
      [{ out: 'o', root: 'r', size: 'big' }, /--size: expected the shorter side in px/],
      [{ out: 'o', root: 'r', size: '0' }, /--size/],
      [{ out: 'o', root: 'r', 'bit-depth': '12' }, /--bit-depth: expected 8 or 16, got "12"/],
      [{ out: 'o', root: 'r', workers: '0' }, /--workers: expected an integer in 1\.\.1024, got 0/],
      [{ out: 'o', root: 'r', workers: 'many' }, /--workers/],
      [{ out: 'o', root: 'r', 'max-bad-fraction': '2' }, /--max-bad-fraction: expected a number in \[0, 1\]/],
      [{ out: 'o', root: 'r', 'path-column': 'File' }, /--path-column needs --manifest/],
      [{ out: 'o', root: 'r', overwrite: 'yes' }, /--overwrite: expected no value/],
    ];
    for (const [a, msg] of bad) {
      let err: (Error & { code?: string }) | undefined;
      try {
        parsePrepareArgs(a);
      } catch (e) {
        err = e as Error & { code?: string };
      }
      expect(err?.code, JSON.stringify(a)).toBe('CXF_ARG');
      expect(err?.message).toMatch(msg);
    }
  });

  it('formats progress with rate and ETA', () => {
    expect(formatProgress({ done: 250, total: 1000, written: 240, skipped: 2, cached: 8, imagesPerSecond: 50, elapsedSeconds: 4.8 })).toBe(
      'prepare: 250/1000 (25.0 %), 2 skipped, 50.0 images/s, ETA 15s, 5s elapsed',
    );
    expect(formatProgress({ done: 10, total: 100_000, written: 10, skipped: 0, cached: 0, imagesPerSecond: 10, elapsedSeconds: 1 })).toContain('ETA 2h46m');
  });
});
