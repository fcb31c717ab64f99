/**
 * Reading the label tables of the public CXR datasets as distributed: `.csv` or gzip-compressed `.csv.gz`, streamed
 * in chunks so that multi-gigabyte files (CheXmask's RLE tables, MIMIC's metadata) never need to fit in one string.
 * Each chunk is cut at a line end outside quotes and parsed with the project's strict RFC 4180 parser
 * (`src/data/csv.ts`), so errors name the file, the physical line, the data row and the column.
 *
 * Header repair: pandas-written files sometimes carry an unnamed index column or a trailing comma (an empty header
 * name). Empty names are replaced by pandas' own `Unnamed: k` (k = 0-based column index) instead of failing.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { createGunzip } from 'node:zlib';

import { csvField, parseCsv } from '../data/csv.js';
import { DataError } from '../data/errors.js';

/** A table's header and a name → column index lookup. */
export interface TableHeader {
  /** The file, as given. */
  file: string;
  /** Column names (empty names repaired to `Unnamed: k`). */
  header: string[];
  /** Name → 0-based column index. */
  index: Map<string, number>;
}

/** A fully read table. */
export interface Table extends TableHeader {
  rows: string[][];
  /** Physical line on which each row starts. */
  lines: number[];
}

export interface ScanOptions {
  /** Characters parsed per chunk (tests use small values to exercise chunk boundaries). @default 8 Mi */
  chunkChars?: number;
}

/** Called for each data row: its cells (as many as header names), physical line and 1-based data row number. */
export type RowVisitor = (cells: string[], line: number, row: number) => void;

/** Splits one header record into names (RFC 4180 quoting; the caller guarantees it is a complete record). */
function splitHeaderRecord(text: string): string[] {
  const names: string[] = [];
  let cell = '';
  let i = 0;
  let quoted = false;
  while (i < text.length) {
    const c = text[i] as string;
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          cell += '"';
          i += 2;
          continue;
        }
        quoted = false;
      } else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      names.push(cell);
      cell = '';
    } else cell += c;
    i++;
  }
  names.push(cell);
  return names;
}

/** Counts physical line ends the way `parseCsv` does: LF, CRLF and a lone CR each end one line. */
function countLineEnds(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 10) n++;
    else if (c === 13 && s.charCodeAt(i + 1) !== 10) n++;
  }
  return n;
}

/** The `file: line L (row R), column 'C': ` prefix DataError puts before a message. */
function prefixOf(e: DataError): string {
  return new DataError('', { file: e.file, line: e.line, row: e.row, column: e.column }).message;
}

/**
 * Streams a CSV (or gzip-compressed CSV, by the `.gz` extension) and calls `onHeader` once, then `onRow` for every
 * data row in order.
 * @returns the header
 * @throws DataError when the file is missing, not gzip while named `.gz`, empty, or malformed (file, line, row and
 *   column are named); errors thrown by the callbacks propagate unchanged
 */
export async function scanTable(
  file: string,
  onHeader: (h: TableHeader) => void,
  onRow: RowVisitor,
  options: ScanOptions = {},
): Promise<TableHeader> {
  const chunkChars = Math.max(1, options.chunkChars ?? 8 << 20);
  try {
    const st = await stat(file);
    if (!st.isFile()) throw new DataError('not a file', { file });
  } catch (e) {
    if (e instanceof DataError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new DataError(code === 'ENOENT' ? 'file not found' : (e as Error).message, { file });
  }

  let header: TableHeader | undefined;
  let headerText = ''; // the repaired header record, prepended to every chunk
  let headerLines = 0; // physical lines the header record spans in `headerText`
  let nextLine = 1; // physical line number of the first pending character
  let rowsSoFar = 0;

  // Text not parsed yet, kept as pieces (appending to one long string and reading it back would make V8 flatten the
  // growing string on every read, which is quadratic in the chunk size).
  let pieces: string[] = [];
  let pendingLength = 0;
  let inQuote = false;
  let lastCut = -1; // offset just after the last line end outside quotes in the pending text
  let bomChecked = false;

  const parseBody = (body: string): void => {
    if (body.trim() === '') {
      nextLine += countLineEnds(body);
      return;
    }
    // `headerText` + '\n' puts the body's first line on line headerLines + 1 of the parsed text.
    const offset = nextLine - (headerLines + 1);
    let t;
    try {
      t = parseCsv(`${headerText}\n${body}`, file);
    } catch (e) {
      if (!(e instanceof DataError) || e.line === undefined) throw e;
      const raw = e.message.slice(prefixOf(e).length);
      const line = e.line > headerLines ? e.line + offset : e.line;
      const row = e.row !== undefined ? e.row + rowsSoFar : undefined;
      throw new DataError(raw, { file, line, row, column: e.column });
    }
    for (let k = 0; k < t.rows.length; k++) {
      onRow(t.rows[k] as string[], (t.lines[k] as number) + offset, rowsSoFar + k + 1);
    }
    rowsSoFar += t.rows.length;
    nextLine += countLineEnds(body);
  };

  /** Takes the header record off the front of `text` (which holds at least one complete record); returns the rest. */
  const takeHeader = (text: string): string => {
    // Skip blank lines before the header, as parseCsv does.
    let start = 0;
    for (;;) {
      const m = /^(\r\n|\n|\r)/.exec(text.slice(start));
      if (!m) break;
      start += (m[1] as string).length;
      nextLine++;
    }
    let q = false;
    let end = text.length;
    for (let i = start; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === 34) q = !q;
      else if (!q && (c === 10 || c === 13)) {
        end = i;
        break;
      }
    }
    const record = text.slice(start, end);
    if (record === '') return text.slice(end);
    let eol = 0;
    if (text.charCodeAt(end) === 13 && text.charCodeAt(end + 1) === 10) eol = 2;
    else if (end < text.length) eol = 1;
    const names = splitHeaderRecord(record).map((n, k) => (n.trim() === '' ? `Unnamed: ${k}` : n));
    headerText = names.map(csvField).join(',');
    headerLines = countLineEnds(headerText) + 1;
    const parsed = (() => {
      try {
        return parseCsv(headerText, file);
      } catch (e) {
        if (!(e instanceof DataError)) throw e;
        throw new DataError(e.message.slice(prefixOf(e).length), { file, line: nextLine });
      }
    })();
    header = { file, header: parsed.header, index: new Map(parsed.header.map((h, k) => [h, k])) };
    onHeader(header);
    nextLine += countLineEnds(record) + (eol > 0 ? 1 : 0);
    return text.slice(end + eol);
  };

  const flush = (cut: number): void => {
    const pending = pieces.join('');
    let body = pending.slice(0, cut);
    const rest = pending.slice(cut);
    pieces = rest === '' ? [] : [rest];
    pendingLength = rest.length;
    lastCut = -1;
    if (header === undefined) {
      body = takeHeader(body);
      if (header === undefined) {
        nextLine += countLineEnds(body);
        return;
      }
    }
    parseBody(body);
  };

  const feed = (text: string): void => {
    if (!bomChecked && text.length > 0) {
      bomChecked = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (text.length === 0) return;
    // Only the new text is scanned; the quote state carries over from the previous pieces.
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c === 34) inQuote = !inQuote;
      else if (c === 10 && !inQuote) lastCut = pendingLength + i + 1;
    }
    pieces.push(text);
    pendingLength += text.length;
    if (lastCut > 0 && (header === undefined || lastCut >= chunkChars)) flush(lastCut);
  };

  const decoder = new StringDecoder('utf8');
  const source = createReadStream(file);
  const stream = file.toLowerCase().endsWith('.gz') ? source.pipe(createGunzip()) : source;
  try {
    for await (const chunk of stream) feed(decoder.write(chunk as Buffer));
    feed(decoder.end());
  } catch (e) {
    source.destroy();
    if (e instanceof DataError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && code.startsWith('Z_')) throw new DataError(`cannot decompress (${(e as Error).message}); is it really gzip-compressed?`, { file });
    throw e;
  }
  if (pendingLength > 0) flush(pendingLength);
  if (header === undefined) throw new DataError('empty CSV file: no header row', { file });
  return header;
}

/** Reads a whole table (for the small tables; stream big ones with `scanTable`). */
export async function readTable(file: string, options: ScanOptions = {}): Promise<Table> {
  const rows: string[][] = [];
  const lines: number[] = [];
  const h = await scanTable(
    file,
    () => {},
    (cells, line) => {
      rows.push(cells);
      lines.push(line);
    },
    options,
  );
  return { ...h, rows, lines };
}

/** Quoted list of names for messages. */
export function quoteList(names: readonly string[]): string {
  return names.map((n) => `'${n}'`).join(', ');
}

/**
 * The indices of required columns.
 * @param what what the file is, for the message (e.g. "CheXpert's train.csv")
 * @throws DataError naming the missing columns and listing the columns found
 */
export function requireColumns(h: TableHeader, names: readonly string[], what: string): number[] {
  const missing = names.filter((n) => !h.index.has(n));
  if (missing.length > 0) {
    throw new DataError(
      `missing column${missing.length > 1 ? 's' : ''} ${quoteList(missing)} (expected in ${what}); the columns found are: ${quoteList(h.header)}`,
      { file: h.file, line: 1 },
    );
  }
  return names.map((n) => h.index.get(n) as number);
}

/** The index of an optional column, or undefined. */
export function optionalColumn(h: TableHeader, name: string): number | undefined {
  return h.index.get(name);
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}

/** Whether `p` is a folder. */
export async function isDirectory(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Finds a file among candidate names (relative to `root`, or absolute), each also tried with `.gz` added or removed
 * (users often decompress the distributed `.csv.gz`, or compress big `.csv` files).
 * @returns the absolute path, or undefined when none exists and `required` is false
 * @throws DataError listing what was looked for, when none exists and `required` is true
 */
export async function findFile(root: string, candidates: readonly string[], what: string, required: true): Promise<string>;
export async function findFile(root: string, candidates: readonly string[], what: string, required: boolean): Promise<string | undefined>;
export async function findFile(root: string, candidates: readonly string[], what: string, required: boolean): Promise<string | undefined> {
  const tried: string[] = [];
  for (const c of candidates) {
    const base = path.resolve(root, c);
    const variants = base.toLowerCase().endsWith('.gz') ? [base, base.slice(0, -3)] : [base, `${base}.gz`];
    for (const v of variants) {
      tried.push(path.relative(root, v) || v);
      if (await isFile(v)) return v;
    }
  }
  if (!required) return undefined;
  throw new DataError(`${what} not found under ${path.resolve(root)} (looked for ${quoteList(tried)})`);
}
