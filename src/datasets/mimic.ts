/**
 * MIMIC-CXR-JPG 2.0.0 (PhysioNet) as downloaded: the version folder holds
 *   mimic-cxr-2.0.0-metadata.csv.gz  one row per image: dicom_id, subject_id, study_id, PerformedProcedureStepDescription,
 *                                    ViewPosition, Rows, Columns, StudyDate, StudyTime, … (this adapter needs the first
 *                                    three and ViewPosition)
 *   mimic-cxr-2.0.0-chexpert.csv.gz  one row per study: subject_id, study_id and the 14 CheXpert observations
 *                                    (1.0 / 0.0 / -1.0 / blank); mimic-cxr-2.0.0-negbio.csv.gz has the same layout
 *   mimic-cxr-2.0.0-split.csv.gz     one row per image: dicom_id, study_id, subject_id, split ('train' / 'validate' /
 *                                    'test'; 'validate' becomes 'valid')
 *   files/p{subject[:2]}/p{subject}/s{study}/{dicom_id}.jpg
 * The files are joined on (subject_id, study_id) for labels and on dicom_id for the split. Version 2.1.0 ships the
 * same three files under the same names. Uncompressed `.csv` copies are accepted too.
 *
 * Confirmed: the file names, the metadata/chexpert column names and the image layout (PhysioNet pages, public code
 * and CXformer's cxr_data/datasets.py). The split values are from the MIMIC-CXR-JPG documentation as quoted by
 * third parties ('train / validate / test'); any other value is an error naming it.
 */
import path from 'node:path';

import { DataError } from '../data/errors.js';
import { CHEXPERT_14 } from './classes.js';
import { finishRecords, IdRegistry, normalizeView, parseLabelCell } from './common.js';
import { findFile, requireColumns, scanTable } from './table.js';
import type { AdapterOptions, CxrRecord, Split } from './types.js';

export interface MimicOptions extends AdapterOptions {
  /** @default 'mimic-cxr-2.0.0-metadata.csv.gz' */
  metadataCsv?: string;
  /** Label file; default by `labeler`: 'mimic-cxr-2.0.0-chexpert.csv.gz' or 'mimic-cxr-2.0.0-negbio.csv.gz'. */
  labelsCsv?: string;
  /** @default 'chexpert' */
  labeler?: 'chexpert' | 'negbio';
  /** @default 'mimic-cxr-2.0.0-split.csv.gz' */
  splitCsv?: string;
  /** Image folder under the root. @default 'files' */
  imagesDir?: string;
  /** Keep only these official splits (records without a split are dropped then). */
  splits?: Split[];
}

const SPLIT_VALUES: Record<string, Split> = { train: 'train', validate: 'valid', valid: 'valid', test: 'test' };

/** The image path of a MIMIC-CXR-JPG image under the images folder. */
export function mimicImagePath(imagesDir: string, subject: string, study: string, dicom: string): string {
  return path.join(imagesDir, `p${subject.slice(0, 2)}`, `p${subject}`, `s${study}`, `${dicom}.jpg`);
}

/** Integer id cells may be written as floats ('10000032.0') by some exports. */
function intId(raw: string): string {
  const v = raw.trim();
  return /^\d+\.0+$/.test(v) ? v.slice(0, v.indexOf('.')) : v;
}

/**
 * Loads MIMIC-CXR-JPG: every image of the metadata file, with its study's labels (all null when the study has no
 * label row) and its official split (undefined when the split file lacks it or is absent).
 * @throws DataError for a missing metadata file or column, a bad label or split value, or a repeated dicom_id
 */
export async function loadMimic(root: string, opts: MimicOptions = {}): Promise<CxrRecord[]> {
  const base = path.resolve(root);
  const labeler = opts.labeler ?? 'chexpert';
  const metaFile = await findFile(base, [opts.metadataCsv ?? 'mimic-cxr-2.0.0-metadata.csv.gz'], 'MIMIC-CXR-JPG metadata', true);
  const labelsFile = await findFile(base, [opts.labelsCsv ?? `mimic-cxr-2.0.0-${labeler}.csv.gz`], `MIMIC-CXR-JPG ${labeler} labels`, opts.labelsCsv !== undefined);
  const splitFile = await findFile(base, [opts.splitCsv ?? 'mimic-cxr-2.0.0-split.csv.gz'], 'MIMIC-CXR-JPG split', opts.splitCsv !== undefined || opts.splits !== undefined);
  const imagesDir = path.resolve(base, opts.imagesDir ?? 'files');

  // Study labels, keyed by subject/study.
  const studyLabels = new Map<string, Record<string, number | null>>();
  if (labelsFile !== undefined) {
    let cKeys: number[] = [];
    let cLabels: number[] = [];
    const seen = new IdRegistry('study');
    await scanTable(
      labelsFile,
      (h) => {
        const what = `MIMIC-CXR-JPG's ${path.basename(labelsFile)}`;
        cKeys = requireColumns(h, ['subject_id', 'study_id'], what);
        cLabels = requireColumns(h, CHEXPERT_14, what);
      },
      (cells, line, row) => {
        const key = `${intId(cells[cKeys[0] as number] as string)}/${intId(cells[cKeys[1] as number] as string)}`;
        seen.add(key, { file: labelsFile, line, row });
        const labels: Record<string, number | null> = {};
        CHEXPERT_14.forEach((name, k) => {
          labels[name] = parseLabelCell(cells[cLabels[k] as number] as string, { file: labelsFile, line, row, column: name });
        });
        studyLabels.set(key, labels);
      },
    );
  }

  // Official split, keyed by dicom_id.
  const splitOf = new Map<string, Split>();
  if (splitFile !== undefined) {
    let cDicom = 0;
    let cSplit = 0;
    await scanTable(
      splitFile,
      (h) => {
        [cDicom, cSplit] = requireColumns(h, ['dicom_id', 'split'], `MIMIC-CXR-JPG's ${path.basename(splitFile)}`) as [number, number];
      },
      (cells, line, row) => {
        const raw = (cells[cSplit] as string).trim();
        const s = SPLIT_VALUES[raw.toLowerCase()];
        if (s === undefined) throw new DataError(`unknown split '${raw}' (expected train, validate or test)`, { file: splitFile, line, row, column: 'split' });
        splitOf.set((cells[cDicom] as string).trim(), s);
      },
    );
  }

  const blank = (): Record<string, number | null> => Object.fromEntries(CHEXPERT_14.map((n) => [n, null]));
  const ids = new IdRegistry('dicom_id');
  const keep = opts.splits === undefined ? undefined : new Set<Split>(opts.splits);
  const records: CxrRecord[] = [];
  let c: number[] = [];
  await scanTable(
    metaFile,
    (h) => {
      c = requireColumns(h, ['dicom_id', 'subject_id', 'study_id', 'ViewPosition'], `MIMIC-CXR-JPG's ${path.basename(metaFile)}`);
    },
    (cells, line, row) => {
      const dicom = (cells[c[0] as number] as string).trim();
      const subject = intId(cells[c[1] as number] as string);
      const study = intId(cells[c[2] as number] as string);
      if (dicom === '') throw new DataError('empty dicom_id', { file: metaFile, line, row, column: 'dicom_id' });
      if (!/^\d{2,}$/.test(subject)) throw new DataError(`subject_id '${subject}' is not a number`, { file: metaFile, line, row, column: 'subject_id' });
      if (!/^\d+$/.test(study)) throw new DataError(`study_id '${study}' is not a number`, { file: metaFile, line, row, column: 'study_id' });
      ids.add(dicom, { file: metaFile, line, row, column: 'dicom_id' });
      const split = splitOf.get(dicom);
      if (keep !== undefined && (split === undefined || !keep.has(split))) return;
      const view = normalizeView(cells[c[3] as number]);
      records.push({
        id: dicom,
        dataset: 'mimic',
        path: mimicImagePath(imagesDir, subject, study, dicom),
        patient: subject,
        study,
        ...(view !== undefined ? { view } : {}),
        labels: { ...(studyLabels.get(`${subject}/${study}`) ?? blank()) },
        ...(split !== undefined ? { split } : {}),
      });
    },
  );
  return finishRecords(records, opts, 'MIMIC-CXR-JPG');
}
