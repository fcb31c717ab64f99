/**
 * The `rules` labeler, "cheXpert-lite": a weights-free APPROXIMATION of the CheXpert labeler (Irvin et al. 2019,
 * stanfordmlgroup/chexpert-labeler) and so, more loosely, of CheXbert (Smit et al. 2020, which was trained to agree
 * with radiologists better than the rule labeler). Its labels are not CheXbert labels: use it for a quick, offline
 * look, and import real CheXbert labels (`labels:FILE`) for numbers to compare with papers.
 *
 * What is the original's, and what is not:
 * - Text cleaning = chexpert-labeler `loader/load.py` `Loader.clean` (lower case, "and/or" → "or", "x/y" → "x or y",
 *   ".." → ".", a space after every "." and ",", whitespace collapsed, empty sentences removed). Sentences split after
 *   ".", "?" and "!" (the original uses NegBio's splitter).
 * - Mentions = the original's phrase lists, shipped unchanged under assets/labelers/chexpert-lite/phrases/ (MIT, with
 *   its licence): each phrase is a literal substring (no word boundaries, `_` = space) found with
 *   `stages/extract.py`'s scan, a match overlapping an "unmention" phrase is dropped, and the Cardiomegaly and
 *   Enlarged Cardiomediastinum unmentions are built as `Extractor.add_unmention_phrases` builds them ("over the
 *   heart", "in the left cardiac silhouette", …).
 * - Negation and uncertainty are NOT the original's: it parses each sentence (BLLIP parser + Stanford dependencies)
 *   and matches Semgrex patterns (`patterns/*.txt`), which needs a parser model and Java. Here NegEx-style cue phrases
 *   (Chapman et al. 2001) with word windows stand in (assets/labelers/chexpert-lite/cues.json, written for cxformer
 *   from those patterns): forward cues ("no", "without", "possible", "cannot exclude", …) act on mentions after them,
 *   backward cues ("… is normal", "… has resolved", "… is suspected") on mentions before them, within a window of
 *   words, inside one sentence, not across a terminator ("but", "however", "which", ";", a new clause such as
 *   "and the …" or "… is seen", and "," for backward cues).
 *   Cue groups are tried in the original's order: pre-negation uncertainty ("cannot exclude", "no new"), negation,
 *   post-negation uncertainty ("may", "or", …); then the original's extra rules: congestion / indistinctness /
 *   vascular prominence are uncertain, a stable or unchanged heart size or contour is uncertain.
 * - Aggregation = `stages/aggregate.py`: one label per mention (negative / uncertain / positive); several mentions of
 *   a class combine as 0 + u → u, 0 + 1 → 1, u + 1 → 1; a positive or uncertain "chf" / "heart failure" (an Edema
 *   phrase) also adds an uncertain Cardiomegaly mention; No Finding = 1 when no mention other than Support Devices
 *   (the No Finding phrase list — emphysema, scoliosis, … — included) is positive or uncertain, else blank. An empty
 *   report therefore gets No Finding 1, as in the original.
 * Output columns: the 14 CheXbert classes in CheXbert's order (CHEXBERT_14).
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DiagnosingLabeler, LabelCell, LabelDiagnostic, LabelRun } from './types.js';
import { CHEXBERT_14 } from './types.js';
import { combineMentions } from './phantom.js';

/** The data folder: phrase lists (from stanfordmlgroup/chexpert-labeler, MIT) and cues.json. */
export const CHEXPERT_LITE_DIR = fileURLToPath(new URL('../../../assets/labelers/chexpert-lite/', import.meta.url));

export const RULES_LABELER_VERSION = 'chexpert-lite 1 (phrases: stanfordmlgroup/chexpert-labeler 44ddeb3)';

interface CueSpec {
  pattern: string;
  window: number;
}
interface CueFile {
  terminators: string[];
  groups: { name: string; label: 'negative' | 'uncertain'; forward: CueSpec[]; backward: CueSpec[] }[];
  alwaysUncertain: { mentions: string[] };
  stableSize: { exceptPhrases: string[]; pattern: string; window: number };
  chf: { texts: string[] };
}

/** A phrase found in a sentence. */
export interface Mention {
  category: string;
  phrase: string;
  /** Character offsets in the cleaned sentence. */
  start: number;
  end: number;
  label: LabelCell;
  /** Which rule decided the label ('positive' when none). */
  rule: string;
}

interface Rules {
  mention: Map<string, string[]>;
  unmention: Map<string, string[]>;
  cues: CueFile;
  groups: { name: string; label: LabelCell; forward: { re: RegExp; window: number }[]; backward: { re: RegExp; window: number }[] }[];
  stable: { re: RegExp; window: number; except: Set<string> };
  terminators: RegExp;
}

/** "pleural_effusion.txt" → "Pleural Effusion" (Python's str.title of the stem with '_' → ' '). */
const categoryOf = (file: string) => path.basename(file, '.txt').replace(/_/g, ' ').replace(/\b\w/g, (c) => c.toUpperCase());

function loadPhrases(dir: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.txt')).sort()) {
    const phrases = readFileSync(path.join(dir, f), 'utf8')
      .split('\n')
      .map((l) => l.trim().replace(/_/g, ' '))
      .filter((l) => l !== '');
    out.set(categoryOf(f), phrases);
  }
  return out;
}

const wordRe = (p: string) => new RegExp(`(?<![a-z0-9])(?:${p})(?![a-z0-9])`, 'g');

let cached: Rules | undefined;

/** Loads the phrase lists and cues (once). */
function loadRules(dir = CHEXPERT_LITE_DIR): Rules {
  if (cached && dir === CHEXPERT_LITE_DIR) return cached;
  const mention = loadPhrases(path.join(dir, 'phrases', 'mention'));
  const unmention = loadPhrases(path.join(dir, 'phrases', 'unmention'));
  // stages/extract.py Extractor.add_unmention_phrases
  const positional = ['over the', 'overly the', 'in the'].flatMap((a) => ['', ' superior', ' left', ' right'].map((b) => a + b));
  unmention.set(
    'Cardiomegaly',
    positional.flatMap((a) => (mention.get('Cardiomegaly') ?? []).filter((m) => m !== 'cardiomegaly' && m !== 'cardiac enlargement').map((m) => `${a} ${m.replace('the ', '')}`)),
  );
  unmention.set('Enlarged Cardiomediastinum', positional.flatMap((a) => (mention.get('Enlarged Cardiomediastinum') ?? []).map((m) => `${a} ${m}`)));
  const cues = JSON.parse(readFileSync(path.join(dir, 'cues.json'), 'utf8')) as CueFile;
  const rules: Rules = {
    mention,
    unmention,
    cues,
    groups: cues.groups.map((g) => ({
      name: g.name,
      label: g.label === 'negative' ? 0 : -1,
      forward: g.forward.map((c) => ({ re: wordRe(c.pattern), window: c.window })),
      backward: g.backward.map((c) => ({ re: wordRe(c.pattern), window: c.window })),
    })),
    stable: { re: wordRe(cues.stableSize.pattern), window: cues.stableSize.window, except: new Set(cues.stableSize.exceptPhrases) },
    terminators: wordRe(cues.terminators.filter((t) => t !== ';').map((t) => t.replace(/ /g, '\\s+')).join('|')),
  };
  if (dir === CHEXPERT_LITE_DIR) cached = rules;
  return rules;
}

/** chexpert-labeler `Loader.clean`. */
export function cleanReport(report: string): string {
  let s = report.toLowerCase().replace(/and\/or/g, 'or');
  s = s.replace(/(?<=[a-zA-Z])\/(?=[a-zA-Z])/g, ' or ');
  s = s.replace(/\.\./g, '.');
  s = s.replace(/[.,]/g, (c) => `${c} `);
  s = s.split(/\s+/).filter((w) => w !== '').join(' ');
  return s.replace(/\.\s+\./g, '.');
}

/** Sentences of a cleaned report: split after '.', '?' or '!' followed by a space. */
export function splitSentences(clean: string): string[] {
  return clean
    .split(/(?<=[.?!])\s+/)
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** All non-overlapping occurrences of a literal phrase (re.finditer of a metacharacter-free pattern). */
function findAll(text: string, phrase: string): [number, number][] {
  const out: [number, number][] = [];
  if (!phrase) return out;
  for (let at = text.indexOf(phrase); at >= 0; at = text.indexOf(phrase, at + phrase.length)) out.push([at, at + phrase.length]);
  return out;
}

/** Words (letters/digits runs) in text[a, b), and whether a terminator lies there. */
function between(s: string, a: number, b: number, rules: Rules, backward: boolean): { words: number; blocked: boolean } {
  const seg = s.slice(a, b);
  const words = (seg.match(/[a-z0-9]+/g) ?? []).length;
  rules.terminators.lastIndex = 0;
  const blocked = seg.includes(';') || (backward && seg.includes(',')) || rules.terminators.test(seg);
  return { words, blocked };
}

/** Whether a cue (a regex of cue phrases) applies to the mention [ms, me) of sentence s. */
function cueApplies(s: string, ms: number, me: number, cues: { re: RegExp; window: number }[], dir: 'forward' | 'backward', rules: Rules): boolean {
  for (const { re, window } of cues) {
    re.lastIndex = 0;
    for (let m = re.exec(s); m; m = re.exec(s)) {
      const cs = m.index;
      const ce = m.index + m[0].length;
      if (m[0].length === 0) {
        re.lastIndex++;
        continue;
      }
      if (dir === 'forward' && ce <= ms) {
        const b = between(s, ce, ms, rules, false);
        if (!b.blocked && b.words <= window) return true;
      }
      if (dir === 'backward' && cs >= me) {
        const b = between(s, me, cs, rules, true);
        if (!b.blocked && b.words <= window) return true;
      }
    }
  }
  return false;
}

/** The label of one mention: the first cue group that applies, then the original's extra uncertainty rules. */
function classify(s: string, category: string, phrase: string, ms: number, me: number, rules: Rules): { label: LabelCell; rule: string } {
  for (const g of rules.groups) {
    if (cueApplies(s, ms, me, g.forward, 'forward', rules) || cueApplies(s, ms, me, g.backward, 'backward', rules)) return { label: g.label, rule: g.name };
  }
  if (rules.cues.alwaysUncertain.mentions.includes(phrase)) return { label: -1, rule: 'always uncertain' };
  if ((category === 'Cardiomegaly' || category === 'Enlarged Cardiomediastinum') && !rules.stable.except.has(phrase)) {
    const st = [{ re: rules.stable.re, window: rules.stable.window }];
    if (cueApplies(s, ms, me, st, 'forward', rules) || cueApplies(s, ms, me, st, 'backward', rules)) return { label: -1, rule: 'stable size' };
  }
  return { label: 1, rule: 'positive' };
}

/** Every mention in one sentence (after unmention filtering) with its label. */
export function sentenceMentions(sentence: string, rules: Rules = loadRules()): Mention[] {
  const out: Mention[] = [];
  for (const [category, phrases] of rules.mention) {
    const un = rules.unmention.get(category) ?? [];
    const unSpans = un.flatMap((u) => findAll(sentence, u));
    for (const phrase of phrases) {
      for (const [start, end] of findAll(sentence, phrase)) {
        if (unSpans.some(([us, ue]) => start < ue && end > us)) continue;
        out.push({ category, phrase, start, end, ...classify(sentence, category, phrase, start, end, rules) });
      }
    }
  }
  return out;
}

/** Labels one report: CHEXBERT_14 cells and the mentions behind them. */
export function labelReportRules(report: string): { cells: LabelCell[]; mentions: (Mention & { sentence: string })[] } {
  const rules = loadRules();
  const mentions = splitSentences(cleanReport(report)).flatMap((sentence) => sentenceMentions(sentence, rules).map((m) => ({ ...m, sentence })));
  const byClass = new Map<string, LabelCell>();
  let noFinding = true;
  const add = (c: string, l: LabelCell) => byClass.set(c, combineMentions(byClass.get(c) ?? null, l));
  for (const m of mentions) {
    if (m.category !== 'Support Devices' && (m.label === 1 || m.label === -1)) noFinding = false;
    if (m.category === 'No Finding') continue;
    const text = m.sentence.slice(m.start, m.end);
    if ((m.label === 1 || m.label === -1) && rules.cues.chf.texts.includes(text)) add('Cardiomegaly', -1);
    add(m.category, m.label);
  }
  if (noFinding) byClass.set('No Finding', 1);
  return { cells: CHEXBERT_14.map((c) => byClass.get(c) ?? null), mentions };
}

/** The rules labeler (cheXpert-lite). An empty report is labelled (No Finding 1) and reported as a diagnostic. */
export function rulesLabeler(): DiagnosingLabeler {
  loadRules();
  const analyze = (texts: readonly string[]): LabelRun => {
    const diagnostics: LabelDiagnostic[] = [];
    const rows = texts.map((t, i) => {
      if (t.trim() === '') diagnostics.push({ report: i, kind: 'empty', sentence: '', message: 'empty report: no mentions, No Finding 1 (as the CheXpert labeler does)' });
      return labelReportRules(t).cells;
    });
    return { classes: CHEXBERT_14, rows, diagnostics };
  };
  return { name: 'rules', version: RULES_LABELER_VERSION, classes: CHEXBERT_14, analyze, label: (texts) => analyze(texts).rows };
}
