/** Model FLOP counts for the benchmarks (2 FLOPs per multiply-add). */
/** Forward FLOPs of one image (2 per multiply-add): patch embedding, qkv/proj/FFN matmuls, QKᵀ and AV. */
export function forwardFlops(size: number, d = 384, depth = 12, registers = 4, patch = 14): number {
  const n = (size / patch) ** 2;
  const t = 1 + registers + n;
  return n * 2 * d * 3 * patch * patch + depth * t * (24 * d * d + 4 * t * d);
}

