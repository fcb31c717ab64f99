import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DataError } from '../../src/data/errors.js';
import { NIH_8 } from '../../src/datasets/classes.js';
import { loadNih } from '../../src/datasets/nih.js';
import { labelTargets } from '../../src/datasets/policy.js';
import { filterViews, relabel } from '../../src/datasets/select.js';
import type { CxrRecord } from '../../src/datasets/types.js';
import { rejected, byId } from './datasets-helpers.js';

const ROOT = fileURLToPath(new URL('../fixtures/datasets/nih', import.meta.url));
const ROOT_2017 = fileURLToPath(new URL('../fixtures/datasets/nih-2017', import.meta.url));

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-nih-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('loadNih', () => {
  it('reads Data_Entry_2017_v2020.csv with the official train_val / test lists', async () => {
    const rs = await loadNih(ROOT);
    expect(rs).toHaveLength(8);
    expect(rs.filter((r) => r.split === 'train')).toHaveLength(6);
    expect(rs.filter((r) => r.split === 'test').map((r) => r.id)).toEqual(['00000003_000.png', '00000004_000.png']);
    expect(rs.filter((r) => r.patient === '1')).toHaveLength(3);
    expect(new Set(rs.map((r) => r.patient)).size).toBe(6);
    const r = byId(rs, '00000001_000.png');
    expect([r.view, r.sex, r.age, r.path]).toEqual(['PA', 'M', 57, path.join(ROOT, 'images', '00000001_000.png')]);
    expect(filterViews(rs, ['AP']).map((x) => x.id)).toEqual(['00000004_000.png', '00000005_000.png']);
    expect(filterViews(rs, ['PA'])).toHaveLength(6);
  });

  it("splits Finding Labels on '|' onto the 14 classes plus No Finding", async () => {
    const rs = await loadNih(ROOT);
    const r5 = byId(rs, '00000005_000.png'); // Pleural_Thickening|Pneumothorax|Atelectasis
    expect(Object.keys(r5.labels)).toHaveLength(15);
    expect(Object.entries(r5.labels).filter(([, v]) => v === 1).map(([k]) => k).sort()).toEqual(['Atelectasis', 'Pleural_Thickening', 'Pneumothorax']);
    expect(Object.values(r5.labels).filter((v) => v === 0)).toHaveLength(12);
    expect(byId(rs, '00000002_000.png').labels['No Finding']).toBe(1);
    expect(byId(rs, '00000001_000.png').labels['No Finding']).toBe(0);
    // NIH_8 = Atelectasis, Cardiomegaly, Effusion, Infiltration, Mass, Nodule, Pneumonia, Pneumothorax
    const policy = { uncertain: 'zeros', blank: 'zero' } as const;
    const order = ['00000001_002.png', '00000003_000.png', '00000004_000.png', '00000005_000.png', '00000006_000.png', '00000002_000.png'];
    const t = labelTargets(order.map((id) => byId(rs, id)), NIH_8, policy);
    expect([...t.targets]).toEqual([
      ...[0, 1, 1, 0, 0, 0, 0, 0], // Cardiomegaly|Effusion
      ...[0, 0, 0, 1, 0, 0, 0, 0], // Hernia|Infiltration
      ...[0, 0, 0, 0, 1, 1, 0, 0], // Mass|Nodule
      ...[1, 0, 0, 0, 0, 0, 0, 1], // Pleural_Thickening|Pneumothorax|Atelectasis
      ...[0, 0, 0, 0, 0, 0, 1, 0], // Pneumonia|Consolidation|Edema|Fibrosis
      ...[0, 0, 0, 0, 0, 0, 0, 0], // No Finding
    ]);
    expect(t.mask.every((m) => m === 1)).toBe(true);
  });

  it("relabels 'Effusion' onto CheXpert's 'Pleural Effusion' and masks classes NIH does not have", async () => {
    const rs = await loadNih(ROOT);
    const [r] = relabel([byId(rs, '00000001_002.png')], ['Pleural Effusion', 'Cardiomegaly', 'Fracture', 'Nodule/Mass']);
    expect(r?.labels).toEqual({ 'Pleural Effusion': 1, Cardiomegaly: 1, 'Nodule/Mass': 0 });
    const [m] = relabel([byId(rs, '00000004_000.png')], ['Nodule/Mass']);
    expect(m?.labels).toEqual({ 'Nodule/Mass': 1 });
    const t = labelTargets([r as CxrRecord], ['Pleural Effusion', 'Fracture'], { uncertain: 'zeros', blank: 'zero' });
    expect([...t.targets, ...t.mask]).toEqual([1, 0, 1, 0]);
  });

  it('reads the 2017 Data_Entry file with its unquoted header and trailing commas', async () => {
    const rs = await loadNih(ROOT_2017);
    expect(rs.map((r) => r.id)).toEqual(['00000001_000.png', '00000002_000.png', '00000004_000.png']);
    expect(byId(rs, '00000004_000.png').labels.Mass).toBe(1);
    expect(rs.every((r) => r.split === undefined)).toBe(true); // no list files there
  });

  it('loads split files (CXformer-style Data_Entry_2017_v2020_{TRAIN,VAL,TEST}.csv)', async () => {
    const dir = path.join(tmp, 'splitcsv');
    await mkdir(dir, { recursive: true });
    const lines = (await readFile(path.join(ROOT, 'Data_Entry_2017_v2020.csv'), 'utf8')).trim().split('\n');
    const header = lines[0] as string;
    await writeFile(path.join(dir, 'TRAIN.csv'), [header, ...lines.slice(1, 5)].join('\n'));
    await writeFile(path.join(dir, 'VAL.csv'), [header, ...lines.slice(5, 7)].join('\n'));
    await writeFile(path.join(dir, 'TEST.csv'), [header, ...lines.slice(7)].join('\n'));
    const rs = await loadNih(dir, { splitCsvs: { train: 'TRAIN.csv', valid: 'VAL.csv', test: 'TEST.csv' } });
    expect(rs.map((r) => r.split)).toEqual(['train', 'train', 'train', 'train', 'valid', 'valid', 'test', 'test']);
    expect((await loadNih(dir, { splitCsvs: { train: 'TRAIN.csv', valid: 'VAL.csv', test: 'TEST.csv' }, splits: ['valid'] })).map((r) => r.id)).toEqual([
      '00000003_000.png',
      '00000004_000.png',
    ]);
  });

  it('finds images in the Kaggle layout images_NNN/images/ and checks them on request', async () => {
    const dir = path.join(tmp, 'kaggle');
    await mkdir(path.join(dir, 'images_001', 'images'), { recursive: true });
    await mkdir(path.join(dir, 'images_002', 'images'), { recursive: true });
    await cp(path.join(ROOT_2017, 'Data_Entry_2017.csv'), path.join(dir, 'Data_Entry_2017.csv'));
    await writeFile(path.join(dir, 'images_001', 'images', '00000001_000.png'), 'x');
    await writeFile(path.join(dir, 'images_002', 'images', '00000004_000.png'), 'x');
    const e = await rejected(loadNih(dir, { checkFiles: true }));
    expect(e.message).toMatch(/^NIH ChestX-ray14: 1 of 3 image file\(s\) do not exist \(first: 00000002_000.png -> /);
    const rs = await loadNih(dir, { checkFiles: 'drop' });
    expect(rs.map((r) => r.path)).toEqual([path.join(dir, 'images_001', 'images', '00000001_000.png'), path.join(dir, 'images_002', 'images', '00000004_000.png')]);
  });

  it('rejects an unknown finding and an image in both lists', async () => {
    const dir = path.join(tmp, 'bad');
    await mkdir(dir, { recursive: true });
    await writeFile(
      path.join(dir, 'Data_Entry_2017_v2020.csv'),
      'Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position\n00000001_000.png,Cardiomegaly,0,1,57,M,PA\n00000002_000.png,Effusion|Pneumonitis,0,2,80,M,PA\n',
    );
    const e = await rejected(loadNih(dir));
    expect(e.message).toMatch(/Data_Entry_2017_v2020.csv: line 3 \(row 2\), column 'Finding Labels': unknown finding 'Pneumonitis' \(known: 'Atelectasis', /);
    await writeFile(path.join(dir, 'Data_Entry_2017_v2020.csv'), 'Image Index,Finding Labels,Patient ID,View Position\n00000001_000.png,Cardiomegaly,1,PA\n');
    await writeFile(path.join(dir, 'train_val_list.txt'), '00000001_000.png\n');
    await writeFile(path.join(dir, 'test_list.txt'), '00000001_000.png\n');
    expect((await rejected(loadNih(dir))).message).toMatch(/image '00000001_000.png' is in both the train_val and the test list/);
  });
});
