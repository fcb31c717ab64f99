/**
 * R2Gen's report cleaners (cuhksz-nlp/R2Gen `modules/tokenizers.py`, `Tokenizer.clean_report_mimic_cxr` and
 * `Tokenizer.clean_report_iu_xray`), the text normalisation behind the BLEU/ROUGE/CIDEr numbers of the R2Gen family
 * (R2Gen, R2GenCMN, CvT2DistilGPT2, PromptMRG, …), ported exactly:
 *
 * 1. report level, in this order (Python `str.replace` = replace every occurrence, left to right):
 *    - MIMIC-CXR only: `\n` → space; `__` → `_` seven times; two spaces → one, six times;
 *    - `..` → `.` (eight times for MIMIC-CXR, three for IU X-ray);
 *    - list numbering: `1. ` → ``, then `. 2. ` … `. 5. ` → `. `, then ` 2. ` … ` 5. ` → `. `;
 *    - `strip()`, lower-case, split into sentences on `'. '`;
 * 2. sentence level: remove `"`, `/`, `\`, `'`; `strip()`; lower-case; delete every character of the regex class
 *    `[.,?;*!%^&_+():-\[\]{}]`. Its `:-\[` is a **range** (U+003A–U+005B), so `; < = > ? @`, the capital letters
 *    and `[` are deleted too (capitals never remain, the text is already lower-case) — so `<`, `=`, `>`, `@` vanish
 *    while `-`, `#`, `$`, `~`, `|` and digits stay;
 * 3. sentences joined with `' . '` plus a final `' .'`. The filter `sent_cleaner(sent) != []` compares a string
 *    with a list and is always true, so empty sentences are kept: the empty report becomes `' .'`, and a report
 *    always ends with `' .'` (`'no effusion.'` → `'no effusion .'`).
 */
import { pyStrip } from './pystr.js';

/** `[.,?;*!%^&_+():-\[\]{}]`: note the range `:-\[`. */
const SENT_STRIP = /[.,?;*!%^&_+():-\[\]{}]/gu;

function replaceTimes(s: string, from: string, to: string, times: number): string {
  for (let i = 0; i < times; i++) s = s.replaceAll(from, to);
  return s;
}

/** Numbering removal shared by both cleaners (`'1. '` … `' 5. '`). */
function dropNumbering(s: string): string {
  s = s.replaceAll('1. ', '');
  for (const k of ['2', '3', '4', '5']) s = s.replaceAll(`. ${k}. `, '. ');
  for (const k of ['2', '3', '4', '5']) s = s.replaceAll(` ${k}. `, '. ');
  return s;
}

/** R2Gen `sent_cleaner`. */
function cleanSentence(t: string): string {
  const s = pyStrip(t.replaceAll('"', '').replaceAll('/', '').replaceAll('\\', '').replaceAll("'", '')).toLowerCase();
  return s.replace(SENT_STRIP, '');
}

function finish(s: string): string {
  const sentences = pyStrip(s).toLowerCase().split('. ');
  return sentences.map(cleanSentence).join(' . ') + ' .';
}

/** R2Gen `clean_report_mimic_cxr(report)`. */
export function r2genClean(text: string): string {
  if (typeof text !== 'string') throw new TypeError(`r2genClean: the report must be a string, got ${typeof text}`);
  let s = text.replaceAll('\n', ' ');
  s = replaceTimes(s, '__', '_', 7);
  s = replaceTimes(s, '  ', ' ', 6);
  s = replaceTimes(s, '..', '.', 8);
  return finish(dropNumbering(s));
}

/** R2Gen `clean_report_iu_xray(report)`. */
export function r2genCleanIuXray(text: string): string {
  if (typeof text !== 'string') throw new TypeError(`r2genCleanIuXray: the report must be a string, got ${typeof text}`);
  const s = replaceTimes(text, '..', '.', 3);
  return finish(dropNumbering(s));
}
