/**
 * Evaluation report of a multi-label classifier on a test set: `writeEvaluationReport(dir, input)` writes
 *
 * - `predictions.csv`: `image_id, patient_id, prob_<class>, label_<class>, …` (one row per image; a masked label is an
 *   empty cell; probabilities with the shortest decimal form that round-trips their float32/float64 value);
 * - `metrics.json`: per-class and macro/micro AUROC and AUPRC (point estimate, bootstrap median and percentile CI),
 *   sensitivity and specificity at the threshold (positive when p ≥ threshold), Brier score, undefined metrics with
 *   their reasons, n, n_bootstrap, seed, the resampling unit and the percentile definition;
 * - `roc.svg/png`, `pr.svg/png`, `calibration.svg/png` (see plots.ts);
 * - `report.md`: a Markdown table formatted like the CXformer model card, "83.34 [83.17, 83.39]" = bootstrap median
 *   [2.5th, 97.5th percentile] × 100, followed by the plots.
 *
 * Every file is written atomically (temporary file + rename).
 */
import { mkdir } from 'node:fs/promises';
import * as path from 'node:path';

import { formatCsv } from '../data/csv.js';
import { writeFileAtomic } from '../data/fsutil.js';
import { formatCardCell, type JsonMetric } from './format.js';
import { bootstrapMultiLabel, PERCENTILE_METHOD, type BootstrapInterval, type BootstrapResult } from './bootstrap.js';
import {
  brierScore,
  calibrationCurve,
  classColumn,
  macroAverage,
  multiLabelAveragePrecision,
  multiLabelRocAuc,
  numRows,
  precisionRecallCurve,
  rocCurve,
  selectLabelled,
  sensitivitySpecificity,
  type LabelArray,
  type MaskArray,
  type MetricResult,
  type MultiLabelData,
  type ScoreArray,
} from './metrics.js';
import { calibrationSvg, prSvg, rocSvg, writePlot, type CalibrationSeries, type PrSeries, type RocSeries } from './plots.js';

export interface EvaluationInput {
  /** Class names, in column order. */
  classes: readonly string[];
  /** N×C predicted probabilities, row-major. */
  scores: ScoreArray;
  /** N×C labels, row-major: 1, 0, or NaN/null (masked). */
  labels: LabelArray;
  /** Optional N×C mask (truthy = labelled). */
  mask?: MaskArray;
  /** Image ids, one per row. */
  ids: readonly string[];
  /** Patient ids, one per row: the bootstrap then resamples patients. */
  patientIds?: readonly string[];
  /** Decision threshold for sensitivity/specificity, one for all classes or one per class. @default 0.5 */
  threshold?: number | readonly number[];
  /** Bootstrap settings, or false for point estimates only. @default { n: 1000, seed: 0, level: 0.95 } */
  bootstrap?: false | { n?: number; seed?: number; level?: number };
  /** Also write PNG files. @default true */
  png?: boolean;
  /** PNG scale (pixels per SVG pixel). @default 2 */
  pngScale?: number;
  /** Bins of the calibration plot. @default 10 */
  calibrationBins?: number;
  /** Title prefix of the report and plots. */
  title?: string;
}

export { formatCardCell, type JsonMetric };

export interface ClassMetricsJson {
  class: string;
  /** Labelled samples. */
  n: number;
  n_pos: number;
  n_neg: number;
  threshold: number;
  auroc: JsonMetric;
  auprc: JsonMetric;
  sensitivity: JsonMetric;
  specificity: JsonMetric;
  brier: JsonMetric;
  tp: number;
  fp: number;
  tn: number;
  fn: number;
}

export interface MetricsJson {
  format: 'cxformer-eval/1';
  /** Images (rows). */
  n: number;
  n_patients: number | null;
  n_classes: number;
  classes: string[];
  threshold: number | number[];
  n_bootstrap: number;
  seed: number | null;
  bootstrap_unit: 'sample' | 'patient' | null;
  ci_level: number | null;
  percentile: string | null;
  per_class: ClassMetricsJson[];
  macro: {
    auroc: JsonMetric & { classes: string[] };
    auprc: JsonMetric & { classes: string[] };
    brier: JsonMetric & { classes: string[] };
    excluded: { class: string; reason: string }[];
    note: string;
  };
  micro: { auroc: JsonMetric; auprc: JsonMetric };
  /** Every undefined metric: class (or 'macro'/'micro'), metric and reason. */
  undefined: { class: string; metric: string; reason: string }[];
}

export interface EvaluationReport {
  dir: string;
  files: { predictions: string; metrics: string; report: string; plots: Record<string, { svg: string; png?: string }> };
  metrics: MetricsJson;
}

/** Shortest decimal string that reads back to the same float32 (for Float32Array input) or float64 value. */
export function formatProbability(v: number, float32: boolean): string {
  if (!Number.isFinite(v)) return String(v);
  if (!float32) return String(v);
  for (let p = 1; p <= 9; p++) {
    const s = Number(v.toPrecision(p));
    if (Math.fround(s) === v) return String(s);
  }
  return String(v);
}

function jsonMetric(r: MetricResult, b?: BootstrapInterval): JsonMetric {
  if (r.value === null) return { value: null, reason: r.reason };
  if (b === undefined) return { value: r.value };
  return { value: r.value, median: b.median, ci: b.lo !== null && b.hi !== null ? [b.lo, b.hi] : null, n_valid: b.nValid, n_skipped: b.nSkipped };
}

const mdEscape = (s: string): string => s.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');

/** Computes everything and writes the report files into `dir` (created if needed). */
export async function writeEvaluationReport(dir: string, input: EvaluationInput): Promise<EvaluationReport> {
  const classes = [...input.classes];
  const C = classes.length;
  const data: MultiLabelData = { numClasses: C, scores: input.scores, labels: input.labels, ...(input.mask !== undefined ? { mask: input.mask } : {}) };
  const N = numRows(data);
  if (input.ids.length !== N) throw new RangeError(`ids has ${input.ids.length} entries for ${N} rows`);
  if (input.patientIds !== undefined && input.patientIds.length !== N) throw new RangeError(`patientIds has ${input.patientIds.length} entries for ${N} rows`);
  if (Array.isArray(input.threshold) && input.threshold.length !== C) throw new RangeError(`threshold has ${input.threshold.length} entries for ${C} classes`);
  const thresholds = classes.map((_, c) => {
    const t = input.threshold === undefined ? 0.5 : typeof input.threshold === 'number' ? input.threshold : input.threshold[c];
    if (t === undefined || !Number.isFinite(t)) throw new RangeError(`threshold for class '${classes[c]}' is missing or not finite`);
    return t;
  });

  // point estimates
  const auroc = multiLabelRocAuc(data, classes);
  const ap = multiLabelAveragePrecision(data, classes);
  let boot: BootstrapResult | undefined;
  if (input.bootstrap !== false) {
    const b = input.bootstrap ?? {};
    boot = bootstrapMultiLabel(data, { ...b, ...(input.patientIds !== undefined ? { patientIds: input.patientIds } : {}) });
  }

  const perClass: ClassMetricsJson[] = [];
  const brier: MetricResult[] = [];
  const undef: MetricsJson['undefined'] = [];
  const rocSeries: RocSeries[] = [];
  const prSeries: PrSeries[] = [];
  const calSeries: CalibrationSeries[] = [];
  const nBins = input.calibrationBins ?? 10;
  const histCounts = new Float64Array(nBins);
  let histEdges: Float64Array = new Float64Array(nBins + 1);
  for (let c = 0; c < C; c++) {
    const col = classColumn(data, c);
    const sel = selectLabelled(col.scores, col.labels);
    const ss = sensitivitySpecificity(col.scores, col.labels, thresholds[c]!);
    const br = brierScore(col.scores, col.labels);
    brier.push(br);
    const row: ClassMetricsJson = {
      class: classes[c]!,
      n: sel.nPos + sel.nNeg,
      n_pos: sel.nPos,
      n_neg: sel.nNeg,
      threshold: thresholds[c]!,
      auroc: jsonMetric(auroc.perClass[c]!, boot?.auroc.perClass[c]),
      auprc: jsonMetric(ap.perClass[c]!, boot?.ap.perClass[c]),
      sensitivity: jsonMetric(ss.sensitivity),
      specificity: jsonMetric(ss.specificity),
      brier: jsonMetric(br),
      tp: ss.tp,
      fp: ss.fp,
      tn: ss.tn,
      fn: ss.fn,
    };
    perClass.push(row);
    for (const k of ['auroc', 'auprc', 'sensitivity', 'specificity', 'brier'] as const) {
      const m = row[k];
      if (m.value === null) undef.push({ class: classes[c]!, metric: k, reason: m.reason });
    }
    const roc = rocCurve(col.scores, col.labels);
    const aucValue = auroc.perClass[c]!.value;
    // The legends show the statistic report.md shows: the bootstrap median when the bootstrap ran, else the point estimate.
    const aucShown = boot?.auroc.perClass[c]?.median ?? aucValue;
    if (roc.value !== null && aucValue !== null && aucShown !== null) rocSeries.push({ name: classes[c]!, fpr: roc.value.fpr, tpr: roc.value.tpr, auc: aucShown });
    const pr = precisionRecallCurve(col.scores, col.labels);
    const apValue = ap.perClass[c]!.value;
    const apShown = boot?.ap.perClass[c]?.median ?? apValue;
    if (pr.value !== null && apValue !== null && apShown !== null) prSeries.push({ name: classes[c]!, precision: pr.value.precision, recall: pr.value.recall, ap: apShown });
    if (sel.scores.length > 0) {
      const cal = calibrationCurve(col.scores, col.labels, nBins);
      calSeries.push({ name: classes[c]!, probPred: cal.probPred, probTrue: cal.probTrue });
      cal.counts.forEach((v, b) => (histCounts[b] = histCounts[b]! + v));
      histEdges = cal.edges;
    }
  }
  if (calSeries.length === 0) for (let b = 0; b <= nBins; b++) histEdges[b] = b / nBins;

  const brierMacro = macroAverage(brier, classes);
  const names = (idx: number[]): string[] => idx.map((c) => classes[c]!);
  const macroJson = (m: ReturnType<typeof macroAverage>, b?: BootstrapInterval): JsonMetric & { classes: string[] } => {
    const base: JsonMetric = m.value === null ? { value: null, reason: 'no class defined' } : jsonMetric({ value: m.value }, b);
    return { ...base, classes: names(m.included) };
  };
  const excluded = auroc.macro.excluded.map((e) => ({ class: e.name, reason: e.reason }));
  const metrics: MetricsJson = {
    format: 'cxformer-eval/1',
    n: N,
    n_patients: input.patientIds !== undefined ? new Set(input.patientIds).size : null,
    n_classes: C,
    classes,
    threshold: typeof input.threshold === 'object' ? [...thresholds] : thresholds[0] ?? 0.5,
    n_bootstrap: boot?.n ?? 0,
    seed: boot?.seed ?? null,
    bootstrap_unit: boot?.unit ?? null,
    ci_level: boot?.level ?? null,
    percentile: boot !== undefined ? PERCENTILE_METHOD : null,
    per_class: perClass,
    macro: {
      auroc: macroJson(auroc.macro, boot?.auroc.macro),
      auprc: macroJson(ap.macro, boot?.ap.macro),
      brier: macroJson(brierMacro),
      excluded,
      note: auroc.macro.note,
    },
    micro: { auroc: jsonMetric(auroc.micro, boot?.auroc.micro), auprc: jsonMetric(ap.micro, boot?.ap.micro) },
    undefined: undef,
  };
  for (const [k, m] of [
    ['auroc', metrics.macro.auroc],
    ['auprc', metrics.macro.auprc],
  ] as const) {
    if (m.value === null) undef.push({ class: 'macro', metric: k, reason: m.reason });
  }
  for (const [k, m] of [
    ['auroc', metrics.micro.auroc],
    ['auprc', metrics.micro.auprc],
  ] as const) {
    if (m.value === null) undef.push({ class: 'micro', metric: k, reason: m.reason });
  }

  await mkdir(dir, { recursive: true });
  // predictions.csv
  const f32 = input.scores instanceof Float32Array;
  const header = ['image_id', 'patient_id', ...classes.flatMap((c) => [`prob_${c}`, `label_${c}`])];
  const rows: string[][] = [];
  for (let i = 0; i < N; i++) {
    const r = [input.ids[i]!, input.patientIds?.[i] ?? ''];
    for (let c = 0; c < C; c++) {
      const k = i * C + c;
      const l = input.labels[k];
      const masked = (input.mask !== undefined && !input.mask[k]) || l === null || l === undefined || Number.isNaN(l);
      r.push(formatProbability(input.scores[k] as number, f32), masked ? '' : String(l));
    }
    rows.push(r);
  }
  const files: EvaluationReport['files'] = {
    predictions: path.join(dir, 'predictions.csv'),
    metrics: path.join(dir, 'metrics.json'),
    report: path.join(dir, 'report.md'),
    plots: {},
  };
  await writeFileAtomic(files.predictions, formatCsv(header, rows));
  await writeFileAtomic(files.metrics, `${JSON.stringify(metrics, null, 2)}\n`);

  // plots
  const png = input.png ?? true;
  const plotOpts = { png, scale: input.pngScale ?? 2 };
  const t = input.title !== undefined ? `${input.title}: ` : '';
  const statistic = boot ? `bootstrap median of ${boot.n}, as in report.md` : 'point estimate, as in report.md';
  files.plots.roc = await writePlot(dir, 'roc', rocSvg(rocSeries, { title: `${t}ROC curves`, statistic }), plotOpts);
  files.plots.pr = await writePlot(dir, 'pr', prSvg(prSeries, { title: `${t}Precision–recall curves`, statistic }), plotOpts);
  files.plots.calibration = await writePlot(dir, 'calibration', calibrationSvg(calSeries, { edges: histEdges, counts: histCounts }, { title: `${t}Calibration` }), plotOpts);

  await writeFileAtomic(files.report, renderMarkdown(metrics, input.title, png));
  return { dir, files, metrics };
}

/** The Markdown report of a metrics.json object. */
export function renderMarkdown(m: MetricsJson, title: string | undefined, png: boolean): string {
  const pc = (r: JsonMetric): string => (r.value === null ? `— (${r.reason})` : (r.value * 100).toFixed(2));
  const br = (r: JsonMetric): string => (r.value === null ? `— (${r.reason})` : r.value.toFixed(4));
  const thr = typeof m.threshold === 'number' ? `${m.threshold}` : 'per class';
  const lines: string[] = [];
  lines.push(`# ${title !== undefined ? mdEscape(title) : 'Evaluation report'}`, '');
  const who = m.n_patients !== null ? `${m.n} images of ${m.n_patients} patients` : `${m.n} images`;
  lines.push(`${who}, ${m.n_classes} classes.`);
  if (m.n_bootstrap > 0) {
    lines.push(
      `AUROC and AUPRC are the median [${((1 - (m.ci_level ?? 0.95)) * 50).toFixed(1)}th, ${((1 + (m.ci_level ?? 0.95)) * 50).toFixed(1)}th percentile] ` +
        `over ${m.n_bootstrap} bootstrap resamples of ${m.bootstrap_unit === 'patient' ? 'patients' : 'images'} (seed ${m.seed}; numpy's linear percentile), × 100; ` +
        'point estimates are in metrics.json.',
    );
  } else lines.push('AUROC and AUPRC are point estimates × 100 (no bootstrap).');
  lines.push(`Sensitivity and specificity (× 100) at threshold ${thr} (positive when p ≥ threshold); Brier score = mean (p − y)².`, '');
  lines.push('| Class | n | Positives | AUROC | AUPRC | Sensitivity | Specificity | Brier |');
  lines.push('|---|---:|---:|---|---|---:|---:|---:|');
  for (const c of m.per_class) {
    lines.push(`| ${mdEscape(c.class)} | ${c.n} | ${c.n_pos} | ${formatCardCell(c.auroc)} | ${formatCardCell(c.auprc)} | ${pc(c.sensitivity)} | ${pc(c.specificity)} | ${br(c.brier)} |`);
  }
  lines.push(`| **Macro** | | | ${formatCardCell(m.macro.auroc)} | ${formatCardCell(m.macro.auprc)} | | | ${br(m.macro.brier)} |`);
  lines.push(`| **Micro** | | | ${formatCardCell(m.micro.auroc)} | ${formatCardCell(m.micro.auprc)} | | | |`);
  lines.push('');
  if (m.macro.note !== '') lines.push(`Note: ${mdEscape(m.macro.note)}.`, '');
  const ext = png ? 'png' : 'svg';
  lines.push('## Curves', '');
  lines.push(`![ROC curves](roc.${ext})`, '', `![Precision–recall curves](pr.${ext})`, '', `![Calibration](calibration.${ext})`, '');
  return lines.join('\n');
}
