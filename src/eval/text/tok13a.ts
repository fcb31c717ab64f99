/**
 * sacrebleu 2.6.0 tokenizers (mjpost/sacrebleu `sacrebleu/tokenizers/`), ported exactly:
 *
 * - `13a` (`tokenizer_13a.py` + `tokenizer_re.py`, the mteval-v13a.pl rules used by WMT):
 *   1. remove `<skipped>`, join lines broken by a hyphen (`-\n` → ``), other newlines → space;
 *   2. only if the line contains `&`: unescape `&quot;` `&amp;` `&lt;` `&gt;`, in that order (so `&amp;lt;` → `<`);
 *   3. pad with one space on each side, then four regex substitutions in order:
 *      a. every character of `[{-~[-\` -&(-+:-@/]` gets a space on both sides (ASCII punctuation and symbols
 *         except `'`, `,`, `-`, `.`);
 *      b. `.`/`,` preceded by a non-digit: `X.` → `X . `;
 *      c. `.`/`,` followed by a non-digit: `.X` → ` . X`;
 *      d. `-` preceded by a digit: `3-` → `3 - `;
 *   4. `' '.join(line.split())` (Python whitespace).
 *   Substitutions are non-overlapping, left to right (Python `re.sub`), which is what a global JavaScript `replace`
 *   does; so `1.5.` keeps `1.5` together and `a.b` becomes `a . b`.
 * - `none` (`tokenizer_none.py`): the line unchanged.
 * - `intl` (`tokenizer_intl.py`, mteval-v14 international): `(\P{N})(\p{P})` → `$1 $2 `, `(\p{P})(\P{N})` →
 *   ` $1 $2`, `(\p{S})` → ` $1 `, then `' '.join(line.split())`. Unicode categories come from the JavaScript
 *   engine's Unicode tables instead of the Python `regex` module's; they agree except for characters assigned in a
 *   Unicode version only one of them knows.
 *
 * The tokenizers see the segment after sacrebleu's own preprocessing (optional lower-casing, then `rstrip()`); that
 * part lives in `bleu.ts`.
 */
import { pyNormalizeSpace } from './pystr.js';

/** sacrebleu tokenizer names supported here. */
export type SacreTokenizer = '13a' | 'none' | 'intl';

/** The tokenizers supported here, for argument checking. */
export const SACRE_TOKENIZERS: readonly SacreTokenizer[] = ['13a', 'none', 'intl'];

// tokenizer_re.py TokenizerRegexp._re, in order.
// Without the `u` flag (faster): `[^0-9]` then matches one UTF-16 unit, and splitting an astral character's surrogate
// pair from a neighbouring `.`/`,` inserts the space at the same place as Python's code-point match.
const RE_PUNCT = /([\x7b-\x7e\x5b-\x60\x20-\x26\x28-\x2b\x3a-\x40\x2f])/g; // [\{-\~\[-\` -\&\(-\+\:-\@\/]
const RE_PERIOD_COMMA_AFTER_NON_DIGIT = /([^0-9])([.,])/g;
const RE_PERIOD_COMMA_BEFORE_NON_DIGIT = /([.,])([^0-9])/g;
const RE_DASH_AFTER_DIGIT = /([0-9])(-)/g;

/** sacrebleu `TokenizerRegexp.__call__` (the language-dependent part of 13a). */
export function tokenizeRegexp(line: string): string {
  let s = line.replace(RE_PUNCT, ' $1 ');
  s = s.replace(RE_PERIOD_COMMA_AFTER_NON_DIGIT, '$1 $2 ');
  s = s.replace(RE_PERIOD_COMMA_BEFORE_NON_DIGIT, ' $1 $2');
  s = s.replace(RE_DASH_AFTER_DIGIT, '$1 $2 ');
  return pyNormalizeSpace(s);
}

/** sacrebleu `Tokenizer13a.__call__`: mteval-v13a tokenisation of one line. */
export function tokenize13a(line: string): string {
  let s = line.replaceAll('<skipped>', '');
  s = s.replaceAll('-\n', '');
  s = s.replaceAll('\n', ' ');
  if (s.includes('&')) {
    s = s.replaceAll('&quot;', '"');
    s = s.replaceAll('&amp;', '&');
    s = s.replaceAll('&lt;', '<');
    s = s.replaceAll('&gt;', '>');
  }
  return tokenizeRegexp(` ${s} `);
}

const RE_INTL_PUNCT_AFTER = /(\P{N})(\p{P})/gu;
const RE_INTL_PUNCT_BEFORE = /(\p{P})(\P{N})/gu;
const RE_INTL_SYMBOL = /(\p{S})/gu;

/** sacrebleu `TokenizerV14International.__call__` (`tokenize='intl'`). */
export function tokenizeIntl(line: string): string {
  let s = line.replace(RE_INTL_PUNCT_AFTER, '$1 $2 ');
  s = s.replace(RE_INTL_PUNCT_BEFORE, ' $1 $2');
  s = s.replace(RE_INTL_SYMBOL, ' $1 ');
  return pyNormalizeSpace(s);
}

/** The tokenizer function for a name; throws naming the supported ones. */
export function sacreTokenizer(name: string): (line: string) => string {
  switch (name) {
    case '13a':
      return tokenize13a;
    case 'none':
      return (line) => line;
    case 'intl':
      return tokenizeIntl;
    default:
      throw new RangeError(`tokenize must be one of ${SACRE_TOKENIZERS.map((t) => `'${t}'`).join(', ')}, got ${JSON.stringify(name)}`);
  }
}
