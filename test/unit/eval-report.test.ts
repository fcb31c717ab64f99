import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { parseCsv } from '../../src/data/csv.js';
import { mulberry32 } from '../../src/data/random.js';
import { averagePrecision, brierScore, rocAuc } from '../../src/eval/metrics.js';
import { formatCardCell, formatProbability, writeEvaluationReport, type MetricsJson } from '../../src/eval/report.js';

let root = '';
beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'cxf-eval-report-'));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const classes = ['Atelectasis', 'Pleural Effusion', 'Never, seen'];
const N = 90;
const C = classes.length;

/** Probabilities with signal; class 2 has only negatives; some labels masked (null, NaN, mask 0). */
function dataset(): { scores: Float32Array; labels: (number | null)[]; mask: number[]; ids: string[]; patientIds: string[] } {
  const rnd = mulberry32(31);
  const scores = new Float32Array(N * C);
  const labels: (number | null)[] = [];
  const mask: number[] = [];
  for (let i = 0; i < N; i++) {
    for (let c = 0; c < C; c++) {
      const y = c === 2 ? 0 : rnd() < 0.35 ? 1 : 0;
      const z = (y ? 1.2 : -1.2) + (rnd() + rnd() - 1) * 2.5;
      scores[i * C + c] = 1 / (1 + Math.exp(-z));
      const r = rnd();
      labels.push(r < 0.03 ? null : r < 0.06 ? Number.NaN : y);
      mask.push(r > 0.06 && r < 0.08 ? 0 : 1);
    }
  }
  return { scores, labels, mask, ids: Array.from({ length: N }, (_, i) => `img_${i}.jpg`), patientIds: Array.from({ length: N }, (_, i) => `pat${Math.floor(i / 2)}`) };
}

function column(d: ReturnType<typeof dataset>, c: number): { s: number[]; y: (number | null)[] } {
  const s: number[] = [];
  const y: (number | null)[] = [];
  for (let i = 0; i < N; i++) {
    s.push(d.scores[i * C + c]!);
    y.push(d.mask[i * C + c] ? d.labels[i * C + c]! : null);
  }
  return { s, y };
}

describe('writeEvaluationReport', () => {
  const d = dataset();
  let dir = '';
  let metrics: MetricsJson;

  beforeAll(async () => {
    dir = path.join(root, 'run1');
    const r = await writeEvaluationReport(dir, { classes, ...d, threshold: 0.5, bootstrap: { n: 200, seed: 5 }, title: 'Unit test', pngScale: 1 });
    metrics = r.metrics;
  });

  it('writes every file, atomically (no temporary files left)', async () => {
    expect((await readdir(dir)).sort()).toEqual(['calibration.png', 'calibration.svg', 'metrics.json', 'pr.png', 'pr.svg', 'predictions.csv', 'report.md', 'roc.png', 'roc.svg']);
    for (const f of ['roc', 'pr', 'calibration']) {
      const svg = await readFile(path.join(dir, `${f}.svg`), 'utf8');
      const w = Number(/width="(\d+)"/.exec(svg)![1]);
      const meta = await sharp(await readFile(path.join(dir, `${f}.png`))).metadata();
      expect(meta.width).toBe(w);
    }
  });

  it('predictions.csv: image id, patient id, then probability and label per class; masked labels empty', async () => {
    const t = parseCsv(await readFile(path.join(dir, 'predictions.csv'), 'utf8'));
    expect(t.header).toEqual([
      'image_id',
      'patient_id',
      'prob_Atelectasis',
      'label_Atelectasis',
      'prob_Pleural Effusion',
      'label_Pleural Effusion',
      'prob_Never, seen',
      'label_Never, seen',
    ]);
    expect(t.rows).toHaveLength(N);
    t.rows.forEach((row, i) => {
      expect(row[0]).toBe(`img_${i}.jpg`);
      expect(row[1]).toBe(`pat${Math.floor(i / 2)}`);
      for (let c = 0; c < C; c++) {
        // float32 probabilities round-trip exactly
        expect(Math.fround(Number(row[2 + 2 * c]))).toBe(d.scores[i * C + c]);
        const l = d.labels[i * C + c];
        const masked = !d.mask[i * C + c] || l === null || Number.isNaN(l);
        expect(row[3 + 2 * c]).toBe(masked ? '' : String(l));
      }
    });
    expect(t.rows.some((r) => r[3] === '')).toBe(true);
  });

  it('metrics.json: point estimates equal the single-class metrics, with median and CI, and counts', async () => {
    const m = JSON.parse(await readFile(path.join(dir, 'metrics.json'), 'utf8')) as MetricsJson;
    expect(m).toEqual(metrics);
    expect(m).toMatchObject({ n: N, n_patients: 45, n_classes: 3, classes, threshold: 0.5, n_bootstrap: 200, seed: 5, bootstrap_unit: 'patient', ci_level: 0.95 });
    expect(m.percentile).toMatch(/numpy linear/);
    for (const c of [0, 1]) {
      const col = column(d, c);
      const row = m.per_class[c]!;
      expect(row.auroc.value).toBe(rocAuc(col.s, col.y).value);
      expect(row.auprc.value).toBe(averagePrecision(col.s, col.y).value);
      expect(row.brier.value).toBe(brierScore(col.s, col.y).value);
      const labelled = col.y.filter((v) => v !== null && !Number.isNaN(v));
      expect(row.n).toBe(labelled.length);
      expect(row.n_pos).toBe(labelled.filter((v) => v === 1).length);
      expect(row.tp + row.fn).toBe(row.n_pos);
      expect(row.tn + row.fp).toBe(row.n_neg);
      let tp = 0;
      col.s.forEach((s, i) => {
        if (col.y[i] === 1 && s >= 0.5) tp++;
      });
      expect(row.tp).toBe(tp);
      expect(row.sensitivity.value).toBeCloseTo(tp / row.n_pos, 15);
      for (const k of ['auroc', 'auprc'] as const) {
        const v = row[k];
        if (v.value === null || v.ci == null || v.median == null) throw new Error('expected a bootstrap summary');
        expect(v.ci[0]).toBeLessThanOrEqual(v.median);
        expect(v.median).toBeLessThanOrEqual(v.ci[1]);
        expect(v.ci[0]).toBeLessThan(v.value);
        expect(v.ci[1]).toBeGreaterThan(v.value);
        expect(v.n_valid! + v.n_skipped!).toBe(200);
      }
    }
  });

  it('metrics.json: the only-negative class is undefined with reasons and excluded from the macro with a note', () => {
    const never = metrics.per_class[2]!;
    expect(never.auroc).toEqual({ value: null, reason: 'only negatives' });
    expect(never.auprc).toEqual({ value: null, reason: 'only negatives' });
    expect(never.sensitivity).toEqual({ value: null, reason: 'only negatives' });
    expect(never.specificity.value).not.toBeNull();
    expect(metrics.undefined).toEqual([
      { class: 'Never, seen', metric: 'auroc', reason: 'only negatives' },
      { class: 'Never, seen', metric: 'auprc', reason: 'only negatives' },
      { class: 'Never, seen', metric: 'sensitivity', reason: 'only negatives' },
    ]);
    expect(metrics.macro.excluded).toEqual([{ class: 'Never, seen', reason: 'only negatives' }]);
    expect(metrics.macro.note).toBe('macro over 2 of 3 classes; excluded: Never, seen (only negatives)');
    expect(metrics.macro.auroc.classes).toEqual(['Atelectasis', 'Pleural Effusion']);
    expect(metrics.macro.auroc.value).toBeCloseTo((metrics.per_class[0]!.auroc.value! + metrics.per_class[1]!.auroc.value!) / 2, 15);
    expect(metrics.micro.auroc.value).not.toBeNull();
    expect(JSON.stringify(metrics)).not.toMatch(/NaN|Infinity/);
  });

  it('report.md: card-formatted table "median [lo, hi]" × 100, macro/micro rows, note and plot images', async () => {
    const md = await readFile(path.join(dir, 'report.md'), 'utf8');
    expect(md).toContain('# Unit test');
    expect(md).toContain('| Class | n | Positives | AUROC | AUPRC | Sensitivity | Specificity | Brier |');
    const row = md.split('\n').find((l) => l.startsWith('| Atelectasis |'))!;
    const a = metrics.per_class[0]!.auroc;
    if (a.value === null) throw new Error('expected a value');
    const cell = `${(a.median! * 100).toFixed(2)} [${(a.ci![0] * 100).toFixed(2)}, ${(a.ci![1] * 100).toFixed(2)}]`;
    expect(row.split(' | ')[3]).toBe(cell);
    expect(cell).toMatch(/^\d+\.\d\d \[\d+\.\d\d, \d+\.\d\d\]$/);
    expect(md).toMatch(/\| Never, seen \| \d+ \| 0 \| — \(only negatives\) \| — \(only negatives\) \|/);
    expect(md).toMatch(/\| \*\*Macro\*\* \| \| \| \d+\.\d\d \[\d+\.\d\d, \d+\.\d\d\] \|/);
    expect(md).toMatch(/\| \*\*Micro\*\* \| \| \| \d+\.\d\d \[/);
    expect(md).toContain('Note: macro over 2 of 3 classes; excluded: Never, seen (only negatives).');
    for (const f of ['roc.png', 'pr.png', 'calibration.png']) expect(md).toContain(`](${f})`);
    expect(md).toContain('90 images of 45 patients');
  });

  it('is deterministic for a seed', async () => {
    const dir2 = path.join(root, 'run2');
    await writeEvaluationReport(dir2, { classes, ...d, threshold: 0.5, bootstrap: { n: 200, seed: 5 }, title: 'Unit test', pngScale: 1 });
    expect(await readFile(path.join(dir2, 'metrics.json'), 'utf8')).toBe(await readFile(path.join(dir, 'metrics.json'), 'utf8'));
    expect(await readFile(path.join(dir2, 'report.md'), 'utf8')).toBe(await readFile(path.join(dir, 'report.md'), 'utf8'));
  });

  it('plot legends show the statistic report.md shows (the bootstrap median here) and say which', async () => {
    const roc = await readFile(path.join(dir, 'roc.svg'), 'utf8');
    const pr = await readFile(path.join(dir, 'pr.svg'), 'utf8');
    const a = metrics.per_class[0]!;
    expect(a.auroc.median).not.toBe(a.auroc.value); // the two statistics differ on this data, so the check can fail
    expect(roc).toContain(`>${a.class} (AUROC ${a.auroc.median!.toFixed(3)})</text>`);
    expect(pr).toContain(`>${a.class} (AP ${a.auprc.median!.toFixed(3)})</text>`);
    expect(roc).toContain('>AUROC: bootstrap median of 200, as in report.md</text>');
    expect(pr).toContain('>AP: bootstrap median of 200, as in report.md</text>');
  });

  it('without a bootstrap: point estimates only, SVG-only plots when png is false, per-class thresholds', async () => {
    const dir3 = path.join(root, 'run3');
    const r = await writeEvaluationReport(dir3, { classes, ...d, bootstrap: false, png: false, threshold: [0.3, 0.7, 0.5] });
    expect(r.metrics).toMatchObject({ n_bootstrap: 0, seed: null, bootstrap_unit: null, threshold: [0.3, 0.7, 0.5] });
    expect(r.metrics.per_class[0]!.auroc).toEqual({ value: metrics.per_class[0]!.auroc.value });
    expect(r.metrics.per_class[1]!.threshold).toBe(0.7);
    expect((await readdir(dir3)).sort()).toEqual(['calibration.svg', 'metrics.json', 'pr.svg', 'predictions.csv', 'report.md', 'roc.svg']);
    const md = await readFile(path.join(dir3, 'report.md'), 'utf8');
    expect(md).toContain(`| ${(metrics.per_class[0]!.auroc.value! * 100).toFixed(2)} |`);
    expect(md).toContain('](roc.svg)');
    const roc = await readFile(path.join(dir3, 'roc.svg'), 'utf8');
    expect(roc).toContain(`(AUROC ${metrics.per_class[0]!.auroc.value!.toFixed(3)})</text>`);
    expect(roc).toContain('>AUROC: point estimate, as in report.md</text>');
  });

  it('rejects mismatched ids and thresholds', async () => {
    await expect(writeEvaluationReport(path.join(root, 'bad'), { classes, ...d, ids: ['x'] })).rejects.toThrow(/ids has 1 entries/);
    await expect(writeEvaluationReport(path.join(root, 'bad'), { classes, ...d, threshold: [0.5] })).rejects.toThrow(/threshold/);
  });
});

describe('formatting', () => {
  it('formats like the CXformer model card', () => {
    expect(formatCardCell({ value: 0.8334, median: 0.8334, ci: [0.8317, 0.8339] })).toBe('83.34 [83.17, 83.39]');
    expect(formatCardCell({ value: 0.91126 })).toBe('91.13');
    expect(formatCardCell({ value: null, reason: 'only positives' })).toBe('— (only positives)');
  });

  it('prints the shortest decimal that round-trips a float32', () => {
    expect(formatProbability(Math.fround(0.1), true)).toBe('0.1');
    expect(formatProbability(Math.fround(0.123456789), true)).toBe('0.12345679');
    expect(formatProbability(0.1 + 0.2, false)).toBe('0.30000000000000004');
  });
});
