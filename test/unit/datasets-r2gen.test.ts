/**
 * R2Gen annotation.json loader (src/datasets/r2gen.ts) on hand-written annotation files in R2Gen's layout
 * (cuhksz-nlp/R2Gen modules/datasets.py): MIMIC-CXR (one image per entry, subject_id patients) and IU X-ray (two
 * images per entry, CXR<n> patients). Report texts are generated here, not taken from either dataset.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { iuPatientId, loadR2GenAnnotation } from '../../src/datasets/r2gen.js';
import { loadReportRecords } from '../../src/rrg/data.js';
import { rejected } from './datasets-helpers.js';

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-r2gen-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** Writes a dataset folder: annotation.json and (empty) image files for `images`. */
async function dataset(name: string, annotation: unknown, images: string[]): Promise<string> {
  const dir = path.join(tmp, name);
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'annotation.json'), typeof annotation === 'string' ? annotation : JSON.stringify(annotation));
  for (const p of images) {
    const f = path.join(dir, 'images', p);
    await mkdir(path.dirname(f), { recursive: true });
    await writeFile(f, 'x');
  }
  return dir;
}

const mimicEntry = (id: string, subject: number, study: number, split: string, report: string) => ({
  id,
  study_id: study,
  subject_id: subject,
  report,
  image_path: [`p${String(subject).slice(0, 2)}/p${subject}/s${study}/${id}.jpg`],
  split,
});
const MIMIC = {
  train: [mimicEntry('d-1', 10000032, 50414267, 'train', 'The lungs are clear.'), mimicEntry('d-2', 10000032, 53189527, 'train', 'Mild cardiomegaly.')],
  val: [mimicEntry('d-3', 10000764, 57375967, 'val', 'No pneumothorax.')],
  test: [mimicEntry('d-4', 11000011, 58000001, 'test', 'Small left effusion.')],
};
const mimicImages = Object.values(MIMIC).flatMap((l) => l.map((e) => e.image_path[0]!));

const iuEntry = (id: string, split: string, report: string) => ({ id, report, image_path: [`${id}/0.png`, `${id}/1.png`], split });
const IU = {
  train: [iuEntry('CXR2384_IM-0942', 'train', 'The heart size is normal. The lungs are clear.'), iuEntry('CXR2384_IM-0943', 'train', 'No acute disease.')],
  val: [iuEntry('CXR10_IM-0002', 'val', 'Stable cardiomediastinal silhouette.')],
  test: [iuEntry('CXR7', 'test', 'No focal consolidation.')],
};
const iuImages = Object.values(IU).flatMap((l) => l.flatMap((e) => e.image_path));

describe('loadR2GenAnnotation, MIMIC-CXR', () => {
  it('reads train/val/test in file order; val → valid; patient = subject_id, study = study_id', async () => {
    const dir = await dataset('mimic', MIMIC, mimicImages);
    const { records, summary } = await loadR2GenAnnotation(dir, { dataset: 'mimic' });
    expect(records.map((r) => [r.id, r.split, r.patient, r.study, r.report])).toEqual([
      ['d-1', 'train', '10000032', '50414267', 'The lungs are clear.'],
      ['d-2', 'train', '10000032', '53189527', 'Mild cardiomegaly.'],
      ['d-3', 'valid', '10000764', '57375967', 'No pneumothorax.'],
      ['d-4', 'test', '11000011', '58000001', 'Small left effusion.'],
    ]);
    const img = path.join(dir, 'images', 'p10', 'p10000032', 's50414267', 'd-1.jpg');
    expect(records[0]!.image).toBe(img);
    expect(records[0]!.images).toEqual([img]);
    expect(summary).toEqual({
      file: path.join(dir, 'annotation.json'),
      imagesDir: path.join(dir, 'images'),
      entries: { train: 2, val: 1, test: 1 },
      images: 4,
      missingImages: 0,
      droppedEntries: 0,
    });
  });

  it('accepts string ids, an absent study_id and a separate images folder', async () => {
    const ann = { train: [{ id: 'd-9', subject_id: '10000032', report: 'Clear.', image_path: ['p10/p10000032/s5/d-9.jpg'] }], val: [], test: [] };
    const dir = await dataset('mimic-str', ann, []);
    const elsewhere = path.join(tmp, 'jpg-files');
    await mkdir(path.join(elsewhere, 'p10', 'p10000032', 's5'), { recursive: true });
    await writeFile(path.join(elsewhere, 'p10', 'p10000032', 's5', 'd-9.jpg'), 'x');
    const { records } = await loadR2GenAnnotation(dir, { dataset: 'mimic', imagesDir: elsewhere });
    expect(records).toEqual([
      {
        id: 'd-9',
        image: path.join(elsewhere, 'p10', 'p10000032', 's5', 'd-9.jpg'),
        images: [path.join(elsewhere, 'p10', 'p10000032', 's5', 'd-9.jpg')],
        report: 'Clear.',
        split: 'train',
        patient: '10000032',
      },
    ]);
  });

  it('goes through loadReportRecords as kind r2gen', async () => {
    const dir = await dataset('mimic-dispatch', MIMIC, mimicImages);
    const got = await loadReportRecords({ kind: 'r2gen', root: dir });
    expect(got.records.map((r) => r.id)).toEqual(['d-1', 'd-2', 'd-3', 'd-4']);
    expect(got.splits).toEqual({
      records: { train: 2, valid: 1, test: 1 },
      patients: { train: 1, valid: 1, test: 1 },
      total: { records: 4, patients: 3 },
      patientsInSeveralSplits: 0,
    });
  });
});

describe('loadR2GenAnnotation, IU X-ray', () => {
  it('keeps both images (frontal, lateral) and takes the patient from the id prefix', async () => {
    const dir = await dataset('iu', IU, iuImages);
    const { records, summary } = await loadR2GenAnnotation(dir, { dataset: 'iu-xray' });
    expect(records.map((r) => [r.id, r.split, r.patient, r.study])).toEqual([
      ['CXR2384_IM-0942', 'train', 'CXR2384', 'CXR2384'],
      ['CXR2384_IM-0943', 'train', 'CXR2384', 'CXR2384'],
      ['CXR10_IM-0002', 'valid', 'CXR10', 'CXR10'],
      ['CXR7', 'test', 'CXR7', 'CXR7'],
    ]);
    expect(records[0]!.images).toEqual([path.join(dir, 'images', 'CXR2384_IM-0942', '0.png'), path.join(dir, 'images', 'CXR2384_IM-0942', '1.png')]);
    expect(records[0]!.image).toBe(records[0]!.images[0]);
    expect(summary.images).toBe(8);
  });

  it('iuPatientId takes the part before the first underscore', () => {
    expect(iuPatientId('CXR2384_IM-0942')).toBe('CXR2384');
    expect(iuPatientId('CXR1_1_IM-0001-1001')).toBe('CXR1');
    expect(iuPatientId('CXR7')).toBe('CXR7');
    expect(iuPatientId('_x')).toBe('_x');
  });

  it('requires two images per entry', async () => {
    const ann = { train: [{ id: 'CXR1_IM-0001', report: 'Clear.', image_path: ['CXR1_IM-0001/0.png'] }], val: [], test: [] };
    const dir = await dataset('iu-one', ann, ['CXR1_IM-0001/0.png']);
    const e = await rejected(loadR2GenAnnotation(dir, { dataset: 'iu-xray' }));
    expect(e.message).toBe(`${path.join(dir, 'annotation.json')}: train[0].image_path: expected an array of at least 2 image paths (frontal, lateral), found an array of 1`);
    // The same entry is fine as MIMIC-CXR style... but needs a subject_id there.
    const m = await rejected(loadR2GenAnnotation(dir, { dataset: 'mimic' }));
    expect(m.message).toBe(`${path.join(dir, 'annotation.json')}: train[0].subject_id: expected an integer subject id (the MIMIC-CXR patient), found nothing (the key is missing)`);
  });
});

describe('loadR2GenAnnotation errors', () => {
  const file = (dir: string) => path.join(dir, 'annotation.json');

  it('names the key, what was expected and what was found', async () => {
    const cases: [unknown, string][] = [
      [[], "expected an object with 'train', 'val' and 'test' arrays, found an array of 0"],
      [{ train: [], test: [] }, "val: expected an array of entries (R2Gen's annotation.json has 'train', 'val' and 'test'), found nothing (the key is missing)"],
      [{ train: {}, val: [], test: [] }, "train: expected an array of entries (R2Gen's annotation.json has 'train', 'val' and 'test'), found an object"],
      [{ train: [5], val: [], test: [] }, 'train[0]: expected an entry object, found number 5'],
      [{ train: [], val: [{ report: 'x', image_path: ['a'] }], test: [] }, 'val[0].id: expected a non-empty string, found nothing (the key is missing)'],
      [{ train: [], val: [], test: [{ id: 'a', report: 7, image_path: ['a'] }] }, 'test[0].report: expected a string, found number 7'],
      [{ train: [], val: [], test: [{ id: 'a', report: ' ', image_path: ['a'] }] }, "test[0].report: expected the report text, found an empty string (id 'a')"],
      [{ train: [{ id: 'a', report: 'x', image_path: 'a.png' }], val: [], test: [] }, 'train[0].image_path: expected an array of at least 2 image paths (frontal, lateral), found string "a.png"'],
      [{ train: [{ id: 'a', report: 'x', image_path: ['a.png', null] }], val: [], test: [] }, 'train[0].image_path[1]: expected a relative image path, found null'],
      [{ train: [], val: [{ id: 'a', report: 'x', image_path: ['a', 'b'], split: 'train' }], test: [] }, "val[0].split: expected 'val' (the list the entry is in), found string \"train\""],
      [
        { train: [{ id: 'a', report: 'x', image_path: ['a', 'b'] }], val: [], test: [{ id: 'a', report: 'y', image_path: ['a', 'b'] }] },
        "test[0].id: id 'a' appears twice (first at train[0])",
      ],
    ];
    for (const [k, [ann, msg]] of cases.entries()) {
      const dir = await dataset(`bad-${k}`, ann, []);
      expect((await rejected(loadR2GenAnnotation(dir, { dataset: 'iu-xray', checkFiles: false }))).message).toBe(`${file(dir)}: ${msg}`);
    }
    const badStudy = await dataset('bad-study', { train: [{ ...mimicEntry('d', 10000032, 1, 'train', 'x'), study_id: 's1' }], val: [], test: [] }, []);
    expect((await rejected(loadR2GenAnnotation(badStudy, { dataset: 'mimic' }))).message).toBe(`${file(badStudy)}: train[0].study_id: expected an integer study id, found string "s1"`);
  });

  it('reports invalid JSON and a missing file', async () => {
    const dir = await dataset('not-json', '{"train": [', []);
    expect((await rejected(loadR2GenAnnotation(dir, { dataset: 'mimic' }))).message).toMatch(new RegExp(`^${file(dir).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: not valid JSON \\(`));
    const none = path.join(tmp, 'none');
    expect((await rejected(loadR2GenAnnotation(none, { dataset: 'mimic' }))).message).toBe(`${file(none)}: annotation file not found`);
  });

  it('counts missing images and lists the first five, or drops their entries', async () => {
    const many = { train: Array.from({ length: 7 }, (_, k) => iuEntry(`CXR${k + 1}_IM-0001`, 'train', 'Clear.')), val: [], test: [] };
    // Only the first entry's two images exist: 12 of 14 are missing.
    const dir = await dataset('missing', many, ['CXR1_IM-0001/0.png', 'CXR1_IM-0001/1.png']);
    const e = await rejected(loadR2GenAnnotation(dir, { dataset: 'iu-xray' }));
    const first = ['CXR2_IM-0001/0.png', 'CXR2_IM-0001/1.png', 'CXR3_IM-0001/0.png', 'CXR3_IM-0001/1.png', 'CXR4_IM-0001/0.png'].map((p) => path.join(dir, 'images', p));
    expect(e.message).toBe(
      `${file(dir)}: 12 of 14 image file(s) named by image_path do not exist under ${path.join(dir, 'images')} (first: ${first.join(', ')}, …); ` +
        "check the images folder (imagesDir), or pass checkFiles: 'drop' to skip those entries",
    );
    const dropped = await loadR2GenAnnotation(dir, { dataset: 'iu-xray', checkFiles: 'drop' });
    expect(dropped.records.map((r) => r.id)).toEqual(['CXR1_IM-0001']);
    expect(dropped.summary).toMatchObject({ images: 14, missingImages: 12, droppedEntries: 6 });
    expect((await loadR2GenAnnotation(dir, { dataset: 'iu-xray', checkFiles: false })).records).toHaveLength(7);
  });
});
