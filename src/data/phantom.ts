/**
 * Built-in phantom chest radiographs: synthetic, seeded 8-bit grayscale images with the gross anatomy of a
 * PA chest X-ray (body, lungs, heart, mediastinum/spine, clavicles, ribs, diaphragm domes) plus noise, without
 * findings. They are the default data of the demo and of tests; they carry no patient information and need no
 * download. `synth.ts` builds labelled datasets (findings, masks, reports) from the same renderer.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';

import { renderChest, sampleChest, samplePatientAnatomy } from './anatomy.js';
import { writeFileAtomic } from './fsutil.js';
import { hashSeed, mulberry32 } from './random.js';

export { mulberry32 } from './random.js';

export interface PhantomOptions {
  /** Image side in pixels. @default 512 */
  size?: number;
  /** Seed of this image. @default 0 */
  seed?: number;
}

/** Renders one phantom (no findings) as an 8-bit grayscale plane (row-major, size × size). */
export function renderPhantom(opts: PhantomOptions = {}): Uint8Array {
  const n = opts.size ?? 512;
  if (!(Number.isSafeInteger(n) && n > 0)) throw new RangeError(`renderPhantom: expected a positive integer size, got ${n}`);
  const seed = opts.seed ?? 0;
  const rnd = mulberry32(hashSeed(seed, 0x9a47));
  const patient = samplePatientAnatomy(rnd, rnd() < 0.5);
  const chest = sampleChest(patient, rnd, rnd, {});
  return renderChest(chest, n, mulberry32(hashSeed(seed, 0x9a48))).pixels;
}

/** Encodes a row-major 8-bit gray plane as a 1-channel 8-bit gray PNG (without `b-w`, sharp would write 3-channel sRGB). */
export async function encodeGrayPng(plane: Uint8Array, size: number): Promise<Buffer> {
  return sharp(Buffer.from(plane.buffer, plane.byteOffset, plane.byteLength), { raw: { width: size, height: size, channels: 1 } })
    .toColourspace('b-w')
    .png()
    .toBuffer();
}

/** Writes `count` phantom PNGs (8-bit gray) named phantom_000.png … into `dir`; returns their paths. */
export async function writePhantoms(dir: string, count: number, opts: { size?: number; seed?: number } = {}): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const size = opts.size ?? 512;
  const files: string[] = [];
  for (let k = 0; k < count; k++) {
    const file = path.join(dir, `phantom_${String(k).padStart(3, '0')}.png`);
    const plane = renderPhantom({ size, seed: (opts.seed ?? 0) * 100_003 + k });
    await writeFileAtomic(file, await encodeGrayPng(plane, size));
    files.push(file);
  }
  return files;
}
