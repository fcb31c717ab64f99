/**
 * Shared helpers of the text-metric tests: the `text/` goldens (../shared/fixtures/golden/text/, made with
 * pycocoevalcap 1.2, sacrebleu 2.6.0, rouge-score 0.1.2 + nltk 3.10.4) and a relative-tolerance comparison that
 * collects every mismatch with its location, so a failing test names the case and the value.
 */
import { readFileSync } from 'node:fs';

import { goldenFile } from './golden.js';

/** Parsed `text/<name>.json`. */
export function textGolden<T>(name: 'bleu' | 'rouge' | 'cider' | 'cross_package'): T {
  return JSON.parse(readFileSync(goldenFile(`text/${name}.json`), 'utf8')) as T;
}

/** The reference values are deterministic double precision: 1e-12 relative (observed: ≤ 1e-15). */
export const RTOL = 1e-12;

/** Collects mismatches: `check(actual, expected, where)`; `failures` lists them. */
export class Mismatches {
  readonly failures: string[] = [];
  count = 0;
  constructor(private readonly rtol = RTOL) {}
  check(actual: number | undefined, expected: number, where: string): void {
    this.count++;
    const ok =
      actual !== undefined &&
      (actual === expected || Math.abs(actual - expected) <= this.rtol * Math.max(Math.abs(actual), Math.abs(expected)));
    if (!ok) this.failures.push(`${where}: expected ${expected}, got ${actual}`);
  }
}
