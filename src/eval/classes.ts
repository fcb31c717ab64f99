/**
 * Evaluating some of a model's classes (`cxformer evaluate --classes`): which output columns to keep, checked
 * against the classes the head was trained on, and the (N, C) scores cut down to them.
 */
import { CxformerError } from '../native/load.js';

/**
 * The columns of `wanted` among the head's classes, in the order of `wanted` (all of them when `wanted` is
 * undefined). A multiclass head (softmax) is evaluated on all its classes, in any order: its accuracy compares the
 * arg max over all of them.
 *
 * @param head the head file, for messages
 * @throws CxformerError (CXF_ARG) naming an unknown or repeated class and listing the head's classes
 */
export function selectClasses(available: readonly string[], wanted: readonly string[] | undefined, head: string, labelType = 'multilabel'): number[] {
  if (wanted === undefined) return available.map((_, i) => i);
  const listed = `the classes of ${head}: ${available.join(', ')}`;
  if (wanted.length === 0) throw new CxformerError('CXF_ARG', `--classes: expected one or more of ${listed}; found an empty list`);
  const seen = new Set<string>();
  const columns = wanted.map((c) => {
    const i = available.indexOf(c);
    if (i < 0) throw new CxformerError('CXF_ARG', `--classes: '${c}' is not a class of the head; expected some of ${listed}`);
    if (seen.has(c)) throw new CxformerError('CXF_ARG', `--classes: '${c}' is given twice; expected each of ${listed} at most once`);
    seen.add(c);
    return i;
  });
  if (labelType === 'multiclass' && columns.length !== available.length) {
    const missing = available.filter((c) => !seen.has(c));
    throw new CxformerError(
      'CXF_ARG',
      `--classes: a multiclass head is evaluated on all its classes (its accuracy takes the arg max over them), found ${missing.join(', ')} left out; ${listed}`,
    );
  }
  return columns;
}

/** Columns `pick` of a row-major (N, C) matrix, as a new (N, pick.length) matrix. */
export function pickColumns(data: Float32Array, columns: number, pick: readonly number[]): Float32Array {
  if (pick.length === columns && pick.every((c, i) => c === i)) return data;
  const n = data.length / columns;
  const out = new Float32Array(n * pick.length);
  for (let r = 0; r < n; r++) for (let k = 0; k < pick.length; k++) out[r * pick.length + k] = data[r * columns + pick[k]!]!;
  return out;
}
