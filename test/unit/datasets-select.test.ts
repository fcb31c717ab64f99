import { describe, expect, it } from 'vitest';

import { DataError } from '../../src/data/errors.js';
import { assignSplits, filterViews, LABEL_MAP, mixDatasets, onePerPatient, planRecords, relabel, selectSplits } from '../../src/datasets/select.js';
import type { CxrRecord, Split } from '../../src/datasets/types.js';

function rec(id: string, patient: string, extra: Partial<CxrRecord> = {}): CxrRecord {
  return { id, dataset: 'd', path: `/img/${id}`, patient, labels: {}, ...extra };
}

/** n patients with `per` images each: ids p{i}_{j}. */
function cohort(n: number, per: number, dataset = 'd'): CxrRecord[] {
  const out: CxrRecord[] = [];
  for (let i = 0; i < n; i++) for (let j = 0; j < per; j++) out.push({ ...rec(`p${i}_${j}`, `p${i}`), dataset });
  return out;
}

describe('filterViews', () => {
  const rs = [rec('a', '1', { view: 'PA' }), rec('b', '1', { view: 'LATERAL' }), rec('c', '2', { view: 'AP Supine' }), rec('d', '3'), rec('e', '4', { view: 'FRONTAL' })];
  it('keeps the listed views (normalised names), FRONTAL meaning any frontal view, and drops records without a view', () => {
    expect(filterViews(rs, ['pa']).map((r) => r.id)).toEqual(['a']);
    expect(filterViews(rs, ['PA', 'AP_horizontal']).map((r) => r.id)).toEqual(['a', 'c']);
    expect(filterViews(rs, ['FRONTAL']).map((r) => r.id)).toEqual(['a', 'c', 'e']);
    expect(filterViews(rs, ['L']).map((r) => r.id)).toEqual(['b']);
    expect(() => filterViews(rs, [])).toThrow(DataError);
  });
});

describe('onePerPatient', () => {
  const rs = cohort(50, 4);
  it('keeps exactly one image of every patient, in input order', () => {
    const one = onePerPatient(rs, 7);
    expect(one).toHaveLength(50);
    expect(new Set(one.map((r) => r.patient)).size).toBe(50);
    const pos = one.map((r) => rs.indexOf(r));
    expect([...pos].sort((a, b) => a - b)).toEqual(pos);
  });

  it('is deterministic, seed dependent, and independent of record order', () => {
    const a = onePerPatient(rs, 7).map((r) => r.id);
    expect(onePerPatient(rs, 7).map((r) => r.id)).toEqual(a);
    expect(onePerPatient(rs, 8).map((r) => r.id)).not.toEqual(a);
    const reversed = onePerPatient([...rs].reverse(), 7).map((r) => r.id);
    expect(new Set(reversed)).toEqual(new Set(a));
    // the choice is spread over the images (not always the first): with 50 patients × 4 images, every index occurs
    expect(new Set(a.map((id) => id.split('_')[1]))).toEqual(new Set(['0', '1', '2', '3']));
  });

  it('treats equal patient ids of different datasets as different patients', () => {
    const two = [...cohort(3, 2, 'x'), ...cohort(3, 2, 'y')];
    expect(onePerPatient(two, 1)).toHaveLength(6);
  });
});

describe('assignSplits', () => {
  const rs = cohort(100, 3);
  const splitsOf = (out: CxrRecord[]): Map<string, Set<Split | undefined>> => {
    const m = new Map<string, Set<Split | undefined>>();
    for (const r of out) {
      const s = m.get(r.patient) ?? new Set();
      s.add(r.split);
      m.set(r.patient, s);
    }
    return m;
  };

  it('cuts patients by the fractions with no patient in two splits', () => {
    const out = assignSplits(rs, { seed: 1, fractions: { train: 0.7, valid: 0.1, test: 0.2 } });
    const per = splitsOf(out);
    expect([...per.values()].every((s) => s.size === 1)).toBe(true);
    const count = (s: Split): number => [...per.values()].filter((v) => v.has(s)).length;
    expect([count('train'), count('valid'), count('test')]).toEqual([70, 10, 20]);
    expect(out.filter((r) => r.split === 'train')).toHaveLength(210);
    expect(rs.every((r) => r.split === undefined)).toBe(true); // input untouched
  });

  it('is deterministic and seed dependent; fractions need not sum to 1', () => {
    const a = assignSplits(rs, { seed: 1, fractions: { train: 7, valid: 1, test: 2 } }).map((r) => r.split);
    expect(assignSplits(rs, { seed: 1, fractions: { train: 0.7, valid: 0.1, test: 0.2 } }).map((r) => r.split)).toEqual(a);
    expect(assignSplits(rs, { seed: 2, fractions: { train: 0.7, valid: 0.1, test: 0.2 } }).map((r) => r.split)).not.toEqual(a);
  });

  it('keeps official splits, lets unsplit images follow their patient, and re-splits everything on overwrite', () => {
    const mixed = [
      rec('a1', 'A', { split: 'test' }),
      rec('a2', 'A'), // patient A is test: a2 follows
      rec('b1', 'B', { split: 'train' }),
      ...cohort(20, 2),
    ];
    const out = assignSplits(mixed, { seed: 4, fractions: { train: 1, valid: 1 } });
    expect(out.slice(0, 3).map((r) => r.split)).toEqual(['test', 'test', 'train']);
    const fresh = splitsOf(out.slice(3));
    expect([...fresh.values()].every((s) => s.size === 1 && !s.has(undefined) && !s.has('test'))).toBe(true);
    expect([...fresh.values()].filter((s) => s.has('valid'))).toHaveLength(10);

    const train = cohort(10, 2).map((r) => ({ ...r, split: 'train' as const }));
    const resplit = assignSplits(train, { seed: 4, fractions: { train: 0.8, valid: 0.2 }, overwrite: true });
    expect(resplit.filter((r) => r.split === 'valid')).toHaveLength(4); // 2 patients × 2 images
    expect([...splitsOf(resplit).values()].every((s) => s.size === 1)).toBe(true);
  });

  it('rejects bad fractions', () => {
    expect(() => assignSplits(rs, { seed: 0, fractions: { train: 0, valid: 0 } })).toThrow('split fractions sum to 0');
    expect(() => assignSplits(rs, { seed: 0, fractions: { train: -1, valid: 2 } })).toThrow(/split fraction train must be a finite number >= 0, got -1/);
  });

  it('selectSplits keeps the named splits only', () => {
    const out = assignSplits(rs, { seed: 1, fractions: { train: 0.7, valid: 0.1, test: 0.2 } });
    expect(selectSplits(out, 'valid')).toHaveLength(30);
    expect(selectSplits(out, ['valid', 'test'])).toHaveLength(90);
    expect(() => selectSplits(out, ['dev' as Split])).toThrow("unknown split 'dev' (expected train, valid, test)");
  });
});

describe('relabel', () => {
  it('maps each dataset onto the common names, combining several source labels (1 > −1 > 0 > blank)', () => {
    const vindr: CxrRecord = { ...rec('v', 'v'), dataset: 'vindr', labels: { 'Rib fracture': 0, 'Clavicle fracture': 1, 'Pleural effusion': 0 } };
    const chex: CxrRecord = { ...rec('c', 'c'), dataset: 'chexpert', labels: { Fracture: -1, 'Pleural Effusion': null, Cardiomegaly: 1 } };
    const other: CxrRecord = { ...rec('o', 'o'), dataset: 'csv', labels: { Fracture: 1, Custom: 0 } };
    const out = relabel([vindr, chex, other], ['Fracture', 'Pleural Effusion', 'Custom', 'Cardiomegaly']);
    expect(out.map((r) => r.labels)).toEqual([
      { Fracture: 1, 'Pleural Effusion': 0 },
      { Fracture: -1, 'Pleural Effusion': null, Cardiomegaly: 1 },
      { Fracture: 1, Custom: 0 }, // no table entry for 'csv': labels of the same name
    ]);
    const both: CxrRecord = { ...rec('n', 'n'), dataset: 'nih', labels: { Nodule: 0, Mass: 1 } };
    expect(relabel([both], ['Nodule/Mass'])[0]?.labels).toEqual({ 'Nodule/Mass': 1 });
  });

  it('has a table entry for every CXformer downstream class in its own dataset', () => {
    expect(LABEL_MAP['Pleural Effusion']?.nih).toEqual(['Effusion']);
    expect(LABEL_MAP['Pleural Effusion']?.vindr).toEqual(['Pleural effusion']);
    expect(LABEL_MAP.Pneumonia?.rsna).toEqual(['Pneumonia']);
    expect(LABEL_MAP['Pleural Thickening']?.nih).toEqual(['Pleural_Thickening']);
  });
});

describe('mixDatasets', () => {
  const a = cohort(300, 1, 'a');
  const b = cohort(100, 1, 'b');

  it('proportional = the concatenation, each record once', () => {
    const plan = mixDatasets([{ records: a }, { records: b }], { mode: 'proportional', seed: 0 });
    expect(plan.length).toBe(400);
    expect(plan.counts).toEqual([300, 100]);
    expect([...plan.source.slice(298, 302)]).toEqual([0, 0, 1, 1]);
    expect([...plan.index.slice(298, 302)]).toEqual([298, 299, 0, 1]);
    const rs = planRecords(plan, [{ records: a }, { records: b }]);
    expect(rs[0]).toBe(a[0]);
    expect(rs[399]).toBe(b[99]);
    expect(() => mixDatasets([{ records: a }], { mode: 'proportional', seed: 0, length: 10 })).toThrow(/use mode 'weighted'/);
  });

  it('weighted draws sources in proportion to the weights over many draws', () => {
    const plan = mixDatasets(
      [
        { records: a, weight: 1 },
        { records: b, weight: 3 },
      ],
      { mode: 'weighted', seed: 11, length: 40000 },
    );
    expect(plan.counts[0]! + plan.counts[1]!).toBe(40000);
    // expected 0.25 / 0.75; binomial sd = sqrt(0.25·0.75/40000) ≈ 0.0022, allow ~4.5 sd
    expect(Math.abs(plan.counts[0]! / 40000 - 0.25)).toBeLessThan(0.01);
    expect(plan.counts).toEqual([[...plan.source].filter((s) => s === 0).length, [...plan.source].filter((s) => s === 1).length]);
  });

  it('weighted defaults to size weights, and a zero weight is never drawn', () => {
    const plan = mixDatasets([{ records: a }, { records: b }], { mode: 'weighted', seed: 5, length: 40000 });
    expect(Math.abs(plan.counts[0]! / 40000 - 0.75)).toBeLessThan(0.01);
    const none = mixDatasets([{ records: a, weight: 0 }, { records: b, weight: 2 }], { mode: 'weighted', seed: 5 });
    expect(none.length).toBe(400);
    expect(none.counts).toEqual([0, 400]);
  });

  it('visits every record of a source once before repeating it', () => {
    const plan = mixDatasets([{ records: b, weight: 1 }], { mode: 'weighted', seed: 9, length: 250 });
    const first = [...plan.index.slice(0, 100)].sort((x, y) => x - y);
    expect(first).toEqual(Array.from({ length: 100 }, (_, i) => i));
    const second = [...plan.index.slice(100, 200)].sort((x, y) => x - y);
    expect(second).toEqual(first);
    expect([...plan.index.slice(100, 200)]).not.toEqual([...plan.index.slice(0, 100)]); // reshuffled
  });

  it('is deterministic and seed dependent', () => {
    const srcs = [
      { records: a, weight: 2 },
      { records: b, weight: 1 },
    ];
    const p1 = mixDatasets(srcs, { mode: 'weighted', seed: 3, length: 1000 });
    const p2 = mixDatasets(srcs, { mode: 'weighted', seed: 3, length: 1000 });
    const p3 = mixDatasets(srcs, { mode: 'weighted', seed: 4, length: 1000 });
    expect([...p1.source]).toEqual([...p2.source]);
    expect([...p1.index]).toEqual([...p2.index]);
    expect([...p1.source]).not.toEqual([...p3.source]);
  });

  it('rejects bad sources and weights', () => {
    expect(() => mixDatasets([], { mode: 'weighted', seed: 0 })).toThrow('mixDatasets: no sources');
    expect(() => mixDatasets([{ records: a, weight: -1 }], { mode: 'weighted', seed: 0 })).toThrow(/weight of source 0 must be a finite number >= 0, got -1/);
    expect(() => mixDatasets([{ records: [], weight: 1 }], { mode: 'weighted', seed: 0 })).toThrow(/source 0 has weight 1 but no records/);
    expect(() => mixDatasets([{ records: a, weight: 0 }], { mode: 'weighted', seed: 0 })).toThrow('mixDatasets: the weights sum to 0');
    expect(() => mixDatasets([{ records: a }], { mode: 'random' as never, seed: 0 })).toThrow(/unknown mode 'random'/);
  });
});
