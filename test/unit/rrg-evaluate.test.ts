/**
 * Report-generation evaluation (src/rrg/evaluate.ts, write.ts): point estimates equal the metric functions, a
 * bootstrap replicate equals the metrics recomputed on the resample's duplicated pairs, the phantom labeler gives
 * the invariants a perfect and a constant report must have, and the files say what was computed.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { parseCsv } from '../../src/data/csv.js';
import { mulberry32 } from '../../src/data/random.js';
import { synthDataset } from '../../src/data/synth.js';
import { drawResample, resamplingUnits } from '../../src/eval/bootstrap.js';
import { phantomLabeler } from '../../src/eval/labelers/phantom.js';
import { rulesLabeler } from '../../src/eval/labelers/rules.js';
import { CHEXBERT_14, CHEXBERT_5 } from '../../src/eval/labelers/types.js';
import { mean } from '../../src/eval/stats.js';
import { pycocoBleu, sacreBleu } from '../../src/eval/text/bleu.js';
import { ciderD } from '../../src/eval/text/cider.js';
import { r2genClean } from '../../src/eval/text/clean.js';
import { labelF1 } from '../../src/eval/text/label-f1.js';
import { pycocoRougeLCorpus, rougeScoreL } from '../../src/eval/text/rouge.js';
import { evaluateReports, type ReportEvaluation } from '../../src/rrg/evaluate.js';
import type { ReportPair } from '../../src/rrg/pairs.js';
import { writeReportEvaluation } from '../../src/rrg/write.js';

let root = '';
let reports: { id: string; text: string; patient: string }[] = [];
beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'cxf-rrg-eval-'));
  await synthDataset({ out: path.join(root, 'ph'), n: 160, seed: 9, size: 32 });
  const t = parseCsv(await readFile(path.join(root, 'ph', 'reports.csv'), 'utf8'));
  reports = t.rows.map((r) => ({ id: r[0] as string, text: r[1] as string, patient: (r[0] as string).slice(7, 13) }));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const NORMAL = 'The heart size is normal. No pulmonary nodule. No pleural effusion. No pneumothorax. No acute cardiopulmonary abnormality.';

/** Generated reports that are the reference of another image (a shuffled retrieval baseline), deterministic. */
function shuffledPairs(withPatients: boolean): ReportPair[] {
  return reports.map((r, i) => {
    const p: ReportPair = { id: r.id, hypothesis: reports[(i * 7 + 3) % reports.length]!.text, references: [r.text] };
    if (withPatients) p.patient = r.patient;
    return p;
  });
}

const byKey = (e: ReportEvaluation) => Object.fromEntries(e.metrics.map((m) => [m.key, m]));

describe('evaluateReports', () => {
  it('point estimates equal the metric functions under every protocol', () => {
    const pairs = shuffledPairs(false);
    const H = pairs.map((p) => p.hypothesis);
    const R = pairs.map((p) => p.references);
    const lab = phantomLabeler();
    const e = byKey(evaluateReports(pairs, { protocol: 'all', labels: { labeler: lab }, bootstrap: 0 }));
    expect(e.bleu4!.value).toBeCloseTo(sacreBleu(H, R).score, 10);
    expect(e.bleu1!.value).toBeCloseTo(sacreBleu(H, R, { maxNgramOrder: 1 }).score, 10);
    expect(e.rougeL!.value).toBeCloseTo(100 * mean(pairs.map((p) => rougeScoreL(p.hypothesis, p.references[0]!).fmeasure)), 10);
    const CH = H.map(r2genClean);
    const CR = R.map((rs) => rs.map(r2genClean));
    expect(e.pycoco_bleu4!.value).toBe(pycocoBleu(CH, CR).corpus[3]);
    expect(e.pycoco_bleu2!.value).toBe(pycocoBleu(CH, CR).corpus[1]);
    expect(e.pycoco_rougeL!.value).toBeCloseTo(pycocoRougeLCorpus(CH, CR).corpus, 12);
    expect(e.cider_d!.value).toBe(ciderD(CH, CR).corpus);
    // Label metrics: the phantom labels, findings columns and the CheXbert mapping (Nodule → Lung Lesion).
    const rows = { h: lab.label(H), r: lab.label(R.map((x) => x[0]!)) };
    const findings = labelF1(rows.r, rows.h, { classes: lab.classes, subset: ['Cardiomegaly', 'Pleural Effusion', 'Nodule', 'Pneumothorax'], uncertain: 'negative' });
    expect(e.f1_findings_micro!.value).toBeCloseTo(100 * findings.micro.f1, 10);
    expect(e.f1_findings_macro!.value).toBeCloseTo(100 * findings.macro.f1, 10);
    const to14 = phantomLabeler({ classes: 'chexbert14' });
    const r14 = { h: to14.label(H), r: to14.label(R.map((x) => x[0]!)) };
    expect(e.f1_14_macro!.value).toBeCloseTo(100 * labelF1(r14.r, r14.h, { classes: CHEXBERT_14, uncertain: 'negative' }).macro.f1, 10);
    expect(e.f1_5_micro_plus!.value).toBeCloseTo(100 * labelF1(r14.r, r14.h, { classes: CHEXBERT_14, subset: CHEXBERT_5, uncertain: 'positive' }).micro.f1, 10);
    expect(e.ce_recall_14_macro!.value).toBeCloseTo(labelF1(r14.r, r14.h, { classes: CHEXBERT_14, uncertain: 'negative' }).macro.recall, 12);
  });

  it('a bootstrap replicate equals the metrics of the resample written out as duplicated pairs', () => {
    const pairs = shuffledPairs(true);
    const lab = phantomLabeler();
    const one = evaluateReports(pairs, { protocol: 'all', labels: { labeler: lab }, bootstrap: 1, seed: 5 });
    expect(one.bootstrap).toMatchObject({ n: 1, unit: 'patient' });
    // The same draw, by hand: patients in order of first appearance, drawn with mulberry32(5).
    const units = resamplingUnits(pairs.length, pairs.map((p) => p.patient!));
    const w = new Float64Array(pairs.length);
    drawResample(mulberry32(5), units, w);
    const dup: ReportPair[] = [];
    pairs.forEach((p, i) => {
      for (let k = 0; k < w[i]!; k++) dup.push({ ...p, id: `${p.id}#${k}` });
    });
    const again = byKey(evaluateReports(dup, { protocol: 'all', labels: { labeler: lab }, bootstrap: 0 }));
    for (const m of one.metrics) {
      if (m.key === 'cider_d') continue; // replicates keep the full set's document frequencies (checked below)
      expect(m.interval, m.key).not.toBeNull();
      expect(m.interval!.lo, m.key).toBeCloseTo(again[m.key]!.value!, 9);
      expect(m.interval!.hi).toBe(m.interval!.lo);
    }
    const seg = ciderD(pairs.map((p) => r2genClean(p.hypothesis)), pairs.map((p) => p.references.map(r2genClean))).segments;
    let s = 0;
    let n = 0;
    seg.forEach((v, i) => {
      s += w[i]! * v;
      n += w[i]!;
    });
    expect(byKey(one).cider_d!.interval!.median).toBeCloseTo(s / n, 12);
  });

  it('perfect reports score 1 everywhere; the constant normal report finds nothing', () => {
    const lab = phantomLabeler();
    const perfect = byKey(evaluateReports(reports.map((r) => ({ id: r.id, hypothesis: r.text, references: [r.text] })), { labels: { labeler: lab }, bootstrap: 50 }));
    expect(perfect.bleu4!.value).toBeCloseTo(100, 10);
    expect(perfect.rougeL!.value).toBeCloseTo(100, 10);
    expect(perfect.f1_findings_micro!.value).toBe(100);
    expect(perfect.f1_findings_micro!.interval).toMatchObject({ lo: 100, hi: 100, nValid: 50 });
    const normal = evaluateReports(reports.map((r) => ({ id: r.id, hypothesis: NORMAL, references: [r.text] })), { labels: { labeler: lab }, bootstrap: 200, seed: 1 });
    const k = byKey(normal);
    expect(k.f1_findings_micro!.value).toBe(0);
    expect(k.f1_findings_macro!.value).toBe(0);
    expect(k.rougeL!.value).toBeGreaterThan(50); // the template shares most words with every phantom report
    const iv = k.bleu4!.interval!;
    expect(iv.lo).toBeLessThanOrEqual(iv.median);
    expect(iv.median).toBeLessThanOrEqual(iv.hi);
    expect(iv.hi - iv.lo).toBeGreaterThan(0);
    expect(normal.perClass.map((p) => p.set)).toEqual(['phantom findings', 'CheXbert 14']);
    expect(normal.diagnostics.hyps).toEqual({});
  });

  it('skips what it cannot compute and says why; counts labeler diagnostics', () => {
    const pairs = shuffledPairs(false).slice(0, 20);
    const none = evaluateReports(pairs, { bootstrap: 0 });
    expect(none.labeler).toBeNull();
    expect(none.skipped.map((s) => s.key)).toEqual(['rg_er', 'f1_14_macro', 'f1_5_macro', 'f1_14_micro', 'f1_5_micro']);
    expect(none.skipped[0]!.reason).toMatch(/--radgraph/);
    expect(none.skipped[1]!.reason).toMatch(/--labeler/);
    const odd = pairs.map((p, i) => (i === 0 ? { ...p, hypothesis: 'The heart is enlarged. Something else entirely.' } : p));
    const d = evaluateReports(odd, { labels: { labeler: phantomLabeler() }, bootstrap: 0 });
    expect(d.diagnostics.hyps.unparsed).toBe(1);
    expect(d.diagnostics.examples[0]).toMatchObject({ report: 0, kind: 'unparsed' });
    const rules = evaluateReports(pairs, { labels: { labeler: rulesLabeler() }, bootstrap: 0 });
    expect(byKey(rules).f1_14_macro!.card.labeler).toMatch(/^rules chexpert-lite/);
  });
});

describe('writeReportEvaluation', () => {
  it('writes report.json, report.md and pairs.jsonl with the cards and labels', async () => {
    const e = evaluateReports(shuffledPairs(true), { protocol: 'cxformer', labels: { labeler: phantomLabeler() }, bootstrap: 20 });
    const out = path.join(root, 'eval');
    const files = await writeReportEvaluation(out, e);
    const json = JSON.parse(await readFile(files.json, 'utf8'));
    expect(json).toMatchObject({ task: 'report', protocol: 'cxformer', pairs: reports.length, bootstrap: { n: 20, unit: 'patient' } });
    expect(json.metrics.find((m: { key: string }) => m.key === 'bleu4').card.tokenisation).toBe('sacrebleu 13a (mteval-v13a)');
    const md = await readFile(files.markdown, 'utf8');
    expect(md).toMatch(/Protocol: `cxformer`/);
    expect(md).toMatch(/\| BLEU-4 \| \d+\.\d\d \| \d+\.\d\d \[\d+\.\d\d, \d+\.\d\d\] \| sacrebleu 2\.6\.0/);
    expect(md).toMatch(/RG_ER \(RadGraph partial\): no RadGraph annotations/);
    const lines = (await readFile(files.pairs, 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(reports.length);
    expect(lines[0]).toMatchObject({ id: reports[0]!.id, reference: reports[0]!.text });
    expect(Object.keys(lines[0].labels_generated)).toEqual(['No Finding', 'Cardiomegaly', 'Pleural Effusion', 'Nodule', 'Pneumothorax']);
  });
});
