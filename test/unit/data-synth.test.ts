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

  it('makes each finding visible in the pixels (nodules bright, effusion bases bright, pneumothorax band dark)', async () => {
    let nodules = 0;
    const effGap: number[] = [];
    const ptxGap: number[] = [];
    for (let k = 0; k < 200; k++) {
      const info = res.images[k];
      if (!info || (info.nodules.length === 0 && info.effusion.length !== 1 && !info.pneumothorax)) continue;
      const [p, H, W, L, R] = masks.rows[k] as string[];
      const h = Number(H);
      const w = Number(W);
      const { data } = await gray(path.join(out, p as string));
      const lung = { left: rleDecode(L as string, h, w), right: rleDecode(R as string, h, w) };
      const other = (s: 'left' | 'right') => (s === 'left' ? 'right' : 'left');
      const rows = (m: Uint8Array) => {
        let y0 = h;
        let y1 = -1;
        for (let i = 0; i < m.length; i++) {
          if (!m[i]) continue;
          const y = Math.floor(i / w);
          if (y < y0) y0 = y;
          if (y > y1) y1 = y;
        }
        return [y0, y1] as const;
      };
      // Nodule: the central disk (r/2) is brighter than the ring 1.5r..2.5r around it.
      for (const nd of info.nodules) {
        const r = nd.diameterPx / 2;
        let sIn = 0;
        let cIn = 0;
        let sOut = 0;
        let cOut = 0;
        for (let y = Math.floor(nd.y - 3 * r); y <= nd.y + 3 * r; y++) {
          for (let x = Math.floor(nd.x - 3 * r); x <= nd.x + 3 * r; x++) {
            const d = Math.hypot(x + 0.5 - nd.x, y + 0.5 - nd.y);
            const v = data[y * w + x] as number;
            if (d < 0.5 * r) [sIn, cIn] = [sIn + v, cIn + 1];
            else if (d > 1.5 * r && d < 2.5 * r) [sOut, cOut] = [sOut + v, cOut + 1];
          }
        }
        expect(cIn).toBeGreaterThan(0);
        expect(sIn / cIn).toBeGreaterThan(sOut / cOut + 15);
        nodules++;
      }
      // Unilateral effusion (no pneumothorax): the lowest fifth of the lung is brighter than on the other side.
      if (info.effusion.length === 1 && !info.pneumothorax) {
        const base = (m: Uint8Array) => {
          const [y0, y1] = rows(m);
          const yc = y1 - 0.2 * (y1 - y0);
          let s = 0;
          let c = 0;
          for (let i = 0; i < m.length; i++) if (m[i] && Math.floor(i / w) >= yc) [s, c] = [s + (data[i] as number), c + 1];
          return s / c;
        };
        const side = info.effusion[0]?.side ?? 'left';
        effGap.push(base(lung[side]) - base(lung[other(side)]));
      }
      // Pneumothorax (no effusion): in the upper half of the lung, the outermost gap/2 pixels of each row are darker
      // than the same band of the other lung (no parenchyma, no markings).
      if (info.pneumothorax && info.effusion.length === 0) {
        const band = (m: Uint8Array, lateralRight: boolean, kpx: number) => {
          const [y0, y1] = rows(m);
          let s = 0;
          let c = 0;
          for (let y = y0; y < y0 + 0.5 * (y1 - y0); y++) {
            let lo = w;
            let hi = -1;
            for (let x = 0; x < w; x++) if (m[y * w + x]) [lo, hi] = [Math.min(lo, x), Math.max(hi, x)];
            for (let q = 0; q < kpx && hi >= 0; q++) {
              const x = lateralRight ? hi - q : lo + q;
              if (m[y * w + x]) [s, c] = [s + (data[y * w + x] as number), c + 1];
            }
          }
          return s / c;
        };
        const side = info.pneumothorax.side;
        const kpx = Math.max(1, Math.floor(info.pneumothorax.gapPx / 2));
        ptxGap.push(band(lung[other(side)], other(side) === 'left', kpx) - band(lung[side], side === 'left', kpx));
      }
    }
    expect(nodules).toBeGreaterThan(10);
    expect(effGap.length).toBeGreaterThan(5);
    expect(Math.min(...effGap)).toBeGreaterThan(0);
    expect(effGap.reduce((a, b) => a + b, 0) / effGap.length).toBeGreaterThan(15);
    expect(ptxGap.length).toBeGreaterThan(5);
    expect(Math.min(...ptxGap)).toBeGreaterThan(20);
  });

  it('writes reports consistent with the label cells', () => {
    const text = col(reports, 'Findings');
    res.images.forEach((im, k) => {
      const r = text[k] as string;
      expect(r).toBe(im.report);
      const c = im.cells;
      expect(/The heart is enlarged\./.test(r)).toBe(c.Cardiomegaly === '1.0');
      expect(/The heart size is normal\./.test(r)).toBe(c.Cardiomegaly === '0.0');
      expect(/heart/i.test(r)).toBe(c.Cardiomegaly !== '');
      expect(/No pleural effusion\./.test(r)).toBe(c['Pleural Effusion'] === '0.0');
      expect(/(effusion|effusions)\./.test(r) && !/No pleural effusion|Possible/.test(r.match(/[^.]*effusions?\./)?.[0] ?? '')).toBe(c['Pleural Effusion'] === '1.0');
      expect(/effusion/.test(r)).toBe(c['Pleural Effusion'] !== '');
      expect(/No pneumothorax\./.test(r)).toBe(c.Pneumothorax === '0.0');
      expect(/pneumothorax/i.test(r)).toBe(c.Pneumothorax !== '');
      expect(/No pulmonary nodule\./.test(r)).toBe(c.Nodule === '0.0');
      expect(/nodul/.test(r)).toBe(c.Nodule !== '');
      if (c.Pneumothorax === '1.0') expect(r).toContain(`${im.pneumothorax?.side} `);
      if (c['Pleural Effusion'] === '1.0') {
        const sides = im.effusion.map((e) => e.side);
        if (sides.length === 2) expect(r).toMatch(/bilateral|right and .* left/);
        else expect(r).toContain(`${sides[0]} pleural effusion`);
      }
      if (c.Nodule === '1.0') {
        expect(im.nodules.length).toBeGreaterThan(0);
        for (const nd of im.nodules) expect(r).toContain(`${nd.side} `);
        if (im.nodules.length > 1) expect(r).toContain(`${['', '', 'Two', 'Three'][im.nodules.length]} nodules`);
      }
      if (c['No Finding'] === '1.0' && FINDINGS.every((f) => c[f] !== '-1.0')) expect(r).toContain('No acute cardiopulmonary abnormality.');
    });
  });

  it('describes itself in dataset.json', async () => {
    const info = JSON.parse(await readFile(path.join(out, 'dataset.json'), 'utf8'));
    expect(info).toMatchObject({ generator: 'cxformer-synth', seed: 7, n: 200, size: 512, patients: res.info.patients });
    expect(info.version).toMatch(/^\d+\.\d+\.\d+$/);
    expect(info.classes).toEqual([...FINDINGS]);
    expect(info.prevalence).toEqual(DEFAULT_PREVALENCE);
    expect(info.labelNoise).toMatchObject({ uncertainRate: 0.03, blankRate: 0.03 });
    expect(info.observed['No Finding']).toBe(col(labels, 'No Finding').filter((v) => v === '1.0').length);
    const bySplit = (s: string) => col(labels, 'Split').filter((v) => v === s).length;
    expect(info.splits.images).toEqual({ train: bySplit('train'), valid: bySplit('valid'), test: bySplit('test') });
  });
});

describe('synthDataset: determinism and options', () => {
  it('gives byte-identical files for the same seed, different ones for another seed', async () => {
    const a = path.join(tmp, 'a');
    const b = path.join(tmp, 'b');
    const c = path.join(tmp, 'c');
    await synthDataset({ out: a, n: 8, seed: 11, size: 96 });
    await synthDataset({ out: b, n: 8, seed: 11, size: 96 });
    await synthDataset({ out: c, n: 8, seed: 12, size: 96 });
    const files = await filesOf(a);
    expect(files).toEqual(['dataset.json', 'images/P00001_01.png', ...files.slice(2, -3), 'labels.csv', 'masks.csv', 'reports.csv']);
    expect(files.filter((f) => f.startsWith('images/'))).toHaveLength(8);
    expect(await filesOf(b)).toEqual(files);
    for (const f of files) expect(Buffer.compare(await readFile(path.join(a, f)), await readFile(path.join(b, f)))).toBe(0);
    expect((await readFile(path.join(a, 'masks.csv'), 'utf8')) === (await readFile(path.join(c, 'masks.csv'), 'utf8'))).toBe(false);
    // no temporary files left behind
    expect(files.some((f) => f.includes('.tmp-'))).toBe(false);
  });

  it('keeps the first images when n grows (per-image streams)', async () => {
    const small = path.join(tmp, 'small');
    const large = path.join(tmp, 'large');
    const r1 = await synthDataset({ out: small, n: 5, seed: 3, size: 64 });
    const r2 = await synthDataset({ out: large, n: 9, seed: 3, size: 64 });
    expect(r2.images.slice(0, 5).map((i) => i.id)).toEqual(r1.images.map((i) => i.id));
    for (const im of r1.images) {
      expect(Buffer.compare(await readFile(path.join(small, im.path)), await readFile(path.join(large, im.path)))).toBe(0);
    }
    const m1 = parseCsv(await readFile(path.join(small, 'masks.csv'), 'utf8'));
    const m2 = parseCsv(await readFile(path.join(large, 'masks.csv'), 'utf8'));
    expect(m2.rows.slice(0, 5)).toEqual(m1.rows);
  });

  it('honours prevalences and label-noise rates', async () => {
    const out = path.join(tmp, 'prev');
    const res = await synthDataset({
      out,
      n: 60,
      seed: 5,
      size: 48,
      prevalence: { Nodule: 0, Pneumothorax: 1 },
      uncertainRate: 0,
      blankRate: 0,
      maxImagesPerPatient: 1,
      splitFractions: { train: 1, valid: 1, test: 0 },
    });
    const t = parseCsv(await readFile(path.join(out, 'labels.csv'), 'utf8'));
    expect(new Set(col(t, 'Nodule'))).toEqual(new Set(['0.0']));
    expect(new Set(col(t, 'Pneumothorax'))).toEqual(new Set(['1.0']));
    expect(new Set(col(t, 'No Finding'))).toEqual(new Set(['0.0']));
    for (const f of FINDINGS) col(t, f).forEach((v, k) => expect(v).toBe(res.images[k]?.truth[f] ? '1.0' : '0.0'));
    expect(new Set(col(t, 'Patient')).size).toBe(60);
    expect(new Set(col(t, 'Split'))).toEqual(new Set(['train', 'valid']));
    expect(res.info.splits.patients).toEqual({ train: 30, valid: 30, test: 0 });
    expect(res.images.every((im) => im.pneumothorax !== null && im.nodules.length === 0)).toBe(true);
    const all = await synthDataset({ out: path.join(tmp, 'noisy'), n: 40, seed: 5, size: 32, uncertainRate: 0.5, blankRate: 0.5 });
    for (const f of FINDINGS) for (const c of all.images.map((im) => im.cells[f])) expect(['-1.0', '']).toContain(c);
  });

  it('rejects bad options', async () => {
    await expect(synthDataset({ out: path.join(tmp, 'x'), n: 0, seed: 1 })).rejects.toThrow(/n must be a positive integer, got 0/);
    await expect(synthDataset({ out: path.join(tmp, 'x'), n: 2, seed: 1.5 })).rejects.toThrow(/seed must be an integer, got 1\.5/);
    await expect(synthDataset({ out: path.join(tmp, 'x'), n: 2, seed: 1, size: 16 })).rejects.toThrow(/size must be an integer in 32\.\.4096, got 16/);
    await expect(synthDataset({ out: path.join(tmp, 'x'), n: 2, seed: 1, prevalence: { Nodule: 1.5 } })).rejects.toThrow(/prevalence of Nodule must be in \[0, 1\], got 1\.5/);
    await expect(synthDataset({ out: path.join(tmp, 'x'), n: 2, seed: 1, prevalence: { Edema: 0.1 } as never })).rejects.toThrow(/unknown finding 'Edema'/);
    await expect(synthDataset({ out: path.join(tmp, 'x'), n: 2, seed: 1, uncertainRate: 0.7, blankRate: 0.4 })).rejects.toThrow(/at most 1/);
  });
});
