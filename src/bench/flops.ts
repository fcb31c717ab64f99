/** Helpers of the benchmarks: model FLOP counts (2 FLOPs per multiply-add) and medians. */
/** Forward FLOPs of one image (2 per multiply-add): patch embedding, qkv/proj/FFN matmuls, QKᵀ and AV. */
export function forwardFlops(size: number, d = 384, depth = 12, registers = 4, patch = 14): number {
  const n = (size / patch) ** 2;
  const t = 1 + registers + n;
  return n * 2 * d * 3 * patch * patch + depth * t * (24 * d * d + 4 * t * d);
}


/** Median of a non-empty list. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}
