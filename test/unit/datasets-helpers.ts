/** Shared helpers of the dataset adapter tests. */
import { expect } from 'vitest';
import { DataError } from '../../src/data/errors.js';
import type { CxrRecord } from '../../src/datasets/types.js';

/** Awaits `p`, expecting it to reject with a DataError, and returns the error. */
export async function rejected(p: Promise<unknown>): Promise<DataError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(DataError);
    return e as DataError;
  }
  throw new Error('expected a DataError');
}

/** The record with this id (throws when absent). */
export const byId = (rs: CxrRecord[], id: string): CxrRecord => {
  const r = rs.find((x) => x.id === id);
  if (!r) throw new Error(`no record ${id}`);
  return r;
};
