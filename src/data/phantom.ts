/**
 * Built-in phantom chest radiographs: synthetic, seeded 8-bit grayscale images with the gross anatomy of a
 * PA chest X-ray (body, lungs, heart, mediastinum/spine, clavicles, ribs, diaphragm) plus noise. They are the
 * default data of the demo and of tests; they carry no patient information and need no download.
 */
import { mkdir, rename } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';

/** mulberry32: small, fast, seedable PRNG returning floats in [0, 1). */
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

export interface PhantomOptions {
  /** Image side in pixels. @default 512 */
  size?: number;
  /** Seed of this image. @default 0 */
  seed?: number;
}

/** Renders one phantom as an 8-bit grayscale plane (row-major, size × size). */
export function renderPhantom(opts: PhantomOptions = {}): Uint8Array {
  const n = opts.size ?? 512;
  const rnd = mulberry32(opts.seed ?? 0);
  const jit = (s: number) => (rnd() - 0.5) * 2 * s;
  const img = new Float32Array(n * n).fill(12);
  const cx = 0.5 + jit(0.02);
  const lungTop = 0.18 + jit(0.03);
  const lungBottom = 0.78 + jit(0.04);
  const lungW = 0.2 + jit(0.02);
  const heartR = 0.12 + jit(0.02);
  const inEllipse = (x: number, y: number, ex: number, ey: number, rx: number, ry: number) =>
    ((x - ex) / rx) ** 2 + ((y - ey) / ry) ** 2;
  for (let j = 0; j < n; j++) {
    const y = j / n;
    for (let i = 0; i < n; i++) {
      const x = i / n;
      let v = 12;
      // Body (soft tissue), shoulders widening towards the top.
      const body = inEllipse(x, y, cx, 0.62, 0.44, 0.62);
      if (body < 1) v = 105 + 30 * (1 - body);
      // Lungs: dark ellipses either side of the mediastinum.
      const ly = (lungTop + lungBottom) / 2;
      const lry = (lungBottom - lungTop) / 2;
      for (const side of [-1, 1]) {
        const l = inEllipse(x, y, cx + side * (lungW * 0.95), ly, lungW * 0.85, lry);
        if (l < 1) v = Math.min(v, 38 + 40 * l);
      }
      // Ribs: bright arcs across the lung fields.
      if (y > lungTop && y < lungBottom) {
        const ribPhase = (y - lungTop) * 11 + 0.8 * Math.abs(x - cx) ** 1.5 * 10;
        const rib = Math.exp(-(((ribPhase % 1) - 0.5) ** 2) / 0.01);
        if (body < 1 && Math.abs(x - cx) > 0.06 && Math.abs(x - cx) < 0.42) v += 32 * rib;
      }
      // Spine and mediastinum.
      if (Math.abs(x - cx) < 0.045 && y > 0.1) v = Math.max(v, 150 + 20 * Math.cos(y * 90));
      // Heart: bright, left of the patient = right of the image.
      const h = inEllipse(x, y, cx + 0.05, lungBottom - heartR * 0.9, heartR * 1.25, heartR);
      if (h < 1) v = Math.max(v, 160 - 25 * h);
      // Diaphragm domes.
      if (y > lungBottom - 0.03 && body < 1) v = Math.max(v, 150);
      // Clavicles.
      for (const side of [-1, 1]) {
        const t = (x - cx) * side;
        if (t > 0.03 && t < 0.3 && Math.abs(y - (lungTop - 0.02 + 0.25 * t * t)) < 0.012) v = Math.max(v, 185);
      }
      img[j * n + i] = v;
    }
  }
  const out = new Uint8Array(n * n);
  for (let k = 0; k < n * n; k++) {
    // Gaussian-ish noise from the sum of two uniforms.
    const noise = (rnd() + rnd() - 1) * 10;
    out[k] = Math.max(0, Math.min(255, Math.round((img[k] ?? 0) + noise)));
  }
  return out;
}

/** Writes `count` phantom PNGs (8-bit gray) named phantom_000.png … into `dir`; returns their paths. */
export async function writePhantoms(dir: string, count: number, opts: { size?: number; seed?: number } = {}): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const size = opts.size ?? 512;
  const files: string[] = [];
  for (let k = 0; k < count; k++) {
    const file = path.join(dir, `phantom_${String(k).padStart(3, '0')}.png`);
    const tmp = `${file}.tmp-${process.pid}.png`;
    const plane = renderPhantom({ size, seed: (opts.seed ?? 0) * 100_003 + k });
    await sharp(Buffer.from(plane.buffer, plane.byteOffset, plane.byteLength), { raw: { width: size, height: size, channels: 1 } })
      .png()
      .toFile(tmp);
    await rename(tmp, file);
    files.push(file);
  }
  return files;
}
