/**
 * Small image fixtures written with sharp into a temporary folder (lossless PNGs, plus JPEGs).
 */
import sharp from 'sharp';

/** Writes a gray 8-bit PNG from row-major samples. */
export async function writeGray8Png(path: string, width: number, height: number, data: ArrayLike<number>): Promise<void> {
  await sharp(Buffer.from(Uint8Array.from(data)), { raw: { width, height, channels: 1 } })
    .toColourspace('b-w')
    .png()
    .toFile(path);
}

/** Writes a gray 16-bit PNG from row-major samples. */
export async function writeGray16Png(path: string, width: number, height: number, data: ArrayLike<number>): Promise<void> {
  await sharp(Uint16Array.from(data), { raw: { width, height, channels: 1 } })
    .toColourspace('grey16')
    .png()
    .toFile(path);
}

/** Writes an 8-bit PNG with 2 (gray + alpha), 3 (RGB) or 4 (RGBA) interleaved channels. */
export async function writeColorPng(
  path: string,
  width: number,
  height: number,
  channels: 2 | 3 | 4,
  data: ArrayLike<number>,
  palette = false,
): Promise<void> {
  let img = sharp(Buffer.from(Uint8Array.from(data)), { raw: { width, height, channels } });
  if (channels === 2) img = img.toColourspace('b-w');
  await img.png(palette ? { palette: true, colours: 256, dither: 0 } : {}).toFile(path);
}

/** Writes a 16-bit RGB PNG from interleaved samples. */
export async function writeRgb16Png(path: string, width: number, height: number, data: ArrayLike<number>): Promise<void> {
  await sharp(Uint16Array.from(data), { raw: { width, height, channels: 3 } })
    .toColourspace('rgb16')
    .png()
    .toFile(path);
}

/** Writes a JPEG (quality 100) from 1- or 3-channel interleaved samples. */
export async function writeJpeg(path: string, width: number, height: number, channels: 1 | 3, data: ArrayLike<number>): Promise<void> {
  let img = sharp(Buffer.from(Uint8Array.from(data)), { raw: { width, height, channels } });
  if (channels === 1) img = img.toColourspace('b-w');
  await img.jpeg({ quality: 100, chromaSubsampling: '4:4:4' }).toFile(path);
}
