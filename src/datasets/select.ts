/**
 * Selecting and combining records: view filter, one image per patient, patient-level splits, relabelling onto a
 * common pathology list, and the pretraining mixture plan. Everything seeded is deterministic and independent of the
 * platform (mulberry32 streams from `src/data/random.ts`).
 */
import { DataError } from '../data/errors.js';
import { hashSeed, mulberry32, shuffleInPlace } from '../data/random.js';
import { normalizeView } from './common.js';
import { SPLITS, type CxrRecord, type Split } from './types.js';

/** Frontal views, matched by the 'FRONTAL' selector. */
export const FRONTAL_VIEWS: readonly string[] = ['PA', 'AP', 'AP Supine', 'FRONTAL'];

/**
 * Keeps records whose view is one of `views` (names are normalised with `normalizeView`, so 'pa' or 'AP_horizontal'
 * work; 'FRONTAL' selects every frontal view). Records without a view are dropped.
 * @throws DataError on an empty view list
 */
export function filterViews(records: readonly CxrRecord[], views: readonly string[]): CxrRecord[] {
  if (views.length === 0) throw new DataError('the view list is empty (omit it to keep every view)');
  const want = new Set<string>();
  for (const v of views) {
    const n = normalizeView(v);
    if (n === undefined) continue;
    if (n === 'FRONTAL') for (const f of FRONTAL_VIEWS) want.add(f);
    else want.add(n);
  }
  return records.filter((r) => r.view !== undefined && want.has(r.view));
}

/** 32-bit FNV-1a hash of a string's UTF-16 code units. */
export function stringHash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

const patientKey = (r: CxrRecord): string => `${r.dataset}\u0000${r.patient}`;

/**
 * Keeps one image per patient (per dataset): a seeded choice among the patient's images sorted by id, so the choice
 * does not depend on record order or on the other patients. The kept records stay in input order.
 */
export function onePerPatient(records: readonly CxrRecord[], seed: number): CxrRecord[] {
  const groups = new Map<string, CxrRecord[]>();
  for (const r of records) {
    const k = patientKey(r);
    const g = groups.get(k);
    if (g === undefined) groups.set(k, [r]);
    else g.push(r);
  }
  const chosen = new Set<CxrRecord>();
  for (const [k, g] of groups) {
    const sorted = [...g].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const pick = Math.floor(mulberry32(hashSeed(seed, stringHash(k)))() * sorted.length);
    chosen.add(sorted[pick] as CxrRecord);
  }
  return records.filter((r) => chosen.has(r));
}

/** Fractions of patients per split (normalised by their sum). */
export interface SplitFractions {
  train: number;
  valid?: number;
  test?: number;
}

export interface AssignSplitsOptions {
  seed: number;
  fractions: SplitFractions;
  /** Re-split every record, discarding existing splits (e.g. to carve train/valid out of a source's 'train'). */
  overwrite?: boolean;
}

/**
 * Assigns patient-level splits: every image of a patient gets the same split, so no patient is in two splits.
 * Without `overwrite`, records keep their split; a record without one takes its patient's split when the patient's
 * other images have exactly one; the remaining patients are shuffled (seeded) and cut by `fractions`
 * (round(P·train) train, then round(P·(train+valid)) − that valid, the rest test).
 * @returns new records (the input is not modified)
 * @throws DataError on negative or all-zero fractions
 */
export function assignSplits(records: readonly CxrRecord[], opts: AssignSplitsOptions): CxrRecord[] {
  const f = { train: opts.fractions.train, valid: opts.fractions.valid ?? 0, test: opts.fractions.test ?? 0 };
  for (const [k, v] of Object.entries(f)) if (!(Number.isFinite(v) && v >= 0)) throw new DataError(`split fraction ${k} must be a finite number >= 0, got ${v}`);
  const total = f.train + f.valid + f.test;
  if (!(total > 0)) throw new DataError('split fractions sum to 0');

  const existing = new Map<string, Set<Split>>();
  if (!opts.overwrite) {
    for (const r of records) {
      if (r.split === undefined) continue;
      const k = patientKey(r);
      const s = existing.get(k);
      if (s === undefined) existing.set(k, new Set([r.split]));
      else s.add(r.split);
    }
  }
  const inherited = new Map<string, Split>();
  for (const [k, s] of existing) if (s.size === 1) inherited.set(k, [...s][0] as Split);

  const fresh = new Set<string>();
  for (const r of records) {
    const k = patientKey(r);
    if ((opts.overwrite || r.split === undefined) && !inherited.has(k) && !existing.has(k)) fresh.add(k);
  }
  const patients = [...fresh].sort();
  shuffleInPlace(patients, mulberry32(hashSeed(opts.seed, 0x53504c54)));
  const P = patients.length;
  const nTrain = Math.round((P * f.train) / total);
  const nTrainValid = Math.round((P * (f.train + f.valid)) / total);
  const assigned = new Map<string, Split>();
  patients.forEach((k, i) => assigned.set(k, i < nTrain ? 'train' : i < nTrainValid ? 'valid' : 'test'));

  return records.map((r) => {
    if (!opts.overwrite && r.split !== undefined) return r;
    const k = patientKey(r);
    const s = assigned.get(k) ?? inherited.get(k);
    return s === undefined ? r : { ...r, split: s };
  });
}

/**
 * Keeps the records of the given split(s).
 * @throws DataError on an unknown split name
 */
export function selectSplits(records: readonly CxrRecord[], split: Split | readonly Split[]): CxrRecord[] {
  const want = new Set<Split>(typeof split === 'string' ? [split] : split);
  for (const s of want) if (!SPLITS.includes(s)) throw new DataError(`unknown split '${String(s)}' (expected ${SPLITS.join(', ')})`);
  return records.filter((r) => r.split !== undefined && want.has(r.split));
}

/** Source label names (exact keys) or patterns (matched against the keys) per dataset. */
export type LabelSources = Partial<Record<string, readonly (string | RegExp)[]>>;

/**
 * Common pathology list → the label names of each source. Canonical names follow CheXpert where it has the class.
 * Sources: chexpert / mimic / brax share CheXpert's 14 observations; nih uses `Finding Labels` tokens; vindr its
 * label columns; rsna its single class; padchest its lower-cased report labels.
 *
 * PadChest entries are patterns over its ~190 labels (lower case), chosen after torchxrayvision's PC_Dataset mapping
 * (which matches substrings); they are UNVERIFIED against the complete PadChest label list. Note the deliberate
 * choices: 'Pleural Effusion' matches "pleural effusion" only (not "pericardial effusion"), 'Atelectasis' matches all
 * atelectasis sub-types, 'Fracture' all fracture sub-types (VinDr: rib and clavicle fractures).
 * NIH's Mass and Nodule and VinDr's combined 'Nodule/Mass' meet in 'Nodule/Mass'.
 */
export const LABEL_MAP: Readonly<Record<string, LabelSources>> = {
  'No Finding': { chexpert: ['No Finding'], mimic: ['No Finding'], brax: ['No Finding'], nih: ['No Finding'], vindr: ['No finding'], padchest: ['normal'] },
  'Enlarged Cardiomediastinum': { chexpert: ['Enlarged Cardiomediastinum'], mimic: ['Enlarged Cardiomediastinum'], brax: ['Enlarged Cardiomediastinum'] },
  Cardiomegaly: { chexpert: ['Cardiomegaly'], mimic: ['Cardiomegaly'], brax: ['Cardiomegaly'], nih: ['Cardiomegaly'], vindr: ['Cardiomegaly'], padchest: ['cardiomegaly'] },
  'Lung Opacity': { chexpert: ['Lung Opacity'], mimic: ['Lung Opacity'], brax: ['Lung Opacity'], vindr: ['Lung Opacity'] },
  'Lung Lesion': { chexpert: ['Lung Lesion'], mimic: ['Lung Lesion'], brax: ['Lung Lesion'] },
  Edema: { chexpert: ['Edema'], mimic: ['Edema'], brax: ['Edema'], nih: ['Edema'], vindr: ['Edema'], padchest: [/edema/] },
  Consolidation: { chexpert: ['Consolidation'], mimic: ['Consolidation'], brax: ['Consolidation'], nih: ['Consolidation'], vindr: ['Consolidation'], padchest: ['consolidation'] },
  Pneumonia: { chexpert: ['Pneumonia'], mimic: ['Pneumonia'], brax: ['Pneumonia'], nih: ['Pneumonia'], vindr: ['Pneumonia'], rsna: ['Pneumonia'], padchest: ['pneumonia'] },
  Atelectasis: { chexpert: ['Atelectasis'], mimic: ['Atelectasis'], brax: ['Atelectasis'], nih: ['Atelectasis'], vindr: ['Atelectasis'], padchest: [/atelectasis/] },
  Pneumothorax: { chexpert: ['Pneumothorax'], mimic: ['Pneumothorax'], brax: ['Pneumothorax'], nih: ['Pneumothorax'], vindr: ['Pneumothorax'], padchest: ['pneumothorax'] },
  // NIH calls it "Effusion" (CXformer and torchxrayvision rename CheXpert's class to that).
  'Pleural Effusion': { chexpert: ['Pleural Effusion'], mimic: ['Pleural Effusion'], brax: ['Pleural Effusion'], nih: ['Effusion'], vindr: ['Pleural effusion'], padchest: ['pleural effusion'] },
  'Pleural Other': { chexpert: ['Pleural Other'], mimic: ['Pleural Other'], brax: ['Pleural Other'] },
  Fracture: { chexpert: ['Fracture'], mimic: ['Fracture'], brax: ['Fracture'], vindr: ['Rib fracture', 'Clavicle fracture'], padchest: [/fracture/] },
  'Support Devices': { chexpert: ['Support Devices'], mimic: ['Support Devices'], brax: ['Support Devices'] },
  Infiltration: { nih: ['Infiltration'], vindr: ['Infiltration'], padchest: ['infiltrates'] },
  Mass: { nih: ['Mass'], padchest: ['mass'] },
  Nodule: { nih: ['Nodule'], padchest: ['nodule'] },
  'Nodule/Mass': { nih: ['Nodule', 'Mass'], vindr: ['Nodule/Mass'], padchest: ['nodule', 'mass'] },
  Emphysema: { nih: ['Emphysema'], vindr: ['Emphysema'], padchest: ['emphysema'] },
  Fibrosis: { nih: ['Fibrosis'], vindr: ['Pulmonary fibrosis'], padchest: ['pulmonary fibrosis'] },
  'Pleural Thickening': { nih: ['Pleural_Thickening'], vindr: ['Pleural thickening'], padchest: ['pleural thickening'] },
  Hernia: { nih: ['Hernia'], padchest: ['hiatal hernia'] },
  'Aortic Enlargement': { vindr: ['Aortic enlargement'] },
  Tuberculosis: { vindr: ['Tuberculosis'], padchest: ['tuberculosis'] },
};

/** Datasets whose label lists name only the positives, so a mapped label that is absent is a negative. */
export const EXHAUSTIVE_LABELS: ReadonlySet<string> = new Set(['padchest']);

/** Combines several source values: any 1 → 1, else any −1 → −1, else any 0 → 0, else any null → null. */
function combine(values: readonly (number | null)[]): number | null | undefined {
  if (values.length === 0) return undefined;
  if (values.includes(1)) return 1;
  if (values.includes(-1)) return -1;
  if (values.includes(0)) return 0;
  return null;
}

/**
 * Relabels records onto `classes`: each target class takes the source labels the table names for the record's
 * dataset (combined: 1 beats −1 beats 0 beats blank); a class the table does not cover for that dataset keeps the
 * record's label of the same name if it has one, else is left absent (masked by the default policy). For datasets
 * with exhaustive positive lists (PadChest) a covered class with no matching label is written as 0.
 * @returns new records whose labels hold only `classes`
 */
export function relabel(records: readonly CxrRecord[], classes: readonly string[], table: Readonly<Record<string, LabelSources>> = LABEL_MAP): CxrRecord[] {
  return records.map((r) => {
    const keys = Object.keys(r.labels);
    const labels: Record<string, number | null> = {};
    for (const cls of classes) {
      const sources = table[cls]?.[r.dataset];
      let v: number | null | undefined;
      if (sources === undefined) {
        v = Object.prototype.hasOwnProperty.call(r.labels, cls) ? r.labels[cls] : undefined;
      } else {
        const vals: (number | null)[] = [];
        for (const s of sources) {
          for (const k of keys) if (typeof s === 'string' ? k === s : s.test(k)) vals.push(r.labels[k] as number | null);
        }
        v = combine(vals);
        if (v === undefined && EXHAUSTIVE_LABELS.has(r.dataset)) v = 0;
      }
      if (v !== undefined) labels[cls] = v;
    }
    return { ...r, labels };
  });
}

/** One source of a pretraining mixture. */
export interface MixSource {
  records: readonly CxrRecord[];
  /** Sampling weight for 'weighted' mode. @default the number of records (proportional in expectation) */
  weight?: number;
}

export interface MixOptions {
  /**
   * 'proportional': the concatenation of all sources, each record once (CXformer's pretraining: uniform over images,
   * so each dataset is drawn in proportion to its size; shuffling is the sampler's job). 'weighted': each position
   * draws a source with probability weight / Σweights, then that source's next record from its own seeded
   * permutation (reshuffled each time it is used up).
   */
  mode: 'proportional' | 'weighted';
  seed: number;
  /** Plan length for 'weighted'. @default the total number of records */
  length?: number;
}

/** A deterministic sampling plan: position p uses record `index[p]` of source `source[p]`. */
export interface MixPlan {
  mode: 'proportional' | 'weighted';
  length: number;
  source: Uint16Array;
  index: Uint32Array;
  /** Positions per source. */
  counts: number[];
}

/**
 * Plans a mixture of datasets for pretraining.
 * @throws DataError on no sources, more than 65535 sources, a negative or non-finite weight, all-zero weights, an
 *   empty source with a positive weight, or a bad length
 */
export function mixDatasets(sources: readonly MixSource[], opts: MixOptions): MixPlan {
  if (sources.length === 0) throw new DataError('mixDatasets: no sources');
  if (sources.length > 0xffff) throw new DataError(`mixDatasets: at most 65535 sources, got ${sources.length}`);
  const sizes = sources.map((s) => s.records.length);
  const total = sizes.reduce((a, b) => a + b, 0);
  if (opts.mode === 'proportional') {
    if (opts.length !== undefined && opts.length !== total) {
      throw new DataError(`mixDatasets: a proportional mixture is the concatenation of all ${total} records; length ${opts.length} is not possible (use mode 'weighted')`);
    }
    const source = new Uint16Array(total);
    const index = new Uint32Array(total);
    let p = 0;
    sizes.forEach((n, k) => {
      for (let i = 0; i < n; i++, p++) {
        source[p] = k;
        index[p] = i;
      }
    });
    return { mode: 'proportional', length: total, source, index, counts: [...sizes] };
  }
  if (opts.mode !== 'weighted') throw new DataError(`mixDatasets: unknown mode '${String(opts.mode)}' (expected proportional or weighted)`);
  const weights = sources.map((s, k) => s.weight ?? (sizes[k] as number));
  weights.forEach((w, k) => {
    if (!(Number.isFinite(w) && w >= 0)) throw new DataError(`mixDatasets: weight of source ${k} must be a finite number >= 0, got ${w}`);
    if (w > 0 && sizes[k] === 0) throw new DataError(`mixDatasets: source ${k} has weight ${w} but no records`);
  });
  const W = weights.reduce((a, b) => a + b, 0);
  if (!(W > 0)) throw new DataError('mixDatasets: the weights sum to 0');
  const length = opts.length ?? total;
  if (!(Number.isSafeInteger(length) && length >= 0 && length <= 0xffffffff)) throw new DataError(`mixDatasets: length must be an integer >= 0, got ${length}`);
  const cum: number[] = [];
  let acc = 0;
  for (const w of weights) cum.push((acc += w));
  const pick = mulberry32(hashSeed(opts.seed, 0x4d495820));
  const perms: number[][] = sources.map(() => []);
  const cursor = sources.map(() => 0);
  const epoch = sources.map(() => 0);
  const source = new Uint16Array(length);
  const index = new Uint32Array(length);
  const counts = sources.map(() => 0);
  for (let p = 0; p < length; p++) {
    const u = pick() * W;
    let k = 0;
    while (k < cum.length - 1 && (u >= (cum[k] as number) || weights[k] === 0)) k++;
    if (cursor[k] === 0 || cursor[k] === sizes[k]) {
      perms[k] = shuffleInPlace(
        Array.from({ length: sizes[k] as number }, (_, i) => i),
        mulberry32(hashSeed(opts.seed, 0x5045524d, k, epoch[k] as number)),
      );
      epoch[k] = (epoch[k] as number) + 1;
      cursor[k] = 0;
    }
    source[p] = k;
    index[p] = (perms[k] as number[])[cursor[k] as number] as number;
    cursor[k] = (cursor[k] as number) + 1;
    counts[k] = (counts[k] as number) + 1;
  }
  return { mode: 'weighted', length, source, index, counts };
}

/** The records of a plan, in plan order. */
export function planRecords(plan: MixPlan, sources: readonly MixSource[]): CxrRecord[] {
  const out: CxrRecord[] = new Array(plan.length);
  for (let p = 0; p < plan.length; p++) {
    out[p] = (sources[plan.source[p] as number] as MixSource).records[plan.index[p] as number] as CxrRecord;
  }
  return out;
}
