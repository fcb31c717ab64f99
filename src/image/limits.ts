/**
 * The pixel limit of every decoder (PNG, JPEG, DICOM): an image whose header claims more than this many pixels
 * (width × height of one frame) is refused before anything is decoded or allocated, so that a corrupt or hostile
 * header cannot exhaust memory. The default is sharp's own (`limitInputPixels`, 0x3FFF × 0x3FFF = 268,402,689
 * pixels, e.g. 16383 × 16383); the largest chest radiographs (~4300 × 4300) are far below it.
 * `CXFORMER_MAX_PIXELS` changes it for a process (0 = no limit); the decoders also take a `maxPixels` option.
 */
import { ImageError } from './errors.js';

/** sharp's default `limitInputPixels`: 0x3FFF × 0x3FFF. */
export const DEFAULT_MAX_PIXELS = 0x3fff * 0x3fff;

/** The environment variable that overrides {@link DEFAULT_MAX_PIXELS}. */
export const MAX_PIXELS_ENV = 'CXFORMER_MAX_PIXELS';

/**
 * The pixel limit to apply: `option` when given, else `$CXFORMER_MAX_PIXELS`, else {@link DEFAULT_MAX_PIXELS}.
 * 0 means no limit.
 *
 * @throws ImageError when the option or the variable is not an integer ≥ 0
 */
export function resolveMaxPixels(option?: number, env: NodeJS.ProcessEnv = process.env): number {
  if (option !== undefined) {
    if (!Number.isSafeInteger(option) || option < 0) {
      throw new ImageError(undefined, `Expected an integer >= 0 (0 = no limit) for the decoder option "maxPixels" but received ${option}`);
    }
    return option;
  }
  const raw = env[MAX_PIXELS_ENV];
  if (raw === undefined || raw.trim() === '') return DEFAULT_MAX_PIXELS;
  const v = Number(raw);
  if (!/^\s*\d+\s*$/.test(raw) || !Number.isSafeInteger(v)) {
    throw new ImageError(undefined, `Expected an integer >= 0 (0 = no limit) for ${MAX_PIXELS_ENV} but received '${raw}'`);
  }
  return v;
}

/**
 * Refuses an image of `width` × `height` pixels above `limit` (0 = no limit). `what` names where the size was
 * read, e.g. 'Columns × Rows'.
 *
 * @throws ImageError naming the file, the size found and the limit
 */
export function checkPixelLimit(path: string | undefined, width: number, height: number, limit: number, what = 'width × height'): void {
  if (limit === 0 || width * height <= limit) return;
  throw new ImageError(
    path,
    `expected at most ${limit} pixels per image (the pixel limit; ${MAX_PIXELS_ENV} changes it, 0 = none), ` +
      `found ${width}×${height} = ${width * height} (${what}); refused before decoding`,
  );
}
