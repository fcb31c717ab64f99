import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

import { DataError } from '../../src/data/errors.js';
import { loadRsna } from '../../src/datasets/rsna.js';
import { assignSplits, filterViews } from '../../src/datasets/select.js';
import { rejected } from './datasets-helpers.js';

const ROOT = fileURLToPath(new URL('../fixtures/datasets/rsna', import.meta.url));

describe('loadRsna', () => {
  it('gives one record per patientId with the majority Target (ties → 0)', async () => {
    const rs = await loadRsna(ROOT, { splits: ['train'] });
    expect(rs.map((r) => [r.id, r.labels.Pneumonia])).toEqual([
      ['0004cfab-14fd-4e49-80ba-63a80b6bddd6', 0],
      ['00313ee0-9eaa-42f4-b0ab-c148ed3241cd', 0],
      ['00322d4d-1c29-4943-afc9-b6754be640eb', 0],
      ['00436515-870c-4b36-a041-de91049b9ab4', 1], // two boxes
      ['00704310-78a8-4b38-8475-49f4573b2dbb', 1], // two boxes
      ['00aecb01-a116-45a2-956c-08d2fa55433f', 0], // Target 1 and 0: tie
      ['0174c4bb-28f5-41e3-a13f-a396badc18bd', 1], // 1, 0, 1
    ]);
    expect(rs.every((r) => r.split === 'train' && r.patient === r.id && r.view === undefined)).toBe(true);
    expect(rs[0]?.path).toBe(path.join(ROOT, 'stage_2_train_images', '0004cfab-14fd-4e49-80ba-63a80b6bddd6.dcm'));
  });

  it('loads the test labels file when present', async () => {
    const rs = await loadRsna(ROOT);
    const test = rs.filter((r) => r.split === 'test');
    expect(test.map((r) => [r.id, r.labels.Pneumonia])).toEqual([
      ['0000a175-0e68-4ca4-b1af-167204a7e0bc', 0],
      ['0005d3cc-3c3f-40b9-93c3-46231c3eb813', 1],
    ]);
    expect(test[0]?.path).toBe(path.join(ROOT, 'stage_2_test_images', '0000a175-0e68-4ca4-b1af-167204a7e0bc.dcm'));
    expect(rs).toHaveLength(9);
  });

  it('takes views, sex and age from a DICOM header table', async () => {
    const rs = await loadRsna(ROOT, { splits: ['train'], viewsCsv: 'dicom_headers.csv' });
    expect(rs.map((r) => r.view)).toEqual(['PA', 'PA', 'AP', 'AP', 'PA', 'AP', 'AP']);
    expect([rs[2]?.sex, rs[2]?.age]).toEqual(['M', 19]);
    expect(filterViews(rs, ['PA']).map((r) => r.labels.Pneumonia)).toEqual([0, 0, 1]);
  });

  it("carves an unofficial validation split out of 'train' by patient", async () => {
    const rs = await loadRsna(ROOT, { splits: ['train'] });
    const split = assignSplits(rs, { seed: 3, fractions: { train: 5, valid: 2 }, overwrite: true });
    // 7 patients: round(7·5/7) = 5 train, 2 valid
    expect(split.filter((r) => r.split === 'train')).toHaveLength(5);
    expect(split.filter((r) => r.split === 'valid')).toHaveLength(2);
  });

  it('rejects a Target other than 0/1 and a patient in both train and test', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'cxf-rsna-'));
    try {
      await writeFile(path.join(dir, 'stage_2_train_labels.csv'), 'patientId,x,y,width,height,Target\np1,,,,,0\np2,,,,,yes\n');
      expect((await rejected(loadRsna(dir))).message).toMatch(/stage_2_train_labels.csv: line 3 \(row 2\), column 'Target': expected a label 1, 0, -1 or blank, got 'yes'/);
      await writeFile(path.join(dir, 'stage_2_train_labels.csv'), 'patientId,x,y,width,height,Target\np1,,,,,0\n');
      await writeFile(path.join(dir, 'stage_2_test_labels.csv'), 'patientId,x,y,width,height,Target\np1,,,,,1\n');
      expect((await rejected(loadRsna(dir))).message).toMatch(/patientId 'p1' is also in the train labels/);
      await writeFile(path.join(dir, 'stage_2_train_labels.csv'), 'patientId,Label\np1,0\n');
      expect((await rejected(loadRsna(dir, { splits: ['train'] }))).message).toMatch(/missing column 'Target' .*the columns found are: 'patientId', 'Label'/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
