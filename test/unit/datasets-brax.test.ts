import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

import { DataError } from '../../src/data/errors.js';
import { loadBrax } from '../../src/datasets/brax.js';
import { CHEXPERT_5 } from '../../src/datasets/classes.js';
import { labelTargets, resolvePolicy } from '../../src/datasets/policy.js';
import { filterViews } from '../../src/datasets/select.js';
import { rejected } from './datasets-helpers.js';

const ROOT = fileURLToPath(new URL('../fixtures/datasets/brax', import.meta.url));

describe('loadBrax', () => {
  it('reads the master spreadsheet: path column, patient, study, sex, age group, view', async () => {
    const rs = await loadBrax(ROOT);
    expect(rs.map((r) => r.id)).toEqual([
      'images/id_0a1b2c/Study_1001.Series_1.Image_1.png',
      'images/id_0a1b2c/Study_1001.Series_2.Image_1.png',
      'images/id_3d4e5f/Study_1002.Series_1.Image_1.png',
      'images/id_6a7b8c/Study_1003.Series_1.Image_1.png',
    ]);
    expect(rs[0]?.path).toBe(path.join(ROOT, 'images', 'id_0a1b2c', 'Study_1001.Series_1.Image_1.png'));
    expect(rs.map((r) => [r.patient, r.study, r.sex, r.age, r.view])).toEqual([
      ['0a1b2c', '1001', 'M', 60, 'PA'],
      ['0a1b2c', '1001', 'M', 60, 'LL'],
      ['3d4e5f', '1002', 'F', 85, 'AP'],
      ['6a7b8c', '1003', 'O', 40, 'PA'],
    ]);
    expect(filterViews(rs, ['PA', 'AP'])).toHaveLength(3);
    const dicom = await loadBrax(ROOT, { pathColumn: 'DicomPath' });
    expect(dicom[2]?.path).toBe(path.join(ROOT, 'dicom', 'id_3d4e5f', 'Study_1002.Series_1.Image_1.dcm'));
  });

  it('reads the 14 labels by name (BRAX orders them differently from CheXpert)', async () => {
    const rs = await loadBrax(ROOT);
    const r3 = rs[2]?.labels ?? {};
    expect([r3.Cardiomegaly, r3.Edema, r3['Pleural Effusion'], r3['Support Devices'], r3['No Finding'], r3['Lung Lesion']]).toEqual([1, -1, 0, 1, null, null]);
    const r4 = rs[3]?.labels ?? {};
    expect([r4['Lung Opacity'], r4.Pneumonia, r4['Lung Lesion']]).toEqual([1, -1, null]);
    // BRAX default policy = CheXpert's: U-Ones, blank negative, No Finding rule
    const t = labelTargets(rs, CHEXPERT_5, resolvePolicy('brax'));
    expect([...t.targets]).toEqual([
      ...[0, 0, 0, 0, 0],
      ...[0, 0, 0, 0, 0],
      ...[0, 1, 0, 1, 0], // Cardiomegaly 1, Edema -1 → 1, Pleural Effusion 0
      ...[0, 0, 0, 0, 0],
    ]);
  });

  it('rejects a missing path column, listing the columns found', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'cxf-brax-'));
    try {
      const text = (await readFile(path.join(ROOT, 'master_spreadsheet_update.csv'), 'utf8')).replace('PngPath', 'ImagePath');
      await writeFile(path.join(dir, 'master_spreadsheet_update.csv'), text);
      const e = await rejected(loadBrax(dir));
      expect(e.message).toMatch(/missing column 'PngPath' \(expected in BRAX's master_spreadsheet_update.csv\); the columns found are: 'DicomPath', 'ImagePath', 'PatientID'/);
      expect((await loadBrax(dir, { pathColumn: 'ImagePath' })).length).toBe(4);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
