/**
 * Hugging Face interop without LibTorch: the JSON type of every config.json field cxformer writes against the
 * declarations of transformers' config classes (test/fixtures/hf-config-types.json, from transformers 5.25's source
 * by scripts/hf-config-types.py), the float writer, head-file checks and the model card's recipe.
 * The loading itself (AutoConfig / AutoModel / *ForImageClassification) is scripts/hf-interop-check.py, run outside CI.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultPreprocess } from '../../src/image/options.js';
import { writeSafetensors } from '../../src/io/safetensors.js';
import { applyOverrides, presetConfig, toHfConfig, type VitConfig } from '../../src/model/config.js';
import { headIsHfExpressible, hfLabels, readHeadFile } from '../../src/model/hf-export.js';
import { floatLiteral, HF_FLOAT_FIELDS, hfConfigJson } from '../../src/model/hf-json.js';
import { modelCard, preprocessSnippet } from '../../src/model/model-card.js';
import { repoRoot } from './golden.js';

type Kind = 'integer' | 'float' | 'boolean' | 'string' | 'array' | 'object' | 'null';
interface Fixture {
  transformers: string;
  classes: Record<string, { model_type: string; fields: Record<string, { json: Kind[] }>; accepted_extra: Record<string, { json: Kind[] }> }>;
}

/**
 * The JSON kind of each top-level value of an object, from the text itself: a number with '.', 'e' or 'E' is a
 * float (Python's json reads it as float), without them an integer. JSON.parse cannot tell 1 from 1.0.
 */
function topLevelKinds(text: string): Map<string, Kind> {
  let i = 0;
  const ws = () => {
    while (/\s/.test(text[i] ?? '')) i++;
  };
  const str = (): string => {
    const start = i;
    i++;
    while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (): Kind => {
    ws();
    const ch = text[i];
    if (ch === '"') return str(), 'string';
    if (ch === '{' || ch === '[') {
      const close = ch === '{' ? '}' : ']';
      i++;
      ws();
      if (text[i] === close) return i++, ch === '{' ? 'object' : 'array';
      for (;;) {
        if (ch === '{') {
          ws();
          str();
          ws();
          i++; // ':'
        }
        value();
        ws();
        if (text[i++] === close) return ch === '{' ? 'object' : 'array';
      }
    }
    const m = /^(true|false|null|-?\d+(\.\d+)?([eE][+-]?\d+)?)/.exec(text.slice(i));
    if (!m) throw new Error(`unexpected JSON at ${i}: ${text.slice(i, i + 20)}`);
    i += m[0].length;
    if (m[1] === 'true' || m[1] === 'false') return 'boolean';
    if (m[1] === 'null') return 'null';
    return /[.eE]/.test(m[0]) ? 'float' : 'integer';
  };
  const out = new Map<string, Kind>();
  ws();
  if (text[i++] !== '{') throw new Error('expected an object');
  for (;;) {
    ws();
    if (text[i] === '}') break;
    const k = str();
    ws();
    i++; // ':'
    out.set(k, value());
    ws();
    if (text[i] === ',') i++;
  }
  return out;
}

let fixture: Fixture;
let tmp: string;
beforeAll(async () => {
  fixture = JSON.parse(await readFile(path.join(repoRoot, 'test', 'fixtures', 'hf-config-types.json'), 'utf8')) as Fixture;
  tmp = await mkdtemp(path.join(tmpdir(), 'cxf-hfx-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** Every top-level field of `text` is declared by the class of its model_type (or accepted as an extra keyword), with a matching JSON type. */
function checkTypes(text: string): string[] {
  const kinds = topLevelKinds(text);
  const json = JSON.parse(text) as Record<string, unknown>;
  const cls = Object.values(fixture.classes).find((c) => c.model_type === json.model_type);
  if (!cls) return [`model_type ${JSON.stringify(json.model_type)} is not in the fixture`];
  const problems: string[] = [];
  for (const [k, kind] of kinds) {
    if (k === 'model_type') continue; // a class variable, checked above
    const decl = cls.fields[k] ?? cls.accepted_extra[k];
    if (!decl) problems.push(`${k}: not declared by the ${json.model_type} config class`);
    else if (!decl.json.includes(kind)) problems.push(`${k}: written as ${kind}, declared ${decl.json.join(' | ')}`);
  }
  return problems;
}

const CONFIGS: [string, () => VitConfig][] = [
  ['vit_small with registers, LayerScale 1.0', () => presetConfig('vit_small')],
  ['vit_base without registers', () => applyOverrides(presetConfig('vit_base'), ['model.num_register_tokens=0'])],
  ['vit_giant2 (SwiGLU), LayerScale 1e-5, drop path 0.1', () => applyOverrides(presetConfig('vit_giant2'), ['model.layerscale_init=1e-5', 'model.drop_path_rate=0.1'])],
  ['no LayerScale, eps 1e-5', () => applyOverrides(presetConfig('vit_small'), ['model.layerscale_init=null', 'model.layer_norm_eps=0.00001'])],
];

describe('config.json JSON types against transformers\' config classes', () => {
  it('the fixture is transformers 5.25 and lists the float fields the writer knows', () => {
    expect(fixture.transformers).toBe('5.25.0');
    for (const cls of Object.values(fixture.classes)) {
      const floats = Object.entries(cls.fields).filter(([, d]) => d.json.includes('float')).map(([k]) => k);
      expect(new Set(floats)).toEqual(HF_FLOAT_FIELDS);
    }
  });

  it.each(CONFIGS)('%s: every field has a declared type', (_, make) => {
    const text = hfConfigJson(toHfConfig(make()));
    expect(checkTypes(text)).toEqual([]);
    expect(topLevelKinds(text).get('layerscale_value')).toBe('float');
    expect(topLevelKinds(text).get('mlp_ratio')).toBe('integer');
  });

  it('a classification config (labels, problem type) too', () => {
    for (const lt of ['multilabel', 'multiclass']) {
      const cfg = { ...toHfConfig(presetConfig('vit_small')), architectures: ['Dinov2WithRegistersForImageClassification'], ...hfLabels(['A', 'B'], lt) };
      expect(checkTypes(hfConfigJson(cfg))).toEqual([]);
    }
    expect(hfLabels(['A', 'B'], 'multiclass')).toEqual({ id2label: { 0: 'A', 1: 'B' }, label2id: { A: 0, B: 1 }, problem_type: 'single_label_classification' });
  });

  it('writes LayerScale 1.0 as 1.0 (JSON.stringify would write 1, which transformers 5.25 refuses)', () => {
    const text = hfConfigJson(toHfConfig(presetConfig('vit_small')));
    expect(text).toMatch(/"layerscale_value": 1\.0,/);
    expect(text).toMatch(/"hidden_dropout_prob": 0\.0,/);
    expect(text).toMatch(/"layer_norm_eps": 0\.000001,/);
    expect(text).toMatch(/"mlp_ratio": 4,/);
    expect(JSON.parse(text)).toEqual(toHfConfig(presetConfig('vit_small')));
    expect([1, 0, 0.02, 1e-6, -2, 1e21, 1e-7].map(floatLiteral)).toEqual(['1.0', '0.0', '0.02', '0.000001', '-2.0', '1e+21', '1e-7']);
    expect(() => floatLiteral(Number.NaN)).toThrow(/finite/);
  });

  it('refuses a non-integer mlp_ratio, which Dinov2Config declares int', () => {
    const c = applyOverrides(presetConfig('vit_small'), ['model.mlp_ratio=2.5']);
    expect(() => hfConfigJson(toHfConfig(c), 'out/config.json')).toThrow(/out\/config\.json: transformers declares mlp_ratio as int, found 2\.5/);
  });
});

describe('classification heads', () => {
  async function head(file: string, F: number, C: number, meta: Record<string, unknown>, hidden: number[] = []) {
    const widths = [F, ...hidden, C];
    const t: Record<string, { dtype: 'F32'; shape: number[]; data: Float32Array }> = {};
    for (let l = 0; l + 1 < widths.length; l++) {
      t[`head.${l}.weight`] = { dtype: 'F32', shape: [widths[l + 1]!, widths[l]!], data: new Float32Array(widths[l + 1]! * widths[l]!).fill(0.5) };
      t[`head.${l}.bias`] = { dtype: 'F32', shape: [widths[l + 1]!], data: new Float32Array(widths[l + 1]!) };
    }
    const md: Record<string, string> = { format: 'cxformer-probe-head', config: JSON.stringify({ hidden, task: 'multilabel' }) };
    for (const [k, v] of Object.entries(meta)) md[k] = JSON.stringify(v);
    await writeSafetensors(file, t, md);
    return file;
  }
  const c = applyOverrides(presetConfig('vit_small'), ['model.depth=2']);

  it('reads the layout; one linear layer on CLS + mean patch of the last block is transformers\' classifier', async () => {
    const f = await head(path.join(tmp, 'h1.safetensors'), 2 * 384, 3, { classes: ['a', 'b', 'c'], feature_options: { clsLayers: 1, avgpool: true } });
    const h = await readHeadFile(f, c);
    expect([h.classes, h.clsLayers, h.avgpool, h.hidden, h.labelType, h.preprocess]).toEqual([['a', 'b', 'c'], 1, true, [], 'multilabel', null]);
    expect(headIsHfExpressible(h)).toBe(true);
    expect(headIsHfExpressible({ ...h, clsLayers: 4 })).toBe(false);
    expect(headIsHfExpressible({ ...h, hidden: [8] })).toBe(false);
    expect(headIsHfExpressible({ ...h, avgpool: false })).toBe(false);
  });

  it('refuses a head of another width, naming both', async () => {
    const f = await head(path.join(tmp, 'h2.safetensors'), 5 * 768, 1, { classes: ['a'], feature_options: { clsLayers: 4, avgpool: true } });
    await expect(readHeadFile(f, c)).rejects.toThrow(/h2\.safetensors: head\.0\.weight takes 3840 features, but this backbone gives 1920 \(4 CLS token\(s\) \+ mean patch token × D 384\)/);
  });

  it('refuses a file that is not a cxformer head, and classes that do not match the outputs', async () => {
    await writeSafetensors(path.join(tmp, 'x.safetensors'), { w: { dtype: 'F32', shape: [1], data: new Float32Array(1) } }, { format: 'pt' });
    await expect(readHeadFile(path.join(tmp, 'x.safetensors'), c)).rejects.toThrow(/expected a cxformer classification head .* found "pt"/);
    const f = await head(path.join(tmp, 'h3.safetensors'), 2 * 384, 2, { classes: ['a'], feature_options: { clsLayers: 1, avgpool: true } });
    await expect(readHeadFile(f, c)).rejects.toThrow(/names 1 classes but the head has 2 outputs/);
  });
});

describe('model card', () => {
  it('warns about the ignored keys and gives the equalise-first recipe', () => {
    const card = modelCard({ config: presetConfig('vit_small'), preprocess: { ...defaultPreprocess }, source: 'w.safetensors', backboneClass: 'Dinov2WithRegistersModel', head: { kind: 'none' } });
    expect(card).toMatch(/silently ignores\*\*\n`do_grayscale`, `cxformer_equalize`, `cxformer_crop_rounding`/);
    expect(card).toContain('def equalize_hist(gray):');
    expect(card).toContain('gray = equalize_hist(gray)');
    expect(card).toContain('backend="pil"');
    expect(card).toContain('do_center_crop=False'); // torchvision rounding: the crop is done in the snippet
    expect(card).toContain('last_hidden_state[:, 5:]');
  });
  it('without equalisation or with HF crop rounding the snippet is shorter', () => {
    const s = preprocessSnippet({ ...defaultPreprocess, equalize: false, cropRounding: 'hf' });
    expect(s).not.toContain('equalize_hist');
    expect(s).not.toContain('do_center_crop=False');
  });
  it('a cxformer-layout head documents the feature order and the snippet', () => {
    const card = modelCard({
      config: presetConfig('vit_small'),
      preprocess: { ...defaultPreprocess },
      source: 'w',
      backboneClass: 'Dinov2WithRegistersModel',
      head: { kind: 'cxformer', classes: ['a'], labelType: 'binary', clsLayers: 4, avgpool: true, hidden: [], source: 'head.safetensors' },
    });
    expect(card).toContain('F = 5·D = 1920');
    expect(card).toContain('out.hidden_states[-4:]');
    expect(card).toContain('out.last_hidden_state[:, 5:].mean(1)');
    expect(card).toContain('probs = x.sigmoid()');
  });
});
