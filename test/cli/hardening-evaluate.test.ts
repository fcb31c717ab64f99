/**
 * Hardening (#13): `evaluate --classes` reports only the classes asked for (it was silently ignored), in their
 * order, with the same probabilities as a full evaluation; an unknown or repeated class is named with the head's
 * classes listed, exit 2, before LibTorch loads. Without --classes every class of the head is reported.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { synthDataset } from '../../src/data/synth.js';
import { pickColumns, selectClasses } from '../../src/eval/classes.js';
import { repoRoot } from '../unit/golden.js';

const MAIN = path.join(repoRoot, 'dist', 'cli', 'main.js');
const PROBE = path.join(repoRoot, 'test', 'helpers', 'libtorch-probe.cjs');
const CLASSES = 'Cardiomegaly,Pleural Effusion,Nodule';
// A small random ViT (2 blocks) at 56 px keeps the run to seconds.
const BACKBONE = ['--arch', 'vit_small', 'model.depth=2', 'model.img_size=56', '--resize', '56', '--crop', '56', '--threads', '1'];
let tmp: string;
let data: string;
let head: string;

function cli(args: string[]) {
  const r = spawnSync(process.execPath, ['--require', PROBE, MAIN, ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, libtorch: /libtorch_loaded=true/.test(r.stderr) };
}

/** predictions.csv as rows of cells keyed by column name. */
async function predictions(dir: string): Promise<{ header: string[]; rows: Record<string, string>[] }> {
  const [first, ...lines] = (await readFile(path.join(dir, 'predictions.csv'), 'utf8')).trim().split('\n');
  const header = (first as string).split(',');
  return { header, rows: lines.map((l) => Object.fromEntries(l.split(',').map((v, i) => [header[i], v]))) };
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-eval-classes-'));
  data = path.join(tmp, 'data');
  await synthDataset({ out: data, n: 40, seed: 3, size: 64 });
  const out = path.join(tmp, 'probe');
  const r = cli(['finetune', ...BACKBONE, '--root', data, '--manifest', 'labels.csv', '--classes', CLASSES, '--out', out, '--epochs', '2', '--cls-layers', '2', '--bootstrap', '0', '-q']);
  expect(r.code, r.stderr).toBe(0);
  head = path.join(out, 'head.safetensors');
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('evaluate --classes', () => {
  const evaluate = (out: string, extra: string[]) =>
    cli(['evaluate', ...BACKBONE, '--head', head, '--root', data, '--manifest', 'labels.csv', '--split', 'train', '--out', path.join(tmp, out), '--bootstrap', '0', ...extra]);

  it('reports only the classes asked for, in their order, with the full evaluation\'s probabilities', async () => {
    const all = evaluate('all', []);
    expect(all.code, all.stderr).toBe(0);
    const one = evaluate('one', ['--classes', 'Cardiomegaly']);
    expect(one.code, one.stderr).toBe(0);
    const two = evaluate('two', ['--classes', 'Nodule,Cardiomegaly']);
    expect(two.code, two.stderr).toBe(0);

    const mAll = JSON.parse(await readFile(path.join(tmp, 'all', 'metrics.json'), 'utf8'));
    expect(mAll.classes).toEqual(CLASSES.split(','));
    const mOne = JSON.parse(await readFile(path.join(tmp, 'one', 'metrics.json'), 'utf8'));
    expect(mOne.classes).toEqual(['Cardiomegaly']);
    expect(mOne.per_class).toHaveLength(1);
    expect(JSON.parse(await readFile(path.join(tmp, 'two', 'metrics.json'), 'utf8')).classes).toEqual(['Nodule', 'Cardiomegaly']);

    const pAll = await predictions(path.join(tmp, 'all'));
    const pOne = await predictions(path.join(tmp, 'one'));
    const pTwo = await predictions(path.join(tmp, 'two'));
    expect(pOne.header).toEqual(['image_id', 'patient_id', 'prob_Cardiomegaly', 'label_Cardiomegaly']);
    expect(pTwo.header).toEqual(['image_id', 'patient_id', 'prob_Nodule', 'label_Nodule', 'prob_Cardiomegaly', 'label_Cardiomegaly']);
    // Same images; the columns asked for carry the full evaluation's values.
    const byId = new Map(pAll.rows.map((r) => [r.image_id, r]));
    for (const r of pTwo.rows) {
      const full = byId.get(r.image_id) as Record<string, string>;
      for (const k of ['prob_Nodule', 'label_Nodule', 'prob_Cardiomegaly', 'label_Cardiomegaly']) expect(r[k], `${r.image_id} ${k}`).toBe(full[k]);
    }
    expect(await readFile(path.join(tmp, 'one', 'report.md'), 'utf8')).not.toMatch(/Nodule|Pleural Effusion/);
  });

  it.each([
    [['--classes', 'Cardiomegaly,Fracture'], /--classes: 'Fracture' is not a class of the head; expected some of the classes of .*head\.safetensors: Cardiomegaly, Pleural Effusion, Nodule/],
    [['--classes', 'Nodule,Nodule'], /--classes: 'Nodule' is given twice/],
    [['--classes', ','], /--classes: expected one or more of the classes of .*: Cardiomegaly, Pleural Effusion, Nodule; found an empty list/],
  ])('%j: named, exit 2, LibTorch not loaded', (extra, message) => {
    const r = evaluate('bad', extra);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.code).toBe(2);
    expect(r.libtorch).toBe(false);
  });
});

describe('selectClasses / pickColumns', () => {
  it('picks columns of a row-major matrix and keeps a multiclass head whole', () => {
    expect(selectClasses(['a', 'b', 'c'], undefined, 'h')).toEqual([0, 1, 2]);
    expect(selectClasses(['a', 'b', 'c'], ['c', 'a'], 'h')).toEqual([2, 0]);
    expect(Array.from(pickColumns(Float32Array.from([1, 2, 3, 4, 5, 6]), 3, [2, 0]))).toEqual([3, 1, 6, 4]);
    expect(selectClasses(['a', 'b'], ['b', 'a'], 'h', 'multiclass')).toEqual([1, 0]);
    expect(() => selectClasses(['a', 'b', 'c'], ['a'], 'h.safetensors', 'multiclass')).toThrow(
      /a multiclass head is evaluated on all its classes .* found b, c left out; the classes of h\.safetensors: a, b, c/,
    );
  });
});
