/**
 * Report-generation data: image/report pairs as `ReportRecord`s, from the three sources (docs/report-data.md):
 * - `phantom`: a `cxformer synth` folder (src/data/synth.ts): `reports.csv` (`Path,Findings`) joined on `Path` to
 *   `labels.csv` (`Patient`, `Split`, the CheXpert-style cells). One record per image; id = `Path` as written
 *   (`images/P00001_01.png`, the key the phantom reports.csv and the evaluation pairs use); view = the `AP/PA` cell;
 *   labels = every labels.csv column other than Path, Sex, Age, Frontal/Lateral, AP/PA, Patient and Split ('No
 *   Finding' and the findings; read from the header, so that this module does not load the generator and sharp).
 * - `mimic`: MIMIC-CXR report files joined to MIMIC-CXR-JPG images, R2Gen protocol by default
 *   (src/datasets/mimic-reports.ts).
 * - `r2gen` / `iu-xray`: R2Gen's `annotation.json` for MIMIC-CXR or IU X-ray (src/datasets/r2gen.ts).
 *
 * Invariant checked for the phantoms: splits are per patient (synth.ts assigns them so), so no patient is in two
 * splits; a hand-edited file that breaks this is an error naming the patient, both splits and both lines.
 * Labels keep the source's values: 1 positive, 0 negative, −1 uncertain, null blank (not mentioned).
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';

import { DataError } from '../data/errors.js';
import { hashSeed, mulberry32, shuffleInPlace } from '../data/random.js';
import { normalizeView, parseLabelCell } from '../datasets/common.js';
import { type MimicReportOptions, type MimicReportSummary, loadMimicReports } from '../datasets/mimic-reports.js';
import { type R2GenOptions, type R2GenSummary, loadR2GenAnnotation } from '../datasets/r2gen.js';
import { optionalColumn, readTable, requireColumns } from '../datasets/table.js';
import { CxformerError } from '../native/load.js';

/** Split of a report record. */
export type ReportSplit = 'train' | 'valid' | 'test';

/** The splits, in order. */
export const REPORT_SPLITS: readonly ReportSplit[] = ['train', 'valid', 'test'];

/** A label cell: 1 positive, 0 negative, −1 uncertain, null blank. */
export type ReportLabel = 1 | 0 | -1 | null;

/** One image/report pair. */
export interface ReportRecord {
  /** Unique id within the source: phantom `Path`, MIMIC `dicom_id`, R2Gen `id`. */
  id: string;
  /** Absolute image path (the first image for multi-image R2Gen entries; see `R2GenRecord.images`). */
  image: string;
  /** The reference report text. */
  report: string;
  split: ReportSplit;
  patient: string;
  study?: string;
  /** View ('PA', 'AP', …) where the source says. */
  view?: string;
  /** The report's indication (MIMIC-CXR: its INDICATION section), where the source has one; not part of `report`. */
  indication?: string;
  /** Labels of the image or study, where the source has them. */
  labels?: Record<string, ReportLabel>;
}

/** Records and patients per split, for logging. */
export interface ReportSplitSummary {
  records: Record<ReportSplit, number>;
  patients: Record<ReportSplit, number>;
  total: { records: number; patients: number };
  /** Patients found in more than one split (0 for the phantoms and MIMIC's official split). */
  patientsInSeveralSplits: number;
}

/** Counts per split. */
export function reportSplitSummary(records: readonly ReportRecord[]): ReportSplitSummary {
  const n: Record<ReportSplit, number> = { train: 0, valid: 0, test: 0 };
  const sets: Record<ReportSplit, Set<string>> = { train: new Set(), valid: new Set(), test: new Set() };
  const splitsOf = new Map<string, Set<ReportSplit>>();
  for (const r of records) {
    n[r.split]++;
    sets[r.split].add(r.patient);
    let s = splitsOf.get(r.patient);
    if (s === undefined) splitsOf.set(r.patient, (s = new Set()));
    s.add(r.split);
  }
  let several = 0;
  for (const s of splitsOf.values()) if (s.size > 1) several++;
  return {
    records: n,
    patients: { train: sets.train.size, valid: sets.valid.size, test: sets.test.size },
    total: { records: records.length, patients: splitsOf.size },
    patientsInSeveralSplits: several,
  };
}

/** One log line: `train 80 records / 40 patients, valid …, test …`. */
export function formatReportSplitSummary(s: ReportSplitSummary): string {
  const parts = REPORT_SPLITS.map((k) => `${k} ${s.records[k]} records / ${s.patients[k]} patients`);
  const warn = s.patientsInSeveralSplits > 0 ? ` (${s.patientsInSeveralSplits} patients in several splits)` : '';
  return `${parts.join(', ')}${warn}`;
}

const SPLIT_VALUES: Readonly<Record<string, ReportSplit>> = { train: 'train', valid: 'valid', test: 'test' };

/** labels.csv columns that are not label cells (src/data/synth.ts LABEL_HEADER). */
const NOT_LABELS = new Set(['Path', 'Sex', 'Age', 'Frontal/Lateral', 'AP/PA', 'Patient', 'Split']);

export interface PhantomReportOptions {
  /**
   * Check that every image file exists: true throws a DataError with the count and the first few missing paths.
   * @default false
   */
  checkFiles?: boolean;
}

/**
 * Loads a `cxformer synth` folder's reports as records, in `reports.csv` order.
 * @throws DataError for a missing file or column, a repeated `Path`, an empty report or patient, a split other than
 *   train/valid/test, a bad label cell, a report without a labels row or a labels row without a report (naming the
 *   id), or a patient in two splits
 */
export async function loadPhantomReports(root: string, opts: PhantomReportOptions = {}): Promise<ReportRecord[]> {
  const base = path.resolve(root);
  const reportsFile = path.join(base, 'reports.csv');
  const labelsFile = path.join(base, 'labels.csv');
  const reports = await readTable(reportsFile);
  const labels = await readTable(labelsFile);
  const [cPathR, cText] = requireColumns(reports, ['Path', 'Findings'], 'a cxformer synth reports.csv') as [number, number];
  const labelColumns = labels.header.filter((h) => !NOT_LABELS.has(h));
  const cL = requireColumns(labels, ['Path', 'Patient', 'Split', ...labelColumns], 'a cxformer synth labels.csv');
  const [cPathL, cPatient, cSplit] = cL as [number, number, number];
  const cView = optionalColumn(labels, 'AP/PA');

  // labels.csv rows by Path.
  interface LabelRow {
    patient: string;
    split: ReportSplit;
    view: string | undefined;
    labels: Record<string, ReportLabel>;
    line: number;
  }
  const byPath = new Map<string, LabelRow>();
  const firstSplit = new Map<string, { split: ReportSplit; line: number }>();
  labels.rows.forEach((cells, k) => {
    const line = labels.lines[k] as number;
    const row = k + 1;
    const where = (column: string) => ({ file: labelsFile, line, row, column });
    const id = (cells[cPathL] as string).trim();
    if (id === '') throw new DataError('empty Path', where('Path'));
    const prev = byPath.get(id);
    if (prev !== undefined) throw new DataError(`Path '${id}' appears twice (first at line ${prev.line})`, where('Path'));
    const patient = (cells[cPatient] as string).trim();
    if (patient === '') throw new DataError(`empty Patient for '${id}'`, where('Patient'));
    const rawSplit = (cells[cSplit] as string).trim();
    const split = SPLIT_VALUES[rawSplit];
    if (split === undefined) throw new DataError(`expected a split train, valid or test, found '${rawSplit}'`, where('Split'));
    const seen = firstSplit.get(patient);
    if (seen === undefined) firstSplit.set(patient, { split, line });
    else if (seen.split !== split) {
      throw new DataError(
        `patient '${patient}' is in split '${split}' here and in '${seen.split}' at line ${seen.line}; splits must be per patient ` +
          '(cxformer synth assigns them so: was the file edited?)',
        where('Split'),
      );
    }
    const cellsOut: Record<string, ReportLabel> = {};
    labelColumns.forEach((name, j) => {
      cellsOut[name] = parseLabelCell(cells[cL[3 + j] as number] as string, where(name)) as ReportLabel;
    });
    const view = cView === undefined ? undefined : normalizeView(cells[cView]);
    byPath.set(id, { patient, split, view, labels: cellsOut, line });
  });

  const records: ReportRecord[] = [];
  const used = new Map<string, number>();
  reports.rows.forEach((cells, k) => {
    const line = reports.lines[k] as number;
    const where = (column: string) => ({ file: reportsFile, line, row: k + 1, column });
    const id = (cells[cPathR] as string).trim();
    if (id === '') throw new DataError('empty Path', where('Path'));
    const prev = used.get(id);
    if (prev !== undefined) throw new DataError(`Path '${id}' appears twice (first at line ${prev})`, where('Path'));
    used.set(id, line);
    const text = cells[cText] as string;
    if (text.trim() === '') throw new DataError(`empty report for '${id}' (expected the findings text)`, where('Findings'));
    const l = byPath.get(id);
    if (l === undefined) throw new DataError(`report '${id}' has no row in ${labelsFile} (expected a labels row with the same Path)`, where('Path'));
    records.push({
      id,
      image: path.resolve(base, id),
      report: text,
      split: l.split,
      patient: l.patient,
      ...(l.view !== undefined ? { view: l.view } : {}),
      labels: l.labels,
    });
  });
  const orphans = [...byPath.entries()].filter(([id]) => !used.has(id));
  if (orphans.length > 0) {
    const [id, l] = orphans[0] as [string, LabelRow];
    throw new DataError(
      `image '${id}' has no report in ${reportsFile} (expected a reports row with the same Path)` + (orphans.length > 1 ? `; ${orphans.length - 1} more labels rows lack a report` : ''),
      { file: labelsFile, line: l.line, column: 'Path' },
    );
  }
  if (records.length === 0) throw new DataError('no reports (the file has a header only)', { file: reportsFile });

  if (opts.checkFiles) {
    const missing: ReportRecord[] = [];
    for (const r of records) {
      const ok = await stat(r.image).then(
        (s) => s.isFile(),
        () => false,
      );
      if (!ok) missing.push(r);
    }
    if (missing.length > 0) {
      const first = missing
        .slice(0, 5)
        .map((r) => r.image)
        .join(', ');
      throw new DataError(`${missing.length} of ${records.length} image file(s) do not exist (first: ${first}${missing.length > 5 ? ', …' : ''})`, { file: reportsFile });
    }
  }
  return records;
}

/** Where to load report records from (`loadReportRecords`). */
export type ReportSourceSpec =
  | ({ kind: 'phantom'; root: string } & PhantomReportOptions)
  | ({ kind: 'mimic'; root: string } & MimicReportOptions)
  | ({ kind: 'r2gen' | 'iu-xray'; root: string } & Omit<R2GenOptions, 'dataset'>);

/** What `loadReportRecords` returns: the records, their split summary and the source's own summary. */
export interface LoadedReports {
  kind: ReportSourceSpec['kind'];
  records: ReportRecord[];
  splits: ReportSplitSummary;
  /** MIMIC: what was dropped and why; R2Gen: entries and images; phantom: none. */
  source?: MimicReportSummary | R2GenSummary;
}

/**
 * Loads report records from one source: `phantom` (a synth folder), `mimic` (report files + MIMIC-CXR-JPG),
 * `r2gen` (R2Gen's MIMIC-CXR annotation.json) or `iu-xray` (R2Gen's IU X-ray annotation.json).
 * @throws DataError from the source's loader; TypeError for an unknown kind
 */
export async function loadReportRecords(spec: ReportSourceSpec): Promise<LoadedReports> {
  switch (spec.kind) {
    case 'phantom': {
      const { kind, root, ...opts } = spec;
      const records = await loadPhantomReports(root, opts);
      return { kind, records, splits: reportSplitSummary(records) };
    }
    case 'mimic': {
      const { kind, root, ...opts } = spec;
      const { records, summary } = await loadMimicReports(root, opts);
      return { kind, records, splits: reportSplitSummary(records), source: summary };
    }
    case 'r2gen':
    case 'iu-xray': {
      const { kind, root, ...opts } = spec;
      const { records, summary } = await loadR2GenAnnotation(root, { ...opts, dataset: kind === 'r2gen' ? 'mimic' : 'iu-xray' });
      return { kind, records, splits: reportSplitSummary(records), source: summary };
    }
    default: {
      const k = (spec as { kind?: unknown }).kind;
      throw new TypeError(`unknown report source kind ${JSON.stringify(k)} (expected 'phantom', 'mimic', 'r2gen' or 'iu-xray')`);
    }
  }
}

/** The splits a report trainer uses; `held` is the validation split, or the test split when there is none. */
export interface TrainingSplits {
  train: ReportRecord[];
  valid: ReportRecord[];
  test: ReportRecord[];
  held: ReportRecord[];
}

/**
 * A source's records split for training (logged): `maxTrain` keeps a seeded sample of the training records (in
 * their order); every split a trainer needs must be non-empty.
 */
export async function trainingSplits(data: ReportSourceSpec, seed: number, maxTrain: number | undefined, log: (m: string) => void): Promise<TrainingSplits> {
  const loaded = await loadReportRecords(data);
  let train = loaded.records.filter((r) => r.split === 'train');
  const valid = loaded.records.filter((r) => r.split === 'valid');
  const test = loaded.records.filter((r) => r.split === 'test');
  if (maxTrain !== undefined && train.length > maxTrain) {
    const order = train.map((_, i) => i);
    shuffleInPlace(order, mulberry32(hashSeed(seed, 77)));
    train = order.slice(0, maxTrain).sort((a, b) => a - b).map((i) => train[i]!);
  }
  const held = valid.length ? valid : test;
  if (!train.length || !held.length || !test.length) {
    throw new CxformerError('CXF_INPUT', `report training needs train, valid (or test) and test records; found train ${train.length}, valid ${valid.length}, test ${test.length}`);
  }
  log(`data: ${data.kind} ${data.root}: train ${train.length}, valid ${valid.length}, test ${test.length} reports`);
  return { train, valid, test, held };
}
