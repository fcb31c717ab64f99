/**
 * Sections of MIMIC-CXR free-text reports: a TypeScript port of MIT-LCP's section parser and of its section choice.
 *
 * Sources (MIT License, Copyright (c) 2019 MIT Laboratory for Computational Physiology; the notice is kept in
 * `assets/datasets/mimic-sections-custom.json`), read at MIT-LCP/mimic-cxr commit 31901464793d0bb23835092f05bd1aba6af7baff (the same `txt/`
 * code ships in MIT-LCP/mimic-code):
 * - `txt/section_parser.py` `section_text`, `normalize_section_names` → `sectionText`, `normalizeSectionNames`;
 *   `custom_mimic_cxr_rules()` → `customMimicCxrRules()`, its data shipped unchanged in `assets/datasets/mimic-sections-custom.json`.
 * - `txt/create_section_files.py` `main` → `extractConclusion` (its `patient_studies` output: the report's
 *   "conclusion") and `extractSections` (its `study_sections` output, `mimic_cxr_sectioned.csv`: the LAST section of
 *   each of impression / findings / last_paragraph / comparison).
 *
 * Conventions, kept exactly:
 * - Text is what Python's text mode gives: universal newlines (`\r\n` and a lone `\r` read as `\n`). `readReportText`
 *   does that; custom indices count characters of that text.
 * - Headers match `\n ([A-Z ()/,-]+):\s` (a line starting with one space, upper-case words, a colon, one whitespace).
 *   The text before the first header is the `preamble` (it keeps the `\n ` that starts the header line); a report
 *   without a header is one `full report` section. After a header, the search for the next header resumes at the
 *   first line end after the header's own whitespace ("skip past the first newline to avoid some bad parses").
 * - Names are lower-cased and stripped, then: the dictionary (`frequent_sections`, misspellings included); else the
 *   first of impression, findings, history, comparison, addendum that is a substring; else `findings` when one of
 *   the view phrases (`chest`, `portable`, `pa and lateral`, …) is a substring; else the name stays.
 * - Empty (whitespace-only) impression and findings sections are removed. When neither remains, the last section
 *   is cut at its first `\n \n`: the rest (its later paragraphs) becomes `last_paragraph`.
 * - Selection takes the LAST section of a name (`list_rindex`), stripped.
 * - `\s` and `strip()` use Python's whitespace (str.isspace: also \x1c–\x1f and \x85, but not U+FEFF, unlike
 *   JavaScript's); offsets are Python's (code points), not UTF-16 units, should a report hold astral characters.
 */
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

import { DataError } from '../data/errors.js';

/** Python's `\s` / `str.isspace()` characters (checked against CPython 3: the same 29 code points). */
const PY_SPACE = '\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const STRIP_RE = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, 'g');

/** Python's `str.strip()` (no arguments). */
export function pyStrip(s: string): string {
  return s.replace(STRIP_RE, '');
}

/** `section_text`'s header pattern (global, for `lastIndex` searches). */
const SECTION_HEADER = new RegExp(`\\n ([A-Z ()/,-]+):[${PY_SPACE}]`, 'g');

/** The output of `sectionText`: parallel lists, in report order. */
export interface SectionedText {
  /** The text of each section (not stripped). */
  sections: string[];
  /** Normalised section names ('preamble', 'full report', 'findings', 'impression', 'last_paragraph', …). */
  names: string[];
  /** Start of each section's text in the report, in characters (code points, as Python counts). */
  starts: number[];
}

/** The per-study special cases of `custom_mimic_cxr_rules()`. */
export interface CustomRules {
  /** Study (`s` + study id) → the name of the section holding the conclusion. */
  sectionNames: Readonly<Record<string, string>>;
  /** Study → [start, end) of the conclusion in the report text ([0, 0]: no findings at all). */
  indices: Readonly<Record<string, readonly [number, number]>>;
}

/** The sections `create_section_files.py` writes per study, in its column order. */
export const SECTIONED_NAMES = ['impression', 'findings', 'last_paragraph', 'comparison'] as const;
export type SectionedName = (typeof SECTIONED_NAMES)[number];

/** `normalize_section_names`' dictionary, entry for entry (misspellings included). */
const FREQUENT_SECTIONS: Readonly<Record<string, string>> = {
  preamble: 'preamble',
  impression: 'impression',
  comparison: 'comparison',
  indication: 'indication',
  findings: 'findings',
  examination: 'examination',
  technique: 'technique',
  history: 'history',
  comparisons: 'comparison',
  'clinical history': 'history',
  'reason for examination': 'indication',
  notification: 'notification',
  'reason for exam': 'indication',
  'clinical information': 'history',
  exam: 'examination',
  'clinical indication': 'indication',
  conclusion: 'impression',
  'chest, two views': 'findings',
  'recommendation(s)': 'recommendations',
  'type of examination': 'examination',
  'reference exam': 'comparison',
  'patient history': 'history',
  addendum: 'addendum',
  'comparison exam': 'comparison',
  date: 'date',
  comment: 'comment',
  'findings and impression': 'impression',
  'wet read': 'wet read',
  'comparison film': 'comparison',
  recommendations: 'recommendations',
  'findings/impression': 'impression',
  pfi: 'history',
  recommendation: 'recommendations',
  wetread: 'wet read',
  ndication: 'impression',
  impresson: 'impression',
  imprression: 'impression',
  imoression: 'impression',
  impressoin: 'impression',
  imprssion: 'impression',
  impresion: 'impression',
  imperssion: 'impression',
  mpression: 'impression',
  impession: 'impression',
  'findings/ impression': 'impression',
  finding: 'findings',
  findins: 'findings',
  findindgs: 'findings',
  findgings: 'findings',
  findngs: 'findings',
  findnings: 'findings',
  finidngs: 'findings',
  idication: 'indication',
  'reference findings': 'findings',
  comparision: 'comparison',
  comparsion: 'comparison',
  comparrison: 'comparison',
  comparisions: 'comparison',
};

/** Substrings that make a name the main section they name, tried in this order. */
const MAIN_SECTIONS = ['impression', 'findings', 'history', 'comparison', 'addendum'] as const;

/** View phrases that make a header a findings header (`p_findings`). */
const FINDINGS_PHRASES = [
  'chest',
  'portable',
  'pa and lateral',
  'lateral and pa',
  'ap and lateral',
  'lateral and ap',
  'frontal and',
  'two views',
  'frontal view',
  'pa view',
  'ap view',
  'one view',
  'lateral view',
  'bone window',
  'frontal upright',
  'frontal semi-upright',
  'ribs',
  'pa and lat',
] as const;

/**
 * `normalize_section_names`: lower-case and strip each name, then map it (see the module comment).
 * The names `sectionText` passes are ASCII (the header pattern allows only `A-Z ()/,-`), where lower-casing agrees
 * with Python's.
 */
export function normalizeSectionNames(names: readonly string[]): string[] {
  return names.map((raw) => {
    const s = pyStrip(raw.toLowerCase());
    const known = Object.hasOwn(FREQUENT_SECTIONS, s) ? FREQUENT_SECTIONS[s] : undefined;
    if (known !== undefined) return known;
    for (const m of MAIN_SECTIONS) if (s.includes(m)) return m;
    if (FINDINGS_PHRASES.some((p) => s.includes(p))) return 'findings';
    return s;
  });
}

/** Whether `s` holds UTF-16 surrogates (then code-unit and code-point offsets differ). */
function hasSurrogates(s: string): boolean {
  return /[\uD800-\uDFFF]/.test(s);
}

/** Code-point offset of UTF-16 offset `i` in `s`. */
function codePointOffset(s: string, i: number): number {
  let n = 0;
  for (let k = 0; k < i; k++) {
    const c = s.charCodeAt(k);
    if (c >= 0xd800 && c <= 0xdbff && k + 1 < i) {
      const d = s.charCodeAt(k + 1);
      if (d >= 0xdc00 && d <= 0xdfff) k++;
    }
    n++;
  }
  return n;
}

/** Python's `text[a:b]` for 0 ≤ a, b (code-point offsets, clamped to the length). */
function pySlice(text: string, a: number, b: number): string {
  if (!hasSurrogates(text)) return text.slice(a, b);
  return Array.from(text).slice(a, b).join('');
}

/**
 * `section_text`: splits a report into sections by its upper-case headers, normalises the names, removes empty
 * impression/findings sections and adds the `last_paragraph` fallback (module comment).
 * @param text the report as Python reads it (universal newlines; see `readReportText`)
 */
export function sectionText(text: string): SectionedText {
  const sections: string[] = [];
  let names: string[] = [];
  const starts: number[] = []; // UTF-16 offsets here; converted at the end

  const re = new RegExp(SECTION_HEADER.source, 'g');
  const search = (from: number): RegExpExecArray | null => {
    re.lastIndex = from;
    return re.exec(text);
  };

  let s = search(0);
  if (s) {
    // The preamble ends where the header name starts (after the '\n ').
    sections.push(text.slice(0, s.index + 2));
    names.push('preamble');
    starts.push(0);
    while (s) {
      const current = (s[1] as string).toLowerCase();
      const idxStart = s.index + s[0].length;
      // skip past the first newline to avoid some bad parses (section_parser.py)
      let idxSkip = text.indexOf('\n', idxStart);
      idxSkip = idxSkip === -1 ? 0 : idxSkip - idxStart;
      s = search(idxStart + idxSkip);
      const idxEnd = s === null ? text.length : s.index;
      sections.push(text.slice(idxStart, idxEnd));
      names.push(current);
      starts.push(idxStart);
    }
  } else {
    sections.push(text);
    names.push('full report');
    starts.push(0);
  }

  names = normalizeSectionNames(names);

  // Remove empty impression/findings sections (a title-like first header, or a second empty findings header).
  for (let i = names.length - 1; i >= 0; i--) {
    if ((names[i] === 'impression' || names[i] === 'findings') && pyStrip(sections[i] as string) === '') {
      sections.splice(i, 1);
      names.splice(i, 1);
      starts.splice(i, 1);
    }
  }

  if (!names.includes('impression') && !names.includes('findings')) {
    // A new section for the final paragraph(s): everything after the last section's first '\n \n'.
    const last = sections[sections.length - 1] as string;
    if (last.includes('\n \n')) {
      const parts = last.split('\n \n');
      sections.push(parts.slice(1).join('\n \n'));
      sections[sections.length - 2] = parts[0] as string;
      names.push('last_paragraph');
      starts.push((starts[starts.length - 1] as number) + (parts[0] as string).length);
    }
  }

  const cp = hasSurrogates(text) ? starts.map((i) => codePointOffset(text, i)) : starts;
  return { sections, names, starts: cp };
}

/** `list_rindex`: the index of the LAST section named `name`, or -1. */
export function lastSectionIndex(names: readonly string[], name: string): number {
  return names.lastIndexOf(name);
}

/** The stripped text of the LAST section named `name`, or undefined when there is none. */
export function lastSection(sectioned: SectionedText, name: string): string | undefined {
  const i = lastSectionIndex(sectioned.names, name);
  return i < 0 ? undefined : pyStrip(sectioned.sections[i] as string);
}

// ---- custom rules (assets/datasets/mimic-sections-custom.json) ----

/** Where the rules file is: next to this module, or (compiled to dist/datasets/, which tsc does not copy it to) in src/datasets/. */
/** The shipped rules: `assets/` sits beside `src/` and `dist/` (package.json `files`), so one path serves both. */
const RULES_CANDIDATES = [new URL('../../assets/datasets/mimic-sections-custom.json', import.meta.url)];

let cachedRules: CustomRules | undefined;

/** The rules file in use (the first candidate that exists). */
export function customRulesFile(): string {
  for (const u of RULES_CANDIDATES) {
    const f = fileURLToPath(u);
    if (existsSync(f)) return f;
  }
  throw new DataError(`the MIMIC-CXR section rules file assets/datasets/mimic-sections-custom.json is missing (looked for ${RULES_CANDIDATES.map((u) => fileURLToPath(u)).join(', ')})`);
}

/**
 * Validates a parsed rules object (the shape of `assets/datasets/mimic-sections-custom.json`).
 * @param file for messages
 * @throws DataError naming the key and what was found
 */
export function parseCustomRules(json: unknown, file = 'assets/datasets/mimic-sections-custom.json'): CustomRules {
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const found = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? `an array of ${v.length}` : `${typeof v} ${JSON.stringify(v)}`);
  if (!isObj(json)) throw new DataError(`expected a JSON object with customSectionNames and customIndices, found ${found(json)}`, { file });
  const names = json.customSectionNames;
  const indices = json.customIndices;
  if (!isObj(names)) throw new DataError(`customSectionNames: expected an object (study -> section name), found ${found(names)}`, { file });
  if (!isObj(indices)) throw new DataError(`customIndices: expected an object (study -> [start, end]), found ${found(indices)}`, { file });
  const sectionNames: Record<string, string> = {};
  for (const [study, v] of Object.entries(names)) {
    if (typeof v !== 'string' || v === '') throw new DataError(`customSectionNames.${study}: expected a section name, found ${found(v)}`, { file });
    sectionNames[study] = v;
  }
  const idx: Record<string, readonly [number, number]> = {};
  for (const [study, v] of Object.entries(indices)) {
    if (!Array.isArray(v) || v.length !== 2 || !v.every((x) => Number.isInteger(x) && (x as number) >= 0) || (v[0] as number) > (v[1] as number)) {
      throw new DataError(`customIndices.${study}: expected [start, end] with integers 0 <= start <= end, found ${found(v)}`, { file });
    }
    idx[study] = [v[0] as number, v[1] as number];
  }
  return { sectionNames, indices: idx };
}

/**
 * `custom_mimic_cxr_rules()`: the per-study special cases, read from `assets/datasets/mimic-sections-custom.json` once.
 * @throws DataError when the file is missing or malformed
 */
export function customMimicCxrRules(): CustomRules {
  if (cachedRules === undefined) {
    const file = customRulesFile();
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      throw new DataError(`not valid JSON (${(e as Error).message})`, { file });
    }
    cachedRules = parseCustomRules(json, file);
  }
  return cachedRules;
}

// ---- create_section_files.py ----

/** How a study's text was chosen. */
export type SectionRule = 'custom-indices' | 'custom-section' | 'parser';

/** `create_section_files.py`'s conclusion of one report (its `patient_studies` row). */
export interface Conclusion {
  /** The text: stripped, except a custom-indices slice, which the script writes as sliced. '' when nothing was found. */
  text: string;
  /** The section it came from ('impression', 'findings', 'last_paragraph', 'comparison', a custom section name), or
   *  undefined for a custom-indices slice and for '' (nothing found). */
  section: string | undefined;
  rule: SectionRule;
}

/** The study key of the rules: 's' + the study id ('s50414267'); an id that already starts with 's' is kept. */
export function studyKey(study: string): string {
  return study.startsWith('s') ? study : `s${study}`;
}

/**
 * The report's conclusion as `create_section_files.py` chooses it: a custom-indices slice; else the LAST section
 * with the study's custom name; else the LAST of the first present of impression, findings, last_paragraph,
 * comparison ("prioritizes impression > findings, etc."); else ''.
 * @param study the study id, with or without the 's'
 * @throws DataError when a custom section name is absent from the report (the script would fail with ValueError)
 */
export function extractConclusion(text: string, study: string, rules: CustomRules = customMimicCxrRules()): Conclusion {
  const key = studyKey(study);
  const idx = Object.hasOwn(rules.indices, key) ? rules.indices[key] : undefined;
  if (idx !== undefined) return { text: pySlice(text, idx[0], idx[1]), section: undefined, rule: 'custom-indices' };
  const sectioned = sectionText(text);
  const custom = Object.hasOwn(rules.sectionNames, key) ? rules.sectionNames[key] : undefined;
  if (custom !== undefined) {
    const t = lastSection(sectioned, custom);
    if (t === undefined) {
      throw new DataError(`study ${key}: its custom rule names section '${custom}', which the report does not have (sections: ${sectioned.names.join(', ')})`);
    }
    return { text: t, section: custom, rule: 'custom-section' };
  }
  for (const name of SECTIONED_NAMES) {
    const t = lastSection(sectioned, name);
    if (t !== undefined) return { text: t, section: name, rule: 'parser' };
  }
  return { text: '', section: undefined, rule: 'parser' };
}

/** One `mimic_cxr_sectioned.csv` row: the LAST section of each name, stripped, or null when absent. */
export type StudySections = Record<SectionedName, string | null>;

/**
 * The report's sections as `create_section_files.py` writes them to `mimic_cxr_sectioned.csv`, or null for a study
 * with a custom rule: the script writes no sectioned row for those (it `continue`s before building the row).
 * @param study the study id, with or without the 's'
 */
export function extractSections(text: string, study: string, rules: CustomRules = customMimicCxrRules()): StudySections | null {
  const key = studyKey(study);
  if (Object.hasOwn(rules.indices, key) || Object.hasOwn(rules.sectionNames, key)) return null;
  const sectioned = sectionText(text);
  const row = {} as StudySections;
  for (const name of SECTIONED_NAMES) row[name] = lastSection(sectioned, name) ?? null;
  return row;
}

/** Decodes report bytes as Python's text mode does (see `readReportText`). */
function decodeReport(bytes: Uint8Array, file: string): string {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new DataError('the report is not valid UTF-8 text', { file });
  }
  return text.replace(/\r\n?/g, '\n');
}

function readError(e: unknown, file: string): DataError {
  const code = (e as NodeJS.ErrnoException).code;
  return new DataError(code === 'ENOENT' ? 'report file not found' : `cannot read the report (${(e as Error).message})`, { file });
}

/**
 * Reads a report file as Python's `open(f, 'r')` + `''.join(fp.readlines())` does: UTF-8 (a byte order mark is kept
 * as U+FEFF, as Python's 'utf-8' codec keeps it), universal newlines (`\r\n` and a lone `\r` become `\n`).
 * @throws DataError naming the file when it cannot be read or is not UTF-8
 */
export async function readReportText(file: string): Promise<string> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (e) {
    throw readError(e, file);
  }
  return decodeReport(bytes, file);
}

/**
 * `readReportText`, synchronously, with undefined for a file that does not exist. For loaders that read hundreds of
 * thousands of small files: one synchronous read costs a fraction of the thread-pool round trips of an async one.
 * @throws DataError naming the file when it exists but cannot be read or is not UTF-8
 */
export function readReportTextSync(file: string): string | undefined {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw readError(e, file);
  }
  return decodeReport(bytes, file);
}
