/** openCache: reading by index and id, CRC verification, and validation of cache.json and index.jsonl. */
import { cp, mkdtemp, mkdir, open, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { CacheError, openCache, prepareCache, type PrepareItem } from '../../src/cache/index.js';
import { writeGray16Png, writeGray8Png } from './fixtures.js';

let dir: string;
let good: string;
let items: PrepareItem[];
let values: number[][];

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cxf-cache-reader-'));
  await mkdir(path.join(dir, 'src'));
  items = [];
  values = [];
  for (let k = 0; k < 4; k++) {
    const w = 33 + k;
    const h = 20 + 2 * k;
    const v = Array.from({ length: w * h }, (_, i) => (i * 37 + k * 1000) % 65536);
    const file = path.join(dir, 'src', `${k}.png`);
    if (k === 1) await writeGray8Png(file, w, h, v.map((x) => x & 0xff));
    else await writeGray16Png(file, w, h, v);
    items.push({ id: `p/${k}`, path: file, meta: { k, tags: ['x', k] } });
    values.push(k === 1 ? v.map((x) => (x & 0xff) * 257) : v);
  }
  good = path.join(dir, 'good');
  await prepareCache({ out: good, items, shorterSide: null, bitDepth: 16, workers: 2, minSide: 8 });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A fresh copy of the good cache to damage. */
async function copy(name: string): Promise<string> {
  const out = path.join(dir, name);
  await cp(good, out, { recursive: true });
  return out;
}

async function editIndex(out: string, edit: (recs: Record<string, unknown>[]) => void): Promise<void> {
  const file = path.join(out, 'index.jsonl');
  const recs = (await readFile(file, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  edit(recs);
  await writeFile(file, recs.map((r) => `${JSON.stringify(r)}\n`).join(''));
}

async function editInfo(out: string, edit: (info: Record<string, unknown>) => void): Promise<void> {
  const file = path.join(out, 'cache.json');
  const info = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  edit(info);
  await writeFile(file, JSON.stringify(info));
}

describe('openCache', () => {
  it('reads records by index and by id', async () => {
    const c = await openCache(good);
    expect(c.complete).toBe(true);
    expect(c.settings).toMatchObject({ shorterSide: null, bitDepth: 16 });
    expect(c.records).toHaveLength(4);
    for (let k = 0; k < 4; k++) {
      const byIndex = await c.read(k, { verify: true });
      const byId = await c.read(`p/${k}`);
      expect(Array.from(byIndex.data)).toEqual(values[k]);
      expect(byId.data).toEqual(byIndex.data);
      expect([byIndex.width, byIndex.height]).toEqual([33 + k, 20 + 2 * k]);
      expect(byIndex.meta).toEqual({ k, tags: ['x', k] });
      expect(c.get(`p/${k}`)?.i).toBe(k);
    }
    expect(c.has('p/9')).toBe(false);
    await expect(c.read('p/9')).rejects.toThrow(/no id 'p\/9'/);
    await expect(c.read(4)).rejects.toThrow(/no record 4 \(the cache has 4\)/);
    await c.close();
    await expect(c.read(0)).rejects.toThrow(/closed/);
  });

  it('catches a flipped byte with verify, naming the record and the file', async () => {
    const out = await copy('flipped');
    const c0 = await openCache(out);
    const rec = c0.records[2]!;
    const clean = await c0.read(2);
    await c0.close();
    const pix = path.join(out, 'pixels.bin');
    const fh = await open(pix, 'r+');
    const pos = rec.offset + 17;
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, pos);
    b[0]! ^= 0x04;
    await fh.write(b, 0, 1, pos);
    await fh.close();
    const c = await openCache(out); // structure is intact: opens fine
    const err = await c.read(2, { verify: true }).catch((e: unknown) => e as CacheError);
    expect(err).toBeInstanceOf(CacheError);
    expect(err.code).toBe('CXF_DATA');
    expect(err.message).toContain(pix);
    expect(err.message).toMatch(/record 2 \('p\/2'.*CRC-32 mismatch/);
    const raw = await c.read('p/2'); // without verify the damaged data comes back
    const diff = Array.from(raw.data).flatMap((v, i) => (v !== clean.data[i] ? [i] : []));
    expect(diff).toEqual([8]); // byte 17 is the high byte of sample 8
    expect(raw.data[8]).toBe(clean.data[8]! ^ 0x0400);
    await expect(c.read(1, { verify: true })).resolves.toBeDefined();
    await expect(c.read(3, { verify: true })).resolves.toBeDefined();
    await c.close();
  });

  const cases: [string, (out: string) => Promise<void>, RegExp][] = [
    ['no cache.json', async (o) => rm(path.join(o, 'cache.json')), /cache\.json: not a prepared cache/],
    ['cache.json not JSON', async (o) => writeFile(path.join(o, 'cache.json'), '{"format":'), /cache\.json: expected JSON/],
    ['another format', (o) => editInfo(o, (i) => (i.format = 'zip')), /cache\.json: expected format 'cxformer-prepared-cache', found "zip"/],
    ['another version', (o) => editInfo(o, (i) => (i.version = 2)), /cache\.json: expected format version 1, found 2/],
    ['a bad bit depth setting', (o) => editInfo(o, (i) => ((i.settings as Record<string, unknown>).bitDepth = 12)), /settings\.bitDepth: expected 8 or 16, found 12/],
    ['incomplete', (o) => editInfo(o, (i) => (i.complete = false)), /cache\.json: the cache is incomplete/],
    ['a record count that differs', (o) => editInfo(o, (i) => (i.records = 5)), /index\.jsonl: expected 5 records \(cache\.json\), found 4 lines/],
    ['no pixels.bin', async (o) => rm(path.join(o, 'pixels.bin')), /pixels\.bin: does not exist/],
    ['a misaligned offset', (o) => editIndex(o, (r) => (r[2]!.offset = (r[2]!.offset as number) + 8)), /index\.jsonl: line 3: offset \d+ is not a multiple of 64/],
    ['overlapping records', (o) => editIndex(o, (r) => (r[2]!.offset = (r[2]!.offset as number) - 64)), /index\.jsonl: line 3: offset \d+ overlaps the previous record/],
    ['a byteLength that does not match the size', (o) => editIndex(o, (r) => (r[1]!.byteLength = (r[1]!.byteLength as number) - 2)), /line 2: byteLength: expected \d+ \(22×34×2\)/],
    ['a height that does not match the original size (no resize)', (o) => editIndex(o, (r) => {
      r[0]!.height = 10;
      r[0]!.byteLength = 10 * 33 * 2;
    }), /line 1: expected the original size 20×33/],
    ['another bit depth', (o) => editIndex(o, (r) => (r[0]!.bitDepth = 8)), /line 1: bitDepth: expected 16/],
    ['a duplicate id', (o) => editIndex(o, (r) => (r[3]!.id = 'p/1')), /line 4: id 'p\/1' is already on line 2/],
    ['a wrong position', (o) => editIndex(o, (r) => (r[1]!.i = 7)), /line 2: expected i 1/],
    ['a negative crc', (o) => editIndex(o, (r) => (r[1]!.crc32 = -1)), /line 2: crc32: expected an unsigned 32-bit integer/],
    ['meta not an object', (o) => editIndex(o, (r) => (r[1]!.meta = [1])), /line 2: meta: expected a JSON object/],
    ['a malformed line', async (o) => {
      const f = path.join(o, 'index.jsonl');
      const lines = (await readFile(f, 'utf8')).split('\n');
      lines[1] = lines[1]!.slice(0, 25);
      await writeFile(f, lines.join('\n'));
    }, /index\.jsonl: line 2: expected a JSON record, found malformed JSON/],
    ['a torn last line', async (o) => writeFile(path.join(o, 'index.jsonl'), '{"i":4,"id":"p/4","off', { flag: 'a' }), /line 5: the line is not terminated/],
    ['a record past the end of pixels.bin', async (o) => {
      const f = path.join(o, 'pixels.bin');
      const size = (await readFile(f)).length;
      await truncate(f, size - 1);
    }, /index\.jsonl: line 4: record 'p\/3' ends at byte \d+, past the end of pixels\.bin \(\d+ bytes\)/],
  ];
  for (const [name, damage, message] of cases) {
    it(`rejects a cache with ${name}`, async () => {
      const out = await copy(`bad-${name.replace(/\W+/g, '-')}`);
      await damage(out);
      const err = await openCache(out).catch((e: unknown) => e as CacheError);
      expect(err, 'openCache should reject').toBeInstanceOf(CacheError);
      expect(err.code).toBe('CXF_DATA');
      expect(err.message).toMatch(message);
      expect(err.message).toContain(out);
    });
  }

  it('opens an incomplete cache with allowIncomplete, ignoring a torn tail', async () => {
    const out = await copy('incomplete');
    await editInfo(out, (i) => (i.complete = false));
    await writeFile(path.join(out, 'index.jsonl'), '{"i":4,"id":"p/4","off', { flag: 'a' });
    const pix = path.join(out, 'pixels.bin');
    await truncate(pix, (await readFile(pix)).length - 1);
    const c = await openCache(out, { allowIncomplete: true });
    expect(c.complete).toBe(false);
    expect(c.records.map((r) => r.id)).toEqual(['p/0', 'p/1', 'p/2']);
    expect(Array.from((await c.read('p/2', { verify: true })).data)).toEqual(values[2]);
    await c.close();
  });
});
