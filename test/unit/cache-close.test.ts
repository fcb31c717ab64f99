/**
 * Hardening (#13): training from a prepared cache that does not fit the config fails with the keys named and
 * exit 2, and leaves no file handle to the garbage collector (Node then printed "Closing file descriptor … on
 * garbage collection"). Checked twice: the library's open descriptors (/proc/self/fd), and the CLI run with a
 * preload that collects garbage before exit, so that a leaked handle would print its warning.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readlinkSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareCache } from '../../src/cache/index.js';
import { loadPretrainConfig } from '../../src/config/pretrain.js';
import { writePhantoms } from '../../src/data/phantom.js';
import { openTrainingData } from '../../src/train/data.js';
import { repoRoot } from './golden.js';

const MAIN = path.join(repoRoot, 'dist', 'cli', 'main.js');
let tmp: string;
let cache: string;
let gcProbe: string;

/** How many of this process's descriptors point at `file`. */
const openOn = (file: string): number =>
  readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === file;
    } catch {
      return false;
    }
  }).length;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-cache-close-'));
  const images = await writePhantoms(path.join(tmp, 'img'), 4, { size: 80 });
  cache = path.join(tmp, 'cache');
  await prepareCache({ out: cache, items: images.map((p) => ({ id: path.basename(p), path: p })), shorterSide: 64, bitDepth: 8, workers: 1, mode: 'inline' });
  gcProbe = path.join(tmp, 'gc-probe.cjs');
  await writeFile(
    gcProbe,
    "const { setTimeout: sleep } = require('node:timers/promises');\n" +
      'process.once(\'beforeExit\', async () => { for (let i = 0; i < 5; i++) { global.gc(); await sleep(20); } });\n',
  );
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('a prepared cache that does not fit the run', () => {
  it('openTrainingData closes pixels.bin before refusing another base_size', async () => {
    const pixels = path.join(cache, 'pixels.bin');
    const { config } = await loadPretrainConfig({ files: ['demo'], overrides: [`output=${path.join(tmp, 'run')}`, `data.cache=${cache}`, 'data.base_size=128'] });
    const before = openOn(pixels);
    await expect(openTrainingData(config, path.join(tmp, 'run'), async () => undefined)).rejects.toThrow(
      /data\.cache .*cache was prepared with shorter side 64, but data\.base_size is 128/,
    );
    expect(openOn(pixels)).toBe(before);
    // A fitting one is open until closed.
    const ok = await loadPretrainConfig({ files: ['demo'], overrides: [`output=${path.join(tmp, 'run')}`, `data.cache=${cache}`, 'data.base_size=64'] });
    const data = await openTrainingData(ok.config, path.join(tmp, 'run'), async () => undefined);
    expect(openOn(pixels)).toBe(before + 1);
    await data.close();
    expect(openOn(pixels)).toBe(before);
  });

  it.each([
    ['another base_size', ['data.base_size=128'], /cxformer train: data\.cache \S+ was prepared with shorter side 64, but data\.base_size is 128; set data\.base_size/],
    ['fewer images than a batch', ['data.base_size=64', 'train.batch_size_per_gpu=8'], /\(prepared cache, 8-bit\): 4 images, fewer than train\.batch_size_per_gpu=8/],
  ])('end to end, %s: exit 2, and no handle left to the garbage collector', (what, extra, message) => {
    const out = path.join(tmp, `run-${what.replace(/\W+/g, '-')}`);
    const r = spawnSync(process.execPath, ['--expose-gc', '--require', gcProbe, MAIN, 'train', '--config', 'demo', `output=${out}`, `data.cache=${cache}`, '-q', ...extra], {
      encoding: 'utf8',
      env: { ...process.env, CXFORMER_THREADS: '1' },
    });
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/Closing file descriptor|FileHandle|DEP0137|\n\s+at /);
    expect(r.status).toBe(2);
  });
});
