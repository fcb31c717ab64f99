/** labelReports / labelerFromSpec (src/eval/labelers/index.ts) and the library exports of the labelers and metrics. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import * as lib from '../../src/index.js';
import { labelerFromSpec, labelReports, phantomLabeler } from '../../src/eval/labelers/index.js';

describe('labelReports', () => {
  it('phantom: rows and diagnostics; with the 14-class mapping, CE-F1 through labelF1', () => {
    const refs = ['The heart is enlarged. No pneumothorax.', 'The heart size is normal. No acute cardiopulmonary abnormality.'];
    const hyps = ['The heart is enlarged. Large left pneumothorax.', 'The heart is enlarged. Something else.'];
    const l = phantomLabeler({ classes: 'chexbert14' });
    const r = labelReports(refs, l);
    const h = labelReports(hyps, l);
    expect(r.diagnostics).toEqual([]);
    expect(h.diagnostics.map((d) => [d.report, d.kind])).toEqual([[1, 'unparsed']]);
    const f1 = lib.labelF1(r.rows, h.rows, { classes: l.classes, uncertain: 'positive' });
    // Cardiomegaly: ref [1, 0], hyp [1, 1] → P 1/2, R 1; Pneumothorax: ref [0, -], hyp [1, -] → FP; No Finding: ref [0, 1], hyp [0, 0] → FN.
    expect(f1.micro).toEqual({ precision: 1 / 3, recall: 1 / 2, f1: 2 / 5, support: 2 });
  });
  it('labels:FILE keyed by id needs ids; spec errors', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'cxf-lr-'));
    try {
      const f = path.join(dir, 'l.csv');
      await writeFile(f, 'Path,Edema\na,1.0\nb,0.0\n');
      const l = labelerFromSpec(`labels:${f}`);
      expect(labelReports(['x', 'y'], l, { ids: ['b', 'a'] }).rows).toEqual([[0], [1]]);
      expect(() => labelReports(['x'], l)).toThrow(/keyed by report id: pass opts\.ids/);
      expect(() => labelReports(['x'], l, { ids: ['a', 'b'] })).toThrow(/1 texts but 2 ids/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    expect(() => labelerFromSpec('chexbert:models/x')).toThrow(/unknown labeler 'chexbert:models\/x': expected phantom, rules, labels:FILE/);
    expect(() => labelerFromSpec('labels:')).toThrow(/unknown labeler/);
  });
  it('the library exports the labelers and the metrics', () => {
    for (const name of ['labelReports', 'labelerFromSpec', 'phantomLabeler', 'rulesLabeler', 'importLabeler', 'labelF1', 'radgraphReward', 'readRadGraphFile']) {
      expect(typeof (lib as Record<string, unknown>)[name], name).toBe('function');
    }
    expect(lib.CHEXBERT_14).toHaveLength(14);
  });
});
