/**
 * A temporary folder for one test file, with a phantom dataset in `<tmp>/data` (src/data/synth.ts), made before
 * the file's tests and removed after them. Read `tmp` and `data` inside tests (they are set by then).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { synthDataset } from '../../src/data/synth.js';

export function phantomFolder(prefix: string, o: { n: number; seed: number; size: number; splitFractions?: { train?: number; valid?: number; test?: number } }): { tmp: string; data: string } {
  const f = { tmp: '', data: '' };
  beforeAll(async () => {
    f.tmp = await mkdtemp(path.join(tmpdir(), prefix));
    f.data = path.join(f.tmp, 'data');
    await synthDataset({ out: f.data, ...o });
  });
  afterAll(async () => {
    await rm(f.tmp, { recursive: true, force: true });
  });
  return f;
}
