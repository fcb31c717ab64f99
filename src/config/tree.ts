/**
 * A small typed config tree: per-key rules, merging of YAML layers with source tracking, dotted `key=value`
 * overrides, and the one-line key comments of a defaults file. Generic; the pretraining tree lives in pretrain.ts.
 * No file system access here.
 */
import { load, loadAll } from 'js-yaml';

import { ConfigError } from '../model/config.js';

/** Marker of a required key in YAML (as OmegaConf's MISSING). */
export const MISSING = '???';
/** Source name of `key=value` overrides in messages. */
export const COMMAND_LINE = 'command line';

/** Validation rule of one leaf key. `expect` completes "Expected <expect> for <key>". */
export class Rule {
  constructor(
    readonly expect: string,
    readonly test: (v: unknown) => boolean,
    /** String-valued key: a command-line value that YAML reads as a number or boolean is kept as text. */
    readonly text = false,
  ) {}

  /** The same rule that also accepts null (`or null` is appended to the expectation). */
  orNull(): Rule {
    return new Rule(`${this.expect} or null`, (v) => v === null || this.test(v), this.text);
  }
}

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const fmtBound = (n: number) => String(n);

/** Integer in [min, max]. */
export function int(min: number, max = Number.MAX_SAFE_INTEGER): Rule {
  const expect = max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer in [${min}, ${max}]`;
  return new Rule(expect, (v) => isNum(v) && Number.isInteger(v) && v >= min && v <= max);
}

/** Finite number in a range; `lo`/`hi` are [value, inclusive]. */
export function num(lo: [number, boolean] | null, hi: [number, boolean] | null = null): Rule {
  let expect: string;
  if (lo && hi) expect = `a number in ${lo[1] ? '[' : '('}${fmtBound(lo[0])}, ${fmtBound(hi[0])}${hi[1] ? ']' : ')'}`;
  else if (lo) expect = `a number ${lo[1] ? '>=' : '>'} ${fmtBound(lo[0])}`;
  else if (hi) expect = `a number ${hi[1] ? '<=' : '<'} ${fmtBound(hi[0])}`;
  else expect = 'a number';
  return new Rule(expect, (v) => {
    if (!isNum(v)) return false;
    if (lo && !(lo[1] ? v >= lo[0] : v > lo[0])) return false;
    if (hi && !(hi[1] ? v <= hi[0] : v < hi[0])) return false;
    return true;
  });
}

export const bool = (): Rule => new Rule('a boolean (true or false)', (v) => typeof v === 'boolean');

/** Non-empty string. */
export const str = (what = 'a non-empty string'): Rule => new Rule(what, (v) => typeof v === 'string' && v.length > 0, true);

export function oneOf(values: readonly string[]): Rule {
  return new Rule(`one of ${values.join(', ')}`, (v) => typeof v === 'string' && values.includes(v), true);
}

export function pattern(re: RegExp, what: string): Rule {
  return new Rule(what, (v) => typeof v === 'string' && re.test(v), true);
}

/** A list [a, b] with each element accepted by `item` and, if `ordered`, a <= b. */
export function pair(item: Rule, ordered: boolean, what: string): Rule {
  return new Rule(
    what,
    (v) => Array.isArray(v) && v.length === 2 && item.test(v[0]) && item.test(v[1]) && (!ordered || (v[0] as number) <= (v[1] as number)),
  );
}

/**
 * The rules of a config type: every key of T must have a rule (leaves, lists and nullable objects) or a nested
 * schema (sections). Adding a key to the type without a rule is a compile error.
 */
export type SchemaOf<T> = {
  [K in keyof T]-?: T[K] extends readonly unknown[]
    ? Rule
    : null extends T[K]
      ? Rule
      : T[K] extends object
        ? SchemaOf<T[K]>
        : Rule;
};

export type Tree = Record<string, unknown>;
export interface Section {
  [key: string]: Rule | Section;
}

export function isPlainObject(v: unknown): v is Tree {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A value as it would be written in YAML flow style, for messages. */
export function formatValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
  try {
    return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'number' && !Number.isFinite(x) ? String(x) : x)).replace(/,/g, ', ');
  } catch {
    return String(v);
  }
}

/** Dotted leaf keys of a schema, in declaration order. */
export function leafKeys(schema: Section, prefix = ''): string[] {
  const out: string[] = [];
  for (const [k, r] of Object.entries(schema)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (r instanceof Rule) out.push(key);
    else out.push(...leafKeys(r, key));
  }
  return out;
}

/** Rule of a dotted leaf key, or undefined. */
export function ruleAt(schema: Section, dotted: string): Rule | undefined {
  let node: Rule | Section | undefined = schema;
  for (const p of dotted.split('.')) {
    if (node === undefined || node instanceof Rule || !Object.hasOwn(node, p)) return undefined;
    node = node[p];
  }
  return node instanceof Rule ? node : undefined;
}

/** Value of a dotted key in a tree (undefined when absent). */
export function getAt(tree: unknown, dotted: string): unknown {
  let node: unknown = tree;
  for (const p of dotted.split('.')) {
    if (!isPlainObject(node) || !Object.hasOwn(node, p)) return undefined;
    node = node[p];
  }
  return node;
}

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]!;
      prev[j] = Math.min(up + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length]!;
}

function unknownKeyMessage(section: Section, path: string[], key: string, source: string): string {
  const dotted = [...path, key].join('.');
  const valid = Object.keys(section);
  const near = valid
    .map((k) => [k, editDistance(k.toLowerCase(), key.toLowerCase())] as const)
    .filter(([, d]) => d <= Math.max(1, Math.floor(key.length / 3)))
    .sort((x, y) => x[1] - y[1])[0];
  const where = path.length ? `under '${path.join('.')}'` : 'at the top level';
  return (
    `Unknown key '${dotted}' (from ${source}).${near ? ` Did you mean '${[...path, near[0]].join('.')}'?` : ''}` +
    ` Valid keys ${where}: ${valid.join(', ')}`
  );
}

/**
 * Writes the leaves of `layer` into `target` following `schema`, recording `source` for each leaf set.
 * Unknown keys and a non-mapping where a section is expected are collected into `errors`; an empty section in a
 * file (null) changes nothing.
 */
export function mergeLayer(
  schema: Section,
  target: Tree,
  layer: Tree,
  source: string,
  sources: Record<string, string>,
  errors: string[],
  path: string[] = [],
): void {
  for (const [k, v] of Object.entries(layer)) {
    if (!Object.hasOwn(schema, k)) {
      errors.push(unknownKeyMessage(schema, path, k, source));
      continue;
    }
    const rule = schema[k]!;
    const dotted = [...path, k].join('.');
    if (rule instanceof Rule) {
      target[k] = structuredClone(v);
      sources[dotted] = source;
    } else if (v === null && source !== COMMAND_LINE) {
      // `section:` with every key commented out: no change.
    } else if (isPlainObject(v)) {
      const sub = target[k];
      mergeLayer(rule, isPlainObject(sub) ? sub : (target[k] = {}), v, source, sources, errors, [...path, k]);
    } else {
      errors.push(`Expected a mapping of keys (${Object.keys(rule).join(', ')}) for ${dotted} (from ${source}) but received ${formatValue(v)}`);
    }
  }
}

/** Keys of `schema` absent from `tree` (a defaults file must list every key). */
export function absentKeys(schema: Section, tree: unknown, prefix = ''): string[] {
  const out: string[] = [];
  for (const [k, r] of Object.entries(schema)) {
    const key = prefix ? `${prefix}.${k}` : k;
    const v = isPlainObject(tree) && Object.hasOwn(tree, k) ? tree[k] : undefined;
    if (r instanceof Rule) {
      if (v === undefined) out.push(key);
    } else out.push(...absentKeys(r, v, key));
  }
  return out;
}

/**
 * Checks every leaf of the merged tree: keys still `???` are reported together as missing (or, with `unset`, listed
 * there and left `???`: `train --print-config`), the others against their rule ("Expected <rule> for <key> (from
 * <source>) but received <value>").
 */
export function validateTree(schema: Section, tree: Tree, sources: Record<string, string>, errors: string[], unset?: string[]): void {
  const missing: string[] = [];
  for (const key of leafKeys(schema)) {
    const v = getAt(tree, key);
    if (v === MISSING) {
      missing.push(key);
      continue;
    }
    const rule = ruleAt(schema, key)!;
    if (!rule.test(v)) errors.push(`Expected ${rule.expect} for ${key} (from ${sources[key] ?? 'defaults'}) but received ${formatValue(v)}`);
  }
  if (unset) unset.push(...missing);
  else if (missing.length) {
    const ex = missing.map((k) => `${k}=...`).join(' ');
    errors.push(`Missing required key${missing.length > 1 ? 's' : ''} ${missing.join(', ')}: set ${missing.length > 1 ? 'them' : 'it'} in a config file or on the command line (e.g. ${ex})`);
  }
}

/** Throws one ConfigError listing every collected problem. */
export function throwIfErrors(errors: readonly string[], what: string): void {
  if (errors.length === 1) throw new ConfigError(errors[0]!);
  if (errors.length > 1) throw new ConfigError(`${errors.length} problems in the ${what}:\n  - ${errors.join('\n  - ')}`);
}

/** Parses a YAML config document; an empty (or comment-only) file is an empty mapping. */
export function parseYamlLayer(text: string, source: string): Tree {
  let docs: unknown[];
  try {
    docs = loadAll(text, { filename: source });
  } catch (e) {
    throw new ConfigError(`Cannot parse ${source} as YAML: ${(e as Error).message}`);
  }
  if (docs.length > 1) throw new ConfigError(`${source} holds ${docs.length} YAML documents; expected one`);
  const doc = docs[0] ?? null;
  if (doc === null) return {};
  if (!isPlainObject(doc)) throw new ConfigError(`Expected a mapping of keys at the top level of ${source} but received ${formatValue(doc)}`);
  return doc;
}

/**
 * Turns dotted `key=value` overrides into one nested layer. Values are YAML scalars or flow collections
 * (`3e-4`, `null`, `true`, `[0.4, 1]`, `{a: 1}`); for string-valued keys a number or boolean keeps its text
 * (`output=2024`). The key path is checked against the schema, naming 'command line' as the source.
 */
export function overridesToLayer(schema: Section, overrides: readonly string[], errors: string[]): Tree {
  const layer: Tree = {};
  for (const o of overrides) {
    const eq = o.indexOf('=');
    if (eq <= 0) {
      errors.push(`Override '${o}' (from command line): expected key=value, e.g. optim.epochs=10`);
      continue;
    }
    const key = o.slice(0, eq).trim();
    const raw = o.slice(eq + 1).trim();
    const parts = key.split('.');
    // Walk the schema so that a bad path is reported with the valid keys at the level where it fails.
    let section: Section = schema;
    let node: Tree = layer;
    let ok = true;
    for (const [i, p] of parts.entries()) {
      if (!Object.hasOwn(section, p)) {
        errors.push(unknownKeyMessage(section, parts.slice(0, i), p, COMMAND_LINE));
        ok = false;
        break;
      }
      const next = section[p]!;
      if (i === parts.length - 1) break;
      if (next instanceof Rule) {
        errors.push(`Override '${o}' (from command line): ${parts.slice(0, i + 1).join('.')} is a value, not a section`);
        ok = false;
        break;
      }
      section = next;
      const child = node[p];
      node = isPlainObject(child) ? child : (node[p] = {});
    }
    if (!ok) continue;
    if (raw === '') {
      errors.push(`Override '${o}' (from command line): missing value after '=' (write ${key}=null for null)`);
      continue;
    }
    let value: unknown;
    try {
      value = load(raw);
    } catch {
      value = raw; // not YAML: keep the text, the key's rule decides
    }
    const rule = ruleAt(schema, key);
    if (rule?.text && (typeof value === 'number' || typeof value === 'boolean')) value = raw;
    const last = parts[parts.length - 1]!;
    if (isPlainObject(value) && isPlainObject(node[last])) Object.assign(node[last] as Tree, value);
    else node[last] = value;
  }
  return layer;
}

/**
 * The comment of every key in a YAML file written as `# comment` lines directly above the key (or a trailing
 * `# comment` on its line), keyed by dotted path. Only block mappings with one key per line are understood.
 */
export function keyComments(text: string): Map<string, string> {
  const out = new Map<string, string>();
  const stack: { indent: number; key: string }[] = [];
  let pending: string[] = [];
  for (const line of text.split(/\r?\n/)) {
    const comment = /^\s*#\s?(.*)$/.exec(line);
    if (comment) {
      pending.push(comment[1]!.trim());
      continue;
    }
    const m = /^(\s*)([A-Za-z_][\w-]*):(?:\s+(.*))?$/.exec(line);
    if (!m) {
      pending = [];
      continue;
    }
    const indent = m[1]!.length;
    while (stack.length && stack[stack.length - 1]!.indent >= indent) stack.pop();
    const dotted = [...stack.map((s) => s.key), m[2]!].join('.');
    stack.push({ indent, key: m[2]! });
    const trailing = /\s#\s*(.*)$/.exec(m[3] ?? '');
    const help = trailing ? trailing[1]!.trim() : pending.join(' ');
    if (help) out.set(dotted, help);
    pending = [];
  }
  return out;
}
