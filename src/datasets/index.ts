/**
 * The dataset layer: adapters for the public chest X-ray datasets as distributed (CheXpert, MIMIC-CXR-JPG, NIH
 * ChestX-ray14, PadChest, BRAX, VinDr-CXR, RSNA Pneumonia, CheXmask), plus plain folders and CSV manifests, all
 * producing `CxrRecord`s; label policies; view / patient / split selection; relabelling; pretraining mixtures.
 *
 * `loadDataset(spec)` runs the whole chain for one dataset:
 *   adapter → (CheXmask join) → views → splits (assigned where missing, when `splitFractions` is given) → split
 *   filter → one image per patient → relabel onto `classes` → targets and mask under the label policy.
 */
import path from 'node:path';

import { DataError } from '../data/errors.js';
import { loadImageDataset } from '../data/manifest.js';
import { loadBrax, type BraxOptions } from './brax.js';
import { loadChexmask, type ChexmaskOptions, type ChexmaskSource } from './chexmask.js';
import { loadChexpert, type ChexpertOptions } from './chexpert.js';
import { normalizeView, parseLabelCell } from './common.js';
import { loadMimic, type MimicOptions } from './mimic.js';
import { loadNih, type NihOptions } from './nih.js';
import { loadPadchest, type PadchestOptions } from './padchest.js';
import { applyNoFindingRule, labelTargets, resolvePolicy, type LabelPolicy } from './policy.js';
import { loadRsna, type RsnaOptions } from './rsna.js';
import { assignSplits, filterViews, onePerPatient, relabel, selectSplits, type SplitFractions } from './select.js';
import { SPLITS, type AdapterOptions, type CxrRecord, type Split } from './types.js';
import { loadVindr, type VindrOptions } from './vindr.js';

export * from './types.js';
export * from './classes.js';
export { normalizeView, normalizeSex, parseAge, majorityVote } from './common.js';
export { scanTable, readTable, findFile, type Table, type TableHeader } from './table.js';
export { loadChexpert, chexpertRelativePath, type ChexpertOptions } from './chexpert.js';
export { loadMimic, mimicImagePath, type MimicOptions } from './mimic.js';
export { loadNih, type NihOptions } from './nih.js';
export { loadPadchest, parsePythonStringList, PADCHEST_MISSING_IMAGES, type PadchestOptions } from './padchest.js';
export { loadBrax, type BraxOptions } from './brax.js';
export { loadVindr, type VindrOptions } from './vindr.js';
export { loadRsna, type RsnaOptions } from './rsna.js';
export { loadChexmask, CHEXMASK_FILES, type ChexmaskOptions, type ChexmaskSource } from './chexmask.js';
export * from './policy.js';
export * from './select.js';

/** Dataset names `loadDataset` knows. */
export const DATASET_NAMES = ['chexpert', 'mimic', 'nih', 'padchest', 'brax', 'vindr', 'rsna', 'chexmask', 'folder', 'csv'] as const;
export type DatasetName = (typeof DATASET_NAMES)[number];

/** Selection and labelling options common to every dataset spec. */
export interface SelectionOptions {
  /** Keep these views (see `filterViews`; e.g. ['PA', 'AP'], or ['FRONTAL']). */
  views?: string[];
  /** Keep one image per patient (seeded). @default false */
  onePerPatient?: boolean;
  /** Seed for the patient choice and the split assignment. @default 0 */
  seed?: number;
  /** Assign patient-level splits by these fractions to records without one (all records with `resplit`). */
  splitFractions?: SplitFractions;
  /** With `splitFractions`: re-split everything, discarding official splits. @default false */
  resplit?: boolean;
  /** Keep only these splits. */
  split?: Split | Split[];
  /** Class list: relabel onto it and compute targets. */
  classes?: string[];
  /** Map labels through `LABEL_MAP` (false: take labels of exactly these names). @default true */
  relabel?: boolean;
  /** Overrides of the dataset's default label policy (`DEFAULT_POLICIES`). */
  policy?: Partial<LabelPolicy>;
}

/** A plain image folder (every image under root, via `loadImageDataset`). */
export interface FolderOptions extends AdapterOptions {
  /** File extensions, with the dot. @default ['.png', '.jpg', '.jpeg', '.dcm', '.dicom'] */
  extensions?: string[];
}

/** A CSV manifest (via `loadImageDataset`) with optional patient, view, split and label columns. */
export interface CsvOptions extends AdapterOptions {
  /** Manifest path, relative to the root or absolute. */
  manifest: string;
  /** @default 'Path' */
  pathColumn?: string;
  /** Patient column (default: each image is its own patient). */
  patientColumn?: string;
  viewColumn?: string;
  /** Split column with values train / valid (or validate, val) / test. */
  splitColumn?: string;
  /** Label columns with 1 / 0 / -1 / blank. */
  labelColumns?: string[];
}

export type DatasetSpec = { root: string } & SelectionOptions &
  (
    | ({ name: 'chexpert' } & ChexpertOptions)
    | ({ name: 'mimic' } & MimicOptions)
    | ({ name: 'nih' } & NihOptions)
    | ({ name: 'padchest' } & PadchestOptions)
    | ({ name: 'brax' } & BraxOptions)
    | ({ name: 'vindr' } & VindrOptions)
    | ({ name: 'rsna' } & RsnaOptions)
    | ({
        name: 'chexmask';
        /** Dataset the masks belong to. */
        source: ChexmaskSource;
        /** Root of that dataset. */
        sourceRoot: string;
        /** Adapter options for the source dataset. */
        sourceOptions?: Record<string, unknown>;
      } & Omit<ChexmaskOptions, 'records' | 'source'>)
    | ({ name: 'folder' } & FolderOptions)
    | ({ name: 'csv' } & CsvOptions)
  );

export interface LoadedDataset {
  name: DatasetName;
  records: CxrRecord[];
  /** The policy targets were built with (the dataset default with `spec.policy` on top). */
  policy: LabelPolicy;
  /** With `classes`: the class list, and row-major N×C targets and mask. */
  classes?: string[];
  targets?: Float32Array;
  mask?: Uint8Array;
}

const SPLIT_ALIASES: Record<string, Split> = { train: 'train', valid: 'valid', validate: 'valid', validation: 'valid', val: 'valid', test: 'test' };

async function loadManifest(spec: { root: string; name: 'folder' } & FolderOptions): Promise<CxrRecord[]>;
async function loadManifest(spec: { root: string; name: 'csv' } & CsvOptions): Promise<CxrRecord[]>;
async function loadManifest(spec: { root: string } & ({ name: 'folder' } & FolderOptions | { name: 'csv' } & CsvOptions)): Promise<CxrRecord[]> {
  if (spec.name === 'folder') {
    const ds = await loadImageDataset({ root: spec.root, ...(spec.extensions ? { extensions: spec.extensions } : {}) });
    return ds.items.map((it) => ({ id: it.id, dataset: 'folder', path: it.path, patient: it.id, labels: {} }));
  }
  const ds = await loadImageDataset({
    root: spec.root,
    manifest: spec.manifest,
    ...(spec.pathColumn ? { pathColumn: spec.pathColumn } : {}),
    ...(spec.checkFiles === 'drop' ? { allowMissing: true } : {}),
  });
  const file = ds.source;
  const first = ds.items[0]?.row ?? {};
  const wanted = [spec.patientColumn, spec.viewColumn, spec.splitColumn, ...(spec.labelColumns ?? [])].filter((c): c is string => c !== undefined);
  const missing = wanted.filter((c) => !(c in first));
  if (missing.length > 0) {
    throw new DataError(`missing column${missing.length > 1 ? 's' : ''} ${missing.map((c) => `'${c}'`).join(', ')}; the columns found are: ${Object.keys(first).map((c) => `'${c}'`).join(', ')}`, { file });
  }
  return ds.items.map((it, k) => {
    const row = it.row ?? {};
    const where = { file, row: k + 1 };
    const labels: Record<string, number | null> = {};
    for (const c of spec.labelColumns ?? []) labels[c] = parseLabelCell(row[c] ?? '', { ...where, column: c });
    const patient = spec.patientColumn !== undefined ? (row[spec.patientColumn] ?? '').trim() : '';
    const view = spec.viewColumn !== undefined ? normalizeView(row[spec.viewColumn]) : undefined;
    let split: Split | undefined;
    if (spec.splitColumn !== undefined) {
      const raw = (row[spec.splitColumn] ?? '').trim();
      if (raw !== '') {
        split = SPLIT_ALIASES[raw.toLowerCase()];
        if (split === undefined) throw new DataError(`unknown split '${raw}' (expected train, valid or test)`, { ...where, column: spec.splitColumn });
      }
    }
    return {
      id: it.id,
      dataset: 'csv',
      path: it.path,
      patient: patient !== '' ? patient : it.id,
      ...(view !== undefined ? { view } : {}),
      labels,
      ...(split !== undefined ? { split } : {}),
    };
  });
}

async function loadSource(name: ChexmaskSource, root: string, options: Record<string, unknown>): Promise<CxrRecord[]> {
  switch (name) {
    case 'mimic':
      return loadMimic(root, options as MimicOptions);
    case 'chexpert':
      return loadChexpert(root, options as ChexpertOptions);
    case 'nih':
      return loadNih(root, options as NihOptions);
    case 'padchest':
      return loadPadchest(root, options as PadchestOptions);
    case 'vindr':
      return loadVindr(root, options as VindrOptions);
    default:
      throw new DataError(`unknown CheXmask source '${String(name)}' (expected mimic, chexpert, nih, padchest or vindr)`);
  }
}

/** Keys of `SelectionOptions` and the spec itself, stripped before handing the rest to an adapter. */
const SPEC_KEYS = new Set(['name', 'root', 'views', 'onePerPatient', 'seed', 'splitFractions', 'resplit', 'split', 'classes', 'relabel', 'policy']);

function adapterOptions<T>(spec: object): T {
  return Object.fromEntries(Object.entries(spec).filter(([k]) => !SPEC_KEYS.has(k))) as T;
}

/**
 * Loads one dataset and applies the selection and labelling options (see the module comment for the order).
 * @throws DataError for anything wrong with the files, the spec, or an empty selection of views on a dataset that
 *   records none (e.g. RSNA without `viewsCsv`)
 */
export async function loadDataset(spec: DatasetSpec): Promise<LoadedDataset> {
  const name = spec.name;
  if (!(DATASET_NAMES as readonly string[]).includes(name)) throw new DataError(`unknown dataset '${String(name)}' (expected ${DATASET_NAMES.join(', ')})`);
  if (typeof spec.root !== 'string' || spec.root === '') throw new DataError(`dataset '${name}': root is missing`);
  const root = path.resolve(spec.root);
  let records: CxrRecord[];
  let policyDataset: string = name;
  switch (spec.name) {
    case 'chexpert':
      records = await loadChexpert(root, adapterOptions<ChexpertOptions>(spec));
      break;
    case 'mimic':
      records = await loadMimic(root, adapterOptions<MimicOptions>(spec));
      break;
    case 'nih':
      records = await loadNih(root, adapterOptions<NihOptions>(spec));
      break;
    case 'padchest':
      records = await loadPadchest(root, adapterOptions<PadchestOptions>(spec));
      break;
    case 'brax':
      records = await loadBrax(root, adapterOptions<BraxOptions>(spec));
      break;
    case 'vindr':
      records = await loadVindr(root, adapterOptions<VindrOptions>(spec));
      break;
    case 'rsna':
      records = await loadRsna(root, adapterOptions<RsnaOptions>(spec));
      break;
    case 'chexmask': {
      const base = await loadSource(spec.source, spec.sourceRoot, spec.sourceOptions ?? {});
      const { source, sourceRoot: _r, sourceOptions: _o, ...rest } = adapterOptions<Record<string, unknown>>(spec);
      records = await loadChexmask(root, { ...(rest as Omit<ChexmaskOptions, 'records' | 'source'>), source: source as ChexmaskSource, records: base });
      policyDataset = spec.source;
      break;
    }
    case 'folder':
      records = await loadManifest({ ...adapterOptions<FolderOptions>(spec), root, name: 'folder' });
      break;
    case 'csv':
      records = await loadManifest({ ...adapterOptions<CsvOptions>(spec), root, name: 'csv' });
      break;
  }

  if (spec.views !== undefined) {
    if (records.length > 0 && records.every((r) => r.view === undefined)) {
      throw new DataError(`dataset '${name}' records no views${name === 'rsna' ? ' (RSNA views are in the DICOM headers: pass viewsCsv)' : ''}; omit 'views' or provide view information`);
    }
    records = filterViews(records, spec.views);
  }
  const seed = spec.seed ?? 0;
  if (spec.splitFractions !== undefined) records = assignSplits(records, { seed, fractions: spec.splitFractions, overwrite: spec.resplit ?? false });
  if (spec.split !== undefined) {
    const want = typeof spec.split === 'string' ? [spec.split] : spec.split;
    for (const s of want) if (!SPLITS.includes(s)) throw new DataError(`unknown split '${String(s)}' (expected ${SPLITS.join(', ')})`);
    records = selectSplits(records, want);
  }
  if (spec.onePerPatient) records = onePerPatient(records, seed);

  const relabelled = spec.classes !== undefined && spec.relabel !== false;
  // After relabelling, absent means "this dataset cannot express the class": masked, even for PadChest.
  const policy = resolvePolicy(policyDataset, { ...(relabelled ? { absent: 'ignore' as const } : {}), ...(spec.policy ?? {}) });
  if (spec.classes === undefined) return { name, records, policy };
  if (relabelled) {
    // The No Finding rule reads 'No Finding' from the source labels, which relabelling may drop: apply it first.
    if (policy.noFindingRule) records = applyNoFindingRule(records);
    records = relabel(records, spec.classes);
  }
  const t = labelTargets(records, spec.classes, policy);
  return { name, records, policy, classes: t.classes, targets: t.targets, mask: t.mask };
}
