import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DataError } from '../../src/data/errors.js';
import { rleDecode } from '../../src/data/rle.js';
import { loadChexmask } from '../../src/datasets/chexmask.js';
import { loadChexpert } from '../../src/datasets/chexpert.js';
import { loadMimic } from '../../src/datasets/mimic.js';
import { loadNih } from '../../src/datasets/nih.js';
import type { CxrRecord } from '../../src/datasets/types.js';
import { rejected } from './datasets-helpers.js';

const FIX = fileURLToPath(new URL('../fixtures/datasets', import.meta.url));
const MASKS = path.join(FIX, 'chexmask');
const D1 = '02aa804e-bde0afdd-112c0b34-7bc16630-4e384014';
const D2 = '174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962';
const D4 = 'e084de3b-be89b11e-20fe3f9f-9c8d8dfe-4cfd202c';

const ones = (m: Uint8Array): number => m.reduce((a, b) => a + b, 0);

let mimic: CxrRecord[];
let tmp: string;
beforeAll(async () => {
  mimic = await loadMimic(path.join(FIX, 'mimic'));
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-chexmask-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('loadChexmask', () => {
  it('inner-joins MIMIC records on dicom_id and drops rows with a missing structure', async () => {
    const rs = await loadChexmask(MASKS, { source: 'mimic', records: mimic });
    // table rows: D1 (complete), D3 (Right Lung blank → dropped), an unknown dicom_id (skipped), D4, D2
    expect(rs.map((r) => r.id)).toEqual([D1, D2, D4]); // in the records' order
    expect(rs[0]?.split).toBe('train');
    expect(rs[0]?.labels['No Finding']).toBe(1);
    expect(mimic.every((r) => r.masks === undefined)).toBe(true); // records are copied, not modified
  });

  it('keeps Height/Width and RLE strings that decode to the hand-counted masks', async () => {
    const rs = await loadChexmask(MASKS, { source: 'mimic', records: mimic });
    const m1 = rs[0]?.masks;
    expect(m1?.height).toBe(4);
    expect(m1?.width).toBe(5);
    expect(Object.keys(m1?.rle ?? {})).toEqual(['Left Lung', 'Right Lung', 'Heart']);
    const ll = rleDecode(m1?.rle['Left Lung'] ?? '', 4, 5);
    expect(ll.length).toBe(20);
    expect([...ll]).toEqual([0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // '2 3': pixels 2..4 (1-based)
    expect(ones(rleDecode(m1?.rle['Right Lung'] ?? '', 4, 5))).toBe(4); // '7 2 12 2'
    expect(ones(rleDecode(m1?.rle.Heart ?? '', 4, 5))).toBe(2); // '18 2'
    const m2 = rs[1]?.masks;
    expect([m2?.height, m2?.width]).toEqual([3, 3]);
    expect(['Left Lung', 'Right Lung', 'Heart'].map((k) => ones(rleDecode(m2?.rle[k] ?? '', 3, 3)))).toEqual([2, 2, 3]);
  });

  it('filters by Dice RCA (Mean), and reads a gzip-compressed table the same way', async () => {
    const good = await loadChexmask(MASKS, { source: 'mimic', records: mimic, minDiceRca: 0.7 });
    expect(good.map((r) => r.id)).toEqual([D1, D2]); // D4 has 0.65
    await mkdir(path.join(tmp, 'gz', 'OriginalResolution'), { recursive: true });
    await writeFile(path.join(tmp, 'gz', 'OriginalResolution', 'MIMIC-CXR-JPG.csv.gz'), gzipSync(await readFile(path.join(MASKS, 'OriginalResolution', 'MIMIC-CXR-JPG.csv'))));
    const gz = await loadChexmask(path.join(tmp, 'gz'), { source: 'mimic', records: mimic });
    expect(gz).toEqual(await loadChexmask(MASKS, { source: 'mimic', records: mimic }));
  });

  it('joins CheXpert records on Path without the dataset folder, and NIH on Image Index', async () => {
    const chexpert = await loadChexpert(path.join(FIX, 'chexpert'));
    const cm = await loadChexmask(MASKS, { source: 'chexpert', records: chexpert });
    expect(cm.map((r) => r.id)).toEqual(['train/patient00001/study1/view1_frontal.jpg', 'test/patient64741/study1/view1_frontal.jpg']);
    expect(cm.map((r) => ones(rleDecode(r.masks?.rle.Heart ?? '', r.masks?.height ?? 0, r.masks?.width ?? 0)))).toEqual([2, 1]);
    const nih = await loadNih(path.join(FIX, 'nih'));
    const nm = await loadChexmask(MASKS, { source: 'nih', records: nih });
    // 00000004_000.png has a blank Right Lung: dropped
    expect(nm.map((r) => r.id)).toEqual(['00000001_000.png']);
    expect(nm[0]?.masks?.rle['Left Lung']).toBe('1 3');
  });

  it('names the missing table, a missing column and a bad Height', async () => {
    const e = await rejected(loadChexmask(tmp, { source: 'vindr', records: [] }));
    expect(e.message).toMatch(/CheXmask table for vindr not found under .* \(looked for 'OriginalResolution\/VinDr-CXR.csv', 'OriginalResolution\/VinDr-CXR.csv.gz', 'VinDr-CXR.csv', 'VinDr-CXR.csv.gz'\)/);
    const dir = path.join(tmp, 'bad');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'MIMIC-CXR-JPG.csv'), `dicom_id,Left Lung,Right Lung,Heart,Height\n${D1},1 1,2 1,3 1,4\n`);
    const m = await rejected(loadChexmask(dir, { source: 'mimic', records: mimic }));
    expect(m.message).toMatch(/missing column 'Width' \(expected in CheXmask's MIMIC-CXR-JPG.csv\); the columns found are: 'dicom_id', 'Left Lung', 'Right Lung', 'Heart', 'Height'/);
    await writeFile(path.join(dir, 'MIMIC-CXR-JPG.csv'), `dicom_id,Left Lung,Right Lung,Heart,Height,Width\n${D1},1 1,2 1,3 1,4.5,5\n`);
    const h = await rejected(loadChexmask(dir, { source: 'mimic', records: mimic }));
    expect(h.message).toMatch(/line 2 \(row 1\), column 'Height': expected a positive integer, got '4.5'/);
  });
});
