/**
 * CheXmask run-length encoding (docs/recipe.md §5.2): space-separated (start, length) pairs with **1-based** starts over the
 * **row-major** flattened H×W image. Decoding zeroes a flat array, sets [start−1, start−1+length) to 1 and reshapes
 * to (H, W). Runs may cross row ends (the image is one flat sequence).
 *
 * @example
 * // 3×4 mask        row-major index   runs
 * // 0 1 1 1          0  1  2  3       pixels 1..3 -> start 2, length 3
 * // 0 0 0 0          4  5  6  7
 * // 1 0 0 0          8  9 10 11       pixel 8     -> start 9, length 1
 * rleEncode(mask, 3, 4) === '2 3 9 1'
 */
import { DataError } from './errors.js';

function checkDims(h: number, w: number, what: string): void {
  if (!(Number.isSafeInteger(h) && h > 0 && Number.isSafeInteger(w) && w > 0)) {
    throw new DataError(`${what}: expected positive integer height and width, got ${h}×${w}`);
  }
}

/** Encodes the pixels where `labels[k] === value` (or, with `value` undefined, where `labels[k] !== 0`). */
function encode(labels: ArrayLike<number>, value: number | undefined): string {
  const parts: string[] = [];
  const n = labels.length;
  let k = 0;
  while (k < n) {
    const v = labels[k] as number;
    if (value === undefined ? v === 0 : v !== value) {
      k++;
      continue;
    }
    const start = k;
    k++;
    while (k < n) {
      const u = labels[k] as number;
      if (value === undefined ? u === 0 : u !== value) break;
      k++;
    }
    parts.push(String(start + 1), String(k - start));
  }
  return parts.join(' ');
}

/**
 * Run-length encodes a binary mask (any non-zero value counts as 1), row-major, with 1-based starts.
 * An empty mask gives the empty string.
 * @throws DataError if `mask.length` is not `h·w`
 */
export function rleEncode(mask: Uint8Array, h: number, w: number): string {
  checkDims(h, w, 'rleEncode');
  if (mask.length !== h * w) throw new DataError(`rleEncode: mask has ${mask.length} values, expected ${h}×${w} = ${h * w}`);
  return encode(mask, undefined);
}

/** Run-length encodes the pixels of a label map equal to `value` (e.g. one class of a class map). */
export function rleEncodeLabel(labels: Uint8Array, h: number, w: number, value: number): string {
  checkDims(h, w, 'rleEncodeLabel');
  if (labels.length !== h * w) throw new DataError(`rleEncodeLabel: label map has ${labels.length} values, expected ${h}×${w} = ${h * w}`);
  return encode(labels, value);
}

/**
 * Decodes a CheXmask RLE string into a row-major H×W mask of 0/1. Blank or empty strings decode to an empty mask.
 * Runs must be in increasing order and must not overlap (touching runs are accepted).
 * @throws DataError naming what was wrong: a value that is not a non-negative integer, an odd number of values,
 *   a start out of 1..H·W, a zero length, a run that overlaps or precedes the previous one, or a run past the end.
 */
export function rleDecode(rle: string, h: number, w: number): Uint8Array {
  checkDims(h, w, 'rleDecode');
  const total = h * w;
  const out = new Uint8Array(total);
  const text = rle.trim();
  if (text === '') return out;
  const tokens = text.split(/\s+/);
  const dims = `${h}×${w} mask (${total} pixels)`;
  if (tokens.length % 2 !== 0) {
    throw new DataError(`RLE has ${tokens.length} values, an odd number; expected space-separated (start, length) pairs`);
  }
  let prevEnd = 0; // 0-based exclusive end of the previous run
  let prevStart = 0;
  let prevLen = 0;
  for (let p = 0; p < tokens.length; p += 2) {
    const run = p / 2 + 1;
    const st = tokens[p] as string;
    const ln = tokens[p + 1] as string;
    for (const [what, tok, pos] of [['start', st, p + 1], ['length', ln, p + 2]] as const) {
      if (!/^\d+$/.test(tok)) throw new DataError(`RLE value ${pos} ('${tok}', the ${what} of run ${run}) is not a non-negative integer`);
    }
    const start = Number(st);
    const len = Number(ln);
    const desc = `RLE run ${run} (start ${start}, length ${len})`;
    if (start < 1 || start > total) throw new DataError(`${desc}: start out of range 1..${total} for a ${dims}`);
    if (len < 1) throw new DataError(`${desc}: length must be at least 1`);
    if (start - 1 < prevEnd) {
      throw new DataError(`${desc} overlaps or is out of order: the previous run (start ${prevStart}, length ${prevLen}) ends at pixel ${prevEnd} (1-based)`);
    }
    const end = start - 1 + len;
    if (end > total) throw new DataError(`${desc} runs past the end of the ${dims}: its last pixel would be ${end}`);
    out.fill(1, start - 1, end);
    prevEnd = end;
    prevStart = start;
    prevLen = len;
  }
  return out;
}
