/** labels:FILE: CSV (id- or text-keyed), JSON, f1chexbert's list-per-line text, CheXbert codes; errors name the place. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importLabeler, lookupLabels, parseCell, parseLabels } from '../../src/eval/labelers/import.js';
import { CHEXBERT_14 } from '../../src/eval/labelers/types.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cxf-import-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('parseCell', () => {
  it('CheXpert cells and CheXbert codes', () => {
    expect(['1.0', '1', '0.0', '0', '-1.0', '-1', '', ' ', 'nan', 'NaN', null, 1, 0, -1].map((v) => parseCell(v))).toEqual([1, 1, 0, 0, -1, -1, null, null, null, null, null, 1, 0, -1]);
    expect(['2', 'x', '1.5', true].map((v) => parseCell(v))).toEqual([undefined, undefined, undefined, undefined]);
    expect([0, 1, 2, 3, '3', 4].map((v) => parseCell(v, 'chexbert'))).toEqual([null, 1, 0, -1, -1, undefined]);
  });
});

describe('CSV', () => {
  it('id-keyed: metadata columns ignored, classes in file order, looked up by id', () => {
    const t = 'Path,Sex,No Finding,Cardiomegaly,Nodule,Split\nimages/a.png,F,1.0,0.0,,train\nimages/b.png,M,0.0,1.0,-1.0,test\n';
    const l = parseLabels(t, 'labels.csv');
    expect(l.keyedBy).toBe('id');
    expect(l.classes).toEqual(['No Finding', 'Cardiomegaly', 'Nodule']);
    expect(lookupLabels(l, ['images/b.png', 'images/a.png'])).toEqual([[0, 1, -1], [1, 0, null]]);
    expect(() => lookupLabels(l, ['images/a.png', 'images/c.png', 'x'])).toThrow(/labels\.csv: 2 of 3 report ids have no row \(key column Path\): 'images\/c\.png', 'x'/);
  });
  it("text-keyed: the CheXpert labeler's labeled_reports.csv layout (Reports column, multi-line quoted text)", async () => {
    const f = path.join(dir, 'labeled.csv');
    await writeFile(f, `Reports,No Finding,Cardiomegaly,Edema\n"1. Left effusion.\n\n2. Cardiomegaly.",,1.0,0.0\nNo edema.,1.0,,0.0\n`);
    const lab = importLabeler(f);
    expect(lab.labels.keyedBy).toBe('text');
    expect(lab.label([' No edema. ', '1. Left effusion.\n\n2. Cardiomegaly.'])).toEqual([[1, null, 0], [null, 1, 0]]);
    expect(() => lab.labelIds(['0'])).toThrow(/have no row/);
  });
  it('errors name file, line, row and column', () => {
    expect(() => parseLabels('Path,Cardiomegaly\na,2.0\n', 'l.csv')).toThrow(/l\.csv: line 2 \(row 1\), column 'Cardiomegaly': expected 1, 1\.0, 0, 0\.0, -1, -1\.0 or blank, found '2\.0'/);
    expect(() => parseLabels('Name,Cardiomegaly\na,1\n', 'l.csv')).toThrow(/l\.csv: line 1: no id column: expected one of Path, id, .* header: Name, Cardiomegaly/);
    expect(() => parseLabels('Path,Cardiomegaly\na,1\n', 'l.csv', { idColumn: 'study' })).toThrow(/no id column 'study' \(header: Path, Cardiomegaly\)/);
    expect(() => parseLabels('Path,Foo\na,1\n', 'l.csv')).toThrow(/no label columns/);
    expect(() => parseLabels('Path,Cardiomegaly\na,1\n', 'l.csv', { classes: ['Cardiomegaly', 'Edema'] })).toThrow(/no column for class\(es\) Edema/);
    expect(() => parseLabels('Path,Cardiomegaly\na,1\nb,0\na,0\n', 'l.csv')).toThrow(/line 4 \(row 3\), column 'Path': duplicate id 'a' \(first on row 1\)/);
    expect(() => parseLabels('Path,Cardiomegaly\na,3\n', 'l.csv', { codes: 'chexbert' })).not.toThrow();
    expect(() => parseLabels('Path,Cardiomegaly\na,4\n', 'l.csv', { codes: 'chexbert' })).toThrow(/expected a CheXbert code 0 \(blank\), 1 \(positive\), 2 \(negative\) or 3 \(uncertain\), found '4'/);
  });
});

describe('JSON and f1chexbert text', () => {
  it('rows as arrays (CheXbert order) or objects; CheXbert codes', () => {
    const row = CHEXBERT_14.map((_, i) => (i === 1 ? 3 : i === 13 ? 1 : 0));
    const l = parseLabels(JSON.stringify({ s1: row, s2: { Cardiomegaly: 2 } }), 'l.json', { codes: 'chexbert' });
    expect(l.classes).toEqual([...CHEXBERT_14]);
    const [a, b] = lookupLabels(l, ['s1', 's2']);
    expect(a![1]).toBe(-1);
    expect(a![13]).toBe(1);
    expect(a!.filter((c) => c !== null)).toHaveLength(2);
    expect(b![1]).toBe(0);
    expect(() => parseLabels('{"s1": [1, 0]}', 'l.json')).toThrow(/l\.json: id 's1': expected 14 cells/);
    expect(() => parseLabels('{"s1": {"Heart": 1}}', 'l.json')).toThrow(/id 's1': unknown class key\(s\) Heart/);
    expect(() => parseLabels('{"s1": {"Edema": "yes"}}', 'l.json')).toThrow(/id 's1', class 'Edema': expected 1, 1\.0, .* found "yes"/);
    expect(() => parseLabels('[1', 'l.json')).toThrow(/l\.json: not valid JSON/);
  });
  it("f1chexbert's hyps_filename lines (classification mode keeps '' and -1)", () => {
    const line = (cells: string[]) => `[${cells.join(', ')}]`;
    const r0 = CHEXBERT_14.map((_, i) => (i === 4 ? '-1' : i === 13 ? '1' : "''"));
    const r1 = CHEXBERT_14.map(() => '0');
    const l = parseLabels(`${line(r0)}\n${line(r1)}\n`, 'hyps.txt');
    const [a, b] = lookupLabels(l, ['0', '1']);
    expect(a![4]).toBe(-1);
    expect(a![13]).toBe(1);
    expect(a!.filter((c) => c === null)).toHaveLength(12);
    expect(b).toEqual(CHEXBERT_14.map(() => 0));
    expect(() => parseLabels('[0, 1\n', 'hyps.txt')).toThrow(/hyps\.txt: line 1: expected a list such as/);
  });
});
