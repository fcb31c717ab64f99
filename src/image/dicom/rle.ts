/**
 * DICOM RLE Lossless decoding (PS3.5 Annex G).
 *
 * A frame is a 64-byte header (16 little-endian uint32: the number of segments, then up to 15 segment offsets
 * from the start of the frame) followed by the segments. Each segment is one byte plane of the composite pixel
 * code: for each sample (R, G, B or the single gray sample), the most significant byte first. Segments are
 * PackBits-coded: a header byte n (signed) followed by n+1 literal bytes when 0 ≤ n ≤ 127, by one byte repeated
 * 1−n times when −127 ≤ n ≤ −1; n = −128 is a no-op.
 */
import { CodecError } from './codecs.js';

/** Decodes one PackBits segment into exactly `size` bytes (extra decoded bytes, e.g. row padding, are dropped). */
export function decodePackBits(src: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let i = 0;
  let o = 0;
  while (i < src.length && o < size) {
    const n = src[i]!;
    i += 1;
    if (n < 128) {
      const count = n + 1;
      if (i + count > src.length) throw new CodecError(`expected ${count} literal bytes in an RLE segment, found ${src.length - i}`);
      const take = Math.min(count, size - o);
      out.set(src.subarray(i, i + take), o);
      o += take;
      i += count;
    } else if (n > 128) {
      const count = 257 - n; // 1 − (n − 256)
      if (i >= src.length) throw new CodecError('expected a byte to repeat in an RLE segment, found the end of the segment');
      out.fill(src[i]!, o, Math.min(size, o + count));
      o += count;
      i += 1;
    }
    // n === 128: no operation
  }
  if (o < size) throw new CodecError(`expected ${size} bytes from an RLE segment, found ${o}`);
  return out;
}

/**
 * Decodes an RLE frame into planar words: `samples` planes of rows·columns values, each value assembled from
 * `bitsAllocated / 8` byte segments (most significant first).
 */
export function decodeRleFrame(
  frame: Uint8Array,
  rows: number,
  columns: number,
  samples: number,
  bitsAllocated: number,
): Uint8Array | Uint16Array | Uint32Array {
  if (bitsAllocated % 8 !== 0 || bitsAllocated > 32) {
    throw new CodecError(`expected Bits Allocated 8, 16 or 32 for RLE Lossless, found ${bitsAllocated}`);
  }
  if (frame.length < 64) throw new CodecError(`expected a 64-byte RLE header, found ${frame.length} bytes`);
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const count = view.getUint32(0, true);
  const bytes = bitsAllocated / 8;
  const expected = samples * bytes;
  if (count !== expected) {
    throw new CodecError(`expected ${expected} RLE segments (${samples} sample(s) × ${bytes} byte(s)), found ${count}`);
  }
  const offsets: number[] = [];
  for (let s = 0; s < count; s++) offsets.push(view.getUint32(4 + 4 * s, true));
  const n = rows * columns;
  const out = bitsAllocated === 8 ? new Uint8Array(n * samples) : bitsAllocated === 16 ? new Uint16Array(n * samples) : new Uint32Array(n * samples);
  for (let s = 0; s < count; s++) {
    const start = offsets[s]!;
    const end = s + 1 < count ? offsets[s + 1]! : frame.length;
    if (start < 64 || end > frame.length || end < start) {
      throw new CodecError(`expected RLE segment ${s + 1} within the ${frame.length}-byte frame, found offsets ${start}..${end}`);
    }
    const plane = decodePackBits(frame.subarray(start, end), n);
    const sample = Math.floor(s / bytes);
    const shift = 8 * (bytes - 1 - (s % bytes));
    const base = sample * n;
    const mul = 2 ** shift; // multiplication, not <<, so that 32-bit values stay positive
    for (let p = 0; p < n; p++) out[base + p] = out[base + p]! + plane[p]! * mul;
  }
  return out;
}
