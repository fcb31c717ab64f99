/** Small file-system helpers of the data layer. */
import { readFile, rename, rm, writeFile } from 'node:fs/promises';

let counter = 0;

/**
 * Writes `data` to `file` through a temporary file in the same folder and a rename, so that readers never
 * see a partly written file and an interrupted run leaves the previous version (or nothing) in place.
 */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}-${counter++}`;
  try {
    await writeFile(tmp, data);
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/** Copies `src` to `dst` atomically ({@link writeFileAtomic}). */
export async function copyAtomic(src: string, dst: string): Promise<void> {
  await writeFileAtomic(dst, await readFile(src));
}
