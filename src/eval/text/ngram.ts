/**
 * n-gram counting shared by BLEU and CIDEr-D. Tokens are interned to integers and each n-gram gets an integer id
 * (from its (n−1)-gram prefix id and its last token id), so counting, clipping and document frequencies work on
 * numbers instead of joined strings. Only equality of n-grams matters to the metrics, so this changes no value.
 *
 * The per-sentence tables are Maps in first-occurrence order within each order — the order in which the Python
 * packages' `defaultdict`/`Counter` iterate — which keeps floating-point sums (CIDEr's norms and dot products) in the
 * reference order.
 */

/** Token ids stay below this; an n-gram key is (prefix id + 1) · TOKEN_BASE + token id, exact below 2^53. */
const TOKEN_BASE = 2 ** 26;
const MAX_GRAMS = 2 ** 26;

/** Interns tokens and n-grams of one computation (a corpus). */
export class NgramTable {
  private readonly tokenIds = new Map<string, number>();
  private readonly gramIds = new Map<number, number>();

  /** Number of distinct n-grams seen so far (ids are 0 .. size − 1). */
  get size(): number {
    return this.gramIds.size;
  }

  private tokenId(t: string): number {
    let id = this.tokenIds.get(t);
    if (id === undefined) {
      id = this.tokenIds.size;
      if (id >= TOKEN_BASE) throw new RangeError(`NgramTable: more than ${TOKEN_BASE} distinct tokens`);
      this.tokenIds.set(t, id);
    }
    return id;
  }

  private gramId(prefix: number, token: number): number {
    const key = (prefix + 1) * TOKEN_BASE + token;
    let id = this.gramIds.get(key);
    if (id === undefined) {
      id = this.gramIds.size;
      if (id >= MAX_GRAMS) throw new RangeError(`NgramTable: more than ${MAX_GRAMS} distinct n-grams`);
      this.gramIds.set(key, id);
    }
    return id;
  }

  /** Counts of the 1..n-grams of a token list: `counts[k − 1]` maps each k-gram id to its count. */
  count(tokens: readonly string[], n: number): Map<number, number>[] {
    const len = tokens.length;
    const tok = new Array<number>(len);
    for (let i = 0; i < len; i++) tok[i] = this.tokenId(tokens[i] as string);
    let prev = tok;
    const counts: Map<number, number>[] = [];
    for (let k = 1; k <= n; k++) {
      const m = new Map<number, number>();
      const cur = new Array<number>(Math.max(0, len - k + 1));
      for (let i = 0; i + k <= len; i++) {
        // k = 1: prefix −1 and the token; k > 1: the (k−1)-gram at i and the token at i + k − 1.
        const id = this.gramId(k === 1 ? -1 : (prev[i] as number), tok[i + k - 1] as number);
        cur[i] = id;
        m.set(id, (m.get(id) ?? 0) + 1);
      }
      counts.push(m);
      prev = cur;
    }
    return counts;
  }
}

/** Per order, the maximum count of each n-gram over several count tables. */
export function maxCounts(tables: readonly Map<number, number>[][], n: number): Map<number, number>[] {
  if (tables.length === 1) return tables[0] as Map<number, number>[];
  const out: Map<number, number>[] = [];
  for (let k = 0; k < n; k++) {
    const m = new Map<number, number>();
    for (const t of tables) {
      for (const [g, c] of t[k] as Map<number, number>) {
        const prev = m.get(g);
        if (prev === undefined || c > prev) m.set(g, c);
      }
    }
    out.push(m);
  }
  return out;
}

/** Σ over n-grams of min(hypothesis count, reference maximum count), per order. */
export function clippedMatches(hyp: readonly Map<number, number>[], refMax: readonly Map<number, number>[], n: number): number[] {
  const correct = new Array<number>(n).fill(0);
  for (let k = 0; k < n; k++) {
    const r = refMax[k] as Map<number, number>;
    let c = 0;
    for (const [g, count] of hyp[k] as Map<number, number>) {
      const rc = r.get(g);
      if (rc !== undefined) c += rc < count ? rc : count;
    }
    correct[k] = c;
  }
  return correct;
}
