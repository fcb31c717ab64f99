import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  configCliKeys,
  DEFAULT_PRETRAIN_CONFIG,
  loadPretrainConfig,
  pretrainConfigKeys,
  RESUME_SAFE_KEYS,
  sameRunConfig,
  writeResolvedConfig,
} from '../../src/config/pretrain.js';
import { keyComments } from '../../src/config/tree.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cxf-resolved-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('writeResolvedConfig', () => {
  it('writes resolved.yaml that loads back as a file to the same config', async () => {
    const first = await loadPretrainConfig({
      files: ['demo'],
      overrides: ['output=2024', 'optim.adamw_eps=1e-9', 'crops.global_crops_scale=[0.4,1]', 'compute.device=cuda:1', 'data.root=/data/cxr', 'model.layerscale_init=null'],
    });
    const out = path.join(dir, 'run1');
    const file = await writeResolvedConfig(out, first.config, first.derived);
    expect(file).toBe(path.join(out, 'resolved.yaml'));
    const again = await loadPretrainConfig({ files: [file] });
    expect(again.config).toEqual(first.config);
    expect(again.derived).toEqual(first.derived);
    // Every key now comes from the resolved file.
    expect(new Set(Object.values(again.sources))).toEqual(new Set([file]));
    expect(await readdir(out)).toEqual(['resolved.yaml']); // no temporary file left behind
  });

  it('starts with a comment header, records derived values and writes lists in flow style', async () => {
    const { config, derived } = await loadPretrainConfig({ overrides: ['output=runs/x'] });
    const text = await readFile(await writeResolvedConfig(path.join(dir, 'run2'), config, derived), 'utf8');
    const lines = text.split('\n');
    expect(lines[0]).toMatch(/^# cxformer pretraining config, fully resolved/);
    expect(text).toContain('total_iterations=61100');
    expect(text).toContain('max_mask_patches=666');
    expect(text).toContain('# IGNORING LR SCALING RULE');
    expect(text).toMatch(/^ {2}global_crops_scale: \[0\.32, 1\]$/m);
    expect(text).toMatch(/^output: runs\/x$/m);
  });

  it('replaces an existing resolved.yaml', async () => {
    const out = path.join(dir, 'run3');
    const a = await loadPretrainConfig({ overrides: ['output=a'] });
    const b = await loadPretrainConfig({ overrides: ['output=a', 'seed=7'] });
    await writeResolvedConfig(out, a.config);
    await writeResolvedConfig(out, b.config);
    expect((await loadPretrainConfig({ files: [path.join(out, 'resolved.yaml')] })).config.seed).toBe(7);
    expect(await readdir(out)).toEqual(['resolved.yaml']);
  });
});

describe('sameRunConfig', () => {
  it('ignores output, logging, checkpointing and loader speed', async () => {
    const a = await loadPretrainConfig({ overrides: ['output=a'] });
    const b = await loadPretrainConfig({
      overrides: [
        'output=b',
        'log.period_iterations=10',
        'checkpoint.period_iterations=100',
        'checkpoint.keep_last=0',
        'compute.threads=4',
        'compute.device=cuda:1',
        'data.decode_workers=8',
        'data.prefetch_batches=0',
      ],
    });
    expect(sameRunConfig(a.config, a.config)).toEqual([]);
    expect(sameRunConfig(a.config, b.config)).toEqual([]);
  });

  it('lists keys that change what is learnt, in key order', async () => {
    const a = await loadPretrainConfig({ overrides: ['output=a'] });
    const b = await loadPretrainConfig({
      overrides: ['output=a', 'optim.base_lr=1e-3', 'crops.global_crops_scale=[0.4, 1]', 'model.depth=6', 'seed=1', 'compute.precision=fp32', 'data.root=/x'],
    });
    expect(sameRunConfig(a.config, b.config)).toEqual([
      'seed',
      'data.root',
      'model.depth',
      'optim.base_lr',
      'crops.global_crops_scale',
      'compute.precision',
    ]);
  });

  it('names only keys that exist', () => {
    const keys = new Set(pretrainConfigKeys());
    const sections = new Set(pretrainConfigKeys().map((k) => k.split('.')[0]));
    for (const k of RESUME_SAFE_KEYS) expect(keys.has(k) || sections.has(k), k).toBe(true);
  });
});

describe('configCliKeys', () => {
  it('lists every key once, with its default, accepted values and comment', () => {
    const keys = configCliKeys();
    expect(keys.map((k) => k.key)).toEqual(pretrainConfigKeys());
    expect(new Set(keys.map((k) => k.key)).size).toBe(keys.length);
    // 2 top-level + data 11 + model 20 + init 2 + dino 6 + ibot 9 + train 5 + optim 14 + teacher 5 + crops 6 + compute 3 + dist 2 + probe 12 + checkpoint 2 + log 2
    expect(keys.length).toBe(101);
    for (const k of keys) expect(k.help.length, `${k.key} needs a comment in default.yaml`).toBeGreaterThan(10);
    const find = (key: string) => keys.find((k) => k.key === key)!;
    expect(find('output')).toMatchObject({ default: '???', expect: 'a non-empty path string' });
    expect(find('crops.global_crops_size')).toMatchObject({ default: 518, expect: 'an integer >= 1' });
    expect(find('crops.global_crops_size').help).toContain('518');
    expect(find('model.interpolation.offset').default).toBe(0.1);
    expect(find('optim.scaling_rule').expect).toBe('one of none, sqrt_wrt_1024');
  });

  it('reads the comments of another defaults file', async () => {
    const text = await readFile(DEFAULT_PRETRAIN_CONFIG, 'utf8');
    const f = path.join(dir, 'defaults-copy.yaml');
    await writeFile(f, text.replace(/^( {2}# Side of the 2 global crops).*$/m, '$1 (changed)'));
    expect(configCliKeys(f).find((k) => k.key === 'crops.global_crops_size')!.help).toBe('Side of the 2 global crops (changed)');
  });
});

describe('keyComments', () => {
  it('takes the comment above a key or trailing on its line, with nested paths', () => {
    const text = [
      '# file header',
      '',
      '# the a section',
      'a:',
      '  # first',
      '  # continued',
      '  b: 1',
      '  c: [1, 2]   # trailing',
      '  d:',
      '    e: x',
      'f: 2 # top',
    ].join('\n');
    expect(Object.fromEntries(keyComments(text))).toEqual({
      a: 'the a section',
      'a.b': 'first continued',
      'a.c': 'trailing',
      f: 'top',
    });
  });
});
