/**
 * The CLI end to end (built dist/cli/main.js in child processes) plus the argument grammar in-process.
 * `npm test` builds dist first (scripts/test.sh).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCli } from '../../src/cli/parser.js';
import { writePhantoms } from '../../src/data/phantom.js';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.js';
import { goldenDir, goldenFile, repoRoot } from '../unit/golden.js';

const MAIN = path.join(repoRoot, 'dist', 'cli', 'main.js');
const PROBE = path.join(repoRoot, 'test', 'helpers', 'libtorch-probe.cjs');
const TINY = path.dirname(goldenFile('vit_tiny_hf/config.json'));
let tmp: string;
let images: string[];

function cli(args: string[]) {
  const r = spawnSync(process.execPath, ['--require', PROBE, MAIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, CXFORMER_THREADS: '1' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, libtorch: /libtorch_loaded=true/.test(r.stderr) };
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-cli-'));
  images = await writePhantoms(path.join(tmp, 'img'), 3, { size: 100 });
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('argument grammar (no process, no LibTorch)', () => {
  it('parses embed with overrides among the inputs', () => {
    const a = parseCli(['embed', '--weights', 'w', 'a.png', 'model.num_heads=3', '--out', 'o.safetensors', '--layers=-1,-2']);
    expect(a._).toEqual(['embed']);
    expect(a.inputs).toEqual(['a.png', 'model.num_heads=3']);
    expect(a['batch-size']).toBe(8);
    expect(a.layers).toBe('-1,-2');
  });
  it('downstream presets fill options and the command line wins', () => {
    const a = parseCli(['finetune', '--config', 'chexpert', '--root', 'r', '--weights', 'w', '--out', 'o', '--epochs', '7']);
    expect(a.dataset).toBe('chexpert');
    expect(a.classes).toBe('Atelectasis,Cardiomegaly,Consolidation,Edema,Pleural Effusion');
    expect(a.uncertain).toBe('ones');
    expect(a.views).toBe('PA,AP');
    expect(a.epochs).toBe(7);
    expect(a.lr).toBe(0.00005);
    const r = parseCli(['finetune', '--config', 'rsna', '--root', 'r', '--weights', 'w', '--out', 'o']);
    expect([r.classes, r.equalize]).toEqual(['Pneumonia', false]);
    expect(() => parseCli(['finetune', '--config', 'imagenet', '--root', 'r', '--weights', 'w', '--out', 'o'])).toThrow(/not a preset \(chexmask, chexpert, mimic_report, mimic_report_llava, nih, phantom, phantom_report, phantom_seg, rsna, vindr\)/);
  });

  it('evaluate takes a preset\'s data and preprocessing keys and leaves out its training keys', () => {
    const e = parseCli(['evaluate', '--config', 'chexpert', '--root', 'r', '--weights', 'w', '--head', 'h', '--out', 'o']);
    expect([e.dataset, e.uncertain, e.views, e.equalize, e.bootstrap]).toEqual(['chexpert', 'ones', 'PA,AP', true, 500]);
    expect(e.classes).toBe('Atelectasis,Cardiomegaly,Consolidation,Edema,Pleural Effusion');
    for (const k of ['epochs', 'lr', 'mode', 'backbone-lr', 'select-best']) expect(e[k]).toBeUndefined();
    // every shipped preset is usable with evaluate; unknown command-line options still fail
    for (const p of ['chexmask', 'chexpert', 'nih', 'phantom', 'phantom_seg', 'rsna', 'vindr']) {
      expect(() => parseCli(['evaluate', '--config', p, '--root', 'r', '--weights', 'w', '--head', 'h', '--out', 'o'])).not.toThrow();
    }
    expect(() => parseCli(['evaluate', '--config', 'chexpert', '--root', 'r', '--weights', 'w', '--head', 'h', '--out', 'o', '--epochs', '3'])).toThrow(/Unknown argument: epochs/);
  });

  it('rejects unknown options, missing inputs, bad layers and bad batch sizes', () => {
    expect(() => parseCli(['embed', '--weights', 'w', 'a.png', '--out', 'o', '--bogus'])).toThrow(/Unknown argument: bogus/);
    expect(() => parseCli(['embed', '--weights', 'w', '--out', 'o'])).toThrow(/at least one image/);
    expect(() => parseCli(['embed', 'a.png', '--out', 'o'])).toThrow(/--weights/);
    expect(() => parseCli(['embed', '--weights', 'w', 'a.png', '--out', 'o', '--layers=x'])).toThrow(/comma-separated integers/);
    expect(() => parseCli(['embed', '--weights', 'w', 'a.png', '--out', 'o', '-b', '0'])).toThrow(/batch-size/);
    expect(() => parseCli(['nope'])).toThrow(/Unknown argument: nope/);
  });
});

describe('cxformer CLI', () => {
  it('--help and argument errors do not load LibTorch', () => {
    const h = cli(['--help']);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/cxformer embed/);
    expect(h.libtorch).toBe(false);
    const e = cli(['embed', '--out', 'x.safetensors', 'a.png']);
    expect(e.code).toBe(2);
    expect(e.stderr).toMatch(/--weights/);
    expect(e.libtorch).toBe(false);
  });

  it('info reads the header only', async () => {
    const r = cli(['info', TINY]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/D=96, depth=3, heads=3/);
    expect(r.stdout).toMatch(/registers=2/);
    expect(r.stdout).toMatch(/parameters:\s+394,848/);
    expect(r.stdout).toMatch(/Hugging Face Dinov2 names/);
    expect(r.libtorch).toBe(false);
    // A LLaVA folder (the golden tiny one): its three parts from config.json and the header, still without LibTorch.
    const l = cli(['info', path.join(goldenDir, 'lm', 'llava')]);
    expect(l.code, l.stderr).toBe(0);
    expect(l.stdout).toMatch(/vision tower: dinov2_with_registers, D=96, depth=2, heads=3, patch 14, 56 px, registers=2; feature layer -2, tokens full/);
    expect(l.stdout).toMatch(/LM:\s+qwen2, d=64, 2 layers, 4 heads \(2 KV\), vocabulary 501, tied embeddings/);
    expect(l.stdout).toMatch(/image token:\s+500, 19 visual tokens per 56 px image/);
    expect(l.stdout).toMatch(/parameters:\s+vision 171.6 K, projector 10.4 K, LM 94.1 K; total 276.1 K/);
    expect(l.libtorch).toBe(false);
    // A LLaVA folder without its weights, or with a broken shard index: named, exit 2.
    const bare = path.join(tmp, 'llava-bare');
    await mkdir(bare, { recursive: true });
    await copyFile(path.join(goldenDir, 'lm', 'llava', 'config.json'), path.join(bare, 'config.json'));
    const nb = cli(['info', bare]);
    expect(nb.code).toBe(2);
    expect(nb.stderr).toMatch(/llava-bare: no model.safetensors \(a LLaVA folder holds model.safetensors or a sharded model.safetensors.index.json\)/);
    await writeFile(path.join(bare, 'model.safetensors.index.json'), '{"weight_map": []}');
    const bi = cli(['info', bare]);
    expect(bi.code).toBe(2);
    expect(bi.stderr).toMatch(/model.safetensors.index.json: expected "weight_map", a non-empty object of tensor name → shard file name/);
    const rt = cli(['info', '--runtime', '--json']);
    expect(rt.code).toBe(0);
    const j = JSON.parse(rt.stdout);
    expect(j.runtime.torch_version).toBe('2.11.0');
    expect(j.runtime.threads).toBe(1);
    expect(j.runtime.blas).toBeTruthy();
    expect(rt.libtorch).toBe(true);
  });

  it('embed on a pixel_values tensor reproduces the reference outputs', async () => {
    const ins = await readSafetensors(goldenFile('vit_tiny_inputs.safetensors'));
    const px = ins.tensors.get('pixel_values_56') as { data: Float32Array; shape: number[] };
    const input = path.join(tmp, 'px.safetensors');
    await writeSafetensors(input, { pixel_values: { dtype: 'F32', shape: px.shape, data: px.data } });
    const out = path.join(tmp, 'feat.safetensors');
    const r = cli(['embed', '--weights', TINY, input, '--out', out, '-q']);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    const got = await readSafetensors(out);
    const ref = await readSafetensors(goldenFile('vit_tiny_outputs.safetensors'));
    for (const [mine, theirs] of [['cls', 'x_norm_clstoken_56'], ['registers', 'x_norm_regtokens_56'], ['patches', 'x_norm_patchtokens_56'], ['last_hidden_state', 'hf_last_hidden_state_56']]) {
      const a = got.tensors.get(mine as string)?.data as Float32Array;
      const b = ref.tensors.get(theirs as string)?.data as Float32Array;
      expect(got.tensors.get(mine as string)?.shape).toEqual(ref.tensors.get(theirs as string)?.shape);
      let m = 0;
      for (let i = 0; i < b.length; i++) m = Math.max(m, Math.abs((a[i] ?? NaN) - (b[i] ?? NaN)));
      expect(m, mine).toBeLessThan(1e-4);
    }
    expect(JSON.parse(got.metadata?.inputs ?? '[]')).toEqual([`${input}#0`, `${input}#1`]);
  });

  it('embed on images writes every output with the input names', async () => {
    const out = path.join(tmp, 'img-feat.safetensors');
    const r = cli(['embed', '--weights', TINY, ...images, '--out', out, '--crop', '56', '--resize', '56', '-b', '2', '--layers=-2']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/embed: 3 inputs/);
    const got = await readSafetensors(out);
    expect(got.tensors.get('cls')?.shape).toEqual([3, 96]);
    expect(got.tensors.get('registers')?.shape).toEqual([3, 2, 96]);
    expect(got.tensors.get('patches')?.shape).toEqual([3, 16, 96]);
    expect(got.tensors.get('last_hidden_state')?.shape).toEqual([3, 19, 96]);
    expect(got.tensors.get('layer_-2')?.shape).toEqual([3, 19, 96]);
    expect(JSON.parse(got.metadata?.inputs ?? '[]')).toEqual(images);
    expect(JSON.parse(got.metadata?.preprocess ?? '{}')).toMatchObject({ grayscale: true, equalize: true, resize: 56, crop: 56 });
  });

  it('bad inputs fail with exit code 2 and a message naming the file', async () => {
    const corrupt = path.join(tmp, 'corrupt.png');
    await writeFile(corrupt, Buffer.from('\x89PNG\r\n\x1a\nthis is not a png'));
    const out = path.join(tmp, 'never.safetensors');
    const cases: Array<[string[], RegExp]> = [
      [[path.join(tmp, 'missing.png')], /missing\.png: no such file/],
      [[corrupt], /corrupt\.png/],
      [[path.join(TINY, 'config.json')], /config\.json: expected an image/],
    ];
    for (const [inputs, msg] of cases) {
      const r = cli(['embed', '--weights', TINY, ...inputs, '--out', out, '-q']);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(msg);
    }
    const tinyImg = path.join(tmp, 'tiny.png');
    await copyFile(images[0] as string, tinyImg);
    const small = cli(['embed', '--weights', TINY, tinyImg, '--out', out, '--resize', '10', '--crop', 'none', '-q']);
    expect(small.code).toBe(2);
    expect(small.stderr).toMatch(/tiny\.png/);
    const w = cli(['embed', '--weights', path.join(tmp, 'nope'), images[0] as string, '--out', out]);
    expect(w.code).toBe(2);
    expect(w.stderr).toMatch(/--weights .*nope: no such file or folder/);
    expect(w.libtorch).toBe(false);
  });

  it('a pixel_values tensor of the wrong shape is refused before LibTorch loads', async () => {
    const bad = path.join(tmp, 'gray-px.safetensors');
    await writeSafetensors(bad, { pixel_values: { dtype: 'F32', shape: [1, 1, 56, 56], data: new Float32Array(56 * 56) } });
    const r = cli(['embed', '--weights', TINY, bad, '--out', path.join(tmp, 'x.safetensors')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/gray-px\.safetensors: expected "pixel_values" as F32 \[B, 3, H, W\], found F32 \[1, 1, 56, 56\]/);
    expect(r.libtorch).toBe(false);
  });

  it('Ctrl-C stops after the current batch, exits 130 and writes nothing', async () => {
    const many = await writePhantoms(path.join(tmp, 'many'), 12, { size: 64 });
    const out = path.join(tmp, 'interrupted.safetensors');
    const child = spawn(process.execPath, [MAIN, 'embed', '--arch', 'vit_small', 'model.depth=4', ...many, '--out', out, '-b', '1', '--resize', '518', '--crop', '518'], {
      env: { ...process.env, CXFORMER_THREADS: '1' },
    });
    let stderr = '';
    let sent = false;
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (!sent && /embed: 1\/12/.test(stderr)) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(sent).toBe(true);
    expect(code).toBe(130);
    expect(stderr).toMatch(/interrupted after \d+\/12 inputs; nothing written/);
    expect(existsSync(out)).toBe(false);
  });

  it('embed reads DICOM inputs (windowed 12-bit MONOCHROME1)', async () => {
    const { imagePixel, TS, writeDicom } = await import('../../src/image/dicom/writer.js');
    const file = path.join(tmp, 'chest.dcm');
    const px = Array.from({ length: 56 * 56 }, (_, i) => (i * 37) % 4096);
    await writeDicom(file, {
      transferSyntax: TS.explicitLE,
      elements: [
        ...imagePixel({ rows: 56, columns: 56, bitsAllocated: 16, bitsStored: 12, photometric: 'MONOCHROME1' }),
        { tag: 0x00281050, vr: 'DS', value: '2048' },
        { tag: 0x00281051, vr: 'DS', value: '4096' },
        { tag: 0x7fe00010, vr: 'OW', value: px },
      ],
    });
    const out = path.join(tmp, 'dcm-feat.safetensors');
    const r = cli(['embed', '--weights', TINY, file, '--out', out, '--resize', 'none', '--crop', 'none', '-q']);
    expect(r.code, r.stderr).toBe(0);
    expect((await readSafetensors(out)).tensors.get('cls')?.shape).toEqual([1, 96]);
  });

  it('prepare --dataset chexpert keeps patient, view and labels in the cache index', async () => {
    // root = the CheXpert-v1.0-small folder itself: train.csv's Path starts with that folder's name.
    const root = path.join(tmp, 'CheXpert-v1.0-small');
    const rows = [
      ['CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg', 'Female', '68', 'Frontal', 'AP', '', '1.0'],
      ['CheXpert-v1.0-small/train/patient00001/study1/view2_lateral.jpg', 'Female', '68', 'Lateral', '', '', '1.0'],
      ['CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg', 'Male', '40', 'Frontal', 'PA', '1.0', ''],
    ];
    const { mkdir } = await import('node:fs/promises');
    for (const r of rows) {
      const file = path.join(tmp, r[0] as string);
      await mkdir(path.dirname(file), { recursive: true });
      await copyFile(images[0] as string, file);
    }
    // CheXpert's header: 14 observations after the view columns; Cardiomegaly is the 3rd.
    const obs = ['No Finding', 'Enlarged Cardiomediastinum', 'Cardiomegaly', 'Lung Opacity', 'Lung Lesion', 'Edema', 'Consolidation', 'Pneumonia', 'Atelectasis', 'Pneumothorax', 'Pleural Effusion', 'Pleural Other', 'Fracture', 'Support Devices'];
    const header = `Path,Sex,Age,Frontal/Lateral,AP/PA,${obs.join(',')}`;
    const line = (r: string[]) => [...r.slice(0, 5), r[5], '', r[6], ...Array(11).fill('')].join(',');
    await writeFile(path.join(root, 'train.csv'), [header, ...rows.map(line)].join('\n') + '\n');
    await writeFile(path.join(root, 'valid.csv'), `${header}\n`);
    const cacheDir = path.join(tmp, 'chexpert-cache');
    const r = cli(['prepare', '--dataset', 'chexpert', '--root', root, '--views', 'PA,AP', '--out', cacheDir, '--size', '64', '-q']);
    expect(r.code, r.stderr).toBe(0);
    const { openCache } = await import('../../src/cache/reader.js');
    const cache = await openCache(cacheDir);
    try {
      expect(cache.records.length).toBe(2);
      const metas = cache.records.map((rec) => rec.meta as Record<string, unknown>);
      expect(metas.map((m) => [m.dataset, m.patient, m.view])).toEqual([
        ['chexpert', 'patient00001', 'AP'],
        ['chexpert', 'patient00002', 'PA'],
      ]);
      expect((metas[0]?.labels as Record<string, unknown>).Cardiomegaly).toBe(1);
      const img = await cache.read(0, { verify: true });
      expect(Math.min(img.height, img.width)).toBe(64);
    } finally {
      await cache.close();
    }
  });

  it('export of a random-initialised preset gives a folder that info and embed accept', async () => {
    const dir = path.join(tmp, 'rand-tiny');
    const e = cli(['export', '--arch', 'vit_small', 'model.depth=2', 'model.img_size=56', '--out', dir]);
    expect(e.code, e.stderr).toBe(0);
    const i = cli(['info', dir, '--json']);
    const j = JSON.parse(i.stdout);
    expect(j.config.depth).toBe(2);
    expect(j.config.num_register_tokens).toBe(4);
    expect(j.layout).toMatch(/Hugging Face/);
    const out = path.join(tmp, 'r.safetensors');
    const r = cli(['embed', '--weights', dir, images[0] as string, '--out', out, '-q', '--crop', '56', '--resize', '56']);
    expect(r.code, r.stderr).toBe(0);
    expect((await readSafetensors(out)).tensors.get('patches')?.shape).toEqual([1, 16, 384]);
  });
});
