/** Helpers of the benchmarks: model FLOP counts (2 FLOPs per multiply-add), medians and the machine line. */
import { readFileSync } from 'node:fs';
import os from 'node:os';
/** Forward FLOPs of one image (2 per multiply-add): patch embedding, qkv/proj/FFN matmuls, QKᵀ and AV. */
export function forwardFlops(size: number, d = 384, depth = 12, registers = 4, patch = 14): number {
  const n = (size / patch) ** 2;
  const t = 1 + registers + n;
  return n * 2 * d * 3 * patch * patch + depth * t * (24 * d * d + 4 * t * d);
}


/** Median seconds of `runs` calls of `f` after one warm-up call. */
export async function timed(runs: number, f: () => Promise<unknown>): Promise<number> {
  await f();
  const t: number[] = [];
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    await f();
    t.push((performance.now() - t0) / 1000);
  }
  return median(t);
}

/** Median of a non-empty list. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/**
 * The CPU model, its vector instruction sets that matter to LibTorch (AVX2, AVX-512, AVX-512 BF16, AMX) and the
 * logical CPU count, e.g. "AMD EPYC [avx2] (2 logical CPUs)": every benchmark prints it, since only ratios measured
 * on one machine in one run compare.
 */
export function machineLine(): string {
  let flags: string[] = [];
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8').split('\n').find((l) => l.startsWith('flags'));
    flags = line ? (line.split(':')[1] ?? '').trim().split(/\s+/) : [];
  } catch {
    // not Linux: the model name alone
  }
  const isa = ['avx2', 'avx512f', 'avx512_bf16', 'amx_bf16'].filter((f) => flags.includes(f));
  return `${os.cpus()[0]?.model ?? 'cpu'} [${isa.join(' ') || 'no AVX2'}] (${os.cpus().length} logical CPUs)`;
}
