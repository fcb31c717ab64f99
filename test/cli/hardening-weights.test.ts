/**
 * Issue #13, weights: every malformed or hostile weight file and architecture gets a clear error from one validator
 * shared by `info` and `embed` (names the file and key, says what was expected and found), exit code 2, and never
 * an allocation, a native panic or a silent success. Each test builds its bad input from the golden tiny model.
 */
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writePhantoms } from '../../src/data/phantom.js';
import { readSafetensors, writeSafetensors, type TensorToWrite } from '../../src/io/safetensors.js';
import { goldenFile, repoRoot } from '../unit/golden.js';

const MAIN = path.join(repoRoot, 'dist', 'cli', 'main.js');
const PROBE = path.join(repoRoot, 'test', 'helpers', 'libtorch-probe.cjs');
const TINY = path.dirname(goldenFile('vit_tiny_hf/config.json'));
let tmp: string;
let image: string;
let golden: Record<string, TensorToWrite>;
let goldenConfig: Record<string, unknown>;

function cli(args: string[]) {
  const r = spawnSync(process.execPath, ['--require', PROBE, MAIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, CXFORMER_THREADS: '1' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, libtorch: /libtorch_loaded=true/.test(r.stderr) };
}

/** A model folder: the golden tensors with `edit` applied, and its config.json with `cfg` merged. */
async function folder(tag: string, edit: (t: Record<string, TensorToWrite>) => void = () => {}, cfg: Record<string, unknown> = {}) {
  const dir = path.join(tmp, tag);
  await mkdir(dir, { recursive: true });
  const t = structuredClone(golden);
  edit(t);
  await writeSafetensors(path.join(dir, 'model.safetensors'), t);
  await writeFile(path.join(dir, 'config.json'), JSON.stringify({ ...goldenConfig, ...cfg }));
  return dir;
}

/** A bare .safetensors file with a hand-written header (for what the writer cannot produce). */
async function rawFile(tag: string, header: string, dataBytes: number): Promise<string> {
  const p = path.join(tmp, `${tag}.safetensors`);
  const h = Buffer.from(header, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  await writeFile(p, Buffer.concat([len, h, Buffer.alloc(dataBytes)]));
  return p;
}

/** `info` and `embed` on the same input: both refuse with the same first line, exit 2, without LibTorch. */
function bothRefuse(weights: string, ...patterns: RegExp[]) {
  const info = cli(['info', weights]);
  const embed = cli(['embed', '--weights', weights, image, '--out', path.join(tmp, 'never.safetensors')]);
  for (const [what, r] of [['info', info], ['embed', embed]] as const) {
    expect(r.code, `${what}: ${r.stderr}`).toBe(2);
    for (const p of patterns) expect(r.stderr, what).toMatch(p);
    expect(r.stderr, what).not.toMatch(/\n\s+at |panicked|unwrap|backtrace/);
    expect(r.libtorch, `${what} must fail before loading LibTorch`).toBe(false);
  }
  expect(info.stderr.split('\n')[0]!.replace(/^cxformer info: /, '')).toBe(embed.stderr.split('\n')[0]!.replace(/^cxformer embed: /, ''));
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-hw-'));
  [image] = (await writePhantoms(path.join(tmp, 'img'), 1, { size: 64 })) as [string];
  const st = await readSafetensors(path.join(TINY, 'model.safetensors'));
  golden = Object.fromEntries([...st.tensors].map(([k, v]) => [k, { dtype: v.dtype, shape: v.shape, data: v.data } as TensorToWrite]));
  goldenConfig = JSON.parse(await readFile(path.join(TINY, 'config.json'), 'utf8')) as Record<string, unknown>;
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('architecture values are bounded before anything is allocated', () => {
  it.each([
    ['num_hidden_layers', 1e6, /model\.depth must be an integer in \[1, 512\], got 1000000/],
    ['image_size', 140000, /model\.img_size must be an integer in \[1, 16384\], got 140000/],
    ['num_register_tokens', 1e9, /model\.num_register_tokens must be an integer in \[0, 1024\], got 1000000000/],
    ['mlp_ratio', 1e9, /model\.mlp_ratio must be a number in \(0, 64\]/],
    ['layer_norm_eps', 1e300, /model\.layer_norm_eps must be a number in \(0, 0\.1\], got 1e\+300/],
    ['hidden_size', '96', /"hidden_size" must be a number, found "96"/],
  ])('config.json %s = %s', async (key, value, message) => {
    const dir = await folder(`cfg-${key}`, () => {}, { [key]: value });
    bothRefuse(dir, message, /config\.json/);
  });

  it('cxformer metadata claiming img_size 1e7', async () => {
    const st = await readSafetensors(path.join(TINY, 'model.safetensors'));
    const cfg = { ...JSON.parse(cli(['info', TINY, '--json']).stdout).config, img_size: 1e7 };
    const p = path.join(tmp, 'meta.safetensors');
    await writeSafetensors(p, Object.fromEntries([...st.tensors].map(([k, v]) => [k, v as TensorToWrite])), { cxformer_config: JSON.stringify(cfg) });
    bothRefuse(p, /meta\.safetensors metadata cxformer_config: model\.img_size must be an integer in \[1, 16384\], got 10000000/);
  });

  it('an in-bounds architecture that the tensors contradict: info checks it as embed does', async () => {
    // Before: info printed the config.json architecture without looking at the tensors.
    const dir = await folder('cfg-depth4', () => {}, { num_hidden_layers: 4 });
    bothRefuse(dir, /model\.safetensors: weights do not match the model architecture/, /missing \(\d+\): encoder\.layer\.3\./);
    const wide = await folder('cfg-wide', () => {}, { hidden_size: 192, num_attention_heads: 3 });
    bothRefuse(wide, /shape mismatch/, /embeddings\.cls_token \(file \[1, 1, 96\], model \[1, 1, 192\]\)/);
  });
});

describe('every tensor shape is checked, named in the error', () => {
  it('a query bias of shape [1, 96]', async () => {
    const dir = await folder('qbias', (t) => {
      const q = t['encoder.layer.0.attention.attention.query.bias']!;
      t['encoder.layer.0.attention.attention.query.bias'] = { ...q, shape: [1, 96] };
    });
    bothRefuse(dir, /shape mismatch \(1\): encoder\.layer\.0\.attention\.attention\.query\.bias \(file \[1, 96\], model \[96\]\)/);
  });

  it('a missing key, an unexpected key and an integer tensor', async () => {
    const dir = await folder('keys', (t) => {
      delete t['layernorm.bias'];
      t['encoder.layer.0.extra'] = { dtype: 'F32', shape: [2], data: new Float32Array(2) };
    });
    bothRefuse(dir, /missing \(1\): layernorm\.bias/, /unexpected \(1\): encoder\.layer\.0\.extra/);
    const ints = await folder('ints', (t) => {
      t['layernorm.bias'] = { dtype: 'I32', shape: [96], data: new Int32Array(96) };
    });
    bothRefuse(ints, /tensor 'layernorm\.bias' has dtype I32; expected a floating-point dtype/);
  });
});

describe('one header validator for info and embed', () => {
  const entry = '{"dtype":"F32","shape":[1],"data_offsets":[0,4]}';
  it('duplicate tensor names', async () => {
    const p = await rawFile('dup', `{"a":${entry},"a":${entry}}`, 4);
    bothRefuse(p, /dup\.safetensors: expected each key once in the header, found "a" more than once/);
  });
  it('duplicate fields in one entry', async () => {
    const p = await rawFile('dupfield', '{"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4);
    bothRefuse(p, /dupfield\.safetensors: expected each key once in the entry of "a", found "dtype" more than once/);
  });
  it('a byte-order mark', async () => {
    const p = await rawFile('bom', `\uFEFF{"a":${entry}}`, 4);
    bothRefuse(p, /bom\.safetensors: expected the header to start with '\{', found a UTF-8 byte-order mark/);
  });
  it('a deeply nested header names the file instead of overflowing the stack', async () => {
    const deep = `{"__metadata__":{"x":${'['.repeat(200000)}${']'.repeat(200000)}}}`;
    const p = await rawFile('deep', deep, 0);
    bothRefuse(p, /deep\.safetensors: expected a header nested at most 8 levels deep/);
  });
});

describe('values and loading rules', () => {
  it('NaN / Inf weights are refused naming the tensor and the count; --allow-nonfinite loads them', async () => {
    const dir = await folder('nan', (t) => {
      const w = Float32Array.from(t['layernorm.weight']!.data as Float32Array);
      w[3] = Number.NaN;
      w[5] = Number.POSITIVE_INFINITY;
      t['layernorm.weight'] = { dtype: 'F32', shape: [96], data: w };
    });
    const out = path.join(tmp, 'nan-out.safetensors');
    const r = cli(['embed', '--weights', dir, image, '--out', out]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/1 tensor\(s\) hold NaN or infinite values; nothing was loaded: layernorm\.weight \(2 of 96\)/);
    expect(r.stderr).toMatch(/--allow-nonfinite/);
    const ok = cli(['embed', '--weights', dir, image, '--out', out, '--allow-nonfinite', '-q']);
    expect(ok.code, ok.stderr).toBe(0);
    // export loads through the same loader
    const ex = path.join(tmp, 'nan-export');
    const refused = cli(['export', '--weights', dir, '--out', ex]);
    expect(refused.code, refused.stderr).toBe(2);
    expect(refused.stderr).toMatch(/layernorm\.weight \(2 of 96\)/);
    expect(cli(['export', '--weights', dir, '--out', ex, '--allow-nonfinite']).code).toBe(0);
  });

  it('a training-code checkpoint (teacher.backbone. keys) with registers uses the DINOv2 code rule, and says so', async () => {
    const orig = path.join(tmp, 'orig.safetensors');
    expect(cli(['export', '--weights', TINY, '--format', 'original', '--out', orig]).code).toBe(0);
    const st = await readSafetensors(orig);
    const ckpt = path.join(tmp, 'ckpt.safetensors');
    await writeSafetensors(ckpt, Object.fromEntries([...st.tensors].map(([k, v]) => [`teacher.backbone.${k}`, v as TensorToWrite])));
    const info = JSON.parse(cli(['info', ckpt, '--json']).stdout) as { config: { interpolation: unknown }; interpolation: string };
    expect(info.config.interpolation).toEqual({ offset: 0.1, antialias: false });
    expect(info.interpolation).toMatch(/offset 0\.1 .*chosen from a training-code checkpoint \('teacher\.backbone\.' keys\)/);
    // A bare original-names file with registers keeps torch hub's rule.
    await writeSafetensors(path.join(tmp, 'hub.safetensors'), Object.fromEntries([...st.tensors].map(([k, v]) => [k, v as TensorToWrite])));
    const hub = JSON.parse(cli(['info', path.join(tmp, 'hub.safetensors'), '--json']).stdout) as { interpolation: string };
    expect(hub.interpolation).toMatch(/explicit size, bicubic antialiased .*torch hub/);
    const e = cli(['embed', '--weights', ckpt, image, '--out', path.join(tmp, 'ckpt-out.safetensors')]);
    expect(e.code, e.stderr).toBe(0);
    expect(e.stderr).toMatch(/position embeddings at other sizes: scale factor with offset 0\.1/);
  });
});
