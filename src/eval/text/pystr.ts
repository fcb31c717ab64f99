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

/** Python `str.isspace()` for one UTF-16 code unit (every such character is in the BMP). */
export function isPySpace(c: number): boolean {
  if (c <= 0x20) return c === 0x20 || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f);
  if (c < 0x85) return false;
  return (
    c === 0x85 || c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 || c === 0x202f || c === 0x205f || c === 0x3000
  );
}

/** Python `s.split()`: whitespace-separated fields, no empty strings. */
export function pySplit(s: string): string[] {
  const out: string[] = [];
  const n = s.length;
  let i = 0;
  while (i < n) {
    while (i < n && isPySpace(s.charCodeAt(i))) i++;
    if (i >= n) break;
    const start = i;
    while (i < n && !isPySpace(s.charCodeAt(i))) i++;
    out.push(s.slice(start, i));
  }
  return out;
}

/** Python `s.rstrip()`. */
export function pyRstrip(s: string): string {
  let end = s.length;
  while (end > 0 && isPySpace(s.charCodeAt(end - 1))) end--;
  return end === s.length ? s : s.slice(0, end);
}

/** Python `' '.join(s.split())`: one space between fields, none at the ends. */
export function pyNormalizeSpace(s: string): string {
  return pySplit(s).join(' ');
}

/** Python `s.strip()`. */
export function pyStrip(s: string): string {
  let start = 0;
  while (start < s.length && isPySpace(s.charCodeAt(start))) start++;
  return pyRstrip(start === 0 ? s : s.slice(start));
}
