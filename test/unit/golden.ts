/**
 * Location of the golden fixtures (see ../shared/fixtures/golden/README.md): `<repo>/../shared/fixtures/golden`,
 * or the folder named by the environment variable CXF_GOLDEN_DIR.
 */
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (two levels above this file). */
export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The golden fixtures folder. */
export const goldenDir = process.env.CXF_GOLDEN_DIR ?? path.resolve(repoRoot, '..', 'shared', 'fixtures', 'golden');

/** Absolute path of a golden file; throws a clear error if the folder is missing. */
export function goldenFile(name: string): string {
  if (!existsSync(goldenDir)) {
    throw new Error(`golden fixtures not found at ${goldenDir}; set CXF_GOLDEN_DIR to the folder holding ${name}`);
  }
  return path.join(goldenDir, name);
}
