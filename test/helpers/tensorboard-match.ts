/**
 * The check shared by the trainer tests of issue #14: a run folder's TensorBoard events, read with the strict
 * independent reader (test/unit/tfevents-reader.ts, TensorBoard's purge of superseded steps included), hold exactly
 * the numbers of its metrics records.
 */
import { readFile } from 'node:fs/promises';
import { expect } from 'vitest';
import { metricScalars } from '../../src/run/tensorboard.js';
import { readRun } from '../unit/tfevents-reader.js';

/** The records of a JSON-lines file. */
export async function jsonlRecords(file: string): Promise<Array<Record<string, unknown>>> {
  return (await readFile(file, 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/**
 * The run folder's scalars equal the records' numbers: per tag, the [step, float32(value)] points of every record
 * (a value repeated at one step by two records counts once), sorted by step; TensorBoard holds each step once.
 * Returns the scalars read, by tag.
 */
export function expectScalarsMatch(dir: string, records: Array<Record<string, unknown>>, stepKey: string): Map<string, Array<[number, number]>> {
  const want = new Map<string, Map<number, number>>();
  for (const r of records) {
    const step = r[stepKey] as number;
    for (const [tag, v] of metricScalars(r, [stepKey])) {
      const m = want.get(tag) ?? new Map<number, number>();
      if (m.has(step)) expect(m.get(step), `${tag} at ${step} in two records`).toBe(Math.fround(v));
      want.set(tag, m.set(step, Math.fround(v)));
    }
  }
  const { scalars } = readRun(dir);
  const got = new Map([...scalars].map(([tag, pts]) => [tag, [...pts].sort((a, b) => a[0] - b[0])]));
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [tag, m] of want) expect(got.get(tag), tag).toEqual([...m].sort((a, b) => a[0] - b[0]));
  return got;
}
