import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DataError } from '../../src/data/errors.js';
import { loadMimic } from '../../src/datasets/mimic.js';
import { labelTargets } from '../../src/datasets/policy.js';
import { filterViews } from '../../src/datasets/select.js';
import type { CxrRecord } from '../../src/datasets/types.js';
import { rejected, byId } from './datasets-helpers.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/datasets/mimic', import.meta.url));
const FILES = ['mimic-cxr-2.0.0-metadata.csv', 'mimic-cxr-2.0.0-chexpert.csv', 'mimic-cxr-2.0.0-split.csv'];

const D1 = '02aa804e-bde0afdd-112c0b34-7bc16630-4e384014';
const D2 = '174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962';
const D3 = '2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab';
const D4 = 'e084de3b-be89b11e-20fe3f9f-9c8d8dfe-4cfd202c';
const D5 = '68b5c4b1-227d0485-9cc38c3f-7b84ab51-4b472714';
const D6 = '096052b7-d256dc40-453a102b-fa7d01c6-1b22c6b4';
const D7 = 'a917c883-720a5bbf-02c84fc6-98ad00ac-c562ff80';

let gzRoot: string;
beforeAll(async () => {
  // The official distribution: the three tables gzip-compressed under their .csv.gz names.
  gzRoot = await mkdtemp(path.join(tmpdir(), 'cxf-mimic-'));
  for (const f of FILES) await writeFile(path.join(gzRoot, `${f}.gz`), gzipSync(await readFile(path.join(FIXTURE, f))));
});
afterAll(async () => {
  await rm(gzRoot, { recursive: true, force: true });
});

describe('loadMimic', () => {
  it('joins metadata, chexpert labels and split from the official .csv.gz files', async () => {
    const rs = await loadMimic(gzRoot);
    expect(rs.map((r) => r.id)).toEqual([D1, D2, D3, D4, D5, D6, D7]);
    expect(rs.filter((r) => r.split === 'train').map((r) => r.id)).toEqual([D1, D2, D3]);
    expect(rs.filter((r) => r.split === 'valid').map((r) => r.id)).toEqual([D4, D5]); // 'validate' in the file
    expect(rs.filter((r) => r.split === 'test').map((r) => r.id)).toEqual([D7]);
    expect(byId(rs, D6).split).toBeUndefined(); // not in the split file
    expect(new Set(rs.map((r) => r.patient))).toEqual(new Set(['10000032', '10000764', '10000898', '11000011']));
  });

  it('reads the uncompressed .csv copies the same way', async () => {
    const a = await loadMimic(gzRoot);
    const b = await loadMimic(FIXTURE);
    expect(b.map(({ path: _p, ...r }) => r)).toEqual(a.map(({ path: _p, ...r }) => r));
  });

  it('builds files/p{subject[:2]}/p{subject}/s{study}/{dicom_id}.jpg', async () => {
    const rs = await loadMimic(gzRoot);
    const r = byId(rs, D1);
    expect(r.path).toBe(path.join(gzRoot, 'files', 'p10', 'p10000032', 's50414267', `${D1}.jpg`));
    expect([r.patient, r.study]).toEqual(['10000032', '50414267']);
    expect(byId(rs, D7).path).toBe(path.join(gzRoot, 'files', 'p11', 'p11000011', 's58000001', `${D7}.jpg`));
  });

  it('takes ViewPosition as the view', async () => {
    const rs = await loadMimic(gzRoot);
    expect(rs.map((r) => r.view)).toEqual(['PA', 'LATERAL', 'AP', 'AP', 'LL', 'PA', undefined]);
    expect(filterViews(rs, ['PA', 'AP']).map((r) => r.id)).toEqual([D1, D3, D4, D6]);
  });

  it("gives every image of a study that study's labels, by column name, and all-null labels to unlabelled studies", async () => {
    const rs = await loadMimic(gzRoot);
    expect(byId(rs, D1).labels['No Finding']).toBe(1);
    expect(byId(rs, D2).labels).toEqual(byId(rs, D1).labels);
    const d3 = byId(rs, D3).labels;
    expect([d3.Atelectasis, d3.Edema, d3['Pleural Effusion'], d3.Cardiomegaly]).toEqual([-1, 1, 0, null]);
    const d4 = byId(rs, D4).labels;
    expect([d4.Consolidation, d4.Pneumonia]).toEqual([-1, -1]);
    expect(Object.values(byId(rs, D6).labels).every((v) => v === null)).toBe(true);
    expect(Object.keys(byId(rs, D6).labels)).toHaveLength(14);
    const t = labelTargets([byId(rs, D7)], ['Atelectasis', 'Pleural Effusion', 'Pneumothorax', 'Edema'], { uncertain: 'ones', blank: 'ignore' });
    expect([...t.targets]).toEqual([1, 1, 0, 0]);
    expect([...t.mask]).toEqual([1, 1, 1, 0]);
  });

  it('filters official splits', async () => {
    const rs = await loadMimic(gzRoot, { splits: ['valid', 'test'] });
    expect(rs.map((r) => r.id)).toEqual([D4, D5, D7]);
  });

  it('rejects an unknown split value and a missing column, naming file, line and column', async () => {
    const bad = await mkdtemp(path.join(tmpdir(), 'cxf-mimic-bad-'));
    try {
      for (const f of FILES) await writeFile(path.join(bad, f), await readFile(path.join(FIXTURE, f)));
      const split = (await readFile(path.join(FIXTURE, FILES[2] as string), 'utf8')).replace('validate', 'holdout');
      await writeFile(path.join(bad, FILES[2] as string), split);
      const e = await rejected(loadMimic(bad));
      expect(e.message).toBe(`${path.join(bad, FILES[2] as string)}: line 5 (row 4), column 'split': unknown split 'holdout' (expected train, validate or test)`);

      await writeFile(path.join(bad, FILES[2] as string), await readFile(path.join(FIXTURE, FILES[2] as string)));
      const meta = (await readFile(path.join(FIXTURE, FILES[0] as string), 'utf8')).replace('ViewPosition', 'View');
      await writeFile(path.join(bad, FILES[0] as string), meta);
      const m = await rejected(loadMimic(bad));
      expect(m.message).toMatch(/missing column 'ViewPosition' \(expected in MIMIC-CXR-JPG's mimic-cxr-2.0.0-metadata.csv\); the columns found are: 'dicom_id', 'subject_id', 'study_id', 'PerformedProcedureStepDescription', 'View', 'Rows'/);
      expect(m.line).toBe(1);
    } finally {
      await rm(bad, { recursive: true, force: true });
    }
  });

  it('requires the metadata file', async () => {
    const empty = await mkdtemp(path.join(tmpdir(), 'cxf-mimic-empty-'));
    try {
      const e = await rejected(loadMimic(empty));
      expect(e.message).toMatch(/MIMIC-CXR-JPG metadata not found under .* \(looked for 'mimic-cxr-2.0.0-metadata.csv.gz', 'mimic-cxr-2.0.0-metadata.csv'\)/);
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });
});
