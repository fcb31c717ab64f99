/**
 * Numerical helpers shared by the evaluation code, written to reproduce numpy's results to the last bit where that is
 * cheap: numpy's pairwise summation (`np.sum` / `np.add.reduce` on a contiguous float64 array) and `np.percentile`'s
 * default "linear" method (Hyndman & Fan type 7) including numpy's `_lerp` formulation.
 */

/**
 * Sum of `a[start .. start+n)` as numpy's `pairwise_sum_DOUBLE` computes it: plain loop below 8 elements, 8
 * accumulators up to 128 elements, recursive halving (at multiples of 8) above. `np.add.reduce` adds this to the
 * identity 0, which does not change the value.
 */
export function pairwiseSum(a: ArrayLike<number>, start = 0, n = a.length - start): number {
  if (n < 8) {
    let res = 0;
    for (let i = 0; i < n; i++) res += a[start + i] as number;
    return res;
  }
  if (n <= 128) {
    const r = new Float64Array(8);
    for (let j = 0; j < 8; j++) r[j] = a[start + j] as number;
    let i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (let j = 0; j < 8; j++) r[j] = (r[j] as number) + (a[start + i + j] as number);
    }
    let res = ((r[0]! + r[1]!) + (r[2]! + r[3]!)) + ((r[4]! + r[5]!) + (r[6]! + r[7]!));
    for (; i < n; i++) res += a[start + i] as number;
    return res;
  }
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return pairwiseSum(a, start, n2) + pairwiseSum(a, start + n2, n - n2);
}

/** Arithmetic mean with numpy's summation (`np.mean`); NaN for an empty array. */
export function mean(a: ArrayLike<number>): number {
  return a.length === 0 ? Number.NaN : pairwiseSum(a) / a.length;
}

/**
 * Percentile of already sorted (ascending, finite) values, numpy's default `method='linear'`:
 * virtual index h = (n − 1)·q/100, lower = ⌊h⌋, γ = h − lower, result = lerp(v[lower], v[lower+1], γ), where numpy's
 * `_lerp` computes a + (b − a)·γ for γ < 0.5 and b − (b − a)·(1 − γ) for γ ≥ 0.5. `q` in [0, 100]. NaN when empty.
 */
export function percentileSorted(sorted: ArrayLike<number>, q: number): number {
  if (!(q >= 0 && q <= 100)) throw new RangeError(`percentile: q must be in [0, 100], got ${q}`);
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  const h = (n - 1) * (q / 100);
  const lo = Math.floor(h);
  if (lo >= n - 1) return sorted[n - 1] as number;
  const a = sorted[lo] as number;
  const b = sorted[lo + 1] as number;
  const g = h - lo;
  const d = b - a;
  return g >= 0.5 ? b - d * (1 - g) : a + d * g;
}

/** Percentile (numpy linear) of unsorted values; the input is not modified. */
export function percentile(values: ArrayLike<number>, q: number): number {
  const s = Float64Array.from(values as ArrayLike<number>);
  s.sort();
  return percentileSorted(s, q);
}
