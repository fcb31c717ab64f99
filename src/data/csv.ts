/**
 * A small RFC 4180 CSV reader and writer: comma separator, fields optionally in double quotes with `""` as an
 * escaped quote, quoted fields may hold commas and line breaks; records end in CRLF, LF or a lone CR; a leading
 * UTF-8 byte order mark is dropped; blank lines are skipped. The reader is strict: a quote inside an unquoted field,
 * text after a closing quote, an unterminated quote, a duplicate or empty header name and a record with the wrong
 * number of fields are errors naming the file, the line and the column.
 */
import { DataError } from './errors.js';

/** A parsed CSV file: header, data rows (each with as many cells as the header) and the line each row starts on. */
export interface CsvTable {
  header: string[];
  rows: string[][];
  /** 1-based physical line on which each data row starts (rows may span lines inside quotes). */
  lines: number[];
}

/**
 * Parses CSV text.
 * @param text the file contents
 * @param file the file name used in error messages
 * @throws DataError on malformed input
 */
export function parseCsv(text: string, file = '<csv>'): CsvTable {
  const s = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const records: { cells: string[]; line: number }[] = [];
  const n = s.length;
  let i = 0;
  let line = 1;
  while (i < n) {
    const recLine = line;
    const cells: string[] = [];
    // One record: fields separated by commas, up to a line end or EOF.
    for (;;) {
      let cell = '';
      if (s.charCodeAt(i) === 34 /* " */) {
        const qLine = line;
        i++;
        for (;;) {
          if (i >= n) throw new DataError(`unterminated quoted field (the quote opens on line ${qLine})`, { file, line: qLine, column: `#${cells.length + 1}` });
          const c = s.charCodeAt(i);
          if (c === 34) {
            if (s.charCodeAt(i + 1) === 34) {
              cell += '"';
              i += 2;
              continue;
            }
            i++;
            break;
          }
          if (c === 10 || (c === 13 && s.charCodeAt(i + 1) !== 10)) line++;
          cell += s[i];
          i++;
        }
        const c = s.charCodeAt(i);
        if (i < n && c !== 44 && c !== 10 && c !== 13) {
          throw new DataError(`unexpected character '${s[i]}' after a closing quote (a quote inside a quoted field must be doubled)`, { file, line, column: `#${cells.length + 1}` });
        }
      } else {
        const from = i;
        while (i < n) {
          const c = s.charCodeAt(i);
          if (c === 44 || c === 10 || c === 13) break;
          if (c === 34) throw new DataError(`quote inside an unquoted field (quote the whole field and double the quote)`, { file, line, column: `#${cells.length + 1}` });
          i++;
        }
        cell = s.slice(from, i);
      }
      cells.push(cell);
      if (i < n && s.charCodeAt(i) === 44) {
        i++;
        continue;
      }
      break;
    }
    // Line end.
    if (i < n) {
      if (s.charCodeAt(i) === 13 && s.charCodeAt(i + 1) === 10) i += 2;
      else i++;
      line++;
    }
    if (cells.length === 1 && cells[0] === '') continue; // blank line
    records.push({ cells, line: recLine });
  }
  const head = records.shift();
  if (!head) throw new DataError('empty CSV file: no header row', { file });
  const header = head.cells;
  const seen = new Map<string, number>();
  header.forEach((name, k) => {
    if (name.trim() === '') throw new DataError(`header column ${k + 1} has an empty name`, { file, line: head.line });
    const prev = seen.get(name);
    if (prev !== undefined) throw new DataError(`duplicate header name '${name}' (columns ${prev + 1} and ${k + 1})`, { file, line: head.line });
    seen.set(name, k);
  });
  const rows: string[][] = [];
  const lines: number[] = [];
  records.forEach((r, k) => {
    if (r.cells.length !== header.length) {
      throw new DataError(`has ${r.cells.length} fields, expected ${header.length} (${header.join(', ')})`, { file, line: r.line, row: k + 1 });
    }
    rows.push(r.cells);
    lines.push(r.line);
  });
  return { header, rows, lines };
}

/** Quotes a field when it holds a comma, a quote, a line break or leading/trailing spaces. */
export function csvField(v: string): string {
  return /[",\r\n]|^\s|\s$/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

/** Formats a header and rows as CSV text with LF line ends and a final line end. */
export function formatCsv(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const out = [header.map(csvField).join(',')];
  for (const r of rows) out.push(r.map(csvField).join(','));
  return `${out.join('\n')}\n`;
}
