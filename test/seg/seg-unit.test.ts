/**
 * Segmentation building blocks without LibTorch: CheXmask RLE ↔ class maps on hand cases (painting order, round
 * trip, mapping back to the original resolution), Dice on hand cases (empty prediction, empty ground truth, both
 * empty, lungs merged), the bootstrap, the lr schedule, joint augmentations and the option defaults of the CLI.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { synthDataset } from '../../src/data/synth.js';
import { rleDecode, rleEncode } from '../../src/data/rle.js';
import { affinePair, augmentPair, normalizeBatch } from '../../src/segment/augment.js';
import { classMap, classMapToRle, fileStem, loadSample, loadSegRecords, resizeLabels, toOriginal, type Geometry, type SegSample } from '../../src/segment/data.js';
import { setBootstrapProgress } from '../../src/eval/bootstrap.js';
import { bootstrapDice, diceReport, perImageCounts } from '../../src/segment/evaluate.js';
import sharp from 'sharp';
import { CLASS_COLOURS, contours, OVERLAY_LEGEND_HEIGHT, overlayRgb, TRUTH_COLOUR, upscaleNearest, writeOverlayPng } from '../../src/segment/overlay.js';
import { segLr } from '../../src/segment/train.js';
import { segOption } from '../../src/cli/commands/segment.js';
import { parseCli } from '../../src/cli/parser.js';

const geom = (w: number, h: number): Geometry => ({ width: w, height: h, resizedWidth: w, resizedHeight: h, left: 0, top: 0, outWidth: w, outHeight: h });
const sample = (id: string, mask: number[], w: number, h: number): SegSample => ({ id, patient: id, image: new Uint8Array(w * h), mask: Uint8Array.from(mask), geometry: geom(w, h) });

describe('CheXmask RLE and class maps', () => {
  it('encodes and decodes hand cases (1-based, row-major, runs across rows)', () => {
    // 3×4: row 0 = 0 1 1 1, row 1 = 1 1 0 0, row 2 = 0 0 0 1 → runs at pixels 1..5 (start 2, length 5) and 11.
    const m = Uint8Array.from([0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1]);
    expect(rleEncode(m, 3, 4)).toBe('2 5 12 1');
    expect([...rleDecode('2 5 12 1', 3, 4)]).toEqual([...m]);
    expect(rleEncode(new Uint8Array(12), 3, 4)).toBe('');
    expect([...rleDecode('1 12', 3, 4)]).toEqual(new Array(12).fill(1));
  });

  it('paints left lung, right lung, heart in that order (later classes overwrite)', () => {
    // 2×3 image. Left lung pixels 0..3, right lung 3..4, heart 1 and 4.
    const map = classMap({ height: 2, width: 3, rle: { 'Left Lung': '1 4', 'Right Lung': '4 2', Heart: '2 1 5 1' } });
    expect([...map]).toEqual([1, 3, 1, 2, 3, 0]);
    expect(classMapToRle(map, 2, 3)).toEqual({ 'Left Lung': '1 1 3 1', 'Right Lung': '4 1', Heart: '2 1 5 1' });
    // round trip through the per-structure RLE of a map without overlaps
    const back = classMap({ height: 2, width: 3, rle: classMapToRle(map, 2, 3) });
    expect([...back]).toEqual([...map]);
    expect(() => classMap({ height: 2, width: 3, rle: { 'Left Lung': '1 9', 'Right Lung': '', Heart: '' } }, "mask of 'x'")).toThrow(/mask of 'x', 'Left Lung': .*runs past the end/);
  });

  it('maps a prediction back to the original size through the crop and a nearest resize', () => {
    // Original 8×4 (w×h) resized to 4×2 and cropped to 2×2 at left 1: the crop lands in columns 2..5 of the original.
    const g: Geometry = { width: 8, height: 4, resizedWidth: 4, resizedHeight: 2, left: 1, top: 0, outWidth: 2, outHeight: 2 };
    const full = toOriginal(Uint8Array.from([1, 2, 3, 0]), g);
    expect(full.length).toBe(32);
    const row = (y: number) => [...full.subarray(y * 8, y * 8 + 8)];
    expect(row(0)).toEqual([0, 0, 1, 1, 2, 2, 0, 0]);
    expect(row(1)).toEqual([0, 0, 1, 1, 2, 2, 0, 0]);
    expect(row(2)).toEqual([0, 0, 3, 3, 0, 0, 0, 0]);
    expect(fileStem('images/P00001_01.png')).toBe('images__P00001_01');
  });
});

describe('segmentation data (phantom masks.csv)', () => {
  it('joins masks to manifest records, follows the image geometry with nearest, names bad masks', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'cxf-segdata-'));
    try {
      await synthDataset({ out: dir, n: 8, seed: 1, size: 56 });
      const spec = { name: 'csv', root: dir, manifest: 'labels.csv', patientColumn: 'Patient', splitColumn: 'Split' } as never;
      const recs = await loadSegRecords(spec, { source: 'csv', root: dir });
      expect(recs.all.length).toBe(8);
      expect(recs.train.length + recs.valid.length + recs.test.length).toBe(8);
      const r = recs.all[0]!;
      const full = classMap(r.masks!);
      // At 56 px nothing is resized; at 28 px the mask is the nearest resize of the class map.
      const a = await loadSample(r, { resize: 56, crop: 56, equalize: false });
      expect([...a.mask!]).toEqual([...full]);
      const b = await loadSample(r, { resize: 28, crop: 28 });
      expect([...b.mask!]).toEqual([...resizeLabels(full, 56, 56, 28, 28)]);
      expect(b.geometry).toEqual({ width: 56, height: 56, resizedWidth: 28, resizedHeight: 28, left: 0, top: 0, outWidth: 28, outHeight: 28 });
      // A mask stored at half resolution (same aspect) is brought to the image size first.
      const half = resizeLabels(full, 56, 56, 28, 28);
      const c = await loadSample({ ...r, masks: { height: 28, width: 28, rle: classMapToRle(half, 28, 28) } }, { resize: 56, crop: 56 });
      expect([...c.mask!]).toEqual([...resizeLabels(half, 28, 28, 56, 56)]);
      // Another aspect ratio: not this image's mask.
      await expect(loadSample({ ...r, masks: { height: 56, width: 28, rle: { 'Left Lung': '', 'Right Lung': '', Heart: '' } } }, {})).rejects.toThrow(
        new RegExp(`mask of '${r.id}' is 28×56 .* aspect ratios differ`),
      );
      // A table whose ids match no record.
      await writeFile(path.join(dir, 'other.csv'), 'Path,Height,Width,Left Lung,Right Lung,Heart\nnope.png,56,56,1 1,,\n');
      await expect(loadSegRecords(spec, { source: 'csv', root: dir, csv: 'other.csv' })).rejects.toThrow(/no record of dataset 'csv' \(8 records, ids such as 'images\/P00001_01.png'/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('Dice', () => {
  it('hand cases: empty prediction, empty ground truth, both empty, pooled vs per image, lungs merged', () => {
    // 1×4 images, classes 0..3.
    const s1 = sample('a', [1, 1, 2, 0], 4, 1); // truth: left 2 px, right 1 px, no heart
    const s2 = sample('b', [0, 0, 0, 0], 4, 1); // truth empty
    const p1 = Uint8Array.from([1, 0, 1, 3]); // left: P 2, G 2, ∩ 1 → 0.5; right: P 0, G 1 → 0; heart: P 1, G 0 → 0
    const p2 = Uint8Array.from([0, 0, 0, 0]); // everything empty → 1 for every structure
    const rep = diceReport([p1, p2], [s1, s2]);
    const by = Object.fromEntries(rep.structures.map((s) => [s.name, s]));
    expect([...by['left lung']!.perImage]).toEqual([0.5, 1]);
    expect([...by['right lung']!.perImage]).toEqual([0, 1]); // empty prediction, non-empty truth → 0
    expect([...by.heart!.perImage]).toEqual([0, 1]); // non-empty prediction, empty truth → 0; both empty → 1
    // pooled over the set: left 2·1/(2+2) = 0.5, right 0, heart 0 (image b adds nothing)
    expect([by['left lung']!.pooled, by['right lung']!.pooled, by.heart!.pooled]).toEqual([0.5, 0, 0]);
    expect(rep.diceAvg).toBeCloseTo(0.5 / 3, 12);
    // lungs = {1, 2}: P = pixels 0 and 2, G = pixels 0, 1, 2 → 2·2/(2+3) = 0.8
    expect(by.lungs!.pooled).toBeCloseTo(0.8, 12);
    expect(by['left lung']!.mean).toBeCloseTo(0.75, 12);
    // A set where nothing is present anywhere: pooled Dice 1.
    const none = diceReport([p2], [s2]);
    expect(none.structures.map((s) => s.pooled)).toEqual([1, 1, 1, 1]);
  });

  it('bootstrap: counts per image, intervals contain the point on a homogeneous set, seeded', () => {
    const samples = Array.from({ length: 6 }, (_, i) => sample(`s${i}`, [1, 1, 2, 2, 3, 0], 6, 1));
    const preds = samples.map((_, i) => Uint8Array.from(i % 2 ? [1, 1, 2, 2, 3, 0] : [1, 0, 2, 2, 3, 3]));
    const counts = perImageCounts(preds, samples.map((s) => s.mask!));
    expect([...counts[0]![0]!]).toEqual([1, 1, 2]); // left lung of image 0: ∩ 1, P 1, G 2
    expect([...counts[3]![0]!]).toEqual([3, 3, 4]); // lungs of image 0
    const b = bootstrapDice(counts, { n: 200, seed: 1 });
    const seen: number[] = [];
    const again = bootstrapDice(counts, { n: 200, seed: 1, onProgress: (d, t) => t === 200 && seen.push(d) });
    expect(seen[0]).toBe(0); // before the first resample, then once after each
    expect(seen.length).toBe(201);
    expect(seen.at(-1)).toBe(200);
    // Without a callback it reports to the CLI's hook (src/eval/bootstrap.ts), as the classification bootstrap does.
    const hooked: number[] = [];
    const was = setBootstrapProgress((d) => hooked.push(d));
    try {
      bootstrapDice(counts, { n: 5, seed: 1 });
    } finally {
      setBootstrapProgress(was);
    }
    expect(hooked).toEqual([0, 1, 2, 3, 4, 5]);
    expect(b).toEqual(again);
    expect(b.pooled['left lung']!.point).toBeCloseTo((2 * 9) / (9 + 12), 12); // ∩ 3·2 + 3·1, P 3·2 + 3·1, G 6·2
    for (const k of ['left lung', 'right lung', 'heart', 'lungs', 'dice_avg']) {
      const v = b.pooled[k]!;
      expect(v.lo!).toBeLessThanOrEqual(v.point + 1e-12);
      expect(v.hi!).toBeGreaterThanOrEqual(v.point - 1e-12);
    }
    expect(b.pooled['right lung']).toEqual({ point: 1, median: 1, lo: 1, hi: 1 });
  });
});

describe('schedule, augmentation, overlays', () => {
  it('cosine to 0 without warm-up (HF get_cosine_schedule_with_warmup), linear warm-up', () => {
    expect(segLr(1, 0, 10)).toBe(1);
    expect(segLr(1, 5, 10)).toBeCloseTo(0.5, 12);
    expect(segLr(1, 10, 10)).toBe(0);
    expect(segLr(2, 0, 10, 4)).toBe(0.5);
    expect(segLr(2, 3, 10, 4)).toBe(2);
    expect(segLr(2, 4, 10, 4)).toBe(2);
  });

  it('the identity affine leaves image and mask unchanged; masks keep only their own labels', () => {
    const w = 9;
    const img = Uint8Array.from({ length: w * w }, (_, i) => (i * 37) % 256);
    const mask = Uint8Array.from({ length: w * w }, (_, i) => (i % w < 3 ? 1 : i % w > 6 ? 2 : i >= 5 * w ? 3 : 0));
    const id = affinePair(img, mask, w, w, 1, 0, 0, 0);
    expect([...id.image]).toEqual([...img]);
    expect([...id.mask]).toEqual([...mask]);
    // 90° rotation about the centre: pixel (x, y) comes from (y, w−1−x) for the mask.
    const r = affinePair(img, mask, w, w, 1, Math.PI / 2, 0, 0);
    for (let y = 0; y < w; y++) for (let x = 0; x < w; x++) expect(r.mask[y * w + x]).toBe(mask[(w - 1 - x) * w + y]);
    // Random augmentations never invent classes and stay deterministic per stream.
    const seeded = (s: number) => {
      let t = s;
      return () => ((t = (t * 1103515245 + 12345) % 2147483648) / 2147483648);
    };
    const a = augmentPair(img, mask, w, w, seeded(3), { affineP: 1, jitterP: 1 });
    const b = augmentPair(img, mask, w, w, seeded(3), { affineP: 1, jitterP: 1 });
    expect(a).toEqual(b);
    expect(new Set(a.mask).size).toBeLessThanOrEqual(4);
    for (const v of a.mask) expect([0, 1, 2, 3]).toContain(v);
  });

  it('a horizontal flip mirrors and swaps left and right lung', () => {
    const img = Uint8Array.from([10, 20, 30]);
    const mask = Uint8Array.from([1, 3, 2]);
    const f = augmentPair(img, mask, 3, 1, () => 0, { affineP: 0, hflipP: 1, jitterP: 0 });
    expect([...f.image]).toEqual([30, 20, 10]);
    expect([...f.mask]).toEqual([1, 3, 2]); // mirrored [2, 3, 1], then 1 ↔ 2
    const n = augmentPair(img, mask, 3, 1, () => 0.99, {}); // every probability missed: unchanged copies
    expect([...n.image, ...n.mask]).toEqual([10, 20, 30, 1, 3, 2]);
  });

  it('normalises like the preprocessing (ImageNet mean/std, 3 channels)', () => {
    const x = normalizeBatch([Uint8Array.from([0, 255])], 2, 1);
    expect(x.length).toBe(6);
    expect(x[0]).toBeCloseTo(-0.485 / 0.229, 5);
    expect(x[3]).toBeCloseTo((1 - 0.456) / 0.224, 5);
  });

  it('contours mark class borders; overlays colour them', () => {
    // 4×4 with a 2×2 heart block in the middle: all 4 heart pixels touch background → all contour.
    const m = new Uint8Array(16);
    for (const k of [5, 6, 9, 10]) m[k] = 3;
    expect([...contours(m, 4, 4)].filter(Boolean).length).toBe(4);
    const rgb = overlayRgb(new Uint8Array(16).fill(100), 4, 4, m);
    expect([...rgb.subarray(5 * 3, 5 * 3 + 3)]).toEqual([255, 50, 50]);
    expect([...rgb.subarray(0, 3)]).toEqual([100, 100, 100]);
  });

  it('overlay PNGs are enlarged to >= 512 px (class maps nearest) with a legend strip naming the colours', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'cxf-ov-'));
    const w = 112;
    const pred = new Uint8Array(w * w);
    const truth = new Uint8Array(w * w);
    for (let y = 30; y < 80; y++) for (let x = 20; x < 50; x++) pred[y * w + x] = 1;
    for (let y = 32; y < 82; y++) for (let x = 22; x < 52; x++) truth[y * w + x] = 1;
    expect([...upscaleNearest(new Uint8Array([1, 2, 3, 4]), 2, 2, 2)]).toEqual([1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]);
    const f = path.join(dir, 'o.png');
    await writeOverlayPng(f, new Uint8Array(w * w).fill(90), w, w, pred, truth);
    const { data, info } = await sharp(f).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height]).toEqual([560, 560 + OVERLAY_LEGEND_HEIGHT]); // k = ceil(512 / 112) = 5
    const has = (c: readonly number[], y0: number, y1: number) => {
      for (let y = y0; y < y1; y++) for (let x = 0; x < info.width; x++) {
        const k = (y * info.width + x) * info.channels;
        if (data[k] === c[0] && data[k + 1] === c[1] && data[k + 2] === c[2]) return true;
      }
      return false;
    };
    // Contours in the picture; the legend swatches (every class colour and the truth colour) in the strip below.
    expect(has(CLASS_COLOURS[0]!, 0, 560)).toBe(true);
    expect(has(TRUTH_COLOUR, 0, 560)).toBe(true);
    for (const c of [...CLASS_COLOURS, TRUTH_COLOUR]) expect(has(c, 560, 560 + OVERLAY_LEGEND_HEIGHT), String(c)).toBe(true);
    await rm(dir, { recursive: true, force: true });
  });
});

describe('CLI options of --task segmentation', () => {
  it('parses without --classes, applies segmentation defaults where the classification ones were not given', () => {
    const base = ['finetune', '--task', 'segmentation', '--root', 'r', '--weights', 'w', '--out', 'o', '--dataset', 'csv', '--manifest', 'labels.csv'];
    const a = parseCli(base);
    expect(a.task).toBe('segmentation');
    expect(segOption(a, 'epochs')).toBe(5);
    expect(segOption(a, 'lr')).toBe(5e-3);
    expect(segOption(a, 'batch-size')).toBe(64);
    const b = [...base, '--epochs', '3', '-b', '4'];
    expect(segOption(parseCli(b), 'epochs')).toBe(3);
    expect(segOption(parseCli(b), 'batch-size')).toBe(4);
    const p = ['finetune', '--config', 'phantom_seg', '--root', 'r', '--weights', 'w', '--out', 'o'];
    const c = parseCli(p);
    expect([c.task, c['masks-source'], segOption(c, 'epochs'), segOption(c, 'lr')]).toEqual(['segmentation', 'csv', 30, 0.005]);
    const m = parseCli(['finetune', '--config', 'chexmask', '--root', 'r', '--weights', 'w', '--out', 'o']);
    expect([m.dataset, m['seg-max-train'], m.crop]).toEqual(['mimic', 2000, '518']);
    expect(() => parseCli(['finetune', '--root', 'r', '--weights', 'w', '--out', 'o'])).toThrow(/classes/);
    // evaluate of a segmentation model needs no --weights (the run records its backbone)
    expect(parseCli(['evaluate', '--task', 'segmentation', '--head', 'best.safetensors', '--root', 'r', '--out', 'o']).head).toBe('best.safetensors');
  });
});
