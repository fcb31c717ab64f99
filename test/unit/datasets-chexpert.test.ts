import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DataError } from '../../src/data/errors.js';
import { CHEXPERT_5 } from '../../src/datasets/classes.js';
import { loadChexpert } from '../../src/datasets/chexpert.js';
import { CXFORMER_U_ONES, labelTargets, type LabelPolicy } from '../../src/datasets/policy.js';
import { filterViews } from '../../src/datasets/select.js';
import type { CxrRecord } from '../../src/datasets/types.js';
import { rejected, byId } from './datasets-helpers.js';

const ROOT = fileURLToPath(new URL('../fixtures/datasets/chexpert', import.meta.url));

/** Targets of one record over CHEXPERT_5 (Atelectasis, Cardiomegaly, Consolidation, Edema, Pleural Effusion). */
function five(r: CxrRecord, policy: LabelPolicy): { t: number[]; m: number[] } {
  const x = labelTargets([r], CHEXPERT_5, policy);
  return { t: [...x.targets], m: [...x.mask] };
}

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-chexpert-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('loadChexpert', () => {
  it('loads train.csv, valid.csv and test_labels.csv with their official splits', async () => {
    const rs = await loadChexpert(ROOT);
    expect(rs).toHaveLength(11);
    expect(rs.filter((r) => r.split === 'train')).toHaveLength(7);
    expect(rs.filter((r) => r.split === 'valid')).toHaveLength(2);
    expect(rs.filter((r) => r.split === 'test')).toHaveLength(2);
    expect(new Set(rs.map((r) => r.patient)).size).toBe(9);
    expect(rs.every((r) => r.dataset === 'chexpert')).toBe(true);
  });

  it('drops the dataset folder from Path for the id and resolves the image under the root', async () => {
    const rs = await loadChexpert(ROOT);
    const r = rs[0] as CxrRecord;
    expect(r.id).toBe('train/patient00001/study1/view1_frontal.jpg');
    expect(r.path).toBe(path.join(ROOT, 'train', 'patient00001', 'study1', 'view1_frontal.jpg'));
    expect(r.patient).toBe('patient00001');
    expect(r.study).toBe('patient00001/study1');
    expect(byId(rs, 'test/patient64742/study1/view1_frontal.jpg').path).toBe(path.join(ROOT, 'test', 'patient64742', 'study1', 'view1_frontal.jpg'));
  });

  it('reads sex, age (0 = unknown) and the view from Frontal/Lateral + AP/PA, or from the file name', async () => {
    const rs = await loadChexpert(ROOT);
    const r1 = byId(rs, 'train/patient00001/study1/view1_frontal.jpg');
    expect([r1.sex, r1.age, r1.view]).toEqual(['F', 68, 'AP']);
    const r5 = byId(rs, 'train/patient00003/study1/view1_frontal.jpg');
    expect([r5.sex, r5.age, r5.view]).toEqual(['M', 41, 'PA']);
    const r6 = byId(rs, 'train/patient00004/study1/view1_frontal.jpg');
    expect(r6.age).toBeUndefined();
    expect(byId(rs, 'train/patient00002/study1/view2_lateral.jpg').view).toBe('LATERAL');
    // test_labels.csv has no view columns: the file name says frontal, AP/PA unknown
    expect(byId(rs, 'test/patient64741/study1/view1_frontal.jpg').view).toBe('FRONTAL');
    expect(byId(rs, 'test/patient64741/study1/view1_frontal.jpg').sex).toBeUndefined();
    const views = rs.map((r) => r.view);
    expect(views.filter((v) => v === 'AP')).toHaveLength(5);
    expect(views.filter((v) => v === 'PA')).toHaveLength(2);
    expect(views.filter((v) => v === 'LATERAL')).toHaveLength(2);
    expect(filterViews(rs, ['PA', 'AP'])).toHaveLength(7);
    expect(filterViews(rs, ['FRONTAL'])).toHaveLength(9);
  });

  it('keeps the raw label values 1, 0, -1 and null', async () => {
    const rs = await loadChexpert(ROOT);
    const r2 = byId(rs, 'train/patient00002/study2/view1_frontal.jpg');
    expect(r2.labels).toEqual({
      'No Finding': null,
      'Enlarged Cardiomediastinum': null,
      Cardiomegaly: -1,
      'Lung Opacity': 1,
      'Lung Lesion': null,
      Edema: -1,
      Consolidation: -1,
      Pneumonia: null,
      Atelectasis: -1,
      Pneumothorax: null,
      'Pleural Effusion': -1,
      'Pleural Other': null,
      Fracture: 1,
      'Support Devices': null,
    });
    const r1 = byId(rs, 'train/patient00001/study1/view1_frontal.jpg');
    expect([r1.labels['No Finding'], r1.labels.Pneumothorax, r1.labels['Support Devices'], r1.labels.Edema]).toEqual([1, 0, 1, null]);
    // test labels are written as integers
    const t2 = byId(rs, 'test/patient64742/study1/view1_frontal.jpg');
    expect([t2.labels.Cardiomegaly, t2.labels.Atelectasis, t2.labels['No Finding']]).toEqual([1, 1, 0]);
  });

  it('applies every uncertain / blank policy to CHEXPERT_5 as hand-computed', async () => {
    const rs = await loadChexpert(ROOT);
    const uncertainRow = byId(rs, 'train/patient00002/study2/view1_frontal.jpg'); // all five are -1
    expect(five(uncertainRow, { uncertain: 'ones', blank: 'zero' })).toEqual({ t: [1, 1, 1, 1, 1], m: [1, 1, 1, 1, 1] });
    expect(five(uncertainRow, { uncertain: 'zeros', blank: 'zero' })).toEqual({ t: [0, 0, 0, 0, 0], m: [1, 1, 1, 1, 1] });
    expect(five(uncertainRow, { uncertain: 'ignore', blank: 'zero' })).toEqual({ t: [0, 0, 0, 0, 0], m: [0, 0, 0, 0, 0] });

    const edemaRow = byId(rs, 'train/patient00003/study1/view1_frontal.jpg'); // Edema 1, the other four blank
    expect(five(edemaRow, { uncertain: 'ones', blank: 'zero' })).toEqual({ t: [0, 0, 0, 1, 0], m: [1, 1, 1, 1, 1] });
    expect(five(edemaRow, { uncertain: 'ones', blank: 'ignore' })).toEqual({ t: [0, 0, 0, 1, 0], m: [0, 0, 0, 1, 0] });
    // CXformer's quirk: blanks become NaN, then 1 under U-Ones
    expect(five(edemaRow, CXFORMER_U_ONES)).toEqual({ t: [1, 1, 1, 1, 1], m: [1, 1, 1, 1, 1] });
    expect(five(edemaRow, { uncertain: 'zeros', blank: 'uncertain' })).toEqual({ t: [0, 0, 0, 1, 0], m: [1, 1, 1, 1, 1] });
    expect(five(edemaRow, { uncertain: 'ignore', blank: 'uncertain' })).toEqual({ t: [0, 0, 0, 1, 0], m: [0, 0, 0, 1, 0] });

    const consRow = byId(rs, 'train/patient00002/study1/view1_frontal.jpg'); // Consolidation -1, others blank
    expect(five(consRow, { uncertain: 'ignore', blank: 'zero' })).toEqual({ t: [0, 0, 0, 0, 0], m: [1, 1, 0, 1, 1] });
  });

  it('applies the No Finding rule: every class but Support Devices becomes 0 on No Finding rows', async () => {
    const rs = await loadChexpert(ROOT);
    const nf = byId(rs, 'train/patient00005/study1/view1_frontal.jpg'); // No Finding 1, Cardiomegaly -1, Atelectasis 1, Support Devices 1
    const base: LabelPolicy = { uncertain: 'ones', blank: 'zero' };
    expect(five(nf, base)).toEqual({ t: [1, 1, 0, 0, 0], m: [1, 1, 1, 1, 1] });
    expect(five(nf, { ...base, noFindingRule: true })).toEqual({ t: [0, 0, 0, 0, 0], m: [1, 1, 1, 1, 1] });
    const sd = labelTargets([nf], ['Support Devices', 'No Finding', 'Atelectasis'], { ...base, noFindingRule: true });
    expect([...sd.targets]).toEqual([1, 1, 0]);
    // the rule runs before the blank policy: CXformer's U-Ones does not turn a No Finding row's blanks into 1
    const r1 = byId(rs, 'train/patient00001/study1/view1_frontal.jpg');
    expect(five(r1, CXFORMER_U_ONES)).toEqual({ t: [0, 0, 0, 0, 0], m: [1, 1, 1, 1, 1] });
    expect(five(r1, { uncertain: 'ones', blank: 'ignore', noFindingRule: true }).m).toEqual([1, 1, 1, 1, 1]);
    expect(five(r1, { uncertain: 'ones', blank: 'ignore' }).m).toEqual([0, 0, 0, 0, 0]);
  });

  it('loads only the requested splits, and requires their files', async () => {
    expect(await loadChexpert(ROOT, { splits: ['valid'] })).toHaveLength(2);
    const only = path.join(tmp, 'only-train');
    await mkdir(only, { recursive: true });
    await cp(path.join(ROOT, 'train.csv'), path.join(only, 'train.csv'));
    expect(await loadChexpert(only)).toHaveLength(7);
    const e = await rejected(loadChexpert(only, { splits: ['train', 'test'] }));
    expect(e.message).toMatch(/CheXpert test labels not found under .*only-train \(looked for 'test_labels\.csv', 'test_labels\.csv\.gz'\)/);
  });

  it('names the file, line, row and column of a bad label and lists the columns when one is missing', async () => {
    const bad = path.join(tmp, 'bad');
    await mkdir(bad, { recursive: true });
    const header =
      'Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,Fracture,Support Devices';
    await writeFile(
      path.join(bad, 'train.csv'),
      `${header}\nCheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,Female,68,Frontal,AP,1.0,,,,,,,,,,,,,\nCheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg,Male,50,Frontal,PA,,,2.0,,,,,,,,,,,\n`,
    );
    const e = await rejected(loadChexpert(bad));
    expect(e.message).toBe(`${path.join(bad, 'train.csv')}: line 3 (row 2), column 'Cardiomegaly': expected a label 1, 0, -1 or blank, got '2.0'`);
    expect([e.line, e.row, e.column]).toEqual([3, 2, 'Cardiomegaly']);

    await writeFile(path.join(bad, 'train.csv'), 'Path,Sex,Age,Atelectasis\nx.jpg,Male,1,1.0\n');
    const m = await rejected(loadChexpert(bad));
    expect(m.message).toContain("missing columns 'No Finding', 'Enlarged Cardiomediastinum', 'Cardiomegaly'");
    expect(m.message).toContain("the columns found are: 'Path', 'Sex', 'Age', 'Atelectasis'");
  });

  it('rejects an image listed twice and a Path without a patient', async () => {
    const dup = path.join(tmp, 'dup');
    await mkdir(dup, { recursive: true });
    const header = `Path,${'No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,Fracture,Support Devices'}`;
    const row = `CheXpert-v1.0/train/patient00009/study1/view1_frontal.jpg${',1'.repeat(14)}`;
    await writeFile(path.join(dup, 'train.csv'), `${header}\n${row}\n${row}\n`);
    expect((await rejected(loadChexpert(dup))).message).toMatch(/line 3 \(row 2\), column 'Path': image 'train\/patient00009\/study1\/view1_frontal.jpg' appears twice \(first at train.csv line 2\)/);
    await writeFile(path.join(dup, 'train.csv'), `${header}\nimages/x.jpg${',1'.repeat(14)}\n`);
    expect((await rejected(loadChexpert(dup))).message).toMatch(/cannot find 'patientNNNNN\/studyN\/' in the path 'images\/x.jpg'/);
  });

  it('checks image files on request: lists the missing ones, or drops them', async () => {
    const withImages = path.join(tmp, 'images');
    await mkdir(path.join(withImages, 'valid', 'patient64541', 'study1'), { recursive: true });
    await cp(path.join(ROOT, 'valid.csv'), path.join(withImages, 'valid.csv'));
    await writeFile(path.join(withImages, 'valid', 'patient64541', 'study1', 'view1_frontal.jpg'), 'x');
    const e = await rejected(loadChexpert(withImages, { checkFiles: true }));
    expect(e.message).toMatch(/^CheXpert: 1 of 2 image file\(s\) do not exist \(first: valid\/patient64542\/study1\/view2_lateral.jpg -> .*view2_lateral.jpg\)/);
    const kept = await loadChexpert(withImages, { checkFiles: 'drop' });
    expect(kept.map((r) => r.id)).toEqual(['valid/patient64541/study1/view1_frontal.jpg']);
    const jpg = await loadChexpert(withImages, { imageExt: '.png' });
    expect(jpg[0]?.path.endsWith('view1_frontal.png')).toBe(true);
    expect(jpg[0]?.id).toBe('valid/patient64541/study1/view1_frontal.jpg');
  });
});
