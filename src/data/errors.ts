/** Errors of the data layer (manifests, CSV, RLE masks, dataset generation). */

/** Where a data error was found: the file, its 1-based physical line, the 1-based data row and the column. */
export interface DataErrorLocation {
  file?: string;
  line?: number;
  row?: number;
  column?: string;
}

/**
 * A problem with the user's data: a missing file, a malformed CSV or RLE string, an empty dataset.
 * The code is `CXF_INPUT`, which the CLI maps to exit status 2 (the user's to fix).
 */
export class DataError extends Error {
  /** Stable error code. */
  readonly code = 'CXF_INPUT';
  readonly file: string | undefined;
  readonly line: number | undefined;
  readonly row: number | undefined;
  readonly column: string | undefined;

  /**
   * @param message what was expected and what was found
   * @param where the location, prefixed to the message as `file: line L (row R), column 'C': `
   */
  constructor(message: string, where: DataErrorLocation = {}) {
    super(`${formatLocation(where)}${message}`);
    this.name = 'DataError';
    this.file = where.file;
    this.line = where.line;
    this.row = where.row;
    this.column = where.column;
  }
}

function formatLocation(w: DataErrorLocation): string {
  const parts: string[] = [];
  if (w.line !== undefined) parts.push(w.row !== undefined ? `line ${w.line} (row ${w.row})` : `line ${w.line}`);
  else if (w.row !== undefined) parts.push(`row ${w.row}`);
  if (w.column !== undefined) parts.push(`column '${w.column}'`);
  const at = parts.join(', ');
  if (w.file !== undefined) return at ? `${w.file}: ${at}: ` : `${w.file}: `;
  return at ? `${at}: ` : '';
}
