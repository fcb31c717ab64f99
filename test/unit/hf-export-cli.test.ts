/**
 * `cxformer export` to Hugging Face folders end to end (built dist/cli/main.js in child processes, LibTorch loaded):
 * typed config.json and the model card, --head as *ForImageClassification or as backbone + head files, classifier.*
 * carried through a re-export, refused by --format original, dropped only with --backbone-only.
 * Loading the folders in transformers is scripts/hf-interop-check.py (outside CI).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCli } from '../../src/cli/parser.js';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.js';
import { repoRoot } from './golden.js';

const MAIN = path.join(repoRoot, 'dist', 'cli', 'main.js');
const TINY = ['--arch', 'vit_small', 'model.depth=2', 'model.img_size=28'];
const D = 384;
let tmp: string;
let backbone: string;

function cli(args: string[]) {
  const r = spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', env: { ...process.env, CXFORMER_THREADS: '1' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A cxformer head file: `F` inputs, classes `classes`, hidden widths, with the metadata `cxformer finetune` writes. */
async function headFile(name: string, F: number, classes: string[], fo: { clsLayers: number; avgpool: boolean }, hidden: number[] = []) {
  const widths = [F, ...hidden, classes.length];
  const t: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
  for (let l = 0; l + 1 < widths.length; l++) {
    const [i, o] = [widths[l]!, widths[l + 1]!];
    t[`head.${l}.weight`] = { dtype: 'F32', shape: [o, i], data: Float32Array.from({ length: o * i }, (_, k) => Math.sin(k + l)) };
    t[`head.${l}.bias`] = { dtype: 'F32', shape: [o], data: Float32Array.from({ length: o }, (_, k) => k / 10) };
  }
  const file = path.join(tmp, name);
  await writeSafetensors(file, t, {
    format: 'cxformer-probe-head',
    config: JSON.stringify({ hidden, task: 'multiclass' }),
    classes: JSON.stringify(classes),
    feature_options: JSON.stringify(fo),
    label_type: 'multiclass',
  });
  return file;
}

beforeAll(async () => {
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-hfx-cli-'));
  backbone = path.join(tmp, 'backbone');
  const e = cli(['export', ...TINY, '--out', backbone]);
  if (e.code !== 0) throw new Error(e.stderr);
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('cxformer export --format hf', () => {
  it('writes float fields as floats and a model card with the preprocessing recipe', async () => {
    const text = await readFile(path.join(backbone, 'config.json'), 'utf8');
    expect(text).toMatch(/"layerscale_value": 1\.0,/);
    expect(text).toMatch(/"mlp_ratio": 4,/);
    const card = await readFile(path.join(backbone, 'README.md'), 'utf8');
    expect(card).toContain('silently ignores');
    expect(card).toContain('gray = equalize_hist(gray)');
  });

  it('--head of one linear layer on CLS + mean patch: Dinov2WithRegistersForImageClassification', async () => {
    const h = await headFile('lin.safetensors', 2 * D, ['a', 'b', 'c'], { clsLayers: 1, avgpool: true });
    const out = path.join(tmp, 'cls');
    const e = cli(['export', '--weights', backbone, '--head', h, '--out', out]);
    expect(e.code, e.stderr).toBe(0);
    const cfg = JSON.parse(await readFile(path.join(out, 'config.json'), 'utf8'));
    expect(cfg.architectures).toEqual(['Dinov2WithRegistersForImageClassification']);
    expect([cfg.id2label, cfg.label2id, cfg.problem_type]).toEqual([{ 0: 'a', 1: 'b', 2: 'c' }, { a: 0, b: 1, c: 2 }, 'single_label_classification']);
    const st = await readSafetensors(path.join(out, 'model.safetensors'));
    const hs = await readSafetensors(h);
    expect(st.tensors.get('classifier.weight')?.data).toEqual(hs.tensors.get('head.0.weight')?.data);
    expect(st.tensors.get('classifier.bias')?.data).toEqual(hs.tensors.get('head.0.bias')?.data);
    const names = [...st.tensors.keys()].filter((n) => !n.startsWith('classifier.'));
    expect(names.every((n) => n.startsWith('dinov2_with_registers.'))).toBe(true);
    expect(names.length).toBe((await readSafetensors(path.join(backbone, 'model.safetensors'))).tensors.size);
    expect(await readFile(path.join(out, 'README.md'), 'utf8')).toContain('AutoModelForImageClassification');
    // cxformer still reads the folder as a backbone.
    const i = cli(['info', out, '--json']);
    expect(i.code, i.stderr).toBe(0);

    // A re-export carries classifier.* through; --format original refuses; --backbone-only drops it, saying so.
    const again = path.join(tmp, 'cls-again');
    const r = cli(['export', '--weights', out, '--out', again]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/carried classifier\.bias, classifier\.weight/);
    const st2 = await readSafetensors(path.join(again, 'model.safetensors'));
    expect([...st2.tensors.keys()]).toEqual([...st.tensors.keys()]);
    expect(st2.tensors.get('classifier.weight')?.data).toEqual(st.tensors.get('classifier.weight')?.data);
    expect(JSON.parse(await readFile(path.join(again, 'config.json'), 'utf8')).id2label).toEqual(cfg.id2label);
    const o = cli(['export', '--weights', out, '--format', 'original', '--out', path.join(tmp, 'o.safetensors')]);
    expect(o.code).toBe(2);
    expect(o.stderr).toMatch(/holds a classifier \(classifier\.bias, classifier\.weight\).*--backbone-only/);
    const b = cli(['export', '--weights', out, '--backbone-only', '--out', path.join(tmp, 'bb')]);
    expect(b.code, b.stderr).toBe(0);
    expect(b.stderr).toMatch(/dropped classifier\.bias, classifier\.weight .*--backbone-only/);
    expect(JSON.parse(await readFile(path.join(tmp, 'bb', 'config.json'), 'utf8')).architectures).toEqual(['Dinov2WithRegistersModel']);
    const c = cli(['export', '--weights', out, '--head', h, '--out', path.join(tmp, 'both')]);
    expect(c.code).toBe(2);
    expect(c.stderr).toMatch(/already holds a classifier/);
  });

  it('--head on other features (2 CLS layers, MLP): backbone + head.safetensors + head_config.json', async () => {
    const h = await headFile('mlp.safetensors', 3 * D, ['x', 'y'], { clsLayers: 2, avgpool: true }, [8]);
    const out = path.join(tmp, 'mlp');
    const e = cli(['export', '--weights', backbone, '--head', h, '--out', out]);
    expect(e.code, e.stderr).toBe(0);
    expect(e.stderr).toMatch(/not transformers' Dinov2WithRegistersForImageClassification/);
    expect(JSON.parse(await readFile(path.join(out, 'config.json'), 'utf8')).architectures).toEqual(['Dinov2WithRegistersModel']);
    const hc = JSON.parse(await readFile(path.join(out, 'head_config.json'), 'utf8'));
    expect([hc.classes, hc.features.cls_layers, hc.features.dim, hc.hidden, hc.output]).toEqual([['x', 'y'], 2, 3 * D, [8], 'softmax']);
    expect([...(await readSafetensors(path.join(out, 'head.safetensors'))).tensors.keys()].sort()).toEqual(['head.0.bias', 'head.0.weight', 'head.1.bias', 'head.1.weight']);
    expect(await readFile(path.join(out, 'README.md'), 'utf8')).toContain('out.hidden_states[-2:]');
  });

  it('refuses a head trained on another backbone, naming both widths', async () => {
    const h = await headFile('wide.safetensors', 2 * 768, ['a'], { clsLayers: 1, avgpool: true });
    const e = cli(['export', '--weights', backbone, '--head', h, '--out', path.join(tmp, 'wide')]);
    expect(e.code).toBe(2);
    expect(e.stderr).toMatch(/head\.0\.weight takes 1536 features, but this backbone gives 768/);
    expect(existsSync(path.join(tmp, 'wide', 'model.safetensors'))).toBe(false);
  });

  it('--head needs --weights', () => {
    expect(() => parseCli(['export', '--arch', 'vit_small', '--head', 'h.safetensors', '--out', 'o'])).toThrow(/--head goes with the --weights/);
  });
});
