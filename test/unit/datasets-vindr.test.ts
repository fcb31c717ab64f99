import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

import { DataError } from '../../src/data/errors.js';
import { VINDR_28, VINDR_7 } from '../../src/datasets/classes.js';
import { majorityVote } from '../../src/datasets/common.js';
import { labelTargets, resolvePolicy } from '../../src/datasets/policy.js';
import { loadVindr } from '../../src/datasets/vindr.js';
import type { CxrRecord } from '../../src/datasets/types.js';
import { rejected, byId } from './datasets-helpers.js';

const ROOT = fileURLToPath(new URL('../fixtures/datasets/vindr', import.meta.url));
const A = '000434271f63a053c4128a0ba6352c7f';
const B = '00053190460d56c53cc3e57321387478';
const C = '0005e8e3701dfb1dd93d53e2ff537b6e';
const D = '002a34c58c5b758217ed1f584ccbcfe9';
const E = '004f33259ee4aef671c2b95d54e4be68';

describe('majorityVote', () => {
  it('is 1 only when ones outnumber zeros; ties give 0; nulls do not vote', () => {
    expect(majorityVote([1, 1, 0])).toBe(1);
    expect(majorityVote([1, 0, 0])).toBe(0);
    expect(majorityVote([1, 0])).toBe(0);
    expect(majorityVote([1, 1, 0, 0])).toBe(0);
    expect(majorityVote([1, null, null])).toBe(1);
    expect(majorityVote([null, null])).toBeNull();
    expect(majorityVote([])).toBeNull();
  });
});

describe('loadVindr', () => {
  it('aggregates the readers of each training image and reads the test consensus as is', async () => {
    const rs = await loadVindr(ROOT);
    expect(rs.map((r) => [r.id, r.split])).toEqual([
      [A, 'train'],
      [B, 'train'],
      [C, 'train'],
      [D, 'test'],
      [E, 'test'],
    ]);
    expect(rs.every((r) => r.view === 'PA' && r.patient === r.id && Object.keys(r.labels).length === 28)).toBe(true);
    expect(Object.keys(byId(rs, A).labels)).toEqual([...VINDR_28]);
    expect(byId(rs, A).path).toBe(path.join(ROOT, 'train', `${A}.dicom`));
    expect(byId(rs, D).path).toBe(path.join(ROOT, 'test', `${D}.dicom`));
  });

  it('majority vote per label, ties → 0 (hand-computed from the reader rows)', async () => {
    const rs = await loadVindr(ROOT);
    const a = byId(rs, A).labels; // R2: AE, Card, Other diseases; R3: Card; R6: No finding
    expect([a['Aortic enlargement'], a.Cardiomegaly, a['Other diseases'], a['No finding']]).toEqual([0, 1, 0, 0]);
    const b = byId(rs, B).labels; // R11: PE; R13: PE, PT; R8: No finding
    expect([b['Pleural effusion'], b['Pleural thickening'], b['No finding']]).toEqual([1, 0, 0]);
    const c = byId(rs, C).labels; // two readers: R9 Lung Opacity + TB, R10 TB
    expect([c['Lung Opacity'], c.Tuberculosis]).toEqual([0, 1]);
    const t = labelTargets(rs, VINDR_7, resolvePolicy('vindr'));
    // VINDR_7: Aortic enlargement, Cardiomegaly, Lung Opacity, Pleural effusion, Pleural thickening, Pulmonary fibrosis, Tuberculosis
    expect([...t.targets]).toEqual([
      ...[0, 1, 0, 0, 0, 0, 0],
      ...[0, 0, 0, 1, 0, 0, 0],
      ...[0, 0, 0, 0, 0, 0, 1],
      ...[1, 1, 0, 0, 0, 0, 0],
      ...[0, 0, 0, 0, 0, 0, 0],
    ]);
    expect(t.mask.every((m) => m === 1)).toBe(true);
  });

  it('loads one split on request and refuses a valid split', async () => {
    expect((await loadVindr(ROOT, { splits: ['test'] })).map((r) => r.id)).toEqual([D, E]);
    expect((await rejected(loadVindr(ROOT, { splits: ['valid'] }))).message).toMatch(/no official 'valid' split/);
  });

  it('rejects a reader who labels an image twice, a repeated image without rad_id, and non-binary labels', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'cxf-vindr-'));
    try {
      await writeFile(path.join(dir, 'image_labels_train.csv'), 'image_id,rad_id,Cardiomegaly\na,R1,1\na,R2,0\na,R1,1\n');
      expect((await rejected(loadVindr(dir))).message).toMatch(/line 4 \(row 3\), column 'rad_id': reader 'R1' labels image 'a' twice \(first at line 2\)/);
      await writeFile(path.join(dir, 'image_labels_train.csv'), 'image_id,Cardiomegaly\na,1\na,0\n');
      expect((await rejected(loadVindr(dir))).message).toMatch(/line 3 \(row 2\), column 'image_id': image 'a' appears twice \(first at line 2\) in a file without a 'rad_id' column/);
      await writeFile(path.join(dir, 'image_labels_train.csv'), 'image_id,rad_id,Cardiomegaly\na,R1,-1\n');
      expect((await rejected(loadVindr(dir))).message).toMatch(/column 'Cardiomegaly': expected 0, 1 or blank, got '-1'/);
      await writeFile(path.join(dir, 'image_labels_train.csv'), 'id,rad_id,Cardiomegaly\na,R1,1\n');
      expect((await rejected(loadVindr(dir))).message).toMatch(/missing column 'image_id' .*the columns found are: 'id', 'rad_id', 'Cardiomegaly'/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
