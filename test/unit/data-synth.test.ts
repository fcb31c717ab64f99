import { readdir, readFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { parseCsv, type CsvTable } from '../../src/data/csv.js';
import { loadImageDataset } from '../../src/data/manifest.js';
import { rleDecode } from '../../src/data/rle.js';
import { DEFAULT_PREVALENCE, FINDINGS, synthDataset, type SynthResult } from '../../src/data/synth.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-synth-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function gray(file: string): Promise<{ data: Uint8Array; w: number; h: number; channels: number }> {
  const meta = await sharp(file).metadata();
  const { data, info } = await sharp(file).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), w: info.width, h: info.height, channels: meta.channels ?? 0 };
}

async function filesOf(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(path.relative(dir, path.join(e.parentPath, e.name)));
  }
  return out.sort();
}

const col = (t: CsvTable, name: string) => {
  const k = t.header.indexOf(name);
  expect(k).toBeGreaterThanOrEqual(0);
  return t.rows.map((r) => r[k] as string);
};

/** Mask statistics measured from the image and the decoded masks only. */
interface Measured {
  meanLeftLung: number;
  meanRightLung: number;
  meanHeart: number;
  ctr: number;
  centroidX: { left: number; right: number; heart: number };
  overlap: number;
}

function measure(img: Uint8Array, h: number, w: number, masks: { left: Uint8Array; right: Uint8Array; heart: Uint8Array }): Measured {
  const stat = (m: Uint8Array) => {
    let s = 0;
    let c = 0;
    let sx = 0;
    let lo = w;
    let hi = -1;
    for (let i = 0; i < m.length; i++) {
      if (!m[i]) continue;
      const x = i % w;
      s += img[i] as number;
      sx += x;
      c++;
      if (x < lo) lo = x;
      if (x > hi) hi = x;
    }
    return { mean: s / c, cx: sx / c, lo, hi, count: c };
  };
  const l = stat(masks.left);
  const r = stat(masks.right);
  const hh = stat(masks.heart);
  let overlap = 0;
  for (let i = 0; i < h * w; i++) if ((masks.left[i] as number) + (masks.right[i] as number) + (masks.heart[i] as number) > 1) overlap++;
  return {
    meanLeftLung: l.mean,
    meanRightLung: r.mean,
    meanHeart: hh.mean,
    // cardiothoracic ratio: heart width / (right lung's outer edge .. left lung's outer edge)
    ctr: (hh.hi - hh.lo + 1) / (l.hi - r.lo + 1),
    centroidX: { left: l.cx, right: r.cx, heart: hh.cx },
    overlap,
  };
}

describe('synthDataset: n = 200 at 512 px', () => {
  let res: SynthResult;
  let out: string;
  let labels: CsvTable;
  let masks: CsvTable;
  let reports: CsvTable;
  let seconds: number;

  beforeAll(async () => {
    out = path.join(tmp, 'big');
    const t0 = performance.now();
    res = await synthDataset({ out, n: 200, seed: 7 });
    seconds = (performance.now() - t0) / 1000;
    labels = parseCsv(await readFile(path.join(out, 'labels.csv'), 'utf8'));
    masks = parseCsv(await readFile(path.join(out, 'masks.csv'), 'utf8'));
    reports = parseCsv(await readFile(path.join(out, 'reports.csv'), 'utf8'));
  }, 120_000);

  it('finishes well under a minute', () => {
    expect(seconds).toBeLessThan(60);
  });

  it('writes the CheXpert-style labels with Patient and Split, one row per image, files present', async () => {
    expect(labels.header).toEqual(['Path', 'Sex', 'Age', 'Frontal/Lateral', 'AP/PA', 'No Finding', 'Cardiomegaly', 'Pleural Effusion', 'Nodule', 'Pneumothorax', 'Patient', 'Split']);
    expect(labels.rows).toHaveLength(200);
    expect(masks.header).toEqual(['Path', 'Height', 'Width', 'Left Lung', 'Right Lung', 'Heart']);
    expect(reports.header).toEqual(['Path', 'Findings']);
    const paths = col(labels, 'Path');
    expect(col(masks, 'Path')).toEqual(paths);
    expect(col(reports, 'Path')).toEqual(paths);
    expect(new Set(paths).size).toBe(200);
    expect((await filesOf(path.join(out, 'images'))).map((f) => `images/${f}`)).toEqual([...paths].sort());
    for (const f of ['No Finding', ...FINDINGS]) for (const v of col(labels, f)) expect(['1.0', '0.0', '-1.0', '']).toContain(v);
    for (const v of col(labels, 'Sex')) expect(['Male', 'Female']).toContain(v);
    for (const v of col(labels, 'Age')) expect(Number(v)).toBeGreaterThanOrEqual(18);
    expect(new Set(col(labels, 'Frontal/Lateral'))).toEqual(new Set(['Frontal']));
    expect(new Set(col(labels, 'AP/PA'))).toEqual(new Set(['PA']));
    // the manifest loader reads it as a training manifest
    const ds = await loadImageDataset({ root: out, manifest: 'labels.csv' });
    expect(ds.items.map((i) => i.id)).toEqual(paths);
    expect(ds.items[0]?.row?.Patient).toBe(col(labels, 'Patient')[0]);
  });

  it('splits by patient: no patient in two splits, about 80/10/10 of the patients', () => {
    const pat = col(labels, 'Patient');
    const split = col(labels, 'Split');
    const of = new Map<string, Set<string>>();
    pat.forEach((p, k) => of.set(p, (of.get(p) ?? new Set()).add(split[k] as string)));
    for (const s of of.values()) expect(s.size).toBe(1);
    const patients = [...of.keys()];
    expect(patients.length).toBe(res.info.patients);
    expect(patients.length).toBeGreaterThan(200 / 3 - 1); // 1-3 images per patient
    expect(of.size).toBeLessThan(200);
    const count = (s: string) => patients.filter((p) => of.get(p)?.has(s)).length;
    expect(count('train') / patients.length).toBeCloseTo(0.8, 1);
    expect(count('valid') / patients.length).toBeCloseTo(0.1, 1);
    expect(count('test') / patients.length).toBeCloseTo(0.1, 1);
    // several images per patient
    expect(patients.some((p) => pat.filter((q) => q === p).length > 1)).toBe(true);
  });

  it('draws findings at the configured prevalences, with a few uncertain and blank cells', () => {
    const noFinding = col(labels, 'No Finding');
    const truthNone = res.images.map((im) => !FINDINGS.some((f) => im.truth[f]));
    expect(noFinding).toEqual(truthNone.map((b) => (b ? '1.0' : '0.0')));
    let uncertain = 0;
    let blank = 0;
    for (const f of FINDINGS) {
      const truth = res.images.filter((im) => im.truth[f]).length / 200;
      expect(Math.abs(truth - DEFAULT_PREVALENCE[f])).toBeLessThan(0.08);
      const cells = col(labels, f);
      const pos = cells.filter((c) => c === '1.0').length / 200;
      expect(Math.abs(pos - DEFAULT_PREVALENCE[f])).toBeLessThan(0.09);
      cells.forEach((c, k) => {
        if (c === '1.0') expect(res.images[k]?.truth[f]).toBe(true);
        if (c === '0.0') expect(res.images[k]?.truth[f]).toBe(false);
      });
      uncertain += cells.filter((c) => c === '-1.0').length;
      blank += cells.filter((c) => c === '').length;
      expect(res.info.observed[f]).toBe(res.images.filter((im) => im.truth[f]).length);
    }
    // 800 cells at 3 % each: expect about 24
    expect(uncertain).toBeGreaterThan(5);
    expect(uncertain).toBeLessThan(50);
    expect(blank).toBeGreaterThan(5);
    expect(blank).toBeLessThan(50);
    expect(truthNone.filter(Boolean).length / 200).toBeGreaterThan(0.25);
  });

  it('writes 8-bit 1-channel gray PNGs whose masks match the anatomy (lungs dark, heart bright, sides, CTR)', async () => {
    const normalCtr: number[] = [];
    const bigCtr: number[] = [];
    for (let k = 0; k < 60; k++) {
      const [p, H, W, L, R, HE] = masks.rows[k] as string[];
      const h = Number(H);
      const w = Number(W);
      expect([h, w]).toEqual([512, 512]);
      const im = await gray(path.join(out, p as string));
      expect(im.channels).toBe(1);
      expect([im.h, im.w]).toEqual([h, w]);
      const mk = { left: rleDecode(L as string, h, w), right: rleDecode(R as string, h, w), heart: rleDecode(HE as string, h, w) };
      const m = measure(im.data, h, w, mk);
      expect(m.overlap).toBe(0);
      // lungs (air) are much darker than the heart
      expect(m.meanLeftLung).toBeLessThan(m.meanHeart - 30);
      expect(m.meanRightLung).toBeLessThan(m.meanHeart - 30);
      // patient's left lung = image right in a PA view; the heart lies left of the patient's midline
      expect(m.centroidX.left).toBeGreaterThan(w / 2);
      expect(m.centroidX.right).toBeLessThan(w / 2);
      expect(m.centroidX.heart).toBeGreaterThan(m.centroidX.right);
      expect(m.centroidX.heart).toBeLessThan(m.centroidX.left);
      (res.images[k]?.truth.Cardiomegaly ? bigCtr : normalCtr).push(m.ctr);
    }
    expect(bigCtr.length).toBeGreaterThan(5);
    expect(Math.min(...bigCtr)).toBeGreaterThan(0.5);
    expect(Math.max(...normalCtr)).toBeLessThan(0.5);
  });
});
