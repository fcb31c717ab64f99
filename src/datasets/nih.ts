/**
 * NIH ChestX-ray14 as downloaded (NIH Box folder or the Kaggle copy):
 *   Data_Entry_2017_v2020.csv or Data_Entry_2017.csv  Image Index, Finding Labels, Follow-up #, Patient ID, Patient Age,
 *                                                      Patient Gender, View Position, OriginalImage[Width, Height],
 *                                                      OriginalImagePixelSpacing[x, y]
 *   train_val_list.txt, test_list.txt                 the official split: one Image Index per line
 *   images/<Image Index>                               (Box: images_001.tar.gz … extract into images/; Kaggle:
 *                                                      images_001/images/ … images_012/images/, found automatically)
 * `Finding Labels` joins findings with '|' ('Cardiomegaly|Effusion') or says 'No Finding'. Every record gets all 14
 * classes of `NIH_14` (1 when listed, else 0) plus 'No Finding'. CXformer matches class names as substrings of
 * `Finding Labels`; no class name is a substring of another, so this exact match gives the same labels.
 * The official lists have no validation split: train_val_list.txt gives 'train' (carve a validation set with
 * `assignSplits`). CXformer's own Data_Entry_2017_v2020_{TRAIN,VAL,TEST}.csv (construction UNVERIFIED) load through
 * `splitCsvs`.
 *
 * Confirmed: the column names of both Data_Entry versions (public copies) and the list file names. The 2017 file's
 * header is not quoted, so `OriginalImage[Width,Height]` reads as two columns, and its rows may end in a comma (an
 * extra unnamed column); both are harmless here. `Patient Age` may be a DICOM age string ('058Y') in old copies.
 */
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';

import { DataError } from '../data/errors.js';
import { NIH_14 } from './classes.js';
import { finishRecords, IdRegistry, normalizeSex, normalizeView, parseAge } from './common.js';
import { findFile, isDirectory, optionalColumn, quoteList, requireColumns, scanTable } from './table.js';
import { type AdapterOptions, type CxrRecord, cxrRecord, type Split } from './types.js';

export interface NihOptions extends AdapterOptions {
  /** Label file. @default the first of 'Data_Entry_2017_v2020.csv', 'Data_Entry_2017.csv' */
  entryCsv?: string;
  /** @default 'train_val_list.txt' (optional) */
  trainValList?: string;
  /** @default 'test_list.txt' (optional) */
  testList?: string;
  /** Data_Entry-format files giving one split each (replaces entryCsv and the lists). */
  splitCsvs?: Partial<Record<Split, string>>;
  /** Image folder under the root. Default: 'images', or the Kaggle layout images_NNN/images/ when that is what exists. */
  imagesDir?: string;
  /** Keep only these splits (records without a split are dropped then). */
  splits?: Split[];
}

const NO_FINDING = 'No Finding';
const KNOWN = new Set([...NIH_14, NO_FINDING]);

/** Reads an image list (one name per line; blank lines ignored). */
async function readList(file: string): Promise<string[]> {
  const text = await readFile(file, 'utf8');
  return text
    .split(/\r\n|\n|\r/)
    .map((l) => l.trim())
    .filter((l) => l !== '');
}

/** Maps image names to their folder, for the Kaggle layout images_NNN/images/. */
async function kaggleIndex(base: string): Promise<Map<string, string> | undefined> {
  let entries: string[];
  try {
    entries = (await readdir(base)).filter((e) => /^images_\d+$/.test(e)).sort();
  } catch {
    return undefined;
  }
  if (entries.length === 0) return undefined;
  const index = new Map<string, string>();
  for (const e of entries) {
    const inner = path.join(base, e, 'images');
    const dir = (await isDirectory(inner)) ? inner : path.join(base, e);
    for (const f of await readdir(dir)) if (!index.has(f)) index.set(f, dir);
  }
  return index;
}

/**
 * Loads NIH ChestX-ray14.
 * @throws DataError for a missing file or column, an unknown finding in `Finding Labels`, or a repeated image
 */
export async function loadNih(root: string, opts: NihOptions = {}): Promise<CxrRecord[]> {
  const base = path.resolve(root);
  const sources: [string, Split | undefined][] = [];
  const splitOf = new Map<string, Split>();
  if (opts.splitCsvs !== undefined) {
    for (const s of ['train', 'valid', 'test'] as const) {
      const f = opts.splitCsvs[s];
      if (f !== undefined) sources.push([await findFile(base, [f], `NIH ${s} file`, true), s]);
    }
    if (sources.length === 0) throw new DataError('splitCsvs names no file');
  } else {
    const candidates = opts.entryCsv !== undefined ? [opts.entryCsv] : ['Data_Entry_2017_v2020.csv', 'Data_Entry_2017.csv'];
    sources.push([await findFile(base, candidates, 'NIH Data_Entry file', true), undefined]);
    const lists: [string, Split][] = [
      [opts.trainValList ?? 'train_val_list.txt', 'train'],
      [opts.testList ?? 'test_list.txt', 'test'],
    ];
    for (const [name, s] of lists) {
      const explicit = s === 'train' ? opts.trainValList !== undefined : opts.testList !== undefined;
      const f = await findFile(base, [name], `NIH ${name}`, explicit);
      if (f === undefined) continue;
      for (const img of await readList(f)) {
        const prev = splitOf.get(img);
        if (prev !== undefined && prev !== s) throw new DataError(`image '${img}' is in both the train_val and the test list`, { file: f });
        splitOf.set(img, s);
      }
    }
  }

  let imageDir: (name: string) => string;
  if (opts.imagesDir !== undefined) {
    const d = path.resolve(base, opts.imagesDir);
    imageDir = () => d;
  } else {
    const flat = path.join(base, 'images');
    const index = (await isDirectory(flat)) ? undefined : await kaggleIndex(base);
    imageDir = index === undefined ? () => flat : (name) => index.get(name) ?? flat;
  }

  const keep = opts.splits === undefined ? undefined : new Set<Split>(opts.splits);
  const ids = new IdRegistry('image');
  const records: CxrRecord[] = [];
  for (const [file, fileSplit] of sources) {
    let c: number[] = [];
    let cAge: number | undefined;
    let cSex: number | undefined;
    await scanTable(
      file,
      (h) => {
        c = requireColumns(h, ['Image Index', 'Finding Labels', 'Patient ID', 'View Position'], `NIH's ${path.basename(file)}`);
        cAge = optionalColumn(h, 'Patient Age');
        cSex = optionalColumn(h, 'Patient Gender');
      },
      (cells, line, row) => {
        const id = (cells[c[0] as number] as string).trim();
        if (id === '') throw new DataError('empty Image Index', { file, line, row, column: 'Image Index' });
        ids.add(id, { file, line, row, column: 'Image Index' });
        const split = fileSplit ?? splitOf.get(id);
        if (keep !== undefined && (split === undefined || !keep.has(split))) return;
        const findings = (cells[c[1] as number] as string)
          .split('|')
          .map((f) => f.trim())
          .filter((f) => f !== '');
        for (const f of findings) {
          if (!KNOWN.has(f)) {
            throw new DataError(`unknown finding '${f}' (known: ${quoteList([...KNOWN])})`, { file, line, row, column: 'Finding Labels' });
          }
        }
        const labels: Record<string, number | null> = {};
        for (const name of NIH_14) labels[name] = findings.includes(name) ? 1 : 0;
        labels[NO_FINDING] = findings.includes(NO_FINDING) ? 1 : 0;
        const patient = (cells[c[2] as number] as string).trim();
        if (patient === '') throw new DataError('empty Patient ID', { file, line, row, column: 'Patient ID' });
        const view = normalizeView(cells[c[3] as number]);
        const age = cAge === undefined ? undefined : parseAge(cells[cAge]);
        const sex = cSex === undefined ? undefined : normalizeSex(cells[cSex]);
        records.push(cxrRecord({ id, dataset: 'nih', path: path.join(imageDir(id), id), patient, view, sex, age, labels, split }));
      },
    );
  }
  return finishRecords(records, opts, 'NIH ChestX-ray14');
}
