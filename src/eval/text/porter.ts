/**
 * The Porter stemmer of nltk 3.x (nltk/nltk `nltk/stem/porter.py`, `PorterStemmer(mode=NLTK_EXTENSIONS)`, the
 * default, which rouge-score 0.1.2 uses), ported rule by rule. Reference: M. F. Porter, "An algorithm for suffix
 * stripping", Program 14(3), 1980, with nltk's extensions:
 * - a pool of irregular forms (`skies` → `sky`, `dying` → `die`, `news` → `news`, …) looked up first;
 * - words of 1–2 letters are returned unchanged;
 * - step 1a: `ies` → `ie` for 4-letter words; step 1b: `ied` → `ie` (4 letters) or `i`;
 * - step 1c: `y` → `i` only after a consonant that is not the first letter;
 * - step 2: `alli` → `al` recursively, `bli` → `ble` (not `abli` → `able`), `fulli` → `ful`, `logi` → `log`;
 * - `*o` (ends consonant-vowel-consonant, last not w/x/y) also holds for a 2-letter vowel-consonant stem.
 *
 * Works on lower-case ASCII words (the input is lower-cased first, as nltk's `stem(word, to_lowercase=True)`).
 */

const VOWELS = new Set(['a', 'e', 'i', 'o', 'u']);

/** Irregular forms → stem (nltk `PorterStemmer.__init__`, NLTK_EXTENSIONS). */
const POOL: ReadonlyMap<string, string> = (() => {
  const irregular: Record<string, string[]> = {
    sky: ['sky', 'skies'],
    die: ['dying'],
    lie: ['lying'],
    tie: ['tying'],
    news: ['news'],
    inning: ['innings', 'inning'],
    outing: ['outings', 'outing'],
    canning: ['cannings', 'canning'],
    howe: ['howe'],
    proceed: ['proceed'],
    exceed: ['exceed'],
    succeed: ['succeed'],
  };
  const m = new Map<string, string>();
  for (const [k, vs] of Object.entries(irregular)) for (const v of vs) m.set(v, k);
  return m;
})();

/** `_is_consonant(word, i)`: y is a consonant at the start or after an odd run of y's following a vowel. */
function isConsonant(word: string, i: number): boolean {
  if (VOWELS.has(word[i] as string)) return false;
  if (word[i] === 'y') {
    let negate = false;
    while (i > 0 && word[i] === 'y') {
      negate = !negate;
      i -= 1;
    }
    return !VOWELS.has(word[i] as string) !== negate;
  }
  return true;
}

/** `_consonant_flags(word)`. */
function consonantFlags(word: string): boolean[] {
  const flags: boolean[] = [];
  for (let i = 0; i < word.length; i++) {
    const ch = word[i] as string;
    if (VOWELS.has(ch)) flags.push(false);
    else if (ch === 'y') flags.push(i === 0 ? true : !flags[i - 1]);
    else flags.push(true);
  }
  return flags;
}

/** `_measure(stem)`: m in [C](VC)^m[V], = the number of vowel→consonant transitions. */
function measure(stem: string): number {
  const f = consonantFlags(stem);
  let m = 0;
  for (let i = 1; i < f.length; i++) if (!f[i - 1] && f[i]) m++;
  return m;
}

const hasPositiveMeasure = (stem: string): boolean => measure(stem) > 0;

function containsVowel(stem: string): boolean {
  return consonantFlags(stem).some((c) => !c);
}

function endsDoubleConsonant(word: string): boolean {
  const n = word.length;
  return n >= 2 && word[n - 1] === word[n - 2] && isConsonant(word, n - 1);
}

function endsCvc(word: string): boolean {
  const n = word.length;
  return (
    (n >= 3 &&
      isConsonant(word, n - 3) &&
      !isConsonant(word, n - 2) &&
      isConsonant(word, n - 1) &&
      !['w', 'x', 'y'].includes(word[n - 1] as string)) ||
    (n === 2 && !isConsonant(word, 0) && isConsonant(word, 1))
  );
}

type Rule = readonly [suffix: string, replacement: string, condition: ((stem: string) => boolean) | null];

/** `_apply_rule_list`: the first rule whose suffix matches decides (applied or not); `*d` = double consonant. */
function applyRuleList(word: string, rules: readonly Rule[]): string {
  for (const [suffix, replacement, condition] of rules) {
    if (suffix === '*d' && endsDoubleConsonant(word)) {
      const stem = word.slice(0, -2);
      return condition === null || condition(stem) ? stem + replacement : word;
    }
    if (word.endsWith(suffix)) {
      const stem = suffix === '' ? word : word.slice(0, -suffix.length);
      return condition === null || condition(stem) ? stem + replacement : word;
    }
  }
  return word;
}

function replaceSuffix(word: string, suffix: string, replacement: string): string {
  return (suffix === '' ? word : word.slice(0, -suffix.length)) + replacement;
}

function step1a(word: string): string {
  if (word.endsWith('ies') && word.length === 4) return replaceSuffix(word, 'ies', 'ie');
  return applyRuleList(word, [
    ['sses', 'ss', null],
    ['ies', 'i', null],
    ['ss', 'ss', null],
    ['s', '', null],
  ]);
}

function step1b(word: string): string {
  if (word.endsWith('ied')) return replaceSuffix(word, 'ied', word.length === 4 ? 'ie' : 'i');
  if (word.endsWith('eed')) {
    const stem = replaceSuffix(word, 'eed', '');
    return measure(stem) > 0 ? stem + 'ee' : word;
  }
  let intermediate: string | null = null;
  for (const suffix of ['ed', 'ing']) {
    if (word.endsWith(suffix)) {
      const s = replaceSuffix(word, suffix, '');
      if (containsVowel(s)) {
        intermediate = s;
        break;
      }
    }
  }
  if (intermediate === null) return word;
  const last = intermediate[intermediate.length - 1] as string;
  return applyRuleList(intermediate, [
    ['at', 'ate', null],
    ['bl', 'ble', null],
    ['iz', 'ize', null],
    ['*d', last, () => !['l', 's', 'z'].includes(last)],
    ['', 'e', (stem) => measure(stem) === 1 && endsCvc(stem)],
  ]);
}

function step1c(word: string): string {
  return applyRuleList(word, [['y', 'i', (stem) => stem.length > 1 && isConsonant(stem, stem.length - 1)]]);
}

function step2(word: string): string {
  if (word.endsWith('alli') && hasPositiveMeasure(replaceSuffix(word, 'alli', ''))) {
    return step2(replaceSuffix(word, 'alli', 'al'));
  }
  const p = hasPositiveMeasure;
  return applyRuleList(word, [
    ['ational', 'ate', p],
    ['tional', 'tion', p],
    ['enci', 'ence', p],
    ['anci', 'ance', p],
    ['izer', 'ize', p],
    ['bli', 'ble', p],
    ['alli', 'al', p],
    ['entli', 'ent', p],
    ['eli', 'e', p],
    ['ousli', 'ous', p],
    ['ization', 'ize', p],
    ['ation', 'ate', p],
    ['ator', 'ate', p],
    ['alism', 'al', p],
    ['iveness', 'ive', p],
    ['fulness', 'ful', p],
    ['ousness', 'ous', p],
    ['aliti', 'al', p],
    ['iviti', 'ive', p],
    ['biliti', 'ble', p],
    ['fulli', 'ful', p],
    ['logi', 'log', () => hasPositiveMeasure(word.slice(0, -3))],
  ]);
}

function step3(word: string): string {
  const p = hasPositiveMeasure;
  return applyRuleList(word, [
    ['icate', 'ic', p],
    ['ative', '', p],
    ['alize', 'al', p],
    ['iciti', 'ic', p],
    ['ical', 'ic', p],
    ['ful', '', p],
    ['ness', '', p],
  ]);
}

function step4(word: string): string {
  const gt1 = (stem: string): boolean => measure(stem) > 1;
  return applyRuleList(word, [
    ['al', '', gt1],
    ['ance', '', gt1],
    ['ence', '', gt1],
    ['er', '', gt1],
    ['ic', '', gt1],
    ['able', '', gt1],
    ['ible', '', gt1],
    ['ant', '', gt1],
    ['ement', '', gt1],
    ['ment', '', gt1],
    ['ent', '', gt1],
    ['ion', '', (stem) => measure(stem) > 1 && (stem.endsWith('s') || stem.endsWith('t'))],
    ['ou', '', gt1],
    ['ism', '', gt1],
    ['ate', '', gt1],
    ['iti', '', gt1],
    ['ous', '', gt1],
    ['ive', '', gt1],
    ['ize', '', gt1],
  ]);
}

function step5a(word: string): string {
  if (word.endsWith('e')) {
    const stem = replaceSuffix(word, 'e', '');
    if (measure(stem) > 1) return stem;
    if (measure(stem) === 1 && !endsCvc(stem)) return stem;
  }
  return word;
}

function step5b(word: string): string {
  return applyRuleList(word, [['ll', 'l', () => measure(word.slice(0, -1)) > 1]]);
}

/** nltk `PorterStemmer().stem(word)` (NLTK_EXTENSIONS mode, lower-casing on). */
export function porterStem(word: string): string {
  let stem = word.toLowerCase();
  const pooled = POOL.get(stem);
  if (pooled !== undefined) return pooled;
  if (word.length <= 2) return stem;
  stem = step1a(stem);
  stem = step1b(stem);
  stem = step1c(stem);
  stem = step2(stem);
  stem = step3(stem);
  stem = step4(stem);
  stem = step5a(stem);
  stem = step5b(stem);
  return stem;
}
