/**
 * RSNA Pneumonia Detection Challenge (Kaggle) as downloaded:
 *   stage_2_train_labels.csv   patientId, x, y, width, height, Target: one row per box for positive images (Target
 *                              1), a single row with blank box for negatives (Target 0)
 *   stage_2_train_images/<patientId>.dcm
 * One image per patientId. The patient-level label is the majority of the rows' Target (docs/recipe.md §5.1; ties → 0), stored
 * as 'Pneumonia'. The challenge's own test labels were not released with the images; a labels file in the same format
 * for the stage-2 test images (CXformer's `stage_2_test_labels.csv`, origin UNVERIFIED) is loaded as 'test' when
 * present. The training file gives 'train'; CXformer's TRAIN/VAL split is unofficial (use `assignSplits`).
 *
 * Views, sex and age are only in the DICOM headers, not in the CSV. `viewsCsv` names an optional table of header
 * values (columns `patientId` or `PatientID`, `ViewPosition`, optionally `PatientSex`, `PatientAge`), e.g.
 * torchxrayvision's kaggle_stage_2_train_images_dicom_headers.csv.gz. All RSNA images are frontal (PA or AP).
 *
 * Confirmed: file names and columns of the training labels (Kaggle data page, torchxrayvision, CXformer).
 */
import path from 'node:path';

import { DataError } from '../data/errors.js';
import { RSNA_1 } from './classes.js';
import { finishRecords, majorityVote, normalizeSex, normalizeView, parseAge, parseBinaryCell } from './common.js';
import { findFile, optionalColumn, quoteList, requireColumns, scanTable } from './table.js';
import type { AdapterOptions, CxrRecord, Split } from './types.js';

export interface RsnaOptions extends AdapterOptions {
  /** @default 'stage_2_train_labels.csv' */
  trainCsv?: string;
  /** @default 'stage_2_test_labels.csv' (loaded when present) */
  testCsv?: string;
  /** @default 'stage_2_train_images' */
  trainImagesDir?: string;
  /** @default 'stage_2_test_images' */
  testImagesDir?: string;
  /** Optional DICOM header table giving ViewPosition (and PatientSex, PatientAge) per patientId. */
  viewsCsv?: string;
  /** Splits to load. Default: those whose file exists (train must). */
  splits?: Split[];
}

interface Header {
  view?: string;
  sex?: string;
  age?: number;
}

async function readHeaders(file: string): Promise<Map<string, Header>> {
  const out = new Map<string, Header>();
  let cId = 0;
  let cView = 0;
  let cSex: number | undefined;
  let cAge: number | undefined;
  await scanTable(
    file,
    (h) => {
      const idName = h.index.has('patientId') ? 'patientId' : 'PatientID';
      if (!h.index.has(idName)) {
        throw new DataError(`missing column 'patientId' or 'PatientID' (expected in an RSNA DICOM header table); the columns found are: ${quoteList(h.header)}`, { file, line: 1 });
      }
      [cId, cView] = requireColumns(h, [idName, 'ViewPosition'], 'an RSNA DICOM header table') as [number, number];
      cSex = optionalColumn(h, 'PatientSex');
      cAge = optionalColumn(h, 'PatientAge');
    },
    (cells) => {
      const view = normalizeView(cells[cView]);
      const sex = cSex === undefined ? undefined : normalizeSex(cells[cSex]);
      const age = cAge === undefined ? undefined : parseAge(cells[cAge]);
      out.set((cells[cId] as string).trim(), { ...(view !== undefined ? { view } : {}), ...(sex !== undefined ? { sex } : {}), ...(age !== undefined ? { age } : {}) });
    },
  );
  return out;
}

/**
 * Loads RSNA Pneumonia with one record per patientId.
 * @throws DataError for a missing file or column, or a Target other than 0/1
 */
export async function loadRsna(root: string, opts: RsnaOptions = {}): Promise<CxrRecord[]> {
  const base = path.resolve(root);
  const explicit = opts.splits !== undefined;
  const wanted = new Set<Split>(opts.splits ?? ['train', 'test']);
  if (wanted.has('valid')) throw new DataError("RSNA Pneumonia has no official 'valid' split (make one with assignSplits)");
  const headers = opts.viewsCsv === undefined ? undefined : await readHeaders(await findFile(base, [opts.viewsCsv], 'RSNA DICOM header table', true));
  const sources: [Split, string | undefined, string][] = [];
  if (wanted.has('train')) {
    sources.push(['train', await findFile(base, [opts.trainCsv ?? 'stage_2_train_labels.csv'], 'RSNA training labels', true), opts.trainImagesDir ?? 'stage_2_train_images']);
  }
  if (wanted.has('test')) {
    const f = await findFile(base, [opts.testCsv ?? 'stage_2_test_labels.csv'], 'RSNA test labels', explicit || opts.testCsv !== undefined);
    sources.push(['test', f, opts.testImagesDir ?? 'stage_2_test_images']);
  }
  const records: CxrRecord[] = [];
  const splitOf = new Map<string, Split>();
  for (const [split, file, imagesDir] of sources) {
    if (file === undefined) continue;
    let cId = 0;
    let cTarget = 0;
    const targets = new Map<string, (number | null)[]>();
    await scanTable(
      file,
      (h) => {
        [cId, cTarget] = requireColumns(h, ['patientId', 'Target'], `RSNA's ${path.basename(file)}`) as [number, number];
      },
      (cells, line, row) => {
        const id = (cells[cId] as string).trim();
        if (id === '') throw new DataError('empty patientId', { file, line, row, column: 'patientId' });
        const prev = splitOf.get(id);
        if (prev !== undefined && prev !== split) throw new DataError(`patientId '${id}' is also in the ${prev} labels`, { file, line, row, column: 'patientId' });
        splitOf.set(id, split);
        const t = parseBinaryCell(cells[cTarget] as string, { file, line, row, column: 'Target' });
        let list = targets.get(id);
        if (list === undefined) targets.set(id, (list = []));
        list.push(t);
      },
    );
    const dir = path.resolve(base, imagesDir);
    for (const [id, list] of targets) {
      const h = headers?.get(id);
      records.push({
        id,
        dataset: 'rsna',
        path: path.join(dir, `${id}.dcm`),
        patient: id,
        ...(h?.view !== undefined ? { view: h.view } : {}),
        ...(h?.sex !== undefined ? { sex: h.sex } : {}),
        ...(h?.age !== undefined ? { age: h.age } : {}),
        labels: { [RSNA_1[0] as string]: majorityVote(list) },
        split,
      });
    }
  }
  return finishRecords(records, opts, 'RSNA Pneumonia');
}
