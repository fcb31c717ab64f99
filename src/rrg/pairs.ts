/**
 * Generated and reference reports as evaluation pairs: the files `cxformer evaluate --task report` reads, from any
 * model (the captioner's predictions.jsonl, another toolkit's output, a CSV).
 *
 * Predictions
 * - JSON Lines (`.jsonl`, `.json` with one object per line): one object per report with an id (`id`, else `Path`,
 *   `image` or `study_id`; string or integer), the generated text (`generated`, else `hypothesis`, `prediction`,
 *   `report`) and optionally the reference (`reference`: a string or an array of strings) and a patient id
 *   (`patient`) for patient-level bootstrap resampling. Blank lines are skipped.
 * - CSV (any other extension): `--id-column` (default the first of `id`, `Path`) and `--column` (default the first
 *   of `generated`, `hypothesis`, `prediction`, `Findings`), optional `reference` and `patient` columns.
 * References (`--references`, when the predictions carry none, or to override them): a CSV such as a phantom
 * folder's reports.csv (`Path,Findings`) or MIMIC-style `id,report`, or JSON Lines with `id` and `reference`/`report`.
 *
 * Rules: ids are unique in each file (a duplicate is an error naming both lines); every prediction needs a
 * reference (the missing ids are listed); references without a prediction are ignored but counted; an empty
 * generated text is a valid (poor) prediction, an empty reference is an error (no metric is meaningful on it).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import { parseCsv } from '../data/csv.js';
import { DataError } from '../data/errors.js';
import { quoteList } from '../datasets/table.js';

/** One evaluation pair. */
export interface ReportPair {
  id: string;
  /** The generated report. */
  hypothesis: string;
  /** One or more references. */
  references: string[];
  /** Patient id for patient-level resampling, when known. */
  patient?: string;
}

/** What the files held and how they were joined. */
export interface PairSummary {
  predictionsFile: string;
  referencesFile?: string;
  pairs: number;
  /** References in the references file that no prediction asked for. */
  unusedReferences: number;
  /** Pairs whose generated text is empty. */
  emptyHypotheses: number;
}

export interface ReadPairsOptions {
  /** The references file (CSV or JSON Lines); overrides references inside the predictions. */
  references?: string;
  /** CSV id column of both files. */
  idColumn?: string;
  /** CSV text column of the predictions file. */
  column?: string;
  /** CSV text column of the references file. */
  referenceColumn?: string;
}

const ID_KEYS = ['id', 'Path', 'image', 'study_id'];
const HYP_KEYS = ['generated', 'hypothesis', 'prediction', 'report'];
const REF_KEYS = ['reference', 'references', 'report', 'Findings', 'findings'];
const HYP_COLUMNS = ['generated', 'hypothesis', 'prediction', 'Findings'];

interface Row {
  id: string;
  text?: string | string[];
  reference?: string[];
  patient?: string;
  line: number;
}

function isJsonLines(file: string): boolean {
  return /\.(jsonl|ndjson|json)$/i.test(file);
}

function idOf(v: unknown, file: string, line: number, key: string): string {
  if (typeof v === 'string' && v !== '') return v;
  if (typeof v === 'number' && Number.isInteger(v)) return String(v);
  throw new DataError(`'${key}' must be a non-empty string or an integer, found ${JSON.stringify(v)}`, { file, line });
}

function textsOf(v: unknown, file: string, line: number, key: string, many: boolean): string | string[] {
  if (typeof v === 'string') return v;
  if (many && Array.isArray(v) && v.length > 0 && v.every((s) => typeof s === 'string')) return v as string[];
  throw new DataError(`'${key}' must be a string${many ? ' or a non-empty array of strings' : ''}, found ${JSON.stringify(v)?.slice(0, 80)}`, { file, line });
}

/** Reads JSON Lines rows; `textKeys` in order of preference. */
function jsonRows(text: string, file: string, textKeys: readonly string[], what: string): Row[] {
  const rows: Row[] = [];
  text.split(/\r?\n/).forEach((raw, k) => {
    const line = k + 1;
    if (raw.trim() === '') return;
    let o: unknown;
    try {
      o = JSON.parse(raw);
    } catch (e) {
      throw new DataError(`not a JSON object per line (${(e as Error).message})`, { file, line });
    }
    if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new DataError(`expected a JSON object, found ${JSON.stringify(o)?.slice(0, 80)}`, { file, line });
    const obj = o as Record<string, unknown>;
    const idKey = ID_KEYS.find((key) => key in obj);
    if (idKey === undefined) throw new DataError(`no id: expected one of the keys ${quoteList(ID_KEYS)}, found ${quoteList(Object.keys(obj))}`, { file, line });
    const textKey = textKeys.find((key) => key in obj);
    if (textKey === undefined) throw new DataError(`no ${what}: expected one of the keys ${quoteList(textKeys)}, found ${quoteList(Object.keys(obj))}`, { file, line });
    const row: Row = { id: idOf(obj[idKey], file, line, idKey), text: textsOf(obj[textKey], file, line, textKey, what === 'reference'), line };
    if (what !== 'reference' && 'reference' in obj) {
      const r = textsOf(obj.reference, file, line, 'reference', true);
      row.reference = typeof r === 'string' ? [r] : r;
    }
    if ('patient' in obj) row.patient = idOf(obj.patient, file, line, 'patient');
    rows.push(row);
  });
  return rows;
}

function csvRows(text: string, file: string, idColumn: string | undefined, column: string | undefined, textColumns: readonly string[], what: string): Row[] {
  const t = parseCsv(text, file);
  const pick = (wanted: string | undefined, candidates: readonly string[], role: string): number => {
    const names = wanted !== undefined ? [wanted] : candidates;
    const i = names.map((n) => t.header.indexOf(n)).find((k) => k >= 0);
    if (i === undefined) {
      throw new DataError(`no ${role} column: expected ${wanted !== undefined ? `'${wanted}'` : `one of ${quoteList(candidates)}`}; the columns found are: ${quoteList(t.header)}`, { file, line: 1 });
    }
    return i;
  };
  const idCol = pick(idColumn, ['id', 'Path'], 'id');
  const textCol = pick(column, textColumns, what);
  const refCol = what === 'reference' ? -1 : t.header.indexOf('reference');
  const patCol = t.header.indexOf('patient');
  return t.rows.map((cells, k) => {
    const line = t.lines[k] as number;
    const id = cells[idCol] as string;
    if (id === '') throw new DataError('empty id', { file, line, column: t.header[idCol] as string });
    const row: Row = { id, text: cells[textCol] as string, line };
    if (refCol >= 0) row.reference = [cells[refCol] as string];
    if (patCol >= 0 && cells[patCol] !== '') row.patient = cells[patCol] as string;
    return row;
  });
}

function indexUnique(rows: readonly Row[], file: string): Map<string, Row> {
  const m = new Map<string, Row>();
  for (const r of rows) {
    const was = m.get(r.id);
    if (was) throw new DataError(`duplicate id '${r.id}' (first on line ${was.line})`, { file, line: r.line });
    m.set(r.id, r);
  }
  return m;
}

async function readText(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new DataError(`cannot read the ${what} file (${err.code ?? err.message})`, { file });
  }
}

/**
 * Reads predictions (and references) and joins them by id, in the predictions' order.
 * @throws DataError naming the file, line and key on malformed input, duplicates, or predictions without a reference
 */
export async function readReportPairs(predictions: string, opts: ReadPairsOptions = {}): Promise<{ pairs: ReportPair[]; summary: PairSummary }> {
  const pText = await readText(predictions, 'predictions');
  const preds = isJsonLines(predictions) ? jsonRows(pText, predictions, HYP_KEYS, 'generated text') : csvRows(pText, predictions, opts.idColumn, opts.column, HYP_COLUMNS, 'generated text');
  if (preds.length === 0) throw new DataError('no predictions: the file holds no rows', { file: predictions });
  indexUnique(preds, predictions);
  let refs: Map<string, Row> | undefined;
  if (opts.references !== undefined) {
    const f = opts.references;
    const rText = await readText(f, 'references');
    const rows = isJsonLines(f) ? jsonRows(rText, f, REF_KEYS, 'reference') : csvRows(rText, f, opts.idColumn, opts.referenceColumn, REF_KEYS, 'reference');
    refs = indexUnique(rows, f);
  }
  const missing: string[] = [];
  const pairs: ReportPair[] = [];
  for (const p of preds) {
    const r = refs?.get(p.id);
    const refTexts = r ? (typeof r.text === 'string' ? [r.text] : (r.text as string[])) : p.reference;
    if (refTexts === undefined) {
      missing.push(p.id);
      continue;
    }
    const where = r ? { file: opts.references as string, line: r.line } : { file: predictions, line: p.line };
    if (refTexts.some((s) => s.trim() === '')) throw new DataError(`the reference of '${p.id}' is empty: a report metric needs a reference text`, where);
    const pair: ReportPair = { id: p.id, hypothesis: p.text as string, references: refTexts };
    const patient = p.patient ?? r?.patient;
    if (patient !== undefined) pair.patient = patient;
    pairs.push(pair);
  }
  if (missing.length > 0) {
    const src = opts.references !== undefined ? `in ${opts.references}` : `in ${predictions} (no 'reference' key; pass --references FILE)`;
    throw new DataError(`${missing.length} of ${preds.length} predictions have no reference ${src}: ${quoteList(missing.slice(0, 5))}${missing.length > 5 ? ', …' : ''}`, { file: predictions });
  }
  const summary: PairSummary = {
    predictionsFile: path.resolve(predictions),
    pairs: pairs.length,
    unusedReferences: refs ? refs.size - pairs.length : 0,
    emptyHypotheses: pairs.filter((p) => p.hypothesis.trim() === '').length,
  };
  if (opts.references !== undefined) summary.referencesFile = path.resolve(opts.references);
  return { pairs, summary };
}
