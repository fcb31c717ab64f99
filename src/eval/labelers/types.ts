/**
 * Report labelers: text → one CheXpert-style cell per class and report.
 *
 * Cell convention (the CheXpert labeler's output, stanfordmlgroup/chexpert-labeler `constants/constants.py`, and the
 * `labels.csv` of `cxformer synth`): `1` positive, `0` negative, `-1` uncertain, `null` not mentioned (a blank cell).
 * CheXbert's 4-class heads use other codes (0 blank, 1 positive, 2 negative, 3 uncertain; stanfordmlgroup/CheXbert
 * `src/constants.py`); src/eval/labelers/import.ts converts them.
 */
import { CHEXPERT_14 } from '../../datasets/classes.js';

/** One label cell: 1 positive, 0 negative, -1 uncertain, null not mentioned. */
export type LabelCell = 1 | 0 | -1 | null;

/** A labeler: the classes it labels, in column order, and the labelling function. */
export interface Labeler {
  /** Short name (`phantom`, `rules`, `labels:FILE`). */
  name: string;
  /** Version of the rules or of the source of the labels (written beside metrics). */
  version: string;
  /** Class names, in the column order of every row `label` returns. */
  classes: readonly string[];
  /** One row of `classes.length` cells per text, in input order. */
  label(texts: readonly string[]): LabelCell[][];
}

/**
 * CheXbert's 14 observations in its head order (stanfordmlgroup/CheXbert `src/constants.py` CONDITIONS, also the
 * column order of f1chexbert's `target_names`): CheXpert's 14 columns (src/datasets/classes.ts, train.csv order)
 * with 'No Finding' moved from first to last.
 */
export const CHEXBERT_14: readonly string[] = [...CHEXPERT_14.slice(1), CHEXPERT_14[0] as string];

/** The F1-5 subset (f1chexbert `target_names_5`: Cardiomegaly, Edema, Consolidation, Atelectasis, Pleural Effusion). */
export const CHEXBERT_5: readonly string[] = ['Cardiomegaly', 'Edema', 'Consolidation', 'Atelectasis', 'Pleural Effusion'];

/** Cell ↔ CSV text, as CheXpert's CSVs and `cxformer synth` write them (`1.0`, `0.0`, `-1.0`, blank). */
export function formatCell(c: LabelCell): string {
  return c === null ? '' : c === 1 ? '1.0' : c === 0 ? '0.0' : '-1.0';
}

/** Reorders the columns of `rows` (labelled with `from`) to `to`; a class of `to` missing from `from` becomes null. */
export function selectColumns(rows: readonly (readonly LabelCell[])[], from: readonly string[], to: readonly string[]): LabelCell[][] {
  const idx = to.map((c) => from.indexOf(c));
  return rows.map((r) => idx.map((i) => (i < 0 ? null : (r[i] ?? null))));
}

/**
 * CheXbert's 4-class head codes (stanfordmlgroup/CheXbert `src/label.py`: 0 blank, 1 positive, 2 negative,
 * 3 uncertain; the No Finding head only 0/1) as cells. Any other code → undefined.
 */
export function cellFromChexbertCode(code: number): LabelCell | undefined {
  return code === 0 ? null : code === 1 ? 1 : code === 2 ? 0 : code === 3 ? -1 : undefined;
}

/** A problem in one report: a sentence outside a grammar, a class mentioned twice, an empty report. */
export interface LabelDiagnostic {
  /** 0-based index of the report in the labelled list. */
  report: number;
  kind: 'unparsed' | 'repeated' | 'conflict' | 'empty';
  /** The sentence concerned (as normalised: lower case). */
  sentence: string;
  message: string;
}

/** A labeler's rows together with the diagnostics of every report. */
export interface LabelRun {
  classes: readonly string[];
  rows: LabelCell[][];
  diagnostics: LabelDiagnostic[];
}

/** A labeler that also reports what it could not read. */
export interface DiagnosingLabeler extends Labeler {
  analyze(texts: readonly string[]): LabelRun;
}

