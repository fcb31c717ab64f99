/**
 * Seeded randomness for the data layer: the `mulberry32` PRNG, a seed mixer for independent streams,
 * and a Fisher–Yates shuffle. Everything here is deterministic and platform independent (32-bit integer math).
 */

/** mulberry32: small, fast, seedable PRNG returning floats in [0, 1). The seed is taken modulo 2^32. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** murmur3's 32-bit finaliser. */
function fmix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * Mixes integers into one 32-bit seed, so that (seed, stream, index, …) tuples give independent mulberry32 streams.
 * Both 32-bit words of each part are used, so integers up to ±2^53 do not wrap onto each other
 * (unlike `mulberry32(a + b)`, where a + 2^32 and a collide).
 */
export function hashSeed(...parts: number[]): number {
  let h = 0x2545f491;
  for (const p of parts) {
    if (!Number.isFinite(p)) throw new RangeError(`hashSeed: expected finite numbers, got ${p}`);
    const lo = p >>> 0;
    const hi = Math.floor(p / 4294967296) >>> 0;
    h = fmix32((h ^ lo) + 0x9e3779b9);
    h = fmix32((h ^ hi) + 0x7f4a7c15);
  }
  return h;
}

/** Uniform float in [lo, hi). */
export function uniform(rnd: () => number, lo: number, hi: number): number {
  return lo + (hi - lo) * rnd();
}

/** Uniform integer in [lo, hi] (both included). */
export function randInt(rnd: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rnd() * (hi - lo + 1));
}

/** In-place Fisher–Yates shuffle (Durstenfeld, from the end). */
export function shuffleInPlace<T>(a: T[], rnd: () => number): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    const t = a[i] as T;
    a[i] = a[j] as T;
    a[j] = t;
  }
  return a;
}
