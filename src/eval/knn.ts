/**
 * Weighted k-nearest-neighbour classifier on frozen features (the DINO kNN protocol: cosine similarity,
 * top-k neighbours weighted by exp(similarity / T)), for multi-label targets with a label mask: the score of a
 * class is the weighted mean of the neighbours' supervised labels for that class.
 */

/** L2-normalised copy of a row-major (N, F) matrix. */
function normalizeRows(x: Float32Array, n: number, f: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < f; j++) s += (x[i * f + j] as number) ** 2;
    const inv = 1 / Math.max(Math.sqrt(s), 1e-12);
    for (let j = 0; j < f; j++) out[i * f + j] = (x[i * f + j] as number) * inv;
  }
  return out;
}

export interface KnnOptions {
  /** Neighbours. @default 20 */
  k?: number;
  /** Softmax temperature of the similarity weights. @default 0.07 */
  temperature?: number;
}

/**
 * Scores (Q, C) in [0, 1] for the query rows.
 * @param train (N, F) features; trainTargets / trainMask (N, C); query (Q, F) features.
 */
export function knnScores(
  train: { data: Float32Array; shape: [number, number] },
  trainTargets: Float32Array,
  trainMask: Uint8Array,
  numClasses: number,
  query: { data: Float32Array; shape: [number, number] },
  o: KnnOptions = {},
): Float32Array {
  const [n, f] = train.shape;
  const [q, f2] = query.shape;
  if (f !== f2) throw new RangeError(`knnScores: train features have ${f} columns, query features ${f2}`);
  const k = Math.min(o.k ?? 20, n);
  const t = o.temperature ?? 0.07;
  const a = normalizeRows(train.data, n, f);
  const b = normalizeRows(query.data, q, f);
  const C = numClasses;
  const out = new Float32Array(q * C);
  const sims = new Float64Array(n);
  const order = new Int32Array(n);
  for (let i = 0; i < q; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let d = 0; d < f; d++) s += (b[i * f + d] as number) * (a[j * f + d] as number);
      sims[j] = s;
      order[j] = j;
    }
    const top = Array.from(order).sort((x, y) => (sims[y] as number) - (sims[x] as number)).slice(0, k);
    for (let c = 0; c < C; c++) {
      let num = 0;
      let den = 0;
      for (const j of top) {
        if (!trainMask[j * C + c]) continue;
        const w = Math.exp((sims[j] as number) / t);
        num += w * (trainTargets[j * C + c] as number);
        den += w;
      }
      out[i * C + c] = den > 0 ? num / den : 0.5;
    }
  }
  return out;
}
