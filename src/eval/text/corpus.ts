/** Argument checks shared by the corpus-level text metrics (hypotheses with their reference lists). */

/**
 * Checks that `hyps` are strings and `refs[i]` is a non-empty list of reference strings for each, as many lists as
 * hypotheses, and the corpus is not empty.
 * @param what the metric, for the message
 * @throws TypeError / RangeError naming the index
 */
export function checkCorpus(hyps: readonly string[], refs: readonly (readonly string[])[], what: string): void {
  if (!Array.isArray(hyps)) throw new TypeError(`${what}: hyps must be an array of strings`);
  if (!Array.isArray(refs)) throw new TypeError(`${what}: refs must be an array of reference lists`);
  if (hyps.length !== refs.length) {
    throw new RangeError(`${what}: ${hyps.length} hypotheses but ${refs.length} reference lists (one list per hypothesis expected)`);
  }
  if (hyps.length === 0) throw new RangeError(`${what}: the corpus is empty (no hypotheses)`);
  for (let i = 0; i < hyps.length; i++) {
    if (typeof hyps[i] !== 'string') throw new TypeError(`${what}: hyps[${i}] must be a string, got ${typeof hyps[i]}`);
    const r = refs[i];
    if (!Array.isArray(r) || r.length === 0) {
      throw new RangeError(`${what}: refs[${i}] must be a non-empty array of reference strings, got ${Array.isArray(r) ? 'an empty array' : typeof r}`);
    }
    for (let j = 0; j < r.length; j++) {
      if (typeof r[j] !== 'string') throw new TypeError(`${what}: refs[${i}][${j}] must be a string, got ${typeof r[j]}`);
    }
  }
}
