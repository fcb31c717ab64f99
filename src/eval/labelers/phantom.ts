/**
 * The `phantom` labeler: the exact inverse of the phantom report grammar (src/data/synth.ts `buildReport`), so that
 * CE-F1 and a fact-level F1 on phantom reports carry no labeler noise.
 *
 * Grammar (one sentence per mentioned finding, in this order; a blank cell writes nothing):
 * - Cardiomegaly: "The heart is enlarged." (1) | "The heart size is normal." (0) | "The heart size is borderline." (-1)
 * - Nodule: "A|An <mm> mm nodule in the <right|left> <upper|mid|lower> zone." or "<Two|Three|…> nodules: <mm> mm in the
 *   <side> <zone> zone, … and <mm> mm in the <side> <zone> zone." (1) | "No pulmonary nodule." (0) |
 *   "A possible nodular opacity, indeterminate." (-1)
 * - Pleural Effusion: "<Small|Moderate> bilateral pleural effusions." | "<Size> right and <size> left pleural
 *   effusions." | "<Size> <right|left> pleural effusion." (1) | "No pleural effusion." (0) | "Possible small pleural
 *   effusion." (-1)
 * - Pneumothorax: "Large <side> pneumothorax." | "Small <side> apical pneumothorax." (1) | "No pneumothorax." (0) |
 *   "A small pneumothorax cannot be excluded." (-1)
 * - "No acute cardiopulmonary abnormality." when No Finding is 1.0 and no finding cell is -1.0.
 *
 * No Finding. synth writes it 1.0 exactly when the image has no true finding, and never noises it; the finding cells
 * are noised (a true value replaced by -1.0 or blank), so the text alone decides it only in part:
 * 1. a positive finding sentence → 0 (a 1.0 cell is always the truth);
 * 2. else the closing sentence → 1;
 * 3. else, no uncertain sentence → 0 (had No Finding been 1.0, the closing sentence would have been written);
 * 4. else (uncertain sentences, no positive one, no closing sentence) → null: No Finding was 1.0 if every hedged or
 *    blank finding is truly absent, 0.0 otherwise, and the text cannot tell which. This is the only cell the labeler
 *    does not reproduce; it is left blank, as the CheXpert labeler leaves No Finding blank beside an uncertain finding
 *    (stanfordmlgroup/chexpert-labeler `stages/aggregate.py`).
 *
 * Text accepted: case-insensitive, any whitespace, spaces before `.`, `,` and `:` ignored (word-level tokenisers write
 * "normal ."), the last period optional, "A" or "An" before any number. A sentence outside the grammar, and a class
 * mentioned twice, are reported as diagnostics (never silently dropped); two different values for one class combine
 * as the CheXpert labeler combines mentions (0 + -1 → -1, 0 + 1 → 1, -1 + 1 → 1).
 *
 * CheXpert-14 mapping ({@link PHANTOM_TO_CHEXBERT}): No Finding, Cardiomegaly, Pleural Effusion and Pneumothorax map to
 * the same names; Nodule → Lung Lesion (CheXpert's class for nodules and masses: chexpert-labeler
 * `phrases/mention/lung_lesion.txt` lists "nodule"); the other nine CheXbert classes are never mentioned (null).
 */
import type { DiagnosingLabeler, LabelCell, LabelDiagnostic, LabelRun } from './types.js';
import { CHEXBERT_14, selectColumns } from './types.js';

/** The phantom label columns of labels.csv, in order (src/data/synth.ts LABEL_HEADER's label cells). */
export const PHANTOM_CLASSES: readonly string[] = ['No Finding', 'Cardiomegaly', 'Pleural Effusion', 'Nodule', 'Pneumothorax'];

/** Phantom class → CheXbert class. */
export const PHANTOM_TO_CHEXBERT: Readonly<Record<string, string>> = {
  'No Finding': 'No Finding',
  Cardiomegaly: 'Cardiomegaly',
  'Pleural Effusion': 'Pleural Effusion',
  Nodule: 'Lung Lesion',
  Pneumothorax: 'Pneumothorax',
};

/** Version of the grammar this labeler inverts (src/data/synth.ts SYNTH_VERSION). */
export const PHANTOM_LABELER_VERSION = 'cxformer-synth 1.0.0';

export type PhantomSide = 'right' | 'left';
export type PhantomZone = 'upper' | 'mid' | 'lower';

/** The structured content of one phantom report. */
export interface PhantomFacts {
  /** One cell per PHANTOM_CLASSES entry. */
  cells: LabelCell[];
  /** Positive nodule sentence: each nodule's diameter (mm), side and zone, in the report's order; else []. */
  nodules: { mm: number; side: PhantomSide; zone: PhantomZone }[];
  /** Positive effusion sentence: one entry per side (right first); else []. */
  effusion: { side: PhantomSide; size: 'small' | 'moderate' }[];
  /** Positive pneumothorax sentence; else null. */
  pneumothorax: { side: PhantomSide; size: 'small' | 'large' } | null;
}

export interface PhantomParse {
  facts: PhantomFacts;
  diagnostics: Omit<LabelDiagnostic, 'report'>[];
}

const NUM_WORDS: Record<string, number> = { two: 2, three: 3, four: 4, five: 5, six: 6 };
const SIDE = '(right|left)';
const ZONE = '(upper|mid|lower)';
const ONE_NODULE = new RegExp(`^an? (\\d+) mm nodule in the ${SIDE} ${ZONE} zone$`);
const MANY_NODULES = /^(\w+) nodules: (.+)$/;
const NODULE_ITEM = new RegExp(`^(\\d+) mm in the ${SIDE} ${ZONE} zone$`);

/** Lower case, one space between words, no space before `.`, `,`, `:`; then sentences split at periods. */
function sentences(text: string): string[] {
  const t = text.toLowerCase().replace(/\s+/g, ' ').replace(/ ([.,:])/g, '$1').trim();
  return t
    .split('.')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** CheXpert's combination of two mentions of one class (stanfordmlgroup/chexpert-labeler `stages/aggregate.py`). */
export function combineMentions(a: LabelCell, b: LabelCell): LabelCell {
  if (a === null) return b;
  if (b === null || a === b) return a;
  if (a === 1 || b === 1) return 1; // 0+1 → 1, -1+1 → 1
  return -1; // 0 + -1 → -1
}

type Parsed = { cls: string; cell: LabelCell; apply?: (f: PhantomFacts) => void } | { closing: true };

/** One sentence (normalised, without its period) → its class and cell, or undefined outside the grammar. */
function parseSentence(s: string): Parsed | undefined {
  switch (s) {
    case 'the heart is enlarged':
      return { cls: 'Cardiomegaly', cell: 1 };
    case 'the heart size is normal':
      return { cls: 'Cardiomegaly', cell: 0 };
    case 'the heart size is borderline':
      return { cls: 'Cardiomegaly', cell: -1 };
    case 'no pulmonary nodule':
      return { cls: 'Nodule', cell: 0 };
    case 'a possible nodular opacity, indeterminate':
      return { cls: 'Nodule', cell: -1 };
    case 'no pleural effusion':
      return { cls: 'Pleural Effusion', cell: 0 };
    case 'possible small pleural effusion':
      return { cls: 'Pleural Effusion', cell: -1 };
    case 'no pneumothorax':
      return { cls: 'Pneumothorax', cell: 0 };
    case 'a small pneumothorax cannot be excluded':
      return { cls: 'Pneumothorax', cell: -1 };
    case 'no acute cardiopulmonary abnormality':
      return { closing: true };
  }
  let m = ONE_NODULE.exec(s);
  if (m) {
    const nd = { mm: Number(m[1]), side: m[2] as PhantomSide, zone: m[3] as PhantomZone };
    return { cls: 'Nodule', cell: 1, apply: (f) => void f.nodules.push(nd) };
  }
  m = MANY_NODULES.exec(s);
  if (m) {
    const count = NUM_WORDS[m[1] as string] ?? (/^\d+$/.test(m[1] as string) ? Number(m[1]) : undefined);
    // "a, b and c": split at ", " and at the last " and ".
    const body = m[2] as string;
    const at = body.lastIndexOf(' and ');
    if (count === undefined || at < 0) return undefined;
    const items = [...body.slice(0, at).split(', '), body.slice(at + 5)];
    const nodules = items.map((it) => NODULE_ITEM.exec(it));
    if (items.length !== count || nodules.some((x) => x === null)) return undefined;
    const list = nodules.map((x) => ({ mm: Number(x![1]), side: x![2] as PhantomSide, zone: x![3] as PhantomZone }));
    return { cls: 'Nodule', cell: 1, apply: (f) => void f.nodules.push(...list) };
  }
  m = /^(small|moderate) bilateral pleural effusions$/.exec(s);
  if (m) {
    const size = m[1] as 'small' | 'moderate';
    return { cls: 'Pleural Effusion', cell: 1, apply: (f) => void f.effusion.push({ side: 'right', size }, { side: 'left', size }) };
  }
  m = /^(small|moderate) right and (small|moderate) left pleural effusions$/.exec(s);
  if (m) {
    const [r, l] = [m[1] as 'small' | 'moderate', m[2] as 'small' | 'moderate'];
    return { cls: 'Pleural Effusion', cell: 1, apply: (f) => void f.effusion.push({ side: 'right', size: r }, { side: 'left', size: l }) };
  }
  m = new RegExp(`^(small|moderate) ${SIDE} pleural effusion$`).exec(s);
  if (m) {
    const e = { side: m[2] as PhantomSide, size: m[1] as 'small' | 'moderate' };
    return { cls: 'Pleural Effusion', cell: 1, apply: (f) => void f.effusion.push(e) };
  }
  m = new RegExp(`^(?:large ${SIDE} pneumothorax|small ${SIDE} apical pneumothorax)$`).exec(s);
  if (m) {
    const p = m[1] ? { side: m[1] as PhantomSide, size: 'large' as const } : { side: m[2] as PhantomSide, size: 'small' as const };
    return { cls: 'Pneumothorax', cell: 1, apply: (f) => void (f.pneumothorax = p) };
  }
  return undefined;
}

/** Parses one phantom report into its cells (PHANTOM_CLASSES order), facts and diagnostics. */
export function parsePhantomReport(text: string): PhantomParse {
  const facts: PhantomFacts = { cells: PHANTOM_CLASSES.map(() => null), nodules: [], effusion: [], pneumothorax: null };
  const diagnostics: PhantomParse['diagnostics'] = [];
  const cell = new Map<string, LabelCell>();
  let closing = false;
  for (const s of sentences(text)) {
    const p = parseSentence(s);
    if (p === undefined) {
      diagnostics.push({ kind: 'unparsed', sentence: s, message: `sentence outside the phantom report grammar: '${s}'` });
      continue;
    }
    if ('closing' in p) {
      if (closing) diagnostics.push({ kind: 'repeated', sentence: s, message: `'${s}' appears twice` });
      closing = true;
      continue;
    }
    const prev = cell.get(p.cls);
    if (prev !== undefined) {
      diagnostics.push(
        prev === p.cell
          ? { kind: 'repeated', sentence: s, message: `${p.cls} is mentioned twice (both ${p.cell})` }
          : { kind: 'conflict', sentence: s, message: `${p.cls} is mentioned twice with different values (${prev} and ${p.cell}); combined as ${combineMentions(prev, p.cell)}` },
      );
    }
    cell.set(p.cls, combineMentions(prev ?? null, p.cell));
    p.apply?.(facts);
  }
  const findings = PHANTOM_CLASSES.slice(1).map((c) => cell.get(c) ?? null);
  const anyPositive = findings.includes(1);
  const anyUncertain = findings.includes(-1);
  if (closing && (anyPositive || anyUncertain)) {
    diagnostics.push({
      kind: 'conflict',
      sentence: 'no acute cardiopulmonary abnormality',
      message: `'No acute cardiopulmonary abnormality' beside a ${anyPositive ? 'positive' : 'hedged'} finding (the generator never writes both)`,
    });
  }
  const noFinding: LabelCell = anyPositive ? 0 : closing ? 1 : anyUncertain ? null : 0;
  facts.cells = [noFinding, ...findings];
  return { facts, diagnostics };
}

/**
 * The facts of a report as strings, for a fact-level F1 ({@link phantomFactF1}): positive and uncertain findings only
 * (a negative or unmentioned finding is no fact, so two normal reports share none), each positive finding with its
 * details — nodule count, each nodule's diameter, side and zone; effusion side and size per side; pneumothorax side
 * and size. A repeated identical nodule is numbered ("#2") so that counts matter.
 */
export function phantomFacts(f: PhantomFacts): string[] {
  const out: string[] = [];
  PHANTOM_CLASSES.forEach((c, k) => {
    if (c === 'No Finding') return;
    const v = f.cells[k];
    if (v === 1) out.push(`${c}: present`);
    else if (v === -1) out.push(`${c}: uncertain`);
  });
  if (f.nodules.length) out.push(`Nodule: count ${f.nodules.length}`);
  const seen = new Map<string, number>();
  for (const nd of f.nodules) {
    const key = `Nodule: ${nd.mm} mm ${nd.side} ${nd.zone} zone`;
    const k = (seen.get(key) ?? 0) + 1;
    seen.set(key, k);
    out.push(k === 1 ? key : `${key} #${k}`);
  }
  for (const e of f.effusion) out.push(`Pleural Effusion: ${e.side} ${e.size}`);
  if (f.pneumothorax) out.push(`Pneumothorax: ${f.pneumothorax.side} ${f.pneumothorax.size}`);
  return out;
}

/** Micro fact F1: true positives = facts in both, pooled over report pairs; a zero denominator gives 0. */
export function phantomFactF1(refs: readonly (readonly string[])[], hyps: readonly (readonly string[])[]): { precision: number; recall: number; f1: number; tp: number; nRef: number; nHyp: number } {
  if (refs.length !== hyps.length) throw new RangeError(`phantomFactF1: ${refs.length} reference reports but ${hyps.length} hypotheses`);
  let tp = 0;
  let nRef = 0;
  let nHyp = 0;
  refs.forEach((r, i) => {
    const ref = new Set(r);
    const hyp = new Set(hyps[i]);
    nRef += ref.size;
    nHyp += hyp.size;
    for (const x of hyp) if (ref.has(x)) tp++;
  });
  const precision = nHyp ? tp / nHyp : 0;
  const recall = nRef ? tp / nRef : 0;
  return { precision, recall, f1: nRef + nHyp ? (2 * tp) / (nRef + nHyp) : 0, tp, nRef, nHyp };
}

/**
 * The phantom labeler. `classes: 'phantom'` (default) labels PHANTOM_CLASSES; `'chexbert14'` maps them onto the 14
 * CheXbert classes (Nodule → Lung Lesion, the other nine null) for the 14-class metrics.
 */
export function phantomLabeler(opts: { classes?: 'phantom' | 'chexbert14' } = {}): DiagnosingLabeler {
  const to14 = opts.classes === 'chexbert14';
  const classes = to14 ? CHEXBERT_14 : PHANTOM_CLASSES;
  const analyze = (texts: readonly string[]): LabelRun => {
    const rows: LabelCell[][] = [];
    const diagnostics: LabelDiagnostic[] = [];
    texts.forEach((t, i) => {
      const p = parsePhantomReport(t);
      rows.push(p.facts.cells);
      for (const d of p.diagnostics) diagnostics.push({ report: i, ...d });
    });
    const out = to14 ? selectColumns(rows, PHANTOM_CLASSES.map((c) => PHANTOM_TO_CHEXBERT[c] as string), CHEXBERT_14) : rows;
    return { classes, rows: out, diagnostics };
  };
  return { name: 'phantom', version: PHANTOM_LABELER_VERSION, classes, analyze, label: (texts) => analyze(texts).rows };
}
