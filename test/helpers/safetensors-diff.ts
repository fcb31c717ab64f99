/** Comparing two safetensors files in tests (data-parallel ranks, resumed vs uninterrupted runs). */
import { expect } from 'vitest';
import { readSafetensors } from '../../src/io/safetensors.js';

/**
 * Largest absolute difference over the tensors of two safetensors files whose names pass `keep` (default: all);
 * the files must hold the same such names (at least one) with the same sizes.
 */
export async function maxDiff(a: string, b: string, keep: (name: string) => boolean = () => true): Promise<number> {
  const [ta, tb] = await Promise.all([readSafetensors(a), readSafetensors(b)]);
  const keys = [...ta.tensors.keys()].filter(keep).sort();
  expect(keys.length).toBeGreaterThan(0);
  expect([...tb.tensors.keys()].filter(keep).sort()).toEqual(keys);
  let m = 0;
  for (const k of keys) {
    const t = ta.tensors.get(k)!.data as ArrayLike<number | bigint>;
    const u = tb.tensors.get(k)!.data as ArrayLike<number | bigint>;
    expect(u.length, k).toBe(t.length);
    for (let i = 0; i < t.length; i++) m = Math.max(m, Math.abs(Number(t[i]) - Number(u[i])));
  }
  return m;
}
