/**
 * Report records (src/rrg/data.ts): the phantom loader on a real `cxformer synth` output and on the golden phantom
 * folder, checked against the generator's own in-memory images and an independent parse of the CSVs; the
 * patient-disjointness invariant; the error messages; the dispatcher and the split summary.
 */
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { parseCsv } from '../../src/data/csv.js';
import { synthDataset, type SynthResult } from '../../src/data/synth.js';
import { formatReportSplitSummary, loadPhantomReports, loadReportRecords, type ReportRecord, reportSplitSummary } from '../../src/rrg/data.js';
import { rejected } from './datasets-helpers.js';
import { goldenFile } from './golden.js';

let tmp: string;
let synth: SynthResult;
let synthDir: string;
beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-rrg-data-'));
  synthDir = path.join(tmp, 'synth');
  synth = await synthDataset({ out: synthDir, n: 100, seed: 11, size: 64 });
}, 120_000);
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A copy of the synth folder's two CSVs, edited by `edit`, in a fresh folder. */
async function edited(name: string, edit: { reports?: (t: string) => string; labels?: (t: string) => string }): Promise<string> {
  const dir = path.join(tmp, name);
  await mkdir(dir, { recursive: true });
  const r = await readFile(path.join(synthDir, 'reports.csv'), 'utf8');
  const l = await readFile(path.join(synthDir, 'labels.csv'), 'utf8');
  await writeFile(path.join(dir, 'reports.csv'), edit.reports ? edit.reports(r) : r);
  await writeFile(path.join(dir, 'labels.csv'), edit.labels ? edit.labels(l) : l);
  return dir;
}

describe('loadPhantomReports on a cxformer synth folder (64 px, 100 images)', () => {
  it("gives one record per generated image, with the generator's report, patient, split and label cells", async () => {
    const rs = await loadPhantomReports(synthDir, { checkFiles: true });
    expect(rs).toHaveLength(100);
    rs.forEach((r, k) => {
      const im = synth.images[k]!;
      expect(r.id).toBe(im.path); // 'images/P00001_01.png'
      expect(r.image).toBe(path.join(synthDir, 'images', `${im.id}.png`));
      expect(r.report).toBe(im.report);
      expect(r.patient).toBe(im.patient);
      expect(r.split).toBe(im.split);
      expect(r.view).toBe('PA');
      expect(r.study).toBeUndefined();
      const cell = (c: string) => (c === '' ? null : Number(c) === 0 ? 0 : Number(c));
      expect(r.labels).toEqual(Object.fromEntries(Object.entries(im.cells).map(([k2, v]) => [k2, cell(v)])));
    });
  });

  it('has no patient in two splits, and its summary matches dataset.json', async () => {
    const rs = await loadPhantomReports(synthDir);
    const splitsOf = new Map<string, Set<string>>();
    for (const r of rs) splitsOf.set(r.patient, (splitsOf.get(r.patient) ?? new Set()).add(r.split));
    expect([...splitsOf.values()].every((s) => s.size === 1)).toBe(true);
    const s = reportSplitSummary(rs);
    expect(s.records).toEqual(synth.info.splits.images);
    expect(s.patients).toEqual(synth.info.splits.patients);
    expect(s.total).toEqual({ records: 100, patients: synth.info.patients });
    expect(s.patientsInSeveralSplits).toBe(0);
  });

  it('fails when an image file is missing and checkFiles is on', async () => {
    const dir = await edited('no-images', {});
    const e = await rejected(loadPhantomReports(dir, { checkFiles: true }));
    expect(e.message).toContain(`${path.join(dir, 'reports.csv')}: 100 of 100 image file(s) do not exist (first: ${path.join(dir, 'images', 'P00001_01.png')}`);
    expect((await loadPhantomReports(dir)).length).toBe(100); // off by default
  });
});

describe('loadPhantomReports on the golden phantom folder (300 images, seed 5)', () => {
  it('reads every row; ids, patients, splits and reports equal an independent parse of the CSVs', async () => {
    const dir = path.dirname(goldenFile('text/phantom/reports.csv'));
    const rs = await loadPhantomReports(dir);
    const rep = parseCsv(await readFile(path.join(dir, 'reports.csv'), 'utf8'));
    const lab = parseCsv(await readFile(path.join(dir, 'labels.csv'), 'utf8'));
    expect(rs).toHaveLength(300);
    expect(rs.map((r) => [r.id, r.report])).toEqual(rep.rows.map((row) => [row[0], row[1]]));
    const li = (n: string) => lab.header.indexOf(n);
    const byPath = new Map(lab.rows.map((row) => [row[0], row]));
    for (const r of rs) {
      const row = byPath.get(r.id)!;
      expect([r.patient, r.split]).toEqual([row[li('Patient')], row[li('Split')]]);
    }
    const s = reportSplitSummary(rs);
    expect(s.records).toEqual({ train: 239, valid: 29, test: 32 }); // `cut -d, -f12 labels.csv | sort | uniq -c`
    expect(s.patientsInSeveralSplits).toBe(0);
  });
});

describe('loadPhantomReports errors', () => {
  it('names the patient, both splits and both lines when a patient is in two splits', async () => {
    // P00001 has several images (seed 11); move its second image's row to another split.
    const two = synth.images.filter((im) => im.patient === 'P00001');
    expect(two.length).toBeGreaterThan(1);
    const other = two[0]!.split === 'train' ? 'test' : 'train';
    const dir = await edited('two-splits', {
      labels: (t) => t.replace(new RegExp(`^(${two[1]!.path},.*,P00001,)${two[1]!.split}$`, 'm'), `$1${other}`),
    });
    const e = await rejected(loadPhantomReports(dir));
    expect(e.message).toBe(
      `${path.join(dir, 'labels.csv')}: line 3 (row 2), column 'Split': patient 'P00001' is in split '${other}' here and in '${two[0]!.split}' at line 2; ` +
        'splits must be per patient (cxformer synth assigns them so: was the file edited?)',
    );
  });

  it('names the id of a report without a labels row, and of a labels row without a report', async () => {
    const first = synth.images[0]!.path;
    const dirA = await edited('no-label-row', { labels: (t) => t.replace(new RegExp(`^${first},.*\\n`, 'm'), '') });
    const a = await rejected(loadPhantomReports(dirA));
    expect(a.message).toBe(
      `${path.join(dirA, 'reports.csv')}: line 2 (row 1), column 'Path': report '${first}' has no row in ${path.join(dirA, 'labels.csv')} (expected a labels row with the same Path)`,
    );
    const last = synth.images[99]!.path;
    const dirB = await edited('no-report-row', { reports: (t) => t.replace(new RegExp(`^${last},.*\\n`, 'm'), '') });
    const b = await rejected(loadPhantomReports(dirB));
    expect(b.message).toBe(`${path.join(dirB, 'labels.csv')}: line 101, column 'Path': image '${last}' has no report in ${path.join(dirB, 'reports.csv')} (expected a reports row with the same Path)`);
  });

  it('names file, row and column for a bad split, label cell, empty report and missing column', async () => {
    const id = synth.images[2]!.path;
    const badSplit = await edited('bad-split', { labels: (t) => t.replace(new RegExp(`^(${id},.*,)(train|valid|test)$`, 'm'), '$1validate') });
    expect((await rejected(loadPhantomReports(badSplit))).message).toBe(
      `${path.join(badSplit, 'labels.csv')}: line 4 (row 3), column 'Split': expected a split train, valid or test, found 'validate'`,
    );
    const badCell = await edited('bad-cell', { labels: (t) => t.replace(new RegExp(`^(${id},[^,]*,[^,]*,Frontal,PA,)[^,]*,`, 'm'), '$1yes,') });
    expect((await rejected(loadPhantomReports(badCell))).message).toBe(
      `${path.join(badCell, 'labels.csv')}: line 4 (row 3), column 'No Finding': expected a label 1, 0, -1 or blank, got 'yes'`,
    );
    const empty = await edited('empty-report', { reports: (t) => t.replace(new RegExp(`^(${id}),.*$`, 'm'), '$1,') });
    expect((await rejected(loadPhantomReports(empty))).message).toBe(
      `${path.join(empty, 'reports.csv')}: line 4 (row 3), column 'Findings': empty report for '${id}' (expected the findings text)`,
    );
    const noCol = await edited('no-split-col', { labels: (t) => t.replace(',Patient,Split\n', ',Patient,Fold\n') });
    expect((await rejected(loadPhantomReports(noCol))).message).toMatch(
      new RegExp(`^${path.join(noCol, 'labels.csv').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: line 1: missing column 'Split' \\(expected in a cxformer synth labels.csv\\); the columns found are: 'Path', `),
    );
    const dup = await edited('dup', { reports: (t) => `${t}${id},Heart normal.\n` });
    expect((await rejected(loadPhantomReports(dup))).message).toBe(`${path.join(dup, 'reports.csv')}: line 102 (row 101), column 'Path': Path '${id}' appears twice (first at line 4)`);
    await expect(loadPhantomReports(path.join(tmp, 'nowhere'))).rejects.toThrow(`${path.join(tmp, 'nowhere', 'reports.csv')}: file not found`);
    const headerOnly = await edited('header-only', { reports: (t) => t.split('\n')[0]! + '\n', labels: (t) => t.split('\n')[0]! + '\n' });
    expect((await rejected(loadPhantomReports(headerOnly))).message).toBe(`${path.join(headerOnly, 'reports.csv')}: no reports (the file has a header only)`);
  });
});

describe('loadReportRecords', () => {
  it('dispatches phantom to loadPhantomReports and summarises the splits', async () => {
    const got = await loadReportRecords({ kind: 'phantom', root: synthDir });
    expect(got.kind).toBe('phantom');
    expect(got.records).toEqual(await loadPhantomReports(synthDir));
    expect(got.splits).toEqual(reportSplitSummary(got.records));
  });

  it('dispatches iu-xray to the R2Gen loader (two images per entry)', async () => {
    const dir = path.join(tmp, 'iu');
    await mkdir(path.join(dir, 'images', 'CXR1_IM-0001'), { recursive: true });
    for (const f of ['0.png', '1.png']) await copyFile(path.join(synthDir, synth.images[0]!.path), path.join(dir, 'images', 'CXR1_IM-0001', f));
    const entry = { id: 'CXR1_IM-0001', report: 'The lungs are clear.', image_path: ['CXR1_IM-0001/0.png', 'CXR1_IM-0001/1.png'], split: 'test' };
    await writeFile(path.join(dir, 'annotation.json'), JSON.stringify({ train: [], val: [], test: [entry] }));
    const got = await loadReportRecords({ kind: 'iu-xray', root: dir });
    expect(got.records).toEqual([
      {
        id: 'CXR1_IM-0001',
        image: path.join(dir, 'images', 'CXR1_IM-0001', '0.png'),
        images: [path.join(dir, 'images', 'CXR1_IM-0001', '0.png'), path.join(dir, 'images', 'CXR1_IM-0001', '1.png')],
        report: 'The lungs are clear.',
        split: 'test',
        patient: 'CXR1',
        study: 'CXR1',
      },
    ]);
    expect(got.splits.records).toEqual({ train: 0, valid: 0, test: 1 });
  });

  it('rejects an unknown kind', async () => {
    await expect(loadReportRecords({ kind: 'chexpert', root: tmp } as never)).rejects.toThrow(`unknown report source kind "chexpert" (expected 'phantom', 'mimic', 'r2gen' or 'iu-xray')`);
  });
});

describe('reportSplitSummary', () => {
  it('counts records and distinct patients per split, and patients found in several splits', () => {
    const r = (patient: string, split: ReportRecord['split']): ReportRecord => ({ id: `${patient}-${split}`, image: '/x', report: 'x', patient, split });
    const s = reportSplitSummary([r('a', 'train'), r('a', 'train'), r('b', 'train'), r('c', 'valid'), r('b', 'test'), r('d', 'test')]);
    expect(s).toEqual({
      records: { train: 3, valid: 1, test: 2 },
      patients: { train: 2, valid: 1, test: 2 },
      total: { records: 6, patients: 4 },
      patientsInSeveralSplits: 1,
    });
    expect(formatReportSplitSummary(s)).toBe('train 3 records / 2 patients, valid 1 records / 1 patients, test 2 records / 2 patients (1 patients in several splits)');
    expect(reportSplitSummary([])).toEqual({ records: { train: 0, valid: 0, test: 0 }, patients: { train: 0, valid: 0, test: 0 }, total: { records: 0, patients: 0 }, patientsInSeveralSplits: 0 });
  });
});
