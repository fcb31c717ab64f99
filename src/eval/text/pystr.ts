/**
 * Python `str` behaviour the reference metric packages rely on, reproduced exactly.
 *
 * - `str.split()` (no argument) splits on runs of the characters for which `str.isspace()` is true (CPython
 *   `Objects/unicodectype.c` `_PyUnicode_IsWhitespace`): `\t \n \v \f \r`, `\x1c`–`\x1f`, space, `\x85`, `\xa0`,
 *   `\u1680`, `\u2000`–`\u200a`, `\u2028`, `\u2029`, `\u202f`, `\u205f`, `\u3000`. This differs from JavaScript's
 *   `\s`, which has `\ufeff` but not `\x1c`–`\x1f` or `\x85`.
 * - `str.rstrip()` strips the same set from the right.
 * - `str.lower()`: JavaScript's `toLowerCase()` applies the same full Unicode lower-case mapping (SpecialCasing
 *   included, e.g. `İ` → `i̇`, and the final-sigma rule), so it is used as is.
 */

/** The characters of Python's `str.isspace()`, as a regular-expression character class body. */
const PY_WS = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_WS_RUN = new RegExp(`[${PY_WS}]+`, 'u');
const PY_WS_TRAILING = new RegExp(`[${PY_WS}]+$`, 'u');
const PY_NON_WS = new RegExp(`[^${PY_WS}]`, 'u');

/** Python `s.split()`: whitespace-separated fields, no empty strings. */
export function pySplit(s: string): string[] {
  if (!PY_NON_WS.test(s)) return [];
  const parts = s.split(PY_WS_RUN);
  // A leading or trailing run gives one empty field at that end; Python drops it.
  let a = 0;
  let b = parts.length;
  if (parts[0] === '') a = 1;
  if (b > a && parts[b - 1] === '') b -= 1;
  return a === 0 && b === parts.length ? parts : parts.slice(a, b);
}

/** Python `s.rstrip()`. */
export function pyRstrip(s: string): string {
  return s.replace(PY_WS_TRAILING, '');
}

/** Python `' '.join(s.split())`: one space between fields, none at the ends. */
export function pyNormalizeSpace(s: string): string {
  return pySplit(s).join(' ');
}

const PY_WS_LEADING = new RegExp(`^[${PY_WS}]+`, 'u');

/** Python `s.strip()`. */
export function pyStrip(s: string): string {
  return pyRstrip(s.replace(PY_WS_LEADING, ''));
}
