/**
 * labelF1 against scikit-learn 1.9.1 (`classification_report`, `{precision,recall,f1}_score`, `accuracy_score`) as
 * recorded in ../shared/fixtures/golden/text/chexbert_f1.json, every case, both uncertainty policies, every column
 * set, zero_division 0 / 1 / nan; plus hand-computed cases.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { labelF1, type LabelF1Result } from '../../src/eval/text/label-f1.js';
import { CHEXBERT_14, CHEXBERT_5, type LabelCell } from '../../src/eval/labelers/types.js';
import { goldenFile } from './golden.js';

interface Report { [k: string]: { precision: number; recall: number; 'f1-score': number; support: number } }
interface Part { classification_report: Report; scores: Record<string, number | string>; accuracy_exact_match: number; per_report_exact_match: number[] }
interface Case { name: string; label_names: string[]; ref_4class: number[][]; hyp_4class: number[][]; uncertain_as_positive: Record<string, Part>; uncertain_as_negative: Record<string, Part> }

const golden = JSON.parse(readFileSync(goldenFile('text/chexbert_f1.json'), 'utf8')) as { cases: Case[] };
// CheXbert codes (0 blank, 1 positive, 2 negative, 3 uncertain) → cells, written out here independently of the library.
const CODE: Record<number, LabelCell> = { 0: null, 1: 1, 2: 0, 3: -1 };
const cells = (m: number[][]) => m.map((r) => r.map((c) => CODE[c] as LabelCell));
const TOL = 1e-12;

function close(actual: number, expected: number | string | null, what: string) {
  // JSON has no NaN: the fixture writes scikit-learn's nan as the string "NaN".
  if (expected === 'NaN') expect(actual, what).toBeNaN();
  else if (typeof expected !== 'number') throw new Error(`${what}: unexpected golden value ${JSON.stringify(expected)}`);
  else expect(Math.abs(actual - expected), `${what}: ${actual} vs ${expected}`).toBeLessThanOrEqual(TOL);
}

function subsetOf(c: Case, part: string): string[] {
  if (part === 'all') return c.label_names;
  if (part === 'five') return [...CHEXBERT_5];
  if (part === 'findings') return c.label_names.filter((n) => n !== 'No Finding');
  throw new Error(`unknown part ${part}`);
}

describe('labelF1 = scikit-learn classification_report (golden text/chexbert_f1.json)', () => {
  it('the fixture has the five cases and CheXbert order', () => {
    expect(golden.cases.map((c) => c.name)).toEqual(['random_mixed', 'identical', 'all_blank', 'single_report', 'phantom_labels']);
    expect(golden.cases[0]!.label_names).toEqual([...CHEXBERT_14]);
  });
  for (const c of golden.cases) {
    for (const policy of ['positive', 'negative'] as const) {
      const parts = c[policy === 'positive' ? 'uncertain_as_positive' : 'uncertain_as_negative'];
      for (const [part, g] of Object.entries(parts)) {
        it(`${c.name}, uncertain → ${policy}, ${part}`, () => {
          const subset = subsetOf(c, part);
          const run = (zd: 0 | 1 | 'nan') => labelF1(cells(c.ref_4class), cells(c.hyp_4class), { classes: c.label_names, subset, uncertain: policy, zeroDivision: zd });
          const r = run(0);
          const cr = g.classification_report;
          expect(r.perClass.map((p) => p.name)).toEqual(subset);
          for (const p of r.perClass) {
            const e = cr[p.name]!;
            close(p.precision, e.precision, `${p.name} precision`);
            close(p.recall, e.recall, `${p.name} recall`);
            close(p.f1, e['f1-score'], `${p.name} f1`);
            expect(p.support).toBe(e.support);
          }
          const avgs: [keyof LabelF1Result, string][] = [['micro', 'micro avg'], ['macro', 'macro avg'], ['weighted', 'weighted avg'], ['samples', 'samples avg']];
          for (const [k, name] of avgs) {
            const e = cr[name]!;
            const a = r[k] as { precision: number; recall: number; f1: number; support: number };
            close(a.precision, e.precision, `${name} precision`);
            close(a.recall, e.recall, `${name} recall`);
            close(a.f1, e['f1-score'], `${name} f1`);
            expect(a.support).toBe(e.support);
          }
          close(r.accuracy, g.accuracy_exact_match, 'accuracy');
          expect(r.exactMatch).toEqual(g.per_report_exact_match);
          // The score functions under each zero_division setting.
          const byZd = { warn: r, '1.0': run(1), nan: run('nan') };
          let checked = 0;
          for (const [key, v] of Object.entries(g.scores)) {
            const m = /^(f1|precision|recall)\|(micro|macro|samples)\|(warn|1\.0|nan)$/.exec(key);
            if (!m) continue;
            const res = byZd[m[3] as keyof typeof byZd][m[2] as 'micro'];
            close(res[m[1] as 'f1'], v, key);
            checked++;
          }
          expect(checked).toBe(27);
        });
      }
    }
  }
});

describe('labelF1: hand-computed cases and errors', () => {
  const classes = ['A', 'B', 'C'];
  it('two reports, uncertain either way', () => {
    const refs: LabelCell[][] = [[1, -1, null], [0, 1, null]];
    const hyps: LabelCell[][] = [[1, 1, 1], [-1, 1, 0]];
    // uncertain → positive: ref [[1,1,0],[0,1,0]], hyp [[1,1,1],[1,1,0]].
    const p = labelF1(refs, hyps, { classes, uncertain: 'positive' });
    // A: tp 1, fp 1, fn 0 → P 1/2, R 1, F1 2/3; B: tp 2 → 1,1,1; C: fp 1 → 0, 0 (no support), 0.
    expect(p.perClass.map((c) => [c.precision, c.recall, c.f1, c.support])).toEqual([[0.5, 1, 2 / 3, 1], [1, 1, 1, 2], [0, 0, 0, 0]]);
    expect(p.micro.precision).toBe(3 / 5);
    expect(p.micro.recall).toBe(1);
    expect(p.micro.f1).toBe(6 / 8);
    expect(p.macro.f1).toBeCloseTo((2 / 3 + 1 + 0) / 3, 15);
    expect(p.weighted.f1).toBeCloseTo((2 / 3 + 2) / 3, 15);
    // report 1: tp 2, pred 3, true 2 → F1 4/5; report 2: tp 1, pred 2, true 1 → F1 2/3.
    expect(p.samples.f1).toBeCloseTo((4 / 5 + 2 / 3) / 2, 15);
    expect(p.exactMatch).toEqual([0, 0]);
    // uncertain → negative: ref [[1,0,0],[0,1,0]], hyp [[1,1,1],[0,1,0]]: report 2 matches exactly.
    const n = labelF1(refs, hyps, { classes, uncertain: 'negative', subset: ['B', 'A'] });
    expect(n.classes).toEqual(['B', 'A']);
    expect(n.perClass.map((c) => c.f1)).toEqual([2 / 3, 1]);
    expect(n.exactMatch).toEqual([0, 1]);
    expect(n.accuracy).toBe(0.5);
  });
  it('refuses mismatched input with the place named', () => {
    expect(() => labelF1([[1, 0, null]], [], { classes, uncertain: 'positive' })).toThrow(/1 reference rows but 0 hypothesis rows/);
    expect(() => labelF1([[1, 0]], [[1, 0, 0]], { classes, uncertain: 'positive' })).toThrow(/refs\[0\] must have 3 cells/);
    expect(() => labelF1([[1, 0, 2 as never]], [[1, 0, 0]], { classes, uncertain: 'positive' })).toThrow(/refs\[0\]\[2\] must be 1, 0, -1 or null, got 2/);
    expect(() => labelF1([[1, 0, 0]], [[1, 0, 0]], { classes, uncertain: 'positive', subset: ['D'] })).toThrow(/subset class 'D'/);
    expect(() => labelF1([], [], { classes, uncertain: 'positive' })).toThrow(/no reports/);
  });
});
