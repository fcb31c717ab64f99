/**
 * MIMIC-CXR report records (src/datasets/mimic-reports.ts) on a tiny fake MIMIC tree built in a temp folder: the
 * MIMIC-CXR-JPG tables (metadata, split, CheXpert labels) under one root and the report files under a separate root.
 * The report texts are the GENERATED MIMIC-style texts of mimic-style-reports.ts (no MIMIC text; PhysioNet DUA).
 * Expected records and drop counts are worked out by hand from the table below.
 *
 *   dicom subject   study     view     split     report (mimic-style-reports.ts)
 *   a1    10000001  50000001  PA       train     STANDARD
 *   a2    10000001  50000001  LATERAL  train     STANDARD
 *   a3    10000001  50000001  AP       train     STANDARD
 *   b1    10000001  50000002  PA       train     COMPARISON_PARAGRAPHS (no findings, no impression)
 *   v1    10000002  50000003  PA       validate  TWO_FINDINGS
 *   v2    10000002  50000003  PA       validate  TWO_FINDINGS
 *   c1    11000003  50000004  AP       test      TRAILING_EMPTY_FINDINGS
 *   c3    11000003  50000004  PA       test      TRAILING_EMPTY_FINDINGS
 *   c2    11000003  50000004  PA       test      TRAILING_EMPTY_FINDINGS
 *   e2    11000003  50000005  AP       test      FINDINGS_AND_IMPRESSION (impression only)
 *   e1    11000003  50000005  AP       test      FINDINGS_AND_IMPRESSION
 *   r1    11000003  50913680  PA       test      CUSTOM_SECTION (study with a custom rule: 'recommendations')
 *   n1    12000004  50000006  PA       train     (no report file)
 *   l1    12000004  50000007  LL       train     SKIPPED_HEADER
 *   x1    12000005  50000008  PA       (none)    STANDARD
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { formatCsv } from '../../src/data/csv.js';
import { CHEXPERT_14 } from '../../src/datasets/classes.js';
import { formatMimicReportSummary, loadMimicReports, mimicReportPath } from '../../src/datasets/mimic-reports.js';
import { mimicImagePath } from '../../src/datasets/mimic.js';
import { loadReportRecords } from '../../src/rrg/data.js';
import { rejected } from './datasets-helpers.js';
import * as R from './mimic-style-reports.js';

const ROWS: [string, string, string, string, string | null][] = [
  ['a1', '10000001', '50000001', 'PA', 'train'],
  ['a2', '10000001', '50000001', 'LATERAL', 'train'],
  ['a3', '10000001', '50000001', 'AP', 'train'],
  ['b1', '10000001', '50000002', 'PA', 'train'],
  ['v1', '10000002', '50000003', 'PA', 'validate'],
  ['v2', '10000002', '50000003', 'PA', 'validate'],
  ['c1', '11000003', '50000004', 'AP', 'test'],
  ['c3', '11000003', '50000004', 'PA', 'test'],
  ['c2', '11000003', '50000004', 'PA', 'test'],
  ['e2', '11000003', '50000005', 'AP', 'test'],
  ['e1', '11000003', '50000005', 'AP', 'test'],
  ['r1', '11000003', '50913680', 'PA', 'test'],
  ['n1', '12000004', '50000006', 'PA', 'train'],
  ['l1', '12000004', '50000007', 'LL', 'train'],
  ['x1', '12000005', '50000008', 'PA', null],
];
const REPORTS: [string, string, string][] = [
  ['10000001', '50000001', R.STANDARD],
  ['10000001', '50000002', R.COMPARISON_PARAGRAPHS],
  ['10000002', '50000003', R.TWO_FINDINGS],
  ['11000003', '50000004', R.TRAILING_EMPTY_FINDINGS],
  ['11000003', '50000005', R.FINDINGS_AND_IMPRESSION],
  ['11000003', '50913680', R.CUSTOM_SECTION],
  ['12000004', '50000007', R.SKIPPED_HEADER],
  ['12000005', '50000008', R.STANDARD],
];
const TRAILING_FINDINGS = 'The lungs are clear.  Heart size is normal.';

let tmp: string;
let jpg: string; // MIMIC-CXR-JPG root
let reports: string; // report tree root (holds files/)
const img = (dicom: string): string => {
  const r = ROWS.find((x) => x[0] === dicom)!;
  return mimicImagePath(path.join(jpg, 'files'), r[1], r[2], dicom);
};

async function writeReports(root: string, list: [string, string, string][]): Promise<void> {
  for (const [subject, study, text] of list) {
    const f = mimicReportPath(path.join(root, 'files'), subject, study);
    await mkdir(path.dirname(f), { recursive: true });
    await writeFile(f, text);
  }
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-mimic-reports-'));
  jpg = path.join(tmp, 'mimic-cxr-jpg');
  reports = path.join(tmp, 'mimic-cxr-reports');
  await mkdir(jpg, { recursive: true });
  const meta = formatCsv(
    ['dicom_id', 'subject_id', 'study_id', 'PerformedProcedureStepDescription', 'ViewPosition'],
    ROWS.map((r) => [r[0], r[1], r[2], 'CHEST (PA AND LAT)', r[3]]),
  );
  await writeFile(path.join(jpg, 'mimic-cxr-2.0.0-metadata.csv.gz'), gzipSync(meta));
  const split = formatCsv(
    ['dicom_id', 'study_id', 'subject_id', 'split'],
    ROWS.filter((r) => r[4] !== null).map((r) => [r[0], r[2], r[1], r[4] as string]),
  );
  await writeFile(path.join(jpg, 'mimic-cxr-2.0.0-split.csv.gz'), gzipSync(split));
  // Labels for study 50000001 only: Edema 1, Pleural Effusion -1, Pneumothorax 0, the rest blank.
  const cells = CHEXPERT_14.map((c) => (c === 'Edema' ? '1.0' : c === 'Pleural Effusion' ? '-1.0' : c === 'Pneumothorax' ? '0.0' : ''));
  await writeFile(path.join(jpg, 'mimic-cxr-2.0.0-chexpert.csv'), formatCsv(['subject_id', 'study_id', ...CHEXPERT_14], [['10000001', '50000001', ...cells]]));
  await writeReports(reports, REPORTS);
}, 60_000);
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('loadMimicReports, R2Gen protocol (findings)', () => {
  it('keeps frontal images of studies with a findings section; one test image per study (first PA by dicom_id)', async () => {
    const { records, summary } = await loadMimicReports(jpg, { reportsDir: reports });
    expect(records.map((r) => r.id)).toEqual(['a1', 'a3', 'v1', 'v2', 'c2']);
    const a1 = records[0]!;
    expect(a1).toEqual({
      id: 'a1',
      image: img('a1'),
      report: R.STANDARD_FINDINGS,
      // The report's INDICATION section rides along (the LLaVA recipe's optional prompt field).
      indication: '___ year old woman with cough and fever, evaluate for pneumonia.',
      split: 'train',
      patient: '10000001',
      study: '50000001',
      view: 'PA',
      labels: { ...Object.fromEntries(CHEXPERT_14.map((c) => [c, null])), Edema: 1, 'Pleural Effusion': -1, Pneumothorax: 0 },
    });
    expect(a1.image).toBe(path.join(jpg, 'files', 'p10', 'p10000001', 's50000001', 'a1.jpg'));
    expect(records[1]!.view).toBe('AP'); // train keeps every frontal image
    expect(records[2]!.indication).toBeUndefined(); // TWO_FINDINGS has a HISTORY, no INDICATION
    expect(records.slice(2, 4).map((r) => [r.split, r.report])).toEqual([
      ['valid', R.TWO_FINDINGS_LAST], // the LAST of two findings sections
      ['valid', R.TWO_FINDINGS_LAST],
    ]);
    // Test study 50000004: AP c1, PA c3, PA c2 in metadata order → the first PA by dicom_id is c2.
    expect(records[4]).toMatchObject({ id: 'c2', split: 'test', view: 'PA', report: TRAILING_FINDINGS });
    expect(Object.values(records[4]!.labels!).every((v) => v === null)).toBe(true); // no label row for its study
    expect(summary).toEqual({
      section: 'findings',
      protocol: 'r2gen',
      reportsDir: path.join(reports, 'files'),
      images: { total: 15, noSplit: 1, notFrontal: 2, noReport: 1, customRule: 1, noSection: 3, testExtra: 2, missingImage: 0, kept: 5 },
      studies: { read: 7, noReport: 1, customRule: 1, noSection: 2, kept: 3 },
      missingReports: [path.join(reports, 'files', 'p12', 'p12000004', 's50000006.txt')],
    });
    expect(formatMimicReportSummary(summary)).toBe(
      'MIMIC-CXR findings (r2gen): kept 5 of 15 images, 3 of 7 studies; dropped images: no split 1, not frontal 2, no report file 1, custom rule 1, ' +
        'no findings 3, extra test images 2',
    );
  });

  it('takes the first AP by dicom_id when a test study has no PA (impression section)', async () => {
    const { records, summary } = await loadMimicReports(jpg, { reportsDir: reports, section: 'impression' });
    expect(records.map((r) => [r.id, r.report])).toEqual([
      ['a1', R.STANDARD_IMPRESSION],
      ['a3', R.STANDARD_IMPRESSION],
      ['v1', R.TWO_FINDINGS_IMPRESSION],
      ['v2', R.TWO_FINDINGS_IMPRESSION],
      ['c2', 'No acute process.'],
      ['e1', R.FAI_IMPRESSION], // FINDINGS AND IMPRESSION → impression; AP e2, AP e1 → e1
    ]);
    expect(summary.images).toMatchObject({ noSection: 1, customRule: 1, testExtra: 3, kept: 6 });
  });

  it('joins findings and impression with a blank line, keeping studies with either', async () => {
    const { records } = await loadMimicReports(jpg, { reportsDir: reports, section: 'findings+impression' });
    expect(records.map((r) => [r.id, r.report])).toEqual([
      ['a1', `${R.STANDARD_FINDINGS}\n\n${R.STANDARD_IMPRESSION}`],
      ['a3', `${R.STANDARD_FINDINGS}\n\n${R.STANDARD_IMPRESSION}`],
      ['v1', `${R.TWO_FINDINGS_LAST}\n\n${R.TWO_FINDINGS_IMPRESSION}`],
      ['v2', `${R.TWO_FINDINGS_LAST}\n\n${R.TWO_FINDINGS_IMPRESSION}`],
      ['c2', `${TRAILING_FINDINGS}\n\nNo acute process.`],
      ['e1', R.FAI_IMPRESSION],
    ]);
  });

  it("uses the custom rules for section 'conclusion' (create_section_files.py's per-study text)", async () => {
    const { records, summary } = await loadMimicReports(jpg, { reportsDir: reports, section: 'conclusion' });
    expect(records.map((r) => [r.id, r.report])).toEqual([
      ['a1', R.STANDARD_IMPRESSION],
      ['a3', R.STANDARD_IMPRESSION],
      ['b1', R.CP_LAST_PARAGRAPH], // no findings/impression: last_paragraph
      ['v1', R.TWO_FINDINGS_IMPRESSION],
      ['v2', R.TWO_FINDINGS_IMPRESSION],
      ['c2', 'No acute process.'],
      ['e1', R.FAI_IMPRESSION],
      ['r1', R.CUSTOM_SECTION_TEXT], // s50913680 → its 'recommendations' section
    ]);
    expect(summary.images).toMatchObject({ customRule: 0, noSection: 0, noReport: 1 });
  });

  it("protocol 'all-images' keeps every view and every test image", async () => {
    const { records, summary } = await loadMimicReports(jpg, { reportsDir: reports, protocol: 'all-images' });
    expect(records.map((r) => r.id)).toEqual(['a1', 'a2', 'a3', 'v1', 'v2', 'c1', 'c3', 'c2', 'l1']);
    expect(records.find((r) => r.id === 'l1')!.report).toBe(R.SKIPPED_FINDINGS);
    expect(summary.images).toEqual({ total: 15, noSplit: 1, notFrontal: 0, noReport: 1, customRule: 1, noSection: 3, testExtra: 0, missingImage: 0, kept: 9 });
  });

  it('collapses whitespace on request', async () => {
    const { records } = await loadMimicReports(jpg, { reportsDir: reports, collapseWhitespace: true });
    expect(records[0]!.report).toBe('The lungs are clear without focal consolidation. No pleural effusion or pneumothorax is seen. The cardiac silhouette is normal in size.');
  });

  it('accepts the files/ folder itself as reportsDir, and CRLF report files', async () => {
    const crlf = path.join(tmp, 'crlf-reports');
    await writeReports(
      crlf,
      REPORTS.map(([a, b, t]) => [a, b, t.replace(/\n/g, '\r\n')]),
    );
    const ref = await loadMimicReports(jpg, { reportsDir: reports });
    const got = await loadMimicReports(jpg, { reportsDir: path.join(crlf, 'files') });
    expect(got.records).toEqual(ref.records);
    expect(got.summary.reportsDir).toBe(path.join(crlf, 'files'));
  });

  it('leaves labels out without a label file or with labels: false', async () => {
    const { records } = await loadMimicReports(jpg, { reportsDir: reports, labels: false });
    expect(records.every((r) => r.labels === undefined)).toBe(true);
    const noLabels = path.join(tmp, 'jpg-no-labels');
    await mkdir(noLabels, { recursive: true });
    for (const f of ['mimic-cxr-2.0.0-metadata.csv.gz', 'mimic-cxr-2.0.0-split.csv.gz']) {
      await writeFile(path.join(noLabels, f), await import('node:fs/promises').then((m) => m.readFile(path.join(jpg, f))));
    }
    const b = await loadMimicReports(noLabels, { reportsDir: reports });
    expect(b.records.map((r) => r.id)).toEqual(['a1', 'a3', 'v1', 'v2', 'c2']);
    expect(b.records.every((r) => r.labels === undefined)).toBe(true);
    expect(b.records[0]!.image).toBe(path.join(noLabels, 'files', 'p10', 'p10000001', 's50000001', 'a1.jpg'));
  });

  it('checks the kept image files: drop counts them, true fails with the count and first paths', async () => {
    await mkdir(path.dirname(img('a1')), { recursive: true });
    await writeFile(img('a1'), 'jpg');
    await mkdir(path.dirname(img('c2')), { recursive: true });
    await writeFile(img('c2'), 'jpg');
    const { records, summary } = await loadMimicReports(jpg, { reportsDir: reports, checkFiles: 'drop' });
    expect(records.map((r) => r.id)).toEqual(['a1', 'c2']);
    expect(summary.images).toMatchObject({ missingImage: 3, kept: 2 });
    const e = await rejected(loadMimicReports(jpg, { reportsDir: reports, checkFiles: true }));
    expect(e.message).toContain(`MIMIC-CXR-JPG: 3 of 5 image file(s) do not exist (first: a3 -> ${img('a3')}; v1 -> ${img('v1')}; v2 -> ${img('v2')})`);
  });

  it('goes through loadReportRecords as kind mimic', async () => {
    const got = await loadReportRecords({ kind: 'mimic', root: jpg, reportsDir: reports });
    expect(got.records.map((r) => r.id)).toEqual(['a1', 'a3', 'v1', 'v2', 'c2']);
    expect(got.splits.records).toEqual({ train: 2, valid: 2, test: 1 });
    expect(got.source).toMatchObject({ section: 'findings', protocol: 'r2gen' });
  });
});

describe('loadMimicReports errors', () => {
  it('fails with the counts and where it looked when no record is left', async () => {
    const empty = path.join(tmp, 'empty-reports');
    await mkdir(empty, { recursive: true });
    const e = await rejected(loadMimicReports(jpg, { reportsDir: empty }));
    expect(e.message).toBe(
      'MIMIC-CXR reports: no record left of 15 images (no split 1, not PA/AP 2, no report file 12, custom rule 0, no findings section 0); ' +
        `report files are looked for under ${empty} (first missing: ${['p10/p10000001/s50000001.txt', 'p10/p10000001/s50000002.txt', 'p10/p10000002/s50000003.txt', 'p11/p11000003/s50000004.txt', 'p11/p11000003/s50000005.txt'].map((p) => path.join(empty, p)).join(', ')})`,
    );
  });

  it('names a report file that is not UTF-8', async () => {
    const bad = path.join(tmp, 'bad-reports');
    await writeReports(bad, REPORTS);
    const f = mimicReportPath(path.join(bad, 'files'), '10000002', '50000003');
    await writeFile(f, Buffer.from([0x20, 0xc3, 0x28]));
    await expect(loadMimicReports(jpg, { reportsDir: bad })).rejects.toThrow(`${f}: the report is not valid UTF-8 text`);
  });

  it("names the report file when a study's custom section is missing (section 'conclusion')", async () => {
    const odd = path.join(tmp, 'odd-reports');
    await writeReports(odd, REPORTS.map(([a, b, t]) => [a, b, b === '50913680' ? R.STANDARD : t]));
    const f = mimicReportPath(path.join(odd, 'files'), '11000003', '50913680');
    await expect(loadMimicReports(jpg, { reportsDir: odd, section: 'conclusion' })).rejects.toThrow(
      `${f}: study s50913680: its custom rule names section 'recommendations', which the report does not have (sections: preamble, examination, indication, technique, comparison, findings, impression)`,
    );
  });

  it('requires the split file', async () => {
    const noSplit = path.join(tmp, 'jpg-no-split');
    await mkdir(noSplit, { recursive: true });
    await writeFile(path.join(noSplit, 'mimic-cxr-2.0.0-metadata.csv'), formatCsv(['dicom_id', 'subject_id', 'study_id', 'ViewPosition'], [['a1', '10000001', '50000001', 'PA']]));
    await expect(loadMimicReports(noSplit, { reportsDir: reports })).rejects.toThrow(/MIMIC-CXR-JPG split not found under .*jpg-no-split \(looked for 'mimic-cxr-2.0.0-split.csv.gz', 'mimic-cxr-2.0.0-split.csv'\)/);
  });

  it('rejects an unknown section or protocol', async () => {
    await expect(loadMimicReports(jpg, { section: 'history' as never })).rejects.toThrow("unknown section 'history' (expected findings, impression, findings+impression or conclusion)");
    await expect(loadMimicReports(jpg, { protocol: 'r2gen-all' as never })).rejects.toThrow("unknown protocol 'r2gen-all' (expected r2gen or all-images)");
  });
});
