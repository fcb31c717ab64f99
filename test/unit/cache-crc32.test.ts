import { crc32 as zlibCrc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';

import { crc32 } from '../../src/cache/crc32.js';

/** Deterministic bytes (xorshift32). */
function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0 || 1;
  for (let k = 0; k < n; k++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[k] = s & 0xff;
  }
  return out;
}

describe('crc32 (IEEE)', () => {
  it('matches the published check values', () => {
    const ascii = (s: string) => new TextEncoder().encode(s);
    expect(crc32(ascii('123456789'))).toBe(0xcbf43926);
    expect(crc32(new Uint8Array(0))).toBe(0);
    expect(crc32(ascii('The quick brown fox jumps over the lazy dog'))).toBe(0x414fa339);
    expect(crc32(new Uint8Array(32))).toBe(0x190a55ad); // 32 zero bytes
    expect(crc32(new Uint8Array(32).fill(0xff))).toBe(0xff6cab0b); // 32 0xff bytes
  });

  it('agrees with zlib for every length 0..70 (the 8-byte loop and the tail) and large buffers', () => {
    for (let n = 0; n <= 70; n++) {
      const b = bytes(n, n + 1);
      expect(crc32(b), `length ${n}`).toBe(zlibCrc32(b));
    }
    const big = bytes(1_000_003, 7);
    expect(crc32(big)).toBe(zlibCrc32(big));
    // a view at an odd offset of a larger buffer
    const view = big.subarray(13, 13 + 4099);
    expect(crc32(view)).toBe(zlibCrc32(view));
  });

  it('continues a running CRC', () => {
    const b = bytes(10_000, 3);
    for (const cut of [0, 1, 7, 8, 4095, 9999, 10_000]) {
      expect(crc32(b.subarray(cut), crc32(b.subarray(0, cut)))).toBe(crc32(b));
    }
  });

  it('changes when a single bit flips', () => {
    const b = bytes(4096, 11);
    const ref = crc32(b);
    for (const pos of [0, 1, 2047, 4095]) {
      const c = b.slice();
      c[pos]! ^= 0x10;
      expect(crc32(c)).not.toBe(ref);
    }
  });
});
