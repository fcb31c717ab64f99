import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { DataError } from '../../src/data/errors.js';
import { CHEXPERT_5, NIH_8, RSNA_1, VINDR_7, loadDataset, type DatasetSpec } from '../../src/datasets/index.js';
import { rejected } from './datasets-helpers.js';

const FIX = fileURLToPath(new URL('../fixtures/datasets', import.meta.url));

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-load-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('loadDataset', () => {
  it("reproduces CXformer's CheXpert training set: PA+AP, train split, CHEXPERT_5, U-Ones with the blank quirk", async () => {
    const ds = await loadDataset({
      name: 'chexpert',
      root: path.join(FIX, 'chexpert'),
      views: ['PA', 'AP'],
      split: 'train',
      classes: [...CHEXPERT_5],
      policy: { blank: 'uncertain' },
    });
    // train frontal rows: patient00001 (NF), 00002/study2 (all -1), 00002/study1 (Cons -1), 00003 (Edema 1), 00004 (NF), 00005 (NF, Card -1, Atel 1)
    expect(ds.records.map((r) => r.patient)).toEqual(['patient00001', 'patient00002', 'patient00002', 'patient00003', 'patient00004', 'patient00005']);
    expect(ds.policy).toEqual({ uncertain: 'ones', blank: 'uncertain', noFindingRule: true, absent: 'ignore' });
    expect(ds.classes).toEqual(['Atelectasis', 'Cardiomegaly', 'Consolidation', 'Edema', 'Pleural Effusion']);
    expect([...(ds.targets ?? [])]).toEqual([
      ...[0, 0, 0, 0, 0],
      ...[1, 1, 1, 1, 1],
      ...[1, 1, 1, 1, 1], // Consolidation -1 and four blanks: all 1 under the quirk
      ...[1, 1, 1, 1, 1],
      ...[0, 0, 0, 0, 0],
      ...[0, 0, 0, 0, 0],
    ]);
    expect(ds.mask?.every((m) => m === 1)).toBe(true);
    const plain = await loadDataset({ name: 'chexpert', root: path.join(FIX, 'chexpert'), views: ['PA', 'AP'], split: 'train', classes: [...CHEXPERT_5] });
    expect([...(plain.targets ?? [])].slice(10, 20)).toEqual([0, 0, 1, 0, 0, 0, 0, 0, 1, 0]);
  });

  it('keeps one image per patient and assigns patient-level splits where the source has none', async () => {
    const spec: DatasetSpec = { name: 'padchest', root: path.join(FIX, 'padchest'), onePerPatient: true, seed: 2 };
    const one = await loadDataset(spec);
    expect(one.records).toHaveLength(4);
    expect(new Set(one.records.map((r) => r.patient)).size).toBe(4);
    const split = await loadDataset({ name: 'padchest', root: path.join(FIX, 'padchest'), splitFractions: { train: 0.5, test: 0.5 }, seed: 1 });
    const byPatient = new Map<string, Set<string | undefined>>();
    for (const r of split.records) byPatient.set(r.patient, (byPatient.get(r.patient) ?? new Set()).add(r.split));
    expect([...byPatient.values()].every((s) => s.size === 1 && !s.has(undefined))).toBe(true);
    expect([...byPatient.values()].filter((s) => s.has('train'))).toHaveLength(2);
  });

  it("carves NIH's validation split out of train_val by patient, leaving the official test split", async () => {
    const ds = await loadDataset({ name: 'nih', root: path.join(FIX, 'nih'), classes: [...NIH_8], relabel: false, seed: 0 });
    expect(ds.targets?.length).toBe(8 * 8);
    const train = await loadDataset({ name: 'nih', root: path.join(FIX, 'nih'), split: 'train' });
    expect(train.records).toHaveLength(6);
    const tv = await loadDataset({ name: 'nih', root: path.join(FIX, 'nih'), splits: ['train'], splitFractions: { train: 3, valid: 1 }, resplit: true, seed: 5 });
    // 4 train_val patients (1, 2, 5, 6): 3 train, 1 valid
    const valid = tv.records.filter((r) => r.split === 'valid');
    expect(new Set(valid.map((r) => r.patient)).size).toBe(1);
    expect(new Set(tv.records.filter((r) => r.split === 'train').map((r) => r.patient)).size).toBe(3);
  });

  it('relabels across datasets onto one class list (PadChest zeros explicit, unmappable classes masked)', async () => {
    const classes = ['Pleural Effusion', 'Cardiomegaly', 'Lung Opacity'];
    const pc = await loadDataset({ name: 'padchest', root: path.join(FIX, 'padchest'), views: ['PA'], classes });
    expect(pc.records).toHaveLength(2);
    expect([...(pc.targets ?? [])]).toEqual([0, 0, 0, 1, 1, 0]);
    expect([...(pc.mask ?? [])]).toEqual([1, 1, 0, 1, 1, 0]);
    const vd = await loadDataset({ name: 'vindr', root: path.join(FIX, 'vindr'), split: 'test', classes: [...VINDR_7], relabel: false });
    expect([...(vd.targets ?? [])]).toEqual([1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('refuses a view filter on RSNA without view information, and applies it with viewsCsv', async () => {
    const e = await rejected(loadDataset({ name: 'rsna', root: path.join(FIX, 'rsna'), views: ['PA', 'AP'] }));
    expect(e.message).toMatch(/dataset 'rsna' records no views \(RSNA views are in the DICOM headers: pass viewsCsv\)/);
    const ds = await loadDataset({ name: 'rsna', root: path.join(FIX, 'rsna'), splits: ['train'], views: ['PA'], viewsCsv: 'dicom_headers.csv', classes: [...RSNA_1] });
    expect([...(ds.targets ?? [])]).toEqual([0, 0, 1]);
  });

  it('joins CheXmask masks to a source dataset', async () => {
    const ds = await loadDataset({ name: 'chexmask', root: path.join(FIX, 'chexmask'), source: 'mimic', sourceRoot: path.join(FIX, 'mimic'), split: 'train', minDiceRca: 0.7 });
    expect(ds.records.map((r) => r.id)).toEqual(['02aa804e-bde0afdd-112c0b34-7bc16630-4e384014', '174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962']);
    expect(ds.records.every((r) => r.masks !== undefined && r.dataset === 'mimic')).toBe(true);
    expect(ds.policy.noFindingRule).toBe(true); // MIMIC's policy
  });

  it('wraps folders and CSV manifests (loadImageDataset) as records', async () => {
    const dir = path.join(tmp, 'folder');
    await mkdir(path.join(dir, 'a'), { recursive: true });
    await writeFile(path.join(dir, 'a', 'x.png'), 'x');
    await writeFile(path.join(dir, 'y.jpg'), 'y');
    const f = await loadDataset({ name: 'folder', root: dir });
    expect(f.records.map((r) => [r.id, r.dataset, r.patient])).toEqual([
      ['a/x.png', 'folder', 'a/x.png'],
      ['y.jpg', 'folder', 'y.jpg'],
    ]);
    await writeFile(path.join(dir, 'labels.csv'), 'Path,Patient,View,Split,Edema\na/x.png,P1,PA,train,1\ny.jpg,P1,lateral,val,-1\n');
    const c = await loadDataset({
      name: 'csv',
      root: dir,
      manifest: 'labels.csv',
      patientColumn: 'Patient',
      viewColumn: 'View',
      splitColumn: 'Split',
      labelColumns: ['Edema'],
      classes: ['Edema'],
      policy: { uncertain: 'ones' },
    });
    expect(c.records.map((r) => [r.patient, r.view, r.split, r.labels.Edema])).toEqual([
      ['P1', 'PA', 'train', 1],
      ['P1', 'LATERAL', 'valid', -1],
    ]);
    expect([...(c.targets ?? [])]).toEqual([1, 1]);
    const m = await rejected(loadDataset({ name: 'csv', root: dir, manifest: 'labels.csv', labelColumns: ['Fracture'] }));
    expect(m.message).toMatch(/missing column 'Fracture'; the columns found are: 'Path', 'Patient', 'View', 'Split', 'Edema'/);
  });

  it('rejects an unknown dataset name, a missing root and an unknown split', async () => {
    expect((await rejected(loadDataset({ name: 'openi', root: FIX } as never))).message).toMatch(/unknown dataset 'openi' \(expected chexpert, mimic, nih/);
    expect((await rejected(loadDataset({ name: 'nih', root: '' }))).message).toBe("dataset 'nih': root is missing");
    expect((await rejected(loadDataset({ name: 'nih', root: path.join(FIX, 'nih'), split: 'dev' as never }))).message).toMatch(/unknown split 'dev'/);
  });
});
