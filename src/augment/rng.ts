/**
 * Deterministic random streams for training (design rule: every random choice of a run is data computed here
 * from (seed, rank, iteration); the native trainer only executes it, so the same seed gives the same run).
 *
 * A stream is keyed by (seed, rank, iteration, purpose, ...indices). The key is hashed (MurmurHash3-style word
 * mixing over 32-bit words, then the MurmurHash3 finaliser) into a 32-bit seed for `mulberry32`. Streams with
 * different keys are separate generators, so the values a purpose gets do not depend on the order in which
 * different purposes (or images, ranks, iterations) are drawn, nor on how many values another stream consumed.
 *
 * Limits: mulberry32 has a 32-bit state, so two different keys can (rarely) map to the same or overlapping
 * streams; that repeats a few augmentation draws and is harmless statistically, but streams are not meant for
 * cryptography or for very long sequences (use one stream per small task, e.g. per image and iteration).
 */
import { mulberry32 } from '../data/phantom.js';

/** A source of uniform floats in [0, 1). */
export type UniformSource = () => number;

/** Stream purposes used by the augmentation planner; any other string works as well. */
export const PURPOSE = { crops: 'crops', masks: 'masks' } as const;

/** Uniform helpers over a [0, 1) source. Python/torch conventions are noted where they matter. */
export class Rng {
  constructor(private readonly source: UniformSource) {}

  /** The next raw uniform in [0, 1). */
  next(): number {
    return this.source();
  }

  /** a + (b − a)·u, Python's `random.uniform` formula (so a > b is allowed: the value lies between them). */
  uniform(a: number, b: number): number {
    return a + (b - a) * this.source();
  }

  /** Integer in [a, b) (inclusive a, exclusive b), uniform. `randint(a, b)` of Python is `int(a, b + 1)`. */
  int(a: number, b: number): number {
    if (!Number.isSafeInteger(a) || !Number.isSafeInteger(b) || b <= a) {
      throw new RangeError(`Rng.int needs integers a < b, got [${a}, ${b})`);
    }
    return Math.min(b - 1, a + Math.floor(this.source() * (b - a)));
  }

  /** true with probability p (u < p: never for p ≤ 0, always for p ≥ 1). */
  bernoulli(p: number): boolean {
    return this.source() < p;
  }

  /** Standard normal by Box–Muller; consumes two uniforms per call (no cached second value). */
  normal(): number {
    const u1 = 1 - this.source(); // (0, 1]: log is finite
    const u2 = this.source();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }

  /** exp(U(log a, log b)) for a, b > 0 (log-uniform, as torchvision draws aspect ratios). */
  logUniform(a: number, b: number): number {
    if (!(a > 0 && b > 0)) throw new RangeError(`Rng.logUniform needs a, b > 0, got ${a}, ${b}`);
    return Math.exp(this.uniform(Math.log(a), Math.log(b)));
  }

  /** In-place Fisher–Yates shuffle in Python's `random.shuffle` order (i from n−1 down to 1, j ∈ [0, i]). */
  shuffle<T>(arr: T[]): T[] {
    for (let i = arr.length - 1; i > 0; i--) {
      const j = this.int(0, i + 1);
      const t = arr[i] as T;
      arr[i] = arr[j] as T;
      arr[j] = t;
    }
    return arr;
  }

  /** A uniformly random permutation of 0..n−1 (the role of `torch.randperm(n)`). */
  permutation(n: number): number[] {
    return this.shuffle(Array.from({ length: n }, (_, i) => i));
  }
}

/** MurmurHash3 x86_32 body step: mixes one 32-bit word k into the state h. */
function mixWord(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** MurmurHash3 finaliser (full avalanche). */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** FNV-1a over the UTF-16 code units of the purpose name. */
function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/**
 * The 32-bit seed of the stream (seed, rank, iteration, purpose, ...indices). Every integer must be a safe
 * integer (seed may be negative; rank, iteration and indices must be ≥ 0); each is mixed as two 32-bit words.
 */
export function seedFor(seed: number, rank: number, iteration: number, purpose: string, ...indices: number[]): number {
  const ints = [seed, rank, iteration, ...indices];
  ints.forEach((v, i) => {
    if (!Number.isSafeInteger(v) || (i > 0 && v < 0)) {
      throw new RangeError(`stream key values must be safe integers (rank, iteration, indices ≥ 0), got ${v}`);
    }
  });
  let h = 0x5eed0c0f;
  for (const v of ints) {
    h = mixWord(h, v >>> 0); // low word (ToUint32 = v mod 2^32, also for negatives)
    h = mixWord(h, Math.floor(v / 4294967296) >>> 0); // high word
  }
  h = mixWord(h, hashString(purpose));
  return fmix32(h ^ (ints.length + 1)); // the key length, as MurmurHash3 folds in the byte count
}

/** The stream for (seed, rank, iteration, purpose, ...indices): mulberry32 seeded with `seedFor(...)`. */
export function rngFor(seed: number, rank: number, iteration: number, purpose: string, ...indices: number[]): Rng {
  return new Rng(mulberry32(seedFor(seed, rank, iteration, purpose, ...indices)));
}
