import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { preprocessorFromHfConfig, readHfPreprocessorConfig } from '../../src/image/hf-config.js';

const IMAGENET = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cxf-hf-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('preprocessorFromHfConfig', () => {
  it('maps a facebook/dinov2 BitImageProcessor config', () => {
    const cfg = {
      crop_size: { height: 224, width: 224 },
      do_center_crop: true,
      do_convert_rgb: true,
      do_normalize: true,
      do_rescale: true,
      do_resize: true,
      image_mean: IMAGENET.mean,
      image_processor_type: 'BitImageProcessor',
      image_std: IMAGENET.std,
      resample: 3,
      rescale_factor: 0.00392156862745098,
      size: { shortest_edge: 256 },
    };
    expect(preprocessorFromHfConfig(cfg)).toEqual({
      grayscale: false,
      equalize: false,
      resize: 256,
      resample: 'bicubic',
      crop: [224, 224],
      cropRounding: 'hf',
      mean: IMAGENET.mean,
      std: IMAGENET.std,
      rescale: 0.00392156862745098,
    });
  });

  it('maps a rad-dino-style config with scalar statistics and our CXformer fields', () => {
    const opts = preprocessorFromHfConfig({
      size: { shortest_edge: 518 },
      crop_size: { height: 518, width: 518 },
      image_mean: 0.5307,
      image_std: [0.2583],
      do_grayscale: true,
      cxformer_equalize: true,
      cxformer_crop_rounding: 'torchvision',
    });
    expect(opts).toMatchObject({ grayscale: true, equalize: true, resize: 518, crop: [518, 518], cropRounding: 'torchvision' });
    expect(opts.mean).toEqual([0.5307, 0.5307, 0.5307]);
    expect(opts.std).toEqual([0.2583, 0.2583, 0.2583]);
  });

  it('uses BitImageProcessor defaults for missing fields (CLIP statistics, 224)', () => {
    expect(preprocessorFromHfConfig({})).toEqual({
      grayscale: false,
      equalize: false,
      resize: 224,
      resample: 'bicubic',
      crop: [224, 224],
      cropRounding: 'hf',
      mean: [0.48145466, 0.4578275, 0.40821073],
      std: [0.26862954, 0.26130258, 0.27577711],
      rescale: 1 / 255,
    });
  });

  it('honours the do_* switches, exact sizes, legacy integer sizes and nearest resampling', () => {
    const off = preprocessorFromHfConfig({ do_resize: false, do_center_crop: false, do_rescale: false, do_normalize: false });
    expect(off).toMatchObject({ resize: null, crop: null, rescale: 1, mean: [0, 0, 0], std: [1, 1, 1] });
    const exact = preprocessorFromHfConfig({ size: { height: 300, width: 400 }, crop_size: 256, resample: 0 });
    expect(exact).toMatchObject({ resize: [300, 400], crop: 256, resample: 'nearest' });
    expect(preprocessorFromHfConfig({ size: 384 }).resize).toBe(384);
  });

  it.each([
    [{ resample: 2 }, /cfg\.json: expected 0 \(nearest\) or 3 \(bicubic\) for "resample", found 2/],
    [{ size: { longest_edge: 5 } }, /expected \{shortest_edge\} or \{height, width\} for "size", found \{"longest_edge":5\}/],
    [{ size: { shortest_edge: 224, longest_edge: 300 } }, /for "size\.longest_edge"/],
    [{ size: { shortest_edge: -3 } }, /expected a positive integer for "size\.shortest_edge", found -3/],
    [{ crop_size: { height: 0, width: 5 } }, /expected a positive integer for "crop_size\.height", found 0/],
    [{ image_std: [0.2, 0, 0.2] }, /expected a positive number or a list of 3 for "image_std", found \[0\.2,0,0\.2\]/],
    [{ image_mean: [0.1, 0.2] }, /for "image_mean", found \[0\.1,0\.2\]/],
    [{ do_resize: 'yes' }, /expected true or false for "do_resize", found "yes"/],
    [{ rescale_factor: 0 }, /expected a positive number for "rescale_factor", found 0/],
    [{ cxformer_crop_rounding: 'round' }, /expected "hf" or "torchvision" for "cxformer_crop_rounding", found "round"/],
    [[1, 2], /expected a JSON object for "\(root\)"/],
  ])('rejects %j', (cfg, message) => {
    expect(() => preprocessorFromHfConfig(cfg, 'cfg.json')).toThrow(message);
  });
});

describe('readHfPreprocessorConfig', () => {
  it('reads a file and names it in errors', async () => {
    const good = path.join(dir, 'preprocessor_config.json');
    await writeFile(good, JSON.stringify({ size: { shortest_edge: 518 }, crop_size: { height: 518, width: 518 } }));
    expect(await readHfPreprocessorConfig(good)).toMatchObject({ resize: 518, crop: [518, 518] });

    const bad = path.join(dir, 'bad.json');
    await writeFile(bad, '{"size": ');
    await expect(readHfPreprocessorConfig(bad)).rejects.toThrow(new RegExp(`${bad}: expected JSON, found invalid JSON`));
    const missing = path.join(dir, 'missing.json');
    await expect(readHfPreprocessorConfig(missing)).rejects.toThrow(`${missing}: expected a readable preprocessor_config.json, found no such file`);
    const invalid = path.join(dir, 'invalid.json');
    await writeFile(invalid, JSON.stringify({ resample: 1 }));
    await expect(readHfPreprocessorConfig(invalid)).rejects.toThrow(`${invalid}: expected 0 (nearest) or 3 (bicubic) for "resample", found 1`);
  });
});
