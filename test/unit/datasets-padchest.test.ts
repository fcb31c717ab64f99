import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DataError } from '../../src/data/errors.js';
import { loadPadchest, PADCHEST_MISSING_IMAGES, parsePythonStringList } from '../../src/datasets/padchest.js';
import { labelTargets, resolvePolicy } from '../../src/datasets/policy.js';
import { filterViews, relabel } from '../../src/datasets/select.js';
import type { CxrRecord } from '../../src/datasets/types.js';
import { rejected, byId } from './datasets-helpers.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/datasets/padchest', import.meta.url));
const CSV = 'PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv';
const R1 = '20536686640136348236148679891455886468_k6ga29.png';
const R2 = '135803415504923515076821959678074435083_fzis7b.png';
const R3 = '113855343774216031107737439268243531979_3k951l.png';
const R4 = '216840111366964013686042548532013208193054515_02-026-007.png';
const R5 = '216840111366964013962490064942014134093945580_01-178-104.png';
const R6 = '216840111366964012373310883942009152114636712_00-102-045.png'; // blank Labels
const R7 = '216840111366964012819207061112010307142602253_04-014-084.png'; // a known missing image
const R8 = '216840111366964012283393834152009027130040739_00-105-157.png';

let root: string;
beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'cxf-padchest-'));
  await writeFile(path.join(root, `${CSV}.gz`), gzipSync(await readFile(path.join(FIXTURE, CSV))));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('parsePythonStringList', () => {
  const at = { file: 'f.csv', line: 2, column: 'Labels' };
  it('parses both quote styles, escapes, spaces and empty lists', () => {
    expect(parsePythonStringList("['normal']", at)).toEqual(['normal']);
    expect(parsePythonStringList("['pleural effusion', 'cardiomegaly' ,'x']", at)).toEqual(['pleural effusion', 'cardiomegaly', 'x']);
    expect(parsePythonStringList(`["o'neil sign", 'a\\'b']`, at)).toEqual(["o'neil sign", "a'b"]);
    expect(parsePythonStringList('[]', at)).toEqual([]);
    expect(parsePythonStringList(" [ ''] ", at)).toEqual(['']);
  });
  it('rejects anything else, naming the location', () => {
    expect(() => parsePythonStringList('normal', at)).toThrow("f.csv: line 2, column 'Labels': expected a Python list of strings like ['a', 'b'], missing the brackets: \"normal\"");
    expect(() => parsePythonStringList('[normal]', at)).toThrow(/unexpected 'n'/);
    expect(() => parsePythonStringList("['a' 'b']", at)).toThrow(/a missing comma/);
    expect(() => parsePythonStringList("['a',, 'b']", at)).toThrow(/an empty item/);
    expect(() => parsePythonStringList("['a]", at)).toThrow(/an unterminated string/);
  });
});

describe('loadPadchest', () => {
  it('reads the .csv.gz, drops unlabelled rows and the known missing images', async () => {
    const rs = await loadPadchest(root);
    expect(rs.map((r) => r.id)).toEqual([R1, R2, R3, R4, R5, R8]);
    expect(PADCHEST_MISSING_IMAGES).toContain(R7);
    expect((await loadPadchest(root, { keepUnlabelled: true })).map((r) => r.id)).toEqual([R1, R2, R3, R4, R5, R6, R8]);
    expect((await loadPadchest(root, { exclude: [] })).map((r) => r.id)).toEqual([R1, R2, R3, R4, R5, R7, R8]);
    expect(byId(await loadPadchest(root, { keepUnlabelled: true }), R6).labels).toEqual({});
  });

  it('puts images under <ImageDir>/<ImageID>, or under imagesDir', async () => {
    const rs = await loadPadchest(root);
    expect(byId(rs, R1).path).toBe(path.join(root, '0', R1));
    expect(byId(rs, R5).path).toBe(path.join(root, '1', R5));
    expect(byId(await loadPadchest(root, { imagesDir: 'resized' }), R5).path).toBe(path.join(root, 'resized', R5));
  });

  it('normalises Projection: L → LATERAL, AP_horizontal → AP Supine, others kept', async () => {
    const rs = await loadPadchest(root);
    expect(rs.map((r) => r.view)).toEqual(['PA', 'PA', 'LATERAL', 'AP Supine', 'AP', 'COSTAL']);
    expect(filterViews(rs, ['PA', 'AP', 'AP Supine']).map((r) => r.id)).toEqual([R1, R2, R4, R5]);
    expect(filterViews(rs, ['PA', 'AP'])).toHaveLength(3);
  });

  it('reads patient, study, sex and age (study year − birth year)', async () => {
    const rs = await loadPadchest(root);
    const r2 = byId(rs, R2);
    expect([r2.patient, r2.study, r2.sex, r2.age]).toEqual(['313572750430997347502932654319389875966', '135803415504923515076821959678074435083', 'F', 71]);
    expect(byId(rs, R1).age).toBe(84);
    expect(rs.filter((r) => r.patient === '313572750430997347502932654319389875966').map((r) => r.id)).toEqual([R2, R3, R8]);
  });

  it('stores the listed labels, trimmed and lower-cased, as 1', async () => {
    const rs = await loadPadchest(root);
    expect(byId(rs, R1).labels).toEqual({ normal: 1 });
    expect(byId(rs, R2).labels).toEqual({ 'pleural effusion': 1, cardiomegaly: 1, 'laminar atelectasis': 1 });
    expect(byId(rs, R5).labels).toEqual({ 'chronic changes': 1, 'callus rib fracture': 1 });
  });

  it('treats unlisted labels as negatives under the PadChest default policy', async () => {
    const rs = await loadPadchest(root);
    const policy = resolvePolicy('padchest');
    expect(policy.absent).toBe('zero');
    const t = labelTargets([byId(rs, R1), byId(rs, R2), byId(rs, R3)], ['pleural effusion', 'cardiomegaly', 'laminar atelectasis'], policy);
    expect([...t.targets]).toEqual([0, 0, 0, 1, 1, 1, 1, 1, 0]);
    expect(t.mask.every((m) => m === 1)).toBe(true);
  });

  it('relabels onto common classes with explicit zeros, leaving unmappable classes absent', async () => {
    const rs = await loadPadchest(root);
    const classes = ['Pleural Effusion', 'Atelectasis', 'Fracture', 'Pneumonia', 'No Finding', 'Lung Opacity'];
    const out = relabel([byId(rs, R1), byId(rs, R2), byId(rs, R4), byId(rs, R5), byId(rs, R8)], classes);
    expect(out.map((r) => r.labels)).toEqual([
      { 'Pleural Effusion': 0, Atelectasis: 0, Fracture: 0, Pneumonia: 0, 'No Finding': 1 },
      { 'Pleural Effusion': 1, Atelectasis: 1, Fracture: 0, Pneumonia: 0, 'No Finding': 0 }, // laminar atelectasis
      { 'Pleural Effusion': 0, Atelectasis: 0, Fracture: 0, Pneumonia: 1, 'No Finding': 0 },
      { 'Pleural Effusion': 0, Atelectasis: 0, Fracture: 1, Pneumonia: 0, 'No Finding': 0 }, // callus rib fracture
      { 'Pleural Effusion': 0, Atelectasis: 0, Fracture: 1, Pneumonia: 0, 'No Finding': 0 }, // rib fracture
    ]);
    const t = labelTargets(out, classes, resolvePolicy('padchest', { absent: 'ignore' }));
    expect([...t.mask.slice(0, 6)]).toEqual([1, 1, 1, 1, 1, 0]); // Lung Opacity: not expressible in PadChest's mapping
  });

  it('names the location of a malformed Labels cell and of a missing column', async () => {
    const bad = await mkdtemp(path.join(tmpdir(), 'cxf-padchest-bad-'));
    try {
      const text = (await readFile(path.join(FIXTURE, CSV), 'utf8')).replace("['normal'],[]", 'normal,[]');
      await writeFile(path.join(bad, CSV), text);
      const e = await rejected(loadPadchest(bad));
      expect(e.message).toMatch(/line 2 \(row 1\), column 'Labels': expected a Python list of strings/);
      await writeFile(path.join(bad, CSV), 'ImageID,ImageDir,PatientID,Labels\nx.png,0,1,[]\n');
      const m = await rejected(loadPadchest(bad));
      expect(m.message).toMatch(/missing columns 'StudyID', 'Projection' \(expected in PadChest's .*\); the columns found are: 'ImageID', 'ImageDir', 'PatientID', 'Labels'/);
    } finally {
      await rm(bad, { recursive: true, force: true });
    }
  });
});
