/**
 * The `labels:FILE` labeler: labels computed elsewhere (CheXbert, f1chexbert, the CheXpert labeler, MIMIC-CXR's
 * chexpert.csv, another `cxformer label` run), read from a file and looked up by report id (or by report text).
 *
 * Formats:
 * - CSV (any other extension): a key column and one column per class. The key column is `idColumn` when given, else
 *   the first of `Path`, `id`, `study_id`, `dicom_id`, `Report Impression`, `Reports` in the header. `Report
 *   Impression` (CheXbert `src/label.py`'s output) and `Reports` (the CheXpert labeler's `labeled_reports.csv`) hold the
 *   report TEXT: such a file is looked up by text. Class columns: `classes` when given (each must exist), else every
 *   header name that is a CheXbert-14 or phantom class; other columns (Sex, Age, Split, …) are ignored.
 * - JSON (`.json`): an object keyed by report id whose values are rows (arrays of cells in `classes` order, default
 *   CheXbert's 14) or objects `{class: cell}`; or an array of such values (ids "0", "1", …).
 * - f1chexbert's `hyps_filename` / `refs_filename` text (`.txt`): one Python list literal of 14 values per line, in
 *   CheXbert order (`[0, 1, '', …]`), ids "0", "1", … by line. Its default `mode="rrg"` already binarised the cells
 *   (1 = positive or uncertain, 0 = negative or blank); `mode="classification"` keeps 1/0/-1/''.
 * Cells: `1`/`1.0` positive, `0`/`0.0` negative, `-1`/`-1.0` uncertain, blank / `nan` / null / `''` not mentioned.
 * With `codes: 'chexbert'` numeric cells are CheXbert's head codes instead (0 blank, 1 positive, 2 negative,
 * 3 uncertain: stanfordmlgroup/CheXbert `src/label.py`), as a model's raw argmax would be saved.
 *
 * Errors name the file, line/row and column (or key), what was expected and what was found; ids that the file
 * lacks are listed.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseCsv } from '../../data/csv.js';
import { DataError } from '../../data/errors.js';
import { PHANTOM_CLASSES } from './phantom.js';
import { CHEXBERT_14, cellFromChexbertCode, type DiagnosingLabeler, type LabelCell, type LabelRun } from './types.js';

export interface ImportOptions {
  /** Key column of a CSV file. */
  idColumn?: string;
  /** The classes to read, in output order (default: those found, see the module comment). */
  classes?: readonly string[];
  /** How numeric cells are coded. @default 'cells' */
  codes?: 'cells' | 'chexbert';
}

export interface ImportedLabels {
  file: string;
  /** `id`: rows keyed by report id; `text`: keyed by the report text (trimmed). */
  keyedBy: 'id' | 'text';
  /** The key column (CSV), or 'id' / 'line'. */
  keyColumn: string;
  classes: string[];
  rows: Map<string, LabelCell[]>;
}

/** CSV key columns tried in order; the last two hold report text. */
export const ID_COLUMNS = ['Path', 'id', 'study_id', 'dicom_id', 'Report Impression', 'Reports'] as const;
const TEXT_COLUMNS = new Set(['Report Impression', 'Reports']);
const KNOWN = new Set([...CHEXBERT_14, ...PHANTOM_CLASSES]);

/** One cell of the file → LabelCell, or undefined when it is not a valid cell. */
export function parseCell(v: unknown, codes: 'cells' | 'chexbert' = 'cells'): LabelCell | undefined {
  if (v === null || v === '') return null;
  let x: number;
  if (typeof v === 'number') x = v;
  else if (typeof v === 'string') {
    const s = v.trim();
    if (s === '' || /^nan$/i.test(s)) return null;
    if (!/^-?\d+(\.0*)?$/.test(s)) return undefined;
    x = Number(s);
  } else return undefined;
  if (codes === 'chexbert') return cellFromChexbertCode(x);
  return x === 1 ? 1 : x === 0 ? 0 : x === -1 ? -1 : undefined;
}

const expectedCells = (codes: 'cells' | 'chexbert') =>
  codes === 'chexbert' ? "a CheXbert code 0 (blank), 1 (positive), 2 (negative) or 3 (uncertain)" : "1, 1.0, 0, 0.0, -1, -1.0 or blank";

function fromCsv(file: string, text: string, o: ImportOptions): ImportedLabels {
  const codes = o.codes ?? 'cells';
  const t = parseCsv(text, file);
  const key = o.idColumn ?? ID_COLUMNS.find((c) => t.header.includes(c));
  if (key === undefined || !t.header.includes(key)) {
    throw new DataError(
      o.idColumn !== undefined
        ? `no id column '${o.idColumn}' (header: ${t.header.join(', ')})`
        : `no id column: expected one of ${ID_COLUMNS.join(', ')} (or name it), header: ${t.header.join(', ')}`,
      { file, line: 1 },
    );
  }
  const classes = o.classes ? [...o.classes] : t.header.filter((h) => KNOWN.has(h));
  const missing = classes.filter((c) => !t.header.includes(c));
  if (missing.length) throw new DataError(`no column for class(es) ${missing.join(', ')} (header: ${t.header.join(', ')})`, { file, line: 1 });
  if (classes.length === 0) {
    throw new DataError(`no label columns: expected CheXpert/CheXbert or phantom class names (e.g. ${CHEXBERT_14.slice(0, 3).join(', ')}), header: ${t.header.join(', ')}`, { file, line: 1 });
  }
  const kCol = t.header.indexOf(key);
  const cols = classes.map((c) => t.header.indexOf(c));
  const keyedBy = TEXT_COLUMNS.has(key) ? 'text' : 'id';
  const rows = new Map<string, LabelCell[]>();
  const firstRow = new Map<string, number>();
  t.rows.forEach((r, i) => {
    const id = keyedBy === 'text' ? (r[kCol] as string).trim() : (r[kCol] as string);
    const where = { file, line: t.lines[i], row: i + 1 };
    const prev = firstRow.get(id);
    if (prev !== undefined) throw new DataError(`duplicate ${keyedBy === 'text' ? 'report text' : 'id'} '${id.slice(0, 60)}' (first on row ${prev})`, { ...where, column: key });
    firstRow.set(id, i + 1);
    rows.set(
      id,
      cols.map((k, j) => {
        const c = parseCell(r[k], codes);
        if (c === undefined) throw new DataError(`expected ${expectedCells(codes)}, found '${r[k]}'`, { ...where, column: classes[j] });
        return c;
      }),
    );
  });
  return { file, keyedBy, keyColumn: key, classes, rows };
}

function fromValues(file: string, entries: [string, unknown][], o: ImportOptions, keyColumn: string): ImportedLabels {
  const codes = o.codes ?? 'cells';
  const classes = o.classes ? [...o.classes] : [...CHEXBERT_14];
  const rows = new Map<string, LabelCell[]>();
  for (const [id, v] of entries) {
    const at = keyColumn === 'line' ? `line ${Number(id) + 1}` : `id '${id}'`;
    let raw: unknown[];
    if (Array.isArray(v)) {
      if (v.length !== classes.length) throw new DataError(`${at}: expected ${classes.length} cells (${classes.join(', ')}), found ${v.length}`, { file });
      raw = v;
    } else if (v !== null && typeof v === 'object') {
      const obj = v as Record<string, unknown>;
      const unknown = Object.keys(obj).filter((k) => !classes.includes(k));
      if (unknown.length) throw new DataError(`${at}: unknown class key(s) ${unknown.join(', ')} (classes: ${classes.join(', ')})`, { file });
      raw = classes.map((c) => (c in obj ? obj[c] : null));
    } else throw new DataError(`${at}: expected an array of cells or an object {class: cell}, found ${JSON.stringify(v)}`, { file });
    rows.set(
      id,
      raw.map((x, j) => {
        const c = parseCell(x, codes);
        if (c === undefined) throw new DataError(`${at}, class '${classes[j]}': expected ${expectedCells(codes)}, found ${JSON.stringify(x)}`, { file });
        return c;
      }),
    );
  }
  return { file, keyedBy: 'id', keyColumn, classes, rows };
}

/** Parses a labels file's text (the format from the extension: .json, .txt = f1chexbert lines, else CSV). */
export function parseLabels(text: string, file: string, o: ImportOptions = {}): ImportedLabels {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.json') {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new DataError(`not valid JSON: ${(e as Error).message}`, { file });
    }
    if (Array.isArray(json)) return fromValues(file, json.map((v, i) => [String(i), v]), o, 'id');
    if (json !== null && typeof json === 'object') return fromValues(file, Object.entries(json), o, 'id');
    throw new DataError(`expected an object keyed by report id or an array of label rows, found ${JSON.stringify(json)}`, { file });
  }
  if (ext === '.txt') {
    const lines = text.split(/\r?\n/);
    while (lines.length && lines[lines.length - 1]!.trim() === '') lines.pop();
    const entries: [string, unknown][] = lines.map((l, i) => {
      try {
        // Python list literals: single-quoted '' for blank; nothing else is quoted.
        return [String(i), JSON.parse(l.trim().replace(/'([^']*)'/g, (_, s: string) => JSON.stringify(s)))];
      } catch {
        throw new DataError(`line ${i + 1}: expected a list such as [0, 1, '', -1] (f1chexbert's label file), found '${l.slice(0, 60)}'`, { file });
      }
    });
    return fromValues(file, entries, o, 'line');
  }
  return fromCsv(file, text, o);
}

/** Reads a labels file (see the module comment). */
export function readLabels(file: string, o: ImportOptions = {}): ImportedLabels {
  return parseLabels(readFileSync(file, 'utf8'), file, o);
}

/** Looks up rows by key (ids, or report texts for a text-keyed file). @throws DataError listing the missing keys */
export function lookupLabels(labels: ImportedLabels, keys: readonly string[]): LabelCell[][] {
  const k = labels.keyedBy === 'text' ? keys.map((s) => s.trim()) : keys;
  const missing = k.filter((x) => !labels.rows.has(x));
  if (missing.length) {
    const show = missing.slice(0, 10).map((x) => `'${x.length > 60 ? `${x.slice(0, 60)}…` : x}'`);
    throw new DataError(
      `${missing.length} of ${k.length} report ${labels.keyedBy === 'text' ? 'texts' : 'ids'} have no row (key column ${labels.keyColumn}): ${show.join(', ')}${missing.length > 10 ? ', …' : ''}`,
      { file: labels.file },
    );
  }
  return k.map((x) => labels.rows.get(x)!);
}

/** An imported-labels labeler. `label(texts)` works for a text-keyed file; `labelIds(ids)` for an id-keyed one. */
export interface ImportLabeler extends DiagnosingLabeler {
  labels: ImportedLabels;
  labelIds(ids: readonly string[]): LabelCell[][];
}

export function importLabeler(file: string, o: ImportOptions = {}): ImportLabeler {
  const labels = readLabels(file, o);
  const byText = (texts: readonly string[]): LabelRun => {
    if (labels.keyedBy !== 'text') {
      throw new DataError(`rows are keyed by id (column ${labels.keyColumn}), not by report text: look them up by report id`, { file });
    }
    return { classes: labels.classes, rows: lookupLabels(labels, texts), diagnostics: [] };
  };
  return {
    name: `labels:${file}`,
    version: `imported (${labels.keyColumn}, ${labels.rows.size} rows)`,
    classes: labels.classes,
    labels,
    analyze: byText,
    label: (texts) => byText(texts).rows,
    labelIds: (ids) => lookupLabels(labels, ids),
  };
}
