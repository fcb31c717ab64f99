/**
 * Hugging Face `preprocessor_config.json` (BitImageProcessor, the processor of facebook/dinov2-* and the
 * with-registers family) → {@link PreprocessOptions}.
 *
 * Missing fields take BitImageProcessor's class defaults, so a file means what it means to `transformers`:
 * do_resize true, size {shortest_edge: 224}, resample 3 (bicubic), do_center_crop true, crop_size 224×224,
 * do_rescale true, rescale_factor 1/255, do_normalize true, image_mean/std = OpenAI CLIP's (not ImageNet's).
 * Our own optional fields: `do_grayscale` (PIL `convert('L')` first; default false, as HF converts to RGB),
 * `cxformer_equalize` (OpenCV equalisation; default false) and `cxformer_crop_rounding` ("hf" = floor, the
 * default, as transformers does; "torchvision" = round half to even, the CXformer training/eval transforms).
 * Other keys (image_processor_type, do_convert_rgb, …) are ignored.
 */
import { readFile } from 'node:fs/promises';

import { ImageError } from './errors.js';
import { resolvePreprocessOptions, type PreprocessOptions } from './options.js';
import type { ResampleFilter } from './resize.js';

/** OpenAI CLIP mean, BitImageProcessor's default `image_mean`. */
export const OPENAI_CLIP_MEAN: readonly [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
/** OpenAI CLIP std, BitImageProcessor's default `image_std`. */
export const OPENAI_CLIP_STD: readonly [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

/** PIL resample enum values that we support (others: 1 LANCZOS, 2 BILINEAR, 4 BOX, 5 HAMMING). */
const PIL_RESAMPLE: Readonly<Record<number, ResampleFilter>> = { 0: 'nearest', 3: 'bicubic' };

/**
 * Maps a parsed `preprocessor_config.json` onto {@link PreprocessOptions}.
 *
 * @param json the parsed JSON object
 * @param source a name for error messages (usually the file path)
 * @throws ImageError naming the source and key, what was expected and what was found
 */
export function preprocessorFromHfConfig(json: unknown, source = 'preprocessor_config.json'): PreprocessOptions {
  const fail = (key: string, expected: string, found: unknown): never => {
    throw new ImageError(source, `expected ${expected} for "${key}", found ${JSON.stringify(found)}`);
  };
  if (json === null || typeof json !== 'object' || Array.isArray(json)) fail('(root)', 'a JSON object', json);
  const cfg = json as Record<string, unknown>;
  const has = (k: string): boolean => Object.prototype.hasOwnProperty.call(cfg, k) && cfg[k] !== null && cfg[k] !== undefined;
  const flag = (k: string, dflt: boolean): boolean => {
    if (!has(k)) return dflt;
    const v = cfg[k];
    return typeof v === 'boolean' ? v : fail(k, 'true or false', v);
  };
  const posInt = (k: string, v: unknown): number =>
    typeof v === 'number' && Number.isSafeInteger(v) && v > 0 ? v : fail(k, 'a positive integer', v);

  // size: {shortest_edge} | {height, width} | int (legacy: shortest edge, as get_size_dict(default_to_square=False))
  let resize: PreprocessOptions['resize'] = null;
  if (flag('do_resize', true)) {
    const size = has('size') ? cfg.size : { shortest_edge: 224 };
    if (typeof size === 'number') resize = posInt('size', size);
    else if (size !== null && typeof size === 'object' && !Array.isArray(size)) {
      const s = size as Record<string, unknown>;
      if ('shortest_edge' in s) {
        if ('longest_edge' in s && s.longest_edge !== null) fail('size.longest_edge', 'no longest_edge (unsupported)', s.longest_edge);
        resize = posInt('size.shortest_edge', s.shortest_edge);
      } else if ('height' in s && 'width' in s) {
        resize = [posInt('size.height', s.height), posInt('size.width', s.width)];
      } else fail('size', '{shortest_edge} or {height, width}', size);
    } else fail('size', '{shortest_edge} or {height, width} or an integer', size);
  }

  let resample: ResampleFilter = 'bicubic';
  if (has('resample')) {
    const r = cfg.resample;
    const f = typeof r === 'number' ? PIL_RESAMPLE[r] : undefined;
    resample = f ?? fail('resample', '0 (nearest) or 3 (bicubic)', r);
  }

  let crop: PreprocessOptions['crop'] = null;
  if (flag('do_center_crop', true)) {
    const c = has('crop_size') ? cfg.crop_size : { height: 224, width: 224 };
    if (typeof c === 'number') crop = posInt('crop_size', c);
    else if (c !== null && typeof c === 'object' && !Array.isArray(c) && 'height' in c && 'width' in c) {
      const cs = c as Record<string, unknown>;
      crop = [posInt('crop_size.height', cs.height), posInt('crop_size.width', cs.width)];
    } else fail('crop_size', '{height, width} or an integer', c);
  }

  let rescale = 1;
  if (flag('do_rescale', true)) {
    const r = has('rescale_factor') ? cfg.rescale_factor : 1 / 255;
    rescale = typeof r === 'number' && Number.isFinite(r) && r > 0 ? r : fail('rescale_factor', 'a positive number', r);
  }

  let mean: [number, number, number] = [0, 0, 0];
  let std: [number, number, number] = [1, 1, 1];
  if (flag('do_normalize', true)) {
    mean = channels('image_mean', has('image_mean') ? cfg.image_mean : OPENAI_CLIP_MEAN, false, fail);
    std = channels('image_std', has('image_std') ? cfg.image_std : OPENAI_CLIP_STD, true, fail);
  }

  let cropRounding: PreprocessOptions['cropRounding'] = 'hf';
  if (has('cxformer_crop_rounding')) {
    const r = cfg.cxformer_crop_rounding;
    cropRounding = r === 'hf' || r === 'torchvision' ? r : fail('cxformer_crop_rounding', '"hf" or "torchvision"', r);
  }

  return resolvePreprocessOptions({
    grayscale: flag('do_grayscale', false),
    equalize: flag('cxformer_equalize', false),
    resize,
    resample,
    crop,
    cropRounding,
    mean,
    std,
    rescale,
  });
}

/** A per-channel statistic given as one number, [v] or [r, g, b]. */
function channels(
  key: string,
  v: unknown,
  positive: boolean,
  fail: (key: string, expected: string, found: unknown) => never,
): [number, number, number] {
  const ok = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x) && (!positive || x > 0);
  if (ok(v)) return [v, v, v];
  if (Array.isArray(v) && v.length === 1 && ok(v[0])) return [v[0], v[0], v[0]];
  if (Array.isArray(v) && v.length === 3 && v.every(ok)) return [v[0], v[1], v[2]] as [number, number, number];
  return fail(key, `a ${positive ? 'positive ' : ''}number or a list of 3`, v);
}

/**
 * Reads a `preprocessor_config.json` file and maps it with {@link preprocessorFromHfConfig}.
 *
 * @throws ImageError naming the file if it cannot be read or parsed, or has invalid fields
 */
export async function readHfPreprocessorConfig(path: string): Promise<PreprocessOptions> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new ImageError(path, `expected a readable preprocessor_config.json, found ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ImageError(path, `expected JSON, found invalid JSON (${(e as Error).message})`);
  }
  return preprocessorFromHfConfig(json, path);
}
