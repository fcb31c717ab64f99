import { describe, expect, it } from 'vitest';

import { DataError } from '../../src/data/errors.js';
import { normalizeSex, normalizeView, parseAge, parseLabelCell } from '../../src/datasets/common.js';
import { applyNoFindingRule, CXFORMER_U_ONES, CXFORMER_U_ZEROS, labelTargets, recordTargets, resolveLabel, resolvePolicy, type LabelPolicy } from '../../src/datasets/policy.js';
import { relabel } from '../../src/datasets/select.js';
import type { CxrRecord } from '../../src/datasets/types.js';

const rec = (labels: Record<string, number | null>, id = 'x'): CxrRecord => ({ id, dataset: 'test', path: `/${id}`, patient: id, labels });

describe('resolveLabel', () => {
  it('maps every (value, policy) pair as in the table of policy.ts', () => {
    const cases: [number | null | undefined, Partial<LabelPolicy>, [number, number]][] = [
      [1, {}, [1, 1]],
      [0, {}, [0, 1]],
      [-1, { uncertain: 'ones' }, [1, 1]],
      [-1, { uncertain: 'zeros' }, [0, 1]],
      [-1, { uncertain: 'ignore' }, [0, 0]],
      [null, { blank: 'zero' }, [0, 1]],
      [null, { blank: 'ignore' }, [0, 0]],
      [null, { blank: 'uncertain', uncertain: 'ones' }, [1, 1]],
      [null, { blank: 'uncertain', uncertain: 'zeros' }, [0, 1]],
      [null, { blank: 'uncertain', uncertain: 'ignore' }, [0, 0]],
      [undefined, {}, [0, 0]],
      [undefined, { absent: 'ignore' }, [0, 0]],
      [undefined, { absent: 'zero' }, [0, 1]],
    ];
    for (const [v, p, [target, mask]] of cases) {
      const policy: LabelPolicy = { uncertain: 'zeros', blank: 'zero', ...p };
      expect(resolveLabel(v, policy), `${String(v)} ${JSON.stringify(p)}`).toEqual({ target, mask });
    }
    expect(() => resolveLabel(2, { uncertain: 'ones', blank: 'zero' })).toThrow(DataError);
  });
});

describe('labelTargets', () => {
  it('lays out targets and masks row-major (record × class)', () => {
    const rs = [rec({ A: 1, B: -1, C: null }, 'r0'), rec({ A: 0, C: 1 }, 'r1')];
    const t = labelTargets(rs, ['A', 'B', 'C'], { uncertain: 'ignore', blank: 'ignore' });
    expect(t.count).toBe(2);
    expect(t.classes).toEqual(['A', 'B', 'C']);
    expect(t.targets).toBeInstanceOf(Float32Array);
    expect(t.mask).toBeInstanceOf(Uint8Array);
    expect([...t.targets]).toEqual([1, 0, 0, 0, 0, 1]);
    expect([...t.mask]).toEqual([1, 0, 0, 1, 0, 1]);
    expect(t.targets.some((v) => Number.isNaN(v))).toBe(false);
  });

  it('CXformer U-Ones / U-Zeros: No Finding rule first, then −1 and blank both follow the uncertain policy', () => {
    const row = rec({ 'No Finding': null, Edema: -1, Atelectasis: null, Cardiomegaly: 0, 'Support Devices': null });
    const classes = ['Edema', 'Atelectasis', 'Cardiomegaly', 'Support Devices'];
    expect([...recordTargets(row, classes, CXFORMER_U_ONES).targets]).toEqual([1, 1, 0, 1]);
    expect([...recordTargets(row, classes, CXFORMER_U_ZEROS).targets]).toEqual([0, 0, 0, 0]);
    const healthy = rec({ 'No Finding': 1, Edema: -1, Atelectasis: null, Cardiomegaly: 1, 'Support Devices': null });
    expect([...recordTargets(healthy, classes, CXFORMER_U_ONES).targets]).toEqual([0, 0, 0, 1]); // Support Devices: blank → 1
    expect([...recordTargets(healthy, classes, { uncertain: 'ones', blank: 'zero', noFindingRule: true }).targets]).toEqual([0, 0, 0, 0]);
  });

  it('applyNoFindingRule works on raw labels, so relabelling (which drops No Finding) keeps its effect', () => {
    const healthy: CxrRecord = { ...rec({ 'No Finding': 1, Edema: -1, 'Support Devices': 1, Fracture: null }), dataset: 'chexpert' };
    const sick = rec({ 'No Finding': 0, Edema: -1 }, 'y');
    const [h, s] = applyNoFindingRule([healthy, sick]);
    expect(h?.labels).toEqual({ 'No Finding': 1, Edema: 0, 'Support Devices': 1, Fracture: 0 });
    expect(s).toBe(sick);
    expect(healthy.labels.Edema).toBe(-1); // input untouched
    const policy: LabelPolicy = { uncertain: 'ones', blank: 'zero', noFindingRule: true };
    expect([...labelTargets(relabel([healthy], ['Edema']), ['Edema'], policy).targets]).toEqual([1]); // the rule cannot see No Finding any more
    expect([...labelTargets(relabel([h as CxrRecord], ['Edema']), ['Edema'], policy).targets]).toEqual([0]);
  });

  it('rejects an empty or repeated class list and names the record of a bad value', () => {
    const p: LabelPolicy = { uncertain: 'ones', blank: 'zero' };
    expect(() => labelTargets([], [], p)).toThrow('the class list is empty');
    expect(() => labelTargets([], ['A', 'B', 'A'], p)).toThrow("class 'A' is listed twice");
    expect(() => labelTargets([rec({ A: 3 }, 'img7')], ['A'], p)).toThrow("test image 'img7', class 'A': label value 3 is not 1, 0, -1 or blank");
  });
});

describe('resolvePolicy', () => {
  it('starts from the dataset default and applies overrides; rejects unknown values', () => {
    expect(resolvePolicy('chexpert')).toEqual({ uncertain: 'ones', blank: 'zero', noFindingRule: true });
    expect(resolvePolicy('chexpert', { uncertain: 'ignore' })).toEqual({ uncertain: 'ignore', blank: 'zero', noFindingRule: true });
    expect(resolvePolicy('padchest').absent).toBe('zero');
    expect(resolvePolicy('unknown-source')).toEqual({ uncertain: 'ignore', blank: 'ignore' });
    expect(() => resolvePolicy('nih', { uncertain: 'half' as never })).toThrow("unknown uncertain-label policy 'half' (expected ones, zeros, ignore)");
    expect(() => resolvePolicy('nih', { blank: 'one' as never })).toThrow(/unknown blank-label policy 'one'/);
  });
});

describe('value conventions', () => {
  it('normalises views', () => {
    expect(['PA', 'pa', 'AP', 'AP_horizontal', 'AP Supine', 'L', 'Lateral', 'LATERAL', 'LL', ' frontal ', 'AP AXIAL', 'COSTAL', '', undefined].map(normalizeView)).toEqual([
      'PA',
      'PA',
      'AP',
      'AP Supine',
      'AP Supine',
      'LATERAL',
      'LATERAL',
      'LATERAL',
      'LL',
      'FRONTAL',
      'AP AXIAL',
      'COSTAL',
      undefined,
      undefined,
    ]);
  });

  it('normalises sex and parses ages in the forms the sources use', () => {
    expect(['M', 'Male', 'female', 'O', 'Unknown', '', 'X'].map(normalizeSex)).toEqual(['M', 'M', 'F', 'O', undefined, undefined, 'X']);
    expect(['68', '68.0', '0', '', '058Y', '006M', '85 or more', '60-64', 'n/a'].map(parseAge)).toEqual([68, 68, undefined, undefined, 58, 0.5, 85, 60, undefined]);
  });

  it('parses label cells strictly', () => {
    const at = { file: 'f.csv', line: 3, row: 2, column: 'Edema' };
    expect(['1', '1.0', '0', '0.0', '-1', '-1.0', '', ' ', 'nan'].map((c) => parseLabelCell(c, at))).toEqual([1, 1, 0, 0, -1, -1, null, null, null]);
    expect(Object.is(parseLabelCell('-0.0', at), 0)).toBe(true);
    expect(() => parseLabelCell('0.5', at)).toThrow("f.csv: line 3 (row 2), column 'Edema': expected a label 1, 0, -1 or blank, got '0.5'");
  });
});
