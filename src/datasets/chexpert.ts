/**
 * CheXpert (Stanford ML Group) as downloaded: the dataset folder (`CheXpert-v1.0-small/` or `CheXpert-v1.0/`) holds
 * `train.csv`, `valid.csv`, `train/` and `valid/`; the separately released test labels are `test_labels.csv` with
 * images under `test/`.
 *
 * Columns (confirmed from public copies of train.csv): `Path`, `Sex`, `Age`, `Frontal/Lateral`, `AP/PA`, then the 14
 * observations of `CHEXPERT_14` with values 1.0 (positive), 0.0 (negative), -1.0 (uncertain) or blank (not
 * mentioned). `Path` starts with the dataset folder name (`CheXpert-v1.0-small/train/patient00001/study1/
 * view1_frontal.jpg`); the record id drops that first segment, matching CheXmask's `Path` column
 * (`train/patient…/study…/view…_frontal.jpg`). Age 0 means unknown (as in CXformer, which sets it to None).
 *
 * UNVERIFIED: the test labels file name and columns. CXformer reads `Path` and the label columns and derives the view
 * from the file name (`view1_frontal.jpg` → Frontal); this adapter does the same when `Frontal/Lateral` is absent.
 */
import path from 'node:path';

import { DataError } from '../data/errors.js';
import { CHEXPERT_14 } from './classes.js';
import { finishRecords, IdRegistry, normalizeSex, normalizeView, parseAge, parseLabelCell } from './common.js';
import { findFile, optionalColumn, requireColumns, scanTable } from './table.js';
import { type AdapterOptions, type CxrRecord, cxrRecord, type Split } from './types.js';

export interface ChexpertOptions extends AdapterOptions {
  /** @default 'train.csv' */
  trainCsv?: string;
  /** @default 'valid.csv' */
  validCsv?: string;
  /** @default 'test_labels.csv' */
  testCsv?: string;
  /**
   * Splits to load. Default: every split whose label file exists (at least one must). Splits named here must exist.
   */
  splits?: Split[];
}

/** Drops the dataset folder segment CheXpert's `Path` starts with (`CheXpert-v1.0-small/`, `CheXpert-v1.0/`). */
export function chexpertRelativePath(p: string): string {
  const s = p.trim().replace(/\\/g, '/').replace(/^\.\//, '');
  return s.replace(/^CheXpert-v1\.0[^/]*\//i, '');
}

/** The view of a CheXpert row: 'LATERAL' for laterals, else the AP/PA value, else 'FRONTAL'. */
function chexpertView(frontalLateral: string | undefined, apPa: string | undefined, rel: string): string | undefined {
  let fl = frontalLateral?.trim();
  if (fl === undefined || fl === '') {
    const m = /_(frontal|lateral)\.[a-z0-9]+$/i.exec(rel);
    fl = m ? (m[1] as string) : undefined;
  }
  if (fl === undefined) return normalizeView(apPa);
  if (fl.toLowerCase() === 'lateral') return 'LATERAL';
  if (fl.toLowerCase() === 'frontal') return normalizeView(apPa) ?? 'FRONTAL';
  return normalizeView(fl);
}

/**
 * Loads CheXpert's official splits.
 * @param root the dataset folder (the one holding train.csv)
 * @throws DataError for a missing file or column (the columns found are listed), a bad label value, a Path without a
 *   patient, or an image listed twice
 */
export async function loadChexpert(root: string, opts: ChexpertOptions = {}): Promise<CxrRecord[]> {
  const base = path.resolve(root);
  const files: Record<Split, string> = {
    train: opts.trainCsv ?? 'train.csv',
    valid: opts.validCsv ?? 'valid.csv',
    test: opts.testCsv ?? 'test_labels.csv',
  };
  const wanted: Split[] = opts.splits ?? ['train', 'valid', 'test'];
  const found: [Split, string][] = [];
  for (const s of wanted) {
    const f = await findFile(base, [files[s]], `CheXpert ${s} labels`, opts.splits !== undefined);
    if (f !== undefined) found.push([s, f]);
  }
  if (found.length === 0) {
    throw new DataError(`no CheXpert label file found under ${base} (looked for ${wanted.map((s) => files[s]).join(', ')})`);
  }
  const ids = new IdRegistry('image');
  const records: CxrRecord[] = [];
  for (const [split, file] of found) {
    let cPath = 0;
    let cSex: number | undefined;
    let cAge: number | undefined;
    let cFl: number | undefined;
    let cApPa: number | undefined;
    let cLabels: number[] = [];
    await scanTable(
      file,
      (h) => {
        [cPath] = requireColumns(h, ['Path'], `CheXpert's ${path.basename(file)}`) as [number];
        cLabels = requireColumns(h, CHEXPERT_14, `CheXpert's ${path.basename(file)}`);
        cSex = optionalColumn(h, 'Sex');
        cAge = optionalColumn(h, 'Age');
        cFl = optionalColumn(h, 'Frontal/Lateral');
        cApPa = optionalColumn(h, 'AP/PA');
      },
      (cells, line, row) => {
        const raw = cells[cPath] as string;
        const rel = chexpertRelativePath(raw);
        if (rel === '') throw new DataError('empty image path', { file, line, row, column: 'Path' });
        const pm = /(?:^|\/)(patient\d+)\/(study\d+)\//.exec(rel);
        if (!pm) throw new DataError(`cannot find 'patientNNNNN/studyN/' in the path '${raw}'`, { file, line, row, column: 'Path' });
        ids.add(rel, { file, line, row, column: 'Path' });
        const labels: Record<string, number | null> = {};
        CHEXPERT_14.forEach((name, k) => {
          labels[name] = parseLabelCell(cells[cLabels[k] as number] as string, { file, line, row, column: name });
        });
        const view = chexpertView(cFl === undefined ? undefined : cells[cFl], cApPa === undefined ? undefined : cells[cApPa], rel);
        const sex = cSex === undefined ? undefined : normalizeSex(cells[cSex]);
        const age = cAge === undefined ? undefined : parseAge(cells[cAge]);
        const patient = pm[1] as string;
        const study = `${patient}/${pm[2] as string}`;
        records.push(cxrRecord({ id: rel, dataset: 'chexpert', path: path.join(base, ...rel.split('/')), patient, study, view, sex, age, labels, split }));
      },
    );
  }
  return finishRecords(records, opts, 'CheXpert');
}
