/**
 * Report labelers (text → CheXpert-style cells): `phantom` (exact, phantom reports), `rules` (cheXpert-lite, an
 * approximation of the CheXpert labeler) and `labels:FILE` (labels computed elsewhere, e.g. by CheXbert).
 */
import { importLabeler, type ImportLabeler, type ImportOptions } from './import.js';
import { phantomLabeler } from './phantom.js';
import { rulesLabeler } from './rules.js';
import type { DiagnosingLabeler, Labeler, LabelRun } from './types.js';

export * from './types.js';
export { PHANTOM_CLASSES, PHANTOM_TO_CHEXBERT, parsePhantomReport, phantomFacts, phantomFactF1, phantomLabeler, type PhantomFacts } from './phantom.js';
export { cleanReport, labelReportRules, rulesLabeler } from './rules.js';
export { importLabeler, parseLabels, readLabels, lookupLabels, type ImportLabeler, type ImportOptions, type ImportedLabels } from './import.js';

/** The labeler names `cxformer label --labeler` accepts. */
export const LABELER_SPECS = ['phantom', 'rules', 'labels:FILE'] as const;

/**
 * A labeler from its name: `phantom`, `rules` or `labels:FILE`.
 * @throws Error (code CXF_ARG) naming the accepted names
 */
export function labelerFromSpec(spec: string, importOptions: ImportOptions = {}): DiagnosingLabeler | ImportLabeler {
  if (spec === 'phantom') return phantomLabeler();
  if (spec === 'rules') return rulesLabeler();
  if (spec.startsWith('labels:') && spec.length > 'labels:'.length) return importLabeler(spec.slice('labels:'.length), importOptions);
  throw Object.assign(new Error(`unknown labeler '${spec}': expected ${LABELER_SPECS.join(', ')}`), { code: 'CXF_ARG' });
}

const isImport = (l: Labeler): l is ImportLabeler => typeof (l as ImportLabeler).labelIds === 'function';
const isDiagnosing = (l: Labeler): l is DiagnosingLabeler => typeof (l as DiagnosingLabeler).analyze === 'function';

/**
 * Labels report texts: rows in input order with the labeler's classes, and its diagnostics (sentences it could not
 * read, empty reports). An imported-labels labeler keyed by id looks the rows up by `opts.ids`.
 */
export function labelReports(texts: readonly string[], labeler: Labeler, opts: { ids?: readonly string[] } = {}): LabelRun {
  if (opts.ids && opts.ids.length !== texts.length) throw new RangeError(`labelReports: ${texts.length} texts but ${opts.ids.length} ids`);
  if (isImport(labeler) && labeler.labels.keyedBy === 'id') {
    if (!opts.ids) throw new RangeError(`labelReports: ${labeler.name} is keyed by report id: pass opts.ids`);
    return { classes: labeler.classes, rows: labeler.labelIds(opts.ids), diagnostics: [] };
  }
  if (isDiagnosing(labeler)) return labeler.analyze(texts);
  return { classes: labeler.classes, rows: labeler.label(texts), diagnostics: [] };
}
