/**
 * prepareCache + openCache: round trip against decoding + conversion done directly, the on-disk layout,
 * idempotence, skipped-item accounting, the bad-fraction failure, settings changes, metadata updates.
 * (Runs from the TypeScript sources, so prepare uses its in-process mode; cache-threads.test.ts covers the
 * worker threads of the compiled module.)
 */
import { mkdtemp, mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { openCache, prepareCache, type PrepareItem } from '../../src/cache/index.js';
import { decodeImage } from '../../src/image/decode.js';
import { grayPlane8, rgbToGray } from '../../src/image/gray.js';
import { resizeShorterSide } from '../../src/image/resize.js';
import { writeColorPng, writeGray16Png, writeGray8Png, writeJpeg, writeRgb16Png } from './fixtures.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cxf-cache-prepare-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Deterministic pseudo-random integers in [0, max]. */
function noise(n: number, max: number, seed: number): number[] {
  let s = seed >>> 0 || 1;
  const out: number[] = [];
  for (let k = 0; k < n; k++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out.push(Math.floor((s / 2 ** 32) * (max + 1)));
  }
  return out;
}

/** A smooth gradient plus noise, so resizing has something to do. */
function pattern(w: number, h: number, max: number, seed: number, channels = 1): number[] {
  const nz = noise(w * h * channels, Math.floor(max / 8), seed);
  const out: number[] = [];
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < channels; c++) {
        const base = ((x + 2 * y + 13 * c) / (w + 2 * h + 26)) * max * 0.85;
        out.push(Math.min(max, Math.round(base) + nz[(y * w + x) * channels + c]!));
      }
    }
  }
  return out;
}

/** The expected stored plane, composed here from the image primitives (decode → gray → resize → round). */
async function expected(file: string, shorterSide: number | null, bitDepth: 8 | 16) {
  const img = await decodeImage(file);
  const { width, height } = img;
  let gray: Uint8Array | Uint16Array;
  if (bitDepth === 8) gray = grayPlane8(img);
  else {
    const g = img.channels === 3 ? rgbToGray(img.data) : img.data;
    gray = g instanceof Uint16Array ? g : Uint16Array.from(g, (v) => v * 257);
  }
  if (shorterSide === null || Math.min(width, height) === shorterSide) return { data: gray, width, height };
  const r = resizeShorterSide(Float32Array.from(gray), width, height, shorterSide, { roundToUint8: bitDepth === 8 });
  const data = bitDepth === 8 ? Uint8Array.from(r.data) : Uint16Array.from(r.data, (v) => Math.min(65535, Math.max(0, Math.round(v))));
  return { data, width: r.width, height: r.height };
}

/** Fixture images: gray 8/16-bit PNGs, RGB 8/16-bit PNGs, gray and RGB JPEGs, in portrait and landscape. */
interface Fixture {
  item: PrepareItem;
  /** The written samples, for the checks that do not go through the decoder. */
  values: number[];
  width: number;
  height: number;
  kind: 'gray8' | 'gray16' | 'rgb8' | 'rgb16' | 'jpeg-gray' | 'jpeg-rgb';
}
let fixtures: Fixture[];

beforeAll(async () => {
  const src = path.join(dir, 'src');
  await mkdir(src);
  const specs: [Fixture['kind'], number, number][] = [
    ['gray8', 90, 60],
    ['gray16', 64, 100],
    ['rgb8', 75, 50],
    ['rgb16', 48, 72],
    ['jpeg-gray', 80, 56],
    ['jpeg-rgb', 56, 88],
    ['gray16', 40, 40],
  ];
  fixtures = [];
  for (const [k, [kind, w, h]] of specs.entries()) {
    const file = path.join(src, `${k}-${kind}.${kind.startsWith('jpeg') ? 'jpg' : 'png'}`);
    const ch = kind === 'rgb8' || kind === 'rgb16' || kind === 'jpeg-rgb' ? 3 : 1;
    const max = kind === 'gray16' || kind === 'rgb16' ? 65535 : 255;
    const values = pattern(w, h, max, 100 + k, ch);
    if (kind === 'gray8') await writeGray8Png(file, w, h, values);
    else if (kind === 'gray16') await writeGray16Png(file, w, h, values);
    else if (kind === 'rgb8') await writeColorPng(file, w, h, 3, values);
    else if (kind === 'rgb16') await writeRgb16Png(file, w, h, values);
    else await writeJpeg(file, w, h, ch as 1 | 3, values);
    fixtures.push({
      item: { id: `img/${k}-${kind}`, path: file, meta: { kind, k, labels: { a: k % 2, b: null }, views: ['PA'] } },
      values,
      width: w,
      height: h,
      kind,
    });
  }
});

const items = () => fixtures.map((f) => f.item);

describe('prepareCache round trip', () => {
  for (const [shorterSide, bitDepth] of [
    [32, 8],
    [32, 16],
    [null, 8],
    [null, 16],
    [100, 8],
  ] as const) {
    it(`stores decode + gray + resize exactly (shorterSide ${shorterSide}, ${bitDepth}-bit)`, async () => {
      const out = path.join(dir, `rt-${shorterSide}-${bitDepth}`);
      const res = await prepareCache({ out, items: items(), shorterSide, bitDepth, workers: 3, minSide: 8 });
      expect(res.mode).toBe('inline');
      expect(res.records).toBe(fixtures.length);
      expect(res.written).toBe(fixtures.length);
      expect(res.skipped).toEqual([]);
      const cache = await openCache(out);
      try {
        expect(cache.records.map((r) => r.id)).toEqual(fixtures.map((f) => f.item.id));
        for (const f of fixtures) {
          const exp = await expected(f.item.path, shorterSide, bitDepth);
          const got = await cache.read(f.item.id, { verify: true });
          expect(got.bitDepth).toBe(bitDepth);
          expect(got.data).toBeInstanceOf(bitDepth === 8 ? Uint8Array : Uint16Array);
          expect([got.width, got.height]).toEqual([exp.width, exp.height]);
          expect(got.data).toEqual(exp.data);
          expect(got.meta).toEqual(f.item.meta);
          expect([got.record.originalWidth, got.record.originalHeight]).toEqual([f.width, f.height]);
          expect(got.record.sourceChannels).toBe(f.kind.startsWith('rgb') || f.kind === 'jpeg-rgb' ? 3 : 1);
          expect(got.record.sourceBitDepth).toBe(f.kind.endsWith('16') ? 16 : 8);
          if (shorterSide !== null) expect(Math.min(got.width, got.height)).toBe(shorterSide);
        }
      } finally {
        await cache.close();
      }
    });
  }

  it('keeps the written samples when not resizing (independent of the decoder)', async () => {
    const out = path.join(dir, 'rt-null-16');
    const cache = await openCache(out);
    try {
      for (const f of fixtures) {
        const got = await cache.read(f.item.id);
        expect([got.width, got.height]).toEqual([f.width, f.height]);
        const v = f.values;
        if (f.kind === 'gray16') expect(Array.from(got.data)).toEqual(v);
        if (f.kind === 'gray8') expect(Array.from(got.data)).toEqual(v.map((x) => x * 257));
        if (f.kind === 'rgb8' || f.kind === 'rgb16') {
          const scale = f.kind === 'rgb8' ? 257 : 1;
          const luma = Array.from({ length: f.width * f.height }, (_, i) =>
            Math.floor((v[3 * i]! * 19595 + v[3 * i + 1]! * 38470 + v[3 * i + 2]! * 7471 + 0x8000) / 65536) * scale,
          );
          expect(Array.from(got.data)).toEqual(luma);
        }
      }
    } finally {
      await cache.close();
    }
    const c8 = await openCache(path.join(dir, 'rt-null-8'));
    try {
      const f = fixtures.find((x) => x.kind === 'gray16')!;
      const got = await c8.read(f.item.id);
      expect(Array.from(got.data)).toEqual(f.values.map((x) => Math.round(x / 257)));
      // 16-bit precision: the 16-bit cache holds values the 8-bit one cannot
      expect(f.values.some((x) => x % 257 !== 0)).toBe(true);
    } finally {
      await c8.close();
    }
  });

  it('resizes a constant image to the same constant, landscape and portrait, 8 and 16 bits', async () => {
    const src = path.join(dir, 'const');
    await mkdir(src, { recursive: true });
    const land = path.join(src, 'land.png');
    const port = path.join(src, 'port.png');
    await writeGray16Png(land, 150, 100, new Array(150 * 100).fill(40000));
    await writeGray8Png(port, 60, 90, new Array(60 * 90).fill(77));
    for (const bitDepth of [8, 16] as const) {
      const out = path.join(dir, `const-${bitDepth}`);
      await prepareCache({ out, items: [{ id: 'land', path: land }, { id: 'port', path: port }], shorterSide: 40, bitDepth, workers: 2, minSide: 8 });
      const c = await openCache(out);
      const a = await c.read('land');
      const b = await c.read('port');
      expect([a.width, a.height]).toEqual([60, 40]); // trunc(40 · 150 / 100)
      expect([b.width, b.height]).toEqual([40, 60]);
      expect(new Set(a.data)).toEqual(new Set([bitDepth === 8 ? Math.round(40000 / 257) : 40000]));
      expect(new Set(b.data)).toEqual(new Set([bitDepth === 8 ? 77 : 77 * 257]));
      expect(a.meta).toEqual({});
      await c.close();
    }
  });

  it('lays records out as documented: 64-byte aligned, zero padding, CRC of the stored bytes, no trailing bytes', async () => {
    for (const name of ['rt-32-8', 'rt-32-16', 'rt-null-16']) {
      const out = path.join(dir, name);
      const pixels = await readFile(path.join(out, 'pixels.bin'));
      const lines = (await readFile(path.join(out, 'index.jsonl'), 'utf8')).split('\n');
      expect(lines.pop()).toBe('');
      const recs = lines.map((l) => JSON.parse(l) as Record<string, number>);
      let end = 0;
      for (const [i, r] of recs.entries()) {
        expect(r.i).toBe(i);
        expect(r.offset! % 64).toBe(0);
        expect(r.offset).toBe(Math.ceil(end / 64) * 64);
        expect(pixels.subarray(end, r.offset).every((b) => b === 0)).toBe(true);
        expect(r.byteLength).toBe(r.height! * r.width! * (r.bitDepth! / 8));
        expect(r.crc32).toBe(zlibCrc32(pixels.subarray(r.offset, r.offset! + r.byteLength!)));
        end = r.offset! + r.byteLength!;
      }
      expect(pixels.length).toBe(end);
      const info = JSON.parse(await readFile(path.join(out, 'cache.json'), 'utf8')) as Record<string, unknown>;
      expect(info).toMatchObject({ format: 'cxformer-prepared-cache', version: 1, records: recs.length, skipped: 0, items: recs.length, complete: true, alignment: 64 });
      // 16-bit samples are little-endian
      if (name === 'rt-null-16') {
        const f = fixtures.find((x) => x.kind === 'gray16')!;
        const r = recs.find((x) => (x as unknown as { id: string }).id === f.item.id)!;
        expect(pixels.readUInt16LE(r.offset!)).toBe(f.values[0]);
        expect(pixels.readUInt16LE(r.offset! + 2)).toBe(f.values[1]);
      }
    }
  });

  it('gives the same bytes with 1 and with many items in flight', async () => {
    const a = path.join(dir, 'w1');
    await prepareCache({ out: a, items: items(), shorterSide: 32, bitDepth: 16, workers: 1, minSide: 8 });
    for (const f of ['pixels.bin', 'index.jsonl', 'cache.json', 'report.json']) {
      expect((await readFile(path.join(a, f))).equals(await readFile(path.join(dir, 'rt-32-16', f))), f).toBe(true);
    }
  });
});

async function snapshot(out: string) {
  const names = (await readdir(out)).sort();
  const files: Record<string, { mtimeMs: number; size: number; ino: number }> = {};
  for (const n of names) {
    const s = await stat(path.join(out, n));
    files[n] = { mtimeMs: s.mtimeMs, size: s.size, ino: s.ino };
  }
  return { names, files };
}

describe('idempotence', () => {
  it('a second run over a complete cache writes nothing', async () => {
    const out = path.join(dir, 'idem');
    const first = await prepareCache({ out, items: items(), shorterSide: 32, bitDepth: 8, workers: 2, minSide: 8 });
    expect(first.nothingToDo).toBe(false);
    const before = await snapshot(out);
    expect(before.names).toEqual(['cache.json', 'index.jsonl', 'pixels.bin', 'report.json']);
    await new Promise((r) => setTimeout(r, 30));
    let calls = 0;
    const again = await prepareCache({ out, items: items(), shorterSide: 32, bitDepth: 8, workers: 2, minSide: 8, onProgress: () => calls++ });
    expect(again.nothingToDo).toBe(true);
    expect(again.written).toBe(0);
    expect(again.cached).toBe(fixtures.length);
    expect(again.mode).toBeNull();
    expect(await snapshot(out)).toEqual(before);
    expect(calls).toBe(0);
  });

  it('appends only new items, in item order, and then equals a cache built in one go', async () => {
    const out = path.join(dir, 'grow');
    const all = items();
    await prepareCache({ out, items: all.slice(0, 3), shorterSide: 32, bitDepth: 8, workers: 2, minSide: 8 });
    const res = await prepareCache({ out, items: all, shorterSide: 32, bitDepth: 8, workers: 2, minSide: 8 });
    expect([res.cached, res.written, res.nothingToDo]).toEqual([3, all.length - 3, false]);
    for (const f of ['pixels.bin', 'index.jsonl', 'cache.json', 'report.json']) {
      expect((await readFile(path.join(out, f))).equals(await readFile(path.join(dir, 'idem', f))), f).toBe(true);
    }
  });

  it('updates changed metadata in the index without touching the pixels', async () => {
    const out = path.join(dir, 'meta');
    await prepareCache({ out, items: items(), shorterSide: 32, bitDepth: 8, workers: 2, minSide: 8 });
    const pixBefore = await stat(path.join(out, 'pixels.bin'));
    const changed = items().map((it, k) => (k === 2 ? { ...it, meta: { relabelled: true } } : it));
    await new Promise((r) => setTimeout(r, 30));
    const res = await prepareCache({ out, items: changed, shorterSide: 32, bitDepth: 8, workers: 2, minSide: 8 });
    expect(res.metaUpdated).toBe(1);
    expect(res.written).toBe(0);
    const pixAfter = await stat(path.join(out, 'pixels.bin'));
    expect([pixAfter.mtimeMs, pixAfter.size]).toEqual([pixBefore.mtimeMs, pixBefore.size]);
    const c = await openCache(out);
    expect((await c.read(changed[2]!.id, { verify: true })).meta).toEqual({ relabelled: true });
    expect((await c.read(changed[1]!.id)).meta).toEqual(changed[1]!.meta);
    await c.close();
    const idx = await readFile(path.join(out, 'index.jsonl'), 'utf8');
    const ref = await readFile(path.join(dir, 'idem', 'index.jsonl'), 'utf8');
    const diff = idx.split('\n').filter((l, k) => l !== ref.split('\n')[k]);
    expect(diff).toHaveLength(1);
    expect(diff[0]).toContain('"meta":{"relabelled":true}');
  });
});

describe('settings', () => {
  it('refuses different settings, naming them, and rebuilds with overwrite', async () => {
    const out = path.join(dir, 'settings');
    await prepareCache({ out, items: items(), shorterSide: 32, bitDepth: 8, workers: 2, minSide: 8 });
    const before = await snapshot(out);
    await expect(prepareCache({ out, items: items(), shorterSide: 32, bitDepth: 16, workers: 2, minSide: 8 })).rejects.toThrow(
      /cache\.json: the cache was prepared with different settings: bitDepth \(cache 8, asked 16\), rounding .*overwrite/,
    );
    await expect(prepareCache({ out, items: items(), shorterSide: 48, bitDepth: 8, workers: 2, minSide: 8 })).rejects.toMatchObject({
      code: 'CXF_DATA',
      message: expect.stringMatching(/shorterSide \(cache 32, asked 48\)/),
    });
    await expect(prepareCache({ out, items: items(), shorterSide: null, bitDepth: 8, workers: 2, minSide: 8 })).rejects.toThrow(/shorterSide \(cache 32, asked null\)/);
    await expect(prepareCache({ out, items: items(), shorterSide: 32, bitDepth: 8, workers: 2, minSide: 9 })).rejects.toThrow(/minSide \(cache 8, asked 9\)/);
    expect(await snapshot(out)).toEqual(before);
    const res = await prepareCache({ out, items: items(), shorterSide: 32, bitDepth: 16, workers: 2, minSide: 8, overwrite: true });
    expect(res.written).toBe(fixtures.length);
    for (const f of ['pixels.bin', 'index.jsonl', 'cache.json']) {
      expect((await readFile(path.join(out, f))).equals(await readFile(path.join(dir, 'rt-32-16', f))), f).toBe(true);
    }
  });

  it('refuses a folder holding cache files without cache.json, and bad options', async () => {
    const out = path.join(dir, 'stray');
    await mkdir(out, { recursive: true });
    await writeFile(path.join(out, 'pixels.bin'), 'xyz');
    await expect(prepareCache({ out, items: items(), shorterSide: 32, bitDepth: 8 })).rejects.toThrow(/pixels\.bin but no cache\.json/);
    const bad = [
      { shorterSide: 0 },
      { bitDepth: 12 },
      { workers: 0 },
      { maxBadFraction: 1.5 },
      { minSide: -1 },
      { items: [{ id: 'a', path: 'x' }, { id: 'a', path: 'y' }] },
      { items: [{ id: '', path: 'x' }] },
      { items: [{ id: 'a', path: 'x', meta: [1] }] },
    ];
    for (const b of bad) {
      await expect(prepareCache({ out: path.join(dir, 'never'), items: items(), shorterSide: 32, bitDepth: 8, ...b } as never), JSON.stringify(b)).rejects.toMatchObject({ code: 'CXF_ARG' });
    }
    await expect(stat(path.join(dir, 'never'))).rejects.toThrow();
  });
});

describe('unusable images', () => {
  let bad: PrepareItem[];
  let good: PrepareItem[];
  beforeAll(async () => {
    const src = path.join(dir, 'bad');
    await mkdir(path.join(src, 'a-folder.png'), { recursive: true });
    const whole = path.join(src, 'whole.png');
    await writeGray8Png(whole, 64, 64, pattern(64, 64, 255, 5));
    const png = await readFile(whole);
    await writeFile(path.join(src, 'truncated.png'), png.subarray(0, Math.floor(png.length / 2)));
    await writeFile(path.join(src, 'garbage.png'), Buffer.from(noise(500, 255, 9)));
    await writeGray8Png(path.join(src, 'tiny.png'), 20, 50, pattern(20, 50, 255, 6));
    bad = [
      { id: 'truncated', path: path.join(src, 'truncated.png') },
      { id: 'garbage', path: path.join(src, 'garbage.png') },
      { id: 'missing', path: path.join(src, 'missing.png') },
      { id: 'folder', path: path.join(src, 'a-folder.png') },
      { id: 'tiny', path: path.join(src, 'tiny.png') },
    ];
    good = items();
  });

  it('skips them, lists them in report.json with the reason, and keeps the rest', async () => {
    const out = path.join(dir, 'skips');
    // interleave: good, bad, good, bad, ...
    const mixed: PrepareItem[] = [];
    for (let k = 0; k < Math.max(good.length, bad.length); k++) {
      if (good[k]) mixed.push(good[k]!);
      if (bad[k]) mixed.push(bad[k]!);
    }
    const res = await prepareCache({ out, items: mixed, shorterSide: 32, bitDepth: 8, workers: 3, maxBadFraction: 0.5 });
    expect(res.records).toBe(good.length);
    const reasons = Object.fromEntries(res.skipped.map((s) => [s.id, s.reason]));
    expect(reasons).toEqual({ truncated: 'corrupt', garbage: 'corrupt', missing: 'unreadable', folder: 'unreadable', tiny: 'too-small' });
    expect(res.skipped.map((s) => s.id)).toEqual(mixed.filter((m) => bad.includes(m)).map((m) => m.id)); // item order
    const report = JSON.parse(await readFile(path.join(out, 'report.json'), 'utf8')) as Record<string, unknown>;
    expect(report).toMatchObject({
      items: mixed.length,
      records: good.length,
      skippedCount: 5,
      byReason: { unreadable: 2, corrupt: 2, 'too-small': 1, 'too-large': 0 },
      failed: false,
      maxBadFraction: 0.5,
    });
    const tiny = (report.skipped as { id: string; message: string; path: string }[]).find((s) => s.id === 'tiny')!;
    expect(tiny.message).toMatch(/at least 32 px.*20×50/);
    expect(tiny.path).toBe(bad[4]!.path);
    const c = await openCache(out);
    expect(c.records.map((r) => r.id)).toEqual(good.map((g) => g.id));
    expect(c.info.skipped).toBe(5);
    await c.close();
    // complete: a rerun neither retries them nor writes anything
    const before = await snapshot(out);
    const again = await prepareCache({ out, items: mixed, shorterSide: 32, bitDepth: 8, workers: 3, maxBadFraction: 0.5 });
    expect(again.nothingToDo).toBe(true);
    expect(again.skipped.map((s) => s.id)).toEqual(res.skipped.map((s) => s.id));
    expect(await snapshot(out)).toEqual(before);
    // ...unless asked to retry: a fixed file is picked up
    await writeGray8Png(bad[4]!.path, 40, 50, pattern(40, 50, 255, 6));
    const retry = await prepareCache({ out, items: mixed, shorterSide: 32, bitDepth: 8, workers: 3, maxBadFraction: 0.5, retrySkipped: true });
    expect(retry.written).toBe(1);
    expect(retry.skipped.map((s) => s.id)).toEqual(['truncated', 'garbage', 'missing', 'folder']);
    await writeGray8Png(bad[4]!.path, 20, 50, pattern(20, 50, 255, 6)); // restore for the other tests
  });

  it('allows exactly ⌊maxBadFraction · items⌋ unusable items', async () => {
    const ten = [...good, ...good.slice(0, 2).map((g) => ({ ...g, id: `${g.id}-again` }))].slice(0, 9).concat([bad[0]!]);
    expect(ten).toHaveLength(10);
    const ok = await prepareCache({ out: path.join(dir, 'frac-ok'), items: ten, shorterSide: 32, bitDepth: 8, workers: 2, maxBadFraction: 0.1, minSide: 8 });
    expect([ok.records, ok.skipped.length]).toEqual([9, 1]);
    await expect(
      prepareCache({ out: path.join(dir, 'frac-fail'), items: ten, shorterSide: 32, bitDepth: 8, workers: 2, maxBadFraction: 0.09, minSide: 8 }),
    ).rejects.toThrow(/1 of 10 items \(10\.00 %\) could not be used, more than maxBadFraction 0\.09 allows \(0\)/);
  });

  it('fails past maxBadFraction, naming the count, the fraction and the report, and leaves a resumable cache', async () => {
    const out = path.join(dir, 'fail');
    const list = [good[0]!, bad[0]!, good[1]!, bad[1]!, bad[2]!, good[2]!, bad[3]!, good[3]!, good[4]!, good[5]!];
    const reportPath = path.join(out, 'report.json');
    const err = await prepareCache({ out, items: list, shorterSide: 32, bitDepth: 8, workers: 1, maxBadFraction: 0.2 }).catch((e: unknown) => e as Error & { code: string });
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toBe('CXF_DATA');
    expect(err.message).toContain('3 of 10 items (30.00 %) could not be used, more than maxBadFraction 0.2 allows (2)');
    expect(err.message).toContain('stopped after 5 of the 10 items');
    expect(err.message).toContain(reportPath);
    const report = JSON.parse(await readFile(reportPath, 'utf8')) as { failed: boolean; skipped: { id: string }[] };
    expect(report.failed).toBe(true);
    expect(report.skipped.map((s) => s.id)).toEqual(['truncated', 'garbage', 'missing']);
    await expect(openCache(out)).rejects.toThrow(/incomplete/);
    const partial = await openCache(out, { allowIncomplete: true });
    expect(partial.records.map((r) => r.id)).toEqual([good[0]!.id, good[1]!.id]);
    await partial.close();
    // with a looser limit the same folder resumes and completes
    const res = await prepareCache({ out, items: list, shorterSide: 32, bitDepth: 8, workers: 1, maxBadFraction: 0.5 });
    expect([res.cached, res.written, res.skipped.length]).toEqual([2, 4, 4]);
    expect((await readdir(out)).sort()).toEqual(['cache.json', 'index.jsonl', 'pixels.bin', 'report.json']);
  });
});
