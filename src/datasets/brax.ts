/**
 * BRAX 1.1.0 (PhysioNet) as downloaded: the master spreadsheet `master_spreadsheet_update.csv` and the images under
 * `images/`, one row per image.
 *
 * Columns (documented fields, from the BRAX data description): PatientID, PatientSex ('M' / 'F' / 'O'), PatientAge
 * (5-year groups, "85 or more" for the oldest), AccessionNumber (the study), StudyDate, ViewPosition (AP, PA, LL, RL,
 * RLD, LLD, RLO, LLO), Rows, Columns, Manufacturer, and the 14 CheXpert observations (1 / 0 / -1 / blank).
 * The image path column is `PngPath` (relative to the dataset folder, under images/), as read by CXformer's BRAX
 * loader; the DICOM copy is `DicomPath`.
 *
 * UNVERIFIED: the spreadsheet file name and the PngPath / DicomPath column names were not confirmed from the
 * official page (they come from CXformer's code and common usage); both can be overridden. Age groups are stored as
 * their lower bound ('60-64' → 60), "85 or more" as 85.
 */
import path from 'node:path';

import { DataError } from '../data/errors.js';
import { CHEXPERT_14 } from './classes.js';
import { finishRecords, IdRegistry, normalizeSex, normalizeView, parseAge, parseLabelCell } from './common.js';
import { findFile, optionalColumn, requireColumns, scanTable } from './table.js';
import { type AdapterOptions, type CxrRecord, cxrRecord } from './types.js';

export interface BraxOptions extends AdapterOptions {
  /** @default 'master_spreadsheet_update.csv' */
  csv?: string;
  /** Column holding each image's path relative to the dataset folder. @default 'PngPath' */
  pathColumn?: string;
}

/**
 * Loads BRAX.
 * @throws DataError for a missing file or column, a bad label value, or an image listed twice
 */
export async function loadBrax(root: string, opts: BraxOptions = {}): Promise<CxrRecord[]> {
  const base = path.resolve(root);
  const file = await findFile(base, [opts.csv ?? 'master_spreadsheet_update.csv'], 'BRAX master spreadsheet', true);
  const pathColumn = opts.pathColumn ?? 'PngPath';
  const ids = new IdRegistry('image');
  const records: CxrRecord[] = [];
  let c: number[] = [];
  let cLabels: number[] = [];
  let cSex: number | undefined;
  let cAge: number | undefined;
  let cStudy: number | undefined;
  await scanTable(
    file,
    (h) => {
      const what = `BRAX's ${path.basename(file)}`;
      c = requireColumns(h, [pathColumn, 'PatientID', 'ViewPosition'], what);
      cLabels = requireColumns(h, CHEXPERT_14, what);
      cSex = optionalColumn(h, 'PatientSex');
      cAge = optionalColumn(h, 'PatientAge');
      cStudy = optionalColumn(h, 'AccessionNumber');
    },
    (cells, line, row) => {
      const rel = (cells[c[0] as number] as string).trim().replace(/\\/g, '/').replace(/^\.\//, '');
      if (rel === '') throw new DataError('empty image path', { file, line, row, column: pathColumn });
      ids.add(rel, { file, line, row, column: pathColumn });
      const patient = (cells[c[1] as number] as string).trim();
      if (patient === '') throw new DataError('empty PatientID', { file, line, row, column: 'PatientID' });
      const labels: Record<string, number | null> = {};
      CHEXPERT_14.forEach((name, k) => {
        labels[name] = parseLabelCell(cells[cLabels[k] as number] as string, { file, line, row, column: name });
      });
      const view = normalizeView(cells[c[2] as number]);
      const sex = cSex === undefined ? undefined : normalizeSex(cells[cSex]);
      const age = cAge === undefined ? undefined : parseAge(cells[cAge]);
      const study = cStudy === undefined ? '' : (cells[cStudy] as string).trim();
      records.push(cxrRecord({ id: rel, dataset: 'brax', path: path.resolve(base, ...rel.split('/')), patient, study, view, sex, age, labels }));
    },
  );
  return finishRecords(records, opts, 'BRAX');
}
