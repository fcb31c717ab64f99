import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { run as synthCommand } from '../../src/cli/commands/synth.js';
import { CxformerError } from '../../src/native/load.js';
import { mulberry32, renderPhantom, writePhantoms } from '../../src/data/phantom.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-phantom-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('mulberry32', () => {
  it('is the canonical mulberry32 (checked against the C algorithm in BigInt uint32 arithmetic)', () => {
    // uint32_t z = (x += 0x6D2B79F5); z = (z ^ (z >> 15)) * (z | 1); z ^= z + (z ^ (z >> 7)) * (z | 61); return z ^ (z >> 14);
    const M = 0xffffffffn;
    const reference = (seed: number) => {
      let x = BigInt(seed >>> 0);
      return () => {
        x = (x + 0x6d2b79f5n) & M;
        let z = x;
        z = ((z ^ (z >> 15n)) * (z | 1n)) & M;
        z = (z ^ ((z + (((z ^ (z >> 7n)) * (z | 61n)) & M)) & M)) & M;
        return Number(z ^ (z >> 14n)) / 4294967296;
      };
    };
    for (const seed of [0, 1, 42, 0xdeadbeef, -7]) {
      const ours = mulberry32(seed);
      const ref = reference(seed);
      for (let k = 0; k < 500; k++) expect(ours()).toBe(ref());
    }
  });
});

describe('renderPhantom / writePhantoms', () => {
  it('renders size x size planes deterministically, different per seed, at any size', () => {
    for (const size of [14, 64, 100]) {
      const a = renderPhantom({ size, seed: 3 });
      expect(a).toHaveLength(size * size);
      expect(Buffer.compare(a, renderPhantom({ size, seed: 3 }))).toBe(0);
      expect(Buffer.compare(a, renderPhantom({ size, seed: 4 }))).not.toBe(0);
    }
    expect(renderPhantom()).toHaveLength(512 * 512);
  });

  it('has a dark background, a brighter body and darker lungs inside it', () => {
    const n = 128;
    const p = renderPhantom({ size: n, seed: 1 });
    const at = (x: number, y: number) => p[Math.round(y * n) * n + Math.round(x * n)] as number;
    const mean = (x0: number, y0: number, x1: number, y1: number) => {
      let s = 0;
      let c = 0;
      for (let y = Math.round(y0 * n); y < y1 * n; y++) for (let x = Math.round(x0 * n); x < x1 * n; x++) [s, c] = [s + (p[y * n + x] as number), c + 1];
      return s / c;
    };
    const corner = mean(0, 0.9, 0.06, 1);
    const abdomen = mean(0.4, 0.9, 0.6, 1);
    const lung = mean(0.28, 0.35, 0.36, 0.45); // patient's right mid lung
    expect(corner).toBeLessThan(40);
    expect(abdomen).toBeGreaterThan(corner + 80);
    expect(lung).toBeLessThan(abdomen - 40);
    expect(at(0.5, 0.95)).toBeGreaterThan(corner);
  });

  it('writes 1-channel 8-bit gray PNGs named phantom_000.png …', async () => {
    const files = await writePhantoms(path.join(tmp, 'ph'), 2, { size: 64, seed: 2 });
    expect(files.map((f) => path.basename(f))).toEqual(['phantom_000.png', 'phantom_001.png']);
    const meta = await sharp(files[0] as string).metadata();
    expect([meta.width, meta.height, meta.channels, meta.depth]).toEqual([64, 64, 1, 'uchar']);
    const { data } = await sharp(files[1] as string).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
    expect(Buffer.compare(data, renderPhantom({ size: 64, seed: 2 * 100_003 + 1 }))).toBe(0);
  });
});

describe('cxformer synth (command)', () => {
  it('writes the dataset and ends with one summary line on stderr (before it, only progress lines)', async () => {
    const out = path.join(tmp, 'cli');
    const writes: string[] = [];
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation((s: string | Uint8Array) => {
      writes.push(String(s));
      return true;
    });
    try {
      expect(await synthCommand({ out, n: 4, seed: 9, size: 64 })).toBe(0);
    } finally {
      spy.mockRestore();
    }
    const lines = writes.join('').trim().split('\n');
    // Progress lines ("synth: images k/4 …") appear when the run is slow enough for the throttle to let one through.
    for (const l of lines.slice(0, -1)) expect(l).toMatch(/^synth: images \d+\/4\b/);
    expect(`${lines.at(-1)}\n`).toMatch(/^synth: wrote 4 images \(64x64, seed 9, \d+ patients; .*\) to .*cli in [\d.]+ s\n$/);
    const info = JSON.parse(await readFile(path.join(out, 'dataset.json'), 'utf8'));
    expect(info).toMatchObject({ n: 4, seed: 9, size: 64 });
    expect((await readFile(path.join(out, 'labels.csv'), 'utf8')).trim().split('\n')).toHaveLength(5);
  });

  it('accepts numeric strings and rejects bad arguments with CXF_ARG', async () => {
    const spy = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(await synthCommand({ out: path.join(tmp, 'cli2'), n: '2', seed: '0', size: '32' })).toBe(0);
      const bad: [Record<string, unknown>, RegExp][] = [
        [{ n: 2 }, /--out DIR is required/],
        [{ out: path.join(tmp, 'x'), n: 0 }, /--n must be an integer >= 1, got 0/],
        [{ out: path.join(tmp, 'x'), n: 'many' }, /--n must be an integer >= 1, got many/],
        [{ out: path.join(tmp, 'x'), n: 2, size: 16 }, /--size must be an integer in 32\.\.4096, got 16/],
        [{ out: path.join(tmp, 'x'), n: 2, seed: 1.5 }, /--seed must be an integer/],
      ];
      for (const [args, msg] of bad) {
        const err = await synthCommand(args).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(CxformerError);
        expect((err as CxformerError).code).toBe('CXF_ARG');
        expect((err as Error).message).toMatch(msg);
      }
    } finally {
      spy.mockRestore();
    }
  });
});
