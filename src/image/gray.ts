/**
 * Gray conversion and bit-depth reduction, matching PIL for 8-bit data.
 *
 * Planes are single-channel, row-major (`plane[y * width + x]`).
 *
 * 16-bit rule (our choice; PIL itself clips I;16 → L at 255, which is useless for radiographs):
 * - RGB → gray is computed at the source depth with the same integer formula as 8-bit, then reduced once;
 * - 16 → 8 bits is `round(v / 257)`, i.e. round(v · 255 / 65535): the exact inverse of the usual 8 → 16
 *   expansion `v · 257`, so 0 → 0, 65535 → 255 and an 8-bit image stored as 16-bit comes back unchanged.
 *   (No ties occur: v / 257 is never k + 0.5 for an integer v.)
 */
import type { DecodedImage } from './decode.js';

/**
 * ITU-R 601-2 luma exactly as PIL's `convert('L')`: `L = (R·19595 + G·38470 + B·7471 + 0x8000) >> 16`
 * (weights 0.299, 0.587, 0.114 in 16-bit fixed point, rounded). Works on 8- or 16-bit samples.
 *
 * @param rgb interleaved RGB samples, HWC order, length 3·n
 * @returns the gray plane, length n, same sample type as the input
 */
export function rgbToGray<T extends Uint8Array | Uint16Array>(rgb: T): T {
  if (rgb.length % 3 !== 0) {
    throw new RangeError(`rgbToGray: expected interleaved RGB data (length a multiple of 3), found length ${rgb.length}`);
  }
  const n = rgb.length / 3;
  const out = (rgb instanceof Uint16Array ? new Uint16Array(n) : new Uint8Array(n)) as T;
  for (let i = 0, j = 0; i < n; i++, j += 3) {
    const s = rgb[j]! * 19595 + rgb[j + 1]! * 38470 + rgb[j + 2]! * 7471 + 0x8000;
    // s < 2^32 even for 16-bit input, so the division is exact in a double.
    out[i] = Math.floor(s / 65536);
  }
  return out;
}

/** Reduces 16-bit samples to 8 bits with `round(v / 257)` (see the module comment). */
export function to8Bit(samples: Uint16Array): Uint8Array {
  const out = new Uint8Array(samples.length);
  for (let i = 0; i < samples.length; i++) out[i] = Math.round(samples[i]! / 257);
  return out;
}

/** Splits interleaved HWC samples into `channels` planes. */
export function splitChannels<T extends Uint8Array | Uint16Array>(data: T, channels: number): T[] {
  const n = data.length / channels;
  const planes: T[] = [];
  for (let c = 0; c < channels; c++) {
    const p = (data instanceof Uint16Array ? new Uint16Array(n) : new Uint8Array(n)) as T;
    for (let i = 0; i < n; i++) p[i] = data[i * channels + c]!;
    planes.push(p);
  }
  return planes;
}

/** The 8-bit gray plane of a decoded image, like PIL's `convert('L')` (16-bit: gray first, then reduce). */
export function grayPlane8(img: DecodedImage): Uint8Array {
  const gray = img.channels === 3 ? rgbToGray(img.data) : img.data;
  return gray instanceof Uint16Array ? to8Bit(gray) : Uint8Array.from(gray);
}

/** The three 8-bit R, G, B planes of a decoded image, like PIL's `convert('RGB')` (gray is replicated). */
export function rgbPlanes8(img: DecodedImage): [Uint8Array, Uint8Array, Uint8Array] {
  const to8 = (p: Uint8Array | Uint16Array): Uint8Array => (p instanceof Uint16Array ? to8Bit(p) : p);
  if (img.channels === 1) {
    const g = img.data instanceof Uint16Array ? to8Bit(img.data) : Uint8Array.from(img.data);
    return [g, Uint8Array.from(g), Uint8Array.from(g)];
  }
  const [r, g, b] = splitChannels(img.data, 3);
  return [to8(r!), to8(g!), to8(b!)];
}
