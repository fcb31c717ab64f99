/**
 * R2Gen's annotation files (cuhksz-nlp/R2Gen: README "Datasets", `modules/datasets.py`, `modules/dataloaders.py`), the
 * released splits most report-generation papers compare on, for MIMIC-CXR and IU X-ray:
 *   annotation.json = { "train": [entry, …], "val": [entry, …], "test": [entry, …] }
 *   entry = { "id": string, "report": string, "image_path": [string, …], "split": "train" | "val" | "test",
 *             MIMIC-CXR also "study_id" and "subject_id" (integers) }
 * `image_path` is relative to the images folder (R2Gen's `--image_dir`, `data/<dataset>/images/`, beside
 * `annotation.json`):
 * - MIMIC-CXR (`MimiccxrSingleImageDataset`): one image per entry, `p10/p10000032/s50414267/<dicom_id>.jpg`; R2Gen
 *   reads `image_path[0]`. The patient is `subject_id` (required).
 * - IU X-ray (`IuxrayMultiImageDataset`): two images per entry, frontal then lateral (`CXR2384_IM-0942/0.png`,
 *   `…/1.png`), whose visual features R2Gen concatenates; entries with fewer than two are an error. IU X-ray has no
 *   patient ids: the patient (and study) is the id's `CXR<n>` prefix, the report number (the part before the first
 *   '_'; the whole id when there is none). So patient-disjointness cannot be checked for IU X-ray.
 * Records: `R2GenRecord` = a `ReportRecord` whose `image` is the first image, plus `images`, every image in order
 * (consumers that concatenate per-image features, as R2Gen does for IU X-ray, use `images`). `val` becomes 'valid'.
 * An entry's optional `split` must agree with the list it is in.
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';

import { DataError } from '../data/errors.js';
import type { ReportRecord, ReportSplit } from '../rrg/data.js';

/** A record with all of an entry's images. */
export interface R2GenRecord extends ReportRecord {
  /** Absolute paths, in `image_path` order; `images[0] === image`. */
  images: string[];
}

export interface R2GenOptions {
  /** Which annotation: MIMIC-CXR (`subject_id` patients, ≥ 1 image) or IU X-ray (id-prefix patients, ≥ 2 images). */
  dataset: 'mimic' | 'iu-xray';
  /** The annotation file, relative to the root. @default 'annotation.json' */
  annotation?: string;
  /** The folder `image_path` is relative to, relative to the root. @default 'images' */
  imagesDir?: string;
  /**
   * Check that every image exists: true throws (count and first five paths), 'drop' drops entries with a missing
   * image (counted), false skips the check.
   * @default true
   */
  checkFiles?: boolean | 'drop';
}

export interface R2GenSummary {
  file: string;
  imagesDir: string;
  /** Entries per annotation key. */
  entries: { train: number; val: number; test: number };
  /** Images referenced (all entries). */
  images: number;
  /** Images not found (checkFiles). */
  missingImages: number;
  /** Entries dropped for a missing image (checkFiles: 'drop'). */
  droppedEntries: number;
}

const KEYS = [
  ['train', 'train'],
  ['val', 'valid'],
  ['test', 'test'],
] as const satisfies readonly (readonly [string, ReportSplit])[];

/** A value's description for messages: `number 5`, `an array of 2`, `null`. */
function found(v: unknown): string {
  if (v === undefined) return 'nothing (the key is missing)';
  if (v === null) return 'null';
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === 'object') return 'an object';
  const s = JSON.stringify(v);
  return `${typeof v} ${s.length > 60 ? `${s.slice(0, 57)}…` : s}`;
}

/** The IU X-ray report number of an id: the part before the first '_' (`CXR2384_IM-0942` → `CXR2384`). */
export function iuPatientId(id: string): string {
  const k = id.indexOf('_');
  return k > 0 ? id.slice(0, k) : id;
}

/** An integer id cell (number, or a string of digits), as a string. */
function intIdOf(v: unknown): string | undefined {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return String(v);
  if (typeof v === 'string' && /^\d+$/.test(v.trim())) return v.trim();
  return undefined;
}

/**
 * Loads an R2Gen annotation.json.
 * @param root the dataset folder (R2Gen's `data/mimic_cxr` or `data/iu_xray`)
 * @returns records in file order (train, val, test) and a summary
 * @throws DataError naming the file and the JSON path (`train[12].image_path`) with what was expected and found; a
 *   repeated id (both positions); missing image files (count and first five) unless checkFiles is false or 'drop'
 */
export async function loadR2GenAnnotation(root: string, opts: R2GenOptions): Promise<{ records: R2GenRecord[]; summary: R2GenSummary }> {
  const base = path.resolve(root);
  const file = path.resolve(base, opts.annotation ?? 'annotation.json');
  const imagesDir = path.resolve(base, opts.imagesDir ?? 'images');
  const iu = opts.dataset === 'iu-xray';
  if (opts.dataset !== 'mimic' && !iu) throw new DataError(`unknown R2Gen dataset '${opts.dataset as string}' (expected mimic or iu-xray)`);

  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new DataError(code === 'ENOENT' ? 'annotation file not found' : `cannot read (${(e as Error).message})`, { file });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new DataError(`not valid JSON (${(e as Error).message})`, { file });
  }
  const fail = (at: string, msg: string): never => {
    throw new DataError(`${at}: ${msg}`, { file });
  };
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new DataError(`expected an object with 'train', 'val' and 'test' arrays, found ${found(json)}`, { file });
  }
  const top = json as Record<string, unknown>;

  const records: R2GenRecord[] = [];
  const entries = { train: 0, val: 0, test: 0 };
  const seen = new Map<string, string>();
  for (const [key, split] of KEYS) {
    const list = top[key];
    if (!Array.isArray(list)) fail(key, `expected an array of entries (R2Gen's annotation.json has 'train', 'val' and 'test'), found ${found(list)}`);
    (list as unknown[]).forEach((e, k) => {
      const at = `${key}[${k}]`;
      if (typeof e !== 'object' || e === null || Array.isArray(e)) fail(at, `expected an entry object, found ${found(e)}`);
      const entry = e as Record<string, unknown>;
      const id = entry.id;
      if (typeof id !== 'string' || id.trim() === '') fail(`${at}.id`, `expected a non-empty string, found ${found(id)}`);
      const report = entry.report;
      if (typeof report !== 'string') fail(`${at}.report`, `expected a string, found ${found(report)}`);
      if ((report as string).trim() === '') fail(`${at}.report`, `expected the report text, found an empty string (id '${id as string}')`);
      const paths = entry.image_path;
      const need = iu ? 2 : 1;
      if (!Array.isArray(paths) || paths.length < need) {
        fail(`${at}.image_path`, `expected an array of ${iu ? 'at least 2 image paths (frontal, lateral)' : 'at least 1 image path'}, found ${found(paths)}`);
      }
      (paths as unknown[]).forEach((p, j) => {
        if (typeof p !== 'string' || p.trim() === '') fail(`${at}.image_path[${j}]`, `expected a relative image path, found ${found(p)}`);
      });
      if (entry.split !== undefined && entry.split !== key) fail(`${at}.split`, `expected '${key}' (the list the entry is in), found ${found(entry.split)}`);
      const prev = seen.get(id as string);
      if (prev !== undefined) fail(`${at}.id`, `id '${id as string}' appears twice (first at ${prev})`);
      seen.set(id as string, at);

      let patient: string;
      let study: string | undefined;
      if (iu) {
        patient = iuPatientId(id as string);
        study = patient;
      } else {
        const subj = intIdOf(entry.subject_id);
        if (subj === undefined) fail(`${at}.subject_id`, `expected an integer subject id (the MIMIC-CXR patient), found ${found(entry.subject_id)}`);
        patient = subj as string;
        if (entry.study_id !== undefined) {
          study = intIdOf(entry.study_id);
          if (study === undefined) fail(`${at}.study_id`, `expected an integer study id, found ${found(entry.study_id)}`);
        }
      }
      const images = (paths as string[]).map((p) => path.resolve(imagesDir, p));
      records.push({
        id: id as string,
        image: images[0] as string,
        images,
        report: report as string,
        split,
        patient,
        ...(study !== undefined ? { study } : {}),
      });
      entries[key]++;
    });
  }

  const summary: R2GenSummary = {
    file,
    imagesDir,
    entries,
    images: records.reduce((n, r) => n + r.images.length, 0),
    missingImages: 0,
    droppedEntries: 0,
  };
  const check = opts.checkFiles ?? true;
  if (!check) return { records, summary };

  const all = records.flatMap((r) => r.images);
  const present = new Map<string, boolean>();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < all.length) {
      const p = all[next++] as string;
      if (present.has(p)) continue;
      present.set(
        p,
        await stat(p).then(
          (s) => s.isFile(),
          () => false,
        ),
      );
    }
  };
  await Promise.all(Array.from({ length: Math.min(64, Math.max(1, all.length)) }, worker));
  const missing = [...present.entries()].filter(([, ok]) => !ok).map(([p]) => p);
  summary.missingImages = missing.length;
  if (missing.length === 0) return { records, summary };
  if (check === 'drop') {
    const kept = records.filter((r) => r.images.every((p) => present.get(p) === true));
    summary.droppedEntries = records.length - kept.length;
    return { records: kept, summary };
  }
  throw new DataError(
    `${missing.length} of ${present.size} image file(s) named by image_path do not exist under ${imagesDir} ` +
      `(first: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}); check the images folder (imagesDir), ` +
      "or pass checkFiles: 'drop' to skip those entries",
    { file },
  );
}
