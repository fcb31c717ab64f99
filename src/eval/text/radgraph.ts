/**
 * RadGraph reward (RadGraph F1) on imported annotations: the arithmetic of the `radgraph` package 0.1.18
 * (`radgraph/rewards.py`, pure Python; `radgraph/radgraph.py` `F1RadGraph.forward`). Producing the annotations needs
 * the DyGIE++ model (not here): run `radgraph.RadGraph()(texts)` elsewhere and pass its JSON.
 *
 * Annotation format (`radgraph/utils.py` `postprocess_reports`): an object keyed by report id,
 * `{ "<id>": { text, entities: { "<eid>": { tokens, label, start_ix, end_ix, relations: [[type, "<target eid>"]] } } } }`
 * (a JSON array is read as ids "0", "1", …). `tokens` is the entity's tokens joined by single spaces; labels are
 * `Anatomy|Observation::definitely present|definitely absent|uncertain`; relation types `located_at`, `modify`,
 * `suggestive_of`.
 *
 * Reward levels, each an F1 between the SETS of items of the hypothesis and the reference:
 * - simple (RG_E, `exact_entity_token_match_reward`): `(tokens, label)` of every entity;
 * - partial (RG_ER, `exact_entity_token_if_rel_exists_reward`, "RadGraph F1" in most papers): `(tokens, label)` for
 *   an entity without relations, `(tokens, label, True)` for one with at least one;
 * - complete (RG_ĒR, `exact_entity_token_if_all_match_reward`): `(tokens, label)` for an entity without relations,
 *   and per relation `(lower(tokens), label, type, lower(target tokens))` (only these are lower-cased).
 * precision = |hyp ∩ ref| / |hyp|, recall = |hyp ∩ ref| / |ref| (0 for an empty set), F1 = 2PR/(P+R) (0 when P+R = 0).
 *
 * Edge rules: a side with no entities → 0 on every level (`compute_reward`); a pair whose hypothesis or reference
 * TEXT is the empty string → 0 on every level and still counted (`F1RadGraph.forward` does not annotate it); the
 * corpus reward is the mean over pairs (numpy's pairwise summation, src/eval/stats.ts).
 * Lower-casing is JavaScript's `toLowerCase` (Unicode default case mapping with final sigma, as Python's `str.lower`).
 */
import { readFile } from 'node:fs/promises';
import { DataError } from '../../data/errors.js';
import { mean } from '../stats.js';

export interface RadGraphEntity {
  tokens: string;
  label: string;
  start_ix?: number;
  end_ix?: number;
  /** `[type, target entity id]` pairs. */
  relations: [string, string][];
}

export interface RadGraphAnnotation {
  text: string;
  entities: Record<string, RadGraphEntity>;
}

export type RadGraphLevel = 'simple' | 'partial' | 'complete';

export interface RadGraphScores {
  simple: number;
  partial: number;
  complete: number;
}

export interface RadGraphReward extends RadGraphScores {
  /** Per pair, in input order. */
  perPair: RadGraphScores[];
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * Validates one report's annotation.
 * @throws DataError naming the file, the report id and the key, with what was expected and found
 */
function checkAnnotation(v: unknown, file: string, id: string): RadGraphAnnotation {
  const at = (key: string) => `report '${id}', key '${key}'`;
  const found = (x: unknown) => (x === undefined ? 'nothing' : Array.isArray(x) ? 'an array' : x === null ? 'null' : `${typeof x} ${JSON.stringify(x)?.slice(0, 40)}`);
  if (!isObject(v)) throw new DataError(`report '${id}': expected an object {text, entities}, found ${found(v)}`, { file });
  if (typeof v.text !== 'string') throw new DataError(`${at('text')}: expected the report text (a string), found ${found(v.text)}`, { file });
  if (!isObject(v.entities)) throw new DataError(`${at('entities')}: expected an object of entities keyed by id, found ${found(v.entities)}`, { file });
  const entities = v.entities;
  for (const [eid, e] of Object.entries(entities)) {
    const ek = (key: string) => `${at(`entities.${eid}.${key}`)}`;
    if (!isObject(e)) throw new DataError(`${at(`entities.${eid}`)}: expected an entity object {tokens, label, relations}, found ${found(e)}`, { file });
    if (typeof e.tokens !== 'string') throw new DataError(`${ek('tokens')}: expected a string, found ${found(e.tokens)}`, { file });
    if (typeof e.label !== 'string') throw new DataError(`${ek('label')}: expected a string, found ${found(e.label)}`, { file });
    if (!Array.isArray(e.relations)) throw new DataError(`${ek('relations')}: expected an array of [type, target id] pairs, found ${found(e.relations)}`, { file });
    e.relations.forEach((r: unknown, k: number) => {
      if (!Array.isArray(r) || r.length !== 2 || typeof r[0] !== 'string' || typeof r[1] !== 'string') {
        throw new DataError(`${ek(`relations[${k}]`)}: expected a [type, target id] pair of strings, found ${found(r)}`, { file });
      }
      if (!Object.hasOwn(entities, r[1])) {
        throw new DataError(`${ek(`relations[${k}]`)}: the target entity '${r[1]}' does not exist (entities: ${Object.keys(entities).join(', ') || 'none'})`, { file });
      }
    });
  }
  return v as unknown as RadGraphAnnotation;
}

/**
 * Reads annotations from parsed JSON: an object keyed by report id (the `radgraph` output) or an array (ids "0", "1", …).
 * @throws DataError for anything else, naming the file, report id and key
 */
export function parseRadGraphAnnotations(json: unknown, file = '<radgraph json>'): Map<string, RadGraphAnnotation> {
  if (!Array.isArray(json) && !isObject(json)) {
    throw new DataError(`expected RadGraph annotations: an object keyed by report id (the radgraph package's output) or an array, found ${json === null ? 'null' : typeof json}`, { file });
  }
  const entries: [string, unknown][] = Array.isArray(json) ? json.map((v, i) => [String(i), v]) : Object.entries(json);
  return new Map(entries.map(([id, v]) => [id, checkAnnotation(v, file, id)]));
}

/** Reads and validates a RadGraph annotation JSON file. */
export async function readRadGraphFile(file: string): Promise<Map<string, RadGraphAnnotation>> {
  const text = await readFile(file, 'utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new DataError(`not valid JSON: ${(e as Error).message}`, { file });
  }
  return parseRadGraphAnnotations(json, file);
}

/**
 * Pairs hypothesis and reference annotations by report id (the reference file's order).
 * @throws DataError listing the ids missing on either side
 */
export function pairRadGraph(
  hyps: Map<string, RadGraphAnnotation>,
  refs: Map<string, RadGraphAnnotation>,
  files: { hyp: string; ref: string } = { hyp: '<hypotheses>', ref: '<references>' },
): { ids: string[]; hyps: RadGraphAnnotation[]; refs: RadGraphAnnotation[] } {
  const noHyp = [...refs.keys()].filter((k) => !hyps.has(k));
  const noRef = [...hyps.keys()].filter((k) => !refs.has(k));
  const list = (a: string[]) => `${a.slice(0, 10).join(', ')}${a.length > 10 ? `, … (${a.length} in all)` : ''}`;
  if (noHyp.length) throw new DataError(`${noHyp.length} report id(s) of ${files.ref} have no annotation here: ${list(noHyp)}`, { file: files.hyp });
  if (noRef.length) throw new DataError(`${noRef.length} report id(s) of ${files.hyp} have no annotation here: ${list(noRef)}`, { file: files.ref });
  const ids = [...refs.keys()];
  return { ids, hyps: ids.map((k) => hyps.get(k)!), refs: ids.map((k) => refs.get(k)!) };
}

/** The set of items of one annotation at one level, each item a tuple serialised as JSON. */
function items(a: RadGraphAnnotation, level: RadGraphLevel): Set<string> {
  const out = new Set<string>();
  for (const e of Object.values(a.entities)) {
    const rel = e.relations.length > 0;
    if (level === 'simple' || !rel) out.add(JSON.stringify([e.tokens, e.label]));
    else if (level === 'partial') out.add(JSON.stringify([e.tokens, e.label, true]));
    else for (const [type, target] of e.relations) out.add(JSON.stringify([e.tokens.toLowerCase(), e.label, type, a.entities[target]!.tokens.toLowerCase()]));
  }
  return out;
}

/** F1 between two item sets, in rewards.py's order of operations. */
function setF1(hyp: Set<string>, ref: Set<string>): number {
  let inRef = 0;
  for (const x of hyp) if (ref.has(x)) inRef++;
  let inHyp = 0;
  for (const x of ref) if (hyp.has(x)) inHyp++;
  const precision = hyp.size > 0 ? inRef / hyp.size : 0;
  const recall = ref.size > 0 ? inHyp / ref.size : 0;
  return precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
}

/** The three rewards of one pair (rewards.py `compute_reward(hyp, ref, "all")` with F1RadGraph's empty-text rule). */
export function radgraphPairReward(hyp: RadGraphAnnotation, ref: RadGraphAnnotation): RadGraphScores {
  if (hyp.text.length === 0 || ref.text.length === 0) return { simple: 0, partial: 0, complete: 0 };
  if (Object.keys(hyp.entities).length === 0 || Object.keys(ref.entities).length === 0) return { simple: 0, partial: 0, complete: 0 };
  const f = (level: RadGraphLevel) => setF1(items(hyp, level), items(ref, level));
  return { simple: f('simple'), partial: f('partial'), complete: f('complete') };
}

/**
 * Corpus RadGraph reward: the mean over pairs of each level, and the per-pair values.
 * @throws RangeError when the lists differ in length or are empty
 */
export function radgraphReward(hyps: readonly RadGraphAnnotation[], refs: readonly RadGraphAnnotation[]): RadGraphReward {
  if (hyps.length !== refs.length) throw new RangeError(`radgraphReward: ${hyps.length} hypotheses but ${refs.length} references`);
  if (hyps.length === 0) throw new RangeError('radgraphReward: no report pairs');
  const perPair = hyps.map((h, i) => radgraphPairReward(h, refs[i]!));
  return {
    simple: mean(perPair.map((p) => p.simple)),
    partial: mean(perPair.map((p) => p.partial)),
    complete: mean(perPair.map((p) => p.complete)),
    perPair,
  };
}
