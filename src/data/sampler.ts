/**
 * DINOv2's sharded infinite sampler (dinov2/data/samplers.py `ShardedInfiniteSampler`, docs/recipe.md §3.9), one pass at a time.
 *
 * Structure reproduced: one global permutation of 0..n−1 seeded with `seed`; rank r of W takes the strided slice
 * perm[r], perm[r+W], … of `count = floor(n / W)` elements (so the last n mod W elements of the permutation are
 * never used, the same ones every pass, as upstream), and each pass reshuffles its slice with a generator re-seeded
 * with `seed + r + (pass << 24)` using an inside-out Fisher–Yates (upstream `_shuffle_tensor_slice`).
 *
 * Not reproduced: torch's exact permutations. The generator here is `mulberry32`, seeded through `hashSeed` of the
 * full (53-bit) re-seed value, so passes ≥ 256 do not wrap onto earlier ones as a 32-bit `pass << 24` would.
 */
import { hashSeed, mulberry32, shuffleInPlace } from './random.js';

function checkInt(name: string, v: number, min: number): void {
  if (!(Number.isSafeInteger(v) && v >= min)) throw new RangeError(`shardIndices: expected an integer ${name} >= ${min}, got ${v}`);
}

/** The global permutation of 0..n−1 for `seed` (the same on every rank). */
export function globalPermutation(n: number, seed: number): number[] {
  checkInt('n', n, 0);
  if (!Number.isSafeInteger(seed)) throw new RangeError(`globalPermutation: expected an integer seed, got ${seed}`);
  return shuffleInPlace(Array.from({ length: n }, (_, i) => i), mulberry32(hashSeed(seed)));
}

/**
 * The dataset indices rank `rank` of `world` visits in pass `pass` (0, 1, …), in order: floor(n / world) indices.
 * Across ranks, a pass visits each of the first world·floor(n / world) permuted indices exactly once; when world
 * divides n that is every index exactly once.
 * @throws RangeError on a non-integer or out-of-range argument, or when n < world (a rank would get nothing)
 */
export function shardIndices(n: number, rank: number, world: number, seed: number, pass: number): number[] {
  checkInt('n', n, 1);
  checkInt('world', world, 1);
  checkInt('rank', rank, 0);
  checkInt('pass', pass, 0);
  if (!Number.isSafeInteger(seed)) throw new RangeError(`shardIndices: expected an integer seed, got ${seed}`);
  if (rank >= world) throw new RangeError(`shardIndices: rank ${rank} out of range for world size ${world} (0..${world - 1})`);
  if (n < world) throw new RangeError(`shardIndices: ${n} samples cannot be sharded over ${world} ranks (each rank needs at least one)`);
  const perm = globalPermutation(n, seed);
  const count = Math.floor(n / world);
  // seed + start + (iter_count << 24), as upstream's _make_seed, kept exact up to 2^53.
  const rnd = mulberry32(hashSeed(seed + rank + pass * 16777216));
  const out = new Array<number>(count);
  // Inside-out Fisher–Yates over perm[rank::world][:count].
  for (let i = 0; i < count; i++) {
    const j = Math.floor(rnd() * (i + 1));
    out[i] = out[j] as number;
    out[j] = perm[rank + i * world] as number;
  }
  return out;
}
