/**
 * Segmentation end to end on phantom data (`cxformer synth` masks) with the tiny golden backbone at 112 px:
 * - a short training through the CLI (phantom_seg preset; --no-tensorboard over its `tensorboard: true`: no event
 *   files) beats the trivial baselines: all background (Dice 0) by a
 *   wide margin, and the fixed per-pixel majority mask of the training set (computed here independently) on the lungs
 *   and on dice_avg;
 * - the output files: checkpoints, metrics.jsonl, metrics.json, per-image CSV, PNG masks, CheXmask RLE of the
 *   predictions at the original size (decoded and checked), overlays;
 * - `evaluate --task segmentation` on the saved best model reproduces the Dice of the run's evaluation;
 * - a run stopped after an epoch, inside an epoch or by an aborted signal (Ctrl-C) and resumed on its folder ends
 *   exactly where the uninterrupted run ends;
 * - an unfrozen backbone is saved with its head and restored for evaluation;
 * - the native step's loss equals src/eval/dice.ts's ceDiceLoss on the natively predicted logits.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCsv } from '../../src/data/csv.js';
import { synthDataset } from '../../src/data/synth.js';
import { diceFromCounts } from '../../src/eval/dice.js';
import { loadSamples, loadSegRecords, classMap, type SegSample } from '../../src/segment/data.js';
import { evaluateSamples } from '../../src/segment/evaluate.js';
import { loadSegmenter, trainSegmentation } from '../../src/segment/train.js';
import { goldenFile, repoRoot } from '../unit/golden.js';

const MAIN = path.join(repoRoot, 'dist', 'cli', 'main.js');
let tmp: string;
let data: string;
const WEIGHTS = () => goldenFile('vit_tiny_hf');

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-seg-'));
  data = path.join(tmp, 'data');
  await synthDataset({ out: data, n: 60, seed: 3, size: 112 });
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** Pooled Dice of one class map per test image against the truth (classes 1..3 and lungs). */
function pooled(preds: Uint8Array[], truth: SegSample[]): Record<string, number> {
  const sets: Record<string, number[]> = { 'left lung': [1], 'right lung': [2], heart: [3], lungs: [1, 2] };
  return Object.fromEntries(
    Object.entries(sets).map(([name, cls]) => {
      let i = 0;
      let p = 0;
      let g = 0;
      preds.forEach((pr, k) => {
        const t = truth[k]!.mask!;
        for (let j = 0; j < t.length; j++) {
          const a = cls.includes(pr[j]!);
          const b = cls.includes(t[j]!);
          p += +a;
          g += +b;
          i += +(a && b);
        }
      });
      return [name, diceFromCounts(i, p, g)];
    }),
  );
}

describe('native segmentation step', () => {
  it('reports the ce_dice_loss of src/eval/dice.ts on the logits it predicts (independent implementations)', async () => {
    const { readSafetensors } = await import('../../src/io/safetensors.js');
    const { ceDiceLoss } = await import('../../src/eval/dice.js');
    const { resolveModel } = await import('../../src/model/weights.js');
    const { Segmenter } = await import('../../src/segment/native.js');
    const px = (await readSafetensors(goldenFile('vit_tiny_inputs.safetensors'))).tensors.get('pixel_values_56')!;
    const x = px.data as Float32Array; // (2, 3, 56, 56)
    const r = await resolveModel({ weights: WEIGHTS() });
    const model = await Segmenter.create({ seg: {}, backbone: r.config, weights: r.weights!.file, threads: 1 });
    const labels = Uint8Array.from({ length: 2 * 56 * 56 }, (_, i) => ((i % 56) >> 4) % 4); // 4 vertical bands
    const { logits } = await model.predict(x, [2, 3, 56, 56], true);
    const expected = ceDiceLoss(logits!, labels, { batch: 2, classes: 4, pixels: 56 * 56 });
    const rec = await model.step(x, [2, 3, 56, 56], labels, 0);
    expect(rec.loss).toBeCloseTo(expected, 5);
    expect(rec.step).toBe(1);
    // Wrong label count: a clear argument error.
    await expect(model.step(x, [2, 3, 56, 56], new Uint8Array(10), 1e-3)).rejects.toThrow(/labels: 10 values, expected B·H·W/);
  });
});

describe('cxformer finetune --task segmentation (phantom data)', () => {
  it('trains well above the trivial baselines and writes predictions, RLE and overlays', async () => {
    const out = path.join(tmp, 'run');
    const r = cli(['finetune', '--config', 'phantom_seg', '--root', data, '--weights', WEIGHTS(), '--out', out, '--threads', '1', '-q', '--no-tensorboard']);
    expect(r.code, r.stderr).toBe(0);
    expect((await readdir(out)).filter((f) => f.startsWith('events.out.tfevents.'))).toEqual([]);
    for (const f of ['run.json', 'metrics.jsonl', 'last.safetensors', 'best.safetensors', 'eval/metrics.json', 'eval/per_image.csv', 'eval/report.md', 'eval/predictions.csv', 'eval/dice_per_image.svg', 'eval/dice_per_image.png']) {
      expect(existsSync(path.join(out, f)), f).toBe(true);
    }
    const m = JSON.parse(await readFile(path.join(out, 'eval', 'metrics.json'), 'utf8'));

    // Baselines on the same test images, computed here from the data: all background, and the per-pixel majority
    // class of the training masks (a fixed "mean" mask).
    const recs = await loadSegRecords({ name: 'csv', root: data, manifest: 'labels.csv', patientColumn: 'Patient', splitColumn: 'Split' } as never, { source: 'csv', root: data });
    const pre = { resize: 112, crop: 112, equalize: true } as const;
    const train = await loadSamples(recs.train, pre);
    const test = await loadSamples(recs.test, pre);
    expect(m.nImages).toBe(test.length);
    const hw = 112 * 112;
    const votes = new Uint32Array(hw * 4);
    for (const s of train) for (let j = 0; j < hw; j++) votes[j * 4 + s.mask![j]!]!++;
    const mean = Uint8Array.from({ length: hw }, (_, j) => [0, 1, 2, 3].reduce((b, c) => (votes[j * 4 + c]! > votes[j * 4 + b]! ? c : b), 0));
    const background = pooled(test.map(() => new Uint8Array(hw)), test);
    const fixed = pooled(test.map(() => mean), test);
    expect(background).toEqual({ 'left lung': 0, 'right lung': 0, heart: 0, lungs: 0 });
    // Recorded in README/BENCHMARKS (seed 3, 60 images, 5 test images).
    console.log(`phantom segmentation: model ${JSON.stringify(m.pooled)}; fixed majority mask ${JSON.stringify(fixed)}`);
    for (const k of ['lungs', 'heart', 'left lung', 'right lung']) {
      expect(m.pooled[k], k).toBeGreaterThan(0.6);
    }
    // The fixed mask is a strong baseline on these aligned phantoms (about 0.85): the model must beat it on the
    // lungs and on dice_avg.
    expect(m.pooled.lungs).toBeGreaterThan(fixed.lungs! + 0.04);
    expect(m.pooled.dice_avg).toBeGreaterThan((fixed['left lung']! + fixed['right lung']! + fixed.heart!) / 3 + 0.02);
    expect(m.bootstrap.n).toBe(200);
    expect(m.bootstrap.pooled.lungs.lo).toBeLessThanOrEqual(m.pooled.lungs);

    // Predictions: one PNG per test image, CheXmask RLE at the original size that decodes to a valid class map.
    const masks = await readdir(path.join(out, 'eval', 'predictions'));
    expect(masks.length).toBe(test.length);
    const rle = parseCsv(await readFile(path.join(out, 'eval', 'predictions.csv'), 'utf8'));
    expect(rle.header).toEqual(['Path', 'Height', 'Width', 'Left Lung', 'Right Lung', 'Heart']);
    expect(rle.rows.length).toBe(test.length);
    const row = rle.rows[0]!;
    const map = classMap({ height: Number(row[1]), width: Number(row[2]), rle: { 'Left Lung': row[3]!, 'Right Lung': row[4]!, Heart: row[5]! } });
    expect(map.length).toBe(112 * 112);
    expect(map.some((v) => v === 1) && map.some((v) => v === 3)).toBe(true);
    // Overlays: the preset asks for 8, the test split has fewer images → one per image, PNG files.
    const overlays = await readdir(path.join(out, 'eval', 'overlays'));
    expect(overlays.length).toBe(Math.min(8, test.length));
    expect((await readFile(path.join(out, 'eval', 'overlays', overlays[0]!))).subarray(1, 4).toString()).toBe('PNG');
    const lines = (await readFile(path.join(out, 'metrics.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.filter((l) => l.kind === 'epoch')).toHaveLength(30);

    // evaluate on the saved model reproduces the run's test Dice (backbone from run.json metadata).
    const ev = path.join(tmp, 'eval');
    const e = cli(['evaluate', '--task', 'segmentation', '--head', path.join(out, 'best.safetensors'), '--dataset', 'csv', '--root', data, '--manifest', 'labels.csv', '--masks', 'masks.csv', '--out', ev, '--bootstrap', '0', '--overlay-ids', String(rle.rows[0]![0]), '--threads', '1', '-q']);
    expect(e.code, e.stderr).toBe(0);
    const m2 = JSON.parse(await readFile(path.join(ev, 'metrics.json'), 'utf8'));
    expect(m2.pooled).toEqual(m.pooled);
    expect((await readdir(path.join(ev, 'overlays'))).length).toBe(1);
  });

  it('the progressive head trains too; a resumed run ends exactly like an uninterrupted one', async () => {
    const common = {
      backbone: { weights: WEIGHTS(), threads: 1 },
      dataset: { name: 'csv', root: data, manifest: 'labels.csv', patientColumn: 'Patient', splitColumn: 'Split' } as never,
      masks: { source: 'csv' as const, root: data },
      preprocess: { resize: 112, crop: 112 },
      seg: { head: 'progressive' as const, layers: [-3, -2, -1], hidden: 32, lr: 5e-3 },
      epochs: 6,
      batchSize: 16,
      bootstrap: 0,
      overlays: 1,
    };
    const full = await trainSegmentation({ ...common, out: path.join(tmp, 'full') });
    const part = await trainSegmentation({ ...common, out: path.join(tmp, 'resumed'), stopAfterEpochs: 2 });
    expect(part.partial).toBe(true);
    expect(part.history).toHaveLength(2);
    const rest = await trainSegmentation({ ...common, out: path.join(tmp, 'resumed') });
    expect(rest.history.map((h) => ({ ...h, seconds: 0 }))).toEqual(full.history.map((h) => ({ ...h, seconds: 0 })));
    expect(rest.evaluation!.metrics.pooled).toEqual(full.evaluation!.metrics.pooled);
    expect(full.evaluation!.metrics.pooled.lungs).toBeGreaterThan(0.6);
    // Mid-epoch: an aborted signal stops after one step (4 steps per epoch here), a step budget stops inside
    // epoch 2; both leave a checkpoint the next call continues exactly.
    const ac = new AbortController();
    ac.abort();
    const cut = path.join(tmp, 'mid');
    const i1 = await trainSegmentation({ ...common, out: cut, signal: ac.signal });
    expect([i1.partial, i1.interrupted, i1.history.length]).toEqual([true, true, 0]);
    const i2 = await trainSegmentation({ ...common, out: cut, stopAfterSteps: 5 });
    expect([i2.partial, i2.interrupted, i2.history.length]).toEqual([true, false, 1]);
    const i3 = await trainSegmentation({ ...common, out: cut });
    expect(i3.history.map((h) => ({ ...h, seconds: 0 }))).toEqual(full.history.map((h) => ({ ...h, seconds: 0 })));
    expect(i3.evaluation!.metrics.pooled).toEqual(full.evaluation!.metrics.pooled);
    // An unfrozen backbone is saved with the head and restored by loadSegmenter (backbone from the run's metadata).
    const unf = await trainSegmentation({ ...common, seg: { head: 'linear', lr: 0.02, unfreeze: true, backboneLr: 1e-4 }, epochs: 2, out: path.join(tmp, 'unfrozen') });
    const { model } = await loadSegmenter(path.join(tmp, 'unfrozen', 'best.safetensors'), {});
    expect(model.config.unfreeze).toBe(true);
    const again = await evaluateSamples(model, await loadSamples((await loadSegRecords(common.dataset, common.masks)).test, common.preprocess), { out: path.join(tmp, 'unfrozen-eval'), bootstrap: 0, overlays: 0 });
    expect(again.metrics.pooled).toEqual(unf.evaluation!.metrics.pooled);
    // A different setting on the same folder is refused, naming it.
    await expect(trainSegmentation({ ...common, epochs: 7, out: path.join(tmp, 'resumed') })).rejects.toThrow(/epochs differ/);
  });
});
