/**
 * Image dataset manifests for training: either every image file under a root folder, or the rows of a CSV
 * manifest (CheXpert, MIMIC, our synthetic labels.csv, …) whose path column is resolved against the root.
 * Everything is validated here, before anything native loads, with errors naming the file, line/row and column.
 */
import type { Dirent } from 'node:fs';
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';

import { parseCsv } from './csv.js';
import { DataError } from './errors.js';

export { globalPermutation, shardIndices } from './sampler.js';

/** Where the images are. */
export interface ImageDatasetSpec {
  /** Dataset root folder. */
  root: string;
  /** CSV manifest, relative to `root` or absolute. Without it, every image file under `root` is listed. */
  manifest?: string;
  /** Manifest column holding each image's path (relative to `root`, or absolute). @default 'Path' */
  pathColumn?: string;
  /** File extensions listed when there is no manifest (case-insensitive, with the dot). @default ['.png', '.jpg', '.jpeg', '.dcm', '.dicom'] */
  extensions?: string[];
  /** Skip manifest rows whose file does not exist (counted in `skippedMissing`) instead of failing. @default false */
  allowMissing?: boolean;
}

/** One image of a dataset. */
export interface DatasetItem {
  /**
   * Stable id: the image path relative to the root with `/` separators (for a manifest row: its path cell,
   * normalised, or the path relative to the root when the cell is absolute and inside the root).
   */
  id: string;
  /** Absolute file path. */
  path: string;
  /** The manifest row (column name → cell), when the dataset comes from a manifest. */
  row?: Record<string, string>;
}

export interface ImageDataset {
  items: DatasetItem[];
  /** The absolute manifest path, or the absolute root folder when there is no manifest. */
  source: string;
  /** Manifest rows skipped because their file does not exist (only with `allowMissing`). */
  skippedMissing: number;
}

export const DEFAULT_IMAGE_EXTENSIONS: readonly string[] = ['.png', '.jpg', '.jpeg', '.dcm', '.dicom'];

/** `a\b/./c.png` → `a/b/c.png` (posix, no `./`). */
function normalizeId(p: string): string {
  return path.posix.normalize(p.replace(/\\/g, '/')).replace(/^\.\//, '');
}

async function isDirectory(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}

/** Runs `fn` over `items` with at most `limit` promises in flight; results in order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const k = next++;
      out[k] = await fn(items[k] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * Lists image files under `root` recursively, sorted by relative path. Links are followed; a real folder reached
 * twice (through links) is listed once, under the first path in name order.
 */
async function listImages(root: string, extensions: readonly string[]): Promise<DatasetItem[]> {
  const exts = new Set(extensions.map((e) => e.toLowerCase()));
  const found: string[] = [];
  const seen = new Set<string>();
  const walk = async (dir: string, rel: string): Promise<void> => {
    const real = await realpath(dir);
    if (seen.has(real)) return;
    seen.add(real);
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (e) {
      throw new DataError(`cannot list folder: ${(e as Error).message}`, { file: dir });
    }
    // Name order, so that which path reaches a linked folder first (and lists it) is the same everywhere.
    entries.sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
    for (const e of entries) {
      const full = path.join(dir, e.name);
      const r = rel ? `${rel}/${e.name}` : e.name;
      let isDir = e.isDirectory();
      let isFile = e.isFile();
      if (e.isSymbolicLink()) {
        const st = await stat(full).catch(() => undefined);
        isDir = st?.isDirectory() ?? false;
        isFile = st?.isFile() ?? false;
      }
      if (isDir) await walk(full, r);
      else if (isFile && exts.has(path.extname(e.name).toLowerCase())) found.push(r);
    }
  };
  await walk(root, '');
  // Code-unit order, not locale order: the same on every machine.
  found.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return found.map((r) => ({ id: r, path: path.join(root, ...r.split('/')) }));
}

/**
 * Loads the list of images of a dataset.
 * @throws DataError when the root or the manifest is missing, the path column is absent (the columns found are
 *   listed), a path cell is empty, two rows name the same file, listed files do not exist (all are collected; the
 *   first few and the count are reported, unless `allowMissing`), or the dataset is empty.
 */
export async function loadImageDataset(spec: ImageDatasetSpec): Promise<ImageDataset> {
  const root = path.resolve(spec.root);
  if (!(await isDirectory(root))) throw new DataError(`dataset root is not a folder (or does not exist): ${root}`);
  const extensions = spec.extensions ?? DEFAULT_IMAGE_EXTENSIONS;

  if (spec.manifest === undefined) {
    const items = await listImages(root, extensions);
    if (items.length === 0) throw new DataError(`empty dataset: no image files (${extensions.join(', ')}) under ${root}`);
    return { items, source: root, skippedMissing: 0 };
  }

  const file = path.resolve(root, spec.manifest);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : (e as Error).message;
    throw new DataError(`manifest ${why}: ${file}${path.isAbsolute(spec.manifest) ? '' : ` (resolved against the root ${root})`}`);
  }
  const table = parseCsv(text, file);
  const column = spec.pathColumn ?? 'Path';
  const col = table.header.indexOf(column);
  if (col < 0) {
    throw new DataError(`no path column '${column}'; the columns are: ${table.header.map((h) => `'${h}'`).join(', ')} (choose one with pathColumn)`, { file });
  }
  const items: (DatasetItem & { line: number; rowNo: number })[] = [];
  const byId = new Map<string, number>();
  table.rows.forEach((cells, k) => {
    const line = table.lines[k] as number;
    const cell = (cells[col] as string).trim();
    if (cell === '') throw new DataError('empty image path', { file, line, row: k + 1, column });
    const abs = path.resolve(root, cell);
    const rel = path.relative(root, abs);
    const id = path.isAbsolute(cell) && !rel.startsWith('..') && !path.isAbsolute(rel) ? normalizeId(rel) : normalizeId(cell);
    const prev = byId.get(id);
    if (prev !== undefined) throw new DataError(`image '${cell}' is already listed on row ${prev}`, { file, line, row: k + 1, column });
    byId.set(id, k + 1);
    const row: Record<string, string> = {};
    table.header.forEach((h, c) => {
      row[h] = cells[c] as string;
    });
    items.push({ id, path: abs, row, line, rowNo: k + 1 });
  });
  if (items.length === 0) throw new DataError('empty dataset: the manifest has a header but no rows', { file });

  const present = await mapLimit(items, 64, (it) => exists(it.path));
  const missing = items.filter((_, k) => !present[k]);
  if (missing.length > 0 && !spec.allowMissing) {
    const first = missing
      .slice(0, 3)
      .map((m) => `line ${m.line} (row ${m.rowNo}): ${m.row?.[column]} -> ${m.path}`)
      .join('; ');
    throw new DataError(
      `${missing.length} of ${items.length} image file(s) in column '${column}' do not exist (first: ${first}${missing.length > 3 ? '; …' : ''}); ` +
        'fix the root or the paths, or pass allowMissing to skip them',
      { file },
    );
  }
  const kept = items.filter((_, k) => present[k]).map(({ id, path: p, row }): DatasetItem => ({ id, path: p, ...(row ? { row } : {}) }));
  if (kept.length === 0) throw new DataError(`empty dataset: none of the ${items.length} listed image files exist`, { file });
  return { items: kept, source: file, skippedMissing: missing.length };
}
