/**
 * PadChest (BIMCV) as downloaded: `PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz` and the image archives
 * 0.zip … 54.zip, each extracting to the folder named by the `ImageDir` column: `<root>/<ImageDir>/<ImageID>`.
 *
 * Columns used: ImageID, ImageDir, PatientID, StudyID, Projection, Labels (required); PatientSex_DICOM, PatientBirth,
 * StudyDate_DICOM (optional, for sex and age). `Labels` is a Python list literal ("['pleural effusion',
 * 'cardiomegaly']", "['normal']"); labels are trimmed and lower-cased, and each listed label is stored as 1. The
 * list is exhaustive (an unlisted finding is absent, i.e. negative): use the policy `absent: 'zero'` (the PadChest
 * default) or `relabel`, which writes explicit zeros. Rows with a blank `Labels` cell are dropped unless
 * `keepUnlabelled` (useful for pretraining, where labels are unused). Projection: 'PA', 'AP', 'L' (→ 'LATERAL'),
 * 'AP_horizontal' (→ 'AP Supine', torchxrayvision's mapping), 'COSTAL', 'EXCLUDE', 'UNK' (kept raw).
 *
 * Confirmed from public loaders (torchxrayvision, CXformer): the file name and the column names used here, the
 * ImageDir layout, the Projection values above. UNVERIFIED: that ImageIDs are unique (a repeated ImageID keeps the
 * first row) and the exact quoting of every Labels cell (both quote styles and escapes are accepted).
 */
import path from 'node:path';

import { DataError, type DataErrorLocation } from '../data/errors.js';
import { finishRecords, normalizeSex, normalizeView } from './common.js';
import { findFile, optionalColumn, requireColumns, scanTable } from './table.js';
import { type AdapterOptions, type CxrRecord, cxrRecord } from './types.js';

export interface PadchestOptions extends AdapterOptions {
  /** @default 'PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz' */
  csv?: string;
  /** All images in one folder under the root (e.g. a resized copy) instead of `<ImageDir>/`. */
  imagesDir?: string;
  /** Keep rows whose Labels cell is blank (their labels are then empty). @default false */
  keepUnlabelled?: boolean;
  /** ImageIDs to leave out. @default PADCHEST_MISSING_IMAGES */
  exclude?: readonly string[];
}

/**
 * ImageIDs listed in the CSV whose files are missing or unreadable in the public release, as excluded by
 * torchxrayvision's PC_Dataset (not independently verified). CXformer also removed corrupt files (docs/recipe.md §1, which
 * ones is not recorded).
 */
export const PADCHEST_MISSING_IMAGES: readonly string[] = [
  '216840111366964012819207061112010307142602253_04-014-084.png',
  '216840111366964012989926673512011074122523403_00-163-058.png',
  '216840111366964012959786098432011033083840143_00-176-115.png',
  '216840111366964012558082906712009327122220177_00-102-064.png',
  '216840111366964012339356563862009072111404053_00-043-192.png',
  '216840111366964013076187734852011291090445391_00-196-188.png',
  '216840111366964012373310883942009117084022290_00-064-025.png',
  '216840111366964012283393834152009033102258826_00-059-087.png',
  '216840111366964012373310883942009170084120009_00-097-074.png',
  '216840111366964012819207061112010315104455352_04-024-184.png',
  '216840111366964012819207061112010306085429121_04-020-102.png',
];

/**
 * Parses a Python list-of-strings literal ("['a', 'b']", '["it\'s"]', "[]").
 * @throws DataError at `where` when the cell is not such a list
 */
export function parsePythonStringList(cell: string, where: DataErrorLocation): string[] {
  const s = cell.trim();
  const bad = (why: string): DataError => new DataError(`expected a Python list of strings like ['a', 'b'], ${why}: ${JSON.stringify(cell)}`, where);
  if (!s.startsWith('[') || !s.endsWith(']')) throw bad('missing the brackets');
  const out: string[] = [];
  let i = 1;
  const end = s.length - 1;
  let expectItem = true;
  while (i < end) {
    const c = s[i] as string;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === ',') {
      if (expectItem) throw bad('an empty item');
      expectItem = true;
      i++;
      continue;
    }
    if (c !== "'" && c !== '"') throw bad(`unexpected '${c}'`);
    if (!expectItem) throw bad('a missing comma');
    let item = '';
    i++;
    for (;;) {
      if (i >= end) throw bad('an unterminated string');
      const d = s[i] as string;
      if (d === '\\' && i + 1 < end) {
        const e = s[i + 1] as string;
        item += e === 'n' ? '\n' : e === 't' ? '\t' : e;
        i += 2;
        continue;
      }
      if (d === c) break;
      item += d;
      i++;
    }
    i++;
    out.push(item);
    expectItem = false;
  }
  return out;
}

/** The year of a YYYYMMDD date, or undefined. */
function yearOf(date: string | undefined): number | undefined {
  const m = /^(\d{4})\d{4}$/.exec((date ?? '').trim());
  return m ? Number(m[1]) : undefined;
}

/**
 * Loads PadChest.
 * @throws DataError for a missing file or column, or a Labels cell that is not a Python list of strings
 */
export async function loadPadchest(root: string, opts: PadchestOptions = {}): Promise<CxrRecord[]> {
  const base = path.resolve(root);
  const file = await findFile(base, [opts.csv ?? 'PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz'], 'PadChest label file', true);
  const exclude = new Set(opts.exclude ?? PADCHEST_MISSING_IMAGES);
  const flatDir = opts.imagesDir === undefined ? undefined : path.resolve(base, opts.imagesDir);
  const seen = new Set<string>();
  const records: CxrRecord[] = [];
  let c: number[] = [];
  let cSex: number | undefined;
  let cBirth: number | undefined;
  let cDate: number | undefined;
  await scanTable(
    file,
    (h) => {
      c = requireColumns(h, ['ImageID', 'ImageDir', 'PatientID', 'StudyID', 'Projection', 'Labels'], `PadChest's ${path.basename(file)}`);
      cSex = optionalColumn(h, 'PatientSex_DICOM');
      cBirth = optionalColumn(h, 'PatientBirth');
      cDate = optionalColumn(h, 'StudyDate_DICOM');
    },
    (cells, line, row) => {
      const id = (cells[c[0] as number] as string).trim();
      if (id === '') throw new DataError('empty ImageID', { file, line, row, column: 'ImageID' });
      if (exclude.has(id) || seen.has(id)) return;
      seen.add(id);
      const rawLabels = (cells[c[5] as number] as string).trim();
      const unlabelled = rawLabels === '' || rawLabels.toLowerCase() === 'nan';
      if (unlabelled && !opts.keepUnlabelled) return;
      const labels: Record<string, number | null> = {};
      if (!unlabelled) {
        for (const l of parsePythonStringList(rawLabels, { file, line, row, column: 'Labels' })) {
          const name = l.trim().toLowerCase();
          if (name !== '') labels[name] = 1;
        }
      }
      const dir = (cells[c[1] as number] as string).trim();
      if (flatDir === undefined && dir === '') throw new DataError('empty ImageDir (pass imagesDir for a flat image folder)', { file, line, row, column: 'ImageDir' });
      const patient = (cells[c[2] as number] as string).trim();
      if (patient === '') throw new DataError('empty PatientID', { file, line, row, column: 'PatientID' });
      const study = (cells[c[3] as number] as string).trim();
      const view = normalizeView(cells[c[4] as number]);
      const sex = cSex === undefined ? undefined : normalizeSex(cells[cSex]);
      const birth = cBirth === undefined ? NaN : Number.parseFloat((cells[cBirth] as string).trim());
      const year = cDate === undefined ? undefined : yearOf(cells[cDate]);
      const age = Number.isFinite(birth) && year !== undefined && year - birth >= 0 ? year - birth : undefined;
      const imagePath = flatDir === undefined ? path.join(base, String(Number.isNaN(Number(dir)) ? dir : Number(dir)), id) : path.join(flatDir, id);
      records.push(cxrRecord({ id, dataset: 'padchest', path: imagePath, patient, study, view, sex, age, labels }));
    },
  );
  return finishRecords(records, opts, 'PadChest');
}
