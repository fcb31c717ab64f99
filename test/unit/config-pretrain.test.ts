import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  COMMAND_LINE,
  DEFAULT_PRETRAIN_CONFIG,
  loadPretrainConfig,
  PRETRAIN_CONFIG_DIR,
  pretrainConfigKeys,
  pretrainPresets,
  resolvePretrainConfig,
  sameRunConfig,
} from '../../src/config/pretrain.js';
import { ConfigError } from '../../src/model/config.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cxf-cfg-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
async function yamlFile(text: string): Promise<string> {
  const f = path.join(dir, `layer-${n++}.yaml`);
  await writeFile(f, text);
  return f;
}

/** The ConfigError message thrown by `fn` (fails the test if nothing or something else is thrown). */
async function errorOf(fn: () => Promise<unknown>): Promise<string> {
  try {
    await fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error('expected a ConfigError');
}

const OUT = 'output=runs/test';

describe('defaults (configs/pretrain/default.yaml)', () => {
  it('hold the CXformer(S) release recipe of docs/recipe.md §1', async () => {
    const { config: c } = await loadPretrainConfig({ overrides: [OUT] });
    expect(c.output).toBe('runs/test');
    expect(c.model.arch).toBe('vit_small');
    expect(c.model.patch_size).toBe(14);
    expect(c.model.num_register_tokens).toBe(4);
    expect(c.model.drop_path_rate).toBe(0);
    expect(c.model.interpolation).toEqual({ offset: 0.1, antialias: false });
    expect(c.init).toEqual({ weights: null, heads: null });
    expect(c.dino).toEqual({
      loss_weight: 1,
      head_n_prototypes: 16384,
      head_hidden_dim: 2048,
      head_bottleneck_dim: 384,
      head_nlayers: 3,
      koleo_loss_weight: 0.1,
    });
    expect(c.ibot).toEqual({
      loss_weight: 1,
      separate_head: true,
      head_n_prototypes: 16384,
      head_hidden_dim: 2048,
      head_bottleneck_dim: 256,
      head_nlayers: 3,
      mask_sample_probability: 0.5,
      mask_ratio_min_max: [0.1, 0.5],
      max_mask_patches: null,
    });
    expect(c.train).toEqual({ batch_size_per_gpu: 64, OFFICIAL_EPOCH_LENGTH: 611, centering: 'centering', center_momentum: 0.9, student_temp: 0.1 });
    expect(c.optim).toEqual({
      epochs: 100,
      base_lr: 0.0003,
      scaling_rule: 'none',
      min_lr: 0.000001,
      warmup_epochs: 10,
      weight_decay: 0,
      weight_decay_end: 0,
      clip_grad: 3,
      layerwise_decay: 1,
      patch_embed_lr_mult: 0.2,
      freeze_last_layer_epochs: 1,
      adamw_betas: [0.9, 0.999],
      adamw_eps: 1e-8,
      accumulate_grad_batches: 1,
    });
    expect(c.teacher).toEqual({
      momentum_teacher: 0.999,
      final_momentum_teacher: 0.999,
      warmup_teacher_temp: 0.04,
      teacher_temp: 0.07,
      warmup_teacher_temp_epochs: 30,
    });
    expect(c.crops).toEqual({
      global_crops_size: 518,
      local_crops_size: 98,
      global_crops_scale: [0.32, 1],
      local_crops_scale: [0.05, 0.32],
      local_crops_number: 8,
      global_affine: true,
    });
    expect(c.data).toMatchObject({ root: null, manifest: null, path_column: 'Path', equalize: true, max_bad_fraction: 0.01, base_size: null });
    expect(c.checkpoint.keep_last).toBe(3);
    expect(c.log).toEqual({ period_iterations: 1, tensorboard: true });
  });

  it('record where each key came from', async () => {
    const { sources } = await loadPretrainConfig({ overrides: [OUT] });
    expect(Object.keys(sources).sort()).toEqual(pretrainConfigKeys().sort());
    expect(sources.output).toBe(COMMAND_LINE);
    expect(sources['crops.global_crops_size']).toBe(DEFAULT_PRETRAIN_CONFIG);
  });

  it('leave output required (???)', async () => {
    const msg = await errorOf(() => loadPretrainConfig());
    expect(msg).toMatch(/^Missing required key output: set it in a config file or on the command line \(e\.g\. output=\.\.\.\)$/);
  });

  it('must list every key, and only known keys', async () => {
    const text = await readFile(DEFAULT_PRETRAIN_CONFIG, 'utf8');
    const lacking = text.replace(/^ {2}student_temp: .*$/m, '');
    expect(lacking).not.toBe(text);
    const f1 = await yamlFile(lacking);
    expect(await errorOf(() => loadPretrainConfig({ defaultsPath: f1, overrides: [OUT] }))).toBe(
      `Defaults file ${f1} must list every key; it lacks train.student_temp`,
    );
    const f2 = await yamlFile(`${text}\nextra_section: 1\n`);
    expect(await errorOf(() => loadPretrainConfig({ defaultsPath: f2, overrides: [OUT] }))).toMatch(/^Unknown key 'extra_section' \(from .*layer-\d+\.yaml\)/);
  });
});

describe('presets', () => {
  it('are the three shipped files', () => {
    expect(pretrainPresets()).toEqual(['cxformer_base', 'cxformer_small', 'demo']);
  });

  it('demo: tiny from-scratch CPU run that needs only output', async () => {
    const { config: c, derived: d } = await loadPretrainConfig({ files: ['demo'], overrides: [OUT] });
    expect(c.init.weights).toBeNull();
    expect(c.compute).toEqual({ device: 'cpu', precision: 'fp32', threads: 0 });
    expect([c.crops.global_crops_size, c.crops.local_crops_size, c.crops.local_crops_number]).toEqual([98, 42, 4]);
    expect(c.train.batch_size_per_gpu).toBe(8);
    expect(c.dino.head_n_prototypes).toBeGreaterThanOrEqual(1024);
    expect(c.dino.head_n_prototypes).toBeLessThanOrEqual(4096);
    expect(c.ibot.separate_head).toBe(false);
    expect(c.checkpoint.period_iterations).toBe(50);
    expect(d.total_iterations).toBe(200); // 8 epochs × 25
    expect(d.warmup_iterations).toBe(25);
    expect(c.probe.enabled).toBe(true);
    expect([d.vit.embed_dim, d.vit.depth, d.vit.num_heads, d.vit.img_size, d.vit.num_register_tokens]).toEqual([192, 4, 3, 98, 4]);
    expect(d.vit.layerscale_init).toBe(1);
    expect([d.global_grid, d.local_grid]).toEqual([7, 3]);
    expect(d.max_mask_patches).toBe(21); // (49 // 14 = 3) · 98 // 14
  });

  it('cxformer_small: the defaults plus a mandatory init.weights', async () => {
    const msg = await errorOf(() => loadPretrainConfig({ files: ['cxformer_small'], overrides: [OUT] }));
    expect(msg).toContain('Missing required key init.weights');
    const def = await loadPretrainConfig({ overrides: [OUT] });
    const s = await loadPretrainConfig({ files: ['cxformer_small'], overrides: [OUT, 'init.weights=weights/dinov2-with-registers-small'] });
    expect(s.config.init.weights).toBe('weights/dinov2-with-registers-small');
    expect(sameRunConfig(def.config, s.config)).toEqual(['init.weights']);
    expect(s.sources['init.weights']).toBe(COMMAND_LINE);
  });

  it('cxformer_base: ViT-B with K = 131072 for both heads', async () => {
    const def = await loadPretrainConfig({ overrides: [OUT] });
    const b = await loadPretrainConfig({ files: ['cxformer_base'], overrides: [OUT, 'init.weights=w.safetensors'] });
    expect(sameRunConfig(def.config, b.config)).toEqual(['model.arch', 'init.weights', 'dino.head_n_prototypes', 'ibot.head_n_prototypes']);
    expect([b.config.dino.head_n_prototypes, b.config.ibot.head_n_prototypes]).toEqual([131072, 131072]);
    expect([b.derived.vit.embed_dim, b.derived.vit.depth, b.derived.vit.num_heads, b.derived.vit.img_size]).toEqual([768, 12, 12, 518]);
    expect(b.sources['model.arch']).toBe(path.join(PRETRAIN_CONFIG_DIR, 'cxformer_base.yaml'));
  });

  it('a preset name and its path load the same config; an unknown name lists the presets', async () => {
    const byName = await loadPretrainConfig({ files: ['demo'], overrides: [OUT] });
    const byPath = await loadPretrainConfig({ files: [path.join(PRETRAIN_CONFIG_DIR, 'demo.yaml')], overrides: [OUT] });
    expect(byName.config).toEqual(byPath.config);
    expect(await errorOf(() => loadPretrainConfig({ files: ['cxformer_tiny'], overrides: [OUT] }))).toBe(
      "Config file 'cxformer_tiny' not found; give a YAML path or a preset name: cxformer_base, cxformer_small, demo",
    );
  });
});

describe('merging', () => {
  it('applies default <- files in order <- overrides, tracking sources', async () => {
    const a = await yamlFile('optim:\n  epochs: 17\n  base_lr: 1.0e-3\ncrops:\n  local_crops_number: 6\n');
    const b = await yamlFile('optim:\n  epochs: 19\n');
    const { config, sources } = await loadPretrainConfig({ files: [a, b], overrides: [OUT, 'optim.base_lr=2e-3'] });
    expect(config.optim.epochs).toBe(19); // b over a
    expect(sources['optim.epochs']).toBe(b);
    expect(config.optim.base_lr).toBe(0.002); // command line over a
    expect(sources['optim.base_lr']).toBe(COMMAND_LINE);
    expect(config.crops.local_crops_number).toBe(6); // only a sets it
    expect(sources['crops.local_crops_number']).toBe(a);
    expect(config.optim.warmup_epochs).toBe(10); // untouched default
    expect(sources['optim.warmup_epochs']).toBe(DEFAULT_PRETRAIN_CONFIG);
    const swapped = await loadPretrainConfig({ files: [b, a], overrides: [OUT] });
    expect(swapped.config.optim.epochs).toBe(17);
  });

  it('treats an empty or comment-only file, or an emptied section, as no change', async () => {
    const empty = await yamlFile('# nothing here\n');
    const emptied = await yamlFile('optim:\n  # epochs: 5\n');
    const def = await loadPretrainConfig({ overrides: [OUT] });
    const withEmpty = await loadPretrainConfig({ files: [empty, emptied], overrides: [OUT] });
    expect(withEmpty.config).toEqual(def.config);
    expect(await errorOf(() => loadPretrainConfig({ overrides: [OUT, 'optim=null'] }))).toMatch(/^Expected a mapping of keys \(epochs, base_lr, .*\) for optim \(from command line\) but received null$/);
  });

  it('replaces lists as a whole', async () => {
    const a = await yamlFile('crops:\n  global_crops_scale: [0.5, 0.9]\n');
    const { config } = await loadPretrainConfig({ files: [a], overrides: [OUT] });
    expect(config.crops.global_crops_scale).toEqual([0.5, 0.9]);
  });
});

describe('overrides', () => {
  const load = (...o: string[]) => loadPretrainConfig({ overrides: [OUT, ...o] });

  it('parse nested keys, lists, booleans, null and exponent numbers', async () => {
    const f = await yamlFile('data:\n  base_size: 256\n  root: /data/cxr\n');
    const { config: c, sources } = await loadPretrainConfig({
      files: [f],
      overrides: [
        OUT,
        'crops.global_crops_scale=[0.4,1]',
        'crops.global_affine=false',
        'data.base_size=null',
        'data.root=~',
        'optim.adamw_eps=1e-7',
        'model.interpolation.antialias=true',
        'model.layerscale_init=null',
        'train.centering=sinkhorn_knopp',
      ],
    });
    expect(c.crops.global_crops_scale).toEqual([0.4, 1]);
    expect(c.crops.global_affine).toBe(false);
    expect(c.data.base_size).toBeNull();
    expect(c.data.root).toBeNull();
    expect(sources['data.base_size']).toBe(COMMAND_LINE);
    expect(c.optim.adamw_eps).toBe(1e-7);
    expect(c.model.interpolation).toEqual({ offset: 0.1, antialias: true });
    expect(c.model.layerscale_init).toBeNull();
    expect(c.train.centering).toBe('sinkhorn_knopp');
  });

  it('keep the text of string keys that YAML would read as numbers or booleans', async () => {
    const { config } = await loadPretrainConfig({ overrides: ['output=2024', 'data.path_column=true', 'init.weights=0x10'] });
    expect(config.output).toBe('2024');
    expect(config.data.path_column).toBe('true');
    expect(config.init.weights).toBe('0x10');
  });

  it('accept a flow mapping for a section, merged key by key', async () => {
    const { config } = await load('crops={local_crops_number: 2, local_crops_size: 56}');
    expect(config.crops.local_crops_number).toBe(2);
    expect(config.crops.local_crops_size).toBe(56);
    expect(config.crops.global_crops_size).toBe(518);
  });

  it('refuse malformed ones', async () => {
    expect(await errorOf(() => load('optim.epochs'))).toBe("Override 'optim.epochs' (from command line): expected key=value, e.g. optim.epochs=10");
    expect(await errorOf(() => load('optim.epochs='))).toBe(
      "Override 'optim.epochs=' (from command line): missing value after '=' (write optim.epochs=null for null)",
    );
    expect(await errorOf(() => load('seed.x=1'))).toBe("Override 'seed.x=1' (from command line): seed is a value, not a section");
  });
});

describe('errors', () => {
  it('name an unknown top-level key, its file and the valid keys', async () => {
    const f = await yamlFile('epochs: 10\n');
    const msg = await errorOf(() => loadPretrainConfig({ files: [f], overrides: [OUT] }));
    expect(msg).toBe(
      `Unknown key 'epochs' (from ${f}). Valid keys at the top level: ` +
        'output, seed, data, model, init, dino, ibot, train, optim, teacher, crops, compute, dist, probe, checkpoint, log',
    );
  });

  it('name an unknown nested key with a suggestion and the valid keys of its section', async () => {
    const f = await yamlFile('crops:\n  global_crop_size: 224\n');
    const msg = await errorOf(() => loadPretrainConfig({ files: [f], overrides: [OUT] }));
    expect(msg).toBe(
      `Unknown key 'crops.global_crop_size' (from ${f}). Did you mean 'crops.global_crops_size'? Valid keys under 'crops': ` +
        'global_crops_size, local_crops_size, global_crops_scale, local_crops_scale, local_crops_number, global_affine',
    );
  });

  it('name unknown keys on the command line, at any depth', async () => {
    const msg = await errorOf(() => loadPretrainConfig({ overrides: [OUT, 'model.interpolation.mode=bicubic'] }));
    expect(msg).toBe("Unknown key 'model.interpolation.mode' (from command line). Valid keys under 'model.interpolation': offset, antialias");
    const top = await errorOf(() => loadPretrainConfig({ overrides: [OUT, 'lr=1'] }));
    expect(top).toMatch(/^Unknown key 'lr' \(from command line\)\. Valid keys at the top level: output, seed, /);
  });

  it('report wrong types with the key, source and value', async () => {
    const f = await yamlFile('train:\n  batch_size_per_gpu: big\n');
    expect(await errorOf(() => loadPretrainConfig({ files: [f], overrides: [OUT] }))).toBe(
      `Expected an integer >= 1 for train.batch_size_per_gpu (from ${f}) but received "big"`,
    );
    expect(await errorOf(() => loadPretrainConfig({ overrides: [OUT, 'crops.global_affine=yes'] }))).toBe(
      'Expected a boolean (true or false) for crops.global_affine (from command line) but received "yes"',
    );
    expect(await errorOf(() => loadPretrainConfig({ overrides: [OUT, 'seed=null'] }))).toBe(
      'Expected an integer in [0, 4294967295] for seed (from command line) but received null',
    );
    expect(await errorOf(() => loadPretrainConfig({ overrides: [OUT, 'optim.epochs=2.5'] }))).toBe(
      'Expected an integer >= 1 for optim.epochs (from command line) but received 2.5',
    );
    expect(await errorOf(() => loadPretrainConfig({ overrides: [OUT, 'crops=3'] }))).toBe(
      'Expected a mapping of keys (global_crops_size, local_crops_size, global_crops_scale, local_crops_scale, local_crops_number, global_affine) for crops (from command line) but received 3',
    );
    expect(await errorOf(() => loadPretrainConfig({ overrides: [OUT, 'model.depth=deep'] }))).toBe(
      'Expected an integer >= 1 or null for model.depth (from command line) but received "deep"',
    );
  });

  it('report out-of-range values and bad choices', async () => {
    const cases: [string, string][] = [
      ['optim.layerwise_decay=1.5', 'Expected a number in (0, 1] for optim.layerwise_decay (from command line) but received 1.5'],
      ['optim.layerwise_decay=0', 'Expected a number in (0, 1] for optim.layerwise_decay (from command line) but received 0'],
      ['train.centering=sk', 'Expected one of centering, sinkhorn_knopp for train.centering (from command line) but received "sk"'],
      ['crops.global_crops_scale=[1, 0.4]', 'Expected a list [min, max] with 0 < min <= max <= 1 for crops.global_crops_scale (from command line) but received [1, 0.4]'],
      ['crops.local_crops_scale=[0.05]', 'Expected a list [min, max] with 0 < min <= max <= 1 for crops.local_crops_scale (from command line) but received [0.05]'],
      ['data.max_bad_fraction=-0.1', 'Expected a number in [0, 1] for data.max_bad_fraction (from command line) but received -0.1'],
      ['model.drop_path_rate=1', 'Expected a number in [0, 1) for model.drop_path_rate (from command line) but received 1'],
      ['compute.device=gpu', 'Expected cpu, cuda or cuda:N for compute.device (from command line) but received "gpu"'],
      ['model.arch=vit_huge', 'Expected one of vit_small, vit_base, vit_large, vit_giant2 for model.arch (from command line) but received "vit_huge"'],
      ['dino.head_n_prototypes=0', 'Expected an integer in [1, 1048576] for dino.head_n_prototypes (from command line) but received 0'],
      ['teacher.teacher_temp=0', 'Expected a number > 0 for teacher.teacher_temp (from command line) but received 0'],
      ['optim.adamw_betas=[0.9, 1]', 'Expected a list [beta1, beta2] of numbers in [0, 1) for optim.adamw_betas (from command line) but received [0.9, 1]'],
    ];
    for (const [o, expected] of cases) expect(await errorOf(() => loadPretrainConfig({ overrides: [OUT, o] }))).toBe(expected);
  });

  it('accept the edges of each range', async () => {
    const { config } = await loadPretrainConfig({
      overrides: [OUT, 'optim.layerwise_decay=1', 'data.max_bad_fraction=0', 'crops.global_crops_scale=[1, 1]', 'compute.device=cuda:3', 'optim.warmup_epochs=100'],
    });
    expect(config.compute.device).toBe('cuda:3');
    expect(config.optim.warmup_epochs).toBe(100);
  });

  it('report every problem at once, missing output included', async () => {
    const msg = await errorOf(() => loadPretrainConfig({ overrides: ['seed=-1', 'nope=1', 'train.student_temp=0'] }));
    const lines = msg.split('\n');
    expect(lines[0]).toBe('4 problems in the pretraining config:');
    expect(lines.slice(1).map((l) => l.replace(/^ {2}- /, '').slice(0, 40))).toEqual([
      "Unknown key 'nope' (from command line). ",
      'Expected an integer in [0, 4294967295] f',
      'Expected a number > 0 for train.student_',
      'Missing required key output: set it in a',
    ]);
  });

  it('check rules across keys: crops vs patch size, warm-up vs epochs, iBOT vs mask token', async () => {
    expect(await errorOf(() => loadPretrainConfig({ overrides: [OUT, 'crops.global_crops_size=500'] }))).toBe(
      'Expected a multiple of model.patch_size 14 for crops.global_crops_size but received 500 (nearest: 490 or 504)',
    );
    expect(await errorOf(() => loadPretrainConfig({ overrides: [OUT, 'model.patch_size=16'] }))).toMatch(
      /^2 problems in the pretraining config:\n {2}- Expected a multiple of model\.patch_size 16 for crops\.global_crops_size but received 518/,
    );
    expect(await errorOf(() => loadPretrainConfig({ overrides: [OUT, 'optim.warmup_epochs=101'] }))).toBe(
      'Expected optim.warmup_epochs <= optim.epochs (100) but received 101',
    );
    expect(await errorOf(() => loadPretrainConfig({ overrides: [OUT, 'model.use_mask_token=false'] }))).toMatch(/^model\.use_mask_token must be true while ibot\.loss_weight > 0/);
    const noIbot = await loadPretrainConfig({ overrides: [OUT, 'model.use_mask_token=false', 'ibot.loss_weight=0'] });
    expect(noIbot.config.model.use_mask_token).toBe(false);
    expect(await errorOf(() => loadPretrainConfig({ overrides: [OUT, 'model.embed_dim=100'] }))).toContain('model.embed_dim 100 is not divisible by model.num_heads 6');
  });

  it('report unparseable YAML and non-mapping files with the file name', async () => {
    const bad = await yamlFile('optim: [\n');
    expect(await errorOf(() => loadPretrainConfig({ files: [bad], overrides: [OUT] }))).toMatch(new RegExp(`^Cannot parse ${bad.replace(/[.\\]/g, '\\$&')} as YAML`));
    const list = await yamlFile('- 1\n- 2\n');
    expect(await errorOf(() => loadPretrainConfig({ files: [list], overrides: [OUT] }))).toBe(`Expected a mapping of keys at the top level of ${list} but received [1, 2]`);
  });
});

describe('resolvePretrainConfig (no file system)', () => {
  it('merges texts with the given source names', async () => {
    const defaults = { source: 'defaults.yaml', text: await readFile(DEFAULT_PRETRAIN_CONFIG, 'utf8') };
    const r = resolvePretrainConfig(defaults, [{ source: 'mine.yaml', text: 'seed: 5\n' }], [OUT]);
    expect(r.config.seed).toBe(5);
    expect(r.sources.seed).toBe('mine.yaml');
    expect(r.sources['optim.epochs']).toBe('defaults.yaml');
    expect(() => resolvePretrainConfig(defaults, [{ source: 'mine.yaml', text: 'seed: x\n' }], [OUT])).toThrow(
      'Expected an integer in [0, 4294967295] for seed (from mine.yaml) but received "x"',
    );
  });
});
