/**
 * Conversions between 16-bit floats (IEEE binary16 "F16" and bfloat16 "BF16") and float32.
 *
 * Half values travel as raw bit patterns in `Uint16Array`s (little-endian on disk, as in safetensors).
 * Decoding is exact (every F16/BF16 value is representable in float32, subnormals included);
 * encoding rounds to nearest, ties to even, the way PyTorch's `.to(torch.float16/bfloat16)` does.
 * NaN inputs encode to a quiet NaN with the same sign; overflow encodes to ±inf.
 */

// One shared 4-byte scratch buffer to reinterpret float32 <-> uint32 bits.
const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** The raw IEEE-754 bits of `x` rounded to float32. */
export function f32Bits(x: number): number {
  scratchF32[0] = x;
  return scratchU32[0]!;
}

/** The float32 value whose raw IEEE-754 bits are `bits` (a uint32). */
export function f32FromBits(bits: number): number {
  scratchU32[0] = bits >>> 0;
  return scratchF32[0]!;
}

/** Decodes one bfloat16 bit pattern (0..0xffff): bf16 is the top half of a float32. */
export function bf16ToF32(bits: number): number {
  return f32FromBits((bits & 0xffff) << 16);
}

/**
 * Decodes one IEEE binary16 bit pattern (0..0xffff) exactly.
 * Layout: 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits.
 */
export function f16ToF32(bits: number): number {
  const sign = (bits & 0x8000) << 16;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) {
    // Zero or subnormal: mant · 2^-24, exact in float32.
    const v = mant * 2 ** -24;
    return sign ? -v : v;
  }
  if (exp === 0x1f) {
    // Inf (mant 0) or NaN (payload kept in the top mantissa bits).
    return f32FromBits(sign | 0x7f800000 | (mant << 13));
  }
  // Normal: rebias the exponent from 15 to 127 and widen the mantissa.
  return f32FromBits(sign | ((exp - 15 + 127) << 23) | (mant << 13));
}

/** Encodes `x` (rounded to float32 first) as bfloat16 bits, round to nearest even. */
export function f32ToBf16(x: number): number {
  const bits = f32Bits(x);
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0) {
    return ((bits >>> 16) & 0x8000) | 0x7fc0; // quiet NaN
  }
  // Add 0x7fff plus the lowest kept bit, then truncate: ties go to the even bf16.
  const rounded = bits + 0x7fff + ((bits >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

/** Encodes `x` (rounded to float32 first) as IEEE binary16 bits, round to nearest even. */
export function f32ToF16(x: number): number {
  const bits = f32Bits(x);
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;

  if (exp === 0xff) {
    // Inf stays inf; NaN becomes a quiet NaN keeping the top payload bits.
    return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13);
  }
  const e = exp - 127 + 15; // binary16 biased exponent
  if (e >= 0x1f) return sign | 0x7c00; // too large: ±inf
  if (e <= 0) {
    // Result is subnormal (or zero). Values below 2^-25 round to zero (2^-25 itself ties to 0).
    if (e < -10) return sign;
    const m = mant | 0x800000; // implicit leading one, 24 significant bits
    const shift = 14 - e; // from float32 mantissa units to 2^-24 units, 14..24
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1) === 1)) h += 1; // may carry into the smallest normal: correct
    return sign | h;
  }
  let h = sign | (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1)) h += 1; // carry may reach inf: correct
  return h;
}

/** Decodes a whole array of bfloat16 bit patterns to float32. */
export function bf16ArrayToF32(src: Uint16Array): Float32Array {
  // bf16 -> f32 is a 16-bit left shift of the bits: do it on a uint32 view for speed.
  const out = new Float32Array(src.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < src.length; i++) outBits[i] = src[i]! << 16;
  return out;
}

/** Decodes a whole array of binary16 bit patterns to float32. */
export function f16ArrayToF32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f16ToF32(src[i]!);
  return out;
}

/** Encodes float values as bfloat16 bit patterns (round to nearest even). */
export function f32ArrayToBf16(src: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToBf16(src[i]!);
  return out;
}

/** Encodes float values as binary16 bit patterns (round to nearest even). */
export function f32ArrayToF16(src: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToF16(src[i]!);
  return out;
}
